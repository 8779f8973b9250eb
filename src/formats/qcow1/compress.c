/* SPDX-License-Identifier: MIT */
/*
 * qcow v1 compressed clusters (qcow-libyal: compressed cluster descriptor):
 * bit 63 set, the compressed size in the cluster_bits bits below it, the host
 * byte offset in the rest. The data is raw deflate (no zlib header) with a
 * 4 KiB window, as qemu writes it (zlib level default, windowBits -12,
 * memLevel 9); a compressed cluster goes at the end of the file, at the next
 * sector boundary. A cluster that does not shrink is written uncompressed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "formats/qcow1/qcow1.h"
#include "util/bytes.h"
#include "util/mem.h"

static void descriptor(const struct qcow1_state *s, uint64_t e, uint64_t *host, uint64_t *csize)
{
    unsigned shift = 63 - s->cluster_bits;
    *host = e & ((1ull << shift) - 1);
    *csize = (e >> shift) & (s->cluster_size - 1);
}

static int inflate_cluster(const uint8_t *in, uint64_t in_len, uint8_t *out, uint64_t out_len)
{
    z_stream z = {0};
    if (inflateInit2(&z, -12) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)in_len;
    z.next_out = out;
    z.avail_out = (uInt)out_len;
    int r = inflate(&z, Z_FINISH);
    uint64_t got = out_len - z.avail_out;
    inflateEnd(&z);
    /* qemu accepts a stream that ends or runs out of input once the cluster is full */
    if ((r != Z_STREAM_END && r != Z_BUF_ERROR) || got != out_len)
        return -EIO;
    return 0;
}

int qcow1_read_compressed(struct qimg_node *n, const struct qimg_map *m, uint64_t off,
                          uint64_t len, void *buf)
{
    struct qcow1_state *s = n->opaque;
    uint64_t host, csize;
    descriptor(s, m->entry, &host, &csize);
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    uint8_t *in = xcalloc(1, csize + 1);
    uint8_t *out = xmalloc(s->cluster_size);
    uint64_t have = host < (uint64_t)flen ? qimg_min_u64(csize, (uint64_t)flen - host) : 0;
    int ret = have ? qimg_node_pread(n->file, host, have, in, 0) : 0;
    if (ret == 0)
        ret = inflate_cluster(in, csize, out, s->cluster_size);
    if (ret == 0)
        memcpy(buf, out + (off & (s->cluster_size - 1)), len);
    free(in);
    free(out);
    return ret;
}

/* Raw deflate of one cluster as qemu makes it; 0 when it does not shrink. */
static uint64_t deflate_cluster(const uint8_t *in, uint64_t len, uint8_t *out, uint64_t cap)
{
    z_stream z = {0};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int r = deflate(&z, Z_FINISH);
    uint64_t got = cap - z.avail_out;
    deflateEnd(&z);
    return r == Z_STREAM_END && got < cap ? got : 0;
}

int qcow1_pwrite_compressed(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf)
{
    struct qcow1_state *s = n->opaque;
    if (s->crypt_method)
        return -ENOTSUP;
    uint8_t *in = xcalloc(1, s->cluster_size);
    uint8_t *out = xmalloc(s->cluster_size);
    memcpy(in, buf, qimg_min_u64(len, s->cluster_size));
    uint64_t clen = deflate_cluster(in, s->cluster_size, out, s->cluster_size);
    int ret;
    if (!clen) {
        ret = qimg_mapped_pwrite(n, off, len, buf, 0);
        goto out;
    }
    pthread_mutex_lock(&n->lock);
    ret = qcow1_l2_set(n, off, 0, 0); /* the L2 table first, as qemu places it */
    uint64_t host = qimg_align_up(s->file_end, 512); /* qemu starts each on a sector */
    if (ret == 0 && host >> (63 - s->cluster_bits))
        ret = -EFBIG;
    if (ret == 0)
        ret = qimg_node_pwrite(n->file, host, clen, out, 0);
    if (ret == 0) {
        s->file_end = host + clen;
        uint64_t e = QCOW1_COMPRESSED | (clen << (63 - s->cluster_bits)) | host;
        ret = qcow1_l2_set(n, off, e, 1);
    }
    pthread_mutex_unlock(&n->lock);
out:
    free(in);
    free(out);
    return ret;
}
