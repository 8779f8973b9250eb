/* SPDX-License-Identifier: MIT */
/*
 * The "file" protocol: a regular file or block device on the host.
 * Holes come from SEEK_DATA/SEEK_HOLE, zero writes from fallocate, and the
 * image locks from file-lock.c.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <fcntl.h>
#include <linux/cdrom.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdint.h>
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
    /*
     * With O_DIRECT: the same file opened through the page cache, for the
     * pieces O_DIRECT cannot express (the partial last block of a file whose
     * size is not a multiple of the alignment, preallocation). -1 otherwise.
     */
    int buffered_fd;
    bool is_block;
    bool direct;
    uint32_t align; /* O_DIRECT offset, length and memory alignment; 1 without O_DIRECT */
};

static const struct qimg_opt_desc file_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"preallocation", QIMG_OPT_STRING, "Preallocation mode (allowed values: off, falloc, full)",
     NULL},
    {"nocow", QIMG_OPT_BOOL, "Turn off copy-on-write (valid only on btrfs)", NULL},
    {"extent_size_hint", QIMG_OPT_SIZE, "Extent size hint for the image file, 0 to disable", NULL},
    {0},
};

static const struct qimg_opt_desc file_open_opts[] = {
    {"filename", QIMG_OPT_STRING, "File name of the image", NULL},
    {"locking", QIMG_OPT_STRING, "File locking mode (on/off/auto, default: auto)", NULL},
    {"aio", QIMG_OPT_STRING, "host AIO implementation (threads, native, io_uring)", NULL},
    {"cache.direct", QIMG_OPT_BOOL, "Bypass the host page cache", NULL},
    {"cache.no-flush", QIMG_OPT_BOOL, "Ignore flush requests", NULL},
    {"discard", QIMG_OPT_STRING, "discard operation (ignore/off, unmap/on)", NULL},
    {0},
};

#define DIRECT_ALIGN_MAX 4096 /* qimg_alloc_aligned's alignment */

/*
 * The O_DIRECT unit of the file: the kernel says it (statx DIOALIGN, or the
 * logical sector size of a block device); otherwise probe with a 512-byte
 * read, which only proves something on a file that has a first sector.
 */
static uint32_t direct_alignment(int fd, bool is_block, int64_t length)
{
    uint32_t align = 0;
    if (is_block) {
        int ssz = 0;
        if (ioctl(fd, BLKSSZGET, &ssz) == 0 && ssz > 0)
            align = (uint32_t)ssz;
    }
#ifdef STATX_DIOALIGN
    struct statx stx;
    if (!align && statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
        align = stx.stx_dio_offset_align;
        if (stx.stx_dio_mem_align > align)
            align = stx.stx_dio_mem_align;
    }
#endif
    if (!align) {
        align = DIRECT_ALIGN_MAX;
        void *buf = qimg_alloc_aligned(DIRECT_ALIGN_MAX);
        if (buf && length >= 512 && pread(fd, buf, 512, 0) == 512)
            align = 512;
        free(buf);
    }
    /* Powers of two up to the bounce buffers' alignment; anything else is not sane. */
    if (align < 512 || align > DIRECT_ALIGN_MAX || (align & (align - 1)))
        align = DIRECT_ALIGN_MAX;
    return align;
}

static int parse_file_options(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    const char *locking = qimg_opts_take(opts, "locking");
    if (locking) {
        if (!strcmp(locking, "off"))
            n->flags |= QIMG_O_NO_LOCK;
        else if (strcmp(locking, "on") && strcmp(locking, "auto"))
            return qimg_error_set(err, -EINVAL, "invalid parameter value: %s", locking);
    }
    const char *discard = qimg_opts_take(opts, "discard");
    if (discard) {
        if (!strcmp(discard, "unmap") || !strcmp(discard, "on"))
            n->flags |= QIMG_O_UNMAP;
        else if (!strcmp(discard, "ignore") || !strcmp(discard, "off"))
            n->flags &= ~QIMG_O_UNMAP;
        else
            return qimg_error_set(err, -EINVAL, "Invalid discard option");
    }
    bool b = false;
    int r = qimg_opts_take_bool(opts, "cache.direct", &b, err);
    if (r < 0)
        return r;
    if (r > 0)
        n->flags = b ? (n->flags | QIMG_O_NOCACHE) : (n->flags & ~QIMG_O_NOCACHE);
    r = qimg_opts_take_bool(opts, "cache.no-flush", &b, err);
    if (r < 0)
        return r;
    if (r > 0)
        n->flags = b ? (n->flags | QIMG_O_NO_FLUSH) : (n->flags & ~QIMG_O_NO_FLUSH);
    const char *aio = qimg_opts_take(opts, "aio");
    if (aio) {
        if (strcmp(aio, "threads") && strcmp(aio, "native") && strcmp(aio, "io_uring"))
            return qimg_error_set(err, -EINVAL, "invalid parameter value: %s", aio);
        if (!strcmp(aio, "native") && !(n->flags & QIMG_O_NOCACHE))
            return qimg_error_set(err, -EINVAL,
                                  "aio=native was specified, but it requires cache.direct=on, "
                                  "which was not specified.");
    }
    return 0;
}

static int file_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    const char *filename = qimg_opts_take(opts, "filename");
    if (!filename || !*filename)
        return qimg_error_set(err, -EINVAL, "The 'file' block driver requires a file name");
    int ret = parse_file_options(n, opts, err);
    if (ret < 0)
        return ret;

    free(n->filename);
    n->filename = xstrdup(filename);
    n->perm = 0;
    n->shared_perm = QIMG_PERM_ALL; /* no lock bytes held yet */

    int access = (n->flags & QIMG_O_RDWR) ? O_RDWR : O_RDONLY;
    int oflags = O_CLOEXEC | access;
    if (n->flags & QIMG_O_NOCACHE)
        oflags |= O_DIRECT;
    int fd = open(filename, oflags);
    if (fd < 0)
        return qimg_error_errno(err, -errno, "Could not open '%s'", filename);
    struct file_state *s = xcalloc(1, sizeof(*s));
    s->fd = fd;
    s->buffered_fd = -1;
    s->align = 1;
    n->opaque = s; /* file_close releases it from here on */

    struct stat st;
    if (fstat(fd, &st) < 0)
        return qimg_error_errno(err, -errno, "Could not stat '%s'", filename);
    /* "file" is for regular files; host_device and host_cdrom for devices (QEMU's split). */
    bool device = S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode);
    if (n->drv == &qimg_file_driver && !S_ISREG(st.st_mode))
        return qimg_error_set(err, -EINVAL, "'file' driver requires '%s' to be a regular file",
                              filename);
    if (n->drv != &qimg_file_driver && !device)
        return qimg_error_set(err, -EINVAL, "'%s' driver requires '%s' to be either a character "
                                            "or block device", n->drv->name, filename);
    s->is_block = S_ISBLK(st.st_mode);
    /* Files whose end cannot be found (/proc/self/mem) are refused as QEMU refuses them. */
    if (S_ISREG(st.st_mode) && lseek(fd, 0, SEEK_END) < 0)
        return qimg_error_errno(err, -errno, "Could not refresh total sector count");
    if (n->flags & QIMG_O_NOCACHE) {
        s->direct = true;
        s->align = direct_alignment(fd, s->is_block, st.st_size);
        n->request_alignment = s->align;
        s->buffered_fd = open(filename, O_CLOEXEC | access);
        if (s->buffered_fd < 0)
            return qimg_error_errno(err, -errno, "Could not open '%s'", filename);
    }
    return 0;
}

static void file_close(struct qimg_node *n)
{
    struct file_state *s = n->opaque;
    if (!s)
        return;
    close(s->fd); /* closing the descriptor releases its OFD locks */
    if (s->buffered_fd >= 0)
        close(s->buffered_fd);
    free(s);
    n->opaque = NULL;
}

static int file_set_perm(struct qimg_node *n, unsigned perm, unsigned shared,
                         struct qimg_error *err)
{
    struct file_state *s = n->opaque;
    /* Metadata-only opens (info) read nothing that must stay consistent (QEMU's NO_IO). */
    if (n->flags & QIMG_O_NO_IO)
        perm &= ~QIMG_PERM_CONSISTENT_READ;
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

static bool is_direct_compatible(const struct file_state *s, uint64_t off, uint64_t len,
                                 const void *buf)
{
    uint64_t mask = s->align - 1;
    return !s->direct || ((off | len | (uint64_t)(uintptr_t)buf) & mask) == 0;
}

/*
 * Read [off, off+len) fully; what lies past the end of the file reads as
 * zeroes. Under O_DIRECT a short read that stops at an unaligned offset can
 * only be the end of the file (another read there would be refused).
 */
static int read_full(const struct file_state *s, int fd, uint64_t off, uint64_t len, void *buf)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += r;
        off += (uint64_t)r;
        len -= (uint64_t)r;
        if (r == 0 || (len && fd == s->fd && s->direct && (off & (s->align - 1)))) {
            memset(p, 0, len);
            return 0;
        }
    }
    return 0;
}

static int write_full(int fd, uint64_t off, uint64_t len, const void *buf)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t r = pwrite(fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        p += r;
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    return 0;
}

static int file_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    struct file_state *s = n->opaque;
    (void)flags;
    if (is_direct_compatible(s, off, len, buf))
        return read_full(s, s->fd, off, len, buf);
    /*
     * O_DIRECT with an unaligned buffer, or the file's unaligned last block:
     * read the aligned window into a bounce buffer.
     */
    uint64_t a = s->align, start = off & ~(a - 1), end = (off + len + a - 1) & ~(a - 1);
    uint8_t *bounce = qimg_alloc_aligned(end - start);
    if (!bounce)
        return -ENOMEM;
    int ret = read_full(s, s->fd, start, end - start, bounce);
    if (ret == 0)
        memcpy(buf, bounce + (off - start), len);
    free(bounce);
    return ret;
}

static int file_sync(struct qimg_node *n)
{
    struct file_state *s = n->opaque;
    if (n->flags & QIMG_O_NO_FLUSH)
        return 0;
    return fdatasync(s->fd) < 0 ? -errno : 0;
}

/* O_DIRECT write of an aligned range from a buffer that may not be aligned. */
static int write_direct_bounced(struct file_state *s, uint64_t off, uint64_t len,
                                const uint8_t *buf)
{
    if (((uintptr_t)buf & (s->align - 1)) == 0)
        return write_full(s->fd, off, len, buf);
    const uint64_t chunk_max = 1 << 20;
    uint64_t chunk = len < chunk_max ? len : chunk_max;
    uint8_t *bounce = qimg_alloc_aligned(chunk);
    if (!bounce)
        return -ENOMEM;
    int ret = 0;
    while (len && ret == 0) {
        uint64_t now = len < chunk ? len : chunk;
        memcpy(bounce, buf, now);
        ret = write_full(s->fd, off, now, bounce);
        off += now;
        buf += now;
        len -= now;
    }
    free(bounce);
    return ret;
}

static int file_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                       unsigned flags)
{
    struct file_state *s = n->opaque;
    int ret;
    if (is_direct_compatible(s, off, len, buf)) {
        ret = write_full(s->fd, off, len, buf);
    } else if (off & (s->align - 1)) {
        /* The core never sends this; stay correct anyway. */
        ret = write_full(s->buffered_fd, off, len, buf);
    } else {
        /*
         * Whole blocks go direct; a partial block can only be the end of a
         * file whose size is not a multiple of the alignment, and is written
         * through the page cache so that the file does not grow.
         */
        uint64_t whole = len & ~(uint64_t)(s->align - 1);
        ret = whole ? write_direct_bounced(s, off, whole, buf) : 0;
        if (ret == 0 && len > whole)
            ret = write_full(s->buffered_fd, off + whole, len - whole,
                             (const uint8_t *)buf + whole);
    }
    if (ret == 0 && ((flags & QIMG_REQ_FUA) || (n->flags & QIMG_O_WRITETHROUGH)))
        ret = file_sync(n);
    return ret;
}

static int file_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    struct file_state *s = n->opaque;
    int ret = -ENOTSUP;
    /* Zeroes written past the end extend the file, as written zeroes would (qcow2 appends). */
    struct stat st;
    bool grows = !s->is_block && fstat(s->fd, &st) == 0 && off + len > (uint64_t)st.st_size;
    if (!s->is_block && !grows && (flags & QIMG_REQ_MAY_UNMAP) &&
        fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        ret = 0;
    if (ret < 0 && fallocate(s->fd, FALLOC_FL_ZERO_RANGE | (grows ? 0 : FALLOC_FL_KEEP_SIZE),
                             (off_t)off, (off_t)len) == 0)
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
        (void)ioctl(s->fd, BLKDISCARD, range); /* advisory */
        return 0;
    }
    if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
        return (errno == EOPNOTSUPP || errno == ENOSYS) ? 0 : -errno;
    return 0;
}

/*
 * convert -C between two files: copy_file_range lets the kernel copy inside
 * the filesystem (a reflink on btrfs and XFS, a server-side copy on NFS).
 * A short copy means the source ended: the caller falls back to reading.
 */
static int file_copy_range(struct qimg_node *src, uint64_t src_off, struct qimg_node *dst,
                           uint64_t dst_off, uint64_t len)
{
    const struct file_state *a = src->opaque, *b = dst->opaque;
    while (len) {
        loff_t in = (loff_t)src_off, out = (loff_t)dst_off;
        size_t n = len > (1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t r = copy_file_range(a->fd, &in, b->fd, &out, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -ENODATA;
        src_off += (uint64_t)r;
        dst_off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    return 0;
}

static int file_flush(struct qimg_node *n)
{
    return file_sync(n);
}

/*
 * Allocate [from, to) for preallocation=falloc/full. The messages are
 * qemu-img's; fd must not be an O_DIRECT descriptor (the range is arbitrary).
 */
static int file_preallocate(int fd, uint64_t from, uint64_t to, enum qimg_prealloc mode,
                            struct qimg_error *err)
{
    if (to <= from)
        return 0;
    if (mode == QIMG_PREALLOC_FALLOC) {
        int r = posix_fallocate(fd, (off_t)from, (off_t)(to - from));
        if (r)
            return qimg_error_errno(err, -r, "Could not preallocate new data");
        return 0;
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
            if (w == 0)
                ret = -ENOSPC;
            off += (uint64_t)w;
        }
        free(zero);
        if (ret < 0)
            return qimg_error_errno(err, ret, "Could not write zeros for preallocation");
    }
    return 0;
}

/*
 * QEMU writes zeroes over the first block of a new file (preallocation off or
 * falloc) so that later opens can learn the filesystem's allocation
 * granularity from it; "disk size: 4 KiB" on a fresh raw image comes from
 * this. The block is 4 KiB, or one sector when the file is shorter (observed
 * with qemu-img 7.2).
 */
static int file_allocate_first_block(int fd, uint64_t size)
{
    uint8_t zero[4096] = {0};
    size_t len = size < sizeof(zero) ? 512 : sizeof(zero);
    ssize_t w = pwrite(fd, zero, len, 0);
    return w < 0 ? -errno : 0;
}

static int file_truncate(struct qimg_node *n, uint64_t size, bool exact,
                         enum qimg_prealloc prealloc, struct qimg_error *err)
{
    struct file_state *s = n->opaque;
    int64_t cur = file_get_length(n);
    if (cur < 0)
        return qimg_error_errno(err, (int)cur, "Could not get the file size");
    if (s->is_block) { /* QEMU's rules for devices, checked before anything else */
        if (prealloc != QIMG_PREALLOC_OFF)
            return qimg_error_set(err, -ENOTSUP, "Preallocation mode '%s' unsupported for this "
                                                 "non-regular file", qimg_prealloc_name(prealloc));
        if (exact && size != (uint64_t)cur)
            return qimg_error_set(err, -ENOTSUP, "Cannot resize device files");
        if (size > (uint64_t)cur)
            return qimg_error_set(err, -EINVAL, "Cannot grow device files");
        return 0;
    }
    if (prealloc == QIMG_PREALLOC_METADATA)
        return qimg_error_set(err, -ENOTSUP, "Unsupported preallocation mode: %s",
                              qimg_prealloc_name(prealloc));
    if (prealloc != QIMG_PREALLOC_OFF && size < (uint64_t)cur)
        return qimg_error_set(err, -ENOTSUP, "Preallocation can only be used for growing images");
    if (size > INT64_MAX)
        return qimg_error_set(err, -EFBIG, "Image size too large");
    if (ftruncate(s->fd, (off_t)size) < 0)
        return qimg_error_errno(err, -errno, "Could not resize file");
    int fd = s->buffered_fd >= 0 ? s->buffered_fd : s->fd;
    int ret = file_preallocate(fd, (uint64_t)cur, size, prealloc, err);
    if (ret < 0) {
        /* Leave the file as it was; the preallocation error is the one to report. */
        if (ftruncate(s->fd, cur) < 0) {
        }
        return ret;
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
    if (pa && qimg_prealloc_parse(pa, &prealloc) < 0)
        return qimg_error_set(err, -EINVAL, "invalid parameter value: %s", pa);
    if (qimg_opts_take_bool(opts, "nocow", &nocow, err) < 0)
        return err->code;
    if (qimg_opts_take_size(opts, "extent_size_hint", &hint, err) < 0)
        return err->code;
    /*
     * The file holds whole sectors, as QEMU creates it. A size that cannot be
     * rounded up within off_t fails in ftruncate with EINVAL, as in QEMU.
     */
    off_t length = size > (uint64_t)INT64_MAX - 511 ? (off_t)-1 : (off_t)((size + 511) / 512 * 512);

    int fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return qimg_error_errno(err, -errno, "Could not create '%s'", filename);
    /*
     * Refuse to clobber an image someone is using, as QEMU does: the creator
     * wants write and resize and lets nobody else resize (observed through
     * the lock bytes of qemu-img 7.2: 101/103 taken, 203 held).
     */
    ret = file_lock_update(fd, filename, 0, QIMG_PERM_ALL, QIMG_PERM_WRITE | QIMG_PERM_RESIZE,
                           QIMG_PERM_ALL & ~QIMG_PERM_RESIZE, err);
    if (ret < 0)
        goto out;
    if (nocow) {
        int attr;
        if (ioctl(fd, FS_IOC_GETFLAGS, &attr) == 0) {
            attr |= FS_NOCOW_FL;
            (void)ioctl(fd, FS_IOC_SETFLAGS, &attr); /* only btrfs honours it */
        }
    }
    if (ftruncate(fd, 0) < 0) {
        ret = qimg_error_errno(err, -errno, "Could not resize file");
        goto out;
    }
    /* Like QEMU, refused only after the old contents are gone. */
    if (prealloc == QIMG_PREALLOC_METADATA) {
        ret = qimg_error_set(err, -ENOTSUP, "Unsupported preallocation mode: %s", pa);
        goto out;
    }
    if (ftruncate(fd, length) < 0) {
        ret = qimg_error_errno(err, -errno, "Could not resize file");
        goto out;
    }
    ret = file_preallocate(fd, 0, (uint64_t)length, prealloc, err);
    if (ret == 0 && prealloc != QIMG_PREALLOC_FULL && length > 0) {
        ret = file_allocate_first_block(fd, (uint64_t)length);
        if (ret < 0)
            qimg_error_errno(err, ret, "Could not write to the new file");
    }
    if (ret < 0) {
        /* Nothing that looks like a usable image stays behind (QEMU leaves it empty). */
        if (ftruncate(fd, 0) < 0) {
        }
        goto out;
    }
    if (fsync(fd) < 0 && errno != EINVAL)
        ret = qimg_error_errno(err, -errno, "Could not flush '%s'", filename);
out:
    close(fd);
    return ret;
}

/* ---- host_device, host_cdrom: the same I/O on a device node ---- */

static const struct qimg_opt_desc hdev_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"preallocation", QIMG_OPT_STRING, "Preallocation mode (allowed values: off)", NULL},
    {0},
};

/*
 * A device cannot be created, only reused (QEMU's simple create): it must
 * exist and be large enough; its first sector is zeroed so that nothing old
 * is probed there.
 */
static int hdev_cannot_create(struct qimg_error *err, int code, const char *drvname,
                              const char *why)
{
    return qimg_error_set(err, code, "Protocol driver '%s' does not support creating new images, "
                                     "so an existing image must be selected as the target; "
                                     "however, opening the given target as an existing image "
                                     "failed: %s", drvname, why);
}

static int hdev_create_as(const char *drvname, const char *filename, struct qimg_opts *opts,
                          struct qimg_error *err)
{
    uint64_t size = 0;
    if (qimg_opts_take_size(opts, "size", &size, err) < 0)
        return err->code;
    const char *pa = qimg_opts_take(opts, "preallocation");
    if (pa && strcmp(pa, "off"))
        return qimg_error_set(err, -ENOTSUP, "Unsupported preallocation mode '%s'", pa);
    char why[PATH_MAX + 128];
    int fd = open(filename, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(why, sizeof(why), "Could not open '%s': %s", filename, strerror(e));
        return hdev_cannot_create(err, -e, drvname, why);
    }
    struct stat st;
    int ret = 0;
    uint64_t have = 0;
    if (fstat(fd, &st) < 0 || !(S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode))) {
        snprintf(why, sizeof(why), "'%s' driver requires '%s' to be either a character or block "
                 "device", drvname, filename);
        ret = hdev_cannot_create(err, -EINVAL, drvname, why);
        goto out;
    }
    if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &have) < 0)
        have = 0;
    if (size > have) {
        ret = qimg_error_set(err, -EINVAL, "Cannot grow device files");
        goto out;
    }
    static const uint8_t zero[512];
    size_t first = size < sizeof(zero) ? (size_t)size : sizeof(zero);
    if (first && pwrite(fd, zero, first, 0) != (ssize_t)first)
        ret = qimg_error_errno(err, -errno, "Could not write to the new file");
out:
    close(fd);
    return ret;
}

static int hdev_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    return hdev_create_as("host_device", filename, opts, err);
}

static int cdrom_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    return hdev_create_as("host_cdrom", filename, opts, err);
}

/*
 * Which driver a plain name gets, as QEMU probes protocols: a character or
 * block device is a host_device, a CD-ROM drive (it answers the drive status
 * ioctl) a host_cdrom; anything else is a file.
 */
const struct qimg_driver *qimg_file_probe_protocol(const char *filename)
{
    struct stat st;
    if (stat(filename, &st) < 0 || !(S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode)))
        return &qimg_file_driver;
    int fd = open(filename, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    bool cdrom = fd >= 0 && ioctl(fd, CDROM_DRIVE_STATUS, CDSL_CURRENT) >= 0;
    if (fd >= 0)
        close(fd);
    return cdrom ? &qimg_host_cdrom_driver : &qimg_host_device_driver;
}

#define POSIX_FILE_IO                                                                          \
    .is_protocol = true, .open_opts = file_open_opts, .open = file_open, .close = file_close,  \
    .set_perm = file_set_perm, .get_length = file_get_length,                                  \
    .get_allocated_size = file_get_allocated_size, .pread = file_pread, .pwrite = file_pwrite, \
    .pwrite_zeroes = file_pwrite_zeroes, .pdiscard = file_pdiscard, .flush = file_flush,       \
    .truncate = file_truncate, .block_status = file_block_status,                              \
    .has_zero_init = file_has_zero_init, .copy_range = file_copy_range

const struct qimg_driver qimg_file_driver = {
    .name = "file",
    .protocol_prefix = "file",
    .create_opts = file_create_opts,
    .create = file_create,
    POSIX_FILE_IO,
};

const struct qimg_driver qimg_host_device_driver = {
    .name = "host_device",
    .protocol_prefix = "host_device",
    .create_opts = hdev_create_opts,
    .create = hdev_create,
    POSIX_FILE_IO,
};

const struct qimg_driver qimg_host_cdrom_driver = {
    .name = "host_cdrom",
    .protocol_prefix = "host_cdrom",
    .create_opts = hdev_create_opts,
    .create = cdrom_create,
    POSIX_FILE_IO,
};
