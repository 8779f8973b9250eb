/* SPDX-License-Identifier: MIT */
/*
 * The checksum engine (engines/checksum.h). One walk hands out items in
 * block order: a run of whole blocks that block status says read as zeroes
 * (never read), or a chunk of up to QIMG_CHECKSUM_CHUNK bytes of blocks to
 * read. Workers read the chunks and compute their block digests in
 * parallel; the items are then fed to the blkhash streams in order, by
 * whichever worker completes the oldest one (as the compare engine retires
 * its ranges). A block only partly known to be zero is read whole: its
 * digest is the digest of its content either way.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nettle/nettle-meta.h>

#include "engines/checksum.h"
#include "util/mem.h"
#include "util/threadpool.h"
#include "util/zero.h"

#define BLOCKS_PER_CHUNK (QIMG_CHECKSUM_CHUNK / BLKHASH_BLOCK_SIZE)
#define MAX_WORKERS 8
/* Items handed out and not yet fed to the streams, at most. */
#define QUEUE 64

struct item {
    uint64_t block, count; /* blocks [block, block + count) */
    bool zero;             /* whole zero blocks: nothing to read */
    bool done;             /* digests ready (zero items: at once) */
};

struct walk {
    struct qimg_node *node;
    uint64_t size, nblocks;
    const struct nettle_hash *alg;
    struct blkhash *hash;
    const struct qimg_checksum_params *params;

    pthread_mutex_t lock;
    pthread_cond_t room;
    uint64_t pos; /* next block to hand out */
    bool stop;
    int ret;
    uint64_t fail_at; /* offset of the first failure (the lowest wins) */
    struct qimg_error *err;
    struct item queue[QUEUE]; /* [head, tail) handed out, not yet fed */
    uint64_t head, tail;
    uint8_t *digests; /* QUEUE * BLOCKS_PER_CHUNK digests, one row per queue slot */
    unsigned n_started;
};

static uint8_t *slot_digests(struct walk *w, uint64_t seq)
{
    return w->digests + (seq % QUEUE) * BLOCKS_PER_CHUNK * w->alg->digest_size;
}

/* Lock held. */
static void fail(struct walk *w, uint64_t off, int ret, const char *what)
{
    if (off < w->fail_at) {
        w->fail_at = off;
        w->ret = qimg_error_errno(w->err, ret, "error while %s at byte %" PRIu64, what, off);
    }
    w->stop = true;
    pthread_cond_broadcast(&w->room);
}

/* Feed the finished items at the head to the streams, in order. Lock held. */
static void retire(struct walk *w)
{
    bool moved = false;
    while (!w->stop && w->head < w->tail && w->queue[w->head % QUEUE].done) {
        const struct item *it = &w->queue[w->head % QUEUE];
        if (it->zero) {
            blkhash_add_zero_blocks(w->hash, it->count);
        } else {
            const uint8_t *md = slot_digests(w, w->head);
            for (uint64_t i = 0; i < it->count; i++)
                blkhash_add_digest(w->hash, md + i * w->alg->digest_size);
        }
        uint64_t end = (it->block + it->count) * BLKHASH_BLOCK_SIZE;
        if (w->params->progress)
            w->params->progress(w->params->opaque, end < w->size ? end : w->size, w->size);
        w->head++;
        moved = true;
    }
    if (moved)
        pthread_cond_broadcast(&w->room);
}

/* Queue an item; false when the walk stopped while waiting for room. Lock held. */
static bool enqueue(struct walk *w, struct item it, uint64_t *seq)
{
    while (!w->stop && w->tail - w->head == QUEUE)
        pthread_cond_wait(&w->room, &w->lock);
    if (w->stop)
        return false;
    w->queue[w->tail % QUEUE] = it;
    *seq = w->tail++;
    retire(w);
    return true;
}

static bool reads_as_zero(const struct qimg_block_status *st)
{
    if (st->flags & QIMG_BLK_UNKNOWN)
        return false;
    return (st->flags & QIMG_BLK_ZERO) || !(st->flags & QIMG_BLK_DATA);
}

/* The next chunk to read into *it (zero runs are queued on the way); false at the end. */
static bool next_item(struct walk *w, struct item *it, uint64_t *seq)
{
    while (!w->stop && w->pos < w->nblocks) {
        uint64_t off = w->pos * BLKHASH_BLOCK_SIZE;
        struct qimg_block_status st;
        int ret = qimg_chain_block_status(w->node, NULL, off, w->size - off, &st);
        if (ret < 0) {
            fail(w, off, ret, "reading block status");
            return false;
        }
        uint64_t end = st.bytes == 0 || st.bytes > w->size - off ? w->size : off + st.bytes;
        uint64_t whole = end / BLKHASH_BLOCK_SIZE; /* blocks before this one are entirely < end */
        if (reads_as_zero(&st) && whole > w->pos) {
            if (!enqueue(w, (struct item){w->pos, whole - w->pos, true, true}, seq))
                return false;
            w->pos = whole;
            continue;
        }
        /* Data, or zeroes ending inside this block: read the blocks that hold it. */
        uint64_t last = (end + BLKHASH_BLOCK_SIZE - 1) / BLKHASH_BLOCK_SIZE;
        uint64_t count = last - w->pos < BLOCKS_PER_CHUNK ? last - w->pos : BLOCKS_PER_CHUNK;
        *it = (struct item){w->pos, count, false, false};
        if (!enqueue(w, *it, seq))
            return false;
        w->pos += count;
        return true;
    }
    return false;
}

/* Read one chunk and compute its block digests (no lock held). */
static int hash_chunk(struct walk *w, const struct item *it, uint64_t seq, uint8_t *buf, void *ctx)
{
    uint64_t off = it->block * BLKHASH_BLOCK_SIZE;
    uint64_t len = it->count * BLKHASH_BLOCK_SIZE;
    if (len > w->size - off)
        len = w->size - off;
    int ret = qimg_node_pread(w->node, off, len, buf, 0);
    if (ret < 0)
        return ret;
    uint8_t *md = slot_digests(w, seq);
    size_t dsize = w->alg->digest_size;
    for (uint64_t i = 0; i < it->count; i++) {
        const uint8_t *block = buf + i * BLKHASH_BLOCK_SIZE;
        uint64_t blen = len - i * BLKHASH_BLOCK_SIZE;
        if (blen > BLKHASH_BLOCK_SIZE)
            blen = BLKHASH_BLOCK_SIZE;
        if (blen == BLKHASH_BLOCK_SIZE && qimg_is_zero(block, blen))
            memcpy(md + i * dsize, blkhash_zero_digest(w->hash), dsize);
        else
            blkhash_block_digest(w->alg, ctx, block, blen, md + i * dsize);
    }
    return 0;
}

static void worker(void *p)
{
    struct walk *w = p;
    uint8_t *buf = qimg_alloc_aligned(QIMG_CHECKSUM_CHUNK);
    void *ctx = malloc(w->alg->context_size);
    struct item it;
    uint64_t seq;

    if (!buf || !ctx)
        goto out; /* fewer workers is slower, not wrong (none at all: see qimg_checksum) */
    pthread_mutex_lock(&w->lock);
    w->n_started++;
    while (next_item(w, &it, &seq)) {
        pthread_mutex_unlock(&w->lock);
        int ret = hash_chunk(w, &it, seq, buf, ctx);
        pthread_mutex_lock(&w->lock);
        if (ret < 0) {
            fail(w, it.block * BLKHASH_BLOCK_SIZE, ret, "reading");
            break;
        }
        w->queue[seq % QUEUE].done = true;
        retire(w);
    }
    pthread_mutex_unlock(&w->lock);
out:
    free(ctx);
    free(buf);
}

static unsigned worker_count(unsigned asked)
{
    if (asked)
        return asked > MAX_WORKERS ? MAX_WORKERS : asked;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        return 1;
    return cpus > MAX_WORKERS ? MAX_WORKERS : (unsigned)cpus;
}

int qimg_checksum(struct qimg_node *img, const struct qimg_checksum_params *params, uint8_t *md,
                  unsigned *md_len, struct qimg_error *err)
{
    const char *name = params->algorithm ? params->algorithm : BLKHASH_DEFAULT_ALGORITHM;
    const struct nettle_hash *alg = blkhash_lookup(name);
    if (!alg)
        return qimg_error_set(err, -EINVAL, "Unsupported algorithm '%s'", name);
    int64_t size = qimg_node_length(img);
    if (size < 0)
        return qimg_error_errno(err, (int)size, "Could not get the image size");

    struct walk w = {.node = img, .size = (uint64_t)size, .alg = alg, .params = params,
                     .fail_at = UINT64_MAX, .err = err};
    w.nblocks = (w.size + BLKHASH_BLOCK_SIZE - 1) / BLKHASH_BLOCK_SIZE;
    w.hash = blkhash_new(alg);
    w.digests = malloc((size_t)QUEUE * BLOCKS_PER_CHUNK * alg->digest_size);
    if (!w.hash || !w.digests) {
        free(w.digests);
        blkhash_free(w.hash);
        return qimg_error_set(err, -ENOMEM, "Out of memory");
    }
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.room, NULL);
    qimg_run_parallel(worker_count(params->workers), worker, &w);
    if (!w.n_started && !w.stop)
        fail(&w, 0, -ENOMEM, "reading");
    pthread_cond_destroy(&w.room);
    pthread_mutex_destroy(&w.lock);
    int ret = w.stop ? w.ret : 0;
    if (ret == 0)
        *md_len = blkhash_final(w.hash, md);
    free(w.digests);
    blkhash_free(w.hash);
    return ret;
}
