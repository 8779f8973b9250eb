/* SPDX-License-Identifier: MIT */
/*
 * Reading the host directory into the disk's directory entries, cluster
 * runs and FAT, in QEMU 9.1's order: directories breadth first, entries in
 * readdir order ("." and ".." first in subdirectories), each run taking the
 * next free clusters; empty files take none.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "protocols/vvfat/vvfat.h"
#include "util/bytes.h"
#include "util/mem.h"

#define ENTRIES_PER_CLUSTER (VVFAT_CLUSTER / VVFAT_DIRENT)

static size_t add_run(struct vvfat_image *img)
{
    if (img->nruns == img->runs_cap) {
        img->runs_cap = img->runs_cap ? img->runs_cap * 2 : 64;
        img->runs = xrealloc(img->runs, img->runs_cap * sizeof(*img->runs));
    }
    memset(&img->runs[img->nruns], 0, sizeof(img->runs[0]));
    return img->nruns++;
}

/* FAT time or date of t in local time (FAT: "Date and Time Formats"). */
static uint16_t fat_time(time_t t)
{
    struct tm tm;
    localtime_r(&t, &tm);
    return (uint16_t)((tm.tm_hour << 11) | (tm.tm_min << 5) | (tm.tm_sec / 2));
}

static uint16_t fat_date(time_t t)
{
    struct tm tm;
    localtime_r(&t, &tm);
    return (uint16_t)(((tm.tm_year - 80) << 9) | ((tm.tm_mon + 1) << 5) | tm.tm_mday);
}

static void fill_entry(uint8_t *e, const struct stat *st)
{
    bool dir = S_ISDIR(st->st_mode);
    e[DIRENT_ATTR] = dir ? ATTR_DIR : ATTR_ARCHIVE;
    qimg_put_le16(e + DIRENT_CTIME, fat_time(st->st_ctime));
    qimg_put_le16(e + DIRENT_CDATE, fat_date(st->st_ctime));
    qimg_put_le16(e + DIRENT_ADATE, fat_date(st->st_atime));
    qimg_put_le16(e + DIRENT_MTIME, fat_time(st->st_mtime));
    qimg_put_le16(e + DIRENT_MDATE, fat_date(st->st_mtime));
    qimg_put_le32(e + DIRENT_SIZE, dir ? 0 : (uint32_t)st->st_size);
}

static void set_entry_cluster(struct vvfat_image *img, size_t entry, uint32_t cluster)
{
    uint8_t *e = vvfat_dirent(&img->dirs, entry);
    qimg_put_le16(e + DIRENT_CLUSTER, (uint16_t)cluster);
    qimg_put_le16(e + DIRENT_CLUSTER_HI, (uint16_t)(cluster >> 16));
}

/* "." or ".." of a subdirectory (no long name), pointing at cluster. */
static void add_dot_entry(struct vvfat_image *img, const char *dir, const char *dot,
                          uint32_t cluster)
{
    size_t i = vvfat_dir_append(&img->dirs);
    uint8_t *e = vvfat_dirent(&img->dirs, i);
    memset(e, ' ', 11);
    memcpy(e, dot, strlen(dot));
    char *path = xasprintf("%s/%s", dir, dot);
    struct stat st;
    int ret = stat(path, &st);
    free(path);
    if (ret < 0) /* a path too long for stat: QEMU leaves the name alone in the entry */
        return;
    fill_entry(e, &st);
    set_entry_cluster(img, i, cluster);
}

/* One readdir entry of the directory run ri: its entries and (files with data, dirs) its run. */
static int add_child(struct vvfat_image *img, size_t ri, const char *name)
{
    char *path = xasprintf("%s/%s", img->runs[ri].path, name);
    struct stat st;
    if (stat(path, &st) < 0) { /* vanished or unreadable: QEMU leaves it out */
        free(path);
        return 0;
    }
    if (st.st_size > (off_t)VVFAT_MAX_FILE) {
        qimg_report_bare("File %s is larger than 2GB", path);
        free(path);
        return -EFBIG;
    }
    size_t entry = vvfat_add_named_entry(&img->dirs, img->runs[ri].first_entry, name);
    fill_entry(vvfat_dirent(&img->dirs, entry), &st);
    if (!S_ISDIR(st.st_mode) && st.st_size == 0) {
        free(path);
        return 0;
    }
    size_t ci = add_run(img);
    struct vvfat_run *r = &img->runs[ci];
    r->is_dir = S_ISDIR(st.st_mode);
    r->entry = entry;
    r->parent = ri;
    r->path = path;
    r->size = r->is_dir ? 0 : (uint64_t)st.st_size;
    if (!r->is_dir) { /* QEMU shows a file it cannot open as zeroes (no error) */
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        r->unreadable = fd < 0;
        if (fd >= 0)
            close(fd);
    }
    return 0;
}

/* The entries of directory run ri, padded to whole clusters (FAT12/16 root: 512 entries). */
static int read_directory(struct vvfat_image *img, size_t ri)
{
    struct vvfat_run *r = &img->runs[ri];
    bool root = ri == 0;
    DIR *d = opendir(r->path);
    if (!d)
        return -ENOENT;
    if (!root) {
        r->first_entry = img->dirs.count;
        add_dot_entry(img, r->path, ".", r->begin);
        add_dot_entry(img, r->path, "..", img->runs[r->parent].begin);
    }
    int ret = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (root && img->dirs.count >= VVFAT_ROOT_ENTRIES - 1) {
            qimg_report_bare("Too many entries in root directory");
            ret = -ENOSPC;
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        ret = add_child(img, ri, de->d_name);
        if (ret < 0)
            break;
        /* Stop once the entries alone overflow the disk (bounded memory for huge dirs). */
        const struct vvfat_run *self = &img->runs[ri]; /* add_child may move the runs */
        if (self->begin + (img->dirs.count - self->first_entry) / ENTRIES_PER_CLUSTER >
            img->geo.cluster_count) {
            ret = -E2BIG;
            break;
        }
    }
    closedir(d);
    if (ret < 0)
        return ret;
    while (img->dirs.count % ENTRIES_PER_CLUSTER)
        vvfat_dir_append(&img->dirs);
    while (root && img->geo.fat_type != 32 && img->dirs.count < VVFAT_ROOT_ENTRIES)
        vvfat_dir_append(&img->dirs);
    r = &img->runs[ri];
    r->end = r->begin + (uint32_t)((img->dirs.count - r->first_entry) / ENTRIES_PER_CLUSTER);
    return 0;
}

/* Give run ri its clusters from *next on and chain them in the FAT. */
static int place_run(struct vvfat_image *img, size_t ri, uint32_t *next, struct qimg_error *err)
{
    struct vvfat_run *r = &img->runs[ri];
    r->begin = *next;
    const struct vvfat_geometry *g = &img->geo;
    if (r->is_dir) {
        int ret = read_directory(img, ri);
        if (ret == -E2BIG)
            r->end = g->cluster_count + 1; /* reported as QEMU does once it has read it all */
        else if (ret < 0)
            return qimg_error_set(err, ret, "Could not read directory %s", img->runs[ri].path);
        r = &img->runs[ri];
    } else {
        r->end = r->begin + (uint32_t)((r->size + VVFAT_CLUSTER - 1) / VVFAT_CLUSTER);
    }
    *next = r->end;
    if (r->end > g->cluster_count)
        return qimg_error_set(err, -ENOSPC, "Directory does not fit in FAT%d (capacity %.2f MB)",
                              g->fat_type, g->sector_count / 2000.0);
    if (ri == 0) /* the root has no FAT chain (MS-DOS expects none) */
        return 0;
    set_entry_cluster(img, r->entry, r->begin);
    for (uint32_t c = r->begin; c + 1 < r->end; c++)
        vvfat_fat_set(img, c, c + 1);
    vvfat_fat_set(img, r->end - 1, g->max_fat);
    return 0;
}

int vvfat_build_tree(struct vvfat_image *img, const char *dir, struct qimg_error *err)
{
    img->fat = xcalloc(img->geo.spf, VVFAT_SECTOR);
    size_t label = vvfat_dir_append(&img->dirs);
    memcpy(vvfat_dirent(&img->dirs, label), img->label, VVFAT_LABEL_LEN);
    vvfat_dirent(&img->dirs, label)[DIRENT_ATTR] = ATTR_VOLUME;

    size_t root = add_run(img);
    img->runs[root].is_dir = true;
    img->runs[root].path = xstrdup(dir);
    size_t len = strlen(dir);
    if (len > 0 && dir[len - 1] == '/')
        img->runs[root].path[len - 1] = '\0';

    uint32_t next = 0;
    for (size_t i = 0; i < img->nruns; i++) {
        int ret = place_run(img, i, &next, err);
        if (ret < 0)
            return ret;
    }
    /* The FAT's first two entries: media descriptor and end-of-chain marks. */
    vvfat_fat_set(img, 0, img->geo.max_fat);
    vvfat_fat_set(img, 1, img->geo.max_fat);
    img->fat[0] = img->geo.floppy ? 0xf0 : 0xf8;
    vvfat_names_index_free(&img->dirs);
    return 0;
}

const struct vvfat_run *vvfat_find_run(const struct vvfat_image *img, uint32_t c)
{
    size_t lo = 0, hi = img->nruns;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct vvfat_run *r = &img->runs[mid];
        if (c < r->begin)
            hi = mid;
        else if (c >= r->end)
            lo = mid + 1;
        else
            return r;
    }
    return NULL;
}

void vvfat_image_free(struct vvfat_image *img)
{
    for (size_t i = 0; i < img->nruns; i++)
        free(img->runs[i].path);
    free(img->runs);
    free(img->slack);
    free(img->dirs.bytes);
    vvfat_names_index_free(&img->dirs);
    free(img->fat);
    free(img->head);
    memset(img, 0, sizeof(*img));
}
