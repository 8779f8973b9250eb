/* SPDX-License-Identifier: MIT */
/*
 * qcow2 header and header extensions (qcow2.txt: Header, Header extensions):
 * parsing with every field checked against QEMU's limits and the file, and
 * serialising the first cluster the way qemu-img lays it out.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"
#include "util/mem.h"

/* The feature name table QEMU writes into every v3 image, in its order. */
static const struct {
    uint8_t type, bit;
    const char *name;
} feature_names[] = {
    {0, 0, "dirty bit"},
    {0, 1, "corrupt bit"},
    {0, 2, "external data file"},
    {0, 3, "compression type"},
    {0, 4, "extended L2 entries"},
    {1, 0, "lazy refcounts"},
    {2, 0, "bitmaps"},
    {2, 1, "raw external data"},
};
#define FEATURE_ENTRY 48

void qcow2_state_free_ext(struct qcow2_state *s)
{
    struct qcow2_ext *exts[] = {s->feature_table, s->bitmaps_ext, s->crypto_ext};
    for (size_t i = 0; i < 3; i++) {
        if (exts[i]) {
            free(exts[i]->data);
            free(exts[i]);
        }
    }
    s->feature_table = s->bitmaps_ext = s->crypto_ext = NULL;
    for (size_t i = 0; i < s->n_unknown_ext; i++)
        free(s->unknown_ext[i].data);
    free(s->unknown_ext);
    s->unknown_ext = NULL;
    s->n_unknown_ext = 0;
    free(s->backing_format);
    free(s->data_file_name);
    s->backing_format = s->data_file_name = NULL;
    free(s->header_tail);
    s->header_tail = NULL;
}

static struct qcow2_ext *ext_dup(uint32_t type, const uint8_t *p, uint32_t len)
{
    struct qcow2_ext *e = xcalloc(1, sizeof(*e));
    e->type = type;
    e->len = len;
    e->data = xmalloc(len ? len : 1);
    memcpy(e->data, p, len);
    return e;
}

/* "Unsupported qcow2 feature(s): dirty bit, Unknown incompatible feature: 40" */
static int report_unsupported(const struct qcow2_state *s, uint64_t mask, struct qimg_error *err)
{
    char msg[1024] = "";
    size_t len = 0;
    const struct qcow2_ext *ft = s->feature_table;
    for (uint32_t i = 0; ft && (i + 1) * FEATURE_ENTRY <= ft->len; i++) {
        const uint8_t *e = ft->data + i * FEATURE_ENTRY;
        if (e[0] != 0 || e[1] > 63 || !(mask & (1ull << e[1])))
            continue;
        len += (size_t)snprintf(msg + len, sizeof(msg) - len, "%s%.46s", len ? ", " : "",
                                (const char *)e + 2);
        mask &= ~(1ull << e[1]);
        if (len >= sizeof(msg))
            len = sizeof(msg) - 1;
    }
    if (mask)
        snprintf(msg + len, sizeof(msg) - len, "%sUnknown incompatible feature: %" PRIx64,
                 len ? ", " : "", mask);
    return qimg_error_set(err, -ENOTSUP, "Unsupported qcow2 feature(s): %s", msg);
}

static int parse_extensions(struct qcow2_state *s, const uint8_t *hdr, uint64_t start,
                            uint64_t end, struct qimg_error *err)
{
    uint64_t off = start;
    while (off < end) {
        if (end - off < 8)
            return qimg_error_set(err, -EINVAL, "Invalid extension header");
        uint32_t type = qcow2_be32(hdr + off);
        uint32_t len = qcow2_be32(hdr + off + 4);
        off += 8;
        if (type == QCOW2_EXT_END)
            return 0;
        if (len > end - off)
            return qimg_error_set(err, -EINVAL, "Header extension too large");
        const uint8_t *p = hdr + off;
        switch (type) {
        case QCOW2_EXT_BACKING_FORMAT:
            if (len > 1023)
                return qimg_error_set(err, -EINVAL, "ERROR: ext_backing_format: len=%u too large",
                                      len);
            free(s->backing_format);
            s->backing_format = xcalloc(1, len + 1);
            memcpy(s->backing_format, p, len);
            break;
        case QCOW2_EXT_DATA_FILE:
            free(s->data_file_name);
            s->data_file_name = xcalloc(1, len + 1);
            memcpy(s->data_file_name, p, len);
            break;
        case QCOW2_EXT_FEATURE_TABLE:
            if (!s->feature_table)
                s->feature_table = ext_dup(type, p, len);
            break;
        case QCOW2_EXT_BITMAPS:
            if (!s->bitmaps_ext)
                s->bitmaps_ext = ext_dup(type, p, len);
            break;
        case QCOW2_EXT_CRYPTO:
            if (!s->crypto_ext)
                s->crypto_ext = ext_dup(type, p, len);
            break;
        default: {
            s->unknown_ext = xrealloc(s->unknown_ext, (s->n_unknown_ext + 1) *
                                                          sizeof(*s->unknown_ext));
            struct qcow2_ext *e = &s->unknown_ext[s->n_unknown_ext++];
            e->type = type;
            e->len = len;
            e->data = xmalloc(len ? len : 1);
            memcpy(e->data, p, len);
            break;
        }
        }
        off += qcow2_align_up(len, 8);
    }
    return 0;
}

static int check_table(uint64_t offset, uint64_t entries, uint64_t entry_len, uint64_t max_bytes,
                       uint64_t cluster_size, const char *too_large, const char *invalid,
                       struct qimg_error *err)
{
    if (entries > max_bytes / entry_len)
        return qimg_error_set(err, -EINVAL, "%s", too_large);
    if (offset % cluster_size || offset > INT64_MAX - entries * entry_len)
        return qimg_error_set(err, -EINVAL, "%s", invalid);
    return 0;
}

/*
 * qcow2.txt, Snapshots: at most 65536 entries, at a cluster-aligned offset
 * (QEMU validates the table as nb_snapshots 40-byte headers); name is how
 * the message calls it ("Snapshot table" on open, "snapshot table" in check).
 */
int qcow2_snapshot_table_valid(const struct qcow2_state *s, const char *name,
                               struct qimg_error *err)
{
    if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS)
        return qimg_error_set(err, -EFBIG, "%s too large", name);
    if (s->snapshots_offset % s->cluster_size ||
        s->snapshots_offset > INT64_MAX - (uint64_t)s->nb_snapshots * 40)
        return qimg_error_set(err, -EINVAL, "%s offset invalid", name);
    return 0;
}

static int check_geometry(struct qcow2_state *s, bool checking, struct qimg_error *err)
{
    uint64_t cs = s->cluster_size;
    int ret;
    /* qemu-img check opens it all the same: its repair rebuilds the refcount structure. */
    if (s->rt_clusters == 0 && !checking)
        return qimg_error_set(err, -EINVAL, "Image does not contain a reference count table");
    ret = check_table(s->rt_offset, (uint64_t)s->rt_clusters * cs / 8, 8, QCOW2_MAX_REFTABLE_BYTES,
                      cs, "Reference count table too large", "Reference count table offset invalid",
                      err);
    if (ret < 0)
        return ret;
    /* qemu-img check validates the snapshot table itself (and may repair its size). */
    ret = checking ? 0 : qcow2_snapshot_table_valid(s, "Snapshot table", err);
    if (ret < 0)
        return ret;
    if (s->l1_size > QCOW2_MAX_L1_BYTES / 8)
        return qimg_error_set(err, -EFBIG, "Active L1 table too large");
    /* The L1 table must map the whole virtual disk. */
    uint64_t per_l1 = s->l2_entries * cs;
    if (s->size > INT64_MAX - per_l1)
        return qimg_error_set(err, -EFBIG, "Image is too big");
    uint64_t need = qcow2_div_round_up(s->size, per_l1);
    if (need > QCOW2_MAX_L1_BYTES / 8)
        return qimg_error_set(err, -EFBIG, "Image is too big");
    if (s->l1_size < need)
        return qimg_error_set(err, -EINVAL, "L1 table is too small");
    if (s->l1_size && (s->l1_offset % cs || s->l1_offset > INT64_MAX - (uint64_t)s->l1_size * 8))
        return qimg_error_set(err, -EINVAL, "Active L1 table offset invalid");
    return 0;
}

int qcow2_header_read(struct qimg_node *n, struct qcow2_state *s, struct qimg_error *err)
{
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get the size of the image file");
    /* A short file reads as zeroes past its end, as QEMU reads it. */
    uint8_t h[QCOW2_V3_HEADER_LEN] = {0};
    size_t hlen = flen < QCOW2_V3_HEADER_LEN ? (size_t)flen : QCOW2_V3_HEADER_LEN;
    int ret = hlen ? qimg_node_pread(n->file, 0, hlen, h, 0) : 0;
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read qcow2 header");
    if (qcow2_be32(h) != QCOW2_MAGIC)
        return qimg_error_set(err, -EINVAL, "Image is not in qcow2 format");
    s->version = qcow2_be32(h + 4);
    if (s->version < 2 || s->version > 3)
        return qimg_error_set(err, -ENOTSUP, "Unsupported qcow2 version %u", s->version);
    s->backing_file_offset = qcow2_be64(h + 8);
    s->backing_file_size = qcow2_be32(h + 16);
    s->cluster_bits = qcow2_be32(h + 20);
    if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return qimg_error_set(err, -EINVAL, "Unsupported cluster size: 2^%u", s->cluster_bits);
    s->cluster_size = 1ull << s->cluster_bits;
    s->size = qcow2_be64(h + 24);
    if (s->size > INT64_MAX)
        return qimg_error_set(err, -EFBIG, "Could not refresh total sector count: File too large");
    s->crypt_method = qcow2_be32(h + 32);
    s->l1_size = qcow2_be32(h + 36);
    s->l1_offset = qcow2_be64(h + 40);
    s->rt_offset = qcow2_be64(h + 48);
    s->rt_clusters = qcow2_be32(h + 56);
    s->nb_snapshots = qcow2_be32(h + 60);
    s->snapshots_offset = qcow2_be64(h + 64);
    if (s->version == 2) {
        s->refcount_order = 4;
        s->header_length = QCOW2_V2_HEADER_LEN;
    } else {
        s->incompat = qcow2_be64(h + 72);
        s->compat = qcow2_be64(h + 80);
        s->autoclear = qcow2_be64(h + 88);
        s->refcount_order = qcow2_be32(h + 96);
        s->header_length = qcow2_be32(h + 100);
        if (s->header_length < QCOW2_V3_HEADER_LEN)
            return qimg_error_set(err, -EINVAL, "qcow2 header too short");
    }
    if (s->header_length > s->cluster_size)
        return qimg_error_set(err, -EINVAL, "qcow2 header exceeds cluster size");
    if (s->refcount_order > 6)
        return qimg_error_set(err, -EINVAL,
                              "Reference count entry width too large; may not exceed 64 bits");
    s->refcount_bits = 1u << s->refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ull << s->refcount_bits) - 1;
    s->rb_entries = s->cluster_size * 8 / s->refcount_bits;

    /* The whole first cluster (clipped to the file) holds header, extensions and names. */
    uint64_t first = (uint64_t)flen < s->cluster_size ? (uint64_t)flen : s->cluster_size;
    uint8_t *c0 = xcalloc(1, s->cluster_size);
    ret = qimg_node_pread(n->file, 0, first, c0, 0);
    if (ret < 0) {
        free(c0);
        return qimg_error_errno(err, ret, "Could not read qcow2 header");
    }
    if (s->header_length > QCOW2_V3_HEADER_LEN) {
        s->compression_type = c0[104];
        if (s->header_length > QCOW2_CREATE_HEADER_LEN) {
            s->header_tail_len = s->header_length - QCOW2_CREATE_HEADER_LEN;
            s->header_tail = xmalloc(s->header_tail_len);
            memcpy(s->header_tail, c0 + QCOW2_CREATE_HEADER_LEN, s->header_tail_len);
        }
    }
    uint64_t ext_end = s->backing_file_offset && s->backing_file_offset < s->cluster_size
                           ? s->backing_file_offset
                           : s->cluster_size;
    if (ext_end < s->header_length)
        ext_end = s->header_length;
    ret = parse_extensions(s, c0, s->header_length, ext_end, err);
    if (ret < 0)
        goto out;

    if (s->incompat & ~QCOW2_INCOMPAT_KNOWN) {
        ret = report_unsupported(s, s->incompat & ~QCOW2_INCOMPAT_KNOWN, err);
        goto out;
    }
    if (s->compression_type > QCOW2_COMPRESSION_ZSTD) {
        ret = qimg_error_set(err, -ENOTSUP, "qcow2: unknown compression type: %u",
                             s->compression_type);
        goto out;
    }
    if (!!(s->incompat & QCOW2_INCOMPAT_COMPRESSION) != (s->compression_type != 0)) {
        ret = qimg_error_set(err, -EINVAL,
                             s->compression_type
                                 ? "qcow2: Compression type incompatible feature bit must be set"
                                 : "qcow2: Compression type incompatible feature bit must not be "
                                   "set");
        goto out;
    }
    s->extended_l2 = s->incompat & QCOW2_INCOMPAT_EXTL2;
    if (s->extended_l2 && s->cluster_bits < 14) {
        ret = qimg_error_set(err, -EINVAL, "Extended L2 entries are only supported with cluster "
                                           "sizes of at least 16384 bytes");
        goto out;
    }
    s->l2_entry_bytes = s->extended_l2 ? 16 : 8;
    s->l2_entries = s->cluster_size / s->l2_entry_bytes;
    s->l2_bits = s->cluster_bits - (s->extended_l2 ? 4 : 3);
    s->subcluster_size = s->extended_l2 ? s->cluster_size / QCOW2_SUBCLUSTERS : s->cluster_size;

    if (s->crypt_method > 2) {
        ret = qimg_error_set(err, -EINVAL, "Unsupported encryption method %u", s->crypt_method);
        goto out;
    }
    ret = check_geometry(s, n->flags & QIMG_O_CHECK, err);
    if (ret < 0)
        goto out;

    if (s->backing_file_offset) {
        if (s->backing_file_offset > s->cluster_size ||
            s->backing_file_size > QCOW2_MAX_BACKING_NAME ||
            s->backing_file_size > s->cluster_size - s->backing_file_offset) {
            ret = qimg_error_set(err, -EINVAL, "Backing file name too long");
            goto out;
        }
        free(n->backing_file);
        n->backing_file = xcalloc(1, s->backing_file_size + 1);
        memcpy(n->backing_file, c0 + s->backing_file_offset, s->backing_file_size);
        if (s->backing_format) {
            free(n->backing_format);
            n->backing_format = xstrdup(s->backing_format);
        }
    }
    s->has_feature_table = s->feature_table != NULL;
    ret = 0;
out:
    free(c0);
    return ret;
}

static size_t put_ext(uint8_t *buf, size_t off, size_t cap, uint32_t type, const void *data,
                      uint32_t len)
{
    size_t need = 8 + qcow2_align_up(len, 8);
    if (off + need > cap)
        return SIZE_MAX;
    qcow2_put32(buf + off, type);
    qcow2_put32(buf + off + 4, len);
    memcpy(buf + off + 8, data, len);
    return off + need;
}

int qcow2_header_build(const struct qcow2_state *s, const char *backing_file, uint8_t *buf,
                       size_t cap)
{
    memset(buf, 0, cap);
    uint32_t hlen = s->version >= 3 ? (s->header_length ? s->header_length
                                                         : QCOW2_CREATE_HEADER_LEN)
                                    : QCOW2_V2_HEADER_LEN;
    if (hlen > cap)
        return -EINVAL;
    qcow2_put32(buf, QCOW2_MAGIC);
    qcow2_put32(buf + 4, s->version);
    qcow2_put32(buf + 20, s->cluster_bits);
    qcow2_put64(buf + 24, s->size);
    qcow2_put32(buf + 32, s->crypt_method);
    qcow2_put32(buf + 36, s->l1_size);
    qcow2_put64(buf + 40, s->l1_offset);
    qcow2_put64(buf + 48, s->rt_offset);
    qcow2_put32(buf + 56, s->rt_clusters);
    qcow2_put32(buf + 60, s->nb_snapshots);
    qcow2_put64(buf + 64, s->snapshots_offset);
    if (s->version >= 3) {
        qcow2_put64(buf + 72, s->incompat);
        qcow2_put64(buf + 80, s->compat);
        qcow2_put64(buf + 88, s->autoclear);
        qcow2_put32(buf + 96, s->refcount_order);
        qcow2_put32(buf + 100, hlen);
        if (hlen > QCOW2_V3_HEADER_LEN)
            buf[104] = s->compression_type;
        if (s->header_tail && hlen >= QCOW2_CREATE_HEADER_LEN + s->header_tail_len)
            memcpy(buf + QCOW2_CREATE_HEADER_LEN, s->header_tail, s->header_tail_len);
    }
    size_t off = hlen;
    if (s->backing_format && backing_file)
        off = put_ext(buf, off, cap, QCOW2_EXT_BACKING_FORMAT, s->backing_format,
                      (uint32_t)strlen(s->backing_format));
    if (off != SIZE_MAX && s->crypto_ext)
        off = put_ext(buf, off, cap, s->crypto_ext->type, s->crypto_ext->data, s->crypto_ext->len);
    if (off != SIZE_MAX && s->data_file_name)
        off = put_ext(buf, off, cap, QCOW2_EXT_DATA_FILE, s->data_file_name,
                      (uint32_t)strlen(s->data_file_name));
    /* qemu-img leaves the feature name table out of images with clusters under 8 KiB. */
    if (off != SIZE_MAX && s->version >= 3 && s->cluster_size >= 8192) {
        uint8_t table[sizeof(feature_names) / sizeof(feature_names[0]) * FEATURE_ENTRY] = {0};
        for (size_t i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++) {
            table[i * FEATURE_ENTRY] = feature_names[i].type;
            table[i * FEATURE_ENTRY + 1] = feature_names[i].bit;
            memcpy(table + i * FEATURE_ENTRY + 2, feature_names[i].name,
                   strlen(feature_names[i].name));
        }
        off = put_ext(buf, off, cap, QCOW2_EXT_FEATURE_TABLE, table, sizeof(table));
    }
    if (off != SIZE_MAX && s->bitmaps_ext)
        off = put_ext(buf, off, cap, s->bitmaps_ext->type, s->bitmaps_ext->data,
                      s->bitmaps_ext->len);
    for (size_t i = 0; off != SIZE_MAX && i < s->n_unknown_ext; i++)
        off = put_ext(buf, off, cap, s->unknown_ext[i].type, s->unknown_ext[i].data,
                      s->unknown_ext[i].len);
    if (off == SIZE_MAX || off + 8 > cap)
        return -EFBIG;
    off += 8; /* end of extensions */
    if (backing_file) {
        size_t bl = strlen(backing_file);
        if (bl > QCOW2_MAX_BACKING_NAME || off + bl > cap)
            return -EFBIG;
        memcpy(buf + off, backing_file, bl);
        qcow2_put64(buf + 8, off);
        qcow2_put32(buf + 16, (uint32_t)bl);
    }
    return 0;
}

int qcow2_header_update_fields(struct qimg_node *n, uint64_t off, const void *be, size_t len)
{
    struct qcow2_state *s = n->opaque;
    /*
     * qcow2.txt, incompatible bit 0: clearing the dirty bit (whoever does it)
     * vouches for the refcounts, so the blocks lazy refcounts deferred go first.
     */
    if (s && qcow2_lazy_dirty(s) && off <= 72 && off + len >= 80 &&
        !(qcow2_be64((const uint8_t *)be + (72 - off)) & QCOW2_INCOMPAT_DIRTY)) {
        int ret = qcow2_refcount_writeback(n);
        if (ret == 0)
            ret = qimg_node_flush(n->file);
        if (ret < 0)
            return ret;
    }
    return qimg_node_pwrite(n->file, off, len, be, 0);
}

/*
 * qcow2.txt, incompatible bit 0 and compatible bit 0: with lazy refcounts the
 * dirty bit goes to disk (flushed before, so that nothing written earlier
 * depends on it, and after, so that nothing written later can precede it)
 * before the first allocating write links its clusters; refcount updates are
 * deferred from then on (qcow2_refcount_defer). As in QEMU, only the
 * 8-byte incompatible_features field is written.
 */
int qcow2_lazy_mark_dirty(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    if (qcow2_lazy_dirty(s) || s->read_only || s->version < 3 ||
        !qcow2_uses_lazy_refcounts(s)) /* the header bit or the lazy-refcounts option */
        return 0;
    if (!(s->incompat & QCOW2_INCOMPAT_DIRTY)) {
        int ret = qimg_node_flush(n->file);
        if (ret < 0)
            return ret;
        uint8_t be[8];
        qcow2_put64(be, s->incompat | QCOW2_INCOMPAT_DIRTY);
        ret = qcow2_header_update_fields(n, 72, be, 8);
        if (ret == 0)
            ret = qimg_node_flush(n->file);
        if (ret < 0)
            return ret;
        s->incompat |= QCOW2_INCOMPAT_DIRTY;
    }
    s->lazy_dirty = true;
    return 0;
}

/*
 * qemu-behaviour-facts.md: the first corruption event marks the image corrupt
 * (v3: the corrupt bit) and stops further I/O; the message goes to stderr
 * as QEMU prints it, without a program prefix.
 */
void qcow2_mark_corrupt(struct qimg_node *n, const char *what)
{
    struct qcow2_state *s = n->opaque;
    if (s->corrupt_event)
        return;
    s->corrupt_event = true;
    if (s->read_only) /* QEMU: a read-only image cannot be marked; the event is non-fatal */
        fprintf(stderr,
                "qcow2: Image is corrupt: %s; further non-fatal corruption events will be "
                "suppressed\n",
                what);
    else
        fprintf(stderr,
                "qcow2: Marking image as corrupt: %s; further corruption events will be "
                "suppressed\n",
                what);
    if (s->version >= 3 && !s->read_only) {
        uint8_t be[8];
        s->incompat |= QCOW2_INCOMPAT_CORRUPT;
        qcow2_put64(be, s->incompat);
        qcow2_header_update_fields(n, 72, be, 8);
        qimg_node_flush(n->file);
    }
}

/*
 * qcow2.txt: the backing file name lives in the first cluster after the
 * header extensions, its format in the backing format extension. The whole
 * first cluster is rebuilt (unknown extensions and header fields kept) and
 * written at once, then flushed, as QEMU rewrites it.
 */
int qcow2_change_backing_file(struct qimg_node *n, const char *file, const char *fmt,
                              struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    if (file && strlen(file) > 1023) /* qcow2.txt: at most 1023 bytes; qemu-img: EINVAL */
        return qimg_error_set(err, -EINVAL, "%s", strerror(EINVAL));
    if (s->data_file_name && file && (s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW))
        return qimg_error_set(err, -EINVAL,
                              "Cannot use a backing file with 'data-file-raw'");
    uint8_t *buf = qimg_alloc_aligned(s->cluster_size);
    if (!buf)
        return qimg_error_set(err, -ENOMEM, "%s", strerror(ENOMEM));
    pthread_mutex_lock(&n->lock);
    char *old_fmt = s->backing_format;
    s->backing_format = file && fmt ? xstrdup(fmt) : NULL;
    int ret = qcow2_header_build(s, file, buf, s->cluster_size);
    if (ret == -EFBIG)
        ret = -ENOSPC;
    if (ret == 0)
        ret = qimg_node_pwrite(n->file, 0, s->cluster_size, buf, 0);
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret < 0) {
        free(s->backing_format);
        s->backing_format = old_fmt;
        pthread_mutex_unlock(&n->lock);
        free(buf);
        if (ret == -ENOSPC)
            return qimg_error_set(err, ret, "No space left in the file header");
        return qimg_error_errno(err, ret, "Could not update qcow2 header");
    }
    free(old_fmt);
    s->backing_file_offset = qcow2_be64(buf + 8);
    s->backing_file_size = qcow2_be32(buf + 16);
    free(n->backing_file);
    free(n->backing_format);
    n->backing_file = file ? xstrdup(file) : NULL;
    n->backing_format = s->backing_format ? xstrdup(s->backing_format) : NULL;
    pthread_mutex_unlock(&n->lock);
    free(buf);
    return 0;
}
