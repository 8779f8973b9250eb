/* SPDX-License-Identifier: MIT */
/*
 * Sector encryption as dm-crypt and QEMU do it: each 512-byte sector is
 * encrypted on its own, with an IV made from its sector number by an IV
 * generator (plain, plain64, essiv:HASH). Shared by LUKS key material and the
 * data of luks and qcow2 images; read-only once made, so threads share one.
 */
#ifndef QIMG_CRYPTO_SECTOR_H
#define QIMG_CRYPTO_SECTOR_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/cipher.h"
#include "crypto/hash.h"
#include "qimg/error.h"

#define QIMG_CRYPTO_SECTOR 512

enum qimg_ivgen_alg {
    QIMG_IVGEN_PLAIN,
    QIMG_IVGEN_PLAIN64,
    QIMG_IVGEN_ESSIV,
    QIMG_IVGEN__MAX,
};

int qimg_ivgen_parse(const char *name); /* -1 when unknown */
const char *qimg_ivgen_name(enum qimg_ivgen_alg alg);

/*
 * The ESSIV cipher for alg and hash: the same family keyed with the digest
 * (aes-256 for sha256). Errors as QEMU words them.
 */
int qimg_essiv_cipher(enum qimg_cipher_alg alg, enum qimg_hash_alg hash,
                      enum qimg_cipher_alg *out, struct qimg_error *err);

struct qimg_sector_crypt;

int qimg_sector_crypt_new(struct qimg_sector_crypt **out, enum qimg_cipher_alg alg,
                          enum qimg_cipher_mode mode, enum qimg_ivgen_alg ivgen,
                          enum qimg_hash_alg ivgen_hash, const uint8_t *key, size_t keylen,
                          struct qimg_error *err);
void qimg_sector_crypt_free(struct qimg_sector_crypt *sc);

/* len bytes in place (a multiple of 512) from sector number sector on. */
void qimg_sector_encrypt(const struct qimg_sector_crypt *sc, uint64_t sector, void *buf,
                         size_t len);
void qimg_sector_decrypt(const struct qimg_sector_crypt *sc, uint64_t sector, void *buf,
                         size_t len);

/* Bytes a qimg_crypto_bounce_get() buffer holds. */
#define QIMG_CRYPTO_BOUNCE (1u << 20)

/*
 * A QIMG_CRYPTO_BOUNCE-byte buffer, 4 KiB aligned, to encrypt a write out of
 * place; give it back with qimg_crypto_bounce_put(). Each thread keeps one
 * until it exits, so copy workers reuse theirs instead of faulting in a fresh
 * MiB per request; a nested request (an encrypted node over another) gets a
 * buffer of its own. NULL: out of memory.
 */
uint8_t *qimg_crypto_bounce_get(void);
void qimg_crypto_bounce_put(uint8_t *buf);

#endif
