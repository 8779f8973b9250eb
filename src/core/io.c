/* SPDX-License-Identifier: MIT */
/*
 * Request helpers: bounds and read-only checks, and read-modify-write around
 * unaligned requests, so drivers only ever see requests aligned to
 * node->request_alignment.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qimg/driver.h"
#include "util/mem.h"

/*
 * QEMU counts every node's length in whole 512-byte sectors: a 1000-byte raw
 * file is a 1024-byte image whose tail reads as zeroes (and grows the file
 * when written).
 */
int64_t qimg_node_length(struct qimg_node *n)
{
    if (!n->drv->get_length)
        return -ENOTSUP;
    int64_t len = n->drv->get_length(n);
    if (len < 0 || len > INT64_MAX - 511)
        return len;
    return (len + 511) & ~(int64_t)511;
}

int64_t qimg_node_allocated_size(struct qimg_node *n)
{
    if (n->drv->get_allocated_size)
        return n->drv->get_allocated_size(n);
    if (n->file)
        return qimg_node_allocated_size(n->file);
    return -ENOTSUP;
}

static int check_request(struct qimg_node *n, uint64_t off, uint64_t len)
{
    int64_t size = qimg_node_length(n);
    if (size < 0)
        return (int)size;
    if (off > (uint64_t)size || len > (uint64_t)size - off)
        return -EIO;
    return 0;
}

/* A protocol node grows when written past its end, and so does a filter over one. */
static bool grows(const struct qimg_node *n)
{
    while (n->drv->is_filter && !n->drv->is_protocol && n->file)
        n = n->file;
    return n->drv->is_protocol;
}

static int check_write(struct qimg_node *n, uint64_t off, uint64_t len)
{
    if (!(n->flags & QIMG_O_RDWR))
        return -EPERM;
    /* (formats append clusters) */
    if (grows(n))
        return off > INT64_MAX || len > INT64_MAX - off ? -EFBIG : 0;
    return check_request(n, off, len);
}

static bool is_aligned(const struct qimg_node *n, uint64_t off, uint64_t len)
{
    uint64_t a = n->request_alignment;
    return a <= 1 || (off % a == 0 && len % a == 0);
}

/*
 * The aligned window [*start, *end) around [off, off+len). It never reaches
 * past the end of the node: when the node's size is not a multiple of the
 * alignment, the window of its last block ends at the node's end, so a
 * read-modify-write never grows the image (the driver handles that one
 * unaligned tail).
 */
static void aligned_window(struct qimg_node *n, uint64_t off, uint64_t len, uint64_t *start,
                           uint64_t *end)
{
    uint64_t a = n->request_alignment;
    *start = off - off % a;
    *end = (off + len + a - 1) / a * a;
    int64_t size = qimg_node_length(n);
    if (size >= 0 && *end > (uint64_t)size)
        *end = (uint64_t)size;
}

int qimg_node_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    int ret = check_request(n, off, len);
    if (ret < 0 || len == 0)
        return ret;
    if (!n->drv->pread)
        return -ENOTSUP;
    if (is_aligned(n, off, len))
        return n->drv->pread(n, off, len, buf, flags);
    uint64_t start, end;
    aligned_window(n, off, len, &start, &end);
    uint8_t *bounce = qimg_alloc_aligned(end - start);
    if (!bounce)
        return -ENOMEM;
    ret = n->drv->pread(n, start, end - start, bounce, flags);
    if (ret == 0)
        memcpy(buf, bounce + (off - start), len);
    free(bounce);
    return ret;
}

/* Unaligned write: read the aligned window, patch it, write it back (buf NULL: zeroes). */
static int pwrite_rmw(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                      unsigned flags)
{
    uint64_t start, end;
    aligned_window(n, off, len, &start, &end);
    uint8_t *bounce = qimg_alloc_aligned(end - start);
    if (!bounce)
        return -ENOMEM;
    /* Two unaligned writers sharing a block must not undo each other's bytes. */
    pthread_mutex_lock(&n->rmw_lock);
    int ret = n->drv->pread(n, start, end - start, bounce, 0);
    if (ret == 0) {
        if (buf)
            memcpy(bounce + (off - start), buf, len);
        else
            memset(bounce + (off - start), 0, len);
        ret = n->drv->pwrite(n, start, end - start, bounce, flags);
    }
    pthread_mutex_unlock(&n->rmw_lock);
    free(bounce);
    return ret;
}

int qimg_node_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                     unsigned flags)
{
    int ret = check_write(n, off, len);
    if (ret < 0 || len == 0)
        return ret;
    if (!n->drv->pwrite)
        return -ENOTSUP;
    if (is_aligned(n, off, len))
        return n->drv->pwrite(n, off, len, buf, flags);
    uint64_t a = n->request_alignment;
    uint64_t head = off % a ? a - off % a : 0;
    if (head >= len || len - head < a)
        return pwrite_rmw(n, off, len, buf, flags);
    /* Unaligned edges by read-modify-write, the aligned middle straight through. */
    const uint8_t *p = buf;
    uint64_t mid = (len - head) / a * a;
    if (head)
        ret = pwrite_rmw(n, off, head, p, flags);
    if (ret == 0)
        ret = n->drv->pwrite(n, off + head, mid, p + head, flags);
    if (ret == 0 && head + mid < len)
        ret = pwrite_rmw(n, off + head + mid, len - head - mid, p + head + mid, flags);
    return ret;
}

/* Write zeroes as data, in bounded chunks, when the driver has no better way. */
static int write_zeroes_as_data(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    const uint64_t chunk_max = 1 << 20;
    uint64_t chunk = len < chunk_max ? len : chunk_max;
    void *zero = qimg_alloc_aligned(chunk);
    if (!zero)
        return -ENOMEM;
    memset(zero, 0, chunk);
    int ret = 0;
    while (len && ret == 0) {
        uint64_t now = len < chunk ? len : chunk;
        ret = qimg_node_pwrite(n, off, now, zero, flags & QIMG_REQ_FUA);
        off += now;
        len -= now;
    }
    free(zero);
    return ret;
}

/* An aligned zero write: the driver's efficient way, or zeroes as data. */
static int pwrite_zeroes_aligned(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    if (n->drv->pwrite_zeroes) {
        int ret = n->drv->pwrite_zeroes(n, off, len, flags);
        if (ret != -ENOTSUP || (flags & QIMG_REQ_NO_FALLBACK))
            return ret;
    } else if (flags & QIMG_REQ_NO_FALLBACK) {
        return -ENOTSUP;
    }
    return write_zeroes_as_data(n, off, len, flags);
}

int qimg_node_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    int ret = check_write(n, off, len);
    if (ret < 0 || len == 0)
        return ret;
    /* Deallocation is allowed only where discard requests may reach the storage. */
    if (!(n->flags & QIMG_O_UNMAP))
        flags &= ~QIMG_REQ_MAY_UNMAP;
    if (is_aligned(n, off, len))
        return pwrite_zeroes_aligned(n, off, len, flags);
    if (flags & QIMG_REQ_NO_FALLBACK)
        return -ENOTSUP;
    if (!n->drv->pwrite)
        return -ENOTSUP;
    /* Partial blocks at either edge are rewritten with zeroes; whole blocks between zeroed. */
    uint64_t a = n->request_alignment;
    uint64_t head = off % a ? a - off % a : 0;
    if (head >= len || len - head < a)
        return pwrite_rmw(n, off, len, NULL, flags & QIMG_REQ_FUA);
    uint64_t mid = (len - head) / a * a;
    if (head)
        ret = pwrite_rmw(n, off, head, NULL, flags & QIMG_REQ_FUA);
    if (ret == 0)
        ret = pwrite_zeroes_aligned(n, off + head, mid, flags);
    if (ret == 0 && head + mid < len)
        ret = pwrite_rmw(n, off + head + mid, len - head - mid, NULL, flags & QIMG_REQ_FUA);
    return ret;
}

int qimg_node_pwrite_compressed(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf)
{
    int ret = check_write(n, off, len);
    if (ret < 0)
        return ret;
    if (!n->drv->pwrite_compressed)
        return -ENOTSUP;
    return n->drv->pwrite_compressed(n, off, len, buf);
}

int qimg_node_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    int ret = check_write(n, off, len);
    if (ret < 0 || len == 0)
        return ret;
    /* discard=ignore (the default unless the caller asks for unmap): nothing happens. */
    if (!(n->flags & QIMG_O_UNMAP) || !n->drv->pdiscard)
        return 0; /* discard is advisory */
    /*
     * Only whole aligned units can be discarded; the rest stays as it is. The
     * unaligned last block of the node counts as whole.
     */
    uint64_t a = n->request_alignment;
    uint64_t start = (off + a - 1) / a * a, end = (off + len) / a * a;
    int64_t size = qimg_node_length(n);
    if (size >= 0 && off + len == (uint64_t)size)
        end = off + len;
    if (end <= start)
        return 0;
    return n->drv->pdiscard(n, start, end - start);
}

int qimg_node_flush(struct qimg_node *n)
{
    int ret = 0;
    if (n->drv->flush)
        ret = n->drv->flush(n);
    else if (n->file)
        ret = qimg_node_flush(n->file);
    if (ret == 0 && n->backing && (n->backing->flags & QIMG_O_RDWR))
        ret = qimg_node_flush(n->backing);
    return ret;
}

int qimg_node_truncate(struct qimg_node *n, uint64_t size, bool exact, enum qimg_prealloc prealloc,
                       struct qimg_error *err)
{
    if (!(n->flags & QIMG_O_RDWR))
        return qimg_error_set(err, -EACCES, "Image is read-only");
    if (!n->drv->truncate)
        return qimg_error_set(err, -ENOTSUP, "Image format driver does not support resize");
    if (size > INT64_MAX)
        return qimg_error_set(err, -EFBIG, "Image size too large");
    return n->drv->truncate(n, size, exact, prealloc, err);
}

bool qimg_node_has_zero_init(struct qimg_node *n)
{
    if (n->drv->has_zero_init)
        return n->drv->has_zero_init(n);
    return false;
}

uint64_t qimg_node_cluster_size(struct qimg_node *n)
{
    struct qimg_driver_info info = {0};
    if (!n->drv->get_info || n->drv->get_info(n, &info, NULL) < 0)
        return 0;
    qimg_json_free(info.format_specific);
    qimg_json_free(info.snapshots);
    return info.cluster_size;
}

bool qimg_node_needs_compressed_writes(struct qimg_node *n)
{
    struct qimg_driver_info info = {0};
    if (!n->drv->get_info || n->drv->get_info(n, &info, NULL) < 0)
        return false;
    qimg_json_free(info.format_specific);
    qimg_json_free(info.snapshots);
    return info.needs_compressed_writes;
}
