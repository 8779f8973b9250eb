/* SPDX-License-Identifier: MIT */
/*
 * Block ciphers over nettle. Modes: ecb and ctr map to nettle directly, cbc
 * decrypts in bulk (one cipher call per request, so AES-NI pipelines), and
 * xts (IEEE 1619) is done here over bulk ECB: the tweaks of a whole request
 * are XORed in before and after one cipher call. Requests are whole blocks
 * (disk sectors), so no ciphertext stealing is needed.
 */
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/aes.h>
#include <nettle/cast128.h>
#include <nettle/cbc.h>
#include <nettle/ctr.h>
#include <nettle/memxor.h>
#include <nettle/serpent.h>
#include <nettle/twofish.h>

#include "crypto/cipher.h"
#include "util/mem.h"

union cipher_ctx {
    struct aes128_ctx aes128;
    struct aes192_ctx aes192;
    struct aes256_ctx aes256;
    struct serpent_ctx serpent;
    struct twofish_ctx twofish;
    struct cast128_ctx cast;
};

struct qimg_cipher {
    enum qimg_cipher_alg alg;
    enum qimg_cipher_mode mode;
    size_t block;
    nettle_cipher_func *enc, *dec;
    union cipher_ctx enc_ctx, dec_ctx; /* data key */
    union cipher_ctx tweak_ctx;        /* xts: the second key, encrypts tweaks */
};

static const struct {
    const char *name, *family;
    size_t key, block;
    bool supported;
} algs[QIMG_CIPHER__MAX] = {
    [QIMG_CIPHER_AES_128] = {"aes-128", "aes", 16, 16, true},
    [QIMG_CIPHER_AES_192] = {"aes-192", "aes", 24, 16, true},
    [QIMG_CIPHER_AES_256] = {"aes-256", "aes", 32, 16, true},
    [QIMG_CIPHER_DES] = {"des", NULL, 8, 8, false},
    [QIMG_CIPHER_3DES] = {"3des", NULL, 24, 8, false},
    [QIMG_CIPHER_CAST5_128] = {"cast5-128", "cast5", 16, 8, true},
    [QIMG_CIPHER_SERPENT_128] = {"serpent-128", "serpent", 16, 16, true},
    [QIMG_CIPHER_SERPENT_192] = {"serpent-192", "serpent", 24, 16, true},
    [QIMG_CIPHER_SERPENT_256] = {"serpent-256", "serpent", 32, 16, true},
    [QIMG_CIPHER_TWOFISH_128] = {"twofish-128", "twofish", 16, 16, true},
    [QIMG_CIPHER_TWOFISH_192] = {"twofish-192", "twofish", 24, 16, true},
    [QIMG_CIPHER_TWOFISH_256] = {"twofish-256", "twofish", 32, 16, true},
    [QIMG_CIPHER_SM4] = {"sm4", NULL, 16, 16, false},
};

static const char *const mode_names[QIMG_CIPHER_MODE__MAX] = {"ecb", "cbc", "xts", "ctr"};

int qimg_cipher_alg_parse(const char *name)
{
    for (int i = 0; i < QIMG_CIPHER__MAX; i++)
        if (!strcmp(name, algs[i].name))
            return i;
    return -1;
}

const char *qimg_cipher_alg_name(enum qimg_cipher_alg alg)
{
    return algs[alg].name;
}

int qimg_cipher_mode_parse(const char *name)
{
    for (int i = 0; i < QIMG_CIPHER_MODE__MAX; i++)
        if (!strcmp(name, mode_names[i]))
            return i;
    return -1;
}

const char *qimg_cipher_mode_name(enum qimg_cipher_mode mode)
{
    return mode_names[mode];
}

bool qimg_cipher_alg_supported(enum qimg_cipher_alg alg)
{
    return algs[alg].supported;
}

size_t qimg_cipher_key_len(enum qimg_cipher_alg alg)
{
    return algs[alg].key;
}

size_t qimg_cipher_block_len(enum qimg_cipher_alg alg)
{
    return algs[alg].block;
}

const char *qimg_cipher_family(enum qimg_cipher_alg alg)
{
    return algs[alg].family;
}

int qimg_cipher_alg_from_family(const char *family, size_t keylen)
{
    for (int i = 0; i < QIMG_CIPHER__MAX; i++)
        if (algs[i].family && !strcmp(algs[i].family, family) && algs[i].key == keylen)
            return i;
    return -1;
}

/* Key schedules for one key: encryption into enc, decryption into dec (when given). */
static void set_key(struct qimg_cipher *c, const uint8_t *key, union cipher_ctx *enc,
                    union cipher_ctx *dec)
{
    switch (c->alg) {
    case QIMG_CIPHER_AES_128:
        aes128_set_encrypt_key(&enc->aes128, key);
        if (dec)
            aes128_invert_key(&dec->aes128, &enc->aes128);
        c->enc = (nettle_cipher_func *)aes128_encrypt;
        c->dec = (nettle_cipher_func *)aes128_decrypt;
        return;
    case QIMG_CIPHER_AES_192:
        aes192_set_encrypt_key(&enc->aes192, key);
        if (dec)
            aes192_invert_key(&dec->aes192, &enc->aes192);
        c->enc = (nettle_cipher_func *)aes192_encrypt;
        c->dec = (nettle_cipher_func *)aes192_decrypt;
        return;
    case QIMG_CIPHER_AES_256:
        aes256_set_encrypt_key(&enc->aes256, key);
        if (dec)
            aes256_invert_key(&dec->aes256, &enc->aes256);
        c->enc = (nettle_cipher_func *)aes256_encrypt;
        c->dec = (nettle_cipher_func *)aes256_decrypt;
        return;
    case QIMG_CIPHER_CAST5_128:
        cast5_set_key(&enc->cast, algs[c->alg].key, key);
        c->enc = (nettle_cipher_func *)cast128_encrypt;
        c->dec = (nettle_cipher_func *)cast128_decrypt;
        break;
    case QIMG_CIPHER_SERPENT_128:
    case QIMG_CIPHER_SERPENT_192:
    case QIMG_CIPHER_SERPENT_256:
        serpent_set_key(&enc->serpent, algs[c->alg].key, key);
        c->enc = (nettle_cipher_func *)serpent_encrypt;
        c->dec = (nettle_cipher_func *)serpent_decrypt;
        break;
    default: /* twofish; the others are refused before */
        twofish_set_key(&enc->twofish, algs[c->alg].key, key);
        c->enc = (nettle_cipher_func *)twofish_encrypt;
        c->dec = (nettle_cipher_func *)twofish_decrypt;
        break;
    }
    /* One schedule serves both directions for these ciphers. */
    if (dec)
        *dec = *enc;
}

int qimg_cipher_new(struct qimg_cipher **out, enum qimg_cipher_alg alg,
                    enum qimg_cipher_mode mode, const uint8_t *key, size_t keylen,
                    struct qimg_error *err)
{
    if (!algs[alg].supported)
        return qimg_error_set(err, -ENOTSUP, "Unsupported cipher algorithm %s", algs[alg].name);
    if (mode == QIMG_CIPHER_MODE_XTS && algs[alg].block != 16)
        return qimg_error_set(err, -ENOTSUP, "Unsupported cipher mode %s", mode_names[mode]);
    size_t want = algs[alg].key * (mode == QIMG_CIPHER_MODE_XTS ? 2 : 1);
    if (keylen != want)
        return qimg_error_set(err, -EINVAL, "Cipher key length %zu should be %zu", keylen,
                              want);
    struct qimg_cipher *c = xcalloc(1, sizeof(*c));
    c->alg = alg;
    c->mode = mode;
    c->block = algs[alg].block;
    set_key(c, key, &c->enc_ctx, &c->dec_ctx);
    if (mode == QIMG_CIPHER_MODE_XTS)
        set_key(c, key + algs[alg].key, &c->tweak_ctx, NULL);
    *out = c;
    return 0;
}

void qimg_cipher_free(struct qimg_cipher *c)
{
    if (!c)
        return;
    memset(c, 0, sizeof(*c));
    free(c);
}

size_t qimg_cipher_get_block_len(const struct qimg_cipher *c)
{
    return c->block;
}

/* Multiply an XTS tweak by x in GF(2^128), little-endian as IEEE 1619 orders it. */
static void xts_next_tweak(uint8_t t[16])
{
    uint64_t lo, hi;
    memcpy(&lo, t, 8);
    memcpy(&hi, t + 8, 8);
    lo = le64toh(lo);
    hi = le64toh(hi);
    uint64_t carry = hi >> 63;
    hi = (hi << 1) | (lo >> 63);
    lo = (lo << 1) ^ (carry * 0x87);
    lo = htole64(lo);
    hi = htole64(hi);
    memcpy(t, &lo, 8);
    memcpy(t + 8, &hi, 8);
}

#define XTS_CHUNK 4096

static void xts_crypt(const struct qimg_cipher *c, const uint8_t *iv, uint8_t *buf, size_t len,
                      bool encrypt)
{
    uint8_t tweaks[XTS_CHUNK];
    uint8_t t[16];
    c->enc((const void *)&c->tweak_ctx, 16, t, iv);
    while (len) {
        size_t n = len < XTS_CHUNK ? len : XTS_CHUNK;
        for (size_t i = 0; i < n; i += 16) {
            memcpy(tweaks + i, t, 16);
            xts_next_tweak(t);
        }
        memxor(buf, tweaks, n);
        if (encrypt)
            c->enc((const void *)&c->enc_ctx, n, buf, buf);
        else
            c->dec((const void *)&c->dec_ctx, n, buf, buf);
        memxor(buf, tweaks, n);
        buf += n;
        len -= n;
    }
}

void qimg_cipher_encrypt(const struct qimg_cipher *c, const uint8_t *iv, void *buf, size_t len)
{
    uint8_t ivbuf[16];
    switch (c->mode) {
    case QIMG_CIPHER_MODE_ECB:
        c->enc((const void *)&c->enc_ctx, len, buf, buf);
        break;
    case QIMG_CIPHER_MODE_CBC:
        memcpy(ivbuf, iv, c->block);
        cbc_encrypt((const void *)&c->enc_ctx, c->enc, c->block, ivbuf, len, buf, buf);
        break;
    case QIMG_CIPHER_MODE_CTR:
        memcpy(ivbuf, iv, c->block);
        ctr_crypt((const void *)&c->enc_ctx, c->enc, c->block, ivbuf, len, buf, buf);
        break;
    default:
        xts_crypt(c, iv, buf, len, true);
        break;
    }
}

/* CBC decryption in bulk: P_i = D(C_i) ^ C_{i-1}, C_{-1} = IV. */
static void cbc_decrypt_bulk(const struct qimg_cipher *c, const uint8_t *iv, uint8_t *buf,
                             size_t len)
{
    uint8_t prev[XTS_CHUNK + 16];
    memcpy(prev, iv, c->block);
    while (len) {
        size_t n = len < XTS_CHUNK ? len : XTS_CHUNK;
        memcpy(prev + c->block, buf, n);
        c->dec((const void *)&c->dec_ctx, n, buf, buf);
        memxor(buf, prev, n);
        memcpy(prev, prev + n, c->block);
        buf += n;
        len -= n;
    }
}

void qimg_cipher_decrypt(const struct qimg_cipher *c, const uint8_t *iv, void *buf, size_t len)
{
    uint8_t ivbuf[16];
    switch (c->mode) {
    case QIMG_CIPHER_MODE_ECB:
        c->dec((const void *)&c->dec_ctx, len, buf, buf);
        break;
    case QIMG_CIPHER_MODE_CBC:
        cbc_decrypt_bulk(c, iv, buf, len);
        break;
    case QIMG_CIPHER_MODE_CTR:
        memcpy(ivbuf, iv, c->block);
        ctr_crypt((const void *)&c->enc_ctx, c->enc, c->block, ivbuf, len, buf, buf);
        break;
    default:
        xts_crypt(c, iv, buf, len, false);
        break;
    }
}
