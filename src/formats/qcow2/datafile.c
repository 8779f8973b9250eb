/* SPDX-License-Identifier: MIT */
/*
 * qcow2 external data files (qcow2.txt: incompatible feature bit 2, the
 * external data file name extension, autoclear bit 1 "raw external data").
 * With the bit set, guest data clusters live in a separate file at the same
 * offset as in the guest; the qcow2 file keeps only metadata and no
 * refcounts for data clusters (io.c and cluster.c route through
 * qcow2_data_node and skip the refcounts).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"

/*
 * The "data-file" open option (a filename, or "data-file.*" options)
 * overrides the name in the header. qemu-img opens the header's name as
 * given, relative to the working directory, not to the image. Opening
 * for metadata only (info) tolerates a missing data file.
 */
int qcow2_data_file_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    struct qimg_opts *sub = qimg_opts_new();
    const char *name = NULL;
    if (opts) {
        qimg_opts_extract_prefix(opts, "data-file.", sub);
        name = qimg_opts_take(opts, "data-file");
    }
    if (!name)
        name = qimg_opts_peek(sub, "filename");
    int ret = 0;
    if (!(s->incompat & QCOW2_INCOMPAT_DATA_FILE)) {
        if (name || sub->n)
            ret = qimg_error_set(err, -EINVAL,
                                 "'data-file' can only be set for images with an external "
                                 "data file");
        /* qcow2.txt, autoclear bit 1 only has a meaning with an external data file. */
        else if ((s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW) && !(n->flags & QIMG_O_NO_IO))
            ret = qimg_error_set(err, -EINVAL, "data-file-raw requires a data file");
        goto out;
    }
    if (s->version < 3) {
        ret = qimg_error_set(err, -EINVAL, "Invalid qcow2 header: external data file on a v2 "
                                           "image");
        goto out;
    }
    if (!name)
        name = s->data_file_name;
    if (!name || !name[0]) {
        ret = qimg_error_set(err, -EINVAL, "'data-file' is required for this image");
        goto out;
    }
    if ((s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW) && n->backing_file && n->backing_file[0]) {
        ret = qimg_error_set(err, -EINVAL, "Cannot use a backing file with 'data-file-raw'");
        goto out;
    }
    unsigned flags = n->flags & (QIMG_O_RDWR | QIMG_O_FORCE_SHARE | QIMG_O_NOCACHE |
                                 QIMG_O_WRITETHROUGH | QIMG_O_NO_FLUSH | QIMG_O_NO_LOCK |
                                 QIMG_O_UNMAP | QIMG_O_NO_IO | QIMG_O_STABLE | QIMG_O_RESIZE);
    struct qimg_error derr = {0};
    ret = qimg_open_protocol(&n->data_file, name, sub, flags, &derr);
    if (ret < 0) {
        n->data_file = NULL;
        if (n->flags & QIMG_O_NO_IO) {
            ret = 0; /* metadata is all info needs */
            goto out;
        }
        ret = qimg_error_set(err, ret, "%s", derr.msg);
    }
out:
    qimg_opts_free(sub);
    return ret;
}

int qcow2_data_file_raw_zero(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = n->opaque;
    if (!n->data_file || !(s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW))
        return 0;
    return qimg_node_pwrite_zeroes(n->data_file, off, len, 0);
}
