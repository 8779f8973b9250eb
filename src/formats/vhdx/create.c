/* SPDX-License-Identifier: MIT */
/*
 * Creating VHDX images as qemu-img 9.1 lays them out (observed byte for byte):
 *
 *   0        file identifier, creator "QEMU v<version>" (UTF-16LE)
 *   64 KiB   header 1 (random 32-bit sequence number N), 128 KiB header 2 (N + 1),
 *            both with the same random file and data write GUIDs, no log GUID
 *   192 KiB  region table, 256 KiB its copy: BAT then metadata, "required" 0
 *   1 MiB    the log (log_size, a hole: zeroes)
 *   +log     the BAT, its length rounded up to 1 MiB
 *   +BAT     the metadata region (1 MiB): table of 5 items, values at +64 KiB
 *   +5 MiB   payload blocks (fixed: block i at data start + i * block size)
 *
 * BAT entries: block_state_zero (the default) makes payload entries ZERO
 * (fixed too, with offset 0), otherwise NOT_PRESENT (dynamic) or
 * FULLY_PRESENT (fixed); sector bitmap entries stay 0. A dynamic file ends
 * at the data start, a fixed one after the size rounded up to 512 bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/vhdx/vhdx.h"
#include "qimg/version.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/mem.h"
#include "util/uuid.h"

#define VHDX_META_REGION_SIZE VHDX_MIB
#define VHDX_DATA_AFTER_META (5 * VHDX_MIB) /* qemu's first payload block, past the metadata */

struct vhdx_layout {
    uint64_t size, log_size, block_size;
    bool fixed, zero;
    uint64_t bat_offset, bat_length, meta_offset, data_offset;
    uint64_t data_blocks, chunk_ratio, bat_entries;
};

static void put_guid(uint8_t *p)
{
    qimg_uuid_generate(p); /* random bytes: the GUID byte order does not matter */
}

static void build_file_id(uint8_t *p)
{
    memcpy(p, VHDX_FILE_ID_SIG, 8);
    const char *creator = "QEMU v" QIMG_QEMU_VERSION;
    for (size_t i = 0; creator[i] && i < 255; i++)
        qimg_put_le16(p + VHDX_FILE_ID_CREATOR + 2 * i, (uint8_t)creator[i]);
}

static void build_headers(uint8_t *h1, uint8_t *h2, const struct vhdx_layout *l)
{
    uint8_t rnd[16]; /* the sequence number: 32 random bits, as qemu's */
    put_guid(h1 + VHDX_H_FILE_WRITE_GUID);
    put_guid(h1 + VHDX_H_DATA_WRITE_GUID);
    qimg_uuid_generate(rnd);
    memcpy(h1, "head", 4);
    qimg_put_le64(h1 + VHDX_H_SEQ, qimg_le32(rnd));
    qimg_put_le16(h1 + VHDX_H_VERSION, 1);
    qimg_put_le32(h1 + VHDX_H_LOG_LENGTH, (uint32_t)l->log_size);
    qimg_put_le64(h1 + VHDX_H_LOG_OFFSET, VHDX_HEADER_SECTION_END);
    memcpy(h2, h1, VHDX_HEADER_SIZE);
    qimg_put_le64(h2 + VHDX_H_SEQ, (uint64_t)qimg_le32(rnd) + 1);
    qimg_put_le32(h1 + VHDX_H_CHECKSUM, qimg_crc32c(h1, VHDX_HEADER_SIZE));
    qimg_put_le32(h2 + VHDX_H_CHECKSUM, qimg_crc32c(h2, VHDX_HEADER_SIZE));
}

static void build_region_table(uint8_t *rt, const struct vhdx_layout *l)
{
    memcpy(rt, "regi", 4);
    qimg_put_le32(rt + VHDX_RT_COUNT, 2);
    uint8_t *e = rt + VHDX_RT_ENTRIES;
    memcpy(e, vhdx_guid_bat, 16);
    qimg_put_le64(e + VHDX_RTE_OFFSET, l->bat_offset);
    qimg_put_le32(e + VHDX_RTE_LENGTH, (uint32_t)l->bat_length);
    e += VHDX_RT_ENTRY_SIZE;
    memcpy(e, vhdx_guid_metadata, 16);
    qimg_put_le64(e + VHDX_RTE_OFFSET, l->meta_offset);
    qimg_put_le32(e + VHDX_RTE_LENGTH, VHDX_META_REGION_SIZE);
    qimg_put_le32(rt + VHDX_RT_CHECKSUM, qimg_crc32c(rt, VHDX_REGION_SIZE));
}

static void meta_entry(uint8_t *t, int i, const uint8_t *guid, uint32_t off, uint32_t len,
                       uint32_t flags)
{
    uint8_t *e = t + VHDX_MT_ENTRIES + i * VHDX_MT_ENTRY_SIZE;
    memcpy(e, guid, 16);
    qimg_put_le32(e + VHDX_MTE_OFFSET, off);
    qimg_put_le32(e + VHDX_MTE_LENGTH, len);
    qimg_put_le32(e + VHDX_MTE_FLAGS, flags);
}

/* The metadata table and its item values (at 64 KiB into the region). */
static void build_metadata(uint8_t *m, const struct vhdx_layout *l)
{
    memcpy(m, VHDX_MT_SIG, 8);
    qimg_put_le16(m + VHDX_MT_COUNT, 5);
    uint32_t v = VHDX_META_MIN_OFFSET;
    meta_entry(m, 0, vhdx_guid_file_params, v, 8, 4);
    meta_entry(m, 1, vhdx_guid_disk_size, v + 8, 8, 6);
    meta_entry(m, 2, vhdx_guid_page83, v + 16, 16, 6);
    meta_entry(m, 3, vhdx_guid_logical_sector, v + 32, 4, 6);
    meta_entry(m, 4, vhdx_guid_physical_sector, v + 36, 4, 6);
    qimg_put_le32(m + v, (uint32_t)l->block_size);
    qimg_put_le32(m + v + 4, l->fixed ? VHDX_PARAMS_LEAVE_BLOCKS_ALLOCATED : 0);
    qimg_put_le64(m + v + 8, l->size);
    put_guid(m + v + 16);
    qimg_put_le32(m + v + 32, 512);
    qimg_put_le32(m + v + 36, 512);
}

static uint64_t payload_entry(const struct vhdx_layout *l, uint64_t block)
{
    if (l->zero)
        return VHDX_BLOCK_ZERO;
    if (!l->fixed)
        return VHDX_BLOCK_NOT_PRESENT;
    return (l->data_offset + block * l->block_size) | VHDX_BLOCK_FULLY_PRESENT;
}

static int write_bat(struct qimg_node *file, const struct vhdx_layout *l)
{
    if (!l->zero && !l->fixed)
        return 0; /* all NOT_PRESENT: the sparse file reads as zeroes */
    const uint64_t chunk = 64 * 1024;
    uint8_t *buf = xmalloc(chunk);
    int ret = 0;
    uint64_t block = 0;
    for (uint64_t i0 = 0; i0 < l->bat_entries && ret == 0; i0 += chunk / 8) {
        uint64_t n = qimg_min_u64(chunk / 8, l->bat_entries - i0);
        memset(buf, 0, chunk);
        for (uint64_t k = 0; k < n; k++) {
            uint64_t i = i0 + k;
            if ((i + 1) % (l->chunk_ratio + 1) == 0 || block >= l->data_blocks)
                continue; /* a sector bitmap entry (or none at all): NOT_PRESENT */
            qimg_put_le64(buf + 8 * k, payload_entry(l, block++));
        }
        ret = qimg_node_pwrite(file, l->bat_offset + i0 * 8, n * 8, buf, 0);
    }
    free(buf);
    return ret;
}

static int write_layout(struct qimg_node *file, const struct vhdx_layout *l, struct qimg_error *err)
{
    /* The header section's parts (the rest, and the log, stay holes reading as zeroes). */
    uint8_t *buf = xcalloc(1, VHDX_MIB);
    build_file_id(buf);
    build_headers(buf + VHDX_HEADER1_OFF, buf + VHDX_HEADER2_OFF, l);
    build_region_table(buf + VHDX_REGION1_OFF, l);
    memcpy(buf + VHDX_REGION2_OFF, buf + VHDX_REGION1_OFF, VHDX_REGION_SIZE);
    static const struct { uint64_t off, len; } parts[] = {
        {0, 4096}, {VHDX_HEADER1_OFF, VHDX_HEADER_SIZE}, {VHDX_HEADER2_OFF, VHDX_HEADER_SIZE},
        {VHDX_REGION1_OFF, VHDX_REGION_SIZE}, {VHDX_REGION2_OFF, VHDX_REGION_SIZE},
    };
    int ret = 0;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]) && ret == 0; i++)
        ret = qimg_node_pwrite(file, parts[i].off, parts[i].len, buf + parts[i].off, 0);
    if (ret == 0) {
        memset(buf, 0, VHDX_MIB);
        build_metadata(buf, l);
        ret = qimg_node_pwrite(file, l->meta_offset, VHDX_META_MIN_OFFSET + 40, buf, 0);
    }
    free(buf);
    if (ret == 0)
        ret = write_bat(file, l);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not write the VHDX image");
    uint64_t end = l->data_offset;
    if (l->fixed)
        end += l->size;
    ret = qimg_node_truncate(file, end, false, QIMG_PREALLOC_OFF, err);
    if (ret < 0)
        return ret;
    ret = qimg_node_flush(file);
    return ret < 0 ? qimg_error_errno(err, ret, "Could not flush the new image") : 0;
}

/* The protocol file, empty, with the protocol's own options (preallocation, nocow ...). */
static int create_file(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    struct qimg_opts *po = qimg_opts_new();
    qimg_opts_set(po, "size", "0");
    const char *keep[] = {"preallocation", "nocow", "extent_size_hint"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        const char *v = qimg_opts_take(opts, keep[i]);
        if (v)
            qimg_opts_set(po, keep[i], v);
    }
    int ret = qimg_create_protocol(filename, po, err);
    qimg_opts_free(po);
    return ret;
}

/* Options as qemu-img 9.1 takes them: sizes rounded up to 1 MiB, block size clamped. */
static int take_options(struct qimg_opts *opts, struct vhdx_layout *l, struct qimg_error *err)
{
    uint64_t log_size = VHDX_MIB, block_size = 0;
    int ret = qimg_opts_take_size(opts, "size", &l->size, err);
    if (ret >= 0 && qimg_opts_has(opts, "log_size"))
        ret = qimg_opts_take_size(opts, "log_size", &log_size, err);
    if (ret >= 0)
        ret = qimg_opts_take_size(opts, "block_size", &block_size, err);
    if (ret >= 0)
        ret = qimg_opts_take_bool(opts, "block_state_zero", &l->zero, err);
    if (ret < 0)
        return ret;
    if (ret == 0)
        l->zero = true;
    const char *sub = qimg_opts_take(opts, "subformat");
    if (sub && strcmp(sub, "fixed") == 0)
        l->fixed = true;
    else if (sub && strcmp(sub, "dynamic") != 0)
        return qimg_error_set(err, -EINVAL, "Parameter 'subformat' does not accept value '%s'",
                              sub);
    l->log_size = log_size > UINT64_MAX - VHDX_MIB ? log_size : qimg_align_up(log_size, VHDX_MIB);
    block_size = block_size > UINT64_MAX - VHDX_MIB ? block_size : qimg_align_up(block_size, VHDX_MIB);
    l->block_size = qimg_min_u64(block_size, VHDX_BLOCK_SIZE_MAX);
    return 0;
}

static int check_layout(struct vhdx_layout *l, struct qimg_error *err)
{
    if (l->size > VHDX_MAX_IMAGE_SIZE)
        return qimg_error_set(err, -EINVAL, "Image size too large; max of 64TB");
    l->size = qimg_align_up(l->size, 512); /* qemu stores whole sectors */
    if (l->log_size >= (1ull << 32))
        return qimg_error_set(err, -EINVAL, "Log size must be smaller than 4 GB");
    if (l->log_size == 0 || l->log_size % VHDX_MIB)
        return qimg_error_set(err, -EINVAL, "Log size must be a multiple of 1 MB");
    if (l->block_size == 0) {
        const uint64_t gib = 1024 * VHDX_MIB;
        if (l->size > 32 * 1024 * gib)
            l->block_size = 64 * VHDX_MIB;
        else if (l->size > 100 * gib)
            l->block_size = 32 * VHDX_MIB;
        else if (l->size > gib)
            l->block_size = 16 * VHDX_MIB;
        else
            l->block_size = 8 * VHDX_MIB;
    }
    if (!qimg_is_pow2(l->block_size))
        return qimg_error_set(err, -EINVAL, "Block size must be a power of two");
    l->chunk_ratio = VHDX_SECTORS_PER_BITMAP * 512 / l->block_size;
    l->data_blocks = qimg_div_round_up(l->size, l->block_size);
    /* qemu's count in 32 bits: a size of 0 wraps to 2^32 / chunk_ratio entries (so does open). */
    l->bat_entries = l->data_blocks + (uint32_t)(l->data_blocks - 1) / l->chunk_ratio;
    l->bat_offset = VHDX_HEADER_SECTION_END + l->log_size;
    l->bat_length = qimg_align_up(l->bat_entries * 8, VHDX_MIB);
    l->meta_offset = l->bat_offset + l->bat_length;
    l->data_offset = l->meta_offset + VHDX_DATA_AFTER_META;
    return 0;
}

int vhdx_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    struct vhdx_layout l = {0};
    int ret = take_options(opts, &l, err);
    if (ret < 0)
        return ret;
    ret = create_file(filename, opts, err);
    if (ret < 0)
        return ret;
    ret = check_layout(&l, err);
    if (ret < 0)
        return ret;
    struct qimg_node *file = NULL;
    ret = qimg_open_protocol(&file, filename, NULL, QIMG_O_RDWR, err);
    if (ret < 0)
        return ret;
    ret = write_layout(file, &l, err);
    qimg_node_unref(file);
    return ret;
}
