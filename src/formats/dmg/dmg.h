/* SPDX-License-Identifier: MIT */
/*
 * Apple disk images (UDIF .dmg), read only, as qemu-img 9.1 reads them.
 * Layout: specs/dmg-libyal.asciidoc ("UDIF resource file" = the koly
 * trailer, "UDIF XML plist", "Block table" = mish); integers big-endian.
 *
 * The guest disk is a list of chunks (mish block table entries): a run of
 * sectors stored raw, as zeroes, or compressed (zlib, bzip2) at an offset of
 * the data fork. qemu keeps the chunks of every mish block of the image, in
 * file order, and finds a sector by binary search.
 */
#ifndef QIMG_FORMATS_DMG_H
#define QIMG_FORMATS_DMG_H

#include <stdbool.h>
#include <stdint.h>

#include "qimg/driver.h"

/* Koly trailer (dmg-libyal "UDIF resource file"), offsets from "koly". */
#define DMG_KOLY_SIZE 512
#define DMG_KOLY_DATA_FORK_OFFSET 0x18
#define DMG_KOLY_RSRC_OFFSET 0x28
#define DMG_KOLY_RSRC_LENGTH 0x30
#define DMG_KOLY_XML_OFFSET 0xd8
#define DMG_KOLY_XML_LENGTH 0xe0
#define DMG_KOLY_SECTORS 0x1ec

/* Block table ("mish"): header, then 40-byte entries from byte 204. */
#define DMG_MISH_MAGIC 0x6d697368u
#define DMG_MISH_MIN 244 /* qemu skips shorter blocks */
#define DMG_MISH_OUT_OFFSET 8
#define DMG_MISH_DATA_OFFSET 0x18
#define DMG_MISH_ENTRIES 204
#define DMG_ENTRY_SIZE 40

/* Entry types (dmg-libyal "Block table entry"). */
#define DMG_UDZE 0x00000000u /* zeroes */
#define DMG_UDRW 0x00000001u /* raw */
#define DMG_UDIG 0x00000002u /* ignore (Apple_Free): zeroes */
#define DMG_UDCM 0x7ffffffeu /* comment */
#define DMG_UDZO 0x80000005u /* zlib */
#define DMG_UDBZ 0x80000006u /* bzip2 */
#define DMG_ULFO 0x80000007u /* lzfse */
#define DMG_UDLE 0xffffffffu /* terminator */

/* qemu 9.1's limits on one chunk (its messages name them). */
#define DMG_LENGTHS_MAX (64u * 1024 * 1024)
#define DMG_SECTOR_MAX (DMG_LENGTHS_MAX / 512)
#define DMG_XML_MAX (100ull * 1024 * 1024)

struct dmg_chunk {
    uint32_t type;
    uint64_t sector, count;  /* guest sectors [sector, sector + count) */
    uint64_t offset, length; /* stored bytes in the file */
};

struct dmg_state {
    struct dmg_chunk *chunks;
    uint32_t n_chunks, cap;
    uint64_t total_sectors;
    uint64_t file_len;
    uint64_t data_fork_offset;
    /* The chunk last inflated (n->lock): qemu's current_chunk, n_chunks = none. */
    uint32_t current;
    uint8_t *buf;
    uint64_t buf_size, buf_valid; /* allocated; bytes of the chunk held */
};

/* Bytes of the file at off; zeroes past its end, -EIO past what qemu can address. */
int dmg_file_read(struct qimg_node *n, uint64_t off, uint64_t len, void *buf);
/* Add the chunks of a resource fork or an XML plist (koly values); -EINVAL etc. */
int dmg_read_resource_fork(struct qimg_node *n, uint64_t begin, uint64_t length);
int dmg_read_plist(struct qimg_node *n, uint64_t begin, uint64_t length);
/* Make chunk i the current one (read and inflate it); -EIO when it cannot be. */
int dmg_load_chunk(struct qimg_node *n, uint32_t i);

#endif
