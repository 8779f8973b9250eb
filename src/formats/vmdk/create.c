/* SPDX-License-Identifier: MIT */
/*
 * Creating VMDK images as qemu-img 9.1 lays them out: the descriptor text
 * qemu writes (CID random, parentCID and parentFileNameHint from a vmdk
 * backing file, the DDB keys), embedded at 0x200 of a monolithicSparse or
 * streamOptimized extent, or a file of its own naming "NAME-flat.vmdk",
 * "NAME-s001.vmdk" ... extents (2 GiB each for the twoGbMaxExtent kinds).
 * Sparse extents get a version 1 header (2 with zeroed_grain, 3 for
 * streamOptimized), a redundant and a main grain directory each followed by
 * all of their grain tables, and data from the first 64 KiB-aligned sector.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "core/node-internal.h"
#include "formats/vmdk/vmdk.h"
#include "util/bytes.h"
#include "util/mem.h"

const struct qimg_opt_desc vmdk_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"adapter_type", QIMG_OPT_STRING,
     "Virtual adapter type, can be one of ide (default), lsilogic, buslogic or legacyESX", NULL},
    {"backing_file", QIMG_OPT_STRING, "File name of a base image", NULL},
    {"backing_fmt", QIMG_OPT_STRING, "Must be 'vmdk' if present", NULL},
    {"compat6", QIMG_OPT_BOOL, "VMDK version 6 image", "off"},
    {"hwversion", QIMG_OPT_STRING, "VMDK hardware version", "undefined"},
    {"toolsversion", QIMG_OPT_STRING, "VMware guest tools version", NULL},
    {"subformat", QIMG_OPT_STRING,
     "VMDK flat extent format, can be one of {monolithicSparse (default) | monolithicFlat | "
     "twoGbMaxExtentSparse | twoGbMaxExtentFlat | streamOptimized} ",
     NULL},
    {"zeroed_grain", QIMG_OPT_BOOL, "Enable efficient zero writes using the zeroed-grain GTE feature",
     NULL},
    {0},
};

#define VMDK_SPLIT_SIZE 0x80000000ull /* twoGbMaxExtent* extents */
#define VMDK_CREATE_GRAIN_SECTORS 128
#define VMDK_CREATE_GTES 512

struct vmdk_params {
    uint64_t size;
    const char *adapter, *backing, *hwversion, *toolsversion, *subformat;
    bool compat6, zeroed;
    bool flat, split, compress;
    uint32_t parent_cid;
};

/* Header, redundant GD + its GTs, GD + its GTs (qemu's vmdk_init_extent). */
int vmdk_init_sparse_extent(struct qimg_node *file, uint64_t size, bool compress, bool zeroed,
                            struct qimg_error *err)
{
    uint64_t capacity = size / VMDK_SECTOR;
    uint64_t grains = qimg_div_round_up(capacity, VMDK_CREATE_GRAIN_SECTORS);
    uint64_t gt_size = VMDK_CREATE_GTES * 4 / VMDK_SECTOR;
    uint64_t gt_count = qimg_div_round_up(grains, VMDK_CREATE_GTES);
    uint64_t gd_sectors = qimg_div_round_up(gt_count * 4, VMDK_SECTOR);
    uint64_t rgd = 1 + 20, gd = rgd + gd_sectors + gt_size * gt_count;
    uint64_t grain_off = qimg_align_up(gd + gd_sectors + gt_size * gt_count,
                                       VMDK_CREATE_GRAIN_SECTORS);
    uint8_t h[VMDK_SECTOR] = {0};
    qimg_put_be32(h, VMDK4_MAGIC);
    qimg_put_le32(h + VMDK4_OFF_VERSION, compress ? 3 : zeroed ? 2 : 1);
    qimg_put_le32(h + VMDK4_OFF_FLAGS, VMDK4_FLAG_RGD | VMDK4_FLAG_NL_DETECT |
                                           (compress ? VMDK4_FLAG_COMPRESS | VMDK4_FLAG_MARKER : 0) |
                                           (zeroed ? VMDK4_FLAG_ZERO_GRAIN : 0));
    qimg_put_le64(h + VMDK4_OFF_CAPACITY, capacity);
    qimg_put_le64(h + VMDK4_OFF_GRAIN, VMDK_CREATE_GRAIN_SECTORS);
    qimg_put_le64(h + VMDK4_OFF_DESC_OFFSET, 1);
    qimg_put_le64(h + VMDK4_OFF_DESC_SIZE, 20);
    qimg_put_le32(h + VMDK4_OFF_GTES_PER_GT, VMDK_CREATE_GTES);
    qimg_put_le64(h + VMDK4_OFF_RGD, rgd);
    qimg_put_le64(h + VMDK4_OFF_GD, gd);
    qimg_put_le64(h + VMDK4_OFF_OVERHEAD, grain_off);
    memcpy(h + VMDK4_OFF_CHECK_BYTES, "\n \r\n", 4);
    qimg_put_le16(h + VMDK4_OFF_COMPRESS, compress ? VMDK4_COMPRESSION_DEFLATE : 0);
    int ret = qimg_node_pwrite(file, 0, VMDK4_HEADER_END, h, 0);
    if (ret == 0)
        ret = qimg_node_truncate(file, grain_off * VMDK_SECTOR, false, QIMG_PREALLOC_OFF, err);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Input/output error");
    uint64_t gd_bytes = gd_sectors * VMDK_SECTOR;
    uint8_t *buf = xcalloc(1, gd_bytes ? gd_bytes : 1);
    for (int pass = 0; pass < 2 && ret == 0; pass++) {
        uint64_t at = pass ? gd : rgd;
        for (uint64_t i = 0; i < gt_count; i++)
            qimg_put_le32(buf + 4 * i, (uint32_t)(at + gd_sectors + i * gt_size));
        ret = qimg_node_pwrite(file, at * VMDK_SECTOR, gd_bytes, buf, 0);
    }
    free(buf);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Input/output error");
    return 0;
}

/* The protocol file of one extent (or the descriptor), empty. */
static int create_file(const char *filename, struct qimg_opts *opts, struct qimg_node **out,
                       struct qimg_error *err)
{
    struct qimg_opts *po = qimg_opts_new();
    qimg_opts_set(po, "size", "0");
    const char *keep[] = {"preallocation", "nocow", "extent_size_hint"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        const char *v = qimg_opts_peek(opts, keep[i]);
        if (v)
            qimg_opts_set(po, keep[i], v);
    }
    int ret = qimg_create_protocol(filename, po, err);
    qimg_opts_free(po);
    if (ret == 0)
        ret = qimg_open_protocol(out, filename, NULL, QIMG_O_RDWR, err);
    return ret;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Extent idx (1-based) of the image at filename: "dir/NAME-s001.ext", "dir/NAME-flat.ext". */
static char *extent_name(const char *filename, const struct vmdk_params *p, int idx)
{
    const char *b = base_name(filename);
    const char *dot = strrchr(b, '.');
    int dir = (int)(b - filename), pre = dot ? (int)(dot - b) : (int)strlen(b);
    const char *post = dot ? dot : "";
    if (p->split)
        return xasprintf("%.*s%.*s-%c%03d%s", dir, filename, pre, b, p->flat ? 'f' : 's', idx,
                         post);
    return xasprintf("%.*s%.*s-flat%s", dir, filename, pre, b, post);
}

static char *descriptor_text(const struct vmdk_params *p, const char *extent_lines)
{
    uint32_t cid = vmdk_random_cid();
    bool ide = !strcmp(p->adapter, "ide");
    uint32_t heads = ide ? 16 : 255;
    char *parent = p->backing ? xasprintf("parentFileNameHint=\"%s\"", p->backing) : xstrdup("");
    const char *subformat = p->subformat;
    char *d = xasprintf("# Disk DescriptorFile\n"
                        "version=1\n"
                        "CID=%" PRIx32 "\n"
                        "parentCID=%" PRIx32 "\n"
                        "createType=\"%s\"\n"
                        "%s"
                        "\n"
                        "# Extent description\n"
                        "%s"
                        "\n"
                        "# The Disk Data Base\n"
                        "#DDB\n"
                        "\n"
                        "ddb.virtualHWVersion = \"%s\"\n"
                        "ddb.geometry.cylinders = \"%" PRId64 "\"\n"
                        "ddb.geometry.heads = \"%" PRIu32 "\"\n"
                        "ddb.geometry.sectors = \"63\"\n"
                        "ddb.adapterType = \"%s\"\n"
                        "ddb.toolsVersion = \"%s\"\n",
                        cid, p->parent_cid, subformat, parent, extent_lines, p->hwversion,
                        (int64_t)(p->size / ((uint64_t)63 * heads * VMDK_SECTOR)), heads,
                        p->adapter, p->toolsversion);
    free(parent);
    return d;
}

static int take_options(struct qimg_opts *opts, struct vmdk_params *p, struct qimg_error *err)
{
    const char *bfmt = qimg_opts_take(opts, "backing_fmt");
    if (bfmt && strcmp(bfmt, "vmdk"))
        return qimg_error_set(err, -EINVAL, "backing_file must be a vmdk image");
    int ret = qimg_opts_take_size(opts, "size", &p->size, err);
    if (ret < 0)
        return ret;
    if (!qimg_round_up_checked(p->size, VMDK_SECTOR, &p->size) || p->size > INT64_MAX)
        return qimg_error_set(err, -EINVAL, "Image size too large");
    p->adapter = qimg_opts_take(opts, "adapter_type");
    p->backing = qimg_opts_take(opts, "backing_file");
    p->hwversion = qimg_opts_take(opts, "hwversion");
    p->toolsversion = qimg_opts_take(opts, "toolsversion");
    ret = qimg_opts_take_bool(opts, "compat6", &p->compat6, err);
    if (ret < 0)
        return ret;
    if (p->hwversion && !strcmp(p->hwversion, "undefined"))
        p->hwversion = NULL;
    p->subformat = qimg_opts_take(opts, "subformat");
    ret = qimg_opts_take_bool(opts, "zeroed_grain", &p->zeroed, err);
    if (ret < 0)
        return ret;
    static const char *const adapters[] = {"ide", "buslogic", "lsilogic", "legacyESX"};
    static const char *const subformats[] = {"monolithicSparse", "monolithicFlat",
                                             "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
                                             "streamOptimized"};
    if (!p->adapter)
        p->adapter = "ide";
    bool ok = false;
    for (size_t i = 0; i < 4; i++)
        ok = ok || !strcmp(p->adapter, adapters[i]);
    if (!ok)
        return qimg_error_set(err, -EINVAL, "invalid parameter value: %s", p->adapter);
    if (!p->subformat)
        p->subformat = "monolithicSparse";
    ok = false;
    for (size_t i = 0; i < 5; i++)
        ok = ok || !strcmp(p->subformat, subformats[i]);
    if (!ok)
        return qimg_error_set(err, -EINVAL, "invalid parameter value: %s", p->subformat);
    if (p->compat6) {
        if (p->hwversion)
            return qimg_error_set(err, -EINVAL, "compat6 cannot be enabled with hwversion set");
        p->hwversion = "6";
    }
    if (!p->hwversion)
        p->hwversion = "4";
    if (!p->toolsversion)
        p->toolsversion = "2147483647";
    p->split = strstr(p->subformat, "twoGb") != NULL;
    p->flat = strstr(p->subformat, "Flat") != NULL;
    p->compress = !strcmp(p->subformat, "streamOptimized");
    if (p->flat && p->backing)
        return qimg_error_set(err, -ENOTSUP, "Flat image can't have backing file");
    if (p->flat && p->zeroed)
        return qimg_error_set(err, -ENOTSUP, "Flat image can't enable zeroed grain");
    return 0;
}

/* The parent's CID (the backing file must open as vmdk). */
static int read_parent_cid(const char *filename, struct vmdk_params *p, struct qimg_error *err)
{
    char *full = qimg_resolve_backing_path(filename, p->backing);
    struct qimg_node *b = NULL;
    int ret = qimg_open(&b, full, NULL, NULL, QIMG_O_NO_BACKING, err);
    free(full);
    if (ret < 0)
        return ret;
    if (strcmp(qimg_node_format(b), "vmdk")) {
        ret = qimg_error_set(err, -EINVAL, "Invalid backing file format: %s. Must be vmdk",
                             qimg_node_format(b));
    } else {
        p->parent_cid = ((struct vmdk_state *)b->opaque)->cid;
    }
    qimg_node_unref(b);
    return ret;
}

static int create_extents(const char *filename, struct qimg_opts *opts,
                          const struct vmdk_params *p, char **lines, struct qimg_error *err)
{
    const char *fmt = p->flat ? "RW %" PRIu64 " FLAT \"%s\" 0\n" : "RW %" PRIu64 " SPARSE \"%s\"\n";
    uint64_t extent_size = p->split ? VMDK_SPLIT_SIZE : p->size;
    uint64_t done = 0;
    int ret = 0;
    for (int idx = 1; done < p->size && ret == 0; idx++) {
        uint64_t cur = qimg_min_u64(p->size - done, extent_size);
        char *name = extent_name(filename, p, idx);
        struct qimg_node *f = NULL;
        ret = create_file(name, opts, &f, err);
        if (ret == 0) {
            if (p->flat)
                ret = qimg_node_truncate(f, cur, false, QIMG_PREALLOC_OFF, err);
            else
                ret = vmdk_init_sparse_extent(f, cur, p->compress, p->zeroed, err);
            if (ret == 0)
                ret = qimg_node_flush(f);
            qimg_node_unref(f);
        }
        if (ret == 0) {
            char *line = xasprintf(fmt, cur / VMDK_SECTOR, base_name(name));
            char *all = xasprintf("%s%s", *lines, line);
            free(line);
            free(*lines);
            *lines = all;
        }
        free(name);
        done += cur;
    }
    return ret;
}

int vmdk_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    struct vmdk_params p = {.parent_cid = 0xffffffffu};
    int ret = take_options(opts, &p, err);
    if (ret < 0)
        return ret;
    bool monolithic = !p.split && !p.flat;
    struct qimg_node *desc = NULL;
    ret = create_file(filename, opts, &desc, err);
    if (ret < 0)
        return ret;
    char *lines = xstrdup("");
    if (monolithic) {
        ret = vmdk_init_sparse_extent(desc, p.size, p.compress, p.zeroed, err);
        if (ret == 0)
            lines = (free(lines), xasprintf("RW %" PRIu64 " SPARSE \"%s\"\n", p.size / VMDK_SECTOR,
                                            base_name(filename)));
    }
    if (ret == 0 && p.backing)
        ret = read_parent_cid(filename, &p, err);
    if (ret == 0 && !monolithic)
        ret = create_extents(filename, opts, &p, &lines, err);
    if (ret == 0) {
        char *text = descriptor_text(&p, lines);
        size_t len = strlen(text);
        ret = qimg_node_pwrite(desc, monolithic ? VMDK_SECTOR : 0, len, text, 0);
        if (ret < 0)
            ret = qimg_error_errno(err, ret, "Could not write description");
        else if (!monolithic)
            ret = qimg_node_truncate(desc, len, false, QIMG_PREALLOC_OFF, err);
        free(text);
    }
    if (ret == 0)
        ret = qimg_node_flush(desc);
    free(lines);
    qimg_node_unref(desc);
    return ret;
}
