/* SPDX-License-Identifier: MIT */
/*
 * qcow2 consistency check and repair (qemu-img check [-r leaks|all]) and the
 * repair of dirty (lazy refcounts) images on read-write open.
 *
 * The check counts every reference the image makes to a host cluster (header,
 * L1/L2 tables and data of the active and snapshot tables, the snapshot table,
 * the refcount table and blocks) in an in-memory refcount array, then compares
 * it with the refcounts stored on disk (qcow2.txt: Host cluster management).
 * The array uses the on-disk refcount block encoding so that, when the
 * refcount structure has to be rebuilt, its cluster-sized slices are written
 * out as the new refcount blocks unchanged.
 *
 * Messages go to stderr in qemu-img's words: they are part of the check's
 * user-visible report (and qemu-img -q does not silence them either).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"
#include "util/mem.h"

#define L2_BITMAP_ALL_ALLOC 0xffffffffull
#define L2_BITMAP_ALL_ZERO (L2_BITMAP_ALL_ALLOC << 32)
#define L2_STD_RESERVED 0x3f000000000001feull
#define L1_RESERVED 0x7f000000000001ffull
#define L1_OFFSET_MASK 0x00fffffffffffe00ull
#define RT_OFFSET_MASK 0xfffffffffffffe00ull
#define CHECK_FRAG_INFO 2

struct ck {
    struct qimg_node *n;
    struct qcow2_state *s;
    uint8_t *rc;    /* in-memory refcounts, refcount block encoding */
    uint64_t nb;    /* entries in rc */
    uint64_t bytes; /* allocated bytes of rc: a multiple of the cluster size */
    /*
     * The file's length, asked once and kept until the check itself writes
     * (only repairs do): one fstat per counted reference cost more than the
     * whole count.
     */
    int64_t flen;
    bool flen_known;
    /*
     * No blkdebug-like filter below the image: whole refcount blocks may be
     * compared at once (a filter sees one refblock_load per cluster looked up,
     * as QEMU raises them, so it gets the per-cluster path).
     */
    bool fast;
    /* The last comparison found every stored refcount of [0, nb) equal to rc. */
    bool disk_matches;
};

static int64_t ck_length(struct ck *c)
{
    if (!c->flen_known) {
        int64_t len = qimg_node_length(c->n->file);
        if (len < 0)
            return len;
        c->flen = len;
        c->flen_known = true;
    }
    return c->flen;
}

/* The check wrote to the file (a repair): its length may have changed. */
static void ck_file_changed(struct ck *c)
{
    c->flen_known = false;
}

static inline uint64_t rc_get(const struct ck *c, uint64_t i)
{
    if (i >= c->nb)
        return 0;
    if (c->s->refcount_order == 4) /* the default width, worth its own path */
        return (uint64_t)c->rc[2 * i] << 8 | c->rc[2 * i + 1];
    return refcount_get_entry(c->s, c->rc, i);
}

/*
 * Count one reference to cluster k when that is the plain case: inside the
 * array and below the maximum refcount. false: nothing done, the caller
 * takes inc_refcounts' path (which grows the array or reports the overflow).
 */
static inline bool inc_one(struct ck *c, uint64_t k)
{
    if (k >= c->nb)
        return false;
    if (c->s->refcount_order == 4) {
        uint8_t *p = c->rc + 2 * k;
        if (p[1] != 0xff) {
            p[1]++;
            return true;
        }
        if (p[0] == 0xff)
            return false;
        p[0]++;
        p[1] = 0;
        return true;
    }
    uint64_t v = refcount_get_entry(c->s, c->rc, k);
    if (v == c->s->refcount_max)
        return false;
    refcount_set_entry(c->s, c->rc, k, v + 1);
    return true;
}

static void rc_set(struct ck *c, uint64_t i, uint64_t v)
{
    refcount_set_entry(c->s, c->rc, i, v);
}

/* Grow (never shrink) the array to new_nb entries, zero-filled, cluster-aligned. */
static int rc_resize(struct ck *c, uint64_t new_nb)
{
    uint64_t cs = c->s->cluster_size;
    /* As QEMU: a refcount array is capped well below any sane image (2^31 clusters). */
    if (new_nb > INT32_MAX)
        return -EFBIG;
    uint64_t bytes = qcow2_align_up(qcow2_div_round_up(new_nb << c->s->refcount_order, 8), cs);
    if (bytes > c->bytes) {
        uint8_t *p = realloc(c->rc, bytes);
        if (!p)
            return -ENOMEM;
        memset(p + c->bytes, 0, bytes - c->bytes);
        c->rc = p;
        c->bytes = bytes;
    }
    if (new_nb > c->nb)
        c->nb = new_nb;
    return 0;
}

/* Read [off, off+len) of the file; bytes past its end read as zeroes (as QEMU's file does). */
static int read_padded(struct ck *c, uint64_t off, uint64_t len, void *buf)
{
    int64_t flen = ck_length(c);
    if (flen < 0)
        return (int)flen;
    if (off >= (uint64_t)flen) {
        memset(buf, 0, len);
        return 0;
    }
    uint64_t have = (uint64_t)flen - off < len ? (uint64_t)flen - off : len;
    memset((uint8_t *)buf + have, 0, len - have);
    return qimg_node_pread(c->n->file, off, have, buf, 0);
}

/* Count one reference to every cluster of [off, off+size). */
static int inc_refcounts(struct ck *c, struct qimg_check_result *res, uint64_t off, uint64_t size)
{
    uint64_t cs = c->s->cluster_size;
    if (size == 0)
        return 0;
    int64_t flen = ck_length(c);
    if (flen < 0)
        return (int)flen;
    /* The last cluster may be partly past the end of the file, never a whole cluster. */
    if (off > INT64_MAX / 2 || size > INT64_MAX / 2 || off + size >= (uint64_t)flen + cs) {
        fprintf(stderr,
                "ERROR: counting reference for region exceeding the end of the file by one "
                "cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64 "\n",
                off, size);
        res->corruptions++;
        return 0;
    }
    uint64_t first = off / cs, last = (off + size - 1) / cs;
    for (uint64_t k = first; k <= last; k++) {
        if (k >= c->nb) {
            int ret = rc_resize(c, k + 1);
            if (ret < 0) {
                res->check_errors++;
                return ret;
            }
        }
        uint64_t v = rc_get(c, k);
        if (v == c->s->refcount_max) {
            fprintf(stderr, "ERROR: overflow cluster offset=0x%" PRIx64 "\n", k * cs);
            fprintf(stderr, "Use qemu-img amend to increase the refcount entry width or "
                            "qemu-img convert to create a clean copy if the image cannot be "
                            "opened for writing\n");
            res->corruptions++;
            continue;
        }
        rc_set(c, k, v + 1);
    }
    return 0;
}

/* QEMU's cluster types as the check sees them (no version distinction for the zero flag). */
static enum qcow2_ctype l2e_type(const struct qcow2_state *s, uint64_t l2e)
{
    if (l2e & QCOW2_OFLAG_COMPRESSED)
        return QCOW2_COMPRESSED;
    /* External data file: offset 0 with the copied flag is guest cluster 0. */
    bool host = (l2e & QCOW2_OFFSET_MASK) ||
                (qcow2_has_data_file(s) && (l2e & QCOW2_OFLAG_COPIED));
    if ((l2e & QCOW2_OFLAG_ZERO) && !s->extended_l2)
        return host ? QCOW2_ZERO_ALLOC : QCOW2_ZERO_PLAIN;
    if (!host)
        return QCOW2_UNALLOCATED;
    return QCOW2_NORMAL;
}

/* QEMU's overlap check before a metadata write: a hit marks the image corrupt. */
static bool overlap_refused(struct qimg_node *n, uint64_t off, uint64_t len)
{
    const char *what = qcow2_overlap(n->opaque, off, len);
    if (!what)
        return false;
    char msg[160];
    snprintf(msg, sizeof(msg), "Preventing invalid write on metadata (overlaps with %s)", what);
    qcow2_mark_corrupt(n, msg);
    return true;
}

/* -r all: turn an unaligned preallocated (zero) entry into a plain zero entry. */
static int fix_l2_entry_by_zero(struct ck *c, struct qimg_check_result *res, uint64_t l2_off,
                                uint8_t *l2, uint64_t idx, bool *overlap)
{
    struct qcow2_state *s = c->s;
    struct qcow2_entry e;
    qcow2_l2_get_entry(s, l2, idx, &e);
    if (s->extended_l2) {
        e.bitmap = (e.bitmap | (e.bitmap << 32)) & L2_BITMAP_ALL_ZERO;
        e.l2e = 0;
    } else {
        e.l2e = QCOW2_OFLAG_ZERO;
    }
    qcow2_l2_set_entry(s, l2, idx, &e);
    uint64_t at = l2_off + idx * s->l2_entry_bytes;
    const char *what = qcow2_overlap(s, at, s->l2_entry_bytes);
    /* The L2 table itself is active metadata we are allowed to write. */
    if (what && strcmp(what, "active L2 table") != 0) {
        overlap_refused(c->n, at, s->l2_entry_bytes);
        *overlap = true;
        fprintf(stderr, "ERROR: Overlap check failed\n");
        res->check_errors++;
        return -EIO;
    }
    int ret = qimg_node_pwrite(c->n->file, at, s->l2_entry_bytes, l2 + idx * s->l2_entry_bytes, 0);
    ck_file_changed(c);
    if (ret == 0)
        ret = qimg_node_flush(c->n->file);
    if (ret < 0) {
        fprintf(stderr, "ERROR: Failed to overwrite L2 table entry: %s\n", strerror(-ret));
        res->check_errors++;
        return ret;
    }
    qcow2_cache_drop(&s->l2_cache, l2_off);
    res->corruptions--;
    res->corruptions_fixed++;
    return 0;
}

static int check_l2(struct ck *c, struct qimg_check_result *res, uint64_t l2_off, int flags,
                    int fix)
{
    struct qcow2_state *s = c->s;
    uint64_t cs = s->cluster_size, next_contiguous = 0;
    uint8_t *l2 = xmalloc(cs);
    int ret = read_padded(c, l2_off, cs, l2);
    if (ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l2\n");
        res->check_errors++;
        goto out;
    }
    int64_t flen = ck_length(c);
    if (flen < 0) {
        ret = (int)flen;
        goto out;
    }
    /*
     * The plain entries (standard L2 in the image file itself): done here
     * without the general path's calls. What they skip is what such an entry
     * cannot have: a bitmap, an unaligned offset, reserved bits.
     */
    bool plain = !s->extended_l2 && !qcow2_has_data_file(s);
    uint64_t end = (uint64_t)flen < INT64_MAX / 2 ? (uint64_t)flen : INT64_MAX / 2;
    for (uint64_t i = 0; i < s->l2_entries; i++) {
        if (plain) {
            uint64_t l2e = qcow2_be64(l2 + i * 8), off = l2e & QCOW2_OFFSET_MASK;
            if (!l2e)
                continue; /* unallocated */
            if (!(l2e & (QCOW2_OFLAG_COMPRESSED | L2_STD_RESERVED)) && off && !(off % cs) &&
                off < end && inc_one(c, off >> s->cluster_bits)) {
                if (flags & CHECK_FRAG_INFO) {
                    res->allocated_clusters++;
                    if (next_contiguous && off != next_contiguous)
                        res->fragmented_clusters++;
                    next_contiguous = off + cs;
                }
                continue;
            }
        }
        struct qcow2_entry e;
        qcow2_l2_get_entry(s, l2, i, &e);
        uint64_t l2e = e.l2e, bitmap = e.bitmap;
        enum qcow2_ctype type = l2e_type(s, l2e);
        if (type != QCOW2_COMPRESSED && (l2e & L2_STD_RESERVED)) {
            fprintf(stderr, "ERROR found l2 entry with reserved bits set: %" PRIx64 "\n", l2e);
            res->corruptions++;
        }
        switch (type) {
        case QCOW2_COMPRESSED: {
            uint64_t host, len;
            if (l2e & QCOW2_OFLAG_COPIED) {
                qcow2_compressed_range(s, l2e, &host, &len);
                fprintf(stderr,
                        "ERROR: coffset=0x%" PRIx64
                        ": copied flag must never be set for compressed clusters\n",
                        host);
                l2e &= ~QCOW2_OFLAG_COPIED;
                res->corruptions++;
            }
            if (bitmap) {
                fprintf(stderr,
                        "ERROR compressed cluster %d with non-zero subcluster allocation "
                        "bitmap, entry=0x%" PRIx64 "\n",
                        (int)i, l2e);
                res->corruptions++;
                break;
            }
            qcow2_compressed_range(s, l2e, &host, &len);
            ret = inc_refcounts(c, res, host, len);
            if (ret < 0)
                goto out;
            if (flags & CHECK_FRAG_INFO) {
                res->allocated_clusters++;
                res->compressed_clusters++;
                /* Compressed clusters are fragmented by nature (qemu-img counts them so). */
                res->fragmented_clusters++;
            }
            break;
        }
        case QCOW2_ZERO_ALLOC:
        case QCOW2_NORMAL: {
            uint64_t off = l2e & QCOW2_OFFSET_MASK;
            if ((bitmap >> 32) & bitmap) {
                res->corruptions++;
                fprintf(stderr,
                        "ERROR offset=%" PRIx64
                        ": Allocated cluster has corrupted subcluster allocation bitmap\n",
                        off);
            }
            if (off % cs) {
                res->corruptions++;
                bool has_data = s->extended_l2 ? (bitmap & L2_BITMAP_ALL_ALLOC) != 0
                                               : !(l2e & QCOW2_OFLAG_ZERO);
                if (!has_data) {
                    fprintf(stderr,
                            "%s offset=%" PRIx64
                            ": Preallocated cluster is not properly aligned; L2 entry "
                            "corrupted.\n",
                            fix & QIMG_CHECK_FIX_ERRORS ? "Repairing" : "ERROR", off);
                    if (fix & QIMG_CHECK_FIX_ERRORS) {
                        bool overlap = false;
                        ret = fix_l2_entry_by_zero(c, res, l2_off, l2, i, &overlap);
                        if (overlap) {
                            ret = -EIO;
                            goto out;
                        }
                        if (ret == 0)
                            continue; /* the cluster is no longer referenced */
                    }
                } else {
                    fprintf(stderr,
                            "ERROR offset=%" PRIx64
                            ": Data cluster is not properly aligned; L2 entry corrupted.\n",
                            off);
                }
            }
            if (flags & CHECK_FRAG_INFO) {
                res->allocated_clusters++;
                if (next_contiguous && off != next_contiguous)
                    res->fragmented_clusters++;
                next_contiguous = off + cs;
            }
            /* Clusters in an external data file have no refcounts (qcow2.txt). */
            ret = qcow2_has_data_file(s) ? 0 : inc_refcounts(c, res, off, cs);
            if (ret < 0)
                goto out;
            break;
        }
        case QCOW2_ZERO_PLAIN:
            break;
        case QCOW2_UNALLOCATED:
            if (bitmap & L2_BITMAP_ALL_ALLOC) {
                res->corruptions++;
                fprintf(stderr, "ERROR: Unallocated cluster has non-zero subcluster "
                                "allocation map\n");
            }
            break;
        }
    }
    ret = 0;
out:
    free(l2);
    return ret;
}

static int check_l1(struct ck *c, struct qimg_check_result *res, uint64_t l1_off,
                    uint32_t l1_size, int flags, int fix)
{
    struct qcow2_state *s = c->s;
    if (!l1_size)
        return 0;
    uint64_t bytes = (uint64_t)l1_size * 8;
    int ret = inc_refcounts(c, res, l1_off, bytes);
    if (ret < 0)
        return ret;
    uint8_t *buf = malloc(bytes);
    if (!buf) {
        res->check_errors++;
        return -ENOMEM;
    }
    ret = read_padded(c, l1_off, bytes, buf);
    if (ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l1\n");
        res->check_errors++;
        goto out;
    }
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t e = qcow2_be64(buf + (uint64_t)i * 8);
        if (!e)
            continue;
        if (e & L1_RESERVED) {
            fprintf(stderr, "ERROR found L1 entry with reserved bits set: %" PRIx64 "\n", e);
            res->corruptions++;
        }
        uint64_t l2_off = e & L1_OFFSET_MASK;
        ret = inc_refcounts(c, res, l2_off, s->cluster_size);
        if (ret < 0)
            goto out;
        if (l2_off % s->cluster_size) {
            fprintf(stderr,
                    "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry "
                    "corrupted\n",
                    l2_off);
            res->corruptions++;
        }
        ret = check_l2(c, res, l2_off, flags, fix);
        if (ret < 0)
            goto out;
    }
    ret = 0;
out:
    free(buf);
    return ret;
}

/* Count the refcount blocks; note what forces a rebuild of the refcount structure. */
static int check_refblocks(struct ck *c, struct qimg_check_result *res, int fix, bool *rebuild)
{
    struct qcow2_state *s = c->s;
    uint64_t cs = s->cluster_size;
    for (uint64_t i = 0; i < s->rt_size; i++) {
        uint64_t off = s->rt[i] & RT_OFFSET_MASK, cl = off / cs;
        if (s->rt[i] & QCOW2_RT_RESERVED) {
            fprintf(stderr, "ERROR refcount table entry %" PRId64 " has reserved bits set\n",
                    (int64_t)i);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (off % cs) {
            fprintf(stderr,
                    "ERROR refcount block %" PRId64 " is not cluster aligned; refcount table "
                    "entry corrupted\n",
                    (int64_t)i);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (cl >= c->nb) {
            res->corruptions++;
            fprintf(stderr, "%s refcount block %" PRId64 " is outside image\n",
                    fix & QIMG_CHECK_FIX_ERRORS ? "Repairing" : "ERROR", (int64_t)i);
            if (fix & QIMG_CHECK_FIX_ERRORS) {
                /* Grow the file so that the block lies inside it (it reads as zeroes). */
                struct qimg_error terr = {0};
                int ret = -EINVAL;
                if (off <= (uint64_t)INT64_MAX - cs)
                    ret = qimg_node_truncate(c->n->file, off + cs, false, QIMG_PREALLOC_OFF,
                                             &terr);
                /* QEMU reports the resize error itself (error_report: program prefix). */
                if (ret < 0 && qimg_error_is_set(&terr))
                    fprintf(stderr, "%s: %s\n", program_invocation_short_name, terr.msg);
                ck_file_changed(c);
                int64_t flen = ret < 0 ? ret : ck_length(c);
                if (flen < 0) {
                    *rebuild = true;
                    fprintf(stderr, "ERROR could not resize image: %s\n", strerror((int)-flen));
                    continue;
                }
                ret = rc_resize(c, qcow2_div_round_up((uint64_t)flen, cs));
                if (ret < 0) {
                    res->check_errors++;
                    return ret;
                }
                res->corruptions--;
                res->corruptions_fixed++;
                ret = inc_refcounts(c, res, off, cs);
                if (ret < 0)
                    return ret;
            }
            continue;
        }
        if (off) {
            int ret = inc_refcounts(c, res, off, cs);
            if (ret < 0)
                return ret;
            uint64_t v = rc_get(c, cl);
            if (v != 1) {
                fprintf(stderr, "ERROR refcount block %" PRId64 " refcount=%" PRIu64 "\n",
                        (int64_t)i, v);
                res->corruptions++;
                *rebuild = true;
            }
        }
    }
    return 0;
}

/*
 * qemu-img check's view of the snapshot table (qcow2.txt: Snapshots): the
 * table is validated and read here (the open left it alone), with repairs
 * under -r all (too many snapshots, too much extra data, a table over its
 * size limit); v3 entries without the 16 bytes of extra data that name the
 * VM state size and disk size are incomplete. What this finds goes to sres,
 * added to the result after the refcount check, as QEMU keeps them apart.
 */
/* Put prefix before the message err holds (qemu-img check's error_reportf_err). */
static int prefix_error(struct qimg_error *err, int ret, const char *prefix)
{
    char msg[QIMG_ERROR_MAX];
    snprintf(msg, sizeof(msg), "%s", err->msg);
    qimg_error_clear(err);
    return qimg_error_set(err, ret, "%s%s", prefix, msg);
}

static int read_snapshots(struct ck *c, struct qimg_check_result *sres, int fix,
                          struct qcow2_sn_repair *rep, struct qimg_error *err)
{
    struct qcow2_state *s = c->s;
    bool repair = fix & QIMG_CHECK_FIX_ERRORS;
    memset(rep, 0, sizeof(*rep));
    if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS && repair) {
        uint32_t over = s->nb_snapshots - QCOW2_MAX_SNAPSHOTS;
        fprintf(stderr, "Discarding %u overhanging snapshots\n", over);
        rep->overhang = over;
        s->nb_snapshots = QCOW2_MAX_SNAPSHOTS;
    }
    int ret = qcow2_snapshot_table_valid(s, "snapshot table", err);
    if (ret < 0) {
        sres->check_errors++;
        if (ret != -EFBIG)
            return prefix_error(err, ret, "ERROR ");
        qimg_error_clear(err);
        return qimg_error_set(err, ret,
                              "ERROR snapshot table too large\nYou can force-remove all %u "
                              "overhanging snapshots with qemu-img check -r all",
                              s->nb_snapshots - QCOW2_MAX_SNAPSHOTS);
    }
    ret = qcow2_snapshots_read(c->n, repair ? rep : NULL, err);
    if (ret < 0) {
        sres->check_errors++;
        return prefix_error(err, ret, "ERROR failed to read the snapshot table: ");
    }
    if (rep->overhang) {
        /* QEMU writes the new count at once (the table itself stays where it is). */
        uint8_t be[4];
        qcow2_put32(be, s->nb_snapshots);
        ret = qcow2_header_update_fields(c->n, 60, be, sizeof(be));
        if (ret < 0) {
            sres->check_errors++;
            return qimg_error_errno(err, ret, "Could not update the snapshot count");
        }
        sres->corruptions_fixed += (int)rep->overhang;
    }
    sres->corruptions += (int)rep->extra_dropped;
    for (uint32_t i = 0; s->version >= 3 && i < s->nb_snapshots; i++) {
        if (s->snapshots[i].extra_size < 16) {
            sres->corruptions++;
            rep->incomplete++;
            fprintf(stderr, "%s snapshot table entry %u is incomplete\n",
                    repair ? "Repairing" : "ERROR", i);
        }
    }
    return 0;
}

/* -r all: write the repaired table back; what it fixed moves to corruptions_fixed. */
static int fix_snapshots(struct ck *c, struct qimg_check_result *sres, int fix,
                         const struct qcow2_sn_repair *rep)
{
    int n = (int)(rep->extra_dropped + rep->incomplete);
    if (!(fix & QIMG_CHECK_FIX_ERRORS) || !n)
        return 0;
    int ret = qcow2_snapshots_rewrite(c->n);
    ck_file_changed(c);
    if (ret < 0) {
        sres->check_errors++;
        fprintf(stderr, "ERROR failed to update snapshot table: %s\n", strerror(-ret));
        return ret;
    }
    sres->corruptions -= n;
    sres->corruptions_fixed += n;
    return 0;
}

/*
 * qcow2.txt: Bitmaps. The bitmap directory, every bitmap table and the
 * clusters they point to are references (only while the autoclear bit says
 * the extension is valid, as QEMU reads it).
 */
static int count_bitmaps(struct ck *c, struct qimg_check_result *res)
{
    struct qcow2_state *s = c->s;
    uint64_t cs = s->cluster_size;
    const struct qcow2_ext *e = s->bitmaps_ext;
    if (!e || e->len < 24 || !(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS))
        return 0;
    uint32_t nb = qcow2_be32(e->data);
    uint64_t dir_size = qcow2_be64(e->data + 8), dir_off = qcow2_be64(e->data + 16);
    if (!nb)
        return 0;
    int ret = inc_refcounts(c, res, dir_off, dir_size);
    if (ret < 0)
        return ret;
    int64_t flen = ck_length(c);
    if (flen < 0)
        return (int)flen;
    /* QEMU limits the directory to 64 MiB; it must also lie within the file. */
    if (dir_size > (64u << 20) || dir_off > (uint64_t)flen || dir_size > (uint64_t)flen - dir_off) {
        res->corruptions++;
        return -EINVAL;
    }
    uint8_t *dir = xmalloc(dir_size ? dir_size : 1);
    ret = read_padded(c, dir_off, dir_size, dir);
    if (ret < 0) {
        free(dir);
        res->corruptions++;
        return ret;
    }
    uint64_t pos = 0;
    for (uint32_t i = 0; i < nb; i++) {
        if (dir_size - pos < 24) {
            res->corruptions++;
            ret = -EINVAL;
            break;
        }
        const uint8_t *d = dir + pos;
        uint64_t tbl_off = qcow2_be64(d);
        uint32_t tbl_size = qcow2_be32(d + 8);
        uint16_t name_len = qcow2_be16(d + 18);
        uint32_t extra = qcow2_be32(d + 20);
        uint64_t ent = qcow2_align_up(24 + (uint64_t)extra + name_len, 8);
        if (ent > dir_size - pos) {
            res->corruptions++;
            ret = -EINVAL;
            break;
        }
        pos += ent;
        uint64_t tbytes = (uint64_t)tbl_size * 8;
        ret = inc_refcounts(c, res, tbl_off, tbytes);
        if (ret < 0)
            break;
        if (tbl_off % cs || tbytes > (uint64_t)flen || tbl_off > (uint64_t)flen - tbytes) {
            res->corruptions++;
            break;
        }
        uint8_t *tbl = xmalloc(tbytes ? tbytes : 1);
        ret = read_padded(c, tbl_off, tbytes, tbl);
        if (ret < 0) {
            free(tbl);
            res->corruptions++;
            break;
        }
        for (uint32_t k = 0; k < tbl_size; k++) {
            uint64_t be = qcow2_be64(tbl + (uint64_t)k * 8), off = be & QCOW2_OFFSET_MASK;
            if ((be & 0xff000000000001feull) || off % cs || (off && (be & 1))) {
                res->corruptions++;
                continue;
            }
            if (off && (ret = inc_refcounts(c, res, off, cs)) < 0)
                break;
        }
        free(tbl);
        if (ret < 0)
            break;
    }
    free(dir);
    return ret;
}

static int calculate_refcounts(struct ck *c, struct qimg_check_result *res, int fix,
                               bool *rebuild)
{
    struct qcow2_state *s = c->s;
    c->disk_matches = false; /* rc is about to change */
    int ret = inc_refcounts(c, res, 0, s->cluster_size);
    if (ret < 0)
        return ret;
    ret = check_l1(c, res, s->l1_offset, s->l1_size, CHECK_FRAG_INFO, fix);
    if (ret < 0)
        return ret;
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if (sn->l1_offset % s->cluster_size) {
            fprintf(stderr,
                    "ERROR snapshot %s (%s) l1_offset=%#" PRIx64 ": L1 table is not cluster "
                    "aligned; snapshot table entry corrupted\n",
                    sn->id, sn->name, sn->l1_offset);
            res->corruptions++;
            continue;
        }
        if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8) {
            fprintf(stderr,
                    "ERROR snapshot %s (%s) l1_size=%#" PRIx32 ": L1 table is too large; "
                    "snapshot table entry corrupted\n",
                    sn->id, sn->name, sn->l1_size);
            res->corruptions++;
            continue;
        }
        ret = check_l1(c, res, sn->l1_offset, sn->l1_size, 0, fix);
        if (ret < 0)
            return ret;
    }
    ret = inc_refcounts(c, res, s->snapshots_offset, s->snapshots_size);
    if (ret < 0)
        return ret;
    ret = inc_refcounts(c, res, s->rt_offset, s->rt_size * 8);
    if (ret < 0)
        return ret;
    ret = count_bitmaps(c, res);
    if (ret < 0)
        return ret;
    uint64_t crypt_off, crypt_len; /* qcow2.txt: the LUKS header clusters */
    if (qcow2_crypt_header_range(s, &crypt_off, &crypt_len) &&
        (ret = inc_refcounts(c, res, crypt_off, crypt_len)) < 0)
        return ret;
    return check_refblocks(c, res, fix, rebuild);
}

/*
 * Compare the stored refcounts of clusters [first, end) with the counted ones,
 * one lookup per cluster; with fix, adjust the stored ones (leaks: FIX_LEAKS,
 * too low: FIX_ERRORS). A stored zero under a reference can only be repaired
 * by rebuilding the whole structure. Returns true when every stored refcount
 * was read and equal to the counted one.
 */
static bool compare_range(struct ck *c, struct qimg_check_result *res, int fix, bool *rebuild,
                          uint64_t *highest, uint64_t first, uint64_t end)
{
    struct qimg_node *n = c->n;
    bool equal = true;
    for (uint64_t i = first; i < end; i++) {
        uint64_t r1, r2 = rc_get(c, i);
        int ret = qcow2_get_refcount(n, i, &r1);
        if (ret < 0) {
            fprintf(stderr, "Can't get refcount for cluster %" PRId64 ": %s\n", (int64_t)i,
                    strerror(-ret));
            res->check_errors++;
            equal = false;
            continue;
        }
        if (r1 > 0 || r2 > 0)
            *highest = i;
        if (r1 == r2)
            continue;
        equal = false;
        int *fixed = NULL;
        if (r1 == 0)
            *rebuild = true;
        else if (r1 > r2 && (fix & QIMG_CHECK_FIX_LEAKS))
            fixed = &res->leaks_fixed;
        else if (r1 < r2 && (fix & QIMG_CHECK_FIX_ERRORS))
            fixed = &res->corruptions_fixed;
        fprintf(stderr, "%s cluster %" PRId64 " refcount=%" PRIu64 " reference=%" PRIu64 "\n",
                fixed ? "Repairing" : r1 < r2 ? "ERROR" : "Leaked", (int64_t)i, r1, r2);
        if (fixed) {
            int64_t delta = r2 > r1 ? (int64_t)(r2 - r1) : -(int64_t)(r1 - r2);
            int uret = qcow2_update_refcounts(n, i, 1, delta);
            ck_file_changed(c);
            if (uret == 0) {
                /* A freed cluster is discarded in the file, as QEMU's repair does. */
                if (r2 == 0)
                    qimg_node_pdiscard(n->file, i * c->s->cluster_size, c->s->cluster_size);
                (*fixed)++;
                continue;
            }
        }
        if (r1 < r2)
            res->corruptions++;
        else
            res->leaks++;
    }
    return equal;
}

/* Index of the last non-zero entry among the first m of refcount block blk, or -1. */
static int64_t last_nonzero(const struct qcow2_state *s, const uint8_t *blk, uint64_t m)
{
    unsigned bits = s->refcount_bits;
    uint64_t full = m * bits / 8; /* bytes holding only entries < m */
    for (uint64_t e = m; e-- > full * 8 / bits;)
        if (refcount_get_entry(s, blk, e))
            return (int64_t)e;
    uint64_t b = full;
    /* Word-wise over the zero run that ends most blocks' used part. */
    while (b >= 8) {
        uint64_t w;
        memcpy(&w, blk + b - 8, 8);
        if (w)
            break;
        b -= 8;
    }
    while (b > 0 && !blk[b - 1])
        b--;
    if (!b)
        return -1;
    b--;
    for (uint64_t e = ((b + 1) * 8 - 1) / bits + 1; e-- > b * 8 / bits;)
        if (e < m && refcount_get_entry(s, blk, e))
            return (int64_t)e;
    return -1;
}

/*
 * Compare the m clusters from start (one refcount block's worth, start
 * aligned to it) in one go: true when the stored block exists, is readable
 * and equals the counted slice, or is absent and the slice is all zero (the
 * case of every consistent image). false: nothing reported, the caller takes
 * the per-cluster path, which reports exactly what differs or fails (an
 * unaligned table entry, a read error, a mismatch).
 */
static bool compare_block(struct ck *c, uint64_t start, uint64_t m, uint64_t *highest)
{
    struct qcow2_state *s = c->s;
    uint64_t cs = s->cluster_size, idx = start / s->rb_entries;
    const uint8_t *mine = c->rc + idx * cs, *stored = NULL;
    if (idx < s->rt_size) {
        uint64_t off = s->rt[idx] & ~QCOW2_RT_RESERVED;
        if (off % cs)
            return false;
        uint8_t *blk;
        if (off && qcow2_cache_get(c->n, &s->rb_cache, off, false, &blk) < 0)
            return false;
        if (off)
            stored = blk;
    }
    int64_t last = last_nonzero(s, mine, m);
    if (stored) {
        uint64_t full = m * s->refcount_bits / 8;
        if (memcmp(stored, mine, full))
            return false;
        for (uint64_t e = full * 8 / s->refcount_bits; e < m; e++)
            if (refcount_get_entry(s, stored, e) != refcount_get_entry(s, mine, e))
                return false;
    } else if (last >= 0) {
        return false;
    }
    if (last >= 0)
        *highest = start + (uint64_t)last;
    return true;
}

/*
 * Compare the stored refcounts with the counted ones (see compare_range),
 * a whole refcount block at a time where it matches.
 */
static void compare_refcounts(struct ck *c, struct qimg_check_result *res, int fix,
                              bool *rebuild, uint64_t *highest)
{
    uint64_t rbe = c->s->rb_entries;
    bool equal = true;
    *highest = 0;
    c->disk_matches = false;
    for (uint64_t start = 0; start < c->nb; start += rbe) {
        uint64_t m = c->nb - start < rbe ? c->nb - start : rbe;
        if (c->fast && compare_block(c, start, m, highest))
            continue;
        if (!compare_range(c, res, fix, rebuild, highest, start, start + m))
            equal = false;
    }
    c->disk_matches = c->fast && equal;
}

/* First run of *first_free.. free clusters of the array; grows it past the end if needed. */
static int64_t alloc_clusters_mem(struct ck *c, uint64_t count, uint64_t *first_free)
{
    uint64_t cl = *first_free, run = 0;
    bool first_gap = true;
    for (; cl < c->nb && run < count; cl++) {
        if (!rc_get(c, cl)) {
            run++;
            if (first_gap) {
                *first_free = cl;
                first_gap = false;
            }
        } else {
            run = 0;
        }
    }
    if (run < count) {
        int ret = rc_resize(c, cl + count - run);
        if (ret < 0)
            return ret;
    }
    cl -= run;
    for (uint64_t i = 0; i < count; i++)
        rc_set(c, cl + i, 1);
    return (int64_t)(cl * c->s->cluster_size);
}

/*
 * Write a refcount block (a slice of the array) for every block range of
 * [first, end) that holds a non-zero refcount, allocating the blocks in the
 * array first. Returns 1 when the new table had to grow, 0, or -errno.
 */
static int write_refblocks(struct ck *c, uint64_t first, uint64_t end, uint64_t **table,
                           uint64_t *entries, struct qimg_error *err)
{
    struct qcow2_state *s = c->s;
    uint64_t cs = s->cluster_size, rbe = s->rb_entries, first_free = 0;
    bool grown = false;
    for (uint64_t cl = first; cl < end; cl++) {
        if (!rc_get(c, cl))
            continue;
        uint64_t idx = cl / rbe, start = idx * rbe, boff;
        if (idx < *entries && (*table)[idx]) {
            boff = (*table)[idx];
        } else {
            if (first_free < start)
                first_free = start;
            int64_t o = alloc_clusters_mem(c, 1, &first_free);
            if (o < 0)
                return qimg_error_errno(err, (int)o, "ERROR allocating refblock");
            boff = (uint64_t)o;
            if (boff / cs >= end)
                end = boff / cs + 1; /* the block holding this block's refcount changes too */
            if (*entries <= idx) {
                uint64_t ne = qcow2_align_up((idx + 1) * 8, cs) / 8;
                if (ne * 8 > QCOW2_MAX_REFTABLE_BYTES)
                    return qimg_error_set(err, -EFBIG, "ERROR allocating reftable memory");
                uint64_t *t = realloc(*table, ne * 8);
                if (!t)
                    return qimg_error_set(err, -ENOMEM, "ERROR allocating reftable memory");
                memset(t + *entries, 0, (ne - *entries) * 8);
                *table = t;
                *entries = ne;
                grown = true;
            }
            (*table)[idx] = boff;
        }
        if (overlap_refused(c->n, boff, cs))
            return qimg_error_errno(err, -EIO, "ERROR writing refblock");
        int ret = qimg_node_pwrite(c->n->file, boff, cs, c->rc + idx * cs, 0);
        if (ret < 0)
            return qimg_error_errno(err, ret, "ERROR writing refblock");
        cl = start + rbe - 1;
    }
    return grown;
}

/*
 * Replace the refcount structure with one built from the counted references:
 * blocks first, then a table placed in free space (which may need more
 * blocks, and so on until the table stops growing), then the header. The old
 * table and blocks become leaks that the caller's second pass repairs.
 */
static int rebuild_refcounts(struct ck *c, struct qimg_check_result *res, struct qimg_error *err)
{
    struct qcow2_state *s = c->s;
    uint64_t cs = s->cluster_size, *table = NULL, entries = 0, rt_off = 0, rt_clusters = 0;
    uint8_t *buf = NULL;
    int ret = write_refblocks(c, 0, c->nb, &table, &entries, err);
    while (ret > 0) {
        uint64_t first_free = 0;
        rt_clusters = qcow2_div_round_up(entries * 8, cs);
        int64_t o = alloc_clusters_mem(c, rt_clusters, &first_free);
        if (o < 0) {
            ret = (int)o;
            break;
        }
        rt_off = (uint64_t)o;
        ret = write_refblocks(c, rt_off / cs, rt_off / cs + rt_clusters, &table, &entries, err);
    }
    if (ret < 0) {
        res->check_errors++;
        goto out;
    }
    buf = xcalloc(1, entries * 8);
    for (uint64_t i = 0; i < entries; i++)
        qcow2_put64(buf + i * 8, table[i]);
    if (overlap_refused(c->n, rt_off, entries * 8)) {
        ret = qimg_error_errno(err, -EIO, "ERROR writing reftable");
        goto fail;
    }
    ret = qimg_node_pwrite(c->n->file, rt_off, entries * 8, buf, 0);
    if (ret < 0) {
        qimg_error_errno(err, ret, "ERROR writing reftable");
        goto fail;
    }
    uint8_t hdr[12];
    qcow2_put64(hdr, rt_off);
    qcow2_put32(hdr + 8, (uint32_t)rt_clusters);
    ret = qcow2_header_update_fields(c->n, 48, hdr, sizeof(hdr));
    if (ret == 0)
        ret = qimg_node_flush(c->n->file);
    if (ret < 0) {
        qimg_error_errno(err, ret, "ERROR setting reftable");
        goto fail;
    }
    /* Switch the driver to the new structure. */
    size_t rb_entries = s->rb_cache.n;
    qcow2_cache_destroy(&s->rb_cache);
    qcow2_cache_init(&s->rb_cache, rb_entries, cs);
    free(s->rt);
    s->rt = table;
    table = NULL;
    s->rt_size = entries;
    s->rt_offset = rt_off;
    s->rt_clusters = (uint32_t)rt_clusters;
    qcow2_meta_reset_refblocks(s);
    s->free_cluster_index = 0;
    s->free_byte_offset = 0;
    ret = 0;
    goto out;
fail:
    res->check_errors++;
out:
    ck_file_changed(c);
    c->disk_matches = false;
    free(buf);
    free(table);
    return ret;
}

/*
 * The stored refcount of cluster ci: from rc when the last comparison found
 * it equal to the stored one (and nothing wrote refcounts since).
 */
static int stored_refcount(struct ck *c, uint64_t ci, uint64_t *rc)
{
    if (c->disk_matches && ci < c->nb) {
        *rc = rc_get(c, ci);
        return 0;
    }
    return qcow2_get_refcount(c->n, ci, rc);
}

/* The COPIED flag of every active L1 and L2 entry must say "refcount is exactly 1". */
static int check_oflag_copied(struct ck *c, struct qimg_check_result *res, int fix)
{
    struct qimg_node *n = c->n;
    struct qcow2_state *s = c->s;
    uint64_t cs = s->cluster_size;
    bool repair = (fix & QIMG_CHECK_FIX_ERRORS) ||
                  ((fix & QIMG_CHECK_FIX_LEAKS) && !res->check_errors && !res->corruptions &&
                   !res->leaks);
    uint8_t *l2 = xmalloc(cs);
    int ret = 0;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t e = s->l1[i], l2_off = e & L1_OFFSET_MASK, rc;
        int dirty = 0;
        if (!l2_off)
            continue;
        if (stored_refcount(c, l2_off / cs, &rc) < 0)
            continue;
        if ((rc == 1) != ((e & QCOW2_OFLAG_COPIED) != 0)) {
            res->corruptions++;
            fprintf(stderr,
                    "%s OFLAG_COPIED L2 cluster: l1_index=%d l1_entry=%" PRIx64
                    " refcount=%" PRIu64 "\n",
                    repair ? "Repairing" : "ERROR", (int)i, e, rc);
            if (repair) {
                s->l1[i] = rc == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED;
                ret = qcow2_l1_write_entry(n, i);
                ck_file_changed(c);
                if (ret < 0) {
                    res->check_errors++;
                    goto out;
                }
                res->corruptions--;
                res->corruptions_fixed++;
            }
        }
        ret = read_padded(c, l2_off, cs, l2);
        if (ret < 0) {
            fprintf(stderr, "ERROR: Could not read L2 table: %s\n", strerror(-ret));
            res->check_errors++;
            goto out;
        }
        /* Clusters in an external data file have no refcounts (qcow2.txt). */
        uint64_t entries = qcow2_has_data_file(s) ? 0 : s->l2_entries;
        for (uint64_t j = 0; j < entries; j++) {
            /*
             * Without a data file, l2e_type() says NORMAL or ZERO_ALLOC exactly
             * for the uncompressed entries with a host offset.
             */
            uint64_t l2e = qcow2_be64(l2 + j * s->l2_entry_bytes);
            if ((l2e & QCOW2_OFLAG_COMPRESSED) || !(l2e & QCOW2_OFFSET_MASK))
                continue;
            if (stored_refcount(c, (l2e & QCOW2_OFFSET_MASK) / cs, &rc) < 0)
                continue;
            if ((rc == 1) == ((l2e & QCOW2_OFLAG_COPIED) != 0))
                continue;
            struct qcow2_entry le;
            qcow2_l2_get_entry(s, l2, j, &le);
            res->corruptions++;
            fprintf(stderr,
                    "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64 "\n",
                    repair ? "Repairing" : "ERROR", le.l2e, rc);
            if (repair) {
                le.l2e = rc == 1 ? le.l2e | QCOW2_OFLAG_COPIED : le.l2e & ~QCOW2_OFLAG_COPIED;
                qcow2_l2_set_entry(s, l2, j, &le);
                dirty++;
            }
        }
        if (dirty) {
            const char *what = qcow2_overlap(s, l2_off, cs);
            if (what && strcmp(what, "active L2 table") != 0) {
                overlap_refused(n, l2_off, cs);
                fprintf(stderr, "ERROR: Could not write L2 table; metadata overlap check "
                                "failed: %s\n",
                        strerror(EIO));
                res->check_errors++;
                ret = -EIO;
                goto out;
            }
            ret = qimg_node_pwrite(n->file, l2_off, cs, l2, 0);
            ck_file_changed(c);
            if (ret < 0) {
                fprintf(stderr, "ERROR: Could not write L2 table: %s\n", strerror(-ret));
                res->check_errors++;
                goto out;
            }
            qcow2_cache_drop(&s->l2_cache, l2_off);
            res->corruptions -= dirty;
            res->corruptions_fixed += dirty;
        }
    }
    ret = 0;
out:
    free(l2);
    return ret;
}

static int check_refcounts(struct ck *c, struct qimg_check_result *res, int fix,
                           struct qimg_error *err)
{
    struct qcow2_state *s = c->s;
    uint64_t cs = s->cluster_size, highest = 0;
    bool rebuild = false;
    int64_t flen = ck_length(c);
    if (flen < 0) {
        res->check_errors++;
        return (int)flen;
    }
    uint64_t nb = qcow2_div_round_up((uint64_t)flen, cs);
    if (nb > INT32_MAX) {
        res->check_errors++;
        return -EFBIG;
    }
    res->total_clusters = qcow2_div_round_up(s->size, cs);
    res->has_bfi = true;
    int ret = rc_resize(c, nb);
    if (ret < 0) {
        res->check_errors++;
        return ret;
    }
    ret = calculate_refcounts(c, res, fix, &rebuild);
    if (ret < 0)
        return ret;
    struct qimg_check_result pre = *res;
    compare_refcounts(c, res, 0, &rebuild, &highest);

    if (rebuild && (fix & QIMG_CHECK_FIX_ERRORS)) {
        struct qimg_check_result old = *res;
        int fresh_leaks = 0;
        fprintf(stderr, "Rebuilding refcount structure\n");
        ret = rebuild_refcounts(c, res, err);
        if (ret < 0)
            return ret;
        res->corruptions = 0;
        res->leaks = 0;
        rebuild = false;
        memset(c->rc, 0, c->bytes);
        ret = calculate_refcounts(c, res, 0, &rebuild);
        if (ret < 0)
            return ret;
        if (fix & QIMG_CHECK_FIX_LEAKS) {
            /* The old structure is leaked now; whatever else leaks came from the rebuild. */
            struct qimg_check_result saved = *res;
            memset(res, 0, sizeof(*res));
            compare_refcounts(c, res, QIMG_CHECK_FIX_LEAKS, &rebuild, &highest);
            if (rebuild)
                fprintf(stderr, "ERROR rebuilt refcount structure is still broken\n");
            fresh_leaks = res->leaks;
            *res = saved;
        }
        if (res->corruptions < old.corruptions)
            res->corruptions_fixed += old.corruptions - res->corruptions;
        if (res->leaks < old.leaks)
            res->leaks_fixed += old.leaks - res->leaks;
        res->leaks += fresh_leaks;
    } else if (fix) {
        if (rebuild) {
            fprintf(stderr, "ERROR need to rebuild refcount structures\n");
            res->check_errors++;
            return -EIO;
        }
        if (res->leaks || res->corruptions) {
            *res = pre;
            compare_refcounts(c, res, fix, &rebuild, &highest);
        }
    }
    ret = check_oflag_copied(c, res, fix);
    if (ret < 0)
        return ret;
    res->image_end_offset = (highest + 1) * cs;
    return 0;
}

static int set_incompat(struct qimg_node *n, uint64_t bits)
{
    struct qcow2_state *s = n->opaque;
    uint8_t be[8];
    int ret = qimg_node_flush(n->file);
    if (ret < 0)
        return ret;
    qcow2_put64(be, bits);
    ret = qcow2_header_update_fields(n, 72, be, 8);
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret == 0)
        s->incompat = bits;
    return ret;
}

int qcow2_mark_clean(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    if (s->read_only || s->version < 3 || !(s->incompat & QCOW2_INCOMPAT_DIRTY))
        return 0;
    return set_incompat(n, s->incompat & ~QCOW2_INCOMPAT_DIRTY);
}

/* A filter that sees metadata events lies below the image (qimg_debug_event's walk). */
static bool has_debug_filter(struct qimg_node *file)
{
    for (; file && file->drv; file = file->file) {
        if (file->drv->debug_event)
            return true;
        if (!file->drv->is_filter)
            return false;
    }
    return false;
}

/*
 * A corruption event on an image opened read-write is fatal in QEMU: the
 * node loses its driver, so a second check (qemu-img's "Double checking")
 * fails with ENOMEDIUM and the refcount updates still in its cache are never
 * written (refcount.c keeps them in the cache from the event on).
 */
static bool check_node_lost(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    if (!s->corrupt_event || s->read_only)
        return false;
    for (size_t i = 0; i < s->rb_cache.n; i++) {
        if (s->rb_cache.e[i].dirty) {
            s->rb_cache.e[i].dirty = false;
            s->rb_cache.e[i].offset = 0;
        }
    }
    return true;
}

/* QEMU's sum of two partial check results (the allocation statistics stay res's). */
static void add_result(struct qimg_check_result *res, const struct qimg_check_result *part)
{
    res->corruptions += part->corruptions;
    res->leaks += part->leaks;
    res->check_errors += part->check_errors;
    res->corruptions_fixed += part->corruptions_fixed;
    res->leaks_fixed += part->leaks_fixed;
}

/*
 * Check (and with fix, repair) the image. n->lock held. As in QEMU: the
 * snapshot table first (its findings apart), then the refcounts, then the
 * snapshot table's repair.
 */
int qcow2_check_locked(struct qimg_node *n, struct qimg_check_result *res, int fix,
                       struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    struct ck c = {.n = n, .s = s, .fast = !has_debug_filter(n->file)};
    struct qimg_check_result sres = {0};
    struct qcow2_sn_repair rep;
    memset(res, 0, sizeof(*res));
    if (check_node_lost(n))
        return -ENOMEDIUM;
    int ret = read_snapshots(&c, &sres, fix, &rep, err);
    if (ret < 0) {
        add_result(res, &sres);
        goto out;
    }
    ret = check_refcounts(&c, res, fix, err);
    if (ret < 0) {
        add_result(res, &sres);
        goto out;
    }
    ret = fix_snapshots(&c, &sres, fix, &rep);
    add_result(res, &sres);
    if (ret < 0)
        goto out;
    /* A successful repair makes the image clean and consistent again (qcow2.txt: bits 0, 1). */
    if (fix && !res->check_errors && !res->corruptions && s->version >= 3 &&
        (s->incompat & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT))) {
        ret = set_incompat(n, s->incompat & ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT));
        if (ret == 0)
            s->corrupt_event = false;
    }
out:
    check_node_lost(n);
    free(c.rc);
    return ret;
}

int qcow2_check(struct qimg_node *n, struct qimg_check_result *res, int fix,
                struct qimg_error *err)
{
    pthread_mutex_lock(&n->lock);
    int ret = qcow2_check_locked(n, res, fix, err);
    pthread_mutex_unlock(&n->lock);
    return ret;
}
