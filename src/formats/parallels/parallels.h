/* SPDX-License-Identifier: MIT */
/*
 * Parallels expandable images, as qemu-img 9.1 reads and writes them. On-disk
 * layout: specs/parallels.txt (header, BAT, data area, format extension); all
 * integers little-endian.
 */
#ifndef QIMG_FORMATS_PARALLELS_H
#define QIMG_FORMATS_PARALLELS_H

#include <stdbool.h>
#include <stdint.h>

#include "formats/common/mapped.h"
#include "formats/common/table-cache.h"

/* parallels.txt: Header. */
#define PRL_OFF_MAGIC 0
#define PRL_OFF_VERSION 16
#define PRL_OFF_HEADS 20
#define PRL_OFF_CYLINDERS 24
#define PRL_OFF_TRACKS 28 /* cluster size in sectors */
#define PRL_OFF_BAT_ENTRIES 32
#define PRL_OFF_NB_SECTORS 36
#define PRL_OFF_INUSE 44
#define PRL_OFF_DATA_OFF 48
#define PRL_OFF_FLAGS 52
#define PRL_OFF_EXT_OFF 56
#define PRL_HEADER_SIZE 64

#define PRL_MAGIC_V1 "WithoutFreeSpace" /* BAT entries in sectors */
#define PRL_MAGIC_V2 "WithouFreSpacExt" /* BAT entries in clusters */
#define PRL_VERSION 2
#define PRL_INUSE_MAGIC 0x746f6e59u /* set while open read-write; qemu writes 0 on close */
#define PRL_SECTOR 512
#define PRL_HEADS 16     /* the geometry qemu writes: 16 heads, 32 sectors per track */
#define PRL_SEC_PER_TRACK 32
#define PRL_DEFAULT_CLUSTER (1u << 20)

/* qemu's limits (observed with qemu-img 9.1). */
#define PRL_MAX_TRACKS (INT32_MAX / 513)
#define PRL_MAX_BAT_ENTRIES (INT32_MAX / 4)
#define PRL_MAX_CLUSTER ((uint64_t)INT32_MAX)
#define PRL_MAX_REQUEST 0x7ffff000u /* QEMU reads header and BAT at once: at most this (observed) */

/* parallels.txt: Format Extension. */
#define PRL_EXT_MAGIC 0xab234cef23dcea87ull
#define PRL_EXT_HEADER 24 /* magic + MD5 of the rest of the cluster */
#define PRL_EXT_DIRTY_BITMAP 0x20385fae252cb34aull
#define PRL_EXT_FLAG_NECESSARY 1u
#define PRL_EXT_FLAG_TRANSIT 2u

#define PRL_BAT_TABLE 4096 /* bytes of BAT per cache entry */
#define PRL_BAT_CACHE 32

struct parallels_state {
    struct qimg_mapped mapped; /* first: the mapped layer finds it at n->opaque */
    struct qimg_table_cache bat;
    uint8_t header[PRL_HEADER_SIZE]; /* as read; rewritten for inuse and data_off */
    uint64_t cluster_size;
    uint64_t off_unit;     /* bytes per BAT entry unit: 512 (v1) or the cluster size (v2) */
    uint32_t bat_entries;
    uint64_t disk_size;    /* bytes */
    uint64_t data_start;   /* bytes: first byte of the data area */
    uint64_t data_end;     /* bytes: end of the highest allocated cluster (>= data_start) */
    uint64_t min_data_off; /* sectors: the lowest data_off qemu accepts */
    /* One bit per cluster of [data_start, data_end): used by a BAT entry. */
    uint8_t *used;
    uint64_t used_bits;
    uint64_t free_hint; /* no free cluster below this bit */
    bool unclean;      /* inuse was set: not closed correctly */
    bool data_off_bad; /* data_off below the BAT or past the end of the file */
    bool outside;      /* a BAT entry points past the end of the file */
    bool duplicate;    /* two BAT entries point at the same cluster */
    bool writable;     /* opened read-write: inuse set, cleared and truncated on close */
};

extern const struct qimg_mapped_ops parallels_mapped_ops;

/* Host byte offset of BAT entry value e (0: unallocated). */
static inline uint64_t parallels_host(const struct parallels_state *s, uint32_t e)
{
    return (uint64_t)e * s->off_unit;
}

/* BAT entry i (< bat_entries). n->lock held. */
int parallels_bat_get(struct qimg_node *n, uint32_t i, uint32_t *entry);
/* Set BAT entry i and write its sector through. n->lock held. */
int parallels_bat_set(struct qimg_node *n, uint32_t i, uint32_t entry);
/* How many BAT entries lie in a file of file_len bytes (the rest read as zeroes). */
uint32_t parallels_bat_in_file(const struct parallels_state *s, uint64_t file_len);
/* Rebuild data_end and the used-cluster bitmap from the BAT (entries inside file_len). */
int parallels_scan_bat(struct qimg_node *n, uint64_t file_len);
int parallels_write_header(struct qimg_node *n);
/* The first free cluster run in the data area for up to count clusters (shortens count). */
uint64_t parallels_find_free(struct parallels_state *s, uint64_t *count);
void parallels_mark_used(struct parallels_state *s, uint64_t host, uint64_t count, bool used);

/* Guest writes: only the guest's bytes go to new clusters (write.c). */
int parallels_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                     unsigned flags);
int parallels_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err);
int parallels_check(struct qimg_node *n, struct qimg_check_result *res, int fix,
                    struct qimg_error *err);
/* Validate the format extension cluster at ext_off (sectors). */
int parallels_read_extension(struct qimg_node *n, uint64_t ext_off, struct qimg_error *err);

#endif
