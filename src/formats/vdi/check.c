/* SPDX-License-Identifier: MIT */
/*
 * qemu-img check for VDI, as 9.1 does it: every allocated block map entry
 * must point inside the map's range and be used once, and the header's count
 * of allocated blocks must match. Repairs are not supported (-ENOTSUP: "This
 * image format does not support checks"). Messages go to the check report.
 */
#include <errno.h>
#include <stdlib.h>

#include "formats/vdi/vdi.h"
#include "util/mem.h"
#include "util/report.h"

static int check_entries(struct qimg_node *n, struct qimg_check_result *res, uint8_t *used,
                         uint32_t *allocated)
{
    struct vdi_state *s = n->opaque;
    for (uint32_t block = 0; block < s->blocks; block++) {
        uint32_t e;
        int ret = vdi_bmap_get(n, block, &e);
        if (ret < 0)
            return ret;
        if (!VDI_IS_ALLOCATED(e))
            continue;
        if (e >= s->blocks) {
            qimg_check_report("ERROR: block index %u too large, is %u\n", block, e);
            res->corruptions++;
            continue;
        }
        ++*allocated;
        if (used[e / 8] & (1u << (e % 8))) {
            qimg_check_report("ERROR: block index %u also used by %u\n", e, e);
            res->corruptions++;
        }
        used[e / 8] |= (uint8_t)(1u << (e % 8));
    }
    return 0;
}

int vdi_check(struct qimg_node *n, struct qimg_check_result *res, int fix, struct qimg_error *err)
{
    (void)err;
    struct vdi_state *s = n->opaque;
    if (fix)
        return -ENOTSUP;
    /* One bit per block: at most VDI_BLOCKS_MAX / 8 bytes (64 MiB). */
    uint8_t *used = xcalloc(1, (size_t)s->blocks / 8 + 1);
    uint32_t allocated = 0;
    pthread_mutex_lock(&n->lock);
    int ret = check_entries(n, res, used, &allocated);
    pthread_mutex_unlock(&n->lock);
    free(used);
    if (ret < 0)
        return ret;
    if (allocated != s->blocks_allocated) {
        qimg_check_report("ERROR: allocated blocks mismatch, is %u, should be %u\n", allocated,
                          s->blocks_allocated);
        res->corruptions++;
    }
    return 0;
}
