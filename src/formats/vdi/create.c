/* SPDX-License-Identifier: MIT */
/*
 * Creating VDI images as qemu-img 9.1 lays them out: a 512-byte v1.1 header
 * (header size 0x180, no LCHS field), the block map at 0x200 padded to whole
 * sectors, data after it. Dynamic images start with every block unallocated;
 * static ones (static=on) map block i to data block i and have a sparse file
 * of the full size. The size is rounded up to sectors. "preallocation" is a
 * protocol option here (qemu passes it to the file, which is created empty).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/common/create-file.h"
#include "formats/vdi/vdi.h"
#include "util/bytes.h"
#include "util/mem.h"
#include "util/uuid.h"

struct vdi_layout {
    uint64_t size;
    uint32_t blocks;
    uint64_t bmap_bytes; /* whole sectors */
    bool is_static;
};

static void header_build(uint8_t *h, const struct vdi_layout *l)
{
    memset(h, 0, VDI_HEADER_SECTOR);
    memcpy(h + VDI_OFF_TEXT, VDI_TEXT, strlen(VDI_TEXT));
    qimg_put_le32(h + VDI_OFF_SIGNATURE, VDI_SIGNATURE);
    qimg_put_le32(h + VDI_OFF_VERSION, VDI_VERSION_1_1);
    qimg_put_le32(h + VDI_OFF_HEADER_SIZE, VDI_HEADER_SIZE_QEMU);
    qimg_put_le32(h + VDI_OFF_IMAGE_TYPE, l->is_static ? VDI_TYPE_STATIC : VDI_TYPE_DYNAMIC);
    qimg_put_le32(h + VDI_OFF_BMAP, VDI_HEADER_SECTOR);
    qimg_put_le32(h + VDI_OFF_DATA, (uint32_t)(VDI_HEADER_SECTOR + l->bmap_bytes));
    qimg_put_le32(h + VDI_OFF_SECTOR_SIZE, VDI_SECTOR);
    qimg_put_le64(h + VDI_OFF_DISK_SIZE, l->size);
    qimg_put_le32(h + VDI_OFF_BLOCK_SIZE, VDI_BLOCK_SIZE);
    qimg_put_le32(h + VDI_OFF_BLOCKS, l->blocks);
    qimg_put_le32(h + VDI_OFF_BLOCKS_ALLOCATED, l->is_static ? l->blocks : 0);
    /* qemu makes both the image and the last-modification UUID random. */
    qimg_uuid_generate(h + VDI_OFF_UUID_IMAGE);
    qimg_uuid_generate(h + VDI_OFF_UUID_LAST_SNAP);
}

static int write_layout(struct qimg_node *file, const struct vdi_layout *l,
                        struct qimg_error *err)
{
    uint64_t meta = VDI_HEADER_SECTOR + l->bmap_bytes;
    uint8_t *buf = xcalloc(1, meta);
    header_build(buf, l);
    for (uint32_t i = 0; i < l->blocks; i++)
        qimg_put_le32(buf + VDI_HEADER_SECTOR + 4ull * i, l->is_static ? i : VDI_UNALLOCATED);
    int ret = qimg_node_pwrite(file, 0, meta, buf, 0);
    free(buf);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Error writing VDI header");
    if (l->is_static) {
        ret = qimg_node_truncate(file, meta + (uint64_t)l->blocks * VDI_BLOCK_SIZE, false,
                                 QIMG_PREALLOC_OFF, err);
        if (ret < 0)
            return ret;
    }
    ret = qimg_node_flush(file);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not flush the new image");
    return 0;
}

int vdi_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    struct vdi_layout l = {0};
    int ret = qimg_opts_take_size(opts, "size", &l.size, err);
    if (ret >= 0)
        ret = qimg_opts_take_bool(opts, "static", &l.is_static, err);
    if (ret < 0)
        return ret;
    uint64_t raw_size = l.size;
    ret = qimg_create_empty_protocol_file(filename, opts, err);
    if (ret < 0)
        return ret;
    if (!qimg_round_up_checked(raw_size, VDI_SECTOR, &l.size) || l.size > VDI_DISK_SIZE_MAX)
        return qimg_error_set(err, -ENOTSUP,
                              "Unsupported VDI image size (size is 0x%llx, max supported is 0x%llx)",
                              (unsigned long long)(l.size > raw_size ? l.size : raw_size),
                              (unsigned long long)VDI_DISK_SIZE_MAX);
    l.blocks = (uint32_t)qimg_div_round_up(l.size, VDI_BLOCK_SIZE);
    l.bmap_bytes = qimg_align_up((uint64_t)l.blocks * 4, VDI_SECTOR);
    struct qimg_node *file = NULL;
    ret = qimg_open_protocol(&file, filename, NULL, QIMG_O_RDWR, err);
    if (ret < 0)
        return ret;
    ret = write_layout(file, &l, err);
    qimg_node_unref(file);
    return ret;
}
