/* SPDX-License-Identifier: MIT */
/*
 * The copy engine: copies one or more sources (concatenated) into a target,
 * as convert, dd, commit and rebase need it.
 *
 * The sources are mapped with whole-chain block status first: what is known
 * to read as zeroes is never read. The mapped extents are cut into chunks
 * (buf_size bytes, 2 MiB by default, cut from the start of each extent and
 * ending on the target's cluster boundaries) that a pool of workers reads,
 * scans for zeroes and writes, in order unless out_of_order. A failure stops
 * the job after the chunks before it are written. Nothing here prints:
 * progress and salvaged read errors go to callbacks, failures to a struct
 * qimg_error.
 */
#ifndef QIMG_ENGINES_COPY_H
#define QIMG_ENGINES_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qimg/qimg.h"

#define QIMG_COPY_DEFAULT_WORKERS 8
#define QIMG_COPY_MAX_WORKERS 16
#define QIMG_COPY_DEFAULT_BUF (2u << 20)
#define QIMG_COPY_DEFAULT_SPARSE 4096
#define QIMG_COPY_MAX_SPARSE (16u << 20) /* -S larger than this is refused by the CLI */
#define QIMG_COPY_FLUSH_AHEAD (128ull << 20)

/* A byte range of one source image. */
struct qimg_copy_source {
    struct qimg_node *node;
    uint64_t offset; /* first byte of node to copy */
    uint64_t length; /* bytes to copy from there */
};

enum qimg_copy_failure {
    QIMG_COPY_FAILED_NONE,
    QIMG_COPY_FAILED_STATUS, /* block status of a source */
    QIMG_COPY_FAILED_READ,
    QIMG_COPY_FAILED_WRITE,
    QIMG_COPY_FAILED_FLUSH,
    QIMG_COPY_FAILED_SETUP, /* out of memory, bad parameters */
};

struct qimg_copy_job {
    const struct qimg_copy_source *src; /* sources, copied one after the other */
    size_t n_src;
    /* Block status looks down the sources' chains to (not including) base; NULL: whole chain. */
    struct qimg_node *base;
    struct qimg_node *dst;
    uint64_t dst_offset; /* where the first source byte goes */

    /* Parallel requests, 1..QIMG_COPY_MAX_WORKERS; 0 means the default. Worker threads are
       further capped at two per online CPU. */
    unsigned workers;
    bool out_of_order; /* -W: write chunks as soon as they are read */
    /*
     * Zero detection unit (-S), a multiple of 512: runs of whole zero units
     * become zero writes (or nothing, see target_is_zero). 0 turns detection
     * off and writes every byte, so that the target ends fully allocated.
     */
    uint64_t sparse_size;
    bool target_is_zero;   /* the target reads as zeroes: zero runs need no write at all */
    /* Data is written as read, zeroes and all (commit); only ranges block status reports as
       zero become zero writes. */
    bool no_zero_scan;
    bool skip_unallocated; /* ranges no layer above base allocates are left as they are */
    /* Write data compressed, whole clusters: compressed on the workers (qimg_node_compress)
       and stored in order, or with qimg_node_pwrite_compressed if the target cannot split. */
    bool compress;
    /* -C: data extents go through qimg_node_copy_range (copy_file_range between raw images
       on files); after the first failure, read/write for the rest of the job. */
    bool offload;
    bool salvage;          /* unreadable 512-byte sectors become zeroes (reported via read_error) */
    uint64_t rate_limit;   /* bytes per second, 0 = unlimited */
    size_t buf_size;       /* chunk size; 0 means QIMG_COPY_DEFAULT_BUF */
    /* Flush the target when done. Long copies also flush along the way (every
       QIMG_COPY_FLUSH_AHEAD bytes written, on a worker while the others go on), so that the
       disk writes back during the copy instead of all in the final flush. */
    bool flush;

    /*
     * Progress: called after each chunk of data (not of known zeroes) is
     * written, with the bytes of data done and the total to do. Calls are
     * serialised. May be NULL.
     */
    void (*progress)(void *opaque, uint64_t done, uint64_t total);
    /* With salvage: [offset, offset+len) of the target (one sector at a time) read as
       zeroes. Calls may come from several workers at once. */
    void (*read_error)(void *opaque, uint64_t offset, uint64_t len, int errnum);
    void *opaque;
};

struct qimg_copy_result {
    enum qimg_copy_failure failure;
    uint64_t offset; /* copy-relative offset of the failing request (the lowest one) */
    int errnum;      /* positive errno */
    uint64_t data_bytes; /* bytes the job counted as data (the progress total) */
    bool offloaded;      /* at least one chunk went through copy offload */
};

/*
 * Run a copy job. Returns 0, or -errno with err set ("error while reading at
 * byte N: ...", "error while writing at byte N: ...") and, when res is given,
 * what failed where. The target must be writable and large enough.
 */
int qimg_copy_run(const struct qimg_copy_job *job, struct qimg_copy_result *res,
                  struct qimg_error *err);

#endif
