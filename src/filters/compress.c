/* SPDX-License-Identifier: MIT */
/*
 * The "compress" filter: every data write through it is a compressed write
 * of its child (qcow2: compressed clusters), so that tools without a
 * compression switch (convert without -c, qemu-io, a guest) produce a
 * compressed image. As in QEMU, requests are aligned to the child's cluster
 * size (the core reads, merges and rewrites partial clusters), a cluster that
 * does not shrink is stored plainly by the child, and a child that cannot
 * compress is refused at open. Zero writes and discards pass through.
 */
#include <errno.h>

#include "core/builtin.h"
#include "filters/filter.h"

static int compress_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    (void)opts;
    if (!n->file->drv->pwrite_compressed)
        return qimg_error_set(err, -ENOTSUP,
                              "Compression is not supported for underlying format: %s",
                              n->file->drv->name);
    uint64_t cluster = qimg_node_cluster_size(n->file);
    n->request_alignment = n->file->request_alignment;
    if (cluster > n->request_alignment && cluster <= UINT32_MAX)
        n->request_alignment = (uint32_t)cluster;
    return 0;
}

static int compress_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                           unsigned flags)
{
    int ret = qimg_node_pwrite_compressed(n->file, off, len, buf);
    if (ret == 0 && (flags & QIMG_REQ_FUA))
        ret = qimg_node_flush(n->file);
    return ret;
}

const struct qimg_driver qimg_compress_driver = {
    .name = "compress",
    QIMG_FILTER_PASSTHROUGH,
    .open = compress_open,
    .pwrite = compress_pwrite,
};
