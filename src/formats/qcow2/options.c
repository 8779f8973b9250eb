/* SPDX-License-Identifier: MIT */
/*
 * qcow2's runtime (open and reopen) options, with QEMU's validity rules and
 * messages (observed from qemu-io 9.1; QEMU's documentation: docs/qcow2-cache.txt):
 * lazy-refcounts, pass-discard-*, discard-no-unref, overlap-check[.*], and the
 * metadata cache sizes. Every one of them may be changed by a reopen.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "formats/qcow2/qcow2.h"

#define DEFAULT_L2_CACHE_MAX (32ull << 20) /* QEMU on Linux: up to 32 MiB of L2 tables */
#define MIN_L2_CACHE_TABLES 2
#define MIN_REFCOUNT_CACHE_TABLES 4

static const char *const overlap_modes[] = {"none", "constant", "cached", "all"};

/* The structures overlap-check.* names, in QEMU's order. */
static const char *const overlap_parts[] = {
    "main-header", "active-l1",      "active-l2",   "refcount-table",   "refcount-block",
    "snapshot-table", "inactive-l1", "inactive-l2", "bitmap-directory",
};

const struct qimg_opt_desc qcow2_open_opts[] = {
    {"lazy-refcounts", QIMG_OPT_BOOL, "Postpone refcount updates", NULL},
    {"pass-discard-request", QIMG_OPT_BOOL, "Pass guest discard requests to the layer below",
     NULL},
    {"pass-discard-snapshot", QIMG_OPT_BOOL,
     "Generate discard requests when snapshot related space is freed", NULL},
    {"pass-discard-other", QIMG_OPT_BOOL, "Generate discard requests when other clusters are "
                                          "freed", NULL},
    {"discard-no-unref", QIMG_OPT_BOOL, "Do not unreference discarded clusters", NULL},
    {"overlap-check", QIMG_OPT_STRING, "Selects which overlap checks to perform", NULL},
    {"overlap-check.template", QIMG_OPT_STRING, "Template for overlap checks", NULL},
    {"overlap-check.main-header", QIMG_OPT_BOOL, "Check for unintended writes", NULL},
    {"overlap-check.active-l1", QIMG_OPT_BOOL, "Check for unintended writes", NULL},
    {"overlap-check.active-l2", QIMG_OPT_BOOL, "Check for unintended writes", NULL},
    {"overlap-check.refcount-table", QIMG_OPT_BOOL, "Check for unintended writes", NULL},
    {"overlap-check.refcount-block", QIMG_OPT_BOOL, "Check for unintended writes", NULL},
    {"overlap-check.snapshot-table", QIMG_OPT_BOOL, "Check for unintended writes", NULL},
    {"overlap-check.inactive-l1", QIMG_OPT_BOOL, "Check for unintended writes", NULL},
    {"overlap-check.inactive-l2", QIMG_OPT_BOOL, "Check for unintended writes", NULL},
    {"overlap-check.bitmap-directory", QIMG_OPT_BOOL, "Check for unintended writes", NULL},
    {"cache-size", QIMG_OPT_SIZE, "Maximum combined metadata (L2 tables and refcount blocks) "
                                  "cache size", NULL},
    {"l2-cache-size", QIMG_OPT_SIZE, "Maximum L2 table cache size", NULL},
    {"l2-cache-entry-size", QIMG_OPT_SIZE, "Size of each entry in the L2 cache", NULL},
    {"refcount-cache-size", QIMG_OPT_SIZE, "Maximum refcount block cache size", NULL},
    {"cache-clean-interval", QIMG_OPT_NUMBER, "Clean unused cache entries after this time (in "
                                              "seconds)", NULL},
    {"encrypt.key-secret", QIMG_OPT_STRING, "ID of secret providing qcow2 AES key or LUKS "
                                            "passphrase", NULL},
    {"encrypt.format", QIMG_OPT_STRING, "Encryption data format", NULL},
    {0},
};

/* A size option; QEMU words a negative one apart. 1 if given, 0 if not, <0 on error. */
static int take_size(struct qimg_opts *o, const char *key, uint64_t *out, struct qimg_error *err)
{
    const char *v = qimg_opts_peek(o, key);
    if (v && v[0] == '-') {
        qimg_opts_take(o, key);
        return qimg_error_set(err, -EINVAL, "Value '%s' is out of range for parameter '%s'", v,
                              key);
    }
    return qimg_opts_take_size(o, key, out, err);
}

static int overlap_mode(const char *key, const char *v, struct qimg_error *err)
{
    for (size_t i = 0; i < sizeof(overlap_modes) / sizeof(overlap_modes[0]); i++)
        if (!strcmp(v, overlap_modes[i]))
            return (int)i;
    (void)key;
    return qimg_error_set(err, -EINVAL, "Unsupported value '%s' for qcow2 option 'overlap-check'. "
                                        "Allowed are any of the following: none, constant, "
                                        "cached, all", v);
}

static int parse_overlap(struct qimg_opts *o, struct qcow2_runtime_opts *r,
                         struct qimg_error *err)
{
    const char *mode = qimg_opts_take(o, "overlap-check");
    const char *tmpl = qimg_opts_take(o, "overlap-check.template");
    if (mode && tmpl && strcmp(mode, tmpl))
        return qimg_error_set(err, -EINVAL, "Conflicting values for qcow2 options "
                                            "'overlap-check' ('%s') and "
                                            "'overlap-check.template' ('%s')", mode, tmpl);
    const char *v = mode ? mode : tmpl;
    r->overlap_mode = 2; /* "cached" */
    if (v) {
        int m = overlap_mode(v == mode ? "overlap-check" : "overlap-check.template", v, err);
        if (m < 0)
            return m;
        r->overlap_mode = m;
    }
    for (size_t i = 0; i < sizeof(overlap_parts) / sizeof(overlap_parts[0]); i++) {
        char key[64];
        snprintf(key, sizeof(key), "overlap-check.%s", overlap_parts[i]);
        bool b;
        int ret = qimg_opts_take_bool(o, key, &b, err);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* The L2 cache that covers the whole disk: more is never useful (QEMU caps it there). */
static uint64_t max_l2_cache(const struct qcow2_state *s)
{
    uint64_t clusters = s->size / s->cluster_size + (s->size % s->cluster_size != 0);
    uint64_t bytes = clusters * s->l2_entry_bytes;
    return (bytes + s->cluster_size - 1) / s->cluster_size * s->cluster_size;
}

/* QEMU's read_cache_sizes: the three sizes and their conflicts. */
static int parse_cache_sizes(struct qimg_opts *o, const struct qcow2_state *s,
                             struct qcow2_runtime_opts *r, struct qimg_error *err)
{
    uint64_t combined = 0, l2 = 0, rc = 0, entry = s->cluster_size;
    int has_combined = take_size(o, "cache-size", &combined, err);
    if (has_combined < 0)
        return has_combined;
    int has_l2 = take_size(o, "l2-cache-size", &l2, err);
    if (has_l2 < 0)
        return has_l2;
    int has_rc = take_size(o, "refcount-cache-size", &rc, err);
    if (has_rc < 0)
        return has_rc;
    int has_entry = take_size(o, "l2-cache-entry-size", &entry, err);
    if (has_entry < 0)
        return has_entry;
    uint64_t min_rc = MIN_REFCOUNT_CACHE_TABLES * s->cluster_size;
    uint64_t max_l2 = max_l2_cache(s);
    if (has_combined) {
        if (has_l2 && has_rc)
            return qimg_error_set(err, -EINVAL, "cache-size, l2-cache-size and "
                                                "refcount-cache-size may not be set at the same "
                                                "time");
        if (l2 > combined)
            return qimg_error_set(err, -EINVAL, "l2-cache-size may not exceed cache-size");
        if (rc > combined)
            return qimg_error_set(err, -EINVAL, "refcount-cache-size may not exceed cache-size");
        if (has_l2) {
            rc = combined - l2;
        } else if (has_rc) {
            l2 = combined - rc;
        } else {
            l2 = combined > min_rc ? combined - min_rc : 0;
            if (l2 > max_l2)
                l2 = max_l2;
            rc = combined - l2;
        }
    } else {
        if (!has_l2)
            l2 = max_l2 < DEFAULT_L2_CACHE_MAX ? max_l2 : DEFAULT_L2_CACHE_MAX;
        if (!has_rc)
            rc = min_rc;
    }
    if (l2 > max_l2)
        l2 = max_l2;
    if (entry < 512 || entry > s->cluster_size || (entry & (entry - 1)))
        return qimg_error_set(err, -EINVAL, "L2 cache entry size must be a power of two between "
                                            "512 and the cluster size (%llu)",
                              (unsigned long long)s->cluster_size);
    uint64_t l2_tables = l2 / entry, rc_tables = rc / s->cluster_size;
    if (l2_tables > INT_MAX) /* QEMU counts cache entries in an int */
        return qimg_error_set(err, -EINVAL, "L2 cache size too big");
    if (rc_tables > INT_MAX)
        return qimg_error_set(err, -EINVAL, "Refcount cache size too big");
    r->l2_cache_bytes = (l2_tables > MIN_L2_CACHE_TABLES ? l2_tables : MIN_L2_CACHE_TABLES) * entry;
    r->rb_cache_bytes =
        (rc_tables > MIN_REFCOUNT_CACHE_TABLES ? rc_tables : MIN_REFCOUNT_CACHE_TABLES) *
        s->cluster_size;
    r->cache_sizes_given = has_combined || has_l2 || has_rc;
    return 0;
}

/*
 * QEMU allocates its caches whole; what it cannot get is refused at open. A
 * reservation that is not touched tells the same without using the memory.
 */
static bool can_allocate(uint64_t bytes)
{
    if (bytes > SIZE_MAX / 2)
        return false;
    void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                   0);
    if (p == MAP_FAILED)
        return false;
    munmap(p, (size_t)bytes);
    return true;
}

int qcow2_parse_runtime_opts(struct qimg_node *n, struct qimg_opts *o,
                             struct qcow2_runtime_opts *r, struct qimg_error *err)
{
    struct qcow2_state *s = n->opaque;
    int ret;
    memset(r, 0, sizeof(*r));
    bool lazy = s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
    if ((ret = qimg_opts_take_bool(o, "lazy-refcounts", &lazy, err)) < 0)
        return ret;
    r->lazy_given = ret > 0;
    r->lazy_refcounts = lazy;
    bool b = false;
    static const char *const bools[] = {"pass-discard-request", "pass-discard-snapshot",
                                        "pass-discard-other"};
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++)
        if ((ret = qimg_opts_take_bool(o, bools[i], &b, err)) < 0)
            return ret;
    bool no_unref = false;
    if ((ret = qimg_opts_take_bool(o, "discard-no-unref", &no_unref, err)) < 0)
        return ret;
    if ((ret = parse_overlap(o, r, err)) < 0)
        return ret;
    if ((ret = parse_cache_sizes(o, s, r, err)) < 0)
        return ret;
    uint64_t interval = 0;
    const char *iv = qimg_opts_peek(o, "cache-clean-interval");
    if ((ret = qimg_opts_take_uint(o, "cache-clean-interval", &interval, err)) < 0) {
        if (iv && iv[0] == '-') { /* a negative number is one, but too big as unsigned */
            qimg_error_clear(err);
            return qimg_error_set(err, -EINVAL, "Cache clean interval too big");
        }
        return ret;
    }
    if (interval > UINT32_MAX)
        return qimg_error_set(err, -EINVAL, "Cache clean interval too big");
    if (lazy && s->version < 3)
        return qimg_error_set(err, -EINVAL, "Lazy refcounts require a qcow2 image with at least "
                                            "qemu 1.1 compatibility level");
    if (no_unref && s->version < 3)
        return qimg_error_set(err, -EINVAL, "discard-no-unref is only supported since qcow2 "
                                            "version 3");
    if (!can_allocate(r->l2_cache_bytes) || !can_allocate(r->rb_cache_bytes))
        return qimg_error_set(err, -ENOMEM, "Could not allocate metadata caches");
    return 0;
}

bool qcow2_uses_lazy_refcounts(const struct qcow2_state *s)
{
    if (s->runtime.lazy_given)
        return s->runtime.lazy_refcounts;
    return s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
}
