/* SPDX-License-Identifier: MIT */
/*
 * The "null-co" and "null-aio" protocols: a device of a given size (default
 * 1 GiB) that drops writes, for tests and benchmarks (QEMU's block/null).
 *
 * With read-zeroes=off (the default since QEMU 7.2) a read leaves the buffer as
 * it was, as QEMU does: that is the point of the driver (I/O without even a
 * memset) and what `qemu-io -c 'read -v'` shows (its 0xab fill). Block status
 * reports every range as zero in both modes, so the engines never read it and
 * convert/compare/map see a zero device (QEMU's convert treats the unallocated
 * answer it gives with read-zeroes=off as zeroes too).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/builtin.h"
#include "qimg/driver.h"
#include "util/mem.h"

#define NULL_DEFAULT_SIZE (1ULL << 30)

struct null_state {
    uint64_t size;
    uint64_t latency_ns;
    bool read_zeroes;
};

static const struct qimg_opt_desc null_open_opts[] = {
    {"filename", QIMG_OPT_STRING, "File name of the null device (\"null-co://\")", NULL},
    {"size", QIMG_OPT_SIZE, "size of the null block", NULL},
    {"latency-ns", QIMG_OPT_NUMBER, "nanoseconds (approximated) to wait before completing request",
     NULL},
    {"read-zeroes", QIMG_OPT_BOOL, "return zeroes when read", NULL},
    {0},
};

/* A plain unsigned decimal (or 0x hex) below 2^63; anything else is invalid. */
static int parse_latency(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end || v > INT64_MAX)
        return -EINVAL;
    *out = v;
    return 0;
}

static int null_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    const char *prefix = n->drv->protocol_prefix;
    char want[32];
    snprintf(want, sizeof(want), "%s://", prefix);
    const char *filename = qimg_opts_take(opts, "filename");
    if (filename && strcmp(filename, want) != 0)
        return qimg_error_set(err, -EINVAL, "The only allowed filename for this driver is '%s'",
                              want);
    struct null_state *s = xcalloc(1, sizeof(*s));
    n->opaque = s;
    s->size = NULL_DEFAULT_SIZE;
    if (qimg_opts_take_size(opts, "size", &s->size, err) < 0)
        return err->code;
    if (s->size > INT64_MAX)
        return qimg_error_set(err, -EINVAL, "size is invalid");
    const char *lat = qimg_opts_take(opts, "latency-ns");
    if (lat && parse_latency(lat, &s->latency_ns) < 0)
        return qimg_error_set(err, -EINVAL, "latency-ns is invalid");
    if (qimg_opts_take_bool(opts, "read-zeroes", &s->read_zeroes, err) < 0)
        return err->code;
    free(n->filename);
    n->filename = xstrdup(want);
    return 0;
}

static void null_close(struct qimg_node *n)
{
    free(n->opaque);
    n->opaque = NULL;
}

static void null_delay(const struct null_state *s)
{
    if (!s->latency_ns)
        return;
    struct timespec ts = {(time_t)(s->latency_ns / 1000000000u),
                          (long)(s->latency_ns % 1000000000u)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int64_t null_get_length(struct qimg_node *n)
{
    const struct null_state *s = n->opaque;
    return (int64_t)s->size;
}

static int64_t null_get_allocated_size(struct qimg_node *n)
{
    (void)n;
    return 0; /* "disk size: 0 B" */
}

static int null_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    const struct null_state *s = n->opaque;
    (void)off;
    (void)flags;
    null_delay(s);
    if (s->read_zeroes)
        memset(buf, 0, len);
    return 0;
}

static int null_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                       unsigned flags)
{
    (void)off;
    (void)len;
    (void)buf;
    (void)flags;
    null_delay(n->opaque);
    return 0;
}

static int null_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    return null_pwrite(n, off, len, NULL, flags);
}

static int null_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    (void)n;
    (void)off;
    (void)len;
    return 0;
}

static int null_flush(struct qimg_node *n)
{
    null_delay(n->opaque);
    return 0;
}

static int null_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                             struct qimg_block_status *st)
{
    const struct null_state *s = n->opaque;
    st->bytes = len;
    /* Without read-zeroes the content is undefined: QEMU reports nothing about it. */
    st->flags = s->read_zeroes ? QIMG_BLK_ZERO | QIMG_BLK_OFFSET_VALID : 0;
    st->offset = off;
    st->file = n;
    return 0;
}

static bool null_has_zero_init(struct qimg_node *n)
{
    const struct null_state *s = n->opaque;
    return s->read_zeroes;
}

static const char *const null_strong_opts[] = {"size", "read-zeroes", NULL};

#define NULL_DRIVER(drvname)                                                                   \
    {                                                                                          \
        .name = drvname, .is_protocol = true, .protocol_prefix = drvname,                      \
        .open_opts = null_open_opts, .open = null_open, .close = null_close,                   \
        .get_length = null_get_length, .get_allocated_size = null_get_allocated_size,          \
        .pread = null_pread, .pwrite = null_pwrite, .pwrite_zeroes = null_pwrite_zeroes,       \
        .pdiscard = null_pdiscard, .flush = null_flush, .block_status = null_block_status,     \
        .has_zero_init = null_has_zero_init, .strong_opts = null_strong_opts,                  \
    }

/* null-aio differs from null-co only in QEMU's completion mechanism; threads make that moot. */
const struct qimg_driver qimg_null_co_driver = NULL_DRIVER("null-co");
const struct qimg_driver qimg_null_aio_driver = NULL_DRIVER("null-aio");
