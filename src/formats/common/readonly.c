/* SPDX-License-Identifier: MIT */
#include "formats/common/readonly.h"

#include <errno.h>
#include <string.h>

#include "util/bytes.h"

int qimg_ro_refuse_write(const struct qimg_node *n, struct qimg_error *err)
{
    if (n->flags & QIMG_O_RDWR)
        return qimg_error_set(err, -EACCES, "Image is read-only");
    return 0;
}

int qimg_ro_file_read(struct qimg_node *file, uint64_t file_len, uint64_t off, uint64_t len,
                      void *buf)
{
    uint64_t end;
    if (!qimg_add_u64(off, len, &end) || end > (uint64_t)INT64_MAX)
        return -EIO;
    uint64_t have = off >= file_len ? 0 : qimg_min_u64(file_len - off, len);
    if (have) {
        int ret = qimg_node_pread(file, off, have, buf, 0);
        if (ret < 0)
            return ret;
    }
    memset((uint8_t *)buf + have, 0, len - have);
    return 0;
}
