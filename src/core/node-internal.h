/* SPDX-License-Identifier: MIT */
/* Core-internal helpers shared between the files of src/core. */
#ifndef QIMG_CORE_NODE_INTERNAL_H
#define QIMG_CORE_NODE_INTERNAL_H

#include "qimg/driver.h"

int qimg_open_depth(struct qimg_node **out, const char *filename, const char *format,
                    struct qimg_opts *opts, unsigned flags, int depth, struct qimg_error *err);
int qimg_node_set_perm(struct qimg_node *n, unsigned perm, unsigned shared,
                       struct qimg_error *err);
/* "file:NAME" (or host_device:, host_cdrom:) given as a filename for drv: the path it
 * names (caller frees), else NULL. */
char *qimg_parse_file_prefix(const struct qimg_driver *drv, const char *filename);
char *qimg_resolve_backing_path(const char *overlay, const char *backing);
/* After open: the name QEMU would give the node (core/filename.c). */
void qimg_node_refresh_filename(struct qimg_node *n);
/* The node as a json: name describes it ({"driver": ..., options, children}). */
struct qimg_json *qimg_node_describe(const struct qimg_node *n);

/* QIMG_O_DRY_RUN: put the memory overlay (core/overlay.c) over *node, which it then owns. */
int qimg_overlay_wrap(struct qimg_node **node, unsigned flags, struct qimg_error *err);

#endif
