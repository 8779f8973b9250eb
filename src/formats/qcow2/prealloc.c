/* SPDX-License-Identifier: MIT */
/*
 * qcow2 preallocation when an image is created or grows (create -o
 * preallocation=..., resize --preallocation=...), laid out as qemu-img lays
 * it out (observed with qemu-img 7.2: host offsets, which bytes of the file
 * are written and where the file ends):
 *
 * - metadata: every cluster of the new range gets a host cluster, as an
 *   allocating write of the range would, but the data is not written; only
 *   the copy-on-write parts of a partial first/last (sub)cluster are;
 * - falloc/full: a refcount area (blocks and a new table) at the end of the
 *   file, then the data clusters after it, then any new L2 tables; a partial
 *   old last cluster moves into the new area with its content.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"
#include "util/mem.h"

/*
 * falloc/full: blocks for every uncovered part of [start, end) and a new
 * refcount table at the end of the file, then the data area right after.
 * Returns the data area's first cluster.
 */
static int refcount_area(struct qimg_node *n, uint64_t extra, uint64_t *data_start)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size, rbe = s->rb_entries;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    uint64_t start = qcow2_div_round_up((uint64_t)flen, cs);
    uint64_t b = 0, t = s->rt_clusters;
    for (;;) {
        uint64_t end = start + b + t + extra;
        uint64_t blocks = qcow2_div_round_up(end, rbe);
        uint64_t nt = qcow2_div_round_up((blocks > s->rt_size ? blocks : s->rt_size) * 8, cs);
        uint64_t nb = 0;
        for (uint64_t i = 0; i < blocks; i++)
            if (i >= s->rt_size || !s->rt[i])
                nb++;
        if (nt == t && nb == b)
            break;
        t = nt;
        b = nb;
    }
    if (t * cs > QCOW2_MAX_REFTABLE_BYTES)
        return -EFBIG;
    uint64_t entries = t * cs / 8, blocks = qcow2_div_round_up(start + b + t + extra, rbe);
    uint64_t *rt = xcalloc(entries, 8);
    memcpy(rt, s->rt, s->rt_size * 8);
    uint8_t *buf = qimg_alloc_aligned(t * cs > cs ? t * cs : cs);
    int ret = buf ? 0 : -ENOMEM;
    uint64_t k = 0;
    /* New blocks count the area's metadata clusters [start, start+b+t). */
    for (uint64_t i = 0; ret == 0 && i < blocks; i++) {
        if (rt[i])
            continue;
        memset(buf, 0, cs);
        for (uint64_t c = start; c < start + b + t; c++)
            if (c / rbe == i)
                refcount_set_entry(s, buf, c % rbe, 1);
        ret = qimg_node_pwrite(n->file, (start + k) * cs, cs, buf, 0);
        rt[i] = (start + k) * cs;
        k++;
    }
    if (ret == 0) {
        memset(buf, 0, t * cs);
        for (uint64_t i = 0; i < entries; i++)
            qcow2_put64(buf + i * 8, rt[i]);
        ret = qimg_node_pwrite(n->file, (start + b) * cs, t * cs, buf, 0);
    }
    free(buf);
    if (ret == 0) {
        uint8_t hdr[12];
        qcow2_put64(hdr, (start + b) * cs);
        qcow2_put32(hdr + 8, (uint32_t)t);
        ret = qcow2_header_update_fields(n, 48, hdr, 12);
    }
    if (ret < 0) {
        free(rt);
        return ret;
    }
    uint64_t old_off = s->rt_offset, old_cl = s->rt_clusters, old_size = s->rt_size;
    free(s->rt);
    s->rt = rt;
    s->rt_size = entries;
    s->rt_offset = (start + b) * cs;
    s->rt_clusters = (uint32_t)t;
    for (uint64_t i = 0; i < entries; i++)
        if (rt[i])
            qcow2_meta_add_refblock(s, rt[i]);
    /* Area clusters that existing blocks describe. */
    for (uint64_t c = start; ret == 0 && c < start + b + t; c++)
        if (c / rbe < old_size && s->rt[c / rbe] && c / rbe < blocks &&
            (s->rt[c / rbe] < start * cs || s->rt[c / rbe] >= (start + b) * cs))
            ret = qcow2_update_refcounts(n, c, 1, 1);
    if (ret == 0)
        ret = qcow2_update_refcounts(n, old_off / cs, old_cl, -1);
    *data_start = start + b + t;
    return ret;
}

/*
 * falloc/full over the guest range [old, old + size) (old a multiple of the
 * cluster size): a refcount area, then the data clusters right after it in
 * the file, mapped in guest order.
 */
static int prealloc_full(struct qimg_node *n, uint64_t old, uint64_t size,
                         enum qimg_prealloc mode, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t first_cl = old / cs, start = first_cl * cs;
    uint64_t nd = qcow2_div_round_up(old + size - start, cs);
    /*
     * A partial last cluster moves into the new area with the rest: what it
     * held before old is copied there first (its old host cluster is freed).
     */
    uint8_t *head = NULL;
    if (start < old) {
        head = qimg_alloc_aligned(old - start);
        int r = head ? qcow2_pread(n, start, old - start, head, 0) : -ENOMEM;
        if (r < 0) {
            free(head);
            return qimg_error_errno(err, r, "Could not preallocate the partial cluster");
        }
    }
    /* L2 tables the new range needs that do not exist yet. */
    uint64_t nl2 = 0;
    for (uint64_t t = first_cl / s->l2_entries; t <= (first_cl + nd - 1) / s->l2_entries; t++)
        if (nd && (t >= s->l1_size || !(s->l1[t] & QCOW2_OFFSET_MASK)))
            nl2++;
    uint64_t data = 0;
    pthread_mutex_lock(&n->lock);
    int ret = refcount_area(n, nd + nl2, &data);
    if (ret == 0)
        ret = qcow2_update_refcounts(n, data, nd, 1);
    pthread_mutex_unlock(&n->lock);
    if (ret < 0) {
        free(head);
        return qimg_error_errno(err, ret, "Could not preallocate the refcount area");
    }
    struct qimg_error terr = {0};
    ret = qimg_node_truncate(n->file, (data + nd) * cs, false, mode, &terr);
    if (ret == 0 && head)
        ret = qimg_node_pwrite(n->file, data * cs, old - start, head, 0);
    free(head);
    if (ret < 0)
        return terr.msg[0] ? qimg_error_set(err, ret, "Failed to resize underlying file: %s",
                                            terr.msg)
                           : qimg_error_errno(err, ret, "Could not preallocate the partial cluster");
    pthread_mutex_lock(&n->lock);
    s->free_cluster_index = 0;
    for (uint64_t c = 0; ret == 0 && c < nd;) {
        uint8_t *l2;
        uint64_t l2_off;
        ret = qcow2_get_l2(n, (first_cl + c) * cs, true, &l2, &l2_off);
        if (ret < 0)
            break;
        uint64_t first = (first_cl + c) & (s->l2_entries - 1);
        uint64_t cnt = s->l2_entries - first < nd - c ? s->l2_entries - first : nd - c;
        struct qcow2_entry replaced = {0};
        for (uint64_t i = 0; i < cnt; i++) {
            struct qcow2_entry e = {.l2e = ((data + c + i) * cs) | QCOW2_OFLAG_COPIED};
            /*
             * Extended L2 over a backing file: every subcluster allocated (the
             * fresh area reads as zeroes, the backing file must not show through),
             * the moved partial cluster included, as qemu-img maps them.
             */
            if (c + i == 0) {
                /* The moved partial cluster keeps its subclusters' states (extended L2). */
                qcow2_l2_get_entry(s, l2, first + i, &replaced);
                if (!(replaced.l2e & QCOW2_OFLAG_COMPRESSED))
                    e.bitmap = replaced.bitmap;
            }
            if (s->extended_l2 && n->backing)
                e.bitmap = 0xffffffffull;
            qcow2_l2_set_entry(s, l2, first + i, &e);
        }
        ret = qcow2_meta_write(n, l2_off + first * s->l2_entry_bytes,
                               l2 + first * s->l2_entry_bytes, cnt * s->l2_entry_bytes);
        if (ret == 0 && replaced.l2e)
            ret = qcow2_entry_release(n, &replaced);
        c += cnt;
    }
    pthread_mutex_unlock(&n->lock);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not preallocate metadata");
    return 0;
}

/*
 * Does the cluster entry need a (new) host cluster before data may be
 * written into it (without extended L2: anything but a plain data cluster of
 * its own; with extended L2: no host cluster yet)? in_place: the zero flag
 * just goes (a zero cluster with its own host cluster).
 */
static bool needs_host(const struct qcow2_state *s, const struct qcow2_entry *e, bool *in_place)
{
    *in_place = false;
    if (e->l2e & QCOW2_OFLAG_COMPRESSED)
        return true;
    uint64_t host = e->l2e & QCOW2_OFFSET_MASK;
    if (s->extended_l2 || qcow2_has_data_file(s))
        return !host && !(e->l2e & QCOW2_OFLAG_COPIED);
    if (!host)
        return true;
    if (!(e->l2e & QCOW2_OFLAG_COPIED))
        return false; /* shared with a snapshot: left alone */
    if (s->version >= 3 && (e->l2e & QCOW2_OFLAG_ZERO))
        *in_place = true;
    return false;
}

/* Entries replaced while mapping, released once the piece is mapped. */
struct released {
    struct qcow2_entry *e;
    size_t n, cap;
};

/*
 * Give every cluster of [off, off+len) a host cluster (runs of new ones
 * allocated together); replaced entries (zero, compressed) go to rel.
 * *host_end: the end of the last new host cluster. Lock held.
 */
static int map_clusters(struct qimg_node *n, uint64_t off, uint64_t len, uint64_t *host_end,
                        struct released *rel)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size, l2_span = s->l2_entries * cs;
    uint64_t pos = off / cs * cs, end = qcow2_align_up(off + len, cs);
    while (pos < end) {
        uint64_t chunk_end = (pos / l2_span + 1) * l2_span;
        if (chunk_end > end)
            chunk_end = end;
        uint8_t *l2;
        uint64_t l2_off;
        int ret = qcow2_get_l2(n, pos, true, &l2, &l2_off);
        if (ret < 0)
            return ret;
        uint64_t first = (pos / cs) & (s->l2_entries - 1);
        uint64_t count = (chunk_end - pos) / cs, k = 0;
        while (k < count) {
            struct qcow2_entry e;
            bool in_place;
            qcow2_l2_get_entry(s, l2, first + k, &e);
            if (!needs_host(s, &e, &in_place)) {
                if (in_place) {
                    e.l2e &= ~QCOW2_OFLAG_ZERO;
                    qcow2_l2_set_entry(s, l2, first + k, &e);
                    ret = qcow2_meta_write(n, l2_off + (first + k) * s->l2_entry_bytes,
                                           l2 + (first + k) * s->l2_entry_bytes,
                                           s->l2_entry_bytes);
                    if (ret < 0)
                        return ret;
                }
                k++;
                continue;
            }
            uint64_t j = k + 1;
            while (j < count) {
                qcow2_l2_get_entry(s, l2, first + j, &e);
                if (!needs_host(s, &e, &in_place))
                    break;
                j++;
            }
            ret = qcow2_lazy_mark_dirty(n); /* as for an allocating write */
            if (ret < 0)
                return ret;
            int64_t h = n->data_file ? (int64_t)(pos + k * cs) : qcow2_alloc_clusters(n, j - k);
            if (h < 0)
                return (int)h;
            ret = qcow2_get_l2(n, pos, false, &l2, NULL);
            if (ret < 0 || !l2)
                return ret < 0 ? ret : -EIO;
            for (uint64_t i = k; i < j; i++) {
                struct qcow2_entry old;
                qcow2_l2_get_entry(s, l2, first + i, &old);
                /* Extended L2: the subclusters keep their states (all unallocated if new). */
                struct qcow2_entry ne = {.l2e = ((uint64_t)h + (i - k) * cs) | QCOW2_OFLAG_COPIED};
                if (s->extended_l2 && !(old.l2e & QCOW2_OFLAG_COMPRESSED))
                    ne.bitmap = old.bitmap;
                qcow2_l2_set_entry(s, l2, first + i, &ne);
                if (old.l2e) {
                    if (rel->n == rel->cap) {
                        rel->cap = rel->cap ? 2 * rel->cap : 4;
                        rel->e = xrealloc(rel->e, rel->cap * sizeof(*rel->e));
                    }
                    rel->e[rel->n++] = old;
                }
            }
            qimg_debug_event(n->file, QIMG_DBG_L2_UPDATE);
            ret = qcow2_meta_write(n, l2_off + (first + k) * s->l2_entry_bytes,
                                   l2 + (first + k) * s->l2_entry_bytes,
                                   (j - k) * s->l2_entry_bytes);
            if (ret < 0)
                return ret;
            if ((uint64_t)h + (j - k) * cs > *host_end)
                *host_end = (uint64_t)h + (j - k) * cs;
            k = j;
        }
        pos = chunk_end;
    }
    return 0;
}

/*
 * Map [off, off+len); what that replaces is released only afterwards, so
 * that its clusters are not reused within the range (observed: a replaced
 * compressed cluster stays free while the rest of the range, L2 tables
 * included, is allocated). Lock held.
 */
static int map_range(struct qimg_node *n, uint64_t off, uint64_t len, uint64_t *host_end)
{
    struct released rel = {0};
    int ret = map_clusters(n, off, len, host_end, &rel);
    for (size_t i = 0; ret == 0 && i < rel.n; i++)
        ret = qcow2_entry_release(n, &rel.e[i]);
    free(rel.e);
    return ret;
}

/* Extended L2: mark the subclusters of [off, off+len) (one cluster) allocated. Lock held. */
static int mark_allocated(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = n->opaque;
    uint8_t *l2;
    uint64_t l2_off;
    int ret = qcow2_get_l2(n, off, true, &l2, &l2_off);
    if (ret < 0)
        return ret;
    uint64_t idx = (off / s->cluster_size) & (s->l2_entries - 1);
    uint64_t a = (off % s->cluster_size) / s->subcluster_size;
    uint64_t b = qcow2_div_round_up(off % s->cluster_size + len, s->subcluster_size);
    struct qcow2_entry e;
    qcow2_l2_get_entry(s, l2, idx, &e);
    for (uint64_t i = a; i < b; i++)
        e.bitmap = (e.bitmap | (1ull << i)) & ~(1ull << (i + 32));
    qcow2_l2_set_entry(s, l2, idx, &e);
    return qcow2_meta_write(n, l2_off + idx * s->l2_entry_bytes, l2 + idx * s->l2_entry_bytes,
                            s->l2_entry_bytes);
}

/* Does the (sub)cluster holding guest offset off hold data of its own? Lock held. */
static int holds_data(struct qimg_node *n, uint64_t off, bool *out)
{
    struct qcow2_state *s = n->opaque;
    struct qcow2_entry e;
    int ret = qcow2_lookup(n, off, &e);
    if (ret < 0)
        return ret;
    bool in_place;
    unsigned sc = (unsigned)((off % s->cluster_size) / s->subcluster_size);
    if (s->extended_l2)
        *out = qcow2_entry_type(s, &e, sc) == QCOW2_NORMAL;
    else
        *out = !needs_host(s, &e, &in_place) && !in_place &&
               qcow2_entry_type(s, &e, 0) == QCOW2_NORMAL;
    return 0;
}

/*
 * preallocation=metadata over [old, size). Copy-on-write as a write of the
 * range would do it: a (sub)cluster without data of its own that the range
 * starts inside gets its old content before old written, one the range ends
 * inside gets zeroes after size; the file is extended to the image's end.
 */
static int prealloc_metadata(struct qimg_node *n, uint64_t old, uint64_t size)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t g = s->extended_l2 ? s->subcluster_size : cs;
    uint64_t head = old / g * g, tail_end = qcow2_align_up(size, g);
    struct qimg_node *data = qcow2_data_node(n);
    bool head_cow = false, tail_cow = false, last_new = false, in_place;
    struct qcow2_entry e;
    uint8_t *buf = NULL;

    pthread_mutex_lock(&n->lock);
    int ret = 0;
    /*
     * Extended L2: a compressed cluster the range starts in becomes a plain
     * one, its data before old copied and marked allocated. (qemu-img 7.2
     * copies the whole cluster but leaves every subcluster unallocated, so
     * the data is lost; deliberately not matched.)
     */
    bool head_compressed = false;
    if (s->extended_l2 && old % cs && (ret = qcow2_lookup(n, old, &e)) == 0 &&
        (e.l2e & QCOW2_OFLAG_COMPRESSED)) {
        head_compressed = true;
        head = old / cs * cs;
    }
    if (ret == 0 && head < old && (ret = holds_data(n, old, &head_cow)) == 0)
        head_cow = !head_cow;
    if (ret == 0 && size < tail_end && (ret = holds_data(n, size - 1, &tail_cow)) == 0)
        tail_cow = !tail_cow;
    if (ret == 0 && (ret = qcow2_lookup(n, size - 1, &e)) == 0)
        last_new = needs_host(s, &e, &in_place);
    pthread_mutex_unlock(&n->lock);
    if (ret == 0 && head_cow) {
        buf = qimg_alloc_aligned(old - head);
        ret = buf ? qcow2_pread(n, head, old - head, buf, 0) : -ENOMEM;
    }
    /* Host offsets (0 is valid: guest cluster 0 of an external data file). */
    uint64_t host_end = 0, head_host = 0, last_host = 0;
    if (ret == 0) {
        pthread_mutex_lock(&n->lock);
        ret = map_range(n, old, size - old, &host_end);
        if (ret == 0 && head_cow && (ret = qcow2_lookup(n, head, &e)) == 0)
            head_host = qcow2_entry_host(s, &e) + head % cs;
        if (ret == 0 && (ret = qcow2_lookup(n, size - 1, &e)) == 0)
            last_host = qcow2_entry_host(s, &e);
        if (ret == 0 && head_compressed)
            ret = mark_allocated(n, head, old - head);
        pthread_mutex_unlock(&n->lock);
    }
    /* The file reaches the image's end, and no further when that is in a new last cluster. */
    uint64_t last_off = (size - 1) % cs + 1;
    if (ret == 0 && last_new && last_host + cs == host_end)
        host_end = last_host + last_off;
    if (ret == 0 && last_host + last_off > host_end)
        host_end = last_host + last_off;
    int64_t flen = n->data_file ? -1 : qimg_node_length(n->file); /* data: elsewhere */
    if (ret == 0 && flen >= 0 && host_end > (uint64_t)flen) {
        struct qimg_error terr = {0};
        ret = qimg_node_truncate(n->file, host_end, false, QIMG_PREALLOC_OFF, &terr);
    }
    if (ret == 0 && head_cow)
        ret = qimg_node_pwrite(data, head_host, old - head, buf, 0);
    free(buf);
    if (ret == 0 && tail_cow) {
        buf = qimg_alloc_aligned(tail_end - size);
        if (!buf)
            return -ENOMEM;
        memset(buf, 0, tail_end - size);
        ret = qimg_node_pwrite(data, last_host + last_off, tail_end - size, buf, 0);
        free(buf);
    }
    return ret;
}

/*
 * A grown image whose backing file reaches past the old end would show the
 * backing file's data in the new range (what a shrink cut off must not come
 * back): as qemu-img does, the new range is zeroed, its whole (sub)clusters
 * through zero flags (host clusters kept), then the partial granule at the
 * old end as written zeroes. v2 has no zero flag: qemu-img fails ("Failed to
 * zero out new clusters: Operation not supported") and keeps the old size.
 */
static int zero_new_range(struct qimg_node *n, uint64_t old, uint64_t size,
                          struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    if (!n->backing)
        return 0;
    int64_t blen = qimg_node_length(n->backing);
    if (blen < 0)
        return qimg_error_errno(err, (int)blen, "Could not get the backing file's length");
    if ((uint64_t)blen <= old)
        return 0;
    uint64_t zs = qcow2_align_up(old, s->subcluster_size);
    int ret = 0;
    if (size > zs) {
        if (s->version < 3) {
            ret = -ENOTSUP;
        } else {
            pthread_mutex_lock(&n->lock);
            ret = qcow2_zeroize_locked(n, zs, qcow2_align_up(size, s->cluster_size), false);
            pthread_mutex_unlock(&n->lock);
        }
        if (ret < 0)
            return qimg_error_errno(err, ret, "Failed to zero out new clusters");
    }
    if (zs > old) {
        uint64_t len = (zs < size ? zs : size) - old;
        uint8_t *z = qimg_alloc_aligned(len);
        ret = z ? 0 : -ENOMEM;
        if (z) {
            memset(z, 0, len);
            ret = qcow2_pwrite_unmarked(n, old, len, z, 0);
        }
        free(z);
        if (ret < 0)
            return qimg_error_errno(err, ret, "Failed to zero out the new area");
    }
    return 0;
}

/* Grow an open image to size: L1 table, preallocation, zeroes over a backing file, the size. */
int qcow2_grow_to(struct qimg_node *n, uint64_t size, enum qimg_prealloc mode,
                  struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    uint64_t old = s->size;
    uint64_t need = qcow2_div_round_up(size, s->l2_entries * s->cluster_size);
    if (need > QCOW2_MAX_L1_BYTES / 8)
        return qimg_error_set(err, -EFBIG, "Image size too large");
    pthread_mutex_lock(&n->lock);
    int ret = qcow2_l1_grow(n, need);
    pthread_mutex_unlock(&n->lock);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Failed to grow the L1 table");
    if (mode == QIMG_PREALLOC_METADATA) {
        if (size > old && (ret = prealloc_metadata(n, old, size)) < 0)
            return qimg_error_errno(err, ret, "Could not preallocate metadata");
    } else if (mode == QIMG_PREALLOC_FALLOC || mode == QIMG_PREALLOC_FULL) {
        if (size > old) {
            ret = prealloc_full(n, old, size - old, mode, err);
            if (ret < 0)
                return ret;
        }
    }
    s->size = size; /* the zeroing below writes past the old end */
    /* falloc/full mapped the new range onto fresh clusters that read as zeroes already. */
    if (mode != QIMG_PREALLOC_FALLOC && mode != QIMG_PREALLOC_FULL)
        ret = zero_new_range(n, old, size, err);
    if (ret < 0) {
        s->size = old;
        return ret;
    }
    uint8_t be[8];
    qcow2_put64(be, size);
    ret = qcow2_header_update_fields(n, 24, be, 8);
    if (ret < 0) {
        s->size = old;
        return qimg_error_errno(err, ret, "Could not update the image size");
    }
    return 0;
}

