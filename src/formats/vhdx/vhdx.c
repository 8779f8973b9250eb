/* SPDX-License-Identifier: MIT */
/*
 * The VHDX format driver: open checks in qemu-img 9.1's order and with its
 * messages (headers, log, region table, metadata, BAT), reads through the
 * mapped-image layer, info. qemu's vhdx driver has no block status: every
 * byte is data to the block layer, so block_status stays NULL here too.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/vhdx/vhdx.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/mem.h"
#include "util/report.h"
#include "util/uuid.h"

const uint8_t vhdx_guid_bat[16] = {0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
                                   0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08};
const uint8_t vhdx_guid_metadata[16] = {0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
                                        0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e};
const uint8_t vhdx_guid_file_params[16] = {0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d,
                                           0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b};
const uint8_t vhdx_guid_disk_size[16] = {0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48,
                                         0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8};
const uint8_t vhdx_guid_page83[16] = {0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45,
                                      0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46};
const uint8_t vhdx_guid_logical_sector[16] = {0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47,
                                              0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f};
const uint8_t vhdx_guid_physical_sector[16] = {0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44,
                                               0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56};
const uint8_t vhdx_guid_parent_locator[16] = {0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45,
                                              0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c};

#define VHDX_BAT_TABLE (64 * 1024) /* bytes of BAT per cache entry (8192 entries) */
#define VHDX_BAT_CACHE 16

static const struct qimg_opt_desc vhdx_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size; max of 64TB.", NULL},
    {"log_size", QIMG_OPT_SIZE, "Log size; min 1MB.", "1048576"},
    {"block_size", QIMG_OPT_SIZE,
     "Block Size; min 1MB, max 256MB. 0 means auto-calculate based on image size.", "0"},
    {"subformat", QIMG_OPT_STRING,
     "VHDX format type, can be either 'dynamic' or 'fixed'. Default is 'dynamic'.", NULL},
    {"block_state_zero", QIMG_OPT_BOOL,
     "Force use of payload blocks of type 'ZERO'. Non-standard, but default.  Do not set to "
     "'off' when using 'qemu-img convert' with subformat=dynamic.",
     NULL},
    {0},
};

void vhdx_error_report(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    qimg_check_report("%s: %s\n", program_invocation_short_name, buf);
}

static int vhdx_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= 8 && memcmp(buf, VHDX_FILE_ID_SIG, 8) == 0 ? 100 : 0;
}

/* qemu's generic open failure: "Could not open 'NAME': strerror". */
static int open_fail(struct qimg_node *n, struct qimg_error *err, int code)
{
    return qimg_error_errno(err, code, "Could not open '%s'", n->filename);
}

uint64_t vhdx_bat_index(const struct vhdx_state *s, uint64_t block)
{
    return block + block / s->chunk_ratio;
}

int vhdx_bat_get(struct qimg_node *n, uint64_t i, uint64_t *entry)
{
    struct vhdx_state *s = n->opaque;
    uint64_t byte = i * 8; /* i < bat_entries, whose bytes fit the 32-bit BAT length */
    uint8_t *t;
    int ret = qimg_table_cache_get(&s->bat, s->bat_offset + qimg_align_down(byte, VHDX_BAT_TABLE),
                                   false, &t);
    if (ret == 0)
        *entry = qimg_le64(t + byte % VHDX_BAT_TABLE);
    return ret;
}

/* Reads and the mapped layer: one payload block at a time (writes are write.c's own). */
static int vhdx_map(struct qimg_node *n, uint64_t off, uint64_t len, struct qimg_map *m)
{
    struct vhdx_state *s = n->opaque;
    uint64_t block = off / s->block_size, in = off % s->block_size, e;
    int ret = vhdx_bat_get(n, vhdx_bat_index(s, block), &e);
    if (ret < 0)
        return ret;
    uint64_t pending;
    if (vhdx_pending_host(s, block, &pending)) /* being allocated: its data is there */
        e = pending | VHDX_BLOCK_FULLY_PRESENT;
    *m = (struct qimg_map){.bytes = qimg_min_u64(len, s->block_size - in), .entry = e};
    switch (e & VHDX_BAT_STATE_MASK) {
    case VHDX_BLOCK_NOT_PRESENT:
    case VHDX_BLOCK_UNDEFINED:
    case VHDX_BLOCK_ZERO:
    case VHDX_BLOCK_UNMAPPED:
    case VHDX_BLOCK_UNMAPPED_V095:
        m->kind = QIMG_MAP_ZERO;
        return 0;
    case VHDX_BLOCK_FULLY_PRESENT:
        m->kind = QIMG_MAP_DATA;
        /* Below 2^64: the offset field is at most 2^64 - 2^20, in < 2^28. */
        if (!qimg_add_u64(e & VHDX_BAT_OFFSET_MASK, in, &m->host))
            return -EIO;
        m->host_valid = m->in_place = true;
        return 0;
    default: /* PARTIALLY_PRESENT (differencing only) and state 4: qemu fails the request */
        return -EIO;
    }
}

static const struct qimg_mapped_ops vhdx_mapped_ops = {.map = vhdx_map};

/* [2.2.2] A header is valid with its signature, checksum and version 1. */
static bool header_valid(const uint8_t *h)
{
    if (memcmp(h + VHDX_H_SIG, "head", 4) != 0 || qimg_le16(h + VHDX_H_VERSION) != 1)
        return false;
    uint8_t copy[VHDX_HEADER_SIZE];
    memcpy(copy, h, sizeof(copy));
    qimg_put_le32(copy + VHDX_H_CHECKSUM, 0);
    return qimg_crc32c(copy, sizeof(copy)) == qimg_le32(h + VHDX_H_CHECKSUM);
}

/* Bytes of the file at off; past its end they read as zeroes (as qemu reads short files). */
static int read_file(struct qimg_node *n, uint64_t off, uint64_t len, void *buf)
{
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    uint64_t have = off < (uint64_t)flen ? qimg_min_u64(len, (uint64_t)flen - off) : 0;
    memset((uint8_t *)buf + have, 0, len - have);
    return have ? qimg_node_pread(n->file, off, have, buf, 0) : 0;
}

static int parse_headers(struct qimg_node *n, struct qimg_error *err)
{
    struct vhdx_state *s = n->opaque;
    uint8_t id[8];
    int ret = read_file(n, 0, sizeof(id), id);
    if (ret < 0)
        return open_fail(n, err, ret);
    if (memcmp(id, VHDX_FILE_ID_SIG, 8) != 0)
        return open_fail(n, err, -EINVAL);
    for (int i = 0; i < 2; i++) {
        ret = read_file(n, i ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF, VHDX_HEADER_SIZE,
                        s->headers[i]);
        if (ret < 0)
            return open_fail(n, err, ret);
    }
    bool v1 = header_valid(s->headers[0]), v2 = header_valid(s->headers[1]);
    uint64_t q1 = qimg_le64(s->headers[0] + VHDX_H_SEQ), q2 = qimg_le64(s->headers[1] + VHDX_H_SEQ);
    if (v1 && (!v2 || q1 > q2 ||
               (q1 == q2 && memcmp(s->headers[0], s->headers[1], VHDX_HEADER_SIZE) == 0)))
        s->curr_header = 0; /* equal sequence numbers: only when the headers are identical */
    else if (v2 && (!v1 || q2 > q1))
        s->curr_header = 1;
    else
        return qimg_error_set(err, -EINVAL, "No valid VHDX header found");
    const uint8_t *h = s->headers[s->curr_header];
    s->log_offset = qimg_le64(h + VHDX_H_LOG_OFFSET);
    s->log_length = qimg_le32(h + VHDX_H_LOG_LENGTH);
    /* [2.2.2]: the log is 1 MiB aligned; qemu refuses other offsets. */
    if (s->log_offset % VHDX_MIB)
        return open_fail(n, err, -EINVAL);
    return 0;
}

int vhdx_region_check(struct vhdx_state *s, uint64_t start, uint64_t len)
{
    uint64_t end = start + len; /* wraps as qemu's does; reads there fail later (EIO) */
    for (size_t i = s->nregions; i-- > 0;) {
        const struct vhdx_region *r = &s->regions[i];
        if (start < r->end && end > r->start) {
            vhdx_error_report("VHDX region %llu-%llu overlaps with region %llu-%llu",
                              (unsigned long long)start, (unsigned long long)end,
                              (unsigned long long)r->start, (unsigned long long)r->end);
            return -EINVAL;
        }
    }
    return 0;
}

static void region_register(struct vhdx_state *s, uint64_t start, uint64_t len)
{
    s->regions = xrealloc(s->regions, (s->nregions + 1) * sizeof(*s->regions));
    s->regions[s->nregions++] = (struct vhdx_region){start, start + len};
}

/* [2.2.3] Region table 1: BAT and metadata regions, none overlapping another. */
static int parse_region_table(struct qimg_node *n, struct qimg_error *err)
{
    struct vhdx_state *s = n->opaque;
    uint8_t *rt = xmalloc(VHDX_REGION_SIZE);
    int ret = read_file(n, VHDX_REGION1_OFF, VHDX_REGION_SIZE, rt);
    if (ret < 0)
        goto out;
    uint32_t sum = qimg_le32(rt + VHDX_RT_CHECKSUM), count = qimg_le32(rt + VHDX_RT_COUNT);
    qimg_put_le32(rt + VHDX_RT_CHECKSUM, 0);
    ret = -EINVAL;
    if (memcmp(rt, "regi", 4) != 0 || qimg_crc32c(rt, VHDX_REGION_SIZE) != sum ||
        count > VHDX_RT_MAX_ENTRIES)
        goto out;
    bool have_bat = false, have_meta = false;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = rt + VHDX_RT_ENTRIES + (size_t)i * VHDX_RT_ENTRY_SIZE;
        uint64_t off = qimg_le64(e + VHDX_RTE_OFFSET);
        uint32_t len = qimg_le32(e + VHDX_RTE_LENGTH);
        ret = vhdx_region_check(s, off, len);
        if (ret < 0)
            goto out;
        region_register(s, off, len);
        ret = -EINVAL;
        if (memcmp(e, vhdx_guid_bat, 16) == 0) {
            if (have_bat)
                goto out;
            have_bat = true;
            s->bat_offset = off;
            s->bat_length = len;
        } else if (memcmp(e, vhdx_guid_metadata, 16) == 0) {
            if (have_meta)
                goto out;
            have_meta = true;
            s->meta_offset = off;
            s->meta_length = len;
        } else if (qimg_le32(e + VHDX_RTE_REQUIRED) & 1) {
            ret = -ENOTSUP; /* a region we do not know but must understand */
            goto out;
        }
    }
    ret = have_bat && have_meta ? 0 : -EINVAL;
out:
    free(rt);
    return ret < 0 ? open_fail(n, err, ret) : 0;
}

/* The metadata items qemu needs, found by GUID in the table. */
struct meta_items {
    uint32_t off[6], len[6];
    bool present[6];
};
static const uint8_t *const known_items[6] = {
    vhdx_guid_file_params,     vhdx_guid_disk_size,       vhdx_guid_page83,
    vhdx_guid_logical_sector, vhdx_guid_physical_sector, vhdx_guid_parent_locator,
};
enum { ITEM_PARAMS, ITEM_SIZE, ITEM_PAGE83, ITEM_LOGICAL, ITEM_PHYSICAL, ITEM_PARENT };

static int meta_table(struct qimg_node *n, struct meta_items *it)
{
    struct vhdx_state *s = n->opaque;
    uint8_t *t = xmalloc(VHDX_MT_TABLE_SIZE);
    int ret = read_file(n, s->meta_offset, VHDX_MT_TABLE_SIZE, t);
    if (ret < 0)
        goto out;
    uint16_t count = qimg_le16(t + VHDX_MT_COUNT);
    ret = -EINVAL;
    if (memcmp(t, VHDX_MT_SIG, 8) != 0 || count > VHDX_MT_MAX_ENTRIES)
        goto out;
    for (uint16_t i = 0; i < count; i++) {
        const uint8_t *e = t + VHDX_MT_ENTRIES + (size_t)i * VHDX_MT_ENTRY_SIZE;
        uint32_t off = qimg_le32(e + VHDX_MTE_OFFSET);
        int k = 0;
        while (k < 6 && memcmp(e, known_items[k], 16) != 0)
            k++;
        ret = -ENOTSUP;
        if (k == 6) {
            if (qimg_le32(e + VHDX_MTE_FLAGS) & VHDX_MTE_REQUIRED)
                goto out;
            continue;
        }
        if (it->present[k]) /* qemu refuses an item twice */
            goto out;
        ret = -EINVAL;
        if (off < VHDX_META_MIN_OFFSET)
            goto out;
        it->present[k] = true;
        it->off[k] = off;
        it->len[k] = qimg_le32(e + VHDX_MTE_LENGTH);
    }
    ret = 0;
    for (int k = 0; k < ITEM_PARENT; k++)
        if (!it->present[k])
            ret = -ENOTSUP;
out:
    free(t);
    return ret;
}

static int meta_read(struct qimg_node *n, const struct meta_items *it, int k, void *buf,
                     uint32_t len)
{
    struct vhdx_state *s = n->opaque;
    return read_file(n, s->meta_offset + it->off[k], len, buf);
}

/* [2.6.2] The items' values, checked as qemu checks them. */
static int parse_metadata(struct qimg_node *n, struct qimg_error *err)
{
    struct vhdx_state *s = n->opaque;
    struct meta_items it = {0};
    uint8_t params[8], size[8], lss[4], pss[4];
    int ret = meta_table(n, &it);
    if (ret == 0)
        ret = meta_read(n, &it, ITEM_PARAMS, params, 8);
    if (ret == 0)
        ret = meta_read(n, &it, ITEM_SIZE, size, 8);
    if (ret == 0)
        ret = meta_read(n, &it, ITEM_PAGE83, s->page83, 16);
    if (ret == 0)
        ret = meta_read(n, &it, ITEM_LOGICAL, lss, 4);
    if (ret == 0)
        ret = meta_read(n, &it, ITEM_PHYSICAL, pss, 4);
    if (ret < 0)
        return open_fail(n, err, ret);
    s->block_size = qimg_le32(params);
    s->params_flags = qimg_le32(params + 4);
    s->logical_sector = qimg_le32(lss);
    s->physical_sector = qimg_le32(pss);
    uint64_t vsize = qimg_le64(size);
    if (s->params_flags & VHDX_PARAMS_HAS_PARENT)
        /* Differencing images: qemu does not support them (without a locator: invalid). */
        return open_fail(n, err, it.present[ITEM_PARENT] ? -ENOTSUP : -EINVAL);
    if (s->block_size < VHDX_BLOCK_SIZE_MIN || s->block_size > VHDX_BLOCK_SIZE_MAX ||
        !qimg_is_pow2(s->block_size))
        return open_fail(n, err, -EINVAL);
    if (s->logical_sector != 512)
        return open_fail(n, err, -ENOTSUP);
    if (vsize > VHDX_MAX_IMAGE_SIZE)
        return open_fail(n, err, -EINVAL);
    s->virtual_size = qimg_align_down(vsize, s->logical_sector);
    s->chunk_ratio = (uint32_t)(VHDX_SECTORS_PER_BITMAP * s->logical_sector / s->block_size);
    s->data_blocks = qimg_div_round_up(vsize, s->block_size);
    /* In 32 bits as qemu counts: a size of 0 needs 2^32 / chunk_ratio entries. */
    s->bat_entries = s->data_blocks + (uint32_t)(s->data_blocks - 1) / s->chunk_ratio;
    if ((uint64_t)s->bat_length < s->bat_entries * 8)
        return open_fail(n, err, -EINVAL);
    return 0;
}

/* Is BAT entry i a payload block (not a sector bitmap entry)? */
static bool is_payload_entry(const struct vhdx_state *s, uint64_t i)
{
    return (i + 1) % ((uint64_t)s->chunk_ratio + 1) != 0;
}

/*
 * One FULLY_PRESENT entry: its offset must not overflow, a payload block must
 * not overlap the log, BAT or metadata regions (the CVE-2014-0148 class), and
 * the block must lie within the file (the last block may be partial).
 */
static int check_bat_entry(struct vhdx_state *s, uint64_t i, uint64_t off, int64_t flen,
                           int *errcnt)
{
    int ret = 0;
    if (off > (uint64_t)INT64_MAX - s->block_size) {
        vhdx_error_report("VHDX BAT entry %llu offset overflow.", (unsigned long long)i);
        if (!errcnt)
            return -EINVAL;
        ++*errcnt;
        ret = -EINVAL;
    } else if (is_payload_entry(s, i) && vhdx_region_check(s, off, s->block_size) < 0) {
        if (!errcnt)
            return -EINVAL;
        ++*errcnt;
        ret = -EINVAL;
    }
    /* qemu's partial last block counts i over all BAT entries, bitmap entries too. */
    uint64_t block_len = s->block_size;
    if (i <= s->virtual_size / s->block_size && s->virtual_size - i * s->block_size < block_len)
        block_len = s->virtual_size - i * s->block_size;
    if (off >= (uint64_t)flen) {
        vhdx_error_report("VHDX BAT entry %llu start offset %llu points after end of file "
                          "(%lld). Image has probably been truncated.",
                          (unsigned long long)i, (unsigned long long)off, (long long)flen);
    } else if (off + block_len > (uint64_t)flen) {
        vhdx_error_report("VHDX BAT entry %llu end offset %llu points after end of file "
                          "(%lld). Image has probably been truncated.",
                          (unsigned long long)i, (unsigned long long)(off + block_len - 1),
                          (long long)flen);
    } else {
        return ret;
    }
    if (errcnt)
        ++*errcnt;
    return -EINVAL;
}

int vhdx_check_bat_entries(struct qimg_node *n, int *errcnt)
{
    struct vhdx_state *s = n->opaque;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    int ret = 0;
    for (uint64_t i = 0; i < s->bat_entries; i++) {
        uint64_t e;
        int r = vhdx_bat_get(n, i, &e);
        if (r < 0)
            return r;
        if ((e & VHDX_BAT_STATE_MASK) != VHDX_BLOCK_FULLY_PRESENT)
            continue;
        r = check_bat_entry(s, i, e & VHDX_BAT_OFFSET_MASK, flen, errcnt);
        if (r < 0) {
            ret = r;
            if (!errcnt)
                break;
        }
    }
    return ret;
}

static int vhdx_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    (void)opts;
    struct vhdx_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    int ret = parse_headers(n, err);
    if (ret < 0)
        return ret;
    region_register(s, s->log_offset, s->log_length);
    if (n->flags & QIMG_O_RDWR)
        qimg_uuid_generate(s->session_guid);
    ret = vhdx_log_open(n, &s->log_replayed, err);
    if (ret < 0)
        return ret;
    ret = parse_region_table(n, err);
    if (ret == 0)
        ret = parse_metadata(n, err);
    if (ret < 0)
        return ret;
    /* qemu reads the whole BAT region here: beyond 2^63 that read fails (EIO). */
    if (s->bat_offset > (uint64_t)INT64_MAX - s->bat_length)
        return open_fail(n, err, -EIO);
    s->mapped = (struct qimg_mapped){.ops = &vhdx_mapped_ops, .block_size = s->block_size};
    qimg_table_cache_init(&s->bat, n->file, VHDX_BAT_CACHE, VHDX_BAT_TABLE);
    s->bat.limit = s->bat_offset + s->bat_entries * 8;
    /* qemu-img check reports bad entries itself (all of them). */
    if (!(n->flags & QIMG_O_CHECK)) {
        ret = vhdx_check_bat_entries(n, NULL);
        if (ret < 0)
            return open_fail(n, err, ret);
    }
    return 0;
}

static void vhdx_close(struct qimg_node *n)
{
    struct vhdx_state *s = n->opaque;
    if (!s)
        return;
    if (s->bat.e)
        qimg_table_cache_destroy(&s->bat);
    free(s->regions);
    free(s->pending);
    free(s);
}

static int64_t vhdx_get_length(struct qimg_node *n)
{
    const struct vhdx_state *s = n->opaque;
    return (int64_t)s->virtual_size;
}

static int vhdx_get_info(struct qimg_node *n, struct qimg_driver_info *info,
                         struct qimg_error *err)
{
    (void)err;
    const struct vhdx_state *s = n->opaque;
    info->cluster_size = s->block_size; /* 9.1 has no format-specific block for vhdx */
    return 0;
}

/* qemu: zero-initialised when the file is, or when every payload block is in state ZERO. */
static bool vhdx_has_zero_init(struct qimg_node *n)
{
    struct vhdx_state *s = n->opaque;
    if (qimg_node_has_zero_init(n->file))
        return true;
    bool zero = true;
    pthread_mutex_lock(&n->lock);
    for (uint64_t b = 0; b < s->data_blocks && zero; b++) {
        uint64_t e;
        if (vhdx_bat_get(n, vhdx_bat_index(s, b), &e) < 0 ||
            (e & VHDX_BAT_STATE_MASK) != VHDX_BLOCK_ZERO)
            zero = false;
    }
    pthread_mutex_unlock(&n->lock);
    return zero;
}

const struct qimg_driver qimg_vhdx_driver = {
    .name = "vhdx",
    .create_opts = vhdx_create_opts,
    .probe = vhdx_probe,
    .open = vhdx_open,
    .close = vhdx_close,
    .create = vhdx_create,
    .get_length = vhdx_get_length,
    .pread = qimg_mapped_pread,
    .pwrite = vhdx_pwrite,
    .has_zero_init = vhdx_has_zero_init,
    .get_info = vhdx_get_info,
    .check = vhdx_check,
};
