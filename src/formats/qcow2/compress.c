/* SPDX-License-Identifier: MIT */
/*
 * Compressed clusters (qcow2.txt: Compressed Clusters Descriptor, header
 * compression_type). zlib: raw deflate with a 4 KiB window (windowBits -12),
 * memLevel 9, as QEMU expects them. zstd: one streaming frame.
 *
 * Decoding accepts what QEMU accepts: the output must fill the cluster, and
 * the input is only an upper bound (the descriptor counts 512-byte sectors),
 * so the stream may be followed by bytes that belong to someone else. A
 * deflate stream may even go on past the cluster (QEMU takes the first
 * cluster_size bytes). Decoders run on the caller's thread without any lock:
 * the copy and compare engines decode on all their workers at once.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#ifdef QIMG_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

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

/*
 * What QEMU's inflate accepts (qcow2 zlib clusters): one call with Z_FINISH,
 * the cluster filled, and the stream either ended there (Z_STREAM_END) or
 * stopped for want of room or input (Z_BUF_ERROR). Any stream error fails,
 * even after the cluster was filled. In one call zlib checks distances
 * against the output so far, not the 4 KiB window, so any window decodes.
 */
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
    bool full = z.avail_out == 0;
    inflateEnd(&z);
    return (ret == Z_STREAM_END || ret == Z_BUF_ERROR) && full ? 0 : -EIO;
}

/*
 * Per-thread codec contexts, kept between clusters: creating and sizing one
 * costs about as much as coding a 64 KiB cluster. Freed when the thread
 * exits (the process's main thread keeps its own).
 */
static void *zstd_cctx_new(void)
{
    return ZSTD_createCCtx();
}

static void zstd_cctx_free(void *c)
{
    ZSTD_freeCCtx(c);
}

static void *zstd_dctx_new(void)
{
    return ZSTD_createDCtx();
}

static void zstd_dctx_free(void *d)
{
    ZSTD_freeDCtx(d);
}

#ifdef QIMG_HAVE_LIBDEFLATE
static void *deflate_dctx_new(void)
{
    return libdeflate_alloc_decompressor();
}

static void deflate_dctx_free(void *d)
{
    libdeflate_free_decompressor(d);
}
#endif

enum thread_ctx { CTX_ZSTD_C, CTX_ZSTD_D, CTX_DEFLATE_D, CTX_COUNT };

static const struct {
    void *(*create)(void);
    void (*destroy)(void *);
} ctx_kinds[CTX_COUNT] = {
    [CTX_ZSTD_C] = {zstd_cctx_new, zstd_cctx_free},
    [CTX_ZSTD_D] = {zstd_dctx_new, zstd_dctx_free},
#ifdef QIMG_HAVE_LIBDEFLATE
    [CTX_DEFLATE_D] = {deflate_dctx_new, deflate_dctx_free},
#endif
};

static pthread_key_t ctx_keys[CTX_COUNT];
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void ctx_keys_init(void)
{
    for (int i = 0; i < CTX_COUNT; i++)
        pthread_key_create(&ctx_keys[i], ctx_kinds[i].destroy);
}

/* This thread's context of that kind; NULL when it cannot be had. */
static void *thread_ctx(enum thread_ctx which)
{
    pthread_once(&ctx_once, ctx_keys_init);
    void *c = pthread_getspecific(ctx_keys[which]);
    if (c || !ctx_kinds[which].create)
        return c;
    c = ctx_kinds[which].create();
    if (c && pthread_setspecific(ctx_keys[which], c) != 0) {
        ctx_kinds[which].destroy(c);
        c = NULL;
    }
    return c;
}

/*
 * libdeflate decodes whole buffers two to three times as fast as zlib. It
 * succeeds only on a stream that ends within the input after exactly out_len
 * bytes (the _ex call tolerates the bytes after it), which is also what QEMU
 * accepts. Every other verdict (stream longer than the cluster, input
 * exhausted, data it rejects) is left to zlib, which decides as QEMU does.
 * libdeflate is more lenient than zlib on a few malformed streams no encoder
 * writes (the reserved length symbols 286/287 and distance codes 30/31 decode
 * instead of failing): such a hostile cluster reads as data where QEMU fails
 * it (tests/cli/test_compressed_read.py, test_reserved_length_symbol).
 */
static int deflate_decompress(uint8_t *out, size_t out_len, const uint8_t *in, size_t in_len)
{
#ifdef QIMG_HAVE_LIBDEFLATE
    struct libdeflate_decompressor *d = thread_ctx(CTX_DEFLATE_D);
    size_t used;
    if (d && libdeflate_deflate_decompress_ex(d, in, in_len, out, out_len, &used, NULL) ==
                 LIBDEFLATE_SUCCESS)
        return 0;
#endif
    return zlib_decompress(out, out_len, in, in_len);
}

static long zstd_compress(uint8_t *out, size_t cap, const uint8_t *in, size_t len)
{
    ZSTD_CCtx *c = thread_ctx(CTX_ZSTD_C);
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

/*
 * As QEMU decodes a zstd cluster: stream until the cluster is full, failing
 * on an error or a call that makes no progress, and the frame must be
 * complete when the cluster is (a frame holding more is an error).
 */
static int zstd_decompress(uint8_t *out, size_t out_len, const uint8_t *in, size_t in_len)
{
    ZSTD_DCtx *d = thread_ctx(CTX_ZSTD_D);
    if (!d)
        return -ENOMEM;
    ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
    ZSTD_inBuffer ib = {in, in_len, 0};
    ZSTD_outBuffer ob = {out, out_len, 0};
    size_t r = 0;
    while (ob.pos < ob.size) {
        size_t in_pos = ib.pos, out_pos = ob.pos;
        r = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(r) || (ib.pos <= in_pos && ob.pos <= out_pos))
            return -EIO;
    }
    return r == 0 ? 0 : -EIO;
}

long qcow2_compress(int type, uint8_t *out, size_t cap, const uint8_t *in, size_t len)
{
    return type == QCOW2_COMPRESSION_ZSTD ? zstd_compress(out, cap, in, len)
                                          : zlib_compress(out, cap, in, len);
}

int qcow2_decompress(int type, uint8_t *out, size_t out_len, const uint8_t *in, size_t in_len)
{
    return type == QCOW2_COMPRESSION_ZSTD ? zstd_decompress(out, out_len, in, in_len)
                                          : deflate_decompress(out, out_len, in, in_len);
}
