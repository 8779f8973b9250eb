/* SPDX-License-Identifier: MIT */
/*
 * Hashes by their QEMU/LUKS names (md5, sha1, sha224, sha256, sha384, sha512,
 * ripemd160) over nettle: plain digests (ESSIV, the anti-forensic diffuser)
 * and PBKDF2 with HMAC (LUKS key slots and the master key digest).
 */
#ifndef QIMG_CRYPTO_HASH_H
#define QIMG_CRYPTO_HASH_H

#include <stddef.h>
#include <stdint.h>

enum qimg_hash_alg {
    QIMG_HASH_MD5,
    QIMG_HASH_SHA1,
    QIMG_HASH_SHA224,
    QIMG_HASH_SHA256,
    QIMG_HASH_SHA384,
    QIMG_HASH_SHA512,
    QIMG_HASH_RIPEMD160,
    QIMG_HASH__MAX,
};

#define QIMG_HASH_MAX_DIGEST 64

/* "sha256" -> QIMG_HASH_SHA256; -1 for a name we do not know. */
int qimg_hash_parse(const char *name);
const char *qimg_hash_name(enum qimg_hash_alg alg);
size_t qimg_hash_digest_size(enum qimg_hash_alg alg);

/* out (digest size bytes) = H(a || b); b may be NULL. */
void qimg_hash2(enum qimg_hash_alg alg, const void *a, size_t alen, const void *b, size_t blen,
                uint8_t *out);

/* PBKDF2-HMAC-alg (RFC 8018 section 5.2): outlen bytes into out. */
void qimg_pbkdf2(enum qimg_hash_alg alg, const void *pw, size_t pwlen, const uint8_t *salt,
                 size_t saltlen, uint64_t iterations, uint8_t *out, size_t outlen);

/*
 * How many PBKDF2 iterations (outlen bytes of output) this machine does per
 * second of thread CPU time, measured as QEMU calibrates its iter-time.
 * 0 when the clock cannot be read.
 */
uint64_t qimg_pbkdf2_iters_per_sec(enum qimg_hash_alg alg, size_t outlen);

#endif
