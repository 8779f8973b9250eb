/* SPDX-License-Identifier: MIT */
/* The LUKS anti-forensic splitter and merger. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <nettle/memxor.h>

#include "crypto/afsplit.h"
#include "util/mem.h"

int qimg_random_bytes(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Piece i of d digest-sized pieces becomes H(be32(i) || piece), cut to the piece's length. */
static void diffuse(enum qimg_hash_alg hash, uint8_t *buf, size_t len)
{
    size_t d = qimg_hash_digest_size(hash);
    uint8_t out[QIMG_HASH_MAX_DIGEST];
    for (size_t pos = 0, i = 0; pos < len; pos += d, i++) {
        size_t piece = len - pos < d ? len - pos : d;
        uint32_t be = htobe32((uint32_t)i);
        qimg_hash2(hash, &be, sizeof(be), buf + pos, piece, out);
        memcpy(buf + pos, out, piece);
    }
}

int qimg_afsplit(enum qimg_hash_alg hash, const uint8_t *key, size_t len, uint32_t stripes,
                 uint8_t *out)
{
    uint8_t *d = xcalloc(1, len);
    int ret = qimg_random_bytes(out, len * (stripes - 1));
    if (ret == 0) {
        for (uint32_t k = 0; k + 1 < stripes; k++) {
            memxor(d, out + (size_t)k * len, len);
            diffuse(hash, d, len);
        }
        memxor3(out + (size_t)(stripes - 1) * len, d, key, len);
    }
    memset(d, 0, len);
    free(d);
    return ret;
}

void qimg_afmerge(enum qimg_hash_alg hash, const uint8_t *in, size_t len, uint32_t stripes,
                  uint8_t *key)
{
    uint8_t *d = xcalloc(1, len);
    for (uint32_t k = 0; k + 1 < stripes; k++) {
        memxor(d, in + (size_t)k * len, len);
        diffuse(hash, d, len);
    }
    memxor3(key, d, in + (size_t)(stripes - 1) * len, len);
    memset(d, 0, len);
    free(d);
}
