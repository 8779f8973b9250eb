/* SPDX-License-Identifier: MIT */
/*
 * The "nfs" protocol: a file on an NFS server through libnfs (NFSv3), as
 * QEMU's nfs driver reaches it: nfs://host/export/dir/file[?uid=N&gid=N&
 * tcp-syncnt=N&readahead=N&pagecache=N&debug=N] or the server.type/
 * server.host/path/user/group/tcp-syn-count/readahead-size/page-cache-size/
 * debug options. The export mounted is the path up to its last slash, the
 * file the rest. One libnfs context carries every request, under a mutex
 * (a context is not thread-safe).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/builtin.h"
#include "protocols/lazy-nfs.h"
#include "protocols/net-util.h"
#include "qimg/driver.h"
#include "util/mem.h"

/* libnfs, loaded by client_open. */
#ifdef QIMG_SONAME_LIBNFS
LAZYLIB_DEFINE(nfs, QIMG_SONAME_LIBNFS, LAZY_NFS_SYMS);
#endif

#define NFS_MAX_READAHEAD (1u << 20)  /* bytes: more is cut down, with a warning */
#define NFS_MAX_PAGECACHE 2048u       /* pages: likewise */
#define NFS_MAX_DEBUG 2               /* libnfs's most verbose level that QEMU allows */
#define NFS_IO_CHUNK_DEFAULT (1u << 20) /* per READ/WRITE when the server names no limit */
#define NFS_RECONNECTS 1              /* a connection lost mid-request is retried once */

struct nfs_addr {
    char *host, *path;    /* path: export and file, "/export/dir/file" */
    int64_t uid, gid;     /* 0: not given (as QEMU's name shows them) */
    int64_t syncnt, readahead, pagecache, debug;
    bool has_syncnt, has_readahead, has_pagecache, has_debug;
};

struct nfs_state {
    struct nfs_addr a;
    struct nfs_context *ctx;
    struct nfsfh *fh;
    uint64_t length;
    bool regular;
    pthread_mutex_t lock;
};

static const struct qimg_opt_desc nfs_open_opts[] = {
    {"filename", QIMG_OPT_STRING, "URL of the NFS file", NULL},
    {"server.type", QIMG_OPT_STRING, "Transport of the server address (inet)", NULL},
    {"server.host", QIMG_OPT_STRING, "Host name or address of the server", NULL},
    {"path", QIMG_OPT_STRING, "Path of the image on the server", NULL},
    {"user", QIMG_OPT_NUMBER, "UID to use towards the server", NULL},
    {"group", QIMG_OPT_NUMBER, "GID to use towards the server", NULL},
    {"tcp-syn-count", QIMG_OPT_NUMBER, "Number of SYNs for a TCP connection", NULL},
    {"readahead-size", QIMG_OPT_NUMBER, "Readahead size in bytes", NULL},
    {"page-cache-size", QIMG_OPT_NUMBER, "Page cache size in pages", NULL},
    {"debug", QIMG_OPT_NUMBER, "libnfs debug level (0-2)", NULL},
    {0},
};

static const struct qimg_opt_desc nfs_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {0},
};

static void addr_clear(struct nfs_addr *a)
{
    free(a->host);
    free(a->path);
    memset(a, 0, sizeof(*a));
}

/* A URL query value as QEMU reads it: an unsigned number in C notation (10, 0x10, 010),
 * leading blanks allowed, nothing after it; into *out. */
static bool parse_query_number(const char *v, uint64_t *out)
{
    while (*v == ' ' || *v == '\t' || *v == '\n')
        v++;
    if (*v == '-' || !*v)
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 0);
    if (errno || *end || end == v)
        return false;
    *out = n;
    return true;
}

/* One "name=value" of the query into its option, in QEMU's order of checks. */
static int parse_query_param(const char *p, size_t len, struct qimg_opts *o,
                             struct qimg_error *err)
{
    static const char *const names[][2] = {
        {"uid", "user"},
        {"gid", "group"},
        {"tcp-syncnt", "tcp-syn-count"},
        {"readahead", "readahead-size"},
        {"pagecache", "page-cache-size"},
        {"debug", "debug"},
    };
    const char *eq = memchr(p, '=', len);
    char *name = net_percent_decode(p, eq ? (size_t)(eq - p) : len);
    int ret = 0;
    if (!eq) {
        ret = qimg_error_set(err, -EINVAL, "Value for NFS parameter expected: %s", name);
        goto out;
    }
    char *value = net_percent_decode(eq + 1, (size_t)(p + len - eq - 1));
    uint64_t n = 0;
    bool ok = parse_query_number(value, &n);
    free(value);
    if (!ok) {
        ret = qimg_error_set(err, -EINVAL, "Illegal value for NFS parameter: %s", name);
        goto out;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!strcmp(name, names[i][0])) {
            char num[24];
            snprintf(num, sizeof(num), "%" PRIu64, n);
            qimg_opts_set(o, names[i][1], num);
            goto out;
        }
    }
    ret = qimg_error_set(err, -EINVAL, "Unknown NFS parameter name: %s", name);
out:
    free(name);
    return ret;
}

/* nfs://[user@]host[:port]/path[?query] into options, as QEMU's parse does (the user and
 * port are ignored: libnfs finds the server's ports through its portmapper). */
static int parse_uri(const char *uri, struct qimg_opts *o, struct qimg_error *err)
{
    if (strncmp(uri, "nfs:", 4))
        return qimg_error_set(err, -EINVAL, "URI scheme must be 'nfs'");
    const char *p = uri + 4;
    size_t auth_len = 0;
    const char *auth = NULL;
    if (!strncmp(p, "//", 2)) {
        auth = p + 2;
        auth_len = strcspn(auth, "/?#");
        p = auth + auth_len;
    }
    const char *at = auth ? memchr(auth, '@', auth_len) : NULL;
    if (at) {
        auth_len -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    size_t host_len = auth_len;
    if (auth && auth_len && auth[0] == '[') {
        const char *close = memchr(auth, ']', auth_len);
        if (close)
            host_len = (size_t)(close + 1 - auth);
    } else if (auth) {
        const char *colon = memchr(auth, ':', auth_len);
        if (colon)
            host_len = (size_t)(colon - auth);
    }
    if (!auth || !host_len)
        return qimg_error_set(err, -EINVAL, "missing hostname in URI");
    size_t path_len = strcspn(p, "?#");
    if (!path_len)
        return qimg_error_set(err, -EINVAL, "missing file path in URI");
    char *host = net_percent_decode(auth, host_len);
    char *path = net_percent_decode(p, path_len);
    qimg_opts_set(o, "server.type", "inet");
    qimg_opts_set(o, "server.host", host);
    qimg_opts_set(o, "path", path);
    free(host);
    free(path);
    const char *q = p[path_len] == '?' ? p + path_len + 1 : NULL;
    while (q && *q && *q != '#') {
        size_t len = strcspn(q, "&#");
        if (len) {
            int ret = parse_query_param(q, len, o, err);
            if (ret < 0)
                return ret;
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

/* An integer option (QEMU's "int"): -1 if it is not one. */
static int take_int(struct qimg_opts *o, const char *key, int64_t *out, bool *has,
                    struct qimg_error *err)
{
    const char *v = qimg_opts_take(o, key);
    if (has)
        *has = v != NULL;
    if (!v)
        return 0;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 0);
    if (errno || !*v || *end)
        return qimg_error_set(err, -EINVAL, "Parameter '%s' expects integer", key);
    *out = n;
    return 0;
}

/* Options (after the URL, if any) into the address; QEMU's checks, order and messages. */
static int take_addr(struct nfs_addr *a, struct qimg_opts *o, struct qimg_error *err)
{
    const char *filename = qimg_opts_take(o, "filename");
    if (filename) {
        int ret = parse_uri(filename, o, err);
        if (ret < 0)
            return ret;
    }
    const char *type = qimg_opts_take(o, "server.type");
    const char *host = qimg_opts_take(o, "server.host");
    if (!type && !host)
        return qimg_error_set(err, -EINVAL, "Parameter 'server' is missing");
    if (!type)
        return qimg_error_set(err, -EINVAL, "Parameter 'server.type' is missing");
    if (strcmp(type, "inet"))
        return qimg_error_set(err, -EINVAL, "Parameter 'type' does not accept value '%s'", type);
    if (!host)
        return qimg_error_set(err, -EINVAL, "Parameter 'server.host' is missing");
    const char *path = qimg_opts_take(o, "path");
    if (!path)
        return qimg_error_set(err, -EINVAL, "Parameter 'path' is missing");
    a->host = xstrdup(host);
    a->path = xstrdup(path);
    if (take_int(o, "user", &a->uid, NULL, err) < 0 || take_int(o, "group", &a->gid, NULL, err) < 0 ||
        take_int(o, "tcp-syn-count", &a->syncnt, &a->has_syncnt, err) < 0 ||
        take_int(o, "readahead-size", &a->readahead, &a->has_readahead, err) < 0 ||
        take_int(o, "page-cache-size", &a->pagecache, &a->has_pagecache, err) < 0 ||
        take_int(o, "debug", &a->debug, &a->has_debug, err) < 0)
        return err->code;
    return 0;
}

/* The context's settings from the address: QEMU's order, limits and warnings. */
static int configure(struct nfs_state *s, unsigned flags, struct qimg_error *err)
{
    struct nfs_addr *a = &s->a;
    if (a->uid)
        nfs_set_uid(s->ctx, (int)a->uid);
    if (a->gid)
        nfs_set_gid(s->ctx, (int)a->gid);
    if (a->has_syncnt)
        nfs_set_tcp_syncnt(s->ctx, (int)a->syncnt);
    if (a->has_readahead) {
        if (flags & QIMG_O_NOCACHE)
            return qimg_error_set(err, -EINVAL, "Cannot enable NFS readahead if cache.direct = on");
        if (a->readahead > NFS_MAX_READAHEAD || a->readahead < 0) {
            qimg_warn("Truncating NFS readahead size to %u\n", NFS_MAX_READAHEAD);
            a->readahead = NFS_MAX_READAHEAD;
        }
        nfs_set_readahead(s->ctx, (uint32_t)a->readahead);
    }
    if (a->has_pagecache) {
        if (flags & QIMG_O_NOCACHE)
            return qimg_error_set(err, -EINVAL, "Cannot enable NFS pagecache if cache.direct = on");
        if (a->pagecache > NFS_MAX_PAGECACHE || a->pagecache < 0) {
            qimg_warn("Truncating NFS pagecache size to %u pages\n", NFS_MAX_PAGECACHE);
            a->pagecache = NFS_MAX_PAGECACHE;
        }
        nfs_set_pagecache(s->ctx, (uint32_t)a->pagecache);
    }
    if (a->has_debug) {
        if (a->debug > NFS_MAX_DEBUG) {
            qimg_warn("Limiting NFS debug level to %d\n", NFS_MAX_DEBUG);
            a->debug = NFS_MAX_DEBUG;
        }
        nfs_set_debug(s->ctx, (int)a->debug);
    }
    return 0;
}

/* Mount the export (the path up to its last slash) and open or create the file. */
static int client_open(struct nfs_state *s, unsigned flags, bool create, struct qimg_error *err)
{
    int lret = lazy_nfs_load(err); /* open and create come through here */
    if (lret < 0)
        return lret;
    s->ctx = nfs_init_context();
    if (!s->ctx)
        return qimg_error_set(err, -EINVAL, "Failed to init NFS context");
    const char *slash = strrchr(s->a.path, '/');
    if (!slash)
        return qimg_error_set(err, -EINVAL, "Invalid URL specified");
    int ret = configure(s, flags, err);
    if (ret < 0)
        return ret;
    /* A server that goes away fails the request after one attempt to reconnect,
     * rather than keeping it waiting for ever (libnfs's default, and so qemu-img's). */
    nfs_set_autoreconnect(s->ctx, NFS_RECONNECTS);
    char *export = xasprintf("%.*s", (int)(slash - s->a.path), s->a.path);
    ret = nfs_mount(s->ctx, s->a.host, export);
    free(export);
    if (ret < 0)
        return qimg_error_set(err, ret, "Failed to mount nfs share: %s", nfs_get_error(s->ctx));
    if (create) {
        ret = nfs_creat(s->ctx, slash, 0600, &s->fh);
        if (ret < 0)
            return qimg_error_set(err, ret, "Failed to create file: %s", nfs_get_error(s->ctx));
    } else {
        ret = nfs_open(s->ctx, slash, (flags & QIMG_O_RDWR) ? O_RDWR : O_RDONLY, &s->fh);
        if (ret < 0)
            return qimg_error_set(err, ret, "Failed to open file : %s", nfs_get_error(s->ctx));
    }
    struct nfs_stat_64 st;
    ret = nfs_fstat64(s->ctx, s->fh, &st);
    if (ret < 0)
        return qimg_error_set(err, ret, "Failed to fstat file: %s", nfs_get_error(s->ctx));
    s->length = st.nfs_size;
    s->regular = S_ISREG(st.nfs_mode);
    return 0;
}

static void state_free(struct nfs_state *s)
{
    if (s->ctx) {
        if (s->fh)
            nfs_close(s->ctx, s->fh);
        nfs_destroy_context(s->ctx);
    }
    addr_clear(&s->a);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static struct nfs_state *state_new(void)
{
    struct nfs_state *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

static int nfs_open_node(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct nfs_state *s = state_new();
    n->opaque = s;
    int ret = take_addr(&s->a, opts, err);
    if (ret == 0)
        ret = qimg_check_qapi_options(opts, err);
    if (ret == 0)
        ret = client_open(s, n->flags, false, err);
    return ret;
}

static void nfs_close_node(struct qimg_node *n)
{
    if (n->opaque)
        state_free(n->opaque);
    n->opaque = NULL;
}

/* nfs://host/path, with the uid and gid that were given (QEMU's name for the node). */
static char *nfs_plain_filename(struct qimg_node *n)
{
    const struct nfs_addr *a = &((struct nfs_state *)n->opaque)->a;
    char ids[64] = "";
    if (a->uid && a->gid)
        snprintf(ids, sizeof(ids), "?uid=%" PRId64 "&gid=%" PRId64, a->uid, a->gid);
    else if (a->uid)
        snprintf(ids, sizeof(ids), "?uid=%" PRId64, a->uid);
    else if (a->gid)
        snprintf(ids, sizeof(ids), "?gid=%" PRId64, a->gid);
    return xasprintf("nfs://%s%s%s", a->host, a->path, ids);
}

static int64_t nfs_get_length(struct qimg_node *n)
{
    struct nfs_state *s = n->opaque;
    pthread_mutex_lock(&s->lock);
    int64_t len = (int64_t)s->length;
    pthread_mutex_unlock(&s->lock);
    return len;
}

static int64_t nfs_get_allocated_size(struct qimg_node *n)
{
    struct nfs_state *s = n->opaque;
    struct nfs_stat_64 st;
    pthread_mutex_lock(&s->lock);
    int ret = nfs_fstat64(s->ctx, s->fh, &st);
    pthread_mutex_unlock(&s->lock);
    if (ret < 0)
        return ret;
    if (st.nfs_blocks > (uint64_t)INT64_MAX / 512)
        return -EOVERFLOW;
    return (int64_t)(st.nfs_blocks * 512);
}

static uint64_t io_chunk(uint64_t server_max)
{
    return server_max ? server_max : NFS_IO_CHUNK_DEFAULT;
}

/*
 * One asynchronous request in flight. libnfs's synchronous calls replace the
 * error a failed request left with their own ("pread call failed with ..."),
 * while QEMU reports the request's ("NFS: Read failed with NFS3ERR_ISDIR"):
 * so requests are sent async and the context serviced here until they end.
 * A call given up on (the connection broke) is freed by its late callback.
 */
struct nfs_call {
    bool done, abandoned;
    int status;
    uint8_t *buf; /* reads: where the data goes */
    char *error;  /* the failed request's message */
};

static void call_done(int status, struct nfs_context *ctx, void *data, void *opaque)
{
    struct nfs_call *c = opaque;
    if (c->abandoned) {
        free(c);
        return;
    }
    c->status = status;
    if (status > 0 && c->buf && data)
        memcpy(c->buf, data, (size_t)status);
    if (status < 0)
        c->error = xstrdup(nfs_get_error(ctx));
    c->done = true;
}

/* Service the context until c ends; its status, or -errno when the connection fails. */
static int call_wait(struct nfs_state *s, struct nfs_call *c)
{
    while (!c->done) {
        struct pollfd pfd = {.fd = nfs_get_fd(s->ctx), .events = (short)nfs_which_events(s->ctx)};
        if (poll(&pfd, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            c->status = -errno;
            break;
        }
        if (nfs_service(s->ctx, pfd.revents) < 0) {
            c->status = -EIO;
            break;
        }
    }
    if (!c->done) {
        c->error = xstrdup(nfs_get_error(s->ctx));
        c->abandoned = true; /* its callback may still come */
    }
    return c->status;
}

/* End of a request: QEMU reports a failure's words on the spot, then fails with its errno. */
static int call_end(struct nfs_call *c, int queued)
{
    int ret = queued < 0 ? queued : c->status;
    if (ret < 0 && c->error)
        qimg_report("NFS Error: %s", c->error);
    free(c->error);
    c->error = NULL;
    if (queued < 0 || !c->abandoned)
        free(c);
    return ret;
}

static int do_pread(struct nfs_state *s, uint64_t off, uint64_t len, uint8_t *buf)
{
    struct nfs_call *c = xcalloc(1, sizeof(*c));
    c->buf = buf;
    int q = nfs_pread_async(s->ctx, s->fh, off, len, call_done, c);
    if (q < 0)
        c->error = xstrdup(nfs_get_error(s->ctx));
    else
        call_wait(s, c);
    return call_end(c, q);
}

static int do_pwrite(struct nfs_state *s, uint64_t off, uint64_t len, const uint8_t *buf)
{
    struct nfs_call *c = xcalloc(1, sizeof(*c));
    int q = nfs_pwrite_async(s->ctx, s->fh, off, len, buf, call_done, c);
    if (q < 0)
        c->error = xstrdup(nfs_get_error(s->ctx));
    else
        call_wait(s, c);
    return call_end(c, q);
}

static int do_fsync(struct nfs_state *s)
{
    struct nfs_call *c = xcalloc(1, sizeof(*c));
    int q = nfs_fsync_async(s->ctx, s->fh, call_done, c);
    if (q < 0)
        c->error = xstrdup(nfs_get_error(s->ctx));
    else
        call_wait(s, c);
    return call_end(c, q);
}

static int nfs_pread_node(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                          unsigned flags)
{
    struct nfs_state *s = n->opaque;
    uint8_t *p = buf;
    (void)flags;
    int ret = 0;
    pthread_mutex_lock(&s->lock);
    uint64_t chunk = io_chunk(nfs_get_readmax(s->ctx));
    while (len) {
        uint64_t now = len < chunk ? len : chunk;
        int r = do_pread(s, off, now, p);
        if (r < 0) {
            ret = r;
            break;
        }
        if (r == 0) {
            memset(p, 0, len); /* past the end of the file: zeroes, as a short read in QEMU */
            break;
        }
        p += r;
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int nfs_pwrite_node(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                           unsigned flags)
{
    struct nfs_state *s = n->opaque;
    const uint8_t *p = buf;
    int ret = 0;
    pthread_mutex_lock(&s->lock);
    uint64_t chunk = io_chunk(nfs_get_writemax(s->ctx));
    while (len) {
        uint64_t now = len < chunk ? len : chunk;
        int r = do_pwrite(s, off, now, p);
        if (r <= 0) {
            ret = r < 0 ? r : -EIO;
            break;
        }
        p += r;
        off += (uint64_t)r;
        len -= (uint64_t)r;
        if (off > s->length)
            s->length = off;
    }
    if (ret == 0 && (flags & QIMG_REQ_FUA))
        ret = do_fsync(s);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int nfs_flush_node(struct qimg_node *n)
{
    struct nfs_state *s = n->opaque;
    pthread_mutex_lock(&s->lock);
    int ret = do_fsync(s);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int nfs_truncate_node(struct qimg_node *n, uint64_t size, bool exact,
                             enum qimg_prealloc prealloc, struct qimg_error *err)
{
    struct nfs_state *s = n->opaque;
    (void)exact;
    if (prealloc != QIMG_PREALLOC_OFF)
        return qimg_error_set(err, -ENOTSUP, "Unsupported preallocation mode '%s'",
                              qimg_prealloc_name(prealloc));
    pthread_mutex_lock(&s->lock);
    int ret = nfs_ftruncate(s->ctx, s->fh, size);
    if (ret == 0)
        s->length = size;
    pthread_mutex_unlock(&s->lock);
    return ret < 0 ? qimg_error_errno(err, ret, "Failed to truncate file") : 0;
}

static int nfs_create_image(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    uint64_t size = 0;
    if (qimg_opts_take_size(opts, "size", &size, err) < 0)
        return err->code;
    struct qimg_opts *o = qimg_opts_new();
    qimg_opts_set(o, "filename", filename);
    struct nfs_state *s = state_new();
    int ret = take_addr(&s->a, o, err);
    if (ret == 0)
        ret = client_open(s, QIMG_O_RDWR, true, err);
    if (ret == 0) {
        ret = nfs_ftruncate(s->ctx, s->fh, size);
        if (ret < 0)
            qimg_error_errno(err, ret, "Failed to truncate file");
    }
    state_free(s);
    qimg_opts_free(o);
    return ret;
}

/* A regular file reads as zeroes where nothing was written (QEMU: S_ISREG). */
static bool nfs_has_zero_init(struct qimg_node *n)
{
    return ((struct nfs_state *)n->opaque)->regular;
}

const struct qimg_driver qimg_nfs_driver = {
    .name = "nfs",
    .is_protocol = true,
    .qapi_options = true,
    .protocol_prefix = "nfs",
    .create_opts = nfs_create_opts,
    .open_opts = nfs_open_opts,
    .open = nfs_open_node,
    .close = nfs_close_node,
    .create = nfs_create_image,
    .get_length = nfs_get_length,
    .get_allocated_size = nfs_get_allocated_size,
    .pread = nfs_pread_node,
    .pwrite = nfs_pwrite_node,
    .flush = nfs_flush_node,
    .truncate = nfs_truncate_node,
    .has_zero_init = nfs_has_zero_init,
    .plain_filename = nfs_plain_filename,
};
