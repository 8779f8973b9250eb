/* SPDX-License-Identifier: MIT */
/* Block status of one layer and of a backing chain: the engines' map of what to read. */
#include <errno.h>

#include "qimg/driver.h"

/*
 * Internal between the two functions below: the range is unallocated in a
 * format under this node (raw over qcow2) that has no backing file, so it
 * reads as zeroes although this node cannot say so itself.
 */
#define BLK_READS_ZERO_BELOW 0x80000000u

static int layer_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                              struct qimg_block_status *st)
{
    int64_t size = qimg_node_length(n);
    if (size < 0)
        return (int)size;
    if (off >= (uint64_t)size || len == 0)
        return -EINVAL;
    if (len > (uint64_t)size - off)
        len = (uint64_t)size - off;
    *st = (struct qimg_block_status){.bytes = len, .flags = QIMG_BLK_DATA};
    if (!n->drv->block_status) {
        /* No allocation information: everything is data, in this layer. */
        if (n->drv->is_protocol) {
            st->flags |= QIMG_BLK_OFFSET_VALID;
            st->offset = off;
            st->file = n;
        }
        return 0;
    }
    int ret = n->drv->block_status(n, off, len, st);
    if (ret < 0)
        return ret;
    if (st->bytes == 0 || st->bytes > len)
        st->bytes = len;
    if ((st->flags & QIMG_BLK_RECURSE) && (st->flags & QIMG_BLK_OFFSET_VALID) && st->file &&
        !(st->flags & QIMG_BLK_ZERO)) {
        /* A hole in the file under this layer reads as zeroes. */
        struct qimg_block_status sub;
        int64_t flen = qimg_node_length(st->file);
        if (flen >= 0 && st->offset < (uint64_t)flen &&
            qimg_node_block_status(st->file, st->offset, st->bytes, &sub) == 0) {
            if (sub.bytes < st->bytes)
                st->bytes = sub.bytes;
            /* Under a filter or a format (raw over qcow2) the data lies in the node that
             * one maps it to: map names that, as QEMU's does, or no offset at all. */
            bool passes = st->file->drv->is_filter || !st->file->drv->is_protocol;
            if (passes && (sub.flags & QIMG_BLK_OFFSET_VALID) && sub.file) {
                st->file = sub.file;
                st->offset = sub.offset;
            } else if (passes && !st->file->drv->is_protocol) {
                st->flags &= ~QIMG_BLK_OFFSET_VALID;
            } else if ((sub.flags & QIMG_BLK_DATA) && !(sub.flags & QIMG_BLK_OFFSET_VALID)) {
                st->flags &= ~QIMG_BLK_OFFSET_VALID; /* a protocol with no offsets (vvfat) */
            }
            if ((sub.flags & QIMG_BLK_ZERO) && !(sub.flags & QIMG_BLK_DATA))
                st->flags = (st->flags & ~QIMG_BLK_DATA) | QIMG_BLK_ZERO;
            else if (!(sub.flags & (QIMG_BLK_ZERO | QIMG_BLK_DATA)))
                st->flags = 0; /* the file knows nothing of its content: neither do we */
            if (!(sub.flags & (QIMG_BLK_ZERO | QIMG_BLK_DATA)) && !st->file->drv->is_protocol &&
                st->file->drv->change_backing_file && !st->file->backing)
                st->flags |= BLK_READS_ZERO_BELOW;
        }
    }
    st->flags &= ~QIMG_BLK_RECURSE;
    return 0;
}

int qimg_node_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                           struct qimg_block_status *st)
{
    int ret = layer_block_status(n, off, len, st);
    st->flags &= ~BLK_READS_ZERO_BELOW;
    return ret;
}

/*
 * The layer whose backing continues the chain below n: a filter (QEMU skips
 * them in the chain) stands for the first node under it that is not one.
 */
static struct qimg_node *chain_layer(struct qimg_node *n)
{
    while (n->drv->is_filter && n->file && !n->backing)
        n = n->file;
    return n;
}

int qimg_chain_block_status(struct qimg_node *top, struct qimg_node *base, uint64_t off,
                            uint64_t len, struct qimg_block_status *st)
{
    struct qimg_node *n = top;
    int depth = 0;
    for (;;) {
        int64_t size = qimg_node_length(n);
        if (size < 0)
            return (int)size;
        if (off >= (uint64_t)size) {
            /* Past the end of a shorter backing file: reads as zeroes. */
            *st = (struct qimg_block_status){.bytes = len, .flags = QIMG_BLK_ZERO, .depth = depth};
            return 0;
        }
        int ret = layer_block_status(n, off, len, st);
        if (ret < 0)
            return ret;
        bool zero_below = st->flags & BLK_READS_ZERO_BELOW;
        st->flags &= ~BLK_READS_ZERO_BELOW;
        st->depth = depth;
        if (st->flags & (QIMG_BLK_DATA | QIMG_BLK_ZERO))
            return 0;
        len = st->bytes;
        n = chain_layer(n);
        if (!n->drv->change_backing_file && !n->drv->supports_backing && !zero_below)
            st->flags |= QIMG_BLK_UNKNOWN; /* no backing support: no "reads as zeroes" rule */
        if (!n->backing || n->backing == base)
            return 0;
        int64_t blen = qimg_node_length(n->backing);
        if (blen >= 0 && off >= (uint64_t)blen) {
            /* The next layer ends before off: reads as zeroes, decided at this layer. */
            st->flags = QIMG_BLK_ZERO | QIMG_BLK_SHORT_BACKING;
            return 0;
        }
        n = n->backing;
        depth++;
    }
}
