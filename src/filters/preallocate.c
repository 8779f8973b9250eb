/* SPDX-License-Identifier: MIT */
/*
 * The "preallocate" filter (QEMU 6.0+): placed between a format and its
 * file, it grows the file in large preallocated steps when a write goes past
 * its end, so that a growing image does not extend (and fragment) the file
 * one cluster at a time. The step is prealloc-size (default 128 MiB) past
 * the write, rounded up to prealloc-align (default 1 MiB). Above the filter
 * the file looks as long as the data written to it (data_end); on close the
 * file is cut back to that length, so the result is the same file a direct
 * write would have made. Preallocation failures are ignored (it is a hint).
 */
#include <errno.h>
#include <stdlib.h>

#include "core/builtin.h"
#include "filters/filter.h"
#include "util/mem.h"

#define PREALLOC_DEFAULT_SIZE (128ull << 20)
#define PREALLOC_DEFAULT_ALIGN (1ull << 20)
#define SECTOR 512

struct prealloc_state {
    uint64_t align, size;
    pthread_mutex_t lock;
    int64_t data_end; /* the file's length as the format above sees it */
    int64_t file_end; /* the file's real length, preallocation included */
};

static const struct qimg_opt_desc prealloc_open_opts[] = {
    {"prealloc-align", QIMG_OPT_SIZE,
     "on preallocation, align file length to this number, default 1M", NULL},
    {"prealloc-size", QIMG_OPT_SIZE, "how much to preallocate, default 128M", NULL},
    {0},
};

static int prealloc_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct prealloc_state *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    n->opaque = s;
    s->align = PREALLOC_DEFAULT_ALIGN;
    s->size = PREALLOC_DEFAULT_SIZE;
    int ret = qimg_opts_take_size(opts, "prealloc-align", &s->align, err);
    if (ret >= 0)
        ret = qimg_opts_take_size(opts, "prealloc-size", &s->size, err);
    if (ret < 0)
        return ret;
    uint64_t need = n->file->request_alignment > SECTOR ? n->file->request_alignment : SECTOR;
    if (s->align % need)
        return qimg_error_set(err, -EINVAL,
                              "prealloc-align parameter of preallocate filter is not aligned to "
                              "%llu", (unsigned long long)need);
    if (s->align == 0)
        s->align = SECTOR;
    s->data_end = qimg_node_length(n->file);
    if (s->data_end < 0)
        return qimg_error_errno(err, (int)s->data_end, "Could not get the size of '%s'",
                                n->filename);
    s->file_end = s->data_end;
    n->request_alignment = n->file->request_alignment;
    return 0;
}

/* Cut the file back to the data written (QEMU does on close and when giving up write). */
static void prealloc_close(struct qimg_node *n)
{
    struct prealloc_state *s = n->opaque;
    if (!s)
        return;
    if ((n->flags & QIMG_O_RDWR) && s->file_end > s->data_end) {
        struct qimg_error err = {0};
        (void)qimg_node_truncate(n->file, (uint64_t)s->data_end, true, QIMG_PREALLOC_OFF, &err);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
    n->opaque = NULL;
}

static int64_t prealloc_get_length(struct qimg_node *n)
{
    struct prealloc_state *s = n->opaque;
    pthread_mutex_lock(&s->lock);
    int64_t len = s->data_end;
    pthread_mutex_unlock(&s->lock);
    return len;
}

/* Before a write ending at end: grow the file ahead of it where it would pass the end. */
static void prealloc_before_write(struct qimg_node *n, uint64_t end)
{
    struct prealloc_state *s = n->opaque;
    pthread_mutex_lock(&s->lock);
    if ((int64_t)end > s->file_end && end <= INT64_MAX - s->size - s->align) {
        uint64_t target = (end + s->size + s->align - 1) / s->align * s->align;
        struct qimg_error err = {0};
        if (qimg_node_truncate(n->file, target, false, QIMG_PREALLOC_FALLOC, &err) == 0)
            s->file_end = (int64_t)target;
    }
    pthread_mutex_unlock(&s->lock);
}

static void prealloc_after_write(struct qimg_node *n, uint64_t end)
{
    struct prealloc_state *s = n->opaque;
    pthread_mutex_lock(&s->lock);
    if ((int64_t)end > s->data_end)
        s->data_end = (int64_t)end;
    if (s->data_end > s->file_end)
        s->file_end = s->data_end;
    pthread_mutex_unlock(&s->lock);
}

static int prealloc_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                           unsigned flags)
{
    prealloc_before_write(n, off + len);
    int ret = qimg_node_pwrite(n->file, off, len, buf, flags);
    if (ret == 0)
        prealloc_after_write(n, off + len);
    return ret;
}

static int prealloc_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len,
                                  unsigned flags)
{
    prealloc_before_write(n, off + len);
    int ret = qimg_node_pwrite_zeroes(n->file, off, len, flags);
    if (ret == 0)
        prealloc_after_write(n, off + len);
    return ret;
}

static int prealloc_truncate(struct qimg_node *n, uint64_t size, bool exact,
                             enum qimg_prealloc prealloc, struct qimg_error *err)
{
    struct prealloc_state *s = n->opaque;
    pthread_mutex_lock(&s->lock);
    int ret = qimg_node_truncate(n->file, size, exact, prealloc, err);
    if (ret == 0)
        s->data_end = s->file_end = (int64_t)size;
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static const char *const prealloc_strong_opts[] = {"prealloc-align", "prealloc-size", NULL};

const struct qimg_driver qimg_preallocate_driver = {
    .name = "preallocate",
    QIMG_FILTER_PASSTHROUGH,
    .strong_opts = prealloc_strong_opts,
    .open_opts = prealloc_open_opts,
    .open = prealloc_open,
    .close = prealloc_close,
    .get_length = prealloc_get_length,
    .pwrite = prealloc_pwrite,
    .pwrite_zeroes = prealloc_pwrite_zeroes,
    .truncate = prealloc_truncate,
};
