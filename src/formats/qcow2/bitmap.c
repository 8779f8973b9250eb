/* SPDX-License-Identifier: MIT */
/*
 * Persistent dirty bitmaps (qcow2.txt: Bitmaps extension, Bitmap directory,
 * Bitmap table, Bitmap data, Dirty tracking bitmaps), kept as QEMU keeps them:
 *
 * - open parses and checks the directory; a read-write open loads every
 *   consistent bitmap into memory and marks it in use on disk (in place), so
 *   that a crash leaves it flagged inconsistent rather than silently stale;
 * - guest writes, zero writes and discards set the bits of enabled bitmaps;
 * - a clean close stores every loaded bitmap afresh (data clusters that are
 *   not all zeroes, then the table, then a new directory and the header),
 *   with in_use cleared, and only then frees the clusters of the old copies.
 *
 * Bitmaps that were in use when the image was opened are inconsistent: kept
 * on disk exactly as they are, listed with the in-use flag, refused for any
 * use but removal.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"
#include "util/mem.h"

#define BM_MAX_COUNT 65535
#define BM_MAX_DIR_SIZE (1024u * BM_MAX_COUNT)
#define BME_MAX_TABLE_SIZE 0x8000000u
#define BME_MAX_PHYS_SIZE 0x20000000ull
#define BME_MIN_GRAN_BITS 9
#define BME_MAX_GRAN_BITS 31
#define BME_MAX_NAME 1023
#define BME_FLAG_IN_USE (1u << 0)
#define BME_FLAG_AUTO (1u << 1)
#define BME_FLAG_EXTRA_COMPAT (1u << 2)
#define BME_RESERVED_FLAGS (~7u)
#define BME_TYPE_DIRTY 1
#define BTE_OFFSET_MASK 0x00fffffffffffe00ull
#define BTE_ALL_ONES 1ull
#define BTE_RESERVED 0xff000000000001feull
#define EXT_LEN 24

struct range {
    uint64_t off, len;
    bool data; /* a bitmap data cluster (not a table or directory) */
};

struct qcow2_bitmap {
    char *name;
    uint32_t flags; /* as on disk (inconsistent bitmaps keep theirs) */
    unsigned gran_bits;
    bool enabled;
    bool inconsistent;
    uint64_t table_offset; /* on disk; 0 for a bitmap not stored yet */
    uint32_t table_size;
    uint8_t *bits; /* NULL until loaded */
    uint64_t bits_len; /* bytes allocated for bits */
};

struct qcow2_bitmaps {
    struct qcow2_bitmap *bm;
    size_t n;
    uint64_t dir_offset, dir_size;
    bool rw;          /* loaded read-write: stored on close */
    struct range *old; /* host ranges freed once the new copies are stored */
    size_t n_old;
};

static void old_add(struct qcow2_bitmaps *b, uint64_t off, uint64_t len, bool data)
{
    if (!off || !len)
        return;
    b->old = xrealloc(b->old, (b->n_old + 1) * sizeof(*b->old));
    b->old[b->n_old++] = (struct range){off, len, data};
}

static uint64_t bm_nbits(const struct qcow2_state *s, const struct qcow2_bitmap *bm)
{
    return qcow2_div_round_up(s->size, 1ull << bm->gran_bits);
}

static uint64_t bm_nbytes(const struct qcow2_state *s, const struct qcow2_bitmap *bm)
{
    return qcow2_div_round_up(bm_nbits(s, bm), 8);
}

/*
 * The image may have been resized (truncate, snapshot apply) since the bits
 * were allocated: follow its size, new bits clear, bits past the end dropped.
 */
static void bm_fit(const struct qcow2_state *s, struct qcow2_bitmap *bm)
{
    if (!bm->bits)
        return;
    uint64_t nbytes = bm_nbytes(s, bm);
    if (nbytes != bm->bits_len) {
        bm->bits = xrealloc(bm->bits, nbytes ? nbytes : 1);
        if (nbytes > bm->bits_len)
            memset(bm->bits + bm->bits_len, 0, nbytes - bm->bits_len);
        bm->bits_len = nbytes;
    }
    uint64_t nbits = bm_nbits(s, bm);
    if (nbits % 8)
        bm->bits[nbytes - 1] &= (uint8_t)((1u << (nbits % 8)) - 1);
}

static void bm_free(struct qcow2_bitmap *bm)
{
    free(bm->name);
    free(bm->bits);
}

void qcow2_bitmaps_free(struct qcow2_state *s)
{
    struct qcow2_bitmaps *b = s->bitmaps;
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        bm_free(&b->bm[i]);
    free(b->bm);
    free(b->old);
    free(b);
    s->bitmaps = NULL;
}

static int inconsistent(struct qimg_error *err, const char *name);

int qcow2_bitmaps_resize_check(struct qimg_node *n, uint64_t size, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    for (size_t i = 0; s->bitmaps && i < s->bitmaps->n; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps->bm[i];
        if (bm->inconsistent)
            return inconsistent(err, bm->name);
        uint64_t bytes = qcow2_div_round_up(qcow2_div_round_up(size, 1ull << bm->gran_bits), 8);
        if (qcow2_align_up(bytes, s->cluster_size) > BME_MAX_PHYS_SIZE)
            return qimg_error_set(err, -EFBIG, "Bitmap '%s' would be too large for the new size",
                                  bm->name);
    }
    return 0;
}

static struct qcow2_bitmap *bm_find(struct qcow2_state *s, const char *name)
{
    for (size_t i = 0; s->bitmaps && i < s->bitmaps->n; i++)
        if (!strcmp(s->bitmaps->bm[i].name, name))
            return &s->bitmaps->bm[i];
    return NULL;
}

/* Rewrite the first cluster from the state (header, extensions, backing name). */
static int header_rewrite(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    uint8_t *buf = qimg_alloc_aligned(s->cluster_size);
    if (!buf)
        return -ENOMEM;
    int ret = qcow2_header_build(s, n->backing_file, buf, s->cluster_size);
    if (ret == 0)
        ret = qimg_node_pwrite(n->file, 0, s->cluster_size, buf, 0);
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    free(buf);
    return ret;
}

/* The bitmap table of bm, every entry checked (host order). */
static int read_table(struct qimg_node *n, const struct qcow2_bitmap *bm, uint64_t **out)
{
    struct qcow2_state *s = n->opaque;
    uint64_t bytes = (uint64_t)bm->table_size * 8;
    *out = NULL;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    if (bm->table_offset + bytes > (uint64_t)flen)
        return -EINVAL;
    uint8_t *buf = xmalloc(bytes ? bytes : 1);
    int ret = bytes ? qimg_node_pread(n->file, bm->table_offset, bytes, buf, 0) : 0;
    uint64_t *t = xcalloc(bm->table_size ? bm->table_size : 1, 8);
    for (uint32_t i = 0; ret == 0 && i < bm->table_size; i++) {
        t[i] = qcow2_be64(buf + i * 8);
        uint64_t off = t[i] & BTE_OFFSET_MASK;
        if ((t[i] & BTE_RESERVED) || (off && (t[i] & BTE_ALL_ONES)) || off % s->cluster_size ||
            off + s->cluster_size > (uint64_t)flen)
            ret = -EINVAL;
    }
    free(buf);
    if (ret < 0) {
        free(t);
        return ret;
    }
    *out = t;
    return 0;
}

/* Load bm's bits into memory; when old is set, remember its clusters for freeing. */
static int load_bits(struct qimg_node *n, struct qcow2_bitmap *bm, bool old)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size, nbytes = bm_nbytes(s, bm);
    uint64_t *t;
    int ret = read_table(n, bm, &t);
    if (ret < 0)
        return ret;
    uint8_t *bits = xcalloc(1, nbytes ? nbytes : 1);
    for (uint32_t i = 0; ret == 0 && i < bm->table_size && (uint64_t)i * cs < nbytes; i++) {
        uint64_t off = t[i] & BTE_OFFSET_MASK, start = (uint64_t)i * cs;
        uint64_t len = nbytes - start < cs ? nbytes - start : cs;
        if (off)
            ret = qimg_node_pread(n->file, off, len, bits + start, 0);
        else if (t[i] & BTE_ALL_ONES)
            memset(bits + start, 0xff, len);
    }
    if (ret == 0 && old) {
        for (uint32_t i = 0; i < bm->table_size; i++)
            old_add(s->bitmaps, t[i] & BTE_OFFSET_MASK, cs, true);
        old_add(s->bitmaps, bm->table_offset, (uint64_t)bm->table_size * 8, false);
    }
    free(t);
    if (ret < 0) {
        free(bits);
        return ret;
    }
    /* qcow2.txt: unused tail bits are zero; keep them so. */
    uint64_t nbits = bm_nbits(s, bm);
    if (nbits % 8)
        bits[nbytes - 1] &= (uint8_t)((1u << (nbits % 8)) - 1);
    free(bm->bits);
    bm->bits = bits;
    bm->bits_len = nbytes;
    return 0;
}

static int parse_directory(struct qcow2_state *s, const uint8_t *dir, uint64_t size,
                           uint32_t nb, struct qimg_error *err)
{
    struct qcow2_bitmaps *b = s->bitmaps;
    uint64_t p = 0;
    b->bm = xcalloc(nb, sizeof(*b->bm));
    for (uint32_t i = 0; i < nb; i++) {
        if (size - p < 24)
            return qimg_error_set(err, -EINVAL, "Broken bitmap directory");
        const uint8_t *e = dir + p;
        struct qcow2_bitmap *bm = &b->bm[b->n];
        bm->table_offset = qcow2_be64(e);
        bm->table_size = qcow2_be32(e + 8);
        bm->flags = qcow2_be32(e + 12);
        uint8_t type = e[16];
        bm->gran_bits = e[17];
        uint16_t name_size = qcow2_be16(e + 18);
        uint32_t extra = qcow2_be32(e + 20);
        uint64_t esz = qcow2_align_up(24 + (uint64_t)extra + name_size, 8);
        if (esz > size - p)
            return qimg_error_set(err, -EINVAL, "Broken bitmap directory");
        bm->name = xmalloc(name_size + 1u);
        memcpy(bm->name, e + 24 + extra, name_size);
        bm->name[name_size] = 0;
        b->n++;
        uint64_t phys = (uint64_t)bm->table_size * s->cluster_size;
        if (phys > BME_MAX_PHYS_SIZE || bm->table_size > BME_MAX_TABLE_SIZE ||
            !bm->table_offset || bm->table_offset % s->cluster_size || type != BME_TYPE_DIRTY ||
            !name_size || name_size > BME_MAX_NAME || bm->gran_bits < BME_MIN_GRAN_BITS ||
            bm->gran_bits > BME_MAX_GRAN_BITS || (bm->flags & BME_RESERVED_FLAGS) ||
            (!(bm->flags & BME_FLAG_IN_USE) && (phys * 8) < bm_nbits(s, bm)))
            return qimg_error_set(err, -EINVAL, "Bitmap '%s' doesn't satisfy the constraints",
                                  bm->name);
        if (extra)
            return qimg_error_set(err, -ENOTSUP, "Bitmap extra data is not supported");
        bm->enabled = bm->flags & BME_FLAG_AUTO;
        bm->inconsistent = bm->flags & BME_FLAG_IN_USE;
        p += esz;
    }
    if (p != size)
        return qimg_error_set(err, -EINVAL, "Broken bitmap directory");
    return 0;
}

static void put_entry(const struct qcow2_bitmap *bm, uint32_t flags, uint8_t *e)
{
    size_t nl = strlen(bm->name);
    qcow2_put64(e, bm->table_offset);
    qcow2_put32(e + 8, bm->table_size);
    qcow2_put32(e + 12, flags);
    e[16] = BME_TYPE_DIRTY;
    e[17] = (uint8_t)bm->gran_bits;
    qcow2_put16(e + 18, (uint16_t)nl);
    qcow2_put32(e + 20, 0);
    memcpy(e + 24, bm->name, nl);
}

static uint64_t dir_size(const struct qcow2_bitmaps *b)
{
    uint64_t size = 0;
    for (size_t i = 0; i < b->n; i++)
        size += qcow2_align_up(24 + strlen(b->bm[i].name), 8);
    return size;
}

static uint8_t *build_directory(const struct qcow2_bitmaps *b, uint64_t *size, bool stored)
{
    *size = dir_size(b);
    uint8_t *dir = xcalloc(1, *size ? *size : 1);
    uint64_t p = 0;
    for (size_t i = 0; i < b->n; i++) {
        const struct qcow2_bitmap *bm = &b->bm[i];
        uint32_t flags = bm->flags;
        if (!bm->inconsistent)
            flags = (bm->enabled ? BME_FLAG_AUTO : 0) | (stored ? 0 : BME_FLAG_IN_USE);
        put_entry(bm, flags, dir + p);
        p += qcow2_align_up(24 + strlen(bm->name), 8);
    }
    return dir;
}

int qcow2_bitmaps_load(struct qimg_node *n, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    if (!s->bitmaps_ext)
        return 0;
    /* check -r repairs refcounts under the bitmaps: they are only read then. */
    bool rw = !s->read_only && !(n->flags & QIMG_O_CHECK);
    bool consistent = s->version >= 3 && (s->autoclear & QCOW2_AUTOCLEAR_BITMAPS);
    if (!consistent) {
        /* Written by a program that did not keep the bitmaps: drop them (leaks at worst). */
        /* QEMU's follow-up line has no newline of its own. */
        static const char leaks[] = "Some clusters may be leaked, run 'qemu-img check -r' on "
                                    "the image file to fix.";
        if (s->version < 3)
            qimg_warn("This qcow2 v2 image contains bitmaps, but they may have been modified by "
                      "a program without persistent bitmap support; so now they must all be "
                      "considered inconsistent\n%s",
                      leaks);
        else
            qimg_warn("a program lacking bitmap support modified this file, so all bitmaps are "
                      "now considered inconsistent\n%s",
                      leaks);
        if (!rw)
            return 0;
        free(s->bitmaps_ext->data);
        free(s->bitmaps_ext);
        s->bitmaps_ext = NULL;
        int ret = header_rewrite(n);
        return ret < 0 ? qimg_error_errno(err, ret, "Could not update qcow2 header") : 0;
    }
    const uint8_t *x = s->bitmaps_ext->data;
    if (s->bitmaps_ext->len < EXT_LEN)
        return qimg_error_set(err, -EINVAL, "bitmaps_ext: Invalid extension length");
    uint32_t nb = qcow2_be32(x);
    uint64_t size = qcow2_be64(x + 8), off = qcow2_be64(x + 16);
    if (qcow2_be32(x + 4))
        return qimg_error_set(err, -EINVAL, "bitmaps_ext: Reserved field is not zero");
    if (nb > BM_MAX_COUNT)
        return qimg_error_set(err, -EINVAL,
                              "bitmaps_ext: Image has %" PRIu32 " bitmaps, exceeding the QEMU "
                              "supported maximum of %d",
                              nb, BM_MAX_COUNT);
    if (nb == 0)
        return qimg_error_set(err, -EINVAL, "bitmaps_ext: found bitmaps extension with zero "
                                            "bitmaps");
    if (off % s->cluster_size)
        return qimg_error_set(err, -EINVAL, "bitmaps_ext: invalid bitmap directory offset");
    if (size > BM_MAX_DIR_SIZE)
        return qimg_error_set(err, -EINVAL,
                              "bitmaps_ext: bitmap directory size (%" PRIu64 ") exceeds the "
                              "maximum supported size (%u)",
                              size, BM_MAX_DIR_SIZE);
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get the size of the image file");
    if (!off || off + size > (uint64_t)flen)
        return qimg_error_set(err, -EINVAL, "Could not read bitmap directory");
    uint8_t *dir = xmalloc(size ? size : 1);
    int ret = qimg_node_pread(n->file, off, size, dir, 0);
    if (ret < 0) {
        free(dir);
        return qimg_error_errno(err, ret, "Could not read bitmap directory");
    }
    s->bitmaps = xcalloc(1, sizeof(*s->bitmaps));
    s->bitmaps->dir_offset = off;
    s->bitmaps->dir_size = size;
    ret = parse_directory(s, dir, size, nb, err);
    free(dir);
    if (ret < 0) {
        qcow2_bitmaps_free(s);
        return ret;
    }
    if (!rw)
        return 0;

    /* Read-write: load the bits, then flag the bitmaps in use until stored again. */
    struct qcow2_bitmaps *b = s->bitmaps;
    for (size_t i = 0; i < b->n; i++) {
        if (b->bm[i].inconsistent)
            continue;
        ret = load_bits(n, &b->bm[i], true);
        if (ret < 0) {
            qimg_error_errno(err, ret, "Could not read bitmap '%s'", b->bm[i].name);
            qcow2_bitmaps_free(s);
            return ret;
        }
    }
    uint64_t dsz;
    uint8_t *ndir = build_directory(b, &dsz, false);
    ret = qimg_node_pwrite(n->file, b->dir_offset, dsz, ndir, 0);
    free(ndir);
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret < 0) {
        qcow2_bitmaps_free(s);
        return qimg_error_errno(err, ret, "Could not update the bitmap directory");
    }
    old_add(b, b->dir_offset, b->dir_size, false);
    b->rw = true;
    return 0;
}

const char *qcow2_bitmap_overlap(const struct qcow2_state *s, uint64_t off, uint64_t len)
{
    const struct qcow2_bitmaps *b = s->bitmaps;
    if (!b || !b->dir_size || !len)
        return NULL;
    uint64_t end = b->dir_offset + qcow2_align_up(b->dir_size, s->cluster_size);
    if (off < end && b->dir_offset < off + len)
        return "bitmap directory";
    return NULL;
}

void qcow2_bitmaps_mark_dirty(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = n->opaque;
    if (!s->bitmaps || !len)
        return;
    pthread_mutex_lock(&n->lock);
    for (size_t i = 0; s->bitmaps && i < s->bitmaps->n; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps->bm[i];
        if (!bm->enabled || bm->inconsistent || !bm->bits)
            continue;
        bm_fit(s, bm);
        uint64_t nbits = bm_nbits(s, bm);
        uint64_t a = off >> bm->gran_bits, z = (off + len - 1) >> bm->gran_bits;
        for (uint64_t k = a; k <= z && k < nbits; k++)
            bm->bits[k / 8] |= (uint8_t)(1u << (k % 8));
    }
    pthread_mutex_unlock(&n->lock);
}

static bool all_zero(const uint8_t *p, uint64_t len)
{
    for (uint64_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/* Write bm's data clusters and table to new clusters; sets table_offset/size. */
static int store_one(struct qimg_node *n, struct qcow2_bitmap *bm)
{
    struct qcow2_state *s = n->opaque;
    bm_fit(s, bm);
    uint64_t cs = s->cluster_size, nbytes = bm_nbytes(s, bm);
    uint64_t tsize = qcow2_div_round_up(nbytes, cs);
    if (!tsize)
        tsize = 1;
    uint8_t *table = xcalloc(1, tsize * 8);
    uint8_t *cbuf = qimg_alloc_aligned(cs);
    int ret = cbuf ? 0 : -ENOMEM;
    for (uint64_t i = 0; ret == 0 && i < tsize; i++) {
        uint64_t start = i * cs, len = start < nbytes ? (nbytes - start < cs ? nbytes - start : cs) : 0;
        if (!len || all_zero(bm->bits + start, len))
            continue;
        int64_t off = qcow2_alloc_clusters(n, 1);
        if (off < 0) {
            ret = (int)off;
            break;
        }
        memset(cbuf, 0, cs);
        memcpy(cbuf, bm->bits + start, len);
        ret = qimg_node_pwrite(n->file, (uint64_t)off, cs, cbuf, 0);
        qcow2_put64(table + i * 8, (uint64_t)off);
    }
    free(cbuf);
    if (ret == 0) {
        int64_t toff = qcow2_alloc_clusters(n, qcow2_div_round_up(tsize * 8, cs));
        if (toff < 0)
            ret = (int)toff;
        else
            ret = qimg_node_pwrite(n->file, (uint64_t)toff, tsize * 8, table, 0);
        if (ret == 0) {
            bm->table_offset = (uint64_t)toff;
            bm->table_size = (uint32_t)tsize;
        }
    }
    free(table);
    return ret;
}

int qcow2_bitmaps_store(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    struct qcow2_bitmaps *b = s->bitmaps;
    if (!b || !b->rw || s->read_only || s->corrupt_event)
        return 0;
    pthread_mutex_lock(&n->lock);
    int ret = 0;
    for (size_t i = 0; ret == 0 && i < b->n; i++)
        if (!b->bm[i].inconsistent)
            ret = store_one(n, &b->bm[i]);
    uint64_t dsz = 0;
    int64_t doff = 0;
    if (ret == 0 && b->n) {
        uint8_t *dir = build_directory(b, &dsz, true);
        doff = qcow2_alloc_clusters(n, qcow2_div_round_up(dsz, s->cluster_size));
        if (doff < 0)
            ret = (int)doff;
        else
            ret = qimg_node_pwrite(n->file, (uint64_t)doff, dsz, dir, 0);
        free(dir);
    }
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret == 0) {
        /* Switch the header to the new directory (or drop the extension). */
        if (b->n) {
            if (!s->bitmaps_ext) {
                s->bitmaps_ext = xcalloc(1, sizeof(*s->bitmaps_ext));
                s->bitmaps_ext->type = QCOW2_EXT_BITMAPS;
            }
            free(s->bitmaps_ext->data);
            s->bitmaps_ext->data = xcalloc(1, EXT_LEN);
            s->bitmaps_ext->len = EXT_LEN;
            qcow2_put32(s->bitmaps_ext->data, (uint32_t)b->n);
            qcow2_put64(s->bitmaps_ext->data + 8, dsz);
            qcow2_put64(s->bitmaps_ext->data + 16, (uint64_t)doff);
            s->autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
        } else if (s->bitmaps_ext) {
            free(s->bitmaps_ext->data);
            free(s->bitmaps_ext);
            s->bitmaps_ext = NULL;
            s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
        }
        ret = header_rewrite(n);
    }
    if (ret == 0) {
        b->dir_offset = (uint64_t)doff;
        b->dir_size = dsz;
        /* Freed data clusters are discarded in the file (observed), tables are not. */
        for (size_t i = 0; ret == 0 && i < b->n_old; i++)
            if (!b->old[i].data)
                ret = qcow2_free_bytes(n, b->old[i].off, b->old[i].len);
        qcow2_discard_freed_begin(s);
        for (size_t i = 0; ret == 0 && i < b->n_old; i++)
            if (b->old[i].data)
                ret = qcow2_free_bytes(n, b->old[i].off, b->old[i].len);
        qcow2_discard_freed_end(n); /* advisory */
        b->n_old = 0;
    }
    pthread_mutex_unlock(&n->lock);
    return ret;
}

static const char *flag_names[] = {"in-use", "auto"};

struct qimg_json *qcow2_bitmaps_info_json(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    if (!s->bitmaps || !s->bitmaps->n)
        return NULL;
    struct qimg_json *arr = qimg_json_array();
    pthread_mutex_lock(&n->lock);
    for (size_t i = 0; i < s->bitmaps->n; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps->bm[i];
        /* qapi Qcow2BitmapInfo: name, granularity, flags. */
        struct qimg_json *j = qimg_json_object();
        qimg_json_add_str(j, "name", bm->name);
        qimg_json_add_int(j, "granularity", (int64_t)1 << bm->gran_bits);
        struct qimg_json *flags = qimg_json_add(j, "flags", qimg_json_array());
        bool set[2] = {bm->inconsistent, bm->inconsistent ? (bm->flags & BME_FLAG_AUTO) != 0
                                                          : bm->enabled};
        for (int f = 0; f < 2; f++)
            if (set[f])
                qimg_json_append(flags, qimg_json_string(flag_names[f]));
        qimg_json_append(arr, j);
    }
    pthread_mutex_unlock(&n->lock);
    return arr;
}

int qcow2_bitmap_list(struct qimg_node *n, struct qimg_bitmap_info **out, size_t *count,
                      struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    *out = NULL;
    *count = 0;
    if (s->version < 3) /* qcow2.txt: bitmaps need the autoclear bits of v3 */
        return qimg_error_set(err, -ENOTSUP, "Cannot store dirty bitmaps in qcow2 v2 files");
    pthread_mutex_lock(&n->lock);
    *count = s->bitmaps ? s->bitmaps->n : 0;
    *out = *count ? xcalloc(*count, sizeof(**out)) : NULL;
    for (size_t i = 0; i < *count; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps->bm[i];
        (*out)[i] = (struct qimg_bitmap_info){
            .name = xstrdup(bm->name),
            .granularity = 1u << bm->gran_bits,
            .enabled = bm->inconsistent ? (bm->flags & BME_FLAG_AUTO) != 0 : bm->enabled,
            .in_use = bm->inconsistent,
        };
    }
    pthread_mutex_unlock(&n->lock);
    return 0;
}

static int not_found(struct qimg_error *err, const char *name)
{
    return qimg_error_set(err, -ENOENT, "Dirty bitmap '%s' not found", name);
}

static int inconsistent(struct qimg_error *err, const char *name)
{
    return qimg_error_set(err, -EINVAL,
                          "Bitmap '%s' is inconsistent and cannot be used\n"
                          "Try block-dirty-bitmap-remove to delete this bitmap from disk",
                          name);
}

/* Look a bitmap up for a change; NULL after setting the error. Lock held. */
static struct qcow2_bitmap *bm_usable(struct qimg_node *n, const char *name,
                                      struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    struct qcow2_bitmap *bm = bm_find(s, name);
    if (!bm) {
        not_found(err, name);
        return NULL;
    }
    if (bm->inconsistent) {
        inconsistent(err, name);
        return NULL;
    }
    if (s->read_only || !bm->bits) {
        qimg_error_set(err, -EPERM, "Bitmap '%s' is readonly and cannot be modified", name);
        return NULL;
    }
    return bm;
}

int qcow2_bitmap_add(struct qimg_node *n, const char *name, uint32_t granularity, bool disabled,
                     struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    if (!name[0])
        return qimg_error_set(err, -EINVAL, "Bitmap name cannot be empty");
    if (!granularity) {
        uint64_t g = s->cluster_size;
        granularity = (uint32_t)(g < 4096 ? 4096 : g > 65536 ? 65536 : g);
    }
    if (granularity < 512 || (granularity & (granularity - 1)))
        return qimg_error_set(err, -EINVAL, "Granularity must be power of 2 and at least 512");
    pthread_mutex_lock(&n->lock);
    int ret = 0;
    if (bm_find(s, name)) {
        ret = qimg_error_set(err, -EEXIST, "Bitmap already exists: %s", name);
        goto out;
    }
    const char *why = NULL;
    if (s->version < 3)
        why = "Cannot store dirty bitmaps in qcow2 v2 files";
    else if (strlen(name) > BME_MAX_NAME)
        why = "Name length exceeds maximum (1023 characters)";
    else if (s->bitmaps && s->bitmaps->n >= BM_MAX_COUNT)
        why = "Maximum number of persistent bitmaps is already reached";
    else if (s->bitmaps && dir_size(s->bitmaps) + qcow2_align_up(24 + strlen(name), 8) >
                               BM_MAX_DIR_SIZE)
        why = "Not enough space in the bitmap directory";
    if (why) {
        ret = qimg_error_set(err, -EINVAL, "Can't make bitmap '%s' persistent in '%s': %s", name,
                             "#block0", why);
        goto out;
    }
    if (s->read_only) {
        ret = qimg_error_set(err, -EPERM, "%s", strerror(EPERM));
        goto out;
    }
    struct qcow2_bitmap bm = {.name = xstrdup(name), .enabled = !disabled};
    for (bm.gran_bits = 0; (1u << bm.gran_bits) < granularity; bm.gran_bits++)
        ;
    uint64_t nbytes = bm_nbytes(s, &bm);
    if (qcow2_div_round_up(nbytes, s->cluster_size) * s->cluster_size > BME_MAX_PHYS_SIZE) {
        free(bm.name);
        ret = qimg_error_set(err, -EINVAL, "Can't make bitmap '%s' persistent in '%s': %s", name,
                             "#block0", "Too large bitmap");
        goto out;
    }
    bm.bits = xcalloc(1, nbytes ? nbytes : 1);
    bm.bits_len = nbytes;
    if (!s->bitmaps) {
        s->bitmaps = xcalloc(1, sizeof(*s->bitmaps));
        s->bitmaps->rw = true;
    }
    struct qcow2_bitmaps *b = s->bitmaps;
    b->bm = xrealloc(b->bm, (b->n + 1) * sizeof(*b->bm));
    b->bm[b->n++] = bm;
out:
    pthread_mutex_unlock(&n->lock);
    return ret;
}

/* Take [off, off+len) out of the ranges to free at the next store; false if it was not there. */
static bool old_take(struct qcow2_bitmaps *b, uint64_t off)
{
    for (size_t i = 0; i < b->n_old; i++) {
        if (b->old[i].off == off) {
            memmove(&b->old[i], &b->old[i + 1], (b->n_old - i - 1) * sizeof(*b->old));
            b->n_old--;
            return true;
        }
    }
    return false;
}

/*
 * Point the header at a new directory of the bitmaps now in memory (in-use
 * flags as they are in the file), or drop the extension when none is left;
 * the old directory is freed. Lock held.
 */
static int directory_replace(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    struct qcow2_bitmaps *b = s->bitmaps;
    uint64_t dsz = 0;
    int64_t doff = 0;
    int ret = 0;
    if (b->n) {
        uint8_t *dir = build_directory(b, &dsz, false);
        doff = qcow2_alloc_clusters(n, qcow2_div_round_up(dsz, s->cluster_size));
        ret = doff < 0 ? (int)doff : qimg_node_pwrite(n->file, (uint64_t)doff, dsz, dir, 0);
        free(dir);
        if (ret == 0)
            ret = qimg_node_flush(n->file);
        if (ret < 0)
            return ret;
        qcow2_put32(s->bitmaps_ext->data, (uint32_t)b->n);
        qcow2_put64(s->bitmaps_ext->data + 8, dsz);
        qcow2_put64(s->bitmaps_ext->data + 16, (uint64_t)doff);
    } else {
        free(s->bitmaps_ext->data);
        free(s->bitmaps_ext);
        s->bitmaps_ext = NULL;
        s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
    }
    ret = header_rewrite(n);
    if (ret < 0)
        return ret;
    uint64_t old_off = b->dir_offset, old_size = b->dir_size;
    old_take(b, old_off);
    b->dir_offset = (uint64_t)doff;
    b->dir_size = dsz;
    old_add(b, b->dir_offset, b->dir_size, false);
    return qcow2_free_bytes(n, old_off, old_size);
}

/*
 * Removal takes effect at once, as in qemu-img 7.2 (observed): the directory
 * is rewritten without the bitmap and its clusters are freed (its data
 * clusters discarded in the file), before the others are stored on close.
 */
int qcow2_bitmap_remove(struct qimg_node *n, const char *name, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    pthread_mutex_lock(&n->lock);
    int ret = 0;
    struct qcow2_bitmap *bm = bm_find(s, name);
    if (!bm) {
        ret = not_found(err, name);
        goto out;
    }
    if (s->read_only) {
        ret = qimg_error_set(err, -EPERM, "Bitmap '%s' is readonly and cannot be modified", name);
        goto out;
    }
    struct qcow2_bitmaps *b = s->bitmaps;
    uint64_t *t = NULL, toff = bm->table_offset, tlen = (uint64_t)bm->table_size * 8;
    uint32_t tn = bm->table_size;
    if (toff && read_table(n, bm, &t) < 0)
        t = NULL, tn = 0; /* unreadable: its data clusters leak, as they would anyway */
    size_t idx = (size_t)(bm - b->bm);
    /* In the file's directory (a bitmap added in this session has no table yet). */
    bool on_disk = toff != 0;
    if (toff)
        old_take(b, toff); /* freed here, not at the next store */
    bm_free(bm);
    memmove(&b->bm[idx], &b->bm[idx + 1], (b->n - idx - 1) * sizeof(*b->bm));
    b->n--;
    if (b->rw && b->dir_offset && s->bitmaps_ext && on_disk)
        ret = directory_replace(n);
    if (ret == 0 && toff)
        ret = qcow2_free_bytes(n, toff, tlen);
    qcow2_discard_freed_begin(s);
    for (uint32_t i = 0; ret == 0 && t && i < tn; i++) {
        uint64_t off = t[i] & BTE_OFFSET_MASK;
        if (off) {
            old_take(b, off);
            ret = qcow2_free_bytes(n, off, s->cluster_size);
        }
    }
    qcow2_discard_freed_end(n); /* advisory */
    free(t);
    if (ret < 0)
        ret = qimg_error_errno(err, ret, "Could not remove bitmap '%s'", name);
out:
    pthread_mutex_unlock(&n->lock);
    return ret;
}

int qcow2_bitmap_clear(struct qimg_node *n, const char *name, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    pthread_mutex_lock(&n->lock);
    struct qcow2_bitmap *bm = bm_usable(n, name, err);
    if (bm) {
        bm_fit(s, bm);
        memset(bm->bits, 0, bm->bits_len);
    }
    pthread_mutex_unlock(&n->lock);
    return bm ? 0 : err->code ? err->code : -EINVAL;
}

int qcow2_bitmap_set_enabled(struct qimg_node *n, const char *name, bool enabled,
                             struct qimg_error *err)
{
    pthread_mutex_lock(&n->lock);
    struct qcow2_bitmap *bm = bm_usable(n, name, err);
    if (bm)
        bm->enabled = enabled;
    pthread_mutex_unlock(&n->lock);
    return bm ? 0 : err->code ? err->code : -EINVAL;
}

int qcow2_bitmap_get(struct qimg_node *n, const char *name, uint8_t **bits, uint64_t *nbits,
                     uint32_t *granularity, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    pthread_mutex_lock(&n->lock);
    int ret = 0;
    struct qcow2_bitmap *bm = bm_find(s, name);
    if (!bm) {
        ret = not_found(err, name);
        goto out;
    }
    if (bm->inconsistent) {
        ret = inconsistent(err, name);
        goto out;
    }
    if (!bm->bits) {
        ret = load_bits(n, bm, false);
        if (ret < 0) {
            qimg_error_errno(err, ret, "Could not read bitmap '%s'", name);
            goto out;
        }
    }
    bm_fit(s, bm);
    uint64_t nbytes = bm_nbytes(s, bm);
    *bits = xmalloc(nbytes ? nbytes : 1);
    memcpy(*bits, bm->bits, nbytes);
    *nbits = bm_nbits(s, bm);
    *granularity = 1u << bm->gran_bits;
out:
    pthread_mutex_unlock(&n->lock);
    return ret;
}

int qcow2_bitmap_merge_bits(struct qimg_node *n, const char *name, const uint8_t *bits,
                            uint64_t nbits, uint32_t granularity, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    pthread_mutex_lock(&n->lock);
    struct qcow2_bitmap *bm = bm_usable(n, name, err);
    if (bm) {
        bm_fit(s, bm);
        uint64_t mine = bm_nbits(s, bm);
        for (uint64_t k = 0; k < nbits; k++) {
            if (!(bits[k / 8] & (1u << (k % 8))))
                continue;
            /* Source bit k covers [k*g, (k+1)*g): set every bit of ours it touches. */
            uint64_t a = k * granularity, z = a + granularity - 1;
            if (a >= s->size)
                break;
            if (z >= s->size)
                z = s->size - 1;
            for (uint64_t i = a >> bm->gran_bits; i <= z >> bm->gran_bits && i < mine; i++)
                bm->bits[i / 8] |= (uint8_t)(1u << (i % 8));
        }
    }
    pthread_mutex_unlock(&n->lock);
    return bm ? 0 : err->code ? err->code : -EINVAL;
}

int qcow2_bitmaps_for_each_ref(struct qimg_node *n,
                               int (*fn)(void *opaque, uint64_t off, uint64_t len),
                               void *opaque)
{
    struct qcow2_state *s = n->opaque;
    struct qcow2_bitmaps *b = s->bitmaps;
    if (!b || !b->dir_size)
        return 0;
    int ret = fn(opaque, b->dir_offset, b->dir_size);
    for (size_t i = 0; ret == 0 && i < b->n; i++) {
        const struct qcow2_bitmap *bm = &b->bm[i];
        if (!bm->table_offset)
            continue; /* added in this session, not stored yet */
        uint64_t *t;
        ret = read_table(n, bm, &t);
        if (ret < 0)
            return ret;
        ret = fn(opaque, bm->table_offset, (uint64_t)bm->table_size * 8);
        for (uint32_t k = 0; ret == 0 && k < bm->table_size; k++)
            if (t[k] & BTE_OFFSET_MASK)
                ret = fn(opaque, t[k] & BTE_OFFSET_MASK, s->cluster_size);
        free(t);
    }
    return ret;
}
