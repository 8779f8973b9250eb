/* SPDX-License-Identifier: MIT */
/*
 * Compressed clusters (qcow2.txt: Compressed Clusters Descriptor, header
 * compression_type). zlib: raw deflate with a 4 KiB window (windowBits -12),
 * memLevel 9, as QEMU expects them. zstd: one streaming
 * frame. Decoders stop after one cluster of output: the stored length is only
 * known to 512-byte precision, so trailing bytes belong to someone else.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "formats/qcow2/qcow2.h"

/*
 * The level is the encoder's choice (any level inflates with a 4 KiB
 * window). QEMU uses 6; 4 is about 1.3 times as fast for 2% more bytes on a
 * filesystem image (doc/benchmarks.md), which is what convert -c trades for.
 * ISA-L's igzip, even with 4 KiB history, produced 8% more: not used.
 */
#define QCOW2_ZLIB_LEVEL 4

static long zlib_compress(uint8_t *out, size_t cap, const uint8_t *in, size_t len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, QCOW2_ZLIB_LEVEL, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int ret = deflate(&z, Z_FINISH);
    long produced = (long)(cap - z.avail_out);
    deflateEnd(&z);
    if (ret != Z_STREAM_END)
        return -ENOSPC;
    return produced;
}

static int zlib_decompress(uint8_t *out, size_t out_len, const uint8_t *in, size_t in_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, -12) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)in_len;
    z.next_out = out;
    z.avail_out = (uInt)out_len;
    int ret = inflate(&z, Z_FINISH);
    size_t produced = out_len - z.avail_out;
    inflateEnd(&z);
    /* Complete output is what counts; the stream end may lie in the trailing bytes. */
    if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR || ret == Z_OK) && produced == out_len)
        return 0;
    return -EIO;
}

/*
 * One compression context per thread, kept between clusters: creating and
 * sizing a context costs about as much as compressing a 64 KiB cluster.
 * Freed when the thread exits (the process's main thread keeps its own).
 */
static pthread_key_t zstd_cctx_key;
static pthread_once_t zstd_cctx_once = PTHREAD_ONCE_INIT;

static void zstd_cctx_free(void *c)
{
    ZSTD_freeCCtx(c);
}

static void zstd_cctx_key_init(void)
{
    pthread_key_create(&zstd_cctx_key, zstd_cctx_free);
}

static ZSTD_CCtx *zstd_thread_cctx(void)
{
    pthread_once(&zstd_cctx_once, zstd_cctx_key_init);
    ZSTD_CCtx *c = pthread_getspecific(zstd_cctx_key);
    if (!c) {
        c = ZSTD_createCCtx();
        if (c && pthread_setspecific(zstd_cctx_key, c) != 0) {
            ZSTD_freeCCtx(c);
            c = NULL;
        }
    }
    return c;
}

static long zstd_compress(uint8_t *out, size_t cap, const uint8_t *in, size_t len)
{
    ZSTD_CCtx *c = zstd_thread_cctx();
    if (!c)
        return -ENOMEM;
    /* A fresh frame with default parameters, as a new context would start. */
    ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
    ZSTD_inBuffer ib = {in, len, 0};
    ZSTD_outBuffer ob = {out, cap, 0};
    size_t r;
    do {
        r = ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_end);
        if (ZSTD_isError(r) || (r && ob.pos == ob.size))
            return -ENOSPC;
    } while (r != 0);
    return (long)ob.pos;
}

static int zstd_decompress(uint8_t *out, size_t out_len, const uint8_t *in, size_t in_len)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d)
        return -ENOMEM;
    ZSTD_inBuffer ib = {in, in_len, 0};
    ZSTD_outBuffer ob = {out, out_len, 0};
    int ret = 0;
    while (ob.pos < ob.size) {
        size_t r = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(r)) {
            ret = -EIO;
            break;
        }
        if (r == 0 || (ib.pos == ib.size && ob.pos < ob.size)) {
            /* Frame ended or input exhausted before a whole cluster. */
            if (ob.pos < ob.size)
                ret = -EIO;
            break;
        }
    }
    ZSTD_freeDCtx(d);
    return ret;
}

long qcow2_compress(int type, uint8_t *out, size_t cap, const uint8_t *in, size_t len)
{
    return type == QCOW2_COMPRESSION_ZSTD ? zstd_compress(out, cap, in, len)
                                          : zlib_compress(out, cap, in, len);
}

int qcow2_decompress(int type, uint8_t *out, size_t out_len, const uint8_t *in, size_t in_len)
{
    return type == QCOW2_COMPRESSION_ZSTD ? zstd_decompress(out, out_len, in, in_len)
                                          : zlib_decompress(out, out_len, in, in_len);
}
