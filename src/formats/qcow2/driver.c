/* SPDX-License-Identifier: MIT */
/*
 * The qcow2 driver: open (header, L1, refcount table, caches), info,
 * truncate, flush and the vtable. I/O lives in io.c, create in create.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/qcow2/qcow2.h"
#include "util/mem.h"

#define L2_CACHE_BYTES (16u << 20)
#define RB_CACHE_BYTES (4u << 20)

static int qcow2_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len >= 8 && qcow2_be32(buf) == QCOW2_MAGIC && qcow2_be32(buf + 4) >= 2)
        return 100;
    return 0;
}

static size_t cache_entries(uint64_t bytes, uint64_t table, size_t lo, size_t hi)
{
    uint64_t n = bytes / table;
    return n < lo ? lo : n > hi ? hi : (size_t)n;
}

static int load_l1(struct qimg_node *n, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    s->l1 = xcalloc(s->l1_size ? s->l1_size : 1, 8);
    if (!s->l1_size)
        return 0;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get the size of the image file");
    uint64_t bytes = (uint64_t)s->l1_size * 8;
    /* Past the end of the file the table reads as zeroes, as QEMU reads it. */
    uint64_t have = s->l1_offset >= (uint64_t)flen ? 0 : (uint64_t)flen - s->l1_offset;
    if (have > bytes)
        have = bytes;
    uint8_t *buf = xcalloc(1, bytes);
    int ret = have ? qimg_node_pread(n->file, s->l1_offset, have, buf, 0) : 0;
    if (ret < 0) {
        free(buf);
        return qimg_error_errno(err, ret, "Could not read L1 table");
    }
    for (uint64_t i = 0; i < s->l1_size; i++) {
        s->l1[i] = qcow2_be64(buf + i * 8);
        uint64_t off = s->l1[i] & QCOW2_OFFSET_MASK;
        if (off && off % s->cluster_size == 0)
            qcow2_meta_add(s, off);
    }
    free(buf);
    return 0;
}

static int qcow2_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct qcow2_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    s->read_only = !(n->flags & QIMG_O_RDWR);
    s->checking = n->flags & QIMG_O_CHECK;
    int ret = qcow2_header_read(n, s, err);
    if (ret < 0)
        return ret;
    ret = qcow2_data_file_open(n, opts, err); /* datafile.c */
    if (ret < 0)
        return ret;
    if ((s->crypt_method || s->crypto_ext) && (ret = qcow2_crypt_open(n, opts, err)) < 0)
        return ret; /* crypt.c */
    if (!s->read_only && (s->incompat & QCOW2_INCOMPAT_CORRUPT) && !(n->flags & QIMG_O_CHECK))
        return qimg_error_set(err, -EACCES, "qcow2: Image is corrupt; cannot be opened read/write");
    ret = load_l1(n, err);
    if (ret == 0)
        ret = qcow2_refcount_load(n, err);
    if (ret == 0)
        ret = qcow2_snapshots_load(n, err);
    if (ret == 0)
        ret = qcow2_parse_runtime_opts(n, opts, &s->runtime, err); /* options.c */
    if (ret < 0)
        return ret;
    /* Sizes given as options bound the caches; ours hold whole tables, at least 2 and 4. */
    const struct qcow2_runtime_opts *r = &s->runtime;
    qcow2_cache_init(&s->l2_cache,
                     r->cache_sizes_given
                         ? cache_entries(r->l2_cache_bytes, s->cluster_size, 2, 1u << 20)
                         : cache_entries(L2_CACHE_BYTES, s->cluster_size, 16, 1024),
                     s->cluster_size);
    qcow2_cache_init(&s->rb_cache,
                     r->cache_sizes_given
                         ? cache_entries(r->rb_cache_bytes, s->cluster_size, 4, 1u << 20)
                         : cache_entries(RB_CACHE_BYTES, s->cluster_size, 8, 256),
                     s->cluster_size);
    uint32_t fa = n->file->request_alignment;
    n->request_alignment = fa > 512 ? fa : 512;
    /* Lazy refcounts left the image dirty: rebuild its refcounts from the L1/L2 tables. */
    if (!s->read_only && (s->incompat & QCOW2_INCOMPAT_DIRTY) && !(n->flags & QIMG_O_CHECK)) {
        struct qimg_check_result res;
        s->checking = true; /* repairs are written through, deferred nothing */
        ret = qcow2_check(n, &res, QIMG_CHECK_FIX_LEAKS | QIMG_CHECK_FIX_ERRORS, err);
        s->checking = false;
        if (ret < 0 || res.check_errors)
            return qimg_error_errno(err, ret < 0 ? ret : -EIO, "Could not repair dirty image");
    }
    ret = qcow2_bitmaps_load(n, err); /* bitmap.c keeps them, in use while open */
    if (ret < 0)
        return ret;
    /*
     * qcow2.txt: autoclear bits we cannot maintain must be cleared before
     * writing; as QEMU, the unknown ones on every read-write open (check -r
     * too), the known ones kept (bit 0 even without a bitmaps extension).
     */
    uint64_t kept = QCOW2_AUTOCLEAR_DATA_FILE_RAW | QCOW2_AUTOCLEAR_BITMAPS;
    if (!s->read_only && s->version >= 3 && s->autoclear & ~kept) {
        uint8_t be[8];
        s->autoclear &= kept;
        qcow2_put64(be, s->autoclear);
        ret = qcow2_header_update_fields(n, 88, be, 8);
        if (ret < 0)
            return qimg_error_errno(err, ret, "Could not update qcow2 header");
    }
    return 0;
}

/*
 * Lazy refcounts: the refcount blocks this session deferred go to the file
 * before the dirty bit may be cleared. A failure keeps the bit set (the next
 * read-write open repairs the refcounts) and is reported as QEMU reports it.
 */
static int writeback_deferred(struct qimg_node *n)
{
    int ret = qcow2_refcount_writeback(n);
    if (ret < 0)
        fprintf(stderr, "%s: Failed to flush the refcount block cache: %s\n",
                program_invocation_short_name, strerror(-ret));
    return ret;
}

/* Deferred L2 entries on close; a failure keeps the image dirty, reported as QEMU does. */
static int l2_close_writeback(struct qimg_node *n)
{
    int ret = qcow2_l2_writeback(n, false); /* close flushes next */
    if (ret < 0)
        fprintf(stderr, "%s: Failed to flush the L2 table cache: %s\n",
                program_invocation_short_name, strerror(-ret));
    return ret;
}

static void qcow2_close(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    if (!s)
        return;
    if (!s->read_only && n->file)
        qcow2_bitmaps_store(n); /* a failure leaves them in use: inconsistent, not corrupt */
    if (!s->read_only && n->file && l2_close_writeback(n) == 0 && writeback_deferred(n) == 0 &&
        qimg_node_flush(n->file) == 0)
        qcow2_mark_clean(n); /* as QEMU on close: only check leaves a dirty image open */
    qcow2_cache_destroy(&s->l2_cache);
    qcow2_cache_destroy(&s->rb_cache);
    qcow2_state_free_ext(s);
    qcow2_snapshots_free(s);
    qcow2_bitmaps_free(s);
    qcow2_crypt_free(s);
    free(s->l1);
    free(s->rt);
    free(s->freed);
    free(s->meta);
    free(s);
    n->opaque = NULL;
}

static int64_t qcow2_get_length(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    return (int64_t)s->size;
}

static bool qcow2_has_zero_init(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    /* As QEMU: a preallocated encrypted image reads its zeroed clusters as noise. */
    if (s->crypt && s->l1_size && s->l1[0])
        return false;
    return !n->backing_file || !n->backing_file[0];
}

/* Deferred L2 entries (cache.c) to the file, under the node's lock. */
static int l2_settle(struct qimg_node *n, bool then_barrier)
{
    pthread_mutex_lock(&n->lock);
    int ret = qcow2_l2_writeback(n, then_barrier);
    pthread_mutex_unlock(&n->lock);
    return ret;
}

/* QEMU's flush writes its L2 and refcount caches too (refcounts not while lazily dirty). */
static int qcow2_flush(struct qimg_node *n)
{
    int ret = l2_settle(n, false); /* the flush below orders them before later writes */
    if (ret == 0)
        ret = qcow2_refcount_settle(n);
    return ret < 0 ? ret : qimg_node_flush(n->file);
}

/*
 * Operations that read tables from the file, rewrite them or change what the
 * header points at start from the deferred L2 entries written back: the
 * image on disk is then the one they reason about.
 */
#define SETTLED(ret_err) \
    do { \
        int sret = l2_settle(n, true); \
        if (sret < 0) \
            return qimg_error_errno(ret_err, sret, "Failed to flush the L2 table cache"); \
    } while (0)

static int check_settled(struct qimg_node *n, struct qimg_check_result *res, int fix,
                         struct qimg_error *err)
{
    SETTLED(err);
    return qcow2_check(n, res, fix, err);
}

static int amend_settled(struct qimg_node *n, struct qimg_opts *opts, bool force,
                         struct qimg_error *err)
{
    SETTLED(err);
    return qcow2_amend(n, opts, force, err);
}

static int change_backing_settled(struct qimg_node *n, const char *file, const char *fmt,
                                  struct qimg_error *err)
{
    SETTLED(err);
    return qcow2_change_backing_file(n, file, fmt, err);
}

static int make_empty_settled(struct qimg_node *n, struct qimg_error *err)
{
    SETTLED(err);
    return qcow2_make_empty(n, err);
}

static int snapshot_create_settled(struct qimg_node *n, const struct qimg_snapshot_info *sn,
                                   struct qimg_error *err)
{
    SETTLED(err);
    return qcow2_snapshot_create(n, sn, err);
}

static int snapshot_goto_settled(struct qimg_node *n, const char *id_or_name,
                                 struct qimg_error *err)
{
    SETTLED(err);
    return qcow2_snapshot_goto(n, id_or_name, err);
}

static int snapshot_delete_settled(struct qimg_node *n, const char *id, const char *name,
                                   struct qimg_error *err)
{
    SETTLED(err);
    return qcow2_snapshot_delete(n, id, name, err);
}

/*
 * A guest write, zero write or compressed write ends like one in QEMU's
 * default writethrough mode: what it deferred (lazy decrements) is written
 * back unless the image is dirty (not after a compressed write, nor after a
 * discard, which QEMU does not flush either).
 */
static int l2_request_settle(struct qimg_node *n, unsigned flags)
{
    /* Writethrough (or FUA): the deferred L2 entries too, as QEMU's flush after the request. */
    if (!(n->flags & (QIMG_O_WRITETHROUGH | QIMG_O_META_SYNC)) && !(flags & QIMG_REQ_FUA))
        return 0;
    pthread_mutex_lock(&n->lock);
    int ret = qcow2_l2_writeback(n, false);
    if (ret < 0)
        qcow2_l2_forget_dirty(n); /* the request fails: its entries must not land later */
    pthread_mutex_unlock(&n->lock);
    return ret;
}

static int request_settle(struct qimg_node *n, unsigned flags)
{
    int ret = l2_request_settle(n, flags);
    return ret < 0 ? ret : qcow2_refcount_settle(n);
}

static int qcow2_pwrite_request(struct qimg_node *n, uint64_t off, uint64_t len,
                                const void *buf, unsigned flags)
{
    int ret = qcow2_pwrite(n, off, len, buf, flags);
    return ret < 0 ? ret : request_settle(n, flags);
}

static int qcow2_pwrite_zeroes_request(struct qimg_node *n, uint64_t off, uint64_t len,
                                       unsigned flags)
{
    int ret = qcow2_pwrite_zeroes(n, off, len, flags);
    return ret < 0 ? ret : request_settle(n, flags);
}

static int qcow2_pwrite_compressed_request(struct qimg_node *n, uint64_t off, uint64_t len,
                                           const void *buf)
{
    int ret = qcow2_pwrite_compressed(n, off, len, buf);
    return ret < 0 ? ret : l2_request_settle(n, 0);
}

static int qcow2_pwrite_precompressed_request(struct qimg_node *n, uint64_t off, uint64_t len,
                                              const void *cdata, size_t clen)
{
    int ret = qcow2_pwrite_precompressed(n, off, len, cdata, clen);
    return ret < 0 ? ret : l2_request_settle(n, 0);
}

/*
 * qcow2.txt: saved VM state lives in the image's own address space right
 * after the guest disk, from the next whole L2 span on (what qemu-io info
 * calls "vm state offset"); it is read and written like guest data there.
 */
static uint64_t vm_state_offset(const struct qcow2_state *s)
{
    uint64_t l2_span = s->cluster_size << s->l2_bits;
    return qcow2_div_round_up(s->size, l2_span) * l2_span;
}

static int qcow2_vmstate_rw(struct qimg_node *n, uint64_t pos, void *buf, uint64_t len, bool write)
{
    struct qcow2_state *s = n->opaque;
    uint64_t off = vm_state_offset(s);
    /* The L1 table must be able to address it (QCOW2_MAX_L1_BYTES bounds the area). */
    if (pos > UINT64_MAX - off - len)
        return -EINVAL;
    if (write) {
        uint64_t l2_span = s->cluster_size << s->l2_bits;
        uint64_t need = qcow2_div_round_up(off + pos + len, l2_span);
        /* Writes past the table grow it by half again each step, as QEMU does (resize is exact). */
        uint64_t grown = s->l1_size ? s->l1_size : 1;
        while (grown < need)
            grown = qcow2_div_round_up(grown * 3, 2);
        need = grown;
        if (need > QCOW2_MAX_L1_BYTES / 8)
            return -EFBIG;
        pthread_mutex_lock(&n->lock);
        int ret = qcow2_l1_grow(n, need); /* the L1 table grows to address the state */
        pthread_mutex_unlock(&n->lock);
        if (ret < 0)
            return ret;
        return qcow2_pwrite(n, off + pos, len, buf, 0);
    }
    return qcow2_pread(n, off + pos, len, buf, 0);
}

static int qcow2_get_info(struct qimg_node *n, struct qimg_driver_info *info,
                          struct qimg_error *err)
{
    (void)err;
    struct qcow2_state *s = n->opaque;
    info->cluster_size = s->cluster_size;
    /* qcow2.txt: VM state is stored past the guest area, from the next whole L2 span. */
    info->vm_state_offset = vm_state_offset(s);
    info->dirty = s->incompat & QCOW2_INCOMPAT_DIRTY;
    struct qimg_json *fs = qimg_json_object();
    qimg_json_add_str(fs, "type", "qcow2");
    struct qimg_json *d = qimg_json_add(fs, "data", qimg_json_object());
    qimg_json_add_str(d, "compat", s->version >= 3 ? "1.1" : "0.10");
    if (s->version >= 3) {
        if (s->data_file_name)
            qimg_json_add_str(d, "data-file", s->data_file_name);
        if (s->incompat & QCOW2_INCOMPAT_DATA_FILE)
            qimg_json_add_bool(d, "data-file-raw", s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW);
        qimg_json_add_bool(d, "extended-l2", s->extended_l2);
        qimg_json_add_bool(d, "lazy-refcounts", s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS);
        qimg_json_add_bool(d, "corrupt", s->incompat & QCOW2_INCOMPAT_CORRUPT);
    }
    qimg_json_add_int(d, "refcount-bits", s->refcount_bits);
    struct qimg_json *encrypt = qcow2_crypt_info_json(s);
    if (encrypt)
        qimg_json_add(d, "encrypt", encrypt);
    info->encrypted = s->crypt_method != 0;
    struct qimg_json *bitmaps = s->version >= 3 ? qcow2_bitmaps_info_json(n) : NULL;
    if (bitmaps)
        qimg_json_add(d, "bitmaps", bitmaps);
    qimg_json_add_str(d, "compression-type",
                      s->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
    info->format_specific = fs;
    info->snapshots = qcow2_snapshots_info_json(n);
    return 0;
}

/* Shrink: drop every mapping past the new end, then trim the file to its last used cluster. */
static int shrink(struct qimg_node *n, uint64_t size)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size, l2_span = s->l2_entries * cs;
    uint64_t from = qcow2_align_up(size, cs), old_end = qcow2_align_up(s->size, cs);
    int ret = 0;
    pthread_mutex_lock(&n->lock);
    for (uint64_t a = from; ret == 0 && a < old_end;) {
        uint64_t end = (a / l2_span + 1) * l2_span;
        if (end > old_end)
            end = old_end;
        uint64_t l1_idx = a / l2_span;
        uint8_t *l2;
        uint64_t l2_off;
        ret = qcow2_get_l2(n, a, false, &l2, &l2_off);
        if (ret == 0 && l2 && !(s->l1[l1_idx] & QCOW2_OFLAG_COPIED))
            ret = qcow2_get_l2(n, a, true, &l2, &l2_off);
        if (ret < 0 || !l2) {
            a = end;
            continue;
        }
        uint64_t first = (a / cs) & (s->l2_entries - 1), count = (end - a) / cs;
        struct qcow2_entry *rel = xcalloc(count, sizeof(*rel));
        for (uint64_t i = 0; i < count; i++) {
            struct qcow2_entry z = {0};
            qcow2_l2_get_entry(s, l2, first + i, &rel[i]);
            qcow2_l2_set_entry(s, l2, first + i, &z);
        }
        ret = qcow2_meta_write(n, l2_off + first * s->l2_entry_bytes,
                               l2 + first * s->l2_entry_bytes, count * s->l2_entry_bytes);
        for (uint64_t i = 0; ret == 0 && i < count; i++)
            ret = qcow2_entry_release(n, &rel[i]);
        free(rel);
        if (ret == 0 && first == 0 && a >= size) {
            /* The whole table is past the end: unlink and free it. */
            s->l1[l1_idx] = 0;
            qimg_debug_event(n->file, QIMG_DBG_L1_SHRINK_WRITE_TABLE);
            ret = qcow2_l1_write_entry(n, l1_idx);
            if (ret == 0)
                qimg_debug_event(n->file, QIMG_DBG_L1_SHRINK_FREE_L2_CLUSTERS);
            if (ret == 0)
                ret = qcow2_update_refcounts(n, l2_off / cs, 1, -1);
            qcow2_cache_drop(&s->l2_cache, l2_off);
        }
        a = end;
    }
    if (ret == 0) {
        uint8_t be[8];
        qcow2_put64(be, size);
        ret = qcow2_header_update_fields(n, 24, be, 8);
        if (ret == 0)
            s->size = size;
    }
    /* Trim the file after the last cluster still in use. */
    int64_t flen = ret == 0 ? qimg_node_length(n->file) : -1;
    if (flen > 0) {
        uint64_t c = qcow2_div_round_up((uint64_t)flen, cs), rc = 0;
        while (c > 0 && qcow2_get_refcount(n, c - 1, &rc) == 0 && rc == 0)
            c--;
        if (c * cs < (uint64_t)flen) {
            struct qimg_error terr = {0};
            qimg_node_truncate(n->file, c * cs, false, QIMG_PREALLOC_OFF, &terr);
        }
    }
    pthread_mutex_unlock(&n->lock);
    return ret;
}

/*
 * An image with an external data file (qcow2.txt, incompatible bit 2) keeps
 * guest cluster N at offset N of the data file. Growing it maps the new
 * clusters in the qcow2 file whenever anything is preallocated or the data
 * file must stay a valid raw image (autoclear bit 1), so they read back as
 * the data file's content, as QEMU does; then the data file grows, with the
 * data preallocation (falloc/full), unless it already reaches the new size
 * (a partial last cluster's copy-on-write wrote up to the cluster's end:
 * then it gets nothing more, as observed with qemu-img 7.2).
 */
static int grow_with_data_file(struct qimg_node *n, uint64_t size, bool exact,
                               enum qimg_prealloc prealloc, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    bool map = prealloc != QIMG_PREALLOC_OFF || (s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW);
    int ret = qcow2_grow_to(n, size, map ? QIMG_PREALLOC_METADATA : QIMG_PREALLOC_OFF, err);
    if (ret < 0)
        return ret;
    int64_t dlen = qimg_node_length(n->data_file);
    if (dlen >= 0 && (uint64_t)dlen >= size)
        return 0;
    enum qimg_prealloc data_mode = QIMG_PREALLOC_OFF;
    if (prealloc == QIMG_PREALLOC_FALLOC || prealloc == QIMG_PREALLOC_FULL)
        data_mode = prealloc;
    return qimg_node_truncate(n->data_file, size, exact, data_mode, err);
}

static int resize(struct qimg_node *n, uint64_t size, bool exact, enum qimg_prealloc prealloc,
                  struct qimg_error *err);

/*
 * Like QEMU, a resize ends with the refcount blocks on disk, deferred (lazy)
 * ones included: the metadata a resize changes is not left to the dirty bit.
 */
static int qcow2_truncate(struct qimg_node *n, uint64_t size, bool exact,
                          enum qimg_prealloc prealloc, struct qimg_error *err)
{
    SETTLED(err);
    int ret = resize(n, size, exact, prealloc, err);
    pthread_mutex_lock(&n->lock);
    int wret = qcow2_refcount_writeback(n);
    pthread_mutex_unlock(&n->lock);
    if (ret == 0 && wret < 0)
        ret = qimg_error_errno(err, wret, "Failed to flush the refcount block cache");
    return ret;
}

static int resize(struct qimg_node *n, uint64_t size, bool exact, enum qimg_prealloc prealloc,
                  struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    if (size % 512)
        return qimg_error_set(err, -EINVAL, "The new size must be a multiple of 512");
    /* v3 snapshots record their own disk size (qcow2.txt: Snapshots, extra data). */
    if (s->nb_snapshots && s->version < 3)
        return qimg_error_set(err, -ENOTSUP, "Can't resize a v2 image which has snapshots");
    int bret = qcow2_bitmaps_resize_check(n, size, err);
    if (bret < 0)
        return bret;
    if (size == s->size)
        return 0;
    if (size < s->size) {
        if (prealloc != QIMG_PREALLOC_OFF)
            return qimg_error_set(err, -ENOTSUP, "Preallocation can't be used for shrinking "
                                                 "an image");
        int ret = shrink(n, size);
        if (ret < 0)
            return qimg_error_errno(err, ret, "Failed to shrink the image");
        if (n->data_file) /* the guest data shrinks with the image, as in QEMU */
            return qimg_node_truncate(n->data_file, size, exact, QIMG_PREALLOC_OFF, err);
        return 0;
    }
    if (n->data_file)
        return grow_with_data_file(n, size, exact, prealloc, err);
    return qcow2_grow_to(n, size, prealloc, err);
}

static const char *const qcow2_strong_opts[] = {"encrypt.key-secret", NULL};

const struct qimg_driver qimg_qcow2_driver = {
    .name = "qcow2",
    .strong_opts = qcow2_strong_opts,
    .create_opts = qcow2_create_opts,
    .amend_opts = qcow2_amend_opts,
    .open_opts = qcow2_open_opts,
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .create = qcow2_create,
    .get_length = qcow2_get_length,
    .pread = qcow2_pread,
    .pwrite = qcow2_pwrite_request,
    .pwrite_zeroes = qcow2_pwrite_zeroes_request,
    .pwrite_compressed = qcow2_pwrite_compressed_request,
    .compress = qcow2_compress_cluster,
    .pwrite_precompressed = qcow2_pwrite_precompressed_request,
    .pdiscard = qcow2_pdiscard,
    .flush = qcow2_flush,
    .truncate = qcow2_truncate,
    .block_status = qcow2_block_status,
    .has_zero_init = qcow2_has_zero_init,
    .get_info = qcow2_get_info,
    .vmstate_rw = qcow2_vmstate_rw,
    .measure = qcow2_measure,
    .check = check_settled,
    .amend = amend_settled,
    .change_backing_file = change_backing_settled,
    .make_empty = make_empty_settled,
    .snapshot_list = qcow2_snapshot_list,
    .snapshot_create = snapshot_create_settled,
    .snapshot_goto = snapshot_goto_settled,
    .snapshot_delete = snapshot_delete_settled,
    .snapshot_load_tmp = qcow2_snapshot_load_tmp,
    .bitmap_list = qcow2_bitmap_list,
    .bitmap_add = qcow2_bitmap_add,
    .bitmap_remove = qcow2_bitmap_remove,
    .bitmap_clear = qcow2_bitmap_clear,
    .bitmap_set_enabled = qcow2_bitmap_set_enabled,
    .bitmap_get = qcow2_bitmap_get,
    .bitmap_merge_bits = qcow2_bitmap_merge_bits,
};
