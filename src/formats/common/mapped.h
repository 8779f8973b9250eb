/* SPDX-License-Identifier: MIT */
/*
 * The mapped-image layer, in the spirit of the Linux kernel's iomap: a format
 * describes where guest bytes live (its "map") and how new blocks get a home
 * ("alloc" and "commit"); this layer does the guest I/O on top: reads (holes
 * from the backing file or zeroes), allocating writes with copy-on-write of
 * partial blocks, zero writes, discard and block status.
 *
 * A format using it keeps a struct qimg_mapped as the FIRST member of its
 * n->opaque state and may then put qimg_mapped_pread/pwrite/pwrite_zeroes/
 * pdiscard/block_status straight into its driver vtable.
 *
 * Concurrency (DESIGN.md: Concurrency): every format callback runs under
 * n->lock. Reads and in-place overwrites map under the lock and move the data
 * without it. An allocating write keeps the lock from map to commit, so two
 * writers never allocate the same block twice and nobody reads a block whose
 * table entry points at data not yet written.
 *
 * Crash order of an allocating write (leaks allowed, corruption never):
 * alloc (reserve host space), write the data with its COW head and tail,
 * then commit (point the table entries at it).
 */
#ifndef QIMG_FORMATS_COMMON_MAPPED_H
#define QIMG_FORMATS_COMMON_MAPPED_H

#include <stdbool.h>
#include <stdint.h>

#include "qimg/driver.h"

/* What a read of a guest run returns. */
enum qimg_map_kind {
    QIMG_MAP_UNALLOCATED, /* nothing here: the backing file's bytes, or zeroes without one */
    QIMG_MAP_ZERO,        /* reads as zeroes (a zero flag, or a format without backing files) */
    QIMG_MAP_DATA,        /* stored at .host in the data node */
    QIMG_MAP_COMPRESSED,  /* stored compressed; the format's read_compressed reads it */
};

/* One run of guest bytes with the same kind and contiguous host bytes. */
struct qimg_map {
    enum qimg_map_kind kind;
    uint64_t bytes;  /* length of the run, 0 < bytes <= the length asked for */
    uint64_t host;   /* DATA, or ZERO with host_valid: host offset of the run's first byte */
    bool host_valid; /* host is meaningful (DATA always; ZERO when space stays allocated) */
    bool in_place;   /* DATA: writes may overwrite the run without a table change */
    /*
     * DATA: block status asks the data node for holes (QEMU's
     * BDRV_BLOCK_RECURSE): preallocated areas that may never have been
     * written (static VDI, qcow2 with metadata preallocation).
     */
    bool recurse;
    uint64_t entry;  /* the format's raw table entry (COMPRESSED: its descriptor) */
    /* Node holding the run's host bytes, NULL: the layer's data node (VMDK extent files). */
    struct qimg_node *file;
};

/* A range of new blocks between alloc and commit. */
struct qimg_alloc {
    uint64_t guest; /* first guest byte (block aligned) */
    uint64_t bytes; /* whole blocks; alloc may shorten it (never to 0) */
    uint64_t host;  /* set by alloc: host offset of the first byte, contiguous */
    /*
     * Set by the layer before commit: the guest range [start, end) whose
     * bytes went to host + (start - guest) (guest data plus its COW head and
     * tail). Formats with subclusters mark exactly these as allocated.
     */
    uint64_t written_start, written_end;
    void *priv;     /* the format's state from alloc to commit/abort (old entries) */
    struct qimg_node *file; /* set by alloc: where host lives, NULL: the layer's data node */
};

struct qimg_mapped_ops {
    /* Required. The run at off (at most len bytes). n->lock held. */
    int (*map)(struct qimg_node *n, uint64_t off, uint64_t len, struct qimg_map *m);
    /*
     * Required for writes. Reserve host space for a->bytes at a->guest (set
     * a->host; may shorten a->bytes), then commit points the table entries at
     * it once the data is written, or abort (optional) gives it back. n->lock
     * held throughout.
     */
    int (*alloc)(struct qimg_node *n, struct qimg_alloc *a);
    int (*commit)(struct qimg_node *n, struct qimg_alloc *a);
    void (*abort)(struct qimg_node *n, struct qimg_alloc *a);
    /* Optional: len bytes at off of a COMPRESSED run m (no lock held). */
    int (*read_compressed)(struct qimg_node *n, const struct qimg_map *m, uint64_t off,
                           uint64_t len, void *buf);
    /*
     * Optional: make the whole blocks of [off, off+len) read as zeroes in the
     * table (zero flags); -ENOTSUP makes the layer write zeroes as data (what
     * QEMU's generic path does for formats without zero writes). n->lock held.
     */
    int (*zero_blocks)(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags);
    /*
     * Optional: veto a data write to [host, host+len) of the data node before
     * it happens (qcow2's overlap check against its metadata: mark the image
     * corrupt and return -EIO). n->lock held.
     */
    int (*check_host_write)(struct qimg_node *n, uint64_t host, uint64_t len);
    /*
     * Optional: may the backing file be read for an unallocated run (reads
     * and COW)? An error fails the request (vmdk: the parent CID must match).
     * n->lock held. NULL: always.
     */
    int (*backing_read_ok)(struct qimg_node *n);
    /* Optional: deallocate the whole blocks of [off, off+len). n->lock held. NULL: no-op. */
    int (*discard_blocks)(struct qimg_node *n, uint64_t off, uint64_t len);
};

struct qimg_mapped {
    const struct qimg_mapped_ops *ops;
    uint64_t block_size;    /* allocation unit (cluster, VDI block); any multiple of 512 */
    struct qimg_node *data; /* node holding guest data (NULL: n->file) */
    uint64_t max_alloc;     /* bytes buffered per allocating write (0: 4 MiB) */
};

/* The layer's state of a node whose format keeps struct qimg_mapped first in n->opaque. */
static inline struct qimg_mapped *qimg_mapped_of(struct qimg_node *n)
{
    return (struct qimg_mapped *)n->opaque;
}

/* Driver vtable entries (same signatures as struct qimg_driver's). */
int qimg_mapped_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                      unsigned flags);
int qimg_mapped_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                       unsigned flags);
int qimg_mapped_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags);
int qimg_mapped_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len);
/*
 * Block status from map: UNALLOCATED -> 0, ZERO -> ZERO, DATA -> DATA with its
 * host offset (with .recurse, a hole in the data node adds ZERO, as QEMU's
 * block layer asks the file under a format), COMPRESSED -> DATA|COMPRESSED.
 */
int qimg_mapped_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                             struct qimg_block_status *st);

/*
 * Helpers for formats that implement their own variants (qcow2's compressed
 * writes, preallocation): read one mapped run (no lock held), read the
 * backing file (zeroes past its end).
 */
int qimg_mapped_read_run(struct qimg_node *n, uint64_t off, const struct qimg_map *m, void *buf);
int qimg_mapped_read_backing(struct qimg_node *n, uint64_t off, uint64_t len, void *buf);

#endif
