/* SPDX-License-Identifier: MIT */
/*
 * QED (QEMU Enhanced Disk), as qemu-img 9.1 reads and writes it. On-disk
 * layout: specs/qed.txt; all integers little-endian.
 *
 * L1 and L2 tables can be up to 16 clusters of 64 MiB (1 GiB each), so both
 * are read in pieces through table caches keyed by host offset rather than
 * whole (QED_PIECE bytes, or the whole table when it is smaller).
 */
#ifndef QIMG_FORMATS_QED_H
#define QIMG_FORMATS_QED_H

#include <stdbool.h>
#include <stdint.h>

#include "formats/common/mapped.h"
#include "formats/common/table-cache.h"

/* qed.txt: Header (offsets from the start of the file). */
#define QED_OFF_MAGIC 0
#define QED_OFF_CLUSTER_SIZE 4
#define QED_OFF_TABLE_SIZE 8
#define QED_OFF_HEADER_SIZE 12
#define QED_OFF_FEATURES 16
#define QED_OFF_COMPAT_FEATURES 24
#define QED_OFF_AUTOCLEAR_FEATURES 32
#define QED_OFF_L1_TABLE 40
#define QED_OFF_IMAGE_SIZE 48
#define QED_OFF_BACKING_NAME_OFFSET 56
#define QED_OFF_BACKING_NAME_SIZE 60
#define QED_HEADER_BYTES 64

#define QED_MAGIC 0x00444551u /* "QED\0" */
/* qed.txt: Feature bits. */
#define QED_F_BACKING_FILE 0x01ull
#define QED_F_NEED_CHECK 0x02ull
#define QED_F_BACKING_FORMAT_NO_PROBE 0x04ull
#define QED_FEATURE_MASK (QED_F_BACKING_FILE | QED_F_NEED_CHECK | QED_F_BACKING_FORMAT_NO_PROBE)

/* qed.txt: Field descriptions (the ranges qemu enforces). */
#define QED_MIN_CLUSTER_SIZE 4096u
#define QED_MAX_CLUSTER_SIZE (64u << 20)
#define QED_MIN_TABLE_SIZE 1u
#define QED_MAX_TABLE_SIZE 16u
#define QED_DEFAULT_CLUSTER_SIZE (64u << 10)
#define QED_DEFAULT_TABLE_SIZE 4u
/* qemu keeps backing names in a PATH_MAX buffer: longer ones do not open. */
#define QED_BACKING_NAME_MAX 4096u

/* qed.txt: Data cluster offsets 0 (unallocated) and 1 (zero cluster). */
#define QED_UNALLOCATED 0ull
#define QED_ZERO_CLUSTER 1ull

#define QED_PIECE (64u << 10) /* bytes of L1/L2 table per cache entry */
#define QED_L1_CACHE 16
#define QED_L2_CACHE 64

struct qed_header {
    uint32_t magic, cluster_size, table_size, header_size;
    uint64_t features, compat_features, autoclear_features;
    uint64_t l1_table_offset, image_size;
    uint32_t backing_name_offset, backing_name_size;
};

struct qed_state {
    struct qimg_mapped mapped; /* first: the mapped layer finds it at n->opaque */
    struct qimg_table_cache l1, l2;
    struct qed_header h;
    uint64_t table_bytes;  /* cluster_size * table_size */
    uint64_t table_nelems; /* entries per table */
    uint64_t piece;        /* bytes per cache entry: min(QED_PIECE, table_bytes) */
    uint64_t file_size;    /* where the next cluster goes (whole clusters) */
    bool read_only;
};

void qed_header_decode(const uint8_t *b, struct qed_header *h);
void qed_header_encode(const struct qed_header *h, uint8_t *b);
/* qemu's limits; max_image_size wraps as qemu's 64-bit product does. */
bool qed_cluster_size_valid(uint64_t v);
bool qed_table_size_valid(uint64_t v);
uint64_t qed_max_image_size(uint64_t cluster_size, uint64_t table_size);
bool qed_image_size_valid(uint64_t size, uint64_t cluster_size, uint64_t table_size);
/* Is offset a usable data cluster / table offset in this file (qed.txt: Consistency checking)? */
bool qed_cluster_offset_valid(const struct qed_state *s, uint64_t offset);
bool qed_table_offset_valid(const struct qed_state *s, uint64_t offset);

/* Table entries through the caches. n->lock held. */
int qed_l1_get(struct qimg_node *n, uint64_t index, uint64_t *entry);
int qed_l1_set(struct qimg_node *n, uint64_t index, uint64_t entry);
int qed_l2_get(struct qimg_node *n, uint64_t table, uint64_t index, uint64_t *entry);
/* Set entries [index, index+count) of the L2 table at table, writing them through. */
int qed_l2_set_run(struct qimg_node *n, uint64_t table, uint64_t index, uint64_t count,
                   uint64_t first, bool step);
/* Rewrite the 64-byte header from s->h. */
int qed_header_write(struct qimg_node *n);
/* Mark the image as needing a check before the first unsafe update (qed.txt). */
int qed_set_need_check(struct qimg_node *n);

extern const struct qimg_mapped_ops qed_mapped_ops;
int qed_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags);

int qed_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err);
/* The consistency check (check.c); fix also runs on a read-write open of a dirty image. */
int qed_check_image(struct qimg_node *n, struct qimg_check_result *res, bool fix);
int qed_check(struct qimg_node *n, struct qimg_check_result *res, int fix, struct qimg_error *err);

#endif
