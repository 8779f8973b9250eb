/* SPDX-License-Identifier: MIT */
/*
 * Writes to compressed (streamOptimized) extents, as qemu-img 9.1 makes
 * them: whole grains only, each deflated (zlib with header, RFC 1950) behind
 * a grain marker (lba of the guest sector, compressed size; vmdk-libyal:
 * "Grain marker") and appended at the next sector of the extent file; a
 * grain is written once (a second write to it is refused). The grain tables
 * qemu created with the image point at the new grains.
 *
 * Compression runs in the copy workers without the lock (driver.h:
 * compress + pwrite_precompressed); the append and the table update hold it.
 * The level is a fast one (libdeflate 3 when built with it, else zlib 1):
 * any zlib stream is valid for VMware and qemu, and it is what makes convert
 * to streamOptimized scale.
 */
#include <errno.h> /* program_invocation_short_name (_GNU_SOURCE) */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "formats/vmdk/vmdk.h"
#include "util/bytes.h"
#include "util/mem.h"
#include "util/report.h"

#ifdef QIMG_HAVE_LIBDEFLATE
#include <libdeflate.h>
#include <pthread.h>
#endif

#define VMDK_ZLIB_LEVEL Z_BEST_SPEED
#define VMDK_LIBDEFLATE_LEVEL 3 /* about zlib 1's speed at zlib 6's size */

/* The extent of a grain write at off: NULL when it is not one whole (or the last) grain. */
static struct vmdk_extent *whole_grain(struct vmdk_state *s, uint64_t off, uint64_t len)
{
    struct vmdk_extent *e = vmdk_find_extent(s, off);
    if (!e || !e->compressed || !e->has_marker)
        return NULL;
    uint64_t rel = off - e->start * VMDK_SECTOR, ext_len = e->sectors * VMDK_SECTOR;
    if (rel % e->grain || len > e->grain || (len < e->grain && rel + len != ext_len))
        return NULL;
    return e;
}

#ifdef QIMG_HAVE_LIBDEFLATE
static pthread_key_t compressor_key;
static pthread_once_t compressor_once = PTHREAD_ONCE_INIT;

static void compressor_free(void *c)
{
    libdeflate_free_compressor(c);
}

static void compressor_key_init(void)
{
    pthread_key_create(&compressor_key, compressor_free);
}

/* This thread's compressor (the copy workers compress in parallel); NULL: use zlib. */
static struct libdeflate_compressor *thread_compressor(void)
{
    pthread_once(&compressor_once, compressor_key_init);
    struct libdeflate_compressor *c = pthread_getspecific(compressor_key);
    if (!c) {
        c = libdeflate_alloc_compressor(VMDK_LIBDEFLATE_LEVEL);
        if (c && pthread_setspecific(compressor_key, c) != 0) {
            libdeflate_free_compressor(c);
            c = NULL;
        }
    }
    return c;
}
#endif

static long deflate_grain(const void *in, uint64_t len, void *out, size_t cap)
{
#ifdef QIMG_HAVE_LIBDEFLATE
    struct libdeflate_compressor *c = thread_compressor();
    if (c) {
        size_t n = libdeflate_zlib_compress(c, in, len, out, cap);
        return n ? (long)n : -ENOSPC;
    }
#endif
    uLongf out_len = cap;
    if (compress2(out, &out_len, in, len, VMDK_ZLIB_LEVEL) != Z_OK)
        return -ENOSPC;
    return (long)out_len;
}

long vmdk_compress(struct qimg_node *n, const void *in, uint64_t len, void *out, size_t cap)
{
    struct vmdk_extent *e = vmdk_find_extent(n->opaque, 0);
    if (!e || !e->compressed)
        return -ENOSPC; /* plain extents: the engine writes the data as it is */
    return deflate_grain(in, len, out, cap);
}

/* Is the grain at off written already? qemu refuses a second write (with its message). */
static int grain_taken(struct vmdk_extent *e, uint64_t off, uint64_t *g)
{
    *g = (off - e->start * VMDK_SECTOR) / e->grain;
    uint32_t gte;
    int ret = vmdk_gte_get(e, *g, &gte, NULL);
    if (ret < 0)
        return ret;
    if (gte && !(e->zero_grain && gte == VMDK_GTE_ZEROED)) {
        /* qemu's error_report(): "PROGRAM: text" on stderr while the request fails */
        qimg_check_report("%s: Could not write to allocated cluster for streamOptimized\n",
                          program_invocation_short_name);
        return -EIO;
    }
    return 0;
}

/* Append marker + data at the extent's end, padded to a sector; point the grain at it. */
static int append_grain(struct qimg_node *n, uint64_t off, uint64_t len, const void *cdata,
                        size_t clen)
{
    struct vmdk_state *s = n->opaque;
    struct vmdk_extent *e = vmdk_find_extent(s, off);
    if (!e || !e->compressed)
        return -EIO;
    uint64_t g;
    int ret = grain_taken(e, off, &g);
    if (ret < 0)
        return ret;
    if (!whole_grain(s, off, len))
        return -EINVAL;
    if (e->next_grain / VMDK_SECTOR >= VMDK_EXTENT_MAX_SECTORS)
        return -EIO;
    uint64_t total = qimg_align_up(VMDK_GRAIN_MARKER_SIZE + clen, VMDK_SECTOR);
    uint8_t *buf = qimg_alloc_aligned(total);
    if (!buf)
        return -ENOMEM;
    qimg_put_le64(buf, off / VMDK_SECTOR);
    qimg_put_le32(buf + 8, (uint32_t)clen);
    memcpy(buf + VMDK_GRAIN_MARKER_SIZE, cdata, clen);
    memset(buf + VMDK_GRAIN_MARKER_SIZE + clen, 0, total - VMDK_GRAIN_MARKER_SIZE - clen);
    uint64_t host = e->next_grain;
    qimg_debug_event(e->file, QIMG_DBG_WRITE_COMPRESSED);
    ret = qimg_node_pwrite(e->file, host, total, buf, 0);
    free(buf);
    if (ret < 0)
        return ret;
    e->next_grain = host + total;
    uint32_t v = (uint32_t)(host / VMDK_SECTOR);
    ret = vmdk_gte_set(e, g, 1, &v);
    if (ret == 0)
        ret = vmdk_update_cid(n);
    return ret;
}

int vmdk_pwrite_precompressed(struct qimg_node *n, uint64_t off, uint64_t len, const void *cdata,
                              size_t clen)
{
    pthread_mutex_lock(&n->lock);
    int ret = append_grain(n, off, len, cdata, clen);
    pthread_mutex_unlock(&n->lock);
    return ret;
}

/* Grain by grain: deflate (no lock), then append. */
static int write_grains(struct qimg_node *n, uint64_t off, uint64_t len, const uint8_t *src)
{
    struct vmdk_state *s = n->opaque;
    int ret = 0;
    uint8_t *cbuf = NULL;
    size_t cap = 0;
    while (len && ret == 0) {
        struct vmdk_extent *e = vmdk_find_extent(s, off);
        if (!e)
            return -EIO;
        uint64_t ext_end = (e->start + e->sectors) * VMDK_SECTOR;
        uint64_t in = (off - e->start * VMDK_SECTOR) % e->grain;
        uint64_t here = qimg_min_u64(len, qimg_min_u64(e->grain - in, ext_end - off));
        size_t need = (size_t)compressBound(here) + 64; /* libdeflate's bound is below zlib's */
        if (need > cap) {
            free(cbuf);
            cap = need;
            cbuf = xmalloc(cap);
        }
        long clen = deflate_grain(src, here, cbuf, cap);
        if (clen < 0) {
            ret = (int)clen;
            break;
        }
        ret = vmdk_pwrite_precompressed(n, off, here, cbuf, (size_t)clen);
        off += here;
        src += here;
        len -= here;
    }
    free(cbuf);
    return ret;
}

int vmdk_pwrite_compressed(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf)
{
    struct vmdk_extent *e = vmdk_find_extent(n->opaque, off);
    if (e && !e->compressed)
        return n->drv->pwrite(n, off, len, buf, 0); /* qemu: a plain write */
    return write_grains(n, off, len, buf);
}

/* A plain write reaching a compressed extent (qemu compresses those too). */
int vmdk_stream_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf)
{
    return write_grains(n, off, len, buf);
}
