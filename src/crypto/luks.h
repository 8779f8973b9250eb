/* SPDX-License-Identifier: MIT */
/*
 * LUKS1 volumes as QEMU reads and writes them (luks1-facts.md): the
 * 592-byte header, eight key slots of anti-forensically split key material,
 * PBKDF2 key derivation and the payload's sector encryption.
 *
 * The header may live anywhere: the caller supplies read/write callbacks that
 * address bytes relative to the start of the LUKS header (a standalone luks
 * image's offset 0, or the clusters a qcow2 header extension points at).
 */
#ifndef QIMG_CRYPTO_LUKS_H
#define QIMG_CRYPTO_LUKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/cipher.h"
#include "crypto/hash.h"
#include "crypto/sector.h"
#include "qimg/error.h"
#include "qimg/json.h"

#define QIMG_LUKS_HEADER_LEN 592
#define QIMG_LUKS_NUM_SLOTS 8
#define QIMG_LUKS_STRIPES 4000
#define QIMG_LUKS_DIGEST_LEN 20
#define QIMG_LUKS_SALT_LEN 32
#define QIMG_LUKS_SLOT_ACTIVE 0x00AC71F3u
#define QIMG_LUKS_SLOT_INACTIVE 0x0000DEADu

/* Access to the bytes of the header area, offsets relative to the LUKS header. */
struct qimg_luks_io {
    void *opaque;
    int (*read)(void *opaque, uint64_t off, void *buf, size_t len);
    int (*write)(void *opaque, uint64_t off, const void *buf, size_t len);
};

struct qimg_luks_slot {
    uint32_t active;
    uint32_t iterations;
    uint8_t salt[QIMG_LUKS_SALT_LEN];
    uint32_t key_offset; /* sectors */
    uint32_t stripes;
};

/* The on-disk header, decoded (big-endian fields in host order). */
struct qimg_luks_header {
    char cipher_name[33], cipher_mode[33], hash_spec[33];
    uint32_t payload_offset; /* sectors */
    uint32_t key_bytes;
    uint8_t mk_digest[QIMG_LUKS_DIGEST_LEN];
    uint8_t mk_digest_salt[QIMG_LUKS_SALT_LEN];
    uint32_t mk_digest_iterations;
    char uuid[41];
    struct qimg_luks_slot slots[QIMG_LUKS_NUM_SLOTS];
};

/* The parameters QEMU's create options choose (QCryptoBlockCreateOptionsLUKS). */
struct qimg_luks_params {
    enum qimg_cipher_alg cipher_alg;
    enum qimg_cipher_mode cipher_mode;
    enum qimg_ivgen_alg ivgen_alg;
    enum qimg_hash_alg ivgen_hash;
    bool has_ivgen_hash;
    enum qimg_hash_alg hash;
    uint64_t iter_time_ms;
};

struct qimg_luks {
    struct qimg_luks_header hdr;
    struct qimg_luks_params params; /* decoded from the header */
    uint8_t *master_key;            /* after unlock or create; key_bytes long */
    struct qimg_sector_crypt *crypt; /* the payload's, after unlock or create */
};

/* QEMU's defaults: aes-256, xts, plain64, sha256, 2000 ms. */
void qimg_luks_params_default(struct qimg_luks_params *p);

/* Decode and check a header (buf holds QIMG_LUKS_HEADER_LEN bytes). */
int qimg_luks_parse(const uint8_t *buf, struct qimg_luks **out, struct qimg_error *err);
/* The same for a detached header (9.1): the payload offset is not checked against it. */
int qimg_luks_parse_detached(const uint8_t *buf, bool detached, struct qimg_luks **out,
                             struct qimg_error *err);
void qimg_luks_encode(const struct qimg_luks_header *h, uint8_t *buf);
void qimg_luks_free(struct qimg_luks *l);

/*
 * Try every active slot with the passphrase; on success the master key and
 * payload cipher are set. "Invalid password, cannot unlock any keyslot" when
 * none opens.
 */
int qimg_luks_unlock(struct qimg_luks *l, const uint8_t *pw, size_t pwlen,
                     const struct qimg_luks_io *io, struct qimg_error *err);

/*
 * Make a new volume: random master key, slot 0 keyed by the passphrase,
 * header and key material written through io. The payload offset is the
 * header area's length (qimg_luks_header_area_len).
 */
int qimg_luks_create(struct qimg_luks **out, const struct qimg_luks_params *p, const uint8_t *pw,
                     size_t pwlen, const struct qimg_luks_io *io, struct qimg_error *err);
/* Bytes the header and the eight key slots take for these parameters. */
uint64_t qimg_luks_header_area_len(const struct qimg_luks_params *p);
/*
 * Create options prefix+"cipher-alg", "cipher-mode", "ivgen-alg", "ivgen-hash-alg",
 * "hash-alg", "iter-time" (luks-opts.c), over QEMU's defaults.
 */
struct qimg_opts;
int qimg_luks_take_params(struct qimg_opts *opts, const char *prefix, struct qimg_luks_params *p,
                          struct qimg_error *err);
/* Check the parameters (cipher, mode, essiv combinations) as QEMU does. */
int qimg_luks_params_check(const struct qimg_luks_params *p, struct qimg_error *err);

/*
 * Key slot changes (amend): state=active writes the passphrase new_pw into
 * keyslot (or the first free one); state=inactive erases keyslot and/or the
 * slots old_pw opens. The checks and messages are QEMU's; force allows
 * overwriting an active slot and erasing the last ones. The header is
 * rewritten through io. Activation needs the unlocked master key.
 */
struct qimg_luks_amend {
    bool active;
    int keyslot; /* -1: not given */
    const uint8_t *old_pw, *new_pw; /* NULL: not given */
    size_t old_len, new_len;
    bool has_iter_time;
    uint64_t iter_time_ms;
    bool force;
};
int qimg_luks_amend(struct qimg_luks *l, const struct qimg_luks_amend *a,
                    const struct qimg_luks_io *io, struct qimg_error *err);

/*
 * amend's options prefix+"state", "keyslot", "iter-time", "old-secret",
 * "new-secret" (secret ids) into qimg_luks_amend, with QEMU's messages.
 */
int qimg_luks_amend_opts(struct qimg_luks *l, struct qimg_opts *opts, const char *prefix,
                         bool force, const struct qimg_luks_io *io, struct qimg_error *err);

/* Key slot primitives (luks-keys.c) for luks-amend.c. */
size_t qimg_luks_split_len(uint32_t key_bytes);
int qimg_luks_slot_candidate(struct qimg_luks *l, int i, const uint8_t *pw, size_t pwlen,
                             const struct qimg_luks_io *io, uint8_t *key,
                             struct qimg_error *err);
bool qimg_luks_master_key_matches(const struct qimg_luks *l, const uint8_t *key);
/* Key slot i keyed by the passphrase with params.iter_time_ms of PBKDF2; header not written. */
int qimg_luks_slot_write(struct qimg_luks *l, int i, const uint8_t *pw, size_t pwlen,
                         const struct qimg_luks_io *io, struct qimg_error *err);

/* info's "format-specific" data (QCryptoBlockInfoLUKS) for this volume. */
struct qimg_json *qimg_luks_info_json(const struct qimg_luks *l, bool detached_header);

/* The payload's first byte, relative to the header. */
static inline uint64_t qimg_luks_payload_offset(const struct qimg_luks *l)
{
    return (uint64_t)l->hdr.payload_offset * 512;
}

#endif
