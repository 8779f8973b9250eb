/* SPDX-License-Identifier: MIT */
/*
 * The luks format: a LUKS1 volume in a file, as QEMU's "luks" driver reads
 * and writes it (src/crypto/luks.h has the header and keys). Guest sector i
 * is encrypted at payload offset + i * 512 with IV sector number i.
 *
 * Data is encrypted and decrypted in the caller's thread without any lock:
 * the ciphers hold only key schedules, so copy workers run in parallel.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "core/node-internal.h"
#include "crypto/luks.h"
#include "qimg/driver.h"
#include "qimg/secret.h"
#include "util/mem.h"


struct luks_state {
    struct qimg_luks *luks;
    uint64_t payload; /* byte offset of guest sector 0 in the file */
    struct qimg_node *header; /* 9.1's detached header (the "header" child), or NULL */
};

static const struct qimg_opt_desc luks_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"key-secret", QIMG_OPT_STRING, "ID of the secret that provides the keyslot passphrase",
     NULL},
    {"cipher-alg", QIMG_OPT_STRING, "Name of encryption cipher algorithm", NULL},
    {"cipher-mode", QIMG_OPT_STRING, "Name of encryption cipher mode", NULL},
    {"ivgen-alg", QIMG_OPT_STRING, "Name of IV generator algorithm", NULL},
    {"ivgen-hash-alg", QIMG_OPT_STRING, "Name of IV generator hash algorithm", NULL},
    {"hash-alg", QIMG_OPT_STRING, "Name of encryption hash algorithm", NULL},
    {"iter-time", QIMG_OPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL},
    {"detached-header", QIMG_OPT_BOOL, "Create a detached LUKS header", NULL},
    {0},
};

static const struct qimg_opt_desc luks_open_opts[] = {
    {"key-secret", QIMG_OPT_STRING, "ID of the secret that provides the keyslot passphrase",
     NULL},
    {0},
};

static int luks_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    static const uint8_t magic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
    return len >= 8 && !memcmp(buf, magic, 6) && buf[6] == 0 && buf[7] == 1 ? 100 : 0;
}

/*
 * Header-area access through the file child (offsets from the file's start).
 * Past the end of the file the header area reads as zeroes, as QEMU's short
 * reads do: a truncated volume then fails the header checks or the unlock
 * with QEMU's messages.
 */
static int file_read(void *opaque, uint64_t off, void *buf, size_t len)
{
    int64_t flen = qimg_node_length(opaque);
    if (flen < 0)
        return (int)flen;
    uint64_t have = off >= (uint64_t)flen ? 0 : (uint64_t)flen - off;
    if (have > len)
        have = len;
    int ret = have ? qimg_node_pread(opaque, off, have, buf, 0) : 0;
    if (ret == 0)
        memset((uint8_t *)buf + have, 0, len - have);
    return ret;
}

static int file_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    return qimg_node_pwrite(opaque, off, len, buf, 0);
}

/* The passphrase a key-secret names: "Parameter 'key-secret' is required for cipher" without. */
static int luks_passphrase(const char *id, uint8_t **pw, size_t *len, struct qimg_error *err)
{
    if (!id)
        return qimg_error_set(err, -EINVAL, "Parameter 'key-secret' is required for cipher");
    return qimg_secret_lookup(id, pw, len, err);
}

/*
 * 9.1's detached header: "header.driver=file,header.filename=..." (or json:
 * "header": {...}) names a protocol node holding the LUKS header; the payload
 * is then the whole file from the header's payload offset (0 as QEMU makes them).
 */
static int open_detached_header(struct qimg_node *n, struct qimg_opts *opts,
                                struct qimg_error *err)
{
    struct luks_state *s = n->opaque;
    struct qimg_opts *ho = qimg_opts_new();
    qimg_opts_extract_prefix(opts, "header.", ho);
    int ret = 0;
    if (ho->n) {
        const char *fname = qimg_opts_take(ho, "filename");
        ret = qimg_open_protocol(&s->header, fname, ho, n->flags & QIMG_O_RDWR, err);
        const char *unused = ret == 0 ? qimg_opts_first_unused(ho) : NULL;
        if (unused)
            ret = qimg_error_set(err, -EINVAL, "Block protocol '%s' doesn't support the option "
                                               "'%s'", s->header->drv->name, unused);
    }
    qimg_opts_free(ho);
    return ret;
}

static struct qimg_node *header_node(struct qimg_node *n)
{
    struct luks_state *s = n->opaque;
    return s->header ? s->header : n->file;
}

static int luks_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct luks_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    int ret = open_detached_header(n, opts, err);
    if (ret < 0)
        return ret;
    const char *id = qimg_opts_take(opts, "key-secret");
    bool no_io = n->flags & QIMG_O_NO_IO;
    uint8_t *pw = NULL;
    size_t pwlen = 0;
    if (!no_io && (ret = luks_passphrase(id, &pw, &pwlen, err)) < 0)
        return ret;
    uint8_t buf[QIMG_LUKS_HEADER_LEN];
    ret = file_read(header_node(n), 0, buf, sizeof(buf));
    if (ret < 0) {
        qimg_error_errno(err, ret, "Unable to read LUKS header");
        goto out;
    }
    ret = qimg_luks_parse_detached(buf, s->header != NULL, &s->luks, err);
    if (ret < 0)
        goto out;
    s->payload = qimg_luks_payload_offset(s->luks);
    /* The key is tried before the size is looked at, as QEMU orders them. */
    if (!no_io) {
        struct qimg_luks_io io = {header_node(n), file_read, file_write};
        ret = qimg_luks_unlock(s->luks, pw, pwlen, &io, err);
        if (ret < 0)
            goto out;
    }
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0 || s->payload > (uint64_t)flen) {
        ret = qimg_error_errno(err, flen < 0 ? (int)flen : -EIO,
                               "Could not refresh total sector count");
        goto out;
    }
    n->request_alignment = QIMG_CRYPTO_SECTOR;
out:
    if (pw) {
        memset(pw, 0, pwlen);
        free(pw);
    }
    return ret;
}

static void luks_close(struct qimg_node *n)
{
    struct luks_state *s = n->opaque;
    if (!s)
        return;
    qimg_luks_free(s->luks);
    if (s->header)
        qimg_node_unref(s->header);
    free(s);
}

static int64_t luks_get_length(struct qimg_node *n)
{
    struct luks_state *s = n->opaque;
    int64_t len = qimg_node_length(n->file);
    if (len < 0)
        return len;
    /* Whole sectors only, as QEMU counts them. */
    return ((len - (int64_t)s->payload) / QIMG_CRYPTO_SECTOR) * QIMG_CRYPTO_SECTOR;
}

static int luks_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    struct luks_state *s = n->opaque;
    if (!s->luks->crypt)
        return -EIO; /* opened for metadata only */
    qimg_debug_event(n->file, QIMG_DBG_READ_AIO);
    int ret = qimg_node_pread(n->file, s->payload + off, len, buf, flags);
    if (ret == 0)
        qimg_sector_decrypt(s->luks->crypt, off / QIMG_CRYPTO_SECTOR, buf, len);
    return ret;
}

/* Encrypt [off, off+len) from buf (NULL: zeroes) through a bounce buffer and write it. */
static int write_encrypted(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                           unsigned flags)
{
    struct luks_state *s = n->opaque;
    if (!s->luks->crypt)
        return -EIO;
    size_t cap = len < QIMG_CRYPTO_BOUNCE ? (size_t)len : QIMG_CRYPTO_BOUNCE;
    uint8_t *bounce = qimg_crypto_bounce_get();
    if (!bounce)
        return -ENOMEM;
    int ret = 0;
    for (uint64_t pos = 0; pos < len && ret == 0; pos += cap) {
        size_t chunk = len - pos < cap ? (size_t)(len - pos) : cap;
        if (buf)
            memcpy(bounce, (const uint8_t *)buf + pos, chunk);
        else
            memset(bounce, 0, chunk);
        qimg_sector_encrypt(s->luks->crypt, (off + pos) / QIMG_CRYPTO_SECTOR, bounce, chunk);
        qimg_debug_event(n->file, QIMG_DBG_WRITE_AIO);
        ret = qimg_node_pwrite(n->file, s->payload + off + pos, chunk, bounce, flags);
    }
    qimg_crypto_bounce_put(bounce);
    return ret;
}

static int luks_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                       unsigned flags)
{
    return write_encrypted(n, off, len, buf, flags);
}

/*
 * Zeroes must be stored encrypted (zeroes in the file decrypt to noise): no
 * cheap way, so none when the caller asks for one (QIMG_REQ_NO_FALLBACK);
 * otherwise encrypted zero sectors, without a zero buffer to copy from.
 */
static int luks_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    if (flags & QIMG_REQ_NO_FALLBACK)
        return -ENOTSUP;
    return write_encrypted(n, off, len, NULL, flags & QIMG_REQ_FUA);
}

static int luks_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct luks_state *s = n->opaque;
    return qimg_node_pdiscard(n->file, s->payload + off, len);
}

static int luks_truncate(struct qimg_node *n, uint64_t size, bool exact,
                         enum qimg_prealloc prealloc, struct qimg_error *err)
{
    struct luks_state *s = n->opaque;
    if (size > INT64_MAX - s->payload)
        return qimg_error_set(err, -EFBIG, "File too large");
    return qimg_node_truncate(n->file, s->payload + size, exact, prealloc, err);
}

/* Every sector is data, stored encrypted: no host offset to show (qemu-img map). */
static int luks_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                             struct qimg_block_status *st)
{
    (void)n;
    (void)off;
    st->bytes = len;
    st->flags = QIMG_BLK_DATA;
    return 0;
}

static bool luks_has_zero_init(struct qimg_node *n)
{
    (void)n;
    return false; /* zeroes in the file decrypt to noise */
}

static int luks_get_info(struct qimg_node *n, struct qimg_driver_info *info,
                         struct qimg_error *err)
{
    (void)err;
    struct luks_state *s = n->opaque;
    info->encrypted = true;
    /* The file's cluster size shows through (QEMU: an rbd image's object size). */
    struct qimg_node *f = n->file;
    if (f && f->drv->get_info) {
        struct qimg_driver_info sub = {0};
        if (f->drv->get_info(f, &sub, NULL) == 0)
            info->cluster_size = sub.cluster_size;
        qimg_json_free(sub.snapshots);
        qimg_json_free(sub.format_specific);
    }
    struct qimg_json *fs = qimg_json_object();
    qimg_json_add_str(fs, "type", "luks");
    qimg_json_add(fs, "data", qimg_luks_info_json(s->luks, s->header != NULL));
    info->format_specific = fs;
    return 0;
}

static int luks_take_params(struct qimg_opts *opts, struct qimg_luks_params *p,
                            struct qimg_error *err)
{
    int ret = qimg_luks_take_params(opts, "", p, err);
    if (ret < 0)
        return ret;
    if (qimg_opts_take(opts, "detached-header"))
        return qimg_error_set(err, -EINVAL, "Parameter 'detached-header' is unexpected");
    return 0;
}

static int luks_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    uint64_t size = 0;
    enum qimg_prealloc prealloc = QIMG_PREALLOC_OFF;
    struct qimg_luks_params p;
    uint8_t *pw = NULL;
    size_t pwlen = 0;
    int ret = qimg_opts_take_size(opts, "size", &size, err);
    const char *pa = qimg_opts_take(opts, "preallocation");
    if (ret >= 0 && pa && qimg_prealloc_parse(pa, &prealloc) < 0)
        ret = qimg_error_set(err, -EINVAL, "Invalid preallocation mode: '%s'", pa);
    if (ret >= 0)
        ret = luks_take_params(opts, &p, err);
    if (ret >= 0)
        ret = luks_passphrase(qimg_opts_take(opts, "key-secret"), &pw, &pwlen, err);
    if (ret >= 0)
        ret = qimg_luks_params_check(&p, err);
    if (ret < 0)
        goto out;
    /* The file holds the header area and the payload; metadata preallocation means none. */
    uint64_t header = qimg_luks_header_area_len(&p);
    size = (size + QIMG_CRYPTO_SECTOR - 1) / QIMG_CRYPTO_SECTOR * QIMG_CRYPTO_SECTOR;
    char sz[32];
    snprintf(sz, sizeof(sz), "%" PRIu64, header + size);
    struct qimg_opts *po = qimg_opts_clone(opts);
    qimg_opts_set(po, "size", sz);
    qimg_opts_del(po, "preallocation");
    if (prealloc == QIMG_PREALLOC_FALLOC || prealloc == QIMG_PREALLOC_FULL)
        qimg_opts_set(po, "preallocation", qimg_prealloc_name(prealloc));
    ret = qimg_create_protocol(filename, po, err);
    qimg_opts_free(po);
    if (ret < 0)
        goto out;
    struct qimg_node *file = NULL;
    ret = qimg_open_protocol(&file, filename, NULL, QIMG_O_RDWR, err);
    if (ret < 0)
        goto out;
    struct qimg_luks_io io = {file, file_read, file_write};
    struct qimg_luks *l = NULL;
    ret = qimg_luks_create(&l, &p, pw, pwlen, &io, err);
    qimg_luks_free(l);
    if (ret == 0 && (ret = qimg_node_flush(file)) < 0)
        qimg_error_errno(err, ret, "Could not flush the new image");
    qimg_node_unref(file);
out:
    if (pw) {
        memset(pw, 0, pwlen);
        free(pw);
    }
    return ret;
}

static int luks_measure(struct qimg_opts *opts, struct qimg_node *src, uint64_t size,
                        struct qimg_measure *out, struct qimg_error *err)
{
    struct qimg_luks_params p;
    uint8_t *pw = NULL;
    size_t pwlen = 0;
    qimg_opts_take(opts, "preallocation");
    int ret = luks_take_params(opts, &p, err);
    /* QEMU formats a header in memory to measure it: it needs the secret too. */
    if (ret >= 0)
        ret = luks_passphrase(qimg_opts_take(opts, "key-secret"), &pw, &pwlen, err);
    if (ret >= 0)
        ret = qimg_luks_params_check(&p, err);
    if (pw) {
        memset(pw, 0, pwlen);
        free(pw);
    }
    if (ret < 0)
        return ret;
    if (src) {
        int64_t len = qimg_node_length(src);
        if (len < 0)
            return qimg_error_errno(err, (int)len, "Unable to get image virtual_size");
        size = (uint64_t)len;
    }
    size = (size + QIMG_CRYPTO_SECTOR - 1) / QIMG_CRYPTO_SECTOR * QIMG_CRYPTO_SECTOR;
    out->required = out->fully_allocated = qimg_luks_header_area_len(&p) + size;
    return 0;
}

static const struct qimg_opt_desc luks_amend_opts[] = {
    {"state", QIMG_OPT_STRING, "Select new state of affected keyslots (active/inactive)", NULL},
    {"keyslot", QIMG_OPT_NUMBER, "Select a single keyslot to modify explicitly", NULL},
    {"old-secret", QIMG_OPT_STRING, "Select all keyslots that match this password", NULL},
    {"new-secret", QIMG_OPT_STRING,
     "New secret to set in the matching keyslots. Empty string to erase", NULL},
    {"iter-time", QIMG_OPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL},
    {0},
};

static int luks_amend(struct qimg_node *n, struct qimg_opts *opts, bool force,
                      struct qimg_error *err)
{
    struct luks_state *s = n->opaque;
    struct qimg_luks_io io = {header_node(n), file_read, file_write};
    int ret = qimg_luks_amend_opts(s->luks, opts, "", force, &io, err);
    if (ret == 0 && (ret = qimg_node_flush(header_node(n))) < 0)
        qimg_error_errno(err, ret, "Could not flush the image");
    return ret;
}

/* QEMU sums what every child allocates: the detached header counts too. */
static int64_t luks_get_allocated_size(struct qimg_node *n)
{
    struct luks_state *s = n->opaque;
    int64_t a = qimg_node_allocated_size(n->file);
    if (a < 0 || !s->header)
        return a;
    int64_t b = qimg_node_allocated_size(s->header);
    return b < 0 ? b : a + b;
}

static struct qimg_node *luks_extra_child(struct qimg_node *n, size_t i, char *name, size_t cap)
{
    struct luks_state *s = n->opaque;
    snprintf(name, cap, "header");
    return i == 0 ? s->header : NULL;
}

static void luks_name_children(struct qimg_node *n, struct qimg_json *dict)
{
    struct luks_state *s = n->opaque;
    if (s && s->header)
        qimg_json_add(dict, "header", qimg_node_describe(s->header));
}

static const char *const luks_strong_opts[] = {"key-secret", NULL};

const struct qimg_driver qimg_luks_driver = {
    .name = "luks",
    .strong_opts = luks_strong_opts,
    .create_opts = luks_create_opts,
    .open_opts = luks_open_opts,
    .probe = luks_probe,
    .open = luks_open,
    .close = luks_close,
    .create = luks_create,
    .get_length = luks_get_length,
    .pread = luks_pread,
    .pwrite = luks_pwrite,
    .pwrite_zeroes = luks_pwrite_zeroes,
    .pdiscard = luks_pdiscard,
    .truncate = luks_truncate,
    .block_status = luks_block_status,
    .has_zero_init = luks_has_zero_init,
    .get_info = luks_get_info,
    .measure = luks_measure,
    .amend_opts = luks_amend_opts,
    .amend = luks_amend,
    .extra_child = luks_extra_child,
    .get_allocated_size = luks_get_allocated_size,
    .name_children = luks_name_children,
};
