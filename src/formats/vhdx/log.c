/* SPDX-License-Identifier: MIT */
/*
 * The VHDX metadata log [2.3], as qemu-img 9.1 uses it (observed with its
 * qemu-io and qemu-img):
 *
 * Writing: every metadata sector qemu changes (a BAT sector) goes through
 * the log: a fresh log GUID in both headers, one entry (header sector with
 * one data descriptor, then the data sector) at the next 4 KiB of the log,
 * sequence numbers from 1 per open, tail = the entry itself; then the sector
 * is written in place and both headers drop the log GUID again.
 *
 * Opening: with a log GUID in the header, the valid entry chain with the
 * highest sequence number is the active log. Read-only opens refuse it with
 * qemu's message; read-write opens replay it (data descriptors write their
 * sector, zero descriptors zeroes), then the headers get new data write GUIDs
 * and drop the log GUID. Entries with a bad checksum, signature, GUID or
 * sizes are not valid and so are never replayed (qemu then opens the image
 * unchanged); a bad descriptor in an otherwise good entry fails the open
 * (EINVAL). Entries are read a sector at a time: hostile lengths cost
 * reads, never memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/vhdx/vhdx.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/mem.h"
#include "util/uuid.h"

/*
 * Sector reads allowed while searching and replaying one log (4 GiB of reads):
 * a log of entries that each claim the whole log would otherwise cost
 * quadratic time (qemu's search has no bound); a real log needs far less.
 */
#define VHDX_LOG_READ_BUDGET (1u << 20)

/* The log sector at byte pos of the log (wrapping), zeroes past the file's end. */
static int log_read(struct qimg_node *n, uint64_t pos, uint8_t *sector)
{
    struct vhdx_state *s = n->opaque;
    if (s->log_reads++ >= VHDX_LOG_READ_BUDGET)
        return -EINVAL;
    uint64_t off = s->log_offset + pos % s->log_length;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    uint64_t have = off < (uint64_t)flen ? qimg_min_u64(VHDX_LOG_SECTOR, (uint64_t)flen - off) : 0;
    memset(sector + have, 0, VHDX_LOG_SECTOR - have);
    return have ? qimg_node_pread(n->file, off, have, sector, 0) : 0;
}

/* Sectors holding the entry header and count descriptors. */
static uint64_t desc_sectors(uint64_t count)
{
    return qimg_div_round_up(VHDX_LOG_ENTRY_HDR + count * VHDX_LOG_DESC_SIZE, VHDX_LOG_SECTOR);
}

/* A log entry found at pos: its header fields. */
struct log_entry {
    uint64_t pos, seq, last_file_offset;
    uint32_t length, count;
};

/* Descriptor i of the entry at pos (32 bytes). */
static int desc_get(struct qimg_node *n, const struct log_entry *le, uint32_t i, uint8_t *d)
{
    uint8_t sec[VHDX_LOG_SECTOR];
    uint64_t byte = VHDX_LOG_ENTRY_HDR + (uint64_t)i * VHDX_LOG_DESC_SIZE;
    int ret = log_read(n, le->pos + qimg_align_down(byte, VHDX_LOG_SECTOR), sec);
    if (ret == 0)
        memcpy(d, sec + byte % VHDX_LOG_SECTOR, VHDX_LOG_DESC_SIZE);
    return ret;
}

/* Is the entry at pos valid [2.3.1]: header, checksum, descriptors and data sectors? */
static int entry_validate(struct qimg_node *n, uint64_t pos, struct log_entry *le, bool *valid)
{
    struct vhdx_state *s = n->opaque;
    uint8_t sec[VHDX_LOG_SECTOR], d[VHDX_LOG_DESC_SIZE];
    *valid = false;
    int ret = log_read(n, pos, sec);
    if (ret < 0)
        return ret;
    *le = (struct log_entry){.pos = pos,
                             .seq = qimg_le64(sec + VHDX_LE_SEQ),
                             .last_file_offset = qimg_le64(sec + VHDX_LE_LAST_OFF),
                             .length = qimg_le32(sec + VHDX_LE_LENGTH),
                             .count = qimg_le32(sec + VHDX_LE_DESC_COUNT)};
    if (memcmp(sec, "loge", 4) != 0 || le->length == 0 || le->length % VHDX_LOG_SECTOR ||
        le->length > s->log_length ||
        memcmp(sec + VHDX_LE_LOG_GUID, s->headers[s->curr_header] + VHDX_H_LOG_GUID, 16) != 0 ||
        desc_sectors(le->count) > le->length / VHDX_LOG_SECTOR)
        return 0;
    /* Descriptors first (cheap), counting the data sectors they need. */
    uint64_t data = 0;
    for (uint32_t i = 0; i < le->count; i++) {
        ret = desc_get(n, le, i, d);
        if (ret < 0)
            return ret;
        /* A bad descriptor in an entry whose header is fine fails the open (qemu: EINVAL). */
        if (qimg_le64(d + VHDX_LD_SEQ) != le->seq)
            return -EINVAL;
        if (memcmp(d, "desc", 4) == 0)
            data++;
        else if (memcmp(d, "zero", 4) != 0 || qimg_le64(d + VHDX_LD_LEADING) % VHDX_LOG_SECTOR)
            return -EINVAL;
    }
    uint64_t first_data = desc_sectors(le->count);
    if (first_data + data > le->length / VHDX_LOG_SECTOR)
        return 0;
    /* The checksum covers the whole entry with its checksum field as zero. */
    uint32_t want = qimg_le32(sec + VHDX_LE_CHECKSUM), crc = 0xffffffffu;
    for (uint64_t k = 0; k < le->length / VHDX_LOG_SECTOR; k++) {
        ret = log_read(n, pos + k * VHDX_LOG_SECTOR, sec);
        if (ret < 0)
            return ret;
        if (k == 0)
            qimg_put_le32(sec + VHDX_LE_CHECKSUM, 0);
        if (k >= first_data && k < first_data + data &&
            (memcmp(sec, "data", 4) != 0 ||
             (((uint64_t)qimg_le32(sec + VHDX_DS_SEQ_HIGH) << 32) |
              qimg_le32(sec + VHDX_DS_SEQ_LOW)) != le->seq))
            return 0;
        crc = qimg_crc32c_update(crc, sec, sizeof(sec));
    }
    *valid = ~crc == want;
    return 0;
}

/* The active log: the chain of consecutive valid entries with the highest sequence number. */
static int log_search(struct qimg_node *n, struct log_entry *first, uint64_t *count)
{
    struct vhdx_state *s = n->opaque;
    uint64_t best_seq = 0;
    *count = 0;
    for (uint64_t pos = 0; pos < s->log_length;) {
        struct log_entry le, head;
        bool valid;
        int ret = entry_validate(n, pos, &le, &valid);
        if (ret < 0)
            return ret;
        if (!valid) {
            pos += VHDX_LOG_SECTOR;
            continue;
        }
        head = le;
        uint64_t len = 1, next = pos + le.length, last_seq = le.seq;
        while (len < s->log_length / VHDX_LOG_SECTOR) {
            struct log_entry nx;
            ret = entry_validate(n, next % s->log_length, &nx, &valid);
            if (ret < 0)
                return ret;
            if (!valid || nx.seq != last_seq + 1)
                break;
            last_seq = nx.seq;
            next += nx.length;
            len++;
        }
        if (!*count || last_seq > best_seq) {
            *first = head;
            *count = len;
            best_seq = last_seq;
        }
        pos = next; /* never wraps back: next > pos */
    }
    return 0;
}

/* Apply one entry's descriptors to the file [2.3.2]. */
static int entry_replay(struct qimg_node *n, const struct log_entry *le)
{
    uint8_t d[VHDX_LOG_DESC_SIZE], sec[VHDX_LOG_SECTOR], out[VHDX_LOG_SECTOR];
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    /* qemu grows a short file to last_file_offset only when that is not 1 MiB aligned. */
    if ((uint64_t)flen < le->last_file_offset && le->last_file_offset % VHDX_MIB) {
        if (le->last_file_offset > INT64_MAX - VHDX_MIB)
            return -EINVAL;
        struct qimg_error err = {0};
        int ret = qimg_node_truncate(n->file, qimg_align_up(le->last_file_offset, VHDX_MIB),
                                     false, QIMG_PREALLOC_OFF, &err);
        if (ret < 0)
            return ret;
    }
    uint64_t data = desc_sectors(le->count);
    for (uint32_t i = 0; i < le->count; i++) {
        int ret = desc_get(n, le, i, d);
        if (ret < 0)
            return ret;
        uint64_t off = qimg_le64(d + VHDX_LD_FILE_OFF);
        if (memcmp(d, "zero", 4) == 0) {
            uint64_t zlen = qimg_le64(d + VHDX_LD_LEADING);
            memset(out, 0, sizeof(out));
            for (uint64_t k = 0; k < zlen / VHDX_LOG_SECTOR; k++) {
                if (off > INT64_MAX - (k + 1) * VHDX_LOG_SECTOR)
                    return -EINVAL;
                ret = qimg_node_pwrite(n->file, off + k * VHDX_LOG_SECTOR, VHDX_LOG_SECTOR, out, 0);
                if (ret < 0)
                    return ret;
            }
            continue;
        }
        ret = log_read(n, le->pos + data++ * VHDX_LOG_SECTOR, sec);
        if (ret < 0)
            return ret;
        if (off > INT64_MAX - VHDX_LOG_SECTOR)
            return -EINVAL;
        memcpy(out, d + VHDX_LD_LEADING, 8);
        memcpy(out + 8, sec + VHDX_DS_DATA, VHDX_DS_SEQ_LOW - VHDX_DS_DATA);
        memcpy(out + VHDX_DS_SEQ_LOW, d + VHDX_LD_TRAILING, 4);
        ret = qimg_node_pwrite(n->file, off, VHDX_LOG_SECTOR, out, 0);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int vhdx_log_open(struct qimg_node *n, bool *replayed, struct qimg_error *err)
{
    struct vhdx_state *s = n->opaque;
    const uint8_t *h = s->headers[s->curr_header];
    *replayed = false;
    s->log_reads = 0;
    s->log_seq = 1;
    s->log_write = 0;
    if (qimg_uuid_is_null(h + VHDX_H_LOG_GUID))
        return 0;
    if (qimg_le16(h + VHDX_H_LOG_VERSION) != 0 || s->log_length == 0 ||
        s->log_length % VHDX_LOG_SECTOR)
        return qimg_error_errno(err, -EINVAL, "Could not open '%s'", n->filename);
    struct log_entry first;
    uint64_t count;
    int ret = log_search(n, &first, &count);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not open '%s'", n->filename);
    if (!count)
        return 0;
    if (!(n->flags & QIMG_O_RDWR))
        return qimg_error_set(err, -EPERM,
                              "VHDX image file '%s' opened read-only, but contains a log that "
                              "needs to be replayed\nTo replay the log, run:\nqemu-img check -r "
                              "all '%s'",
                              n->filename, n->filename);
    /* A user-visible change: new data write GUIDs first, as qemu does. */
    uint8_t guid[16];
    memcpy(guid, h + VHDX_H_LOG_GUID, 16);
    ret = vhdx_update_headers(n, true, guid);
    s->first_write_done = true;
    struct log_entry le = first;
    for (uint64_t k = 0; ret == 0 && k < count; k++) {
        bool valid;
        if (k)
            ret = entry_validate(n, (le.pos + le.length) % s->log_length, &le, &valid);
        if (ret == 0)
            ret = entry_replay(n, &le);
    }
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret == 0)
        ret = vhdx_update_headers(n, false, NULL);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not open '%s'", n->filename);
    *replayed = true;
    return 0;
}

/* Build the entry for one data sector at file offset off (qemu's layout, see above). */
static void entry_build(struct vhdx_state *s, uint8_t *e, const uint8_t *guid, uint64_t off,
                        const uint8_t *sector, uint64_t flen)
{
    memset(e, 0, 2 * VHDX_LOG_SECTOR);
    memcpy(e + VHDX_LE_SIG, "loge", 4);
    qimg_put_le32(e + VHDX_LE_LENGTH, 2 * VHDX_LOG_SECTOR);
    qimg_put_le32(e + VHDX_LE_TAIL, s->log_write);
    qimg_put_le64(e + VHDX_LE_SEQ, s->log_seq);
    qimg_put_le32(e + VHDX_LE_DESC_COUNT, 1);
    memcpy(e + VHDX_LE_LOG_GUID, guid, 16);
    qimg_put_le64(e + VHDX_LE_FLUSHED_OFF, flen);
    qimg_put_le64(e + VHDX_LE_LAST_OFF, flen);
    uint8_t *d = e + VHDX_LOG_ENTRY_HDR;
    memcpy(d + VHDX_LD_SIG, "desc", 4);
    memcpy(d + VHDX_LD_TRAILING, sector + VHDX_DS_SEQ_LOW, 4);
    memcpy(d + VHDX_LD_LEADING, sector, 8);
    qimg_put_le64(d + VHDX_LD_FILE_OFF, off);
    qimg_put_le64(d + VHDX_LD_SEQ, s->log_seq);
    uint8_t *ds = e + VHDX_LOG_SECTOR;
    memcpy(ds, "data", 4);
    qimg_put_le32(ds + VHDX_DS_SEQ_HIGH, (uint32_t)(s->log_seq >> 32));
    memcpy(ds + VHDX_DS_DATA, sector + VHDX_DS_DATA, VHDX_DS_SEQ_LOW - VHDX_DS_DATA);
    qimg_put_le32(ds + VHDX_DS_SEQ_LOW, (uint32_t)s->log_seq);
    qimg_put_le32(e + VHDX_LE_CHECKSUM, qimg_crc32c(e, 2 * VHDX_LOG_SECTOR));
}

int vhdx_log_write_sector(struct qimg_node *n, uint64_t off, const uint8_t *sector)
{
    struct vhdx_state *s = n->opaque;
    if (s->log_length < 2 * VHDX_LOG_SECTOR || s->log_length % VHDX_LOG_SECTOR)
        return -EINVAL; /* no room for an entry (a hostile header) */
    uint8_t guid[16], *e = xmalloc(2 * VHDX_LOG_SECTOR);
    qimg_uuid_generate(guid);
    int ret = qimg_node_flush(n->file); /* the new data is stable before the log names it */
    if (ret == 0)
        ret = vhdx_update_headers(n, false, guid);
    int64_t flen = ret == 0 ? qimg_node_length(n->file) : ret;
    if (flen < 0) {
        ret = (int)flen;
        goto out;
    }
    entry_build(s, e, guid, off, sector, (uint64_t)flen);
    for (int k = 0; k < 2 && ret == 0; k++) {
        uint64_t pos = (s->log_write + (uint64_t)k * VHDX_LOG_SECTOR) % s->log_length;
        ret = qimg_node_pwrite(n->file, s->log_offset + pos, VHDX_LOG_SECTOR,
                               e + k * VHDX_LOG_SECTOR, 0);
    }
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret < 0)
        goto out;
    s->log_write = (uint32_t)((s->log_write + 2ull * VHDX_LOG_SECTOR) % s->log_length);
    s->log_seq++;
    /* Replay it at once: the sector in place, then the log is empty again. */
    ret = qimg_node_pwrite(n->file, off, VHDX_LOG_SECTOR, sector, 0);
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret == 0)
        ret = vhdx_update_headers(n, false, NULL);
out:
    free(e);
    return ret;
}
