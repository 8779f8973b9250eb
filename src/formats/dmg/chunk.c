/* SPDX-License-Identifier: MIT */
/*
 * Loading one dmg chunk: raw bytes, or a zlib / bzip2 stream that must
 * inflate to exactly its sector count (qemu 9.1: anything else is -EIO).
 * Buffers are sized per chunk (at most 64 MiB, checked at open), not for
 * the largest chunk of the image up front.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#ifdef QIMG_HAVE_BZIP2
#include <bzlib.h>
#endif

#include "formats/dmg/dmg.h"
#include "util/bytes.h"
#include "util/mem.h"

static void reserve(struct dmg_state *s, uint64_t size)
{
    if (size <= s->buf_size)
        return;
    free(s->buf);
    s->buf = xmalloc(size);
    s->buf_size = size;
}

static int inflate_zlib(const uint8_t *in, uint64_t in_len, uint8_t *out, uint64_t out_len)
{
    z_stream z = {.next_in = (uint8_t *)in, .avail_in = (uInt)in_len, .next_out = out,
                  .avail_out = (uInt)out_len};
    if (inflateInit(&z) != Z_OK)
        return -EIO;
    int ret = inflate(&z, Z_FINISH);
    bool ok = ret == Z_STREAM_END && z.total_out == out_len;
    inflateEnd(&z);
    return ok ? 0 : -EIO;
}

#ifdef QIMG_HAVE_BZIP2
static int inflate_bz2(const uint8_t *in, uint64_t in_len, uint8_t *out, uint64_t out_len)
{
    bz_stream bz = {.next_in = (char *)in, .avail_in = (unsigned)in_len, .next_out = (char *)out,
                    .avail_out = (unsigned)out_len};
    if (BZ2_bzDecompressInit(&bz, 0, 0) != BZ_OK)
        return -EIO;
    int ret = BZ2_bzDecompress(&bz);
    uint64_t total = (uint64_t)bz.total_out_hi32 << 32 | bz.total_out_lo32;
    BZ2_bzDecompressEnd(&bz);
    return ret == BZ_STREAM_END && total == out_len ? 0 : -EIO;
}
#endif

/* A compressed chunk: its stored bytes inflate into s->buf (count sectors). */
static int load_compressed(struct qimg_node *n, const struct dmg_chunk *c)
{
    struct dmg_state *s = n->opaque;
    uint64_t out_len = 512 * c->count; /* count <= DMG_SECTOR_MAX */
    uint8_t *in = xmalloc(c->length ? c->length : 1); /* length <= DMG_LENGTHS_MAX */
    int ret = dmg_file_read(n, c->offset, c->length, in);
    if (ret == 0) {
        reserve(s, out_len ? out_len : 1);
        ret = -EIO;
        if (c->type == DMG_UDZO)
            ret = inflate_zlib(in, c->length, s->buf, out_len);
#ifdef QIMG_HAVE_BZIP2
        else if (c->type == DMG_UDBZ)
            ret = inflate_bz2(in, c->length, s->buf, out_len);
#endif
        s->buf_valid = out_len;
    }
    free(in);
    return ret < 0 ? -EIO : 0;
}

int dmg_load_chunk(struct qimg_node *n, uint32_t i)
{
    struct dmg_state *s = n->opaque;
    const struct dmg_chunk *c = &s->chunks[i];
    if (s->current == i)
        return 0;
    s->current = s->n_chunks;
    s->buf_valid = 0;
    int ret = 0;
    switch (c->type) {
    case DMG_UDZE:
    case DMG_UDIG:
        break; /* zeroes: nothing to read */
    case DMG_UDRW:
        reserve(s, c->length ? c->length : 1); /* <= DMG_LENGTHS_MAX */
        ret = dmg_file_read(n, c->offset, c->length, s->buf) < 0 ? -EIO : 0;
        s->buf_valid = c->length;
        break;
    default:
        ret = load_compressed(n, c);
        break;
    }
    if (ret == 0)
        s->current = i;
    return ret;
}
