/* SPDX-License-Identifier: MIT */
/* Sector encryption with IV generators (luks1-facts.md, "Data encryption"). */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/sector.h"
#include "util/mem.h"

struct qimg_sector_crypt {
    struct qimg_cipher *cipher;
    enum qimg_ivgen_alg ivgen;
    struct qimg_cipher *essiv; /* ECB cipher keyed by HASH(key), essiv only */
    size_t iv_len;
};

static const char *const ivgen_names[QIMG_IVGEN__MAX] = {"plain", "plain64", "essiv"};

int qimg_ivgen_parse(const char *name)
{
    for (int i = 0; i < QIMG_IVGEN__MAX; i++)
        if (!strcmp(name, ivgen_names[i]))
            return i;
    return -1;
}

const char *qimg_ivgen_name(enum qimg_ivgen_alg alg)
{
    return ivgen_names[alg];
}

int qimg_essiv_cipher(enum qimg_cipher_alg alg, enum qimg_hash_alg hash,
                      enum qimg_cipher_alg *out, struct qimg_error *err)
{
    size_t dlen = qimg_hash_digest_size(hash);
    const char *family = qimg_cipher_family(alg);
    static const struct {
        const char *family, *label;
    } families[] = {{"aes", "AES"}, {"serpent", "Serpent"}, {"twofish", "Twofish"}};
    for (size_t i = 0; family && i < sizeof(families) / sizeof(families[0]); i++) {
        if (strcmp(family, families[i].family))
            continue;
        int a = qimg_cipher_alg_from_family(family, dlen);
        if (a < 0)
            return qimg_error_set(err, -EINVAL, "No %s cipher with key size %zu available",
                                  families[i].label, dlen);
        *out = (enum qimg_cipher_alg)a;
        return 0;
    }
    if (qimg_cipher_key_len(alg) != dlen)
        return qimg_error_set(err, -EINVAL, "Cipher %s not supported with essiv",
                              qimg_cipher_alg_name(alg));
    *out = alg;
    return 0;
}

int qimg_sector_crypt_new(struct qimg_sector_crypt **out, enum qimg_cipher_alg alg,
                          enum qimg_cipher_mode mode, enum qimg_ivgen_alg ivgen,
                          enum qimg_hash_alg ivgen_hash, const uint8_t *key, size_t keylen,
                          struct qimg_error *err)
{
    struct qimg_sector_crypt *sc = xcalloc(1, sizeof(*sc));
    sc->ivgen = ivgen;
    sc->iv_len = qimg_cipher_block_len(alg);
    int ret = qimg_cipher_new(&sc->cipher, alg, mode, key, keylen, err);
    if (ret == 0 && ivgen == QIMG_IVGEN_ESSIV) {
        enum qimg_cipher_alg ealg;
        uint8_t salt[QIMG_HASH_MAX_DIGEST];
        ret = qimg_essiv_cipher(alg, ivgen_hash, &ealg, err);
        if (ret == 0) {
            qimg_hash2(ivgen_hash, key, keylen, NULL, 0, salt);
            ret = qimg_cipher_new(&sc->essiv, ealg, QIMG_CIPHER_MODE_ECB, salt,
                                  qimg_hash_digest_size(ivgen_hash), err);
            memset(salt, 0, sizeof(salt));
        }
    }
    if (ret < 0) {
        qimg_sector_crypt_free(sc);
        return ret;
    }
    *out = sc;
    return 0;
}

void qimg_sector_crypt_free(struct qimg_sector_crypt *sc)
{
    if (!sc)
        return;
    qimg_cipher_free(sc->cipher);
    qimg_cipher_free(sc->essiv);
    free(sc);
}

static void make_iv(const struct qimg_sector_crypt *sc, uint64_t sector, uint8_t *iv)
{
    memset(iv, 0, sc->iv_len);
    if (sc->ivgen == QIMG_IVGEN_PLAIN) {
        uint32_t le = htole32((uint32_t)sector);
        memcpy(iv, &le, sc->iv_len < 4 ? sc->iv_len : 4);
        return;
    }
    uint64_t le = htole64(sector);
    memcpy(iv, &le, sc->iv_len < 8 ? sc->iv_len : 8);
    if (sc->essiv)
        qimg_cipher_encrypt(sc->essiv, NULL, iv, sc->iv_len);
}

static void crypt_sectors(const struct qimg_sector_crypt *sc, uint64_t sector, uint8_t *buf,
                          size_t len, bool encrypt)
{
    uint8_t iv[16];
    for (size_t pos = 0; pos < len; pos += QIMG_CRYPTO_SECTOR, sector++) {
        make_iv(sc, sector, iv);
        if (encrypt)
            qimg_cipher_encrypt(sc->cipher, iv, buf + pos, QIMG_CRYPTO_SECTOR);
        else
            qimg_cipher_decrypt(sc->cipher, iv, buf + pos, QIMG_CRYPTO_SECTOR);
    }
}

void qimg_sector_encrypt(const struct qimg_sector_crypt *sc, uint64_t sector, void *buf,
                         size_t len)
{
    crypt_sectors(sc, sector, buf, len, true);
}

void qimg_sector_decrypt(const struct qimg_sector_crypt *sc, uint64_t sector, void *buf,
                         size_t len)
{
    crypt_sectors(sc, sector, buf, len, false);
}

static pthread_key_t bounce_key;
static pthread_once_t bounce_once = PTHREAD_ONCE_INIT;
static _Thread_local bool bounce_busy;

static void bounce_key_init(void)
{
    if (pthread_key_create(&bounce_key, free) != 0)
        abort(); /* only when the process is out of keys */
}

uint8_t *qimg_crypto_bounce_get(void)
{
    if (bounce_busy)
        return qimg_alloc_aligned(QIMG_CRYPTO_BOUNCE);
    pthread_once(&bounce_once, bounce_key_init);
    uint8_t *b = pthread_getspecific(bounce_key);
    if (!b) {
        b = qimg_alloc_aligned(QIMG_CRYPTO_BOUNCE);
        if (!b || pthread_setspecific(bounce_key, b) != 0) {
            free(b);
            return NULL;
        }
    }
    bounce_busy = true;
    return b;
}

void qimg_crypto_bounce_put(uint8_t *buf)
{
    if (buf && buf == pthread_getspecific(bounce_key))
        bounce_busy = false;
    else
        free(buf);
}
