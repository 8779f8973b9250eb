/* SPDX-License-Identifier: MIT */
/*
 * The "gluster" protocol: a file in a GlusterFS volume through libgfapi, as
 * QEMU's gluster driver reaches it: gluster[+tcp|+unix|+rdma]://[host[:port]]
 * /volume/path[?socket=...] or the volume/path/server.N.{type,host,port,path}/
 * debug/logfile options. Requests go straight to gfapi, which is thread-safe;
 * holes are found with SEEK_DATA/SEEK_HOLE, zeroes written with zerofill.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/builtin.h"
#include "protocols/lazy-gfapi.h"
#include "protocols/net-util.h"
#include "qimg/driver.h"
#include "util/mem.h"

/* libgfapi, loaded by fs_connect. */
#ifdef QIMG_SONAME_LIBGFAPI
LAZYLIB_DEFINE(gfapi, QIMG_SONAME_LIBGFAPI, LAZY_GFAPI_SYMS);
#endif

#define GLUSTER_DEFAULT_PORT 24007
#define GLUSTER_DEBUG_DEFAULT 4
#define GLUSTER_DEBUG_MAX 9
#define GLUSTER_LOGFILE_DEFAULT "-" /* libgfapi's name for stderr */
#define GLUSTER_MAX_SERVERS 16

static const char URI_USAGE[] =
    "Usage: file=gluster[+transport]://[host[:port]]volume/path[?socket=...]"
    "[,file.debug=N][,file.logfile=/path/filename.log]";
static const char JSON_USAGE[] =
    "Usage: -drive driver=qcow2,file.driver=gluster,file.volume=testvol,"
    "file.path=/path/a.qcow2[,file.debug=9][,file.logfile=/path/filename.log],"
    "file.server.0.type=inet,file.server.0.host=1.2.3.4,file.server.0.port=24007,"
    "file.server.1.transport=unix,file.server.1.path=/var/run/glusterd.socket ...";

struct gluster_server {
    bool is_unix;
    char *host, *port; /* inet */
    char *socket;      /* unix */
};

struct gluster_addr {
    char *volume, *path, *logfile, *url; /* url: the name given, when opened by one */
    int debug;
    struct gluster_server servers[GLUSTER_MAX_SERVERS];
    size_t nservers;
};

struct gluster_state {
    struct gluster_addr a;
    glfs_t *fs;
    glfs_fd_t *fd;
    bool seek_data; /* SEEK_DATA works on this volume */
};

static const struct qimg_opt_desc gluster_open_opts[] = {
    {"filename", QIMG_OPT_STRING, "URL to the gluster image", NULL},
    {"volume", QIMG_OPT_STRING, "name of gluster volume where VM image resides", NULL},
    {"path", QIMG_OPT_STRING, "absolute path to image file in gluster volume", NULL},
    {"debug", QIMG_OPT_NUMBER, "Gluster log level, valid range is 0-9", NULL},
    {"logfile", QIMG_OPT_STRING, "Logfile path of libgfapi", NULL},
    {0},
};

static const struct qimg_opt_desc gluster_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"preallocation", QIMG_OPT_STRING, "Preallocation mode (allowed values: off, falloc, full)",
     NULL},
    {"debug", QIMG_OPT_NUMBER, "Gluster log level, valid range is 0-9", NULL},
    {"logfile", QIMG_OPT_STRING, "Logfile path of libgfapi", NULL},
    {0},
};

static const char *const gluster_aliases[] = {"gluster+tcp", "gluster+unix", "gluster+rdma",
                                              NULL};

/* The options that name the node ("json:{...}") when it was opened by them. */
static const char *const gluster_strong_opts[] = {"volume", "path", "server", NULL};

static void addr_clear(struct gluster_addr *a)
{
    for (size_t i = 0; i < a->nservers; i++) {
        free(a->servers[i].host);
        free(a->servers[i].port);
        free(a->servers[i].socket);
    }
    free(a->volume);
    free(a->path);
    free(a->logfile);
    free(a->url);
    memset(a, 0, sizeof(*a));
}

static int invalid_uri(const char *uri, struct qimg_error *err)
{
    return qimg_error_set(err, -EINVAL, "invalid URI %s\n%s", uri, URI_USAGE);
}

/*
 * gluster[+transport]://[host[:port]]/volume/path[?socket=...] into the address, as
 * QEMU's parse: tcp (the default; rdma falls back to it) names a host (localhost when
 * none) and port; unix names nothing but its socket, and only it takes a query.
 */
static int parse_uri(struct gluster_addr *a, const char *uri, struct qimg_error *err)
{
    const char *colon = strchr(uri, ':');
    if (!colon)
        return invalid_uri(uri, err);
    size_t slen = (size_t)(colon - uri);
    bool is_unix = false;
    if ((slen == 7 && !strncmp(uri, "gluster", 7)) || (slen == 11 && !strncmp(uri, "gluster+tcp", 11))) {
        is_unix = false;
    } else if (slen == 12 && !strncmp(uri, "gluster+unix", 12)) {
        is_unix = true;
    } else if (slen == 12 && !strncmp(uri, "gluster+rdma", 12)) {
        qimg_warn("rdma feature is not supported, falling back to tcp\n");
    } else {
        return invalid_uri(uri, err);
    }
    const char *p = colon + 1;
    const char *auth = NULL;
    size_t auth_len = 0;
    if (!strncmp(p, "//", 2)) {
        auth = p + 2;
        auth_len = strcspn(auth, "/?#");
        p = auth + auth_len;
    }
    size_t path_len = strcspn(p, "?#");
    const char *query = p[path_len] == '?' ? p + path_len + 1 : NULL;
    /* /volume/path: the volume is the first component, the image the rest */
    if (path_len < 2 || p[0] != '/')
        return invalid_uri(uri, err);
    const char *vol_end = memchr(p + 1, '/', path_len - 1);
    if (!vol_end || vol_end == p + 1 || (size_t)(vol_end + 1 - p) >= path_len)
        return invalid_uri(uri, err);
    a->volume = net_percent_decode(p + 1, (size_t)(vol_end - p - 1));
    a->path = net_percent_decode(vol_end + 1, (size_t)(p + path_len - vol_end - 1));
    struct gluster_server *s = &a->servers[0];
    a->nservers = 1;
    if (is_unix) {
        if (auth_len || !query)
            return invalid_uri(uri, err);
        size_t qlen = strcspn(query, "#");
        if (qlen < 8 || strncmp(query, "socket=", 7) || memchr(query, '&', qlen))
            return invalid_uri(uri, err);
        s->is_unix = true;
        s->socket = net_percent_decode(query + 7, qlen - 7);
        return 0;
    }
    if (query && query[0] && query[0] != '#')
        return invalid_uri(uri, err);
    const char *host = auth, *port = NULL;
    size_t host_len = auth_len;
    const char *at = auth ? memchr(auth, '@', auth_len) : NULL;
    if (at) {
        host_len -= (size_t)(at + 1 - host);
        host = at + 1;
    }
    const char *pc = host ? memchr(host, ':', host_len) : NULL;
    if (host && host_len && host[0] == '[') {
        const char *close = memchr(host, ']', host_len);
        pc = close && close + 1 < host + host_len && close[1] == ':' ? close + 1 : NULL;
    }
    if (pc) {
        port = pc + 1;
        s->port = xasprintf("%.*s", (int)(host + host_len - port), port);
        host_len = (size_t)(pc - host);
    }
    s->host = host_len ? net_percent_decode(host, host_len) : xstrdup("localhost");
    if (!s->port || !s->port[0]) {
        free(s->port);
        s->port = xasprintf("%d", GLUSTER_DEFAULT_PORT);
    }
    return 0;
}

/* The server.N.* options into the address; QEMU's messages, with its hints. */
static int take_servers(struct gluster_addr *a, struct qimg_opts *o, struct qimg_error *err)
{
    for (size_t i = 0; i < GLUSTER_MAX_SERVERS; i++) {
        char key[64];
        snprintf(key, sizeof(key), "server.%zu.type", i);
        const char *type = qimg_opts_take(o, key);
        snprintf(key, sizeof(key), "server.%zu.transport", i);
        const char *transport = qimg_opts_take(o, key);
        snprintf(key, sizeof(key), "server.%zu.host", i);
        const char *host = qimg_opts_take(o, key);
        snprintf(key, sizeof(key), "server.%zu.port", i);
        const char *port = qimg_opts_take(o, key);
        snprintf(key, sizeof(key), "server.%zu.path", i);
        const char *sock = qimg_opts_take(o, key);
        if (!type && !transport && !host && !port && !sock)
            break;
        if (!type && transport) /* the legacy name of the key, with "tcp" for "inet" */
            type = !strcmp(transport, "tcp") ? "inet" : transport;
        const char *missing = !type ? "type" : NULL;
        struct gluster_server *s = &a->servers[a->nservers];
        if (type && !strcmp(type, "inet")) {
            missing = !host ? "host" : !port ? "port" : NULL;
        } else if (type && !strcmp(type, "unix")) {
            missing = !sock ? "path" : NULL;
            s->is_unix = true;
        } else if (type) {
            return qimg_error_set(err, -EINVAL, "Parameter 'type' may be 'inet' or 'unix'\n"
                                  "hint: check in 'server' array index '%zu'\n%s", i, JSON_USAGE);
        }
        if (missing)
            return qimg_error_set(err, -EINVAL, "Parameter '%s' is missing\n"
                                  "hint: check in 'server' array index '%zu'\n%s", missing, i,
                                  JSON_USAGE);
        if (s->is_unix) {
            s->socket = xstrdup(sock);
        } else {
            s->host = xstrdup(host);
            s->port = xstrdup(port);
        }
        a->nservers++;
    }
    if (!a->nservers)
        return qimg_error_set(err, -EINVAL, "Parameter 'server' is missing\n%s", JSON_USAGE);
    return 0;
}

static int take_addr(struct gluster_addr *a, struct qimg_opts *o, struct qimg_error *err)
{
    uint64_t debug = GLUSTER_DEBUG_DEFAULT;
    const char *dv = qimg_opts_peek(o, "debug");
    if (dv && dv[0] == '-') {
        qimg_opts_take(o, "debug");
        debug = 0; /* below the range: none */
    } else if (qimg_opts_take_uint(o, "debug", &debug, err) < 0) {
        return err->code;
    }
    a->debug = debug > GLUSTER_DEBUG_MAX ? GLUSTER_DEBUG_MAX : (int)debug;
    const char *logfile = qimg_opts_take(o, "logfile");
    a->logfile = xstrdup(logfile ? logfile : GLUSTER_LOGFILE_DEFAULT);
    const char *filename = qimg_opts_take(o, "filename");
    if (filename) {
        a->url = xstrdup(filename);
        return parse_uri(a, filename, err);
    }
    const char *volume = qimg_opts_take(o, "volume");
    if (!volume)
        return qimg_error_set(err, -EINVAL, "Parameter 'volume' is missing\n%s", JSON_USAGE);
    const char *path = qimg_opts_take(o, "path");
    if (!path)
        return qimg_error_set(err, -EINVAL, "Parameter 'path' is missing\n%s", JSON_USAGE);
    a->volume = xstrdup(volume);
    a->path = xstrdup(path);
    return take_servers(a, o, err);
}

/* "Gluster connection ... failed to connect" with a hint naming each server tried. */
static int connect_failed(const struct gluster_addr *a, int code, struct qimg_error *err)
{
    char hint[2048] = "";
    size_t used = 0;
    for (size_t i = 0; i < a->nservers && used < sizeof(hint); i++) {
        const struct gluster_server *s = &a->servers[i];
        int n = s->is_unix ? snprintf(hint + used, sizeof(hint) - used, "failed on socket %s ",
                                      s->socket)
                           : snprintf(hint + used, sizeof(hint) - used,
                                      "failed on host %s and port %s ", s->host, s->port);
        used += n > 0 ? (size_t)n : 0;
    }
    return qimg_error_set(err, code, "Gluster connection for volume %s, path %s failed to "
                          "connect\nhint: %sPlease refer to gluster logs for more info",
                          a->volume, a->path, hint);
}

/* glfs_new + volfile servers + logging + glfs_init, as QEMU's connect. */
static int fs_connect(struct gluster_state *st, struct qimg_error *err)
{
    const struct gluster_addr *a = &st->a;
    int lret = lazy_gfapi_load(err); /* open and create come through here */
    if (lret < 0)
        return lret;
    st->fs = glfs_new(a->volume);
    if (!st->fs)
        return connect_failed(a, -errno ? -errno : -ENOMEM, err);
    for (size_t i = 0; i < a->nservers; i++) {
        const struct gluster_server *s = &a->servers[i];
        int ret = s->is_unix ? glfs_set_volfile_server(st->fs, "unix", s->socket, 0)
                             : glfs_set_volfile_server(st->fs, "tcp", s->host, atoi(s->port));
        if (ret < 0)
            return connect_failed(a, errno ? -errno : -EINVAL, err);
    }
    if (glfs_set_logging(st->fs, a->logfile, a->debug) < 0)
        return connect_failed(a, errno ? -errno : -EINVAL, err);
    errno = 0;
    if (glfs_init(st->fs) != 0) {
        int code = errno ? -errno : -EIO;
        return connect_failed(a, code, err);
    }
    return 0;
}

static void state_free(struct gluster_state *st)
{
    if (st->fd)
        glfs_close(st->fd);
    if (st->fs)
        glfs_fini(st->fs);
    addr_clear(&st->a);
    free(st);
}

/* Keep a node opened by URL named by it: the options parsed from it are not shown. */
static void drop_naming_options(struct qimg_opts *o)
{
    static const char *const keys[] = {"volume", "path", "debug", "logfile", NULL};
    for (const char *const *k = keys; *k; k++)
        qimg_opts_del(o, *k);
}

static int gluster_open_node(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct gluster_state *st = xcalloc(1, sizeof(*st));
    n->opaque = st;
    int ret = take_addr(&st->a, opts, err);
    if (ret == 0)
        ret = fs_connect(st, err);
    if (ret < 0)
        return ret;
    int flags = (n->flags & QIMG_O_RDWR) ? O_RDWR : O_RDONLY;
    if (n->flags & QIMG_O_NOCACHE)
        flags |= O_DIRECT;
    st->fd = glfs_open(st->fs, st->a.path, flags);
    if (!st->fd)
        return qimg_error_errno(err, -errno, "Could not open '%s'",
                                st->a.url ? st->a.url : st->a.path);
    /* Does the volume answer SEEK_DATA? (Older bricks fail it with EINVAL.) */
    st->seek_data = glfs_lseek(st->fd, 0, SEEK_DATA) >= 0 || errno == ENXIO;
    if (st->a.url)
        drop_naming_options(opts);
    return 0;
}

static void gluster_close_node(struct qimg_node *n)
{
    if (n->opaque)
        state_free(n->opaque);
    n->opaque = NULL;
}

static char *gluster_plain_filename(struct qimg_node *n)
{
    const struct gluster_state *st = n->opaque;
    return st->a.url ? xstrdup(st->a.url) : NULL;
}

static int64_t gluster_get_length(struct qimg_node *n)
{
    struct gluster_state *st = n->opaque;
    off_t end = glfs_lseek(st->fd, 0, SEEK_END);
    return end < 0 ? -errno : (int64_t)end;
}

static int64_t gluster_get_allocated_size(struct qimg_node *n)
{
    struct gluster_state *st = n->opaque;
    struct stat sb;
    if (glfs_fstat(st->fd, &sb) < 0)
        return -errno;
    return (int64_t)sb.st_blocks * 512;
}

static int gluster_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                         unsigned flags)
{
    struct gluster_state *st = n->opaque;
    uint8_t *p = buf;
    (void)flags;
    while (len) {
        ssize_t r = glfs_pread(st->fd, p, len, (off_t)off, 0, NULL);
        if (r < 0)
            return -errno;
        if (r == 0) {
            memset(p, 0, len); /* past the end: zeroes, as QEMU fills a short read */
            return 0;
        }
        p += r;
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    return 0;
}

static int gluster_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                          unsigned flags)
{
    struct gluster_state *st = n->opaque;
    const uint8_t *p = buf;
    while (len) {
        ssize_t r = glfs_pwrite(st->fd, p, len, (off_t)off, 0, NULL, NULL);
        if (r <= 0)
            return r < 0 ? -errno : -EIO;
        p += r;
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    if ((flags & QIMG_REQ_FUA) && glfs_fsync(st->fd, NULL, NULL) < 0)
        return -errno;
    return 0;
}

static int gluster_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    struct gluster_state *st = n->opaque;
    (void)flags;
    return glfs_zerofill(st->fd, (off_t)off, (off_t)len) < 0 ? -errno : 0;
}

static int gluster_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct gluster_state *st = n->opaque;
    return glfs_discard(st->fd, (off_t)off, (size_t)len) < 0 ? -errno : 0;
}

static int gluster_flush(struct qimg_node *n)
{
    struct gluster_state *st = n->opaque;
    return glfs_fsync(st->fd, NULL, NULL) < 0 ? -errno : 0;
}

/* Data or a hole at off, by SEEK_DATA/SEEK_HOLE (everything is data when unsupported). */
static int gluster_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                                struct qimg_block_status *bs)
{
    struct gluster_state *st = n->opaque;
    bs->offset = off;
    bs->file = n;
    bs->bytes = len;
    bs->flags = QIMG_BLK_DATA | QIMG_BLK_OFFSET_VALID;
    if (!st->seek_data)
        return 0;
    off_t data = glfs_lseek(st->fd, (off_t)off, SEEK_DATA);
    if (data < 0 && errno == ENXIO) { /* a hole up to the end */
        bs->flags = QIMG_BLK_ZERO | QIMG_BLK_OFFSET_VALID;
        return 0;
    }
    if (data < 0)
        return 0;
    if ((uint64_t)data > off) {
        uint64_t run = (uint64_t)data - off;
        bs->bytes = run < len ? run : len;
        bs->flags = QIMG_BLK_ZERO | QIMG_BLK_OFFSET_VALID;
        return 0;
    }
    off_t hole = glfs_lseek(st->fd, (off_t)off, SEEK_HOLE);
    if (hole > (off_t)off && (uint64_t)hole - off < len)
        bs->bytes = (uint64_t)hole - off;
    return 0;
}

/* To size with prealloc: off (truncate), falloc (allocate), full (allocate and zero). */
static int do_truncate(glfs_fd_t *fd, uint64_t size, enum qimg_prealloc prealloc,
                       struct qimg_error *err)
{
    struct stat sb;
    uint64_t have = glfs_fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    switch (prealloc) {
    case QIMG_PREALLOC_OFF:
        break;
    case QIMG_PREALLOC_FALLOC:
    case QIMG_PREALLOC_FULL:
        if (size > have && glfs_fallocate(fd, 0, (off_t)have, (size_t)(size - have)) < 0)
            return qimg_error_errno(err, -errno, "Could not preallocate data for the new file");
        if (prealloc == QIMG_PREALLOC_FULL && size > have &&
            glfs_zerofill(fd, (off_t)have, (off_t)(size - have)) < 0)
            return qimg_error_errno(err, -errno, "Could not zerofill the new area");
        break;
    default:
        return qimg_error_set(err, -ENOTSUP, "Unsupported preallocation mode: %s",
                              qimg_prealloc_name(prealloc));
    }
    if (glfs_ftruncate(fd, (off_t)size, NULL, NULL) < 0)
        return qimg_error_errno(err, -errno, "Could not resize file");
    return 0;
}

static int gluster_truncate(struct qimg_node *n, uint64_t size, bool exact,
                            enum qimg_prealloc prealloc, struct qimg_error *err)
{
    struct gluster_state *st = n->opaque;
    (void)exact;
    return do_truncate(st->fd, size, prealloc, err);
}

static int gluster_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    uint64_t size = 0;
    enum qimg_prealloc prealloc = QIMG_PREALLOC_OFF;
    if (qimg_opts_take_size(opts, "size", &size, err) < 0)
        return err->code;
    const char *pa = qimg_opts_take(opts, "preallocation");
    if (pa && qimg_prealloc_parse(pa, &prealloc) < 0)
        return qimg_error_set(err, -EINVAL, "Parameter 'preallocation' does not accept value '%s'",
                              pa);
    struct qimg_opts *o = qimg_opts_new();
    qimg_opts_set(o, "filename", filename);
    const char *debug = qimg_opts_take(opts, "debug");
    const char *logfile = qimg_opts_take(opts, "logfile");
    if (debug)
        qimg_opts_set(o, "debug", debug);
    if (logfile)
        qimg_opts_set(o, "logfile", logfile);
    struct gluster_state *st = xcalloc(1, sizeof(*st));
    int ret = take_addr(&st->a, o, err);
    if (ret == 0)
        ret = fs_connect(st, err);
    if (ret == 0) {
        st->fd = glfs_creat(st->fs, st->a.path, O_WRONLY | O_CREAT | O_TRUNC, S_IRUSR | S_IWUSR);
        if (!st->fd)
            ret = qimg_error_errno(err, -errno, "Could not create image");
        else
            ret = do_truncate(st->fd, size, prealloc, err);
    }
    state_free(st);
    qimg_opts_free(o);
    return ret;
}

static bool gluster_has_zero_init(struct qimg_node *n)
{
    (void)n;
    return true; /* a new file of the volume reads as zeroes */
}

const struct qimg_driver qimg_gluster_driver = {
    .name = "gluster",
    .is_protocol = true,
    .protocol_prefix = "gluster",
    .protocol_aliases = gluster_aliases,
    .create_opts = gluster_create_opts,
    .open_opts = gluster_open_opts,
    .open = gluster_open_node,
    .close = gluster_close_node,
    .create = gluster_create,
    .get_length = gluster_get_length,
    .get_allocated_size = gluster_get_allocated_size,
    .pread = gluster_pread,
    .pwrite = gluster_pwrite,
    .pwrite_zeroes = gluster_pwrite_zeroes,
    .pdiscard = gluster_pdiscard,
    .flush = gluster_flush,
    .truncate = gluster_truncate,
    .block_status = gluster_block_status,
    .has_zero_init = gluster_has_zero_init,
    .strong_opts = gluster_strong_opts,
    .plain_filename = gluster_plain_filename,
};
