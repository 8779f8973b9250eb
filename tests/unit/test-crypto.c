/* SPDX-License-Identifier: MIT */
/*
 * The crypto layer: published test vectors for PBKDF2 (RFC 6070), XTS-AES
 * (IEEE 1619 annex B, vectors 1 and 2) and AES-CBC (NIST SP 800-38A F.2.1),
 * round trips of every mode and IV generator, the anti-forensic splitter, and
 * a LUKS volume created and unlocked in memory (also with a hostile header).
 */
#include <stdlib.h>
#include <string.h>

#include "crypto/afsplit.h"
#include "crypto/cipher.h"
#include "crypto/hash.h"
#include "crypto/luks.h"
#include "crypto/sector.h"
#include "harness.h"

static void unhex(const char *hex, uint8_t *out)
{
    for (size_t i = 0; hex[2 * i]; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static bool equals_hex(const uint8_t *buf, const char *hex)
{
    uint8_t want[256];
    unhex(hex, want);
    return memcmp(buf, want, strlen(hex) / 2) == 0;
}

static void test_pbkdf2_rfc6070(void)
{
    uint8_t out[20];
    qimg_pbkdf2(QIMG_HASH_SHA1, "password", 8, (const uint8_t *)"salt", 4, 1, out, 20);
    CHECK(equals_hex(out, "0c60c80f961f0e71f3a9b524af6012062fe037a6"));
    qimg_pbkdf2(QIMG_HASH_SHA1, "password", 8, (const uint8_t *)"salt", 4, 4096, out, 20);
    CHECK(equals_hex(out, "4b007901b765489abead49d926f721d065a429c1"));
}

static void test_xts_ieee1619(void)
{
    struct qimg_cipher *c = NULL;
    struct qimg_error err = {0};
    uint8_t key[32] = {0}, iv[16] = {0}, buf[32] = {0};
    CHECK(qimg_cipher_new(&c, QIMG_CIPHER_AES_128, QIMG_CIPHER_MODE_XTS, key, 32, &err) == 0);
    qimg_cipher_encrypt(c, iv, buf, 32);
    CHECK(equals_hex(buf, "917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e"));
    qimg_cipher_decrypt(c, iv, buf, 32);
    CHECK(buf[0] == 0 && !memcmp(buf, buf + 1, 31));
    qimg_cipher_free(c);

    memset(key, 0x11, 16);
    memset(key + 16, 0x22, 16);
    memset(iv, 0, sizeof(iv));
    memset(iv, 0x33, 5); /* data unit 0x3333333333, little-endian */
    memset(buf, 0x44, 32);
    CHECK(qimg_cipher_new(&c, QIMG_CIPHER_AES_128, QIMG_CIPHER_MODE_XTS, key, 32, &err) == 0);
    qimg_cipher_encrypt(c, iv, buf, 32);
    CHECK(equals_hex(buf, "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0"));
    qimg_cipher_free(c);
}

static void test_cbc_sp800_38a(void)
{
    struct qimg_cipher *c = NULL;
    struct qimg_error err = {0};
    uint8_t key[16], iv[16], buf[32];
    unhex("2b7e151628aed2a6abf7158809cf4f3c", key);
    unhex("000102030405060708090a0b0c0d0e0f", iv);
    unhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51", buf);
    CHECK(qimg_cipher_new(&c, QIMG_CIPHER_AES_128, QIMG_CIPHER_MODE_CBC, key, 16, &err) == 0);
    qimg_cipher_encrypt(c, iv, buf, 32);
    CHECK(equals_hex(buf, "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"));
    qimg_cipher_decrypt(c, iv, buf, 32);
    CHECK(equals_hex(buf, "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"));
    qimg_cipher_free(c);
}

/* Every algorithm, mode and IV generator decrypts what it encrypted, and changes the data. */
static void test_sector_round_trips(void)
{
    uint8_t key[64], plain[4096], buf[4096];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof(plain); i++)
        plain[i] = (uint8_t)(i * 13);
    for (int a = 0; a < QIMG_CIPHER__MAX; a++) {
        if (!qimg_cipher_alg_supported(a))
            continue;
        for (int m = 0; m < QIMG_CIPHER_MODE__MAX; m++) {
            if (m == QIMG_CIPHER_MODE_XTS && qimg_cipher_block_len(a) != 16)
                continue;
            for (int iv = 0; iv < QIMG_IVGEN__MAX; iv++) {
                struct qimg_sector_crypt *sc = NULL;
                struct qimg_error err = {0};
                /* ESSIV keys its cipher with the digest: cast5-128 needs a 16-byte one. */
                enum qimg_hash_alg h = a == QIMG_CIPHER_CAST5_128 ? QIMG_HASH_MD5
                                                                  : QIMG_HASH_SHA256;
                size_t klen = qimg_cipher_key_len(a) * (m == QIMG_CIPHER_MODE_XTS ? 2 : 1);
                int ret = qimg_sector_crypt_new(&sc, a, m, iv, h, key, klen, &err);
                CHECK(ret == 0);
                if (ret < 0)
                    continue;
                memcpy(buf, plain, sizeof(buf));
                qimg_sector_encrypt(sc, 77, buf, sizeof(buf));
                CHECK(memcmp(buf, plain, sizeof(buf)) != 0);
                /* Sectors differ even with equal plaintext: the IV changes per sector. */
                qimg_sector_decrypt(sc, 77, buf, sizeof(buf));
                CHECK(memcmp(buf, plain, sizeof(buf)) == 0);
                qimg_sector_crypt_free(sc);
            }
        }
    }
}

static void test_afsplit_round_trip(void)
{
    uint8_t key[64], back[64];
    uint8_t *split = malloc(sizeof(key) * 4000);
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)i;
    CHECK(qimg_afsplit(QIMG_HASH_SHA256, key, sizeof(key), 4000, split) == 0);
    qimg_afmerge(QIMG_HASH_SHA256, split, sizeof(key), 4000, back);
    CHECK(memcmp(key, back, sizeof(key)) == 0);
    split[100] ^= 1; /* one flipped bit anywhere loses the key */
    qimg_afmerge(QIMG_HASH_SHA256, split, sizeof(key), 4000, back);
    CHECK(memcmp(key, back, sizeof(key)) != 0);
    free(split);
}

/* A LUKS header area in memory. */
struct mem_area {
    uint8_t *buf;
    size_t len;
};

static int mem_read(void *opaque, uint64_t off, void *buf, size_t len)
{
    struct mem_area *m = opaque;
    if (off > m->len || len > m->len - off)
        return -5;
    memcpy(buf, m->buf + off, len);
    return 0;
}

static int mem_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    struct mem_area *m = opaque;
    if (off > m->len || len > m->len - off)
        return -5;
    memcpy(m->buf + off, buf, len);
    return 0;
}

static void test_luks_create_unlock(void)
{
    struct qimg_luks_params p;
    qimg_luks_params_default(&p);
    p.iter_time_ms = 1;
    struct mem_area m = {.len = qimg_luks_header_area_len(&p)};
    CHECK(m.len == 2068480); /* qemu-img's payload offset for aes-256-xts */
    m.buf = calloc(1, m.len);
    struct qimg_luks_io io = {&m, mem_read, mem_write};
    struct qimg_luks *made = NULL, *opened = NULL;
    struct qimg_error err = {0};
    CHECK(qimg_luks_create(&made, &p, (const uint8_t *)"pw", 2, &io, &err) == 0);
    CHECK(qimg_luks_parse(m.buf, &opened, &err) == 0);
    if (made && opened) {
        CHECK(qimg_luks_payload_offset(opened) == m.len);
        CHECK(qimg_luks_unlock(opened, (const uint8_t *)"px", 2, &io, &err) < 0);
        CHECK_STR(err.msg, "Invalid password, cannot unlock any keyslot");
        err = (struct qimg_error){0};
        CHECK(qimg_luks_unlock(opened, (const uint8_t *)"pw", 2, &io, &err) == 0);
        CHECK(opened->master_key && !memcmp(opened->master_key, made->master_key, 64));
    }
    qimg_luks_free(made);
    qimg_luks_free(opened);

    /* Hostile: slot 0's key material starting inside the header. */
    m.buf[208 + 40] = m.buf[208 + 41] = m.buf[208 + 42] = 0;
    m.buf[208 + 43] = 1;
    opened = NULL;
    err = (struct qimg_error){0};
    CHECK(qimg_luks_parse(m.buf, &opened, &err) < 0);
    CHECK_STR(err.msg, "Keyslot 0 is overlapping with the LUKS header");
    CHECK(opened == NULL);
    free(m.buf);
}

int main(void)
{
    static const struct harness_test tests[] = {
        {"pbkdf2_rfc6070", test_pbkdf2_rfc6070},
        {"xts_ieee1619", test_xts_ieee1619},
        {"cbc_sp800_38a", test_cbc_sp800_38a},
        {"sector_round_trips", test_sector_round_trips},
        {"afsplit_round_trip", test_afsplit_round_trip},
        {"luks_create_unlock", test_luks_create_unlock},
        {NULL, NULL},
    };
    return harness_run(tests);
}
