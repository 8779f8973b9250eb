/* SPDX-License-Identifier: MIT */
/*
 * The raw format: guest bytes are file bytes, optionally a window of the file
 * (the "offset" and "size" open options). A raw image found by probing may not
 * have its first sector rewritten into something that probes as another format
 * (QEMU's guard against a guest turning its disk into a qcow2 header).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "qimg/driver.h"
#include "qimg/json.h"
#include "util/mem.h"

#define RAW_SECTOR 512

struct raw_state {
    uint64_t offset;
    uint64_t size;
    bool has_size;
};

static const struct qimg_opt_desc raw_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {0},
};

static const struct qimg_opt_desc raw_open_opts[] = {
    {"offset", QIMG_OPT_SIZE, "offset in the disk where the image starts", NULL},
    {"size", QIMG_OPT_SIZE, "virtual disk size", NULL},
    {0},
};

static int raw_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)buf;
    (void)len;
    (void)filename;
    return 1; /* anything is a raw image, as a last resort */
}

static int raw_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct raw_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    int ret = qimg_opts_take_size(opts, "offset", &s->offset, err);
    if (ret >= 0)
        ret = qimg_opts_take_size(opts, "size", &s->size, err);
    if (ret < 0)
        return ret;
    s->has_size = ret > 0;
    int64_t flen = qimg_node_length(n->file);
    if (flen < 0)
        return qimg_error_errno(err, (int)flen, "Could not get the size of '%s'", n->filename);
    /* qemu-img 9.1 names the offset and size 0 in these two messages (7.2: the values). */
    if (s->offset > (uint64_t)flen)
        return qimg_error_set(err, -EINVAL,
                              "Offset (0) cannot be greater than size of the containing file "
                              "(%lld)",
                              (long long)flen);
    if (s->has_size && (s->size > (uint64_t)flen - s->offset))
        return qimg_error_set(err, -EINVAL,
                              "The sum of offset (0) and size (0) has to be smaller or "
                              "equal to the  actual size of the containing file (%lld)",
                              (long long)flen);
    if (s->has_size && s->size % RAW_SECTOR)
        return qimg_error_set(err, -EINVAL, "Specified size is not multiple of %d", RAW_SECTOR);
    n->request_alignment = n->file->request_alignment;
    return 0;
}

static void raw_close(struct qimg_node *n)
{
    free(n->opaque);
}

static int64_t raw_get_length(struct qimg_node *n)
{
    struct raw_state *s = n->opaque;
    if (s->has_size)
        return (int64_t)s->size;
    int64_t len = qimg_node_length(n->file);
    if (len < 0)
        return len;
    return len - (int64_t)s->offset;
}

static int raw_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    struct raw_state *s = n->opaque;
    qimg_debug_event(n->file, QIMG_DBG_READ_AIO);
    return qimg_node_pread(n->file, off + s->offset, len, buf, flags);
}

/* A probed raw image keeps a first sector that no other format would claim. */
static int raw_check_first_sector(struct qimg_node *n, uint64_t off, uint64_t len,
                                  const void *buf)
{
    if (!n->probed_raw || off >= RAW_SECTOR)
        return 0;
    uint8_t sector[RAW_SECTOR] = {0};
    int64_t size = raw_get_length(n);
    size_t have = size < RAW_SECTOR ? (size_t)size : RAW_SECTOR;
    int ret = raw_pread(n, 0, have, sector, 0);
    if (ret < 0)
        return ret;
    size_t copy = len < RAW_SECTOR - off ? (size_t)len : (size_t)(RAW_SECTOR - off);
    if (buf)
        memcpy(sector + off, buf, copy);
    else
        memset(sector + off, 0, copy);
    const struct qimg_driver *guess = qimg_probe_buffer(sector, RAW_SECTOR, n->filename);
    if (guess && guess != n->drv)
        return -EPERM;
    return 0;
}

static int raw_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                      unsigned flags)
{
    struct raw_state *s = n->opaque;
    int ret = raw_check_first_sector(n, off, len, buf);
    if (ret < 0)
        return ret;
    qimg_debug_event(n->file, QIMG_DBG_WRITE_AIO);
    return qimg_node_pwrite(n->file, off + s->offset, len, buf, flags);
}

static int raw_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    struct raw_state *s = n->opaque;
    int ret = raw_check_first_sector(n, off, len, NULL);
    if (ret < 0)
        return ret;
    return qimg_node_pwrite_zeroes(n->file, off + s->offset, len, flags);
}

static int raw_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct raw_state *s = n->opaque;
    return qimg_node_pdiscard(n->file, off + s->offset, len);
}

static int raw_truncate(struct qimg_node *n, uint64_t size, bool exact,
                        enum qimg_prealloc prealloc, struct qimg_error *err)
{
    struct raw_state *s = n->opaque;
    /* A window with an explicit size is fixed; with only an offset the file follows. */
    if (s->has_size)
        return qimg_error_set(err, -ENOTSUP, "Cannot resize fixed-size raw disks");
    if (size > INT64_MAX - s->offset)
        return qimg_error_set(err, -EFBIG, "File too large");
    /* raw asks its file for the exact size: a device refuses any change ("Cannot resize
     * device files", qemu-img 9.1), a regular file takes it either way. */
    (void)exact;
    return qimg_node_truncate(n->file, size + s->offset, true, prealloc, err);
}

static int raw_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                            struct qimg_block_status *st)
{
    struct raw_state *s = n->opaque;
    st->bytes = len;
    st->flags = QIMG_BLK_DATA | QIMG_BLK_OFFSET_VALID | QIMG_BLK_RECURSE;
    st->offset = off + s->offset;
    st->file = n->file;
    return 0;
}

/* Copy offload: translate the side that is a raw node and pass it down. */
static int raw_copy_range(struct qimg_node *src, uint64_t src_off, struct qimg_node *dst,
                          uint64_t dst_off, uint64_t len)
{
    if (src->drv == &qimg_raw_driver) {
        const struct raw_state *s = src->opaque;
        return qimg_node_copy_range(src->file, src_off + s->offset, dst, dst_off, len);
    }
    const struct raw_state *s = dst->opaque;
    /* A probed raw image's first sector is checked on every write: not offloaded. */
    if (dst->probed_raw && dst_off < RAW_SECTOR)
        return -ENOTSUP;
    return qimg_node_copy_range(src, src_off, dst->file, dst_off + s->offset, len);
}

/*
 * What the image below says of its geometry (cluster size, VM state offset,
 * dirty), as QEMU's raw forwards it: matters when raw sits on another format,
 * possibly through a filter. Its format-specific data and snapshots stay the
 * child's. -ENOTSUP (no message) where nothing below answers (null-co).
 */
static int raw_get_info(struct qimg_node *n, struct qimg_driver_info *info,
                        struct qimg_error *err)
{
    struct qimg_node *src = n->file;
    while (!src->drv->get_info && src->drv->is_filter && src->file)
        src = src->file;
    if (!src->drv->get_info) {
        const char *name = src->drv->name;
        return !strcmp(name, "file") || !strcmp(name, "host_device") ? 0 : -ENOTSUP;
    }
    int ret = src->drv->get_info(src, info, err);
    qimg_json_free(info->format_specific);
    info->format_specific = NULL;
    if (!src->drv->is_protocol) { /* a protocol's snapshots (rbd) are raw's, as in QEMU */
        qimg_json_free(info->snapshots);
        info->snapshots = NULL;
    }
    return ret;
}

static bool raw_has_zero_init(struct qimg_node *n)
{
    return qimg_node_has_zero_init(n->file);
}

static int raw_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    return qimg_create_protocol(filename, opts, err);
}

static int raw_measure(struct qimg_opts *opts, struct qimg_node *src, uint64_t size,
                       struct qimg_measure *out, struct qimg_error *err)
{
    /* Preallocation does not change a raw image's size; qemu-img ignores its value here. */
    qimg_opts_take(opts, "preallocation");
    if (src) {
        int64_t len = qimg_node_length(src);
        if (len < 0)
            return qimg_error_errno(err, (int)len, "Unable to get image virtual_size");
        size = (uint64_t)len;
    }
    size = (size + RAW_SECTOR - 1) / RAW_SECTOR * RAW_SECTOR;
    out->required = size;
    out->fully_allocated = size;
    return 0;
}

static const char *const raw_strong_opts[] = {"offset", "size", NULL};

const struct qimg_driver qimg_raw_driver = {
    .name = "raw",
    .strong_opts = raw_strong_opts,
    .shares_all = true,
    .create_opts = raw_create_opts,
    .open_opts = raw_open_opts,
    .probe = raw_probe,
    .open = raw_open,
    .close = raw_close,
    .create = raw_create,
    .get_length = raw_get_length,
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .pdiscard = raw_pdiscard,
    .truncate = raw_truncate,
    .block_status = raw_block_status,
    .has_zero_init = raw_has_zero_init,
    .get_info = raw_get_info,
    .copy_range = raw_copy_range,
    .measure = raw_measure,
};
