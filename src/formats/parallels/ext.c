/* SPDX-License-Identifier: MIT */
/*
 * The parallels Format Extension cluster (parallels.txt: Format Extension):
 * its magic and MD5 are checked on open as qemu-img 9.1 checks them, and the
 * feature list is walked with every size bounded by the cluster (the first
 * MiB of it). Dirty bitmaps are checked as 9.1 checks them, not loaded: they
 * are QEMU runtime state, and qemu-img info does not list them.
 */
#include <errno.h>
#include <nettle/md5.h>
#include <stdlib.h>
#include <string.h>

#include "formats/parallels/parallels.h"
#include "util/bytes.h"
#include "util/mem.h"

#define EXT_CHUNK (1u << 20)
#define FEATURE_HEADER 24 /* magic, flags, data_size, unused */
#define BITMAP_HEADER 32  /* size, id, granularity, l1_size */

/* MD5 over the cluster after its first 24 bytes; the first chunk kept in head. */
static int read_and_hash(struct qimg_node *n, uint64_t pos, uint64_t cluster, uint8_t *head,
                         uint64_t head_len, uint8_t digest[MD5_DIGEST_SIZE])
{
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    struct md5_ctx ctx;
    md5_init(&ctx);
    uint8_t *buf = xmalloc(EXT_CHUNK);
    int ret = 0;
    for (uint64_t done = 0; done < cluster && ret == 0; done += EXT_CHUNK) {
        uint64_t len = qimg_min_u64(EXT_CHUNK, cluster - done);
        uint64_t at = pos + done;
        /* Bytes past the end of the file read as zeroes, as QEMU reads them. */
        uint64_t have = at < (uint64_t)flen ? qimg_min_u64(len, (uint64_t)flen - at) : 0;
        memset(buf + have, 0, len - have);
        if (have)
            ret = qimg_node_pread(n->file, at, have, buf, 0);
        if (ret < 0)
            break;
        if (done < head_len)
            memcpy(head + done, buf, qimg_min_u64(len, head_len - done));
        uint64_t skip = done == 0 ? PRL_EXT_HEADER : 0;
        if (len > skip)
            md5_update(&ctx, len - skip, buf + skip);
    }
    free(buf);
    md5_digest(&ctx, MD5_DIGEST_SIZE, digest);
    return ret;
}

/*
 * parallels.txt: Dirty bitmaps feature. qemu 9.1's checks and words; the
 * bitmap itself is not loaded (qemu-img does not show it). A granularity that
 * is not a power of two (9.1 fails an assertion there) is one clear error.
 */
static int check_bitmap(const struct parallels_state *s, const uint8_t *d, uint64_t size,
                        struct qimg_error *err)
{
    if (size < BITMAP_HEADER)
        return qimg_error_set(err, -EINVAL, "Bitmaps feature corrupted: too small");
    uint64_t sectors = qimg_le64(d), disk = s->disk_size / PRL_SECTOR;
    uint32_t granularity = qimg_le32(d + 24), l1_size = qimg_le32(d + 28);
    if (sectors != disk)
        return qimg_error_set(err, -EINVAL,
                              "Bitmap size (in sectors) %llu differs from disk size in sectors %llu",
                              (unsigned long long)sectors, (unsigned long long)disk);
    if (BITMAP_HEADER + 8ull * l1_size > size)
        return qimg_error_set(err, -EINVAL,
                              "Bitmaps feature corrupted: l1 table exceeds extension data_size");
    if (granularity == 0 || (granularity & (granularity - 1)))
        return qimg_error_set(err, -EINVAL, "Bitmap granularity %u is not a power of two",
                              granularity);
    return 0;
}

/* parallels.txt: each feature is a 24-byte header and data_size bytes padded to 8. */
static int walk_features(const struct parallels_state *s, const uint8_t *c, uint64_t len,
                         struct qimg_error *err)
{
    uint64_t pos = PRL_EXT_HEADER;
    while (pos + FEATURE_HEADER <= len) {
        uint64_t magic = qimg_le64(c + pos);
        uint64_t flags = qimg_le64(c + pos + 8);
        uint64_t size = qimg_le32(c + pos + 16);
        if (magic == 0)
            return 0; /* End of features */
        pos += FEATURE_HEADER;
        if (size > len - pos)
            return qimg_error_set(err, -EINVAL,
                                  "Feature data_size exceedes Format Extension cluster");
        if (flags)
            return qimg_error_set(err, -EINVAL, "Flags for extension feature are unsupported");
        if (magic != PRL_EXT_DIRTY_BITMAP)
            return qimg_error_set(err, -EINVAL, "Unknown feature: 0x%llx",
                                  (unsigned long long)magic);
        int ret = check_bitmap(s, c + pos, size, err);
        if (ret < 0)
            return ret;
        pos += qimg_align_up(size, 8);
    }
    return qimg_error_set(err, -EINVAL, "Format Extension has no end of features");
}

int parallels_read_extension(struct qimg_node *n, uint64_t ext_off, struct qimg_error *err)
{
    struct parallels_state *s = n->opaque;
    uint64_t pos;
    uint8_t *head = xcalloc(1, EXT_CHUNK);
    uint64_t head_len = qimg_min_u64(EXT_CHUNK, s->cluster_size);
    uint8_t digest[MD5_DIGEST_SIZE];
    int ret = 0;
    /* An offset past any file reads as zeroes: magic 0, as qemu reports it. */
    if (qimg_mul_u64(ext_off, PRL_SECTOR, &pos))
        ret = read_and_hash(n, pos, s->cluster_size, head, head_len, digest);
    if (ret < 0) {
        ret = qimg_error_errno(err, ret, "Could not read the Format Extension");
        goto out;
    }
    uint64_t magic = qimg_le64(head);
    if (magic != PRL_EXT_MAGIC) {
        ret = qimg_error_set(err, -EINVAL,
                             "Wrong parallels Format Extension magic: 0x%llx, expected: 0x%llx",
                             (unsigned long long)magic, (unsigned long long)PRL_EXT_MAGIC);
        goto out;
    }
    if (memcmp(digest, head + 8, MD5_DIGEST_SIZE)) {
        ret = qimg_error_set(err, -EINVAL, "Wrong checksum in Format Extension header. Format "
                                           "extension is corrupted.");
        goto out;
    }
    ret = walk_features(s, head, head_len, err);
out:
    free(head);
    return ret;
}
