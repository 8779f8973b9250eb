/* SPDX-License-Identifier: MIT */
/*
 * qemu-img check for VMDK, as 9.1 does it: grain by grain (a flat extent is
 * one grain), every allocated grain must start before the end of its extent
 * file. The first problem ends the check with one corruption and an error
 * (qemu's messages, through the check report). Repairs are not supported.
 */
#include <errno.h>
#include <inttypes.h>

#include "formats/vmdk/vmdk.h"
#include "util/report.h"

/* One grain's verdict: 0 fine, else the error the check ends with. */
static int check_grain(struct vmdk_extent *e, uint64_t sector)
{
    uint64_t host;
    if (e->flat) {
        host = e->flat_offset;
    } else {
        uint32_t gte;
        uint64_t g = (sector - e->start) * VMDK_SECTOR / e->grain;
        if (vmdk_gte_get(e, g, &gte, NULL) < 0) {
            qimg_check_report("ERROR: could not get cluster_offset for sector %" PRId64 "\n",
                              (int64_t)sector);
            return -EPERM; /* qemu returns its VMDK_ERROR (-1) here */
        }
        if (gte == 0 || (e->zero_grain && gte == VMDK_GTE_ZEROED))
            return 0;
        host = (uint64_t)gte * VMDK_SECTOR;
    }
    int64_t flen = qimg_node_length(e->file);
    if (flen < 0) {
        qimg_check_report("ERROR: could not get extent file length for sector %" PRId64 "\n",
                          (int64_t)sector);
        return (int)flen;
    }
    if (host >= (uint64_t)flen) {
        qimg_check_report("ERROR: cluster offset for sector %" PRId64 " points after EOF\n",
                          (int64_t)sector);
        return -EINVAL;
    }
    return 0;
}

int vmdk_check(struct qimg_node *n, struct qimg_check_result *res, int fix,
               struct qimg_error *err)
{
    (void)err;
    struct vmdk_state *s = n->opaque;
    if (fix)
        return -ENOTSUP;
    int ret = 0;
    pthread_mutex_lock(&n->lock);
    for (uint64_t sector = 0; sector < s->total_sectors && ret == 0;) {
        struct vmdk_extent *e = vmdk_find_extent(s, sector * VMDK_SECTOR);
        ret = check_grain(e, sector);
        sector += e->flat ? e->sectors : e->grain / VMDK_SECTOR;
    }
    pthread_mutex_unlock(&n->lock);
    if (ret < 0)
        res->corruptions++;
    return ret;
}
