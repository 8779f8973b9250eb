/* SPDX-License-Identifier: MIT */
/*
 * The compare engine (qemu-img compare). The images are walked together by
 * block status: a range both sides know to read as zeroes is skipped, the
 * rest is read in chunks of at most QIMG_COMPARE_CHUNK and compared sector by
 * sector, so a mismatch is reported at the start of its 512-byte sector
 * (counted from the chunk start, as qemu-img counts). When the sizes differ
 * and the mode is not strict, the larger image's tail must read as zeroes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engines/compare.h"
#include "util/mem.h"
#include "util/zero.h"

/* Strict-mode status bits besides QIMG_BLK_*: allocated somewhere, run reaches the end. */
#define STATUS_ALLOCATED 0x100
#define STATUS_EOF 0x200

struct image {
    struct qimg_node *node;
    uint64_t size;
    int index; /* 1 or 2, for error reports */
    uint8_t *buf;
};

struct walk {
    const struct qimg_compare_params *params;
    struct qimg_compare_result *res;
    uint64_t total; /* progress base: the larger size */
};

static void progress(struct walk *w, uint64_t done)
{
    if (w->params && w->params->progress)
        w->params->progress(w->params->opaque, done, w->total);
}

static int fail(struct walk *w, enum qimg_compare_failure kind, const struct image *img,
                uint64_t off, int code)
{
    w->res->failure = kind;
    w->res->failed_image = img->index;
    w->res->offset = off;
    return code;
}

static bool reads_as_zero(const struct qimg_block_status *st)
{
    /* Unallocated down the whole chain reads as zeroes too. */
    return (st->flags & QIMG_BLK_ZERO) || !(st->flags & (QIMG_BLK_DATA | QIMG_BLK_ZERO));
}

/*
 * What strict mode compares: allocation, data/zero, whether a host offset is
 * known, compression, and whether the run reaches the end of the image.
 */
static unsigned strict_status(const struct qimg_block_status *st, uint64_t off, uint64_t size)
{
    unsigned f = st->flags & (QIMG_BLK_DATA | QIMG_BLK_ZERO | QIMG_BLK_OFFSET_VALID |
                              QIMG_BLK_COMPRESSED);
    if (f & (QIMG_BLK_DATA | QIMG_BLK_ZERO))
        f |= STATUS_ALLOCATED;
    else
        f |= QIMG_BLK_ZERO;
    if (off + st->bytes == size)
        f |= STATUS_EOF;
    return f;
}

static int status(struct walk *w, struct image *img, uint64_t off, struct qimg_block_status *st)
{
    int ret = qimg_chain_block_status(img->node, NULL, off, img->size - off, st);
    if (ret < 0)
        return fail(w, QIMG_COMPARE_FAIL_STATUS, img, off, ret);
    if (st->bytes == 0 || st->bytes > img->size - off)
        st->bytes = img->size - off;
    return 0;
}

static int read_chunk(struct walk *w, struct image *img, uint64_t off, uint64_t len)
{
    int ret = qimg_node_pread(img->node, off, len, img->buf, 0);
    if (ret < 0)
        return fail(w, QIMG_COMPARE_FAIL_READ, img, off, ret);
    return 0;
}

static void mismatch(struct walk *w, enum qimg_compare_outcome what, uint64_t off)
{
    w->res->outcome = what;
    w->res->offset = off;
}

/* Bytes of buf that equal other (or are zero when other is NULL), whole sectors counted. */
static uint64_t same_prefix(const uint8_t *buf, const uint8_t *other, uint64_t len)
{
    uint64_t off = 0;
    while (off < len) {
        uint64_t n = len - off < QIMG_COMPARE_SECTOR ? len - off : QIMG_COMPARE_SECTOR;
        bool same = other ? memcmp(buf + off, other + off, n) == 0 : qimg_is_zero(buf + off, n);
        if (!same)
            break;
        off += n;
    }
    return off;
}

/* [0, common): both images exist here. Returns 0 (res says whether a mismatch ended it). */
static int compare_common(struct walk *w, struct image *a, struct image *b, uint64_t common,
                          bool strict)
{
    uint64_t off = 0;
    while (off < common) {
        struct qimg_block_status sa, sb;
        int ret = status(w, a, off, &sa);
        if (ret == 0)
            ret = status(w, b, off, &sb);
        if (ret < 0)
            return ret;
        uint64_t n = sa.bytes < sb.bytes ? sa.bytes : sb.bytes;
        if (n > common - off)
            n = common - off;
        if (strict && strict_status(&sa, off, a->size) != strict_status(&sb, off, b->size)) {
            mismatch(w, QIMG_COMPARE_STATUS_MISMATCH, off);
            return 0;
        }
        bool za = reads_as_zero(&sa), zb = reads_as_zero(&sb);
        if (!za || !zb) {
            if (n > QIMG_COMPARE_CHUNK)
                n = QIMG_COMPARE_CHUNK;
            uint64_t same;
            if (za || zb) {
                /* One side reads as zeroes: the other must be zero too. */
                struct image *data = za ? b : a;
                ret = read_chunk(w, data, off, n);
                if (ret < 0)
                    return ret;
                same = same_prefix(data->buf, NULL, n);
            } else {
                ret = read_chunk(w, a, off, n);
                if (ret == 0)
                    ret = read_chunk(w, b, off, n);
                if (ret < 0)
                    return ret;
                same = same_prefix(a->buf, b->buf, n);
            }
            if (same < n) {
                mismatch(w, QIMG_COMPARE_CONTENT_MISMATCH, off + same);
                return 0;
            }
        }
        off += n;
        progress(w, off);
    }
    return 0;
}

/* [from, big->size): only the larger image has it; it must read as zeroes. */
static int check_tail(struct walk *w, struct image *big, uint64_t from)
{
    uint64_t off = from;
    while (off < big->size) {
        struct qimg_block_status st;
        int ret = status(w, big, off, &st);
        if (ret < 0)
            return ret;
        uint64_t n = st.bytes;
        if (!reads_as_zero(&st)) {
            if (n > QIMG_COMPARE_CHUNK)
                n = QIMG_COMPARE_CHUNK;
            ret = read_chunk(w, big, off, n);
            if (ret < 0)
                return ret;
            uint64_t same = same_prefix(big->buf, NULL, n);
            if (same < n) {
                mismatch(w, QIMG_COMPARE_CONTENT_MISMATCH, off + same);
                return 0;
            }
        }
        off += n;
        progress(w, off);
    }
    return 0;
}

int qimg_compare(struct qimg_node *img1, struct qimg_node *img2,
                 const struct qimg_compare_params *params, struct qimg_compare_result *res)
{
    struct image a = {.node = img1, .index = 1}, b = {.node = img2, .index = 2};
    struct walk w = {.params = params, .res = res};
    *res = (struct qimg_compare_result){.outcome = QIMG_COMPARE_IDENTICAL};
    bool strict = params && params->strict;

    int64_t s1 = qimg_node_length(img1);
    if (s1 < 0)
        return fail(&w, QIMG_COMPARE_FAIL_STATUS, &a, 0, (int)s1);
    int64_t s2 = qimg_node_length(img2);
    if (s2 < 0)
        return fail(&w, QIMG_COMPARE_FAIL_STATUS, &b, 0, (int)s2);
    a.size = (uint64_t)s1;
    b.size = (uint64_t)s2;
    w.total = a.size > b.size ? a.size : b.size;
    if (strict && a.size != b.size) {
        mismatch(&w, QIMG_COMPARE_SIZE_MISMATCH, 0);
        return 0;
    }

    a.buf = qimg_alloc_aligned(QIMG_COMPARE_CHUNK);
    b.buf = qimg_alloc_aligned(QIMG_COMPARE_CHUNK);
    int ret = -ENOMEM;
    if (!a.buf || !b.buf)
        goto out;
    uint64_t common = a.size < b.size ? a.size : b.size;
    ret = compare_common(&w, &a, &b, common, strict);
    if (ret < 0 || res->outcome != QIMG_COMPARE_IDENTICAL || a.size == b.size)
        goto out;
    if (params && params->size_mismatch)
        params->size_mismatch(params->opaque);
    ret = check_tail(&w, a.size > b.size ? &a : &b, common);
out:
    free(a.buf);
    free(b.buf);
    return ret;
}
