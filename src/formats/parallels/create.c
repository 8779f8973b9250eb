/* SPDX-License-Identifier: MIT */
/*
 * Creating parallels images as qemu-img 9.1 lays them out: a "WithouFreSpacExt"
 * version 2 header (16 heads, cylinders = sectors / (16 * 32), the cluster
 * size in sectors rounded up as "tracks"), an all-zero BAT, and the data area
 * starting at the first cluster boundary after the BAT; the file is written
 * up to there. "preallocation" is a protocol option (passed to the file,
 * which is created empty).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/parallels/parallels.h"
#include "formats/common/create-file.h"
#include "util/bytes.h"
#include "util/mem.h"

#define WRITE_CHUNK (4u << 20)

struct prl_layout {
    uint64_t sectors;
    uint32_t tracks, bat_entries;
    uint64_t data_off; /* sectors */
};

static void header_build(uint8_t *h, const struct prl_layout *l)
{
    memset(h, 0, PRL_HEADER_SIZE);
    memcpy(h + PRL_OFF_MAGIC, PRL_MAGIC_V2, 16);
    qimg_put_le32(h + PRL_OFF_VERSION, PRL_VERSION);
    qimg_put_le32(h + PRL_OFF_HEADS, PRL_HEADS);
    qimg_put_le32(h + PRL_OFF_CYLINDERS,
                  (uint32_t)(l->sectors / (PRL_HEADS * PRL_SEC_PER_TRACK)));
    qimg_put_le32(h + PRL_OFF_TRACKS, l->tracks);
    qimg_put_le32(h + PRL_OFF_BAT_ENTRIES, l->bat_entries);
    qimg_put_le64(h + PRL_OFF_NB_SECTORS, l->sectors);
    qimg_put_le32(h + PRL_OFF_DATA_OFF, (uint32_t)l->data_off);
}

/* Header and zero BAT up to the data area, in chunks (a BAT may be gigabytes). */
static int write_layout(struct qimg_node *file, const struct prl_layout *l,
                        struct qimg_error *err)
{
    uint64_t total = l->data_off * PRL_SECTOR;
    uint8_t *buf = xcalloc(1, WRITE_CHUNK);
    int ret = 0;
    for (uint64_t pos = 0; pos < total && ret == 0; pos += WRITE_CHUNK) {
        uint64_t len = qimg_min_u64(WRITE_CHUNK, total - pos);
        if (pos == 0)
            header_build(buf, l);
        ret = qimg_node_pwrite(file, pos, len, buf, 0);
        if (pos == 0)
            memset(buf, 0, PRL_HEADER_SIZE);
    }
    free(buf);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not write the image header");
    ret = qimg_node_flush(file);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not flush the new image");
    return 0;
}

/* qemu-img 9.1's limits and rounding; its messages. */
static int plan(uint64_t size, uint64_t cluster, struct prl_layout *l, struct qimg_error *err)
{
    if (cluster > PRL_MAX_CLUSTER)
        return qimg_error_set(err, -EINVAL, "Cluster size is too large");
    uint64_t tracks = qimg_div_round_up(cluster, PRL_SECTOR);
    if (tracks == 0)
        return qimg_error_set(err, -EINVAL, "Cluster size is too small");
    uint64_t cl = tracks * PRL_SECTOR;
    uint64_t rounded;
    if (!qimg_round_up_checked(size, PRL_SECTOR, &rounded) || rounded / cl >= (1ull << 32))
        return qimg_error_set(err, -E2BIG, "Image size is too large for this cluster size");
    l->sectors = rounded / PRL_SECTOR;
    l->tracks = (uint32_t)tracks;
    l->bat_entries = (uint32_t)qimg_div_round_up(l->sectors, tracks);
    uint64_t meta = PRL_HEADER_SIZE + 4ull * l->bat_entries;
    l->data_off = qimg_div_round_up(meta, cl) * tracks;
    if (l->data_off > UINT32_MAX)
        return qimg_error_set(err, -E2BIG, "Image size is too large for this cluster size");
    return 0;
}

int parallels_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    uint64_t size = 0, cluster = PRL_DEFAULT_CLUSTER;
    int ret = qimg_opts_take_size(opts, "size", &size, err);
    if (ret >= 0)
        ret = qimg_opts_take_size(opts, "cluster_size", &cluster, err);
    if (ret < 0)
        return ret;
    struct prl_layout l = {0};
    ret = plan(size, cluster, &l, err);
    if (ret < 0)
        return ret;
    ret = qimg_format_create_empty_file(filename, opts, err);
    if (ret < 0)
        return ret;
    struct qimg_node *file = NULL;
    ret = qimg_open_protocol(&file, filename, NULL, QIMG_O_RDWR, err);
    if (ret < 0)
        return ret;
    ret = write_layout(file, &l, err);
    qimg_node_unref(file);
    return ret;
}
