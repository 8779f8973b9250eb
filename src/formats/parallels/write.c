/* SPDX-License-Identifier: MIT */
/*
 * Guest writes without a backing file, as qemu 9.1 does them: a new cluster
 * is space that already reads as zeroes (the file grown with fallocate, as
 * qemu preallocates, or a freed cluster zeroed in the file), so only the
 * guest's bytes are written: no zero-filled copy-on-write head and tail, which
 * would write a whole cluster (1 MiB by default) for every 4 KiB a convert
 * puts in it. With a backing file the mapped layer's copy-on-write applies.
 *
 * Order (crash safety, as the layer's): space, data, then the BAT entries.
 * The file's bytes from data_end on read as zeroes: a read-write open cuts
 * off anything past data_end (qemu cuts it on close) and new space is fresh.
 */
#include <errno.h>
#include <string.h>

#include "formats/parallels/parallels.h"
#include "util/bytes.h"

#define MAX_ALLOC (4ull << 20)
#define GROW_STEP (128ull << 20) /* qemu's default prealloc-size; cut back on close */

/* Make [host, host+len) of the file read as zeroes, growing the file as qemu does. */
static int prepare_space(struct qimg_node *n, uint64_t host, uint64_t len)
{
    struct parallels_state *s = n->opaque;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    int ret = 0;
    uint64_t fresh = qimg_max_u64(s->data_end, host); /* zeroes from here on */
    if (host < fresh)
        ret = qimg_node_pwrite_zeroes(n->file, host, qimg_min_u64(len, fresh - host), 0);
    if (ret == 0 && host + len > (uint64_t)flen) {
        uint64_t grown = host + len + GROW_STEP; /* qemu's file length after a crash */
        ret = qimg_node_truncate(n->file, grown, false, QIMG_PREALLOC_FALLOC, NULL);
        if (ret < 0)
            ret = qimg_node_truncate(n->file, host + len, false, QIMG_PREALLOC_FALLOC, NULL);
        if (ret < 0)
            ret = qimg_node_truncate(n->file, host + len, false, QIMG_PREALLOC_OFF, NULL);
    }
    return ret;
}

/* Allocate clusters for the unallocated run [off, off+run) and write its data. */
static int write_new(struct qimg_node *n, uint64_t off, uint64_t run, const uint8_t *src,
                     uint64_t *done)
{
    struct parallels_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t c0 = off - off % cs;
    struct qimg_alloc a = {.guest = c0};
    uint64_t want = qimg_div_round_up(off + run - c0, cs);
    a.bytes = qimg_max_u64(1, qimg_min_u64(want, MAX_ALLOC / cs)) * cs;
    int ret = parallels_mapped_ops.alloc(n, &a);
    if (ret < 0)
        return ret;
    uint64_t wend = qimg_min_u64(off + run, c0 + a.bytes);
    ret = prepare_space(n, a.host, a.bytes);
    if (ret == 0) {
        qimg_debug_event(n->file, QIMG_DBG_WRITE_AIO);
        ret = qimg_node_pwrite(n->file, a.host + (off - c0), wend - off, src, 0);
    }
    if (ret < 0)
        return ret;
    a.written_start = c0;
    a.written_end = c0 + a.bytes;
    *done = wend - off;
    return parallels_mapped_ops.commit(n, &a);
}

int parallels_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                     unsigned flags)
{
    if (n->backing)
        return qimg_mapped_pwrite(n, off, len, buf, flags);
    const uint8_t *src = buf;
    while (len) {
        struct qimg_map m;
        uint64_t done = 0;
        pthread_mutex_lock(&n->lock);
        int ret = parallels_mapped_ops.map(n, off, len, &m);
        if (ret == 0 && m.kind == QIMG_MAP_DATA) {
            pthread_mutex_unlock(&n->lock);
            qimg_debug_event(n->file, QIMG_DBG_WRITE_AIO);
            ret = qimg_node_pwrite(n->file, m.host, m.bytes, src, 0);
            done = m.bytes;
        } else {
            if (ret == 0)
                ret = write_new(n, off, m.bytes, src, &done);
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
