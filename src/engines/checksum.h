/* SPDX-License-Identifier: MIT */
/*
 * The checksum engine (qimg checksum): a digest of an image's guest-visible
 * content with the blkhash construction (engines/blkhash.h), the same for
 * every format and layout of the same content. The image is walked by
 * whole-chain block status: runs that read as zeroes are never read, the
 * rest is read in chunks that workers (one per CPU) hash in parallel; the
 * block digests are fed to the streams in order. Nothing here prints.
 */
#ifndef QIMG_ENGINES_CHECKSUM_H
#define QIMG_ENGINES_CHECKSUM_H

#include <stdint.h>

#include "engines/blkhash.h"
#include "qimg/qimg.h"

/* Largest piece read at once (a whole number of blocks). */
#define QIMG_CHECKSUM_CHUNK (2u << 20)

struct qimg_checksum_params {
    const char *algorithm; /* a nettle hash name; NULL: sha256 */
    unsigned workers;      /* 0: one per CPU (at most 8) */
    /* Called in order as the walk advances (done bytes of total); calls are serialised. */
    void (*progress)(void *opaque, uint64_t done, uint64_t total);
    void *opaque;
};

/*
 * Digest the guest-visible content of img (its whole backing chain) into md
 * (BLKHASH_MAX_DIGEST bytes), its length in *md_len. Returns 0, or -errno
 * with err set: -EINVAL for an unknown algorithm, "error while reading at
 * byte N: ..." and block status failures otherwise.
 */
int qimg_checksum(struct qimg_node *img, const struct qimg_checksum_params *params, uint8_t *md,
                  unsigned *md_len, struct qimg_error *err);

#endif
