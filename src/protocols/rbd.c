/* SPDX-License-Identifier: MIT */
/*
 * The "rbd" protocol: an image in a Ceph cluster through librbd, as QEMU's
 * rbd driver reaches it (addresses and login in rbd-name.c). librbd's image
 * handle is thread-safe, so the engine's workers issue their requests on it
 * side by side; block status comes from the object map (rbd_diff_iterate2 in
 * whole-object mode), so convert and map skip the objects never written.
 * Snapshots are librbd's: named, their ID is their name.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#endif

#include "core/builtin.h"
#include "crypto/cipher.h"
#include "protocols/lazy-rbd.h"
#include "protocols/rbd.h"
#include "qimg/driver.h"
#include "qimg/json.h"
#include "qimg/secret.h"
#include "util/mem.h"

/* librbd and librados, loaded by rbd_connect (rbd-name.c), which open and create go through. */
#ifdef QIMG_SONAME_LIBRBD
LAZYLIB_DEFINE(rbd, QIMG_SONAME_LIBRBD, LAZY_RBD_SYMS);
#endif
#ifdef QIMG_SONAME_LIBRADOS
LAZYLIB_DEFINE(rados, QIMG_SONAME_LIBRADOS, LAZY_RADOS_SYMS);
#endif

#define RBD_IO_CHUNK (64u << 20) /* one librbd call carries at most this many bytes */
#define RBD_MIN_OBJECT_SIZE 4096
/* LUKS headers librbd's encryption writes (QEMU's info reports the format it sees). */
static const uint8_t luks_magic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};

struct rbd_state {
    struct rbd_spec spec;
    rados_t cluster;
    rados_ioctx_t io;
    rbd_image_t image;
    uint64_t object_size;
    int enc_format;       /* RBD_ENCRYPTION_FORMAT_*, or -1: no encryption loaded */
    char *enc_key_secret; /* the LUKS passphrase's secret */
};

static const struct qimg_opt_desc qrbd_open_opts[] = {
    {"filename", QIMG_OPT_STRING, "Specification of the rbd image", NULL},
    {"pool", QIMG_OPT_STRING, "Rados pool name", NULL},
    {"namespace", QIMG_OPT_STRING, "Rados namespace name in the pool", NULL},
    {"image", QIMG_OPT_STRING, "Image name in the pool", NULL},
    {"snapshot", QIMG_OPT_STRING, "Ceph snapshot name", NULL},
    {"conf", QIMG_OPT_STRING, "Path to Ceph configuration file", NULL},
    {"user", QIMG_OPT_STRING, "Rados id name", NULL},
    {"key-secret", QIMG_OPT_STRING, "ID of secret providing the password", NULL},
    {"password-secret", QIMG_OPT_STRING, "ID of secret providing the password", NULL},
    {"server", QIMG_OPT_STRING, "Monitor addresses (server.N.host, server.N.port)", NULL},
    {"auth-client-required", QIMG_OPT_STRING, "Acceptable authentication modes", NULL},
    {"encrypt", QIMG_OPT_STRING, "Image encryption (encrypt.format, encrypt.key-secret)", NULL},
    {0},
};

/* 9.1's list; -o help sorts it. */
static const struct qimg_opt_desc qrbd_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"cluster_size", QIMG_OPT_SIZE, "RBD object size", NULL},
    {"password-secret", QIMG_OPT_STRING, "ID of secret providing the password", NULL},
    {"encrypt.format", QIMG_OPT_STRING,
     "Encrypt the image, format choices: 'luks', 'luks2'", NULL},
    {"encrypt.cipher-alg", QIMG_OPT_STRING,
     "Name of encryption cipher algorithm (allowed values: aes-128, aes-256)", NULL},
    {"encrypt.key-secret", QIMG_OPT_STRING, "ID of secret providing LUKS passphrase", NULL},
    {0},
};

/* What names the node: QEMU shows these in its json:{...} name. */
static const char *const qrbd_strong_opts[] = {"pool", "namespace", "image", "conf", "snapshot",
                                              "user", "server", "password-secret",
                                              NULL};

/* QEMU's request kinds and BDRV_REQ_* flag values, for its failure report. */
enum rbd_cmd { RBD_CMD_READ, RBD_CMD_WRITE, RBD_CMD_DISCARD, RBD_CMD_FLUSH, RBD_CMD_ZEROES };

static unsigned qemu_req_flags(unsigned flags)
{
    return ((flags & QIMG_REQ_MAY_UNMAP) ? 0x4u : 0) | ((flags & QIMG_REQ_FUA) ? 0x10u : 0) |
           ((flags & QIMG_REQ_NO_FALLBACK) ? 0x100u : 0);
}

/* A failed request is reported on the spot, in QEMU's words, then fails. */
static int request_failed(enum rbd_cmd cmd, uint64_t off, uint64_t bytes, unsigned flags,
                          int ret)
{
    qimg_report("rbd request failed: cmd %d offset %" PRIu64 " bytes %" PRIu64
                " flags %u task.ret %d (%s)",
                (int)cmd, off, bytes, qemu_req_flags(flags), ret, strerror(-ret));
    return ret;
}

static void state_free(struct rbd_state *s)
{
    if (s->image)
        rbd_close(s->image);
    if (s->io)
        rados_ioctx_destroy(s->io);
    if (s->cluster)
        rados_shutdown(s->cluster);
    rbd_spec_clear(&s->spec);
    free(s->enc_key_secret);
    free(s);
}

/* QEMU's RbdImageEncryptionFormat names as librbd's formats; -1 for others. */
static int encryption_format(const char *name)
{
    if (!strcmp(name, "luks"))
        return RBD_ENCRYPTION_FORMAT_LUKS1;
    if (!strcmp(name, "luks2"))
        return RBD_ENCRYPTION_FORMAT_LUKS2;
    return -1;
}

static bool has_prefix_key(const struct qimg_opts *o, const char *prefix)
{
    for (size_t i = 0; i < o->n; i++)
        if (!o->v[i].used && !strncmp(o->v[i].key, prefix, strlen(prefix)))
            return true;
    return false;
}

/* encrypt.format / encrypt.key-secret at open (RbdEncryptionOptions), checked as QAPI does. */
static int take_encrypt_open(struct rbd_state *s, struct qimg_opts *o, struct qimg_error *err)
{
    s->enc_format = -1;
    if (!has_prefix_key(o, "encrypt."))
        return 0;
    const char *fmt = qimg_opts_take(o, "encrypt.format");
    if (!fmt)
        return qimg_error_set(err, -EINVAL, "Parameter 'encrypt.format' is missing");
    s->enc_format = encryption_format(fmt);
    if (s->enc_format < 0)
        return qimg_error_set(err, -EINVAL, "Parameter 'format' does not accept value '%s'", fmt);
    const char *key = qimg_opts_take(o, "encrypt.key-secret");
    if (!key)
        return qimg_error_set(err, -EINVAL, "Parameter 'encrypt.key-secret' is missing");
    s->enc_key_secret = xstrdup(key);
    return 0;
}

/* The LUKS passphrase for librbd: the secret's bytes (the same layout for LUKS1 and 2). */
static int luks_options(const char *secret_id, int alg, rbd_encryption_luks2_format_options_t *lo,
                        struct qimg_error *err)
{
    uint8_t *pw = NULL;
    size_t len = 0;
    int ret = qimg_secret_lookup(secret_id, &pw, &len, err);
    if (ret < 0)
        return ret;
    lo->alg = (rbd_encryption_algorithm_t)alg;
    lo->passphrase = (const char *)pw;
    lo->passphrase_size = len;
    return 0;
}

static void luks_options_clear(rbd_encryption_luks2_format_options_t *lo)
{
    if (lo->passphrase) {
        memset((char *)lo->passphrase, 0, lo->passphrase_size);
        free((char *)lo->passphrase);
    }
    lo->passphrase = NULL;
}

static int load_encryption(struct rbd_state *s, struct qimg_error *err)
{
    rbd_encryption_luks2_format_options_t lo = {0};
    int ret = luks_options(s->enc_key_secret, RBD_ENCRYPTION_ALGORITHM_AES256, &lo, err);
    if (ret < 0)
        return ret;
    ret = rbd_encryption_load(s->image, (rbd_encryption_format_t)s->enc_format, &lo, sizeof(lo));
    luks_options_clear(&lo);
    return ret < 0 ? qimg_error_errno(err, ret, "encryption load fail") : 0;
}

static int open_image(struct rbd_state *s, bool writable, struct qimg_error *err)
{
    const char *snap = s->spec.snap;
    int ret = writable && !snap ? rbd_open(s->io, s->spec.image, &s->image, NULL)
                                : rbd_open_read_only(s->io, s->spec.image, &s->image, snap);
    if (ret < 0) {
        s->image = NULL;
        return qimg_error_errno(err, ret, "error reading header from %s", s->spec.image);
    }
    if (snap && writable)
        return qimg_error_set(err, -EACCES, "rbd snapshots are read-only");
    rbd_image_info_t info;
    ret = rbd_stat(s->image, &info, sizeof(info));
    if (ret < 0)
        return qimg_error_errno(err, ret, "error getting image info from %s", s->spec.image);
    s->object_size = info.obj_size;
    return s->enc_format >= 0 ? load_encryption(s, err) : 0;
}

static int qrbd_open_node(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct rbd_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    s->enc_format = -1;
    /* librbd receives every data message into a buffer as large as the request. */
    qimg_mem_want_large_buffers();
    int ret = rbd_spec_take(&s->spec, opts, err);
    if (ret == 0)
        ret = take_encrypt_open(s, opts, err);
    if (ret == 0)
        ret = qimg_check_qapi_options(opts, err);
    if (ret == 0)
        ret = rbd_connect(&s->spec, &s->cluster, &s->io, err);
    if (ret == 0)
        ret = open_image(s, (n->flags & QIMG_O_RDWR) != 0, err);
    return ret;
}

static void qrbd_close_node(struct qimg_node *n)
{
    if (n->opaque)
        state_free(n->opaque);
    n->opaque = NULL;
}

static int64_t qrbd_get_length(struct qimg_node *n)
{
    struct rbd_state *s = n->opaque;
    uint64_t size = 0;
    int ret = rbd_get_size(s->image, &size);
    return ret < 0 ? ret : (int64_t)size;
}

static int qrbd_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    struct rbd_state *s = n->opaque;
    char *p = buf;
    const uint64_t req_off = off, req_len = len;
    while (len) {
        size_t now = len < RBD_IO_CHUNK ? (size_t)len : RBD_IO_CHUNK;
        ssize_t r = rbd_read2(s->image, off, now, p, 0);
        if (r < 0)
            return request_failed(RBD_CMD_READ, req_off, req_len, flags, (int)r);
        if ((size_t)r < now) /* past the end: reads as zeroes */
            memset(p + r, 0, now - (size_t)r);
        p += now;
        off += now;
        len -= now;
    }
    return 0;
}

static int qrbd_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                      unsigned flags)
{
    struct rbd_state *s = n->opaque;
    const char *p = buf;
    const uint64_t req_off = off, req_len = len;
    while (len) {
        size_t now = len < RBD_IO_CHUNK ? (size_t)len : RBD_IO_CHUNK;
        ssize_t r = rbd_write2(s->image, off, now, p, 0);
        if (r >= 0 && (size_t)r != now)
            r = -EIO;
        if (r < 0)
            return request_failed(RBD_CMD_WRITE, req_off, req_len, flags, (int)r);
        p += now;
        off += now;
        len -= now;
    }
    return (flags & QIMG_REQ_FUA) ? rbd_flush(s->image) : 0;
}

static int qrbd_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    struct rbd_state *s = n->opaque;
    /* Without leave to unmap, the zeroes must stay allocated (QEMU asks for that too). */
    int zflags = (flags & QIMG_REQ_MAY_UNMAP) ? 0 : RBD_WRITE_ZEROES_FLAG_THICK_PROVISION;
    const uint64_t req_off = off, req_len = len;
    while (len) {
        size_t now = len < RBD_IO_CHUNK ? (size_t)len : RBD_IO_CHUNK;
        ssize_t r = rbd_write_zeroes(s->image, off, now, zflags, 0);
        if (r < 0)
            return request_failed(RBD_CMD_ZEROES, req_off, req_len, flags, (int)r);
        off += now;
        len -= now;
    }
    return (flags & QIMG_REQ_FUA) ? rbd_flush(s->image) : 0;
}

static int qrbd_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct rbd_state *s = n->opaque;
    const uint64_t req_off = off, req_len = len;
    while (len) {
        uint64_t now = len < RBD_IO_CHUNK ? len : RBD_IO_CHUNK;
        int r = rbd_discard(s->image, off, now);
        if (r < 0)
            return request_failed(RBD_CMD_DISCARD, req_off, req_len, 0, r);
        off += now;
        len -= now;
    }
    return 0;
}

static int qrbd_flush_node(struct qimg_node *n)
{
    struct rbd_state *s = n->opaque;
    int ret = rbd_flush(s->image);
    return ret < 0 ? request_failed(RBD_CMD_FLUSH, 0, 0, 0, ret) : 0;
}

static int qrbd_truncate(struct qimg_node *n, uint64_t size, bool exact, enum qimg_prealloc prealloc,
                        struct qimg_error *err)
{
    struct rbd_state *s = n->opaque;
    (void)exact;
    if (prealloc != QIMG_PREALLOC_OFF)
        return qimg_error_set(err, -ENOTSUP, "Unsupported preallocation mode '%s'",
                              qimg_prealloc_name(prealloc));
    int ret = rbd_resize(s->image, size);
    return ret < 0 ? qimg_error_errno(err, ret, "Failed to resize file") : 0;
}

/* The first run of rbd_diff_iterate2's answer: allocated objects, or the hole before them. */
struct diff_run {
    uint64_t start, bytes;
    bool exists;
};

#define DIFF_RUN_DONE (-9000) /* stops the iteration (librbd stops on < 0): run known */

static int diff_run_cb(uint64_t off, size_t len, int exists, void *opaque)
{
    struct diff_run *run = opaque;
    if (!exists)
        return 0; /* holes are what lies between the allocated extents */
    if (!run->exists && off > run->start) {
        run->bytes = off - run->start; /* a hole up to here */
        return DIFF_RUN_DONE;
    }
    if (run->exists && off > run->start + run->bytes)
        return DIFF_RUN_DONE; /* a hole follows the allocated run */
    run->bytes = off + len - run->start;
    run->exists = true;
    return 0;
}

/* The object map answers only when fast-diff is on and valid; else all is data. */
static bool can_diff(struct rbd_state *s)
{
    uint64_t features = 0, flags = 0;
    if (rbd_get_features(s->image, &features) < 0 || !(features & RBD_FEATURE_FAST_DIFF))
        return false;
    return rbd_get_flags(s->image, &flags) == 0 && !(flags & RBD_FLAG_FAST_DIFF_INVALID);
}

static int qrbd_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                            struct qimg_block_status *st)
{
    struct rbd_state *s = n->opaque;
    st->bytes = len;
    st->flags = QIMG_BLK_DATA | QIMG_BLK_OFFSET_VALID;
    st->offset = off;
    st->file = n;
    if (!s->object_size || !can_diff(s))
        return 0;
    /* Whole-object answers come per object: ask from the start of off's object. */
    uint64_t head = off % s->object_size;
    struct diff_run run = {.start = off - head};
    int ret = rbd_diff_iterate2(s->image, NULL, run.start, len + head, 1, 1, diff_run_cb, &run);
    if (ret < 0 && ret != DIFF_RUN_DONE)
        return 0; /* no answer: data, as QEMU says then */
    if (!run.exists && ret == 0)
        run.bytes = len + head; /* no allocated object at all in the range */
    if (run.bytes <= head)
        return 0;
    st->bytes = run.bytes - head < len ? run.bytes - head : len;
    if (!run.exists)
        st->flags = QIMG_BLK_ZERO | QIMG_BLK_OFFSET_VALID;
    return 0;
}

static bool qrbd_has_zero_init(struct qimg_node *n)
{
    (void)n;
    return true; /* a new image reads as zeroes */
}

/* Snapshots as SnapshotInfo: ID and name are the snapshot's name, VM state its size. */
static int qrbd_snapshot_list(struct qimg_node *n, struct qimg_snapshot_info **out, size_t *count,
                             struct qimg_error *err)
{
    struct rbd_state *s = n->opaque;
    int max = 16, ret;
    rbd_snap_info_t *snaps = NULL;
    for (;;) {
        snaps = xrealloc(snaps, (size_t)max * sizeof(*snaps));
        ret = rbd_snap_list(s->image, snaps, &max);
        if (ret != -ERANGE)
            break;
    }
    if (ret < 0) {
        free(snaps);
        return qimg_error_errno(err, ret, "error listing snapshots");
    }
    *count = (size_t)ret;
    *out = ret ? xcalloc((size_t)ret, sizeof(**out)) : NULL;
    for (int i = 0; i < ret; i++) {
        (*out)[i].id = xstrdup(snaps[i].name);
        (*out)[i].name = xstrdup(snaps[i].name);
        (*out)[i].vm_state_size = snaps[i].size;
    }
    rbd_snap_list_end(snaps);
    free(snaps);
    return 0;
}

static int qrbd_snapshot_create(struct qimg_node *n, const struct qimg_snapshot_info *sn,
                               struct qimg_error *err)
{
    struct rbd_state *s = n->opaque;
    const char *name = sn->name ? sn->name : "";
    if (sn->id && sn->id[0] && strcmp(sn->id, name))
        return qimg_error_set(err, -EINVAL, "Snapshot ID and name must match");
    int ret = rbd_snap_create(s->image, name);
    if (ret < 0) {
        qimg_report("failed to create snap: %s", strerror(-ret)); /* as QEMU reports it */
        return qimg_error_errno(err, ret, "failed to create snap");
    }
    return 0;
}

static int qrbd_snapshot_goto(struct qimg_node *n, const char *id_or_name, struct qimg_error *err)
{
    struct rbd_state *s = n->opaque;
    int ret = rbd_snap_rollback(s->image, id_or_name);
    return ret < 0 ? qimg_error_errno(err, ret, "Failed to rollback") : 0;
}

static int qrbd_snapshot_delete(struct qimg_node *n, const char *id, const char *name,
                               struct qimg_error *err)
{
    struct rbd_state *s = n->opaque;
    if (id && name && strcmp(id, name))
        return qimg_error_set(err, -EINVAL, "Parameter 'snapshot_id' is not supported");
    int ret = rbd_snap_remove(s->image, name ? name : id);
    return ret < 0 ? qimg_error_errno(err, ret, "Failed to remove the snapshot") : 0;
}

/* ImageInfoSpecificRbd: the encryption format the image's first bytes show, if any. */
static struct qimg_json *specific_info(struct rbd_state *s)
{
    struct qimg_json *data = qimg_json_object();
    uint8_t head[8] = {0};
    if (rbd_read(s->image, 0, sizeof(head), (char *)head) == (ssize_t)sizeof(head) &&
        !memcmp(head, luks_magic, sizeof(luks_magic))) {
        unsigned version = (unsigned)head[6] << 8 | head[7];
        if (version == 1 || version == 2)
            qimg_json_add_str(data, "encryption-format", version == 1 ? "luks" : "luks2");
    }
    struct qimg_json *fs = qimg_json_object();
    qimg_json_add_str(fs, "type", "rbd");
    qimg_json_add(fs, "data", data);
    return fs;
}

static int qrbd_get_info(struct qimg_node *n, struct qimg_driver_info *info, struct qimg_error *err)
{
    struct rbd_state *s = n->opaque;
    info->cluster_size = s->object_size;
    struct qimg_snapshot_info *sn = NULL;
    size_t count = 0;
    int ret = qrbd_snapshot_list(n, &sn, &count, err);
    if (ret < 0)
        return ret;
    if (count) {
        info->snapshots = qimg_json_array();
        for (size_t i = 0; i < count; i++)
            qimg_json_append(info->snapshots, qimg_snapshot_info_json(&sn[i]));
    }
    qimg_snapshot_list_free(sn, count);
    info->format_specific = specific_info(s);
    return 0;
}

/* cluster_size as librbd's object order: a power of two, at least 4 KiB. */
static int object_order(uint64_t object_size, uint64_t *order, struct qimg_error *err)
{
    *order = 0;
    if (!object_size)
        return 0; /* librbd's default */
    if (object_size & (object_size - 1))
        return qimg_error_set(err, -EINVAL, "obj size needs to be power of 2");
    if (object_size < RBD_MIN_OBJECT_SIZE)
        return qimg_error_set(err, -EINVAL, "obj size too small");
    while ((1ull << *order) < object_size)
        (*order)++;
    return 0;
}

/* The encrypt.* create options (RbdEncryptionCreateOptions), checked as QAPI does. */
struct rbd_create_encryption {
    int format; /* RBD_ENCRYPTION_FORMAT_*, or -1: none */
    int alg;    /* enum qimg_cipher_alg (QEMU's QCryptoCipherAlgorithm) */
    const char *key_secret;
};

static int take_encrypt_create(struct qimg_opts *opts, struct rbd_create_encryption *e,
                               struct qimg_error *err)
{
    e->format = -1;
    e->alg = QIMG_CIPHER_AES_256;
    const char *fmt = qimg_opts_take(opts, "encrypt.format");
    const char *key = qimg_opts_take(opts, "encrypt.key-secret");
    const char *alg = qimg_opts_take(opts, "encrypt.cipher-alg");
    if (!fmt && !key && !alg)
        return 0;
    if (!fmt)
        return qimg_error_set(err, -EINVAL, "Parameter 'format' is missing");
    e->format = encryption_format(fmt);
    if (e->format < 0)
        return qimg_error_set(err, -EINVAL, "Parameter 'format' does not accept value '%s'", fmt);
    if (!key)
        return qimg_error_set(err, -EINVAL, "Parameter 'key-secret' is missing");
    e->key_secret = key;
    if (alg && (e->alg = qimg_cipher_alg_parse(alg)) < 0)
        return qimg_error_set(err, -EINVAL, "Parameter 'cipher-alg' does not accept value '%s'",
                              alg);
    return 0;
}

/* LUKS on the new image (librbd grows it by the header); QEMU's messages. */
static int format_encryption(rados_ioctx_t io, const char *name,
                             const struct rbd_create_encryption *e, struct qimg_error *err)
{
    rbd_encryption_luks2_format_options_t lo = {0};
    int ret = luks_options(e->key_secret, 0, &lo, err);
    if (ret < 0)
        return ret;
    if (e->alg == QIMG_CIPHER_AES_128)
        lo.alg = RBD_ENCRYPTION_ALGORITHM_AES128;
    else if (e->alg == QIMG_CIPHER_AES_256)
        lo.alg = RBD_ENCRYPTION_ALGORITHM_AES256;
    else
        ret = qimg_error_errno(err, -ENOTSUP, "unknown encryption algorithm: %d", e->alg);
    rbd_image_t image = NULL;
    if (ret == 0 && (ret = rbd_open(io, name, &image, NULL)) < 0) {
        image = NULL;
        qimg_error_errno(err, ret, "error opening image '%s' for encryption format", name);
    }
    uint64_t raw_size = 0, data_size = 0;
    if (ret == 0 && (ret = rbd_get_size(image, &raw_size)) < 0)
        qimg_error_errno(err, ret, "cannot get raw image size");
    if (ret == 0) {
        ret = rbd_encryption_format(image, (rbd_encryption_format_t)e->format, &lo, sizeof(lo));
        if (ret < 0)
            qimg_error_errno(err, ret, "encryption format fail");
    }
    /* The header took room from the data: the image grows by it, as QEMU has it. */
    if (ret == 0 && (ret = rbd_get_size(image, &data_size)) < 0)
        qimg_error_errno(err, ret, "cannot get effective image size");
    if (ret == 0 && data_size < raw_size &&
        (ret = rbd_resize(image, raw_size + (raw_size - data_size))) < 0)
        qimg_error_errno(err, ret, "cannot resize image after format");
    if (image)
        rbd_close(image);
    luks_options_clear(&lo);
    return ret;
}

static int create_image(const struct rbd_spec *spec, uint64_t size, uint64_t order,
                        const struct rbd_create_encryption *enc, struct qimg_error *err)
{
    rados_t cluster;
    rados_ioctx_t io;
    int ret = rbd_connect(spec, &cluster, &io, err);
    if (ret == 0) {
        rbd_image_options_t io_opts;
        rbd_image_options_create(&io_opts);
        if (order)
            rbd_image_options_set_uint64(io_opts, RBD_IMAGE_OPTION_ORDER, order);
        ret = rbd_create4(io, spec->image, size, io_opts);
        rbd_image_options_destroy(io_opts);
        if (ret < 0)
            qimg_error_errno(err, ret, "error rbd create");
        /* An image whose encryption could not be set up is not left behind (as QEMU). */
        if (ret == 0 && enc->format >= 0 && (ret = format_encryption(io, spec->image, enc,
                                                                      err)) < 0)
            rbd_remove(io, spec->image);
    }
    if (io)
        rados_ioctx_destroy(io);
    if (cluster)
        rados_shutdown(cluster);
    return ret;
}

static int qrbd_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    uint64_t size = 0, object_size = 0, order = 0;
    if (qimg_opts_take_size(opts, "size", &size, err) < 0 ||
        qimg_opts_take_size(opts, "cluster_size", &object_size, err) < 0)
        return err->code;
    struct rbd_create_encryption enc = {0};
    if (take_encrypt_create(opts, &enc, err) < 0)
        return err->code;
    size = (size + 511) / 512 * 512; /* QEMU rounds the size up to whole sectors */
    int ret = object_order(object_size, &order, err);
    if (ret < 0)
        return ret;
    struct qimg_opts *o = qimg_opts_new();
    struct rbd_spec spec = {0};
    const char *secret = qimg_opts_take(opts, "password-secret");
    if (secret)
        qimg_opts_set(o, "key-secret", secret);
    ret = !strncmp(filename, "json:", 5) ? qimg_opts_parse_json(o, filename + 5, err)
                                         : (qimg_opts_set(o, "filename", filename), 0);
    if (ret == 0) {
        qimg_opts_take(o, "driver");
        ret = rbd_spec_take(&spec, o, err);
    }
    if (ret == 0)
        ret = create_image(&spec, size, order, &enc, err);
    rbd_spec_clear(&spec);
    qimg_opts_free(o);
    return ret;
}

const struct qimg_driver qimg_rbd_driver = {
    .name = "rbd",
    .qapi_options = true,
    .is_protocol = true,
    .protocol_prefix = "rbd",
    .create_opts = qrbd_create_opts,
    .open_opts = qrbd_open_opts,
    .strong_opts = qrbd_strong_opts,
    .open = qrbd_open_node,
    .close = qrbd_close_node,
    .create = qrbd_create,
    .get_length = qrbd_get_length,
    .pread = qrbd_pread,
    .pwrite = qrbd_pwrite,
    .pwrite_zeroes = qrbd_pwrite_zeroes,
    .pdiscard = qrbd_pdiscard,
    .flush = qrbd_flush_node,
    .truncate = qrbd_truncate,
    .block_status = qrbd_block_status,
    .has_zero_init = qrbd_has_zero_init,
    .get_info = qrbd_get_info,
    .snapshot_list = qrbd_snapshot_list,
    .snapshot_create = qrbd_snapshot_create,
    .snapshot_goto = qrbd_snapshot_goto,
    .snapshot_delete = qrbd_snapshot_delete,
};
