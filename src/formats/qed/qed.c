/* SPDX-License-Identifier: MIT */
/*
 * The QED format driver: header checks as qemu-img 9.1 makes them (its
 * order and words), backing file name and the raw-backing flag, the
 * consistency check on a read-write open of an image marked dirty, resize
 * (grow only) and the backing file change behind rebase and commit. Guest
 * I/O is the mapped layer's over table.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/qed/qed.h"
#include "util/bytes.h"
#include "util/mem.h"

/* The order "Formatting ..." prints them. */
static const struct qimg_opt_desc qed_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"backing_file", QIMG_OPT_STRING, "File name of a base image", NULL},
    {"backing_fmt", QIMG_OPT_STRING, "Image format of the base image", NULL},
    {"cluster_size", QIMG_OPT_SIZE, "Cluster size (in bytes)", "65536"},
    {"table_size", QIMG_OPT_SIZE, "L1/L2 table size (in clusters)", NULL},
    {0},
};

bool qed_cluster_size_valid(uint64_t v)
{
    return qimg_is_pow2(v) && v >= QED_MIN_CLUSTER_SIZE && v <= QED_MAX_CLUSTER_SIZE;
}

bool qed_table_size_valid(uint64_t v)
{
    return qimg_is_pow2(v) && v >= QED_MIN_TABLE_SIZE && v <= QED_MAX_TABLE_SIZE;
}

/* entries^2 * cluster_size, modulo 2^64 as qemu computes it (0 for the biggest layouts). */
uint64_t qed_max_image_size(uint64_t cluster_size, uint64_t table_size)
{
    uint64_t entries = table_size * cluster_size / 8;
    return entries * cluster_size * entries;
}

bool qed_image_size_valid(uint64_t size, uint64_t cluster_size, uint64_t table_size)
{
    return size <= qed_max_image_size(cluster_size, table_size) && size % 512 == 0;
}

bool qed_cluster_offset_valid(const struct qed_state *s, uint64_t offset)
{
    uint64_t header_bytes = (uint64_t)s->h.header_size * s->h.cluster_size;
    return qimg_is_aligned(offset, s->h.cluster_size) && offset >= header_bytes &&
           offset < s->file_size;
}

/*
 * qemu 9.1 takes a table whose last cluster does not lie past its first as an
 * overflow: one-cluster tables (table_size=1) never open ("QED table offset is
 * invalid"), although qemu creates them.
 */
bool qed_table_offset_valid(const struct qed_state *s, uint64_t offset)
{
    uint64_t last;
    if (!qimg_add_u64(offset, s->table_bytes - s->h.cluster_size, &last) || last <= offset)
        return false;
    return qed_cluster_offset_valid(s, offset) && qed_cluster_offset_valid(s, last);
}

static int qed_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len < QED_HEADER_BYTES)
        return 0;
    return qimg_le32(buf) == QED_MAGIC ? 100 : 0;
}

/* The header; a short file reads as zeroes past its end (as qemu reads it). */
static int read_header(struct qimg_node *n, uint8_t *b, int64_t *flen)
{
    *flen = qimg_node_length(n->file);
    if (*flen < 0)
        return (int)*flen;
    uint64_t have = qimg_min_u64((uint64_t)*flen, QED_HEADER_BYTES);
    memset(b + have, 0, QED_HEADER_BYTES - have);
    return have ? qimg_node_pread(n->file, 0, have, b, 0) : 0;
}

/* qed.txt: Header, Field descriptions, in the order and words of qemu 9.1. */
static int check_header(struct qed_state *s, uint64_t flen, struct qimg_error *err)
{
    const struct qed_header *h = &s->h;
    if (h->magic != QED_MAGIC)
        return qimg_error_set(err, -EINVAL, "Image not in QED format");
    if (h->features & ~QED_FEATURE_MASK)
        return qimg_error_set(err, -ENOTSUP, "Unsupported QED features: %llx",
                              (unsigned long long)(h->features & ~QED_FEATURE_MASK));
    if (!qed_cluster_size_valid(h->cluster_size))
        return qimg_error_set(err, -EINVAL, "QED cluster size is invalid");
    s->file_size = qimg_align_down(flen, h->cluster_size);
    if (!qed_table_size_valid(h->table_size))
        return qimg_error_set(err, -EINVAL, "QED table size is invalid");
    if (!qed_image_size_valid(h->image_size, h->cluster_size, h->table_size))
        return qimg_error_set(err, -EINVAL, "QED image size is invalid");
    s->table_bytes = (uint64_t)h->cluster_size * h->table_size;
    s->table_nelems = s->table_bytes / 8;
    if (!qed_table_offset_valid(s, h->l1_table_offset))
        return qimg_error_set(err, -EINVAL, "QED table offset is invalid");
    if (h->header_size > UINT32_MAX / h->cluster_size)
        return qimg_error_set(err, -EINVAL, "QED header size is too large");
    return 0;
}

/* qed.txt: the backing file name lives within the first header_size clusters. */
static int read_backing_name(struct qimg_node *n, struct qimg_error *err)
{
    struct qed_state *s = n->opaque;
    const struct qed_header *h = &s->h;
    if (!(h->features & QED_F_BACKING_FILE))
        return 0;
    if ((uint64_t)h->backing_name_offset + h->backing_name_size >
        (uint64_t)h->cluster_size * h->header_size)
        return qimg_error_set(err, -EINVAL, "QED backing filename offset is invalid");
    if (h->backing_name_size >= QED_BACKING_NAME_MAX)
        return qimg_error_set(err, -EINVAL, "Failed to read backing filename");
    char *name = xcalloc(1, h->backing_name_size + 1);
    int ret = 0;
    if (h->backing_name_size) {
        uint8_t *buf = (uint8_t *)name;
        ret = qimg_node_pread(n->file, h->backing_name_offset, h->backing_name_size, buf, 0);
    }
    if (ret < 0) {
        free(name);
        return qimg_error_set(err, ret, "Failed to read backing filename");
    }
    n->backing_file = name;
    if (h->features & QED_F_BACKING_FORMAT_NO_PROBE)
        n->backing_format = xstrdup("raw");
    return 0;
}

/* Unknown autoclear bits are cleared by a writer (qed.txt: autoclear_features). */
static int clear_autoclear(struct qimg_node *n, struct qimg_error *err)
{
    struct qed_state *s = n->opaque;
    if (!s->h.autoclear_features || s->read_only)
        return 0;
    s->h.autoclear_features = 0;
    int ret = qed_header_write(n);
    if (ret < 0)
        return qimg_error_set(err, ret, "Failed to update header");
    return qimg_node_flush(n->file);
}

static int qed_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    (void)opts;
    struct qed_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    s->read_only = !(n->flags & QIMG_O_RDWR);
    uint8_t b[QED_HEADER_BYTES];
    int64_t flen;
    int ret = read_header(n, b, &flen);
    if (ret < 0)
        return qimg_error_set(err, ret, "Failed to read QED header");
    qed_header_decode(b, &s->h);
    ret = check_header(s, (uint64_t)flen, err);
    if (ret == 0)
        ret = read_backing_name(n, err);
    if (ret == 0)
        ret = clear_autoclear(n, err);
    if (ret < 0)
        return ret;
    s->piece = qimg_min_u64(QED_PIECE, s->table_bytes);
    s->mapped = (struct qimg_mapped){.ops = &qed_mapped_ops, .block_size = s->h.cluster_size};
    qimg_table_cache_init(&s->l1, n->file, QED_L1_CACHE, s->piece);
    s->l1.limit = s->h.l1_table_offset + s->table_bytes;
    qimg_table_cache_init(&s->l2, n->file, QED_L2_CACHE, s->piece);
    s->l2.load_event = QIMG_DBG_L2_LOAD; /* on a miss, as qemu raises it per table read */
    /*
     * qed.txt: Consistency checking. A read-only open may read a dirty image
     * (it cannot make things worse); a writer repairs it first.
     */
    if ((s->h.features & QED_F_NEED_CHECK) && !s->read_only && !(n->flags & QIMG_O_CHECK)) {
        struct qimg_check_result res = {0};
        ret = qed_check_image(n, &res, true);
        if (ret < 0)
            return qimg_error_set(err, ret, "Image corrupted");
    }
    return 0;
}

/* A clean close: data stable, then the need-check flag cleared (qemu's order). */
static void qed_close(struct qimg_node *n)
{
    struct qed_state *s = n->opaque;
    if (!s)
        return;
    if (s->l1.e && !s->read_only && (s->h.features & QED_F_NEED_CHECK)) {
        if (qimg_node_flush(n->file) == 0) {
            s->h.features &= ~QED_F_NEED_CHECK;
            qed_header_write(n);
        }
    }
    if (s->l1.e)
        qimg_table_cache_destroy(&s->l1);
    if (s->l2.e)
        qimg_table_cache_destroy(&s->l2);
    free(s);
}

static int64_t qed_get_length(struct qimg_node *n)
{
    const struct qed_state *s = n->opaque;
    return (int64_t)s->h.image_size;
}

static int qed_get_info(struct qimg_node *n, struct qimg_driver_info *info,
                        struct qimg_error *err)
{
    (void)err;
    const struct qed_state *s = n->opaque;
    info->cluster_size = s->h.cluster_size; /* no format-specific block in 9.1 */
    return 0;
}

static bool qed_has_zero_init(struct qimg_node *n)
{
    return !(n->backing_file && n->backing_file[0]);
}

/* Grow only; the new size must satisfy the same rules as at creation (qemu 9.1's words). */
static int qed_truncate(struct qimg_node *n, uint64_t size, bool exact, enum qimg_prealloc prealloc,
                        struct qimg_error *err)
{
    (void)exact;
    struct qed_state *s = n->opaque;
    if (prealloc != QIMG_PREALLOC_OFF)
        return qimg_error_set(err, -ENOTSUP, "Unsupported preallocation mode '%s'",
                              qimg_prealloc_name(prealloc));
    if (!qed_image_size_valid(size, s->h.cluster_size, s->h.table_size))
        return qimg_error_set(err, -EINVAL, "Invalid image size specified");
    if (size < s->h.image_size)
        return qimg_error_set(err, -ENOTSUP, "Shrinking images is currently not supported");
    pthread_mutex_lock(&n->lock);
    uint64_t old = s->h.image_size;
    s->h.image_size = size;
    int ret = qed_header_write(n);
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret < 0)
        s->h.image_size = old;
    pthread_mutex_unlock(&n->lock);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Failed to update the image size");
    return 0;
}

/*
 * The header and the name right after it (at byte 64), written at once and
 * flushed; the raw flag stands for a raw backing format, the only one QED
 * records.
 */
static int qed_change_backing_file(struct qimg_node *n, const char *file, const char *fmt,
                                   struct qimg_error *err)
{
    struct qed_state *s = n->opaque;
    if (file && s->h.compat_features)
        return qimg_error_set(err, -ENOTSUP, "%s", strerror(ENOTSUP));
    struct qed_header h = s->h;
    size_t len = file ? strlen(file) : 0;
    h.features &= ~(QED_F_BACKING_FILE | QED_F_BACKING_FORMAT_NO_PROBE);
    if (file)
        h.features |= QED_F_BACKING_FILE;
    if (file && fmt && !strcmp(fmt, "raw"))
        h.features |= QED_F_BACKING_FORMAT_NO_PROBE;
    h.backing_name_offset = QED_HEADER_BYTES;
    h.backing_name_size = (uint32_t)len;
    if (QED_HEADER_BYTES + len > (uint64_t)h.header_size * h.cluster_size)
        return qimg_error_set(err, -ENOSPC, "No space left in the file header");
    uint8_t *buf = xmalloc(QED_HEADER_BYTES + len);
    qed_header_encode(&h, buf);
    if (len)
        memcpy(buf + QED_HEADER_BYTES, file, len);
    pthread_mutex_lock(&n->lock);
    int ret = qimg_node_pwrite(n->file, 0, QED_HEADER_BYTES + len, buf, 0);
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret == 0)
        s->h = h;
    pthread_mutex_unlock(&n->lock);
    free(buf);
    if (ret < 0)
        return qimg_error_set(err, ret, "%s", strerror(-ret));
    free(n->backing_file);
    free(n->backing_format);
    n->backing_file = file ? xstrdup(file) : NULL;
    n->backing_format = file && fmt ? xstrdup(fmt) : NULL;
    return 0;
}

/*
 * qemu's QED cannot empty a layer, and qemu-img 9.1's commit then leaves the
 * top image as it was and still reports success.
 */
static int qed_make_empty(struct qimg_node *n, struct qimg_error *err)
{
    (void)n;
    (void)err;
    return 0;
}

const struct qimg_driver qimg_qed_driver = {
    .name = "qed",
    .create_opts = qed_create_opts,
    .probe = qed_probe,
    .open = qed_open,
    .close = qed_close,
    .create = qed_create,
    .get_length = qed_get_length,
    .pread = qimg_mapped_pread,
    .pwrite = qimg_mapped_pwrite,
    .pwrite_zeroes = qed_pwrite_zeroes,
    .truncate = qed_truncate,
    .block_status = qimg_mapped_block_status,
    .has_zero_init = qed_has_zero_init,
    .get_info = qed_get_info,
    .check = qed_check,
    .change_backing_file = qed_change_backing_file,
    .make_empty = qed_make_empty,
};
