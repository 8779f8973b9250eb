/* SPDX-License-Identifier: MIT */
/*
 * Emptying an image (commit empties its top): afterwards no guest cluster is
 * allocated and everything reads from the backing file.
 *
 * A v3 image without snapshots, bitmaps or encryption is rebuilt the way
 * qemu-img leaves it: header cluster kept, then one refcount table cluster,
 * one refcount block, the (all-zero) L1 table, and the file cut after it.
 * The dirty bit guards the steps in between: a crash leaves an image whose
 * refcounts a check repairs, never one that maps stale data (the old L1 is
 * zeroed first). Other images have every L2 entry cleared and its clusters
 * freed, their tables left in place.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"
#include "util/mem.h"

static int set_incompat(struct qimg_node *n, uint64_t incompat)
{
    struct qcow2_state *s = n->opaque;
    uint8_t be[8];
    qcow2_put64(be, incompat);
    int ret = qcow2_header_update_fields(n, 72, be, 8);
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret == 0)
        s->incompat = incompat;
    return ret;
}

static void cache_forget(struct qcow2_cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        c->e[i].offset = 0;
}

/* Lock held. */
static int make_completely_empty(struct qimg_node *n, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t l1_bytes = (uint64_t)s->l1_size * 8;
    uint64_t l1_clusters = qcow2_div_round_up(l1_bytes, cs);
    uint8_t *buf = qimg_alloc_aligned(cs);
    int ret;
    if (!buf)
        return qimg_error_set(err, -ENOMEM, "%s", strerror(ENOMEM));

    qimg_debug_event(n->file, QIMG_DBG_EMPTY_IMAGE_PREPARE);
    ret = set_incompat(n, s->incompat | QCOW2_INCOMPAT_DIRTY);
    if (ret < 0)
        goto out;
    /* The old L1 first: from here on nothing maps a data cluster. */
    memset(buf, 0, cs);
    for (uint64_t done = 0; ret == 0 && done < l1_bytes;) {
        uint64_t now = l1_bytes - done < cs ? l1_bytes - done : cs;
        ret = qimg_node_pwrite(n->file, s->l1_offset + done, now, buf, 0);
        done += now;
    }
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret < 0)
        goto out;
    memset(s->l1, 0, l1_bytes ? l1_bytes : 8);

    /* New L1 (zeroes) at cluster 3.., the refcount block at 2, the table at 1. */
    for (uint64_t i = 0; ret == 0 && i < l1_clusters; i++)
        ret = qimg_node_pwrite(n->file, (3 + i) * cs, cs, buf, 0);
    for (uint64_t i = 0; i < 3 + l1_clusters; i++)
        refcount_set_entry(s, buf, i, 1);
    if (ret == 0)
        ret = qimg_node_pwrite(n->file, 2 * cs, cs, buf, 0);
    memset(buf, 0, cs);
    qcow2_put64(buf, 2 * cs);
    if (ret == 0)
        ret = qimg_node_pwrite(n->file, cs, cs, buf, 0);
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret < 0)
        goto out;

    /* Point the header at them: L1 offset, refcount table offset and size in one write. */
    uint8_t hdr[20];
    qcow2_put64(hdr, 3 * cs);
    qcow2_put64(hdr + 8, cs);
    qcow2_put32(hdr + 16, 1);
    ret = qcow2_header_update_fields(n, 40, hdr, sizeof(hdr));
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret < 0)
        goto out;
    s->l1_offset = 3 * cs;
    s->rt_offset = cs;
    s->rt_clusters = 1;
    free(s->rt);
    s->rt = NULL;
    s->n_meta = 0;
    cache_forget(&s->l2_cache);
    cache_forget(&s->rb_cache);
    s->free_cluster_index = 0;
    s->free_byte_offset = 0;
    ret = qcow2_refcount_load(n, err);
    if (ret < 0)
        goto out_quiet;

    struct qimg_error terr = {0};
    ret = qimg_node_truncate(n->file, (3 + l1_clusters) * cs, false, QIMG_PREALLOC_OFF, &terr);
    if (ret == -ENOTSUP)
        ret = 0; /* a device cannot shrink: the tail is merely unused */
    if (ret == 0)
        ret = set_incompat(n, s->incompat & ~QCOW2_INCOMPAT_DIRTY);
out:
    if (ret < 0)
        qimg_error_errno(err, ret, "Could not empty the image");
out_quiet:
    free(buf);
    return ret;
}

/* Lock held: clear every L2 entry of the image and free what they referenced. */
static int discard_all(struct qimg_node *n, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size, l2_span = s->l2_entries * cs;
    int ret = 0;
    for (uint64_t i = 0; ret == 0 && i < s->l1_size; i++) {
        uint64_t a = i * l2_span;
        if (a >= s->size)
            break;
        uint8_t *l2;
        uint64_t l2_off;
        ret = qcow2_get_l2(n, a, false, &l2, &l2_off);
        if (ret == 0 && l2 && !(s->l1[i] & QCOW2_OFLAG_COPIED))
            ret = qcow2_get_l2(n, a, true, &l2, &l2_off); /* shared with a snapshot: copy */
        if (ret < 0 || !l2)
            continue;
        uint64_t count = s->l2_entries;
        struct qcow2_entry *rel = xcalloc(count, sizeof(*rel));
        for (uint64_t k = 0; k < count; k++) {
            struct qcow2_entry z = {0};
            qcow2_l2_get_entry(s, l2, k, &rel[k]);
            qcow2_l2_set_entry(s, l2, k, &z);
        }
        ret = qcow2_meta_write(n, l2_off, l2, count * s->l2_entry_bytes);
        for (uint64_t k = 0; ret == 0 && k < count; k++)
            ret = qcow2_entry_release(n, &rel[k]);
        free(rel);
    }
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not empty the image");
    return 0;
}

int qcow2_make_empty(struct qimg_node *n, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    if (s->read_only)
        return qimg_error_set(err, -EACCES, "Image is read-only");
    pthread_mutex_lock(&n->lock);
    uint64_t l1_clusters = qcow2_div_round_up((uint64_t)s->l1_size * 8, s->cluster_size);
    int ret;
    if (s->corrupt_event)
        ret = qimg_error_set(err, -EIO, "Image is corrupt");
    else if (s->version >= 3 && !s->nb_snapshots && !s->bitmaps_ext && !s->crypt_method &&
             !s->data_file_name && 3 + l1_clusters <= s->rb_entries)
        ret = make_completely_empty(n, err);
    else
        ret = discard_all(n, err);
    pthread_mutex_unlock(&n->lock);
    return ret;
}
