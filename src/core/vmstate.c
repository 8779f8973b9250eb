/* SPDX-License-Identifier: MIT */
/* The saved VM state area (qemu-io read -b / write -b), where a format has one. */
#include <errno.h>

#include "qimg/driver.h"

int qimg_node_vmstate_rw(struct qimg_node *n, uint64_t pos, void *buf, uint64_t len, bool write)
{
    if (!n->drv->vmstate_rw)
        return -ENOTSUP;
    if (write && !(n->flags & QIMG_O_RDWR))
        return -EPERM;
    if (len == 0)
        return 0;
    if (pos > INT64_MAX || len > INT64_MAX - pos)
        return -EINVAL;
    return n->drv->vmstate_rw(n, pos, buf, len, write);
}
