/* SPDX-License-Identifier: MIT */
/*
 * A byte-rate limit shared by several threads (convert/commit -r). Each
 * request reserves the next slot of n/rate seconds and waits for the end of
 * it, so that the average rate of a job never exceeds the limit.
 */
#ifndef QIMG_UTIL_RATELIMIT_H
#define QIMG_UTIL_RATELIMIT_H

#include <pthread.h>
#include <stdint.h>

struct qimg_ratelimit {
    pthread_mutex_t lock;
    uint64_t bytes_per_sec; /* 0: unlimited */
    uint64_t next_ns;       /* CLOCK_MONOTONIC time the next slot starts */
};

void qimg_ratelimit_init(struct qimg_ratelimit *rl, uint64_t bytes_per_sec);
void qimg_ratelimit_destroy(struct qimg_ratelimit *rl);
/* Account n bytes and sleep until they are within the limit. */
void qimg_ratelimit_wait(struct qimg_ratelimit *rl, uint64_t n);
/* The delay qimg_ratelimit_wait would sleep for n bytes now, in ns (0 = none), reserving it. */
uint64_t qimg_ratelimit_reserve(struct qimg_ratelimit *rl, uint64_t n);

#endif
