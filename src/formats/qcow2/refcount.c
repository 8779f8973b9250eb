/* SPDX-License-Identifier: MIT */
/*
 * Host cluster management (qcow2.txt: Host cluster management): refcount
 * lookups and updates for every refcount width (1..64 bits), free-cluster
 * search, refcount block creation and refcount table growth, compressed byte
 * allocation, and the index of metadata clusters used by the overlap check.
 * All functions run with n->lock held.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"
#include "util/mem.h"

#define META_REFBLOCK 1u

/* qcow2.txt: sub-byte refcounts count bit 0 as the least significant bit of a byte. */
uint64_t refcount_get_entry(const struct qcow2_state *s, const uint8_t *block, uint64_t idx)
{
    unsigned bits = s->refcount_bits;
    if (bits < 8) {
        uint64_t bit = idx * bits;
        return (block[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
    }
    unsigned bytes = bits / 8;
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++)
        v = (v << 8) | block[idx * bytes + i];
    return v;
}

void refcount_set_entry(const struct qcow2_state *s, uint8_t *block, uint64_t idx, uint64_t v)
{
    unsigned bits = s->refcount_bits;
    if (bits < 8) {
        uint64_t bit = idx * bits;
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << (bit % 8));
        block[bit / 8] = (uint8_t)((block[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
        return;
    }
    unsigned bytes = bits / 8;
    for (unsigned i = bytes; i-- > 0; v >>= 8)
        block[idx * bytes + i] = (uint8_t)v;
}

/* Byte range of a block holding entries [first, first+count). */
static void entry_bytes(const struct qcow2_state *s, uint64_t first, uint64_t count,
                        uint64_t *start, uint64_t *len)
{
    uint64_t b0 = first * s->refcount_bits / 8;
    uint64_t b1 = qcow2_div_round_up((first + count) * s->refcount_bits, 8);
    *start = b0;
    *len = b1 - b0;
}

static size_t meta_find(const struct qcow2_state *s, uint64_t offset)
{
    size_t lo = 0, hi = s->n_meta;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((s->meta[mid] & ~(uint64_t)META_REFBLOCK) < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void meta_insert(struct qcow2_state *s, uint64_t offset, unsigned kind)
{
    size_t i = meta_find(s, offset);
    if (i < s->n_meta && (s->meta[i] & ~(uint64_t)META_REFBLOCK) == offset)
        return;
    if (s->n_meta == s->cap_meta) {
        s->cap_meta = s->cap_meta ? s->cap_meta * 2 : 64;
        s->meta = xrealloc(s->meta, s->cap_meta * sizeof(*s->meta));
    }
    memmove(&s->meta[i + 1], &s->meta[i], (s->n_meta - i) * sizeof(*s->meta));
    s->meta[i] = offset | kind;
    s->n_meta++;
}

void qcow2_meta_add(struct qcow2_state *s, uint64_t offset)
{
    meta_insert(s, offset, 0);
}

void qcow2_meta_add_refblock(struct qcow2_state *s, uint64_t offset)
{
    meta_insert(s, offset, META_REFBLOCK);
}

void qcow2_meta_reset_refblocks(struct qcow2_state *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n_meta; i++)
        if (!(s->meta[i] & META_REFBLOCK))
            s->meta[k++] = s->meta[i];
    s->n_meta = k;
    for (uint64_t i = 0; i < s->rt_size; i++)
        if (s->rt[i] & ~QCOW2_RT_RESERVED)
            meta_insert(s, s->rt[i] & ~QCOW2_RT_RESERVED, META_REFBLOCK);
}

/* A freed cluster is no metadata any more (snapshot deletion frees L2 tables). */
static void meta_remove(struct qcow2_state *s, uint64_t offset)
{
    size_t i = meta_find(s, offset);
    if (i < s->n_meta && (s->meta[i] & ~(uint64_t)META_REFBLOCK) == offset) {
        memmove(&s->meta[i], &s->meta[i + 1], (s->n_meta - i - 1) * sizeof(*s->meta));
        s->n_meta--;
    }
}

bool qcow2_meta_contains(const struct qcow2_state *s, uint64_t offset)
{
    size_t i = meta_find(s, offset);
    return i < s->n_meta && (s->meta[i] & ~(uint64_t)META_REFBLOCK) == offset;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

const char *qcow2_overlap(const struct qcow2_state *s, uint64_t off, uint64_t len)
{
    uint64_t cs = s->cluster_size;
    if (ranges_overlap(off, len, 0, cs))
        return "qcow2_header";
    if (ranges_overlap(off, len, s->l1_offset, (uint64_t)s->l1_size * 8))
        return "active L1 table";
    if (ranges_overlap(off, len, s->rt_offset, (uint64_t)s->rt_clusters * cs))
        return "refcount table";
    if (s->nb_snapshots &&
        ranges_overlap(off, len, s->snapshots_offset,
                       s->snapshots_size ? qcow2_align_up(s->snapshots_size, cs) : cs))
        return "snapshot table";
    const char *other = qcow2_snapshot_overlap(s, off, len);
    if (!other)
        other = qcow2_bitmap_overlap(s, off, len);
    if (other)
        return other;
    uint64_t first = off / cs * cs;
    size_t i = meta_find(s, first);
    if (i < s->n_meta) {
        uint64_t m = s->meta[i] & ~(uint64_t)META_REFBLOCK;
        if (m < off + len)
            return (s->meta[i] & META_REFBLOCK) ? "refcount block" : "active L2 table";
    }
    return NULL;
}

static int refblock_offset(struct qimg_node *n, uint64_t rt_idx, uint64_t *out)
{
    struct qcow2_state *s = n->opaque;
    *out = 0;
    if (rt_idx >= s->rt_size)
        return 0;
    uint64_t e = s->rt[rt_idx];
    uint64_t off = e & ~QCOW2_RT_RESERVED;
    if (off % s->cluster_size) {
        char what[128];
        snprintf(what, sizeof(what), "Refblock offset %#llx unaligned (reftable index: %#llx)",
                 (unsigned long long)off, (unsigned long long)rt_idx);
        qcow2_mark_corrupt(n, what);
        return -EIO;
    }
    *out = off;
    return 0;
}

int qcow2_refcount_load(struct qimg_node *n, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    uint64_t bytes = (uint64_t)s->rt_clusters * s->cluster_size;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get the size of the image file");
    s->rt_size = bytes / 8;
    s->rt = xcalloc(s->rt_size ? s->rt_size : 1, 8);
    /* Past the end of the file the table reads as zeroes, as QEMU reads it. */
    uint64_t have = s->rt_offset >= (uint64_t)flen ? 0 : (uint64_t)flen - s->rt_offset;
    if (have > bytes)
        have = bytes;
    uint8_t *buf = xcalloc(1, bytes ? bytes : 1);
    qimg_debug_event(n->file, QIMG_DBG_REFTABLE_LOAD);
    int ret = have ? qimg_node_pread(n->file, s->rt_offset, have, buf, 0) : 0;
    if (ret < 0) {
        free(buf);
        return qimg_error_errno(err, ret, "Could not initialize refcount handling");
    }
    for (uint64_t i = 0; i < s->rt_size; i++) {
        s->rt[i] = qcow2_be64(buf + i * 8);
        uint64_t off = s->rt[i] & ~QCOW2_RT_RESERVED;
        if (off)
            meta_insert(s, off, META_REFBLOCK);
    }
    free(buf);
    return 0;
}

/*
 * Load the refcount block at boff through the cache. A block (partly) past
 * the end of the file reads as zeroes there, as QEMU's block layer reads any
 * range below its maximum request end (a damaged refcount table can point
 * anywhere: qemu-img check then reports refcount 0, not a read error).
 */
#define QCOW2_MAX_REQUEST_END 0x7fffffffc0000000ull /* INT64_MAX aligned down to 1 GiB */
static int refblock_load(struct qimg_node *n, uint64_t boff, uint8_t **blk)
{
    struct qcow2_state *s = n->opaque;
    int ret = qcow2_cache_get(n, &s->rb_cache, boff, false, blk);
    if (ret != -EIO)
        return ret;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0 || boff + s->cluster_size <= (uint64_t)flen ||
        boff > QCOW2_MAX_REQUEST_END - s->cluster_size)
        return ret; /* a real read error, or a request QEMU refuses too */
    ret = qcow2_cache_get(n, &s->rb_cache, boff, true, blk); /* zero-filled */
    if (ret == 0 && boff < (uint64_t)flen)
        ret = qimg_node_pread(n->file, boff, (uint64_t)flen - boff, *blk, 0);
    if (ret < 0)
        qcow2_cache_drop(&s->rb_cache, boff);
    return ret;
}

int qcow2_get_refcount(struct qimg_node *n, uint64_t ci, uint64_t *out)
{
    struct qcow2_state *s = n->opaque;
    uint64_t boff;
    int ret = refblock_offset(n, ci / s->rb_entries, &boff);
    *out = 0;
    if (ret < 0 || !boff)
        return ret;
    uint8_t *blk;
    qimg_debug_event(n->file, QIMG_DBG_REFBLOCK_LOAD);
    ret = refblock_load(n, boff, &blk);
    if (ret < 0)
        return ret;
    *out = refcount_get_entry(s, blk, ci % s->rb_entries);
    return 0;
}

void qcow2_discard_freed_begin(struct qcow2_state *s)
{
    s->collect_discards = true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int qcow2_discard_freed_end(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    int ret = 0;
    s->collect_discards = false;
    if (s->n_freed) /* qsort wants a non-NULL array even for 0 elements */
        qsort(s->freed, s->n_freed, sizeof(*s->freed), cmp_u64);
    for (size_t i = 0; i < s->n_freed;) {
        size_t j = i + 1;
        while (j < s->n_freed && s->freed[j] <= s->freed[j - 1] + 1)
            j++;
        uint64_t first = s->freed[i], count = s->freed[j - 1] - first + 1;
        int r = qimg_node_pdiscard(n->file, first * cs, count * cs);
        if (r < 0 && ret == 0)
            ret = r;
        i = j;
    }
    free(s->freed);
    s->freed = NULL;
    s->n_freed = s->cap_freed = 0;
    return ret;
}

/* A collected cluster that is allocated again is no longer to be discarded. */
static void discard_cancel(struct qcow2_state *s, uint64_t ci)
{
    for (size_t i = 0; i < s->n_freed; i++)
        if (s->freed[i] == ci)
            s->freed[i--] = s->freed[--s->n_freed];
}

/* Side effects of refcounts that reached zero: free-space hints, metadata index. */
static void note_freed(struct qcow2_state *s, uint64_t ci)
{
    if (s->collect_discards) {
        if (s->n_freed == s->cap_freed) {
            s->cap_freed = s->cap_freed ? 2 * s->cap_freed : 16;
            s->freed = xrealloc(s->freed, s->cap_freed * sizeof(*s->freed));
        }
        s->freed[s->n_freed++] = ci;
    }
    meta_remove(s, ci * s->cluster_size);
    if (ci < s->free_cluster_index)
        s->free_cluster_index = ci;
    if (s->free_byte_offset / s->cluster_size == ci)
        s->free_byte_offset = 0;
}

static int refblock_ensure(struct qimg_node *n, uint64_t idx);

int qcow2_update_refcounts(struct qimg_node *n, uint64_t first, uint64_t count, int64_t delta)
{
    struct qcow2_state *s = n->opaque;
    if (delta < 0)
        qimg_debug_event(n->file, QIMG_DBG_CLUSTER_FREE);
    while (count) {
        uint64_t rt_idx = first / s->rb_entries, in = first % s->rb_entries;
        uint64_t now = s->rb_entries - in < count ? s->rb_entries - in : count;
        uint64_t boff;
        int ret = refblock_offset(n, rt_idx, &boff);
        if (ret < 0)
            return ret;
        if (!boff && delta < 0 && s->checking) {
            /*
             * Freeing clusters no refcount block describes (a damaged table
             * pointed there; check -r rewrites it): QEMU gives the range its
             * refcount block first, then reports the changed metadata (EAGAIN).
             */
            ret = refblock_ensure(n, rt_idx);
            return ret < 0 ? ret : -EAGAIN;
        }
        if (!boff) {
            qcow2_mark_corrupt(n, "Preventing invalid refcount update (no refcount block)");
            return -EIO;
        }
        uint8_t *blk;
        /* QEMU raises refblock_alloc on every refcount update, not only for new blocks. */
        qimg_debug_event(n->file, QIMG_DBG_REFBLOCK_ALLOC);
        ret = refblock_load(n, boff, &blk);
        if (ret < 0)
            return ret;
        /* Check the whole range first: a refused update changes nothing. */
        for (uint64_t i = in; i < in + now; i++) {
            uint64_t v = refcount_get_entry(s, blk, i);
            if ((delta < 0 && v < (uint64_t)-delta) ||
                (delta > 0 && s->refcount_max - v < (uint64_t)delta))
                return delta < 0 ? -EIO : -ERANGE;
        }
        for (uint64_t i = in; i < in + now; i++)
            refcount_set_entry(s, blk, i, refcount_get_entry(s, blk, i) + (uint64_t)delta);
        /*
         * After a fatal corruption event in qemu-img check, QEMU's node has
         * lost its driver: refcount updates stay in its cache, never written
         * (check.c forgets them, see check_node_lost).
         */
        if (qcow2_refcount_defer(s, delta) || (s->checking && s->corrupt_event && !s->read_only)) {
            /* Lazy refcounts: the block is written back later (qcow2_refcount_writeback). */
            qcow2_cache_mark_dirty(&s->rb_cache, boff);
        } else {
            uint64_t bstart, blen;
            entry_bytes(s, in, now, &bstart, &blen);
            qimg_debug_event(n->file, QIMG_DBG_REFBLOCK_UPDATE_PART);
            ret = qcow2_meta_write(n, boff + bstart, blk + bstart, blen);
            if (ret < 0) {
                /* A failed update changes nothing in memory; the file may hold either. */
                for (uint64_t i = in; i < in + now; i++)
                    refcount_set_entry(s, blk, i,
                                       refcount_get_entry(s, blk, i) - (uint64_t)delta);
                return ret;
            }
        }
        for (uint64_t i = in; i < in + now; i++) {
            uint64_t v = refcount_get_entry(s, blk, i);
            if (v == 0)
                note_freed(s, rt_idx * s->rb_entries + i);
            else if (s->n_freed && delta > 0 && v == (uint64_t)delta)
                discard_cancel(s, rt_idx * s->rb_entries + i);
        }
        first += now;
        count -= now;
    }
    return 0;
}

/* Create the refcount block for table index rt_idx in cluster ci (self: ci is in its range). */
static int refblock_create(struct qimg_node *n, uint64_t rt_idx, uint64_t ci, bool self)
{
    struct qcow2_state *s = n->opaque;
    uint64_t off = ci * s->cluster_size;
    uint8_t *blk;
    int ret = qcow2_cache_get(n, &s->rb_cache, off, true, &blk);
    if (ret < 0)
        return ret;
    if (self)
        refcount_set_entry(s, blk, ci % s->rb_entries, 1);
    if (s->n_freed)
        discard_cancel(s, ci);
    qimg_debug_event(n->file, QIMG_DBG_REFBLOCK_ALLOC_WRITE);
    ret = qcow2_meta_write(n, off, blk, s->cluster_size);
    if (ret < 0) {
        qcow2_cache_drop(&s->rb_cache, off);
        return ret;
    }
    /* cache.c, power-loss order: the block (and its own refcount) before the table entry. */
    ret = qcow2_barrier(n);
    if (ret < 0)
        return ret;
    uint8_t be[8];
    qcow2_put64(be, off);
    qimg_debug_event(n->file, QIMG_DBG_REFBLOCK_ALLOC_HOOKUP);
    ret = qcow2_meta_write(n, s->rt_offset + rt_idx * 8, be, 8);
    if (ret < 0)
        return ret;
    s->rt[rt_idx] = off;
    meta_insert(s, off, META_REFBLOCK);
    return 0;
}

static uint64_t rt_clusters_for(const struct qcow2_state *s, uint64_t end_cluster)
{
    uint64_t entries = qcow2_div_round_up(end_cluster, s->rb_entries);
    return qcow2_div_round_up(entries * 8, s->cluster_size);
}

/*
 * The refcount table is full: place new refcount blocks and a bigger table
 * past everything the old table covers (all free), switch the header to it,
 * then free the old table. A crash in between leaks clusters, nothing more.
 */
static int reftable_grow(struct qimg_node *n, uint64_t needed_ci)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size, rbe = s->rb_entries;
    qimg_debug_event(n->file, QIMG_DBG_REFTABLE_GROW);
    /* The new table copies the old one: deferred (lazy) blocks go first. */
    int wret = qcow2_refcount_writeback(n);
    if (wret < 0)
        return wret;
    uint64_t a = s->rt_size * rbe; /* first cluster the old table cannot describe */
    uint64_t want = rt_clusters_for(s, needed_ci + 1);
    uint64_t t = want + want / 2 + 1, b = 0;
    if (t < s->rt_clusters)
        t = s->rt_clusters + 1;
    for (;;) {
        uint64_t end = a + b + t;
        uint64_t nb = (end - 1) / rbe - a / rbe + 1;
        uint64_t nt = rt_clusters_for(s, end);
        if (nt <= t && nb == b)
            break;
        if (nt > t)
            t = nt;
        b = nb;
    }
    if (t * cs > QCOW2_MAX_REFTABLE_BYTES || (a + b + t) * cs > QCOW2_MAX_HOST_OFFSET)
        return -EFBIG;
    uint64_t end = a + b + t, new_entries = t * cs / 8;
    uint8_t *buf = qimg_alloc_aligned(cs);
    uint8_t *table = qimg_alloc_aligned(t * cs);
    uint64_t *rt = xcalloc(new_entries, 8);
    int ret = -ENOMEM;
    if (!buf || !table)
        goto out;
    memcpy(rt, s->rt, s->rt_size * 8);
    qimg_debug_event(n->file, QIMG_DBG_REFBLOCK_ALLOC_WRITE_BLOCKS);
    for (uint64_t k = 0; k < b; k++) {
        uint64_t idx = a / rbe + k;
        memset(buf, 0, cs);
        for (uint64_t c = a; c < end; c++)
            if (c / rbe == idx)
                refcount_set_entry(s, buf, c % rbe, 1);
        ret = qimg_node_pwrite(n->file, (a + k) * cs, cs, buf, 0);
        if (ret < 0)
            goto out;
        rt[idx] = (a + k) * cs;
    }
    memset(table, 0, t * cs);
    for (uint64_t i = 0; i < new_entries; i++)
        qcow2_put64(table + i * 8, rt[i]);
    qimg_debug_event(n->file, QIMG_DBG_REFBLOCK_ALLOC_WRITE_TABLE);
    ret = qimg_node_pwrite(n->file, (a + b) * cs, t * cs, table, 0);
    if (ret < 0)
        goto out;
    ret = qimg_node_flush(n->file);
    if (ret < 0)
        goto out;
    uint8_t hdr[12];
    qcow2_put64(hdr, (a + b) * cs);
    qcow2_put32(hdr + 8, (uint32_t)t);
    qimg_debug_event(n->file, QIMG_DBG_REFBLOCK_ALLOC_SWITCH_TABLE);
    ret = qcow2_header_update_fields(n, 48, hdr, 12);
    if (ret < 0)
        goto out;
    uint64_t old_off = s->rt_offset, old_clusters = s->rt_clusters;
    free(s->rt);
    s->rt = rt;
    rt = NULL;
    s->rt_size = new_entries;
    s->rt_offset = (a + b) * cs;
    s->rt_clusters = (uint32_t)t;
    for (uint64_t k = 0; k < b; k++)
        meta_insert(s, (a + k) * cs, META_REFBLOCK);
    ret = qcow2_update_refcounts(n, old_off / cs, old_clusters, -1);
    if (ret < 0) { /* the old table is unreferenced already: a failure leaks it (as QEMU) */
        fprintf(stderr, "qcow2_free_clusters failed: %s\n", strerror(-ret));
        ret = 0;
    }
out:
    free(buf);
    free(table);
    free(rt);
    return ret;
}

/*
 * Scan forward from free_cluster_index for count free clusters (clusters no
 * refcount block describes are free). Like QEMU, the index only moves
 * forward here; freeing a cluster moves it back.
 */
static int find_free(struct qimg_node *n, uint64_t count, uint64_t *start)
{
    struct qcow2_state *s = n->opaque;
    uint64_t run = 0, i = s->free_cluster_index;
    for (;; i++) {
        if ((i + 1) * s->cluster_size > QCOW2_MAX_HOST_OFFSET)
            return -EFBIG;
        uint64_t rc;
        int ret = qcow2_get_refcount(n, i, &rc);
        if (ret < 0)
            return ret;
        if (rc) {
            run = 0;
            continue;
        }
        if (++run == count) {
            *start = i + 1 - count;
            s->free_cluster_index = i + 1;
            return 0;
        }
    }
}

/*
 * Give table index idx a refcount block, placed at the next free cluster:
 * self-describing when that cluster is in idx's own range; otherwise the
 * cluster is counted in the block of its own range (created after it, as
 * QEMU lays them out) before the new block is linked into the table.
 * Returns 1 when the refcount table had to grow (callers start over).
 */
static int refblock_ensure(struct qimg_node *n, uint64_t idx)
{
    struct qcow2_state *s = n->opaque;
    uint64_t place = 0;
    qimg_debug_event(n->file, QIMG_DBG_REFBLOCK_ALLOC);
    /* Deferred (lazy) refcounts reach the file before a new block is linked (as QEMU). */
    int ret = qcow2_refcount_writeback(n);
    if (ret == 0)
        ret = find_free(n, 1, &place);
    if (ret < 0)
        return ret;
    uint64_t pidx = place / s->rb_entries;
    if (pidx >= s->rt_size) {
        s->free_cluster_index = place;
        ret = reftable_grow(n, place + 1);
        return ret < 0 ? ret : 1;
    }
    if (pidx == idx)
        return refblock_create(n, idx, place, true);
    uint64_t poff;
    ret = refblock_offset(n, pidx, &poff);
    if (ret < 0)
        return ret;
    if (!poff) {
        ret = refblock_ensure(n, pidx);
        if (ret)
            return ret;
    }
    ret = qcow2_update_refcounts(n, place, 1, 1);
    if (ret < 0)
        return ret;
    return refblock_create(n, idx, place, false);
}

/*
 * Allocate count contiguous clusters. The refcount table must describe the
 * whole run first (growing it starts over); then the run is counted block by
 * block, a missing refcount block created just before its part is counted,
 * as QEMU does: with deferred (lazy) refcounts, the blocks written back at
 * that creation hold the run's earlier parts.
 */
int64_t qcow2_alloc_clusters(struct qimg_node *n, uint64_t count)
{
    struct qcow2_state *s = n->opaque;
    uint64_t start;
    if (count == 0)
        return -EINVAL;
    qimg_debug_event(n->file, QIMG_DBG_CLUSTER_ALLOC);
retry:;
    int ret = find_free(n, count, &start);
    if (ret < 0)
        return ret;
    uint64_t end = start + count;
    if ((end - 1) / s->rb_entries >= s->rt_size) {
        s->free_cluster_index = start;
        ret = reftable_grow(n, end);
        if (ret < 0)
            return ret;
        goto retry;
    }
    for (uint64_t ci = start; ci < end;) {
        uint64_t rt_idx = ci / s->rb_entries;
        uint64_t part_end = (rt_idx + 1) * s->rb_entries < end ? (rt_idx + 1) * s->rb_entries : end;
        uint64_t boff;
        ret = refblock_offset(n, rt_idx, &boff);
        if (ret < 0)
            return ret;
        if (!boff) {
            ret = refblock_ensure(n, rt_idx);
            if (ret < 0)
                return ret;
            if (ret > 0 && ci == start) {
                s->free_cluster_index = start;
                goto retry;
            }
            if (ret > 0) {
                /* The table grew with part of the run counted: keep the rest reserved. */
                if (s->free_cluster_index < end)
                    s->free_cluster_index = end;
                continue;
            }
        }
        ret = qcow2_update_refcounts(n, ci, part_end - ci, 1);
        if (ret < 0)
            return ret; /* parts already counted leak, nothing worse */
        ci = part_end;
    }
    return (int64_t)(start * s->cluster_size);
}

int64_t qcow2_alloc_bytes(struct qimg_node *n, uint64_t size)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t fb = s->free_byte_offset;
    int64_t off;
    if (size == 0 || size > cs)
        return -EINVAL;
    qimg_debug_event(n->file, QIMG_DBG_CLUSTER_ALLOC_BYTES);
    /* A partly used cluster whose refcount is at its maximum cannot be shared again. */
    uint64_t rc;
    if (fb && fb % cs && (qcow2_get_refcount(n, fb / cs, &rc) < 0 || rc >= s->refcount_max))
        fb = 0;
    if (fb && fb % cs && cs - fb % cs >= size) {
        int ret = qcow2_update_refcounts(n, fb / cs, 1, 1);
        if (ret < 0)
            return ret;
        off = (int64_t)fb;
    } else {
        off = qcow2_alloc_clusters(n, 1);
        if (off < 0)
            return off;
        /*
         * Compressed data may run on into the next host cluster (as QEMU packs
         * it): when the new cluster follows the partly used one, start in the
         * partly used one, which gains a reference.
         */
        if (fb && fb % cs && (uint64_t)off == fb - fb % cs + cs) {
            int ret = qcow2_update_refcounts(n, fb / cs, 1, 1);
            if (ret < 0)
                return ret;
            off = (int64_t)fb;
        }
    }
    s->free_byte_offset = (uint64_t)off + size;
    if (s->free_byte_offset % cs == 0)
        s->free_byte_offset = 0;
    return off;
}

int qcow2_free_bytes(struct qimg_node *n, uint64_t offset, uint64_t len)
{
    struct qcow2_state *s = n->opaque;
    if (!len)
        return 0;
    uint64_t first = offset / s->cluster_size;
    uint64_t last = (offset + len - 1) / s->cluster_size;
    return qcow2_update_refcounts(n, first, last - first + 1, -1);
}
