/* SPDX-License-Identifier: MIT */
/*
 * The compare engine: do two images read the same? Ranges that block status
 * says read as zeroes on both sides are never read; the rest is read in
 * chunks and compared. Nothing here prints: the caller turns the result into
 * qemu-img's messages and exit codes.
 */
#ifndef QIMG_ENGINES_COMPARE_H
#define QIMG_ENGINES_COMPARE_H

#include <stdbool.h>
#include <stdint.h>

#include "qimg/qimg.h"

/* Granularity of the reported mismatch offset, relative to the chunk compared. */
#define QIMG_COMPARE_SECTOR 512
/* Largest piece read at once from each image. */
#define QIMG_COMPARE_CHUNK (2u << 20)

enum qimg_compare_outcome {
    QIMG_COMPARE_IDENTICAL,
    QIMG_COMPARE_CONTENT_MISMATCH, /* first differing sector at .offset */
    QIMG_COMPARE_SIZE_MISMATCH,    /* strict mode: the virtual sizes differ */
    QIMG_COMPARE_STATUS_MISMATCH,  /* strict mode: block status differs at .offset */
};

enum qimg_compare_failure {
    QIMG_COMPARE_FAIL_NONE,
    QIMG_COMPARE_FAIL_STATUS, /* block status of image .failed_image failed */
    QIMG_COMPARE_FAIL_READ,   /* reading image .failed_image at .offset failed */
};

struct qimg_compare_params {
    /* Sizes must match and so must allocation (qemu-img compare -s). */
    bool strict;
    /* Called after each range is dealt with; total is the larger virtual size. */
    void (*progress)(void *opaque, uint64_t done, uint64_t total);
    /*
     * Not strict and the sizes differ: called once the common part compared
     * equal, before the larger image's tail is checked for zeroes.
     */
    void (*size_mismatch)(void *opaque);
    void *opaque;
};

struct qimg_compare_result {
    enum qimg_compare_outcome outcome;
    uint64_t offset; /* mismatch offset, or offset of the failed request */
    enum qimg_compare_failure failure;
    int failed_image; /* 1 or 2 */
};

/*
 * Compare the guest-visible contents of img1 and img2 (whole backing chains).
 * Returns 0 with res->outcome set, or -errno with res->failure, failed_image
 * and offset saying what went wrong.
 */
int qimg_compare(struct qimg_node *img1, struct qimg_node *img2,
                 const struct qimg_compare_params *params, struct qimg_compare_result *res);

#endif
