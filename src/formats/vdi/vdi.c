/* SPDX-License-Identifier: MIT */
/*
 * The VDI format driver: header checks as qemu-img 9.1 makes them, the block
 * map through the table cache, and guest I/O through the mapped-image layer.
 * VDI has no backing files: unallocated and zero blocks both read as zeroes
 * and qemu reports them as zero in block status.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/vdi/vdi.h"
#include "util/bytes.h"
#include "util/mem.h"
#include "util/uuid.h"

static const struct qimg_opt_desc vdi_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"static", QIMG_OPT_BOOL, "VDI static (pre-allocated) image", "off"},
    {0},
};

static int vdi_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len < VDI_OFF_VERSION + 4)
        return 0;
    return qimg_le32(buf + VDI_OFF_SIGNATURE) == VDI_SIGNATURE ? 100 : 0;
}

/* Block map: entry i lives at bmap_offset + 4 * i (vdi-facts.md: Block map). */
static void bmap_locate(const struct vdi_state *s, uint32_t i, uint64_t *table, uint64_t *in)
{
    uint64_t byte = (uint64_t)i * 4;
    *table = s->bmap_offset + qimg_align_down(byte, VDI_BMAP_TABLE);
    *in = byte % VDI_BMAP_TABLE;
}

int vdi_bmap_get(struct qimg_node *n, uint32_t i, uint32_t *entry)
{
    struct vdi_state *s = n->opaque;
    uint64_t table, in;
    uint8_t *t;
    bmap_locate(s, i, &table, &in);
    int ret = qimg_table_cache_get(&s->bmap, table, false, &t);
    if (ret == 0)
        *entry = qimg_le32(t + in);
    return ret;
}

/* Set entries [first, first+count) to index, index+1 ... and write their sectors through. */
static int bmap_set_run(struct qimg_node *n, uint32_t first, uint32_t count, uint32_t index)
{
    struct vdi_state *s = n->opaque;
    while (count) {
        uint64_t table, in;
        uint8_t *t;
        bmap_locate(s, first, &table, &in);
        int ret = qimg_table_cache_get(&s->bmap, table, false, &t);
        if (ret < 0)
            return ret;
        uint32_t here = (uint32_t)qimg_min_u64(count, (VDI_BMAP_TABLE - in) / 4);
        for (uint32_t k = 0; k < here; k++)
            qimg_put_le32(t + in + 4 * k, index + k);
        /* Whole sectors, as qemu writes the map, clipped to the map's end. */
        uint64_t a = qimg_align_down(in, VDI_SECTOR);
        uint64_t b = qimg_align_up(in + 4ull * here, VDI_SECTOR);
        uint64_t map_end = (uint64_t)s->blocks * 4 + s->bmap_offset - table;
        ret = qimg_table_cache_store(&s->bmap, table, a, qimg_min_u64(b, map_end) - a);
        if (ret < 0)
            return ret;
        first += here;
        index += here;
        count -= here;
    }
    return 0;
}

static int vdi_map(struct qimg_node *n, uint64_t off, uint64_t len, struct qimg_map *m)
{
    struct vdi_state *s = n->opaque;
    uint64_t pos = off, end = off + len;
    while (pos < end) {
        uint32_t e;
        int ret = vdi_bmap_get(n, (uint32_t)(pos / VDI_BLOCK_SIZE), &e);
        if (ret < 0)
            return ret;
        uint64_t in = pos % VDI_BLOCK_SIZE;
        enum qimg_map_kind kind = VDI_IS_ALLOCATED(e) ? QIMG_MAP_DATA : QIMG_MAP_ZERO;
        /* entry < 2^32 and block size 2^20: host fits easily; data_offset < 2^32 */
        uint64_t host = s->data_offset + (uint64_t)e * VDI_BLOCK_SIZE + in;
        if (pos == off) {
            m->kind = kind;
            m->host_valid = m->in_place = kind == QIMG_MAP_DATA;
            m->host = m->host_valid ? host : 0;
            /* qemu asks the file under a static image's (preallocated) blocks. */
            m->recurse = s->image_type == VDI_TYPE_STATIC;
            m->entry = e;
        } else if (kind != m->kind || (kind == QIMG_MAP_DATA && host != m->host + (pos - off))) {
            break;
        }
        pos = qimg_min_u64(end, pos - in + VDI_BLOCK_SIZE);
    }
    m->bytes = pos - off;
    return 0;
}

/* New blocks go at the end of the data area, in allocation order (as qemu appends them). */
static int vdi_alloc(struct qimg_node *n, struct qimg_alloc *a)
{
    struct vdi_state *s = n->opaque;
    uint64_t count = a->bytes / VDI_BLOCK_SIZE;
    if ((uint64_t)s->blocks_allocated + count >= VDI_ZERO)
        return -ENOSPC;
    a->host = s->data_offset + (uint64_t)s->blocks_allocated * VDI_BLOCK_SIZE;
    return 0;
}

/* Data written: point the map at it, then count the blocks in the header (qemu's order). */
static int vdi_commit(struct qimg_node *n, struct qimg_alloc *a)
{
    struct vdi_state *s = n->opaque;
    uint32_t count = (uint32_t)(a->bytes / VDI_BLOCK_SIZE);
    int ret = bmap_set_run(n, (uint32_t)(a->guest / VDI_BLOCK_SIZE), count, s->blocks_allocated);
    if (ret < 0)
        return ret;
    s->blocks_allocated += count;
    qimg_put_le32(s->header + VDI_OFF_BLOCKS_ALLOCATED, s->blocks_allocated);
    return qimg_node_pwrite(n->file, 0, VDI_HEADER_SECTOR, s->header, 0);
}

const struct qimg_mapped_ops vdi_mapped_ops = {
    .map = vdi_map,
    .alloc = vdi_alloc,
    .commit = vdi_commit,
};

/* Header checks, in the order qemu-img 9.1 makes them (its messages). */
static int check_header(struct vdi_state *s, struct qimg_error *err)
{
    const uint8_t *h = s->header;
    uint64_t disk_size = qimg_le64(h + VDI_OFF_DISK_SIZE);
    uint32_t sig = qimg_le32(h + VDI_OFF_SIGNATURE), ver = qimg_le32(h + VDI_OFF_VERSION);
    uint32_t bmap = qimg_le32(h + VDI_OFF_BMAP), data = qimg_le32(h + VDI_OFF_DATA);
    uint32_t sector = qimg_le32(h + VDI_OFF_SECTOR_SIZE), bsize = qimg_le32(h + VDI_OFF_BLOCK_SIZE);
    uint32_t blocks = qimg_le32(h + VDI_OFF_BLOCKS);
    if (disk_size > VDI_DISK_SIZE_MAX)
        return qimg_error_set(err, -ENOTSUP,
                              "Unsupported VDI image size (size is 0x%llx, max supported is 0x%llx)",
                              (unsigned long long)disk_size, (unsigned long long)VDI_DISK_SIZE_MAX);
    if (sig != VDI_SIGNATURE)
        return qimg_error_set(err, -EINVAL, "Image not in VDI format (bad signature %08x)", sig);
    if (ver != VDI_VERSION_1_1)
        return qimg_error_set(err, -ENOTSUP, "unsupported VDI image (version %u.%u)", ver >> 16,
                              ver & 0xffff);
    if (bmap % VDI_SECTOR)
        return qimg_error_set(err, -ENOTSUP,
                              "unsupported VDI image (unaligned block map offset 0x%x)", bmap);
    if (data % VDI_SECTOR)
        return qimg_error_set(err, -ENOTSUP, "unsupported VDI image (unaligned data offset 0x%x)",
                              data);
    if (sector != VDI_SECTOR)
        return qimg_error_set(err, -ENOTSUP, "unsupported VDI image (sector size %u is not %u)",
                              sector, VDI_SECTOR);
    if (bsize != VDI_BLOCK_SIZE)
        return qimg_error_set(err, -ENOTSUP, "unsupported VDI image (block size %u is not %u)",
                              bsize, VDI_BLOCK_SIZE);
    /* Below the maximum checked above: rounding cannot overflow. */
    disk_size = qimg_align_up(disk_size, VDI_SECTOR);
    if (disk_size > (uint64_t)blocks * VDI_BLOCK_SIZE)
        return qimg_error_set(err, -ENOTSUP,
                              "unsupported VDI image (disk size %llu, image bitmap has room for "
                              "%llu)",
                              (unsigned long long)disk_size,
                              (unsigned long long)blocks * VDI_BLOCK_SIZE);
    if (!qimg_uuid_is_null(h + VDI_OFF_UUID_LINK))
        return qimg_error_set(err, -ENOTSUP, "unsupported VDI image (non-NULL link UUID)");
    if (!qimg_uuid_is_null(h + VDI_OFF_UUID_PARENT))
        return qimg_error_set(err, -ENOTSUP, "unsupported VDI image (non-NULL parent UUID)");
    if (blocks > VDI_BLOCKS_MAX)
        return qimg_error_set(err, -ENOTSUP, "unsupported VDI image (too many blocks %u, max is %u)",
                              blocks, VDI_BLOCKS_MAX);
    s->disk_size = disk_size;
    s->bmap_offset = bmap;
    s->data_offset = data;
    s->blocks = blocks;
    s->blocks_allocated = qimg_le32(h + VDI_OFF_BLOCKS_ALLOCATED);
    s->image_type = qimg_le32(h + VDI_OFF_IMAGE_TYPE);
    return 0;
}

/* The header sector; a short file reads as zeroes past its end (as qemu reads it). */
static int read_header(struct qimg_node *n, uint8_t *h)
{
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    uint64_t have = qimg_min_u64((uint64_t)flen, VDI_HEADER_SECTOR);
    memset(h + have, 0, VDI_HEADER_SECTOR - have);
    return have ? qimg_node_pread(n->file, 0, have, h, 0) : 0;
}

static int vdi_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    (void)opts;
    struct vdi_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    int ret = read_header(n, s->header);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read VDI header");
    ret = check_header(s, err);
    if (ret < 0)
        return ret;
    s->mapped = (struct qimg_mapped){.ops = &vdi_mapped_ops, .block_size = VDI_BLOCK_SIZE};
    qimg_table_cache_init(&s->bmap, n->file, VDI_BMAP_CACHE, VDI_BMAP_TABLE);
    s->bmap.limit = s->bmap_offset + (uint64_t)s->blocks * 4;
    return 0;
}

static void vdi_close(struct qimg_node *n)
{
    struct vdi_state *s = n->opaque;
    if (!s)
        return;
    if (s->bmap.e)
        qimg_table_cache_destroy(&s->bmap);
    free(s);
}

static int64_t vdi_get_length(struct qimg_node *n)
{
    const struct vdi_state *s = n->opaque;
    return (int64_t)s->disk_size;
}

static int vdi_get_info(struct qimg_node *n, struct qimg_driver_info *info,
                        struct qimg_error *err)
{
    (void)n;
    (void)err;
    info->cluster_size = VDI_BLOCK_SIZE; /* no format-specific block in 9.1 */
    return 0;
}

/*
 * One block at a time, as qemu's vdi driver answers: compare -s sees where a
 * run ends (whether it reaches the end of the image), so longer runs would
 * change its verdict. Reads still map runs of many blocks.
 */
static int vdi_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                            struct qimg_block_status *st)
{
    uint64_t to_block_end = VDI_BLOCK_SIZE - off % VDI_BLOCK_SIZE;
    return qimg_mapped_block_status(n, off, qimg_min_u64(len, to_block_end), st);
}

/* A dynamic image reads as zeroes when new; a static one as its file does. */
static bool vdi_has_zero_init(struct qimg_node *n)
{
    const struct vdi_state *s = n->opaque;
    if (s->image_type == VDI_TYPE_STATIC)
        return qimg_node_has_zero_init(n->file);
    return true;
}

const struct qimg_driver qimg_vdi_driver = {
    .name = "vdi",
    .create_opts = vdi_create_opts,
    .probe = vdi_probe,
    .open = vdi_open,
    .close = vdi_close,
    .create = vdi_create,
    .get_length = vdi_get_length,
    .pread = qimg_mapped_pread,
    .pwrite = qimg_mapped_pwrite,
    .block_status = vdi_block_status,
    .has_zero_init = vdi_has_zero_init,
    .get_info = vdi_get_info,
    .check = vdi_check,
};
