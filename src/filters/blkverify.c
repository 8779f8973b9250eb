/* SPDX-License-Identifier: MIT */
/*
 * The "blkverify" protocol: "blkverify:RAW:TEST" (or "raw"/"test" children
 * in json:/--image-opts, "x-raw"/"x-image" for their names) runs every
 * request on both a known-good raw copy and the image under test, and stops
 * the process when they disagree, as QEMU's does: reads compare their
 * data, every request compares the return values, with QEMU's message
 * ("blkverify: read offset=O bytes=N contents mismatch at offset X") and exit
 * status 1 (qimg_fatal). The raw copy is opened as a file, the test image
 * probed. The raw child is the filter's "file" (QEMU shows its geometry);
 * the length is the test image's.
 */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/builtin.h"
#include "core/node-internal.h"
#include "filters/filter.h"
#include "util/mem.h"

struct blkverify_state {
    struct qimg_node *test;
};

static const struct qimg_opt_desc blkverify_open_opts[] = {
    {"x-raw", QIMG_OPT_STRING, "[internal use only, will be removed]", NULL},
    {"x-image", QIMG_OPT_STRING, "[internal use only, will be removed]", NULL},
    {0},
};

static struct qimg_node *test_of(struct qimg_node *n)
{
    return ((struct blkverify_state *)n->opaque)->test;
}

/* "blkverify:RAW:TEST": RAW ends at the first colon. */
static int split_filename(const char *filename, char **raw, char **test, struct qimg_error *err)
{
    const char *p = filename + strlen("blkverify:");
    const char *colon = strchr(p, ':');
    if (!colon)
        return qimg_error_set(err, -EINVAL, "blkverify requires raw copy and original image path");
    *raw = xasprintf("%.*s", (int)(colon - p), p);
    *test = xstrdup(colon + 1);
    return 0;
}

static void replace(char **dst, const char *v)
{
    if (v) {
        free(*dst);
        *dst = xstrdup(v);
    }
}

static int blkverify_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct blkverify_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    struct qimg_opts *raw_opts = qimg_opts_new(), *test_opts = qimg_opts_new();
    char *raw = NULL, *test = NULL;
    int ret = 0;
    const char *filename = qimg_opts_take(opts, "filename");
    if (filename && !strncmp(filename, "blkverify:", 10)) {
        ret = split_filename(filename, &raw, &test, err);
        if (ret < 0)
            goto out;
    }
    replace(&raw, qimg_opts_take(opts, "x-raw"));
    replace(&test, qimg_opts_take(opts, "x-image"));
    const char *refs[] = {"raw", "test"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = qimg_opts_take(opts, refs[i]);
        if (v) { /* a string child names an existing node; qemu-img has none */
            ret = qimg_error_set(err, -EINVAL, "Cannot find device='%s' nor node-name='%s'", v, v);
            goto out;
        }
    }
    qimg_opts_extract_prefix(opts, "raw.", raw_opts);
    qimg_opts_extract_prefix(opts, "test.", test_opts);
    ret = filter_open_child(&n->file, "raw", raw, raw_opts, false, n->flags, err);
    if (ret == 0)
        ret = filter_open_child(&s->test, "test", test, test_opts, true, n->flags, err);
    if (ret == 0) {
        n->request_alignment = n->file->request_alignment;
        if (s->test->request_alignment > n->request_alignment)
            n->request_alignment = s->test->request_alignment;
    }
out:
    free(raw);
    free(test);
    qimg_opts_free(raw_opts);
    qimg_opts_free(test_opts);
    return ret;
}

static void blkverify_close(struct qimg_node *n)
{
    struct blkverify_state *s = n->opaque;
    if (!s)
        return;
    qimg_node_unref(s->test);
    free(s);
    n->opaque = NULL;
}

static int blkverify_set_perm(struct qimg_node *n, unsigned perm, unsigned shared,
                              struct qimg_error *err)
{
    int ret = qimg_node_set_perm(n->file, perm, shared, err);
    if (ret == 0) {
        n->perm = perm;
        n->shared_perm = shared;
    }
    return ret;
}

static int64_t blkverify_get_length(struct qimg_node *n)
{
    return qimg_node_length(test_of(n));
}

static int64_t blkverify_get_allocated_size(struct qimg_node *n)
{
    (void)n;
    return -ENOTSUP; /* QEMU: "disk size: unavailable" */
}

/* Both sides must agree on the outcome; then the test side's result stands. */
static int agree(const char *op, uint64_t off, uint64_t len, int test_ret, int raw_ret)
{
    if (test_ret != raw_ret) {
        qimg_fatal("blkverify: %s offset=%llu bytes=%llu return value mismatch %d != %d", op,
                   (unsigned long long)off, (unsigned long long)len, test_ret, raw_ret);
        return -EIO;
    }
    return test_ret;
}

static int blkverify_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                           unsigned flags)
{
    uint8_t *raw_buf = xmalloc(len ? len : 1);
    int test_ret = qimg_node_pread(test_of(n), off, len, buf, flags);
    int raw_ret = qimg_node_pread(n->file, off, len, raw_buf, flags);
    int ret = agree("read", off, len, test_ret, raw_ret);
    if (ret == 0 && memcmp(buf, raw_buf, len)) {
        uint64_t i = 0;
        while (((uint8_t *)buf)[i] == raw_buf[i])
            i++;
        qimg_fatal("blkverify: read offset=%llu bytes=%llu contents mismatch at offset %llu",
                   (unsigned long long)off, (unsigned long long)len,
                   (unsigned long long)(off + i));
        ret = -EIO;
    }
    free(raw_buf);
    return ret;
}

static int blkverify_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                            unsigned flags)
{
    int test_ret = qimg_node_pwrite(test_of(n), off, len, buf, flags);
    int raw_ret = qimg_node_pwrite(n->file, off, len, buf, flags);
    return agree("write", off, len, test_ret, raw_ret);
}

/* As QEMU's: only the image under test is flushed; the raw copy is a reference. */
static int blkverify_flush(struct qimg_node *n)
{
    return qimg_node_flush(test_of(n));
}

/* Events from the format above go to the image under test, not to the raw copy. */
static void blkverify_debug_event(struct qimg_node *n, enum qimg_debug_event ev)
{
    qimg_debug_event(test_of(n), ev);
}

static struct qimg_node *blkverify_extra_child(struct qimg_node *n, size_t i, char *name,
                                               size_t cap)
{
    snprintf(name, cap, "test");
    return i == 0 ? test_of(n) : NULL;
}

/* QEMU's plain name, while both children have plain names. */
static char *blkverify_plain_filename(struct qimg_node *n)
{
    struct qimg_node *test = test_of(n);
    if (!strncmp(n->file->filename, "json:", 5) || !strncmp(test->filename, "json:", 5))
        return NULL;
    return xasprintf("blkverify:%s:%s", n->file->filename, test->filename);
}

const struct qimg_driver qimg_blkverify_driver = {
    .name = "blkverify",
    .is_protocol = true,
    .protocol_prefix = "blkverify",
    .is_filter = true,
    .child_name = "raw",
    .plain_filename = blkverify_plain_filename,
    .extra_child = blkverify_extra_child,
    .open_opts = blkverify_open_opts,
    .open = blkverify_open,
    .close = blkverify_close,
    .set_perm = blkverify_set_perm,
    .get_length = blkverify_get_length,
    .get_allocated_size = blkverify_get_allocated_size,
    .pread = blkverify_pread,
    .pwrite = blkverify_pwrite,
    .flush = blkverify_flush,
    .debug_event = blkverify_debug_event,
    .block_status = filter_block_status, /* the raw copy answers, as in QEMU */
};
