/* SPDX-License-Identifier: MIT */
/*
 * Block ciphers and modes as QEMU names them (QCryptoCipherAlgo and
 * QCryptoCipherMode): aes-128/192/256, serpent-*, twofish-*, cast5-128 in
 * ecb, cbc, ctr or xts mode, over nettle. A cipher holds only key schedules;
 * the IV is an argument of every call, so one cipher serves any number of
 * threads at once.
 */
#ifndef QIMG_CRYPTO_CIPHER_H
#define QIMG_CRYPTO_CIPHER_H

#include <stddef.h>
#include <stdint.h>

#include "qimg/error.h"

enum qimg_cipher_alg {
    QIMG_CIPHER_AES_128,
    QIMG_CIPHER_AES_192,
    QIMG_CIPHER_AES_256,
    QIMG_CIPHER_DES,
    QIMG_CIPHER_3DES,
    QIMG_CIPHER_CAST5_128,
    QIMG_CIPHER_SERPENT_128,
    QIMG_CIPHER_SERPENT_192,
    QIMG_CIPHER_SERPENT_256,
    QIMG_CIPHER_TWOFISH_128,
    QIMG_CIPHER_TWOFISH_192,
    QIMG_CIPHER_TWOFISH_256,
    QIMG_CIPHER_SM4,
    QIMG_CIPHER__MAX,
};

enum qimg_cipher_mode {
    QIMG_CIPHER_MODE_ECB,
    QIMG_CIPHER_MODE_CBC,
    QIMG_CIPHER_MODE_XTS,
    QIMG_CIPHER_MODE_CTR,
    QIMG_CIPHER_MODE__MAX,
};

/* QAPI names ("aes-256", "cbc"); -1 when unknown. */
int qimg_cipher_alg_parse(const char *name);
const char *qimg_cipher_alg_name(enum qimg_cipher_alg alg);
int qimg_cipher_mode_parse(const char *name);
const char *qimg_cipher_mode_name(enum qimg_cipher_mode mode);

/* Does nettle give us this algorithm (des, 3des and sm4: no)? */
bool qimg_cipher_alg_supported(enum qimg_cipher_alg alg);
/* Key length of one cipher instance; xts needs twice that. */
size_t qimg_cipher_key_len(enum qimg_cipher_alg alg);
size_t qimg_cipher_block_len(enum qimg_cipher_alg alg);
/* Family name as LUKS headers spell it ("aes", "serpent", "twofish", "cast5"), or NULL. */
const char *qimg_cipher_family(enum qimg_cipher_alg alg);
/* The algorithm of family with a key of keylen bytes, or -1. */
int qimg_cipher_alg_from_family(const char *family, size_t keylen);

struct qimg_cipher;

/*
 * A cipher keyed with key (qimg_cipher_key_len bytes, twice that for xts).
 * Errors in QEMU's words.
 */
int qimg_cipher_new(struct qimg_cipher **out, enum qimg_cipher_alg alg,
                    enum qimg_cipher_mode mode, const uint8_t *key, size_t keylen,
                    struct qimg_error *err);
void qimg_cipher_free(struct qimg_cipher *c);
size_t qimg_cipher_get_block_len(const struct qimg_cipher *c);

/*
 * Encrypt or decrypt len bytes in place (a multiple of the block length);
 * iv has the block length and is not modified (NULL for ecb).
 */
void qimg_cipher_encrypt(const struct qimg_cipher *c, const uint8_t *iv, void *buf, size_t len);
void qimg_cipher_decrypt(const struct qimg_cipher *c, const uint8_t *iv, void *buf, size_t len);

#endif
