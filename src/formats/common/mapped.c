/* SPDX-License-Identifier: MIT */
/*
 * The mapped-image layer (see mapped.h): guest I/O for formats that describe
 * their layout with map/alloc/commit.
 */
#include "formats/common/mapped.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/bytes.h"
#include "util/mem.h"

#define DEFAULT_MAX_ALLOC (4u << 20) /* bytes buffered per allocating write */

static struct qimg_node *data_node(struct qimg_node *n)
{
    struct qimg_mapped *m = qimg_mapped_of(n);
    return m->data ? m->data : n->file;
}

/* Map the run at off and sanity-check the format's answer (never loop, never overrun). */
static int map_locked(struct qimg_node *n, uint64_t off, uint64_t len, struct qimg_map *r)
{
    memset(r, 0, sizeof(*r));
    int ret = qimg_mapped_of(n)->ops->map(n, off, len, r);
    if (ret < 0)
        return ret;
    if (r->bytes == 0 || r->bytes > len)
        return -EIO;
    if (r->kind == QIMG_MAP_DATA && !r->host_valid)
        return -EIO;
    return 0;
}

static int map_run(struct qimg_node *n, uint64_t off, uint64_t len, struct qimg_map *r)
{
    pthread_mutex_lock(&n->lock);
    int ret = map_locked(n, off, len, r);
    pthread_mutex_unlock(&n->lock);
    return ret;
}

/* A run about to be read: the format's veto on reading its backing file. n->lock held. */
static int backing_read_ok(struct qimg_node *n, const struct qimg_map *m)
{
    const struct qimg_mapped_ops *ops = qimg_mapped_of(n)->ops;
    if (m->kind != QIMG_MAP_UNALLOCATED || !n->backing || !ops->backing_read_ok)
        return 0;
    return ops->backing_read_ok(n);
}

/* Map a run for reading it (map_run plus the backing veto). */
static int map_for_read(struct qimg_node *n, uint64_t off, uint64_t len, struct qimg_map *r,
                        bool locked)
{
    if (!locked)
        pthread_mutex_lock(&n->lock);
    int ret = map_locked(n, off, len, r);
    if (ret == 0)
        ret = backing_read_ok(n, r);
    if (!locked)
        pthread_mutex_unlock(&n->lock);
    return ret;
}

/* The node a run's or an allocation's host bytes live in. */
static struct qimg_node *run_node(struct qimg_node *n, struct qimg_node *file)
{
    return file ? file : data_node(n);
}

/* Read host bytes; zeroes past the end of the data node (as QEMU reads short files). */
static int host_read(struct qimg_node *n, struct qimg_node *d, uint64_t host, uint64_t len,
                     uint8_t *dst)
{
    int64_t flen = qimg_node_length(d);
    if (flen < 0)
        return (int)flen;
    uint64_t have = host >= (uint64_t)flen ? 0 : qimg_min_u64((uint64_t)flen - host, len);
    if (have) {
        qimg_debug_event(n->file, QIMG_DBG_READ_AIO);
        int ret = qimg_node_pread(d, host, have, dst, 0);
        if (ret < 0)
            return ret;
    }
    memset(dst + have, 0, len - have);
    return 0;
}

int qimg_mapped_read_backing(struct qimg_node *n, uint64_t off, uint64_t len, void *buf)
{
    uint8_t *dst = buf;
    uint64_t have = 0;
    if (n->backing) {
        int64_t blen = qimg_node_length(n->backing);
        if (blen < 0)
            return (int)blen;
        if (off < (uint64_t)blen)
            have = qimg_min_u64((uint64_t)blen - off, len);
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

int qimg_mapped_read_run(struct qimg_node *n, uint64_t off, const struct qimg_map *m, void *buf)
{
    switch (m->kind) {
    case QIMG_MAP_UNALLOCATED:
        return qimg_mapped_read_backing(n, off, m->bytes, buf);
    case QIMG_MAP_ZERO:
        memset(buf, 0, m->bytes);
        return 0;
    case QIMG_MAP_DATA:
        return host_read(n, run_node(n, m->file), m->host, m->bytes, buf);
    case QIMG_MAP_COMPRESSED: {
        const struct qimg_mapped_ops *ops = qimg_mapped_of(n)->ops;
        if (!ops->read_compressed)
            return -EIO;
        return ops->read_compressed(n, m, off, m->bytes, buf);
    }
    }
    return -EIO;
}

/* Read [off, off+len) run by run; map under n->lock unless the caller holds it. */
static int read_runs(struct qimg_node *n, uint64_t off, uint64_t len, uint8_t *dst, bool locked)
{
    while (len) {
        struct qimg_map m;
        int ret = map_for_read(n, off, len, &m, locked);
        if (ret == 0)
            ret = qimg_mapped_read_run(n, off, &m, dst);
        if (ret < 0)
            return ret;
        off += m.bytes;
        dst += m.bytes;
        len -= m.bytes;
    }
    return 0;
}

int qimg_mapped_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    (void)flags;
    return read_runs(n, off, len, buf, false);
}

/*
 * What the guest saw at [off, off+len) before a write, with n->lock held (the
 * copy-on-write head or tail). Bytes past the virtual size (the end of a last
 * block the image only partly covers) read as zeroes.
 */
static int read_old_locked(struct qimg_node *n, uint64_t off, uint64_t len, uint8_t *dst)
{
    int64_t size = n->drv->get_length(n);
    if (size < 0)
        return (int)size;
    uint64_t inside = off >= (uint64_t)size ? 0 : qimg_min_u64((uint64_t)size - off, len);
    memset(dst + inside, 0, len - inside);
    return read_runs(n, off, inside, dst, true);
}

/* Block sizes need not be powers of two (parallels clusters of 63 sectors). */
static uint64_t block_round_down(uint64_t v, uint64_t bs)
{
    return v - v % bs;
}

static uint64_t block_round_up(uint64_t v, uint64_t bs)
{
    return block_round_down(v + bs - 1, bs);
}

static int check_host_write(struct qimg_node *n, uint64_t host, uint64_t len)
{
    const struct qimg_mapped_ops *ops = qimg_mapped_of(n)->ops;
    return ops->check_host_write ? ops->check_host_write(n, host, len) : 0;
}

/* Blocks from c0 on that need a new home for a write ending at end: at least one. */
static int alloc_extent(struct qimg_node *n, uint64_t c0, uint64_t end, struct qimg_alloc *a)
{
    struct qimg_mapped *mp = qimg_mapped_of(n);
    uint64_t bs = mp->block_size;
    uint64_t cap = (mp->max_alloc ? mp->max_alloc : DEFAULT_MAX_ALLOC) / bs;
    uint64_t k = 1;
    while (k < cap && c0 + k * bs < end) {
        struct qimg_map m;
        int ret = map_locked(n, c0 + k * bs, bs, &m);
        if (ret < 0)
            return ret;
        if (m.kind == QIMG_MAP_DATA && m.in_place)
            break;
        k++;
    }
    *a = (struct qimg_alloc){.guest = c0, .bytes = k * bs};
    int ret = mp->ops->alloc(n, a);
    if (ret < 0)
        return ret;
    if (a->bytes == 0 || a->bytes > k * bs || a->bytes % bs)
        return -EIO;
    return 0;
}

/*
 * Allocating write of [off, end): new blocks, the COW head [c0, off) and tail
 * [wend, we) from what the guest saw, data, then commit. n->lock held.
 */
static int write_alloc(struct qimg_node *n, uint64_t off, uint64_t end, const uint8_t *src,
                       uint64_t *done)
{
    struct qimg_mapped *mp = qimg_mapped_of(n);
    uint64_t c0 = off - off % mp->block_size; /* any block size (parallels: 63 sectors) */
    struct qimg_alloc a;
    int ret = alloc_extent(n, c0, end, &a);
    if (ret < 0)
        return ret;
    uint64_t we = c0 + a.bytes, wend = qimg_min_u64(end, we);
    bool whole = off == c0 && wend == we; /* the caller's buffer goes out as it is */
    uint8_t *buf = whole ? NULL : qimg_alloc_aligned(a.bytes);
    if (!whole && !buf)
        ret = -ENOMEM;
    if (ret == 0 && off > c0)
        ret = read_old_locked(n, c0, off - c0, buf);
    if (ret == 0 && we > wend)
        ret = read_old_locked(n, wend, we - wend, buf + (wend - c0));
    if (ret == 0)
        ret = check_host_write(n, a.host, a.bytes);
    if (ret == 0) {
        if (!whole)
            memcpy(buf + (off - c0), src, wend - off);
        qimg_debug_event(n->file, QIMG_DBG_WRITE_AIO);
        ret = qimg_node_pwrite(run_node(n, a.file), a.host, a.bytes, whole ? src : buf, 0);
    }
    free(buf);
    a.written_start = c0;
    a.written_end = we;
    if (ret == 0)
        ret = mp->ops->commit(n, &a);
    else if (mp->ops->abort)
        mp->ops->abort(n, &a);
    *done = wend - off;
    return ret;
}

int qimg_mapped_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                       unsigned flags)
{
    const uint8_t *src = buf;
    while (len) {
        struct qimg_map m;
        uint64_t done = 0;
        pthread_mutex_lock(&n->lock);
        int ret = map_locked(n, off, len, &m);
        if (ret == 0 && m.kind == QIMG_MAP_DATA && m.in_place) {
            ret = check_host_write(n, m.host, m.bytes);
            pthread_mutex_unlock(&n->lock);
            if (ret == 0) {
                qimg_debug_event(n->file, QIMG_DBG_WRITE_AIO);
                ret = qimg_node_pwrite(run_node(n, m.file), m.host, m.bytes, src, 0);
            }
            done = m.bytes;
        } else {
            if (ret == 0)
                ret = write_alloc(n, off, off + len, src, &done);
            pthread_mutex_unlock(&n->lock);
        }
        if (ret < 0)
            return ret;
        off += done;
        src += done;
        len -= done;
    }
    if (flags & QIMG_REQ_FUA)
        return qimg_node_flush(data_node(n));
    return 0;
}

/* Does [off, off+len) read as zeroes already (so a partial zero write can skip it)? */
static int reads_zero(struct qimg_node *n, uint64_t off, uint64_t len, bool *zero)
{
    *zero = true;
    while (len && *zero) {
        struct qimg_map m;
        int ret = map_run(n, off, len, &m);
        if (ret < 0)
            return ret;
        *zero = m.kind == QIMG_MAP_ZERO || (m.kind == QIMG_MAP_UNALLOCATED && !n->backing);
        off += m.bytes;
        len -= m.bytes;
    }
    return 0;
}

/* A zero write inside one block: skipped when it reads as zeroes, else written as data. */
static int zero_partial(struct qimg_node *n, uint64_t off, uint64_t len)
{
    bool zero;
    int ret = reads_zero(n, off, len, &zero);
    if (ret < 0 || zero)
        return ret;
    uint8_t *z = xcalloc(1, len);
    ret = qimg_mapped_pwrite(n, off, len, z, 0);
    free(z);
    return ret;
}

int qimg_mapped_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    struct qimg_mapped *mp = qimg_mapped_of(n);
    if (!mp->ops->zero_blocks)
        return -ENOTSUP; /* the core writes zeroes as data (QEMU's generic fallback) */
    uint64_t bs = mp->block_size;
    uint64_t a = block_round_up(off, bs), b = block_round_down(off + len, bs);
    int64_t size = n->drv->get_length(n);
    if (size >= 0 && off + len == (uint64_t)size)
        b = block_round_up(off + len, bs); /* the image's partial last block counts as whole */
    if (b <= a) {
        if (flags & QIMG_REQ_NO_FALLBACK)
            return -ENOTSUP;
        return zero_partial(n, off, len);
    }
    int ret = 0;
    if (off < a)
        ret = zero_partial(n, off, a - off);
    if (ret == 0) {
        pthread_mutex_lock(&n->lock);
        ret = mp->ops->zero_blocks(n, a, qimg_min_u64(b, off + len) - a, flags);
        pthread_mutex_unlock(&n->lock);
    }
    if (ret == 0 && b < off + len)
        ret = zero_partial(n, b, off + len - b);
    return ret;
}

int qimg_mapped_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct qimg_mapped *mp = qimg_mapped_of(n);
    if (!mp->ops->discard_blocks)
        return 0; /* discard is advisory */
    uint64_t bs = mp->block_size;
    uint64_t a = block_round_up(off, bs), b = block_round_down(off + len, bs);
    int64_t size = n->drv->get_length(n);
    if (size >= 0 && off + len == (uint64_t)size)
        b = off + len;
    if (b <= a)
        return 0;
    pthread_mutex_lock(&n->lock);
    int ret = mp->ops->discard_blocks(n, a, b - a);
    pthread_mutex_unlock(&n->lock);
    return ret;
}

/*
 * A DATA run with .recurse: ask the data node, as QEMU's block layer asks the
 * file under a format that sets BDRV_BLOCK_RECURSE. A hole adds ZERO and ends
 * the run where the hole ends; so does data (the run is cut to it); a hole
 * reaching the node's end, or a run starting at or past it, reads as zeroes
 * whole (observed with qemu-img 9.1 on truncated static VDI images).
 */
static void probe_host_zero(struct qimg_node *d, struct qimg_block_status *st)
{
    int64_t flen = qimg_node_length(d);
    if (flen < 0)
        return;
    if (st->offset >= (uint64_t)flen) {
        st->flags |= QIMG_BLK_ZERO;
        return;
    }
    struct qimg_block_status sub;
    uint64_t len = qimg_min_u64(st->bytes, (uint64_t)flen - st->offset);
    if (qimg_node_block_status(d, st->offset, len, &sub) < 0)
        return;
    bool zero = (sub.flags & QIMG_BLK_ZERO) && !(sub.flags & QIMG_BLK_DATA);
    bool reaches_end = st->offset + sub.bytes >= (uint64_t)flen;
    if (!(zero && reaches_end))
        st->bytes = qimg_min_u64(st->bytes, sub.bytes);
    if (zero)
        st->flags |= QIMG_BLK_ZERO;
}

int qimg_mapped_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                             struct qimg_block_status *st)
{
    struct qimg_map m;
    int ret = map_run(n, off, len, &m);
    if (ret < 0)
        return ret;
    st->bytes = m.bytes;
    st->flags = 0;
    switch (m.kind) {
    case QIMG_MAP_UNALLOCATED:
        break;
    case QIMG_MAP_ZERO:
        st->flags = QIMG_BLK_ZERO;
        break;
    case QIMG_MAP_DATA:
        st->flags = QIMG_BLK_DATA;
        break;
    case QIMG_MAP_COMPRESSED:
        st->flags = QIMG_BLK_DATA | QIMG_BLK_COMPRESSED;
        break;
    }
    if (m.host_valid && m.kind != QIMG_MAP_COMPRESSED) {
        st->flags |= QIMG_BLK_OFFSET_VALID;
        st->offset = m.host;
        st->file = run_node(n, m.file);
        if (m.kind == QIMG_MAP_DATA && m.recurse)
            probe_host_zero(st->file, st);
    }
    return 0;
}
