/* SPDX-License-Identifier: MIT */
/*
 * The "throttle" filter: requests through it wait for room in the limits of
 * its throttle group (--object throttle-group,id=ID,limits.NAME=N; several
 * throttle nodes may share one group), then pass to the child unchanged.
 * Reads and writes are throttled; zero writes and discards count as writes
 * of their length, as QEMU's throttle driver accounts them.
 */
#include <errno.h>
#include <stdlib.h>

#include "core/builtin.h"
#include "core/throttle-group.h"
#include "filters/filter.h"
#include "util/throttle.h"

static const struct qimg_opt_desc throttle_open_opts[] = {
    {"throttle-group", QIMG_OPT_STRING, "Name of the throttle group", NULL},
    {0},
};

static int throttle_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    const char *group = qimg_opts_take(opts, "throttle-group");
    if (!group)
        return qimg_error_set(err, -EINVAL, "Please specify a throttle group");
    struct qimg_throttle *t = qimg_object_throttle_group(group);
    if (!t)
        return qimg_error_set(err, -EINVAL, "Throttle group '%s' does not exist", group);
    n->opaque = t; /* owned by the object */
    n->request_alignment = n->file->request_alignment;
    return 0;
}

static int throttle_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                          unsigned flags)
{
    qimg_throttle_wait(n->opaque, len, false);
    return qimg_node_pread(n->file, off, len, buf, flags);
}

static int throttle_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                           unsigned flags)
{
    qimg_throttle_wait(n->opaque, len, true);
    return qimg_node_pwrite(n->file, off, len, buf, flags);
}

static int throttle_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len,
                                  unsigned flags)
{
    qimg_throttle_wait(n->opaque, len, true);
    return qimg_node_pwrite_zeroes(n->file, off, len, flags);
}

static int throttle_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    qimg_throttle_wait(n->opaque, len, true);
    return qimg_node_pdiscard(n->file, off, len);
}

static const char *const throttle_strong_opts[] = {"throttle-group", NULL};

const struct qimg_driver qimg_throttle_driver = {
    .name = "throttle",
    QIMG_FILTER_PASSTHROUGH,
    .strong_opts = throttle_strong_opts,
    .open_opts = throttle_open_opts,
    .open = throttle_open,
    .pread = throttle_pread,
    .pwrite = throttle_pwrite,
    .pwrite_zeroes = throttle_pwrite_zeroes,
    .pdiscard = throttle_pdiscard,
};
