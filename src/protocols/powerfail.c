/* SPDX-License-Identifier: MIT */
/*
 * The "powerfail" test filter (doc/reliability.md): passes every request to
 * its "file" child and models a volatile write cache in front of it.
 *
 * Every write, zero write, discard and truncate since the child's last flush
 * is logged with the bytes it replaced and (for writes) its new bytes. At the
 * chosen cut point ("cut-after": the Nth logged operation or flush, counted
 * over every powerfail node of the process) power is lost: each file is put
 * back to its last flushed state, a random subset of its unflushed operations
 * is replayed in order (one of the replayed writes torn: only its first k
 * 512-byte sectors reach the file), the file is synced and the process ends
 * with _exit(POWERFAIL_EXIT_CODE), skipping every cleanup a real crash would
 * skip. "seed" fixes the random choices.
 *
 * It also injects single faults: "fail-at"=N fails the Nth request of type
 * "fail-on" (write: writes, zero writes, discards, truncates; flush; read;
 * any) with errno "fail-errno" (default EIO), counted per node.
 *
 * Only for tests: the undo log keeps old bytes in memory, so it refuses more
 * than POWERFAIL_MAX_LOG bytes of unflushed data.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/builtin.h"
#include "core/node-internal.h"
#include "qimg/driver.h"
#include "util/mem.h"

#define POWERFAIL_EXIT_CODE 113
#define POWERFAIL_MAX_LOG (256u << 20)
#define SECTOR 512

enum op_kind { OP_WRITE, OP_ZEROES, OP_DISCARD, OP_TRUNCATE };

enum fail_on { FAIL_WRITE = 1, FAIL_FLUSH = 2, FAIL_READ = 4, FAIL_ANY = 7 };

/* One unflushed operation: what it replaced (old) and what it wrote (data). */
struct op {
    enum op_kind kind;
    uint64_t off, len;   /* truncate: off = new size, len = 0 */
    uint8_t *old;        /* the file's bytes in [off, off + old_len) before it */
    uint64_t old_len;    /* clipped to the file's size then */
    uint8_t *data;       /* OP_WRITE only */
    unsigned flags;
};

struct powerfail_state {
    struct op *ops;
    size_t n_ops, cap_ops;
    uint64_t log_bytes;
    int64_t flushed_size; /* the child's size at its last flush */
    int64_t size;         /* its size now */
    uint64_t fail_at, fail_count;
    unsigned fail_on;
    int fail_errno;
    struct qimg_node *node;
    struct powerfail_state *next;
};

/*
 * Process-wide: one power supply for every file. All child I/O happens under
 * the lock, so no request is half-way through when power is lost.
 */
static pthread_mutex_t pf_lock = PTHREAD_MUTEX_INITIALIZER;
static struct powerfail_state *pf_nodes;
static uint64_t pf_ops_done;
static uint64_t pf_cut_after; /* 0: never */
static uint64_t pf_rng = 0x9e3779b97f4a7c15ull;

static const struct qimg_opt_desc powerfail_open_opts[] = {
    {"seed", QIMG_OPT_NUMBER, "Seed of the random choices at power loss", NULL},
    {"cut-after", QIMG_OPT_NUMBER, "Lose power after this many writes and flushes (0: never)",
     NULL},
    {"fail-at", QIMG_OPT_NUMBER, "Fail the Nth request of type fail-on (0: never)", NULL},
    {"fail-on", QIMG_OPT_STRING, "write, flush, read or any", NULL},
    {"fail-errno", QIMG_OPT_NUMBER, "errno of the injected failure", NULL},
    {0},
};

static uint64_t rng_next(void)
{
    /* xorshift64*: deterministic for a seed, good enough for choosing subsets */
    pf_rng ^= pf_rng >> 12;
    pf_rng ^= pf_rng << 25;
    pf_rng ^= pf_rng >> 27;
    return pf_rng * 0x2545f4914f6cdd1dull;
}

static void drop_log(struct powerfail_state *s)
{
    for (size_t i = 0; i < s->n_ops; i++) {
        free(s->ops[i].old);
        free(s->ops[i].data);
    }
    s->n_ops = 0;
    s->log_bytes = 0;
    s->flushed_size = s->size;
}

/* ---- power loss ---- */

/* Put the file back to its flushed state: undo newest first, then the size. */
static void revert(struct powerfail_state *s)
{
    struct qimg_node *f = s->node->file;
    struct qimg_error err = {0};
    for (size_t i = s->n_ops; i-- > 0;) {
        struct op *o = &s->ops[i];
        if (o->kind == OP_TRUNCATE) {
            qimg_node_truncate(f, (uint64_t)o->off + o->old_len, true, QIMG_PREALLOC_OFF, &err);
            if (o->old_len)
                qimg_node_pwrite(f, o->off, o->old_len, o->old, 0);
        } else if (o->old_len) {
            qimg_node_pwrite(f, o->off, o->old_len, o->old, 0);
        }
    }
    qimg_node_truncate(f, (uint64_t)s->flushed_size, true, QIMG_PREALLOC_OFF, &err);
    qimg_error_clear(&err);
}

/* Replay a random subset in order; torn: the index of the write cut short. */
static void replay_subset(struct powerfail_state *s, size_t torn)
{
    struct qimg_node *f = s->node->file;
    struct qimg_error err = {0};
    for (size_t i = 0; i < s->n_ops; i++) {
        struct op *o = &s->ops[i];
        if (i != torn && !(rng_next() & 1))
            continue;
        switch (o->kind) {
        case OP_WRITE: {
            uint64_t len = o->len;
            if (i == torn) /* the first k sectors only, k < all of them */
                len = (rng_next() % ((o->len + SECTOR - 1) / SECTOR)) * SECTOR;
            if (len)
                qimg_node_pwrite(f, o->off, len, o->data, 0);
            break;
        }
        case OP_ZEROES:
            qimg_node_pwrite_zeroes(f, o->off, o->len, o->flags);
            break;
        case OP_DISCARD:
            qimg_node_pdiscard(f, o->off, o->len);
            break;
        case OP_TRUNCATE:
            qimg_node_truncate(f, o->off, true, QIMG_PREALLOC_OFF, &err);
            break;
        }
    }
    qimg_error_clear(&err);
}

/* Locked: materialise the lost-power state of every file and stop. */
static void lose_power(void)
{
    for (struct powerfail_state *s = pf_nodes; s; s = s->next) {
        size_t writes = 0;
        for (size_t i = 0; i < s->n_ops; i++)
            writes += s->ops[i].kind == OP_WRITE && s->ops[i].len > SECTOR;
        size_t torn = (size_t)-1;
        if (writes) {
            size_t pick = rng_next() % writes;
            for (size_t i = 0; i < s->n_ops; i++)
                if (s->ops[i].kind == OP_WRITE && s->ops[i].len > SECTOR && pick-- == 0) {
                    torn = i;
                    break;
                }
        }
        revert(s);
        replay_subset(s, torn);
        qimg_node_flush(s->node->file);
    }
    _exit(POWERFAIL_EXIT_CODE);
}

/* Locked: one more write or flush done; lose power when it was the chosen one. */
static void count_op(void)
{
    if (pf_cut_after && ++pf_ops_done >= pf_cut_after)
        lose_power();
}

/* Locked: whether this request is the one fail-at selects. */
static int injected(struct powerfail_state *s, unsigned type)
{
    if (!s->fail_at || !(s->fail_on & type))
        return 0;
    return ++s->fail_count == s->fail_at ? -s->fail_errno : 0;
}

/* ---- the log ---- */

/* Locked: log an operation on [off, off + len) with the bytes it replaces. */
static int log_op(struct powerfail_state *s, enum op_kind kind, uint64_t off, uint64_t len,
                  const void *data, unsigned flags)
{
    uint64_t old_len = 0;
    if (s->size > 0 && off < (uint64_t)s->size)
        old_len = (uint64_t)s->size - off < len ? (uint64_t)s->size - off : len;
    uint64_t need = old_len + (kind == OP_WRITE ? len : 0);
    if (need > POWERFAIL_MAX_LOG - s->log_bytes)
        return -EFBIG;
    struct op o = {.kind = kind, .off = off, .len = len, .old_len = old_len, .flags = flags};
    if (old_len) {
        o.old = xmalloc(old_len);
        int ret = qimg_node_pread(s->node->file, off, old_len, o.old, 0);
        if (ret < 0) {
            free(o.old);
            return ret;
        }
    }
    if (kind == OP_WRITE) {
        o.data = xmalloc(len);
        memcpy(o.data, data, len);
    }
    if (s->n_ops == s->cap_ops) {
        s->cap_ops = s->cap_ops ? 2 * s->cap_ops : 64;
        s->ops = xrealloc(s->ops, s->cap_ops * sizeof(*s->ops));
    }
    s->ops[s->n_ops++] = o;
    s->log_bytes += need;
    return 0;
}

/* A logged request: injection check, undo record, the request, the count. */
static int logged_request(struct qimg_node *n, enum op_kind kind, uint64_t off, uint64_t len,
                          const void *buf, unsigned flags)
{
    struct powerfail_state *s = n->opaque;
    pthread_mutex_lock(&pf_lock);
    int ret = injected(s, FAIL_WRITE);
    if (ret == 0)
        ret = log_op(s, kind, off, len, buf, flags);
    if (ret == 0) {
        if (kind == OP_WRITE)
            ret = qimg_node_pwrite(n->file, off, len, buf, flags);
        else if (kind == OP_ZEROES)
            ret = qimg_node_pwrite_zeroes(n->file, off, len, flags);
        else
            ret = qimg_node_pdiscard(n->file, off, len);
        /* A failed request stays in the log: power loss may still keep any part of it. */
        if (off + len > (uint64_t)s->size && kind != OP_DISCARD)
            s->size = qimg_node_length(n->file);
        count_op();
    }
    pthread_mutex_unlock(&pf_lock);
    return ret;
}

static int powerfail_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                            unsigned flags)
{
    return logged_request(n, OP_WRITE, off, len, buf, flags);
}

static int powerfail_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len,
                                   unsigned flags)
{
    return logged_request(n, OP_ZEROES, off, len, NULL, flags);
}

static int powerfail_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    return logged_request(n, OP_DISCARD, off, len, NULL, 0);
}

static int powerfail_truncate(struct qimg_node *n, uint64_t size, bool exact,
                              enum qimg_prealloc prealloc, struct qimg_error *err)
{
    struct powerfail_state *s = n->opaque;
    pthread_mutex_lock(&pf_lock);
    int ret = injected(s, FAIL_WRITE);
    if (ret < 0) {
        qimg_error_errno(err, ret, "powerfail: injected failure");
        goto out;
    }
    /* The bytes a shrink removes; a grow replaces nothing. */
    ret = log_op(s, OP_TRUNCATE, size, s->size > 0 && size < (uint64_t)s->size ?
                 (uint64_t)s->size - size : 0, NULL, 0);
    if (ret < 0) {
        qimg_error_errno(err, ret, "powerfail: undo log full");
        goto out;
    }
    ret = qimg_node_truncate(n->file, size, exact, prealloc, err);
    s->size = qimg_node_length(n->file);
    count_op();
out:
    pthread_mutex_unlock(&pf_lock);
    return ret;
}

static int powerfail_flush(struct qimg_node *n)
{
    struct powerfail_state *s = n->opaque;
    pthread_mutex_lock(&pf_lock);
    int ret = injected(s, FAIL_FLUSH);
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret == 0)
        drop_log(s); /* now stable */
    count_op();
    pthread_mutex_unlock(&pf_lock);
    return ret;
}

static int powerfail_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                           unsigned flags)
{
    struct powerfail_state *s = n->opaque;
    pthread_mutex_lock(&pf_lock);
    int ret = injected(s, FAIL_READ);
    if (ret == 0)
        ret = qimg_node_pread(n->file, off, len, buf, flags);
    pthread_mutex_unlock(&pf_lock);
    return ret;
}

/* ---- open and pass-through ---- */

static int take_u64(struct qimg_opts *opts, const char *key, uint64_t *out,
                    struct qimg_error *err)
{
    const char *v = qimg_opts_take(opts, key);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 0);
    if (!*v || *end || errno || *v == '-')
        return qimg_error_set(err, -EINVAL, "Parameter '%s' expects a number", key);
    *out = x;
    return 1;
}

static int parse_opts(struct powerfail_state *s, struct qimg_opts *opts, struct qimg_error *err)
{
    uint64_t seed = 0, cut = 0, eno = EIO;
    int ret, have_seed;
    if ((have_seed = take_u64(opts, "seed", &seed, err)) < 0 ||
        (ret = take_u64(opts, "cut-after", &cut, err)) < 0 ||
        (ret = take_u64(opts, "fail-at", &s->fail_at, err)) < 0 ||
        (ret = take_u64(opts, "fail-errno", &eno, err)) < 0)
        return err->code;
    if (eno == 0 || eno > 4095)
        return qimg_error_set(err, -EINVAL, "Parameter 'fail-errno' expects an errno");
    s->fail_errno = (int)eno;
    const char *on = qimg_opts_take(opts, "fail-on");
    s->fail_on = !on || !strcmp(on, "write") ? FAIL_WRITE
                 : !strcmp(on, "flush")      ? FAIL_FLUSH
                 : !strcmp(on, "read")       ? FAIL_READ
                 : !strcmp(on, "any")        ? FAIL_ANY
                                             : 0;
    if (!s->fail_on)
        return qimg_error_set(err, -EINVAL, "Parameter 'fail-on' expects write, flush, read or any");
    pthread_mutex_lock(&pf_lock);
    if (have_seed)
        pf_rng = seed * 2 + 1; /* never 0: xorshift would stay there */
    if (cut && (!pf_cut_after || cut < pf_cut_after))
        pf_cut_after = cut;
    pthread_mutex_unlock(&pf_lock);
    return 0;
}

static int powerfail_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct powerfail_state *s = xcalloc(1, sizeof(*s));
    s->node = n;
    n->opaque = s;
    struct qimg_opts *child = qimg_opts_new();
    qimg_opts_take(opts, "filename");
    int ret = parse_opts(s, opts, err);
    if (ret < 0)
        goto out;
    qimg_opts_extract_prefix(opts, "file.", child);
    if (!qimg_opts_has(child, "filename") && !qimg_opts_has(child, "driver")) {
        ret = qimg_error_set(err, -EINVAL, "A block device must be specified for \"file\"");
        goto out;
    }
    ret = qimg_open_protocol(&n->file, NULL, child, n->flags, err);
    if (ret == 0 && qimg_opts_first_unused(child))
        ret = qimg_error_set(err, -EINVAL, "Block protocol '%s' doesn't support the option '%s'",
                             n->file->drv->name, qimg_opts_first_unused(child));
    if (ret < 0)
        goto out;
    n->request_alignment = n->file->request_alignment;
    s->size = s->flushed_size = qimg_node_length(n->file);
    pthread_mutex_lock(&pf_lock);
    s->next = pf_nodes;
    pf_nodes = s;
    pthread_mutex_unlock(&pf_lock);
out:
    qimg_opts_free(child);
    return ret;
}

static void powerfail_close(struct qimg_node *n)
{
    struct powerfail_state *s = n->opaque;
    if (!s)
        return;
    pthread_mutex_lock(&pf_lock);
    for (struct powerfail_state **pp = &pf_nodes; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    pthread_mutex_unlock(&pf_lock);
    drop_log(s);
    free(s->ops);
    free(s);
    n->opaque = NULL;
}

static int powerfail_set_perm(struct qimg_node *n, unsigned perm, unsigned shared,
                              struct qimg_error *err)
{
    int ret = qimg_node_set_perm(n->file, perm, shared, err);
    if (ret == 0) {
        n->perm = perm;
        n->shared_perm = shared;
    }
    return ret;
}

static int64_t powerfail_get_length(struct qimg_node *n)
{
    return qimg_node_length(n->file);
}

static int powerfail_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                                  struct qimg_block_status *st)
{
    return qimg_node_block_status(n->file, off, len, st);
}

static bool powerfail_has_zero_init(struct qimg_node *n)
{
    return qimg_node_has_zero_init(n->file);
}

static const char *const powerfail_strong_opts[] = {"seed", "cut-after", "fail-at", "fail-on",
                                                    "fail-errno", NULL};

const struct qimg_driver qimg_powerfail_driver = {
    .name = "powerfail",
    .strong_opts = powerfail_strong_opts,
    .is_protocol = true,
    .is_filter = true,
    .open_opts = powerfail_open_opts,
    .open = powerfail_open,
    .close = powerfail_close,
    .set_perm = powerfail_set_perm,
    .get_length = powerfail_get_length,
    .pread = powerfail_pread,
    .pwrite = powerfail_pwrite,
    .pwrite_zeroes = powerfail_pwrite_zeroes,
    .pdiscard = powerfail_pdiscard,
    .flush = powerfail_flush,
    .truncate = powerfail_truncate,
    .block_status = powerfail_block_status,
    .has_zero_init = powerfail_has_zero_init,
};
