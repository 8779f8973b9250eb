/* SPDX-License-Identifier: MIT */
/*
 * The slack of a file's last cluster (the bytes past its end). QEMU reads a
 * file cluster with read() into one cluster buffer and returns the whole
 * buffer: past the file's end it shows what the previous file cluster left
 * there. qemu-img convert reads the disk in order, so its output holds, at
 * slack byte x of cluster c, byte x of the last file cluster before c that
 * had data at x (zero when none had). qimg computes the same bytes, for any
 * read order, so that converted images are identical to QEMU's.
 *
 * The sources form a persistent list: a full cluster starts a new one; a
 * partial cluster of len bytes goes in front of the older sources holding
 * more than len bytes (older ones holding less are hidden for good).
 */
#include <string.h>

#include "protocols/vvfat/vvfat.h"
#include "util/mem.h"

static int64_t push(struct vvfat_image *img, uint32_t cluster, uint32_t len, size_t run,
                    int64_t next)
{
    struct vvfat_slack_src *s = &img->slack[img->nslack];
    *s = (struct vvfat_slack_src){cluster, len, run, next};
    return (int64_t)img->nslack++;
}

void vvfat_slack_build(struct vvfat_image *img)
{
    img->slack = xcalloc(img->nruns * 2 + 1, sizeof(*img->slack));
    int64_t head = -1;
    for (size_t i = 0; i < img->nruns; i++) {
        struct vvfat_run *r = &img->runs[i];
        r->slack = -1;
        if (r->is_dir || r->unreadable) /* QEMU's buffer keeps what it held */
            continue;
        uint64_t full = r->size / VVFAT_CLUSTER;
        uint32_t rem = (uint32_t)(r->size % VVFAT_CLUSTER);
        if (full)
            head = push(img, r->begin + (uint32_t)full - 1, VVFAT_CLUSTER, i, -1);
        if (!rem)
            continue;
        while (head >= 0 && img->slack[head].len <= rem)
            head = img->slack[head].next;
        r->slack = head;
        head = push(img, r->end - 1, rem, i, head);
    }
}

int vvfat_slack_read(const struct vvfat_image *img, const struct vvfat_run *r, uint32_t from,
                     uint32_t to, uint8_t *buf)
{
    uint32_t pos = from;
    for (int64_t k = r->slack; k >= 0 && pos < to; k = img->slack[k].next) {
        const struct vvfat_slack_src *s = &img->slack[k];
        if (s->len <= pos)
            continue;
        uint32_t end = s->len < to ? s->len : to;
        const struct vvfat_run *src = &img->runs[s->run];
        uint64_t off = (uint64_t)(s->cluster - src->begin) * VVFAT_CLUSTER + pos;
        int ret = vvfat_read_file(src, off, buf + (pos - from), end - pos);
        if (ret < 0)
            return ret;
        pos = end;
    }
    memset(buf + (pos - from), 0, to - pos);
    return 0;
}
