/* SPDX-License-Identifier: MIT */
/*
 * Dynamic (and, as qemu treats them, differencing) VHDs: the dynamic header
 * checks in qemu-img 9.1's order and words, the BAT, and the mapped layer's
 * map/alloc/commit. qemu reads an allocated block whole (it ignores the
 * sector bitmap, whose bits it always sets) and an unallocated one as zeroes.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "formats/vpc/vpc.h"
#include "util/bytes.h"
#include "util/mem.h"

/*
 * qemu's block layer refuses one request longer than this (INT_MAX rounded
 * down to sectors) and any request ending past 2^63 - 2^30: the open fails
 * with "Error reading ..." then, where a read past the end of the file would
 * only give zeroes.
 */
#define VPC_MAX_REQUEST 0x7ffffe00ull
#define VPC_MAX_IO_END (((uint64_t)INT64_MAX) & ~((1ull << 30) - 1))

static bool io_allowed(uint64_t off, uint64_t len)
{
    return len <= VPC_MAX_REQUEST && qimg_range_within(off, len, VPC_MAX_IO_END);
}

/* len bytes at off, zeroes past the end of the file (as qemu's file driver reads). */
static int read_zero_padded(struct qimg_node *file, uint64_t off, uint64_t len, void *buf)
{
    int64_t flen = qimg_node_length(file);
    if (flen < 0)
        return (int)flen;
    uint64_t have = off >= (uint64_t)flen ? 0 : qimg_min_u64((uint64_t)flen - off, len);
    memset((uint8_t *)buf + have, 0, len - have);
    return have ? qimg_node_pread(file, off, have, buf, 0) : 0;
}

static int truncated(struct qimg_error *err)
{
    return qimg_error_set(err, -EINVAL,
                          "block-vpc: free_data_block_offset points after the end of file. The "
                          "image has been truncated.");
}

/* The dynamic header's block geometry, checked as qemu checks it. */
static int check_dynamic_header(struct vpc_state *s, const uint8_t *dh, struct qimg_error *err)
{
    if (memcmp(dh + VPC_DH_COOKIE, "cxsparse", 8) != 0)
        return qimg_error_set(err, -EINVAL, "Invalid header magic");
    s->block_size = qimg_be32(dh + VPC_DH_BLOCK_SIZE);
    if (!qimg_is_pow2(s->block_size) || s->block_size < VPC_SECTOR)
        return qimg_error_set(err, -EINVAL, "Invalid block size %u", s->block_size);
    /* One bit per sector, padded to whole sectors (vhd-libyal: "Sector bitmap"). */
    s->bitmap_size = (uint32_t)qimg_align_up(s->block_size / (8 * VPC_SECTOR), VPC_SECTOR);
    s->max_table_entries = qimg_be32(dh + VPC_DH_MAX_ENTRIES);
    if (s->size / s->block_size > UINT32_MAX)
        return qimg_error_set(err, -EINVAL, "Too many blocks");
    if ((uint64_t)s->max_table_entries * s->block_size < s->size)
        return qimg_error_set(err, -EINVAL, "Page table too small");
    if (s->max_table_entries > INT_MAX / 4)
        return qimg_error_set(err, -EINVAL, "Max Table Entries too large (%d)",
                              (int32_t)s->max_table_entries);
    s->bat_offset = qimg_be64(dh + VPC_DH_TABLE_OFFSET);
    return 0;
}

/*
 * Load the BAT and find where the next block goes: past the table and past
 * every allocated block. That must lie within the file (rounded up to whole
 * sectors, as qemu sees its length), which also bounds the table's size by
 * the file's before anything is allocated for it.
 */
static int load_bat(struct qimg_node *n, struct vpc_state *s, uint64_t file_len,
                    struct qimg_error *err)
{
    uint64_t bytes = (uint64_t)s->max_table_entries * 4;
    if (!io_allowed(s->bat_offset, bytes))
        return qimg_error_set(err, -EIO, "Error reading pagetable");
    uint64_t free_off = qimg_align_up(s->bat_offset + bytes, VPC_SECTOR);
    if (free_off > file_len)
        return truncated(err);
    s->bat = xmalloc(bytes ? bytes : 1);
    int ret = read_zero_padded(n->file, s->bat_offset, bytes, s->bat);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Error reading pagetable");
    for (uint32_t i = 0; i < s->max_table_entries; i++) {
        uint32_t e = qimg_be32(&s->bat[i]);
        s->bat[i] = e;
        if (e == VPC_BAT_UNALLOCATED)
            continue;
        /* At most 2^41 + 2^31 + 2^31: no overflow. */
        uint64_t next = (uint64_t)e * VPC_SECTOR + s->bitmap_size + s->block_size;
        free_off = qimg_max_u64(free_off, next);
    }
    if (free_off > file_len)
        return truncated(err);
    s->free_data_block_offset = free_off;
    return 0;
}

int vpc_dynamic_open(struct qimg_node *n, struct vpc_state *s, uint64_t file_len,
                     struct qimg_error *err)
{
    uint8_t dh[VPC_DYN_SIZE];
    uint64_t dh_off = qimg_be64(s->footer + VPC_FT_DATA_OFFSET);
    if (!io_allowed(dh_off, sizeof(dh)))
        return qimg_error_set(err, -EIO, "Error reading dynamic VHD header");
    int ret = read_zero_padded(n->file, dh_off, sizeof(dh), dh);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Error reading dynamic VHD header");
    ret = check_dynamic_header(s, dh, err);
    if (ret == 0)
        ret = load_bat(n, s, file_len, err);
    if (ret < 0)
        return ret;
    s->mapped = (struct qimg_mapped){.ops = &vpc_dynamic_ops, .block_size = s->block_size};
    return 0;
}

static bool block_allocated(const struct vpc_state *s, uint64_t index)
{
    return index < s->max_table_entries && s->bat[index] != VPC_BAT_UNALLOCATED;
}

/* An allocated block is one run (its neighbours lie past a bitmap); holes merge. */
static int vpc_dynamic_map(struct qimg_node *n, uint64_t off, uint64_t len, struct qimg_map *m)
{
    const struct vpc_state *s = n->opaque;
    uint64_t index = off / s->block_size, in = off % s->block_size;
    uint64_t end = off + len;
    if (block_allocated(s, index)) {
        uint64_t host = (uint64_t)s->bat[index] * VPC_SECTOR + s->bitmap_size + in;
        *m = (struct qimg_map){.kind = QIMG_MAP_DATA, .host = host, .host_valid = true,
                               .in_place = true, .entry = s->bat[index],
                               .bytes = qimg_min_u64(len, s->block_size - in)};
        return 0;
    }
    uint64_t pos = off - in + s->block_size;
    while (pos < end && !block_allocated(s, pos / s->block_size))
        pos += s->block_size;
    *m = (struct qimg_map){.kind = QIMG_MAP_ZERO, .bytes = qimg_min_u64(pos, end) - off};
    return 0;
}

/* Reads and block status; writes go through vpc_dynamic_pwrite (no copy-on-write needed). */
const struct qimg_mapped_ops vpc_dynamic_ops = {
    .map = vpc_dynamic_map,
};

/*
 * qemu rewrites an allocated block's bitmap as all ones before writing into
 * it (unless that block's was the last it rewrote), so an image from another
 * tool ends up with the bitmaps qemu's would have. n->lock held.
 */
static int refresh_bitmap(struct qimg_node *n, uint64_t bitmap)
{
    struct vpc_state *s = n->opaque;
    if (bitmap == s->last_bitmap_offset)
        return 0;
    uint8_t *ones = xmalloc(s->bitmap_size);
    memset(ones, 0xff, s->bitmap_size);
    int ret = qimg_node_pwrite(n->file, bitmap, s->bitmap_size, ones, 0);
    free(ones);
    if (ret == 0)
        s->last_bitmap_offset = bitmap;
    return ret;
}

/*
 * A new block for guest offset off at the end of the data, in qemu's order:
 * its bitmap (every sector present) where the old footer was, the footer at
 * the new end of the file, the BAT entry; the caller then writes the guest's
 * bytes in place. What the guest does not write lies past the old end of the
 * file and reads as zeroes without being written, and a crash before the
 * data leaves a block reading as zeroes, as it did unallocated. n->lock held.
 */
static int allocate_block(struct qimg_node *n, uint64_t off)
{
    struct vpc_state *s = n->opaque;
    uint64_t bitmap = s->free_data_block_offset, end;
    if (!qimg_add_u64(bitmap, (uint64_t)s->bitmap_size + s->block_size, &end) ||
        bitmap / VPC_SECTOR >= VPC_BAT_UNALLOCATED)
        return -EFBIG;
    uint8_t *ones = xmalloc(s->bitmap_size);
    memset(ones, 0xff, s->bitmap_size);
    int ret = qimg_node_pwrite(n->file, bitmap, s->bitmap_size, ones, 0);
    free(ones);
    if (ret == 0)
        ret = qimg_node_pwrite(n->file, end, VPC_FOOTER_SIZE, s->footer, 0);
    if (ret < 0)
        return ret;
    s->free_data_block_offset = end;
    uint64_t index = off / s->block_size;
    uint8_t entry[4];
    qimg_put_be32(entry, (uint32_t)(bitmap / VPC_SECTOR));
    ret = qimg_node_pwrite(n->file, s->bat_offset + 4 * index, 4, entry, 0);
    if (ret < 0)
        return ret;
    s->bat[index] = (uint32_t)(bitmap / VPC_SECTOR);
    s->last_bitmap_offset = bitmap;
    return 0;
}

int vpc_dynamic_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf)
{
    struct vpc_state *s = n->opaque;
    const uint8_t *src = buf;
    while (len) {
        uint64_t index = off / s->block_size, in = off % s->block_size;
        uint64_t chunk = qimg_min_u64(len, s->block_size - in);
        int ret;
        pthread_mutex_lock(&n->lock);
        ret = block_allocated(s, index) ? 0 : allocate_block(n, off);
        uint64_t bitmap = (uint64_t)s->bat[index] * VPC_SECTOR;
        if (ret == 0)
            ret = refresh_bitmap(n, bitmap);
        pthread_mutex_unlock(&n->lock);
        if (ret == 0) {
            qimg_debug_event(n->file, QIMG_DBG_WRITE_AIO);
            ret = qimg_node_pwrite(n->file, bitmap + s->bitmap_size + in, chunk, src, 0);
        }
        if (ret < 0)
            return ret;
        off += chunk;
        src += chunk;
        len -= chunk;
    }
    return 0;
}
