/* SPDX-License-Identifier: MIT */
/*
 * qcow version 1, as qemu-img 9.1 reads and writes it. On-disk layout:
 * specs/qcow-libyal.asciidoc (version 1 header, L1/L2 tables, compressed
 * cluster descriptors); all integers big-endian.
 */
#ifndef QIMG_FORMATS_QCOW1_H
#define QIMG_FORMATS_QCOW1_H

#include <stdbool.h>
#include <stdint.h>

#include "formats/common/mapped.h"
#include "formats/common/table-cache.h"

/* qcow-libyal: file header, version 1. */
#define QCOW1_OFF_MAGIC 0
#define QCOW1_OFF_VERSION 4
#define QCOW1_OFF_BACKING_OFFSET 8
#define QCOW1_OFF_BACKING_SIZE 16
#define QCOW1_OFF_MTIME 20
#define QCOW1_OFF_SIZE 24
#define QCOW1_OFF_CLUSTER_BITS 32
#define QCOW1_OFF_L2_BITS 33
#define QCOW1_OFF_CRYPT 36
#define QCOW1_OFF_L1_OFFSET 40
#define QCOW1_HEADER_SIZE 48

#define QCOW1_MAGIC 0x514649fbu /* "QFI\xfb" */
#define QCOW1_VERSION 1
#define QCOW1_CRYPT_NONE 0
#define QCOW1_CRYPT_AES 1
#define QCOW1_COMPRESSED (1ull << 63)
#define QCOW1_MAX_BACKING_NAME 1023

/* The layouts qemu creates: 4 KiB clusters, or 512-byte ones under a backing file. */
#define QCOW1_CLUSTER_BITS 12
#define QCOW1_L2_BITS 9
#define QCOW1_BACKING_CLUSTER_BITS 9
#define QCOW1_BACKING_L2_BITS 12

#define QCOW1_L1_TABLE 4096 /* bytes of L1 per cache entry */
#define QCOW1_L1_CACHE 8
#define QCOW1_L2_CACHE 16

struct qimg_sector_crypt;

struct qcow1_state {
    struct qimg_mapped mapped; /* first: the mapped layer finds it at n->opaque */
    struct qimg_table_cache l1, l2;
    uint64_t size;
    unsigned cluster_bits, l2_bits;
    uint64_t cluster_size, l2_entries, l2_bytes;
    uint64_t l1_offset, l1_entries;
    uint64_t file_end; /* where the next table or cluster goes (the file's length) */
    uint32_t crypt_method;
    struct qimg_sector_crypt *crypt; /* AES-128-CBC, plain64 IVs from guest sectors */
};

extern const struct qimg_mapped_ops qcow1_mapped_ops;

int qcow1_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err);
/* L2 entry of guest offset off (0 when its L2 table is not allocated). n->lock held. */
int qcow1_l2_entry(struct qimg_node *n, uint64_t off, uint64_t *entry);
/*
 * Point count L2 entries from guest offset off at value (a run of clusters,
 * or one compressed descriptor), allocating the L2 table; count 0 only
 * allocates the table. n->lock held.
 */
int qcow1_l2_set(struct qimg_node *n, uint64_t off, uint64_t value, uint64_t count);
int qcow1_pwrite_compressed(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf);
int qcow1_read_compressed(struct qimg_node *n, const struct qimg_map *m, uint64_t off,
                          uint64_t len, void *buf);
/* Encrypted images: guest I/O through the cipher (crypt.c). */
int qcow1_open_crypt(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err);
int qcow1_crypt_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                      unsigned flags);
int qcow1_crypt_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                       unsigned flags);

#endif
