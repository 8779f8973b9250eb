/* SPDX-License-Identifier: MIT */
/*
 * qemu-img check for parallels, as 9.1 does it, in its order: the image was
 * not closed correctly (inuse), data_off has an incorrect value, clusters
 * outside the image, space leaked at the end of the file, duplicate BAT
 * offsets; then the allocation statistics. Lines read "ERROR ..." or, when
 * repairing, "Repairing ...". Repairs: clear inuse, reset data_off, drop the
 * entries outside the file, truncate the leak, copy a duplicated cluster to
 * a new one. An unrepaired duplicate fails the check with -EBUSY ("Check
 * failed: Device or resource busy"), as 9.1 does.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/parallels/parallels.h"
#include "util/bytes.h"
#include "util/mem.h"
#include "util/report.h"

#define OUTSIDE_REPORT_MAX 65536 /* "outside image" lines printed at most */

static const char *verb(int fix, int kind)
{
    return fix & kind ? "Repairing" : "ERROR";
}

static int check_unclean(struct qimg_node *n, struct qimg_check_result *res, int fix)
{
    struct parallels_state *s = n->opaque;
    if (!s->unclean)
        return 0;
    qimg_check_report("%s image was not closed correctly\n", verb(fix, QIMG_CHECK_FIX_ERRORS));
    res->corruptions++;
    if (fix & QIMG_CHECK_FIX_ERRORS) {
        /* The header goes out with inuse set while open, cleared on close. */
        s->unclean = false;
        res->corruptions_fixed++;
    }
    return 0;
}

static int check_data_off(struct qimg_node *n, struct qimg_check_result *res, int fix)
{
    struct parallels_state *s = n->opaque;
    if (!s->data_off_bad)
        return 0;
    qimg_check_report("%s data_off field has incorrect value\n", verb(fix, QIMG_CHECK_FIX_ERRORS));
    res->corruptions++;
    if (fix & QIMG_CHECK_FIX_ERRORS) {
        qimg_put_le32(s->header + PRL_OFF_DATA_OFF, (uint32_t)s->min_data_off);
        int ret = parallels_write_header(n);
        if (ret < 0)
            return ret;
        s->data_off_bad = false;
        res->corruptions_fixed++;
    }
    return 0;
}

/* One "outside" entry: reported (up to a bound), counted, and dropped when repairing. */
static int outside_entry(struct qimg_node *n, struct qimg_check_result *res, int fix,
                         uint32_t i, uint32_t e)
{
    if ((uint64_t)res->corruptions < OUTSIDE_REPORT_MAX)
        qimg_check_report("%s cluster %u is outside image\n", verb(fix, QIMG_CHECK_FIX_ERRORS), i);
    res->corruptions++;
    if (!(fix & QIMG_CHECK_FIX_ERRORS))
        return 0;
    int ret = e ? parallels_bat_set(n, i, 0) : 0; /* a zero entry stays as it is */
    if (ret == 0)
        res->corruptions_fixed++;
    return ret;
}

/*
 * 9.1 tests unallocated entries too (as offset 0): in a file shorter than a
 * cluster they are "outside" as well, even the ones past the end of the file
 * (which read as zeroes and are not read here). A hostile BAT of millions of
 * such entries would print millions of lines: past OUTSIDE_REPORT_MAX they
 * are only counted.
 */
static int check_outside(struct qimg_node *n, struct qimg_check_result *res, int fix,
                         uint64_t file_len)
{
    struct parallels_state *s = n->opaque;
    uint32_t in_file = parallels_bat_in_file(s, file_len);
    for (uint32_t i = 0; i < in_file; i++) {
        uint32_t e;
        int ret = parallels_bat_get(n, i, &e);
        if (ret < 0)
            return ret;
        if (parallels_host(s, e) + s->cluster_size > file_len) {
            ret = outside_entry(n, res, fix, i, e);
            if (ret < 0)
                return ret;
        }
    }
    for (uint32_t i = in_file; s->cluster_size > file_len && i < s->bat_entries; i++)
        outside_entry(n, res, fix, i, 0);
    return 0;
}

/* The end of the highest cluster inside the file; 0 when there is none (9.1: no leak check). */
static int high_offset(struct qimg_node *n, uint64_t file_len, uint64_t *high)
{
    struct parallels_state *s = n->opaque;
    *high = 0;
    for (uint32_t i = 0; i < parallels_bat_in_file(s, file_len); i++) {
        uint32_t e;
        int ret = parallels_bat_get(n, i, &e);
        if (ret < 0)
            return ret;
        uint64_t end = parallels_host(s, e) + s->cluster_size;
        if (e && end <= file_len)
            *high = qimg_max_u64(*high, end);
    }
    return 0;
}

static int check_leak(struct qimg_node *n, struct qimg_check_result *res, int fix,
                      uint64_t *file_len)
{
    struct parallels_state *s = n->opaque;
    uint64_t high;
    int ret = high_offset(n, *file_len, &high);
    if (ret < 0 || high == 0 || *file_len <= high)
        return ret;
    uint64_t leaked = *file_len - high;
    int count = (int)qimg_min_u64(qimg_div_round_up(leaked, s->cluster_size), INT32_MAX);
    qimg_check_report("%s space leaked at the end of the image %llu\n",
                      verb(fix, QIMG_CHECK_FIX_LEAKS), (unsigned long long)leaked);
    res->leaks += count;
    if (fix & QIMG_CHECK_FIX_LEAKS) {
        ret = qimg_node_truncate(n->file, high, false, QIMG_PREALLOC_OFF, NULL);
        if (ret < 0)
            return ret;
        *file_len = high;
        res->leaks_fixed += count;
    }
    return 0;
}

/* Copy the cluster at old_host to a new one and point entry i at it. */
static int move_cluster(struct qimg_node *n, uint32_t i, uint64_t old_host)
{
    struct parallels_state *s = n->opaque;
    uint64_t count = 1;
    uint64_t host = parallels_find_free(s, &count);
    if (host / s->off_unit > UINT32_MAX)
        return -ENOSPC;
    uint8_t *buf = qimg_alloc_aligned(s->cluster_size);
    if (!buf)
        return -ENOMEM;
    int ret = qimg_node_pread(n->file, old_host, s->cluster_size, buf, 0);
    if (ret == 0)
        ret = qimg_node_pwrite(n->file, host, s->cluster_size, buf, 0);
    free(buf);
    if (ret == 0)
        ret = parallels_bat_set(n, i, (uint32_t)(host / s->off_unit));
    if (ret == 0) {
        parallels_mark_used(s, host, 1, true);
        s->data_end = qimg_max_u64(s->data_end, host + s->cluster_size);
    }
    return ret;
}

static int check_duplicates(struct qimg_node *n, struct qimg_check_result *res, int fix,
                            uint64_t file_len)
{
    struct parallels_state *s = n->opaque;
    /* One bit per cluster-sized slot of the file: bounded by the file's length. */
    uint64_t slots = file_len / s->cluster_size + 1;
    uint8_t *seen = xcalloc(1, (size_t)(slots / 8 + 1));
    int ret = 0;
    uint32_t last = parallels_bat_in_file(s, file_len); /* zeroes past it */
    for (uint32_t i = 0; i < last && ret == 0; i++) {
        uint32_t e;
        ret = parallels_bat_get(n, i, &e);
        uint64_t host = parallels_host(s, e);
        if (ret < 0 || !e || host + s->cluster_size > file_len)
            continue;
        uint64_t slot = host / s->cluster_size;
        if (!(seen[slot / 8] & (1u << (slot % 8)))) {
            seen[slot / 8] |= (uint8_t)(1u << (slot % 8));
            continue;
        }
        qimg_check_report("%s duplicate offset in BAT entry %u\n",
                          verb(fix, QIMG_CHECK_FIX_ERRORS), i);
        res->corruptions++;
        if (!(fix & QIMG_CHECK_FIX_ERRORS)) {
            ret = -EBUSY;
            break;
        }
        ret = move_cluster(n, i, host);
        if (ret == 0)
            res->corruptions_fixed++;
    }
    free(seen);
    if (ret == 0)
        s->duplicate = false;
    return ret;
}

static int statistics(struct qimg_node *n, struct qimg_check_result *res, uint64_t file_len)
{
    struct parallels_state *s = n->opaque;
    uint64_t prev = 0;
    res->total_clusters = s->bat_entries;
    for (uint32_t i = 0; i < parallels_bat_in_file(s, file_len); i++) {
        uint32_t e;
        int ret = parallels_bat_get(n, i, &e);
        if (ret < 0)
            return ret;
        if (!e) {
            prev = 0; /* only neighbouring BAT entries count as fragments (qemu's rule) */
            continue;
        }
        uint64_t host = parallels_host(s, e);
        res->allocated_clusters++;
        if (prev && prev + s->cluster_size != host)
            res->fragmented_clusters++;
        prev = host;
    }
    res->image_end_offset = s->data_end;
    res->has_bfi = true;
    return 0;
}

static int check_locked(struct qimg_node *n, struct qimg_check_result *res, int fix)
{
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return (int)flen;
    uint64_t file_len = (uint64_t)flen;
    int ret = check_unclean(n, res, fix);
    if (ret == 0)
        ret = check_data_off(n, res, fix);
    if (ret == 0)
        ret = check_outside(n, res, fix, file_len);
    if (ret == 0)
        ret = check_leak(n, res, fix, &file_len);
    if (ret == 0 && (res->corruptions_fixed || res->leaks_fixed))
        ret = parallels_scan_bat(n, file_len);
    if (ret == 0)
        ret = check_duplicates(n, res, fix, file_len);
    if (ret == 0)
        ret = statistics(n, res, file_len);
    return ret;
}

int parallels_check(struct qimg_node *n, struct qimg_check_result *res, int fix,
                    struct qimg_error *err)
{
    (void)err;
    pthread_mutex_lock(&n->lock);
    int ret = check_locked(n, res, fix);
    pthread_mutex_unlock(&n->lock);
    if (ret == 0 && (res->corruptions_fixed || res->leaks_fixed))
        ret = qimg_node_flush(n->file);
    return ret;
}
