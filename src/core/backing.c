/* SPDX-License-Identifier: MIT */
/*
 * Changing a backing chain: the backing file recorded in an image (rebase,
 * convert -B) and emptying a layer (commit). The formats do the on-disk work
 * through their change_backing_file and make_empty callbacks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/node-internal.h"
#include "qimg/driver.h"
#include "util/mem.h"

int qimg_change_backing_file(struct qimg_node *n, const char *file, const char *fmt,
                             struct qimg_error *err)
{
    if (file && !file[0])
        file = NULL;
    if (!file)
        fmt = NULL;
    if (!(n->flags & QIMG_O_RDWR))
        return qimg_error_set(err, -EACCES, "Image is read-only");
    if (!n->drv->change_backing_file)
        return qimg_error_set(err, -ENOTSUP, "%s", strerror(ENOTSUP));
    int ret = n->drv->change_backing_file(n, file, fmt, err);
    if (ret < 0)
        return ret;
    free(n->full_backing_filename);
    n->full_backing_filename = file ? qimg_resolve_backing_path(n->filename, file) : NULL;
    return 0;
}

int qimg_make_empty(struct qimg_node *n, struct qimg_error *err)
{
    if (!(n->flags & QIMG_O_RDWR))
        return qimg_error_set(err, -EACCES, "Image is read-only");
    if (!n->drv->make_empty)
        return qimg_error_set(err, -ENOTSUP, "%s", strerror(ENOTSUP));
    return n->drv->make_empty(n, err);
}

char *qimg_backing_path(const struct qimg_node *n, const char *backing)
{
    return qimg_resolve_backing_path(n->filename, backing);
}

void qimg_node_set_backing(struct qimg_node *n, struct qimg_node *backing)
{
    if (backing)
        qimg_node_ref(backing);
    qimg_node_unref(n->backing);
    n->backing = backing;
}

const char *qimg_node_full_backing_filename(const struct qimg_node *n)
{
    return n->backing_file && n->backing_file[0] ? n->full_backing_filename : NULL;
}
