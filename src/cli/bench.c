/* SPDX-License-Identifier: MIT */
/*
 * qemu-img bench: COUNT sequential requests of BUFFER_SIZE bytes, DEPTH in
 * flight, starting at OFFSET and advancing by STEP_SIZE (wrapping at the end
 * of the image), reads or (-w) writes of a pattern byte, with optional
 * flushes every FLUSH_INTERVAL requests. Requests in flight are threads doing
 * synchronous I/O, so every -i backend behaves like "threads"; the output
 * lines are qemu-img's.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "qimg/driver.h"
#include "util/mem.h"
#include "util/threadpool.h"

#define BENCH_MAX_THREADS 16

struct bench {
    struct qimg_node *node;
    bool write;
    uint8_t pattern;
    uint64_t count, issued;
    uint64_t bufsize, step, offset, image_size;
    uint64_t flush_interval;
    bool drain;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned in_flight;
    bool flushing;
    uint64_t last_flush; /* issued count at the last flush, +1 (0: none yet) */
    int ret;
};

/* Before request number issued: is a flush due? (The queue's remaining count is a multiple.) */
static bool flush_due(const struct bench *b)
{
    return b->write && b->flush_interval && b->issued > 0 &&
           (b->count - b->issued) % b->flush_interval == 0 && b->last_flush != b->issued + 1;
}

static void bench_worker(void *p)
{
    struct bench *b = p;
    uint8_t *buf = qimg_alloc_aligned(b->bufsize ? b->bufsize : 1);
    if (!buf) {
        pthread_mutex_lock(&b->lock);
        if (!b->ret)
            b->ret = -ENOMEM;
        pthread_mutex_unlock(&b->lock);
        return;
    }
    memset(buf, b->write ? b->pattern : 0, b->bufsize);

    pthread_mutex_lock(&b->lock);
    while (!b->ret && b->issued < b->count) {
        if (b->flushing) {
            pthread_cond_wait(&b->cond, &b->lock);
            continue;
        }
        if (flush_due(b)) {
            b->last_flush = b->issued + 1;
            b->flushing = true;
            while (b->drain && b->in_flight)
                pthread_cond_wait(&b->cond, &b->lock);
            pthread_mutex_unlock(&b->lock);
            int ret = qimg_node_flush(b->node);
            pthread_mutex_lock(&b->lock);
            b->flushing = false;
            if (ret < 0 && !b->ret)
                b->ret = ret;
            pthread_cond_broadcast(&b->cond);
            continue;
        }
        uint64_t off = b->offset;
        b->offset += b->step;
        if (b->image_size)
            b->offset %= b->image_size;
        b->issued++;
        b->in_flight++;
        pthread_mutex_unlock(&b->lock);

        int ret = b->write ? qimg_node_pwrite(b->node, off, b->bufsize, buf, 0)
                           : qimg_node_pread(b->node, off, b->bufsize, buf, 0);

        pthread_mutex_lock(&b->lock);
        b->in_flight--;
        if (ret < 0 && !b->ret)
            b->ret = ret;
        pthread_cond_broadcast(&b->cond);
    }
    pthread_mutex_unlock(&b->lock);
    free(buf);
}

/* qemu-img's integer options: a plain decimal int (strtol), whole string. */
static int parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* -s/-S/-o: sizes with suffixes; buffer and step sizes fit an int. */
static int parse_bench_size(const char *arg, const char *what, uint64_t max, uint64_t *out)
{
    uint64_t v;
    int ret = *arg == '-' ? -EINVAL : qimg_parse_size(arg, 1, &v);
    if (ret < 0 && ret != -ERANGE) {
        cli_error("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", what);
        cli_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return -1;
    }
    if (ret == -ERANGE || v > max) {
        cli_error("Invalid %s specified. Must be between 0 and %llu.", what,
                  (unsigned long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

enum { OPT_PATTERN = 256, OPT_FLUSH_INTERVAL, OPT_NO_DRAIN, OPT_IMAGE_OPTS };

int cmd_bench(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"flush-interval", required_argument, NULL, OPT_FLUSH_INTERVAL},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"pattern", required_argument, NULL, OPT_PATTERN},
        {"no-drain", no_argument, NULL, OPT_NO_DRAIN},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    struct cli_open o = {0};
    struct bench b = {.count = 75000, .bufsize = 4096, .drain = true};
    long depth = 64;
    bool step_given = false, native = false, force_share = false;
    const char *aio = NULL, *cache = "writeback";
    int c;

    while ((c = cli_getopt(argc, argv, "hc:d:f:ni:o:qs:S:t:wU", longopts)) != -1) {
        long v;
        uint64_t u;
        switch (c) {
        case '?':
            return 1;
        case 'h':
            printf("Usage: %s bench [-c COUNT] [-d DEPTH] [-f FMT] [--flush-interval=FLUSH_INTERVAL] "
                   "[-i AIO] [-n] [--no-drain] [-o OFFSET] [--pattern=PATTERN] [-q] "
                   "[-s BUFFER_SIZE] [-S STEP_SIZE] [-t CACHE] [-w] [-U] FILENAME\n",
                   cli_prog);
            return 0;
        case 'c':
            if (parse_int(optarg, 0, INT_MAX, &v) < 0) {
                cli_error("Invalid request count specified");
                return 1;
            }
            b.count = (uint64_t)v;
            break;
        case 'd':
            if (parse_int(optarg, 0, INT_MAX, &v) < 0) {
                cli_error("Invalid queue depth specified");
                return 1;
            }
            depth = v;
            break;
        case 'f':
            o.fmt = optarg;
            break;
        case 'n':
            native = true;
            break;
        case 'i':
            if (strcmp(optarg, "threads") && strcmp(optarg, "native") &&
                strcmp(optarg, "io_uring")) {
                cli_error("Invalid aio option: %s", optarg);
                return 1;
            }
            aio = optarg;
            break;
        case 'o':
            if (parse_bench_size(optarg, "offset", INT64_MAX, &u) < 0)
                return 1;
            b.offset = u;
            break;
        case 'q':
            o.quiet = true;
            break;
        case 's':
            if (parse_bench_size(optarg, "buffer size", INT_MAX, &u) < 0)
                return 1;
            b.bufsize = u;
            break;
        case 'S':
            if (parse_bench_size(optarg, "step_size", INT_MAX, &u) < 0)
                return 1;
            b.step = u;
            step_given = true;
            break;
        case 't':
            cache = optarg;
            break;
        case 'w':
            b.write = true;
            break;
        case 'U':
            force_share = true;
            break;
        case OPT_PATTERN:
            if (parse_int(optarg, 0, 0xff, &v) < 0) {
                cli_error("Invalid pattern byte specified");
                return 1;
            }
            b.pattern = (uint8_t)v;
            break;
        case OPT_FLUSH_INTERVAL:
            if (parse_int(optarg, 0, INT_MAX, &v) < 0) {
                cli_error("Invalid flush interval specified");
                return 1;
            }
            b.flush_interval = (uint64_t)v;
            break;
        case OPT_NO_DRAIN:
            b.drain = false;
            break;
        case OPT_IMAGE_OPTS:
            o.image_opts = true;
            break;
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("Expecting one image file name");
    if (b.flush_interval && !b.write) {
        cli_error("--flush-interval is only available in write tests");
        return 1;
    }
    if (b.flush_interval && b.flush_interval < (uint64_t)depth) {
        cli_error("Flush interval can't be smaller than depth");
        return 1;
    }
    if (o.image_opts && o.fmt) {
        cli_error("--image-opts and --format are mutually exclusive");
        return 1;
    }
    if (!step_given || b.step == 0)
        b.step = b.bufsize;

    o.filename = argv[optind];
    if (qimg_cache_parse(cache, &o.flags) < 0) {
        cli_error("Invalid cache mode");
        return 1;
    }
    if (b.write)
        o.flags |= QIMG_O_RDWR;
    if (force_share) {
        if (b.write) {
            cli_error("Could not open '%s': force-share=on can only be used with read-only images",
                      o.filename);
            return 1;
        }
        o.flags |= QIMG_O_FORCE_SHARE;
    }
    if (native || (aio && !strcmp(aio, "native"))) {
        /* Linux AIO needs O_DIRECT, as QEMU's file driver insists. */
        if (!(o.flags & QIMG_O_NOCACHE)) {
            cli_error("Could not open '%s': aio=native was specified, but it requires "
                      "cache.direct=on, which was not specified.",
                      o.filename);
            return 1;
        }
    }
    b.node = cli_open_image(&o);
    if (!b.node)
        return 1;
    int64_t len = qimg_node_length(b.node);
    b.image_size = len > 0 ? (uint64_t)len : 0;

    /* -q silences nothing: qemu-img bench prints these lines regardless. */
    printf("Sending %llu %s requests, %llu bytes each, %ld in parallel (starting at offset "
           "%llu, step size %llu)\n",
           (unsigned long long)b.count, b.write ? "write" : "read", (unsigned long long)b.bufsize,
           depth, (unsigned long long)b.offset, (unsigned long long)b.step);
    if (b.flush_interval)
        printf("Sending flush every %llu requests\n", (unsigned long long)b.flush_interval);
    fflush(stdout);

    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.cond, NULL);
    unsigned threads = depth < BENCH_MAX_THREADS ? (unsigned)depth : BENCH_MAX_THREADS;
    if ((uint64_t)threads > b.count)
        threads = (unsigned)b.count;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (threads)
        qimg_run_parallel(threads, bench_worker, &b);
    else if (b.count)
        for (;;) /* -d 0: no request can ever be sent; qemu-img waits forever too */
            pause();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_cond_destroy(&b.cond);
    pthread_mutex_destroy(&b.lock);

    int ret = b.ret;
    if (ret == 0 && b.write)
        ret = qimg_node_flush(b.node); /* qemu-img drains and closes: written back */
    qimg_node_unref(b.node);
    if (ret < 0) {
        cli_error("Failed request: %s", strerror(-ret));
        return 1;
    }
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("Run completed in %.3f seconds.\n", secs);
    return 0;
}
