/* SPDX-License-Identifier: MIT */
/*
 * Requests the copy engine uses on its fast paths: copy offload (convert -C)
 * and compressed writes split into a lock-free compression step and an
 * ordered store step. Bounds and read-only checks here, as in io.c.
 */
#include <errno.h>
#include <stdint.h>

#include "qimg/driver.h"

static int check_range(struct qimg_node *n, uint64_t off, uint64_t len, bool write)
{
    if (write && !(n->flags & QIMG_O_RDWR))
        return -EPERM;
    if (off > INT64_MAX || len > INT64_MAX - off)
        return -EFBIG;
    if (write && n->drv->is_protocol)
        return 0; /* protocol nodes grow when written past their end */
    int64_t size = qimg_node_length(n);
    if (size < 0)
        return (int)size;
    if (off > (uint64_t)size || len > (uint64_t)size - off)
        return -EIO;
    return 0;
}

/*
 * The source side descends first (a raw format translates its offset into
 * its file), then the target side; once both are protocol nodes of the same
 * driver, that driver copies.
 */
int qimg_node_copy_range(struct qimg_node *src, uint64_t src_off, struct qimg_node *dst,
                         uint64_t dst_off, uint64_t len)
{
    int ret = check_range(src, src_off, len, false);
    if (ret == 0)
        ret = check_range(dst, dst_off, len, true);
    if (ret < 0 || len == 0)
        return ret;
    if (!src->drv->is_protocol)
        return src->drv->copy_range ? src->drv->copy_range(src, src_off, dst, dst_off, len)
                                    : -ENOTSUP;
    if (!dst->drv->is_protocol)
        return dst->drv->copy_range ? dst->drv->copy_range(src, src_off, dst, dst_off, len)
                                    : -ENOTSUP;
    if (src->drv != dst->drv || !src->drv->copy_range)
        return -ENOTSUP;
    return src->drv->copy_range(src, src_off, dst, dst_off, len);
}

long qimg_node_compress(struct qimg_node *n, const void *in, uint64_t len, void *out, size_t cap)
{
    if (!n->drv->compress || !n->drv->pwrite_precompressed)
        return -ENOTSUP;
    return n->drv->compress(n, in, len, out, cap);
}

int qimg_node_pwrite_precompressed(struct qimg_node *n, uint64_t off, uint64_t len,
                                   const void *cdata, size_t clen)
{
    int ret = check_range(n, off, len, true);
    if (ret < 0)
        return ret;
    if (!n->drv->pwrite_precompressed)
        return -ENOTSUP;
    return n->drv->pwrite_precompressed(n, off, len, cdata, clen);
}
