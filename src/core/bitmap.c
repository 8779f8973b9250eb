/* SPDX-License-Identifier: MIT */
/*
 * Persistent dirty bitmaps: the generic entry points over the driver
 * callbacks, merging across images, and measure's estimate of their size.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qimg/driver.h"

bool qimg_bitmap_supported(struct qimg_node *n)
{
    struct qimg_bitmap_info *bm;
    size_t count;
    struct qimg_error err = {0};
    if (!n->drv->bitmap_list || n->drv->bitmap_list(n, &bm, &count, &err) < 0)
        return false;
    qimg_bitmap_list_free(bm, count);
    return true;
}

static int unsupported(struct qimg_node *n, struct qimg_error *err)
{
    (void)n;
    return qimg_error_set(err, -ENOTSUP, "Can't store persistent bitmaps to %s: %s", "#block0",
                          strerror(ENOTSUP));
}

static int no_bitmap(const char *name, struct qimg_error *err)
{
    return qimg_error_set(err, -ENOENT, "Dirty bitmap '%s' not found", name);
}

void qimg_bitmap_list_free(struct qimg_bitmap_info *bm, size_t count)
{
    for (size_t i = 0; bm && i < count; i++)
        free(bm[i].name);
    free(bm);
}

int qimg_bitmap_list(struct qimg_node *n, struct qimg_bitmap_info **out, size_t *count,
                     struct qimg_error *err)
{
    *out = NULL;
    *count = 0;
    if (!n->drv->bitmap_list)
        return 0; /* no persistent bitmaps in this format */
    return n->drv->bitmap_list(n, out, count, err);
}

int qimg_bitmap_add(struct qimg_node *n, const char *name, uint32_t granularity, bool disabled,
                    struct qimg_error *err)
{
    if (!name[0])
        return qimg_error_set(err, -EINVAL, "Bitmap name cannot be empty");
    if (granularity && (granularity < 512 || (granularity & (granularity - 1))))
        return qimg_error_set(err, -EINVAL, "Granularity must be power of 2 and at least 512");
    if (!n->drv->bitmap_add)
        return unsupported(n, err);
    return n->drv->bitmap_add(n, name, granularity, disabled, err);
}

int qimg_bitmap_remove(struct qimg_node *n, const char *name, struct qimg_error *err)
{
    if (!n->drv->bitmap_remove)
        return no_bitmap(name, err);
    return n->drv->bitmap_remove(n, name, err);
}

int qimg_bitmap_clear(struct qimg_node *n, const char *name, struct qimg_error *err)
{
    if (!n->drv->bitmap_clear)
        return no_bitmap(name, err);
    return n->drv->bitmap_clear(n, name, err);
}

int qimg_bitmap_set_enabled(struct qimg_node *n, const char *name, bool enabled,
                            struct qimg_error *err)
{
    if (!n->drv->bitmap_set_enabled)
        return no_bitmap(name, err);
    return n->drv->bitmap_set_enabled(n, name, enabled, err);
}

/* Is name in n's list (and is it in use)? */
static int lookup(struct qimg_node *n, const char *name, bool *found, bool *in_use,
                  struct qimg_error *err)
{
    struct qimg_bitmap_info *list;
    size_t count;
    *found = *in_use = false;
    int ret = qimg_bitmap_list(n, &list, &count, err);
    if (ret < 0)
        return ret;
    for (size_t i = 0; i < count; i++) {
        if (!strcmp(list[i].name, name)) {
            *found = true;
            *in_use = list[i].in_use;
            break;
        }
    }
    qimg_bitmap_list_free(list, count);
    return 0;
}

static int inconsistent(const char *name, struct qimg_error *err)
{
    return qimg_error_set(err, -EINVAL,
                          "Bitmap '%s' is inconsistent and cannot be used\n"
                          "Try block-dirty-bitmap-remove to delete this bitmap from disk",
                          name);
}

int qimg_bitmap_merge(struct qimg_node *n, const char *name, struct qimg_node *src,
                      const char *src_name, struct qimg_error *err)
{
    if (!n->drv->bitmap_merge_bits)
        return no_bitmap(name, err);
    if (!src->drv->bitmap_get)
        return no_bitmap(src_name, err);
    /* QEMU's order: both looked up, then the target checked, then the source. */
    bool dst_found, dst_in_use, src_found, src_in_use;
    int ret = lookup(n, name, &dst_found, &dst_in_use, err);
    if (ret < 0)
        return ret;
    if (!dst_found)
        return no_bitmap(name, err);
    ret = lookup(src, src_name, &src_found, &src_in_use, err);
    if (ret < 0)
        return ret;
    if (!src_found)
        return no_bitmap(src_name, err);
    if (dst_in_use)
        return inconsistent(name, err);
    if (src_in_use)
        return inconsistent(src_name, err);
    uint8_t *bits = NULL;
    uint64_t nbits;
    uint32_t gran;
    ret = src->drv->bitmap_get(src, src_name, &bits, &nbits, &gran, err);
    if (ret < 0)
        return ret;
    if (qimg_node_length(src) != qimg_node_length(n))
        ret = qimg_error_set(err, -EINVAL, "Bitmaps are incompatible and can't be merged");
    else
        ret = n->drv->bitmap_merge_bits(n, name, bits, nbits, gran, err);
    free(bits);
    return ret;
}

uint64_t qimg_bitmap_measure(struct qimg_node *n, uint64_t cluster_size)
{
    struct qimg_bitmap_info *list;
    size_t count;
    struct qimg_error err = {0};
    if (!cluster_size || qimg_bitmap_list(n, &list, &count, &err) < 0)
        return 0;
    int64_t len = qimg_node_length(n);
    uint64_t size = len > 0 ? (uint64_t)len : 0, total = 0, dir = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t bits = (size + list[i].granularity - 1) / list[i].granularity;
        uint64_t bytes = (bits + 7) / 8;
        uint64_t clusters = (bytes + cluster_size - 1) / cluster_size;
        /* Every data cluster allocated, its table, and its directory entry. */
        total += clusters * cluster_size;
        total += (clusters * 8 + cluster_size - 1) / cluster_size * cluster_size;
        dir += (24 + strlen(list[i].name) + 7) / 8 * 8;
    }
    total += (dir + cluster_size - 1) / cluster_size * cluster_size;
    qimg_bitmap_list_free(list, count);
    return total;
}
