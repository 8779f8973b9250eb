/* SPDX-License-Identifier: MIT */
/*
 * Creating VHDs as qemu-img 9.1 lays them out. Without force_size the size
 * is rounded up to what a CHS geometry can express (the VHD specification's
 * CHS algorithm, "Appendix: CHS Calculation"), unless that reaches the
 * largest geometry, where the exact size is kept. A dynamic disk is a footer
 * copy, the dynamic header at 512, the BAT at 1536 (all unallocated, padded
 * to whole sectors) and the footer; a fixed disk is a sparse data area and
 * the footer. qemu stamps creator "qemu" ("qem2" with force_size, whose
 * geometry is the maximum so that readers take current_size).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/builtin.h"
#include "formats/vpc/vpc.h"
#include "util/bytes.h"
#include "util/mem.h"
#include "util/uuid.h"

struct vpc_layout {
    uint64_t size; /* bytes, whole sectors */
    uint16_t cyls;
    uint8_t heads, secs;
    bool fixed, force_size;
    uint32_t bat_entries;
};

struct chs {
    uint64_t cyls, heads, secs;
};

/* The VHD specification's geometry for a sector count (clamped to the largest). */
static struct chs chs_for(uint64_t sectors)
{
    struct chs g;
    uint64_t cth;
    sectors = qimg_min_u64(sectors, VPC_MAX_GEOMETRY);
    if (sectors >= 65535ull * 16 * 63) {
        g.secs = 255;
        g.heads = 16;
        cth = sectors / g.secs;
    } else {
        g.secs = 17;
        cth = sectors / g.secs;
        g.heads = qimg_max_u64((cth + 1023) / 1024, 4);
        if (cth >= g.heads * 1024 || g.heads > 16) {
            g.secs = 31;
            g.heads = 16;
            cth = sectors / g.secs;
        }
        if (cth >= g.heads * 1024) {
            g.secs = 63;
            g.heads = 16;
            cth = sectors / g.secs;
        }
    }
    g.cyls = cth / g.heads;
    return g;
}

/*
 * The smallest geometry holding the sectors: qemu retries with one sector
 * more until the geometry's product covers the size (at most heads * secs
 * tries). Reaching the largest geometry keeps the exact size.
 */
static void size_geometry(struct vpc_layout *l)
{
    uint64_t sectors = l->size / VPC_SECTOR;
    struct chs g = {0, 0, 0};
    if (l->force_size || sectors >= VPC_MAX_GEOMETRY) {
        g = (struct chs){VPC_CHS_MAX_C, VPC_CHS_MAX_H, VPC_CHS_MAX_S};
    } else {
        for (uint64_t i = 0; sectors > g.cyls * g.heads * g.secs; i++)
            g = chs_for(sectors + i);
    }
    l->cyls = (uint16_t)g.cyls;
    l->heads = (uint8_t)g.heads;
    l->secs = (uint8_t)g.secs;
    uint64_t product = g.cyls * g.heads * g.secs;
    if (product != VPC_MAX_GEOMETRY)
        l->size = product * VPC_SECTOR;
}

static void footer_build(uint8_t *f, const struct vpc_layout *l)
{
    memset(f, 0, VPC_FOOTER_SIZE);
    memcpy(f + VPC_FT_COOKIE, "conectix", 8);
    qimg_put_be32(f + VPC_FT_FEATURES, 2);
    qimg_put_be32(f + VPC_FT_VERSION, 0x00010000);
    qimg_put_be64(f + VPC_FT_DATA_OFFSET, l->fixed ? UINT64_MAX : VPC_SECTOR);
    qimg_put_be32(f + VPC_FT_TIMESTAMP, (uint32_t)((uint64_t)time(NULL) - VPC_TIMESTAMP_BASE));
    memcpy(f + VPC_FT_CREATOR_APP, l->force_size ? "qem2" : "qemu", 4);
    qimg_put_be32(f + VPC_FT_CREATOR_VER, VPC_QEMU_CREATOR_VER);
    qimg_put_be32(f + VPC_FT_CREATOR_OS, VPC_QEMU_CREATOR_OS);
    qimg_put_be64(f + VPC_FT_ORIG_SIZE, l->size);
    qimg_put_be64(f + VPC_FT_CURRENT_SIZE, l->size);
    qimg_put_be16(f + VPC_FT_CYLS, l->cyls);
    f[VPC_FT_HEADS] = l->heads;
    f[VPC_FT_SECS] = l->secs;
    qimg_put_be32(f + VPC_FT_TYPE, l->fixed ? VPC_TYPE_FIXED : VPC_TYPE_DYNAMIC);
    qimg_uuid_generate(f + VPC_FT_UUID);
    qimg_put_be32(f + VPC_FT_CHECKSUM, vpc_checksum(f, VPC_FOOTER_SIZE, VPC_FT_CHECKSUM));
}

static void dynamic_header_build(uint8_t *h, const struct vpc_layout *l)
{
    memset(h, 0, VPC_DYN_SIZE);
    memcpy(h + VPC_DH_COOKIE, "cxsparse", 8);
    qimg_put_be64(h + VPC_DH_DATA_OFFSET, UINT64_MAX);
    qimg_put_be64(h + VPC_DH_TABLE_OFFSET, VPC_QEMU_BAT_OFFSET);
    qimg_put_be32(h + VPC_DH_VERSION, 0x00010000);
    qimg_put_be32(h + VPC_DH_MAX_ENTRIES, l->bat_entries);
    qimg_put_be32(h + VPC_DH_BLOCK_SIZE, VPC_DEFAULT_BLOCK_SIZE);
    qimg_put_be32(h + VPC_DH_CHECKSUM, vpc_checksum(h, VPC_DYN_SIZE, VPC_DH_CHECKSUM));
}

/* Footer copy, dynamic header, an all-unallocated BAT, footer: one write. */
static int write_dynamic(struct qimg_node *file, const struct vpc_layout *l)
{
    uint64_t bat_bytes = qimg_align_up((uint64_t)l->bat_entries * 4, VPC_SECTOR);
    uint64_t total = VPC_QEMU_BAT_OFFSET + bat_bytes + VPC_FOOTER_SIZE;
    uint8_t *buf = xmalloc(total);
    footer_build(buf, l);
    dynamic_header_build(buf + VPC_SECTOR, l);
    memset(buf + VPC_QEMU_BAT_OFFSET, 0xff, bat_bytes);
    memcpy(buf + total - VPC_FOOTER_SIZE, buf, VPC_FOOTER_SIZE);
    int ret = qimg_node_pwrite(file, 0, total, buf, 0);
    free(buf);
    return ret;
}

/* The data area stays a hole; the footer follows it. */
static int write_fixed(struct qimg_node *file, const struct vpc_layout *l)
{
    uint8_t f[VPC_FOOTER_SIZE];
    footer_build(f, l);
    return qimg_node_pwrite(file, l->size, VPC_FOOTER_SIZE, f, 0);
}

/* The protocol file, empty, with the protocol's own options (nocow ...). */
static int create_file(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    struct qimg_opts *po = qimg_opts_new();
    qimg_opts_set(po, "size", "0");
    const char *keep[] = {"nocow", "extent_size_hint"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        const char *v = qimg_opts_take(opts, keep[i]);
        if (v)
            qimg_opts_set(po, keep[i], v);
    }
    int ret = qimg_create_protocol(filename, po, err);
    qimg_opts_free(po);
    return ret;
}

static int parse_options(struct qimg_opts *opts, struct vpc_layout *l, struct qimg_error *err)
{
    uint64_t size;
    int ret = qimg_opts_take_size(opts, "size", &size, err);
    if (ret >= 0)
        ret = qimg_opts_take_bool(opts, "force_size", &l->force_size, err);
    if (ret < 0)
        return ret;
    const char *sub = qimg_opts_take(opts, "subformat");
    if (sub && strcmp(sub, "fixed") == 0)
        l->fixed = true;
    else if (sub && strcmp(sub, "dynamic") != 0)
        return qimg_error_set(err, -EINVAL, "Parameter 'subformat' does not accept value '%s'",
                              sub);
    /* Whole sectors; a size that does not round is too large in any case. */
    if (!qimg_round_up_checked(size, VPC_SECTOR, &l->size))
        l->size = UINT64_MAX & ~(uint64_t)(VPC_SECTOR - 1);
    return 0;
}

int vpc_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    struct vpc_layout l = {0};
    int ret = parse_options(opts, &l, err);
    if (ret < 0)
        return ret;
    ret = create_file(filename, opts, err);
    if (ret < 0)
        return ret;
    size_geometry(&l);
    if (l.size / VPC_SECTOR > VPC_MAX_SECTORS)
        return qimg_error_set(err, -EFBIG, "File too large"); /* the CLI words it as qemu-img */
    l.bat_entries = (uint32_t)qimg_div_round_up(l.size, VPC_DEFAULT_BLOCK_SIZE);
    struct qimg_node *file = NULL;
    ret = qimg_open_protocol(&file, filename, NULL, QIMG_O_RDWR, err);
    if (ret < 0)
        return ret;
    ret = l.fixed ? write_fixed(file, &l) : write_dynamic(file, &l);
    if (ret < 0)
        qimg_error_errno(err, ret, "Could not write the VHD image");
    else if ((ret = qimg_node_flush(file)) < 0)
        qimg_error_errno(err, ret, "Could not flush the new image");
    qimg_node_unref(file);
    return ret;
}
