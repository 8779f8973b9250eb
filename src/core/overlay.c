/* SPDX-License-Identifier: MIT */
/*
 * The dry-run overlay (QIMG_O_DRY_RUN, check -r ... --dry-run): a filter
 * node over a protocol node opened read-only. Writes, zero writes, discards
 * and truncates land in memory, in 4 KiB pages; reads see them over the
 * file's bytes. So a repair runs exactly as it would (its later steps read
 * what its earlier ones wrote, the double check sees the repaired image),
 * and not a byte reaches the file. Not registered: nobody opens it by name.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/node-internal.h"
#include "qimg/node.h"
#include "util/mem.h"

#define PAGE 4096u
/* A repair rewrites metadata only; more than this in memory is refused, not swapped. */
#define OVERLAY_MAX_BYTES (1ull << 30)

struct page {
    uint64_t idx;
    uint8_t *data;
};

struct overlay {
    pthread_mutex_t lock;
    struct page *pages; /* sorted by idx */
    size_t n, cap;
    int64_t size;      /* the file's size as the writes left it */
    int64_t base_size; /* the child's bytes are visible below this (lowest size since open) */
    int64_t orig_size;
    uint64_t bytes_written; /* bytes of write, zero and discard requests */
    uint64_t requests;
};

static struct overlay *ov(struct qimg_node *n)
{
    return n->opaque;
}

/* Index of page idx, or where it would go. */
static size_t find(const struct overlay *o, uint64_t idx, bool *found)
{
    size_t lo = 0, hi = o->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (o->pages[mid].idx < idx)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < o->n && o->pages[lo].idx == idx;
    return lo;
}

/* The file's bytes as they were, zeroes past base_size. Lock held. */
static int read_base(struct qimg_node *n, uint64_t off, uint64_t len, uint8_t *buf)
{
    struct overlay *o = ov(n);
    uint64_t avail = off < (uint64_t)o->base_size ? (uint64_t)o->base_size - off : 0;
    uint64_t from_file = len < avail ? len : avail;
    memset(buf + from_file, 0, len - from_file);
    return from_file ? qimg_node_pread(n->file, off, from_file, buf, 0) : 0;
}

/* The page idx, made from the file's bytes on first touch. Lock held. */
static int get_page(struct qimg_node *n, uint64_t idx, uint8_t **out)
{
    struct overlay *o = ov(n);
    bool found;
    size_t at = find(o, idx, &found);
    if (found) {
        *out = o->pages[at].data;
        return 0;
    }
    if ((uint64_t)(o->n + 1) * PAGE > OVERLAY_MAX_BYTES)
        return -ENOMEM;
    uint8_t *data = malloc(PAGE);
    if (!data)
        return -ENOMEM;
    int ret = read_base(n, idx * PAGE, PAGE, data);
    if (ret < 0) {
        free(data);
        return ret;
    }
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 64;
        o->pages = xrealloc(o->pages, o->cap * sizeof(*o->pages));
    }
    memmove(o->pages + at + 1, o->pages + at, (o->n - at) * sizeof(*o->pages));
    o->pages[at] = (struct page){idx, data};
    o->n++;
    *out = data;
    return 0;
}

static int overlay_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    (void)flags;
    struct overlay *o = ov(n);
    uint8_t *dst = buf;
    int ret = 0;
    pthread_mutex_lock(&o->lock);
    while (len > 0 && ret == 0) {
        uint64_t idx = off / PAGE, in = off % PAGE;
        uint64_t k = PAGE - in < len ? PAGE - in : len;
        bool found;
        size_t at = find(o, idx, &found);
        if (found)
            memcpy(dst, o->pages[at].data + in, k);
        else
            ret = read_base(n, off, k, dst);
        dst += k;
        off += k;
        len -= k;
    }
    pthread_mutex_unlock(&o->lock);
    return ret;
}

/* Write buf (NULL: zeroes) over [off, off + len). */
static int put(struct qimg_node *n, uint64_t off, uint64_t len, const uint8_t *buf)
{
    struct overlay *o = ov(n);
    int ret = 0;
    pthread_mutex_lock(&o->lock);
    o->bytes_written += len;
    o->requests++;
    if (off + len > (uint64_t)o->size)
        o->size = (int64_t)(off + len);
    while (len > 0 && ret == 0) {
        uint64_t idx = off / PAGE, in = off % PAGE;
        uint64_t k = PAGE - in < len ? PAGE - in : len;
        uint8_t *page;
        ret = get_page(n, idx, &page);
        if (ret == 0) {
            if (buf)
                memcpy(page + in, buf, k);
            else
                memset(page + in, 0, k);
        }
        if (buf)
            buf += k;
        off += k;
        len -= k;
    }
    pthread_mutex_unlock(&o->lock);
    return ret;
}

static int overlay_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                          unsigned flags)
{
    (void)flags;
    return put(n, off, len, buf);
}

static int overlay_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    (void)flags;
    return put(n, off, len, NULL);
}

static int overlay_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    /* A discarded range of a file reads as zeroes (the file protocol punches a hole). */
    uint64_t size = (uint64_t)ov(n)->size;
    if (off >= size)
        return 0;
    return put(n, off, len < size - off ? len : size - off, NULL);
}

static int overlay_truncate(struct qimg_node *n, uint64_t size, bool exact,
                            enum qimg_prealloc prealloc, struct qimg_error *err)
{
    (void)exact;
    (void)prealloc;
    (void)err;
    struct overlay *o = ov(n);
    if (size > INT64_MAX)
        return -EFBIG;
    pthread_mutex_lock(&o->lock);
    o->requests++;
    if ((int64_t)size < o->base_size)
        o->base_size = (int64_t)size;
    /* Pages past the new end go; the part of the last one past it reads as zeroes. */
    bool found;
    size_t keep = find(o, (size + PAGE - 1) / PAGE, &found);
    for (size_t i = keep; i < o->n; i++)
        free(o->pages[i].data);
    o->n = keep;
    if (size % PAGE && find(o, size / PAGE, &found) < o->n && found)
        memset(o->pages[find(o, size / PAGE, &found)].data + size % PAGE, 0, PAGE - size % PAGE);
    o->size = (int64_t)size;
    pthread_mutex_unlock(&o->lock);
    return 0;
}

static int64_t overlay_get_length(struct qimg_node *n)
{
    struct overlay *o = ov(n);
    pthread_mutex_lock(&o->lock);
    int64_t size = o->size;
    pthread_mutex_unlock(&o->lock);
    return size;
}

static int64_t overlay_get_allocated_size(struct qimg_node *n)
{
    return qimg_node_allocated_size(n->file);
}

static int overlay_flush(struct qimg_node *n)
{
    (void)n;
    return 0;
}

static int overlay_set_perm(struct qimg_node *n, unsigned perm, unsigned shared,
                            struct qimg_error *err)
{
    /* The file is only read: take no write or resize permission on it. */
    return qimg_node_set_perm(n->file, perm & ~(QIMG_PERM_WRITE | QIMG_PERM_RESIZE), shared, err);
}

static void overlay_close(struct qimg_node *n)
{
    struct overlay *o = ov(n);
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++)
        free(o->pages[i].data);
    free(o->pages);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

static const struct qimg_driver overlay_driver = {
    .name = "dry-run",
    .is_protocol = true,
    .is_filter = true,
    .close = overlay_close,
    .get_length = overlay_get_length,
    .get_allocated_size = overlay_get_allocated_size,
    .pread = overlay_pread,
    .pwrite = overlay_pwrite,
    .pwrite_zeroes = overlay_pwrite_zeroes,
    .pdiscard = overlay_pdiscard,
    .flush = overlay_flush,
    .truncate = overlay_truncate,
    .set_perm = overlay_set_perm,
};

int qimg_overlay_wrap(struct qimg_node **node, unsigned flags, struct qimg_error *err)
{
    struct qimg_node *child = *node;
    int64_t size = qimg_node_length(child);
    if (size < 0)
        return qimg_error_errno(err, (int)size, "Could not get the size of '%s'", child->filename);
    struct qimg_node *n = qimg_node_alloc(&overlay_driver, child->filename, flags);
    struct overlay *o = xcalloc(1, sizeof(*o));
    pthread_mutex_init(&o->lock, NULL);
    o->size = o->base_size = o->orig_size = size;
    n->opaque = o;
    n->file = child;
    n->request_alignment = 1;
    if (child->options)
        n->options = qimg_opts_clone(child->options);
    *node = n;
    return 0;
}

int qimg_node_dry_run_stats(struct qimg_node *n, struct qimg_dry_run_stats *st)
{
    memset(st, 0, sizeof(*st));
    int found = 0;
    struct qimg_node *kids[2] = {n->file, n->data_file};
    for (int i = 0; i < 2; i++) {
        if (!kids[i] || kids[i]->drv != &overlay_driver)
            continue;
        struct overlay *o = ov(kids[i]);
        pthread_mutex_lock(&o->lock);
        st->requests += o->requests;
        st->bytes += o->bytes_written;
        st->pages += o->n;
        if (i == 0) {
            st->old_size = o->orig_size;
            st->new_size = o->size;
        }
        pthread_mutex_unlock(&o->lock);
        found++;
    }
    return found ? 0 : -ENOENT;
}
