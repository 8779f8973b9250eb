/* SPDX-License-Identifier: MIT */
/*
 * Nodes: one open layer of an image (a format or protocol driver, its state,
 * and its children "file", "backing", "data-file"). This is the API the CLI,
 * qimg-io and the engines use; drivers see the full struct in driver.h.
 */
#ifndef QIMG_NODE_H
#define QIMG_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "qimg/error.h"
#include "qimg/json.h"
#include "qimg/opts.h"

#ifdef __cplusplus
extern "C" {
#endif

struct qimg_node;
struct qimg_driver;

/* Open flags. */
#define QIMG_O_RDWR (1u << 0)
#define QIMG_O_FORCE_SHARE (1u << 1) /* -U: take no locks that exclude others; read-only */
#define QIMG_O_NO_BACKING (1u << 2)  /* do not open the backing file */
#define QIMG_O_RESIZE (1u << 3)      /* the caller will resize the image */
#define QIMG_O_NOCACHE (1u << 4)     /* bypass the host page cache (O_DIRECT) */
#define QIMG_O_WRITETHROUGH (1u << 5) /* every write is stable before it completes */
#define QIMG_O_NO_FLUSH (1u << 6)    /* cache=unsafe: flushes do nothing */
#define QIMG_O_NO_IO (1u << 7)       /* metadata only: info, map of the header */
#define QIMG_O_UNMAP (1u << 8)       /* discard requests reach the file (discard=unmap) */
#define QIMG_O_NO_LOCK (1u << 9)     /* locking=off */
#define QIMG_O_STABLE (1u << 10)     /* nobody else may write or resize it meanwhile (convert's source) */
#define QIMG_O_CHECK (1u << 11)      /* opened by check: no repair on open, corrupt images writable */
/*
 * Format metadata a request changed reaches the file before the request completes
 * (qemu-io's default writethrough, without syncing the data of every write).
 */
#define QIMG_O_META_SYNC (1u << 12)

/* Request flags. */
#define QIMG_REQ_FUA (1u << 0)         /* write: stable on return */
#define QIMG_REQ_MAY_UNMAP (1u << 1)   /* zero write: may deallocate */
#define QIMG_REQ_NO_FALLBACK (1u << 2) /* zero write: fail with -ENOTSUP rather than write zeroes */

/* Block status flags (what a read of the range would return). */
#define QIMG_BLK_DATA 0x01         /* data is stored for the range in this layer */
#define QIMG_BLK_ZERO 0x02         /* the range reads as zeroes */
#define QIMG_BLK_OFFSET_VALID 0x04 /* .offset is the range's offset in .file */
#define QIMG_BLK_COMPRESSED 0x08   /* stored compressed */
#define QIMG_BLK_RECURSE 0x10      /* driver-internal: ask .file at .offset for holes */
/*
 * Chain queries: with ZERO, the range reads as zeroes only because the next
 * layer down ends before it; no layer allocates it (qemu-img map: not present).
 */
#define QIMG_BLK_SHORT_BACKING 0x20
/*
 * Chain status, unallocated ranges only: the bottom layer cannot have a backing
 * file (raw, a protocol) and says nothing about the content, so it is not known
 * to read as zeroes (null-co without read-zeroes).
 */
#define QIMG_BLK_UNKNOWN 0x40
/* Neither DATA nor ZERO: not allocated in this layer; reads fall through to the backing. */

struct qimg_block_status {
    uint64_t bytes;         /* length of the run, > 0 */
    unsigned flags;         /* QIMG_BLK_* */
    uint64_t offset;        /* host offset in .file when OFFSET_VALID */
    struct qimg_node *file; /* node holding the data when OFFSET_VALID */
    int depth;              /* chain queries: layer the answer came from (0 = top) */
};

enum qimg_prealloc {
    QIMG_PREALLOC_OFF,
    QIMG_PREALLOC_METADATA,
    QIMG_PREALLOC_FALLOC,
    QIMG_PREALLOC_FULL,
};
/* "off" "metadata" "falloc" "full" -> mode; -EINVAL for anything else. */
int qimg_prealloc_parse(const char *s, enum qimg_prealloc *out);
const char *qimg_prealloc_name(enum qimg_prealloc p);

/* Cache modes of -t/-T: "none", "writeback", "writethrough", "directsync", "unsafe". */
int qimg_cache_parse(const char *mode, unsigned *flags_out);

/*
 * Open an image. filename may be a plain path, "proto:..." or "json:{...}".
 * format NULL probes (a probed raw image sets qimg_node_probed_raw). opts
 * holds driver options (may be NULL; consumed keys are marked used); flags
 * are QIMG_O_*. On error returns -errno and a message in err ("Could not
 * open ..." is left for the caller to prefix, as qemu-img does).
 */
int qimg_open(struct qimg_node **out, const char *filename, const char *format,
              struct qimg_opts *opts, unsigned flags, struct qimg_error *err);
/* Open from --image-opts style options ("driver=qcow2,file.filename=x"). */
int qimg_open_image_opts(struct qimg_node **out, struct qimg_opts *opts, unsigned flags,
                         struct qimg_error *err);
void qimg_node_ref(struct qimg_node *n);
void qimg_node_unref(struct qimg_node *n);

/* Accessors. */
const char *qimg_node_filename(const struct qimg_node *n);
const char *qimg_node_format(const struct qimg_node *n);
const struct qimg_driver *qimg_node_driver(const struct qimg_node *n);
struct qimg_node *qimg_node_file(const struct qimg_node *n);
struct qimg_node *qimg_node_backing(const struct qimg_node *n);
bool qimg_node_probed_raw(const struct qimg_node *n);
bool qimg_node_is_writable(const struct qimg_node *n);
const char *qimg_node_backing_file(const struct qimg_node *n); /* as in the header, or NULL */
const char *qimg_node_backing_format(const struct qimg_node *n);

/* I/O: byte offsets; 0 or -errno. Bounds and alignment are handled here. */
int64_t qimg_node_length(struct qimg_node *n);
int64_t qimg_node_allocated_size(struct qimg_node *n); /* "disk size"; -errno when unknown */
int qimg_node_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags);
int qimg_node_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                     unsigned flags);
int qimg_node_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags);
int qimg_node_pwrite_compressed(struct qimg_node *n, uint64_t off, uint64_t len,
                                const void *buf);
int qimg_node_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len);
int qimg_node_flush(struct qimg_node *n);
int qimg_node_truncate(struct qimg_node *n, uint64_t size, bool exact, enum qimg_prealloc prealloc,
                       struct qimg_error *err);
/*
 * Copy offload: copy [src_off, src_off+len) of src to dst_off of dst inside
 * the storage (copy_file_range, reflinks) without reading it into memory.
 * Only some chains can (raw over file to raw over file); -ENOTSUP or another
 * -errno when this one cannot, and the caller reads and writes instead.
 */
int qimg_node_copy_range(struct qimg_node *src, uint64_t src_off, struct qimg_node *dst,
                         uint64_t dst_off, uint64_t len);
/*
 * Compressed writes in two steps, so that several threads compress at once
 * and the writes can still happen in order: qimg_node_compress compresses
 * one cluster of data (len <= the cluster size; the image's last cluster may
 * be shorter) into out without taking any lock; it returns the compressed
 * length, -ENOSPC when compressing does not make it smaller (write it with
 * qimg_node_pwrite then), or -ENOTSUP when the node cannot split its
 * compressed writes (use qimg_node_pwrite_compressed). The output buffer
 * needs qimg_node_cluster_size(n) bytes.
 */
long qimg_node_compress(struct qimg_node *n, const void *in, uint64_t len, void *out, size_t cap);
/* Store what qimg_node_compress produced as the cluster at off (len guest bytes). */
int qimg_node_pwrite_precompressed(struct qimg_node *n, uint64_t off, uint64_t len,
                                   const void *cdata, size_t clen);
/* Does a freshly created image of this node read as zeroes? */
bool qimg_node_has_zero_init(struct qimg_node *n);
/* Cluster size for copy granularity, 0 when the format has none. */
uint64_t qimg_node_cluster_size(struct qimg_node *n);

/*
 * Block status of this one layer for [off, off+len): fills st for the run
 * starting at off (st->bytes <= len). Holes in the protocol under a raw-like
 * format are reported as ZERO.
 */
int qimg_node_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                           struct qimg_block_status *st);
/*
 * Block status of the chain from top down to (not including) base, NULL for
 * the whole chain. A range no layer allocates reports neither DATA nor ZERO
 * but reads as zeroes; st->depth says which layer answered.
 */
int qimg_chain_block_status(struct qimg_node *top, struct qimg_node *base, uint64_t off,
                            uint64_t len, struct qimg_block_status *st);

/*
 * ImageInfo as qemu-img's JSON has it (BlockNodeInfo + children), built in
 * QAPI order; the CLI prints it as JSON or as human text.
 */
struct qimg_json *qimg_node_image_info(struct qimg_node *n, struct qimg_error *err);

/* Create an image: format driver's create with -o options (size included). */
int qimg_create(const char *filename, const char *format, struct qimg_opts *opts,
                struct qimg_error *err);
/*
 * The "Formatting 'f', fmt=F k=v ..." line qemu-img prints before creating:
 * values normalised (sizes in bytes), defaults included. Caller frees.
 */
char *qimg_create_describe(const char *filename, const struct qimg_driver *drv,
                           const struct qimg_opts *opts);

/* Backing chains (src/core/backing.c). */
/*
 * Rewrite the backing file name and format recorded in n (writable); file
 * NULL or "" makes n stand alone. The open chain under n is not changed.
 * -ENOTSUP when the format cannot record a backing file, -ENOSPC when the
 * name does not fit in the header, -EINVAL when the format needs fmt.
 */
int qimg_change_backing_file(struct qimg_node *n, const char *file, const char *fmt,
                             struct qimg_error *err);
/* Empty layer n (writable): afterwards it allocates nothing and reads through. */
int qimg_make_empty(struct qimg_node *n, struct qimg_error *err);
/* The backing name as qemu resolves it against n's directory; caller frees. */
char *qimg_backing_path(const struct qimg_node *n, const char *backing);
/*
 * Attach backing (a reference is taken; NULL detaches) as the layer under n,
 * for callers that open the layers of a chain one by one (commit opens its
 * base read-write under read-only layers). The header is not changed.
 */
void qimg_node_set_backing(struct qimg_node *n, struct qimg_node *backing);
/* Where n's header says its backing file is (resolved), and in which format; NULL if none. */
const char *qimg_node_full_backing_filename(const struct qimg_node *n);


/*
 * Internal snapshots (src/core/snapshot.c; qapi SnapshotInfo). Formats
 * without them answer -ENOTSUP ("Block driver does not support snapshots").
 */
#define QIMG_SNAPSHOT_ICOUNT_NONE UINT64_MAX /* icount not recorded */
struct qimg_snapshot_info {
    char *id;   /* unique ID ("1", "2" ...) */
    char *name; /* tag; names need not be unique */
    uint64_t vm_state_size;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount; /* QIMG_SNAPSHOT_ICOUNT_NONE when absent */
    uint64_t disk_size;
};
/* The snapshot table, in table order. *out NULL when count is 0. */
int qimg_snapshot_list(struct qimg_node *n, struct qimg_snapshot_info **out, size_t *count,
                       struct qimg_error *err);
void qimg_snapshot_list_free(struct qimg_snapshot_info *sn, size_t count);
/* Create a snapshot of the active state: sn->id NULL or "" gets the next free ID. */
int qimg_snapshot_create(struct qimg_node *n, const struct qimg_snapshot_info *sn,
                         struct qimg_error *err);
/* Revert the active state to the snapshot with this ID, else the first with this name. */
int qimg_snapshot_goto(struct qimg_node *n, const char *id_or_name, struct qimg_error *err);
/* Delete the snapshot matching id and name (either may be NULL: not compared). */
int qimg_snapshot_delete(struct qimg_node *n, const char *id, const char *name,
                         struct qimg_error *err);
/*
 * Read-only node: make it present the snapshot matching id and name (either
 * may be NULL) instead of the active state, for convert -l / measure -l.
 */
int qimg_snapshot_load_tmp(struct qimg_node *n, const char *id, const char *name,
                           struct qimg_error *err);
/* convert -s / -l NAME: by ID first, then by name. */
int qimg_snapshot_load_tmp_by_id_or_name(struct qimg_node *n, const char *id_or_name,
                                         struct qimg_error *err);
/* SnapshotInfo as qemu-img's JSON has it. */
struct qimg_json *qimg_snapshot_info_json(const struct qimg_snapshot_info *sn);

/*
 * Persistent dirty bitmaps (src/core/bitmap.c; qapi Qcow2BitmapInfo). Formats
 * without them answer -ENOTSUP. Changes reach the image when it is closed.
 */
struct qimg_bitmap_info {
    char *name;
    uint32_t granularity; /* bytes per bit */
    bool enabled;         /* "auto": tracks writes */
    bool in_use;          /* inconsistent: not stored cleanly (a crash); unusable */
};
/* Does n's format keep persistent bitmaps? */
bool qimg_bitmap_supported(struct qimg_node *n);
int qimg_bitmap_list(struct qimg_node *n, struct qimg_bitmap_info **out, size_t *count,
                     struct qimg_error *err);
void qimg_bitmap_list_free(struct qimg_bitmap_info *bm, size_t count);
/* granularity 0: the format's default. */
int qimg_bitmap_add(struct qimg_node *n, const char *name, uint32_t granularity, bool disabled,
                    struct qimg_error *err);
int qimg_bitmap_remove(struct qimg_node *n, const char *name, struct qimg_error *err);
int qimg_bitmap_clear(struct qimg_node *n, const char *name, struct qimg_error *err);
int qimg_bitmap_set_enabled(struct qimg_node *n, const char *name, bool enabled,
                            struct qimg_error *err);
/* OR bitmap src_name of src (may be n itself) into bitmap name of n. */
int qimg_bitmap_merge(struct qimg_node *n, const char *name, struct qimg_node *src,
                      const char *src_name, struct qimg_error *err);
/* Bytes measure reserves for n's persistent bitmaps in a format with this cluster size. */
uint64_t qimg_bitmap_measure(struct qimg_node *n, uint64_t cluster_size);

/* Read or write the saved VM state area (qemu-io -b); -ENOTSUP when the format has none. */
int qimg_node_vmstate_rw(struct qimg_node *n, uint64_t pos, void *buf, uint64_t len, bool write);

/*
 * Breakpoints (qemu-io's break/remove_break/resume/wait_break): answered by
 * the first node down the file chain from n whose driver has them (blkdebug);
 * -ENOTSUP when there is none. A request raising a breakpoint's event blocks
 * in its own thread until resumed, so the caller must issue requests from
 * other threads than the one that resumes them.
 * breakpoint: -ENOENT for an unknown event name. remove_breakpoint: resumes
 * the requests stopped with tag, then -ENOENT unless a pending breakpoint
 * with tag was removed. resume: the newest request stopped with tag goes on
 * (-ENOENT: none).
 */
int qimg_debug_breakpoint(struct qimg_node *n, const char *event, const char *tag);
int qimg_debug_remove_breakpoint(struct qimg_node *n, const char *tag);
int qimg_debug_resume(struct qimg_node *n, const char *tag);
bool qimg_debug_is_suspended(struct qimg_node *n, const char *tag);

#ifdef __cplusplus
}
#endif

#endif
