/* SPDX-License-Identifier: MIT */
/*
 * extents: print the allocated extents of a disk image, using libqimg.
 *
 *   cc extents.c $(pkg-config --cflags --libs qimg) -o extents
 *   ./extents disk.qcow2
 *
 * One line per run of the image (its whole backing chain) that holds data or
 * reads as zeroes because a layer says so: "OFFSET LENGTH data|zero". Ranges
 * no layer allocates are left out. No init call is needed.
 */
#include <inttypes.h>
#include <stdio.h>

#include <qimg/qimg.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s IMAGE\n", argv[0]);
        return 2;
    }
    struct qimg_error err = {0};
    struct qimg_node *img;
    /* Format probed (NULL), read-only, shared: safe on an image in use. */
    int ret = qimg_open(&img, argv[1], NULL, NULL, QIMG_O_FORCE_SHARE, &err);
    if (ret < 0) {
        fprintf(stderr, "extents: Could not open '%s': %s\n", argv[1], err.msg);
        return 1;
    }
    int64_t len = qimg_node_length(img);
    printf("%s: %s, %" PRId64 " bytes (libqimg %s)\n", argv[1], qimg_node_format(img), len,
           qimg_version());
    for (uint64_t off = 0; len > 0 && off < (uint64_t)len;) {
        struct qimg_block_status st;
        ret = qimg_chain_block_status(img, NULL, off, (uint64_t)len - off, &st);
        if (ret < 0) {
            fprintf(stderr, "extents: block status at %" PRIu64 " failed: %d\n", off, ret);
            qimg_node_unref(img);
            return 1;
        }
        if (st.flags & (QIMG_BLK_DATA | QIMG_BLK_ZERO))
            printf("%" PRIu64 " %" PRIu64 " %s\n", off, st.bytes,
                   (st.flags & QIMG_BLK_ZERO) ? "zero" : "data");
        off += st.bytes;
    }
    qimg_node_unref(img);
    return 0;
}
