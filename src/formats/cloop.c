/* SPDX-License-Identifier: MIT */
/*
 * cloop (compressed loop, V2 header-first layout), read only, as qemu-img 9.1
 * reads it. Layout: specs/cloop-facts.md ("V2 layout"); integers big-endian.
 *
 *   0x00  128-byte shell preamble
 *   0x80  u32 block_size      0x84  u32 n_blocks
 *   0x88  (n_blocks + 1) u64 absolute offsets; block i is the zlib stream
 *         (RFC 1950) in [offsets[i], offsets[i+1]) and inflates to block_size.
 *
 * Open-time limits and messages are qemu 9.1's (observed with the oracle):
 * block_size non-zero, a multiple of 512, at most 64 MiB; n_blocks at most
 * UINT32_MAX / 8; the offsets table at most 512 MiB (its size computed in 32
 * bits, as qemu does, so n_blocks = 0x1fffffff wraps to 0 and "cannot be
 * allocated"); offsets non-decreasing; each compressed block at most 128 MiB.
 *
 * Memory stays bounded by the file: table entries past the end of the file
 * read as zeroes in qemu, so only the part inside the file is kept and the
 * rest is known to be 0.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/builtin.h"
#include "formats/common/readonly.h"
#include "util/bytes.h"
#include "util/mem.h"

#define CLOOP_OFF_BLOCK_SIZE 0x80
#define CLOOP_OFF_N_BLOCKS 0x84
#define CLOOP_OFF_OFFSETS 0x88
#define CLOOP_MAX_BLOCK_SIZE (64u << 20)
#define CLOOP_MAX_OFFSETS_SIZE (512u << 20)
#define CLOOP_MAX_COMPRESSED (2ull * CLOOP_MAX_BLOCK_SIZE)

/* What qemu's probe compares (the preamble's first three lines, not "exit $?"). */
static const char cloop_magic[] =
    "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";

struct cloop_state {
    uint32_t block_size, n_blocks;
    uint64_t *offsets;  /* the n_known entries stored inside the file */
    uint64_t n_known;   /* entries past these are 0 (past the end of the file) */
    uint64_t file_len;
    /* The last inflated block (under n->lock). */
    uint8_t *cache;
    uint64_t cached;    /* block number in cache, UINT64_MAX: none */
};

static int cloop_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    /* qemu probes a 2048-byte buffer, zero-padded past a short file's end: no match there. */
    size_t n = strlen(cloop_magic);
    return len >= n && !memcmp(buf, cloop_magic, n) ? 2 : 0;
}

static uint64_t offset_at(const struct cloop_state *s, uint64_t i)
{
    return i < s->n_known ? s->offsets[i] : 0;
}

/* Bytes of the file at off (zeroes past its end, as qemu reads a short file). */
static int file_read(struct qimg_node *n, uint64_t off, uint64_t len, void *buf)
{
    const struct cloop_state *s = n->opaque;
    return qimg_ro_file_read(n->file, s->file_len, off, len, buf);
}

static int check_block_size(uint32_t bs, struct qimg_error *err)
{
    if (bs % 512)
        return qimg_error_set(err, -EINVAL, "block_size %u must be a multiple of 512", bs);
    if (bs == 0)
        return qimg_error_set(err, -EINVAL, "block_size cannot be zero");
    if (bs > CLOOP_MAX_BLOCK_SIZE)
        return qimg_error_set(err, -EINVAL, "block_size %u must be %u MB or less", bs,
                              CLOOP_MAX_BLOCK_SIZE / (1024 * 1024));
    return 0;
}

/* The offsets table: limits, then monotonic offsets and bounded block sizes. */
static int read_offsets(struct qimg_node *n, struct qimg_error *err)
{
    struct cloop_state *s = n->opaque;
    if (s->n_blocks > UINT32_MAX / 8)
        return qimg_error_set(err, -EINVAL, "n_blocks %u must be %u or less", s->n_blocks,
                              UINT32_MAX / 8);
    uint32_t table_size = (s->n_blocks + 1) * 8u; /* 32-bit, wraps like qemu's */
    if (table_size > CLOOP_MAX_OFFSETS_SIZE)
        return qimg_error_set(err, -EINVAL,
                              "image requires too many offsets, try increasing block size");
    if (table_size == 0)
        return qimg_error_set(err, -ENOMEM, "Could not allocate offsets table");
    uint64_t entries = table_size / 8;
    uint64_t in_file = s->file_len > CLOOP_OFF_OFFSETS ? s->file_len - CLOOP_OFF_OFFSETS : 0;
    uint64_t bytes = qimg_min_u64((uint64_t)table_size, qimg_align_up(in_file, 8));
    s->n_known = bytes / 8;
    s->offsets = xmalloc(bytes ? bytes : 1);
    int ret = file_read(n, CLOOP_OFF_OFFSETS, bytes, s->offsets);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read offsets table");
    for (uint64_t i = 0; i < s->n_known; i++)
        s->offsets[i] = qimg_be64(&s->offsets[i]);
    /* Entries past n_known are 0: only the first of them can break the order. */
    uint64_t last = qimg_min_u64(entries, s->n_known + 1);
    for (uint64_t i = 1; i < last; i++) {
        uint64_t prev = offset_at(s, i - 1), cur = offset_at(s, i);
        if (cur < prev)
            return qimg_error_set(err, -EINVAL,
                                  "offsets not monotonically increasing at index %u, image file "
                                  "is corrupt",
                                  (unsigned)i);
        if (cur - prev > CLOOP_MAX_COMPRESSED)
            return qimg_error_set(err, -EINVAL,
                                  "invalid compressed block size at index %u, image file is "
                                  "corrupt",
                                  (unsigned)i);
    }
    return 0;
}

static int cloop_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    (void)opts;
    int ret = qimg_ro_refuse_write(n, err);
    if (ret < 0)
        return ret;
    struct cloop_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    s->cached = UINT64_MAX;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get file size");
    s->file_len = (uint64_t)flen;
    uint8_t h[8];
    ret = file_read(n, CLOOP_OFF_BLOCK_SIZE, sizeof(h), h);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read cloop header");
    s->block_size = qimg_be32(h);
    s->n_blocks = qimg_be32(h + 4);
    ret = check_block_size(s->block_size, err);
    if (ret < 0)
        return ret;
    ret = read_offsets(n, err);
    if (ret < 0)
        return ret;
    s->cache = xmalloc(s->block_size);
    return 0;
}

static void cloop_close(struct qimg_node *n)
{
    struct cloop_state *s = n->opaque;
    if (!s)
        return;
    free(s->offsets);
    free(s->cache);
    free(s);
}

static int64_t cloop_get_length(struct qimg_node *n)
{
    const struct cloop_state *s = n->opaque;
    return (int64_t)((uint64_t)s->n_blocks * s->block_size);
}

/* Inflate block i into out (block_size bytes): exactly block_size bytes or -EIO. */
static int inflate_block(struct qimg_node *n, uint64_t i, uint8_t *out)
{
    const struct cloop_state *s = n->opaque;
    uint64_t start = offset_at(s, i), csize = offset_at(s, i + 1) - start;
    uint8_t *in = xmalloc(csize ? csize : 1); /* <= 128 MiB, checked at open */
    int ret = file_read(n, start, csize, in);
    if (ret < 0) {
        free(in);
        return ret;
    }
    z_stream z = {.next_in = in, .avail_in = (uInt)csize, .next_out = out,
                  .avail_out = s->block_size};
    ret = -EIO;
    if (inflateInit(&z) == Z_OK) {
        if (inflate(&z, Z_FINISH) == Z_STREAM_END && z.total_out == s->block_size)
            ret = 0;
        inflateEnd(&z);
    }
    free(in);
    return ret;
}

/*
 * Reads copy from the last inflated block (kept like qemu's) under n->lock;
 * other blocks are inflated without it, so parallel readers inflate in
 * parallel, and the result becomes the kept block.
 */
static int cloop_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                       unsigned flags)
{
    (void)flags;
    struct cloop_state *s = n->opaque;
    uint8_t *dst = buf, *spare = NULL;
    int ret = 0;
    while (len && ret == 0) {
        uint64_t i = off / s->block_size, in = off % s->block_size;
        uint64_t here = qimg_min_u64(len, s->block_size - in);
        pthread_mutex_lock(&n->lock);
        bool hit = s->cached == i;
        if (hit)
            memcpy(dst, s->cache + in, here);
        pthread_mutex_unlock(&n->lock);
        if (!hit) {
            if (!spare)
                spare = xmalloc(s->block_size);
            ret = inflate_block(n, i, spare);
            if (ret < 0)
                break;
            memcpy(dst, spare + in, here);
            pthread_mutex_lock(&n->lock);
            uint8_t *old = s->cache;
            s->cache = spare;
            s->cached = i;
            spare = old;
            pthread_mutex_unlock(&n->lock);
        }
        dst += here;
        off += here;
        len -= here;
    }
    free(spare);
    return ret;
}

const struct qimg_driver qimg_cloop_driver = {
    .name = "cloop",
    .probe = cloop_probe,
    .open = cloop_open,
    .close = cloop_close,
    .get_length = cloop_get_length,
    .pread = cloop_pread,
};
