/* SPDX-License-Identifier: MIT */
/*
 * The parallels format driver: header checks as qemu-img 9.1 makes them, the
 * BAT through the table cache, guest I/O through the mapped-image layer.
 *
 * As qemu 9.1 does: a read-write open marks the image in use (inuse field)
 * and clears the mark on close, cutting the file back to the end of its last
 * cluster; an image that was not closed correctly, has a bad data_off or
 * clusters past the end of the file is repaired on a read-write open
 * ("Repairing ..." on the check report). New clusters take the first free
 * cluster of the data area; zero writes and discards of whole clusters free
 * them (the format has no zero flag).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/parallels/parallels.h"
#include "util/bytes.h"
#include "util/mem.h"

static const struct qimg_opt_desc parallels_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"cluster_size", QIMG_OPT_SIZE, "Parallels image cluster size", "1048576"},
    {0},
};

static int parallels_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len < PRL_HEADER_SIZE)
        return 0;
    bool magic = !memcmp(buf, PRL_MAGIC_V1, 16) || !memcmp(buf, PRL_MAGIC_V2, 16);
    return magic && qimg_le32(buf + PRL_OFF_VERSION) == PRL_VERSION ? 100 : 0;
}

/* parallels.txt: BAT, a contiguous array of 32-bit entries right after the header. */
static void bat_locate(uint32_t i, uint64_t *table, uint64_t *in)
{
    uint64_t byte = PRL_HEADER_SIZE + (uint64_t)i * 4;
    *table = qimg_align_down(byte, PRL_BAT_TABLE);
    *in = byte % PRL_BAT_TABLE;
}

int parallels_bat_get(struct qimg_node *n, uint32_t i, uint32_t *entry)
{
    struct parallels_state *s = n->opaque;
    uint64_t table, in;
    uint8_t *t;
    bat_locate(i, &table, &in);
    int ret = qimg_table_cache_get(&s->bat, table, false, &t);
    if (ret == 0)
        *entry = qimg_le32(t + in);
    return ret;
}

int parallels_bat_set(struct qimg_node *n, uint32_t i, uint32_t entry)
{
    struct parallels_state *s = n->opaque;
    uint64_t table, in;
    uint8_t *t;
    bat_locate(i, &table, &in);
    int ret = qimg_table_cache_get(&s->bat, table, false, &t);
    if (ret < 0)
        return ret;
    qimg_put_le32(t + in, entry);
    /*
     * The entry's sector, clipped to the BAT: the first table also holds the
     * header, whose cached copy is stale (s->header is the live one).
     */
    uint64_t a = qimg_align_down(in, PRL_SECTOR);
    if (table == 0 && a < PRL_HEADER_SIZE)
        a = PRL_HEADER_SIZE;
    uint64_t b = qimg_min_u64(qimg_align_up(in + 4, PRL_SECTOR), s->bat.limit - table);
    return qimg_table_cache_store(&s->bat, table, a, b - a);
}

int parallels_write_header(struct qimg_node *n)
{
    struct parallels_state *s = n->opaque;
    /* The first BAT table holds the header too: a write-back of it must carry this one. */
    uint8_t *t;
    if (qimg_table_cache_get(&s->bat, 0, false, &t) == 0)
        memcpy(t, s->header, PRL_HEADER_SIZE);
    return qimg_node_pwrite(n->file, 0, PRL_HEADER_SIZE, s->header, 0);
}

/* Bit of the cluster at host in the used map, or false when outside the data area. */
static bool used_index(const struct parallels_state *s, uint64_t host, uint64_t *bit)
{
    if (host < s->data_start)
        return false;
    *bit = (host - s->data_start) / s->cluster_size;
    return true;
}

static void used_grow(struct parallels_state *s, uint64_t bits)
{
    if (bits <= s->used_bits)
        return;
    uint64_t old_bytes = (s->used_bits + 7) / 8, new_bytes = (bits + 7) / 8;
    s->used = xrealloc(s->used, new_bytes ? new_bytes : 1);
    memset(s->used + old_bytes, 0, new_bytes - old_bytes);
    s->used_bits = bits;
}

void parallels_mark_used(struct parallels_state *s, uint64_t host, uint64_t count, bool used)
{
    uint64_t bit;
    if (!used_index(s, host, &bit))
        return;
    if (used)
        used_grow(s, bit + count);
    for (uint64_t k = bit; k < bit + count && k < s->used_bits; k++) {
        if (used)
            s->used[k / 8] |= (uint8_t)(1u << (k % 8));
        else
            s->used[k / 8] &= (uint8_t)~(1u << (k % 8));
    }
    if (!used && bit < s->free_hint)
        s->free_hint = bit;
}

static bool is_used(const struct parallels_state *s, uint64_t bit)
{
    return bit < s->used_bits && (s->used[bit / 8] & (1u << (bit % 8)));
}

uint64_t parallels_find_free(struct parallels_state *s, uint64_t *count)
{
    uint64_t first = s->free_hint;
    while (is_used(s, first))
        first++;
    s->free_hint = first;
    uint64_t k = 1;
    /* A free run inside the data area, or any length from its end on. */
    while (k < *count && !is_used(s, first + k))
        k++;
    *count = k;
    return s->data_start + first * s->cluster_size;
}

uint32_t parallels_bat_in_file(const struct parallels_state *s, uint64_t file_len)
{
    uint64_t in_file = file_len > PRL_HEADER_SIZE
                           ? qimg_div_round_up(file_len - PRL_HEADER_SIZE, 4) : 0;
    return (uint32_t)qimg_min_u64(s->bat_entries, in_file);
}

int parallels_scan_bat(struct qimg_node *n, uint64_t file_len)
{
    struct parallels_state *s = n->opaque;
    s->data_end = s->data_start;
    s->outside = false;
    s->duplicate = false;
    free(s->used);
    s->used = NULL;
    s->used_bits = 0;
    s->free_hint = 0;
    uint32_t scan = parallels_bat_in_file(s, file_len);
    for (uint32_t i = 0; i < scan; i++) {
        uint32_t e;
        int ret = parallels_bat_get(n, i, &e);
        if (ret < 0)
            return ret;
        if (!e)
            continue;
        /* data_end counts clusters past the end of the file too (qemu's image end offset). */
        uint64_t host = parallels_host(s, e);
        s->data_end = qimg_max_u64(s->data_end, host + s->cluster_size);
        uint64_t bit;
        if (host + s->cluster_size > file_len)
            s->outside = true;
        else if (used_index(s, host, &bit) && is_used(s, bit))
            s->duplicate = true;
        else
            parallels_mark_used(s, host, 1, true);
    }
    return 0;
}

static int parallels_map(struct qimg_node *n, uint64_t off, uint64_t len, struct qimg_map *m)
{
    struct parallels_state *s = n->opaque;
    uint64_t pos = off, end = off + len;
    while (pos < end) {
        uint64_t idx = pos / s->cluster_size, in = pos % s->cluster_size;
        uint32_t e = 0;
        uint64_t next = pos - in + s->cluster_size;
        if (idx < s->bat_entries) {
            int ret = parallels_bat_get(n, (uint32_t)idx, &e);
            if (ret < 0)
                return ret;
        } else {
            next = end; /* a disk size past the BAT (hostile) reads as zeroes, all of it */
        }
        enum qimg_map_kind kind = e ? QIMG_MAP_DATA : QIMG_MAP_UNALLOCATED;
        uint64_t host = parallels_host(s, e) + in;
        if (pos == off) {
            m->kind = kind;
            m->host_valid = m->in_place = kind == QIMG_MAP_DATA;
            m->host = m->host_valid ? host : 0;
            m->recurse = false;
            m->entry = e;
        } else if (kind != m->kind || (kind == QIMG_MAP_DATA && host != m->host + (pos - off))) {
            break;
        }
        pos = qimg_min_u64(end, next);
    }
    m->bytes = pos - off;
    return 0;
}

static int parallels_alloc(struct qimg_node *n, struct qimg_alloc *a)
{
    struct parallels_state *s = n->opaque;
    if (a->guest / s->cluster_size >= s->bat_entries)
        return -EINVAL; /* a hostile disk size past the BAT */
    uint64_t count = a->bytes / s->cluster_size;
    a->host = parallels_find_free(s, &count);
    a->bytes = count * s->cluster_size;
    /* The BAT entry of the last cluster must fit 32 bits. */
    if ((a->host + a->bytes - s->cluster_size) / s->off_unit > UINT32_MAX)
        return -ENOSPC;
    return 0;
}

static int parallels_commit(struct qimg_node *n, struct qimg_alloc *a)
{
    struct parallels_state *s = n->opaque;
    uint64_t count = a->bytes / s->cluster_size;
    uint64_t first = a->guest / s->cluster_size;
    for (uint64_t k = 0; k < count; k++) {
        uint64_t host = a->host + k * s->cluster_size;
        /* Written through at once, as 9.1 does (a crash leaves a leak, not a loss). */
        int ret = parallels_bat_set(n, (uint32_t)(first + k), (uint32_t)(host / s->off_unit));
        if (ret < 0)
            return ret;
    }
    parallels_mark_used(s, a->host, count, true);
    s->data_end = qimg_max_u64(s->data_end, a->host + a->bytes);
    return 0;
}

/* Whole clusters: unmapped and punched out of the file (qemu 9.1's discard and zero write). */
static int parallels_discard_blocks(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct parallels_state *s = n->opaque;
    for (uint64_t pos = off; pos < off + len; pos += s->cluster_size) {
        uint64_t idx = pos / s->cluster_size;
        uint32_t e;
        if (idx >= s->bat_entries)
            break;
        int ret = parallels_bat_get(n, (uint32_t)idx, &e);
        if (ret < 0)
            return ret;
        if (!e)
            continue;
        ret = parallels_bat_set(n, (uint32_t)idx, 0);
        if (ret < 0)
            return ret;
        uint64_t host = parallels_host(s, e);
        parallels_mark_used(s, host, 1, false);
        qimg_node_pdiscard(n->file, host, s->cluster_size); /* advisory */
    }
    return 0;
}

static int parallels_zero_blocks(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    (void)flags;
    if (n->backing)
        return -ENOTSUP;
    return parallels_discard_blocks(n, off, len);
}

const struct qimg_mapped_ops parallels_mapped_ops = {
    .map = parallels_map,
    .alloc = parallels_alloc,
    .commit = parallels_commit,
    .zero_blocks = parallels_zero_blocks,
    .discard_blocks = parallels_discard_blocks,
};

/* Header checks, in qemu-img 9.1's order and words. */
static int check_header(struct parallels_state *s, uint64_t file_len, struct qimg_error *err)
{
    const uint8_t *h = s->header;
    bool v1 = !memcmp(h, PRL_MAGIC_V1, 16);
    if ((!v1 && memcmp(h, PRL_MAGIC_V2, 16)) || qimg_le32(h + PRL_OFF_VERSION) != PRL_VERSION)
        return qimg_error_set(err, -EINVAL, "Image not in Parallels format");
    uint32_t tracks = qimg_le32(h + PRL_OFF_TRACKS);
    if (tracks == 0)
        return qimg_error_set(err, -EINVAL, "Invalid image: Zero sectors per track");
    if (tracks > PRL_MAX_TRACKS)
        return qimg_error_set(err, -EFBIG, "Invalid image: Too big cluster");
    s->bat_entries = qimg_le32(h + PRL_OFF_BAT_ENTRIES);
    if (s->bat_entries > PRL_MAX_BAT_ENTRIES)
        return qimg_error_set(err, -EFBIG, "Catalog too large");
    uint64_t sectors = qimg_le64(h + PRL_OFF_NB_SECTORS);
    if (v1)
        sectors &= UINT32_MAX; /* parallels.txt: only the low 4 bytes are used */
    if (!qimg_mul_u64(sectors, PRL_SECTOR, &s->disk_size) || s->disk_size > INT64_MAX)
        return qimg_error_set(err, -EFBIG, "Invalid image: Too big disk size");
    s->cluster_size = (uint64_t)tracks * PRL_SECTOR;
    s->off_unit = v1 ? PRL_SECTOR : s->cluster_size;
    /* data_off: at or past the end of the BAT (v2: a whole cluster), inside the file. */
    uint64_t min = qimg_div_round_up(PRL_HEADER_SIZE + 4ull * s->bat_entries, PRL_SECTOR);
    /*
     * v2: up to a cluster boundary, rounded as qemu 9.1 rounds, with a mask
     * (n + d - 1) & -d that is right for powers of two only: its own images
     * with 1536-byte clusters then have an "incorrect" data_off.
     */
    if (!v1)
        min = (min + tracks - 1) & (0 - (uint64_t)tracks);
    s->min_data_off = min;
    uint64_t data_off = qimg_le32(h + PRL_OFF_DATA_OFF);
    if (v1 && data_off == 0)
        data_off = min;
    if (data_off < min || data_off > file_len / PRL_SECTOR) {
        s->data_off_bad = true;
        data_off = min;
    }
    s->data_start = data_off * PRL_SECTOR;
    s->unclean = qimg_le32(h + PRL_OFF_INUSE) == PRL_INUSE_MAGIC;
    return 0;
}

/* The header; a short file reads as zeroes past its end (as qemu reads it). */
static int read_header(struct qimg_node *n, uint8_t *h, uint64_t file_len)
{
    uint64_t have = qimg_min_u64(file_len, PRL_HEADER_SIZE);
    memset(h + have, 0, PRL_HEADER_SIZE - have);
    return have ? qimg_node_pread(n->file, 0, have, h, 0) : 0;
}

/* Read-write: repair what qemu repairs on open, then mark the image in use. */
static int open_writable(struct qimg_node *n, struct qimg_error *err)
{
    struct parallels_state *s = n->opaque;
    if ((s->unclean || s->data_off_bad || s->outside || s->duplicate) && !(n->flags & QIMG_O_CHECK)) {
        struct qimg_check_result res = {0};
        int ret = parallels_check(n, &res, QIMG_CHECK_FIX_LEAKS | QIMG_CHECK_FIX_ERRORS, err);
        if (ret < 0)
            return qimg_error_is_set(err) ? ret
                                          : qimg_error_errno(err, ret, "Could not repair corrupted image");
    }
    /* Past data_end lies nothing the BAT uses: qemu cuts it off on close, we now, so
     * that new clusters there read as zeroes (write.c). */
    int64_t flen = qimg_node_length(n->file);
    if (flen > 0 && (uint64_t)flen > s->data_end && !(n->flags & QIMG_O_CHECK)) {
        int ret = qimg_node_truncate(n->file, s->data_end, false, QIMG_PREALLOC_OFF, NULL);
        if (ret < 0)
            return qimg_error_errno(err, ret, "Could not truncate the image");
    }
    qimg_put_le32(s->header + PRL_OFF_INUSE, PRL_INUSE_MAGIC);
    int ret = parallels_write_header(n);
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not update the image header");
    s->writable = true;
    return 0;
}

static int parallels_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    (void)opts;
    struct parallels_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get the image size");
    int ret = read_header(n, s->header, (uint64_t)flen);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read the image header");
    ret = check_header(s, (uint64_t)flen, err);
    if (ret < 0)
        return ret;
    /* qemu reads header and BAT in one request, which fails past its request limit. */
    if (PRL_HEADER_SIZE + 4ull * s->bat_entries > PRL_MAX_REQUEST)
        return qimg_error_set(err, -EIO, "Could not open '%s': Input/output error", n->filename);
    s->mapped = (struct qimg_mapped){.ops = &parallels_mapped_ops, .block_size = s->cluster_size};
    qimg_table_cache_init(&s->bat, n->file, PRL_BAT_CACHE, PRL_BAT_TABLE);
    s->bat.limit = PRL_HEADER_SIZE + 4ull * s->bat_entries;
    ret = parallels_scan_bat(n, (uint64_t)flen);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read the BAT");
    uint64_t ext_off = qimg_le64(s->header + PRL_OFF_EXT_OFF);
    if (ext_off && (n->flags & QIMG_O_RDWR)) {
        qimg_warn("Format Extension ignored in RW mode\n"); /* as 9.1; ext_off stays */
    } else if (ext_off) {
        ret = parallels_read_extension(n, ext_off, err);
        if (ret < 0)
            return ret;
    }
    if (n->flags & QIMG_O_RDWR)
        return open_writable(n, err);
    return 0;
}

static void parallels_close(struct qimg_node *n)
{
    struct parallels_state *s = n->opaque;
    if (!s)
        return;
    if (s->writable) {
        /* qemu writes the BAT, clears inuse and drops what lies past the last cluster. */
        qimg_put_le32(s->header + PRL_OFF_INUSE, 0);
        if (qimg_table_cache_flush(&s->bat) == 0 && parallels_write_header(n) == 0) {
            int64_t flen = qimg_node_length(n->file);
            if (flen > 0 && (uint64_t)flen > s->data_end)
                qimg_node_truncate(n->file, s->data_end, false, QIMG_PREALLOC_OFF, NULL);
            qimg_node_flush(n->file);
        }
    }
    if (s->bat.e)
        qimg_table_cache_destroy(&s->bat);
    free(s->used);
    free(s);
}

static int parallels_flush(struct qimg_node *n)
{
    struct parallels_state *s = n->opaque;
    pthread_mutex_lock(&n->lock);
    int ret = qimg_table_cache_flush(&s->bat);
    pthread_mutex_unlock(&n->lock);
    return ret < 0 ? ret : qimg_node_flush(n->file);
}

static int64_t parallels_get_length(struct qimg_node *n)
{
    const struct parallels_state *s = n->opaque;
    return (int64_t)s->disk_size;
}

static bool parallels_has_zero_init(struct qimg_node *n)
{
    (void)n;
    return true;
}

const struct qimg_driver qimg_parallels_driver = {
    .name = "parallels",
    .supports_backing = true,
    .create_opts = parallels_create_opts,
    .probe = parallels_probe,
    .open = parallels_open,
    .close = parallels_close,
    .create = parallels_create,
    .get_length = parallels_get_length,
    .pread = qimg_mapped_pread,
    .pwrite = parallels_pwrite,
    .pwrite_zeroes = qimg_mapped_pwrite_zeroes,
    .pdiscard = qimg_mapped_pdiscard,
    .block_status = qimg_mapped_block_status,
    .flush = parallels_flush,
    .has_zero_init = parallels_has_zero_init,
    .check = parallels_check,
};
