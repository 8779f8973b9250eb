/* SPDX-License-Identifier: MIT */
/*
 * Creating QED images as qemu-img 9.1 lays them out: the 64-byte header at
 * 0 (header_size 1 cluster), the backing file name right after it, the L1
 * table (table_size clusters of zeroes, written as data) at cluster 1. The
 * backing format is kept only as the "raw, do not probe" flag. The size is
 * rounded up to sectors; the options are checked after the file exists,
 * which qemu leaves behind (empty) when they fail.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/common/create-file.h"
#include "formats/qed/qed.h"
#include "util/bytes.h"
#include "util/mem.h"

struct qed_layout {
    uint64_t size, cluster_size, table_size;
    const char *backing_file, *backing_fmt;
};

static int take_options(struct qimg_opts *opts, struct qed_layout *l, struct qimg_error *err)
{
    l->cluster_size = QED_DEFAULT_CLUSTER_SIZE;
    l->table_size = QED_DEFAULT_TABLE_SIZE;
    int ret = qimg_opts_take_size(opts, "size", &l->size, err);
    if (ret >= 0)
        ret = qimg_opts_take_size(opts, "cluster_size", &l->cluster_size, err);
    if (ret >= 0)
        ret = qimg_opts_take_size(opts, "table_size", &l->table_size, err);
    if (ret < 0)
        return ret;
    l->backing_file = qimg_opts_take(opts, "backing_file");
    l->backing_fmt = qimg_opts_take(opts, "backing_fmt");
    return 0;
}

/* qemu 9.1's checks and words (the size message predates the sector rule it enforces). */
static int validate(struct qed_layout *l, struct qimg_error *err)
{
    if (!qed_cluster_size_valid(l->cluster_size))
        return qimg_error_set(err, -EINVAL,
                              "QED cluster size must be within range [%u, %u] and power of 2",
                              QED_MIN_CLUSTER_SIZE, QED_MAX_CLUSTER_SIZE);
    if (!qed_table_size_valid(l->table_size))
        return qimg_error_set(err, -EINVAL,
                              "QED table size must be within range [%u, %u] and power of 2",
                              QED_MIN_TABLE_SIZE, QED_MAX_TABLE_SIZE);
    if (!qed_image_size_valid(l->size, l->cluster_size, l->table_size))
        return qimg_error_set(err, -EINVAL,
                              "QED image size must be a non-zero multiple of cluster size and "
                              "less than %" PRIu64 " bytes",
                              qed_max_image_size(l->cluster_size, l->table_size));
    return 0;
}

static int write_layout(struct qimg_node *file, const struct qed_layout *l,
                        struct qimg_error *err)
{
    struct qed_header h = {
        .magic = QED_MAGIC,
        .cluster_size = (uint32_t)l->cluster_size,
        .table_size = (uint32_t)l->table_size,
        .header_size = 1,
        .l1_table_offset = l->cluster_size,
        .image_size = l->size,
    };
    size_t name_len = l->backing_file ? strlen(l->backing_file) : 0;
    if (l->backing_file) {
        h.features |= QED_F_BACKING_FILE;
        h.backing_name_offset = QED_HEADER_BYTES;
        h.backing_name_size = (uint32_t)name_len;
        if (l->backing_fmt && !strcmp(l->backing_fmt, "raw"))
            h.features |= QED_F_BACKING_FORMAT_NO_PROBE;
    }
    uint8_t *head = xmalloc(QED_HEADER_BYTES + name_len);
    qed_header_encode(&h, head);
    if (name_len)
        memcpy(head + QED_HEADER_BYTES, l->backing_file, name_len);
    int ret = qimg_node_truncate(file, 0, false, QIMG_PREALLOC_OFF, err);
    if (ret < 0) {
        free(head);
        return ret;
    }
    ret = qimg_node_pwrite(file, 0, QED_HEADER_BYTES + name_len, head, 0);
    free(head);
    /* The L1 table: zeroes written as data, as qemu writes them (its "disk size"). */
    uint64_t l1 = l->cluster_size * l->table_size, chunk = qimg_min_u64(l1, 4u << 20);
    uint8_t *z = ret == 0 ? xcalloc(1, chunk) : NULL;
    for (uint64_t done = 0; ret == 0 && done < l1; done += chunk)
        ret = qimg_node_pwrite(file, h.l1_table_offset + done, chunk, z, 0);
    free(z);
    if (ret == 0)
        ret = qimg_node_flush(file);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not write the new image");
    return 0;
}

int qed_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    struct qed_layout l = {0};
    int ret = take_options(opts, &l, err);
    if (ret < 0)
        return ret;
    ret = qimg_format_create_empty_file(filename, opts, err);
    if (ret < 0)
        return ret;
    uint64_t raw = l.size;
    if (!qimg_round_up_checked(raw, 512, &l.size))
        l.size = UINT64_MAX; /* fails the size check below */
    ret = validate(&l, err);
    if (ret < 0)
        return ret;
    struct qimg_node *file = NULL;
    ret = qimg_open_protocol(&file, filename, NULL, QIMG_O_RDWR | QIMG_O_RESIZE, err);
    if (ret < 0)
        return ret;
    ret = write_layout(file, &l, err);
    qimg_node_unref(file);
    return ret;
}
