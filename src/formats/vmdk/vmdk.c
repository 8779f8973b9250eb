/* SPDX-License-Identifier: MIT */
/*
 * The VMDK format driver: open (a sparse extent with its embedded descriptor,
 * or a descriptor file naming extents), guest I/O through the mapped-image
 * layer with a data node per extent, info, and the CID that qemu rewrites on
 * the first write after each open.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/vmdk/vmdk.h"
#include "qimg/json.h"
#include "util/bytes.h"
#include "util/mem.h"
#include "util/uuid.h"

static int vmdk_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len < 4)
        return 0;
    uint32_t magic = qimg_be32(buf);
    if (magic == VMDK3_MAGIC || magic == VMDK4_MAGIC)
        return 100;
    return vmdk_desc_probe(buf, len);
}

uint32_t vmdk_random_cid(void)
{
    uint8_t u[16];
    qimg_uuid_generate(u);
    return qimg_le32(u);
}

struct vmdk_extent *vmdk_find_extent(struct vmdk_state *s, uint64_t off)
{
    uint64_t sector = off / VMDK_SECTOR;
    for (size_t i = 0; i < s->n_extents; i++)
        if (sector < s->extents[i].start + s->extents[i].sectors)
            return &s->extents[i];
    return NULL;
}

static int vmdk_map(struct qimg_node *n, uint64_t off, uint64_t len, struct qimg_map *m)
{
    struct vmdk_extent *e = vmdk_find_extent(n->opaque, off);
    if (!e)
        return -EIO;
    return vmdk_extent_map(n, e, off, len, m);
}

/*
 * New grains go at the end of the extent file (qemu's next_cluster_sector),
 * contiguous and inside one extent, never for compressed extents (those are
 * written by stream.c).
 */
static int vmdk_alloc(struct qimg_node *n, struct qimg_alloc *a)
{
    struct vmdk_extent *e = vmdk_find_extent(n->opaque, a->guest);
    if (!e || e->flat)
        return -EIO;
    if (e->compressed)
        return -EINVAL; /* qemu: only whole grains, compressed (see stream.c) */
    if (e->grain != qimg_mapped_of(n)->block_size)
        return -ENOTSUP;
    uint64_t ext_end = (e->start + e->sectors) * VMDK_SECTOR;
    uint64_t grains_left = qimg_div_round_up(ext_end - a->guest, e->grain);
    a->bytes = qimg_min_u64(a->bytes, grains_left * e->grain);
    if (e->next_grain / VMDK_SECTOR >= VMDK_EXTENT_MAX_SECTORS)
        return -EIO;
    a->host = e->next_grain;
    a->file = e->file;
    return 0;
}

/* The grains are written: their GT entries (main, then redundant), grain by grain table. */
static int vmdk_commit(struct qimg_node *n, struct qimg_alloc *a)
{
    struct vmdk_extent *e = vmdk_find_extent(n->opaque, a->guest);
    if (!e)
        return -EIO;
    uint64_t g = (a->guest - e->start * VMDK_SECTOR) / e->grain;
    uint64_t count = a->bytes / e->grain, host = a->host;
    e->next_grain = qimg_max_u64(e->next_grain, a->host + a->bytes);
    while (count) {
        uint32_t here = (uint32_t)qimg_min_u64(count, e->gt_entries - g % e->gt_entries);
        uint32_t vals[VMDK3_GTES_PER_GT];
        for (uint32_t k = 0; k < here; k++)
            vals[k] = (uint32_t)((host + k * e->grain) / VMDK_SECTOR);
        int ret = vmdk_gte_set(e, g, here, vals);
        if (ret < 0)
            return ret;
        g += here;
        count -= here;
        host += (uint64_t)here * e->grain;
    }
    return qimg_node_flush(e->file);
}

static int vmdk_backing_read_ok(struct qimg_node *n);

static const struct qimg_mapped_ops vmdk_mapped_ops = {
    .map = vmdk_map,
    .backing_read_ok = vmdk_backing_read_ok,
    .alloc = vmdk_alloc,
    .commit = vmdk_commit,
    .read_compressed = vmdk_read_compressed,
};

/* The descriptor text at off of file: at most 1 MiB - 1 bytes, NUL-terminated. */
static int read_desc(struct qimg_node *file, uint64_t off, char **out, struct qimg_error *err)
{
    int64_t flen = qimg_node_length(file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not access file");
    if (flen < 4)
        return qimg_error_set(err, -EINVAL, "File is too small, not a valid image");
    uint64_t size = qimg_min_u64((uint64_t)flen, VMDK_DESC_MAX);
    char *buf = xcalloc(1, size + 1);
    uint64_t have = off >= (uint64_t)flen ? 0 : qimg_min_u64((uint64_t)flen - off, size);
    int ret = have ? qimg_node_pread(file, off, have, buf, 0) : 0;
    if (ret < 0) {
        free(buf);
        return qimg_error_errno(err, ret, "Could not read from file");
    }
    *out = buf;
    return 0;
}

static bool supported_desc_type(const char *ct)
{
    static const char *const types[] = {"monolithicFlat",       "vmfs", "vmfsSparse", "seSparse",
                                        "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(ct, types[i]))
            return true;
    return false;
}

/* fname as the descriptor names it, resolved against the descriptor's directory. */
static char *extent_path(struct qimg_node *n, const char *fname)
{
    if (fname[0] == '/')
        return xstrdup(fname);
    const char *dfile = n->file->filename;
    const char *slash = strrchr(dfile, '/');
    if (!slash)
        return xstrdup(fname);
    return xasprintf("%.*s%s", (int)(slash - dfile + 1), dfile, fname);
}

static int open_extent(struct qimg_node *n, const struct vmdk_desc_extent *x,
                       struct qimg_error *err)
{
    struct vmdk_state *s = n->opaque;
    char *path = extent_path(n, x->fname);
    struct qimg_node *f = NULL;
    int ret = qimg_open_protocol(&f, path, NULL, n->flags, err);
    free(path);
    if (ret < 0)
        return ret;
    bool flat = !strcmp(x->type, "FLAT") || !strcmp(x->type, "VMFS");
    if (flat) {
        if (x->flat_offset > INT64_MAX / VMDK_SECTOR || x->sectors > INT64_MAX / VMDK_SECTOR) {
            qimg_node_unref(f);
            return qimg_error_set(err, -EINVAL, "Invalid extent line: offset too large");
        }
        struct vmdk_extent e = {.file = f, .flat = true, .sectors = x->sectors,
                                .flat_offset = x->flat_offset * VMDK_SECTOR};
        snprintf(e.type, sizeof(e.type), "%s", x->type);
        s->extents = xrealloc(s->extents, (s->n_extents + 1) * sizeof(*s->extents));
        s->extents[s->n_extents++] = e;
        return 0;
    }
    if (!strcmp(x->type, "SESPARSE")) {
        qimg_node_unref(f);
        return qimg_error_set(err, -ENOTSUP, "Unsupported extent type '%s'", x->type);
    }
    char *buf = NULL;
    ret = read_desc(f, 0, &buf, err);
    free(buf);
    if (ret == 0)
        ret = vmdk_open_sparse(n, f, x->type, err);
    if (ret < 0)
        qimg_node_unref(f);
    return ret;
}

static int open_desc_file(struct qimg_node *n, const char *text, struct qimg_error *err)
{
    struct vmdk_state *s = n->opaque;
    struct vmdk_desc d;
    int ret = vmdk_desc_parse(text, &d, err);
    if (ret < 0)
        return ret;
    if (!supported_desc_type(d.create_type)) {
        ret = qimg_error_set(err, -ENOTSUP, "Unsupported image type '%s'", d.create_type);
        vmdk_desc_free(&d);
        return ret;
    }
    s->create_type = xstrdup(d.create_type);
    s->desc_offset = 0;
    for (size_t i = 0; i < d.n_extents && ret == 0; i++)
        ret = open_extent(n, &d.extents[i], err);
    vmdk_desc_free(&d);
    return ret;
}

int vmdk_open_desc_at(struct qimg_node *n, uint64_t desc_sector, struct qimg_error *err)
{
    if (desc_sector > INT64_MAX / VMDK_SECTOR)
        return qimg_error_set(err, -EINVAL, "Could not read from file: %s", strerror(EINVAL));
    char *buf = NULL;
    int ret = read_desc(n->file, desc_sector * VMDK_SECTOR, &buf, err);
    if (ret == 0)
        ret = open_desc_file(n, buf, err);
    free(buf);
    return ret;
}

/* Extents follow each other in guest order; the sum is the disk. */
static int place_extents(struct qimg_node *n, struct qimg_error *err)
{
    struct vmdk_state *s = n->opaque;
    uint64_t at = 0;
    for (size_t i = 0; i < s->n_extents; i++) {
        s->extents[i].start = at;
        if (!qimg_add_u64(at, s->extents[i].sectors, &at))
            return qimg_error_set(err, -EFBIG, "VMDK image is too large");
    }
    s->total_sectors = at;
    if (at > INT64_MAX / VMDK_SECTOR)
        return qimg_error_set(err, -EFBIG, "Can't get image size '%s': %s", n->filename,
                              strerror(EFBIG));
    return 0;
}

/* parentFileNameHint="..." (the backing file, always vmdk), CID and parentCID. */
static int read_desc_keys(struct qimg_node *n, struct qimg_error *err)
{
    struct vmdk_state *s = n->opaque;
    char *desc = xcalloc(1, VMDK_DESC_SIZE + 1);
    int64_t flen = qimg_node_length(n->file);
    int ret = flen < 0 ? (int)flen : 0;
    if (ret == 0 && (uint64_t)flen > s->desc_offset) {
        uint64_t have = qimg_min_u64((uint64_t)flen - s->desc_offset, VMDK_DESC_SIZE);
        ret = qimg_node_pread(n->file, s->desc_offset, have, desc, 0);
    }
    desc[VMDK_DESC_SIZE - 1] = 0;
    const char *p = ret == 0 ? strstr(desc, "parentFileNameHint") : NULL;
    if (p) {
        p += strlen("parentFileNameHint") + 2;
        const char *q = strchr(p, '"');
        if (!q || q - p > 4095)
            ret = -EINVAL;
        else {
            n->backing_file = xasprintf("%.*s", (int)(q - p), p);
            n->backing_format = xstrdup("vmdk");
        }
    }
    if (ret == 0)
        ret = vmdk_desc_read_cid(desc, false, &s->cid);
    if (ret == 0)
        ret = vmdk_desc_read_cid(desc, true, &s->parent_cid);
    free(desc);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not open '%s'", n->filename);
    return 0;
}

static void vmdk_close(struct qimg_node *n);
static int vmdk_flush(struct qimg_node *n);

static int vmdk_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    (void)opts;
    struct vmdk_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    char *buf = NULL;
    int ret = read_desc(n->file, 0, &buf, err);
    if (ret < 0)
        return ret;
    uint32_t magic = qimg_be32(buf);
    if (magic == VMDK3_MAGIC || magic == VMDK4_MAGIC) {
        ret = vmdk_open_sparse(n, n->file, "", err);
        s->desc_offset = VMDK_SECTOR;
    } else {
        ret = open_desc_file(n, buf, err);
    }
    free(buf);
    if (ret == 0)
        ret = place_extents(n, err);
    if (ret == 0)
        ret = read_desc_keys(n, err);
    if (ret < 0)
        return ret;
    uint64_t bs = 0;
    for (size_t i = 0; i < s->n_extents && !bs; i++)
        if (!s->extents[i].flat)
            bs = s->extents[i].grain;
    s->mapped = (struct qimg_mapped){.ops = &vmdk_mapped_ops, .block_size = bs ? bs : 65536};
    return 0;
}

static void vmdk_close(struct qimg_node *n)
{
    struct vmdk_state *s = n->opaque;
    if (!s)
        return;
    for (size_t i = 0; i < s->n_extents; i++)
        vmdk_extent_free(n, &s->extents[i]);
    free(s->extents);
    free(s->create_type);
    free(s);
    n->opaque = NULL;
}

static int64_t vmdk_get_length(struct qimg_node *n)
{
    const struct vmdk_state *s = n->opaque;
    if (s->total_sectors > INT64_MAX / VMDK_SECTOR)
        return -EFBIG; /* qemu: "Can't get image size '...': File too large" */
    return (int64_t)(s->total_sectors * VMDK_SECTOR);
}

/* The descriptor and every extent file that is not the descriptor's own. */
static int64_t vmdk_get_allocated_size(struct qimg_node *n)
{
    const struct vmdk_state *s = n->opaque;
    int64_t sum = qimg_node_allocated_size(n->file);
    for (size_t i = 0; i < s->n_extents && sum >= 0; i++) {
        if (s->extents[i].file == n->file)
            continue;
        int64_t r = qimg_node_allocated_size(s->extents[i].file);
        sum = r < 0 ? r : sum + r;
    }
    return sum;
}

/*
 * qemu writes a new random CID into the descriptor on the first write after
 * each open: the whole 10 KiB descriptor area, text after "CID=" replaced
 * by the new value up to "parentCID".
 */
int vmdk_update_cid(struct qimg_node *n)
{
    struct vmdk_state *s = n->opaque;
    if (s->cid_updated)
        return 0;
    char *desc = xcalloc(1, VMDK_DESC_SIZE);
    int64_t flen = qimg_node_length(n->file);
    int ret = flen < 0 ? (int)flen : 0;
    if (ret == 0 && (uint64_t)flen > s->desc_offset)
        ret = qimg_node_pread(n->file, s->desc_offset,
                              qimg_min_u64((uint64_t)flen - s->desc_offset, VMDK_DESC_SIZE), desc,
                              0);
    desc[VMDK_DESC_SIZE - 1] = 0;
    char *pc = ret == 0 ? strstr(desc, "parentCID") : NULL;
    if (ret == 0 && !pc)
        ret = -EINVAL;
    if (ret == 0) {
        char *tail = xstrdup(pc);
        char *p = strstr(desc, "CID");
        if (p) {
            uint32_t cid = vmdk_random_cid();
            p += 4;
            size_t room = VMDK_DESC_SIZE - (size_t)(p - desc);
            int w = snprintf(p, room, "%" PRIx32 "\n", cid);
            if (w > 0 && (size_t)w < room)
                snprintf(p + w, room - (size_t)w, "%s", tail);
            s->cid = cid;
        }
        free(tail);
        ret = qimg_node_pwrite(n->file, s->desc_offset, VMDK_DESC_SIZE, desc, 0);
        if (ret == 0)
            ret = qimg_node_flush(n->file);
    }
    free(desc);
    if (ret == 0)
        s->cid_updated = true;
    return ret;
}

/*
 * qemu reads the backing file only while the parent's CID is the one this
 * image recorded (parentCID); a backing file of another format has none.
 * Checked once per open, like qemu's cid_checked. n->lock held.
 */
static int vmdk_backing_read_ok(struct qimg_node *n)
{
    struct vmdk_state *s = n->opaque;
    if (s->cid_checked || !n->backing)
        return 0;
    struct qimg_node *b = n->backing;
    if (b->drv != &qimg_vmdk_driver || ((struct vmdk_state *)b->opaque)->cid != s->parent_cid)
        return -EINVAL;
    s->cid_checked = true;
    return 0;
}

static int vmdk_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                       unsigned flags)
{
    struct vmdk_extent *e = vmdk_find_extent(n->opaque, off);
    if (e && e->compressed)
        return vmdk_stream_pwrite(n, off, len, buf);
    /* FUA: the extent files hold the data, not the layer's data node */
    int ret = qimg_mapped_pwrite(n, off, len, buf, flags & ~QIMG_REQ_FUA);
    if (ret == 0) {
        pthread_mutex_lock(&n->lock);
        ret = vmdk_update_cid(n);
        pthread_mutex_unlock(&n->lock);
    }
    if (ret == 0 && (flags & QIMG_REQ_FUA))
        ret = vmdk_flush(n);
    return ret;
}

/*
 * Zero writes: whole grains of extents with zeroed-grain entries get GTE 1
 * (qemu's VMDK_GTE_ZEROED); anything else is -ENOTSUP, so the core writes
 * zeroes as data (qemu's generic fallback).
 */
static int vmdk_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    struct vmdk_state *s = n->opaque;
    int ret = 0;
    (void)flags;
    pthread_mutex_lock(&n->lock);
    /* a dry run first, as qemu: either every piece is whole zeroed grains or none is done */
    for (int pass = 0; pass < 2 && ret == 0; pass++) {
        for (uint64_t pos = off, end = off + len; pos < end && ret == 0;) {
            struct vmdk_extent *e = vmdk_find_extent(s, pos);
            if (!e || e->flat || !e->zero_grain || e->compressed) {
                ret = -ENOTSUP;
                break;
            }
            uint64_t rel = pos - e->start * VMDK_SECTOR;
            if (rel % e->grain || end - pos < e->grain) {
                ret = -ENOTSUP;
                break;
            }
            uint32_t gte;
            uint64_t g = rel / e->grain;
            ret = vmdk_gte_get(e, g, &gte, NULL);
            if (ret == 0 && pass == 1 && gte != VMDK_GTE_ZEROED) {
                uint32_t v = VMDK_GTE_ZEROED;
                ret = vmdk_gte_set(e, g, 1, &v);
                if (ret == 0)
                    ret = qimg_node_flush(e->file);
            }
            pos += e->grain;
        }
    }
    if (ret == 0)
        ret = vmdk_update_cid(n);
    pthread_mutex_unlock(&n->lock);
    return ret;
}

/* Every extent file (data written through the layer lands there), then the descriptor's. */
static int vmdk_flush(struct qimg_node *n)
{
    const struct vmdk_state *s = n->opaque;
    int ret = 0;
    for (size_t i = 0; i < s->n_extents && ret == 0; i++)
        if (s->extents[i].file != n->file)
            ret = qimg_node_flush(s->extents[i].file);
    return ret ? ret : qimg_node_flush(n->file);
}

/* One grain at a time (a flat extent is one "grain"), as qemu's block status answers. */
static int vmdk_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                             struct qimg_block_status *st)
{
    struct vmdk_extent *e = vmdk_find_extent(n->opaque, off);
    if (!e)
        return -EIO;
    uint64_t rel = off - e->start * VMDK_SECTOR;
    uint64_t unit = e->flat ? e->sectors * VMDK_SECTOR : e->grain;
    return qimg_mapped_block_status(n, off, qimg_min_u64(len, unit - rel % unit), st);
}

static bool vmdk_has_zero_init(struct qimg_node *n)
{
    const struct vmdk_state *s = n->opaque;
    for (size_t i = 0; i < s->n_extents; i++)
        if (s->extents[i].flat && !qimg_node_has_zero_init(s->extents[i].file))
            return false;
    return true;
}

static struct qimg_json *extent_info(const struct vmdk_extent *e)
{
    struct qimg_json *x = qimg_json_object();
    if (e->compressed)
        qimg_json_add_bool(x, "compressed", true);
    qimg_json_add_uint(x, "virtual-size", e->sectors * VMDK_SECTOR);
    qimg_json_add_str(x, "filename", qimg_node_filename(e->file));
    if (!e->flat)
        qimg_json_add_uint(x, "cluster-size", e->grain);
    qimg_json_add_str(x, "format", e->type);
    return x;
}

static int vmdk_get_info(struct qimg_node *n, struct qimg_driver_info *info,
                         struct qimg_error *err)
{
    (void)err;
    const struct vmdk_state *s = n->opaque;
    /* A descriptor without usable extents: qemu 9.1 asserts here; qimg reports none. */
    const struct vmdk_extent *e0 = s->n_extents ? &s->extents[0] : NULL;
    bool same = e0 != NULL;
    for (size_t i = 1; i < s->n_extents; i++) {
        const struct vmdk_extent *e = &s->extents[i];
        same = same && e->flat == e0->flat && e->compressed == e0->compressed &&
               (e->flat || e->grain == e0->grain);
    }
    if (same && !e0->flat)
        info->cluster_size = e0->grain;
    info->needs_compressed_writes = same && e0->compressed;
    struct qimg_json *fs = qimg_json_object();
    qimg_json_add_str(fs, "type", "vmdk");
    struct qimg_json *d = qimg_json_add(fs, "data", qimg_json_object());
    qimg_json_add_uint(d, "cid", s->cid);
    qimg_json_add_uint(d, "parent-cid", s->parent_cid);
    qimg_json_add_str(d, "create-type", s->create_type ? s->create_type : "");
    struct qimg_json *xs = qimg_json_add(d, "extents", qimg_json_array());
    for (size_t i = 0; i < s->n_extents; i++)
        qimg_json_append(xs, extent_info(&s->extents[i]));
    info->format_specific = fs;
    return 0;
}

/* Extent files other than the descriptor's own file are the node's "extents.N" children. */
static struct qimg_node *vmdk_extra_child(struct qimg_node *n, size_t i, char *name, size_t cap)
{
    const struct vmdk_state *s = n->opaque;
    if (i >= s->n_extents || s->extents[i].file == n->file)
        return NULL;
    snprintf(name, cap, "extents.%zu", i);
    return s->extents[i].file;
}

const struct qimg_driver qimg_vmdk_driver = {
    .name = "vmdk",
    .supports_backing = true,
    .create_opts = vmdk_create_opts,
    .probe = vmdk_probe,
    .open = vmdk_open,
    .close = vmdk_close,
    .create = vmdk_create,
    .get_length = vmdk_get_length,
    .get_allocated_size = vmdk_get_allocated_size,
    .pread = qimg_mapped_pread,
    .pwrite = vmdk_pwrite,
    .pwrite_zeroes = vmdk_pwrite_zeroes,
    .pwrite_compressed = vmdk_pwrite_compressed,
    .compress = vmdk_compress,
    .pwrite_precompressed = vmdk_pwrite_precompressed,
    .block_status = vmdk_block_status,
    .flush = vmdk_flush,
    .has_zero_init = vmdk_has_zero_init,
    .get_info = vmdk_get_info,
    .check = vmdk_check,
    .extra_child = vmdk_extra_child,
};
