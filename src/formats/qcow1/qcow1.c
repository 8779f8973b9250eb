/* SPDX-License-Identifier: MIT */
/*
 * The qcow (version 1) format driver: header checks in qemu-img 9.1's order
 * and words, L1 and L2 tables through the table cache, guest I/O through the
 * mapped-image layer. New L2 tables and clusters go at the end of the file,
 * each aligned to the cluster size, L2 table first (qemu's order); entries are
 * written through at once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "crypto/sector.h"
#include "formats/qcow1/qcow1.h"
#include "util/bytes.h"
#include "util/mem.h"

static const struct qimg_opt_desc qcow1_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"backing_file", QIMG_OPT_STRING, "File name of a base image", NULL},
    {"backing_fmt", QIMG_OPT_STRING, "Format of the backing image", NULL},
    {"encryption", QIMG_OPT_BOOL,
     "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)", NULL},
    {"encrypt.format", QIMG_OPT_STRING, "Encrypt the image, format choices: 'aes'", NULL},
    {"encrypt.key-secret", QIMG_OPT_STRING, "ID of the secret that provides the AES encryption key",
     NULL},
    {0},
};

static const struct qimg_opt_desc qcow1_open_opts[] = {
    {"encrypt.key-secret", QIMG_OPT_STRING, "ID of the secret that provides the AES encryption key",
     NULL},
    {"encrypt.format", QIMG_OPT_STRING, "Encryption format", NULL},
    {0},
};

static int qcow1_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len < QCOW1_HEADER_SIZE)
        return 0;
    return qimg_be32(buf) == QCOW1_MAGIC && qimg_be32(buf + QCOW1_OFF_VERSION) == QCOW1_VERSION
               ? 100
               : 0;
}

/* Pieces of the L1 table counted from its start: no entry straddles two (any offset). */
static void l1_locate(const struct qcow1_state *s, uint64_t i, uint64_t *table, uint64_t *in)
{
    uint64_t byte = i * 8;
    *table = s->l1_offset + (byte - byte % QCOW1_L1_TABLE);
    *in = byte % QCOW1_L1_TABLE;
}

static int l1_get(struct qimg_node *n, uint64_t i, uint64_t *entry)
{
    struct qcow1_state *s = n->opaque;
    uint64_t table, in;
    uint8_t *t;
    l1_locate(s, i, &table, &in);
    int ret = qimg_table_cache_get(&s->l1, table, false, &t);
    if (ret == 0)
        *entry = qimg_be64(t + in);
    return ret;
}

int qcow1_l2_entry(struct qimg_node *n, uint64_t off, uint64_t *entry)
{
    struct qcow1_state *s = n->opaque;
    uint64_t l2 = 0;
    int ret = l1_get(n, off >> (s->cluster_bits + s->l2_bits), &l2);
    *entry = 0;
    if (ret < 0 || !l2)
        return ret;
    uint8_t *t;
    ret = qimg_table_cache_get(&s->l2, l2, false, &t);
    if (ret == 0)
        *entry = qimg_be64(t + ((off >> s->cluster_bits) & (s->l2_entries - 1)) * 8);
    return ret;
}

/* Space at the end of the file, aligned to the cluster size (qemu's placement). */
static uint64_t take_space(struct qcow1_state *s, uint64_t bytes)
{
    uint64_t at = qimg_align_up(s->file_end, s->cluster_size);
    s->file_end = at + bytes;
    return at;
}

/* The L2 table of guest offset off, allocated (zeroed, L1 entry written) when missing. */
static int l2_table(struct qimg_node *n, uint64_t off, uint64_t *l2)
{
    struct qcow1_state *s = n->opaque;
    uint64_t i = off >> (s->cluster_bits + s->l2_bits);
    int ret = l1_get(n, i, l2);
    if (ret < 0 || *l2)
        return ret;
    uint64_t at = take_space(s, s->l2_bytes);
    uint8_t *t;
    ret = qimg_table_cache_get(&s->l2, at, true, &t);
    if (ret == 0)
        ret = qimg_table_cache_store(&s->l2, at, 0, s->l2_bytes);
    if (ret < 0)
        return ret;
    uint64_t table, in;
    l1_locate(s, i, &table, &in);
    ret = qimg_table_cache_get(&s->l1, table, false, &t);
    if (ret < 0)
        return ret;
    qimg_put_be64(t + in, at);
    ret = qimg_table_cache_store(&s->l1, table, in, 8);
    if (ret == 0)
        *l2 = at;
    return ret;
}

int qcow1_l2_set(struct qimg_node *n, uint64_t off, uint64_t value, uint64_t count)
{
    struct qcow1_state *s = n->opaque;
    uint64_t l2 = 0;
    int ret = l2_table(n, off, &l2);
    if (ret < 0 || count == 0)
        return ret;
    uint8_t *t;
    ret = qimg_table_cache_get(&s->l2, l2, false, &t);
    if (ret < 0)
        return ret;
    uint64_t in = ((off >> s->cluster_bits) & (s->l2_entries - 1)) * 8;
    bool compressed = value & QCOW1_COMPRESSED;
    for (uint64_t k = 0; k < count; k++)
        qimg_put_be64(t + in + 8 * k, compressed ? value : value + k * s->cluster_size);
    return qimg_table_cache_store(&s->l2, l2, in, 8 * count);
}

static int qcow1_map(struct qimg_node *n, uint64_t off, uint64_t len, struct qimg_map *m)
{
    struct qcow1_state *s = n->opaque;
    uint64_t pos = off, end = off + len;
    while (pos < end) {
        uint64_t e = 0, l2 = 0;
        uint64_t span = s->cluster_size << s->l2_bits;
        int ret = l1_get(n, pos >> (s->cluster_bits + s->l2_bits), &l2);
        if (ret == 0 && l2)
            ret = qcow1_l2_entry(n, pos, &e);
        if (ret < 0)
            return ret;
        uint64_t in = pos & (s->cluster_size - 1);
        /* no L2 table: the rest of its span is unallocated, in one step */
        uint64_t next = l2 ? pos - in + s->cluster_size : (pos | (span - 1)) + 1;
        if (!l2)
            e = 0;
        enum qimg_map_kind kind = !e ? QIMG_MAP_UNALLOCATED
                                  : (e & QCOW1_COMPRESSED) ? QIMG_MAP_COMPRESSED
                                                           : QIMG_MAP_DATA;
        uint64_t host = e + in;
        if (pos == off) {
            m->kind = kind;
            m->host_valid = m->in_place = kind == QIMG_MAP_DATA;
            m->host = m->host_valid ? host : 0;
            m->recurse = false;
            m->entry = e;
        } else if (kind != m->kind || kind == QIMG_MAP_COMPRESSED ||
                   (kind == QIMG_MAP_DATA && host != m->host + (pos - off))) {
            break;
        }
        pos = qimg_min_u64(end, next);
    }
    m->bytes = pos - off;
    return 0;
}

/* New clusters at the end of the file, after a new L2 table if one is needed. */
static int qcow1_alloc(struct qimg_node *n, struct qimg_alloc *a)
{
    struct qcow1_state *s = n->opaque;
    uint64_t l2 = 0;
    int ret = l2_table(n, a->guest, &l2);
    if (ret < 0)
        return ret;
    /* Within this L2 table only: the next one would land between the clusters. */
    uint64_t span = s->cluster_size * s->l2_entries;
    uint64_t to_table_end = span - (a->guest & (span - 1));
    a->bytes = qimg_min_u64(a->bytes, to_table_end);
    a->host = take_space(s, a->bytes);
    if (a->host + a->bytes > INT64_MAX)
        return -EFBIG;
    return 0;
}

static int qcow1_commit(struct qimg_node *n, struct qimg_alloc *a)
{
    struct qcow1_state *s = n->opaque;
    return qcow1_l2_set(n, a->guest, a->host, a->bytes / s->cluster_size);
}

const struct qimg_mapped_ops qcow1_mapped_ops = {
    .map = qcow1_map,
    .alloc = qcow1_alloc,
    .commit = qcow1_commit,
    .read_compressed = qcow1_read_compressed,
};

/* Header checks, in qemu-img 9.1's order and words. */
static int check_header(struct qcow1_state *s, const uint8_t *h, struct qimg_error *err)
{
    if (qimg_be32(h) != QCOW1_MAGIC)
        return qimg_error_set(err, -EINVAL, "Image not in qcow format");
    uint32_t version = qimg_be32(h + QCOW1_OFF_VERSION);
    if (version != QCOW1_VERSION)
        return qimg_error_set(err, -ENOTSUP, "qcow (v1) does not support qcow version %u\n"
                              "Try the 'qcow2' driver instead.", version);
    s->size = qimg_be64(h + QCOW1_OFF_SIZE);
    if (s->size <= 1)
        return qimg_error_set(err, -EINVAL, "Image size is too small (must be at least 2 bytes)");
    s->cluster_bits = h[QCOW1_OFF_CLUSTER_BITS];
    if (s->cluster_bits < 9 || s->cluster_bits > 16)
        return qimg_error_set(err, -EINVAL, "Cluster size must be between 512 and 64k");
    s->l2_bits = h[QCOW1_OFF_L2_BITS];
    if (s->l2_bits < 9 - 3 || s->l2_bits > 16 - 3)
        return qimg_error_set(err, -EINVAL, "L2 table size must be between 512 and 64k");
    s->crypt_method = qimg_be32(h + QCOW1_OFF_CRYPT);
    if (s->crypt_method > QCOW1_CRYPT_AES)
        return qimg_error_set(err, -EINVAL, "invalid encryption method in qcow header");
    unsigned shift = s->cluster_bits + s->l2_bits;
    if (s->size > UINT64_MAX - (1ull << shift))
        return qimg_error_set(err, -EINVAL, "Image too large");
    s->l1_entries = qimg_div_round_up(s->size, 1ull << shift);
    if (s->l1_entries > INT32_MAX / 8)
        return qimg_error_set(err, -EINVAL, "Image too large");
    s->l1_offset = qimg_be64(h + QCOW1_OFF_L1_OFFSET);
    if (s->l1_offset > INT64_MAX - s->l1_entries * 8)
        return qimg_error_set(err, -EINVAL, "Invalid L1 table offset");
    s->cluster_size = 1ull << s->cluster_bits;
    s->l2_entries = 1ull << s->l2_bits;
    s->l2_bytes = s->l2_entries * 8;
    return 0;
}

static int read_backing_name(struct qimg_node *n, const uint8_t *h, struct qimg_error *err)
{
    uint64_t off = qimg_be64(h + QCOW1_OFF_BACKING_OFFSET);
    uint32_t len = qimg_be32(h + QCOW1_OFF_BACKING_SIZE);
    if (!off)
        return 0;
    if (len > QCOW1_MAX_BACKING_NAME)
        return qimg_error_set(err, -EINVAL, "Backing file name too long");
    char *name = xcalloc(1, len + 1);
    int64_t flen = qimg_node_length(n->file);
    int ret = 0;
    if (flen >= 0 && off < (uint64_t)flen) /* past the end of the file: reads as zeroes */
        ret = qimg_node_pread(n->file, off, qimg_min_u64(len, (uint64_t)flen - off), name, 0);
    if (ret < 0) {
        free(name);
        return qimg_error_errno(err, ret, "Could not read the backing file name");
    }
    free(n->backing_file);
    n->backing_file = name;
    return 0;
}

static int qcow1_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct qcow1_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    uint8_t h[QCOW1_HEADER_SIZE] = {0};
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get the image size");
    uint64_t have = qimg_min_u64((uint64_t)flen, QCOW1_HEADER_SIZE);
    int ret = have ? qimg_node_pread(n->file, 0, have, h, 0) : 0;
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read the image header");
    ret = check_header(s, h, err);
    if (ret == 0 && s->crypt_method)
        ret = qcow1_open_crypt(n, opts, err);
    if (ret == 0)
        ret = read_backing_name(n, h, err);
    if (ret < 0)
        return ret;
    s->file_end = (uint64_t)flen;
    s->mapped = (struct qimg_mapped){.ops = &qcow1_mapped_ops, .block_size = s->cluster_size};
    qimg_table_cache_init(&s->l1, n->file, QCOW1_L1_CACHE, QCOW1_L1_TABLE);
    s->l1.limit = s->l1_offset + s->l1_entries * 8;
    qimg_table_cache_init(&s->l2, n->file, QCOW1_L2_CACHE, s->l2_bytes);
    s->l2.limit = UINT64_MAX;
    return 0;
}

static void qcow1_close(struct qimg_node *n)
{
    struct qcow1_state *s = n->opaque;
    if (!s)
        return;
    if (s->l1.e)
        qimg_table_cache_destroy(&s->l1);
    if (s->l2.e)
        qimg_table_cache_destroy(&s->l2);
    if (s->crypt)
        qimg_sector_crypt_free(s->crypt);
    free(s);
}

static int64_t qcow1_get_length(struct qimg_node *n)
{
    const struct qcow1_state *s = n->opaque;
    return (int64_t)s->size;
}

static int qcow1_get_info(struct qimg_node *n, struct qimg_driver_info *info,
                          struct qimg_error *err)
{
    (void)err;
    const struct qcow1_state *s = n->opaque;
    info->cluster_size = s->cluster_size;
    info->encrypted = s->crypt_method != QCOW1_CRYPT_NONE;
    return 0;
}

static int qcow1_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                       unsigned flags)
{
    const struct qcow1_state *s = n->opaque;
    if (s->crypt_method)
        return qcow1_crypt_pread(n, off, len, buf, flags);
    return qimg_mapped_pread(n, off, len, buf, flags);
}

static int qcow1_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                        unsigned flags)
{
    const struct qcow1_state *s = n->opaque;
    if (s->crypt_method)
        return qcow1_crypt_pwrite(n, off, len, buf, flags);
    return qimg_mapped_pwrite(n, off, len, buf, flags);
}

/*
 * One cluster at a time, as qemu's qcow driver answers (compare -s sees where
 * a run ends). Encrypted clusters are DATA without a host offset: their
 * bytes are not the guest's.
 */
static int qcow1_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                              struct qimg_block_status *st)
{
    const struct qcow1_state *s = n->opaque;
    uint64_t to_end = s->cluster_size - (off & (s->cluster_size - 1));
    int ret = qimg_mapped_block_status(n, off, qimg_min_u64(len, to_end), st);
    if (ret == 0 && s->crypt_method)
        st->flags &= ~QIMG_BLK_OFFSET_VALID;
    return ret;
}

/*
 * commit's emptying of the top image, as qemu does it: a zeroed L1 table and
 * the file cut right after it (the L2 tables and clusters go with the cut).
 */
static int qcow1_make_empty(struct qimg_node *n, struct qimg_error *err)
{
    struct qcow1_state *s = n->opaque;
    uint64_t end = s->l1_offset + s->l1_entries * 8;
    pthread_mutex_lock(&n->lock);
    int ret = qimg_node_pwrite_zeroes(n->file, s->l1_offset, s->l1_entries * 8, 0);
    if (ret == 0)
        ret = qimg_node_truncate(n->file, end, false, QIMG_PREALLOC_OFF, err);
    /* the cached tables are stale now */
    qimg_table_cache_destroy(&s->l1);
    qimg_table_cache_destroy(&s->l2);
    qimg_table_cache_init(&s->l1, n->file, QCOW1_L1_CACHE, QCOW1_L1_TABLE);
    s->l1.limit = end;
    qimg_table_cache_init(&s->l2, n->file, QCOW1_L2_CACHE, s->l2_bytes);
    s->file_end = end;
    pthread_mutex_unlock(&n->lock);
    if (ret < 0)
        return qimg_error_is_set(err) ? ret : qimg_error_errno(err, ret, "Could not empty the image");
    return 0;
}

/* A new image reads as zeroes (qemu: bdrv_has_zero_init_1). */
static bool qcow1_has_zero_init(struct qimg_node *n)
{
    (void)n;
    return true;
}

const struct qimg_driver qimg_qcow1_driver = {
    .name = "qcow",
    .supports_backing = true,
    .create_opts = qcow1_create_opts,
    .open_opts = qcow1_open_opts,
    .probe = qcow1_probe,
    .open = qcow1_open,
    .close = qcow1_close,
    .create = qcow1_create,
    .get_length = qcow1_get_length,
    .pread = qcow1_pread,
    .pwrite = qcow1_pwrite,
    .pwrite_compressed = qcow1_pwrite_compressed,
    .block_status = qcow1_block_status,
    .get_info = qcow1_get_info,
    .has_zero_init = qcow1_has_zero_init,
    .make_empty = qcow1_make_empty,
};
