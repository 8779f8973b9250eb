/* SPDX-License-Identifier: MIT */
/*
 * qcow2 driver internals (qcow2.txt). One file per concern:
 *   header.c    header + extensions: parse, validate, serialise
 *   cache.c     bounded caches for L2 tables and refcount blocks (write-through;
 *               refcount blocks write back while lazy refcounts hold the dirty bit)
 *   refcount.c  refcounts, cluster allocation, refcount table growth
 *   cluster.c   guest -> host mapping (L1/L2), L2 allocation, entry updates
 *   compress.c  zlib (raw deflate, 4 KiB window) and zstd clusters
 *   io.c        read, write (COW), zero, discard, compressed write, block status
 *   create.c    create, preallocation, measure
 *   driver.c    open/close, info, truncate and the vtable
 *
 * Locking: every metadata structure below (L1, caches, refcount table, free
 * indices, the metadata index) is touched with n->lock held. Reads and
 * overwrites of already-allocated clusters do their data I/O after dropping
 * the lock; allocating writes keep it for the whole operation so that COW
 * and the L2 update stay atomic with respect to other writers.
 */
#ifndef QIMG_FORMATS_QCOW2_H
#define QIMG_FORMATS_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/luks.h"
#include "qimg/driver.h"

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_LEN 104
#define QCOW2_CREATE_HEADER_LEN 112

#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32u << 20)       /* QEMU's implementation limit */
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)  /* likewise */
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_HOST_OFFSET (1ull << 56)

/* Incompatible / compatible / autoclear feature bits (qcow2.txt, Header). */
#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN 0x1full
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ull << 1)

/* Header extension types. */
#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_EXT_CRYPTO 0x0537be77u
#define QCOW2_EXT_DATA_FILE 0x44415441u

/* L1/L2 entries (qcow2.txt, Cluster mapping). */
#define QCOW2_OFLAG_COPIED (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO (1ull << 0)
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_L1_RESERVED 0x7f000000000001ffull
#define QCOW2_L2_RESERVED 0x3f000000000001feull
#define QCOW2_RT_RESERVED 0x1ffull

#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

#define QCOW2_SUBCLUSTERS 32

struct qcow2_ext {
    uint32_t type;
    uint32_t len;
    uint8_t *data;
};

/*
 * Bounded cache of cluster-sized metadata tables; write-through, except that
 * refcount updates deferred by lazy refcounts (qcow2_refcount_defer) only
 * mark their block dirty until it is written back (qcow2_refcount_writeback).
 */
struct qcow2_cache_entry {
    uint64_t offset; /* 0: empty slot */
    uint8_t *buf;
    uint64_t last_use;
    bool dirty; /* newer than the file (meaningful only with offset != 0) */
};

struct qcow2_cache {
    struct qcow2_cache_entry *e;
    size_t n;
    size_t last_hit;
    uint64_t tick;
    uint64_t table_size;
};

/* Decoded state of one guest cluster (or subcluster with extended L2). */
enum qcow2_ctype {
    QCOW2_UNALLOCATED, /* reads from the backing file / zeroes */
    QCOW2_ZERO_PLAIN,  /* zero flag, no host cluster */
    QCOW2_ZERO_ALLOC,  /* zero flag with a preallocated host cluster */
    QCOW2_NORMAL,      /* data at a host cluster */
    QCOW2_COMPRESSED,
};

/* Runtime options (options.c): what open and reopen were given. */
struct qcow2_runtime_opts {
    bool lazy_given, lazy_refcounts; /* lazy-refcounts, if given: overrides the header bit */
    int overlap_mode;                /* none, constant, cached, all */
    bool cache_sizes_given;
    uint64_t l2_cache_bytes, rb_cache_bytes;
};

struct qcow2_state {
    /* Header fields. */
    uint32_t version;
    unsigned cluster_bits;
    uint64_t cluster_size;
    uint64_t size;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t rt_offset;
    uint32_t rt_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompat, compat, autoclear;
    unsigned refcount_order, refcount_bits;
    uint32_t header_length;
    uint8_t compression_type;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint8_t *header_tail; /* header bytes 112..header_length (unknown fields), kept */
    uint32_t header_tail_len;

    /* Derived geometry. */
    bool extended_l2;
    unsigned l2_entry_bytes; /* 8 or 16 */
    uint64_t l2_entries;     /* entries per L2 table */
    unsigned l2_bits;
    uint64_t subcluster_size;
    uint64_t rb_entries; /* refcounts per refcount block */
    uint64_t refcount_max;

    /* Header extensions. */
    char *backing_format;
    char *data_file_name;
    struct qcow2_ext *feature_table, *bitmaps_ext, *crypto_ext;
    struct qcow2_ext *unknown_ext;
    size_t n_unknown_ext;
    bool has_feature_table;

    /* Tables, host byte order. */
    uint64_t *l1;
    uint64_t *rt;
    uint64_t rt_size; /* entries */

    struct qcow2_cache l2_cache, rb_cache;

    uint64_t free_cluster_index;
    uint64_t free_byte_offset; /* compressed clusters pack into a partly used cluster */

    /* Sorted host offsets of L2 tables and refcount blocks (the overlap check). */
    uint64_t *meta;
    size_t n_meta, cap_meta;

    bool corrupt_event; /* the image was marked corrupt in this session: refuse I/O */
    bool checking;      /* opened for qemu-img check: repairs are written through */
    /* qcow2.txt, lazy refcounts: this session set the dirty bit (qcow2_lazy_dirty). */
    bool lazy_dirty;
    struct qcow2_runtime_opts runtime;
    bool read_only;
    /* refcount.c: clusters freed while collecting (qcow2_discard_freed_begin), to discard. */
    bool collect_discards;
    uint64_t *freed;
    size_t n_freed, cap_freed;

    /* snapshot.c: the snapshot table (nb_snapshots entries) and its size in bytes. */
    struct qcow2_snapshot *snapshots;
    uint64_t snapshots_size;
    /* bitmap.c: persistent dirty bitmaps (NULL when the image has none loaded). */
    struct qcow2_bitmaps *bitmaps;
    /* crypt.c: encryption (crypt_method 1 or 2), NULL for plain images. */
    struct qcow2_crypt *crypt;
};

/* crypt.c (qcow2.txt: Full disk encryption header pointer, Data encryption) */
/* Open: check the crypto extension; LUKS header parsed, key unlocked unless QIMG_O_NO_IO. */
int qcow2_crypt_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err);
void qcow2_crypt_free(struct qcow2_state *s);
/* Data at host offset host (guest offset guest), sector aligned: decrypt in place. */
int qcow2_crypt_decrypt(const struct qcow2_state *s, uint64_t host, uint64_t guest, void *buf,
                        uint64_t len);
/* Encrypt a copy of src and write it to the data node at host. */
int qcow2_crypt_pwrite(struct qimg_node *n, uint64_t host, uint64_t guest, uint64_t len,
                       const void *src);
/* info's format-specific "encrypt" member, NULL for plain images. */
struct qimg_json *qcow2_crypt_info_json(const struct qcow2_state *s);
/* The LUKS header clusters (check counts their references). */
bool qcow2_crypt_header_range(const struct qcow2_state *s, uint64_t *off, uint64_t *len);
/* Create: encryption=on / encrypt.* options, QEMU's checks and messages; the secret looked up. */
struct qcow2_crypt_create {
    uint32_t method; /* 0: none */
    struct qimg_luks_params params;
    uint8_t *pw;
    size_t pwlen;
};
int qcow2_crypt_parse_create(struct qimg_opts *o, bool for_measure, struct qcow2_crypt_create *cc,
                             struct qimg_error *err);
void qcow2_crypt_create_clear(struct qcow2_crypt_create *cc);
/* Bytes the LUKS header clusters add (measure). */
uint64_t qcow2_crypt_measure(const struct qcow2_crypt_create *cc, uint64_t cluster_size);
/* Give a new, sized image its encryption and rewrite the header. */
int qcow2_crypt_setup(struct qimg_node *n, const struct qcow2_crypt_create *cc,
                      struct qimg_error *err);
/* amend -o encrypt.state=...: LUKS key slots (crypto/luks-amend.c). */
int qcow2_crypt_amend(struct qimg_node *n, struct qimg_opts *opts, bool force,
                      struct qimg_error *err);
/* amend.c: rewrite the first cluster from the state, then flush. */
int qcow2_header_rewrite(struct qimg_node *n);

/* snapshot.c (qcow2.txt: Snapshots) */
struct qcow2_snapshot {
    uint64_t l1_offset;
    uint32_t l1_size;
    char *id, *name;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    uint64_t icount; /* UINT64_MAX: none */
    uint32_t extra_size; /* extra data as read; unknown bytes past the known fields kept */
    uint8_t *extra;
};
int qcow2_snapshots_load(struct qimg_node *n, struct qimg_error *err);
/* What a repairing read (qemu-img check -r all) dropped from the snapshot table. */
struct qcow2_sn_repair {
    uint32_t extra_dropped; /* entries whose extra data past 1024 bytes was discarded */
    uint32_t overhang;      /* snapshots discarded past the 64 MiB table limit */
    uint32_t incomplete;    /* v3 entries without disk size (check.c counts them) */
};
int qcow2_snapshots_read(struct qimg_node *n, struct qcow2_sn_repair *repair,
                         struct qimg_error *err);
int qcow2_snapshots_rewrite(struct qimg_node *n);
void qcow2_snapshots_free(struct qcow2_state *s);
/* "inactive L1 table" when [off, off+len) overlaps a snapshot's L1 table, else NULL. */
const char *qcow2_snapshot_overlap(const struct qcow2_state *s, uint64_t off, uint64_t len);
struct qimg_json *qcow2_snapshots_info_json(struct qimg_node *n);
int qcow2_snapshot_list(struct qimg_node *n, struct qimg_snapshot_info **out, size_t *count,
                        struct qimg_error *err);
int qcow2_snapshot_create(struct qimg_node *n, const struct qimg_snapshot_info *sn,
                          struct qimg_error *err);
int qcow2_snapshot_goto(struct qimg_node *n, const char *id_or_name, struct qimg_error *err);
int qcow2_snapshot_delete(struct qimg_node *n, const char *id, const char *name,
                          struct qimg_error *err);
int qcow2_snapshot_load_tmp(struct qimg_node *n, const char *id, const char *name,
                            struct qimg_error *err);

/* bitmap.c (qcow2.txt: Bitmaps) */
/* Open: parse the bitmap directory; read-write opens load the bits and mark them in use. */
int qcow2_bitmaps_load(struct qimg_node *n, struct qimg_error *err);
/* Clean close of a read-write image: store the bitmaps, clear their in-use flags. */
int qcow2_bitmaps_store(struct qimg_node *n);
void qcow2_bitmaps_free(struct qcow2_state *s);
/* Resizing to size needs every bitmap consistent, and small enough to store then. */
int qcow2_bitmaps_resize_check(struct qimg_node *n, uint64_t size, struct qimg_error *err);
/* A guest write, zero write or discard of [off, off+len): set bits of enabled bitmaps. */
void qcow2_bitmaps_mark_dirty(struct qimg_node *n, uint64_t off, uint64_t len);
/* "bitmap directory" when [off, off+len) overlaps it, else NULL. */
const char *qcow2_bitmap_overlap(const struct qcow2_state *s, uint64_t off, uint64_t len);
/* The format-specific "bitmaps" array (Qcow2BitmapInfo), or NULL when there are none. */
struct qimg_json *qcow2_bitmaps_info_json(struct qimg_node *n);
int qcow2_bitmap_list(struct qimg_node *n, struct qimg_bitmap_info **out, size_t *count,
                      struct qimg_error *err);
int qcow2_bitmap_add(struct qimg_node *n, const char *name, uint32_t granularity, bool disabled,
                     struct qimg_error *err);
int qcow2_bitmap_remove(struct qimg_node *n, const char *name, struct qimg_error *err);
int qcow2_bitmap_clear(struct qimg_node *n, const char *name, struct qimg_error *err);
int qcow2_bitmap_set_enabled(struct qimg_node *n, const char *name, bool enabled,
                             struct qimg_error *err);
int qcow2_bitmap_get(struct qimg_node *n, const char *name, uint8_t **bits, uint64_t *nbits,
                     uint32_t *granularity, struct qimg_error *err);
int qcow2_bitmap_merge_bits(struct qimg_node *n, const char *name, const uint8_t *bits,
                            uint64_t nbits, uint32_t granularity, struct qimg_error *err);
/*
 * Every host range the bitmaps extension references (directory, tables,
 * data clusters), for refcount checks: fn is called per range.
 */
int qcow2_bitmaps_for_each_ref(struct qimg_node *n,
                               int (*fn)(void *opaque, uint64_t off, uint64_t len),
                               void *opaque);

/* header.c */
struct qimg_error;
int qcow2_header_read(struct qimg_node *n, struct qcow2_state *s, struct qimg_error *err);
int qcow2_snapshot_table_valid(const struct qcow2_state *s, const char *name,
                               struct qimg_error *err);
/* Serialise the first cluster: header, extensions, backing name. buf has cluster_size bytes. */
int qcow2_header_build(const struct qcow2_state *s, const char *backing_file, uint8_t *buf,
                       size_t buf_len);
int qcow2_header_update_fields(struct qimg_node *n, uint64_t off, const void *be, size_t len);
/*
 * qcow2.txt, compatible bit 0 (lazy refcounts): before the first allocating
 * write of a session links new clusters, set the dirty bit (flushed before
 * and after the header write). From then on refcount updates are deferred.
 * No-op for images without lazy refcounts, read-only or already marked.
 */
int qcow2_lazy_mark_dirty(struct qimg_node *n);
void qcow2_state_free_ext(struct qcow2_state *s);
void qcow2_mark_corrupt(struct qimg_node *n, const char *what);
int qcow2_change_backing_file(struct qimg_node *n, const char *file, const char *fmt,
                              struct qimg_error *err);

/* empty.c: drop every allocation (commit empties its top this way). */
int qcow2_make_empty(struct qimg_node *n, struct qimg_error *err);

/* cache.c */
void qcow2_cache_init(struct qcow2_cache *c, size_t entries, uint64_t table_size);
void qcow2_cache_destroy(struct qcow2_cache *c);
/* Table at offset (loaded from n->file unless fresh, then zero-filled). */
int qcow2_cache_get(struct qimg_node *n, struct qcow2_cache *c, uint64_t offset, bool fresh,
                    uint8_t **out);
void qcow2_cache_drop(struct qcow2_cache *c, uint64_t offset);
/* The cached table at offset is newer than the file: write it back later. */
void qcow2_cache_mark_dirty(struct qcow2_cache *c, uint64_t offset);
/*
 * Write back every dirty refcount block, whole (refblock_update_part each),
 * as QEMU flushes its refcount cache: at close, on eviction, before a new L2
 * table, L1 table, refcount block or refcount table is written, at the end of
 * a resize, and (qcow2_refcount_settle) after a write request or on flush.
 * 0 or the first error; a block that failed stays dirty.
 */
int qcow2_refcount_writeback(struct qimg_node *n);
/* End of a write request or a flush: write back unless this session made the image dirty. */
int qcow2_refcount_settle(struct qimg_node *n);
/* Write part of a metadata table through to the file (offset absolute in the file). */
int qcow2_meta_write(struct qimg_node *n, uint64_t offset, const void *buf, size_t len);
/* Flush the data file and the image file: what was written before is stable (cache.c). */
int qcow2_barrier(struct qimg_node *n);
/*
 * Deferred L2 tables to the file after a barrier, and a second barrier after them when
 * then_barrier (callers that flush next anyway pass false); a no-op when none is dirty.
 */
int qcow2_l2_writeback(struct qimg_node *n, bool then_barrier);
void qcow2_l2_forget_dirty(struct qimg_node *n);

/* refcount.c */
int qcow2_refcount_load(struct qimg_node *n, struct qimg_error *err);
int qcow2_get_refcount(struct qimg_node *n, uint64_t cluster_index, uint64_t *out);
/* Add delta to refcounts of clusters [first, first+count): must not underflow/overflow. */
int qcow2_update_refcounts(struct qimg_node *n, uint64_t first, uint64_t count, int64_t delta);
/* Allocate count contiguous free clusters; returns the host byte offset or -errno. */
int64_t qcow2_alloc_clusters(struct qimg_node *n, uint64_t count);
/* Allocate bytes for a compressed cluster (may share a host cluster). */
int64_t qcow2_alloc_bytes(struct qimg_node *n, uint64_t size);
/* Drop one reference from every host cluster of a range of bytes. */
int qcow2_free_bytes(struct qimg_node *n, uint64_t offset, uint64_t len);
/*
 * Snapshot and bitmap operations discard the clusters they free in the file
 * (QEMU's pass-discard-snapshot; the file must allow discards): collect from
 * begin to end, then punch what is still free, adjacent clusters together.
 */
void qcow2_discard_freed_begin(struct qcow2_state *s);
int qcow2_discard_freed_end(struct qimg_node *n);
uint64_t refcount_get_entry(const struct qcow2_state *s, const uint8_t *block, uint64_t idx);
void refcount_set_entry(const struct qcow2_state *s, uint8_t *block, uint64_t idx, uint64_t v);

/* Metadata index for the overlap check (refcount.c). */
void qcow2_meta_add(struct qcow2_state *s, uint64_t offset);
void qcow2_meta_add_refblock(struct qcow2_state *s, uint64_t offset);
/* Forget every refcount block and index those of s->rt (after a rebuild). */
void qcow2_meta_reset_refblocks(struct qcow2_state *s);
bool qcow2_meta_contains(const struct qcow2_state *s, uint64_t offset);
/* Name of the metadata structure [off, off+len) overlaps, or NULL. */
const char *qcow2_overlap(const struct qcow2_state *s, uint64_t off, uint64_t len);

/* cluster.c */
struct qcow2_entry {
    uint64_t l2e;    /* the 64-bit descriptor */
    uint64_t bitmap; /* extended L2 subcluster bitmap (0 otherwise) */
};
enum qcow2_ctype qcow2_entry_type(const struct qcow2_state *s, const struct qcow2_entry *e,
                                  unsigned subcluster);
uint64_t qcow2_entry_host(const struct qcow2_state *s, const struct qcow2_entry *e);
void qcow2_compressed_range(const struct qcow2_state *s, uint64_t l2e, uint64_t *host,
                            uint64_t *len);
/* Load the L2 table for a guest offset. *l2 NULL (return 0) when unallocated and !alloc. */
int qcow2_get_l2(struct qimg_node *n, uint64_t guest_off, bool alloc, uint8_t **l2,
                 uint64_t *l2_offset);
void qcow2_l2_get_entry(const struct qcow2_state *s, const uint8_t *l2, uint64_t idx,
                        struct qcow2_entry *e);
void qcow2_l2_set_entry(const struct qcow2_state *s, uint8_t *l2, uint64_t idx,
                        const struct qcow2_entry *e);
/* Entry of the cluster holding guest_off (zero entry when no L2 table). */
int qcow2_lookup(struct qimg_node *n, uint64_t guest_off, struct qcow2_entry *e);
int qcow2_l1_grow(struct qimg_node *n, uint64_t min_size);
int qcow2_l1_write_entry(struct qimg_node *n, uint64_t idx);
/* Release what an entry references (host cluster or compressed bytes). */
int qcow2_entry_release(struct qimg_node *n, const struct qcow2_entry *e);
/* Mapping validity: host offsets aligned and inside limits. */
bool qcow2_entry_valid(const struct qcow2_state *s, const struct qcow2_entry *e);

/* check.c: qemu-img check [-r]; also repairs dirty images on read-write open. */
int qcow2_check(struct qimg_node *n, struct qimg_check_result *res, int fix,
                struct qimg_error *err);
int qcow2_check_locked(struct qimg_node *n, struct qimg_check_result *res, int fix,
                       struct qimg_error *err);
/* Clear the dirty bit (v3, when set). */
int qcow2_mark_clean(struct qimg_node *n);

/* compress.c */
/* Compress into out (cap bytes): length, or -ENOSPC when it does not fit. */
long qcow2_compress(int type, uint8_t *out, size_t cap, const uint8_t *in, size_t len);
/* Decompress exactly out_len bytes (trailing input ignored). 0 or -EIO. */
int qcow2_decompress(int type, uint8_t *out, size_t out_len, const uint8_t *in, size_t in_len);

/* io.c */
int qcow2_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags);
int qcow2_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                 unsigned flags);
/* A guest write that leaves persistent bitmaps alone (resize's own writes). */
int qcow2_pwrite_unmarked(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                          unsigned flags);
int qcow2_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags);
/*
 * Zero [off, end) through metadata only, (sub)cluster aligned (end may be
 * the image's cluster-aligned end), as QEMU's zeroize: zero flags, host
 * clusters kept unless unmap. v3 only. Lock held.
 */
int qcow2_zeroize_locked(struct qimg_node *n, uint64_t off, uint64_t end, bool unmap);
int qcow2_pwrite_compressed(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf);
long qcow2_compress_cluster(struct qimg_node *n, const void *buf, uint64_t len, void *out,
                            size_t cap);
int qcow2_pwrite_precompressed(struct qimg_node *n, uint64_t off, uint64_t len, const void *cdata,
                               size_t clen);
int qcow2_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len);
int qcow2_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                       struct qimg_block_status *st);

/* create.c: the compat option's version (2 or 3), 0 when unknown. */
int qcow2_parse_compat(const char *compat);

/* amend.c: qemu-img amend (compat, lazy_refcounts, refcount_bits, data file, size). */
extern const struct qimg_opt_desc qcow2_amend_opts[];
int qcow2_amend(struct qimg_node *n, struct qimg_opts *opts, bool force, struct qimg_error *err);

/* create.c */
extern const struct qimg_opt_desc qcow2_create_opts[];
int qcow2_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err);
/* prealloc.c: grow an open image to size with the given preallocation. */
int qcow2_grow_to(struct qimg_node *n, uint64_t size, enum qimg_prealloc mode,
                  struct qimg_error *err);
int qcow2_measure(struct qimg_opts *opts, struct qimg_node *src, uint64_t size,
                  struct qimg_measure *out, struct qimg_error *err);

/*
 * qcow2.txt: External data file. With the incompatible bit set, guest data
 * lives in n->data_file at the guest offset, L2 entries hold that offset,
 * and data clusters have no refcounts. Otherwise data shares n->file.
 */
static inline bool qcow2_has_data_file(const struct qcow2_state *s)
{
    return s->incompat & QCOW2_INCOMPAT_DATA_FILE;
}
static inline struct qimg_node *qcow2_data_node(struct qimg_node *n)
{
    return n->data_file ? n->data_file : n->file;
}

/* datafile.c: open the external data file child ("data-file" option or the header's name). */
int qcow2_data_file_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err);
/* options.c: the runtime options, validated as QEMU does; lazy refcounts in use. */
extern const struct qimg_opt_desc qcow2_open_opts[];
int qcow2_parse_runtime_opts(struct qimg_node *n, struct qimg_opts *o,
                             struct qcow2_runtime_opts *r, struct qimg_error *err);
bool qcow2_uses_lazy_refcounts(const struct qcow2_state *s);
/* A raw data file (data_file_raw) must read as the guest does: zero [off, off+len) there. */
int qcow2_data_file_raw_zero(struct qimg_node *n, uint64_t off, uint64_t len);

/*
 * qcow2.txt, incompatible bit 0: this session's dirty bit is on disk, so
 * refcounts may be stale (a read-write open repairs them after a crash).
 */
static inline bool qcow2_lazy_dirty(const struct qcow2_state *s)
{
    return s->lazy_dirty && (s->incompat & QCOW2_INCOMPAT_DIRTY);
}

/*
 * Lazy refcounts, as QEMU keeps them (its refcount cache is written back only
 * at the points listed at qcow2_refcount_writeback): a refcount update stays
 * in the cache once the image is dirty, and a decrement on any lazy image
 * opened for writing (a stale high refcount only leaks). Everything else is
 * written through at once, before the metadata that relies on it.
 */
static inline bool qcow2_refcount_defer(const struct qcow2_state *s, int64_t delta)
{
    if (qcow2_lazy_dirty(s))
        return true;
    return delta < 0 && !s->read_only && !s->checking && s->version >= 3 &&
           (s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS);
}

/* Small helpers. */
static inline uint64_t qcow2_be64(const uint8_t *p)
{
    return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) |
           ((uint64_t)p[3] << 32) | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
           ((uint64_t)p[6] << 8) | p[7];
}
static inline uint32_t qcow2_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t qcow2_be16(const uint8_t *p)
{
    return (uint16_t)(((unsigned)p[0] << 8) | p[1]);
}
static inline void qcow2_put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}
static inline void qcow2_put32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}
static inline void qcow2_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline uint64_t qcow2_align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}
static inline uint64_t qcow2_div_round_up(uint64_t v, uint64_t a)
{
    return v / a + (v % a != 0);
}

#endif
