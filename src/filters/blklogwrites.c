/* SPDX-License-Identifier: MIT */
/*
 * The "blklogwrites" filter: passes requests to its "file" child and records
 * every write, zero write, discard and flush in its "log" child in the Linux
 * dm-log-writes format (Documentation/admin-guide/device-mapper/
 * log-writes.rst), byte for byte as QEMU writes it:
 *  - sector 0: the superblock { le64 magic 0x6a736677736872; le64 version 1;
 *    le64 nr_entries; le32 sectorsize }, zero padded to one log sector;
 *  - then one entry per request: a header sector { le64 sector; le64
 *    nr_sectors; le64 flags; le64 data_len = 0 } and, except for discards,
 *    nr_sectors sectors of data. sector and nr_sectors count log sectors
 *    (log-sector-size, 32 B .. 8 MiB, a power of two; requests are aligned to
 *    it). Zero writes are logged as writes of zeroes.
 *  - a flush adds a FLUSH entry (sector 0, nr 0) when requests completed since
 *    the last one, then rewrites the superblock; so does closing the node.
 *    The superblock is also rewritten every log-super-update-interval entries.
 *    A FUA write (every write in writethrough mode) flushes after its entry.
 * log-append=on continues the log found (its superblock's sector size);
 * otherwise the log starts over at sector 1 (the rest of the file stays).
 */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/builtin.h"
#include "core/node-internal.h"
#include "filters/filter.h"
#include "util/bytes.h"
#include "util/mem.h"

#define LOG_MAGIC 0x6a736677736872ull
#define LOG_VERSION 1
#define LOG_FLUSH_FLAG (1u << 0)
#define LOG_DISCARD_FLAG (1u << 2)
#define LOG_SECTOR_MIN 32u        /* an entry header must fit */
#define LOG_SECTOR_MAX (8u << 20) /* QEMU's bound */
#define LOG_DEFAULT_SECTOR 512u
#define LOG_DEFAULT_INTERVAL 4096u

struct blklog_state {
    struct qimg_node *log;
    pthread_mutex_t lock;
    uint32_t sector_size;
    unsigned sector_bits;
    uint64_t cur_sector; /* where the next entry goes */
    uint64_t nr_entries;
    uint64_t update_interval;
    /* QEMU's write generations: requests completed, and how many a flush covered */
    uint64_t write_gen, flushed_gen;
};

static const struct qimg_opt_desc blklog_open_opts[] = {
    {"log-append", QIMG_OPT_BOOL, "Append to an existing log", NULL},
    {"log-sector-size", QIMG_OPT_SIZE, "Log sector size", NULL},
    {"log-super-update-interval", QIMG_OPT_NUMBER,
     "Log superblock update interval (# of write requests)", NULL},
    {0},
};

static bool valid_sector_size(uint64_t v)
{
    return v >= LOG_SECTOR_MIN && v <= LOG_SECTOR_MAX && !(v & (v - 1));
}

static unsigned log2_of(uint64_t v)
{
    unsigned b = 0;
    while ((1ull << b) < v)
        b++;
    return b;
}

static int write_super(struct blklog_state *s)
{
    uint8_t *sec = xcalloc(1, s->sector_size);
    qimg_put_le64(sec, LOG_MAGIC);
    qimg_put_le64(sec + 8, LOG_VERSION);
    qimg_put_le64(sec + 16, s->nr_entries);
    qimg_put_le32(sec + 24, s->sector_size);
    int ret = qimg_node_pwrite(s->log, 0, s->sector_size, sec, 0);
    free(sec);
    return ret;
}

/* Append one entry (header, then data unless discard: buf NULL writes zeroes). Under lock. */
static int log_entry(struct blklog_state *s, uint64_t sector, uint64_t nr, uint64_t flags,
                     const void *buf)
{
    uint8_t *hdr = xcalloc(1, s->sector_size);
    qimg_put_le64(hdr, sector);
    qimg_put_le64(hdr + 8, nr);
    qimg_put_le64(hdr + 16, flags);
    qimg_put_le64(hdr + 24, 0);
    uint64_t off = s->cur_sector << s->sector_bits;
    int ret = qimg_node_pwrite(s->log, off, s->sector_size, hdr, 0);
    free(hdr);
    bool data = !(flags & (LOG_DISCARD_FLAG | LOG_FLUSH_FLAG)) && nr;
    if (ret == 0 && data && buf)
        ret = qimg_node_pwrite(s->log, off + s->sector_size, nr << s->sector_bits, buf, 0);
    else if (ret == 0 && data)
        ret = qimg_node_pwrite_zeroes(s->log, off + s->sector_size, nr << s->sector_bits, 0);
    if (ret < 0)
        return ret;
    s->cur_sector += 1 + (data ? nr : 0);
    s->nr_entries++;
    if (s->nr_entries % s->update_interval == 0)
        ret = write_super(s);
    return ret;
}

/*
 * A flush adds a FLUSH entry and the superblock when requests completed since
 * the last one (QEMU skips a flush with nothing new). A FUA write flushes
 * before it counts as completed, so its own entry waits for the next flush.
 */
static int log_flush(struct qimg_node *n)
{
    struct blklog_state *s = n->opaque;
    if (n->flags & QIMG_O_NO_FLUSH)
        return 0;
    pthread_mutex_lock(&s->lock);
    int ret = 0;
    uint64_t gen = s->write_gen;
    if (gen != s->flushed_gen) {
        ret = log_entry(s, 0, 0, LOG_FLUSH_FLAG, NULL);
        if (ret == 0)
            ret = write_super(s);
        if (ret == 0)
            s->flushed_gen = gen;
    }
    pthread_mutex_unlock(&s->lock);
    if (ret == 0)
        ret = qimg_node_flush(s->log);
    return ret;
}

/* log-append=on: continue after the last entry of the log found. */
static int find_log_end(struct blklog_state *s, struct qimg_error *err)
{
    int64_t len = qimg_node_length(s->log);
    if (len < 0)
        return qimg_error_errno(err, (int)len, "Could not get the size of the log");
    if (len == 0) /* nothing yet: a new log */
        return 0;
    uint8_t sup[32] = {0};
    int ret = qimg_node_pread(s->log, 0, len < 32 ? (uint64_t)len : 32, sup, 0);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not read log superblock");
    if (qimg_le64(sup) != LOG_MAGIC)
        return qimg_error_set(err, -EINVAL, "Invalid log superblock magic");
    uint64_t version = qimg_le64(sup + 8);
    if (version != LOG_VERSION)
        return qimg_error_set(err, -EINVAL, "Unsupported log version %llu",
                              (unsigned long long)version);
    uint32_t ss = qimg_le32(sup + 24);
    if (!valid_sector_size(ss))
        return qimg_error_set(err, -EINVAL, "Invalid log sector size %u", ss);
    s->sector_size = ss;
    s->sector_bits = log2_of(ss);
    uint64_t entries = qimg_le64(sup + 16), cur = 1;
    uint64_t last = (uint64_t)len >> s->sector_bits;
    for (uint64_t i = 0; i < entries; i++) {
        uint8_t hdr[32];
        if (cur >= last)
            return qimg_error_set(err, -EINVAL, "Log entry %llu lies beyond the end of the log",
                                  (unsigned long long)i);
        ret = qimg_node_pread(s->log, cur << s->sector_bits, sizeof(hdr), hdr, 0);
        if (ret < 0)
            return qimg_error_errno(err, ret, "Could not read log entry");
        uint64_t nr = qimg_le64(hdr + 8), flags = qimg_le64(hdr + 16);
        uint64_t data = (flags & LOG_DISCARD_FLAG) ? 0 : nr;
        if (data > last - cur)
            return qimg_error_set(err, -EINVAL, "Log entry %llu lies beyond the end of the log",
                                  (unsigned long long)i);
        cur += 1 + data;
    }
    s->cur_sector = cur;
    s->nr_entries = entries;
    return 0;
}

static int take_options(struct blklog_state *s, struct qimg_opts *opts, bool *append,
                        struct qimg_error *err)
{
    int ret = qimg_opts_take_bool(opts, "log-append", append, err);
    if (ret < 0)
        return ret;
    uint64_t ss = LOG_DEFAULT_SECTOR;
    bool has_ss = qimg_opts_has(opts, "log-sector-size");
    if (*append && has_ss)
        return qimg_error_set(err, -EINVAL, "log-append and log-sector-size are mutually "
                                            "exclusive");
    if ((ret = qimg_opts_take_size(opts, "log-sector-size", &ss, err)) < 0)
        return ret;
    if (!valid_sector_size(ss))
        return qimg_error_set(err, -EINVAL, "Invalid log sector size %llu",
                              (unsigned long long)ss);
    s->sector_size = (uint32_t)ss;
    s->sector_bits = log2_of(ss);
    s->update_interval = LOG_DEFAULT_INTERVAL;
    const char *v = qimg_opts_take(opts, "log-super-update-interval");
    if (v) {
        char *end;
        unsigned long long iv = strtoull(v, &end, 10);
        if (!*v || *end || v[0] == '-')
            return qimg_error_set(err, -EINVAL,
                                  "Parameter 'log-super-update-interval' expects a number");
        if (iv == 0)
            return qimg_error_set(err, -EINVAL, "Invalid log superblock update interval %llu",
                                  iv);
        s->update_interval = iv;
    }
    return 0;
}

static int blklog_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct blklog_state *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    n->opaque = s;
    struct qimg_opts *log_opts = qimg_opts_new();
    int ret = 0;
    const char *ref = qimg_opts_take(opts, "log");
    if (ref) { /* a string child names an existing node; qemu-img has none */
        ret = qimg_error_set(err, -EINVAL, "Cannot find device='%s' nor node-name='%s'", ref,
                             ref);
        goto out;
    }
    qimg_opts_extract_prefix(opts, "log.", log_opts);
    ret = filter_open_child(&s->log, "log", NULL, log_opts, false, n->flags, err);
    if (ret < 0)
        goto out;
    unsigned perm = QIMG_PERM_CONSISTENT_READ | ((n->flags & QIMG_O_RDWR) ? QIMG_PERM_WRITE : 0);
    if ((ret = qimg_node_set_perm(s->log, perm, QIMG_PERM_ALL, err)) < 0)
        goto out;
    bool append = false;
    if ((ret = take_options(s, opts, &append, err)) < 0)
        goto out;
    s->cur_sector = 1;
    if (append && (ret = find_log_end(s, err)) < 0)
        goto out;
    int64_t flen = qimg_node_length(n->file);
    if ((n->flags & QIMG_O_RDWR) && flen >= 0 && (uint64_t)flen % s->sector_size) {
        ret = qimg_error_set(err, -EINVAL, "Cannot get 'write' permission without 'resize': "
                                           "Image size is not a multiple of request alignment");
        goto out;
    }
    n->request_alignment = n->file->request_alignment;
    if (s->sector_size > n->request_alignment)
        n->request_alignment = s->sector_size;
out:
    qimg_opts_free(log_opts);
    return ret;
}

static void blklog_close(struct qimg_node *n)
{
    struct blklog_state *s = n->opaque;
    if (!s)
        return;
    if (s->log && (n->flags & QIMG_O_RDWR))
        (void)log_flush(n);
    qimg_node_unref(s->log);
    pthread_mutex_destroy(&s->lock);
    free(s);
    n->opaque = NULL;
}

static int logged(struct qimg_node *n, uint64_t off, uint64_t len, uint64_t flags,
                  const void *buf, unsigned req_flags)
{
    struct blklog_state *s = n->opaque;
    pthread_mutex_lock(&s->lock);
    int ret = log_entry(s, off >> s->sector_bits, len >> s->sector_bits, flags, buf);
    pthread_mutex_unlock(&s->lock);
    /* writethrough: every write is FUA */
    if (ret == 0 && ((req_flags & QIMG_REQ_FUA) || (n->flags & QIMG_O_WRITETHROUGH)))
        ret = log_flush(n);
    pthread_mutex_lock(&s->lock);
    s->write_gen++;
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int blklog_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                         unsigned flags)
{
    int ret = qimg_node_pwrite(n->file, off, len, buf, flags & ~QIMG_REQ_FUA);
    return ret < 0 ? ret : logged(n, off, len, 0, buf, flags);
}

static int blklog_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    int ret = qimg_node_pwrite_zeroes(n->file, off, len, flags & ~QIMG_REQ_FUA);
    return ret < 0 ? ret : logged(n, off, len, 0, NULL, flags);
}

static int blklog_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    int ret = qimg_node_pdiscard(n->file, off, len);
    return ret < 0 ? ret : logged(n, off, len, LOG_DISCARD_FLAG, NULL, 0);
}

static int blklog_flush(struct qimg_node *n)
{
    int ret = log_flush(n);
    return ret < 0 ? ret : qimg_node_flush(n->file);
}

static struct qimg_node *blklog_extra_child(struct qimg_node *n, size_t i, char *name,
                                           size_t cap)
{
    struct blklog_state *s = n->opaque;
    snprintf(name, cap, "log");
    return i == 0 ? s->log : NULL;
}

/* Always a json: name: the driver, its options, the log and the file. */
static char *blklog_plain_filename(struct qimg_node *n)
{
    struct blklog_state *s = n->opaque;
    struct qimg_json *d = filter_name_dict(n, blklog_open_opts);
    qimg_json_add(d, "log", qimg_node_describe(s->log));
    qimg_json_add(d, "file", qimg_node_describe(n->file));
    return filter_json_name(d);
}

const struct qimg_driver qimg_blklogwrites_driver = {
    .name = "blklogwrites",
    QIMG_FILTER_PASSTHROUGH,
    .open_opts = blklog_open_opts,
    .open = blklog_open,
    .close = blklog_close,
    .pwrite = blklog_pwrite,
    .pwrite_zeroes = blklog_pwrite_zeroes,
    .pdiscard = blklog_pdiscard,
    .flush = blklog_flush,
    .pwrite_compressed = NULL,
    .get_info = NULL,
    .extra_child = blklog_extra_child,
    .plain_filename = blklog_plain_filename,
};
