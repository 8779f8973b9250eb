/* SPDX-License-Identifier: MIT */
/*
 * QED's two-level table (qed.txt: Tables, Logical offset translation) and
 * the guest I/O on top of it through the mapped-image layer: lookups, data
 * cluster allocation at the end of the file, L2 table allocation, zero
 * clusters, and the need-check flag around unsafe updates.
 *
 * Order of an allocating write, as qemu does it: data clusters at the end
 * of the file (need-check set first when there is no backing file; with one,
 * the data is flushed before the tables point at it), then a new L2 table
 * after them if the L1 entry was empty, then the L1 entry.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qed/qed.h"
#include "util/bytes.h"
#include "util/mem.h"

/* Entry index of table at base: the cache piece holding it and the byte within. */
static void locate(const struct qed_state *s, uint64_t base, uint64_t index, uint64_t *piece,
                   uint64_t *in)
{
    uint64_t byte = index * 8;
    *piece = base + qimg_align_down(byte, s->piece);
    *in = byte % s->piece;
}

static int table_get(struct qimg_table_cache *c, const struct qed_state *s, uint64_t base,
                     uint64_t index, uint64_t *entry)
{
    uint64_t piece, in;
    uint8_t *t;
    locate(s, base, index, &piece, &in);
    int ret = qimg_table_cache_get(c, piece, false, &t);
    if (ret == 0)
        *entry = qimg_le64(t + in);
    return ret;
}

int qed_l1_get(struct qimg_node *n, uint64_t index, uint64_t *entry)
{
    struct qed_state *s = n->opaque;
    if (index >= s->table_nelems)
        return -EIO;
    return table_get(&s->l1, s, s->h.l1_table_offset, index, entry);
}

int qed_l2_get(struct qimg_node *n, uint64_t table, uint64_t index, uint64_t *entry)
{
    struct qed_state *s = n->opaque;
    return table_get(&s->l2, s, table, index, entry);
}

int qed_l1_set(struct qimg_node *n, uint64_t index, uint64_t entry)
{
    struct qed_state *s = n->opaque;
    uint64_t piece, in;
    uint8_t *t;
    locate(s, s->h.l1_table_offset, index, &piece, &in);
    int ret = qimg_table_cache_get(&s->l1, piece, false, &t);
    if (ret < 0)
        return ret;
    qimg_put_le64(t + in, entry);
    qimg_debug_event(n->file, QIMG_DBG_L1_UPDATE);
    ret = qimg_table_cache_store(&s->l1, piece, in, 8);
    if (ret < 0)
        qimg_table_cache_drop(&s->l1, piece);
    return ret;
}

/* Fill entries of one piece: first, first+cluster ... (step) or first each time. */
static uint64_t fill_entries(const struct qed_state *s, uint8_t *t, uint64_t in, uint64_t count,
                             uint64_t *value, bool step)
{
    uint64_t here = qimg_min_u64(count, (s->piece - in) / 8);
    for (uint64_t k = 0; k < here; k++) {
        qimg_put_le64(t + in + 8 * k, *value);
        if (step)
            *value += s->h.cluster_size;
    }
    return here;
}

int qed_l2_set_run(struct qimg_node *n, uint64_t table, uint64_t index, uint64_t count,
                   uint64_t first, bool step)
{
    struct qed_state *s = n->opaque;
    uint64_t value = first;
    while (count) {
        uint64_t piece, in;
        uint8_t *t;
        locate(s, table, index, &piece, &in);
        int ret = qimg_table_cache_get(&s->l2, piece, false, &t);
        if (ret < 0)
            return ret;
        uint64_t here = fill_entries(s, t, in, count, &value, step);
        qimg_debug_event(n->file, QIMG_DBG_L2_UPDATE);
        ret = qimg_table_cache_store(&s->l2, piece, in, here * 8);
        if (ret < 0) {
            qimg_table_cache_drop(&s->l2, piece);
            return ret;
        }
        index += here;
        count -= here;
    }
    return 0;
}

void qed_header_encode(const struct qed_header *h, uint8_t *b)
{
    memset(b, 0, QED_HEADER_BYTES);
    qimg_put_le32(b + QED_OFF_MAGIC, h->magic);
    qimg_put_le32(b + QED_OFF_CLUSTER_SIZE, h->cluster_size);
    qimg_put_le32(b + QED_OFF_TABLE_SIZE, h->table_size);
    qimg_put_le32(b + QED_OFF_HEADER_SIZE, h->header_size);
    qimg_put_le64(b + QED_OFF_FEATURES, h->features);
    qimg_put_le64(b + QED_OFF_COMPAT_FEATURES, h->compat_features);
    qimg_put_le64(b + QED_OFF_AUTOCLEAR_FEATURES, h->autoclear_features);
    qimg_put_le64(b + QED_OFF_L1_TABLE, h->l1_table_offset);
    qimg_put_le64(b + QED_OFF_IMAGE_SIZE, h->image_size);
    qimg_put_le32(b + QED_OFF_BACKING_NAME_OFFSET, h->backing_name_offset);
    qimg_put_le32(b + QED_OFF_BACKING_NAME_SIZE, h->backing_name_size);
}

void qed_header_decode(const uint8_t *b, struct qed_header *h)
{
    h->magic = qimg_le32(b + QED_OFF_MAGIC);
    h->cluster_size = qimg_le32(b + QED_OFF_CLUSTER_SIZE);
    h->table_size = qimg_le32(b + QED_OFF_TABLE_SIZE);
    h->header_size = qimg_le32(b + QED_OFF_HEADER_SIZE);
    h->features = qimg_le64(b + QED_OFF_FEATURES);
    h->compat_features = qimg_le64(b + QED_OFF_COMPAT_FEATURES);
    h->autoclear_features = qimg_le64(b + QED_OFF_AUTOCLEAR_FEATURES);
    h->l1_table_offset = qimg_le64(b + QED_OFF_L1_TABLE);
    h->image_size = qimg_le64(b + QED_OFF_IMAGE_SIZE);
    h->backing_name_offset = qimg_le32(b + QED_OFF_BACKING_NAME_OFFSET);
    h->backing_name_size = qimg_le32(b + QED_OFF_BACKING_NAME_SIZE);
}

int qed_header_write(struct qimg_node *n)
{
    struct qed_state *s = n->opaque;
    uint8_t b[QED_HEADER_BYTES];
    qed_header_encode(&s->h, b);
    return qimg_node_pwrite(n->file, 0, sizeof(b), b, 0);
}

/*
 * qed.txt: Consistency checking. Only without a backing file: with one, qemu
 * flushes the data before the table update instead.
 */
int qed_set_need_check(struct qimg_node *n)
{
    struct qed_state *s = n->opaque;
    if (n->backing || (s->h.features & QED_F_NEED_CHECK))
        return 0;
    s->h.features |= QED_F_NEED_CHECK;
    int ret = qed_header_write(n);
    if (ret < 0)
        s->h.features &= ~QED_F_NEED_CHECK;
    return ret;
}

static uint64_t l2_coverage(const struct qed_state *s)
{
    return s->table_nelems * s->h.cluster_size; /* <= 2^27 * 2^26 */
}

/* Classify an L2 entry; -EINVAL for an offset outside the file or unaligned (as qemu). */
static int entry_kind(const struct qed_state *s, uint64_t e, enum qimg_map_kind *kind)
{
    if (e == QED_UNALLOCATED)
        *kind = QIMG_MAP_UNALLOCATED;
    else if (e == QED_ZERO_CLUSTER)
        *kind = QIMG_MAP_ZERO;
    else if (qed_cluster_offset_valid(s, e))
        *kind = QIMG_MAP_DATA;
    else
        return -EINVAL;
    return 0;
}

/* The run at off within one L2 table (qemu's runs never cross one). */
static int qed_map(struct qimg_node *n, uint64_t off, uint64_t len, struct qimg_map *m)
{
    struct qed_state *s = n->opaque;
    uint64_t cs = s->h.cluster_size, cov = l2_coverage(s);
    uint64_t l1e, l2_start = qimg_align_down(off, cov);
    uint64_t end = qimg_min_u64(off + len, l2_start + cov);
    int ret = qed_l1_get(n, off / cov, &l1e);
    if (ret < 0)
        return ret;
    if (l1e == QED_UNALLOCATED) {
        m->kind = QIMG_MAP_UNALLOCATED;
        m->bytes = end - off;
        return 0;
    }
    if (!qed_table_offset_valid(s, l1e))
        return -EINVAL;
    uint64_t pos = off;
    while (pos < end) {
        uint64_t e, in = pos % cs;
        enum qimg_map_kind kind;
        ret = qed_l2_get(n, l1e, (pos - l2_start) / cs, &e);
        if (ret == 0)
            ret = entry_kind(s, e, &kind);
        if (ret < 0) {
            if (pos == off)
                return ret;
            break; /* the bad entry fails when it is asked for itself */
        }
        uint64_t host = kind == QIMG_MAP_DATA ? e + in : 0;
        if (pos == off) {
            m->kind = kind;
            m->host_valid = m->in_place = kind == QIMG_MAP_DATA;
            m->host = host;
            m->entry = e;
        } else if (kind != m->kind || (kind == QIMG_MAP_DATA && host != m->host + (pos - off))) {
            break;
        }
        pos = qimg_min_u64(end, pos - in + cs);
    }
    m->bytes = pos - off;
    return 0;
}

/* Reserve bytes at the end of the file (qemu never reuses space). */
static int reserve(struct qed_state *s, uint64_t bytes, uint64_t *host)
{
    uint64_t end;
    if (!qimg_add_u64(s->file_size, bytes, &end) || end > (uint64_t)INT64_MAX)
        return -EFBIG;
    *host = s->file_size;
    s->file_size = end;
    return 0;
}

static int qed_alloc(struct qimg_node *n, struct qimg_alloc *a)
{
    struct qed_state *s = n->opaque;
    uint64_t cov = l2_coverage(s);
    a->bytes = qimg_min_u64(a->bytes, qimg_align_down(a->guest, cov) + cov - a->guest);
    int ret = reserve(s, a->bytes, &a->host);
    if (ret == 0)
        ret = qed_set_need_check(n);
    return ret;
}

/* Write zeroes as data at host (new tables, zero writes over allocated clusters). */
static int write_zero_bytes(struct qimg_node *file, uint64_t host, uint64_t len)
{
    uint64_t chunk = qimg_min_u64(len, 1u << 20);
    uint8_t *z = qimg_alloc_aligned(chunk);
    if (!z)
        return -ENOMEM;
    memset(z, 0, chunk);
    int ret = 0;
    while (len && ret == 0) {
        uint64_t now = qimg_min_u64(len, chunk);
        ret = qimg_node_pwrite(file, host, now, z, 0);
        host += now;
        len -= now;
    }
    free(z);
    return ret;
}

/*
 * A new L2 table at the end of the file holding count entries from index:
 * written whole (the pieces with entries through the cache), flushed, then
 * hooked into the L1 table.
 */
static int new_l2_table(struct qimg_node *n, uint64_t l1_index, uint64_t index, uint64_t count,
                        uint64_t first, bool step)
{
    struct qed_state *s = n->opaque;
    uint64_t table;
    int ret = reserve(s, s->table_bytes, &table);
    if (ret < 0)
        return ret;
    uint64_t lo = qimg_align_down(index * 8, s->piece);
    uint64_t hi = qimg_align_up((index + count) * 8, s->piece);
    ret = write_zero_bytes(n->file, table, lo);
    if (ret == 0 && hi < s->table_bytes)
        ret = write_zero_bytes(n->file, table + hi, s->table_bytes - hi);
    uint64_t value = first, next = index, left = count;
    for (uint64_t p = lo; ret == 0 && p < hi; p += s->piece) {
        uint8_t *t;
        ret = qimg_table_cache_get(&s->l2, table + p, true, &t);
        if (ret < 0)
            break;
        uint64_t here = fill_entries(s, t, next * 8 - p, left, &value, step);
        next += here;
        left -= here;
        qimg_debug_event(n->file, QIMG_DBG_L2_UPDATE);
        ret = qimg_table_cache_store(&s->l2, table + p, 0, s->piece);
        if (ret < 0)
            qimg_table_cache_drop(&s->l2, table + p);
    }
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret == 0)
        ret = qed_l1_set(n, l1_index, table);
    return ret;
}

/* Point count clusters from guest (within one L2 table) at first (step) or at first each. */
static int l2_update(struct qimg_node *n, uint64_t guest, uint64_t count, uint64_t first,
                     bool step)
{
    struct qed_state *s = n->opaque;
    uint64_t cov = l2_coverage(s), l1e;
    uint64_t index = (guest % cov) / s->h.cluster_size;
    int ret = qed_l1_get(n, guest / cov, &l1e);
    if (ret < 0)
        return ret;
    if (l1e == QED_UNALLOCATED)
        return new_l2_table(n, guest / cov, index, count, first, step);
    if (!qed_table_offset_valid(s, l1e))
        return -EINVAL;
    return qed_l2_set_run(n, l1e, index, count, first, step);
}

static int qed_commit(struct qimg_node *n, struct qimg_alloc *a)
{
    struct qed_state *s = n->opaque;
    if (n->backing) {
        /* the untouched part of the cluster came from the backing file: stable first */
        int ret = qimg_node_flush(n->file);
        if (ret < 0)
            return ret;
    }
    return l2_update(n, a->guest, a->bytes / s->h.cluster_size, a->host, true);
}

const struct qimg_mapped_ops qed_mapped_ops = {
    .map = qed_map,
    .alloc = qed_alloc,
    .commit = qed_commit,
};

/*
 * Whole clusters [off, end) read as zeroes, as qemu's QED does it: allocated
 * clusters get zeroes written in place, unallocated ones become zero clusters
 * (offset 1), zero clusters stay. n->lock held.
 */
static int zero_clusters(struct qimg_node *n, uint64_t off, uint64_t end)
{
    struct qed_state *s = n->opaque;
    while (off < end) {
        struct qimg_map m = {0};
        int ret = qed_map(n, off, end - off, &m);
        if (ret < 0)
            return ret;
        if (m.kind == QIMG_MAP_DATA) {
            ret = write_zero_bytes(n->file, m.host, m.bytes);
        } else if (m.kind == QIMG_MAP_UNALLOCATED) {
            ret = qed_set_need_check(n);
            if (ret == 0)
                ret = l2_update(n, off, m.bytes / s->h.cluster_size, QED_ZERO_CLUSTER, false);
        }
        if (ret < 0)
            return ret;
        off += m.bytes;
    }
    return 0;
}

/* Zeroes written as data through the normal write path (allocates, as qemu's fallback). */
static int zero_as_data(struct qimg_node *n, uint64_t off, uint64_t len)
{
    uint8_t *z = xcalloc(1, len);
    int ret = qimg_mapped_pwrite(n, off, len, z, 0);
    free(z);
    return ret;
}

/*
 * qemu's QED takes zero writes of whole clusters only; the block layer
 * writes the partial clusters at either edge as zeroed data.
 */
int qed_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    struct qed_state *s = n->opaque;
    uint64_t cs = s->h.cluster_size;
    uint64_t a = qimg_align_up(off, cs), b = qimg_align_down(off + len, cs);
    bool partial = b <= a || off < a || b < off + len;
    if (partial && (flags & QIMG_REQ_NO_FALLBACK))
        return -ENOTSUP;
    if (b <= a)
        return zero_as_data(n, off, len);
    int ret = off < a ? zero_as_data(n, off, a - off) : 0;
    if (ret == 0) {
        pthread_mutex_lock(&n->lock);
        ret = zero_clusters(n, a, b);
        pthread_mutex_unlock(&n->lock);
    }
    if (ret == 0 && b < off + len)
        ret = zero_as_data(n, b, off + len - b);
    return ret;
}
