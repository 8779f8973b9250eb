/* SPDX-License-Identifier: MIT */
/*
 * The "file" protocol: a regular file or block device on the host.
 * Holes come from SEEK_DATA/SEEK_HOLE, zero writes from fallocate, and the
 * image locks from file-lock.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/builtin.h"
#include "protocols/file-lock.h"
#include "qimg/driver.h"
#include "qimg/units.h"
#include "util/mem.h"

struct file_state {
    int fd;
    bool is_block;
    bool has_lock_fd;
};

static const struct qimg_opt_desc file_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"preallocation", QIMG_OPT_STRING, "Preallocation mode (allowed values: off, falloc, full)",
     NULL},
    {"nocow", QIMG_OPT_BOOL, "Turn off copy-on-write (valid only on btrfs)", NULL},
    {"extent_size_hint", QIMG_OPT_SIZE, "Extent size hint for the image file, 0 to disable", NULL},
    {NULL},
};

static const struct qimg_opt_desc file_open_opts[] = {
    {"filename", QIMG_OPT_STRING, "File name of the image", NULL},
    {"locking", QIMG_OPT_STRING, "File locking mode (on/off/auto, default: auto)", NULL},
    {"aio", QIMG_OPT_STRING, "host AIO implementation (threads, native, io_uring)", NULL},
    {"cache.direct", QIMG_OPT_BOOL, "Bypass the host page cache", NULL},
    {"cache.no-flush", QIMG_OPT_BOOL, "Ignore flush requests", NULL},
    {"discard", QIMG_OPT_STRING, "discard operation (ignore/off, unmap/on)", NULL},
    {NULL},
};

/* Smallest O_DIRECT unit the host accepts: try 512, then 4096. */
static uint32_t probe_direct_alignment(int fd)
{
    void *buf = qimg_alloc_aligned(4096);
    uint32_t align = 4096;
    if (buf) {
        if (pread(fd, buf, 512, 0) >= 0)
            align = 512;
        free(buf);
    }
    return align;
}

static int file_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    const char *filename = qimg_opts_take(opts, "filename");
    if (!filename || !*filename)
        return qimg_error_set(err, -EINVAL, "The 'file' block driver requires a file name");
    const char *locking = qimg_opts_take(opts, "locking");
    if (locking && (!strcmp(locking, "off") || !strcmp(locking, "false")))
        n->flags |= QIMG_O_NO_LOCK;
    qimg_opts_take(opts, "aio");
    const char *discard = qimg_opts_take(opts, "discard");
    if (discard && (!strcmp(discard, "unmap") || !strcmp(discard, "on")))
        n->flags |= QIMG_O_UNMAP;
    bool b;
    if (qimg_opts_take_bool(opts, "cache.direct", &b, err) < 0)
        return err->code;
    if (qimg_opts_has(opts, "cache.direct") && b)
        n->flags |= QIMG_O_NOCACHE;
    if (qimg_opts_take_bool(opts, "cache.no-flush", &b, err) < 0)
        return err->code;
    if (qimg_opts_has(opts, "cache.no-flush") && b)
        n->flags |= QIMG_O_NO_FLUSH;

    free(n->filename);
    n->filename = xstrdup(filename);

    int oflags = O_CLOEXEC | ((n->flags & QIMG_O_RDWR) ? O_RDWR : O_RDONLY);
    if (n->flags & QIMG_O_NOCACHE)
        oflags |= O_DIRECT;
    int fd = open(filename, oflags);
    if (fd < 0)
        return qimg_error_errno(err, -errno, "Could not open '%s'", filename);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return qimg_error_errno(err, e, "Could not stat '%s'", filename);
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode) && !S_ISCHR(st.st_mode)) {
        close(fd);
        return qimg_error_set(err, -EINVAL, "'file' driver requires '%s' to be a regular file",
                              filename);
    }
    struct file_state *s = xcalloc(1, sizeof(*s));
    s->fd = fd;
    s->is_block = S_ISBLK(st.st_mode);
    n->opaque = s;
    if (n->flags & QIMG_O_NOCACHE)
        n->request_alignment = probe_direct_alignment(fd);
    return 0;
}

static void file_close(struct qimg_node *n)
{
    struct file_state *s = n->opaque;
    if (!s)
        return;
    close(s->fd); /* closing the descriptor releases its OFD locks */
    free(s);
}

static int file_set_perm(struct qimg_node *n, unsigned perm, unsigned shared,
                         struct qimg_error *err)
{
    struct file_state *s = n->opaque;
    int ret = file_lock_update(s->fd, n->filename, n->perm, n->shared_perm, perm, shared, err);
    if (ret == 0) {
        n->perm = perm;
        n->shared_perm = shared;
    }
    return ret;
}

static int64_t file_get_length(struct qimg_node *n)
{
    struct file_state *s = n->opaque;
    if (s->is_block) {
        uint64_t size;
        if (ioctl(s->fd, BLKGETSIZE64, &size) < 0)
            return -errno;
        return (int64_t)size;
    }
    struct stat st;
    if (fstat(s->fd, &st) < 0)
        return -errno;
    return st.st_size;
}

static int64_t file_get_allocated_size(struct qimg_node *n)
{
    struct file_state *s = n->opaque;
    struct stat st;
    if (fstat(s->fd, &st) < 0)
        return -errno;
    return (int64_t)st.st_blocks * 512;
}

static int file_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    struct file_state *s = n->opaque;
    uint8_t *p = buf;
    (void)flags;
    while (len) {
        ssize_t r = pread(s->fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0) {
            memset(p, 0, len); /* past EOF (an unaligned tail): zeroes */
            return 0;
        }
        p += r;
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    return 0;
}

static int file_sync(struct qimg_node *n)
{
    struct file_state *s = n->opaque;
    if (n->flags & QIMG_O_NO_FLUSH)
        return 0;
    return fdatasync(s->fd) < 0 ? -errno : 0;
}

static int file_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                       unsigned flags)
{
    struct file_state *s = n->opaque;
    const uint8_t *p = buf;
    while (len) {
        ssize_t r = pwrite(s->fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += r;
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    if ((flags & QIMG_REQ_FUA) || (n->flags & QIMG_O_WRITETHROUGH))
        return file_sync(n);
    return 0;
}

static int file_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    struct file_state *s = n->opaque;
    int ret = -ENOTSUP;
    if (!s->is_block && (flags & QIMG_REQ_MAY_UNMAP) &&
        fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        ret = 0;
    if (ret < 0 && fallocate(s->fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0)
        ret = 0;
    if (ret < 0 && s->is_block) {
        uint64_t range[2] = {off, len};
        if (ioctl(s->fd, BLKZEROOUT, range) == 0)
            ret = 0;
    }
    if (ret == 0 && ((flags & QIMG_REQ_FUA) || (n->flags & QIMG_O_WRITETHROUGH)))
        ret = file_sync(n);
    return ret;
}

static int file_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct file_state *s = n->opaque;
    if (s->is_block) {
        uint64_t range[2] = {off, len};
        return ioctl(s->fd, BLKDISCARD, range) < 0 ? 0 : 0; /* advisory */
    }
    if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
        return errno == EOPNOTSUPP ? 0 : -errno;
    return 0;
}

static int file_flush(struct qimg_node *n)
{
    return file_sync(n);
}

/* Allocate [from, to) for preallocation=falloc/full. */
static int file_preallocate(int fd, uint64_t from, uint64_t to, enum qimg_prealloc mode)
{
    if (to <= from)
        return 0;
    if (mode == QIMG_PREALLOC_FALLOC) {
        int r = posix_fallocate(fd, (off_t)from, (off_t)(to - from));
        return -r;
    }
    if (mode == QIMG_PREALLOC_FULL) {
        const size_t chunk = 1 << 20;
        void *zero = xcalloc(1, chunk);
        int ret = 0;
        for (uint64_t off = from; off < to && ret == 0;) {
            size_t now = (to - off) < chunk ? (size_t)(to - off) : chunk;
            ssize_t w = pwrite(fd, zero, now, (off_t)off);
            if (w < 0) {
                if (errno != EINTR)
                    ret = -errno;
                continue;
            }
            off += (uint64_t)w;
        }
        free(zero);
        return ret;
    }
    return 0;
}

/*
 * QEMU writes zeroes over the first block of a new file so that later opens can
 * learn the filesystem's allocation granularity from it; "disk size: 4 KiB" on
 * a fresh raw image comes from this.
 */
static int file_allocate_first_block(int fd, uint64_t size)
{
    uint8_t zero[4096] = {0};
    size_t len = size < sizeof(zero) ? (size_t)size : sizeof(zero);
    ssize_t w = pwrite(fd, zero, len, 0);
    return w < 0 ? -errno : 0;
}

static int file_truncate(struct qimg_node *n, uint64_t size, bool exact,
                         enum qimg_prealloc prealloc, struct qimg_error *err)
{
    struct file_state *s = n->opaque;
    int64_t cur = file_get_length(n);
    (void)exact;
    if (cur < 0)
        return qimg_error_errno(err, (int)cur, "Could not get the file size");
    if (prealloc == QIMG_PREALLOC_METADATA)
        return qimg_error_set(err, -ENOTSUP, "Unsupported preallocation mode: %s",
                              qimg_prealloc_name(prealloc));
    if (s->is_block) {
        if (size > (uint64_t)cur)
            return qimg_error_set(err, -EINVAL,
                                  "Cannot grow device files");
        return 0;
    }
    if (ftruncate(s->fd, (off_t)size) < 0)
        return qimg_error_errno(err, -errno, "Could not resize file");
    int ret = file_preallocate(s->fd, (uint64_t)cur, size, prealloc);
    if (ret < 0) {
        if (ftruncate(s->fd, cur) < 0) {
            /* nothing more to do: report the first error */
        }
        return qimg_error_errno(err, ret, "Could not preallocate new data");
    }
    return 0;
}

static int file_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                             struct qimg_block_status *st)
{
    struct file_state *s = n->opaque;
    st->flags = QIMG_BLK_DATA | QIMG_BLK_OFFSET_VALID;
    st->offset = off;
    st->file = n;
    st->bytes = len;
    if (s->is_block)
        return 0;
    off_t data = lseek(s->fd, (off_t)off, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) { /* only a hole up to EOF */
            st->flags = QIMG_BLK_ZERO | QIMG_BLK_OFFSET_VALID;
            return 0;
        }
        return 0; /* SEEK_DATA unsupported: everything is data */
    }
    if ((uint64_t)data > off) {
        st->flags = QIMG_BLK_ZERO | QIMG_BLK_OFFSET_VALID;
        if ((uint64_t)data - off < len)
            st->bytes = (uint64_t)data - off;
        return 0;
    }
    off_t hole = lseek(s->fd, (off_t)off, SEEK_HOLE);
    if (hole > (off_t)off && (uint64_t)hole - off < len)
        st->bytes = (uint64_t)hole - off;
    return 0;
}

static bool file_has_zero_init(struct qimg_node *n)
{
    struct file_state *s = n->opaque;
    return !s->is_block;
}

static int file_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    uint64_t size = 0, hint = 0;
    bool nocow = false;
    enum qimg_prealloc prealloc = QIMG_PREALLOC_OFF;
    int ret;

    if (qimg_opts_take_size(opts, "size", &size, err) < 0)
        return err->code;
    const char *pa = qimg_opts_take(opts, "preallocation");
    if (pa && (qimg_prealloc_parse(pa, &prealloc) < 0 || prealloc == QIMG_PREALLOC_METADATA))
        return qimg_error_set(err, -EINVAL, "invalid parameter value: %s", pa);
    if (qimg_opts_take_bool(opts, "nocow", &nocow, err) < 0)
        return err->code;
    if (qimg_opts_take_size(opts, "extent_size_hint", &hint, err) < 0)
        return err->code;
    if (size > INT64_MAX - 511)
        return qimg_error_set(err, -EFBIG, "Image size too large");
    size = (size + 511) / 512 * 512; /* the file holds whole sectors, as QEMU creates it */

    int fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return qimg_error_errno(err, -errno, "Could not create '%s'", filename);
    /* Refuse to clobber an image someone is using, as QEMU does. */
    ret = file_lock_update(fd, filename, 0, QIMG_PERM_ALL,
                           QIMG_PERM_CONSISTENT_READ | QIMG_PERM_WRITE | QIMG_PERM_RESIZE,
                           QIMG_PERM_CONSISTENT_READ | QIMG_PERM_WRITE_UNCHANGED, err);
    if (ret < 0)
        goto out;
    if (nocow) {
        int attr;
        if (ioctl(fd, FS_IOC_GETFLAGS, &attr) == 0) {
            attr |= FS_NOCOW_FL;
            (void)ioctl(fd, FS_IOC_SETFLAGS, &attr); /* only btrfs honours it */
        }
    }
    if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0) {
        ret = qimg_error_errno(err, -errno, "Could not resize file");
        goto out;
    }
    ret = file_preallocate(fd, 0, size, prealloc);
    if (ret == 0 && prealloc == QIMG_PREALLOC_OFF && size > 0)
        ret = file_allocate_first_block(fd, size);
    if (ret < 0) {
        qimg_error_errno(err, ret, "Could not preallocate data for the new file");
        if (ftruncate(fd, 0) < 0) {
            /* the first error is the one to report */
        }
        goto out;
    }
    if (fsync(fd) < 0 && errno != EINVAL)
        ret = qimg_error_errno(err, -errno, "Could not flush '%s'", filename);
out:
    close(fd);
    return ret;
}

const struct qimg_driver qimg_file_driver = {
    .name = "file",
    .is_protocol = true,
    .create_opts = file_create_opts,
    .open_opts = file_open_opts,
    .open = file_open,
    .close = file_close,
    .create = file_create,
    .set_perm = file_set_perm,
    .get_length = file_get_length,
    .get_allocated_size = file_get_allocated_size,
    .pread = file_pread,
    .pwrite = file_pwrite,
    .pwrite_zeroes = file_pwrite_zeroes,
    .pdiscard = file_pdiscard,
    .flush = file_flush,
    .truncate = file_truncate,
    .block_status = file_block_status,
    .has_zero_init = file_has_zero_init,
};
