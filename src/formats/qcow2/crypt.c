/* SPDX-License-Identifier: MIT */
/*
 * Encrypted qcow2 (qcow2.txt: "Full disk encryption header pointer" and
 * "Data encryption"): crypt_method 1 is the legacy AES of qcow
 * (crypto/qcow-aes.h), 2 is LUKS with its header and key material in
 * clusters the crypto header extension points at (crypto/luks.h).
 *
 * Only data clusters are encrypted, per 512-byte sector: LUKS tweaks each
 * sector with its HOST sector number, AES with its GUEST sector number.
 * Compressed clusters are stored as QEMU stores them: not encrypted (qemu-img
 * convert refuses -c with encryption; qemu-io's write -c still writes them).
 * Metadata is never encrypted.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/luks.h"
#include "crypto/qcow-aes.h"
#include "formats/qcow2/qcow2.h"
#include "qimg/secret.h"
#include "util/mem.h"

#define CRYPT_METHOD_AES 1
#define CRYPT_METHOD_LUKS 2
#define CRYPTO_EXT_LEN 16
#define KEY_SECRET "encrypt.key-secret"

struct qcow2_crypt {
    uint32_t method;
    struct qimg_luks *luks;          /* LUKS: the header; after unlock, the key */
    struct qimg_sector_crypt *aes;   /* AES, once keyed */
    uint64_t hdr_off, hdr_len;       /* LUKS header clusters (crypto header extension) */
};

/* Header-area access for the LUKS code: bounded by the extension's length, as QEMU bounds it. */
struct hdr_io {
    struct qimg_node *file;
    uint64_t off, len;
    bool out_of_range;
};

static int hdr_read(void *opaque, uint64_t off, void *buf, size_t len)
{
    struct hdr_io *h = opaque;
    if (off > h->len || len > h->len - off) {
        h->out_of_range = true;
        return -EINVAL;
    }
    /* Past the end of the file the header reads as zeroes (QEMU's short reads). */
    int64_t flen = qimg_node_length(h->file);
    if (flen < 0)
        return (int)flen;
    uint64_t at = h->off + off;
    uint64_t have = at >= (uint64_t)flen || at < h->off ? 0 : (uint64_t)flen - at;
    if (have > len)
        have = len;
    int ret = have ? qimg_node_pread(h->file, at, have, buf, 0) : 0;
    if (ret == 0)
        memset((uint8_t *)buf + have, 0, len - have);
    return ret;
}

static int hdr_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    struct hdr_io *h = opaque;
    if (off > h->len || len > h->len - off) {
        h->out_of_range = true;
        return -EINVAL;
    }
    return qimg_node_pwrite(h->file, h->off + off, len, buf, 0);
}

/* A LUKS operation through h: QEMU's own message when it left the extension. */
static int hdr_result(const struct hdr_io *h, int ret, struct qimg_error *err)
{
    if (ret < 0 && h->out_of_range)
        return qimg_error_reset(err, -EINVAL, "Request for data outside of extension header");
    return ret;
}

void qcow2_crypt_free(struct qcow2_state *s)
{
    struct qcow2_crypt *c = s->crypt;
    if (!c)
        return;
    qimg_luks_free(c->luks);
    qimg_sector_crypt_free(c->aes);
    free(c);
    s->crypt = NULL;
}

/* qcow2.txt: the extension (offset, length), present exactly for LUKS. Messages are QEMU's. */
static int parse_ext(struct qcow2_state *s, struct qcow2_crypt *c, struct qimg_error *err)
{
    const struct qcow2_ext *e = s->crypto_ext;
    if (e && s->crypt_method != CRYPT_METHOD_LUKS)
        return qimg_error_set(err, -EINVAL,
                              "CRYPTO header extension only expected with LUKS encryption method");
    if (e && e->len != CRYPTO_EXT_LEN)
        return qimg_error_set(err, -EINVAL,
                              "CRYPTO header extension size %u, but expected size %d", e->len,
                              CRYPTO_EXT_LEN);
    if (!e && s->crypt_method == CRYPT_METHOD_LUKS)
        return qimg_error_set(err, -EINVAL, "Missing CRYPTO header for crypt method %u",
                              s->crypt_method);
    if (!e)
        return 0;
    c->hdr_off = qcow2_be64(e->data);
    c->hdr_len = qcow2_be64(e->data + 8);
    if (c->hdr_off % s->cluster_size)
        return qimg_error_set(err, -EINVAL,
                              "Encryption header offset '%llu' is not a multiple of cluster size "
                              "'%llu'",
                              (unsigned long long)c->hdr_off,
                              (unsigned long long)s->cluster_size);
    return 0;
}

static int open_luks(struct qimg_node *n, struct qcow2_crypt *c, const char *id,
                     struct qimg_error *err)
{
    struct hdr_io h = {n->file, c->hdr_off, c->hdr_len, false};
    uint8_t buf[QIMG_LUKS_HEADER_LEN];
    int ret = hdr_read(&h, 0, buf, sizeof(buf));
    if (ret < 0)
        return hdr_result(&h, qimg_error_errno(err, ret, "Unable to read LUKS header"), err);
    ret = qimg_luks_parse(buf, &c->luks, err);
    if (ret < 0 || (n->flags & QIMG_O_NO_IO))
        return ret;
    uint8_t *pw;
    size_t len;
    ret = qimg_secret_lookup(id, &pw, &len, err);
    if (ret < 0)
        return ret;
    struct qimg_luks_io io = {&h, hdr_read, hdr_write};
    ret = hdr_result(&h, qimg_luks_unlock(c->luks, pw, len, &io, err), err);
    memset(pw, 0, len);
    free(pw);
    return ret;
}

int qcow2_crypt_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    const char *id = qimg_opts_take(opts, KEY_SECRET);
    const char *fmt = qimg_opts_take(opts, "encrypt.format");
    if (!s->crypt_method)
        return s->crypto_ext ? parse_ext(s, &(struct qcow2_crypt){0}, err) : 0;
    struct qcow2_crypt *c = s->crypt = xcalloc(1, sizeof(*c));
    c->method = s->crypt_method;
    const char *name = c->method == CRYPT_METHOD_LUKS ? "luks" : "aes";
    if (fmt && strcmp(fmt, name))
        return qimg_error_set(err, -EINVAL,
                              "Header reported '%s' encryption format but options specify '%s'",
                              name, fmt);
    int ret = parse_ext(s, c, err);
    if (ret < 0)
        return ret;
    if (!id && !(n->flags & QIMG_O_NO_IO))
        return qimg_error_set(err, -EINVAL, "Parameter '%s' is required for cipher", KEY_SECRET);
    if (c->method == CRYPT_METHOD_LUKS)
        return open_luks(n, c, id, err);
    if (n->flags & QIMG_O_NO_IO)
        return 0;
    return qimg_qcow_aes_new(id, KEY_SECRET, &c->aes, err);
}

/* The sector cipher and the first sector's number for data at host / guest. */
static const struct qimg_sector_crypt *sectors(const struct qcow2_crypt *c, uint64_t host,
                                               uint64_t guest, uint64_t *sector)
{
    *sector = (c->method == CRYPT_METHOD_LUKS ? host : guest) / QIMG_CRYPTO_SECTOR;
    return c->method == CRYPT_METHOD_LUKS ? (c->luks ? c->luks->crypt : NULL) : c->aes;
}

int qcow2_crypt_decrypt(const struct qcow2_state *s, uint64_t host, uint64_t guest, void *buf,
                        uint64_t len)
{
    uint64_t sector;
    const struct qimg_sector_crypt *sc = sectors(s->crypt, host, guest, &sector);
    if (!sc || host % QIMG_CRYPTO_SECTOR || len % QIMG_CRYPTO_SECTOR)
        return -EIO; /* opened without a key, or an unaligned request */
    qimg_sector_decrypt(sc, sector, buf, len);
    return 0;
}

int qcow2_crypt_pwrite(struct qimg_node *n, uint64_t host, uint64_t guest, uint64_t len,
                       const void *src)
{
    struct qcow2_state *s = n->opaque;
    uint64_t sector;
    const struct qimg_sector_crypt *sc = sectors(s->crypt, host, guest, &sector);
    if (!sc || host % QIMG_CRYPTO_SECTOR || len % QIMG_CRYPTO_SECTOR)
        return -EIO;
    size_t cap = len < QIMG_CRYPTO_BOUNCE ? (size_t)len : QIMG_CRYPTO_BOUNCE;
    uint8_t *bounce = qimg_crypto_bounce_get();
    if (!bounce)
        return -ENOMEM;
    int ret = 0;
    for (uint64_t pos = 0; pos < len && ret == 0; pos += cap) {
        size_t chunk = len - pos < cap ? (size_t)(len - pos) : cap;
        memcpy(bounce, (const uint8_t *)src + pos, chunk);
        qimg_sector_encrypt(sc, sector + pos / QIMG_CRYPTO_SECTOR, bounce, chunk);
        ret = qimg_node_pwrite(qcow2_data_node(n), host + pos, chunk, bounce, 0);
    }
    qimg_crypto_bounce_put(bounce);
    return ret;
}

struct qimg_json *qcow2_crypt_info_json(const struct qcow2_state *s)
{
    const struct qcow2_crypt *c = s->crypt;
    if (!c)
        return NULL;
    struct qimg_json *e = c->luks ? qimg_luks_info_json(c->luks, false) : qimg_json_object();
    qimg_json_add_str(e, "format", c->method == CRYPT_METHOD_LUKS ? "luks" : "aes");
    return e;
}

bool qcow2_crypt_header_range(const struct qcow2_state *s, uint64_t *off, uint64_t *len)
{
    if (!s->crypt || s->crypt->method != CRYPT_METHOD_LUKS)
        return false;
    *off = s->crypt->hdr_off;
    *len = s->crypt->hdr_len;
    return true;
}

/* ---- create and measure ---- */

/* Is any encrypt.* option (create) given? */
static bool any_encrypt_opt(const struct qimg_opts *o)
{
    for (size_t i = 0; qcow2_create_opts[i].name; i++)
        if (!strncmp(qcow2_create_opts[i].name, "encrypt.", 8) &&
            qimg_opts_has(o, qcow2_create_opts[i].name))
            return true;
    return false;
}

static const char *const luks_only[] = {"encrypt.cipher-alg", "encrypt.cipher-mode",
                                        "encrypt.ivgen-alg", "encrypt.ivgen-hash-alg",
                                        "encrypt.hash-alg", "encrypt.iter-time"};

int qcow2_crypt_parse_create(struct qimg_opts *o, bool for_measure, struct qcow2_crypt_create *cc,
                             struct qimg_error *err)
{
    memset(cc, 0, sizeof(*cc));
    bool legacy = false;
    int ret = qimg_opts_take_bool(o, "encryption", &legacy, err);
    if (ret < 0)
        return ret;
    const char *fmt = qimg_opts_peek(o, "encrypt.format");
    if (legacy && fmt)
        return qimg_error_set(err, -EINVAL,
                              "'encrypt.format' and its alias 'encryption' can't be used at the "
                              "same time");
    if (!legacy && !any_encrypt_opt(o))
        return 0;
    qimg_opts_take(o, "encrypt.format");
    if (!legacy && !fmt)
        return qimg_error_set(err, -EINVAL, "Parameter 'encrypt.format' is missing");
    if (legacy || !strcmp(fmt, "aes")) {
        cc->method = CRYPT_METHOD_AES;
        for (size_t i = 0; i < sizeof(luks_only) / sizeof(luks_only[0]); i++)
            if (qimg_opts_has(o, luks_only[i]))
                return qimg_error_set(err, -EINVAL, "Parameter '%s' is unexpected", luks_only[i]);
    } else if (!strcmp(fmt, "luks")) {
        cc->method = CRYPT_METHOD_LUKS;
        ret = qimg_luks_take_params(o, "encrypt.", &cc->params, err);
        if (ret < 0)
            return ret;
    } else {
        return qimg_error_set(err, -EINVAL, "Parameter 'format' does not accept value '%s'", fmt);
    }
    const char *id = qimg_opts_take(o, KEY_SECRET);
    if (for_measure && cc->method == CRYPT_METHOD_AES)
        return 0; /* only a LUKS header is formatted (in memory) to measure it */
    if (!id)
        return qimg_error_set(err, -EINVAL, "Parameter '%s' is required for cipher", KEY_SECRET);
    ret = qimg_secret_lookup(id, &cc->pw, &cc->pwlen, err);
    if (ret == 0 && cc->method == CRYPT_METHOD_LUKS)
        ret = qimg_luks_params_check(&cc->params, err);
    return ret;
}

void qcow2_crypt_create_clear(struct qcow2_crypt_create *cc)
{
    if (cc->pw) {
        memset(cc->pw, 0, cc->pwlen);
        free(cc->pw);
    }
    cc->pw = NULL;
}

uint64_t qcow2_crypt_measure(const struct qcow2_crypt_create *cc, uint64_t cluster_size)
{
    if (cc->method != CRYPT_METHOD_LUKS)
        return 0;
    return qcow2_align_up(qimg_luks_header_area_len(&cc->params), cluster_size);
}

/*
 * A new image's encryption, set up after it has its size (QEMU's order: the
 * LUKS header clusters follow the L1 table). The clusters are zeroed first:
 * inactive key slots stay zero.
 */
int qcow2_crypt_setup(struct qimg_node *n, const struct qcow2_crypt_create *cc,
                      struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    if (!cc->method)
        return 0;
    int ret = 0;
    if (cc->method == CRYPT_METHOD_LUKS) {
        uint64_t len = qimg_luks_header_area_len(&cc->params);
        uint64_t clusters = qcow2_div_round_up(len, s->cluster_size);
        pthread_mutex_lock(&n->lock);
        int64_t off = qcow2_alloc_clusters(n, clusters);
        pthread_mutex_unlock(&n->lock);
        if (off < 0)
            return qimg_error_errno(err, (int)off, "Could not allocate the LUKS header");
        ret = qimg_node_pwrite_zeroes(n->file, (uint64_t)off, clusters * s->cluster_size, 0);
        if (ret < 0)
            return qimg_error_errno(err, ret, "Could not zero the LUKS header");
        struct hdr_io h = {n->file, (uint64_t)off, len, false};
        struct qimg_luks_io io = {&h, hdr_read, hdr_write};
        struct qimg_luks *l = NULL;
        ret = hdr_result(&h, qimg_luks_create(&l, &cc->params, cc->pw, cc->pwlen, &io, err), err);
        qimg_luks_free(l);
        if (ret < 0)
            return ret;
        struct qcow2_ext *e = xcalloc(1, sizeof(*e));
        e->type = QCOW2_EXT_CRYPTO;
        e->len = CRYPTO_EXT_LEN;
        e->data = xcalloc(1, CRYPTO_EXT_LEN);
        qcow2_put64(e->data, (uint64_t)off);
        qcow2_put64(e->data + 8, len);
        s->crypto_ext = e;
    }
    s->crypt_method = cc->method;
    ret = qcow2_header_rewrite(n);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not write qcow2 header");
    return 0;
}

/* ---- amend ---- */

int qcow2_crypt_amend(struct qimg_node *n, struct qimg_opts *opts, bool force,
                      struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    struct qcow2_crypt *c = s->crypt;
    if (!c || !c->luks)
        return qimg_error_set(err, -EINVAL, "Only LUKS encryption options can be amended");
    struct hdr_io h = {n->file, c->hdr_off, c->hdr_len, false};
    struct qimg_luks_io io = {&h, hdr_read, hdr_write};
    int ret = hdr_result(&h, qimg_luks_amend_opts(c->luks, opts, "encrypt.", force, &io, err),
                         err);
    if (ret == 0 && (ret = qimg_node_flush(n->file)) < 0)
        qimg_error_errno(err, ret, "Could not flush the image");
    return ret;
}
