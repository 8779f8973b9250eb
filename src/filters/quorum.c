/* SPDX-License-Identifier: MIT */
/*
 * The "quorum" driver: N copies of one disk ("children.0" ... "children.N-1")
 * vote on every read. As QEMU's block/quorum.c behaves:
 *  - read-pattern=quorum (default): every child is read; identical results
 *    form a version; the version with most votes wins (a tie goes to the
 *    version first seen on the later child); fewer successful reads or winner
 *    votes than vote-threshold fail the read (EIO). rewrite-corrupted=on writes
 *    the winner back to the children that disagreed. blkverify=on (exactly two
 *    children, threshold 2) ends the process on any difference ("quorum:
 *    offset=O bytes=N contents mismatch at offset X", status 1).
 *  - read-pattern=fifo: the first child that reads without error answers.
 *  - writes, zero writes and flushes go to every child and succeed when at
 *    least vote-threshold children succeed.
 * The vote is over the whole request, as QEMU hashes the request's data.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "core/node-internal.h"
#include "filters/filter.h"
#include "qimg/json.h"
#include "util/mem.h"

#define QUORUM_MAX_CHILDREN 1024 /* more is a mistake, not a configuration */

struct quorum_state {
    struct qimg_node **children;
    size_t n;
    int64_t threshold;
    bool fifo, rewrite, blkverify;
};

static const struct qimg_opt_desc quorum_open_opts[] = {
    {"vote-threshold", QIMG_OPT_NUMBER, "Quorum vote threshold", NULL},
    {"blkverify", QIMG_OPT_BOOL, "Trigger block verify mode if set", NULL},
    {"rewrite-corrupted", QIMG_OPT_BOOL, "Rewrite corrupted block on read quorum", NULL},
    {"read-pattern", QIMG_OPT_STRING, "Allowed pattern: quorum, fifo. Quorum is default", NULL},
    {0},
};

/* How many children "children.N" names, 0..N-1 without a gap; -1 when not an array. */
static long count_children(const struct qimg_opts *opts)
{
    long max = -1, count = 0;
    for (size_t i = 0; i < opts->n; i++) {
        const char *k = opts->v[i].key;
        if (strncmp(k, "children.", 9))
            continue;
        char *end;
        long idx = strtol(k + 9, &end, 10);
        if (end == k + 9 || (*end && *end != '.') || idx < 0)
            return -1;
        if (idx > max)
            max = idx;
    }
    for (long i = 0; i <= max && i < QUORUM_MAX_CHILDREN; i++) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "children.%ld", i);
        size_t plen = strlen(prefix);
        bool found = false;
        for (size_t j = 0; j < opts->n && !found; j++)
            found = !strncmp(opts->v[j].key, prefix, plen) &&
                    (!opts->v[j].key[plen] || opts->v[j].key[plen] == '.');
        if (!found)
            return -1;
        count++;
    }
    return max >= QUORUM_MAX_CHILDREN ? -1 : count;
}

static int take_options(struct quorum_state *s, struct qimg_opts *opts, struct qimg_error *err)
{
    const char *v = qimg_opts_take(opts, "vote-threshold");
    if (v) {
        char *end;
        long long t = strtoll(v, &end, 10);
        if (!*v || *end)
            return qimg_error_set(err, -EINVAL, "Parameter 'vote-threshold' expects a number");
        s->threshold = t;
    }
    if (s->threshold < 1)
        return qimg_error_set(err, -EINVAL, "Parameter 'vote-threshold' expects a value >= 1");
    if (s->threshold > (int64_t)s->n)
        return qimg_error_set(err, -EINVAL, "threshold may not exceed children count");
    const char *pattern = qimg_opts_take(opts, "read-pattern");
    if (pattern && strcmp(pattern, "quorum") && strcmp(pattern, "fifo"))
        return qimg_error_set(err, -EINVAL, "Please set read-pattern as fifo or quorum");
    s->fifo = pattern && !strcmp(pattern, "fifo");
    int ret = qimg_opts_take_bool(opts, "blkverify", &s->blkverify, err);
    if (ret < 0)
        return ret;
    if (s->blkverify && (s->n != 2 || s->threshold != 2))
        return qimg_error_set(err, -EINVAL, "blkverify=on can only be set if there are exactly "
                                            "two files and vote-threshold is 2");
    ret = qimg_opts_take_bool(opts, "rewrite-corrupted", &s->rewrite, err);
    if (ret < 0)
        return ret;
    if (s->rewrite && s->blkverify)
        return qimg_error_set(err, -EINVAL,
                              "rewrite-corrupted=on cannot be used with blkverify=on");
    return 0;
}

static int open_children(struct qimg_node *n, struct quorum_state *s, struct qimg_opts *opts,
                         struct qimg_error *err)
{
    s->children = xcalloc(s->n, sizeof(*s->children));
    for (size_t i = 0; i < s->n; i++) {
        char name[32], prefix[40];
        snprintf(name, sizeof(name), "children.%zu", i);
        const char *ref = qimg_opts_take(opts, name);
        if (ref) /* a string child names an existing node; qemu-img has none */
            return qimg_error_set(err, -EINVAL, "Cannot find device='%s' nor node-name='%s'",
                                  ref, ref);
        snprintf(prefix, sizeof(prefix), "%s.", name);
        struct qimg_opts *copts = qimg_opts_new();
        qimg_opts_extract_prefix(opts, prefix, copts);
        int ret = filter_open_child(&s->children[i], name, NULL, copts, true, n->flags, err);
        qimg_opts_free(copts);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int quorum_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct quorum_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    qimg_opts_take(opts, "filename"); /* the core's name for the node, not an option here */
    long count = count_children(opts);
    if (count < 0)
        return qimg_error_set(err, -EINVAL, "Option children is not a valid array");
    if (count == 0)
        return qimg_error_set(err, -EINVAL, "Number of provided children must be 1 or more");
    s->n = (size_t)count;
    int ret = take_options(s, opts, err);
    if (ret == 0)
        ret = open_children(n, s, opts, err);
    for (size_t i = 0; ret == 0 && i < s->n; i++)
        if (s->children[i]->request_alignment > n->request_alignment)
            n->request_alignment = s->children[i]->request_alignment;
    return ret;
}

static void quorum_close(struct qimg_node *n)
{
    struct quorum_state *s = n->opaque;
    if (!s)
        return;
    for (size_t i = 0; s->children && i < s->n; i++)
        qimg_node_unref(s->children[i]);
    free(s->children);
    free(s);
    n->opaque = NULL;
}

static int64_t quorum_get_length(struct qimg_node *n)
{
    struct quorum_state *s = n->opaque;
    return qimg_node_length(s->children[0]);
}

static int64_t quorum_get_allocated_size(struct qimg_node *n)
{
    struct quorum_state *s = n->opaque;
    int64_t sum = 0;
    for (size_t i = 0; i < s->n; i++) {
        int64_t a = qimg_node_allocated_size(s->children[i]);
        if (a < 0)
            return a;
        sum += a;
    }
    return sum;
}

static int read_fifo(struct quorum_state *s, uint64_t off, uint64_t len, void *buf,
                     unsigned flags)
{
    int ret = -EIO;
    for (size_t i = 0; i < s->n; i++) {
        ret = qimg_node_pread(s->children[i], off, len, buf, flags);
        if (ret == 0)
            return 0;
    }
    return ret;
}

/* The winning child's index: most votes, a tie to the version first seen later. */
static size_t vote_winner(struct quorum_state *s, uint8_t **bufs, const int *rets,
                          uint64_t len, size_t *votes)
{
    size_t winner = SIZE_MAX, best = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (rets[i] < 0)
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = rets[j] == 0 && !memcmp(bufs[i], bufs[j], len);
        if (seen) /* counted with the first child of its version */
            continue;
        size_t count = 0;
        for (size_t j = i; j < s->n; j++)
            count += rets[j] == 0 && !memcmp(bufs[i], bufs[j], len);
        if (count >= best) {
            best = count;
            winner = i;
        }
    }
    *votes = best;
    return winner;
}

static void blkverify_check(uint8_t **bufs, uint64_t off, uint64_t len)
{
    uint64_t i = 0;
    while (i < len && bufs[0][i] == bufs[1][i])
        i++;
    if (i < len)
        qimg_fatal("quorum: offset=%llu bytes=%llu contents mismatch at offset %llu",
                   (unsigned long long)off, (unsigned long long)len,
                   (unsigned long long)(off + i));
}

static int read_quorum(struct quorum_state *s, uint64_t off, uint64_t len, void *buf,
                       unsigned flags)
{
    uint8_t **bufs = xcalloc(s->n, sizeof(*bufs));
    int *rets = xcalloc(s->n, sizeof(*rets));
    int64_t ok = 0;
    int err = -EIO;
    for (size_t i = 0; i < s->n; i++) {
        bufs[i] = xmalloc(len ? len : 1);
        rets[i] = qimg_node_pread(s->children[i], off, len, bufs[i], flags);
        if (rets[i] == 0)
            ok++;
        else
            err = rets[i];
    }
    int ret = 0;
    size_t votes = 0, winner = SIZE_MAX;
    if (ok < s->threshold) {
        ret = err;
    } else {
        if (s->blkverify && rets[0] == 0 && rets[1] == 0)
            blkverify_check(bufs, off, len);
        winner = vote_winner(s, bufs, rets, len, &votes);
        if (winner == SIZE_MAX || (int64_t)votes < s->threshold)
            ret = -EIO;
    }
    if (ret == 0) {
        memcpy(buf, bufs[winner], len);
        for (size_t i = 0; s->rewrite && i < s->n; i++)
            if (rets[i] == 0 && memcmp(bufs[i], bufs[winner], len))
                (void)qimg_node_pwrite(s->children[i], off, len, bufs[winner], 0);
    }
    for (size_t i = 0; i < s->n; i++)
        free(bufs[i]);
    free(bufs);
    free(rets);
    return ret;
}

static int quorum_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                        unsigned flags)
{
    struct quorum_state *s = n->opaque;
    return s->fifo ? read_fifo(s, off, len, buf, flags) : read_quorum(s, off, len, buf, flags);
}

enum quorum_op { Q_WRITE, Q_ZEROES, Q_FLUSH };

/* Run a modifying request on every child: done when vote-threshold of them succeed. */
static int on_all(struct quorum_state *s, enum quorum_op op, uint64_t off, uint64_t len,
                  const void *buf, unsigned flags)
{
    int64_t ok = 0;
    int err = -EIO;
    for (size_t i = 0; i < s->n; i++) {
        struct qimg_node *c = s->children[i];
        int ret = op == Q_WRITE    ? qimg_node_pwrite(c, off, len, buf, flags)
                  : op == Q_ZEROES ? qimg_node_pwrite_zeroes(c, off, len, flags)
                                   : qimg_node_flush(c);
        if (ret == 0)
            ok++;
        else
            err = ret;
    }
    return ok >= s->threshold ? 0 : err;
}

static int quorum_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                         unsigned flags)
{
    return on_all(n->opaque, Q_WRITE, off, len, buf, flags);
}

static int quorum_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len,
                                unsigned flags)
{
    return on_all(n->opaque, Q_ZEROES, off, len, NULL, flags);
}

static int quorum_flush(struct qimg_node *n)
{
    return on_all(n->opaque, Q_FLUSH, 0, 0, NULL, 0);
}

/* Zero where every child reads zeroes, data elsewhere (no host offset: the copies differ). */
static int quorum_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                               struct qimg_block_status *st)
{
    struct quorum_state *s = n->opaque;
    bool zero = true;
    for (size_t i = 0; i < s->n; i++) {
        struct qimg_block_status cs;
        int ret = qimg_chain_block_status(s->children[i], NULL, off, len, &cs);
        if (ret < 0)
            return ret;
        if (cs.bytes < len)
            len = cs.bytes;
        zero = zero && (cs.flags & QIMG_BLK_ZERO) && !(cs.flags & QIMG_BLK_DATA);
    }
    *st = (struct qimg_block_status){.bytes = len, .flags = zero ? QIMG_BLK_ZERO : QIMG_BLK_DATA};
    return 0;
}

static struct qimg_node *quorum_extra_child(struct qimg_node *n, size_t i, char *name,
                                            size_t cap)
{
    struct quorum_state *s = n->opaque;
    if (i >= s->n)
        return NULL;
    snprintf(name, cap, "children.%zu", i);
    return s->children[i];
}

/* Always a json: name: the driver, its options as given, and the children. */
static char *quorum_plain_filename(struct qimg_node *n)
{
    struct quorum_state *s = n->opaque;
    struct qimg_json *d = filter_name_dict(n, quorum_open_opts);
    struct qimg_json *arr = qimg_json_add(d, "children", qimg_json_array());
    for (size_t i = 0; i < s->n; i++)
        qimg_json_append(arr, qimg_node_describe(s->children[i]));
    return filter_json_name(d);
}

const struct qimg_driver qimg_quorum_driver = {
    .name = "quorum",
    .is_protocol = true, /* opened from its options: it has no "file" */
    .format_without_file = true,
    .open_opts = quorum_open_opts,
    .open = quorum_open,
    .close = quorum_close,
    .get_length = quorum_get_length,
    .get_allocated_size = quorum_get_allocated_size,
    .pread = quorum_pread,
    .pwrite = quorum_pwrite,
    .pwrite_zeroes = quorum_pwrite_zeroes,
    .flush = quorum_flush,
    .block_status = quorum_block_status,
    .extra_child = quorum_extra_child,
    .plain_filename = quorum_plain_filename,
};
