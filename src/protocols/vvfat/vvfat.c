/* SPDX-License-Identifier: MIT */
/*
 * The "vvfat" protocol: fat:[floppy:][rw:][12|16|32:]DIRECTORY, or the
 * options dir, fat-type, floppy, label and rw, as QEMU 9.1 takes them. The
 * disk is built in memory at open (boot sectors, FAT, directories); file
 * data is read from the host files on demand, cluster by cluster, so a
 * read never holds more than the request's bytes.
 *
 * Read-only: QEMU's rw mode writes guest changes back to the host
 * directory through a temporary qcow image; qimg refuses it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/builtin.h"
#include "protocols/vvfat/vvfat.h"
#include "qimg/driver.h"
#include "util/bytes.h"
#include "util/mem.h"

static const struct qimg_opt_desc vvfat_open_opts[] = {
    {"dir", QIMG_OPT_STRING, "Host directory to map to the vvfat device", NULL},
    {"fat-type", QIMG_OPT_NUMBER, "FAT type (12, 16 or 32)", NULL},
    {"floppy", QIMG_OPT_BOOL, "Create a floppy rather than a hard disk image", NULL},
    {"label", QIMG_OPT_STRING, "Use a volume label other than QEMU VVFAT", NULL},
    {"rw", QIMG_OPT_BOOL, "Make the image writable", NULL},
    {"filename", QIMG_OPT_STRING, "fat:[floppy:][rw:][12|16|32:]DIRECTORY", NULL},
    {0},
};

/*
 * QEMU's filename syntax: the flags are found anywhere (":floppy:", ":rw:",
 * ":32:", ":16:", ":12:"); the directory follows the last colon, or starts
 * at a drive letter ("fat:c:dir" names "c:dir").
 */
static int parse_filename(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    if (strncmp(filename, "fat:", 4) != 0)
        return qimg_error_set(err, -EINVAL, "File name string must start with 'fat:'");
    const char *type = strstr(filename, ":32:") ? "32"
                       : strstr(filename, ":16:") ? "16"
                       : strstr(filename, ":12:") ? "12"
                                                  : "0";
    bool floppy = strstr(filename, ":floppy:") != NULL;
    bool rw = strstr(filename, ":rw:") != NULL;
    const char *colon = strrchr(filename, ':');
    size_t i = (size_t)(colon - filename);
    const char *dir = colon + 1;
    if (i >= 5 && filename[i - 2] == ':' &&
        ((filename[i - 1] >= 'a' && filename[i - 1] <= 'z') ||
         (filename[i - 1] >= 'A' && filename[i - 1] <= 'Z')))
        dir = filename + i - 1;
    qimg_opts_set_typed(opts, "fat-type", type, QIMG_OPTV_NUMBER);
    qimg_opts_set_typed(opts, "dir", dir, QIMG_OPTV_STRING);
    qimg_opts_set_typed(opts, "floppy", floppy ? "on" : "off", QIMG_OPTV_BOOL);
    qimg_opts_set_typed(opts, "rw", rw ? "on" : "off", QIMG_OPTV_BOOL);
    return 0;
}

static int take_label(struct qimg_opts *opts, uint8_t *label, struct qimg_error *err)
{
    const char *s = qimg_opts_take(opts, "label");
    memcpy(label, VVFAT_DEFAULT_LABEL, VVFAT_LABEL_LEN);
    if (!s)
        return 0;
    size_t len = strlen(s);
    if (len > VVFAT_LABEL_LEN)
        return qimg_error_set(err, -EINVAL, "vvfat label cannot be longer than 11 bytes");
    memset(label, ' ', VVFAT_LABEL_LEN);
    memcpy(label, s, len);
    return 0;
}

static int vvfat_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    const char *filename = qimg_opts_take(opts, "filename");
    if (filename) {
        int ret = parse_filename(filename, opts, err);
        if (ret < 0)
            return ret;
        qimg_opts_del(opts, "filename");
    }
    struct vvfat_image *img = xcalloc(1, sizeof(*img));
    n->opaque = img;
    uint64_t fat_type = 0;
    bool floppy = false, rw = false;
    if (qimg_opts_take_uint(opts, "fat-type", &fat_type, err) < 0 ||
        qimg_opts_take_bool(opts, "floppy", &floppy, err) < 0 ||
        qimg_opts_take_bool(opts, "rw", &rw, err) < 0 || take_label(opts, img->label, err) < 0)
        return err->code;
    const char *dir = qimg_opts_take(opts, "dir");
    if (!dir)
        return qimg_error_set(err, -EINVAL, "vvfat block driver requires a 'dir' option");
    int ret = vvfat_geometry_init(&img->geo, fat_type > 32 ? 1 : (int)fat_type, floppy, err);
    if (ret < 0)
        return ret;
    if (img->geo.fat_type == 32)
        qimg_warn("FAT32 has not been tested. You are welcome to do so!\n");
    if (rw && !(n->flags & QIMG_O_RDWR))
        return qimg_error_set(err, -EINVAL, "Unable to set VVFAT to 'rw' when drive is read-only");
    if (!rw && (n->flags & QIMG_O_RDWR))
        return qimg_error_set(err, -EACCES, "Image is read-only");
    vvfat_build_head(img);
    ret = vvfat_build_tree(img, dir, err);
    if (ret < 0)
        return ret;
    vvfat_slack_build(img);
    if (rw)
        return qimg_error_set(err, -ENOTSUP, "vvfat's rw mode (writing back to the directory) "
                                             "is not supported");
    return 0;
}

static void vvfat_close(struct qimg_node *n)
{
    struct vvfat_image *img = n->opaque;
    if (!img)
        return;
    vvfat_image_free(img);
    free(img);
    n->opaque = NULL;
}

static int64_t vvfat_get_length(struct qimg_node *n)
{
    const struct vvfat_image *img = n->opaque;
    return (int64_t)img->geo.total_sectors * VVFAT_SECTOR;
}

int vvfat_read_file(const struct vvfat_run *r, uint64_t off, uint8_t *buf, size_t len)
{
    int fd = r->unreadable ? -1 : open(r->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { /* as QEMU: a file it cannot open reads as zeroes */
        memset(buf, 0, len);
        return 0;
    }
    int ret = 0;
    size_t done = 0;
    while (done < len) {
        ssize_t got = pread(fd, buf + done, len - done, (off_t)(off + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) { /* an error, or the file shrank: the rest reads as zeroes */
            ret = got < 0 ? -EIO : 0;
            break;
        }
        done += (size_t)got;
    }
    memset(buf + done, 0, len - done);
    close(fd);
    return ret;
}

/* len bytes at off of file run r: its data, then the slack of its last cluster. */
static int read_file_run(const struct vvfat_image *img, const struct vvfat_run *r, uint64_t off,
                         uint8_t *buf, size_t len)
{
    size_t data = off < r->size ? (size_t)qimg_min_u64(len, r->size - off) : 0;
    if (data) {
        int ret = vvfat_read_file(r, off, buf, data);
        if (ret < 0)
            return ret;
    }
    if (data == len)
        return 0;
    uint64_t last = (uint64_t)(r->end - 1 - r->begin) * VVFAT_CLUSTER;
    uint32_t from = (uint32_t)(off + data - last), to = (uint32_t)(off + len - last);
    return vvfat_slack_read(img, r, from, to, buf + data);
}

/* len bytes at byte off of the cluster area (cluster 0 = the root directory). */
static int read_clusters(const struct vvfat_image *img, uint64_t off, uint8_t *buf, size_t len)
{
    while (len > 0) {
        uint32_t c = (uint32_t)(off / VVFAT_CLUSTER);
        const struct vvfat_run *r = vvfat_find_run(img, c);
        size_t in = (size_t)(off % VVFAT_CLUSTER);
        /* The whole run at once for files; directories and free space by cluster. */
        uint64_t run_end = r && !r->is_dir ? (uint64_t)r->end * VVFAT_CLUSTER
                                           : (uint64_t)(c + 1) * VVFAT_CLUSTER;
        size_t n = (size_t)qimg_min_u64(len, run_end - off);
        if (!r) {
            memset(buf, 0, n);
        } else if (r->is_dir) {
            size_t at = r->first_entry * VVFAT_DIRENT + (size_t)(c - r->begin) * VVFAT_CLUSTER + in;
            memcpy(buf, img->dirs.bytes + at, n);
        } else {
            int ret = read_file_run(img, r, off - (uint64_t)r->begin * VVFAT_CLUSTER, buf, n);
            if (ret < 0)
                return ret;
        }
        off += n;
        buf += n;
        len -= n;
    }
    return 0;
}

static int vvfat_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    const struct vvfat_image *img = n->opaque;
    const struct vvfat_geometry *g = &img->geo;
    uint8_t *p = buf;
    uint64_t head_end = ((uint64_t)g->boot + 1) * VVFAT_SECTOR;
    uint64_t fat_bytes = (uint64_t)g->spf * VVFAT_SECTOR;
    uint64_t root = (uint64_t)g->root * VVFAT_SECTOR;
    (void)flags;
    while (len > 0) {
        size_t n;
        if (off < head_end) {
            n = (size_t)qimg_min_u64(len, head_end - off);
            memcpy(p, img->head + off, n);
        } else if (off < root) { /* two copies of the one FAT */
            uint64_t in = (off - head_end) % fat_bytes;
            n = (size_t)qimg_min_u64(len, fat_bytes - in);
            memcpy(p, img->fat + in, n);
        } else {
            n = (size_t)len;
            int ret = read_clusters(img, off - root, p, n);
            if (ret < 0)
                return ret;
        }
        off += n;
        p += n;
        len -= n;
    }
    return 0;
}

static int vvfat_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                              struct qimg_block_status *st)
{
    (void)n;
    (void)off;
    st->bytes = len;
    st->flags = QIMG_BLK_DATA; /* no host offset: the data lives in many files */
    return 0;
}

static const char *const vvfat_strong_opts[] = {"dir", "fat-type", "floppy", "label", "rw", NULL};

const struct qimg_driver qimg_vvfat_driver = {
    .name = "vvfat",
    .is_protocol = true,
    .protocol_prefix = "fat",
    .open_opts = vvfat_open_opts,
    .open = vvfat_open,
    .close = vvfat_close,
    .get_length = vvfat_get_length,
    .pread = vvfat_pread,
    .block_status = vvfat_block_status,
    .strong_opts = vvfat_strong_opts,
};
