/* SPDX-License-Identifier: MIT */
/*
 * VHD (qemu's "vpc" format), as qemu-img 9.1 reads and writes it. On-disk
 * layout: specs/vhd-libyal.asciidoc; all integers big-endian.
 *
 * A fixed disk is the guest's bytes followed by a 512-byte footer. A dynamic
 * disk is a copy of the footer, the dynamic ("cxsparse") header, the block
 * allocation table (BAT), then blocks (a sector bitmap padded to 512 bytes,
 * then block_size bytes of data), and the footer again at the end. qemu
 * treats every disk type other than fixed as dynamic (differencing disks
 * included: their parent is ignored and unallocated blocks read as zeroes).
 */
#ifndef QIMG_FORMATS_VPC_H
#define QIMG_FORMATS_VPC_H

#include <stdbool.h>
#include <stdint.h>

#include "formats/common/mapped.h"

/* vhd-libyal: "File footer" (512 bytes). */
#define VPC_FOOTER_SIZE 512
#define VPC_FT_COOKIE 0        /* "conectix" */
#define VPC_FT_FEATURES 8
#define VPC_FT_VERSION 12
#define VPC_FT_DATA_OFFSET 16  /* dynamic header offset; all ones for fixed disks */
#define VPC_FT_TIMESTAMP 24    /* seconds since 2000-01-01 00:00:00 UTC */
#define VPC_FT_CREATOR_APP 28
#define VPC_FT_CREATOR_VER 32
#define VPC_FT_CREATOR_OS 36
#define VPC_FT_ORIG_SIZE 40
#define VPC_FT_CURRENT_SIZE 48
#define VPC_FT_CYLS 56         /* u16, then heads u8, sectors per track u8 */
#define VPC_FT_HEADS 58
#define VPC_FT_SECS 59
#define VPC_FT_TYPE 60
#define VPC_FT_CHECKSUM 64
#define VPC_FT_UUID 68

#define VPC_TYPE_FIXED 2
#define VPC_TYPE_DYNAMIC 3

/* vhd-libyal: "Dynamic disk header" (1024 bytes). */
#define VPC_DYN_SIZE 1024
#define VPC_DH_COOKIE 0        /* "cxsparse" */
#define VPC_DH_DATA_OFFSET 8
#define VPC_DH_TABLE_OFFSET 16
#define VPC_DH_VERSION 24
#define VPC_DH_MAX_ENTRIES 28
#define VPC_DH_BLOCK_SIZE 32
#define VPC_DH_CHECKSUM 36

#define VPC_SECTOR 512
#define VPC_BAT_UNALLOCATED 0xffffffffu
/* qemu's limits: at most 2040 GiB, and the CHS geometry's maximum. */
#define VPC_MAX_SECTORS 0xff000000ull
#define VPC_CHS_MAX_C 65535
#define VPC_CHS_MAX_H 16
#define VPC_CHS_MAX_S 255
#define VPC_MAX_GEOMETRY ((uint64_t)VPC_CHS_MAX_C * VPC_CHS_MAX_H * VPC_CHS_MAX_S)
/* qemu's defaults for new images. */
#define VPC_DEFAULT_BLOCK_SIZE (2u << 20)
#define VPC_QEMU_BAT_OFFSET (3 * VPC_SECTOR)
#define VPC_QEMU_CREATOR_VER 0x00050003u
#define VPC_QEMU_CREATOR_OS 0x5769326bu /* "Wi2k" */
#define VPC_TIMESTAMP_BASE 946684800ull  /* 2000-01-01 in Unix time */

struct vpc_state {
    struct qimg_mapped mapped; /* first: the mapped layer finds it at n->opaque */
    uint8_t footer[VPC_FOOTER_SIZE]; /* as read; rewritten at the end on allocation */
    bool fixed;
    uint64_t size; /* virtual size in bytes (whole sectors) */
    /* Dynamic disks. */
    uint32_t block_size, bitmap_size, max_table_entries;
    uint64_t bat_offset;
    uint32_t *bat;                   /* host order, max_table_entries entries */
    uint64_t free_data_block_offset; /* where the next block goes (and the footer is) */
    uint64_t last_bitmap_offset;     /* bitmap last rewritten by a write (UINT64_MAX: none) */
};

/* One's complement of the byte sum, the checksum field counted as zero. */
uint32_t vpc_checksum(const uint8_t *buf, size_t len, size_t checksum_off);
int vpc_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err);
int vpc_dynamic_open(struct qimg_node *n, struct vpc_state *s, uint64_t file_len,
                     struct qimg_error *err);
/* Guest writes to a dynamic disk (new blocks get only the guest's bytes, as in qemu). */
int vpc_dynamic_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf);
extern const struct qimg_mapped_ops vpc_dynamic_ops;

#endif
