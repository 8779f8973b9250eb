/* SPDX-License-Identifier: MIT */
/* Leaky-bucket throttling with QEMU's throttle-group limits and checks (throttle.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/throttle.h"

#define THROTTLE_VALUE_MAX 1000000000000000LL /* QEMU's bound on every rate */

enum { BPS_TOTAL, BPS_READ, BPS_WRITE, OPS_TOTAL, OPS_READ, OPS_WRITE };

static const char *const bucket_names[QIMG_THROTTLE_BUCKETS] = {
    "bps-total", "bps-read", "bps-write", "iops-total", "iops-read", "iops-write",
};

bool qimg_throttle_is_limit(const char *name)
{
    if (!strcmp(name, "iops-size"))
        return true;
    for (int i = 0; i < QIMG_THROTTLE_BUCKETS; i++) {
        size_t len = strlen(bucket_names[i]);
        if (strncmp(name, bucket_names[i], len))
            continue;
        const char *rest = name + len;
        if (!*rest || !strcmp(rest, "-max") || !strcmp(rest, "-max-length"))
            return true;
    }
    return false;
}

/* The value of limit name: "limits.NAME" first, then "x-NAME". */
static const char *limit_value(const struct qimg_opts *props, const char *name, char *key,
                               size_t keylen)
{
    snprintf(key, keylen, "limits.%s", name);
    const char *v = qimg_opts_peek(props, key);
    if (v)
        return v;
    snprintf(key, keylen, "x-%s", name);
    return qimg_opts_peek(props, key);
}

static int read_limit(const struct qimg_opts *props, const char *name, long long *out,
                      bool *given, struct qimg_error *err)
{
    char key[64];
    const char *v = limit_value(props, name, key, sizeof(key));
    *given = v != NULL;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 0);
    if (!*v || *end || errno) /* unsigned properties take what wraps (-1) */
        x = (long long)strtoull(v, &end, 0);
    if (!*v || *end)
        return qimg_error_set(err, -EINVAL, "Parameter '%s' expects integer", key);
    *out = x;
    return 0;
}

static int read_bucket(const struct qimg_opts *props, int i, struct qimg_throttle_bucket *b,
                       struct qimg_error *err)
{
    char name[48];
    long long v;
    bool given;
    int ret = read_limit(props, bucket_names[i], &v, &given, err);
    if (ret < 0)
        return ret;
    b->avg = given ? v : 0;
    snprintf(name, sizeof(name), "%s-max", bucket_names[i]);
    if ((ret = read_limit(props, name, &v, &given, err)) < 0)
        return ret;
    b->max = given ? v : 0;
    snprintf(name, sizeof(name), "%s-max-length", bucket_names[i]);
    if ((ret = read_limit(props, name, &v, &given, err)) < 0)
        return ret;
    b->burst_length = 1;
    if (given) {
        /* QEMU refuses positive values past uint32 at once */
        if (v > (long long)UINT32_MAX)
            return qimg_error_set(err, -EINVAL, "%s value must be in the range [0, 4294967295]",
                                  name);
        b->burst_length = (uint64_t)v; /* negative: huge, "too high" below */
    }
    return 0;
}

/* QEMU's throttle_is_valid, in its order. */
static int check_limits(const struct qimg_throttle *t, struct qimg_error *err)
{
    const struct qimg_throttle_bucket *b = t->b;
    bool avg_conflict = b[BPS_TOTAL].avg && (b[BPS_READ].avg || b[BPS_WRITE].avg);
    avg_conflict |= b[OPS_TOTAL].avg && (b[OPS_READ].avg || b[OPS_WRITE].avg);
    bool max_conflict = b[BPS_TOTAL].max && (b[BPS_READ].max || b[BPS_WRITE].max);
    max_conflict |= b[OPS_TOTAL].max && (b[OPS_READ].max || b[OPS_WRITE].max);
    if (avg_conflict || max_conflict)
        return qimg_error_set(err, -EINVAL, "bps/iops/max total values and read/write values "
                                            "cannot be used at the same time");
    if (t->iops_size && !b[OPS_TOTAL].avg && !b[OPS_READ].avg && !b[OPS_WRITE].avg)
        return qimg_error_set(err, -EINVAL, "iops size requires an iops value to be set");
    for (int i = 0; i < QIMG_THROTTLE_BUCKETS; i++) {
        const struct qimg_throttle_bucket *k = &b[i];
        if (k->avg < 0 || k->max < 0 || k->avg > THROTTLE_VALUE_MAX ||
            k->max > THROTTLE_VALUE_MAX)
            return qimg_error_set(err, -EINVAL,
                                  "bps/iops/max values must be within [0, %lld]",
                                  THROTTLE_VALUE_MAX);
        if (!k->burst_length)
            return qimg_error_set(err, -EINVAL, "the burst length cannot be 0");
        if (k->burst_length > 1 && !k->max)
            return qimg_error_set(err, -EINVAL, "burst length set without burst rate");
        if (k->max && !k->avg)
            return qimg_error_set(err, -EINVAL,
                                  "bps_max/iops_max require corresponding bps/iops values");
        if (k->max && k->max < k->avg)
            return qimg_error_set(err, -EINVAL, "bps_max/iops_max cannot be lower than bps/iops");
        if (k->max && (double)k->max * (double)k->burst_length > (double)THROTTLE_VALUE_MAX)
            return qimg_error_set(err, -EINVAL, "burst length too high for this burst rate");
    }
    return 0;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int qimg_throttle_init(struct qimg_throttle *t, const struct qimg_opts *props,
                       struct qimg_error *err)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    for (int i = 0; i < QIMG_THROTTLE_BUCKETS; i++) {
        int ret = read_bucket(props, i, &t->b[i], err);
        if (ret < 0)
            return ret;
    }
    long long v;
    bool given;
    int ret = read_limit(props, "iops-size", &v, &given, err);
    if (ret < 0)
        return ret;
    t->iops_size = given ? (uint64_t)v : 0;
    t->last_ns = now_ns();
    return check_limits(t, err);
}

void qimg_throttle_destroy(struct qimg_throttle *t)
{
    pthread_mutex_destroy(&t->lock);
}

/* Let every bucket drain for the time since the last call. */
static void leak(struct qimg_throttle *t)
{
    uint64_t now = now_ns();
    double secs = (double)(now - t->last_ns) / 1e9;
    t->last_ns = now;
    for (int i = 0; i < QIMG_THROTTLE_BUCKETS; i++) {
        struct qimg_throttle_bucket *b = &t->b[i];
        b->level -= secs * (double)b->avg;
        if (b->level < 0)
            b->level = 0;
        if (b->max) {
            b->burst_level -= secs * (double)b->max;
            if (b->burst_level < 0)
                b->burst_level = 0;
        }
    }
}

/*
 * Seconds until bucket b has room (QEMU: a bucket holds avg/10 units without
 * a burst rate, max * burst_length with one, and then max/10 per burst).
 */
static double bucket_wait(const struct qimg_throttle_bucket *b)
{
    if (!b->avg)
        return 0;
    double size = b->max ? (double)b->max * (double)b->burst_length : (double)b->avg / 10;
    if (b->level > size)
        return (b->level - size) / (double)b->avg;
    if (b->max && b->burst_length > 1 && b->burst_level > (double)b->max / 10)
        return (b->burst_level - (double)b->max / 10) / (double)b->max;
    return 0;
}

void qimg_throttle_wait(struct qimg_throttle *t, uint64_t bytes, bool is_write)
{
    int kinds[2][2] = {{BPS_TOTAL, is_write ? BPS_WRITE : BPS_READ},
                       {OPS_TOTAL, is_write ? OPS_WRITE : OPS_READ}};
    double ops = 1;
    if (t->iops_size && bytes > t->iops_size)
        ops = (double)bytes / (double)t->iops_size;
    pthread_mutex_lock(&t->lock);
    for (;;) {
        leak(t);
        double wait = 0;
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < 2; j++) {
                double w = bucket_wait(&t->b[kinds[k][j]]);
                if (w > wait)
                    wait = w;
            }
        if (wait <= 0)
            break;
        pthread_mutex_unlock(&t->lock);
        long ns = (long)((wait - (double)(time_t)wait) * 1e9) + 1;
        struct timespec ts = {(time_t)wait, ns > 999999999 ? 999999999 : ns};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&t->lock);
    }
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 2; j++) {
            struct qimg_throttle_bucket *b = &t->b[kinds[k][j]];
            double units = k == 0 ? (double)bytes : ops;
            b->level += units;
            if (b->max)
                b->burst_level += units;
        }
    pthread_mutex_unlock(&t->lock);
}
