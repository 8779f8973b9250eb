/* SPDX-License-Identifier: MIT */
/*
 * Internal snapshots (qcow2.txt: Snapshots): the snapshot table, and the
 * refcount bookkeeping that makes a snapshot an L1 table sharing clusters
 * with the active state.
 *
 * A snapshot references its L2 tables and, through them, their data
 * clusters: creating one adds one reference to every L2 table and every
 * cluster reachable from the active L1 table (so a shared L2 table counts its
 * clusters once per L1 table that reaches it), deleting one drops them again.
 * OFLAG_COPIED in the active tables is then recomputed from the refcounts,
 * and writes copy whatever is not COPIED (io.c, cluster.c).
 *
 * Crash safety: the snapshot table is written to new clusters and switched
 * in the header with one write; references are added before anything points
 * at them and dropped after nothing does, so a crash leaks, never corrupts.
 *
 * Power loss (doc/reliability.md, Findings item 5): a refcount and the
 * OFLAG_COPIED flag that mirrors it live in different clusters, so no write
 * order changes both at once. Barriers (cache.c) make every state a cut can
 * leave err in the safe direction only: COPIED clear on a cluster whose
 * refcount is 1 (a later write merely copies it first) plus leaks, never
 * COPIED set on a cluster a snapshot shares or whose refcount on disk is
 * above 1 (a write in place would change the snapshot). So COPIED is cleared
 * before references are added (create, and the tables apply makes active)
 * and set only after the references that were dropped are on disk (delete,
 * apply). QEMU sets COPIED the other way round (refcounts, then L2 tables in
 * one flush window), which can leave a refcount of 2 with COPIED set.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"
#include "util/mem.h"

#define SN_HEADER 40
#define SN_EXTRA_KNOWN 24 /* vm_state_size_large, disk_size, icount */
#define SN_MAX_EXTRA 1024 /* QEMU's limit per entry */
#define SN_MAX_TABLE (64u << 20)
#define SN_MAX_ID 127 /* QEMU keeps IDs and names in 128 / 256 byte buffers */
#define SN_MAX_NAME 255

static int snapshots_write(struct qimg_node *n, struct qcow2_snapshot *tab, uint32_t nb);

static void sn_free(struct qcow2_snapshot *sn)
{
    free(sn->id);
    free(sn->name);
    free(sn->extra);
}

void qcow2_snapshots_free(struct qcow2_state *s)
{
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++)
        sn_free(&s->snapshots[i]);
    free(s->snapshots);
    s->snapshots = NULL;
}

static uint64_t sn_entry_unpadded(const struct qcow2_snapshot *sn)
{
    uint32_t extra = sn->extra_size > SN_EXTRA_KNOWN ? sn->extra_size : SN_EXTRA_KNOWN;
    return SN_HEADER + (uint64_t)extra + strlen(sn->id) + strlen(sn->name);
}

static uint64_t sn_entry_size(const struct qcow2_snapshot *sn)
{
    return qcow2_align_up(sn_entry_unpadded(sn), 8);
}

static char *read_string(const uint8_t *p, size_t len)
{
    char *str = xmalloc(len + 1);
    memcpy(str, p, len);
    str[len] = 0;
    return str;
}

/* Read [off, off+len) of the file; past its end it reads as zeroes, as QEMU reads it. */
static int read_padded(struct qimg_node *n, uint64_t flen, uint64_t off, uint64_t len, void *buf)
{
    memset(buf, 0, len);
    if (off >= flen || !len)
        return 0;
    return qimg_node_pread(n->file, off, flen - off < len ? flen - off : len, buf, 0);
}

/* The variable part of an entry: extra data (keep bytes of extra), ID and name. */
static int read_entry_tail(struct qimg_node *n, uint64_t flen, uint64_t off, uint32_t extra,
                           uint32_t keep, uint16_t id_len, uint16_t name_len,
                           struct qcow2_snapshot *sn)
{
    uint8_t *buf = xmalloc((size_t)keep + id_len + name_len + 1);
    int ret = read_padded(n, flen, off, keep, buf);
    if (ret == 0)
        ret = read_padded(n, flen, off + extra, (uint64_t)id_len + name_len, buf + keep);
    if (ret < 0) {
        free(buf);
        return ret;
    }
    sn->extra_size = keep;
    sn->extra = xmalloc(keep ? keep : 1);
    memcpy(sn->extra, buf, keep);
    if (keep >= 8)
        sn->vm_state_size = qcow2_be64(buf);
    if (keep >= 16)
        sn->disk_size = qcow2_be64(buf + 8);
    if (keep >= 24)
        sn->icount = qcow2_be64(buf + 16);
    sn->id = read_string(buf + keep, id_len);
    sn->name = read_string(buf + keep + id_len, name_len);
    free(buf);
    return 0;
}

/*
 * qcow2.txt, Snapshots: read the table (nb_snapshots entries; every size
 * bounded before it is allocated; past the end of the file it reads as
 * zeroes). Without repair, an entry with more than 1024 bytes of extra data
 * or a table over 64 MiB is an error, as when QEMU opens the image; with
 * repair (qemu-img check -r all) the excess extra data, or the snapshots
 * past the limit, are dropped with QEMU's messages and counted in *repair.
 */
int qcow2_snapshots_read(struct qimg_node *n, struct qcow2_sn_repair *repair,
                         struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    qcow2_snapshots_free(s);
    s->snapshots_size = 0;
    if (!s->nb_snapshots)
        return 0;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get the size of the image file");
    struct qcow2_snapshot *tab = xcalloc(s->nb_snapshots, sizeof(*tab));
    uint64_t off = s->snapshots_offset;
    uint8_t h[SN_HEADER];
    int ret = 0;
    uint32_t i;
    for (i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &tab[i];
        off = qcow2_align_up(off, 8);
        ret = read_padded(n, (uint64_t)flen, off, SN_HEADER, h);
        if (ret < 0) {
            qimg_error_errno(err, ret, "Failed to read snapshot table");
            break;
        }
        off += SN_HEADER;
        sn->l1_offset = qcow2_be64(h);
        sn->l1_size = qcow2_be32(h + 8);
        uint16_t id_len = qcow2_be16(h + 12), name_len = qcow2_be16(h + 14);
        sn->date_sec = qcow2_be32(h + 16);
        sn->date_nsec = qcow2_be32(h + 20);
        sn->vm_clock_nsec = qcow2_be64(h + 24);
        sn->vm_state_size = qcow2_be32(h + 32);
        uint32_t extra = qcow2_be32(h + 36), keep = extra;
        sn->icount = UINT64_MAX;
        sn->disk_size = s->size;
        if (extra > SN_MAX_EXTRA) {
            if (!repair) {
                ret = qimg_error_set(err, -EFBIG,
                                     "Too much extra metadata in snapshot table entry %u\n"
                                     "You can force-remove this extra metadata with qemu-img "
                                     "check -r all",
                                     i);
                break;
            }
            fprintf(stderr,
                    "Discarding too much extra metadata in snapshot table entry %u (%u > %u)\n",
                    i, extra, SN_MAX_EXTRA);
            repair->extra_dropped++;
            keep = SN_MAX_EXTRA;
        }
        ret = read_entry_tail(n, (uint64_t)flen, off, extra, keep, id_len, name_len, sn);
        if (ret < 0) {
            qimg_error_errno(err, ret, "Failed to read snapshot table");
            break;
        }
        uint64_t entry_start = off - SN_HEADER;
        off += (uint64_t)extra + id_len + name_len;
        if (off - s->snapshots_offset > SN_MAX_TABLE) {
            off = entry_start; /* the table ends before the first snapshot dropped */
            uint32_t over = s->nb_snapshots - i;
            if (!repair) {
                ret = qimg_error_set(err, -EFBIG,
                                     "Snapshot table is too big\nYou can force-remove all %u "
                                     "overhanging snapshots with qemu-img check -r all",
                                     over);
                break;
            }
            fprintf(stderr, "Discarding %u overhanging snapshots (snapshot table is too big)\n",
                    over);
            repair->overhang += over;
            sn_free(sn);
            s->nb_snapshots = i;
            break;
        }
    }
    if (ret < 0) {
        for (uint32_t k = 0; k <= i && k < s->nb_snapshots; k++)
            sn_free(&tab[k]);
        free(tab);
        return ret;
    }
    s->snapshots = tab;
    /* Entries end 8-byte aligned (QEMU counts the last one's padding too). */
    s->snapshots_size = off - s->snapshots_offset;
    return 0;
}

int qcow2_snapshots_load(struct qimg_node *n, struct qimg_error *err)
{
    /* qemu-img check reads (and may repair) the table itself (check.c). */
    if (n->flags & QIMG_O_CHECK)
        return 0;
    return qcow2_snapshots_read(n, NULL, err);
}

/*
 * qemu-img check -r all: write the table read with repairs back (every
 * entry with its 24 bytes of known extra data) in new clusters.
 */
int qcow2_snapshots_rewrite(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    qcow2_discard_freed_begin(s); /* the old table is punched, as QEMU discards it */
    int ret = snapshots_write(n, s->snapshots, s->nb_snapshots);
    qcow2_discard_freed_end(n); /* advisory */
    return ret;
}

const char *qcow2_snapshot_overlap(const struct qcow2_state *s, uint64_t off, uint64_t len)
{
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        uint64_t l1_len = qcow2_align_up((uint64_t)sn->l1_size * 8, s->cluster_size);
        if (sn->l1_size && len && off < sn->l1_offset + l1_len && sn->l1_offset < off + len)
            return "inactive L1 table";
    }
    return NULL;
}

static void sn_to_info(const struct qcow2_snapshot *sn, struct qimg_snapshot_info *out)
{
    out->id = xstrdup(sn->id);
    out->name = xstrdup(sn->name);
    out->vm_state_size = sn->vm_state_size;
    out->date_sec = sn->date_sec;
    out->date_nsec = sn->date_nsec;
    out->vm_clock_nsec = sn->vm_clock_nsec;
    out->icount = sn->icount;
    out->disk_size = sn->disk_size;
}

int qcow2_snapshot_list(struct qimg_node *n, struct qimg_snapshot_info **out, size_t *count,
                        struct qimg_error *err)
{
    (void)err;
    struct qcow2_state *s = n->opaque;
    pthread_mutex_lock(&n->lock);
    *count = s->snapshots ? s->nb_snapshots : 0;
    *out = *count ? xcalloc(*count, sizeof(**out)) : NULL;
    for (size_t i = 0; i < *count; i++)
        sn_to_info(&s->snapshots[i], &(*out)[i]);
    pthread_mutex_unlock(&n->lock);
    return 0;
}

struct qimg_json *qcow2_snapshots_info_json(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    if (!s->snapshots || !s->nb_snapshots)
        return NULL;
    struct qimg_json *arr = qimg_json_array();
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qimg_snapshot_info info;
        sn_to_info(&s->snapshots[i], &info);
        qimg_json_append(arr, qimg_snapshot_info_json(&info));
        free(info.id);
        free(info.name);
    }
    return arr;
}

/* Index of the snapshot matching id and name where given, or -1. */
static long find_snapshot(const struct qcow2_state *s, const char *id, const char *name)
{
    if (!id && !name)
        return -1;
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
        if ((!id || strcmp(s->snapshots[i].id, id) == 0) &&
            (!name || strcmp(s->snapshots[i].name, name) == 0))
            return (long)i;
    }
    return -1;
}

/* Serialise and store the table in new clusters, switch the header, free the old table. */
static int snapshots_write(struct qimg_node *n, struct qcow2_snapshot *tab, uint32_t nb)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size, size = 0;
    for (uint32_t i = 0; i < nb; i++)
        size += sn_entry_size(&tab[i]);
    /* Entries start 8-byte aligned; the table ends right after the last one (as QEMU's). */
    if (nb)
        size -= sn_entry_size(&tab[nb - 1]) - sn_entry_unpadded(&tab[nb - 1]);
    if (size > SN_MAX_TABLE)
        return -EFBIG;
    int64_t off = 0;
    int ret = 0;
    if (nb) {
        off = qcow2_alloc_clusters(n, qcow2_div_round_up(size, cs));
        if (off < 0)
            return (int)off;
        uint8_t *buf = xcalloc(1, size);
        uint64_t p = 0;
        for (uint32_t i = 0; i < nb; i++) {
            const struct qcow2_snapshot *sn = &tab[i];
            uint32_t extra = sn->extra_size > SN_EXTRA_KNOWN ? sn->extra_size : SN_EXTRA_KNOWN;
            size_t id_len = strlen(sn->id), name_len = strlen(sn->name);
            uint8_t *e = buf + p;
            qcow2_put64(e, sn->l1_offset);
            qcow2_put32(e + 8, sn->l1_size);
            qcow2_put16(e + 12, (uint16_t)id_len);
            qcow2_put16(e + 14, (uint16_t)name_len);
            qcow2_put32(e + 16, sn->date_sec);
            qcow2_put32(e + 20, sn->date_nsec);
            qcow2_put64(e + 24, sn->vm_clock_nsec);
            qcow2_put32(e + 32, sn->vm_state_size > UINT32_MAX ? 0 : (uint32_t)sn->vm_state_size);
            qcow2_put32(e + 36, extra);
            if (sn->extra_size > SN_EXTRA_KNOWN)
                memcpy(e + SN_HEADER, sn->extra, sn->extra_size);
            qcow2_put64(e + SN_HEADER, sn->vm_state_size);
            qcow2_put64(e + SN_HEADER + 8, sn->disk_size);
            qcow2_put64(e + SN_HEADER + 16, sn->icount);
            memcpy(e + SN_HEADER + extra, sn->id, id_len);
            memcpy(e + SN_HEADER + extra + id_len, sn->name, name_len);
            p += sn_entry_size(sn);
        }
        /* QEMU's overlap check before the write (a damaged old table may cover it). */
        const char *what = qcow2_overlap(s, (uint64_t)off, size);
        if (what) {
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "Preventing invalid write on metadata (overlaps with %s)", what);
            qcow2_mark_corrupt(n, msg);
            ret = -EIO;
        } else {
            ret = qimg_node_pwrite(n->file, (uint64_t)off, size, buf, 0);
        }
        free(buf);
        if (ret == 0)
            ret = qimg_node_flush(n->file);
        if (ret < 0)
            return ret;
    }
    uint8_t hdr[12];
    qcow2_put32(hdr, nb);
    qcow2_put64(hdr + 4, (uint64_t)off);
    ret = qcow2_header_update_fields(n, 60, hdr, sizeof(hdr));
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret < 0)
        return ret;
    uint64_t old_off = s->snapshots_offset, old_size = s->snapshots_size;
    uint32_t old_nb = s->nb_snapshots;
    s->snapshots_offset = (uint64_t)off;
    s->snapshots_size = size;
    s->nb_snapshots = nb;
    if (old_nb && old_size) {
        ret = qcow2_free_bytes(n, old_off, old_size);
        /*
         * The new table is in place (the header points at it and s->nb_snapshots says so):
         * like QEMU, a failed free only leaks the old table (or is reported while checking).
         * Failing here would leave the caller's table and nb_snapshots out of step.
         */
        if (ret < 0 && s->checking)
            fprintf(stderr, "qcow2_free_clusters failed: %s\n", strerror(-ret));
    }
    return 0;
}

static int corrupt(struct qimg_node *n, const char *what, uint64_t off)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "%s %#" PRIx64 " unaligned", what, off);
    qcow2_mark_corrupt(n, msg);
    return -EIO;
}

/*
 * Add delta (+1 / -1) to the refcount of every L2 table of l1 and of every
 * cluster those tables reference. Lock held.
 */
static int l1_refcounts(struct qimg_node *n, const uint64_t *l1, uint32_t l1_size, int delta)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    uint8_t *copy = xmalloc(cs);
    int ret = 0;
    for (uint32_t i = 0; ret == 0 && i < l1_size; i++) {
        uint64_t l2_off = l1[i] & QCOW2_OFFSET_MASK;
        if (!l2_off)
            continue;
        if (l2_off % cs) {
            ret = corrupt(n, "L2 table offset", l2_off);
            break;
        }
        uint8_t *l2;
        ret = qcow2_cache_get(n, &s->l2_cache, l2_off, false, &l2);
        if (ret < 0)
            break;
        memcpy(copy, l2, cs);
        for (uint64_t j = 0; ret == 0 && j < s->l2_entries; j++) {
            struct qcow2_entry e;
            qcow2_l2_get_entry(s, copy, j, &e);
            if (e.l2e & QCOW2_OFLAG_COMPRESSED) {
                uint64_t host, len;
                qcow2_compressed_range(s, e.l2e, &host, &len);
                uint64_t first = host / cs, last = (host + len - 1) / cs;
                ret = qcow2_update_refcounts(n, first, last - first + 1, delta);
                continue;
            }
            uint64_t host = e.l2e & QCOW2_OFFSET_MASK;
            if (!host)
                continue;
            if (host % cs) {
                ret = corrupt(n, "Cluster offset", host);
                break;
            }
            ret = qcow2_update_refcounts(n, host / cs, 1, delta);
        }
        if (ret == 0)
            ret = qcow2_update_refcounts(n, l2_off / cs, 1, delta);
        uint64_t rc;
        if (ret == 0 && delta < 0 && qcow2_get_refcount(n, l2_off / cs, &rc) == 0 && rc == 0)
            qcow2_cache_drop(&s->l2_cache, l2_off);
    }
    free(copy);
    return ret;
}

/*
 * qcow2.txt: "bit 63 of all entries in the new active L1 table and all L2
 * tables referenced by it must be reconstructed from the refcount table".
 */
static int fix_copied(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2_off = s->l1[i] & QCOW2_OFFSET_MASK;
        if (!l2_off)
            continue;
        if (l2_off % cs)
            return corrupt(n, "L2 table offset", l2_off);
        uint64_t rc;
        int ret = qcow2_get_refcount(n, l2_off / cs, &rc);
        if (ret < 0)
            return ret;
        uint64_t want = rc == 1 ? QCOW2_OFLAG_COPIED : 0;
        if ((s->l1[i] & QCOW2_OFLAG_COPIED) != want) {
            s->l1[i] = (s->l1[i] & ~QCOW2_OFLAG_COPIED) | want;
            ret = qcow2_l1_write_entry(n, i);
            if (ret < 0)
                return ret;
        }
        uint8_t *l2;
        ret = qcow2_cache_get(n, &s->l2_cache, l2_off, false, &l2);
        if (ret < 0)
            return ret;
        uint64_t lo = UINT64_MAX, hi = 0;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            struct qcow2_entry e;
            qcow2_l2_get_entry(s, l2, j, &e);
            uint64_t host = e.l2e & QCOW2_OFFSET_MASK;
            uint64_t w = 0;
            if (!(e.l2e & QCOW2_OFLAG_COMPRESSED) && host) {
                ret = qcow2_get_refcount(n, host / cs, &rc);
                if (ret < 0)
                    return ret;
                w = rc == 1 ? QCOW2_OFLAG_COPIED : 0;
            }
            if ((e.l2e & QCOW2_OFLAG_COPIED) != w) {
                e.l2e = (e.l2e & ~QCOW2_OFLAG_COPIED) | w;
                qcow2_l2_set_entry(s, l2, j, &e);
                lo = j < lo ? j : lo;
                hi = j;
            }
        }
        if (lo != UINT64_MAX) {
            ret = qcow2_meta_write(n, l2_off + lo * s->l2_entry_bytes,
                                   l2 + lo * s->l2_entry_bytes,
                                   (hi - lo + 1) * s->l2_entry_bytes);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

/*
 * Clear OFLAG_COPIED in every L2 table l1 reaches and in l1 itself (stored at
 * l1_offset; l1 is updated in memory once written): the safe direction
 * whatever the refcounts are, done before references are added so that no
 * COPIED entry ever has a refcount above 1.
 */
static int clear_copied(struct qimg_node *n, uint64_t *l1, uint32_t l1_size, uint64_t l1_offset)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    uint32_t lo1 = UINT32_MAX, hi1 = 0;
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t l2_off = l1[i] & QCOW2_OFFSET_MASK;
        if (!l2_off)
            continue;
        if (l2_off % cs)
            return corrupt(n, "L2 table offset", l2_off);
        if (l1[i] & QCOW2_OFLAG_COPIED) {
            lo1 = i < lo1 ? i : lo1;
            hi1 = i;
        }
        uint8_t *l2;
        int ret = qcow2_cache_get(n, &s->l2_cache, l2_off, false, &l2);
        if (ret < 0)
            return ret;
        uint64_t lo = UINT64_MAX, hi = 0;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            struct qcow2_entry e;
            qcow2_l2_get_entry(s, l2, j, &e);
            if (!(e.l2e & QCOW2_OFLAG_COPIED))
                continue;
            e.l2e &= ~QCOW2_OFLAG_COPIED;
            qcow2_l2_set_entry(s, l2, j, &e);
            lo = j < lo ? j : lo;
            hi = j;
        }
        if (lo != UINT64_MAX) {
            ret = qcow2_meta_write(n, l2_off + lo * s->l2_entry_bytes,
                                   l2 + lo * s->l2_entry_bytes,
                                   (hi - lo + 1) * s->l2_entry_bytes);
            if (ret < 0) {
                qcow2_cache_drop(&s->l2_cache, l2_off); /* reread what the file holds */
                return ret;
            }
        }
    }
    if (lo1 == UINT32_MAX)
        return 0;
    uint8_t *buf = xmalloc(((size_t)hi1 - lo1 + 1) * 8);
    for (uint32_t i = lo1; i <= hi1; i++)
        qcow2_put64(buf + (i - lo1) * 8, l1[i] & ~QCOW2_OFLAG_COPIED);
    if (l1 == s->l1)
        qimg_debug_event(n->file, QIMG_DBG_L1_UPDATE);
    int ret = qcow2_meta_write(n, l1_offset + (uint64_t)lo1 * 8, buf, ((size_t)hi1 - lo1 + 1) * 8);
    free(buf);
    if (ret < 0)
        return ret;
    for (uint32_t i = lo1; i <= hi1; i++)
        l1[i] &= ~QCOW2_OFLAG_COPIED;
    return 0;
}

/*
 * The refcounts changed so far on disk, then a barrier: before COPIED is set
 * from them (or anything links what they count). Deferred decrements (lazy
 * refcounts) are written back first, unless the image is marked dirty: then
 * its refcounts are rebuilt on the next open anyway, as QEMU treats it.
 */
static int refcounts_stable(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    int ret = qcow2_lazy_dirty(s) ? 0 : qcow2_refcount_writeback(n);
    return ret < 0 ? ret : qcow2_barrier(n);
}

/* A snapshot's L1 table, validated as QEMU validates it, read into memory (host order). */
static int read_snapshot_l1(struct qimg_node *n, const struct qcow2_snapshot *sn,
                            uint64_t **out, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    *out = NULL;
    if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8)
        return qimg_error_set(err, -EFBIG, "Snapshot L1 table too large");
    if (sn->l1_offset % s->cluster_size || sn->l1_offset > INT64_MAX - (uint64_t)sn->l1_size * 8)
        return qimg_error_set(err, -EINVAL, "Snapshot L1 table offset invalid");
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get the size of the image file");
    uint64_t bytes = (uint64_t)sn->l1_size * 8;
    if (sn->l1_offset + bytes > (uint64_t)flen)
        return qimg_error_set(err, -EINVAL, "Snapshot L1 table offset invalid");
    uint8_t *buf = xmalloc(bytes ? bytes : 1);
    int ret = bytes ? qimg_node_pread(n->file, sn->l1_offset, bytes, buf, 0) : 0;
    if (ret < 0) {
        free(buf);
        return qimg_error_errno(err, ret, "Failed to read l1 table for snapshot");
    }
    uint64_t *l1 = xcalloc(sn->l1_size ? sn->l1_size : 1, 8);
    for (uint32_t i = 0; i < sn->l1_size; i++)
        l1[i] = qcow2_be64(buf + i * 8);
    free(buf);
    *out = l1;
    return 0;
}

static char *next_id(const struct qcow2_state *s)
{
    unsigned long max = 0;
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
        unsigned long v = strtoul(s->snapshots[i].id, NULL, 10);
        if (v > max)
            max = v;
    }
    return xasprintf("%lu", max + 1);
}

static char *clip(const char *str, size_t max)
{
    size_t len = strlen(str);
    char *c = xmalloc((len > max ? max : len) + 1);
    memcpy(c, str, len > max ? max : len);
    c[len > max ? max : len] = 0;
    return c;
}

int qcow2_snapshot_create(struct qimg_node *n, const struct qimg_snapshot_info *info,
                          struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    /* Snapshots cannot cover data held outside the image file, so QEMU refuses them. */
    if (qcow2_has_data_file(s))
        return qimg_error_set(err, -ENOTSUP, "%s", strerror(ENOTSUP));
    if (s->read_only)
        return qimg_error_set(err, -EACCES, "%s", strerror(EACCES));
    pthread_mutex_lock(&n->lock);
    qcow2_discard_freed_begin(s);
    int ret = 0;
    struct qcow2_snapshot sn = {0};
    uint64_t l1_bytes = (uint64_t)s->l1_size * 8;
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS) {
        ret = qimg_error_set(err, -EFBIG, "%s", strerror(EFBIG));
        goto out;
    }
    if (info->id && info->id[0] && find_snapshot(s, info->id, NULL) >= 0) {
        ret = qimg_error_set(err, -EEXIST, "%s", strerror(EEXIST));
        goto out;
    }
    sn.id = info->id && info->id[0] ? clip(info->id, SN_MAX_ID) : next_id(s);
    sn.name = clip(info->name ? info->name : "", SN_MAX_NAME);
    sn.l1_size = s->l1_size;
    sn.date_sec = info->date_sec;
    sn.date_nsec = info->date_nsec;
    sn.vm_clock_nsec = info->vm_clock_nsec;
    sn.vm_state_size = 0; /* qemu-img saves no VM state */
    sn.disk_size = s->size;
    sn.icount = info->icount;
    sn.extra_size = SN_EXTRA_KNOWN;
    sn.extra = xcalloc(1, SN_EXTRA_KNOWN);

    /*
     * The L1 copy first, with the flags the active table has now, as QEMU copies it: an
     * inactive table's COPIED flags mean nothing (check ignores them; apply clears them
     * before the table becomes active again).
     */
    if (l1_bytes) {
        int64_t off = qcow2_alloc_clusters(n, qcow2_div_round_up(l1_bytes, s->cluster_size));
        if (off < 0) {
            ret = qimg_error_errno(err, (int)off, "Could not allocate the snapshot L1 table");
            goto out;
        }
        sn.l1_offset = (uint64_t)off;
        uint8_t *buf = xmalloc(l1_bytes);
        for (uint32_t i = 0; i < s->l1_size; i++)
            qcow2_put64(buf + i * 8, s->l1[i]);
        ret = qimg_node_pwrite(n->file, sn.l1_offset, l1_bytes, buf, 0);
        free(buf);
        if (ret < 0) {
            qimg_error_errno(err, ret, "Could not write the snapshot L1 table");
            goto out;
        }
    }
    /*
     * COPIED off in the active tables (barrier), then the references (made stable by
     * snapshots_write's flush before its header switch): a cut leaves at worst COPIED
     * clear on clusters still counted once, and leaks.
     */
    ret = clear_copied(n, s->l1, s->l1_size, s->l1_offset);
    if (ret == 0)
        ret = qcow2_barrier(n);
    if (ret == 0)
        ret = l1_refcounts(n, s->l1, s->l1_size, 1);
    /* Even after a partial failure COPIED must match the refcounts: leaks, no corruption. */
    int fret = fix_copied(n);
    if (ret == 0)
        ret = fret;
    if (ret < 0) {
        if (ret == -ERANGE) /* a refcount at its maximum (refcount_bits=1 ...) */
            ret = -EINVAL;
        qimg_error_errno(err, ret, "Could not update refcounts");
        goto out;
    }
    struct qcow2_snapshot *tab = xcalloc((size_t)s->nb_snapshots + 1, sizeof(*tab));
    if (s->nb_snapshots)
        memcpy(tab, s->snapshots, s->nb_snapshots * sizeof(*tab));
    tab[s->nb_snapshots] = sn;
    ret = snapshots_write(n, tab, s->nb_snapshots + 1);
    if (ret < 0) {
        free(tab);
        qimg_error_errno(err, ret, "Could not write the snapshot table");
        goto out;
    }
    free(s->snapshots);
    s->snapshots = tab;
    memset(&sn, 0, sizeof(sn));
out:
    sn_free(&sn);
    qcow2_discard_freed_end(n); /* advisory */
    pthread_mutex_unlock(&n->lock);
    return ret;
}

int qcow2_snapshot_goto(struct qimg_node *n, const char *id_or_name, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    if (qcow2_has_data_file(s)) /* as for create: checked before the name */
        return qimg_error_set(err, -ENOTSUP, "%s", strerror(ENOTSUP));
    if (s->read_only)
        return qimg_error_set(err, -EACCES, "%s", strerror(EACCES));
    pthread_mutex_lock(&n->lock);
    qcow2_discard_freed_begin(s);
    uint64_t *sn_l1 = NULL, *old = NULL;
    long idx = find_snapshot(s, id_or_name, NULL);
    if (idx < 0)
        idx = find_snapshot(s, NULL, id_or_name);
    int ret;
    if (idx < 0) {
        ret = qimg_error_set(err, -ENOENT, "%s", strerror(ENOENT));
        goto out;
    }
    const struct qcow2_snapshot *sn = &s->snapshots[idx];
    ret = read_snapshot_l1(n, sn, &sn_l1, err);
    if (ret < 0)
        goto out;
    uint64_t l2_span = s->cluster_size * s->l2_entries;
    if (sn->disk_size > INT64_MAX - l2_span) {
        ret = qimg_error_set(err, -EFBIG, "Snapshot disk size invalid");
        goto out;
    }
    uint64_t need = qcow2_div_round_up(sn->disk_size, l2_span);
    if (need < sn->l1_size)
        need = sn->l1_size;
    ret = qcow2_l1_grow(n, need);
    if (ret < 0) {
        qimg_error_errno(err, ret, "Could not grow the L1 table");
        goto out;
    }
    /*
     * References for the new active table first (its tables without COPIED: the snapshot
     * keeps sharing them), stable before the switch; then the old ones dropped, stable
     * before COPIED is set from the refcounts. Snapshot L1 copies keep the flags of the
     * moment they were taken: they are cleared in the copy (as QEMU does) and the tables
     * it reaches, before the copy becomes the active table.
     */
    ret = clear_copied(n, sn_l1, sn->l1_size, sn->l1_offset);
    if (ret == 0)
        ret = l1_refcounts(n, sn_l1, sn->l1_size, 1);
    if (ret == 0)
        ret = refcounts_stable(n);
    if (ret < 0) {
        qimg_error_errno(err, ret, "Could not update refcounts");
        goto out;
    }
    uint64_t bytes = (uint64_t)s->l1_size * 8;
    uint8_t *buf = xcalloc(1, bytes ? bytes : 1);
    uint64_t *nl1 = xcalloc(s->l1_size ? s->l1_size : 1, 8);
    for (uint32_t i = 0; i < sn->l1_size; i++) {
        nl1[i] = sn_l1[i];
        qcow2_put64(buf + i * 8, nl1[i]);
    }
    ret = bytes ? qimg_node_pwrite(n->file, s->l1_offset, bytes, buf, 0) : 0;
    free(buf);
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret < 0) {
        free(nl1);
        qimg_error_errno(err, ret, "Could not write the L1 table");
        goto out;
    }
    old = s->l1;
    s->l1 = nl1;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t off = nl1[i] & QCOW2_OFFSET_MASK;
        if (off && off % s->cluster_size == 0)
            qcow2_meta_add(s, off);
    }
    ret = l1_refcounts(n, old, s->l1_size, -1);
    if (ret == 0)
        ret = refcounts_stable(n);
    if (ret == 0)
        ret = fix_copied(n);
    if (ret == 0 && sn->disk_size != s->size) {
        uint8_t be[8];
        qcow2_put64(be, sn->disk_size);
        ret = qcow2_header_update_fields(n, 24, be, 8);
        if (ret == 0)
            s->size = sn->disk_size;
    }
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret < 0)
        qimg_error_errno(err, ret, "Could not update refcounts");
out:
    free(sn_l1);
    free(old);
    qcow2_discard_freed_end(n); /* advisory */
    pthread_mutex_unlock(&n->lock);
    return ret;
}

int qcow2_snapshot_delete(struct qimg_node *n, const char *id, const char *name,
                          struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    if (s->read_only)
        return qimg_error_set(err, -EACCES, "%s", strerror(EACCES));
    pthread_mutex_lock(&n->lock);
    qcow2_discard_freed_begin(s);
    uint64_t *sn_l1 = NULL;
    struct qcow2_snapshot *tab = NULL;
    long idx = find_snapshot(s, id, name);
    int ret;
    if (idx < 0) {
        ret = qimg_error_set(err, -ENOENT, "Can't find the snapshot");
        goto out;
    }
    struct qcow2_snapshot sn = s->snapshots[idx];
    ret = read_snapshot_l1(n, &sn, &sn_l1, err);
    if (ret < 0)
        goto out;
    /* Out of the table first: afterwards nothing reaches the snapshot's clusters. */
    uint32_t nb = s->nb_snapshots - 1;
    tab = xcalloc(nb ? nb : 1, sizeof(*tab));
    memcpy(tab, s->snapshots, (size_t)idx * sizeof(*tab));
    memcpy(tab + idx, s->snapshots + idx + 1, (size_t)(nb - (uint32_t)idx) * sizeof(*tab));
    ret = snapshots_write(n, tab, nb);
    if (ret < 0) {
        qimg_error_errno(err, ret, "Failed to remove snapshot from snapshot list");
        goto out;
    }
    free(s->snapshots);
    s->snapshots = tab;
    tab = NULL;
    ret = l1_refcounts(n, sn_l1, sn.l1_size, -1);
    if (ret == 0 && sn.l1_size)
        ret = qcow2_free_bytes(n, sn.l1_offset, (uint64_t)sn.l1_size * 8);
    /*
     * The decrements on disk before COPIED is set from them. Even after a partial failure
     * the COPIED flags must follow the refcounts that did drop to 1 (else check reports
     * OFLAG_COPIED errors): leaks only, as in create.
     */
    int sret = refcounts_stable(n);
    if (ret == 0)
        ret = sret;
    int fret = fix_copied(n);
    if (ret == 0)
        ret = fret;
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    sn_free(&sn);
    if (ret < 0)
        qimg_error_errno(err, ret, "Failed to free the cluster and L1 table");
out:
    free(tab);
    free(sn_l1);
    qcow2_discard_freed_end(n); /* advisory */
    pthread_mutex_unlock(&n->lock);
    return ret;
}

int qcow2_snapshot_load_tmp(struct qimg_node *n, const char *id, const char *name,
                            struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    if (!s->read_only)
        return qimg_error_set(err, -EINVAL, "Device is writable");
    pthread_mutex_lock(&n->lock);
    uint64_t *l1 = NULL;
    long idx = find_snapshot(s, id, name);
    int ret;
    if (idx < 0) {
        ret = qimg_error_set(err, -ENOENT, "Can't find snapshot");
        goto out;
    }
    ret = read_snapshot_l1(n, &s->snapshots[idx], &l1, err);
    if (ret < 0)
        goto out;
    free(s->l1);
    s->l1 = l1;
    s->l1_size = s->snapshots[idx].l1_size;
    s->l1_offset = s->snapshots[idx].l1_offset;
out:
    pthread_mutex_unlock(&n->lock);
    return ret;
}
