/* SPDX-License-Identifier: MIT */
/*
 * The "nbd" protocol: an export of an NBD server (nbd-proto.md), through
 * libnbd. Requests from many threads are in flight at once on one
 * connection (nbd-conn.c); servers that allow multi-conn get several
 * connections for reads and writes alike. Block status comes from the
 * base:allocation context (or the one x-dirty-bitmap names), whose HOLE and
 * ZERO bits become qimg's DATA and ZERO as in QEMU's client.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/builtin.h"
#include "protocols/nbd-conn.h"
#include "protocols/nbd.h"
#include "protocols/net-util.h"
#include "qimg/driver.h"
#include "qimg/object.h"
#include "util/mem.h"

/* libnbd, loaded by qnbd_open. */
#ifdef QIMG_SONAME_LIBNBD
LAZYLIB_DEFINE(nbd, QIMG_SONAME_LIBNBD, LAZY_NBD_SYMS);
#endif

#define NBD_MAX_REQUEST (32u << 20) /* QEMU's NBD_MAX_BUFFER_SIZE */
#define NBD_MAX_STATUS_REQUEST (1u << 30)
#define NBD_MAX_CONNS 4
#define NBD_STATE_HOLE 1u
#define NBD_STATE_ZERO 2u
#define NBD_STATUS_CACHE 256 /* extents kept from one block status reply */

struct nbd_state {
    struct nbd_addr addr;
    char *context; /* meta context for block status */
    struct qimg_tls_creds tls; /* .type NULL: no TLS */
    struct nbd_conn conns[NBD_MAX_CONNS];
    unsigned nconns;
    unsigned next_conn; /* round robin over conns */
    uint64_t size;
    uint32_t max_request;
    bool can_flush, can_trim, can_zero, can_fast_zero, can_fua, has_status;

    /* Extents of the last block status reply; writes invalidate them. */
    pthread_mutex_t cache_lock;
    uint64_t cache_start, cache_end;
    uint32_t cache[NBD_STATUS_CACHE * 2];
    size_t cache_n;
};

static const struct qimg_opt_desc qnbd_open_opts[] = {
    {"filename", QIMG_OPT_STRING, "URL to the NBD image", NULL},
    {"export", QIMG_OPT_STRING, "Name of the NBD export to open", NULL},
    {"tls-creds", QIMG_OPT_STRING, "ID of the TLS credentials to use", NULL},
    {"tls-hostname", QIMG_OPT_STRING, "Override hostname for validating TLS x509 certificate",
     NULL},
    {"x-dirty-bitmap", QIMG_OPT_STRING, "experimental: expose named dirty bitmap in place of "
                                        "block status", NULL},
    {"reconnect-delay", QIMG_OPT_NUMBER, "On an unexpected disconnect, the nbd client tries to "
                                         "connect again until succeeding or encountering a "
                                         "serious error", NULL},
    {"open-timeout", QIMG_OPT_NUMBER, "In seconds. If zero, the nbd driver tries the connection "
                                      "only once", NULL},
    {0},
};

/* The options that name the node in JSON when no nbd:// name can say them. */
static const char *const qnbd_strong_opts[] = {"path", "host", "port", "export", "tls-creds",
                                              "tls-hostname", "server", NULL};

static struct nbd_conn *pick_conn(struct nbd_state *s)
{
    unsigned i = __atomic_fetch_add(&s->next_conn, 1, __ATOMIC_RELAXED);
    return &s->conns[i % s->nconns];
}

/* The server's text for a refused option, caught from libnbd's debug output. */
struct handshake_log {
    char *server_msg;
};

static int on_debug(void *opaque, const char *context, const char *msg)
{
    struct handshake_log *log = opaque;
    static const char tag[] = "handshake: server error message: ";
    (void)context;
    if (!strncmp(msg, tag, strlen(tag)) && !log->server_msg)
        log->server_msg = xstrdup(msg + strlen(tag));
    return 0;
}

/*
 * QEMU reads the server's greeting itself and names what is wrong with it;
 * peek at it (libnbd then reads it again) to say the same.
 */
static int check_greeting(int fd, struct qimg_error *err)
{
    uint8_t magic[8];
    ssize_t r;
    do {
        r = recv(fd, magic, sizeof(magic), MSG_PEEK | MSG_WAITALL);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return qimg_error_errno(err, -errno, "Failed to read initial magic");
    if (r < (ssize_t)sizeof(magic))
        return qimg_error_set(err, -EIO, "Failed to read initial magic: Unexpected end-of-file "
                                         "before all data were read");
    if (memcmp(magic, "NBDMAGIC", 8)) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | magic[i];
        return qimg_error_set(err, -EINVAL, "Bad initial magic received: 0x%016" PRIx64, v);
    }
    return 0;
}

/* libnbd's message without its "nbd_connect_socket: " prefix. */
static const char *libnbd_message(void)
{
    const char *msg = nbd_get_error();
    if (!msg)
        return "Input/output error";
    const char *colon = strstr(msg, ": ");
    if (colon && !strncmp(msg, "nbd_", 4))
        msg = colon + 2;
    return msg;
}

/* What a connection is told before its handshake: export, context, TLS. */
static void prepare_handle(const struct nbd_state *s, struct nbd_handle *h)
{
    nbd_set_export_name(h, s->addr.export ? s->addr.export : "");
    nbd_add_meta_context(h, s->context);
    if (!s->tls.type)
        return;
    nbd_set_tls(h, LIBNBD_TLS_REQUIRE);
    if (!strcmp(s->tls.type, "tls-creds-x509")) {
        nbd_set_tls_certificates(h, s->tls.dir);
        nbd_set_tls_verify_peer(h, s->tls.verify_peer);
    } else {
        char *keys = xasprintf("%s/keys.psk", s->tls.dir);
        nbd_set_tls_psk_file(h, keys);
        free(keys);
        nbd_set_tls_username(h, s->tls.username ? s->tls.username : "qemu");
    }
}

/* Connect and negotiate one connection; the first also checks what QEMU checks. */
/*
 * x509 over TCP: libnbd checks that the certificate names the host only
 * when it makes the connection itself (from a socket it knows no name).
 */
static bool libnbd_connects(const struct nbd_state *s)
{
    return s->tls.type && !strcmp(s->tls.type, "tls-creds-x509") &&
           s->addr.type == NBD_ADDR_INET;
}

/* A failed handshake in QEMU's words where they are known. */
static int handshake_error(const struct nbd_state *s, const struct handshake_log *log,
                           struct qimg_error *err)
{
    int e = nbd_get_errno();
    const char *msg = libnbd_message();
    const char *sep = log->server_msg ? "\nserver reported: " : "";
    const char *server = log->server_msg ? log->server_msg : "";
    if (e == ENOENT && strstr(msg, "no export"))
        return qimg_error_set(err, -ENOENT, "Requested export not available%s%s", sep, server);
    if (strstr(msg, "requires TLS"))
        return qimg_error_set(err, -EINVAL, "TLS negotiation required before option 7 (go)\n"
                                            "Did you forget a valid tls-creds?%s%s", sep, server);
    if (libnbd_connects(s) && !strncmp(msg, "connect: ", 9) && e)
        return qimg_error_errno(err, -e, "Failed to connect to '%s:%s'", s->addr.host,
                                s->addr.port);
    return qimg_error_set(err, -(e ? e : EIO), "%s", msg);
}

/* Connect and negotiate one connection; the first also checks what QEMU checks. */
static int conn_open(struct nbd_state *s, struct nbd_conn *c, bool first, struct qimg_error *err)
{
    int fd = -1, ret;
    if (!libnbd_connects(s)) {
        fd = nbd_addr_connect(&s->addr, err);
        if (fd < 0)
            return fd;
        ret = first ? check_greeting(fd, err) : 0;
        if (ret < 0) {
            close(fd);
            return ret;
        }
    }
    struct nbd_handle *h = nbd_create();
    if (!h) {
        if (fd >= 0)
            close(fd);
        return qimg_error_set(err, -ENOMEM, "%s", libnbd_message());
    }
    struct handshake_log log = {0};
    prepare_handle(s, h);
    nbd_set_debug_callback(h, (nbd_debug_callback){.callback = on_debug, .user_data = &log});
    nbd_set_debug(h, true);
    /* With fd, the handle owns it from here. */
    ret = fd >= 0 ? nbd_connect_socket(h, fd) : nbd_connect_tcp(h, s->addr.host, s->addr.port);
    nbd_set_debug(h, false);
    nbd_clear_debug_callback(h);
    if (ret < 0)
        ret = handshake_error(s, &log, err);
    free(log.server_msg);
    if (ret < 0) {
        nbd_close(h);
        return ret;
    }
    ret = nbd_conn_start(c, h);
    if (ret < 0) {
        nbd_close(h);
        c->h = NULL;
        return qimg_error_errno(err, ret, "Could not start the NBD connection");
    }
    return 0;
}

/* What the export allows, read from the first connection's handshake. */
static int read_export_info(struct qimg_node *n, struct nbd_state *s, struct qimg_error *err)
{
    struct nbd_handle *h = s->conns[0].h;
    int64_t size = nbd_get_size(h);
    if (size < 0)
        return qimg_error_set(err, -EIO, "%s", libnbd_message());
    s->size = (uint64_t)size;
    if ((n->flags & QIMG_O_RDWR) && nbd_is_read_only(h) == 1)
        return qimg_error_set(err, -EACCES, "Could not open image: Permission denied");
    s->can_flush = nbd_can_flush(h) == 1;
    s->can_trim = nbd_can_trim(h) == 1;
    s->can_zero = nbd_can_zero(h) == 1;
    s->can_fast_zero = nbd_can_fast_zero(h) == 1;
    s->can_fua = nbd_can_fua(h) == 1;
    s->has_status = nbd_can_meta_context(h, s->context) == 1;
    int64_t min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
    int64_t max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
    if (min > 1 && min <= 65536 && !(min & (min - 1)))
        n->request_alignment = (uint32_t)min;
    s->max_request = NBD_MAX_REQUEST;
    if (max > 0 && (uint64_t)max < s->max_request)
        s->max_request = (uint32_t)max / n->request_alignment * n->request_alignment;
    if (!s->max_request)
        s->max_request = n->request_alignment;
    return 0;
}

/*
 * More connections for servers that promise multi-conn consistency. They
 * are a bonus: a server that does not take them (qemu-nbd -e 1 advertises
 * multi-conn on read-only exports yet serves one client) costs nothing but
 * the attempt, bounded by the handshake below.
 */
static void open_extra_conns(struct nbd_state *s)
{
    if (nbd_can_multi_conn(s->conns[0].h) != 1)
        return;
    for (unsigned i = 1; i < NBD_MAX_CONNS; i++) {
        struct qimg_error e = {0};
        struct nbd_conn *c = &s->conns[i];
        int fd = libnbd_connects(s) ? -1 : nbd_addr_connect(&s->addr, &e);
        if (fd < 0 && !libnbd_connects(s))
            return;
        struct nbd_handle *h = nbd_create();
        if (!h) {
            if (fd >= 0)
                close(fd);
            return;
        }
        prepare_handle(s, h);
        bool ok = (fd >= 0 ? nbd_aio_connect_socket(h, fd)
                           : nbd_aio_connect_tcp(h, s->addr.host, s->addr.port)) == 0;
        /* A server busy with its one client never answers: give it 2 s at most. */
        for (int waited = 0; ok && nbd_aio_is_connecting(h); waited += 100)
            ok = waited < 2000 && nbd_poll(h, 100) >= 0;
        if (!ok || !nbd_aio_is_ready(h) || nbd_conn_start(c, h) < 0) {
            nbd_close(h);
            return;
        }
        s->nconns++;
    }
}

static int qnbd_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct nbd_state *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->cache_lock, NULL);
    n->opaque = s;
    int ret = lazy_nbd_load(err); /* create opens through here too (net_create_on_existing) */
    if (ret < 0)
        return ret;
    ret = nbd_addr_from_opts(&s->addr, opts, err);
    if (ret < 0)
        return ret;
    uint64_t num;
    if (qimg_opts_take_uint(opts, "reconnect-delay", &num, err) < 0 ||
        qimg_opts_take_uint(opts, "open-timeout", &num, err) < 0)
        return err->code;
    const char *tls = qimg_opts_take(opts, "tls-creds");
    const char *tls_hostname = qimg_opts_take(opts, "tls-hostname");
    if (tls && qimg_object_tls_client_creds(tls, &s->tls, err) < 0)
        return err->code;
    if (s->tls.type && (!strcmp(s->tls.type, "tls-creds-anon") || !s->tls.dir))
        return qimg_error_set(err, -ENOTSUP, "TLS credentials of type '%s' are not supported",
                              s->tls.type);
    /* libnbd checks the certificate against the host it connects to, and no other name. */
    if (s->tls.type && tls_hostname && !strcmp(s->tls.type, "tls-creds-x509") &&
        (s->addr.type != NBD_ADDR_INET || strcmp(tls_hostname, s->addr.host)))
        return qimg_error_set(err, -ENOTSUP, "tls-hostname '%s' cannot be checked: only the "
                                             "server's own host name can be", tls_hostname);
    const char *bitmap = qimg_opts_take(opts, "x-dirty-bitmap");
    s->context = xstrdup(bitmap ? bitmap : "base:allocation");

    ret = conn_open(s, &s->conns[0], true, err);
    if (ret < 0)
        return ret;
    s->nconns = 1;
    ret = read_export_info(n, s, err);
    if (ret < 0)
        return ret;
    if (bitmap && !s->has_status)
        return qimg_error_set(err, -EINVAL, "Could not open image: Invalid argument");
    if (!(n->flags & QIMG_O_NO_IO))
        open_extra_conns(s);

    /* Named nbd://...: the options that said so are not shown in JSON (QEMU's exact name). */
    if (!s->addr.needs_json)
        for (const char *const *k = qnbd_strong_opts; *k; k++) {
            qimg_opts_del(opts, *k);
            for (size_t i = 0; i < opts->n;) {
                size_t len = strlen(*k);
                if (!strncmp(opts->v[i].key, *k, len) && opts->v[i].key[len] == '.')
                    qimg_opts_del(opts, opts->v[i].key);
                else
                    i++;
            }
        }
    return 0;
}

static void qnbd_close_node(struct qimg_node *n)
{
    struct nbd_state *s = n->opaque;
    if (!s)
        return;
    for (unsigned i = 0; i < NBD_MAX_CONNS; i++)
        nbd_conn_close(&s->conns[i]);
    nbd_addr_clear(&s->addr);
    qimg_tls_creds_clear(&s->tls);
    pthread_mutex_destroy(&s->cache_lock);
    free(s->context);
    free(s);
    n->opaque = NULL;
}

static char *qnbd_plain_filename(struct qimg_node *n)
{
    struct nbd_state *s = n->opaque;
    return s->addr.needs_json ? NULL : nbd_addr_name(&s->addr);
}

static int64_t qnbd_get_length(struct qimg_node *n)
{
    const struct nbd_state *s = n->opaque;
    return (int64_t)s->size;
}

static void invalidate_status(struct nbd_state *s)
{
    pthread_mutex_lock(&s->cache_lock);
    s->cache_n = 0;
    pthread_mutex_unlock(&s->cache_lock);
}

enum nbd_op { OP_READ, OP_WRITE, OP_ZERO, OP_TRIM };

/* Issue [off, off+len) as requests of at most max_request bytes, all in flight, and wait. */
static int qnbd_io(struct nbd_state *s, enum nbd_op op, uint64_t off, uint64_t len, void *buf,
                  uint32_t flags)
{
    struct nbd_batch b;
    nbd_batch_init(&b);
    for (uint64_t done = 0; done < len;) {
        uint64_t now = len - done < s->max_request ? len - done : s->max_request;
        struct nbd_conn *c = pick_conn(s);
        uint8_t *p = buf ? (uint8_t *)buf + done : NULL;
        int64_t cookie;
        switch (op) {
        case OP_READ:
            cookie = nbd_aio_pread(c->h, p, now, off + done, nbd_batch_completion(&b), 0);
            break;
        case OP_WRITE:
            cookie = nbd_aio_pwrite(c->h, p, now, off + done, nbd_batch_completion(&b), flags);
            break;
        case OP_ZERO:
            cookie = nbd_aio_zero(c->h, now, off + done, nbd_batch_completion(&b), flags);
            break;
        default:
            cookie = nbd_aio_trim(c->h, now, off + done, nbd_batch_completion(&b), flags);
            break;
        }
        nbd_batch_issued(&b, c, cookie);
        if (cookie < 0)
            break;
        done += now;
    }
    int ret = nbd_batch_wait(&b);
    nbd_batch_destroy(&b);
    return ret;
}

static int qnbd_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    struct nbd_state *s = n->opaque;
    (void)flags;
    /* The node ends on a sector boundary; past the export's end it reads zeroes. */
    if (off + len > s->size) {
        uint64_t in = off < s->size ? s->size - off : 0;
        memset((uint8_t *)buf + in, 0, len - in);
        len = in;
    }
    return len ? qnbd_io(s, OP_READ, off, len, buf, 0) : 0;
}

static int qnbd_flush(struct qimg_node *n);

static int check_in_export(const struct nbd_state *s, uint64_t off, uint64_t len)
{
    /* The sector-rounding tail cannot be written: the export ends before it (as in QEMU). */
    return off > s->size || len > s->size - off ? -ENOSPC : 0;
}

static int qnbd_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                      unsigned flags)
{
    struct nbd_state *s = n->opaque;
    int ret = check_in_export(s, off, len);
    if (ret < 0)
        return ret;
    invalidate_status(s);
    uint32_t f = (flags & QIMG_REQ_FUA) && s->can_fua ? LIBNBD_CMD_FLAG_FUA : 0;
    ret = qnbd_io(s, OP_WRITE, off, len, (void *)buf, f);
    if (ret == 0 && (flags & QIMG_REQ_FUA) && !s->can_fua)
        ret = qnbd_flush(n);
    return ret;
}

static int qnbd_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    struct nbd_state *s = n->opaque;
    int ret = check_in_export(s, off, len);
    if (ret < 0)
        return ret;
    if (!s->can_zero || ((flags & QIMG_REQ_NO_FALLBACK) && !s->can_fast_zero))
        return -ENOTSUP;
    uint32_t f = 0;
    if (!(flags & QIMG_REQ_MAY_UNMAP))
        f |= LIBNBD_CMD_FLAG_NO_HOLE;
    if (flags & QIMG_REQ_NO_FALLBACK)
        f |= LIBNBD_CMD_FLAG_FAST_ZERO;
    if ((flags & QIMG_REQ_FUA) && s->can_fua)
        f |= LIBNBD_CMD_FLAG_FUA;
    invalidate_status(s);
    return qnbd_io(s, OP_ZERO, off, len, NULL, f);
}

static int qnbd_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct nbd_state *s = n->opaque;
    if (!s->can_trim || check_in_export(s, off, len) < 0)
        return 0; /* discard is advisory */
    invalidate_status(s);
    return qnbd_io(s, OP_TRIM, off, len, NULL, 0);
}

static int qnbd_flush(struct qimg_node *n)
{
    struct nbd_state *s = n->opaque;
    if (!s->can_flush)
        return 0;
    /* With multi-conn a flush on one connection covers them all; otherwise there is one. */
    struct nbd_batch b;
    nbd_batch_init(&b);
    struct nbd_conn *c = &s->conns[0];
    nbd_batch_issued(&b, c, nbd_aio_flush(c->h, nbd_batch_completion(&b), 0));
    int ret = nbd_batch_wait(&b);
    nbd_batch_destroy(&b);
    return ret;
}

static unsigned status_flags(uint32_t nbd_flags)
{
    return ((nbd_flags & NBD_STATE_HOLE) ? 0 : QIMG_BLK_DATA) |
           ((nbd_flags & NBD_STATE_ZERO) ? QIMG_BLK_ZERO : 0);
}

/* Answer from the extents of the last reply when they cover off. */
static bool status_from_cache(struct nbd_state *s, uint64_t off, uint64_t len,
                              struct qimg_block_status *st)
{
    bool hit = false;
    pthread_mutex_lock(&s->cache_lock);
    if (s->cache_n && off >= s->cache_start && off < s->cache_end) {
        uint64_t pos = s->cache_start;
        for (size_t i = 0; i < s->cache_n; i++) {
            uint64_t end = pos + s->cache[2 * i];
            if (off < end) {
                st->bytes = end - off < len ? end - off : len;
                st->flags = status_flags(s->cache[2 * i + 1]);
                hit = true;
                break;
            }
            pos = end;
        }
    }
    pthread_mutex_unlock(&s->cache_lock);
    return hit;
}

static void status_to_cache(struct nbd_state *s, uint64_t off, uint64_t len,
                            const uint32_t *ext, size_t n)
{
    pthread_mutex_lock(&s->cache_lock);
    s->cache_start = off;
    s->cache_n = 0;
    uint64_t pos = off;
    for (size_t i = 0; i < n && i < NBD_STATUS_CACHE && pos < off + len; i++) {
        uint64_t elen = ext[2 * i] ? ext[2 * i] : 1;
        if (elen > off + len - pos)
            elen = off + len - pos;
        s->cache[2 * s->cache_n] = (uint32_t)elen;
        s->cache[2 * s->cache_n + 1] = ext[2 * i + 1];
        s->cache_n++;
        pos += elen;
    }
    s->cache_end = pos;
    pthread_mutex_unlock(&s->cache_lock);
}

static int qnbd_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                            struct qimg_block_status *st)
{
    struct nbd_state *s = n->opaque;
    st->offset = off;
    st->file = n;
    if (off >= s->size) { /* the sector-rounding tail past the export: zeroes, nowhere */
        st->bytes = len;
        st->flags = QIMG_BLK_ZERO;
        return 0;
    }
    if (len > s->size - off)
        len = s->size - off;
    if (!s->has_status) {
        st->bytes = len;
        st->flags = QIMG_BLK_DATA | QIMG_BLK_OFFSET_VALID;
        return 0;
    }
    if (!status_from_cache(s, off, len, st)) {
        uint64_t ask = len < NBD_MAX_STATUS_REQUEST ? len : NBD_MAX_STATUS_REQUEST;
        struct nbd_batch b;
        nbd_batch_init(&b);
        b.context = s->context;
        struct nbd_conn *c = pick_conn(s);
        nbd_batch_issued(&b, c, nbd_aio_block_status(c->h, ask, off, nbd_batch_extents(&b),
                                                    nbd_batch_completion(&b), 0));
        int ret = nbd_batch_wait(&b);
        if (ret == 0 && !b.n_extents)
            ret = -EIO; /* the server answered for another context only */
        if (ret == 0)
            status_to_cache(s, off, ask, b.extents, b.n_extents);
        nbd_batch_destroy(&b);
        if (ret < 0)
            return ret;
        if (!status_from_cache(s, off, len, st))
            return -EIO;
    }
    /* Neither data nor zeroes: nothing is known of the range, nor where it is (qemu-img map). */
    if (st->flags)
        st->flags |= QIMG_BLK_OFFSET_VALID;
    return 0;
}

static int qnbd_truncate(struct qimg_node *n, uint64_t size, bool exact, enum qimg_prealloc prealloc,
                        struct qimg_error *err)
{
    struct nbd_state *s = n->opaque;
    if (size != s->size && exact)
        return qimg_error_set(err, -ENOTSUP, "Cannot resize NBD nodes");
    if (size > s->size)
        return qimg_error_set(err, -EINVAL, "Cannot grow NBD nodes");
    if (prealloc != QIMG_PREALLOC_OFF)
        return qimg_error_set(err, -ENOTSUP, "Unsupported preallocation mode '%s'",
                              qimg_prealloc_name(prealloc));
    return 0;
}

/*
 * An export exists already: "creating" an image on it (QEMU's generic
 * fallback for protocols) opens it, checks the size fits and clears the
 * first sector, so that no old format header is probed afterwards.
 */
static int qnbd_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    return net_create_on_existing("nbd", filename, opts, err);
}

static const struct qimg_opt_desc qnbd_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"preallocation", QIMG_OPT_STRING, "Preallocation mode (allowed values: off)", NULL},
    {0},
};

const struct qimg_driver qimg_nbd_driver = {
    .name = "nbd",
    .is_protocol = true,
    .protocol_prefix = "nbd",
    .protocol_aliases = (const char *const[]){"nbd+tcp", "nbd+unix", NULL},
    .create_opts = qnbd_create_opts,
    .open_opts = qnbd_open_opts,
    .create = qnbd_create,
    .open = qnbd_open,
    .close = qnbd_close_node,
    .get_length = qnbd_get_length,
    .pread = qnbd_pread,
    .pwrite = qnbd_pwrite,
    .pwrite_zeroes = qnbd_pwrite_zeroes,
    .pdiscard = qnbd_pdiscard,
    .flush = qnbd_flush,
    .truncate = qnbd_truncate,
    .block_status = qnbd_block_status,
    .strong_opts = qnbd_strong_opts,
    .plain_filename = qnbd_plain_filename,
};
