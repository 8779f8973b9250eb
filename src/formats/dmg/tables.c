/* SPDX-License-Identifier: MIT */
/*
 * dmg block tables: the mish blocks of a resource fork or of an XML plist's
 * <data> elements (base64), turned into chunks with qemu 9.1's checks and
 * messages. Memory stays bounded by the file: whatever qemu would read past
 * its end is zeroes, so only the bytes inside it are buffered.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/dmg/dmg.h"
#include "util/base64.h"
#include "util/bytes.h"
#include "util/mem.h"

static bool known_type(uint32_t t)
{
    switch (t) {
    case DMG_UDZE:
    case DMG_UDRW:
    case DMG_UDIG:
    case DMG_UDZO:
        return true;
#ifdef QIMG_HAVE_BZIP2
    case DMG_UDBZ:
        return true;
#endif
    default:
        return false; /* lzfse: Debian has no decoder, as 9.1 built without it */
    }
}

/* qemu's warn_report_once for each kind of chunk it cannot read. */
static void warn_unreadable(uint32_t t)
{
    static bool bz2, lzfse, other;
    if (t == DMG_UDBZ) {
        if (!__atomic_exchange_n(&bz2, true, __ATOMIC_SEQ_CST))
            qimg_warn("dmg-bzip2 module is missing, accessing bzip2 compressed blocks will "
                      "result in I/O errors\n");
    } else if (t == DMG_ULFO) {
        if (!__atomic_exchange_n(&lzfse, true, __ATOMIC_SEQ_CST))
            qimg_warn("dmg-lzfse module is missing, accessing lzfse compressed blocks will "
                      "result in I/O errors\n");
    } else if (t != DMG_UDCM && t != DMG_UDLE) {
        if (!__atomic_exchange_n(&other, true, __ATOMIC_SEQ_CST))
            qimg_warn("Image contains chunks of unknown type %x, accessing them will result in "
                      "I/O errors\n",
                      t);
    }
}

static int add_chunk(struct dmg_state *s, const struct dmg_chunk *c)
{
    uint32_t i = s->n_chunks;
    if (c->type != DMG_UDZE && c->type != DMG_UDIG && c->count > DMG_SECTOR_MAX) {
        qimg_report("sector count %llu for chunk %u is larger than max (%u)",
                    (unsigned long long)c->count, i, DMG_SECTOR_MAX);
        return -EINVAL;
    }
    if (c->length > DMG_LENGTHS_MAX) {
        qimg_report("length %llu for chunk %u is larger than max (%u)",
                    (unsigned long long)c->length, i, DMG_LENGTHS_MAX);
        return -EINVAL;
    }
    if (s->n_chunks == UINT32_MAX)
        return -EFBIG;
    if (s->n_chunks == s->cap) {
        s->cap = s->cap ? (s->cap > UINT32_MAX / 2 ? UINT32_MAX : s->cap * 2) : 64;
        s->chunks = xrealloc(s->chunks, (size_t)s->cap * sizeof(*s->chunks));
    }
    s->chunks[s->n_chunks++] = *c;
    return 0;
}

/*
 * One mish block of count bytes, of which the first `have` are in buf (the
 * rest zeroes). Not a mish block (magic, size): skipped, as qemu does.
 * Offsets add up modulo 2^64 like qemu's.
 */
static int read_mish(struct dmg_state *s, const uint8_t *buf, uint64_t have, uint64_t count)
{
    if (have < DMG_MISH_MIN || count < DMG_MISH_MIN || qimg_be32(buf) != DMG_MISH_MAGIC)
        return 0;
    uint64_t out_offset = qimg_be64(buf + DMG_MISH_OUT_OFFSET);
    uint64_t in_offset = s->data_fork_offset + qimg_be64(buf + DMG_MISH_DATA_OFFSET);
    uint64_t entries = (uint32_t)(count - DMG_MISH_ENTRIES) / DMG_ENTRY_SIZE;
    for (uint64_t k = 0; k < entries; k++) {
        uint64_t at = DMG_MISH_ENTRIES + k * DMG_ENTRY_SIZE;
        /*
         * Entries wholly past the buffered bytes are zeroes: zero-length zero
         * chunks, which no sector maps to (qemu would store them).
         */
        if (at + DMG_ENTRY_SIZE > have)
            break;
        const uint8_t *e = buf + at;
        struct dmg_chunk c = {.type = qimg_be32(e)};
        if (!known_type(c.type)) {
            warn_unreadable(c.type);
            continue;
        }
        c.sector = qimg_be64(e + 8) + out_offset;
        c.count = qimg_be64(e + 0x10);
        c.offset = qimg_be64(e + 0x18) + in_offset;
        c.length = qimg_be64(e + 0x20);
        int ret = add_chunk(s, &c);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Read count bytes at off for read_mish: only the part inside the file is buffered. */
static int read_mish_at(struct qimg_node *n, uint64_t off, uint64_t count)
{
    struct dmg_state *s = n->opaque;
    uint64_t have = off >= s->file_len ? 0 : qimg_min_u64(count, s->file_len - off);
    if (have < DMG_MISH_MIN)
        return 0; /* not even a block header inside the file: qemu reads zeroes, skips it */
    uint8_t *buf = xmalloc(have);
    int ret = dmg_file_read(n, off, have, buf);
    if (ret == 0)
        ret = read_mish(s, buf, have, count);
    free(buf);
    return ret;
}

/*
 * Resource fork: u32 data offset at 0, u32 data length at 8; the data is a
 * sequence of (u32 length, resource) pairs. qemu's sanity checks, each -EINVAL.
 */
int dmg_read_resource_fork(struct qimg_node *n, uint64_t begin, uint64_t length)
{
    uint8_t b[4];
    int ret = dmg_file_read(n, begin, 4, b);
    if (ret < 0)
        return ret;
    uint32_t data_offset = qimg_be32(b);
    if (data_offset > length)
        return -EINVAL;
    ret = dmg_file_read(n, begin + 8, 4, b);
    if (ret < 0)
        return ret;
    uint32_t count = qimg_be32(b);
    if (count == 0 || (uint64_t)data_offset + count > length)
        return -EINVAL;
    uint64_t off = begin + data_offset, end = off + count;
    while (off < end) {
        ret = dmg_file_read(n, off, 4, b);
        if (ret < 0)
            return ret;
        uint32_t size = qimg_be32(b);
        if (size == 0 || size > end - off)
            return -EINVAL;
        off += 4;
        ret = read_mish_at(n, off, size);
        if (ret < 0)
            return ret;
        off += size;
    }
    return 0;
}

/* Every <data>...</data> of the plist (a C string: it ends at its first NUL). */
static int read_plist_data(struct dmg_state *s, char *text)
{
    char *p = text;
    while ((p = strstr(p, "<data>")) != NULL) {
        p += 6;
        char *end = strstr(p, "</data>");
        if (!end)
            return -EINVAL; /* malformed XML */
        size_t len;
        uint8_t *mish;
        qimg_base64_decode_lenient(p, (size_t)(end - p), &mish, &len);
        int ret = read_mish(s, mish, len, (uint32_t)len);
        free(mish);
        if (ret < 0)
            return ret;
        p = end + 7;
    }
    return 0;
}

int dmg_read_plist(struct qimg_node *n, uint64_t begin, uint64_t length)
{
    struct dmg_state *s = n->opaque;
    if (length == 0 || length > DMG_XML_MAX)
        return -EINVAL;
    /* Past the end of the file qemu reads zeroes: the string ends there. */
    uint64_t have = begin >= s->file_len ? 0 : qimg_min_u64(length, s->file_len - begin);
    char *text = xmalloc(have + 1);
    int ret = dmg_file_read(n, begin, have, text);
    if (ret < 0) {
        free(text);
        return -EINVAL;
    }
    text[have] = '\0';
    ret = read_plist_data(s, text);
    free(text);
    return ret;
}
