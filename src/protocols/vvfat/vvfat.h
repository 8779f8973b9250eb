/* SPDX-License-Identifier: MIT */
/*
 * vvfat: a host directory shown read-only as a FAT12/16/32 disk, laid out as
 * QEMU 9.1 lays it out (observed behaviour; see tests/cli/test_vvfat.py).
 *
 * Sector map of the disk (hard disk; a floppy has no MBR and boot = 0):
 *   0              MBR with one partition (hard disks only), then zeroes
 *   boot           FAT boot sector (hard disk: sector 63)
 *   boot+1         FAT, spf sectors; then its copy (the same bytes)
 *   root           "cluster 0": cluster c starts at sector root + c*spc.
 *                  FAT12/16: clusters 0-1 are the fixed root directory
 *                  (root_entries entries), file data starts at cluster 2.
 *                  FAT32: the root directory takes what it needs from
 *                  cluster 0 on (QEMU's quirk: its boot sector still says FAT16).
 * Clusters are handed out breadth first: each directory's entries in readdir
 * order, a directory's children after all earlier directories' children.
 */
#ifndef QIMG_VVFAT_H
#define QIMG_VVFAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qimg/error.h"

#define VVFAT_SECTOR 512u
#define VVFAT_DIRENT 32u
#define VVFAT_SPC 16u /* sectors per cluster: QEMU uses 8 KiB clusters for every FAT type */
#define VVFAT_CLUSTER (VVFAT_SPC * VVFAT_SECTOR)
#define VVFAT_ROOT_ENTRIES (2u * VVFAT_CLUSTER / VVFAT_DIRENT) /* 512 */
#define VVFAT_MAX_FILE 0x7fffffffu /* QEMU: "File %s is larger than 2GB" */
#define VVFAT_LABEL_LEN 11
#define VVFAT_DEFAULT_LABEL "QEMU VVFAT "

/* Directory entry fields (FAT: 32-byte directory entry). */
#define DIRENT_ATTR 11
#define DIRENT_CTIME 14
#define DIRENT_CDATE 16
#define DIRENT_ADATE 18
#define DIRENT_CLUSTER_HI 20
#define DIRENT_MTIME 22
#define DIRENT_MDATE 24
#define DIRENT_CLUSTER 26
#define DIRENT_SIZE 28
#define ATTR_VOLUME 0x28 /* archive | volume label, as QEMU marks it */
#define ATTR_DIR 0x10
#define ATTR_ARCHIVE 0x20
#define ATTR_LFN 0x0f

/* The disk's shape, fixed by the options before the directory is read. */
struct vvfat_geometry {
    int fat_type;            /* 12, 16 or 32 */
    bool floppy;
    uint32_t cyls, heads, secs;
    uint32_t total_sectors;  /* the disk's size in sectors */
    uint32_t boot;           /* sector of the boot sector: 63 on hard disks, 0 on floppies */
    uint32_t sector_count;   /* total_sectors - boot: what the boot sector counts */
    uint32_t spf;            /* sectors per FAT */
    uint32_t root;           /* first sector of the root directory ("cluster 0") */
    uint32_t cluster_count;  /* clusters [0, cluster_count) may hold data */
    uint32_t max_fat;        /* end-of-chain value: 0xfff, 0xffff, 0x0fffffff */
};

/* A run of clusters [begin, end): a directory's entries or a file's data. */
struct vvfat_run {
    uint32_t begin, end;
    bool is_dir;
    size_t first_entry; /* directory: index of its first entry in the entry table */
    size_t entry;       /* the entry naming it in its parent (unused for the root) */
    size_t parent;      /* directory: run index of its parent */
    char *path;         /* host path */
    uint64_t size;      /* file: bytes */
    int64_t slack;      /* file: first slack source of its last cluster (slack.c), or -1 */
    bool unreadable;    /* file: open() failed when the directory was read: zeroes */
};

/* A cluster whose first len bytes QEMU's cluster buffer held (slack.c). */
struct vvfat_slack_src {
    uint32_t cluster, len;
    size_t run;
    int64_t next; /* an older source holding more bytes, or -1 */
};

/* A short-name base and the first "~N" tail not yet known to be taken (names.c). */
struct vvfat_tail {
    uint8_t key[12]; /* the 8.3 base, then 1 when the name lost characters */
    uint32_t next;   /* 0: a free slot */
};

struct vvfat_dir_table {
    uint8_t *bytes; /* VVFAT_DIRENT bytes per entry */
    size_t count, cap;
    /* names.c: hash indexes of the directory being filled, so that unique short
     * names cost O(1) each however many names collide (QEMU's search is cubic). */
    size_t index_dir, index_upto; /* entries [index_dir, index_upto) are in index */
    uint32_t *index;              /* open addressing: entry + 1, 0 empty */
    size_t index_cap, index_used;
    struct vvfat_tail *tails;
    size_t tails_cap, tails_used;
};

struct vvfat_image {
    struct vvfat_geometry geo;
    uint8_t label[VVFAT_LABEL_LEN];
    uint8_t *head;       /* sectors [0, boot]: MBR and boot sector */
    uint8_t *fat;        /* geo.spf sectors, shared by both FAT copies */
    struct vvfat_dir_table dirs;
    struct vvfat_run *runs; /* sorted by begin (built in cluster order) */
    size_t nruns, runs_cap;
    struct vvfat_slack_src *slack; /* at most two per file run */
    size_t nslack;
};

/* layout.c: the disk's shape for the options (fat_type 0: the default). */
int vvfat_geometry_init(struct vvfat_geometry *g, int fat_type, bool floppy,
                        struct qimg_error *err);
/* layout.c: the MBR (hard disks) and boot sector into img->head. */
void vvfat_build_head(struct vvfat_image *img);

/* layout.c: FAT entries of the table img->fat. */
void vvfat_fat_set(struct vvfat_image *img, uint32_t cluster, uint32_t value);

/* names.c: append the long-name entries and the 8.3 entry for name to the directory
 * starting at entry dir_start; the index of the 8.3 entry. */
size_t vvfat_add_named_entry(struct vvfat_dir_table *t, size_t dir_start, const char *name);
/* Free the short-name indexes (the entries stay). */
void vvfat_names_index_free(struct vvfat_dir_table *t);
/* Append one zeroed entry; its index. */
size_t vvfat_dir_append(struct vvfat_dir_table *t);
static inline uint8_t *vvfat_dirent(struct vvfat_dir_table *t, size_t i)
{
    return t->bytes + i * VVFAT_DIRENT;
}

/* tree.c: read the host directory into entries, runs and FAT. */
int vvfat_build_tree(struct vvfat_image *img, const char *dir, struct qimg_error *err);
/* The run holding cluster c, or NULL (free space). */
const struct vvfat_run *vvfat_find_run(const struct vvfat_image *img, uint32_t c);
void vvfat_image_free(struct vvfat_image *img);

/* slack.c: what a sequential scan shows past a file's end in its last cluster. */
void vvfat_slack_build(struct vvfat_image *img);
/* Bytes [from, to) of the last cluster of file run r, both past its data. */
int vvfat_slack_read(const struct vvfat_image *img, const struct vvfat_run *r, uint32_t from,
                     uint32_t to, uint8_t *buf);
/* vvfat.c: len bytes at off of file run r's data (off + len within its data). */
int vvfat_read_file(const struct vvfat_run *r, uint64_t off, uint8_t *buf, size_t len);

#endif
