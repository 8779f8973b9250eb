/* SPDX-License-Identifier: MIT */
/*
 * The vpc (VHD) format driver: the footer (or its copy at the end of a fixed
 * disk), the virtual size as qemu-img 9.1 derives it, and guest I/O through
 * the mapped-image layer. Dynamic disks (the BAT and blocks) are in dynamic.c,
 * creation in create.c. Messages and their order are qemu-img 9.1's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/vpc/vpc.h"
#include "util/bytes.h"
#include "util/mem.h"

static const struct qimg_opt_desc vpc_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"subformat", QIMG_OPT_STRING,
     "Type of virtual hard disk format. Supported formats are {dynamic (default) | fixed} ", NULL},
    {"force_size", QIMG_OPT_BOOL,
     "Force disk size calculation to use the actual size specified, rather than using the "
     "nearest CHS-based calculation",
     NULL},
    {0},
};

static const struct qimg_opt_desc vpc_open_opts[] = {
    {"force_size_calc", QIMG_OPT_STRING,
     "Force disk size calculation to use either CHS geometry, or use the disk current_size "
     "specified in the VHD footer. {chs, current_size}",
     NULL},
    {0},
};

uint32_t vpc_checksum(const uint8_t *buf, size_t len, size_t checksum_off)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++)
        if (i < checksum_off || i >= checksum_off + 4)
            sum += buf[i];
    return ~sum;
}

/* qemu recognises a VHD by the footer copy at offset 0 only: fixed disks probe as raw. */
static int vpc_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= 8 && memcmp(buf, "conectix", 8) == 0 ? 100 : 0;
}

/* Fixed disks: guest byte i is file byte i (the footer follows the data). */
static int vpc_fixed_map(struct qimg_node *n, uint64_t off, uint64_t len, struct qimg_map *m)
{
    (void)n;
    *m = (struct qimg_map){.kind = QIMG_MAP_DATA, .bytes = len, .host = off,
                           .host_valid = true, .in_place = true, .recurse = true};
    return 0;
}

static const struct qimg_mapped_ops vpc_fixed_ops = {.map = vpc_fixed_map};

/*
 * 512 bytes at off; a short file reads as zeroes past its end. qemu sees the
 * file's length rounded up to whole sectors, so the backup footer of a file
 * whose length is not a multiple of 512 is looked for in that last sector.
 */
static int read_sector(struct qimg_node *file, uint64_t off, uint64_t flen, uint8_t *buf)
{
    uint64_t have = off >= flen ? 0 : qimg_min_u64(flen - off, VPC_FOOTER_SIZE);
    memset(buf + have, 0, VPC_FOOTER_SIZE - have);
    return have ? qimg_node_pread(file, off, have, buf, 0) : 0;
}

static bool is_footer(const uint8_t *f) { return memcmp(f + VPC_FT_COOKIE, "conectix", 8) == 0; }

/*
 * The footer copy at 0 (*at_head) or, failing that, a fixed disk's footer in
 * the last sector.
 */
static int read_footer(struct qimg_node *n, struct vpc_state *s, uint64_t flen, bool *at_head,
                       struct qimg_error *err)
{
    int ret = read_sector(n->file, 0, flen, s->footer);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read VHD footer");
    *at_head = is_footer(s->footer);
    if (!*at_head) {
        /* A fixed disk has its footer only at the end. */
        uint64_t end = qimg_align_up(flen, VPC_SECTOR);
        if (end < VPC_FOOTER_SIZE)
            return qimg_error_set(err, -EINVAL, "File too small for a VHD header");
        ret = read_sector(n->file, end - VPC_FOOTER_SIZE, flen, s->footer);
        if (ret < 0)
            return qimg_error_errno(err, ret, "Could not read VHD footer");
        if (!is_footer(s->footer) || qimg_be32(s->footer + VPC_FT_TYPE) != VPC_TYPE_FIXED)
            return qimg_error_set(err, -EINVAL, "invalid VPC image");
    }
    if (qimg_be32(s->footer + VPC_FT_CHECKSUM) !=
        vpc_checksum(s->footer, VPC_FOOTER_SIZE, VPC_FT_CHECKSUM))
        return qimg_error_set(err, -EINVAL, "Incorrect header checksum");
    return 0;
}

/*
 * Creators that size the disk by the footer's current_size rather than by
 * its CHS geometry (observed with qemu-img 9.1): Hyper-V ("win "), disk2vhd
 * ("d2v "), qemu with force_size ("qem2"), XenServer ("CTXS") and blktap
 * ("tap\0"). Virtual PC ("vpc "), plain qemu ("qemu") and the rest use CHS.
 */
static bool creator_uses_current_size(const uint8_t *app)
{
    static const char trusted[][4] = {{'w', 'i', 'n', ' '}, {'d', '2', 'v', ' '},
                                      {'q', 'e', 'm', '2'}, {'C', 'T', 'X', 'S'},
                                      {'t', 'a', 'p', '\0'}};
    for (size_t i = 0; i < sizeof(trusted) / sizeof(trusted[0]); i++)
        if (memcmp(app, trusted[i], 4) == 0)
            return true;
    return false;
}

enum size_calc { SIZE_CALC_AUTO, SIZE_CALC_CHS, SIZE_CALC_CURRENT };

static int parse_size_calc(struct qimg_opts *opts, enum size_calc *out, struct qimg_error *err)
{
    const char *v = qimg_opts_take(opts, "force_size_calc");
    *out = SIZE_CALC_AUTO;
    if (!v)
        return 0;
    if (strcmp(v, "chs") == 0)
        *out = SIZE_CALC_CHS;
    else if (strcmp(v, "current_size") == 0)
        *out = SIZE_CALC_CURRENT;
    else
        return qimg_error_set(err, -EINVAL, "Invalid size calculation mode: '%s'", v);
    return 0;
}

/* The virtual size in sectors; a disk of the maximum geometry always uses current_size. */
static uint64_t footer_sectors(const uint8_t *f, enum size_calc calc)
{
    uint64_t chs = (uint64_t)qimg_be16(f + VPC_FT_CYLS) * f[VPC_FT_HEADS] * f[VPC_FT_SECS];
    bool current = chs == VPC_MAX_GEOMETRY;
    if (!current)
        current = calc == SIZE_CALC_AUTO ? creator_uses_current_size(f + VPC_FT_CREATOR_APP)
                                         : calc == SIZE_CALC_CURRENT;
    return current ? qimg_be64(f + VPC_FT_CURRENT_SIZE) / VPC_SECTOR : chs;
}

static int vpc_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct vpc_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    enum size_calc calc;
    int ret = parse_size_calc(opts, &calc, err);
    if (ret < 0)
        return ret;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get the size of '%s'", n->filename);
    bool at_head = false;
    ret = read_footer(n, s, (uint64_t)flen, &at_head, err);
    if (ret < 0)
        return ret;
    uint64_t sectors = footer_sectors(s->footer, calc);
    if (sectors > VPC_MAX_SECTORS)
        return qimg_error_set(err, -EFBIG, "Could not open '%s': File too large", n->filename);
    s->size = sectors * VPC_SECTOR;
    s->fixed = qimg_be32(s->footer + VPC_FT_TYPE) == VPC_TYPE_FIXED;
    s->last_bitmap_offset = UINT64_MAX;
    /*
     * qemu parses the dynamic header and BAT of every disk whose footer copy
     * is at 0, whatever its type says; the type then decides only how guest
     * bytes are found (fixed: in place) and the cluster size.
     */
    if (at_head) {
        ret = vpc_dynamic_open(n, s, qimg_align_up((uint64_t)flen, VPC_SECTOR), err);
        if (ret < 0)
            return ret;
    }
    if (s->fixed)
        s->mapped = (struct qimg_mapped){.ops = &vpc_fixed_ops, .block_size = 1u << 16};
    return 0;
}

static void vpc_close(struct qimg_node *n)
{
    struct vpc_state *s = n->opaque;
    if (!s)
        return;
    free(s->bat);
    free(s);
}

static int64_t vpc_get_length(struct qimg_node *n)
{
    const struct vpc_state *s = n->opaque;
    return (int64_t)s->size;
}

static int vpc_get_info(struct qimg_node *n, struct qimg_driver_info *info,
                        struct qimg_error *err)
{
    (void)err;
    const struct vpc_state *s = n->opaque;
    if (!s->fixed)
        info->cluster_size = s->block_size; /* no format-specific block in 9.1 */
    return 0;
}

static int vpc_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                      unsigned flags)
{
    const struct vpc_state *s = n->opaque;
    if (s->fixed)
        return qimg_mapped_pwrite(n, off, len, buf, flags);
    int ret = vpc_dynamic_pwrite(n, off, len, buf);
    if (ret == 0 && (flags & QIMG_REQ_FUA))
        ret = qimg_node_flush(n->file);
    return ret;
}

/* A dynamic disk reads as zeroes when new; a fixed one as its file does. */
static bool vpc_has_zero_init(struct qimg_node *n)
{
    const struct vpc_state *s = n->opaque;
    return s->fixed ? qimg_node_has_zero_init(n->file) : true;
}

/* The size mode changes what the node shows: its name becomes json:{...} (as in qemu). */
static const char *const vpc_strong_opts[] = {"force_size_calc", NULL};

const struct qimg_driver qimg_vpc_driver = {
    .name = "vpc",
    .create_opts = vpc_create_opts,
    .open_opts = vpc_open_opts,
    .strong_opts = vpc_strong_opts,
    .probe = vpc_probe,
    .open = vpc_open,
    .close = vpc_close,
    .create = vpc_create,
    .get_length = vpc_get_length,
    .pread = qimg_mapped_pread,
    .pwrite = vpc_pwrite,
    /*
     * Dynamic disks: one block per allocated run (a bitmap sits between
     * blocks), unallocated blocks merged as zeroes; fixed disks ask the file
     * (qemu's BDRV_BLOCK_RAW).
     */
    .block_status = qimg_mapped_block_status,
    .has_zero_init = vpc_has_zero_init,
    .get_info = vpc_get_info,
};
