/* SPDX-License-Identifier: MIT */
/*
 * qemu-img check for VHDX, as 9.1 does it: a log replayed when the image was
 * opened (read-write: check -r) counts as one repaired corruption, and BAT
 * entries pointing past the end of the file are corruptions (reported as
 * qemu's open does). Nothing else is checked; -r repairs nothing more.
 */
#include <errno.h>

#include "formats/vhdx/vhdx.h"

int vhdx_check(struct qimg_node *n, struct qimg_check_result *res, int fix, struct qimg_error *err)
{
    (void)fix;
    (void)err;
    struct vhdx_state *s = n->opaque;
    if (s->log_replayed)
        res->corruptions_fixed++;
    pthread_mutex_lock(&n->lock);
    int ret = vhdx_check_bat_entries(n, &res->corruptions);
    pthread_mutex_unlock(&n->lock);
    return ret == -EINVAL ? 0 : ret;
}
