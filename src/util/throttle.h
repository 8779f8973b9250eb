/* SPDX-License-Identifier: MIT */
/*
 * I/O throttling as QEMU's throttle-group objects configure it: six leaky
 * buckets (bytes and operations; total, read, write), each with an average
 * rate, an optional burst rate (max) and burst length in seconds. The
 * limits come from the object's "limits.NAME" (or legacy "x-NAME")
 * properties and are checked with QEMU's messages. A request waits until
 * every bucket it fills has room, then fills them.
 */
#ifndef QIMG_UTIL_THROTTLE_H
#define QIMG_UTIL_THROTTLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "qimg/error.h"
#include "qimg/opts.h"

enum { QIMG_THROTTLE_BUCKETS = 6 }; /* bps-total, bps-read, bps-write, iops-total, -read, -write */

struct qimg_throttle_bucket {
    int64_t avg, max;    /* units per second; 0: none */
    uint64_t burst_length; /* seconds (default 1) */
    double level, burst_level; /* units in the bucket */
};

struct qimg_throttle {
    pthread_mutex_t lock;
    struct qimg_throttle_bucket b[QIMG_THROTTLE_BUCKETS];
    uint64_t iops_size; /* bytes one operation counts for (0: any size is one op) */
    uint64_t last_ns;   /* when the buckets last leaked */
};

/* Is name (without "limits." / "x-") a ThrottleLimits member? */
bool qimg_throttle_is_limit(const char *name);
/*
 * Read the limits from a throttle-group object's properties ("limits.NAME",
 * "x-NAME"; the first overrides) and check them as QEMU does ("bps/iops/max
 * values must be within ...", "the burst length cannot be 0" ...).
 */
int qimg_throttle_init(struct qimg_throttle *t, const struct qimg_opts *props,
                       struct qimg_error *err);
void qimg_throttle_destroy(struct qimg_throttle *t);
/* Wait until a request of bytes (a write or not) fits the limits, then account it. */
void qimg_throttle_wait(struct qimg_throttle *t, uint64_t bytes, bool is_write);

#endif
