/* SPDX-License-Identifier: MIT */
/*
 * The compare engine (qemu-img compare). The images are walked together by
 * block status: a range both sides know to read as zeroes is skipped, the
 * rest is read in chunks of at most QIMG_COMPARE_CHUNK and compared sector by
 * sector, so a mismatch is reported at the start of its 512-byte sector
 * (counted from the chunk start, as qemu-img counts). When the sizes differ
 * and the mode is not strict, the larger image's tail must read as zeroes.
 *
 * Workers (one per CPU) take the chunks in order from one walk and read and
 * compare them in parallel: reading a compressed image means decoding it,
 * and that is where the time goes. What is reported is what a sequential
 * walk would have met first: the event (mismatch, read or status failure)
 * with the lowest offset; after one, no new chunk is started, and the chunks
 * before it still finish. Progress is reported range by range in order, as
 * the sequential walk reports it: each range (skipped or read) is queued and
 * reported once it and all before it are done.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engines/compare.h"
#include "util/mem.h"
#include "util/threadpool.h"
#include "util/zero.h"

/* Strict-mode status bits besides QIMG_BLK_*: allocated somewhere, run reaches the end. */
#define STATUS_ALLOCATED 0x100
#define STATUS_EOF 0x200
/* Workers at most (each holds two chunk buffers). */
#define MAX_WORKERS 8
/* Ranges queued for progress at most; the walk waits when the queue is full. */
#define QUEUE 256

struct image {
    struct qimg_node *node;
    uint64_t size;
    int index; /* 1 or 2, for error reports */
};

/* A range to read: both images compared, or one image (data) that must read as zeroes. */
struct chunk {
    uint64_t off, len;
    struct image *data; /* NULL: compare a and b */
    uint64_t seq;       /* its place in the progress queue */
};

struct range {
    uint64_t start, end;
    bool done;
};

struct walk {
    const struct qimg_compare_params *params;
    struct image a, b;
    uint64_t common; /* both images exist below this */
    uint64_t total;  /* progress base: the larger size */
    bool strict;

    pthread_mutex_t lock;
    uint64_t pos;        /* the walk: everything before pos was handed out */
    bool stop;           /* an event was met: hand out nothing more */
    uint64_t event_at;   /* offset of the chunk (or walk position) of the first event */
    int event_ret;       /* its return code (0: a mismatch) */
    struct qimg_compare_result event;
    struct range queue[QUEUE]; /* ranges walked, not yet reported: [head, tail) */
    uint64_t head, tail;
    pthread_cond_t room; /* the queue has room again */
    bool warned;         /* size_mismatch called */
    unsigned n_started;  /* workers that got their buffers */
};

static void progress(struct walk *w, uint64_t done)
{
    if (w->params && w->params->progress)
        w->params->progress(w->params->opaque, done, w->total);
}

/* Record an event at key (chunk start or walk position); the lowest key wins. Lock held. */
static void record(struct walk *w, uint64_t key, int ret, const struct qimg_compare_result *r)
{
    if (key < w->event_at) {
        w->event_at = key;
        w->event_ret = ret;
        w->event = *r;
    }
    w->stop = true;
    pthread_cond_broadcast(&w->room);
}

static int fail(struct walk *w, enum qimg_compare_failure kind, const struct image *img,
                uint64_t key, uint64_t off, int code)
{
    struct qimg_compare_result r = {.outcome = QIMG_COMPARE_IDENTICAL, .failure = kind,
                                    .failed_image = img->index, .offset = off};
    record(w, key, code, &r);
    return code;
}

static void mismatch(struct walk *w, enum qimg_compare_outcome what, uint64_t key, uint64_t off)
{
    struct qimg_compare_result r = {.outcome = what, .offset = off};
    record(w, key, 0, &r);
}

/* Sizes differ and nothing was met before the tail: say so, once. Lock held. */
static void warn_size(struct walk *w)
{
    if (w->warned || w->a.size == w->b.size || w->event_at < w->common)
        return;
    w->warned = true;
    if (w->params && w->params->size_mismatch)
        w->params->size_mismatch(w->params->opaque);
}

/*
 * Report the ranges done, in order, up to the first one still under way or
 * the one where an event was met (a sequential walk stops before reporting
 * it); the size warning comes before the tail's first range. Lock held.
 */
static void retire(struct walk *w)
{
    bool moved = false;
    while (w->head < w->tail) {
        const struct range *r = &w->queue[w->head % QUEUE];
        if (!r->done || r->start >= w->event_at)
            break;
        if (r->start >= w->common)
            warn_size(w);
        progress(w, r->end);
        w->head++;
        moved = true;
    }
    if (moved)
        pthread_cond_broadcast(&w->room);
}

/* Queue a walked range; false when the walk stopped while waiting for room. Lock held. */
static bool enqueue(struct walk *w, uint64_t start, uint64_t end, bool done, uint64_t *seq)
{
    while (!w->stop && w->tail - w->head == QUEUE)
        pthread_cond_wait(&w->room, &w->lock);
    if (w->stop)
        return false;
    w->queue[w->tail % QUEUE] = (struct range){start, end, done};
    if (seq)
        *seq = w->tail;
    w->tail++;
    retire(w);
    return true;
}

static bool reads_as_zero(const struct qimg_block_status *st)
{
    /* Unallocated down the whole chain reads as zeroes too. */
    return (st->flags & QIMG_BLK_ZERO) || !(st->flags & (QIMG_BLK_DATA | QIMG_BLK_ZERO));
}

/*
 * What strict mode compares: allocation, data/zero, whether a host offset is
 * known, compression, and whether the run reaches the end of the image.
 */
static unsigned strict_status(const struct qimg_block_status *st, uint64_t off, uint64_t size)
{
    unsigned f = st->flags & (QIMG_BLK_DATA | QIMG_BLK_ZERO | QIMG_BLK_OFFSET_VALID |
                              QIMG_BLK_COMPRESSED);
    if (f & (QIMG_BLK_DATA | QIMG_BLK_ZERO))
        f |= STATUS_ALLOCATED;
    else
        f |= QIMG_BLK_ZERO;
    if (off + st->bytes == size)
        f |= STATUS_EOF;
    return f;
}

static int status(struct walk *w, struct image *img, uint64_t off, struct qimg_block_status *st)
{
    int ret = qimg_chain_block_status(img->node, NULL, off, img->size - off, st);
    if (ret < 0)
        return fail(w, QIMG_COMPARE_FAIL_STATUS, img, off, off, ret);
    if (st->bytes == 0 || st->bytes > img->size - off)
        st->bytes = img->size - off;
    return 0;
}

/* Bytes of buf that equal other (or are zero when other is NULL), whole sectors counted. */
static uint64_t same_prefix(const uint8_t *buf, const uint8_t *other, uint64_t len)
{
    uint64_t off = 0;
    while (off < len) {
        uint64_t n = len - off < QIMG_COMPARE_SECTOR ? len - off : QIMG_COMPARE_SECTOR;
        bool same = other ? memcmp(buf + off, other + off, n) == 0 : qimg_is_zero(buf + off, n);
        if (!same)
            break;
        off += n;
    }
    return off;
}

/*
 * The walk: the next range to read, past the ranges both sides read as
 * zeroes (block status asked at every step, as a sequential walk asks it).
 * false when the walk is over or stopped. Lock held.
 */
static bool next_chunk(struct walk *w, struct chunk *c)
{
    uint64_t end = w->a.size > w->b.size ? w->a.size : w->b.size;
    while (!w->stop && w->pos < end) {
        uint64_t off = w->pos;
        struct qimg_block_status sa, sb;
        uint64_t n;
        struct image *data;
        if (off < w->common) {
            if (status(w, &w->a, off, &sa) < 0 || status(w, &w->b, off, &sb) < 0)
                return false;
            n = sa.bytes < sb.bytes ? sa.bytes : sb.bytes;
            if (n > w->common - off)
                n = w->common - off;
            if (w->strict && strict_status(&sa, off, w->a.size) !=
                                 strict_status(&sb, off, w->b.size)) {
                mismatch(w, QIMG_COMPARE_STATUS_MISMATCH, off, off);
                return false;
            }
            bool za = reads_as_zero(&sa), zb = reads_as_zero(&sb);
            /* One side reads as zeroes: the other must be zero too. */
            data = za && zb ? NULL : za ? &w->b : zb ? &w->a : NULL;
            if (za && zb) {
                if (!enqueue(w, off, off + n, true, NULL))
                    return false;
                w->pos += n;
                continue;
            }
        } else {
            /* Only the larger image has this; it must read as zeroes. */
            data = w->a.size > w->b.size ? &w->a : &w->b;
            if (status(w, data, off, &sa) < 0)
                return false;
            n = sa.bytes;
            if (reads_as_zero(&sa)) {
                if (!enqueue(w, off, off + n, true, NULL))
                    return false;
                w->pos += n;
                continue;
            }
        }
        c->off = off;
        c->len = n < QIMG_COMPARE_CHUNK ? n : QIMG_COMPARE_CHUNK;
        c->data = data;
        if (!enqueue(w, off, off + c->len, false, &c->seq))
            return false;
        w->pos += c->len;
        return true;
    }
    return false;
}

struct buffers {
    uint8_t *a, *b;
};

/* Read and compare one chunk (no lock held); events are recorded under the lock. */
static void compare_chunk(struct walk *w, const struct chunk *c, struct buffers *buf)
{
    struct image *first = c->data ? c->data : &w->a;
    uint8_t *fbuf = c->data == &w->b ? buf->b : buf->a;
    int ret = qimg_node_pread(first->node, c->off, c->len, fbuf, 0);
    struct image *failed = first;
    if (ret == 0 && !c->data) {
        ret = qimg_node_pread(w->b.node, c->off, c->len, buf->b, 0);
        failed = &w->b;
    }
    uint64_t same = ret < 0 ? 0 : same_prefix(fbuf, c->data ? NULL : buf->b, c->len);
    pthread_mutex_lock(&w->lock);
    if (ret < 0)
        fail(w, QIMG_COMPARE_FAIL_READ, failed, c->off, c->off, ret);
    else if (same < c->len)
        mismatch(w, QIMG_COMPARE_CONTENT_MISMATCH, c->off, c->off + same);
    w->queue[c->seq % QUEUE].done = true;
    retire(w);
    pthread_mutex_unlock(&w->lock);
}

static void worker(void *p)
{
    struct walk *w = p;
    uint8_t *a = qimg_alloc_aligned(QIMG_COMPARE_CHUNK);
    uint8_t *b = qimg_alloc_aligned(QIMG_COMPARE_CHUNK);
    struct buffers buf = {a, b};
    struct chunk c;

    if (!a || !b)
        goto out; /* fewer workers is slower, not wrong (none at all: see qimg_compare) */
    pthread_mutex_lock(&w->lock);
    w->n_started++;
    while (next_chunk(w, &c)) {
        pthread_mutex_unlock(&w->lock);
        compare_chunk(w, &c, &buf);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
out:
    free(a);
    free(b);
}

static unsigned worker_count(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        return 1;
    return cpus > MAX_WORKERS ? MAX_WORKERS : (unsigned)cpus;
}

int qimg_compare(struct qimg_node *img1, struct qimg_node *img2,
                 const struct qimg_compare_params *params, struct qimg_compare_result *res)
{
    struct walk w = {.params = params, .a = {.node = img1, .index = 1},
                     .b = {.node = img2, .index = 2}, .event_at = UINT64_MAX};
    *res = (struct qimg_compare_result){.outcome = QIMG_COMPARE_IDENTICAL};
    w.strict = params && params->strict;

    int64_t s1 = qimg_node_length(img1);
    if (s1 < 0) {
        *res = (struct qimg_compare_result){.failure = QIMG_COMPARE_FAIL_STATUS, .failed_image = 1};
        return (int)s1;
    }
    int64_t s2 = qimg_node_length(img2);
    if (s2 < 0) {
        *res = (struct qimg_compare_result){.failure = QIMG_COMPARE_FAIL_STATUS, .failed_image = 2};
        return (int)s2;
    }
    w.a.size = (uint64_t)s1;
    w.b.size = (uint64_t)s2;
    w.total = w.a.size > w.b.size ? w.a.size : w.b.size;
    w.common = w.a.size < w.b.size ? w.a.size : w.b.size;
    if (w.strict && w.a.size != w.b.size) {
        res->outcome = QIMG_COMPARE_SIZE_MISMATCH;
        return 0;
    }

    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.room, NULL);
    qimg_run_parallel(worker_count(), worker, &w);
    if (!w.n_started) {
        struct qimg_compare_result r = {.failure = QIMG_COMPARE_FAIL_READ, .failed_image = 1};
        record(&w, 0, -ENOMEM, &r);
    }
    /* Sizes differ and the first event (if any) lies in the tail: the warning comes first. */
    warn_size(&w);
    pthread_cond_destroy(&w.room);
    pthread_mutex_destroy(&w.lock);
    if (w.event_at == UINT64_MAX)
        return 0;
    *res = w.event;
    return w.event_ret;
}
