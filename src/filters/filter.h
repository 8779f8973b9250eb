/* SPDX-License-Identifier: MIT */
/*
 * Shared pieces of the block filters (QEMU's copy-on-read, preallocate,
 * compress, throttle ...): a filter node has one "file" child, which the core
 * opens from the "file.*" options as it does a format's, and by default
 * passes every request to it unchanged. Each filter overrides what it changes.
 */
#ifndef QIMG_FILTERS_FILTER_H
#define QIMG_FILTERS_FILTER_H

#include "qimg/driver.h"

int64_t filter_get_length(struct qimg_node *n);
int filter_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags);
int filter_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                  unsigned flags);
int filter_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags);
int filter_pwrite_compressed(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf);
int filter_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len);
int filter_flush(struct qimg_node *n);
int filter_truncate(struct qimg_node *n, uint64_t size, bool exact, enum qimg_prealloc prealloc,
                    struct qimg_error *err);
/* The child's own layer; the chain walk then goes on with the child's backing. */
int filter_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                        struct qimg_block_status *st);
bool filter_has_zero_init(struct qimg_node *n);
/*
 * The child's geometry (cluster size, dirty, VM state offset), as QEMU's
 * filters forward bdrv_get_info; format-specific data stays the child's.
 * -ENOTSUP without a message where nothing below answers.
 */
int filter_get_info(struct qimg_node *n, struct qimg_driver_info *info, struct qimg_error *err);

/*
 * The passthrough callbacks, first in a filter's designated initializer; the
 * callbacks the filter names after it replace them (hence the pragma: that
 * override is the point).
 */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Winitializer-overrides"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Woverride-init"

/*
 * Names for filters QEMU always names in JSON (quorum, blklogwrites): a dict
 * of the driver and the options of desc the node was opened with (typed as
 * given); the caller adds the children, then filter_json_name turns it into
 * "json:{...}" (members in QEMU's order) and frees it.
 */
struct qimg_json *filter_name_dict(const struct qimg_node *n, const struct qimg_opt_desc *desc);
char *filter_json_name(struct qimg_json *dict);

#endif
#define QIMG_FILTER_PASSTHROUGH                                                                    \
    .is_filter = true, .get_length = filter_get_length, .pread = filter_pread,                     \
    .pwrite = filter_pwrite, .pwrite_zeroes = filter_pwrite_zeroes,                                \
    .pwrite_compressed = filter_pwrite_compressed, .pdiscard = filter_pdiscard,                    \
    .flush = filter_flush, .truncate = filter_truncate, .block_status = filter_block_status,        \
    .has_zero_init = filter_has_zero_init, .get_info = filter_get_info


/*
 * Names for filters QEMU always names in JSON (quorum, blklogwrites): a dict
 * of the driver and the options of desc the node was opened with (typed as
 * given); the caller adds the children, then filter_json_name turns it into
 * "json:{...}" (members in QEMU's order) and frees it.
 */
struct qimg_json *filter_name_dict(const struct qimg_node *n, const struct qimg_opt_desc *desc);
char *filter_json_name(struct qimg_json *dict);

#endif

/*
 * Open a filter's child that is not "file" (blkverify's raw and test,
 * quorum's children.N) from its filename (or NULL) and its "NAME.*" options,
 * as QEMU opens a child: with a format driver named, the whole image; a
 * format child (probe_format) otherwise probed; a file child by its protocol.
 * Nothing given: "A block device must be specified for "NAME"".
 */
int filter_open_child(struct qimg_node **out, const char *name, const char *filename,
                      struct qimg_opts *child_opts, bool probe_format, unsigned flags,
                      struct qimg_error *err);
