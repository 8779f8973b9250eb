/* SPDX-License-Identifier: MIT */
/*
 * qemu-img check for QED (qed.txt: Consistency checking), as 9.1 does it:
 * every table and data cluster offset must be cluster aligned, past the
 * header and inside the file; each cluster is referenced once; clusters no
 * table references are leaks. Repair (-r, and a read-write open of an image
 * marked dirty) clears bad L1/L2 entries; clusters referenced twice and
 * leaks stay. A clean result clears the need-check flag. QED's check prints
 * no per-cluster messages; only the counters go back.
 */
#include <errno.h>
#include <stdlib.h>

#include "formats/qed/qed.h"
#include "util/bytes.h"
#include "util/mem.h"

#define QED_CHECK_BITMAP_MAX (512ull << 20) /* bytes of "cluster used" bits we allocate */

struct qed_check {
    struct qimg_node *n;
    struct qed_state *s;
    struct qimg_check_result *res;
    bool fix;
    uint64_t nclusters; /* clusters in the file */
    uint8_t *used;
};

/* Mark count clusters from offset used; false when one already was (a corruption each). */
static bool mark_used(struct qed_check *c, uint64_t offset, uint64_t count)
{
    uint64_t cluster = offset / c->s->h.cluster_size;
    int dups = 0;
    for (uint64_t k = 0; k < count; k++, cluster++) {
        if (cluster >= c->nclusters)
            continue; /* cannot happen for validated offsets */
        uint8_t bit = (uint8_t)(1u << (cluster % 8));
        if (c->used[cluster / 8] & bit)
            dups++;
        c->used[cluster / 8] |= bit;
    }
    c->res->corruptions += dups;
    return dups == 0;
}

/* A bad entry: cleared when repairing (counted fixed), else counted. */
static void bad_entry(struct qed_check *c, uint8_t *slot, bool *changed)
{
    if (c->fix) {
        qimg_put_le64(slot, 0);
        c->res->corruptions_fixed++;
        *changed = true;
    } else {
        c->res->corruptions++;
    }
}

/* One L2 table, piece by piece; repaired pieces are written back. */
static int check_l2(struct qed_check *c, uint64_t table)
{
    struct qed_state *s = c->s;
    uint64_t last = 0;
    for (uint64_t p = 0; p < s->table_bytes; p += s->piece) {
        uint8_t *t;
        bool changed = false;
        int ret = qimg_table_cache_get(&s->l2, table + p, false, &t);
        if (ret < 0)
            return ret;
        for (uint64_t in = 0; in < s->piece; in += 8) {
            uint64_t e = qimg_le64(t + in);
            if (e == QED_UNALLOCATED || e == QED_ZERO_CLUSTER)
                continue;
            c->res->allocated_clusters++;
            if (last && last + s->h.cluster_size != e)
                c->res->fragmented_clusters++;
            last = e;
            if (!qed_cluster_offset_valid(s, e)) {
                bad_entry(c, t + in, &changed);
                continue;
            }
            mark_used(c, e, 1);
        }
        if (changed) {
            ret = qimg_table_cache_store(&s->l2, table + p, 0, s->piece);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

/* The L1 table and every L2 table it names; returns the last I/O error. */
static int check_l1(struct qed_check *c)
{
    struct qed_state *s = c->s;
    int last_error = 0;
    mark_used(c, s->h.l1_table_offset, s->h.table_size);
    for (uint64_t p = 0; p < s->table_bytes; p += s->piece) {
        uint8_t *t;
        bool changed = false;
        int ret = qimg_table_cache_get(&s->l1, s->h.l1_table_offset + p, false, &t);
        if (ret < 0) {
            c->res->check_errors++;
            return ret;
        }
        for (uint64_t in = 0; in < s->piece; in += 8) {
            uint64_t e = qimg_le64(t + in);
            if (e == QED_UNALLOCATED)
                continue;
            if (!qed_table_offset_valid(s, e)) {
                bad_entry(c, t + in, &changed);
                continue;
            }
            if (!mark_used(c, e, s->h.table_size))
                continue; /* a table seen before: not scanned twice */
            ret = check_l2(c, e);
            if (ret < 0) {
                c->res->check_errors++;
                last_error = ret;
            }
        }
        if (changed) {
            ret = qimg_table_cache_store(&s->l1, s->h.l1_table_offset + p, 0, s->piece);
            if (ret < 0) {
                c->res->check_errors++;
                last_error = ret;
            }
        }
    }
    return last_error;
}

static void count_leaks(struct qed_check *c)
{
    for (uint64_t i = c->s->h.header_size; i < c->nclusters; i++)
        if (!(c->used[i / 8] & (1u << (i % 8))))
            c->res->leaks++;
}

/* Clear the need-check flag once nothing is left to repair (fixes stable first). */
static int mark_clean(struct qimg_node *n, const struct qimg_check_result *res)
{
    struct qed_state *s = n->opaque;
    if (res->corruptions || res->check_errors || !(s->h.features & QED_F_NEED_CHECK))
        return 0;
    int ret = qimg_node_flush(n->file);
    if (ret < 0)
        return ret;
    s->h.features &= ~QED_F_NEED_CHECK;
    return qed_header_write(n);
}

int qed_check_image(struct qimg_node *n, struct qimg_check_result *res, bool fix)
{
    struct qed_state *s = n->opaque;
    struct qed_check c = {.n = n, .s = s, .res = res, .fix = fix};
    c.nclusters = s->file_size / s->h.cluster_size;
    uint64_t bytes = c.nclusters / 8 + 1;
    if (bytes > QED_CHECK_BITMAP_MAX)
        return -ENOMEM;
    c.used = calloc(1, bytes);
    if (!c.used)
        return -ENOMEM;
    res->has_bfi = true;
    res->total_clusters = qimg_div_round_up(s->h.image_size, s->h.cluster_size);
    int ret = check_l1(&c);
    if (ret == 0)
        count_leaks(&c);
    free(c.used);
    if (fix) {
        int r2 = mark_clean(n, res);
        if (ret == 0)
            ret = r2;
    }
    return ret;
}

int qed_check(struct qimg_node *n, struct qimg_check_result *res, int fix, struct qimg_error *err)
{
    pthread_mutex_lock(&n->lock);
    int ret = qed_check_image(n, res, fix != 0);
    pthread_mutex_unlock(&n->lock);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Check failed");
    return 0;
}
