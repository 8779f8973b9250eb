/* SPDX-License-Identifier: MIT */
/*
 * -s (snapshot mode): qemu-io puts a temporary qcow2 overlay over the image so
 * that writes never reach it. Here the overlay is private and in memory: a
 * node whose driver keeps modified 64 KiB clusters (qcow2's default cluster
 * size, so "map" shows the same allocation as QEMU's overlay) and reads the
 * rest from the image, which is opened read-only. Closing discards it all.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/io.h"
#include "qimg/driver.h"
#include "util/mem.h"

#define CLUSTER_BITS 16
#define CLUSTER ((uint64_t)1 << CLUSTER_BITS)
#define L2_BITS 12 /* clusters per table */
#define L2_ENTRIES ((uint64_t)1 << L2_BITS)
/* qcow2: one L1 entry maps cluster_size / 8 clusters (512 MiB with 64 KiB clusters). */
#define L1_COVERAGE (CLUSTER * (CLUSTER / 8))

static uint8_t zero_marker;
#define ZERO_CLUSTER (&zero_marker) /* allocated in the overlay, reads as zeroes */

struct overlay {
    uint64_t size;
    uint64_t visible;     /* bytes of the image still seen through (shrinking hides them) */
    uint64_t l1_entries;  /* qcow2's L1 size, for "vm state offset" */
    uint8_t ***tables;    /* tables[i][j]: cluster i * L2_ENTRIES + j, NULL when unallocated */
    size_t ntables;
};

static const struct qimg_driver overlay_driver;

static uint8_t **slot(struct overlay *o, uint64_t cluster, bool create)
{
    size_t t = (size_t)(cluster >> L2_BITS);
    if (t >= o->ntables) {
        if (!create)
            return NULL;
        size_t n = t + 1;
        o->tables = xrealloc(o->tables, n * sizeof(*o->tables));
        memset(o->tables + o->ntables, 0, (n - o->ntables) * sizeof(*o->tables));
        o->ntables = n;
    }
    if (!o->tables[t]) {
        if (!create)
            return NULL;
        o->tables[t] = xcalloc(L2_ENTRIES, sizeof(**o->tables));
    }
    return &o->tables[t][cluster & (L2_ENTRIES - 1)];
}

static uint8_t *cluster_get(struct overlay *o, uint64_t cluster)
{
    uint8_t **s = slot(o, cluster, false);
    return s ? *s : NULL;
}

static void cluster_set(struct overlay *o, uint64_t cluster, uint8_t *data)
{
    uint8_t **s = slot(o, cluster, data != NULL);
    if (!s)
        return;
    if (*s && *s != ZERO_CLUSTER)
        free(*s);
    *s = data;
}

/* Read [off, off+len) of the image beneath, zeroes where it is hidden or absent. */
static int read_below(struct qimg_node *n, uint64_t off, uint64_t len, uint8_t *buf)
{
    struct overlay *o = n->opaque;
    memset(buf, 0, len);
    if (off >= o->visible)
        return 0;
    uint64_t now = len < o->visible - off ? len : o->visible - off;
    return qimg_node_pread(n->backing, off, now, buf, 0);
}

static int64_t overlay_get_length(struct qimg_node *n)
{
    return (int64_t)((struct overlay *)n->opaque)->size;
}

static int overlay_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                         unsigned flags)
{
    struct overlay *o = n->opaque;
    uint8_t *p = buf;
    (void)flags;
    while (len) {
        uint64_t in = off & (CLUSTER - 1), now = CLUSTER - in < len ? CLUSTER - in : len;
        uint8_t *c = cluster_get(o, off >> CLUSTER_BITS);
        int ret = 0;
        if (c == ZERO_CLUSTER)
            memset(p, 0, now);
        else if (c)
            memcpy(p, c + in, now);
        else
            ret = read_below(n, off, now, p);
        if (ret < 0)
            return ret;
        p += now;
        off += now;
        len -= now;
    }
    return 0;
}

/* The cluster as data, copied up from below first (qcow2's copy-on-write). */
static int cluster_for_write(struct qimg_node *n, uint64_t cluster, uint8_t **out)
{
    struct overlay *o = n->opaque;
    uint8_t *c = cluster_get(o, cluster);
    if (c && c != ZERO_CLUSTER) {
        *out = c;
        return 0;
    }
    uint8_t *data = xcalloc(1, CLUSTER);
    if (!c) {
        int ret = read_below(n, cluster * CLUSTER, CLUSTER, data);
        if (ret < 0) {
            free(data);
            return ret;
        }
    }
    cluster_set(o, cluster, data);
    *out = data;
    return 0;
}

static int overlay_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                          unsigned flags)
{
    const uint8_t *p = buf;
    (void)flags;
    while (len) {
        uint64_t in = off & (CLUSTER - 1), now = CLUSTER - in < len ? CLUSTER - in : len;
        uint8_t *c;
        int ret = cluster_for_write(n, off >> CLUSTER_BITS, &c);
        if (ret < 0)
            return ret;
        if (p) {
            memcpy(c + in, p, now);
            p += now;
        } else {
            memset(c + in, 0, now);
        }
        off += now;
        len -= now;
    }
    return 0;
}

/* Whole clusters become zero clusters; the partial ends are written as data. */
static int overlay_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    struct overlay *o = n->opaque;
    (void)flags;
    while (len) {
        uint64_t in = off & (CLUSTER - 1), now = CLUSTER - in < len ? CLUSTER - in : len;
        if (in == 0 && now == CLUSTER) {
            cluster_set(o, off >> CLUSTER_BITS, ZERO_CLUSTER);
        } else {
            int ret = overlay_pwrite(n, off, now, NULL, 0);
            if (ret < 0)
                return ret;
        }
        off += now;
        len -= now;
    }
    return 0;
}

/* qcow2 discards whole clusters only; with an image below they must read as zeroes. */
static int overlay_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct overlay *o = n->opaque;
    uint64_t first = (off + CLUSTER - 1) >> CLUSTER_BITS, end = (off + len) >> CLUSTER_BITS;
    if (off + len == o->size)
        end = (o->size + CLUSTER - 1) >> CLUSTER_BITS;
    for (uint64_t c = first; c < end; c++)
        cluster_set(o, c, ZERO_CLUSTER);
    return 0;
}

static int overlay_flush(struct qimg_node *n)
{
    (void)n;
    return 0;
}

static int overlay_truncate(struct qimg_node *n, uint64_t size, bool exact,
                            enum qimg_prealloc prealloc, struct qimg_error *err)
{
    struct overlay *o = n->opaque;
    (void)exact;
    if (prealloc != QIMG_PREALLOC_OFF)
        return qimg_error_set(err, -ENOTSUP, "Unsupported preallocation mode '%s'",
                              qimg_prealloc_name(prealloc));
    if (size < o->size) {
        uint64_t keep = (size + CLUSTER - 1) >> CLUSTER_BITS;
        for (uint64_t c = keep; c < (o->size + CLUSTER - 1) >> CLUSTER_BITS; c++)
            cluster_set(o, c, NULL);
        uint8_t *last = size & (CLUSTER - 1) ? cluster_get(o, size >> CLUSTER_BITS) : NULL;
        if (last && last != ZERO_CLUSTER)
            memset(last + (size & (CLUSTER - 1)), 0, CLUSTER - (size & (CLUSTER - 1)));
        if (o->visible > size)
            o->visible = size;
    }
    o->size = size;
    uint64_t l1 = (size + L1_COVERAGE - 1) / L1_COVERAGE;
    if (l1 > o->l1_entries)
        o->l1_entries = l1;
    return 0;
}

static int overlay_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                                struct qimg_block_status *st)
{
    struct overlay *o = n->opaque;
    uint8_t *c = cluster_get(o, off >> CLUSTER_BITS);
    unsigned kind = !c ? 0 : c == ZERO_CLUSTER ? QIMG_BLK_ZERO : QIMG_BLK_DATA;
    uint64_t bytes = CLUSTER - (off & (CLUSTER - 1));
    while (bytes < len) {
        uint8_t *next = cluster_get(o, (off + bytes) >> CLUSTER_BITS);
        unsigned k = !next ? 0 : next == ZERO_CLUSTER ? QIMG_BLK_ZERO : QIMG_BLK_DATA;
        if (k != kind)
            break;
        bytes += CLUSTER;
    }
    st->bytes = bytes < len ? bytes : len;
    st->flags = kind;
    return 0;
}

static void overlay_close(struct qimg_node *n)
{
    struct overlay *o = n->opaque;
    for (size_t t = 0; t < o->ntables; t++) {
        if (!o->tables[t])
            continue;
        for (uint64_t j = 0; j < L2_ENTRIES; j++)
            if (o->tables[t][j] && o->tables[t][j] != ZERO_CLUSTER)
                free(o->tables[t][j]);
        free(o->tables[t]);
    }
    free(o->tables);
    free(o);
}

/* Named like the format QEMU's overlay has; never registered, so never probed or opened. */
static const struct qimg_driver overlay_driver = {
    .name = "qcow2",
    .close = overlay_close,
    .get_length = overlay_get_length,
    .pread = overlay_pread,
    .pwrite = overlay_pwrite,
    .pwrite_zeroes = overlay_pwrite_zeroes,
    .pdiscard = overlay_pdiscard,
    .flush = overlay_flush,
    .truncate = overlay_truncate,
    .block_status = overlay_block_status,
};

struct qimg_node *io_snapshot_new(struct qimg_node *base)
{
    struct qimg_node *n = qimg_node_alloc(&overlay_driver, qimg_node_filename(base), 0);
    struct overlay *o = xcalloc(1, sizeof(*o));
    int64_t len = qimg_node_length(base);
    o->size = o->visible = len > 0 ? (uint64_t)len : 0;
    o->l1_entries = (o->size + L1_COVERAGE - 1) / L1_COVERAGE;
    n->opaque = o;
    qimg_node_ref(base);
    n->backing = base;
    return n;
}

bool io_is_snapshot(const struct qimg_node *n)
{
    return n && n->drv == &overlay_driver;
}

void io_snapshot_info(struct qimg_node *n)
{
    struct overlay *o = n->opaque;
    char vm[64];
    io_cvtstr((double)(o->l1_entries * L1_COVERAGE), vm, sizeof(vm));
    printf("format name: qcow2\n"
           "cluster size: 64 KiB\n"
           "vm state offset: %s\n"
           "Format specific information:\n"
           "    compat: 1.1\n"
           "    compression type: zlib\n"
           "    lazy refcounts: false\n"
           "    refcount bits: 16\n"
           "    corrupt: false\n"
           "    extended l2: false\n",
           vm);
}
