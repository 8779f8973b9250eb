/* SPDX-License-Identifier: MIT */
/*
 * The blkhash construction (engines/blkhash.h): block digests spread over
 * BLKHASH_STREAMS running hashes, a root hash over the streams' digests.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/nettle-meta.h>

#include "engines/blkhash.h"
#include "util/mem.h"

/* Zero runs shorter than this many blocks per stream are fed without looking for twins. */
#define TWIN_MIN_PER_STREAM 64
/* Bytes of repeated zero-block digests fed to a stream at once. */
#define REPEAT_BYTES (64u * 1024)

struct blkhash {
    const struct nettle_hash *alg;
    size_t ctx_size;
    uint8_t *streams;  /* BLKHASH_STREAMS contexts of ctx_size bytes */
    uint8_t *snapshot; /* their states before a long zero run */
    uint64_t next;     /* index of the next block */
    uint8_t zero_md[BLKHASH_MAX_DIGEST];
    uint8_t *repeat; /* zero_md repeated repeat_count times */
    size_t repeat_count;
};

const struct nettle_hash *blkhash_lookup(const char *name)
{
    /* OpenSSL's names (blksum's -d) spell "sha3-256" and "sha512-256"; nettle's use '_'. */
    char buf[32];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof(buf))
        return NULL;
    for (size_t i = 0; i <= n; i++)
        buf[i] = name[i] == '-' ? '_' : name[i];
    const struct nettle_hash *alg = nettle_lookup_hash(buf);
    if (alg && alg->digest_size > BLKHASH_MAX_DIGEST)
        return NULL;
    return alg;
}

static uint8_t *stream_ctx(struct blkhash *h, unsigned s)
{
    return h->streams + (size_t)s * h->ctx_size;
}

void blkhash_block_digest(const struct nettle_hash *alg, void *ctx, const void *data, size_t len,
                          uint8_t *md)
{
    alg->init(ctx);
    alg->update(ctx, len, data);
    alg->digest(ctx, alg->digest_size, md);
}

struct blkhash *blkhash_new(const struct nettle_hash *alg)
{
    struct blkhash *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->alg = alg;
    h->ctx_size = alg->context_size;
    h->streams = malloc(BLKHASH_STREAMS * h->ctx_size);
    h->snapshot = malloc(BLKHASH_STREAMS * h->ctx_size);
    h->repeat_count = REPEAT_BYTES / alg->digest_size;
    h->repeat = malloc(h->repeat_count * alg->digest_size);
    uint8_t *zeroes = calloc(1, BLKHASH_BLOCK_SIZE);
    if (!h->streams || !h->snapshot || !h->repeat || !zeroes) {
        free(zeroes);
        blkhash_free(h);
        return NULL;
    }
    for (unsigned s = 0; s < BLKHASH_STREAMS; s++)
        alg->init(stream_ctx(h, s));
    /* The ctx of stream 0 serves as scratch: it is initialised again right after. */
    blkhash_block_digest(alg, stream_ctx(h, 0), zeroes, BLKHASH_BLOCK_SIZE, h->zero_md);
    alg->init(stream_ctx(h, 0));
    free(zeroes);
    for (size_t i = 0; i < h->repeat_count; i++)
        memcpy(h->repeat + i * alg->digest_size, h->zero_md, alg->digest_size);
    return h;
}

void blkhash_free(struct blkhash *h)
{
    if (!h)
        return;
    free(h->streams);
    free(h->snapshot);
    free(h->repeat);
    free(h);
}

const uint8_t *blkhash_zero_digest(const struct blkhash *h)
{
    return h->zero_md;
}

void blkhash_add_digest(struct blkhash *h, const uint8_t *md)
{
    h->alg->update(stream_ctx(h, (unsigned)(h->next % BLKHASH_STREAMS)), h->alg->digest_size, md);
    h->next++;
}

/* Feed n zero-block digests to one stream. */
static void feed_zero(struct blkhash *h, void *ctx, uint64_t n)
{
    while (n > 0) {
        size_t k = n < h->repeat_count ? (size_t)n : h->repeat_count;
        h->alg->update(ctx, k * h->alg->digest_size, h->repeat);
        n -= k;
    }
}

/*
 * A long run: a stream whose state before the run equals an earlier one's
 * (twins) starts from that one's state after the run, when it takes at least
 * as many blocks of it. Streams taking fewer blocks go first so they can serve.
 */
static void add_zero_run_twins(struct blkhash *h, uint64_t base, unsigned extra, unsigned first)
{
    bool done[BLKHASH_STREAMS] = {false};
    uint64_t took[BLKHASH_STREAMS];
    memcpy(h->snapshot, h->streams, BLKHASH_STREAMS * h->ctx_size);
    for (unsigned pass = 0; pass < 2; pass++) {
        for (unsigned s = 0; s < BLKHASH_STREAMS; s++) {
            uint64_t n = base + ((s + BLKHASH_STREAMS - first) % BLKHASH_STREAMS < extra);
            if (n != base + pass)
                continue;
            const uint8_t *before = h->snapshot + (size_t)s * h->ctx_size;
            unsigned twin = BLKHASH_STREAMS;
            for (unsigned t = 0; t < BLKHASH_STREAMS && twin == BLKHASH_STREAMS; t++) {
                if (done[t] && took[t] <= n &&
                    !memcmp(h->snapshot + (size_t)t * h->ctx_size, before, h->ctx_size))
                    twin = t;
            }
            uint64_t todo = n;
            if (twin < BLKHASH_STREAMS) {
                memcpy(stream_ctx(h, s), stream_ctx(h, twin), h->ctx_size);
                todo -= took[twin];
            }
            feed_zero(h, stream_ctx(h, s), todo);
            took[s] = n;
            done[s] = true;
        }
    }
}

void blkhash_add_zero_blocks(struct blkhash *h, uint64_t count)
{
    uint64_t base = count / BLKHASH_STREAMS;
    unsigned extra = (unsigned)(count % BLKHASH_STREAMS);
    unsigned first = (unsigned)(h->next % BLKHASH_STREAMS);
    if (base >= TWIN_MIN_PER_STREAM) {
        add_zero_run_twins(h, base, extra, first);
    } else {
        for (unsigned s = 0; s < BLKHASH_STREAMS; s++) {
            uint64_t n = base + ((s + BLKHASH_STREAMS - first) % BLKHASH_STREAMS < extra);
            feed_zero(h, stream_ctx(h, s), n);
        }
    }
    h->next += count;
}

unsigned blkhash_final(struct blkhash *h, uint8_t *md)
{
    const struct nettle_hash *alg = h->alg;
    uint8_t stream_md[BLKHASH_MAX_DIGEST];
    /* The snapshot area is free now: the root hash's context. */
    void *root = h->snapshot;
    alg->init(root);
    for (unsigned s = 0; s < BLKHASH_STREAMS; s++) {
        alg->digest(stream_ctx(h, s), alg->digest_size, stream_md);
        alg->update(root, alg->digest_size, stream_md);
    }
    alg->digest(root, alg->digest_size, md);
    return alg->digest_size;
}
