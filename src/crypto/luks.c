/* SPDX-License-Identifier: MIT */
/*
 * LUKS1 header: decoding with QEMU's checks and messages, encoding, the
 * cipher specification strings ("aes", "xts-plain64", "sha256") and info.
 * Layout: luks1-facts.md, "Partition header" and "Key slot".
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/luks.h"
#include "util/mem.h"

static const uint8_t luks_magic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};

/* QEMU keeps the first 4 KiB for the header: key material starts at or after it. */
#define LUKS_HEADER_SECTORS 8

static uint32_t get_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, 4);
}

void qimg_luks_params_default(struct qimg_luks_params *p)
{
    *p = (struct qimg_luks_params){
        .cipher_alg = QIMG_CIPHER_AES_256,
        .cipher_mode = QIMG_CIPHER_MODE_XTS,
        .ivgen_alg = QIMG_IVGEN_PLAIN64,
        .ivgen_hash = QIMG_HASH_SHA256,
        .hash = QIMG_HASH_SHA256,
        .iter_time_ms = 2000,
    };
}

/* A fixed-size header string: it must end inside its field. */
static int get_string(const uint8_t *p, size_t len, char *out, const char *what,
                      struct qimg_error *err)
{
    if (!memchr(p, 0, len))
        return qimg_error_set(err, -EINVAL, "LUKS header %s is not NUL terminated", what);
    memcpy(out, p, len);
    out[len] = 0;
    return 0;
}

static void decode(const uint8_t *b, struct qimg_luks_header *h)
{
    h->payload_offset = get_be32(b + 104);
    h->key_bytes = get_be32(b + 108);
    memcpy(h->mk_digest, b + 112, QIMG_LUKS_DIGEST_LEN);
    memcpy(h->mk_digest_salt, b + 132, QIMG_LUKS_SALT_LEN);
    h->mk_digest_iterations = get_be32(b + 164);
    memcpy(h->uuid, b + 168, 40);
    h->uuid[40] = 0;
    for (int i = 0; i < QIMG_LUKS_NUM_SLOTS; i++) {
        const uint8_t *s = b + 208 + 48 * i;
        struct qimg_luks_slot *slot = &h->slots[i];
        slot->active = get_be32(s);
        slot->iterations = get_be32(s + 4);
        memcpy(slot->salt, s + 8, QIMG_LUKS_SALT_LEN);
        slot->key_offset = get_be32(s + 40);
        slot->stripes = get_be32(s + 44);
    }
}

void qimg_luks_encode(const struct qimg_luks_header *h, uint8_t *b)
{
    memset(b, 0, QIMG_LUKS_HEADER_LEN);
    memcpy(b, luks_magic, sizeof(luks_magic));
    b[7] = 1;
    memcpy(b + 8, h->cipher_name, strnlen(h->cipher_name, 31));
    memcpy(b + 40, h->cipher_mode, strnlen(h->cipher_mode, 31));
    memcpy(b + 72, h->hash_spec, strnlen(h->hash_spec, 31));
    put_be32(b + 104, h->payload_offset);
    put_be32(b + 108, h->key_bytes);
    memcpy(b + 112, h->mk_digest, QIMG_LUKS_DIGEST_LEN);
    memcpy(b + 132, h->mk_digest_salt, QIMG_LUKS_SALT_LEN);
    put_be32(b + 164, h->mk_digest_iterations);
    memcpy(b + 168, h->uuid, 40);
    for (int i = 0; i < QIMG_LUKS_NUM_SLOTS; i++) {
        uint8_t *s = b + 208 + 48 * i;
        const struct qimg_luks_slot *slot = &h->slots[i];
        put_be32(s, slot->active);
        put_be32(s + 4, slot->iterations);
        memcpy(s + 8, slot->salt, QIMG_LUKS_SALT_LEN);
        put_be32(s + 40, slot->key_offset);
        put_be32(s + 44, slot->stripes);
    }
}

/*
 * Sectors one slot's key material is given when the layout is checked: its
 * split key rounded up to 4 KiB, the spacing QEMU and cryptsetup lay slots
 * out with (QEMU refuses a slot that leaves less than that before the next
 * slot or the payload).
 */
static uint64_t slot_sectors(const struct qimg_luks_header *h)
{
    /*
     * The split key's size wraps at 32 bits as in QEMU, so that a huge key
     * size passes this check as it does there and is refused for its cipher
     * (with QEMU's message) right after: no key size that wraps is a cipher's.
     */
    uint32_t split = (uint32_t)((uint64_t)h->key_bytes * QIMG_LUKS_STRIPES);
    return ((uint64_t)split + 4095) / 4096 * 8;
}

/*
 * Slots and payload inside the header area and apart from each other, each
 * check in the order QEMU makes them (so a header with several faults gets
 * QEMU's message): the payload, the digest iterations, then slot by slot its
 * stripes, state, iterations, offset and its overlap with each later slot.
 * A detached header (9.1) has its payload elsewhere: no payload checks then.
 */
static int check_layout(const struct qimg_luks_header *h, bool detached, struct qimg_error *err)
{
    if (!detached && h->payload_offset < LUKS_HEADER_SECTORS)
        return qimg_error_set(err, -EINVAL, "LUKS payload is overlapping with the header");
    if (h->mk_digest_iterations == 0)
        return qimg_error_set(err, -EINVAL, "LUKS key iteration count is zero");
    uint64_t len = slot_sectors(h);
    for (int i = 0; i < QIMG_LUKS_NUM_SLOTS; i++) {
        const struct qimg_luks_slot *s = &h->slots[i];
        if (s->stripes != QIMG_LUKS_STRIPES)
            return qimg_error_set(err, -EINVAL, "Keyslot %d is corrupted (stripes %u != %d)",
                                  i, s->stripes, QIMG_LUKS_STRIPES);
        if (s->active != QIMG_LUKS_SLOT_ACTIVE && s->active != QIMG_LUKS_SLOT_INACTIVE)
            return qimg_error_set(err, -EINVAL,
                                  "Keyslot %d state (active/disable) is corrupted", i);
        if (s->active == QIMG_LUKS_SLOT_ACTIVE && s->iterations == 0)
            return qimg_error_set(err, -EINVAL, "Keyslot %d iteration count is zero", i);
        if (s->key_offset < LUKS_HEADER_SECTORS)
            return qimg_error_set(err, -EINVAL,
                                  "Keyslot %d is overlapping with the LUKS header", i);
        if (!detached && (uint64_t)s->key_offset + len > h->payload_offset)
            return qimg_error_set(err, -EINVAL,
                                  "Keyslot %d is overlapping with the encrypted payload", i);
        for (int j = i + 1; j < QIMG_LUKS_NUM_SLOTS; j++) {
            uint64_t a = s->key_offset, b = h->slots[j].key_offset;
            if (a < b + len && b < a + len)
                return qimg_error_set(err, -EINVAL,
                                      "Keyslots %d and %d are overlapping in the header", i, j);
        }
    }
    return 0;
}

static int parse_hash(const char *name, enum qimg_hash_alg *out, struct qimg_error *err)
{
    int h = qimg_hash_parse(name);
    if (h < 0)
        return qimg_error_set(err, -ENOTSUP, "Hash algorithm '%s' not supported", name);
    *out = (enum qimg_hash_alg)h;
    return 0;
}

/* "xts-plain64", "cbc-essiv:sha256" -> mode, IV generator and its hash. */
static int parse_mode_spec(const char *spec, struct qimg_luks_params *p, struct qimg_error *err)
{
    const char *dash = strchr(spec, '-');
    if (!dash)
        return qimg_error_set(err, -EINVAL, "Unexpected cipher mode string format '%s'", spec);
    char mode[33];
    snprintf(mode, sizeof(mode), "%.*s", (int)(dash - spec), spec);
    int m = qimg_cipher_mode_parse(mode);
    if (m < 0)
        return qimg_error_set(err, -ENOTSUP, "Cipher mode '%s' not supported", mode);
    p->cipher_mode = (enum qimg_cipher_mode)m;
    char ivgen[33];
    const char *colon = strchr(dash + 1, ':');
    snprintf(ivgen, sizeof(ivgen), "%.*s",
             (int)(colon ? (size_t)(colon - dash - 1) : strlen(dash + 1)), dash + 1);
    int iv = qimg_ivgen_parse(ivgen);
    if (iv < 0)
        return qimg_error_set(err, -ENOTSUP, "IV generator '%s' not supported", ivgen);
    p->ivgen_alg = (enum qimg_ivgen_alg)iv;
    p->has_ivgen_hash = colon != NULL;
    if (colon)
        return parse_hash(colon + 1, &p->ivgen_hash, err);
    if (p->ivgen_alg == QIMG_IVGEN_ESSIV)
        return qimg_error_set(err, -EINVAL, "Missing IV generator hash specification");
    return 0;
}

static int parse_cipher(const struct qimg_luks_header *h, struct qimg_luks_params *p,
                        struct qimg_error *err)
{
    int ret = parse_mode_spec(h->cipher_mode, p, err);
    if (ret < 0)
        return ret;
    uint32_t keylen = h->key_bytes;
    if (p->cipher_mode == QIMG_CIPHER_MODE_XTS)
        keylen /= 2;
    int a = qimg_cipher_alg_from_family(h->cipher_name, keylen);
    if (a < 0)
        return qimg_error_set(err, -ENOTSUP, "Algorithm '%s' with key size %u bytes not supported",
                              h->cipher_name, keylen);
    p->cipher_alg = (enum qimg_cipher_alg)a;
    if (p->cipher_mode == QIMG_CIPHER_MODE_XTS && qimg_cipher_block_len(p->cipher_alg) != 16)
        return qimg_error_set(err, -ENOTSUP, "Unsupported cipher mode %s", "xts");
    if (p->ivgen_alg == QIMG_IVGEN_ESSIV) {
        enum qimg_cipher_alg ealg;
        ret = qimg_essiv_cipher(p->cipher_alg, p->ivgen_hash, &ealg, err);
        if (ret < 0)
            return ret;
    }
    return parse_hash(h->hash_spec, &p->hash, err);
}

int qimg_luks_parse(const uint8_t *buf, struct qimg_luks **out, struct qimg_error *err)
{
    return qimg_luks_parse_detached(buf, false, out, err);
}

int qimg_luks_parse_detached(const uint8_t *buf, bool detached, struct qimg_luks **out,
                             struct qimg_error *err)
{
    if (memcmp(buf, luks_magic, sizeof(luks_magic)))
        return qimg_error_set(err, -EINVAL, "Volume is not in LUKS format");
    uint16_t version = (uint16_t)(buf[6] << 8 | buf[7]);
    if (version != 1)
        return qimg_error_set(err, -ENOTSUP, "LUKS version %u is not supported", version);
    struct qimg_luks *l = xcalloc(1, sizeof(*l));
    struct qimg_luks_header *h = &l->hdr;
    int ret = get_string(buf + 8, 32, h->cipher_name, "cipher name", err);
    if (ret == 0)
        ret = get_string(buf + 40, 32, h->cipher_mode, "cipher mode", err);
    if (ret == 0)
        ret = get_string(buf + 72, 32, h->hash_spec, "hash spec", err);
    /* The layout is checked before the cipher is looked up, as QEMU does. */
    if (ret == 0) {
        decode(buf, h);
        ret = check_layout(h, detached, err);
    }
    if (ret == 0)
        ret = parse_cipher(h, &l->params, err);
    if (ret < 0) {
        qimg_luks_free(l);
        return ret;
    }
    *out = l;
    return 0;
}

void qimg_luks_free(struct qimg_luks *l)
{
    if (!l)
        return;
    if (l->master_key) {
        memset(l->master_key, 0, l->hdr.key_bytes);
        free(l->master_key);
    }
    qimg_sector_crypt_free(l->crypt);
    free(l);
}

struct qimg_json *qimg_luks_info_json(const struct qimg_luks *l, bool detached_header)
{
    const struct qimg_luks_params *p = &l->params;
    struct qimg_json *d = qimg_json_object();
    qimg_json_add_str(d, "cipher-alg", qimg_cipher_alg_name(p->cipher_alg));
    qimg_json_add_str(d, "cipher-mode", qimg_cipher_mode_name(p->cipher_mode));
    qimg_json_add_str(d, "ivgen-alg", qimg_ivgen_name(p->ivgen_alg));
    if (p->has_ivgen_hash)
        qimg_json_add_str(d, "ivgen-hash-alg", qimg_hash_name(p->ivgen_hash));
    qimg_json_add_str(d, "hash-alg", qimg_hash_name(p->hash));
    qimg_json_add_bool(d, "detached-header", detached_header);
    qimg_json_add_int(d, "payload-offset", (int64_t)qimg_luks_payload_offset(l));
    qimg_json_add_int(d, "master-key-iters", l->hdr.mk_digest_iterations);
    qimg_json_add_str(d, "uuid", l->hdr.uuid);
    struct qimg_json *slots = qimg_json_add(d, "slots", qimg_json_array());
    for (int i = 0; i < QIMG_LUKS_NUM_SLOTS; i++) {
        const struct qimg_luks_slot *s = &l->hdr.slots[i];
        struct qimg_json *o = qimg_json_append(slots, qimg_json_object());
        bool active = s->active == QIMG_LUKS_SLOT_ACTIVE;
        qimg_json_add_bool(o, "active", active);
        if (active)
            qimg_json_add_int(o, "iters", s->iterations);
        if (active)
            qimg_json_add_int(o, "stripes", s->stripes);
        qimg_json_add_int(o, "key-offset", (int64_t)s->key_offset * 512);
    }
    return d;
}
