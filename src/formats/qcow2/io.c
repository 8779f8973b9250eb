/* SPDX-License-Identifier: MIT */
/*
 * Guest I/O on qcow2: reads (data, zero, compressed, backing), writes with
 * copy-on-write, zero writes, discard, compressed writes and block status.
 *
 * Order of an allocating write (crash safety: leaks allowed, corruption
 * never): clusters are allocated (refcount blocks written), then the data
 * (with the COW head and tail) is written, then the L2 entries, and only then
 * are the clusters the old entries referenced released.
 *
 * Reads and overwrites of clusters owned exclusively by the active L1
 * (COPIED) map under n->lock and move the data without it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"
#include "util/mem.h"

#define MAX_ALLOC_BYTES (4u << 20) /* data buffered per allocating run */

struct run {
    enum qcow2_ctype type;
    uint64_t host;  /* host offset of the run's first byte (NORMAL / ZERO_ALLOC) */
    uint64_t bytes; /* length of the run */
    bool host_valid;
    struct qcow2_entry e; /* entry of the first cluster */
};

static int corrupt_entry(struct qimg_node *n, uint64_t guest)
{
    char what[160];
    snprintf(what, sizeof(what), "Invalid cluster entry found (guest offset %#llx)",
             (unsigned long long)guest);
    qcow2_mark_corrupt(n, what);
    return -EIO;
}

static int check_overlap(struct qimg_node *n, uint64_t host, uint64_t len)
{
    struct qcow2_state *s = n->opaque;
    if (n->data_file)
        return 0; /* guest data is in the data file: no metadata there */
    const char *what = qcow2_overlap(s, host, len);
    if (!what)
        return 0;
    char msg[160];
    snprintf(msg, sizeof(msg), "Preventing invalid write on metadata (overlaps with %s)", what);
    qcow2_mark_corrupt(n, msg);
    return -EIO;
}

/* The mapping run at off (at most len bytes, within one L2 table). Lock held. */
static int map_run(struct qimg_node *n, uint64_t off, uint64_t len, struct run *r)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size, sc = s->subcluster_size;
    uint64_t l2_span = s->l2_entries * cs;
    uint64_t l2_end = (off / l2_span + 1) * l2_span;
    uint64_t end = off + len < l2_end ? off + len : l2_end;
    uint8_t *l2;
    int ret = qcow2_get_l2(n, off, false, &l2, NULL);
    if (ret < 0)
        return ret;
    memset(r, 0, sizeof(*r));
    if (!l2) {
        r->type = QCOW2_UNALLOCATED;
        r->bytes = end - off;
        return 0;
    }
    uint64_t pos = off;
    bool first = true;
    while (pos < end) {
        uint64_t idx = (pos / cs) & (s->l2_entries - 1);
        struct qcow2_entry e;
        qcow2_l2_get_entry(s, l2, idx, &e);
        if (!qcow2_entry_valid(s, &e)) {
            if (first)
                return corrupt_entry(n, pos);
            r->bytes = pos - off; /* the run ends before the bad entry */
            return 0;
        }
        uint64_t cstart = pos / cs * cs;
        uint64_t host = qcow2_entry_host(s, &e);
        while (pos < end && pos < cstart + cs) {
            unsigned si = (unsigned)((pos - cstart) / sc);
            enum qcow2_ctype t = qcow2_entry_type(s, &e, si);
            bool hv = (host || (qcow2_has_data_file(s) && t != QCOW2_UNALLOCATED)) &&
                      t != QCOW2_COMPRESSED && t != QCOW2_ZERO_PLAIN;
            if (first) {
                r->type = t;
                r->e = e;
                r->host_valid = hv;
                r->host = hv ? host + (pos - cstart) : 0;
                first = false;
            } else if (t != r->type || hv != r->host_valid ||
                       (hv && host + (pos - cstart) != r->host + (pos - off)) ||
                       t == QCOW2_COMPRESSED) {
                r->bytes = pos - off;
                return 0;
            }
            uint64_t next = s->extended_l2 ? (pos / sc + 1) * sc : cstart + cs;
            pos = next < end ? next : end;
        }
    }
    r->bytes = pos - off;
    return 0;
}

/* Read from the file, zeroes past its end (QEMU reads short files that way). */
static int file_read(struct qimg_node *n, uint64_t host, uint64_t len, uint8_t *dst)
{
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    uint64_t have = host >= (uint64_t)flen ? 0 : (uint64_t)flen - host;
    if (have > len)
        have = len;
    if (have) {
        int ret = qimg_node_pread(n->file, host, have, dst, 0);
        if (ret < 0)
            return ret;
    }
    memset(dst + have, 0, len - have);
    return 0;
}

static int read_backing(struct qimg_node *n, uint64_t off, uint64_t len, uint8_t *dst)
{
    uint64_t have = 0;
    if (n->backing) {
        int64_t blen = qimg_node_length(n->backing);
        if (blen < 0)
            return (int)blen;
        if (off < (uint64_t)blen)
            have = (uint64_t)blen - off < len ? (uint64_t)blen - off : len;
        if (have) {
            qimg_debug_event(n->file, QIMG_DBG_READ_BACKING_AIO);
            int ret = qimg_node_pread(n->backing, off, have, dst, 0);
            if (ret < 0)
                return ret;
        }
    }
    memset(dst + have, 0, len - have);
    return 0;
}

/*
 * A compressed cluster: read its bytes and decode them, without the node lock
 * (workers decode in parallel). A whole-cluster read decodes straight into
 * the caller's buffer.
 */
static int read_compressed(struct qimg_node *n, uint64_t l2e, uint64_t in_cluster, uint64_t len,
                           uint8_t *dst)
{
    struct qcow2_state *s = n->opaque;
    uint64_t host, clen;
    qcow2_compressed_range(s, l2e, &host, &clen);
    bool whole = in_cluster == 0 && len == s->cluster_size;
    uint8_t *cbuf = xmalloc(clen);
    uint8_t *out = whole ? dst : xmalloc(s->cluster_size);
    qimg_debug_event(n->file, QIMG_DBG_READ_COMPRESSED);
    int ret = file_read(n, host, clen, cbuf);
    if (ret == 0)
        ret = qcow2_decompress(s->compression_type, out, s->cluster_size, cbuf, clen);
    if (ret == 0 && !whole)
        memcpy(dst, out + in_cluster, len);
    free(cbuf);
    if (!whole)
        free(out);
    return ret;
}

/* Read a run that map_run described (no lock needed). */
static int read_run(struct qimg_node *n, uint64_t off, const struct run *r, uint8_t *dst)
{
    struct qcow2_state *s = n->opaque;
    switch (r->type) {
    case QCOW2_UNALLOCATED:
        return read_backing(n, off, r->bytes, dst);
    case QCOW2_ZERO_PLAIN:
    case QCOW2_ZERO_ALLOC:
        memset(dst, 0, r->bytes);
        return 0;
    case QCOW2_NORMAL: {
        qimg_debug_event(n->file, QIMG_DBG_READ_AIO);
        int ret = n->data_file ? qimg_node_pread(n->data_file, r->host, r->bytes, dst, 0)
                               : file_read(n, r->host, r->bytes, dst);
        if (ret == 0 && s->crypt)
            ret = qcow2_crypt_decrypt(s, r->host, off, dst, r->bytes); /* crypt.c */
        return ret;
    }
    case QCOW2_COMPRESSED:
        return read_compressed(n, r->e.l2e, off % s->cluster_size, r->bytes, dst);
    }
    return -EIO;
}

int qcow2_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    (void)flags;
    uint8_t *dst = buf;
    while (len) {
        struct run r;
        pthread_mutex_lock(&n->lock);
        int ret = map_run(n, off, len, &r);
        pthread_mutex_unlock(&n->lock);
        if (ret < 0)
            return ret;
        if (r.bytes == 0 || r.bytes > len)
            return -EIO; /* never loop on a run that makes no progress */
        ret = read_run(n, off, &r, dst);
        if (ret < 0)
            return ret;
        off += r.bytes;
        dst += r.bytes;
        len -= r.bytes;
    }
    return 0;
}

/* What a read of [off, off+len) inside one cluster returned under entry e. Lock held. */
static int read_old(struct qimg_node *n, const struct qcow2_entry *e, uint64_t off, uint64_t len,
                    uint8_t *dst)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size, sc = s->subcluster_size;
    uint64_t cstart = off / cs * cs;
    while (len) {
        uint64_t in = off - cstart;
        uint64_t now = s->extended_l2 ? sc - in % sc : cs - in;
        if (now > len)
            now = len;
        struct run r = {.type = qcow2_entry_type(s, e, (unsigned)(in / sc)), .bytes = now, .e = *e};
        r.host = qcow2_entry_host(s, e) + in;
        int ret = read_run(n, off, &r, dst);
        if (ret < 0)
            return ret;
        off += now;
        dst += now;
        len -= now;
    }
    return 0;
}

/* Can a write of [a, b) (cluster-relative) go to the cluster in place without metadata change? */
static bool in_place(const struct qcow2_state *s, const struct qcow2_entry *e, uint64_t a,
                     uint64_t b)
{
    if (!(e->l2e & QCOW2_OFLAG_COPIED) || (e->l2e & QCOW2_OFLAG_COMPRESSED) ||
        !qcow2_entry_host(s, e))
        return false;
    if (!s->extended_l2)
        return !(s->version >= 3 && (e->l2e & QCOW2_OFLAG_ZERO));
    uint64_t sc = s->subcluster_size;
    for (uint64_t i = a / sc; i < qcow2_div_round_up(b, sc); i++)
        if (!(e->bitmap & (1ull << i)))
            return false;
    return true;
}

/*
 * An existing exclusively owned cluster keeps its host offset: extended L2
 * bitmap changes, and (as QEMU writes into a preallocated zero cluster) a
 * zero cluster with its own host cluster, its other bytes written as zeroes.
 */
static bool reuse_host(const struct qcow2_state *s, const struct qcow2_entry *e)
{
    if (!(e->l2e & QCOW2_OFLAG_COPIED) || (e->l2e & QCOW2_OFLAG_COMPRESSED) ||
        !qcow2_entry_host(s, e))
        return false;
    return s->extended_l2 || (s->version >= 3 && (e->l2e & QCOW2_OFLAG_ZERO));
}

/* In-place overwrite of a run of COPIED clusters: map under the lock, write without it. */
static int write_in_place(struct qimg_node *n, uint8_t *l2, uint64_t off, uint64_t end,
                          const uint8_t *src, uint64_t *done, uint64_t *hint)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t pos = off, host0 = 0;
    while (pos < end) {
        struct qcow2_entry e;
        qcow2_l2_get_entry(s, l2, (pos / cs) & (s->l2_entries - 1), &e);
        uint64_t cstart = pos / cs * cs;
        uint64_t b = end - cstart < cs ? end - cstart : cs;
        if (!qcow2_entry_valid(s, &e) || !in_place(s, &e, pos - cstart, b))
            break;
        uint64_t host = qcow2_entry_host(s, &e) + (pos - cstart);
        if (pos == off)
            host0 = host;
        else if (host != host0 + (pos - off))
            break;
        pos = cstart + b;
    }
    *done = pos - off;
    *hint = qcow2_align_up(host0 + *done, cs);
    int ret = check_overlap(n, host0, *done);
    pthread_mutex_unlock(&n->lock);
    if (ret == 0)
        qimg_debug_event(n->file, QIMG_DBG_WRITE_AIO);
    if (ret == 0)
        ret = s->crypt ? qcow2_crypt_pwrite(n, host0, off, *done, src)
                       : qimg_node_pwrite(qcow2_data_node(n), host0, *done, src, 0);
    return ret;
}

/*
 * Allocating write of [off, end) (within one L2 table, first cluster not
 * writable in place). Lock held throughout.
 */
/*
 * Whether the COW head [ws, off) and tail [wend, we) of an allocation read
 * as zeroes: the old clusters are zero clusters (v3 zero flag, with or
 * without a host cluster: a preallocated one is written in place), or
 * unallocated with no backing file (standard L2 entries only; extended L2
 * keeps its bitmaps).
 */
static bool zero_cow(struct qimg_node *n, const struct qcow2_entry *old, uint64_t k, uint64_t ws,
                     uint64_t off, uint64_t wend, uint64_t we)
{
    const struct qcow2_state *s = n->opaque;
    if (s->extended_l2)
        return false;
    bool backing = n->backing || (n->backing_file && n->backing_file[0]);
    const struct qcow2_entry *e[2] = {off > ws ? &old[0] : NULL, we > wend ? &old[k - 1] : NULL};
    for (int i = 0; i < 2; i++) {
        if (!e[i] || (s->version >= 3 && (e[i]->l2e & QCOW2_OFLAG_ZERO) &&
                      !(e[i]->l2e & QCOW2_OFLAG_COMPRESSED)))
            continue;
        if (e[i]->l2e || backing)
            return false;
    }
    return true;
}

/*
 * As QEMU does for a copy-on-write of zeroes: zero the new host range
 * efficiently (no fallback), then write the guest data into it from the
 * caller's buffer, with no bounce buffer and no zero bytes copied.
 * -ENOTSUP: the file cannot zero efficiently, nothing was written.
 */
static int write_with_zero_cow(struct qimg_node *n, uint64_t hs, uint64_t hlen, uint64_t hdata,
                               const uint8_t *src, uint64_t len)
{
    struct qimg_node *data = qcow2_data_node(n);
    int ret = check_overlap(n, hs, hlen);
    if (ret < 0)
        return ret;
    qimg_debug_event(n->file, QIMG_DBG_CLUSTER_ALLOC_SPACE);
    ret = qimg_node_pwrite_zeroes(data, hs, hlen, QIMG_REQ_NO_FALLBACK);
    if (ret == -ENOTSUP || ret == -EAGAIN)
        return -ENOTSUP;
    if (ret < 0)
        return ret;
    qimg_debug_event(n->file, QIMG_DBG_WRITE_AIO);
    return qimg_node_pwrite(data, hdata, len, src, 0);
}

/*
 * QEMU keeps the clusters of one write request host-contiguous where it can:
 * new clusters go right after the previous piece's host clusters (hint) when
 * those are free, as many as are free there; otherwise wherever the first
 * free run is. *count: how many of the wanted clusters are free at hint (0:
 * none, allocate as usual). Lock held.
 */
static int free_at_hint(struct qimg_node *n, uint64_t hint, uint64_t want, uint64_t *count)
{
    struct qcow2_state *s = n->opaque;
    *count = 0;
    if (!hint || n->data_file)
        return 0;
    for (uint64_t i = 0; i < want; i++) {
        uint64_t rc;
        int ret = qcow2_get_refcount(n, hint / s->cluster_size + i, &rc);
        if (ret < 0)
            return ret;
        if (rc)
            break;
        *count = i + 1;
    }
    return 0;
}

static int64_t alloc_at_hint(struct qimg_node *n, uint64_t hint, uint64_t count)
{
    struct qcow2_state *s = n->opaque;
    uint64_t saved = s->free_cluster_index;
    s->free_cluster_index = hint / s->cluster_size; /* the run there is free: found first */
    int64_t h = qcow2_alloc_clusters(n, count);
    if (saved < s->free_cluster_index)
        s->free_cluster_index = saved;
    return h;
}

/* Whether dropping this entry frees something (qcow2_entry_release does work). */
static bool entry_holds_cluster(struct qimg_node *n, const struct qcow2_entry *e)
{
    struct qcow2_state *s = n->opaque;
    return (e->l2e & QCOW2_OFLAG_COMPRESSED) || (qcow2_entry_host(s, e) && !n->data_file);
}

/*
 * Write k L2 entries from idx0 that link freshly written clusters (cache.c:
 * power-loss order). When the entries replaced held nothing (old NULL: a
 * cluster reused in place), they only mark the cached table dirty: it reaches
 * the file after a barrier, batched. Otherwise the old clusters are released
 * right after, so the new entries go through at once, between barriers: the
 * new data and refcounts before them, them before the refcount decrements.
 */
static int link_l2(struct qimg_node *n, uint64_t l2_off, uint8_t *l2, uint64_t idx0, uint64_t k,
                   const struct qcow2_entry *old)
{
    struct qcow2_state *s = n->opaque;
    bool releases = false;
    for (uint64_t i = 0; old && i < k; i++)
        releases |= entry_holds_cluster(n, &old[i]);
    if (!releases && !s->checking) {
        qcow2_cache_mark_dirty(&s->l2_cache, l2_off);
        return 0;
    }
    int ret = qcow2_barrier(n);
    if (ret == 0)
        ret = qcow2_meta_write(n, l2_off + idx0 * s->l2_entry_bytes,
                               l2 + idx0 * s->l2_entry_bytes, k * s->l2_entry_bytes);
    if (ret < 0) {
        qcow2_cache_drop(&s->l2_cache, l2_off); /* the cached table must say what the disk says */
        return ret;
    }
    return releases ? qcow2_barrier(n) : 0;
}

static int write_alloc(struct qimg_node *n, uint64_t off, uint64_t end, const uint8_t *src,
                       uint64_t *done, uint64_t *hint)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size, sc = s->subcluster_size;
    uint8_t *l2;
    uint64_t l2_off;
    int ret = qcow2_get_l2(n, off, true, &l2, &l2_off);
    if (ret < 0)
        return ret;
    uint64_t c0 = off / cs * cs;
    struct qcow2_entry e0;
    qcow2_l2_get_entry(s, l2, (off / cs) & (s->l2_entries - 1), &e0);
    if (!qcow2_entry_valid(s, &e0))
        return corrupt_entry(n, off);
    bool reuse = reuse_host(s, &e0);

    /* Take consecutive clusters that all need a new host cluster (one if reusing). */
    uint64_t k = 1, max_k = MAX_ALLOC_BYTES / cs ? MAX_ALLOC_BYTES / cs : 1;
    while (!reuse && k < max_k && c0 + k * cs < end) {
        struct qcow2_entry e;
        qcow2_l2_get_entry(s, l2, ((c0 + k * cs) / cs) & (s->l2_entries - 1), &e);
        if (!qcow2_entry_valid(s, &e) || reuse_host(s, &e))
            break;
        uint64_t b = end - (c0 + k * cs) < cs ? end - (c0 + k * cs) : cs;
        if (in_place(s, &e, 0, b))
            break;
        k++;
    }
    uint64_t at_hint = 0;
    if (!reuse && (ret = free_at_hint(n, *hint, k, &at_hint)) < 0)
        return ret;
    if (at_hint)
        k = at_hint;
    uint64_t wend = c0 + k * cs < end ? c0 + k * cs : end; /* guest bytes written now */
    struct qcow2_entry *old = xcalloc(k, sizeof(*old));
    for (uint64_t i = 0; i < k; i++)
        qcow2_l2_get_entry(s, l2, ((c0 + i * cs) / cs) & (s->l2_entries - 1), &old[i]);

    /* Guest range stored now: cluster granularity, or subclusters with extended L2. */
    uint64_t ws = c0, we = c0 + k * cs;
    bool whole = !s->extended_l2 || (old[0].l2e & QCOW2_OFLAG_COMPRESSED);
    if (s->extended_l2 && !whole) {
        ws = off / sc * sc;
        we = qcow2_align_up(wend, sc);
        /* COW is not needed for subclusters already allocated in place. */
        if (reuse && (old[0].bitmap & (1ull << ((ws - c0) / sc))))
            ws = off;
        struct qcow2_entry *el = &old[k - 1];
        uint64_t cl = c0 + (k - 1) * cs;
        if (reuse && (el->bitmap & (1ull << ((we - sc - cl) / sc))))
            we = wend;
        /*
         * A shared cluster moves: its subclusters holding data are copied, with
         * whatever lies between them and the write (observed with qemu-img 7.2:
         * those become data too); the others keep their states.
         */
        /* A compressed last cluster is copied whole (its data would be lost otherwise). */
        if (k > 1 && (el->l2e & QCOW2_OFLAG_COMPRESSED))
            we = cl + cs;
        uint32_t a0 = (uint32_t)old[0].bitmap, al = (uint32_t)el->bitmap;
        if (!reuse && qcow2_entry_host(s, &old[0]) && a0 &&
            c0 + (uint64_t)__builtin_ctz(a0) * sc < ws)
            ws = c0 + (uint64_t)__builtin_ctz(a0) * sc;
        if (!reuse && qcow2_entry_host(s, el) && !(el->l2e & QCOW2_OFLAG_COMPRESSED) && al &&
            cl + (uint64_t)(32 - __builtin_clz(al)) * sc > we)
            we = cl + (uint64_t)(32 - __builtin_clz(al)) * sc;
    } else if (s->extended_l2 && k > 1) {
        /* whole first cluster; the last one may again be partial */
        struct qcow2_entry *el = &old[k - 1];
        uint64_t cl = c0 + (k - 1) * cs;
        uint32_t al = (uint32_t)el->bitmap;
        if (!(el->l2e & QCOW2_OFLAG_COMPRESSED)) {
            we = qcow2_align_up(wend, sc);
            if (qcow2_entry_host(s, el) && al && cl + (uint64_t)(32 - __builtin_clz(al)) * sc > we)
                we = cl + (uint64_t)(32 - __builtin_clz(al)) * sc;
        }
    }
    if (we > c0 + k * cs)
        we = c0 + k * cs;

    /* Lazy refcounts: dirty bit before the new mapping's refcounts (qcow2.txt, bit 0). */
    ret = qcow2_lazy_mark_dirty(n);
    if (ret < 0) {
        free(old);
        return ret;
    }
    uint64_t host;
    if (reuse) {
        host = qcow2_entry_host(s, &old[0]);
    } else {
        /* External data file: the host offset is the guest offset. */
        int64_t h = n->data_file ? (int64_t)c0
                    : at_hint    ? alloc_at_hint(n, *hint, k)
                                 : qcow2_alloc_clusters(n, k);
        if (h < 0) {
            free(old);
            return (int)h;
        }
        host = (uint64_t)h;
    }
    /* Whole clusters need no COW: the caller's buffer is written as it is, not copied. */
    bool whole_write = off == ws && we == wend;
    /* Encrypted zeroes are not zero bytes: COW of an encrypted image goes through a buffer. */
    if (!whole_write && !s->crypt && zero_cow(n, old, k, ws, off, wend, we)) {
        ret = write_with_zero_cow(n, host + (ws - c0), we - ws, host + (off - c0), src,
                                  wend - off);
        if (ret != -ENOTSUP)
            goto written;
        ret = 0; /* no efficient zeroing here: COW through a buffer */
    }
    uint8_t *buf = whole_write ? NULL : qimg_alloc_aligned(we - ws);
    if (!whole_write && !buf) {
        free(old);
        return -ENOMEM;
    }
    /* COW head and tail from what the guest saw before. */
    /* QEMU raises cow_read/cow_write only when there is old data to copy. */
    bool cow = (off > ws && (n->backing || old[0].l2e)) ||
               (we > wend && (n->backing || old[k - 1].l2e));
    if (cow)
        qimg_debug_event(n->file, QIMG_DBG_COW_READ);
    if (off > ws)
        ret = read_old(n, &old[0], ws, off - ws, buf);
    if (ret == 0 && we > wend)
        ret = read_old(n, &old[k - 1], wend, we - wend, buf + (wend - ws));
    if (ret == 0) {
        if (!whole_write)
            memcpy(buf + (off - ws), src, wend - off);
        uint64_t hs = host + (ws - c0);
        ret = check_overlap(n, hs, we - ws);
        /* QEMU raises cow_write for the COW regions, then write_aio for the data. */
        if (cow)
            qimg_debug_event(n->file, QIMG_DBG_COW_WRITE);
        qimg_debug_event(n->file, QIMG_DBG_WRITE_AIO);
        if (ret == 0 && s->crypt)
            ret = qcow2_crypt_pwrite(n, hs, ws, we - ws, whole_write ? src : buf);
        else if (ret == 0)
            ret = qimg_node_pwrite(qcow2_data_node(n), hs, we - ws, whole_write ? src : buf, 0);
    }
    free(buf);
written:
    if (ret < 0) {
        /*
         * Nothing references the new clusters yet (the L2 entries come after
         * the data): free them, as QEMU does when a write fails (a convert
         * that runs out of space leaves no leaks).
         */
        if (!reuse && !n->data_file)
            (void)qcow2_update_refcounts(n, host / cs, k, -1); /* failing: they leak */
        free(old);
        return ret;
    }

    /* Point the L2 entries at the new data, then release what they referenced. */
    ret = qcow2_get_l2(n, off, false, &l2, NULL);
    if (ret < 0 || !l2) {
        free(old);
        return ret < 0 ? ret : -EIO;
    }
    uint64_t idx0 = (c0 / cs) & (s->l2_entries - 1);
    for (uint64_t i = 0; i < k; i++) {
        struct qcow2_entry ne = {.l2e = (host + i * cs) | QCOW2_OFLAG_COPIED, .bitmap = 0};
        if (s->extended_l2) {
            uint64_t cl = c0 + i * cs;
            uint64_t a = ws > cl ? ws - cl : 0, b = we < cl + cs ? we - cl : cs;
            uint32_t touched = 0;
            for (uint64_t j = a / sc; j < qcow2_div_round_up(b, sc); j++)
                touched |= 1u << j;
            uint32_t alloc = (uint32_t)old[i].bitmap, zero = (uint32_t)(old[i].bitmap >> 32);
            /* A compressed cluster is copied whole; a shared one as far as [ws, we). */
            bool copied_all = old[i].l2e & QCOW2_OFLAG_COMPRESSED;
            if (copied_all)
                alloc = 0xffffffffu, zero = 0;
            alloc |= touched;
            zero &= ~touched;
            ne.bitmap = ((uint64_t)zero << 32) | alloc;
        }
        qcow2_l2_set_entry(s, l2, idx0 + i, &ne);
    }
    qimg_debug_event(n->file, QIMG_DBG_L2_UPDATE);
    ret = link_l2(n, l2_off, l2, idx0, k, reuse ? NULL : old);
    for (uint64_t i = 0; ret == 0 && !reuse && i < k; i++)
        ret = qcow2_entry_release(n, &old[i]);
    free(old);
    *done = wend - off;
    *hint = n->data_file ? 0 : host + k * cs;
    return ret;
}

int qcow2_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                 unsigned flags)
{
    qcow2_bitmaps_mark_dirty(n, off, len); /* bitmap.c: enabled bitmaps see every change */
    return qcow2_pwrite_unmarked(n, off, len, buf, flags);
}

int qcow2_pwrite_unmarked(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                          unsigned flags)
{
    struct qcow2_state *s = n->opaque;
    const uint8_t *src = buf;
    uint64_t l2_span = s->l2_entries * s->cluster_size;
    uint64_t hint = 0; /* host offset after the previous piece (write_alloc) */
    while (len) {
        uint64_t end = (off / l2_span + 1) * l2_span;
        if (end > off + len)
            end = off + len;
        uint64_t done = 0;
        pthread_mutex_lock(&n->lock);
        if (s->corrupt_event) {
            pthread_mutex_unlock(&n->lock);
            return -EIO;
        }
        uint8_t *l2;
        int ret = qcow2_get_l2(n, off, false, &l2, NULL);
        bool placed = false;
        if (ret == 0 && l2) {
            struct qcow2_entry e;
            uint64_t cs = s->cluster_size, cstart = off / cs * cs;
            qcow2_l2_get_entry(s, l2, (off / cs) & (s->l2_entries - 1), &e);
            uint64_t b = end - cstart < cs ? end - cstart : cs;
            if (qcow2_entry_valid(s, &e) && in_place(s, &e, off - cstart, b)) {
                ret = write_in_place(n, l2, off, end, src, &done, &hint); /* unlocks */
                placed = true;
            }
        }
        if (!placed) {
            if (ret == 0)
                ret = write_alloc(n, off, end, src, &done, &hint);
            pthread_mutex_unlock(&n->lock);
        }
        if (ret < 0)
            return ret;
        off += done;
        src += done;
        len -= done;
    }
    if (flags & QIMG_REQ_FUA)
        return qimg_node_flush(n->file);
    return 0;
}

/* Does [off, off+len) of one cluster already read as zeroes? Lock held. */
static int reads_zero(struct qimg_node *n, uint64_t off, uint64_t len, bool *zero)
{
    struct qcow2_state *s = n->opaque;
    *zero = false;
    while (len) {
        struct run r;
        int ret = map_run(n, off, len, &r);
        if (ret < 0)
            return ret;
        if (r.type == QCOW2_UNALLOCATED) {
            if (n->backing) {
                int64_t blen = qimg_node_length(n->backing);
                if (blen < 0 || off < (uint64_t)blen)
                    return 0;
            }
        } else if (r.type != QCOW2_ZERO_PLAIN && r.type != QCOW2_ZERO_ALLOC) {
            return 0;
        }
        (void)s;
        off += r.bytes;
        len -= r.bytes;
    }
    *zero = true;
    return 0;
}

/*
 * Host ranges a request freed, passed down to the file as discards once the
 * request's entries are released (QEMU's pass-discard-request), adjacent
 * clusters merged into one range as QEMU queues them: on a file system with
 * blocks larger than the clusters only a merged range frees whole blocks.
 */
struct discards {
    struct qimg_node *node; /* where the pending range lives */
    uint64_t start, len;
};

static void discards_flush(struct discards *d)
{
    if (d->len)
        (void)qimg_node_pdiscard(d->node, d->start, d->len); /* advisory */
    d->len = 0;
}

static void discards_add(struct discards *d, struct qimg_node *node, uint64_t start, uint64_t len)
{
    if (d->len && d->node == node && d->start + d->len == start) {
        d->len += len;
        return;
    }
    discards_flush(d);
    *d = (struct discards){.node = node, .start = start, .len = len};
}

/*
 * Drop a guest request's reference to a cluster and, once the host cluster is
 * free, queue its discard in d, so the file keeps no stale data. Lock held.
 */
static int release_and_discard(struct qimg_node *n, const struct qcow2_entry *e,
                               struct discards *d)
{
    struct qcow2_state *s = n->opaque;
    int ret = qcow2_entry_release(n, e);
    uint64_t host = (e->l2e & QCOW2_OFLAG_COMPRESSED) ? 0 : qcow2_entry_host(s, e);
    uint64_t rc;
    if (n->data_file) { /* no refcounts there; a raw data file keeps its data */
        if (ret == 0 && host && !(s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW))
            discards_add(d, n->data_file, host, s->cluster_size);
        return ret;
    }
    if (ret == 0 && host && qcow2_get_refcount(n, host / s->cluster_size, &rc) == 0 && rc == 0)
        discards_add(d, n->file, host, s->cluster_size);
    return ret;
}

/*
 * Zero whole clusters (or subclusters) [off, end) of one L2 table through
 * metadata. With extended L2 a cluster is zeroed as a whole (and may be
 * deallocated) only when [whole_a, whole_b), the request's own whole
 * subclusters, covers it: granules widened into at either end are zeroed
 * separately in QEMU, as subclusters. Lock held.
 */
static int zero_meta(struct qimg_node *n, uint64_t off, uint64_t end, bool unmap, uint64_t whole_a,
                     uint64_t whole_b)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size, sc = s->subcluster_size;
    uint8_t *l2;
    uint64_t l2_off;
    int ret = qcow2_get_l2(n, off, false, &l2, NULL);
    if (ret < 0)
        return ret;
    ret = qcow2_get_l2(n, off, true, &l2, &l2_off);
    if (ret < 0)
        return ret;
    uint64_t first = (off / cs) & (s->l2_entries - 1);
    uint64_t count = qcow2_div_round_up(end, cs) - off / cs;
    struct qcow2_entry *rel = xcalloc(count, sizeof(*rel));
    size_t nrel = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t cl = off / cs * cs + i * cs;
        uint64_t a = off > cl ? off - cl : 0, b = end < cl + cs ? end - cl : cs;
        struct qcow2_entry e, ne;
        qcow2_l2_get_entry(s, l2, first + i, &e);
        bool whole = a == 0 && b == cs && cl >= whole_a && cl + cs <= whole_b;
        bool alloc = !(e.l2e & QCOW2_OFLAG_COMPRESSED) && qcow2_entry_host(s, &e);
        if (s->version < 3) {
            /* v2 has no zero flag: with no backing file, unallocated reads as zeroes. */
            ne.l2e = 0;
            rel[nrel++] = e;
        } else if (!s->extended_l2) {
            if (unmap || !alloc) {
                ne.l2e = QCOW2_OFLAG_ZERO;
                rel[nrel++] = e;
            } else {
                ne.l2e = e.l2e | QCOW2_OFLAG_ZERO;
            }
            ne.bitmap = 0;
        } else if (whole) {
            ne.bitmap = 0xffffffffull << 32;
            if (unmap || !alloc) {
                ne.l2e = 0;
                rel[nrel++] = e;
            } else {
                ne.l2e = e.l2e;
            }
        } else {
            /* Partial cluster: only possible on a plain (not compressed) entry. */
            uint32_t mask = 0;
            for (uint64_t j = a / sc; j < b / sc; j++)
                mask |= 1u << j;
            ne.l2e = e.l2e;
            ne.bitmap = (e.bitmap & ~(uint64_t)mask) | ((uint64_t)mask << 32);
        }
        qcow2_l2_set_entry(s, l2, first + i, &ne);
    }
    qimg_debug_event(n->file, QIMG_DBG_L2_UPDATE);
    ret = qcow2_meta_write(n, l2_off + first * s->l2_entry_bytes, l2 + first * s->l2_entry_bytes,
                           count * s->l2_entry_bytes);
    if (ret < 0)
        qcow2_cache_drop(&s->l2_cache, l2_off); /* the cached table must say what the disk says */
    else if (nrel)
        ret = qcow2_barrier(n); /* cache.c: the unlinking entries before the decrements */
    struct discards d = {0};
    for (size_t i = 0; ret == 0 && i < nrel; i++)
        ret = release_and_discard(n, &rel[i], &d);
    discards_flush(&d);
    free(rel);
    return ret;
}

int qcow2_zeroize_locked(struct qimg_node *n, uint64_t off, uint64_t end, bool unmap)
{
    struct qcow2_state *s = n->opaque;
    uint64_t l2_span = s->l2_entries * s->cluster_size;
    /* Subclusters of a compressed cluster cannot be zeroed: qemu-img refuses (-ENOTSUP). */
    struct qcow2_entry e;
    int ret = off % s->cluster_size ? qcow2_lookup(n, off, &e) : 0;
    if (ret == 0 && off % s->cluster_size && (e.l2e & QCOW2_OFLAG_COMPRESSED))
        ret = -ENOTSUP;
    for (uint64_t a = off; ret == 0 && a < end;) {
        uint64_t b = (a / l2_span + 1) * l2_span;
        if (b > end)
            b = end;
        ret = zero_meta(n, a, b, unmap, off, end);
        a = b;
    }
    return ret;
}

static int write_zero_data(struct qimg_node *n, uint64_t off, uint64_t len)
{
    uint8_t *z = qimg_alloc_aligned(len);
    if (!z)
        return -ENOMEM;
    memset(z, 0, len);
    int ret = qcow2_pwrite(n, off, len, z, 0);
    free(z);
    return ret;
}

/* Zeroes written as data, a piece at a time. */
static int write_zero_data_long(struct qimg_node *n, uint64_t off, uint64_t len)
{
    const uint64_t piece = 1u << 20;
    int ret = 0;
    while (ret == 0 && len) {
        uint64_t now = len < piece ? len : piece;
        ret = write_zero_data(n, off, now);
        off += now;
        len -= now;
    }
    return ret;
}

/*
 * Extended L2: a request is zeroed in up to three pieces, in order: the
 * partial granule at its start, its whole subclusters, the partial granule
 * at its end. When the whole-subcluster piece starts or ends inside a
 * compressed cluster (which cannot be zeroed by subclusters), all of it is
 * written as zeroes instead (observed with qemu-img 7.2: the clusters of the
 * piece end up as data; a head piece that already copied the compressed
 * cluster leaves it zeroable). -EAGAIN: one piece, zero it as usual.
 */
static int zero_in_pieces(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size, g = s->subcluster_size, end = off + len;
    if (!s->extended_l2 || s->version < 3 || (flags & QIMG_REQ_NO_FALLBACK))
        return -EAGAIN;
    uint64_t ma = qcow2_align_up(off, g), mb = end >= s->size ? end : end / g * g;
    if (ma >= mb)
        return -EAGAIN;
    int ret;
    if (off < ma || mb < end) {
        if (off < ma && (ret = qcow2_pwrite_zeroes(n, off, ma - off, flags)) < 0)
            return ret;
        if ((ret = qcow2_pwrite_zeroes(n, ma, mb - ma, flags)) < 0)
            return ret;
        return mb < end ? qcow2_pwrite_zeroes(n, mb, end - mb, flags) : 0;
    }
    bool fail = false;
    struct qcow2_entry e;
    pthread_mutex_lock(&n->lock);
    ret = 0;
    if (ma % cs && (ret = qcow2_lookup(n, ma, &e)) == 0)
        fail = e.l2e & QCOW2_OFLAG_COMPRESSED;
    if (ret == 0 && !fail && mb % cs && mb < s->size && (ret = qcow2_lookup(n, mb - 1, &e)) == 0)
        fail = e.l2e & QCOW2_OFLAG_COMPRESSED;
    pthread_mutex_unlock(&n->lock);
    if (ret < 0)
        return ret;
    return fail ? write_zero_data_long(n, ma, mb - ma) : -EAGAIN;
}

/*
 * Zero writes, as QEMU's allocation maps show them: on v3 images whole
 * clusters (subclusters with extended L2) become zero clusters even where
 * they already read as zeroes, and a partial head or tail is widened to its
 * whole granule when the rest of the granule reads as zeroes too. What is
 * left over is written as zero data unless it already reads as zeroes.
 */
int qcow2_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    int r = zero_in_pieces(n, off, len, flags);
    if (r != -EAGAIN)
        return r;
    qcow2_bitmaps_mark_dirty(n, off, len); /* bitmap.c: enabled bitmaps see every change */
    struct qcow2_state *s = n->opaque;
    if (qcow2_data_file_raw_zero(n, off, len) < 0) /* datafile.c: the raw view reads zeroes too */
        return -EIO;
    uint64_t cs = s->cluster_size;
    /* Zero metadata granularity: subclusters with extended L2, clusters otherwise. */
    uint64_t g = s->subcluster_size;
    /* v2 images without a backing file zero whole clusters by deallocating them. */
    bool can_meta = s->version >= 3 || !n->backing;
    while (len) {
        uint64_t cend = (off / cs + 1) * cs;
        uint64_t end = off + len < cend ? off + len : cend;
        /* The last cluster of an image not a multiple of the cluster size counts whole. */
        uint64_t gend = end == s->size ? qcow2_align_up(end, g) : end;
        uint64_t a = qcow2_align_up(off, g), b = gend / g * g;
        const uint64_t whole_a = a, whole_b = b < s->size ? b : qcow2_align_up(s->size, g);
        pthread_mutex_lock(&n->lock);
        int ret = s->corrupt_event ? -EIO : 0;
        struct qcow2_entry e = {0};
        if (ret == 0 && can_meta) {
            /* Widen a partial head/tail granule whose other bytes read as zeroes. */
            uint64_t ga = off / g * g, gb = qcow2_align_up(gend, g);
            uint64_t img_end = qcow2_align_up(s->size, g);
            if (gb > img_end)
                gb = img_end;
            bool z = true;
            if (ga < off)
                ret = reads_zero(n, ga, off - ga, &z);
            if (ret == 0 && z && ga < a)
                a = ga;
            z = true;
            if (ret == 0 && gend < gb && b < gend)
                ret = reads_zero(n, gend, gb - gend, &z);
            if (ret == 0 && z && b < gend && gb > b)
                b = gb;
        }
        if (ret == 0)
            ret = qcow2_lookup(n, off, &e);
        bool meta = ret == 0 && can_meta && a < b &&
                    !(s->extended_l2 && (e.l2e & QCOW2_OFLAG_COMPRESSED) && b - a < cs);
        if (meta && s->extended_l2 && (e.l2e & QCOW2_OFLAG_COMPRESSED))
            meta = a == off / cs * cs && b >= (off / cs + 1) * cs;
        pthread_mutex_unlock(&n->lock);
        if (ret < 0)
            return ret;
        /*
         * In order, as QEMU does it: the partial head as written zeroes, the
         * whole granules through metadata, the partial tail (a head that
         * copies a shared cluster first leaves the granules' zero flags on
         * the copy).
         */
        uint64_t ranges[2][2] = {{off, meta ? (a > off ? a : off) : end},
                                 {meta ? (b < end ? b : end) : end, end}};
        for (int i = 0; i < 2; i++) {
            if (i == 1 && meta) {
                pthread_mutex_lock(&n->lock);
                ret = s->corrupt_event ? -EIO
                                       : zero_meta(n, a, b < s->size ? b : qcow2_align_up(s->size, g),
                                                   flags & QIMG_REQ_MAY_UNMAP, whole_a, whole_b);
                pthread_mutex_unlock(&n->lock);
                if (ret < 0)
                    return ret;
            }
            uint64_t ro = ranges[i][0], rl = ranges[i][1] > ro ? ranges[i][1] - ro : 0;
            if (!rl)
                continue;
            bool z;
            pthread_mutex_lock(&n->lock);
            ret = reads_zero(n, ro, rl, &z);
            pthread_mutex_unlock(&n->lock);
            if (ret < 0)
                return ret;
            if (z)
                continue;
            if (flags & QIMG_REQ_NO_FALLBACK)
                return -ENOTSUP;
            ret = write_zero_data(n, ro, rl);
            if (ret < 0)
                return ret;
        }
        len -= end - off;
        off = end;
    }
    return 0;
}

int qcow2_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = n->opaque;
    /*
     * v2 has no zero flag: a discarded cluster would show the backing file's
     * data, so with a backing file qemu-img leaves the image as it is.
     */
    if (s->version < 3 && n->backing)
        return 0;
    qcow2_bitmaps_mark_dirty(n, off, len); /* bitmap.c: enabled bitmaps see every change */
    if (qcow2_data_file_raw_zero(n, off, len) < 0) /* datafile.c */
        return -EIO;
    uint64_t cs = s->cluster_size;
    uint64_t a = qcow2_align_up(off, cs);
    uint64_t e = off + len == s->size ? qcow2_align_up(off + len, cs) : (off + len) / cs * cs;
    uint64_t l2_span = s->l2_entries * cs;
    int ret = 0;
    pthread_mutex_lock(&n->lock);
    if (s->corrupt_event)
        ret = -EIO;
    while (ret == 0 && a < e) {
        uint64_t end = (a / l2_span + 1) * l2_span;
        if (end > e)
            end = e;
        uint8_t *l2;
        uint64_t l2_off;
        /* Like QEMU, even an unallocated table is allocated (and then maybe left empty). */
        ret = qcow2_get_l2(n, a, true, &l2, &l2_off);
        if (ret < 0)
            break;
        uint64_t first = (a / cs) & (s->l2_entries - 1), count = (end - a) / cs;
        struct qcow2_entry *rel = xcalloc(count, sizeof(*rel));
        for (uint64_t i = 0; i < count; i++) {
            /*
             * A discard request (not a full discard) leaves clusters that read
             * as zeroes: zero clusters on v3, unallocated on v2. Clusters that
             * hold nothing stay as they are unless a backing file shows through.
             */
            struct qcow2_entry old, ne = {0};
            qcow2_l2_get_entry(s, l2, first + i, &old);
            bool allocated = (old.l2e & QCOW2_OFLAG_COMPRESSED) || qcow2_entry_host(s, &old);
            if (!allocated && !n->backing) {
                rel[i] = (struct qcow2_entry){0};
                continue;
            }
            if (s->version >= 3) {
                if (s->extended_l2)
                    ne.bitmap = 0xffffffffull << 32;
                else
                    ne.l2e = QCOW2_OFLAG_ZERO;
            }
            rel[i] = old;
            qcow2_l2_set_entry(s, l2, first + i, &ne);
        }
        qimg_debug_event(n->file, QIMG_DBG_L2_UPDATE);
        ret = qcow2_meta_write(n, l2_off + first * s->l2_entry_bytes,
                               l2 + first * s->l2_entry_bytes, count * s->l2_entry_bytes);
        if (ret < 0)
            qcow2_cache_drop(&s->l2_cache, l2_off); /* cached table = disk */
        else
            ret = qcow2_barrier(n); /* cache.c: the unlinking entries before the decrements */
        struct discards d = {0};
        for (uint64_t i = 0; ret == 0 && i < count; i++)
            ret = release_and_discard(n, &rel[i], &d);
        discards_flush(&d);
        free(rel);
        a = end;
    }
    pthread_mutex_unlock(&n->lock);
    return ret;
}

/*
 * Compressed writes come in two steps so that callers compress on many
 * threads and still store in order: qcow2_compress_cluster takes no lock;
 * qcow2_pwrite_precompressed allocates the bytes, writes them and then the
 * L2 entry under n->lock (data before metadata, as for any allocation).
 */
long qcow2_compress_cluster(struct qimg_node *n, const void *buf, uint64_t len, void *out,
                            size_t cap)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    if (len > cs || cap < cs - 1)
        return -EINVAL;
    const uint8_t *in = buf;
    uint8_t *padded = NULL;
    if (len < cs) {
        /* The image's last cluster: compressed whole, the tail as zeroes. */
        padded = xcalloc(1, cs);
        memcpy(padded, buf, len);
        in = padded;
    }
    long clen = qcow2_compress(s->compression_type, out, cs - 1, in, cs);
    free(padded);
    return clen;
}

int qcow2_pwrite_precompressed(struct qimg_node *n, uint64_t off, uint64_t len, const void *cdata,
                               size_t clen)
{
    struct qcow2_state *s = n->opaque;
    /* A compressed cluster has no place in a data file that maps guest offsets 1:1. */
    if (qcow2_has_data_file(s))
        return -ENOTSUP;
    qcow2_bitmaps_mark_dirty(n, off, len); /* bitmap.c: enabled bitmaps see every change */
    uint64_t cs = s->cluster_size;
    if (off % cs || len > cs || (len < cs && off + len != s->size) || clen == 0 || clen >= cs)
        return -EINVAL;
    pthread_mutex_lock(&n->lock);
    int ret = s->corrupt_event ? -EIO : 0;
    uint8_t *l2;
    uint64_t l2_off;
    if (ret == 0)
        ret = qcow2_get_l2(n, off, true, &l2, &l2_off);
    if (ret == 0) {
        /* Like QEMU, compressed data only goes to clusters that hold nothing yet. */
        struct qcow2_entry cur;
        qcow2_l2_get_entry(s, l2, (off / cs) & (s->l2_entries - 1), &cur);
        if ((cur.l2e & QCOW2_OFLAG_COMPRESSED) || qcow2_entry_host(s, &cur))
            ret = -EIO;
    }
    int64_t host = 0;
    if (ret == 0) {
        host = qcow2_alloc_bytes(n, (uint64_t)clen);
        if (host < 0)
            ret = (int)host;
    }
    if (ret == 0)
        ret = check_overlap(n, (uint64_t)host, (uint64_t)clen);
    if (ret == 0)
        qimg_debug_event(n->file, QIMG_DBG_WRITE_COMPRESSED);
    if (ret == 0)
        ret = qimg_node_pwrite(n->file, (uint64_t)host, (uint64_t)clen, cdata, 0);
    if (ret == 0)
        ret = qcow2_get_l2(n, off, false, &l2, NULL);
    if (ret == 0 && l2) {
        unsigned x = 62 - (s->cluster_bits - 8);
        uint64_t nb = (((uint64_t)host + (uint64_t)clen - 1) >> 9) - ((uint64_t)host >> 9);
        uint64_t idx = (off / cs) & (s->l2_entries - 1);
        struct qcow2_entry old, ne = {.l2e = QCOW2_OFLAG_COMPRESSED | (nb << x) | (uint64_t)host};
        qcow2_l2_get_entry(s, l2, idx, &old);
        qcow2_l2_set_entry(s, l2, idx, &ne);
        qimg_debug_event(n->file, QIMG_DBG_L2_UPDATE_COMPRESSED);
        ret = link_l2(n, l2_off, l2, idx, 1, &old);
        if (ret == 0)
            ret = qcow2_entry_release(n, &old);
    }
    pthread_mutex_unlock(&n->lock);
    return ret;
}

/*
 * A compressed write covers whole clusters (the last one may end with the
 * image); like QEMU, a request of several clusters is stored cluster by cluster.
 */
int qcow2_pwrite_compressed(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    if (qcow2_has_data_file(s))
        return -ENOTSUP; /* see qcow2_pwrite_precompressed */
    if (off % cs || (len % cs && off + len != s->size))
        return -EINVAL;
    const uint8_t *src = buf;
    uint8_t *out = xmalloc(cs);
    int ret = 0;
    while (len && ret == 0) {
        uint64_t now = len < cs ? len : cs;
        long clen = qcow2_compress_cluster(n, src, now, out, cs);
        if (clen < 0) /* not smaller: store the cluster as it is (the last one may be short) */
            ret = qcow2_pwrite(n, off, now, src, 0);
        else
            ret = qcow2_pwrite_precompressed(n, off, now, out, (size_t)clen);
        off += now;
        src += now;
        len -= now;
    }
    free(out);
    return ret;
}

int qcow2_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                       struct qimg_block_status *st)
{
    struct run r;
    pthread_mutex_lock(&n->lock);
    int ret = map_run(n, off, len, &r);
    pthread_mutex_unlock(&n->lock);
    if (ret < 0)
        return ret;
    st->bytes = r.bytes;
    st->flags = 0;
    switch (r.type) {
    case QCOW2_UNALLOCATED:
        break;
    case QCOW2_ZERO_PLAIN:
    case QCOW2_ZERO_ALLOC:
        st->flags = QIMG_BLK_ZERO;
        break;
    case QCOW2_NORMAL:
        st->flags = QIMG_BLK_DATA;
        break;
    case QCOW2_COMPRESSED:
        st->flags = QIMG_BLK_DATA | QIMG_BLK_COMPRESSED;
        break;
    }
    if (r.host_valid && !((struct qcow2_state *)n->opaque)->crypt) { /* encrypted: no offset */
        st->flags |= QIMG_BLK_OFFSET_VALID;
        st->offset = r.host;
        st->file = qcow2_data_node(n);
    }
    return 0;
}
