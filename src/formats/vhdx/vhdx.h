/* SPDX-License-Identifier: MIT */
/*
 * VHDX (Hyper-V virtual hard disk v2), as qemu-img 9.1 reads and writes it.
 * On-disk layout: specs/ms-vhdx/MS-VHDX.md (sections cited as [2.x]); all
 * integers little-endian, GUIDs in Microsoft order.
 *
 * What qemu supports: dynamic and fixed images with 512-byte logical
 * sectors; differencing images (has_parent) are refused with ENOTSUP.
 */
#ifndef QIMG_FORMATS_VHDX_H
#define QIMG_FORMATS_VHDX_H

#include <stdbool.h>
#include <stdint.h>

#include "formats/common/mapped.h"
#include "formats/common/table-cache.h"

#define VHDX_MIB (1024ull * 1024)

/* [2.1] Header section: file identifier, two headers, two region tables. */
#define VHDX_FILE_ID_SIG "vhdxfile"
#define VHDX_FILE_ID_CREATOR 8 /* UTF-16LE, 256 code units */
#define VHDX_FILE_ID_SIZE (64 * 1024)
#define VHDX_HEADER1_OFF (64 * 1024)
#define VHDX_HEADER2_OFF (128 * 1024)
#define VHDX_HEADER_SIZE 4096 /* the checksummed part of each 64 KiB header slot */
#define VHDX_REGION1_OFF (192 * 1024)
#define VHDX_REGION2_OFF (256 * 1024)
#define VHDX_REGION_SIZE (64 * 1024)
#define VHDX_HEADER_SECTION_END VHDX_MIB

/* [2.2.2] Header fields. */
#define VHDX_H_SIG 0         /* "head" */
#define VHDX_H_CHECKSUM 4
#define VHDX_H_SEQ 8
#define VHDX_H_FILE_WRITE_GUID 16
#define VHDX_H_DATA_WRITE_GUID 32
#define VHDX_H_LOG_GUID 48
#define VHDX_H_LOG_VERSION 64 /* u16 */
#define VHDX_H_VERSION 66     /* u16, 1 */
#define VHDX_H_LOG_LENGTH 68  /* u32 */
#define VHDX_H_LOG_OFFSET 72  /* u64 */

/* [2.2.3] Region table: 16-byte header, then 32-byte entries. */
#define VHDX_RT_SIG 0 /* "regi" */
#define VHDX_RT_CHECKSUM 4
#define VHDX_RT_COUNT 8
#define VHDX_RT_ENTRIES 16
#define VHDX_RT_ENTRY_SIZE 32
#define VHDX_RT_MAX_ENTRIES 2047
#define VHDX_RTE_OFFSET 16 /* u64 */
#define VHDX_RTE_LENGTH 24 /* u32 */
#define VHDX_RTE_REQUIRED 28 /* u32, bit 0 */

/* [2.6.1] Metadata table: 32-byte header, then 32-byte entries, items at >= 64 KiB. */
#define VHDX_MT_SIG "metadata"
#define VHDX_MT_COUNT 10 /* u16 */
#define VHDX_MT_ENTRIES 32
#define VHDX_MT_ENTRY_SIZE 32
#define VHDX_MT_MAX_ENTRIES 2047
#define VHDX_MT_TABLE_SIZE (64 * 1024)
#define VHDX_MTE_OFFSET 16 /* u32 */
#define VHDX_MTE_LENGTH 20 /* u32 */
#define VHDX_MTE_FLAGS 24  /* u32: bit 0 user, bit 1 virtual disk, bit 2 required */
#define VHDX_MTE_REQUIRED 4u
#define VHDX_META_MIN_OFFSET (64 * 1024)

/* [2.6.2.1] File parameters flags. */
#define VHDX_PARAMS_LEAVE_BLOCKS_ALLOCATED 1u
#define VHDX_PARAMS_HAS_PARENT 2u

/* [2.5.1] BAT entries: state in bits 0-2, file offset in MiB in bits 20-63. */
#define VHDX_BAT_STATE_MASK 7u
#define VHDX_BAT_OFFSET_MASK 0xfffffffffff00000ull
#define VHDX_BLOCK_NOT_PRESENT 0
#define VHDX_BLOCK_UNDEFINED 1
#define VHDX_BLOCK_ZERO 2
#define VHDX_BLOCK_UNMAPPED 3
#define VHDX_BLOCK_UNMAPPED_V095 5 /* an older draft's UNMAPPED; qemu reads it as such */
#define VHDX_BLOCK_FULLY_PRESENT 6
#define VHDX_BLOCK_PARTIALLY_PRESENT 7
#define VHDX_SB_BLOCK_PRESENT 6

#define VHDX_BLOCK_SIZE_MIN VHDX_MIB
#define VHDX_BLOCK_SIZE_MAX (256 * VHDX_MIB)
#define VHDX_MAX_IMAGE_SIZE (64ull * 1024 * 1024 * 1024 * 1024) /* 64 TiB */
#define VHDX_SECTORS_PER_BITMAP (1ull << 23) /* [2.5]: 2^23 sectors per sector bitmap block */

/* [2.3] Log: 4 KiB sectors; entry header, descriptors, data sectors. */
#define VHDX_LOG_SECTOR 4096
#define VHDX_LOG_ENTRY_HDR 64
#define VHDX_LOG_DESC_SIZE 32
#define VHDX_LE_SIG 0         /* "loge" */
#define VHDX_LE_CHECKSUM 4
#define VHDX_LE_LENGTH 8      /* u32 */
#define VHDX_LE_TAIL 12       /* u32 */
#define VHDX_LE_SEQ 16        /* u64 */
#define VHDX_LE_DESC_COUNT 24 /* u32 */
#define VHDX_LE_LOG_GUID 32
#define VHDX_LE_FLUSHED_OFF 48 /* u64 */
#define VHDX_LE_LAST_OFF 56    /* u64 */
#define VHDX_LD_SIG 0          /* "desc" or "zero" */
#define VHDX_LD_TRAILING 4     /* data: u32 trailing bytes; zero: reserved */
#define VHDX_LD_LEADING 8      /* data: u64 leading bytes; zero: u64 zero length */
#define VHDX_LD_FILE_OFF 16
#define VHDX_LD_SEQ 24
#define VHDX_DS_SEQ_HIGH 4     /* data sector: "data", seq high, 4084 bytes, seq low */
#define VHDX_DS_DATA 8
#define VHDX_DS_SEQ_LOW 4092

/* Known GUIDs, in on-disk (Microsoft) byte order. */
extern const uint8_t vhdx_guid_bat[16], vhdx_guid_metadata[16];
extern const uint8_t vhdx_guid_file_params[16], vhdx_guid_disk_size[16], vhdx_guid_page83[16],
    vhdx_guid_logical_sector[16], vhdx_guid_physical_sector[16], vhdx_guid_parent_locator[16];

/* A range of the file that must not overlap another (qemu's region list). */
struct vhdx_region {
    uint64_t start, end;
};

struct vhdx_state {
    struct qimg_mapped mapped; /* first: the mapped layer finds it at n->opaque */
    struct qimg_table_cache bat;
    uint8_t headers[2][VHDX_HEADER_SIZE];
    int curr_header;
    uint64_t log_offset;
    uint32_t log_length;
    uint64_t bat_offset, meta_offset;
    uint32_t bat_length, meta_length;
    uint64_t virtual_size; /* bytes, whole logical sectors */
    uint32_t block_size, logical_sector, physical_sector, chunk_ratio;
    uint64_t data_blocks, bat_entries;
    uint32_t params_flags;
    uint8_t page83[16];
    struct vhdx_region *regions;
    size_t nregions;
    /* Writes: the GUID written as file_write_guid while open read-write. */
    uint8_t session_guid[16];
    bool first_write_done;
    bool log_replayed; /* on this open: check reports it as a fixed corruption */
    /* Blocks given a home whose BAT entry is not written yet (their data is in flight). */
    struct vhdx_pending {
        uint64_t block, host;
    } *pending;
    size_t npending;
    /* Log position of the next entry and its sequence number. */
    uint32_t log_write;
    uint64_t log_seq;
    uint32_t log_reads; /* sectors read while opening the log (bounded: log.c) */
};

/* vhdx.c */
extern const struct qimg_driver qimg_vhdx_driver;
int vhdx_bat_get(struct qimg_node *n, uint64_t i, uint64_t *entry);
/* BAT index of payload block b: a sector bitmap entry follows every chunk_ratio blocks. */
uint64_t vhdx_bat_index(const struct vhdx_state *s, uint64_t block);
/* "PROGRAM: text" on stderr, as qemu's error_report (through the report sink). */
void vhdx_error_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Write the inactive header as the new current one (qemu's header update). */
int vhdx_update_header(struct qimg_node *n, bool new_data_guid, const uint8_t *log_guid);
int vhdx_update_headers(struct qimg_node *n, bool new_data_guid, const uint8_t *log_guid);
/* Does [start, start+len) overlap a registered region? Reports it as qemu does. */
int vhdx_region_check(struct vhdx_state *s, uint64_t start, uint64_t len);
/* Check the FULLY_PRESENT entries against the file's end; errcnt NULL: stop at the first. */
int vhdx_check_bat_entries(struct qimg_node *n, int *errcnt);

/* log.c */
/* Replay a dirty log on open (read-write), or refuse it (read-only); see log.c. */
int vhdx_log_open(struct qimg_node *n, bool *replayed, struct qimg_error *err);
/* Write one 4 KiB sector of metadata at file offset off through the log, as qemu does. */
int vhdx_log_write_sector(struct qimg_node *n, uint64_t off, const uint8_t *sector);

/* write.c */
/* Is payload block b being allocated (data in flight)? Its home then. n->lock held. */
bool vhdx_pending_host(const struct vhdx_state *s, uint64_t block, uint64_t *host);
int vhdx_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf, unsigned flags);

/* create.c, check.c */
int vhdx_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err);
int vhdx_check(struct qimg_node *n, struct qimg_check_result *res, int fix, struct qimg_error *err);

#endif
