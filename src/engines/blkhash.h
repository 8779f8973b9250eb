/* SPDX-License-Identifier: MIT */
/*
 * The block hash construction of blkhash/blksum (github.com/nirs/blkhash,
 * blkhash >= 0.9 defaults), so that `qimg checksum` prints the digest
 * `blksum` prints for the same guest content:
 *
 *   the content is cut into blocks of BLKHASH_BLOCK_SIZE bytes (the last
 *   one may be shorter); block i's digest H(block i) goes to stream
 *   i % BLKHASH_STREAMS; each stream is a running hash of the block
 *   digests it receives, in block order; the result is
 *   H(H(stream 0) || H(stream 1) || ... || H(stream 63)).
 *
 * A whole block of zeroes has the digest H(64 KiB of zeroes), computed once:
 * holes and known-zero ranges are never read, only that digest is fed to the
 * streams. Runs of zero blocks are fed to every stream at once, and streams
 * whose hash state is the same (an empty image: all of them) compute the run
 * once. H is any hash nettle has (default sha256).
 *
 * Not thread-safe: the caller feeds the digests in block order (the
 * checksum engine computes block digests on workers and feeds here in order).
 */
#ifndef QIMG_ENGINES_BLKHASH_H
#define QIMG_ENGINES_BLKHASH_H

#include <stddef.h>
#include <stdint.h>

#define BLKHASH_BLOCK_SIZE (64u * 1024)
#define BLKHASH_STREAMS 64
#define BLKHASH_DEFAULT_ALGORITHM "sha256"
#define BLKHASH_MAX_DIGEST 64

struct blkhash;
struct nettle_hash;

/* The hash named name ("sha256", "sha3-256" or "sha3_256" ...); NULL when nettle has none. */
const struct nettle_hash *blkhash_lookup(const char *name);

/* A new hash over blocks with algorithm alg; NULL when out of memory. */
struct blkhash *blkhash_new(const struct nettle_hash *alg);
void blkhash_free(struct blkhash *h);

/* H(data): one block's digest, with a context of the caller (alg->context_size bytes). */
void blkhash_block_digest(const struct nettle_hash *alg, void *ctx, const void *data, size_t len,
                          uint8_t *md);
/* The precomputed digest of a whole zero block. */
const uint8_t *blkhash_zero_digest(const struct blkhash *h);

/* Feed the digest of the next block. */
void blkhash_add_digest(struct blkhash *h, const uint8_t *md);
/* Feed count whole zero blocks. */
void blkhash_add_zero_blocks(struct blkhash *h, uint64_t count);
/* The root digest (alg->digest_size bytes into md); the hash is done after this. */
unsigned blkhash_final(struct blkhash *h, uint8_t *md);

#endif
