/* SPDX-License-Identifier: MIT */
/*
 * LUKS1 keys: unlocking a key slot with a passphrase, and making a new
 * volume (master key, its digest, slot 0) the way QEMU lays it out
 * (luks1-facts.md, "Keys"; key material aligned to 4 KiB as QEMU and
 * cryptsetup place it).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/afsplit.h"
#include "crypto/luks.h"
#include "util/mem.h"

#define LUKS_ALIGN 4096
#define LUKS_MIN_ITERS 1000
/*
 * PBKDF2 iteration counts come from the image: QEMU runs whatever it reads,
 * so a hostile header with 2^32 - 1 iterations keeps it busy for a quarter
 * of an hour per slot. We refuse counts above 2^26 (about 15 s of SHA-256
 * on a 2020s core; honest images, calibrated to 2 s by default, stay far
 * below it even on CPUs with SHA extensions).
 */
#define LUKS_MAX_ITERS (1u << 26)

size_t qimg_luks_split_len(uint32_t key_bytes)
{
    return ((size_t)key_bytes * QIMG_LUKS_STRIPES + 511) / 512 * 512;
}

static uint64_t slot_area_len(size_t key_bytes)
{
    return ((uint64_t)key_bytes * QIMG_LUKS_STRIPES + LUKS_ALIGN - 1) / LUKS_ALIGN * LUKS_ALIGN;
}

static size_t master_key_len(const struct qimg_luks_params *p)
{
    size_t n = qimg_cipher_key_len(p->cipher_alg);
    return p->cipher_mode == QIMG_CIPHER_MODE_XTS ? 2 * n : n;
}

uint64_t qimg_luks_header_area_len(const struct qimg_luks_params *p)
{
    return LUKS_ALIGN + QIMG_LUKS_NUM_SLOTS * slot_area_len(master_key_len(p));
}

int qimg_luks_params_check(const struct qimg_luks_params *p, struct qimg_error *err)
{
    if (!qimg_cipher_alg_supported(p->cipher_alg) || !qimg_cipher_family(p->cipher_alg))
        return qimg_error_set(err, -ENOTSUP, "Algorithm '%s' not supported",
                              qimg_cipher_alg_name(p->cipher_alg));
    if (p->cipher_mode == QIMG_CIPHER_MODE_XTS && qimg_cipher_block_len(p->cipher_alg) != 16)
        return qimg_error_set(err, -ENOTSUP, "Unsupported cipher mode %s",
                              qimg_cipher_mode_name(p->cipher_mode));
    if (p->ivgen_alg == QIMG_IVGEN_ESSIV) {
        enum qimg_cipher_alg ealg;
        return qimg_essiv_cipher(p->cipher_alg, p->ivgen_hash, &ealg, err);
    }
    return 0;
}

static int payload_crypt(struct qimg_luks *l, const uint8_t *key, struct qimg_sector_crypt **out,
                         struct qimg_error *err)
{
    const struct qimg_luks_params *p = &l->params;
    return qimg_sector_crypt_new(out, p->cipher_alg, p->cipher_mode, p->ivgen_alg, p->ivgen_hash,
                                 key, l->hdr.key_bytes, err);
}

/* Is key the master key? Compare its PBKDF2 digest with the header's. */
bool qimg_luks_master_key_matches(const struct qimg_luks *l, const uint8_t *key)
{
    uint8_t digest[QIMG_LUKS_DIGEST_LEN];
    qimg_pbkdf2(l->params.hash, key, l->hdr.key_bytes, l->hdr.mk_digest_salt,
                QIMG_LUKS_SALT_LEN, l->hdr.mk_digest_iterations, digest, sizeof(digest));
    return memcmp(digest, l->hdr.mk_digest, sizeof(digest)) == 0;
}

/* Decrypt slot i's key material with the passphrase and merge it: a candidate master key. */
int qimg_luks_slot_candidate(struct qimg_luks *l, int i, const uint8_t *pw, size_t pwlen,
                             const struct qimg_luks_io *io, uint8_t *key,
                             struct qimg_error *err)
{
    const struct qimg_luks_slot *s = &l->hdr.slots[i];
    if (s->iterations > LUKS_MAX_ITERS)
        return qimg_error_set(err, -EINVAL, "Keyslot %d iteration count %u is too large "
                              "(at most %u)", i, s->iterations, LUKS_MAX_ITERS);
    if (l->hdr.mk_digest_iterations > LUKS_MAX_ITERS)
        return qimg_error_set(err, -EINVAL, "LUKS key iteration count %u is too large "
                              "(at most %u)", l->hdr.mk_digest_iterations, LUKS_MAX_ITERS);
    size_t klen = l->hdr.key_bytes, mlen = qimg_luks_split_len(l->hdr.key_bytes);
    uint8_t *slot_key = xmalloc(klen);
    uint8_t *material = xmalloc(mlen);
    struct qimg_sector_crypt *sc = NULL;
    qimg_pbkdf2(l->params.hash, pw, pwlen, s->salt, QIMG_LUKS_SALT_LEN, s->iterations, slot_key,
                klen);
    int ret = io->read(io->opaque, (uint64_t)s->key_offset * 512, material, mlen);
    if (ret < 0) {
        qimg_error_errno(err, ret, "Unable to read key slot %d", i);
        goto out;
    }
    ret = payload_crypt(l, slot_key, &sc, err);
    if (ret < 0)
        goto out;
    qimg_sector_decrypt(sc, 0, material, mlen);
    qimg_afmerge(l->params.hash, material, klen, s->stripes, key);
out:
    qimg_sector_crypt_free(sc);
    memset(slot_key, 0, klen);
    memset(material, 0, mlen);
    free(slot_key);
    free(material);
    return ret;
}

int qimg_luks_unlock(struct qimg_luks *l, const uint8_t *pw, size_t pwlen,
                     const struct qimg_luks_io *io, struct qimg_error *err)
{
    uint8_t *key = xmalloc(l->hdr.key_bytes);
    int ret = -EACCES;
    for (int i = 0; i < QIMG_LUKS_NUM_SLOTS; i++) {
        if (l->hdr.slots[i].active != QIMG_LUKS_SLOT_ACTIVE)
            continue;
        ret = qimg_luks_slot_candidate(l, i, pw, pwlen, io, key, err);
        if (ret < 0)
            break;
        if (qimg_luks_master_key_matches(l, key)) {
            ret = payload_crypt(l, key, &l->crypt, err);
            if (ret == 0) {
                l->master_key = key;
                return 0;
            }
            break;
        }
        ret = -EACCES;
    }
    if (ret == -EACCES)
        qimg_error_set(err, ret, "Invalid password, cannot unlock any keyslot");
    memset(key, 0, l->hdr.key_bytes);
    free(key);
    return ret;
}

/* Iterations for ms milliseconds of PBKDF2 producing outlen bytes, divided by div. */
static int calibrate(enum qimg_hash_alg hash, size_t outlen, uint64_t ms, unsigned div,
                     uint32_t *out, struct qimg_error *err)
{
    uint64_t ips = qimg_pbkdf2_iters_per_sec(hash, outlen);
    if (!ips)
        return qimg_error_set(err, -EINVAL, "Unable to get accurate CPU usage");
    if (ms && ips > UINT64_MAX / ms)
        return qimg_error_set(err, -ERANGE,
                              "PBKDF iterations %llu too large to scale: Numerical result out of "
                              "range",
                              (unsigned long long)ips);
    uint64_t iters = ips * ms / 1000 / div;
    if (iters > UINT32_MAX)
        return qimg_error_set(err, -ERANGE, "PBKDF iterations %llu larger than %u",
                              (unsigned long long)iters, UINT32_MAX);
    /* Never write a count that open would refuse (LUKS_MAX_ITERS), in qemu's words. */
    if (iters > LUKS_MAX_ITERS)
        return qimg_error_set(err, -ERANGE, "PBKDF iterations %llu larger than %u",
                              (unsigned long long)iters, LUKS_MAX_ITERS);
    *out = iters < LUKS_MIN_ITERS ? LUKS_MIN_ITERS : (uint32_t)iters;
    return 0;
}

static void make_uuid(char *out)
{
    uint8_t u[16];
    qimg_random_bytes(u, sizeof(u));
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* RFC 4122 version 4, random */
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    snprintf(out, 41,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
             u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
             u[15]);
}

static void fill_spec(struct qimg_luks_header *h, const struct qimg_luks_params *p)
{
    snprintf(h->cipher_name, sizeof(h->cipher_name), "%s", qimg_cipher_family(p->cipher_alg));
    /* QEMU names the IV hash whenever one was chosen, even for plain IVs ("xts-plain:sha1"). */
    if (p->has_ivgen_hash)
        snprintf(h->cipher_mode, sizeof(h->cipher_mode), "%s-%s:%s",
                 qimg_cipher_mode_name(p->cipher_mode), qimg_ivgen_name(p->ivgen_alg),
                 qimg_hash_name(p->ivgen_hash));
    else
        snprintf(h->cipher_mode, sizeof(h->cipher_mode), "%s-%s",
                 qimg_cipher_mode_name(p->cipher_mode), qimg_ivgen_name(p->ivgen_alg));
    snprintf(h->hash_spec, sizeof(h->hash_spec), "%s", qimg_hash_name(p->hash));
}

/* Key slot i keyed by the passphrase: salt, iterations, split and encrypted master key. */
int qimg_luks_slot_write(struct qimg_luks *l, int i, const uint8_t *pw, size_t pwlen,
                         const struct qimg_luks_io *io, struct qimg_error *err)
{
    struct qimg_luks_slot *s = &l->hdr.slots[i];
    size_t klen = l->hdr.key_bytes, mlen = qimg_luks_split_len(l->hdr.key_bytes);
    uint8_t *slot_key = xmalloc(klen);
    uint8_t *material = xcalloc(1, mlen);
    struct qimg_sector_crypt *sc = NULL;
    int ret = calibrate(l->params.hash, klen, l->params.iter_time_ms, 1, &s->iterations, err);
    if (ret == 0 && (ret = qimg_random_bytes(s->salt, sizeof(s->salt))) < 0)
        qimg_error_errno(err, ret, "Unable to generate random data");
    if (ret < 0)
        goto out;
    qimg_pbkdf2(l->params.hash, pw, pwlen, s->salt, QIMG_LUKS_SALT_LEN, s->iterations, slot_key,
                klen);
    ret = qimg_afsplit(l->params.hash, l->master_key, klen, QIMG_LUKS_STRIPES, material);
    if (ret < 0) {
        qimg_error_errno(err, ret, "Unable to generate random data");
        goto out;
    }
    ret = payload_crypt(l, slot_key, &sc, err);
    if (ret < 0)
        goto out;
    qimg_sector_encrypt(sc, 0, material, mlen);
    ret = io->write(io->opaque, (uint64_t)s->key_offset * 512, material, mlen);
    if (ret < 0) {
        qimg_error_errno(err, ret, "Cannot write to keyslot %d", i);
        goto out;
    }
    s->active = QIMG_LUKS_SLOT_ACTIVE;
out:
    qimg_sector_crypt_free(sc);
    memset(slot_key, 0, klen);
    memset(material, 0, mlen);
    free(slot_key);
    free(material);
    return ret;
}

/* Master key, its digest, the UUID and the slot layout. */
static int init_header(struct qimg_luks *l, struct qimg_error *err)
{
    struct qimg_luks_header *h = &l->hdr;
    const struct qimg_luks_params *p = &l->params;
    fill_spec(h, p);
    h->key_bytes = (uint32_t)master_key_len(p);
    l->master_key = xmalloc(h->key_bytes);
    int ret = qimg_random_bytes(l->master_key, h->key_bytes);
    if (ret == 0)
        ret = qimg_random_bytes(h->mk_digest_salt, sizeof(h->mk_digest_salt));
    if (ret < 0)
        return qimg_error_errno(err, ret, "Unable to generate random data");
    /* The digest gets an eighth of iter-time, as QEMU and cryptsetup do. */
    ret = calibrate(p->hash, QIMG_LUKS_DIGEST_LEN, p->iter_time_ms, 8, &h->mk_digest_iterations,
                    err);
    if (ret < 0)
        return ret;
    qimg_pbkdf2(p->hash, l->master_key, h->key_bytes, h->mk_digest_salt, QIMG_LUKS_SALT_LEN,
                h->mk_digest_iterations, h->mk_digest, QIMG_LUKS_DIGEST_LEN);
    make_uuid(h->uuid);
    uint64_t area = slot_area_len(h->key_bytes) / 512;
    for (int i = 0; i < QIMG_LUKS_NUM_SLOTS; i++) {
        h->slots[i].active = QIMG_LUKS_SLOT_INACTIVE;
        h->slots[i].stripes = QIMG_LUKS_STRIPES;
        h->slots[i].key_offset = (uint32_t)(LUKS_ALIGN / 512 + i * area);
    }
    h->payload_offset = (uint32_t)(qimg_luks_header_area_len(p) / 512);
    return payload_crypt(l, l->master_key, &l->crypt, err);
}

int qimg_luks_create(struct qimg_luks **out, const struct qimg_luks_params *p, const uint8_t *pw,
                     size_t pwlen, const struct qimg_luks_io *io, struct qimg_error *err)
{
    int ret = qimg_luks_params_check(p, err);
    if (ret < 0)
        return ret;
    struct qimg_luks *l = xcalloc(1, sizeof(*l));
    l->params = *p;
    if (l->params.ivgen_alg == QIMG_IVGEN_ESSIV)
        l->params.has_ivgen_hash = true;
    ret = init_header(l, err);
    if (ret == 0)
        ret = qimg_luks_slot_write(l, 0, pw, pwlen, io, err);
    if (ret == 0) {
        uint8_t buf[QIMG_LUKS_HEADER_LEN];
        qimg_luks_encode(&l->hdr, buf);
        ret = io->write(io->opaque, 0, buf, sizeof(buf));
        if (ret < 0)
            qimg_error_errno(err, ret, "Cannot write LUKS header");
    }
    if (ret < 0) {
        qimg_luks_free(l);
        return ret;
    }
    *out = l;
    return 0;
}
