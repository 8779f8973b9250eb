/* SPDX-License-Identifier: MIT */
/*
 * Sparse extents (vmdk-libyal: "Sparse extent header", "Grain directory",
 * "Grain table"): the hosted KDMV header (versions 1-3, stream-optimized
 * with its footer) and the ESX COWD header, their grain directories in
 * memory, grain tables through the table cache, and the map of guest bytes
 * to grains. Header checks and messages as qemu-img 9.1 makes them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "formats/vmdk/vmdk.h"
#include "util/bytes.h"
#include "util/mem.h"

/* len bytes at off of file; zeroes past its end (as qemu reads short files). */
static int read_padded(struct qimg_node *file, uint64_t off, uint64_t len, void *buf)
{
    int64_t flen = qimg_node_length(file);
    if (flen < 0)
        return (int)flen;
    uint64_t have = off >= (uint64_t)flen ? 0 : qimg_min_u64((uint64_t)flen - off, len);
    memset((uint8_t *)buf + have, 0, len - have);
    return have ? qimg_node_pread(file, off, have, buf, 0) : 0;
}

static void put_extent(struct qimg_node *n, const struct vmdk_extent *e)
{
    struct vmdk_state *s = n->opaque;
    s->extents = xrealloc(s->extents, (s->n_extents + 1) * sizeof(*s->extents));
    s->extents[s->n_extents++] = *e;
}

/* qemu's vmdk_add_extent checks, then the directories (qemu's vmdk_init_tables). */
static int setup_sparse(struct vmdk_extent *e, uint64_t grain_sectors, uint64_t gd_off,
                        uint64_t rgd_off, struct qimg_error *err)
{
    if (grain_sectors > VMDK_MAX_GRAIN_SECTORS)
        return qimg_error_set(err, -EFBIG, "Invalid granularity, image may be corrupt");
    if (e->l1_size > VMDK_MAX_L1_SIZE)
        return qimg_error_set(err, -EFBIG, "L1 size too big");
    if (grain_sectors == 0)
        return qimg_error_set(err, -EINVAL, "Invalid granularity, image may be corrupt");
    e->grain = grain_sectors * VMDK_SECTOR;
    int64_t flen = qimg_node_length(e->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get the extent's length");
    e->next_grain = qimg_align_up(qimg_div_round_up((uint64_t)flen, VMDK_SECTOR), grain_sectors) *
                    VMDK_SECTOR;
    uint64_t bytes = (uint64_t)e->l1_size * 4;
    const char *fname = e->file->filename;
    if (gd_off > INT64_MAX - bytes)
        return qimg_error_set(err, -EINVAL, "Could not read l1 table from extent '%s': %s", fname,
                              strerror(EINVAL));
    e->gd = xmalloc(bytes ? bytes : 1);
    int ret = read_padded(e->file, gd_off, bytes, e->gd);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read l1 table from extent '%s'", fname);
    for (uint32_t i = 0; i < e->l1_size; i++)
        e->gd[i] = qimg_le32(&e->gd[i]);
    if (rgd_off) {
        if (rgd_off > INT64_MAX - bytes)
            return qimg_error_set(err, -EINVAL,
                                  "Could not read l1 backup table from extent '%s': %s", fname,
                                  strerror(EINVAL));
        e->rgd = xmalloc(bytes ? bytes : 1);
        ret = read_padded(e->file, rgd_off, bytes, e->rgd);
        if (ret < 0)
            return qimg_error_errno(err, ret, "Could not read l1 backup table from extent '%s'",
                                    fname);
        for (uint32_t i = 0; i < e->l1_size; i++)
            e->rgd[i] = qimg_le32(&e->rgd[i]);
    }
    qimg_table_cache_init(&e->gt, e->file, VMDK_GT_CACHE, (uint64_t)e->gt_entries * 4);
    e->gt_init = true;
    return 0;
}

/*
 * A stream-optimized extent whose header says "directory at the end": the
 * footer marker, footer header and end-of-stream marker fill the last three
 * sectors (vmdk-libyal: "Stream optimized extent file"); the footer's header
 * counts.
 */
static int read_footer(struct qimg_node *file, uint8_t *h, struct qimg_error *err)
{
    int64_t flen = qimg_node_length(file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Failed to read footer");
    uint64_t end = qimg_align_up((uint64_t)flen, VMDK_SECTOR);
    uint8_t f[3 * VMDK_SECTOR];
    if (end < sizeof(f))
        return qimg_error_set(err, -EINVAL, "Failed to read footer: %s", strerror(EINVAL));
    int ret = read_padded(file, end - sizeof(f), sizeof(f), f);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Failed to read footer");
    const uint8_t *fm = f, *fh = f + VMDK_SECTOR, *eos = f + 2 * VMDK_SECTOR;
    if (qimg_be32(fh) != VMDK4_MAGIC || qimg_le32(fm + 8) != 0 ||
        qimg_le32(fm + 12) != VMDK_MARKER_FOOTER || qimg_le64(eos) != 0 ||
        qimg_le32(eos + 8) != 0 || qimg_le32(eos + 12) != VMDK_MARKER_EOS)
        return qimg_error_set(err, -EINVAL, "Invalid footer");
    memcpy(h, fh, VMDK_SECTOR);
    return 0;
}

static int open_vmdk4(struct qimg_node *n, struct qimg_node *file, const char *type,
                      struct qimg_error *err)
{
    uint8_t h[VMDK_SECTOR];
    int ret = read_padded(file, 0, sizeof(h), h);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read header from file '%s'", file->filename);
    if (qimg_le64(h + VMDK4_OFF_GD) == VMDK4_GD_AT_END) {
        ret = read_footer(file, h, err);
        if (ret < 0)
            return ret;
    }
    uint64_t desc_off = qimg_le64(h + VMDK4_OFF_DESC_OFFSET);
    if (qimg_le64(h + VMDK4_OFF_CAPACITY) == 0 && desc_off && file == n->file)
        return vmdk_open_desc_at(n, desc_off, err);
    uint32_t version = qimg_le32(h + VMDK4_OFF_VERSION), flags = qimg_le32(h + VMDK4_OFF_FLAGS);
    uint64_t capacity = qimg_le64(h + VMDK4_OFF_CAPACITY), gran = qimg_le64(h + VMDK4_OFF_GRAIN);
    uint32_t gtes = qimg_le32(h + VMDK4_OFF_GTES_PER_GT);
    uint64_t overhead = qimg_le64(h + VMDK4_OFF_OVERHEAD);
    bool compressed = qimg_le16(h + VMDK4_OFF_COMPRESS) == VMDK4_COMPRESSION_DEFLATE;
    if (version > 3)
        return qimg_error_set(err, -ENOTSUP, "Unsupported VMDK version %" PRIu32, version);
    if (version == 3 && (n->flags & QIMG_O_RDWR) && !compressed)
        return qimg_error_set(err, -EINVAL, "VMDK version 3 must be read only");
    if (gtes > VMDK_MAX_GTES_PER_GT)
        return qimg_error_set(err, -EINVAL, "L2 table size too big");
    /* qemu keeps the product in 32 bits */
    uint32_t l1_entry_sectors = (uint32_t)(gtes * gran);
    if (l1_entry_sectors == 0)
        return qimg_error_set(err, -EINVAL, "L1 entry size is invalid");
    /* qemu's arithmetic: a wrapping 64-bit sum, kept in 32 bits */
    uint32_t l1_size = (uint32_t)((capacity + l1_entry_sectors - 1) / l1_entry_sectors);
    int64_t flen = qimg_node_length(file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get the file's length");
    if (qimg_div_round_up((uint64_t)flen, VMDK_SECTOR) < overhead)
        return qimg_error_set(err, -EINVAL, "File truncated, expecting at least %" PRId64 " bytes",
                              (int64_t)(overhead * VMDK_SECTOR));
    if (l1_size > VMDK_MAX_L1_SIZE)
        return qimg_error_set(err, -EFBIG, "L1 size too big");
    struct vmdk_extent e = {
        .file = file,
        .compressed = compressed,
        .has_marker = flags & VMDK4_FLAG_MARKER,
        .zero_grain = flags & VMDK4_FLAG_ZERO_GRAIN,
        .version = version,
        .sectors = capacity,
        .gt_entries = gtes,
        .l1_size = l1_size,
    };
    snprintf(e.type, sizeof(e.type), "%s", type);
    uint64_t gd = qimg_le64(h + VMDK4_OFF_GD), rgd = qimg_le64(h + VMDK4_OFF_RGD);
    uint64_t gd_off = gd > INT64_MAX / VMDK_SECTOR ? (uint64_t)INT64_MAX : gd * VMDK_SECTOR;
    uint64_t rgd_off = 0;
    if (flags & VMDK4_FLAG_RGD)
        rgd_off = rgd > INT64_MAX / VMDK_SECTOR ? (uint64_t)INT64_MAX : rgd * VMDK_SECTOR;
    ret = setup_sparse(&e, gran, gd_off, rgd_off, err);
    if (ret < 0) {
        vmdk_extent_free(n, &e);
        return ret;
    }
    struct vmdk_state *s = n->opaque;
    if (!s->create_type)
        s->create_type = xstrdup(compressed ? "streamOptimized" : "monolithicSparse");
    else if (compressed) {
        free(s->create_type);
        s->create_type = xstrdup("streamOptimized");
    }
    put_extent(n, &e);
    return 0;
}

static int open_cowd(struct qimg_node *n, struct qimg_node *file, const char *type,
                     struct qimg_error *err)
{
    uint8_t h[VMDK_SECTOR];
    int ret = read_padded(file, 0, sizeof(h), h);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read header from file '%s'", file->filename);
    uint32_t gran = qimg_le32(h + VMDK3_OFF_GRANULARITY);
    struct vmdk_extent e = {
        .file = file,
        .cowd = true,
        .sectors = qimg_le32(h + VMDK3_OFF_DISK_SECTORS),
        .gt_entries = VMDK3_GTES_PER_GT,
        .l1_size = qimg_le32(h + VMDK3_OFF_GD_SIZE),
    };
    snprintf(e.type, sizeof(e.type), "%s", type);
    ret = setup_sparse(&e, gran, (uint64_t)qimg_le32(h + VMDK3_OFF_GD) * VMDK_SECTOR, 0, err);
    if (ret < 0) {
        vmdk_extent_free(n, &e);
        return ret;
    }
    put_extent(n, &e);
    return 0;
}

int vmdk_open_sparse(struct qimg_node *n, struct qimg_node *file, const char *type,
                     struct qimg_error *err)
{
    uint8_t magic[4];
    int ret = read_padded(file, 0, 4, magic);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read from file");
    switch (qimg_be32(magic)) {
    case VMDK3_MAGIC:
        return open_cowd(n, file, type, err);
    case VMDK4_MAGIC:
        return open_vmdk4(n, file, type, err);
    default:
        return qimg_error_set(err, -EINVAL, "Image not in VMDK format");
    }
}

void vmdk_extent_free(struct qimg_node *n, struct vmdk_extent *e)
{
    free(e->gd);
    free(e->rgd);
    e->gd = e->rgd = NULL;
    if (e->gt_init)
        qimg_table_cache_destroy(&e->gt);
    e->gt_init = false;
    if (e->file && e->file != n->file)
        qimg_node_unref(e->file);
    e->file = NULL;
}

/* Grain g of the extent: its GD index, or -EIO past the directory (qemu: VMDK_ERROR). */
static int grain_l1(const struct vmdk_extent *e, uint64_t g, uint32_t *l1)
{
    uint64_t i = g / e->gt_entries;
    if (i >= e->l1_size)
        return -EIO;
    *l1 = (uint32_t)i;
    return 0;
}

int vmdk_gte_get(struct vmdk_extent *e, uint64_t g, uint32_t *gte, uint32_t *l1_index)
{
    uint32_t l1;
    int ret = grain_l1(e, g, &l1);
    if (ret < 0)
        return ret;
    if (l1_index)
        *l1_index = l1;
    if (!e->gd[l1]) {
        *gte = 0;
        return 0;
    }
    uint8_t *t;
    qimg_debug_event(e->file, QIMG_DBG_L2_LOAD);
    ret = qimg_table_cache_get(&e->gt, (uint64_t)e->gd[l1] * VMDK_SECTOR, false, &t);
    if (ret < 0)
        return ret;
    *gte = qimg_le32(t + (g % e->gt_entries) * 4);
    return 0;
}

/* Write count entries from grain g on into one directory's table (all in one GT). */
static int gt_store(struct vmdk_extent *e, uint32_t gt_sector, uint64_t g, uint32_t count,
                    const uint32_t *values)
{
    uint64_t table = (uint64_t)gt_sector * VMDK_SECTOR;
    uint8_t *t;
    int ret = qimg_table_cache_get(&e->gt, table, false, &t);
    if (ret < 0)
        return ret;
    uint64_t in = (g % e->gt_entries) * 4;
    for (uint32_t k = 0; k < count; k++)
        qimg_put_le32(t + in + 4 * k, values[k]);
    return qimg_table_cache_store(&e->gt, table, in, 4ull * count);
}

/* Set entries of grains [g, g+count) (one GT): the main table, then the redundant one. */
int vmdk_gte_set(struct vmdk_extent *e, uint64_t g, uint32_t count, const uint32_t *values)
{
    uint32_t l1;
    int ret = grain_l1(e, g, &l1);
    if (ret < 0)
        return ret;
    if (!e->gd[l1])
        return -EIO; /* qemu preallocates every table; one missing is a broken image */
    qimg_debug_event(e->file, QIMG_DBG_L2_UPDATE);
    ret = gt_store(e, e->gd[l1], g, count, values);
    if (ret == 0 && e->rgd && e->rgd[l1])
        ret = gt_store(e, e->rgd[l1], g, count, values);
    return ret;
}

/* Kind and host offset of grain g's byte in. */
static int grain_map(struct vmdk_extent *e, uint64_t g, uint64_t in, enum qimg_map_kind *kind,
                     uint64_t *host, uint32_t *gte)
{
    int ret = vmdk_gte_get(e, g, gte, NULL);
    if (ret < 0)
        return ret;
    *host = 0;
    if (*gte == 0)
        *kind = QIMG_MAP_UNALLOCATED;
    else if (e->zero_grain && *gte == VMDK_GTE_ZEROED)
        *kind = QIMG_MAP_ZERO;
    else if (e->compressed)
        *kind = QIMG_MAP_COMPRESSED;
    else {
        *kind = QIMG_MAP_DATA;
        *host = (uint64_t)*gte * VMDK_SECTOR + in;
    }
    return 0;
}

/*
 * The run at off (guest byte) inside extent e. Grains of one kind merge while
 * their data is contiguous; compressed grains are runs of their own.
 */
int vmdk_extent_map(struct qimg_node *n, struct vmdk_extent *e, uint64_t off, uint64_t len,
                    struct qimg_map *m)
{
    (void)n;
    uint64_t base = e->start * VMDK_SECTOR, rel = off - base;
    uint64_t ext_end = e->sectors * VMDK_SECTOR;
    len = qimg_min_u64(len, ext_end - rel);
    m->file = e->file;
    if (e->flat) {
        m->kind = QIMG_MAP_DATA;
        m->host = e->flat_offset + rel;
        m->host_valid = m->in_place = m->recurse = true;
        m->bytes = len;
        return 0;
    }
    uint64_t pos = rel, end = rel + len;
    while (pos < end) {
        uint64_t g = pos / e->grain, in = pos % e->grain;
        enum qimg_map_kind kind;
        uint64_t host;
        uint32_t gte;
        int ret = grain_map(e, g, in, &kind, &host, &gte);
        if (ret < 0)
            return ret;
        if (pos == rel) {
            m->kind = kind;
            m->host = host;
            m->host_valid = m->in_place = kind == QIMG_MAP_DATA;
            m->entry = (uint64_t)gte * VMDK_SECTOR;
        } else if (kind != m->kind || kind == QIMG_MAP_COMPRESSED ||
                   (kind == QIMG_MAP_DATA && host != m->host + (pos - rel))) {
            break;
        }
        pos = qimg_min_u64(end, pos - in + e->grain);
        if (kind == QIMG_MAP_COMPRESSED)
            break;
    }
    m->bytes = pos - rel;
    return 0;
}

/*
 * Inflate the compressed grain at host (zlib with header, RFC 1950): its
 * marker (lba, size) first when the extent has markers; at most one grain
 * out, and the stream must end within it (qemu's uncompress() == Z_OK).
 */
int vmdk_inflate_grain(struct vmdk_extent *e, uint64_t host, uint8_t *out, uint64_t *out_len)
{
    uint64_t cap = 2 * e->grain; /* qemu reads two grains: marker + data may pass one */
    uint8_t *in = qimg_alloc_aligned(cap);
    if (!in)
        return -ENOMEM;
    qimg_debug_event(e->file, QIMG_DBG_READ_COMPRESSED);
    int ret = read_padded(e->file, host, cap, in);
    uint8_t *data = in;
    uint64_t data_len = e->grain;
    if (ret == 0 && e->has_marker) {
        data_len = qimg_le32(in + 8);
        data = in + VMDK_GRAIN_MARKER_SIZE;
        if (data_len > cap - VMDK_GRAIN_MARKER_SIZE)
            ret = -EINVAL;
    }
    if (ret == 0 && data_len == 0)
        ret = -EINVAL;
    if (ret == 0) {
        z_stream z = {0};
        if (inflateInit(&z) != Z_OK) {
            ret = -ENOMEM;
        } else {
            z.next_in = data;
            z.avail_in = (uInt)data_len;
            z.next_out = out;
            z.avail_out = (uInt)e->grain;
            int zr = inflate(&z, Z_FINISH);
            *out_len = e->grain - z.avail_out;
            inflateEnd(&z);
            if (zr != Z_STREAM_END)
                ret = -EINVAL;
        }
    }
    free(in);
    return ret;
}

int vmdk_read_compressed(struct qimg_node *n, const struct qimg_map *m, uint64_t off,
                         uint64_t len, void *buf)
{
    struct vmdk_state *s = n->opaque;
    struct vmdk_extent *e = vmdk_find_extent(s, off);
    if (!e)
        return -EIO;
    uint64_t in = (off - e->start * VMDK_SECTOR) % e->grain;
    uint8_t *grain = qimg_alloc_aligned(e->grain);
    if (!grain)
        return -ENOMEM;
    uint64_t got = 0;
    int ret = vmdk_inflate_grain(e, m->entry, grain, &got);
    if (ret == 0 && in + len > got)
        ret = -EINVAL;
    if (ret == 0)
        memcpy(buf, grain + in, len);
    free(grain);
    return ret;
}
