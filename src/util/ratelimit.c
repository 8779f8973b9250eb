/* SPDX-License-Identifier: MIT */
/* Rate limiting by reserved time slots; see ratelimit.h. */
#include <errno.h>
#include <time.h>

#include "util/ratelimit.h"

#define NS_PER_SEC 1000000000ULL

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

void qimg_ratelimit_init(struct qimg_ratelimit *rl, uint64_t bytes_per_sec)
{
    pthread_mutex_init(&rl->lock, NULL);
    rl->bytes_per_sec = bytes_per_sec;
    rl->next_ns = 0;
}

void qimg_ratelimit_destroy(struct qimg_ratelimit *rl)
{
    pthread_mutex_destroy(&rl->lock);
}

/* n bytes at the limit last this long; computed without overflowing for huge n. */
static uint64_t slot_ns(uint64_t n, uint64_t rate)
{
    uint64_t whole = n / rate, rest = n % rate;
    return whole * NS_PER_SEC + rest * NS_PER_SEC / rate;
}

uint64_t qimg_ratelimit_reserve(struct qimg_ratelimit *rl, uint64_t n)
{
    if (!rl->bytes_per_sec || !n)
        return 0;
    pthread_mutex_lock(&rl->lock);
    uint64_t now = now_ns();
    uint64_t start = rl->next_ns > now ? rl->next_ns : now;
    uint64_t end = start + slot_ns(n, rl->bytes_per_sec);
    rl->next_ns = end;
    pthread_mutex_unlock(&rl->lock);
    return end - now;
}

void qimg_ratelimit_wait(struct qimg_ratelimit *rl, uint64_t n)
{
    uint64_t delay = qimg_ratelimit_reserve(rl, n);
    if (!delay)
        return;
    struct timespec ts = {.tv_sec = (time_t)(delay / NS_PER_SEC),
                          .tv_nsec = (long)(delay % NS_PER_SEC)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}
