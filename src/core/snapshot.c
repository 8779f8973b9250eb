/* SPDX-License-Identifier: MIT */
/*
 * Internal snapshots: the generic entry points over the driver callbacks,
 * with the block layer's wording where a format has none.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qimg/driver.h"

/*
 * QEMU's snapshot fallback: a driver without snapshots (raw, a filter) hands
 * the operation to its file child when that child has them (raw over rbd).
 */
#define SNAPSHOT_FALLBACK(n, op)                                                           \
    do {                                                                                   \
        while (!(n)->drv->op && (n)->file && (n)->file->drv->op &&                         \
               ((n)->drv->is_filter || !strcmp((n)->drv->name, "raw")))                     \
            (n) = (n)->file;                                                               \
    } while (0)

void qimg_snapshot_list_free(struct qimg_snapshot_info *sn, size_t count)
{
    for (size_t i = 0; sn && i < count; i++) {
        free(sn[i].id);
        free(sn[i].name);
    }
    free(sn);
}

int qimg_snapshot_list(struct qimg_node *n, struct qimg_snapshot_info **out, size_t *count,
                       struct qimg_error *err)
{
    SNAPSHOT_FALLBACK(n, snapshot_list);
    *out = NULL;
    *count = 0;
    if (!n->drv->snapshot_list)
        return qimg_error_set(err, -ENOTSUP, "Block driver does not support snapshots");
    return n->drv->snapshot_list(n, out, count, err);
}

int qimg_snapshot_create(struct qimg_node *n, const struct qimg_snapshot_info *sn,
                         struct qimg_error *err)
{
    SNAPSHOT_FALLBACK(n, snapshot_create);
    if (!n->drv->snapshot_create)
        return qimg_error_set(err, -ENOTSUP, "Block driver does not support snapshots");
    return n->drv->snapshot_create(n, sn, err);
}

int qimg_snapshot_goto(struct qimg_node *n, const char *id_or_name, struct qimg_error *err)
{
    SNAPSHOT_FALLBACK(n, snapshot_goto);
    if (!n->drv->snapshot_goto)
        return qimg_error_set(err, -ENOTSUP, "Block driver does not support snapshots");
    /*
     * Bitmaps would not match the data after the switch: any persistent bitmap,
     * enabled or not, refuses it, before the snapshot is even looked up
     * (observed with qemu-img 7.2).
     */
    struct qimg_bitmap_info *bm = NULL;
    size_t nbm = 0;
    struct qimg_error be = {0};
    if (qimg_bitmap_supported(n) && qimg_bitmap_list(n, &bm, &nbm, &be) == 0) {
        qimg_bitmap_list_free(bm, nbm);
        if (nbm)
            return qimg_error_set(err, -EBUSY, "Device has active dirty bitmaps");
    }
    struct qimg_error e = {0};
    int ret = n->drv->snapshot_goto(n, id_or_name, &e);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Failed to load snapshot");
    return 0;
}

int qimg_snapshot_delete(struct qimg_node *n, const char *id, const char *name,
                         struct qimg_error *err)
{
    SNAPSHOT_FALLBACK(n, snapshot_delete);
    if (!n->drv->snapshot_delete)
        return qimg_error_set(err, -ENOTSUP, "Block format '%s' used by device '' does not "
                                             "support internal snapshots deletion",
                              n->drv->name);
    return n->drv->snapshot_delete(n, id, name, err);
}

int qimg_snapshot_load_tmp(struct qimg_node *n, const char *id, const char *name,
                           struct qimg_error *err)
{
    if (!n->drv->snapshot_load_tmp)
        return qimg_error_set(err, -ENOTSUP, "Block format '%s' used by device '' does not "
                                             "support temporarily loading internal snapshots",
                              n->drv->name);
    if (qimg_node_is_writable(n))
        return qimg_error_set(err, -EINVAL, "Device '' is writable");
    return n->drv->snapshot_load_tmp(n, id, name, err);
}

int qimg_snapshot_load_tmp_by_id_or_name(struct qimg_node *n, const char *id_or_name,
                                         struct qimg_error *err)
{
    struct qimg_error e = {0};
    int ret = qimg_snapshot_load_tmp(n, id_or_name, NULL, &e);
    if (ret == -ENOENT)
        ret = qimg_snapshot_load_tmp(n, NULL, id_or_name, &e);
    if (ret < 0)
        *err = e;
    return ret;
}

struct qimg_json *qimg_snapshot_info_json(const struct qimg_snapshot_info *sn)
{
    /* qapi SnapshotInfo, in schema order. */
    struct qimg_json *j = qimg_json_object();
    qimg_json_add_str(j, "id", sn->id);
    qimg_json_add_str(j, "name", sn->name);
    qimg_json_add_int(j, "vm-state-size", (int64_t)sn->vm_state_size);
    qimg_json_add_int(j, "date-sec", sn->date_sec);
    qimg_json_add_int(j, "date-nsec", sn->date_nsec);
    qimg_json_add_int(j, "vm-clock-sec", (int64_t)(sn->vm_clock_nsec / 1000000000u));
    qimg_json_add_int(j, "vm-clock-nsec", (int64_t)(sn->vm_clock_nsec % 1000000000u));
    if (sn->icount != QIMG_SNAPSHOT_ICOUNT_NONE)
        qimg_json_add_int(j, "icount", (int64_t)sn->icount);
    return j;
}
