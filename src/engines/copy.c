/* SPDX-License-Identifier: MIT */
/*
 * The copy engine (copy.h). Two phases:
 *
 * 1. Map: whole-chain block status of every source gives a list of extents,
 *    each DATA (read it), ZERO (reads as zeroes: never read) or SKIP (not
 *    allocated above base: leave the target alone). The data total is the
 *    progress denominator, as qemu-img counts it.
 * 2. Copy: workers take chunks off the extent list under one mutex, read and
 *    scan them outside it, then write them when their turn comes (sequence
 *    numbers; any order with out_of_order). Zero chunks need no buffer and,
 *    on a target that reads as zeroes, no request at all.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engines/copy.h"
#include "qimg/driver.h"
#include "util/mem.h"
#include "util/ratelimit.h"
#include "util/threadpool.h"
#include "util/zero.h"

#define SECTOR 512

enum extent_kind { EXT_DATA, EXT_ZERO, EXT_SKIP };

struct extent {
    uint64_t pos;     /* copy-relative offset */
    uint64_t src_off; /* offset in the source node */
    uint64_t len;
    uint32_t src;     /* index into job->src */
    uint8_t kind;     /* enum extent_kind */
    bool known_zero;  /* DATA only because -S 0 asks for allocation: nothing to read */
    bool mixed;       /* compressing: whole clusters read piece by piece (read_mixed) */
};

struct chunk {
    const struct extent *ext;
    uint64_t pos, src_off, len;
    uint64_t seq;
};

struct copy_state {
    const struct qimg_copy_job *job;
    size_t buf_size;
    uint64_t cluster; /* compression unit */
    uint64_t align;   /* data chunks end on multiples of this (target offsets), if set */

    struct extent *ext;
    size_t n_ext, cap_ext;
    /* Compressing: the extents as mapped, before rounding data out to whole clusters. */
    struct extent *orig;
    size_t n_orig;
    bool split_compress; /* the target compresses without its lock (qimg_node_compress) */

    pthread_mutex_t lock;
    /*
     * Chunk seq waits for its turn on turn[seq % QIMG_COPY_MAX_WORKERS]: the
     * chunks under way have consecutive numbers, one per worker, so each has
     * its own condition and a finished write wakes only the next writer.
     */
    pthread_cond_t turn[QIMG_COPY_MAX_WORKERS];
    size_t cur_ext;       /* chunk cursor: extent and bytes of it handed out */
    uint64_t cur_done;
    uint64_t seq_assign;  /* next sequence number to hand out */
    uint64_t seq_write;   /* sequence number whose turn it is to write */
    uint64_t done, total; /* data bytes */
    bool stop;            /* no new chunks; only those before stop_pos still write */
    uint64_t stop_pos;
    bool offload;         /* still trying copy offload */
    bool offloaded;
    uint64_t unflushed;   /* data bytes written since the last flush */
    bool flushing;        /* a worker is flushing ahead (see flush_ahead) */

    int ret;
    struct qimg_copy_result res;
    struct qimg_error err;

    struct qimg_ratelimit rl;
    uint8_t *zero_buf; /* buf_size zeroes for -S 0 over known-zero ranges */
};

/*
 * Record a failure at copy offset pos and stop: no new chunks, and of those
 * under way only the ones before pos still write, as a sequential copy would
 * have written them (in order). The failure reported is the one at the
 * lowest offset. Called without the lock held.
 */
static void fail(struct copy_state *s, enum qimg_copy_failure what, uint64_t pos, int ret,
                 const char *fmt_prefix)
{
    pthread_mutex_lock(&s->lock);
    if (s->ret == 0 || pos < s->res.offset) {
        s->ret = ret;
        s->res.failure = what;
        s->res.offset = pos;
        s->res.errnum = -ret;
        if (fmt_prefix)
            qimg_error_reset(&s->err, ret, "%s %llu: %s", fmt_prefix,
                             (unsigned long long)(s->job->dst_offset + pos), strerror(-ret));
        else if (what == QIMG_COPY_FAILED_FLUSH)
            qimg_error_reset(&s->err, ret, "error while flushing: %s", strerror(-ret));
        else
            qimg_error_reset(&s->err, ret, "%s", strerror(-ret));
    }
    s->stop = true;
    if (s->job->out_of_order || pos < s->stop_pos)
        s->stop_pos = s->job->out_of_order ? 0 : pos;
    for (size_t i = 0; i < QIMG_COPY_MAX_WORKERS; i++)
        pthread_cond_broadcast(&s->turn[i]);
    pthread_mutex_unlock(&s->lock);
}

/* May this chunk still be written? Lock held. */
static bool may_write(const struct copy_state *s, const struct chunk *c)
{
    return !s->stop || c->pos < s->stop_pos;
}

/* ---- phase 1: mapping ---- */

static void add_extent(struct copy_state *s, const struct extent *e)
{
    if (s->n_ext) {
        struct extent *last = &s->ext[s->n_ext - 1];
        if (last->src == e->src && last->kind == e->kind && last->known_zero == e->known_zero &&
            last->mixed == e->mixed && (e->mixed || last->src_off + last->len == e->src_off)) {
            last->len += e->len;
            return;
        }
    }
    if (s->n_ext == s->cap_ext) {
        s->cap_ext = s->cap_ext ? s->cap_ext * 2 : 64;
        s->ext = xrealloc(s->ext, s->cap_ext * sizeof(*s->ext));
    }
    s->ext[s->n_ext++] = *e;
}

static int map_source(struct copy_state *s, uint32_t idx, uint64_t *pos)
{
    const struct qimg_copy_job *job = s->job;
    const struct qimg_copy_source *src = &job->src[idx];
    uint64_t off = src->offset, end = src->offset + src->length;

    while (off < end) {
        struct qimg_block_status st;
        int ret = qimg_chain_block_status(src->node, job->base, off, end - off, &st);
        if (ret < 0) {
            s->res.failure = QIMG_COPY_FAILED_STATUS;
            s->res.offset = *pos;
            s->res.errnum = -ret;
            return qimg_error_set(&s->err, ret, "error while reading block status at offset %llu: %s",
                                  (unsigned long long)*pos, strerror(-ret));
        }
        uint64_t n = st.bytes && st.bytes <= end - off ? st.bytes : end - off;
        struct extent e = {.pos = *pos, .src_off = off, .len = n, .src = idx};
        if (st.flags & QIMG_BLK_ZERO)
            e.kind = EXT_ZERO;
        else if (st.flags & QIMG_BLK_DATA)
            e.kind = EXT_DATA;
        else if (job->skip_unallocated)
            e.kind = EXT_SKIP;
        else
            /* Unallocated down to the end of the chain reads as zeroes; above a base, as the base. */
            e.kind = job->base ? EXT_DATA : EXT_ZERO;
        if (e.kind == EXT_ZERO && job->sparse_size == 0) {
            e.kind = EXT_DATA;
            e.known_zero = true;
        }
        add_extent(s, &e);
        off += n;
        *pos += n;
    }
    return 0;
}

/* Offsets of the copy whose target offset is a multiple of the cluster size. */
static uint64_t cluster_floor(const struct copy_state *s, uint64_t pos)
{
    uint64_t abs = s->job->dst_offset + pos, f = abs / s->cluster * s->cluster;
    return f > s->job->dst_offset ? f - s->job->dst_offset : 0;
}

static uint64_t cluster_ceil(const struct copy_state *s, uint64_t pos, uint64_t total)
{
    uint64_t abs = s->job->dst_offset + pos;
    uint64_t c = (abs + s->cluster - 1) / s->cluster * s->cluster - s->job->dst_offset;
    return c < total ? c : total;
}

/* Does any data extent (from index *i on) overlap [a, b)? Advances *i past extents before a. */
static bool has_data(const struct copy_state *s, size_t *i, uint64_t a, uint64_t b)
{
    while (*i < s->n_orig && s->orig[*i].pos + s->orig[*i].len <= a)
        (*i)++;
    for (size_t j = *i; j < s->n_orig && s->orig[j].pos < b; j++)
        if (s->orig[j].kind == EXT_DATA)
            return true;
    return false;
}

/*
 * Compressed clusters are written whole, so every cluster that holds any
 * data becomes data as a whole (its zero or unallocated pieces read as
 * zeroes, or through the chain); runs without data keep their kind.
 */
static void align_for_compression(struct copy_state *s)
{
    s->orig = s->ext;
    s->n_orig = s->n_ext;
    s->ext = NULL;
    s->n_ext = s->cap_ext = 0;
    if (!s->n_orig)
        return;
    uint64_t total = s->orig[s->n_orig - 1].pos + s->orig[s->n_orig - 1].len;
    size_t i = 0;
    uint64_t a = 0;
    while (a < total) {
        while (s->orig[i].pos + s->orig[i].len <= a)
            i++;
        const struct extent *e = &s->orig[i];
        if (e->kind != EXT_DATA) {
            /* Up to the cluster holding the next data byte. */
            uint64_t b = e->pos + e->len;
            if (b < total) {
                size_t j = i + 1;
                if (has_data(s, &j, b, cluster_ceil(s, b + 1, total)))
                    b = cluster_floor(s, b) > a ? cluster_floor(s, b) : a;
            }
            if (b > a) {
                struct extent n = *e;
                n.src_off = e->src_off + (a - e->pos);
                n.pos = a;
                n.len = b - a;
                add_extent(s, &n);
                a = b;
                continue;
            }
        }
        /* A run of clusters that each hold data. */
        uint64_t b = a;
        size_t j = i;
        for (;;) {
            while (j < s->n_orig && s->orig[j].pos + s->orig[j].len <= b)
                j++;
            if (j < s->n_orig && s->orig[j].kind == EXT_DATA && s->orig[j].pos <= b)
                b = cluster_ceil(s, s->orig[j].pos + s->orig[j].len, total);
            else if (b < total && has_data(s, &j, b, cluster_ceil(s, b + 1, total)))
                b = cluster_ceil(s, b + 1, total);
            else
                break;
            if (b >= total)
                break;
        }
        if (b == a) /* cannot happen: the cluster at a holds data */
            b = cluster_ceil(s, a + 1, total);
        struct extent n = {.pos = a, .len = b - a, .kind = EXT_DATA, .mixed = true};
        add_extent(s, &n);
        a = b;
    }
}

static int map_sources(struct copy_state *s)
{
    uint64_t pos = 0;
    for (size_t i = 0; i < s->job->n_src; i++) {
        int ret = map_source(s, (uint32_t)i, &pos);
        if (ret < 0)
            return ret;
    }
    if (s->job->compress)
        align_for_compression(s);
    for (size_t i = 0; i < s->n_ext; i++)
        if (s->ext[i].kind == EXT_DATA)
            s->total += s->ext[i].len;
    return 0;
}

/* ---- phase 2: chunks ---- */

/* Next chunk off the extent list; called with the lock held. */
static bool next_chunk(struct copy_state *s, struct chunk *c)
{
    while (s->cur_ext < s->n_ext && s->cur_done == s->ext[s->cur_ext].len) {
        s->cur_ext++;
        s->cur_done = 0;
    }
    if (s->cur_ext == s->n_ext)
        return false;
    const struct extent *e = &s->ext[s->cur_ext];
    uint64_t len = e->len - s->cur_done;
    if (len > s->buf_size)
        len = s->buf_size;
    if (s->align && e->kind == EXT_DATA && len < e->len - s->cur_done) {
        /*
         * End chunks on target cluster boundaries: compressed clusters are
         * written whole, and any other cluster a chunk ends inside would be
         * allocated with a copy-on-write tail, then written again by the next
         * chunk (bench/run: raw->qcow2, qcow2 with 2M clusters).
         */
        uint64_t abs = s->job->dst_offset + e->pos + s->cur_done;
        uint64_t end = (abs + len) / s->align * s->align;
        if (end > abs && end < abs + len)
            len = end - abs;
    }
    c->ext = e;
    c->pos = e->pos + s->cur_done;
    c->src_off = e->src_off + s->cur_done;
    c->len = len;
    s->cur_done += len;
    return true;
}

/*
 * Salvage: read sector by sector; what fails reads as zeroes and is reported
 * sector by sector, as qemu-img reports it (one warning per 512-byte sector,
 * also when the node's request alignment is larger).
 */
static void read_salvaging(struct copy_state *s, const struct chunk *c, struct qimg_node *src,
                           uint8_t *buf)
{
    for (uint64_t done = 0; done < c->len;) {
        uint64_t n = c->len - done < SECTOR ? c->len - done : SECTOR;
        int ret = qimg_node_pread(src, c->src_off + done, n, buf + done, 0);
        if (ret < 0) {
            memset(buf + done, 0, n);
            if (s->job->read_error)
                s->job->read_error(s->job->opaque, s->job->dst_offset + c->pos + done, n, -ret);
        }
        done += n;
    }
}

static int read_chunk(struct copy_state *s, const struct chunk *c, uint8_t *buf);

/* A run of whole clusters for compression: each mapped piece read as its kind says. */
static int read_mixed(struct copy_state *s, const struct chunk *c, uint8_t *buf)
{
    size_t lo = 0, hi = s->n_orig;
    while (hi - lo > 1) { /* the piece holding c->pos */
        size_t mid = (lo + hi) / 2;
        if (s->orig[mid].pos <= c->pos)
            lo = mid;
        else
            hi = mid;
    }
    for (size_t i = lo; i < s->n_orig && s->orig[i].pos < c->pos + c->len; i++) {
        const struct extent *e = &s->orig[i];
        uint64_t a = e->pos > c->pos ? e->pos : c->pos;
        uint64_t b = e->pos + e->len < c->pos + c->len ? e->pos + e->len : c->pos + c->len;
        if (b <= a)
            continue;
        uint8_t *dst = buf + (a - c->pos);
        struct chunk piece = {.ext = e, .pos = a, .src_off = e->src_off + (a - e->pos), .len = b - a};
        int ret = 0;
        if (e->kind == EXT_DATA && !e->known_zero)
            ret = read_chunk(s, &piece, dst);
        else if (e->kind == EXT_SKIP)
            /* Not allocated above base: what the chain shows there. */
            ret = qimg_node_pread(s->job->src[e->src].node, piece.src_off, piece.len, dst, 0);
        else
            memset(dst, 0, piece.len);
        if (ret < 0) {
            fail(s, QIMG_COPY_FAILED_READ, a, ret, "error while reading at byte");
            return ret;
        }
    }
    return 0;
}

/*
 * Where a chunk that failed to read failed, as qemu-img reports it: at the
 * start of its own read request, which covers one block-status run of the
 * source (a single cluster when it is compressed), where a chunk may span
 * many. Re-read run by run; a chunk that reads the second time (a one-shot
 * error) is reported at its start.
 */
static uint64_t failed_run(struct copy_state *s, const struct chunk *c, struct qimg_node *src,
                           uint8_t *buf)
{
    for (uint64_t done = 0; done < c->len;) {
        struct qimg_block_status st;
        uint64_t n = c->len - done;
        if (qimg_chain_block_status(src, s->job->base, c->src_off + done, n, &st) == 0 &&
            st.bytes && st.bytes < n)
            n = st.bytes;
        if (qimg_node_pread(src, c->src_off + done, n, buf + done, 0) < 0)
            return c->pos + done;
        done += n;
    }
    return c->pos;
}

static int read_chunk(struct copy_state *s, const struct chunk *c, uint8_t *buf)
{
    if (c->ext->mixed)
        return read_mixed(s, c, buf);
    struct qimg_node *src = s->job->src[c->ext->src].node;
    int ret = qimg_node_pread(src, c->src_off, c->len, buf, 0);
    if (ret < 0 && s->job->salvage) {
        read_salvaging(s, c, src, buf);
        ret = 0;
    }
    if (ret < 0)
        fail(s, QIMG_COPY_FAILED_READ, failed_run(s, c, src, buf), ret,
             "error while reading at byte");
    return ret;
}

/*
 * Wait for this chunk's turn to write; false when a failure before it stopped
 * the job meanwhile. (The chunks before it were all handed out before it, so
 * none of them is given up: its turn comes.)
 */
static bool wait_turn(struct copy_state *s, const struct chunk *c)
{
    pthread_mutex_lock(&s->lock);
    while (may_write(s, c) && !s->job->out_of_order && c->seq != s->seq_write)
        pthread_cond_wait(&s->turn[c->seq % QIMG_COPY_MAX_WORKERS], &s->lock);
    bool ok = may_write(s, c);
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static int write_zeroes(struct copy_state *s, uint64_t pos, uint64_t len)
{
    if (s->job->target_is_zero)
        return 0;
    int ret = qimg_node_pwrite_zeroes(s->job->dst, s->job->dst_offset + pos, len,
                                      QIMG_REQ_MAY_UNMAP);
    if (ret < 0)
        fail(s, QIMG_COPY_FAILED_WRITE, pos, ret, "error while writing at byte");
    return ret;
}

static int write_data(struct copy_state *s, uint64_t pos, uint64_t len, const uint8_t *buf)
{
    int ret;
    if (s->job->compress)
        ret = qimg_node_pwrite_compressed(s->job->dst, s->job->dst_offset + pos, len, buf);
    else
        ret = qimg_node_pwrite(s->job->dst, s->job->dst_offset + pos, len, buf, 0);
    if (ret < 0)
        fail(s, QIMG_COPY_FAILED_WRITE, pos, ret, "error while writing at byte");
    return ret;
}

/*
 * Write a chunk of data, zero runs of whole sparse_size units (aligned to
 * target offsets) as zero writes. Compressed targets get whole clusters.
 */
static int write_scanned(struct copy_state *s, const struct chunk *c, const uint8_t *buf)
{
    uint64_t unit = s->job->compress ? s->cluster : s->job->no_zero_scan ? 0 : s->job->sparse_size;
    uint64_t abs0 = s->job->dst_offset + c->pos;
    if (!unit)
        return write_data(s, c->pos, c->len, buf);
    uint64_t i = 0;
    while (i < c->len) {
        bool zero = false;
        uint64_t run = 0;
        while (i + run < c->len) {
            uint64_t at = i + run;
            uint64_t next = ((abs0 + at) / unit + 1) * unit - abs0;
            if (next > c->len)
                next = c->len;
            bool z = qimg_is_zero(buf + at, next - at);
            if (run && z != zero)
                break;
            zero = z;
            run = next - i;
            if (s->job->compress && !zero)
                break; /* one compressed cluster per request */
        }
        int ret = zero ? write_zeroes(s, c->pos + i, run) : write_data(s, c->pos + i, run, buf + i);
        if (ret < 0)
            return ret;
        i += run;
    }
    return 0;
}

/*
 * Flush while the other workers go on copying, once enough data has been
 * written since the last flush; called with the lock held, returns with it
 * held. A page cache holds gigabytes of dirty data before it writes any back
 * on its own, and the final flush would then wait for all of it; flushing
 * ahead lets the disk work during the copy (bench/run "commit 3 layers").
 */
static void flush_ahead(struct copy_state *s)
{
    if (!s->job->flush || s->flushing || s->stop || s->unflushed < QIMG_COPY_FLUSH_AHEAD)
        return;
    s->flushing = true;
    s->unflushed = 0;
    pthread_mutex_unlock(&s->lock);
    int ret = qimg_node_flush(s->job->dst);
    if (ret < 0)
        fail(s, QIMG_COPY_FAILED_FLUSH, 0, ret, NULL);
    pthread_mutex_lock(&s->lock);
    s->flushing = false;
}

/* Mark the chunk written: the next one's turn, progress. */
static void finish_chunk(struct copy_state *s, const struct chunk *c)
{
    pthread_mutex_lock(&s->lock);
    s->seq_write++;
    if (c->ext->kind == EXT_DATA && !s->stop) {
        s->done += c->len;
        s->unflushed += c->len;
        if (s->job->progress)
            s->job->progress(s->job->opaque, s->done, s->total);
    }
    pthread_cond_signal(&s->turn[s->seq_write % QIMG_COPY_MAX_WORKERS]);
    flush_ahead(s);
    pthread_mutex_unlock(&s->lock);
}

/*
 * Copy offload (-C): the storage copies the chunk (copy_file_range) where
 * the chain allows it; any error means read and write instead.
 */
static int offload_chunk(struct copy_state *s, const struct chunk *c)
{
    struct qimg_node *src = s->job->src[c->ext->src].node;
    return qimg_node_copy_range(src, c->src_off, s->job->dst, s->job->dst_offset + c->pos,
                                c->len);
}

/*
 * Compressing on every worker: the clusters of a chunk are compressed
 * before the chunk's turn to write, without any lock, so that in-order
 * writes only serialise the (short) stores. Per cluster of the chunk:
 * clen[i] > 0 compressed into cbuf at coff[i], 0 all zeroes, -1 stored plainly.
 */
struct cchunk {
    uint8_t *cbuf;
    long *clen;
    size_t *coff;
    size_t n;
};

static int compress_chunk(struct copy_state *s, const struct chunk *c, const uint8_t *buf,
                          struct cchunk *cc)
{
    uint64_t abs0 = s->job->dst_offset + c->pos;
    size_t used = 0;
    cc->n = 0;
    for (uint64_t i = 0; i < c->len;) {
        uint64_t next = ((abs0 + i) / s->cluster + 1) * s->cluster - abs0;
        uint64_t n = (next < c->len ? next : c->len) - i;
        long clen = 0;
        if (!qimg_is_zero(buf + i, n)) {
            clen = qimg_node_compress(s->job->dst, buf + i, n, cc->cbuf + used, s->cluster);
            if (clen == -ENOSPC || clen == 0)
                clen = -1;
            else if (clen < 0) {
                fail(s, QIMG_COPY_FAILED_WRITE, c->pos + i, (int)clen,
                     "error while writing at byte");
                return (int)clen;
            }
        }
        cc->clen[cc->n] = clen;
        cc->coff[cc->n] = used;
        if (clen > 0)
            used += (size_t)clen;
        cc->n++;
        i += n;
    }
    return 0;
}

/* Store a compressed chunk cluster by cluster; zero runs as zero writes. */
static int write_compressed_chunk(struct copy_state *s, const struct chunk *c, const uint8_t *buf,
                                  const struct cchunk *cc)
{
    uint64_t abs0 = s->job->dst_offset + c->pos;
    uint64_t i = 0;
    for (size_t k = 0; k < cc->n;) {
        uint64_t next = ((abs0 + i) / s->cluster + 1) * s->cluster - abs0;
        uint64_t n = (next < c->len ? next : c->len) - i;
        int ret;
        if (cc->clen[k] == 0) {
            /* Merge the run of zero clusters into one request. */
            uint64_t run = n;
            size_t m = k + 1;
            while (m < cc->n && cc->clen[m] == 0) {
                uint64_t nn = c->len - (i + run) < s->cluster ? c->len - (i + run) : s->cluster;
                run += nn;
                m++;
            }
            ret = write_zeroes(s, c->pos + i, run);
            i += run;
            k = m;
        } else {
            if (cc->clen[k] > 0)
                ret = qimg_node_pwrite_precompressed(s->job->dst, abs0 + i, n, cc->cbuf + cc->coff[k],
                                                     (size_t)cc->clen[k]);
            else
                ret = qimg_node_pwrite(s->job->dst, abs0 + i, n, buf + i, 0);
            if (ret < 0)
                fail(s, QIMG_COPY_FAILED_WRITE, c->pos + i, ret, "error while writing at byte");
            i += n;
            k++;
        }
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int cchunk_init(struct copy_state *s, struct cchunk *cc)
{
    size_t max = s->buf_size / s->cluster + 2;
    cc->cbuf = qimg_alloc_aligned(s->buf_size + s->cluster);
    cc->clen = calloc(max, sizeof(*cc->clen));
    cc->coff = calloc(max, sizeof(*cc->coff));
    return cc->cbuf && cc->clen && cc->coff ? 0 : -ENOMEM;
}

static void cchunk_free(struct cchunk *cc)
{
    free(cc->cbuf);
    free(cc->clen);
    free(cc->coff);
}

static void process_chunk(struct copy_state *s, struct chunk *c, uint8_t **buf,
                          struct cchunk *cc)
{
    const struct extent *e = c->ext;
    bool offloaded = false;

    if (e->kind == EXT_DATA && !e->known_zero) {
        qimg_ratelimit_wait(&s->rl, c->len);
        bool try_offload = __atomic_load_n(&s->offload, __ATOMIC_RELAXED);
        if (try_offload) {
            if (!wait_turn(s, c))
                return;
            if (offload_chunk(s, c) == 0) {
                offloaded = true;
                __atomic_store_n(&s->offloaded, true, __ATOMIC_RELAXED);
            } else {
                __atomic_store_n(&s->offload, false, __ATOMIC_RELAXED);
            }
        }
        if (!offloaded) {
            if (!*buf) {
                *buf = qimg_alloc_aligned(s->buf_size);
                if (!*buf) {
                    fail(s, QIMG_COPY_FAILED_SETUP, c->pos, -ENOMEM, NULL);
                    return;
                }
            }
            if (read_chunk(s, c, *buf) < 0)
                return;
            if (s->split_compress) {
                if (!cc->cbuf && cchunk_init(s, cc) < 0) {
                    fail(s, QIMG_COPY_FAILED_SETUP, c->pos, -ENOMEM, NULL);
                    return;
                }
                if (compress_chunk(s, c, *buf, cc) < 0 || !wait_turn(s, c) ||
                    write_compressed_chunk(s, c, *buf, cc) < 0)
                    return;
            } else if (!wait_turn(s, c) || write_scanned(s, c, *buf) < 0) {
                return;
            }
        }
    } else if (e->kind == EXT_DATA) {
        /* -S 0 over a hole: allocate it with written zeroes. */
        if (!wait_turn(s, c) || write_data(s, c->pos, c->len, s->zero_buf) < 0)
            return;
    } else {
        if (!wait_turn(s, c) || write_zeroes(s, c->pos, c->len) < 0)
            return;
    }
    finish_chunk(s, c);
}

static void worker(void *p)
{
    struct copy_state *s = p;
    uint8_t *buf = NULL;
    struct cchunk cc = {0};
    struct chunk c;

    pthread_mutex_lock(&s->lock);
    while (!s->stop && next_chunk(s, &c)) {
        const struct extent *e = c.ext;
        if (e->kind == EXT_SKIP || (e->kind == EXT_ZERO && s->job->target_is_zero))
            continue; /* nothing to write: no turn needed */
        c.seq = s->seq_assign++;
        pthread_mutex_unlock(&s->lock);
        process_chunk(s, &c, &buf, &cc);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    free(buf);
    cchunk_free(&cc);
}

int qimg_copy_run(const struct qimg_copy_job *job, struct qimg_copy_result *res,
                  struct qimg_error *err)
{
    struct copy_state s = {.job = job, .stop_pos = UINT64_MAX};
    unsigned workers = job->workers ? job->workers : QIMG_COPY_DEFAULT_WORKERS;
    int ret;

    if (workers > QIMG_COPY_MAX_WORKERS)
        workers = QIMG_COPY_MAX_WORKERS;
    /*
     * Requests are synchronous calls on worker threads: beyond two per CPU
     * they only add contention on the in-order turn and the target's lock
     * (bench/run: raw->raw on 2 CPUs takes 0.52 s on 4 threads, 0.60 s on 8).
     */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus > 0 && workers > 2 * (unsigned long)cpus)
        workers = 2 * (unsigned)cpus;
    s.buf_size = job->buf_size ? job->buf_size : QIMG_COPY_DEFAULT_BUF;
    s.offload = job->offload && !job->compress;
    uint64_t target_cluster = qimg_node_cluster_size(job->dst);
    /*
     * Chunks stay at the default size also for big target clusters (1-2 MiB:
     * vpc dynamic, vdi, qcow2 with cluster_size=2M), although chunks of
     * four clusters would halve qcow2's metadata writes: every worker's buffer
     * is read, scanned and then copied into the page cache, and with four
     * workers on 8 MiB chunks that no longer fits the CPU caches: the kernel's
     * copy into the page cache (copy_folio_from_iter_atomic) then ran at a
     * third of its speed, and the copies took 1.3x-1.6x longer (paired runs on
     * a loaded machine: raw->vpc dynamic 1.04x -> 0.65x of qemu-img's time,
     * raw->vdi 1.38x -> 0.88x, qcow2 2M 1.62x -> 0.84x; doc/benchmarks.md).
     */
    if (target_cluster <= s.buf_size && !(target_cluster & (target_cluster - 1)))
        s.align = target_cluster;
    if (job->compress) {
        s.cluster = qimg_node_cluster_size(job->dst);
        if (!s.cluster)
            s.cluster = 64 * 1024;
        if (s.buf_size < s.cluster)
            s.buf_size = s.cluster;
        s.align = s.cluster;
        /* Can the target compress outside its lock (qimg_node_compress)? */
        const struct qimg_driver *d = qimg_node_driver(job->dst);
        s.split_compress = d->compress && d->pwrite_precompressed;
    }
    pthread_mutex_init(&s.lock, NULL);
    for (size_t i = 0; i < QIMG_COPY_MAX_WORKERS; i++)
        pthread_cond_init(&s.turn[i], NULL);
    qimg_ratelimit_init(&s.rl, job->rate_limit);

    ret = map_sources(&s);
    if (ret < 0)
        goto out;
    if (job->sparse_size == 0) {
        for (size_t i = 0; i < s.n_ext && !s.zero_buf; i++)
            if (s.ext[i].known_zero)
                s.zero_buf = xcalloc(1, s.buf_size);
    }
    qimg_run_parallel(workers, worker, &s);
    ret = s.ret;
    if (ret == 0 && job->flush) {
        ret = qimg_node_flush(job->dst);
        if (ret < 0) {
            s.res.failure = QIMG_COPY_FAILED_FLUSH;
            s.res.errnum = -ret;
            qimg_error_set(&s.err, ret, "error while flushing: %s", strerror(-ret));
        }
    }
out:
    s.res.data_bytes = s.total;
    s.res.offloaded = s.offloaded;
    if (ret < 0 && err)
        qimg_error_set(err, ret, "%s", s.err.msg);
    if (res)
        *res = s.res;
    qimg_ratelimit_destroy(&s.rl);
    for (size_t i = 0; i < QIMG_COPY_MAX_WORKERS; i++)
        pthread_cond_destroy(&s.turn[i]);
    pthread_mutex_destroy(&s.lock);
    free(s.ext);
    free(s.orig);
    free(s.zero_buf);
    return ret;
}
