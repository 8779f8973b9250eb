/* SPDX-License-Identifier: MIT */
/*
 * qemu-img amend for qcow2: compat level up- and downgrades, lazy refcounts,
 * refcount width changes, the external data file's name and raw flag, and
 * the virtual size. The steps run in qemu-img's order: upgrade, refcount
 * width, header (data file), backing file check, lazy refcounts, size,
 * downgrade, so that one -o list can do what needs v3 before going to v2.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"
#include "util/mem.h"

/* qemu-img amend -o help lists these (sorted); the rest of create's options are refused. */
const struct qimg_opt_desc qcow2_amend_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"compat", QIMG_OPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])", NULL},
    {"backing_file", QIMG_OPT_STRING, "File name of a base image", NULL},
    {"backing_fmt", QIMG_OPT_STRING, "Image format of the base image", NULL},
    {"data_file", QIMG_OPT_STRING, "File name of an external data file", NULL},
    {"data_file_raw", QIMG_OPT_BOOL, "The external data file must stay valid as a raw image",
     NULL},
    {"lazy_refcounts", QIMG_OPT_BOOL, "Postpone refcount updates", NULL},
    {"refcount_bits", QIMG_OPT_NUMBER, "Width of a reference count entry in bits", NULL},
    {"encrypt.keyslot", QIMG_OPT_NUMBER, "Select a single keyslot to modify explicitly", NULL},
    {"encrypt.state", QIMG_OPT_STRING, "Select new state of affected keyslots (active/inactive)",
     NULL},
    {"encrypt.old-secret", QIMG_OPT_STRING, "Select all keyslots that match this password", NULL},
    {"encrypt.new-secret", QIMG_OPT_STRING,
     "New secret to set in the matching keyslots. Empty string to erase", NULL},
    {"encrypt.iter-time", QIMG_OPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL},
    {0},
};

struct amend_params {
    unsigned version;
    uint64_t size; /* 0: unchanged */
    const char *backing_file, *backing_fmt;
    bool has_backing_file, has_backing_fmt;
    bool lazy_refcounts;
    uint64_t refcount_bits;
    const char *data_file; /* NULL: unchanged */
    bool data_file_raw;
    bool encrypt;
};

static bool has_data_file(const struct qcow2_state *s)
{
    return s->incompat & QCOW2_INCOMPAT_DATA_FILE;
}

static int parse_params(struct qimg_node *n, struct qimg_opts *o, struct amend_params *p,
                        struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    memset(p, 0, sizeof(*p));
    p->version = s->version;
    p->lazy_refcounts = s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
    p->refcount_bits = s->refcount_bits;
    p->data_file_raw = s->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    int ret;
    const char *compat = qimg_opts_take(o, "compat");
    if (compat) {
        p->version = qcow2_parse_compat(compat);
        if (!p->version)
            return qimg_error_set(err, -EINVAL, "Unknown compatibility level %s", compat);
    }
    if ((ret = qimg_opts_take_size(o, "size", &p->size, err)) < 0)
        return ret;
    p->has_backing_file = qimg_opts_has(o, "backing_file");
    p->backing_file = qimg_opts_take(o, "backing_file");
    p->has_backing_fmt = qimg_opts_has(o, "backing_fmt");
    p->backing_fmt = qimg_opts_take(o, "backing_fmt");
    if ((ret = qimg_opts_take_bool(o, "lazy_refcounts", &p->lazy_refcounts, err)) < 0)
        return ret;
    if ((ret = qimg_opts_take_uint(o, "refcount_bits", &p->refcount_bits, err)) < 0)
        return ret;
    uint64_t rb = p->refcount_bits;
    if (rb == 0 || rb > 64 || (rb & (rb - 1)))
        return qimg_error_set(err, -EINVAL,
                              "Refcount width must be a power of two and may not exceed 64 bits");
    p->data_file = qimg_opts_take(o, "data_file");
    if (p->data_file && !has_data_file(s))
        return qimg_error_set(err, -EINVAL, "data-file can only be set for images that use an "
                                            "external data file");
    bool was_raw = p->data_file_raw;
    if ((ret = qimg_opts_take_bool(o, "data_file_raw", &p->data_file_raw, err)) < 0)
        return ret;
    if (p->data_file_raw && !was_raw)
        return qimg_error_set(err, -EINVAL, "data-file-raw cannot be set on existing images");
    for (size_t i = 0; qcow2_amend_opts[i].name; i++)
        if (!strncmp(qcow2_amend_opts[i].name, "encrypt.", 8) &&
            qimg_opts_has(o, qcow2_amend_opts[i].name))
            p->encrypt = true; /* crypt.c takes them */
    if (p->encrypt && !s->crypt_method)
        return qimg_error_set(err, -EINVAL,
                              "Can't amend encryption options - encryption not present");
    return 0;
}

/* Rewrite the whole first cluster from the state (qcow2_header_build), then flush. */
static int write_header(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    uint8_t *buf = qimg_alloc_aligned(s->cluster_size);
    if (!buf)
        return -ENOMEM;
    const char *bf = n->backing_file && n->backing_file[0] ? n->backing_file : NULL;
    int ret = qcow2_header_build(s, bf, buf, s->cluster_size);
    if (ret == 0)
        ret = qimg_node_pwrite(n->file, 0, s->cluster_size, buf, 0);
    if (ret == 0)
        ret = qimg_node_flush(n->file);
    if (ret == 0) {
        s->backing_file_offset = qcow2_be64(buf + 8);
        s->backing_file_size = qcow2_be32(buf + 16);
    }
    free(buf);
    return ret;
}

int qcow2_header_rewrite(struct qimg_node *n)
{
    return write_header(n);
}

/*
 * qemu-img amend -p: the operations that run (upgrade, refcount width,
 * downgrade) share the bar equally, in the order they run, and each reports
 * its own done/total within its share, as qemu-img's bar moves.
 */
struct amend_progress {
    struct qimg_node *n;
    unsigned ops, op;
};

static void progress_report(struct amend_progress *ap, double done, double total)
{
    if (!ap || !ap->n->progress || !ap->ops)
        return;
    double f = total > 0 ? done / total : 1.0;
    ap->n->progress(ap->n->progress_opaque, ap->op + (f > 1 ? 1 : f), ap->ops);
}

/* A set of L2 table offsets (open addressing; 0 never occurs: it means "no table"). */
struct offset_set {
    uint64_t *slot;
    size_t mask;
};

static void offset_set_init(struct offset_set *set, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2)
        cap <<= 1;
    set->slot = xcalloc(cap, sizeof(*set->slot));
    set->mask = cap - 1;
}

/* true if off was not in the set yet (the set never fills: sized for every entry). */
static bool offset_set_add(struct offset_set *set, uint64_t off)
{
    size_t i = (size_t)((off >> 9) * 0x9E3779B97F4A7C15ull) & set->mask;
    while (set->slot[i]) {
        if (set->slot[i] == off)
            return false;
        i = (i + 1) & set->mask;
    }
    set->slot[i] = off;
    return true;
}

/* Every L2 table of the active L1 and of the snapshots, once each. */
typedef int (*l2_fn)(struct qimg_node *n, uint64_t l2_off, void *opaque);

struct l1_list {
    uint64_t **tab;
    uint64_t *size;
    size_t n;
};

static void l1_list_add(struct l1_list *l, uint64_t *tab, uint64_t size)
{
    l->tab = xrealloc(l->tab, (l->n + 1) * sizeof(*l->tab));
    l->size = xrealloc(l->size, (l->n + 1) * sizeof(*l->size));
    l->tab[l->n] = tab;
    l->size[l->n++] = size;
}

/* The snapshots' L1 tables (qcow2.txt: Snapshots), read and byte-swapped. */
static int load_snapshot_l1s(struct qimg_node *n, struct l1_list *l)
{
    struct qcow2_state *s = n->opaque;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if (!sn->l1_size)
            continue;
        if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8 || sn->l1_offset % s->cluster_size)
            return -EIO;
        uint8_t *raw = xmalloc((size_t)sn->l1_size * 8);
        int ret = qimg_node_pread(n->file, sn->l1_offset, (uint64_t)sn->l1_size * 8, raw, 0);
        if (ret < 0) {
            free(raw);
            return ret;
        }
        uint64_t *l1 = xmalloc((size_t)sn->l1_size * 8);
        for (uint32_t k = 0; k < sn->l1_size; k++)
            l1[k] = qcow2_be64(raw + (size_t)k * 8);
        free(raw);
        l1_list_add(l, l1, sn->l1_size);
    }
    return 0;
}

/*
 * Calls fn once per distinct L2 table, walking the active L1 table and then
 * the snapshots'; progress moves one step per L1 entry, allocated or not.
 */
static int for_each_l2(struct qimg_node *n, l2_fn fn, void *opaque, struct amend_progress *ap)
{
    struct qcow2_state *s = n->opaque;
    struct l1_list l = {0};
    l1_list_add(&l, s->l1, s->l1_size);
    int ret = load_snapshot_l1s(n, &l);
    uint64_t total = 0;
    for (size_t t = 0; ret == 0 && t < l.n; t++) {
        total += l.size[t];
        for (uint64_t i = 0; i < l.size[t]; i++)
            if ((l.tab[t][i] & QCOW2_OFFSET_MASK) % s->cluster_size)
                ret = -EIO; /* refused before anything changes */
    }
    struct offset_set seen = {0};
    if (ret == 0)
        offset_set_init(&seen, total);
    uint64_t pos = 0;
    for (size_t t = 0; ret == 0 && t < l.n; t++) {
        for (uint64_t i = 0; ret == 0 && i < l.size[t]; i++) {
            uint64_t off = l.tab[t][i] & QCOW2_OFFSET_MASK;
            if (off && offset_set_add(&seen, off))
                ret = fn(n, off, opaque);
            progress_report(ap, (double)++pos, (double)total);
        }
    }
    free(seen.slot);
    for (size_t t = 1; t < l.n; t++)
        free(l.tab[t]);
    free(l.tab);
    free(l.size);
    return ret;
}

static int find_compressed(struct qimg_node *n, uint64_t l2_off, void *opaque)
{
    struct qcow2_state *s = n->opaque;
    uint8_t *l2;
    int ret = qcow2_cache_get(n, &s->l2_cache, l2_off, false, &l2);
    if (ret < 0)
        return ret;
    for (uint64_t i = 0; i < s->l2_entries; i++) {
        struct qcow2_entry e;
        qcow2_l2_get_entry(s, l2, i, &e);
        if (e.l2e & QCOW2_OFLAG_COMPRESSED) {
            *(bool *)opaque = true;
            return 1;
        }
    }
    return 0;
}

/* A fresh cluster filled with zeroes: its host offset, or -errno. */
static int64_t alloc_zero_cluster(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    int64_t off = qcow2_alloc_clusters(n, 1);
    if (off < 0)
        return off;
    /* Zeroes past the end of the file extend it (file.c), as written zeroes would. */
    int ret = qimg_node_pwrite_zeroes(n->file, (uint64_t)off, s->cluster_size, 0);
    return ret < 0 ? ret : off;
}

/*
 * v2 has no zero flag (qcow2.txt: Standard Cluster Descriptor bit 0): a zero
 * cluster with a host cluster becomes that cluster filled with zeroes; one
 * without becomes unallocated when nothing is underneath, else a new zeroed
 * cluster. Shared L2 tables are changed in place: the entry reads the same.
 */
static int expand_zero_l2(struct qimg_node *n, uint64_t l2_off, void *opaque)
{
    (void)opaque;
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    bool backing = n->backing_file && n->backing_file[0];
    uint8_t *l2;
    int ret = qcow2_cache_get(n, &s->l2_cache, l2_off, false, &l2);
    if (ret < 0)
        return ret;
    uint8_t *tbl = xmalloc(cs);
    memcpy(tbl, l2, cs);
    bool changed = false;
    for (uint64_t i = 0; ret == 0 && i < s->l2_entries; i++) {
        struct qcow2_entry e;
        qcow2_l2_get_entry(s, tbl, i, &e);
        if ((e.l2e & QCOW2_OFLAG_COMPRESSED) || !(e.l2e & QCOW2_OFLAG_ZERO))
            continue;
        uint64_t host = e.l2e & QCOW2_OFFSET_MASK;
        if (host) {
            uint64_t rc = 0;
            ret = qcow2_get_refcount(n, host / cs, &rc);
            if (ret < 0)
                break;
            if (rc == 1) {
                ret = qimg_node_pwrite_zeroes(n->file, host, cs, 0);
                e.l2e &= ~QCOW2_OFLAG_ZERO;
            } else {
                int64_t nw = alloc_zero_cluster(n);
                if (nw < 0) {
                    ret = (int)nw;
                    break;
                }
                ret = qcow2_update_refcounts(n, host / cs, 1, -1);
                e.l2e = (uint64_t)nw | QCOW2_OFLAG_COPIED;
            }
        } else if (!backing) {
            e.l2e = 0;
        } else {
            int64_t nw = alloc_zero_cluster(n);
            if (nw < 0) {
                ret = (int)nw;
                break;
            }
            e.l2e = (uint64_t)nw | QCOW2_OFLAG_COPIED;
        }
        qcow2_l2_set_entry(s, tbl, i, &e);
        changed = true;
    }
    if (ret == 0 && changed) {
        ret = qimg_node_flush(n->file); /* the zeroes are stable before the entries say so */
        if (ret == 0)
            ret = qcow2_cache_get(n, &s->l2_cache, l2_off, false, &l2);
        if (ret == 0) {
            memcpy(l2, tbl, cs);
            ret = qcow2_meta_write(n, l2_off, l2, cs);
        }
    }
    free(tbl);
    return ret;
}

static int downgrade(struct qimg_node *n, struct amend_progress *ap, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    if (s->refcount_order != 4)
        return qimg_error_set(err, -ENOTSUP, "compat=0.10 requires refcount_bits=16");
    if (has_data_file(s))
        return qimg_error_set(err, -ENOTSUP, "Cannot downgrade an image with a data file");
    /* v2 readers may not know that the extra snapshot fields matter. */
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (s->snapshots[i].vm_state_size > UINT32_MAX || s->snapshots[i].disk_size != s->size)
            return qimg_error_set(err, -ENOTSUP, "Internal snapshots prevent downgrade of image");
    int ret = qcow2_mark_clean(n);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Failed to make the image clean");
    uint64_t incompat = s->incompat & ~(uint64_t)QCOW2_INCOMPAT_COMPRESSION;
    if (incompat)
        return qimg_error_set(err, -ENOTSUP,
                              "Cannot downgrade an image with incompatible features 0x%" PRIx64
                              " set",
                              incompat);
    /* v2 has no bitmaps extension; dropping them silently would lose them (qimg refuses). */
    if (s->bitmaps_ext)
        return qimg_error_set(err, -ENOTSUP, "Cannot downgrade an image with bitmaps");
    if (s->incompat & QCOW2_INCOMPAT_COMPRESSION) {
        bool found = false;
        ret = for_each_l2(n, find_compressed, &found, NULL);
        if (ret < 0)
            return qimg_error_errno(err, ret, "Failed to check for compressed clusters");
        if (found)
            return qimg_error_set(err, -ENOTSUP, "Cannot downgrade an image with zstd "
                                                 "compression type and existing compressed "
                                                 "clusters");
    }
    ret = for_each_l2(n, expand_zero_l2, NULL, ap);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Failed to turn zero into data clusters");
    ret = qimg_node_flush(n->file);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Failed to turn zero into data clusters");
    struct qcow2_state saved = *s;
    s->version = 2;
    s->incompat = s->compat = s->autoclear = 0;
    s->compression_type = QCOW2_COMPRESSION_ZLIB;
    s->header_length = QCOW2_V2_HEADER_LEN;
    ret = write_header(n);
    if (ret < 0) {
        s->version = saved.version;
        s->incompat = saved.incompat;
        s->compat = saved.compat;
        s->autoclear = saved.autoclear;
        s->compression_type = saved.compression_type;
        s->header_length = saved.header_length;
        return qimg_error_errno(err, ret, "Failed to update the image header");
    }
    free(s->header_tail);
    s->header_tail = NULL;
    s->header_tail_len = 0;
    return 0;
}

static int upgrade(struct qimg_node *n, struct amend_progress *ap, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    /* qemu-img's bar shows an upgrade in two halves: the header, then the feature table. */
    progress_report(ap, 0, 2);
    s->version = 3;
    s->header_length = QCOW2_CREATE_HEADER_LEN;
    int ret = write_header(n);
    if (ret < 0) {
        s->version = 2;
        s->header_length = QCOW2_V2_HEADER_LEN;
        return qimg_error_errno(err, ret, "Failed to update the image header");
    }
    progress_report(ap, 1, 2);
    progress_report(ap, 2, 2);
    return 0;
}

/* --- refcount width (qcow2.txt: refcount_order) --- */

static void grow_table(uint64_t **rt, uint64_t *n, uint64_t need)
{
    if (need <= *n)
        return;
    *rt = xrealloc(*rt, need * sizeof(**rt));
    memset(*rt + *n, 0, (need - *n) * sizeof(**rt));
    *n = need;
}

/*
 * Rebuild the refcount structures in the new width, crash-safe: the new
 * blocks and table are allocated (counted by the old structures) and
 * written first, then the header switches to them in one write, and only
 * then are the old table and blocks freed (counted by the new ones). A
 * crash leaves either the old or the new structures, at worst with leaks.
 */
static int change_refcount_order(struct qimg_node *n, unsigned order, struct amend_progress *ap,
                                 struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    uint64_t cs = s->cluster_size;
    struct qcow2_state ns = {0};
    ns.refcount_bits = 1u << order;
    ns.refcount_order = order;
    uint64_t nrbe = cs * 8 / ns.refcount_bits;
    uint64_t nmax = ns.refcount_bits == 64 ? UINT64_MAX : (1ull << ns.refcount_bits) - 1;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get the image file size");
    uint64_t end = qcow2_div_round_up((uint64_t)flen, cs);
    int ret;
    for (uint64_t ci = 0; ci < end; ci++) {
        uint64_t rc;
        ret = qcow2_get_refcount(n, ci, &rc);
        if (ret < 0)
            return qimg_error_errno(err, ret, "Failed to read refcounts");
        if (rc > nmax)
            return qimg_error_set(err, -EINVAL,
                                  "Cannot decrease refcount entry width to %u bits: Cluster at "
                                  "offset %#" PRIx64 " has a refcount of %" PRIu64,
                                  ns.refcount_bits, ci * cs, rc);
    }

    uint64_t *nrt = NULL, nrt_n = 0, table_off = 0, table_cl = 0;
    uint8_t *buf = NULL;
    for (;;) {
        bool changed = false;
        for (uint64_t i = 0; i * nrbe < end; i++) {
            if (i < nrt_n && nrt[i])
                continue;
            uint64_t last = (i + 1) * nrbe < end ? (i + 1) * nrbe : end;
            bool used = false;
            for (uint64_t ci = i * nrbe; ci < last && !used; ci++) {
                uint64_t rc;
                if ((ret = qcow2_get_refcount(n, ci, &rc)) < 0)
                    goto fail;
                used = rc != 0;
            }
            if (!used)
                continue;
            int64_t off = qcow2_alloc_clusters(n, 1);
            if (off < 0) {
                ret = (int)off;
                goto fail;
            }
            grow_table(&nrt, &nrt_n, i + 1);
            nrt[i] = (uint64_t)off;
            if ((uint64_t)off / cs + 1 > end)
                end = (uint64_t)off / cs + 1;
            changed = true;
        }
        uint64_t used_entries = nrt_n;
        while (used_entries && !nrt[used_entries - 1])
            used_entries--;
        uint64_t need = qcow2_div_round_up((used_entries ? used_entries : 1) * 8, cs);
        if (need != table_cl) {
            if (table_cl && (ret = qcow2_update_refcounts(n, table_off / cs, table_cl, -1)) < 0)
                goto fail;
            if (need * cs > QCOW2_MAX_REFTABLE_BYTES) {
                ret = -EFBIG;
                goto fail;
            }
            int64_t off = qcow2_alloc_clusters(n, need);
            if (off < 0) {
                ret = (int)off;
                goto fail;
            }
            table_off = (uint64_t)off;
            table_cl = need;
            if (table_off / cs + table_cl > end)
                end = table_off / cs + table_cl;
            changed = true;
        }
        if (!changed)
            break;
    }

    /* Write the new blocks and table while the old ones are still in charge. */
    buf = qimg_alloc_aligned(table_cl * cs > cs ? table_cl * cs : cs);
    if (!buf) {
        ret = -ENOMEM;
        goto fail;
    }
    for (uint64_t i = 0; i < nrt_n; i++) {
        progress_report(ap, (double)i, (double)nrt_n);
        if (!nrt[i])
            continue;
        memset(buf, 0, cs);
        for (uint64_t k = 0; k < nrbe; k++) {
            uint64_t rc;
            if ((ret = qcow2_get_refcount(n, i * nrbe + k, &rc)) < 0)
                goto fail;
            refcount_set_entry(&ns, buf, k, rc);
        }
        if ((ret = qimg_node_pwrite(n->file, nrt[i], cs, buf, 0)) < 0)
            goto fail;
    }
    uint64_t rt_entries = table_cl * cs / 8;
    grow_table(&nrt, &nrt_n, rt_entries);
    memset(buf, 0, table_cl * cs);
    for (uint64_t i = 0; i < rt_entries; i++)
        qcow2_put64(buf + i * 8, nrt[i]);
    if ((ret = qimg_node_pwrite(n->file, table_off, table_cl * cs, buf, 0)) < 0)
        goto fail;
    if ((ret = qimg_node_flush(n->file)) < 0)
        goto fail;

    /* Switch the header. */
    struct qcow2_state old = *s;
    s->refcount_order = order;
    s->refcount_bits = ns.refcount_bits;
    s->rt_offset = table_off;
    s->rt_clusters = (uint32_t)table_cl;
    ret = write_header(n);
    if (ret < 0) {
        s->refcount_order = old.refcount_order;
        s->refcount_bits = old.refcount_bits;
        s->rt_offset = old.rt_offset;
        s->rt_clusters = old.rt_clusters;
        goto fail;
    }
    s->rb_entries = nrbe;
    s->refcount_max = nmax;
    uint64_t *old_rt = s->rt;
    s->rt = nrt;
    s->rt_size = rt_entries;
    nrt = NULL;
    size_t rb_slots = s->rb_cache.n;
    qcow2_cache_destroy(&s->rb_cache);
    qcow2_cache_init(&s->rb_cache, rb_slots, cs);
    qcow2_meta_reset_refblocks(s);
    s->free_cluster_index = 0;

    /* Free the old structures, now counted by the new ones. */
    ret = qcow2_update_refcounts(n, old.rt_offset / cs, old.rt_clusters, -1);
    for (uint64_t i = 0; ret == 0 && i < old.rt_size; i++) {
        uint64_t off = old_rt[i] & ~QCOW2_RT_RESERVED;
        if (off)
            ret = qcow2_update_refcounts(n, off / cs, 1, -1);
    }
    free(old_rt);
    free(buf);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Failed to free the old refcount structures");
    progress_report(ap, 1, 1);
    return 0;
fail:
    free(buf);
    free(nrt);
    return qimg_error_errno(err, ret, "Failed to change the refcount order");
}

int qcow2_amend(struct qimg_node *n, struct qimg_opts *opts, bool force, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    struct amend_params p;
    int ret = parse_params(n, opts, &p, err);
    if (ret < 0)
        return ret;
    /* LUKS key slots first: they live in their own clusters, apart from the rest. */
    if (p.encrypt && (ret = qcow2_crypt_amend(n, opts, force, err)) < 0)
        return ret;
    struct amend_progress ap = {.n = n};
    ap.ops = (p.version != s->version) + (p.refcount_bits != s->refcount_bits);
    pthread_mutex_lock(&n->lock);
    if (p.version > s->version && (ret = upgrade(n, &ap, err)) < 0)
        goto out;
    if (p.version > s->version)
        ap.op++;
    if (p.refcount_bits != s->refcount_bits) {
        if (p.version < 3 && p.refcount_bits != 16) {
            ret = qimg_error_set(err, -EINVAL, "Refcount widths other than 16 bits require "
                                               "compatibility level 1.1 or above (use compat=1.1 "
                                               "or greater)");
            goto out;
        }
        unsigned order = 0;
        while ((1ull << order) < p.refcount_bits)
            order++;
        if ((ret = change_refcount_order(n, order, &ap, err)) < 0)
            goto out;
        ap.op++;
    }
    if (p.data_file_raw)
        s->autoclear |= QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    else
        s->autoclear &= ~QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    if (p.data_file) {
        free(s->data_file_name);
        s->data_file_name = p.data_file[0] ? xstrdup(p.data_file) : NULL;
    }
    if ((ret = write_header(n)) < 0) {
        qimg_error_errno(err, ret, "Failed to update the image header");
        goto out;
    }
    if (p.has_backing_file || p.has_backing_fmt) {
        const char *cur_file = n->backing_file, *cur_fmt = n->backing_format;
        bool same_file = p.backing_file && cur_file ? !strcmp(p.backing_file, cur_file)
                                                    : p.backing_file == cur_file;
        bool same_fmt = p.backing_fmt && cur_fmt ? !strcmp(p.backing_fmt, cur_fmt)
                                                 : p.backing_fmt == cur_fmt;
        if (!same_file || !same_fmt) {
            ret = qimg_error_set(err, -EINVAL, "Cannot amend the backing file\n"
                                               "You can use 'qemu-img rebase' instead.");
            goto out;
        }
    }
    bool lazy = s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
    if (p.lazy_refcounts != lazy) {
        if (p.lazy_refcounts && p.version < 3) {
            ret = qimg_error_set(err, -EINVAL, "Lazy refcounts only supported with compatibility "
                                               "level 1.1 and above (use compat=1.1 or greater)");
            goto out;
        }
        if (!p.lazy_refcounts && (ret = qcow2_mark_clean(n)) < 0) {
            qimg_error_errno(err, ret, "Failed to make the image clean");
            goto out;
        }
        uint64_t old_compat = s->compat;
        if (p.lazy_refcounts)
            s->compat |= QCOW2_COMPAT_LAZY_REFCOUNTS;
        else
            s->compat &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
        if ((ret = write_header(n)) < 0) {
            s->compat = old_compat;
            qimg_error_errno(err, ret, "Failed to update the image header");
            goto out;
        }
    }
    if (p.size) {
        pthread_mutex_unlock(&n->lock);
        ret = qimg_node_truncate(n, p.size, true, QIMG_PREALLOC_OFF, err);
        pthread_mutex_lock(&n->lock);
        if (ret < 0)
            goto out;
    }
    if (p.version < s->version)
        ret = downgrade(n, &ap, err);
out:
    pthread_mutex_unlock(&n->lock);
    return ret;
}
