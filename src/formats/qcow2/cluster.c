/* SPDX-License-Identifier: MIT */
/*
 * Guest -> host mapping (qcow2.txt: Cluster mapping, Extended L2 Entries):
 * L1 and L2 lookups, entry decoding, L2 table allocation (write the table,
 * then point the L1 entry at it), L1 growth. All with n->lock held.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"
#include "util/mem.h"

uint64_t qcow2_entry_host(const struct qcow2_state *s, const struct qcow2_entry *e)
{
    (void)s;
    if (e->l2e & QCOW2_OFLAG_COMPRESSED)
        return 0;
    return e->l2e & QCOW2_OFFSET_MASK;
}

enum qcow2_ctype qcow2_entry_type(const struct qcow2_state *s, const struct qcow2_entry *e,
                                  unsigned sc)
{
    if (e->l2e & QCOW2_OFLAG_COMPRESSED)
        return QCOW2_COMPRESSED;
    uint64_t host = e->l2e & QCOW2_OFFSET_MASK;
    /* qcow2.txt: with an external data file, offset 0 with bit 63 set is guest cluster 0. */
    if (!host && qcow2_has_data_file(s) && (e->l2e & QCOW2_OFLAG_COPIED))
        host = 1;
    if (s->extended_l2) {
        if (e->bitmap & (1ull << sc))
            return QCOW2_NORMAL;
        if (e->bitmap & (1ull << (sc + 32)))
            return host ? QCOW2_ZERO_ALLOC : QCOW2_ZERO_PLAIN;
        return QCOW2_UNALLOCATED;
    }
    if (s->version >= 3 && (e->l2e & QCOW2_OFLAG_ZERO))
        return host ? QCOW2_ZERO_ALLOC : QCOW2_ZERO_PLAIN;
    return host ? QCOW2_NORMAL : QCOW2_UNALLOCATED;
}

bool qcow2_entry_valid(const struct qcow2_state *s, const struct qcow2_entry *e)
{
    if (e->l2e & QCOW2_OFLAG_COMPRESSED)
        return !s->extended_l2 || e->bitmap == 0;
    uint64_t host = e->l2e & QCOW2_OFFSET_MASK;
    if (host % s->cluster_size)
        return false;
    if (s->extended_l2) {
        uint32_t alloc = (uint32_t)e->bitmap, zero = (uint32_t)(e->bitmap >> 32);
        if (alloc & zero)
            return false;
        if (alloc && !host)
            return false;
    }
    return true;
}

void qcow2_compressed_range(const struct qcow2_state *s, uint64_t l2e, uint64_t *host,
                            uint64_t *len)
{
    unsigned x = 62 - (s->cluster_bits - 8);
    uint64_t off = l2e & ((1ull << x) - 1);
    uint64_t nb = (l2e >> x) & ((1ull << (s->cluster_bits - 8)) - 1);
    *host = off;
    *len = (nb + 1) * 512 - (off & 511);
}

void qcow2_l2_get_entry(const struct qcow2_state *s, const uint8_t *l2, uint64_t idx,
                        struct qcow2_entry *e)
{
    const uint8_t *p = l2 + idx * s->l2_entry_bytes;
    e->l2e = qcow2_be64(p);
    e->bitmap = s->extended_l2 ? qcow2_be64(p + 8) : 0;
}

void qcow2_l2_set_entry(const struct qcow2_state *s, uint8_t *l2, uint64_t idx,
                        const struct qcow2_entry *e)
{
    uint8_t *p = l2 + idx * s->l2_entry_bytes;
    qcow2_put64(p, e->l2e);
    if (s->extended_l2)
        qcow2_put64(p + 8, e->bitmap);
}

int qcow2_l1_write_entry(struct qimg_node *n, uint64_t idx)
{
    struct qcow2_state *s = n->opaque;
    uint8_t be[8];
    qcow2_put64(be, s->l1[idx]);
    qimg_debug_event(n->file, QIMG_DBG_L1_UPDATE);
    return qcow2_meta_write(n, s->l1_offset + idx * 8, be, 8);
}

/*
 * Freeing clusters nothing references any more (QEMU's qcow2_free_clusters):
 * a failed refcount update only leaks them, so it is reported and the
 * request that freed them still succeeds, as in QEMU.
 */
static int free_reported(struct qimg_node *n, int ret)
{
    (void)n;
    if (ret < 0)
        fprintf(stderr, "qcow2_free_clusters failed: %s\n", strerror(-ret));
    return 0;
}

/*
 * A new L2 table that could not be written (ENOSPC, EIO) is referenced by
 * nothing yet: free its cluster, as QEMU does, instead of leaking it.
 */
static int unalloc_table(struct qimg_node *n, uint64_t offset, int err)
{
    struct qcow2_state *s = n->opaque;
    free_reported(n, qcow2_update_refcounts(n, offset / s->cluster_size, 1, -1));
    return err;
}

int qcow2_get_l2(struct qimg_node *n, uint64_t guest_off, bool alloc, uint8_t **l2,
                 uint64_t *l2_offset)
{
    struct qcow2_state *s = n->opaque;
    uint64_t l1_idx = guest_off >> (s->cluster_bits + s->l2_bits);
    *l2 = NULL;
    if (l1_idx >= s->l1_size)
        return alloc ? -EIO : 0;
    uint64_t e = s->l1[l1_idx];
    uint64_t off = e & QCOW2_OFFSET_MASK;
    if (off % s->cluster_size) {
        char what[128];
        snprintf(what, sizeof(what), "L2 table offset %#llx unaligned (L1 index: %#llx)",
                 (unsigned long long)off, (unsigned long long)l1_idx);
        qcow2_mark_corrupt(n, what);
        return -EIO;
    }
    if (off && ((e & QCOW2_OFLAG_COPIED) || !alloc)) {
        if (l2_offset)
            *l2_offset = off;
        return qcow2_cache_get(n, &s->l2_cache, off, false, l2);
    }
    if (!alloc)
        return 0;

    /* Allocate (or copy a shared) L2 table: table on disk first, then the L1 entry. */
    int64_t nw = qcow2_alloc_clusters(n, 1);
    if (nw < 0)
        return (int)nw;
    uint8_t *copy = NULL;
    /*
     * Deferred (lazy) refcounts go to the file before a new L2 table does, as
     * QEMU flushes its refcount cache there: a crash then leaves stale
     * refcounts only for clusters allocated since the last table.
     */
    int ret = qcow2_refcount_writeback(n);
    if (ret < 0)
        return unalloc_table(n, (uint64_t)nw, ret);
    if (off) {
        uint8_t *old;
        qimg_debug_event(n->file, QIMG_DBG_L2_ALLOC_COW_READ);
        ret = qcow2_cache_get(n, &s->l2_cache, off, false, &old);
        if (ret < 0)
            return unalloc_table(n, (uint64_t)nw, ret);
        copy = xmalloc(s->cluster_size);
        memcpy(copy, old, s->cluster_size);
    }
    uint8_t *tbl;
    ret = qcow2_cache_get(n, &s->l2_cache, (uint64_t)nw, true, &tbl);
    if (ret < 0) {
        free(copy);
        return unalloc_table(n, (uint64_t)nw, ret);
    }
    if (copy)
        memcpy(tbl, copy, s->cluster_size);
    free(copy);
    qimg_debug_event(n->file, QIMG_DBG_L2_ALLOC_WRITE);
    ret = qcow2_meta_write(n, (uint64_t)nw, tbl, s->cluster_size);
    if (ret < 0) {
        qcow2_cache_drop(&s->l2_cache, (uint64_t)nw);
        return unalloc_table(n, (uint64_t)nw, ret);
    }
    qcow2_meta_add(s, (uint64_t)nw);
    /* cache.c, power-loss order: the table and its refcount before the L1 entry. */
    ret = qcow2_barrier(n);
    if (ret < 0)
        return ret; /* nw leaks */
    uint64_t old_l1e = s->l1[l1_idx];
    s->l1[l1_idx] = (uint64_t)nw | QCOW2_OFLAG_COPIED;
    ret = qcow2_l1_write_entry(n, l1_idx);
    if (ret < 0) {
        s->l1[l1_idx] = old_l1e; /* the table in memory says what the disk says; nw leaks */
        return ret;
    }
    /* ... and the L1 entry before the old (shared) table loses a reference. */
    if (off && qcow2_barrier(n) == 0)
        free_reported(n, qcow2_update_refcounts(n, off / s->cluster_size, 1, -1));
    if (l2_offset)
        *l2_offset = (uint64_t)nw;
    /* The table may have been evicted by the refcount update: fetch it again. */
    return qcow2_cache_get(n, &s->l2_cache, (uint64_t)nw, false, l2);
}

int qcow2_lookup(struct qimg_node *n, uint64_t guest_off, struct qcow2_entry *e)
{
    struct qcow2_state *s = n->opaque;
    uint8_t *l2;
    e->l2e = e->bitmap = 0;
    int ret = qcow2_get_l2(n, guest_off, false, &l2, NULL);
    if (ret < 0 || !l2)
        return ret;
    qcow2_l2_get_entry(s, l2, (guest_off >> s->cluster_bits) & (s->l2_entries - 1), e);
    return 0;
}

int qcow2_entry_release(struct qimg_node *n, const struct qcow2_entry *e)
{
    struct qcow2_state *s = n->opaque;
    if (e->l2e & QCOW2_OFLAG_COMPRESSED) {
        uint64_t host, len;
        qcow2_compressed_range(s, e->l2e, &host, &len);
        return free_reported(n, qcow2_free_bytes(n, host, len));
    }
    uint64_t host = qcow2_entry_host(s, e);
    if (!host || n->data_file) /* data file clusters have no refcounts */
        return 0;
    return free_reported(n, qcow2_update_refcounts(n, host / s->cluster_size, 1, -1));
}

/* Grow the active L1 table to min_size entries: new table, header switch, free the old. */
int qcow2_l1_grow(struct qimg_node *n, uint64_t min_size)
{
    struct qcow2_state *s = n->opaque;
    if (min_size <= s->l1_size)
        return 0;
    if (min_size > QCOW2_MAX_L1_BYTES / 8)
        return -EFBIG;
    uint64_t cs = s->cluster_size;
    uint64_t clusters = qcow2_div_round_up(min_size * 8, cs);
    qimg_debug_event(n->file, QIMG_DBG_L1_GROW_ALLOC_TABLE);
    int64_t nw = qcow2_alloc_clusters(n, clusters);
    if (nw < 0)
        return (int)nw;
    /* Deferred (lazy) refcounts reach the file before the new table does (as in QEMU). */
    int ret = qcow2_refcount_writeback(n);
    if (ret < 0)
        return ret;
    uint8_t *buf = qimg_alloc_aligned(clusters * cs);
    if (!buf)
        return -ENOMEM;
    memset(buf, 0, clusters * cs);
    for (uint64_t i = 0; i < s->l1_size; i++)
        qcow2_put64(buf + i * 8, s->l1[i]);
    /*
     * Just the entries, as qemu-img writes them: a file that ends with the
     * table is exactly as long as qemu's (9.1's info rounds the "file length"
     * it prints up to 512 bytes; the file itself is not padded).
     */
    qimg_debug_event(n->file, QIMG_DBG_L1_GROW_WRITE_TABLE);
    ret = qimg_node_pwrite(n->file, (uint64_t)nw, min_size * 8, buf, 0);
    free(buf);
    if (ret < 0)
        return ret;
    ret = qimg_node_flush(n->file);
    if (ret < 0)
        return ret;
    uint8_t hdr[12];
    qcow2_put32(hdr, (uint32_t)min_size);
    qcow2_put64(hdr + 4, (uint64_t)nw);
    qimg_debug_event(n->file, QIMG_DBG_L1_GROW_ACTIVATE_TABLE);
    ret = qcow2_header_update_fields(n, 36, hdr, 12);
    if (ret < 0)
        return ret;
    uint64_t old_off = s->l1_offset, old_clusters = qcow2_div_round_up((uint64_t)s->l1_size * 8, cs);
    uint64_t *l1 = xcalloc(min_size, 8);
    memcpy(l1, s->l1, (size_t)s->l1_size * 8);
    free(s->l1);
    s->l1 = l1;
    s->l1_size = (uint32_t)min_size;
    s->l1_offset = (uint64_t)nw;
    if (old_off && old_clusters)
        return free_reported(n, qcow2_update_refcounts(n, old_off / cs, old_clusters, -1));
    return 0;
}
