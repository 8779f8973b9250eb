/* SPDX-License-Identifier: MIT */
/*
 * VMDK (VMware Virtual Disk), as qemu-img 9.1 reads and writes it. On-disk
 * layout: specs/vmdk-libyal.asciidoc; all integers little-endian, the magics
 * compared as big-endian words ("KDMV" on disk is 'K' 'D' 'M' 'V').
 *
 * An image is a descriptor (text, embedded in a sparse extent at sector 1 or
 * a file of its own) listing extents; each extent is a flat range of a file
 * or a sparse extent file with a grain directory (GD) of grain tables (GT).
 */
#ifndef QIMG_FORMATS_VMDK_H
#define QIMG_FORMATS_VMDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/common/mapped.h"
#include "formats/common/table-cache.h"

#define VMDK_SECTOR 512
#define VMDK4_MAGIC 0x4b444d56u /* "KDMV": hosted sparse extent header */
#define VMDK3_MAGIC 0x434f5744u /* "COWD": ESX (vmfsSparse) sparse extent header */

/* Sparse extent header (vmdk-libyal: "Sparse extent header"), offsets from byte 0. */
#define VMDK4_OFF_VERSION 4
#define VMDK4_OFF_FLAGS 8
#define VMDK4_OFF_CAPACITY 12
#define VMDK4_OFF_GRAIN 20
#define VMDK4_OFF_DESC_OFFSET 28
#define VMDK4_OFF_DESC_SIZE 36
#define VMDK4_OFF_GTES_PER_GT 44
#define VMDK4_OFF_RGD 48
#define VMDK4_OFF_GD 56
#define VMDK4_OFF_OVERHEAD 64
#define VMDK4_OFF_UNCLEAN 72
#define VMDK4_OFF_CHECK_BYTES 73 /* '\n' ' ' '\r' '\n' */
#define VMDK4_OFF_COMPRESS 77
#define VMDK4_HEADER_END 79

#define VMDK4_FLAG_NL_DETECT (1u << 0)
#define VMDK4_FLAG_RGD (1u << 1)
#define VMDK4_FLAG_ZERO_GRAIN (1u << 2)
#define VMDK4_FLAG_COMPRESS (1u << 16)
#define VMDK4_FLAG_MARKER (1u << 17)
#define VMDK4_COMPRESSION_DEFLATE 1
#define VMDK4_GD_AT_END UINT64_MAX

/* COWD header (vmdk-libyal: "COWD sparse extent header"), after the magic. */
#define VMDK3_OFF_DISK_SECTORS 12
#define VMDK3_OFF_GRANULARITY 16
#define VMDK3_OFF_GD 20
#define VMDK3_OFF_GD_SIZE 24
#define VMDK3_GTES_PER_GT 4096

/* Stream-optimized markers (vmdk-libyal: "Marker"): lba u64, size u32, type u32. */
#define VMDK_MARKER_EOS 0
#define VMDK_MARKER_GT 1
#define VMDK_MARKER_GD 2
#define VMDK_MARKER_FOOTER 3
#define VMDK_GRAIN_MARKER_SIZE 12 /* lba + size before a compressed grain */

#define VMDK_GTE_ZEROED 1u
/* qemu's limits (observed with 9.1): grains up to 1 GiB, L1 up to 32 Mi entries. */
#define VMDK_MAX_GRAIN_SECTORS 0x200000u
#define VMDK_MAX_L1_SIZE (32u * 1024 * 1024)
#define VMDK_EXTENT_MAX_SECTORS (1ull << 32)
#define VMDK_MAX_GTES_PER_GT 512u
#define VMDK_DESC_SIZE (20 * VMDK_SECTOR) /* the descriptor area qemu reads and rewrites */
#define VMDK_DESC_MAX ((1u << 20) - 1) /* bytes of a descriptor file qemu reads */
#define VMDK_GT_CACHE 16

/* One extent line of a descriptor ("RW 204800 SPARSE "a.vmdk""). */
struct vmdk_desc_extent {
    char type[11];       /* FLAT, SPARSE, VMFS, VMFSSPARSE, SESPARSE */
    char fname[512];
    uint64_t sectors;
    uint64_t flat_offset; /* FLAT: sectors into the file */
};

/* What the descriptor says, as qemu-img 9.1 reads it. */
struct vmdk_desc {
    char create_type[128];
    uint32_t cid, parent_cid;
    bool has_cid, has_parent_cid;
    char *parent_hint; /* parentFileNameHint or NULL */
    struct vmdk_desc_extent *extents;
    size_t n_extents;
};

struct vmdk_extent {
    struct qimg_node *file; /* owned unless it is n->file */
    char type[11];
    bool flat, compressed, has_marker, zero_grain, cowd;
    uint32_t version;
    uint64_t start, sectors; /* guest sector of the first byte, length in sectors */
    uint64_t flat_offset;    /* FLAT: byte offset in file */
    /* Sparse: */
    uint64_t grain;          /* bytes */
    uint32_t gt_entries;     /* entries per grain table */
    uint32_t l1_size;
    uint32_t *gd, *rgd;      /* grain directories (sector offsets of GTs), rgd may be NULL */
    uint64_t next_grain;     /* byte offset where the next grain goes */
    struct qimg_table_cache gt;
    bool gt_init;
};

struct vmdk_state {
    struct qimg_mapped mapped; /* first: the mapped layer finds it at n->opaque */
    struct vmdk_extent *extents;
    size_t n_extents;
    uint64_t total_sectors;
    uint64_t desc_offset; /* 0x200 embedded, 0 separate */
    char *create_type;
    uint32_t cid, parent_cid;
    bool cid_updated, cid_checked;
};

/* descriptor.c */
/* Parse descriptor text (NUL-terminated); errors in qemu's words. */
int vmdk_desc_parse(const char *text, struct vmdk_desc *d, struct qimg_error *err);
void vmdk_desc_free(struct vmdk_desc *d);
/* The hex value after "CID=" / "parentCID=" as qemu finds it (first occurrence). */
int vmdk_desc_read_cid(const char *text, bool parent, uint32_t *cid);
/* Probe score for a descriptor file's first bytes. */
int vmdk_desc_probe(const uint8_t *buf, size_t len);

/* sparse.c */
/* Open the sparse extent in file (header at 0); appends to s->extents. */
int vmdk_open_sparse(struct qimg_node *n, struct qimg_node *file, const char *type,
                     struct qimg_error *err);
int vmdk_extent_map(struct qimg_node *n, struct vmdk_extent *e, uint64_t off, uint64_t len,
                    struct qimg_map *m);
/* The GT entry of grain g (extent-relative) and where it lives; gt_sector 0: no table. */
int vmdk_gte_get(struct vmdk_extent *e, uint64_t g, uint32_t *gte, uint32_t *l1_index);
int vmdk_gte_set(struct vmdk_extent *e, uint64_t g, uint32_t count, const uint32_t *values);
void vmdk_extent_free(struct qimg_node *n, struct vmdk_extent *e);
int vmdk_read_compressed(struct qimg_node *n, const struct qimg_map *m, uint64_t off,
                         uint64_t len, void *buf);
int vmdk_inflate_grain(struct vmdk_extent *e, uint64_t host, uint8_t *out, uint64_t *out_len);

/* vmdk.c */
struct vmdk_extent *vmdk_find_extent(struct vmdk_state *s, uint64_t off);
int vmdk_update_cid(struct qimg_node *n);
uint32_t vmdk_random_cid(void);
/* A sparse header of capacity 0 with a descriptor offset: the descriptor (sectors) is the image. */
int vmdk_open_desc_at(struct qimg_node *n, uint64_t desc_sector, struct qimg_error *err);

/* create.c */
int vmdk_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err);
extern const struct qimg_opt_desc vmdk_create_opts[];
/* Build a sparse extent header + directories for size bytes into a fresh file. */
int vmdk_init_sparse_extent(struct qimg_node *file, uint64_t size, bool compress, bool zeroed,
                            struct qimg_error *err);

/* stream.c */
long vmdk_compress(struct qimg_node *n, const void *in, uint64_t len, void *out, size_t cap);
int vmdk_pwrite_precompressed(struct qimg_node *n, uint64_t off, uint64_t len, const void *cdata,
                              size_t clen);
int vmdk_pwrite_compressed(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf);
int vmdk_stream_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf);

/* check.c */
int vmdk_check(struct qimg_node *n, struct qimg_check_result *res, int fix,
               struct qimg_error *err);

#endif
