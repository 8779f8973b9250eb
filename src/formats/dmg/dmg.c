/* SPDX-License-Identifier: MIT */
/*
 * The dmg format driver: the koly trailer, the block tables (tables.c), and
 * sector reads through the chunk list (chunk.c), as qemu-img 9.1 does them.
 *
 * qemu's open failures without a message of their own read "Could not open
 * 'FILE': Invalid argument" after qemu-img's own "Could not open 'FILE': ",
 * so that text is the message here too. qemu has no block status for dmg
 * (everything is data) and probes by the ".dmg" file name suffix only.
 *
 * One deliberate difference: a raw chunk whose sector count exceeds its
 * stored length makes qemu copy from past the end of its buffer (an
 * out-of-bounds read); here those sectors fail with -EIO.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/common/readonly.h"
#include "formats/dmg/dmg.h"
#include "util/bytes.h"
#include "util/mem.h"

#define DMG_MAX_LENGTH ((uint64_t)INT64_MAX - (1u << 30) + 1) /* qemu's BDRV_MAX_LENGTH */
#define KOLY_SEARCH 515 /* the last 511 bytes of the second-last sector + 4 */

static int dmg_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)buf;
    if (len == 0)
        return 0; /* qemu opens empty files as raw whatever their name */
    size_t n = filename ? strlen(filename) : 0;
    return n > 4 && !strcmp(filename + n - 4, ".dmg") ? 2 : 0;
}

int dmg_file_read(struct qimg_node *n, uint64_t off, uint64_t len, void *buf)
{
    const struct dmg_state *s = n->opaque;
    return qimg_ro_file_read(n->file, s->file_len, off, len, buf);
}

static int read_be64(struct qimg_node *n, uint64_t off, uint64_t *v)
{
    uint8_t b[8];
    int ret = dmg_file_read(n, off, 8, b);
    if (ret == 0)
        *v = qimg_be64(b);
    return ret;
}

/*
 * "koly" in the 515 bytes before the last 508 of the file, its length
 * rounded up to sectors as qemu sees it (a trailer may sit at an odd size).
 */
static int find_koly(struct qimg_node *n, uint64_t *koly, struct qimg_error *err)
{
    const struct dmg_state *s = n->opaque;
    uint64_t length = qimg_align_up(s->file_len, 512);
    if (length < 512)
        return qimg_error_set(err, -EINVAL, "dmg file must be at least 512 bytes long");
    uint64_t start = length > 511 + 512 ? length - 511 - 512 : 0;
    uint64_t len = qimg_min_u64(length, KOLY_SEARCH);
    uint8_t b[KOLY_SEARCH];
    int ret = dmg_file_read(n, start, len, b);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Failed while reading UDIF trailer");
    for (uint64_t i = 0; i + 3 < len; i++) {
        if (!memcmp(b + i, "koly", 4)) {
            *koly = start + i;
            return 0;
        }
    }
    return qimg_error_set(err, -EINVAL, "Could not locate UDIF trailer in dmg file");
}

static int read_tables(struct qimg_node *n, uint64_t koly)
{
    struct dmg_state *s = n->opaque;
    uint64_t rsrc_off = 0, rsrc_len = 0, xml_off = 0, xml_len = 0;
    int ret = read_be64(n, koly + DMG_KOLY_DATA_FORK_OFFSET, &s->data_fork_offset);
    if (ret == 0)
        ret = read_be64(n, koly + DMG_KOLY_RSRC_OFFSET, &rsrc_off);
    if (ret == 0)
        ret = read_be64(n, koly + DMG_KOLY_RSRC_LENGTH, &rsrc_len);
    if (ret == 0)
        ret = read_be64(n, koly + DMG_KOLY_XML_OFFSET, &xml_off);
    if (ret == 0)
        ret = read_be64(n, koly + DMG_KOLY_XML_LENGTH, &xml_len);
    if (ret == 0)
        ret = read_be64(n, koly + DMG_KOLY_SECTORS, &s->total_sectors);
    if (ret < 0)
        return ret;
    if (rsrc_len)
        return dmg_read_resource_fork(n, rsrc_off, rsrc_len);
    if (xml_len)
        return dmg_read_plist(n, xml_off, xml_len);
    return -EINVAL;
}

/*
 * The koly sector count as qemu's block layer takes it (observed with 9.1):
 * negative as int64 fails the open, a byte length (modulo 2^64) past
 * BDRV_MAX_LENGTH fails "refreshing" it, and a count whose byte length only
 * wraps opens but has no size (get_length: -EFBIG).
 */
static int check_total_sectors(struct qimg_node *n, struct qimg_error *err)
{
    const struct dmg_state *s = n->opaque;
    if (s->total_sectors > (uint64_t)INT64_MAX)
        return qimg_error_errno(err, -EINVAL, "Could not open '%s'", n->filename);
    if (s->total_sectors * 512 > DMG_MAX_LENGTH)
        return qimg_error_errno(err, -EFBIG, "Could not refresh total sector count");
    return 0;
}

static int dmg_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    (void)opts;
    int ret = qimg_ro_refuse_write(n, err);
    if (ret < 0)
        return ret;
    struct dmg_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Failed to get file size while reading UDIF "
                                                "trailer");
    s->file_len = (uint64_t)flen;
    uint64_t koly;
    ret = find_koly(n, &koly, err);
    if (ret < 0)
        return ret;
    ret = read_tables(n, koly);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not open '%s'", n->filename);
    ret = check_total_sectors(n, err);
    if (ret < 0)
        return ret;
    s->current = s->n_chunks;
    n->request_alignment = 512;
    return 0;
}

static void dmg_close(struct qimg_node *n)
{
    struct dmg_state *s = n->opaque;
    if (!s)
        return;
    free(s->chunks);
    free(s->buf);
    free(s);
}

static int64_t dmg_get_length(struct qimg_node *n)
{
    const struct dmg_state *s = n->opaque;
    if (s->total_sectors > (uint64_t)INT64_MAX / 512)
        return -EFBIG;
    return (int64_t)(s->total_sectors * 512);
}

static bool in_chunk(const struct dmg_state *s, uint32_t i, uint64_t sector)
{
    return i < s->n_chunks && s->chunks[i].sector <= sector &&
           sector - s->chunks[i].sector < s->chunks[i].count;
}

/*
 * qemu's binary search over the chunks in file order (sorted in real
 * images), without its probe one past the last chunk. n_chunks: none.
 */
static uint32_t search_chunk(const struct dmg_state *s, uint64_t sector)
{
    uint32_t lo = 0, hi = s->n_chunks;
    while (lo <= hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (mid >= s->n_chunks)
            break;
        const struct dmg_chunk *c = &s->chunks[mid];
        if (c->sector > sector) {
            if (mid == 0)
                break;
            hi = mid - 1;
        } else if (sector - c->sector < c->count) {
            return mid;
        } else {
            lo = mid + 1;
        }
    }
    return s->n_chunks;
}

/* Sectors [sector, sector + count) of the current chunk into dst. */
static int copy_from_current(const struct dmg_state *s, uint64_t sector, uint64_t count,
                             uint8_t *dst)
{
    const struct dmg_chunk *c = &s->chunks[s->current];
    if (c->type == DMG_UDZE || c->type == DMG_UDIG) {
        memset(dst, 0, 512 * count);
        return 0;
    }
    uint64_t from = 512 * (sector - c->sector); /* < 512 * count <= 64 MiB */
    if (from >= s->buf_valid)
        return -EIO; /* past the bytes the chunk stores (qemu reads out of bounds) */
    uint64_t have = qimg_min_u64(512 * count, s->buf_valid - from);
    memcpy(dst, s->buf + from, have);
    memset(dst + have, 0, 512 * count - have);
    return 512 * count > have + 511 ? -EIO : 0;
}

static int read_sectors(struct qimg_node *n, uint64_t sector, uint64_t count, uint8_t *dst)
{
    struct dmg_state *s = n->opaque;
    while (count) {
        uint32_t i = in_chunk(s, s->current, sector) ? s->current : search_chunk(s, sector);
        if (i >= s->n_chunks || dmg_load_chunk(n, i) < 0)
            return -EIO;
        const struct dmg_chunk *c = &s->chunks[i];
        uint64_t run = qimg_min_u64(count, c->count - (sector - c->sector));
        int ret = copy_from_current(s, sector, run, dst);
        if (ret < 0)
            return ret;
        sector += run;
        count -= run;
        dst += 512 * run;
    }
    return 0;
}

static int dmg_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                     unsigned flags)
{
    (void)flags;
    pthread_mutex_lock(&n->lock);
    int ret = read_sectors(n, off / 512, len / 512, buf);
    pthread_mutex_unlock(&n->lock);
    return ret;
}

const struct qimg_driver qimg_dmg_driver = {
    .name = "dmg",
    .probe = dmg_probe,
    .open = dmg_open,
    .close = dmg_close,
    .get_length = dmg_get_length,
    .pread = dmg_pread,
};
