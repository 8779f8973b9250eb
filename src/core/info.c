/* SPDX-License-Identifier: MIT */
/*
 * ImageInfo / BlockGraphInfo (qapi: BlockNodeInfo, BlockGraphInfo) for a node,
 * built in schema order so the JSON writer reproduces qemu-img's member order.
 */
#include <errno.h>
#include <string.h>

#include "qimg/driver.h"

static struct qimg_json *node_info(struct qimg_node *n, struct qimg_error *err);

static struct qimg_json *child_info(const char *name, struct qimg_node *child,
                                    struct qimg_error *err)
{
    struct qimg_json *info = node_info(child, err);
    if (!info)
        return NULL;
    struct qimg_json *c = qimg_json_object();
    qimg_json_add_str(c, "name", name);
    qimg_json_add(c, "info", info);
    return c;
}

/* The format's own children (vmdk extents), newest first as QEMU lists them; false on error. */
static bool extra_children(struct qimg_node *n, struct qimg_json *children,
                           struct qimg_error *err)
{
    if (!n->drv->extra_child)
        return true;
    size_t count = 0;
    char name[64];
    while (n->drv->extra_child(n, count, name, sizeof(name)))
        count++;
    for (size_t i = count; i-- > 0;) {
        struct qimg_node *c = n->drv->extra_child(n, i, name, sizeof(name));
        struct qimg_json *ci = child_info(name, c, err);
        if (!ci)
            return false;
        qimg_json_append(children, ci);
    }
    return true;
}

/*
 * QEMU prints dirty-flag only when the driver answers its get_info: formats
 * with metadata, the file protocol, and raw and filters whose file does;
 * null-co does not.
 */
/* file, host_device and host_cdrom: QEMU's file-posix drivers, which share their info. */
static bool is_posix_file(const struct qimg_driver *drv)
{
    return !strcmp(drv->name, "file") || !strcmp(drv->name, "host_device") ||
           !strcmp(drv->name, "host_cdrom");
}

static bool answers_get_info(const struct qimg_node *n)
{
    if (!strcmp(n->drv->name, "raw") || n->drv->is_filter)
        return n->file && answers_get_info(n->file);
    return n->drv->get_info || is_posix_file(n->drv);
}

static struct qimg_json *node_info(struct qimg_node *n, struct qimg_error *err)
{
    struct qimg_driver_info di = {0};
    int ret = n->drv->get_info ? n->drv->get_info(n, &di, err) : 0;
    if (ret < 0 && !(ret == -ENOTSUP && !err->msg[0])) /* unanswered: no geometry */
        return NULL;
    int64_t vsize = qimg_node_length(n);
    if (vsize < 0) {
        qimg_error_errno(err, (int)vsize, "Could not get the image size");
        goto fail;
    }
    int64_t asize = qimg_node_allocated_size(n);

    struct qimg_json *j = qimg_json_object();
    qimg_json_add_str(j, "filename", n->filename);
    qimg_json_add_str(j, "format", n->drv->name);
    if (answers_get_info(n))
        qimg_json_add_bool(j, "dirty-flag", di.dirty);
    if (asize >= 0)
        qimg_json_add_int(j, "actual-size", asize);
    qimg_json_add_int(j, "virtual-size", vsize);
    if (di.cluster_size)
        qimg_json_add_int(j, "cluster-size", (int64_t)di.cluster_size);
    if (di.encrypted)
        qimg_json_add_bool(j, "encrypted", true);
    if (n->backing_file && n->backing_file[0]) {
        qimg_json_add_str(j, "backing-filename", n->backing_file);
        if (n->full_backing_filename)
            qimg_json_add_str(j, "full-backing-filename", n->full_backing_filename);
        if (n->backing_format)
            qimg_json_add_str(j, "backing-filename-format", n->backing_format);
    }
    if (di.snapshots)
        qimg_json_add(j, "snapshots", di.snapshots);
    if (di.format_specific) {
        qimg_json_add(j, "format-specific", di.format_specific);
    } else if (is_posix_file(n->drv)) { /* 9.1: ImageInfoSpecificFile */
        struct qimg_json *fs = qimg_json_object();
        qimg_json_add_str(fs, "type", "file");
        qimg_json_add(fs, "data", qimg_json_object());
        qimg_json_add(j, "format-specific", fs);
    }
    struct qimg_json *children = qimg_json_add(j, "children", qimg_json_array());
    if (!extra_children(n, children, err)) {
        qimg_json_free(j);
        return NULL;
    }
    struct {
        const char *name;
        struct qimg_node *node;
    } kids[] = {{"backing", n->backing},
                 {n->drv->child_name ? n->drv->child_name : "file", n->file}, {"data-file", n->data_file}};
    for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++) {
        if (!kids[i].node || (i > 1 && kids[i].node == n->file))
            continue;
        struct qimg_json *c = child_info(kids[i].name, kids[i].node, err);
        if (!c) {
            qimg_json_free(j);
            return NULL;
        }
        qimg_json_append(children, c);
    }
    return j;
fail:
    qimg_json_free(di.format_specific);
    qimg_json_free(di.snapshots);
    return NULL;
}

struct qimg_json *qimg_node_image_info(struct qimg_node *n, struct qimg_error *err)
{
    return node_info(n, err);
}
