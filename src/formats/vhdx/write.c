/* SPDX-License-Identifier: MIT */
/*
 * VHDX guest writes, as qemu-img 9.1 makes them (observed with its qemu-io):
 *
 * - the first write of an open updates both headers (a new data write GUID
 *   each, the session's file write GUID, sequence numbers + 1 each);
 * - a write to a block that is not FULLY_PRESENT gives it a home at the end
 *   of the file rounded up to 1 MiB, grows the file by one block (sparse, so
 *   the rest of the block reads as zeroes), writes the data, then records the
 *   new BAT entry through the log (log.c);
 * - a FULLY_PRESENT block is overwritten in place.
 *
 * Zero writes and discards have no driver support in qemu: the core writes
 * zeroes as data and discard does nothing, so neither is implemented here.
 */
#include <errno.h>

#include <string.h>

#include "core/builtin.h"
#include "formats/vhdx/vhdx.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/mem.h"
#include "util/uuid.h"

int vhdx_update_header(struct qimg_node *n, bool new_data_guid, const uint8_t *log_guid)
{
    struct vhdx_state *s = n->opaque;
    int idx = s->curr_header ^ 1;
    uint8_t *h = s->headers[idx];
    /* qemu keeps the inactive header's other fields as they are (even when it was invalid). */
    qimg_put_le64(h + VHDX_H_SEQ, qimg_le64(s->headers[s->curr_header] + VHDX_H_SEQ) + 1);
    memcpy(h + VHDX_H_FILE_WRITE_GUID, s->session_guid, 16);
    if (new_data_guid)
        qimg_uuid_generate(h + VHDX_H_DATA_WRITE_GUID);
    if (log_guid)
        memcpy(h + VHDX_H_LOG_GUID, log_guid, 16);
    else
        memset(h + VHDX_H_LOG_GUID, 0, 16);
    qimg_put_le32(h + VHDX_H_CHECKSUM, 0);
    qimg_put_le32(h + VHDX_H_CHECKSUM, qimg_crc32c(h, VHDX_HEADER_SIZE));
    int ret = qimg_node_pwrite(n->file, idx ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF,
                               VHDX_HEADER_SIZE, h, 0);
    if (ret < 0)
        return ret;
    ret = qimg_node_flush(n->file);
    if (ret < 0)
        return ret;
    s->curr_header = idx;
    return 0;
}

/* Both headers, so that either one found on the next open carries the change. */
int vhdx_update_headers(struct qimg_node *n, bool new_data_guid, const uint8_t *log_guid)
{
    int ret = vhdx_update_header(n, new_data_guid, log_guid);
    return ret < 0 ? ret : vhdx_update_header(n, new_data_guid, log_guid);
}

/* A home for a new block: the end of the file rounded up to 1 MiB [2.5.1], one block long. */
static int allocate_block(struct qimg_node *n, uint64_t *host)
{
    struct vhdx_state *s = n->opaque;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    uint64_t off = qimg_align_up((uint64_t)flen, VHDX_MIB), end;
    if (off > INT64_MAX || !qimg_add_u64(off, s->block_size, &end) || end > INT64_MAX)
        return -EINVAL;
    struct qimg_error err = {0};
    int ret = qimg_node_truncate(n->file, end, false, QIMG_PREALLOC_OFF, &err);
    if (ret < 0)
        return ret;
    *host = off;
    return 0;
}

/* Point payload block b at host (FULLY_PRESENT), through the log as qemu does. */
static int bat_set(struct qimg_node *n, uint64_t block, uint64_t host)
{
    struct vhdx_state *s = n->opaque;
    uint64_t byte = vhdx_bat_index(s, block) * 8;
    uint64_t sector = s->bat_offset + qimg_align_down(byte, VHDX_LOG_SECTOR);
    uint8_t buf[VHDX_LOG_SECTOR];
    /* The sector as the file holds it (zeroes past its end), with the new entry. */
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    uint64_t have = sector < (uint64_t)flen ? qimg_min_u64(sizeof(buf), (uint64_t)flen - sector) : 0;
    memset(buf + have, 0, sizeof(buf) - have);
    int ret = have ? qimg_node_pread(n->file, sector, have, buf, 0) : 0;
    if (ret < 0)
        return ret;
    qimg_put_le64(buf + byte % VHDX_LOG_SECTOR, host | VHDX_BLOCK_FULLY_PRESENT);
    ret = vhdx_log_write_sector(n, sector, buf);
    /* The cached BAT piece is stale now: read it again when needed. */
    qimg_table_cache_drop(&s->bat, s->bat_offset + qimg_align_down(byte, 64 * 1024));
    return ret;
}

bool vhdx_pending_host(const struct vhdx_state *s, uint64_t block, uint64_t *host)
{
    for (size_t i = 0; i < s->npending; i++)
        if (s->pending[i].block == block) {
            *host = s->pending[i].host;
            return true;
        }
    return false;
}

static void pending_add(struct vhdx_state *s, uint64_t block, uint64_t host)
{
    s->pending = xrealloc(s->pending, (s->npending + 1) * sizeof(*s->pending));
    s->pending[s->npending++] = (struct vhdx_pending){block, host};
}

static void pending_remove(struct vhdx_state *s, uint64_t block)
{
    for (size_t i = 0; i < s->npending; i++)
        if (s->pending[i].block == block) {
            s->pending[i] = s->pending[--s->npending];
            return;
        }
}

/* The data of one request moves without the lock (qemu drops its lock for it too). */
static int write_unlocked(struct qimg_node *n, uint64_t host, uint64_t len, const uint8_t *buf)
{
    pthread_mutex_unlock(&n->lock);
    int ret = qimg_node_pwrite(n->file, host, len, buf, 0);
    pthread_mutex_lock(&n->lock);
    return ret;
}

/* Write the part of one payload block at off (len within the block). n->lock held. */
static int write_block(struct qimg_node *n, uint64_t off, uint64_t len, const uint8_t *buf)
{
    struct vhdx_state *s = n->opaque;
    uint64_t block = off / s->block_size, in = off % s->block_size, e, host;
    if (vhdx_pending_host(s, block, &host)) /* another writer is allocating it */
        return write_unlocked(n, host + in, len, buf);
    int ret = vhdx_bat_get(n, vhdx_bat_index(s, block), &e);
    if (ret < 0)
        return ret;
    bool alloc = false;
    switch (e & VHDX_BAT_STATE_MASK) {
    case VHDX_BLOCK_NOT_PRESENT:
    case VHDX_BLOCK_UNDEFINED:
    case VHDX_BLOCK_ZERO:
    case VHDX_BLOCK_UNMAPPED:
    case VHDX_BLOCK_UNMAPPED_V095:
        ret = allocate_block(n, &host);
        if (ret < 0)
            return ret;
        alloc = true;
        break;
    case VHDX_BLOCK_FULLY_PRESENT:
        host = e & VHDX_BAT_OFFSET_MASK;
        break;
    default:
        return -EIO;
    }
    /* A block in the header section would overwrite the headers: qemu fails with EFAULT. */
    if (host < VHDX_HEADER_SECTION_END)
        return -EFAULT;
    if (!alloc)
        return write_unlocked(n, host + in, len, buf);
    /*
     * A new block: data first, then the BAT entry (crash order: a leak, never
     * garbage). Meanwhile other writers and readers find the block pending.
     */
    pending_add(s, block, host);
    ret = write_unlocked(n, host + in, len, buf);
    if (ret == 0)
        ret = bat_set(n, block, host);
    pending_remove(s, block);
    return ret;
}

int vhdx_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf, unsigned flags)
{
    (void)flags;
    struct vhdx_state *s = n->opaque;
    const uint8_t *p = buf;
    int ret = 0;
    pthread_mutex_lock(&n->lock);
    if (!s->first_write_done) {
        ret = vhdx_update_headers(n, true, NULL);
        if (ret == 0)
            s->first_write_done = true;
    }
    while (ret == 0 && len) {
        uint64_t here = qimg_min_u64(len, s->block_size - off % s->block_size);
        ret = write_block(n, off, here, p);
        off += here;
        p += here;
        len -= here;
    }
    pthread_mutex_unlock(&n->lock);
    return ret;
}
