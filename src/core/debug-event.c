/* SPDX-License-Identifier: MIT */
/*
 * Debug events: format drivers announce their metadata steps ("l2_load") on
 * their file child; a blkdebug filter there turns them into injected errors.
 * The names are QEMU's BlkdebugEvent values (qapi/block-core.json), which is
 * what blkdebug config files and json: options spell.
 */
#include <errno.h>
#include <string.h>

#include "qimg/driver.h"
#include "qimg/node.h"

static const char *const event_names[QIMG_DBG__MAX] = {
    [QIMG_DBG_L1_UPDATE] = "l1_update",
    [QIMG_DBG_L1_GROW_ALLOC_TABLE] = "l1_grow_alloc_table",
    [QIMG_DBG_L1_GROW_WRITE_TABLE] = "l1_grow_write_table",
    [QIMG_DBG_L1_GROW_ACTIVATE_TABLE] = "l1_grow_activate_table",
    [QIMG_DBG_L2_LOAD] = "l2_load",
    [QIMG_DBG_L2_UPDATE] = "l2_update",
    [QIMG_DBG_L2_UPDATE_COMPRESSED] = "l2_update_compressed",
    [QIMG_DBG_L2_ALLOC_COW_READ] = "l2_alloc_cow_read",
    [QIMG_DBG_L2_ALLOC_WRITE] = "l2_alloc_write",
    [QIMG_DBG_READ_AIO] = "read_aio",
    [QIMG_DBG_READ_BACKING_AIO] = "read_backing_aio",
    [QIMG_DBG_READ_COMPRESSED] = "read_compressed",
    [QIMG_DBG_WRITE_AIO] = "write_aio",
    [QIMG_DBG_WRITE_COMPRESSED] = "write_compressed",
    [QIMG_DBG_VMSTATE_LOAD] = "vmstate_load",
    [QIMG_DBG_VMSTATE_SAVE] = "vmstate_save",
    [QIMG_DBG_COW_READ] = "cow_read",
    [QIMG_DBG_COW_WRITE] = "cow_write",
    [QIMG_DBG_REFTABLE_LOAD] = "reftable_load",
    [QIMG_DBG_REFTABLE_GROW] = "reftable_grow",
    [QIMG_DBG_REFTABLE_UPDATE] = "reftable_update",
    [QIMG_DBG_REFBLOCK_LOAD] = "refblock_load",
    [QIMG_DBG_REFBLOCK_UPDATE] = "refblock_update",
    [QIMG_DBG_REFBLOCK_UPDATE_PART] = "refblock_update_part",
    [QIMG_DBG_REFBLOCK_ALLOC] = "refblock_alloc",
    [QIMG_DBG_REFBLOCK_ALLOC_HOOKUP] = "refblock_alloc_hookup",
    [QIMG_DBG_REFBLOCK_ALLOC_WRITE] = "refblock_alloc_write",
    [QIMG_DBG_REFBLOCK_ALLOC_WRITE_BLOCKS] = "refblock_alloc_write_blocks",
    [QIMG_DBG_REFBLOCK_ALLOC_WRITE_TABLE] = "refblock_alloc_write_table",
    [QIMG_DBG_REFBLOCK_ALLOC_SWITCH_TABLE] = "refblock_alloc_switch_table",
    [QIMG_DBG_CLUSTER_ALLOC] = "cluster_alloc",
    [QIMG_DBG_CLUSTER_ALLOC_BYTES] = "cluster_alloc_bytes",
    [QIMG_DBG_CLUSTER_FREE] = "cluster_free",
    [QIMG_DBG_FLUSH_TO_OS] = "flush_to_os",
    [QIMG_DBG_FLUSH_TO_DISK] = "flush_to_disk",
    [QIMG_DBG_PWRITEV_RMW_HEAD] = "pwritev_rmw_head",
    [QIMG_DBG_PWRITEV_RMW_AFTER_HEAD] = "pwritev_rmw_after_head",
    [QIMG_DBG_PWRITEV_RMW_TAIL] = "pwritev_rmw_tail",
    [QIMG_DBG_PWRITEV_RMW_AFTER_TAIL] = "pwritev_rmw_after_tail",
    [QIMG_DBG_PWRITEV] = "pwritev",
    [QIMG_DBG_PWRITEV_ZERO] = "pwritev_zero",
    [QIMG_DBG_PWRITEV_DONE] = "pwritev_done",
    [QIMG_DBG_EMPTY_IMAGE_PREPARE] = "empty_image_prepare",
    [QIMG_DBG_L1_SHRINK_WRITE_TABLE] = "l1_shrink_write_table",
    [QIMG_DBG_L1_SHRINK_FREE_L2_CLUSTERS] = "l1_shrink_free_l2_clusters",
    [QIMG_DBG_COR_WRITE] = "cor_write",
    [QIMG_DBG_CLUSTER_ALLOC_SPACE] = "cluster_alloc_space",
    [QIMG_DBG_NONE] = "none",
};

int qimg_debug_event_parse(const char *name, enum qimg_debug_event *out)
{
    for (int i = 0; name && i < QIMG_DBG__MAX; i++) {
        if (strcmp(event_names[i], name) == 0) {
            *out = (enum qimg_debug_event)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *qimg_debug_event_name(enum qimg_debug_event ev)
{
    return (unsigned)ev < QIMG_DBG__MAX ? event_names[ev] : NULL;
}

/*
 * The event goes to the first node down the file chain that takes events:
 * filters without a debug_event callback pass it on, anything else ends it.
 */
void qimg_debug_event(struct qimg_node *file, enum qimg_debug_event ev)
{
    while (file && file->drv) {
        if (file->drv->debug_event) {
            file->drv->debug_event(file, ev);
            return;
        }
        if (!file->drv->is_filter)
            return;
        file = file->file;
    }
}

/*
 * Breakpoints: like QEMU's bdrv_debug_*, the first node down the file chain
 * whose driver implements them answers (formats and filters without them
 * pass the call on); no such node: -ENOTSUP.
 */
static struct qimg_node *breakpoint_node(struct qimg_node *n)
{
    while (n && n->drv && !n->drv->debug_breakpoint)
        n = n->file;
    return n && n->drv ? n : NULL;
}

int qimg_debug_breakpoint(struct qimg_node *n, const char *event, const char *tag)
{
    n = breakpoint_node(n);
    return n ? n->drv->debug_breakpoint(n, event, tag) : -ENOTSUP;
}

int qimg_debug_remove_breakpoint(struct qimg_node *n, const char *tag)
{
    n = breakpoint_node(n);
    return n && n->drv->debug_remove_breakpoint ? n->drv->debug_remove_breakpoint(n, tag)
                                                : -ENOTSUP;
}

int qimg_debug_resume(struct qimg_node *n, const char *tag)
{
    n = breakpoint_node(n);
    return n && n->drv->debug_resume ? n->drv->debug_resume(n, tag) : -ENOTSUP;
}

bool qimg_debug_is_suspended(struct qimg_node *n, const char *tag)
{
    n = breakpoint_node(n);
    return n && n->drv->debug_is_suspended && n->drv->debug_is_suspended(n, tag);
}
