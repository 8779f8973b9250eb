/* SPDX-License-Identifier: MIT */
/*
 * The "copy-on-read" filter (QEMU's block/copy-on-read.c behaviour): every
 * read also stores what it read into the child's top layer where that layer
 * did not hold it yet, so that data fetched from the backing chain stays in
 * the image. As QEMU does, the copy covers whole clusters of the child (a
 * 512-byte read copies its 64 KiB cluster), copies only the ranges the top
 * layer does not allocate, and writes zeroes (a zero cluster in qcow2) where
 * the data read is all zero. The filter needs a writable child: opened
 * read-only it fails with "Block node is read-only", as QEMU's does.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "filters/filter.h"
#include "util/mem.h"
#include "util/zero.h"

#define COR_MAX_BOUNCE (32u << 20) /* larger reads are copied in pieces of this size */

struct cor_state {
    uint64_t cluster; /* the child's cluster size: the unit of copying */
};

static const struct qimg_opt_desc cor_open_opts[] = {
    {"bottom", QIMG_OPT_STRING, "The node name of the bottom node of the chain to copy", NULL},
    {0},
};

static int cor_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct cor_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    const char *bottom = qimg_opts_take(opts, "bottom");
    if (bottom) /* qemu-img has no named nodes to stop at */
        return qimg_error_set(err, -EINVAL, "Bottom node '%s' not found", bottom);
    if (!(n->flags & QIMG_O_RDWR))
        return qimg_error_set(err, -EACCES, "Block node is read-only");
    s->cluster = qimg_node_cluster_size(n->file);
    if (s->cluster == 0 || s->cluster > COR_MAX_BOUNCE)
        s->cluster = 512;
    n->request_alignment = n->file->request_alignment;
    return 0;
}

static void cor_close(struct qimg_node *n)
{
    free(n->opaque);
    n->opaque = NULL;
}

/* Store buf (the bytes of [off, off+len)) where the child's top layer has nothing. */
static int cor_fill(struct qimg_node *n, uint64_t off, uint64_t len, const uint8_t *buf)
{
    uint64_t pos = off, end = off + len;
    while (pos < end) {
        struct qimg_block_status st;
        int ret = qimg_node_block_status(n->file, pos, end - pos, &st);
        if (ret < 0)
            return ret;
        uint64_t run = st.bytes;
        if (!(st.flags & (QIMG_BLK_DATA | QIMG_BLK_ZERO))) {
            const uint8_t *p = buf + (pos - off);
            if (qimg_is_zero(p, run))
                ret = qimg_node_pwrite_zeroes(n->file, pos, run, 0);
            else
                ret = qimg_node_pwrite(n->file, pos, run, p, 0);
            if (ret < 0)
                return ret;
        }
        pos += run;
    }
    return 0;
}

/* Read [start, end) (whole clusters) from the child and copy it into the top layer. */
static int cor_read_window(struct qimg_node *n, uint64_t start, uint64_t end, uint8_t *bounce,
                           unsigned flags)
{
    int ret = qimg_node_pread(n->file, start, end - start, bounce, flags);
    if (ret < 0)
        return ret;
    return cor_fill(n, start, end - start, bounce);
}

static int cor_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    struct cor_state *s = n->opaque;
    int64_t size = qimg_node_length(n->file);
    if (size < 0)
        return (int)size;
    uint64_t start = off - off % s->cluster;
    uint64_t end = (off + len + s->cluster - 1) / s->cluster * s->cluster;
    if (end > (uint64_t)size)
        end = (uint64_t)size;
    uint64_t piece = COR_MAX_BOUNCE - COR_MAX_BOUNCE % s->cluster;
    uint8_t *bounce = xmalloc(end - start < piece ? end - start : piece);
    int ret = 0;
    for (uint64_t pos = start; pos < end && ret == 0; pos += piece) {
        uint64_t stop = end - pos < piece ? end : pos + piece;
        ret = cor_read_window(n, pos, stop, bounce, flags);
        if (ret < 0)
            break;
        /* the part of this window the caller asked for */
        uint64_t a = pos > off ? pos : off, b = stop < off + len ? stop : off + len;
        if (a < b)
            memcpy((uint8_t *)buf + (a - off), bounce + (a - pos), b - a);
    }
    free(bounce);
    return ret;
}

const struct qimg_driver qimg_copy_on_read_driver = {
    .name = "copy-on-read",
    QIMG_FILTER_PASSTHROUGH,
    .open_opts = cor_open_opts,
    .open = cor_open,
    .close = cor_close,
    .pread = cor_pread,
};
