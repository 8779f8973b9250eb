/* SPDX-License-Identifier: MIT */
/*
 * Hashes and PBKDF2 over nettle's generic hash and HMAC interfaces, so that
 * every hash LUKS names takes one code path.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nettle/hmac.h>
#include <nettle/md5.h>
#include <nettle/nettle-meta.h>
#include <nettle/pbkdf2.h>
#include <nettle/ripemd160.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>

#include "crypto/hash.h"
#include "util/mem.h"

static const struct {
    const char *name;
    const struct nettle_hash *hash;
} hashes[QIMG_HASH__MAX] = {
    [QIMG_HASH_MD5] = {"md5", &nettle_md5},
    [QIMG_HASH_SHA1] = {"sha1", &nettle_sha1},
    [QIMG_HASH_SHA224] = {"sha224", &nettle_sha224},
    [QIMG_HASH_SHA256] = {"sha256", &nettle_sha256},
    [QIMG_HASH_SHA384] = {"sha384", &nettle_sha384},
    [QIMG_HASH_SHA512] = {"sha512", &nettle_sha512},
    [QIMG_HASH_RIPEMD160] = {"ripemd160", &nettle_ripemd160},
};

int qimg_hash_parse(const char *name)
{
    for (int i = 0; i < QIMG_HASH__MAX; i++)
        if (!strcmp(name, hashes[i].name))
            return i;
    return -1;
}

const char *qimg_hash_name(enum qimg_hash_alg alg)
{
    return hashes[alg].name;
}

size_t qimg_hash_digest_size(enum qimg_hash_alg alg)
{
    return hashes[alg].hash->digest_size;
}

void qimg_hash2(enum qimg_hash_alg alg, const void *a, size_t alen, const void *b, size_t blen,
                uint8_t *out)
{
    const struct nettle_hash *h = hashes[alg].hash;
    void *ctx = xmalloc(h->context_size);
    h->init(ctx);
    h->update(ctx, alen, a);
    if (b)
        h->update(ctx, blen, b);
    h->digest(ctx, h->digest_size, out);
    free(ctx);
}

/* One HMAC for nettle's generic pbkdf2(): the three hash states of nettle's hmac_* API. */
struct hmac_state {
    const struct nettle_hash *hash;
    void *outer, *inner, *state;
};

static void hmac_state_update(void *ctx, size_t len, const uint8_t *data)
{
    struct hmac_state *s = ctx;
    hmac_update(s->state, s->hash, len, data);
}

static void hmac_state_digest(void *ctx, size_t len, uint8_t *out)
{
    struct hmac_state *s = ctx;
    hmac_digest(s->outer, s->inner, s->state, s->hash, len, out);
}

void qimg_pbkdf2(enum qimg_hash_alg alg, const void *pw, size_t pwlen, const uint8_t *salt,
                 size_t saltlen, uint64_t iterations, uint8_t *out, size_t outlen)
{
    struct hmac_state s = {.hash = hashes[alg].hash};
    size_t cs = s.hash->context_size;
    uint8_t *mem = xcalloc(3, cs);
    s.outer = mem;
    s.inner = mem + cs;
    s.state = mem + 2 * cs;
    hmac_set_key(s.outer, s.inner, s.state, s.hash, pwlen, pw);
    /* nettle counts iterations in an unsigned; LUKS1 stores them in 32 bits. */
    pbkdf2(&s, hmac_state_update, hmac_state_digest, s.hash->digest_size,
           (unsigned)(iterations ? iterations : 1), saltlen, salt, outlen, out);
    memset(mem, 0, 3 * cs);
    free(mem);
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t qimg_pbkdf2_iters_per_sec(enum qimg_hash_alg alg, size_t outlen)
{
    static const uint8_t pw[32], salt[32];
    uint8_t out[QIMG_HASH_MAX_DIGEST * 2];
    if (outlen > sizeof(out))
        outlen = sizeof(out);
    /* Double the work until a run takes long enough to time reliably (200 ms). */
    for (uint64_t iters = 1u << 12; iters < (1ull << 31); iters *= 2) {
        uint64_t start = thread_cpu_ns();
        qimg_pbkdf2(alg, pw, sizeof(pw), salt, sizeof(salt), iters, out, outlen);
        uint64_t end = thread_cpu_ns();
        if (!start || end < start)
            return 0;
        if (end - start >= 200000000u)
            return iters * 1000000000u / (end - start);
    }
    return 1ull << 31;
}
