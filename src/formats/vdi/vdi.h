/* SPDX-License-Identifier: MIT */
/*
 * VDI (VirtualBox Disk Image), as qemu-img 9.1 reads and writes it. On-disk
 * layout: specs/vdi-facts.md; all integers little-endian.
 */
#ifndef QIMG_FORMATS_VDI_H
#define QIMG_FORMATS_VDI_H

#include <stdint.h>

#include "formats/common/mapped.h"
#include "formats/common/table-cache.h"

/* vdi-facts.md: Pre-header and Header, version 1.x (offsets from the start of the file). */
#define VDI_OFF_TEXT 0x000
#define VDI_OFF_SIGNATURE 0x040
#define VDI_OFF_VERSION 0x044
#define VDI_OFF_HEADER_SIZE 0x048
#define VDI_OFF_IMAGE_TYPE 0x04c
#define VDI_OFF_IMAGE_FLAGS 0x050
#define VDI_OFF_COMMENT 0x054
#define VDI_OFF_BMAP 0x154
#define VDI_OFF_DATA 0x158
#define VDI_OFF_LEGACY_GEOMETRY 0x15c /* cylinders, heads, sectors, sector size */
#define VDI_OFF_SECTOR_SIZE 0x168
#define VDI_OFF_DISK_SIZE 0x170
#define VDI_OFF_BLOCK_SIZE 0x178
#define VDI_OFF_BLOCK_EXTRA 0x17c
#define VDI_OFF_BLOCKS 0x180
#define VDI_OFF_BLOCKS_ALLOCATED 0x184
#define VDI_OFF_UUID_IMAGE 0x188
#define VDI_OFF_UUID_LAST_SNAP 0x198
#define VDI_OFF_UUID_LINK 0x1a8
#define VDI_OFF_UUID_PARENT 0x1b8

#define VDI_SIGNATURE 0xbeda107fu
#define VDI_VERSION_1_1 0x00010001u
#define VDI_HEADER_SIZE_QEMU 0x180 /* qemu writes v1.1 without the LCHS geometry field */
#define VDI_TYPE_DYNAMIC 1
#define VDI_TYPE_STATIC 2
#define VDI_TEXT "<<< QEMU VM Virtual Disk Image >>>\n"

#define VDI_SECTOR 512
#define VDI_HEADER_SECTOR 512     /* the header is read and written as one sector */
#define VDI_BLOCK_SIZE (1u << 20) /* the only block size qemu accepts */
/* Block map values (vdi-facts.md: Block map). */
#define VDI_UNALLOCATED 0xffffffffu
#define VDI_ZERO 0xfffffffeu
#define VDI_IS_ALLOCATED(e) ((e) < VDI_ZERO)
/* qemu's limits: the block map must fit its allocation (observed with qemu-img 9.1). */
#define VDI_BLOCKS_MAX 0x1fffff80u
#define VDI_DISK_SIZE_MAX ((uint64_t)VDI_BLOCKS_MAX * VDI_BLOCK_SIZE)

#define VDI_BMAP_TABLE 4096 /* bytes of block map per cache entry (1024 blocks) */
#define VDI_BMAP_CACHE 32

struct vdi_state {
    struct qimg_mapped mapped; /* first: the mapped layer finds it at n->opaque */
    struct qimg_table_cache bmap;
    uint8_t header[VDI_HEADER_SECTOR]; /* as read; rewritten when blocks are allocated */
    uint64_t disk_size;  /* rounded up to sectors, as qemu presents it */
    uint64_t bmap_offset, data_offset;
    uint32_t blocks, blocks_allocated, image_type;
};

extern const struct qimg_mapped_ops vdi_mapped_ops;

/* The block map entry of block i (< s->blocks). n->lock held. */
int vdi_bmap_get(struct qimg_node *n, uint32_t i, uint32_t *entry);
int vdi_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err);
int vdi_check(struct qimg_node *n, struct qimg_check_result *res, int fix, struct qimg_error *err);

#endif
