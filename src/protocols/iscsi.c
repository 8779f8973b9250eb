/* SPDX-License-Identifier: MIT */
/*
 * The "iscsi" protocol: a LUN of an iSCSI target through libiscsi, as QEMU's
 * iscsi driver reaches it: iscsi://[user[%password]@]host[:port]/iqn/lun or
 * the transport/portal/target/lun options, CHAP from user and password or
 * password-secret, initiator-name, header-digest and timeout. Requests use
 * SCSI block commands (SBC-3): READ/WRITE(16), SYNCHRONIZE CACHE(10), WRITE
 * SAME(16) (with UNMAP where the LUN allows), UNMAP, GET LBA STATUS on thin
 * provisioned LUNs. Several sessions (each with its own ISID) carry requests
 * from many threads at once; each session is used by one thread at a time.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/builtin.h"
#include "protocols/iscsi.h"
#include "protocols/net-util.h"
#include "qimg/driver.h"
#include "qimg/secret.h"
#include "util/mem.h"

/* libiscsi, loaded by iscsi_open_node. */
#ifdef QIMG_SONAME_LIBISCSI
LAZYLIB_DEFINE(iscsi, QIMG_SONAME_LIBISCSI, LAZY_ISCSI_SYMS);
#endif

#define ISCSI_MAX_CONNS 4
#define ISCSI_MAX_XFER (4u << 20) /* bytes per READ/WRITE command at most */
#define ISCSI_MAX_WS (1u << 30)   /* bytes per WRITE SAME / UNMAP at most */
#define ISCSI_DEFAULT_INITIATOR "iqn.2008-11.org.linux-kvm" /* QEMU's, without a VM name */
#define ISCSI_RECONNECTS 1 /* a session lost mid-request is retried once, then fails */

struct iscsi_conn {
    struct iscsi_context *ctx;
    pthread_mutex_t lock;
};

/* How to log in: kept for the extra sessions opened after the first. */
struct iscsi_login {
    const char *portal, *target, *initiator, *user; /* in the node's options */
    char *password;                                 /* owned (from a secret or option) */
    enum iscsi_header_digest digest;
    enum iscsi_transport_type transport;
    int lun, timeout;
};

struct iscsi_state {
    struct iscsi_conn conns[ISCSI_MAX_CONNS];
    unsigned nconns, next_conn;
    struct iscsi_login login;
    struct iscsi_lun_info lun;
    bool has_write_same; /* cleared when the target refuses WRITE SAME */
    uint8_t *zero_block;
};

static const struct qimg_opt_desc iscsi_open_opts[] = {
    {"filename", QIMG_OPT_STRING, "URL of the iSCSI LUN", NULL},
    {"transport", QIMG_OPT_STRING, "Transport (tcp or iser)", NULL},
    {"portal", QIMG_OPT_STRING, "Portal address (host[:port])", NULL},
    {"target", QIMG_OPT_STRING, "Target name (IQN)", NULL},
    {"lun", QIMG_OPT_NUMBER, "LUN to connect to", NULL},
    {"user", QIMG_OPT_STRING, "username for CHAP authentication to target", NULL},
    {"password", QIMG_OPT_STRING, "password for CHAP authentication to target", NULL},
    {"password-secret", QIMG_OPT_STRING, "ID of the secret providing password for CHAP "
                                         "authentication to target", NULL},
    {"header-digest", QIMG_OPT_STRING, "HeaderDigest setting. {CRC32C|CRC32C-NONE|NONE-CRC32C|NONE}",
     NULL},
    {"initiator-name", QIMG_OPT_STRING, "Initiator iqn name to use when connecting", NULL},
    {"timeout", QIMG_OPT_NUMBER, "Request timeout in seconds (default 0 = no timeout)", NULL},
    {0},
};

/* The options that name the node ("json:{...}"), as QEMU's strong runtime options. */
static const char *const iscsi_strong_opts[] = {"transport", "portal", "target", "user",
                                                "password", "password-secret", "lun",
                                                "initiator-name", "header-digest", NULL};

/* iscsi://... into options (those given explicitly win), by libiscsi's own parser as QEMU. */
static int parse_uri(const char *uri, struct qimg_opts *o, struct qimg_error *err)
{
    struct iscsi_url *url = iscsi_parse_full_url(NULL, uri);
    if (!url)
        return qimg_error_set(err, -EINVAL, "Failed to parse URL : %s", uri);
    char lun[16];
    snprintf(lun, sizeof(lun), "%d", url->lun);
    const char *pairs[][2] = {
        {"transport", url->transport == ISER_TRANSPORT ? "iser" : "tcp"},
        {"portal", url->portal},
        {"target", url->target},
        {"lun", lun},
        {"user", url->user[0] ? url->user : NULL},
        {"password", url->user[0] ? url->passwd : NULL},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        if (pairs[i][1] && !qimg_opts_has(o, pairs[i][0]))
            qimg_opts_set(o, pairs[i][0], pairs[i][1]);
    iscsi_destroy_url(url);
    return 0;
}

static int parse_digest(const char *v, enum iscsi_header_digest *out, struct qimg_error *err)
{
    static const struct {
        const char *name;
        enum iscsi_header_digest d;
    } names[] = {{"crc32c", ISCSI_HEADER_DIGEST_CRC32C},
                 {"none", ISCSI_HEADER_DIGEST_NONE},
                 {"crc32c-none", ISCSI_HEADER_DIGEST_CRC32C_NONE},
                 {"none-crc32c", ISCSI_HEADER_DIGEST_NONE_CRC32C}};
    *out = ISCSI_HEADER_DIGEST_NONE_CRC32C; /* what QEMU offers when not told */
    if (!v)
        return 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(v, names[i].name)) {
            *out = names[i].d;
            return 0;
        }
    return qimg_error_set(err, -EINVAL, "Invalid header-digest setting : %s", v);
}

/* CHAP: user with password or password-secret (QEMU's apply_chap). */
static int take_chap(struct iscsi_login *l, struct qimg_opts *o, struct qimg_error *err)
{
    l->user = qimg_opts_take(o, "user");
    const char *password = qimg_opts_take(o, "password");
    const char *secret = qimg_opts_take(o, "password-secret");
    if (!l->user)
        return 0;
    if (password && secret)
        return qimg_error_set(err, -EINVAL, "'password' and 'password-secret' properties are "
                                            "mutually exclusive");
    if (!password && !secret)
        return qimg_error_set(err, -EINVAL, "CHAP username specified but no password was given");
    if (password) {
        l->password = xstrdup(password);
        return 0;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    int ret = qimg_secret_lookup(secret, &data, &len, err);
    if (ret == 0)
        l->password = (char *)data; /* NUL-terminated */
    return ret;
}

/* The options into how to log in; QEMU's checks, order and messages. */
static int take_login(struct iscsi_login *l, struct qimg_opts *o, struct qimg_error *err)
{
    const char *filename = qimg_opts_take(o, "filename");
    if (filename) {
        int ret = parse_uri(filename, o, err);
        if (ret < 0)
            return ret;
    }
    const char *transport = qimg_opts_take(o, "transport");
    l->portal = qimg_opts_take(o, "portal");
    l->target = qimg_opts_take(o, "target");
    uint64_t lun = 0, timeout = 0;
    if (qimg_opts_take_uint(o, "lun", &lun, err) < 0 ||
        qimg_opts_take_uint(o, "timeout", &timeout, err) < 0)
        return err->code;
    l->lun = (int)lun; /* QEMU keeps the LUN in an int, whatever was given */
    l->timeout = (int)timeout;
    if (!transport || !l->portal || !l->target)
        return qimg_error_set(err, -EINVAL, "Need all of transport, portal and target options");
    if (!strcmp(transport, "tcp"))
        l->transport = TCP_TRANSPORT;
    else if (!strcmp(transport, "iser"))
        l->transport = ISER_TRANSPORT;
    else
        return qimg_error_set(err, -EINVAL, "Unknown transport: %s", transport);
    l->initiator = qimg_opts_take(o, "initiator-name");
    if (!l->initiator)
        l->initiator = ISCSI_DEFAULT_INITIATOR;
    int ret = take_chap(l, o, err);
    if (ret == 0)
        ret = parse_digest(qimg_opts_take(o, "header-digest"), &l->digest, err);
    return ret;
}

/* A distinct ISID per session, so that the target does not take a second login from this
 * initiator for the reinstatement of the first (RFC 7143 4.4.3). */
static void set_isid(struct iscsi_context *ctx, unsigned index)
{
    static unsigned counter;
    unsigned rnd = (unsigned)getpid() ^ (unsigned)time(NULL) ^
                   __atomic_fetch_add(&counter, 0x10000u, __ATOMIC_RELAXED);
    iscsi_set_isid_random(ctx, rnd & 0xffffff, index);
}

/* One session logged in to the LUN, or NULL with QEMU's message. */
static struct iscsi_context *session_open(const struct iscsi_login *l, unsigned index,
                                          struct qimg_error *err)
{
    struct iscsi_context *ctx = iscsi_create_context(l->initiator);
    if (!ctx) {
        qimg_error_set(err, -ENOMEM, "iSCSI: Failed to create iSCSI context.");
        return NULL;
    }
    const char *fail = NULL;
    if (iscsi_init_transport(ctx, l->transport))
        fail = "iSCSI: Failed to initialize transport.";
    else if (iscsi_set_targetname(ctx, l->target))
        fail = "iSCSI: Failed to set target name.";
    else if (l->user && iscsi_set_initiator_username_pwd(ctx, l->user, l->password))
        fail = "Failed to set initiator username and password";
    else if (iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL))
        fail = "iSCSI: Failed to set session type to normal.";
    if (fail) {
        qimg_error_set(err, -EINVAL, "%s", fail);
        iscsi_destroy_context(ctx);
        return NULL;
    }
    set_isid(ctx, index);
    iscsi_set_header_digest(ctx, l->digest);
    iscsi_set_timeout(ctx, l->timeout);
    /* A target that goes away fails the request after one attempt to log in again,
     * rather than keeping the command waiting for ever. */
    iscsi_set_reconnect_max_retries(ctx, ISCSI_RECONNECTS);
    if (iscsi_full_connect_sync(ctx, l->portal, l->lun) != 0) {
        qimg_error_set(err, -EINVAL, "iSCSI: Failed to connect to LUN : %s",
                       iscsi_get_error(ctx));
        iscsi_destroy_context(ctx);
        return NULL;
    }
    return ctx;
}

static void conn_close(struct iscsi_conn *c)
{
    if (!c->ctx)
        return;
    iscsi_logout_sync(c->ctx);
    iscsi_destroy_context(c->ctx);
    c->ctx = NULL;
}

static void state_free(struct iscsi_state *s)
{
    for (unsigned i = 0; i < s->nconns; i++) {
        conn_close(&s->conns[i]);
        pthread_mutex_destroy(&s->conns[i].lock);
    }
    if (s->login.password) {
        memset(s->login.password, 0, strlen(s->login.password));
        free(s->login.password);
    }
    free(s->zero_block);
    free(s);
}

static void add_conn(struct iscsi_state *s, struct iscsi_context *ctx)
{
    struct iscsi_conn *c = &s->conns[s->nconns++];
    c->ctx = ctx;
    pthread_mutex_init(&c->lock, NULL);
}

/* More sessions for parallel requests; a target that refuses them leaves us with fewer. */
static void open_extra_conns(struct iscsi_state *s)
{
    while (s->nconns < ISCSI_MAX_CONNS) {
        struct qimg_error ignored = {0};
        struct iscsi_context *ctx = session_open(&s->login, s->nconns, &ignored);
        qimg_error_clear(&ignored);
        if (!ctx)
            break;
        add_conn(s, ctx);
    }
}

static struct iscsi_conn *conn_get(struct iscsi_state *s)
{
    unsigned i = __atomic_fetch_add(&s->next_conn, 1, __ATOMIC_RELAXED) % s->nconns;
    struct iscsi_conn *c = &s->conns[i];
    pthread_mutex_lock(&c->lock);
    return c;
}

static void conn_put(struct iscsi_conn *c)
{
    pthread_mutex_unlock(&c->lock);
}

static int iscsi_open_node(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct iscsi_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    s->has_write_same = true;
    int ret = lazy_iscsi_load(err); /* create opens through here too (net_create_on_existing) */
    if (ret < 0)
        return ret;
    ret = take_login(&s->login, opts, err);
    if (ret < 0)
        return ret;
    struct iscsi_context *ctx = session_open(&s->login, 0, err);
    if (!ctx)
        return err->code;
    add_conn(s, ctx);
    ret = iscsi_lun_probe(ctx, s->login.lun, &s->lun, err);
    if (ret < 0)
        return ret;
    if (s->lun.type == ISCSI_TYPE_DISK && (n->flags & QIMG_O_RDWR) && s->lun.write_protected)
        return qimg_error_set(err, -EACCES, "Cannot open a write protected LUN as read-write");
    if (s->lun.block_size) {
        n->request_alignment = s->lun.block_size;
        s->zero_block = xcalloc(1, s->lun.block_size);
    }
    if (!(n->flags & QIMG_O_NO_IO))
        open_extra_conns(s);
    return 0;
}

static void iscsi_close_node(struct qimg_node *n)
{
    if (n->opaque)
        state_free(n->opaque);
    n->opaque = NULL;
}

static int64_t iscsi_get_length(struct qimg_node *n)
{
    const struct iscsi_state *s = n->opaque;
    return (int64_t)(s->lun.num_blocks * s->lun.block_size);
}

/* The most bytes one command may carry: the LUN's limit, ours, and a whole block count. */
static uint64_t max_xfer(const struct iscsi_state *s)
{
    uint64_t max = ISCSI_MAX_XFER;
    if (s->lun.max_xfer_len && (uint64_t)s->lun.max_xfer_len * s->lun.block_size < max)
        max = (uint64_t)s->lun.max_xfer_len * s->lun.block_size;
    max -= max % s->lun.block_size;
    return max ? max : s->lun.block_size;
}

static int finish(struct scsi_task *task)
{
    int ret = iscsi_task_errno(task);
    if (task)
        scsi_free_scsi_task(task);
    return ret;
}

static int iscsi_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    struct iscsi_state *s = n->opaque;
    uint32_t bs = s->lun.block_size;
    uint64_t chunk = max_xfer(s);
    (void)flags;
    int ret = 0;
    struct iscsi_conn *c = conn_get(s);
    for (uint64_t done = 0; ret == 0 && done < len; done += chunk) {
        uint64_t now = len - done < chunk ? len - done : chunk;
        struct scsi_iovec iov = {.iov_base = (uint8_t *)buf + done, .iov_len = now};
        ret = finish(iscsi_read16_iov_sync(c->ctx, s->login.lun, (off + done) / bs,
                                           (uint32_t)now, (int)bs, 0, 0, 0, 0, 0, &iov, 1));
    }
    conn_put(c);
    return ret;
}

static int iscsi_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                        unsigned flags)
{
    struct iscsi_state *s = n->opaque;
    uint32_t bs = s->lun.block_size;
    uint64_t chunk = max_xfer(s);
    int fua = (flags & QIMG_REQ_FUA) && s->lun.dpofua;
    int ret = 0;
    struct iscsi_conn *c = conn_get(s);
    for (uint64_t done = 0; ret == 0 && done < len; done += chunk) {
        uint64_t now = len - done < chunk ? len - done : chunk;
        struct scsi_iovec iov = {.iov_base = (uint8_t *)buf + done, .iov_len = now};
        ret = finish(iscsi_write16_iov_sync(c->ctx, s->login.lun, (off + done) / bs, NULL,
                                            (uint32_t)now, (int)bs, 0, 0, fua, 0, 0, &iov, 1));
    }
    if (ret == 0 && (flags & QIMG_REQ_FUA) && !fua)
        ret = finish(iscsi_synchronizecache10_sync(c->ctx, s->login.lun, 0, 0, 0, 0));
    conn_put(c);
    return ret;
}

static int iscsi_flush(struct qimg_node *n)
{
    struct iscsi_state *s = n->opaque;
    struct iscsi_conn *c = conn_get(s);
    int ret = finish(iscsi_synchronizecache10_sync(c->ctx, s->login.lun, 0, 0, 0, 0));
    conn_put(c);
    return ret;
}

/* Blocks per WRITE SAME or UNMAP descriptor: the LUN's limit, ours, and the field's. */
static uint64_t max_blocks(const struct iscsi_state *s, uint64_t lun_limit)
{
    uint64_t max = ISCSI_MAX_WS / s->lun.block_size;
    if (lun_limit && lun_limit < max)
        max = lun_limit;
    return max;
}

/*
 * WRITE SAME(16) of a zero block, with UNMAP when the caller allows it and
 * the LUN does it (VPD 0xb2 LBPWS); -ENOTSUP sends the caller to plain
 * writes, as QEMU's driver does when the target lacks the command.
 */
static int iscsi_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    struct iscsi_state *s = n->opaque;
    uint32_t bs = s->lun.block_size;
    int unmap = (flags & QIMG_REQ_MAY_UNMAP) && s->lun.lbpws;
    if ((flags & QIMG_REQ_NO_FALLBACK) || !__atomic_load_n(&s->has_write_same, __ATOMIC_RELAXED))
        return -ENOTSUP;
    uint64_t max = max_blocks(s, s->lun.max_ws_len), lba = off / bs, count = len / bs;
    int ret = 0;
    struct iscsi_conn *c = conn_get(s);
    while (ret == 0 && count) {
        uint64_t now = count < max ? count : max;
        struct scsi_task *task = iscsi_writesame16_sync(c->ctx, s->login.lun, lba, s->zero_block,
                                                        bs, (uint32_t)now, 0, unmap, 0, 0);
        if (iscsi_task_unsupported(task)) {
            __atomic_store_n(&s->has_write_same, false, __ATOMIC_RELAXED);
            scsi_free_scsi_task(task);
            ret = -ENOTSUP;
            break;
        }
        ret = finish(task);
        lba += now;
        count -= now;
    }
    conn_put(c);
    return ret;
}

/* UNMAP where the LUN supports it (VPD 0xb2 LBPU); discard is advisory, as in QEMU. */
static int iscsi_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct iscsi_state *s = n->opaque;
    uint32_t bs = s->lun.block_size;
    if (!s->lun.lbpu || off % bs || len % bs)
        return 0;
    uint64_t max = max_blocks(s, s->lun.max_unmap), lba = off / bs, count = len / bs;
    int ret = 0;
    struct iscsi_conn *c = conn_get(s);
    while (ret == 0 && count) {
        uint64_t now = count < max ? count : max;
        struct unmap_list list = {.lba = lba, .num = (uint32_t)now};
        struct scsi_task *task = iscsi_unmap_sync(c->ctx, s->login.lun, 0, 0, &list, 1);
        bool refused = iscsi_task_unsupported(task);
        ret = refused ? 0 : iscsi_task_errno(task);
        if (task)
            scsi_free_scsi_task(task);
        if (refused)
            break;
        lba += now;
        count -= now;
    }
    conn_put(c);
    return ret;
}

/*
 * GET LBA STATUS (SBC-3 5.6) on a thin provisioned LUN: the first descriptor
 * says whether the run at off is mapped; unmapped blocks read as zeroes when
 * the LUN says so (LBPRZ). Without provisioning, or when the target refuses
 * the command, everything is data (QEMU's answer, with its message).
 */
static int iscsi_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                              struct qimg_block_status *st)
{
    struct iscsi_state *s = n->opaque;
    uint32_t bs = s->lun.block_size;
    uint64_t size = (uint64_t)iscsi_get_length(n);
    st->offset = off;
    st->file = n;
    st->bytes = len;
    st->flags = QIMG_BLK_DATA | QIMG_BLK_OFFSET_VALID;
    if (!s->lun.lbpme || off >= size)
        return 0;
    uint64_t lba = off / bs;
    struct iscsi_conn *c = conn_get(s);
    struct scsi_task *task = iscsi_get_lba_status_sync(c->ctx, s->login.lun, lba, 8 + 16);
    int ret = 0;
    if (!task || task->status != SCSI_STATUS_GOOD) {
        qimg_report("iSCSI GET_LBA_STATUS failed at lba %" PRIu64 ": %s", lba,
                    iscsi_get_error(c->ctx));
    } else {
        struct scsi_get_lba_status *lbas = scsi_datain_unmarshall(task);
        const struct scsi_lba_status_descriptor *d = lbas && lbas->num_descriptors
                                                         ? &lbas->descriptors[0] : NULL;
        if (!d || d->lba != lba) {
            ret = -EIO;
        } else {
            uint64_t run = (uint64_t)d->num_blocks * bs;
            if (run < st->bytes)
                st->bytes = run ? run : bs;
            if (d->provisioning == SCSI_PROVISIONING_TYPE_DEALLOCATED ||
                d->provisioning == SCSI_PROVISIONING_TYPE_ANCHORED)
                st->flags = QIMG_BLK_OFFSET_VALID | (s->lun.lbprz ? QIMG_BLK_ZERO : 0);
        }
    }
    if (task)
        scsi_free_scsi_task(task);
    conn_put(c);
    return ret;
}

/* A LUN has the size it has: it may be "shrunk" only by a caller that allows less (QEMU). */
static int iscsi_truncate(struct qimg_node *n, uint64_t size, bool exact,
                          enum qimg_prealloc prealloc, struct qimg_error *err)
{
    struct iscsi_state *s = n->opaque;
    uint64_t have = (uint64_t)iscsi_get_length(n);
    if (s->lun.type != ISCSI_TYPE_DISK)
        return qimg_error_set(err, -ENOTSUP, "Cannot resize non-disk iSCSI devices");
    if (prealloc != QIMG_PREALLOC_OFF)
        return qimg_error_set(err, -ENOTSUP, "Unsupported preallocation mode '%s'",
                              qimg_prealloc_name(prealloc));
    if (size != have && exact)
        return qimg_error_set(err, -ENOTSUP, "Cannot resize iSCSI devices");
    if (size > have)
        return qimg_error_set(err, -EINVAL, "Cannot grow iSCSI devices");
    return 0;
}

static int iscsi_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    return net_create_on_existing("iscsi", filename, opts, err);
}

static int iser_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    return net_create_on_existing("iser", filename, opts, err);
}

static const struct qimg_opt_desc iscsi_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"preallocation", QIMG_OPT_STRING, "Preallocation mode (allowed values: off)", NULL},
    {0},
};

const struct qimg_driver qimg_iscsi_driver = {
    .name = "iscsi",
    .is_protocol = true,
    .protocol_prefix = "iscsi",
    .create_opts = iscsi_create_opts,
    .open_opts = iscsi_open_opts,
    .open = iscsi_open_node,
    .close = iscsi_close_node,
    .create = iscsi_create,
    .get_length = iscsi_get_length,
    .pread = iscsi_pread,
    .pwrite = iscsi_pwrite,
    .pwrite_zeroes = iscsi_pwrite_zeroes,
    .pdiscard = iscsi_pdiscard,
    .flush = iscsi_flush,
    .truncate = iscsi_truncate,
    .block_status = iscsi_block_status,
    .strong_opts = iscsi_strong_opts,
};

/* iser://: the same driver over iSER (libiscsi's RDMA transport), as QEMU registers it. */
const struct qimg_driver qimg_iser_driver = {
    .name = "iser",
    .is_protocol = true,
    .protocol_prefix = "iser",
    .create_opts = iscsi_create_opts,
    .open_opts = iscsi_open_opts,
    .open = iscsi_open_node,
    .close = iscsi_close_node,
    .create = iser_create,
    .get_length = iscsi_get_length,
    .pread = iscsi_pread,
    .pwrite = iscsi_pwrite,
    .pwrite_zeroes = iscsi_pwrite_zeroes,
    .pdiscard = iscsi_pdiscard,
    .flush = iscsi_flush,
    .truncate = iscsi_truncate,
    .block_status = iscsi_block_status,
    .strong_opts = iscsi_strong_opts,
};
