/* SPDX-License-Identifier: MIT */
/*
 * Bochs "growing" redolog images, read only, as qemu-img 9.1 reads them.
 * Layout: specs/bochs-facts.md (header, catalog, extent records); integers
 * little-endian.
 *
 * A guest sector lives in extent sector / (extent / 512). The catalog entry
 * of the extent is the index of its record (bitmap, then data) after the
 * catalog, or 0xffffffff; a clear bitmap bit (LSB first) also reads as
 * zeroes. Limits and messages are qemu 9.1's (observed with the oracle): at
 * most 1M catalog entries, a power-of-two extent of 512 bytes to 8 MiB, and
 * a catalog covering the disk. qemu's 32-bit arithmetic for the record
 * geometry (a zero bitmap size wraps) is kept so that offsets match.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/common/readonly.h"
#include "util/bytes.h"
#include "util/mem.h"

/* bochs-facts.md: Header. */
#define BOCHS_HEADER_SIZE 512
#define BOCHS_OFF_MAGIC 0
#define BOCHS_OFF_TYPE 32
#define BOCHS_OFF_SUBTYPE 48
#define BOCHS_OFF_VERSION 64
#define BOCHS_OFF_HEADER 68
#define BOCHS_OFF_CATALOG 72
#define BOCHS_OFF_BITMAP 76
#define BOCHS_OFF_EXTENT 80
#define BOCHS_OFF_DISK_V1 84 /* v1 has no timestamp */
#define BOCHS_OFF_DISK_V2 88
#define BOCHS_V1 0x00010000u
#define BOCHS_V2 0x00020000u
#define BOCHS_UNALLOCATED 0xffffffffu
#define BOCHS_MAX_CATALOG 0x100000u   /* qemu: 1M entries (bximage's largest image) */
#define BOCHS_MAX_EXTENT 0x800000u

struct bochs_state {
    uint32_t *catalog;
    uint32_t catalog_size;
    uint32_t data_offset;   /* 32-bit like qemu's */
    uint32_t bitmap_blocks, extent_blocks, extent_size;
    uint64_t disk_size;     /* whole sectors */
    uint64_t file_len;
};

/* Fields are NUL-terminated strings compared as C strings (a longer field does not match). */
static bool field_is(const uint8_t *h, size_t off, size_t size, const char *s)
{
    size_t n = strlen(s);
    return n < size && !memcmp(h + off, s, n + 1);
}

static bool is_growing_redolog(const uint8_t *h)
{
    uint32_t v = qimg_le32(h + BOCHS_OFF_VERSION);
    return field_is(h, BOCHS_OFF_MAGIC, 32, "Bochs Virtual HD Image") &&
           field_is(h, BOCHS_OFF_TYPE, 16, "Redolog") &&
           field_is(h, BOCHS_OFF_SUBTYPE, 16, "Growing") && (v == BOCHS_V1 || v == BOCHS_V2);
}

static int bochs_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    /* qemu probes a 2048-byte buffer, zero-padded past a short file's end. */
    uint8_t h[BOCHS_HEADER_SIZE] = {0};
    memcpy(h, buf, qimg_min_u64(len, sizeof(h)));
    return is_growing_redolog(h) ? 100 : 0;
}

/* Bytes of the file at off (zeroes past its end, as qemu reads a short file). */
static int file_read(struct qimg_node *n, uint64_t off, uint64_t len, void *buf)
{
    const struct bochs_state *s = n->opaque;
    return qimg_ro_file_read(n->file, s->file_len, off, len, buf);
}

static int check_geometry(struct bochs_state *s, struct qimg_error *err)
{
    if (s->extent_size < 512)
        return qimg_error_set(err, -EINVAL, "Extent size must be at least 512");
    if (!qimg_is_pow2(s->extent_size))
        return qimg_error_set(err, -EINVAL, "Extent size %u is not a power of two",
                              s->extent_size);
    if (s->extent_size > BOCHS_MAX_EXTENT)
        return qimg_error_set(err, -EINVAL, "Extent size %u is too large", s->extent_size);
    uint64_t sectors_per_extent = s->extent_size / 512;
    if (s->catalog_size < qimg_div_round_up(s->disk_size / 512, sectors_per_extent))
        return qimg_error_set(err, -EINVAL, "Catalog size is too small for this disk size");
    return 0;
}

static int read_catalog(struct qimg_node *n, uint32_t at, struct qimg_error *err)
{
    struct bochs_state *s = n->opaque;
    uint64_t bytes = (uint64_t)s->catalog_size * 4; /* <= 4 MiB */
    s->catalog = xmalloc(bytes ? bytes : 1);
    int ret = file_read(n, at, bytes, s->catalog);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read catalog");
    for (uint32_t i = 0; i < s->catalog_size; i++)
        s->catalog[i] = qimg_le32(&s->catalog[i]);
    return 0;
}

static int bochs_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    (void)opts;
    int ret = qimg_ro_refuse_write(n, err);
    if (ret < 0)
        return ret;
    struct bochs_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get file size");
    s->file_len = (uint64_t)flen;
    uint8_t h[BOCHS_HEADER_SIZE];
    ret = file_read(n, 0, sizeof(h), h);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read bochs header");
    if (!is_growing_redolog(h))
        return qimg_error_set(err, -EINVAL, "Image not in Bochs format");
    bool v1 = qimg_le32(h + BOCHS_OFF_VERSION) == BOCHS_V1;
    s->disk_size = qimg_align_down(qimg_le64(h + (v1 ? BOCHS_OFF_DISK_V1 : BOCHS_OFF_DISK_V2)),
                                   512);
    s->catalog_size = qimg_le32(h + BOCHS_OFF_CATALOG);
    if (s->catalog_size > BOCHS_MAX_CATALOG)
        return qimg_error_set(err, -EFBIG, "Catalog size is too large");
    uint32_t header_len = qimg_le32(h + BOCHS_OFF_HEADER);
    ret = read_catalog(n, header_len, err);
    if (ret < 0)
        return ret;
    uint32_t bitmap = qimg_le32(h + BOCHS_OFF_BITMAP);
    s->extent_size = qimg_le32(h + BOCHS_OFF_EXTENT);
    s->data_offset = header_len + s->catalog_size * 4u;
    s->bitmap_blocks = 1 + (bitmap - 1) / 512;
    s->extent_blocks = 1 + (s->extent_size - 1) / 512;
    ret = check_geometry(s, err);
    if (ret < 0)
        return ret;
    n->request_alignment = 512;
    return 0;
}

static void bochs_close(struct qimg_node *n)
{
    struct bochs_state *s = n->opaque;
    if (!s)
        return;
    free(s->catalog);
    free(s);
}

static int64_t bochs_get_length(struct qimg_node *n)
{
    const struct bochs_state *s = n->opaque;
    return (int64_t)s->disk_size;
}

/*
 * Read the sectors [off, off+len) of one extent (aligned, inside the
 * extent): bitmap bytes once, then each present sector (contiguous runs in
 * one read).
 */
static int read_in_extent(struct qimg_node *n, uint64_t off, uint64_t len, uint8_t *dst)
{
    const struct bochs_state *s = n->opaque;
    uint32_t entry = s->catalog[off / s->extent_size];
    if (entry == BOCHS_UNALLOCATED) {
        memset(dst, 0, len);
        return 0;
    }
    uint64_t first = (off % s->extent_size) / 512, count = len / 512;
    /* Modulo 2^64 like qemu's (a hostile geometry wraps; file_read refuses what is past 2^63). */
    uint64_t record = s->data_offset +
                      512 * (uint64_t)entry * ((uint64_t)s->extent_blocks + s->bitmap_blocks);
    uint64_t bfirst = first / 8, blast = (first + count - 1) / 8;
    uint8_t *bits = xmalloc(blast - bfirst + 1);
    int ret = file_read(n, record + bfirst, blast - bfirst + 1, bits);
    uint64_t data = record + 512 * ((uint64_t)s->bitmap_blocks + first);
    for (uint64_t i = 0; i < count && ret == 0;) {
        uint64_t sec = first + i;
        bool present = (bits[sec / 8 - bfirst] >> (sec % 8)) & 1;
        uint64_t run = 1;
        while (i + run < count &&
               (((bits[(sec + run) / 8 - bfirst] >> ((sec + run) % 8)) & 1) == present))
            run++;
        if (present)
            ret = file_read(n, data + 512 * i, 512 * run, dst + 512 * i);
        else
            memset(dst + 512 * i, 0, 512 * run);
        i += run;
    }
    free(bits);
    return ret;
}

static int bochs_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                       unsigned flags)
{
    (void)flags;
    const struct bochs_state *s = n->opaque;
    uint8_t *dst = buf;
    while (len) {
        uint64_t here = qimg_min_u64(len, s->extent_size - off % s->extent_size);
        int ret = read_in_extent(n, off, here, dst);
        if (ret < 0)
            return ret;
        dst += here;
        off += here;
        len -= here;
    }
    return 0;
}

const struct qimg_driver qimg_bochs_driver = {
    .name = "bochs",
    .probe = bochs_probe,
    .open = bochs_open,
    .close = bochs_close,
    .get_length = bochs_get_length,
    .pread = bochs_pread,
};
