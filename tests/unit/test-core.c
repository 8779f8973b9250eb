/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/core and the file protocol: opening and probing, option
 * handling, requests at odd offsets (read-modify-write, O_DIRECT and the
 * unaligned tail), bounds and read-only checks, block status over sparse
 * files, truncate with preallocation, create, image locks within one process
 * (two opens are two open file descriptions) and the probed-raw guard.
 *
 * Files live in a fresh directory under $TMPDIR (default /var/tmp, which is
 * on disk so O_DIRECT works; tests needing O_DIRECT skip where it does not).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "qimg/driver.h"
#include "qimg/qimg.h"

static char tmpdir[PATH_MAX];
static int skipped;

#define SKIP(why)                                                                              \
    do {                                                                                       \
        fprintf(stderr, "SKIP %s: %s\n", __func__, why);                                       \
        skipped++;                                                                             \
        return;                                                                                \
    } while (0)

static char *path_of(const char *name)
{
    static char buf[4][PATH_MAX];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, PATH_MAX, "%s/%s", tmpdir, name);
    return p;
}

/* A file of the given size, sparse, with chunks of data written at offsets. */
struct chunk {
    uint64_t off;
    uint64_t len;
    uint8_t byte;
};

static void make_file(const char *path, uint64_t size, const struct chunk *chunks, size_t n)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, (off_t)size) == 0);
    for (size_t i = 0; i < n; i++) {
        uint8_t *b = malloc(chunks[i].len);
        memset(b, chunks[i].byte, chunks[i].len);
        CHECK(pwrite(fd, b, chunks[i].len, (off_t)chunks[i].off) == (ssize_t)chunks[i].len);
        free(b);
    }
    CHECK(fsync(fd) == 0);
    close(fd);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

static uint64_t file_allocated(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

static struct qimg_node *open_ok(const char *filename, const char *fmt, unsigned flags)
{
    struct qimg_node *n = NULL;
    struct qimg_error err = {0};
    int ret = qimg_open(&n, filename, fmt, NULL, flags, &err);
    if (ret < 0)
        fprintf(stderr, "open %s failed: %s\n", filename, err.msg);
    CHECK(ret == 0 && n);
    return n;
}

/* Does this directory's filesystem take O_DIRECT? */
static bool direct_supported(void)
{
    const char *p = path_of("direct-probe");
    int fd = open(p, O_RDWR | O_CREAT | O_DIRECT, 0644);
    if (fd < 0)
        return false;
    close(fd);
    unlink(p);
    return true;
}

/* Is fd-flag O_DIRECT set on some descriptor of ours open on path? */
static int open_with_direct(const char *path)
{
    DIR *d = opendir("/proc/self/fd");
    char link[PATH_MAX], real[PATH_MAX], want[PATH_MAX];
    int found = -1;
    if (!d || !realpath(path, want)) {
        if (d)
            closedir(d);
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        char fdpath[300];
        snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%s", e->d_name);
        ssize_t l = readlink(fdpath, link, sizeof(link) - 1);
        if (l < 0)
            continue;
        link[l] = '\0';
        if (!realpath(link, real) || strcmp(real, want))
            continue;
        char info[300];
        snprintf(info, sizeof(info), "/proc/self/fdinfo/%s", e->d_name);
        FILE *f = fopen(info, "r");
        if (!f)
            continue;
        char line[256];
        while (fgets(line, sizeof(line), f)) {
            unsigned long fl;
            if (sscanf(line, "flags: %lo", &fl) == 1 && (fl & O_DIRECT))
                found = 1;
            else if (sscanf(line, "flags: %lo", &fl) == 1 && found < 0)
                found = 0;
        }
        fclose(f);
    }
    closedir(d);
    return found;
}

/* ---------------------------------------------------------------- open, probe, options */

static void test_open_probe_raw(void)
{
    const char *p = path_of("probe.img");
    struct chunk c[] = {{0, 4096, 0x11}};
    make_file(p, 65536, c, 1);

    struct qimg_node *n = open_ok(p, NULL, 0);
    if (!n)
        return;
    CHECK_STR(qimg_node_format(n), "raw");
    CHECK(qimg_node_probed_raw(n));
    CHECK(qimg_node_file(n) != NULL);
    CHECK_STR(qimg_node_format(qimg_node_file(n)), "file");
    CHECK_STR(qimg_node_filename(n), p);
    CHECK(qimg_node_length(n) == 65536);
    CHECK(!qimg_node_is_writable(n));
    qimg_node_unref(n);

    n = open_ok(p, "raw", QIMG_O_RDWR);
    if (!n)
        return;
    CHECK(!qimg_node_probed_raw(n));
    CHECK(qimg_node_is_writable(n));
    qimg_node_unref(n);

    /* -f file: the protocol node is the image. */
    n = open_ok(p, "file", 0);
    if (!n)
        return;
    CHECK_STR(qimg_node_format(n), "file");
    CHECK(qimg_node_length(n) == 65536);
    qimg_node_unref(n);
}

static void expect_open_error(const char *filename, const char *fmt, struct qimg_opts *opts,
                              unsigned flags, int code, const char *msg)
{
    struct qimg_node *n = NULL;
    struct qimg_error err = {0};
    int ret = qimg_open(&n, filename, fmt, opts, flags, &err);
    CHECK(ret < 0);
    CHECK(n == NULL);
    if (code)
        CHECK(ret == code);
    CHECK_STR(err.msg, msg);
}

static void test_open_json_and_options(void)
{
    const char *p = path_of("json.img");
    make_file(p, 8192, NULL, 0);
    char json[PATH_MAX + 200], msg[PATH_MAX + 200];

    snprintf(json, sizeof(json),
             "json:{\"driver\": \"raw\", \"file\": {\"driver\": \"file\", \"filename\": \"%s\"}}",
             p);
    struct qimg_node *n = open_ok(json, NULL, 0);
    if (n) {
        CHECK_STR(qimg_node_format(n), "raw");
        CHECK(!qimg_node_probed_raw(n));
        CHECK(qimg_node_length(n) == 8192);
        qimg_node_unref(n);
    }

    snprintf(json, sizeof(json),
             "json:{\"driver\": \"raw\", \"x\": 1, \"file\": {\"driver\": \"file\", "
             "\"filename\": \"%s\"}}",
             p);
    expect_open_error(json, NULL, NULL, 0, -EINVAL,
                      "Block format 'raw' does not support the option 'x'");
    snprintf(json, sizeof(json),
             "json:{\"driver\": \"raw\", \"file\": {\"driver\": \"file\", \"filename\": \"%s\", "
             "\"bogus\": \"1\"}}",
             p);
    expect_open_error(json, NULL, NULL, 0, -EINVAL,
                      "Block protocol 'file' doesn't support the option 'bogus'");

    /* --image-opts style. */
    struct qimg_opts *o = qimg_opts_new();
    struct qimg_error err = {0};
    char spec[PATH_MAX + 100];
    snprintf(spec, sizeof(spec), "driver=raw,file.filename=%s,file.locking=off", p);
    CHECK(qimg_opts_parse(o, spec, NULL, &err) == 0);
    n = NULL;
    CHECK(qimg_open_image_opts(&n, o, QIMG_O_RDWR, &err) == 0);
    if (n) {
        CHECK(qimg_node_length(n) == 8192);
        CHECK(qimg_node_file(n)->perm == 0); /* locking=off holds no byte */
        qimg_node_unref(n);
    }
    qimg_opts_free(o);

    o = qimg_opts_new();
    snprintf(spec, sizeof(spec), "driver=raw,file.filename=%s,x=1", p);
    CHECK(qimg_opts_parse(o, spec, NULL, &err) == 0);
    qimg_error_clear(&err);
    n = NULL;
    CHECK(qimg_open_image_opts(&n, o, 0, &err) == -EINVAL);
    CHECK_STR(err.msg, "Block format 'raw' does not support the option 'x'");
    qimg_opts_free(o);

    /* Options handed to qimg_open with a plain filename. */
    o = qimg_opts_new();
    qimg_opts_set(o, "x", "1");
    expect_open_error(p, "raw", o, 0, -EINVAL,
                      "Block format 'raw' does not support the option 'x'");
    qimg_opts_free(o);
    o = qimg_opts_new();
    qimg_opts_set(o, "file.cache.direct", "maybe");
    expect_open_error(p, "raw", o, 0, -EINVAL, "Parameter 'cache.direct' expects 'on' or 'off'");
    qimg_opts_free(o);
    o = qimg_opts_new();
    qimg_opts_set(o, "file.locking", "sometimes");
    expect_open_error(p, "raw", o, 0, -EINVAL, "invalid parameter value: sometimes");
    qimg_opts_free(o);
    o = qimg_opts_new();
    qimg_opts_set(o, "file.discard", "maybe");
    expect_open_error(p, "raw", o, 0, -EINVAL, "Invalid discard option");
    qimg_opts_free(o);
    o = qimg_opts_new();
    qimg_opts_set(o, "file.aio", "native");
    expect_open_error(p, "raw", o, 0, -EINVAL,
                      "aio=native was specified, but it requires cache.direct=on, which was not "
                      "specified.");
    qimg_opts_free(o);
    o = qimg_opts_new();
    qimg_opts_set(o, "size", "1000");
    expect_open_error(p, "raw", o, 0, -EINVAL, "Specified size is not multiple of 512");
    qimg_opts_free(o);

    expect_open_error(p, "nosuch", NULL, 0, -EINVAL, "Unknown driver 'nosuch'");
    snprintf(msg, sizeof(msg), "Could not open '%s': No such file or directory",
             path_of("missing.img"));
    expect_open_error(path_of("missing.img"), NULL, NULL, 0, -ENOENT, msg);
    snprintf(msg, sizeof(msg), "'file' driver requires '%s' to be a regular file", tmpdir);
    expect_open_error(tmpdir, NULL, NULL, 0, -EINVAL, msg);
    expect_open_error("", NULL, NULL, 0, -EINVAL, "The 'file' block driver requires a file name");
}

static void test_raw_offset_size_window(void)
{
    const char *p = path_of("window.img");
    struct chunk c[] = {{0, 1024, 0xaa}, {1024, 1024, 0xbb}};
    make_file(p, 4096, c, 2);
    struct qimg_opts *o = qimg_opts_new();
    qimg_opts_set(o, "offset", "1024");
    qimg_opts_set(o, "size", "2048");
    struct qimg_node *n = NULL;
    struct qimg_error err = {0};
    CHECK(qimg_open(&n, p, "raw", o, QIMG_O_RDWR, &err) == 0);
    qimg_opts_free(o);
    if (!n)
        return;
    CHECK(qimg_node_length(n) == 2048);
    uint8_t b[16];
    CHECK(qimg_node_pread(n, 0, 16, b, 0) == 0);
    CHECK(b[0] == 0xbb && b[15] == 0xbb);
    CHECK(qimg_node_pread(n, 2040, 16, b, 0) == -EIO);
    memset(b, 0xcc, sizeof(b));
    CHECK(qimg_node_pwrite(n, 2047, 1, b, 0) == 0);
    CHECK(qimg_node_truncate(n, 4096, false, QIMG_PREALLOC_OFF, &err) == -ENOTSUP);
    CHECK_STR(err.msg, "Cannot resize fixed-size raw disks");
    qimg_node_unref(n);
    CHECK(file_size(p) == 4096);
}

/* ---------------------------------------------------------------- requests */

/* Deterministic xorshift for the random request test. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(uint64_t bound)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return bound ? rng_state % bound : 0;
}

/*
 * Random writes, zero writes, discards and reads at odd offsets and lengths,
 * checked against a model of the image; the size is deliberately not a
 * multiple of 512 or 4096 so that the last block is a partial one.
 */
static void random_requests(const char *name, unsigned flags, int rounds)
{
    /* The file is not whole sectors long; the image is (QEMU rounds up to 512). */
    const uint64_t file_len = 3 * 65536 + 1000;
    const uint64_t size = (file_len + 511) & ~(uint64_t)511;
    const char *p = path_of(name);
    struct chunk c[] = {{0, file_len, 0x5a}};
    make_file(p, file_len, c, 1);
    uint8_t *model = calloc(1, size), *buf = malloc(size + 1), *got = malloc(size + 1);
    memset(model, 0x5a, file_len);

    struct qimg_node *n = open_ok(p, "raw", QIMG_O_RDWR | QIMG_O_UNMAP | flags);
    if (!n)
        goto out;
    for (int i = 0; i < rounds; i++) {
        uint64_t off, len;
        switch (rnd(8)) {
        case 0: /* the tail, exactly */
            off = size - 1 - rnd(700);
            len = size - off;
            break;
        case 1: /* tiny */
            off = rnd(size);
            len = 1 + rnd(size - off < 7 ? size - off : 7);
            break;
        default:
            off = rnd(size);
            len = 1 + rnd(size - off < 20000 ? size - off : 20000);
            break;
        }
        /* odd edges: sometimes aligned offsets too */
        if (rnd(4) == 0)
            off &= ~(uint64_t)511;
        if (off + len > size)
            len = size - off;
        int op = (int)rnd(4), ret;
        if (op == 0) {
            for (uint64_t k = 0; k < len; k++)
                buf[k] = (uint8_t)(i * 31 + k);
            ret = qimg_node_pwrite(n, off, len, buf, 0);
            memcpy(model + off, buf, len);
        } else if (op == 1) {
            ret = qimg_node_pwrite_zeroes(n, off, len, rnd(2) ? QIMG_REQ_MAY_UNMAP : 0);
            memset(model + off, 0, len);
        } else if (op == 2) {
            /* Discard on a file reads back as zeroes where it happened, as before elsewhere. */
            ret = qimg_node_pdiscard(n, off, len);
            if (ret == 0) {
                CHECK(qimg_node_pread(n, off, len, got, 0) == 0);
                for (uint64_t k = 0; k < len; k++)
                    if (got[k] != 0)
                        got[k] = model[off + k];
                memcpy(model + off, got, len);
            }
        } else {
            /* An unaligned buffer as well as unaligned offsets. */
            ret = qimg_node_pread(n, off, len, got + 1, 0);
            if (ret == 0 && memcmp(got + 1, model + off, len) != 0) {
                fprintf(stderr, "%s: mismatch reading [%llu, +%llu) at round %d\n", name,
                        (unsigned long long)off, (unsigned long long)len, i);
                CHECK(0);
                break;
            }
        }
        if (ret != 0) {
            fprintf(stderr, "%s: op %d [%llu, +%llu) failed: %s\n", name, op,
                    (unsigned long long)off, (unsigned long long)len, strerror(-ret));
            CHECK(0);
            break;
        }
        CHECK(qimg_node_length(n) == (int64_t)size);
    }
    CHECK(qimg_node_flush(n) == 0);
    CHECK(qimg_node_pread(n, 0, size, got, 0) == 0);
    CHECK(memcmp(got, model, size) == 0);
    qimg_node_unref(n);
    /*
     * The file itself: the same bytes, and nothing past the image's end. It
     * keeps its length unless a write reached the sector tail, which grows it
     * to the rounded size as in QEMU.
     */
    int64_t flen = file_size(p);
    CHECK(flen == (int64_t)file_len || flen == (int64_t)size);
    int fd = open(p, O_RDONLY);
    CHECK(fd >= 0 && pread(fd, got, size + 1, 0) == flen);
    CHECK(memcmp(got, model, (size_t)flen) == 0);
    close(fd);
out:
    free(model);
    free(buf);
    free(got);
}

static void test_requests_buffered(void)
{
    random_requests("rw-buffered.img", 0, 600);
}

static void test_requests_writethrough(void)
{
    random_requests("rw-writethrough.img", QIMG_O_WRITETHROUGH, 100);
}

static void test_requests_direct(void)
{
    if (!direct_supported())
        SKIP("the temporary directory's filesystem does not support O_DIRECT");
    random_requests("rw-direct.img", QIMG_O_NOCACHE, 600);
    random_requests("rw-directsync.img", QIMG_O_NOCACHE | QIMG_O_WRITETHROUGH, 100);
}

/* O_DIRECT on an image smaller than one alignment unit: everything is tail. */
static void test_direct_tiny_image(void)
{
    if (!direct_supported())
        SKIP("the temporary directory's filesystem does not support O_DIRECT");
    const char *p = path_of("tiny.img");
    struct chunk c[] = {{0, 100, 0x77}};
    make_file(p, 100, c, 1);
    struct qimg_node *n = open_ok(p, "raw", QIMG_O_RDWR | QIMG_O_NOCACHE);
    if (!n)
        return;
    CHECK(qimg_node_file(n)->request_alignment >= 512);
    uint8_t b[100];
    CHECK(qimg_node_pread(n, 0, 100, b, 0) == 0);
    CHECK(b[0] == 0x77 && b[99] == 0x77);
    memset(b, 0x33, 10);
    CHECK(qimg_node_pwrite(n, 90, 10, b, 0) == 0);
    CHECK(qimg_node_pwrite_zeroes(n, 0, 5, 0) == 0);
    CHECK(qimg_node_pread(n, 0, 100, b, 0) == 0);
    CHECK(b[0] == 0 && b[4] == 0 && b[5] == 0x77 && b[89] == 0x77 && b[90] == 0x33 &&
          b[99] == 0x33);
    /* The image is one whole sector: the tail past the file's 100 bytes reads as zeroes. */
    CHECK(qimg_node_length(n) == 512);
    CHECK(qimg_node_pread(n, 99, 2, b, 0) == 0 && b[0] == 0x33 && b[1] == 0);
    CHECK(qimg_node_pread(n, 511, 2, b, 0) == -EIO);
    qimg_node_unref(n);
    /* O_DIRECT writes whole sectors: the file may have grown to the image's one sector. */
    CHECK(file_size(p) == 100 || file_size(p) == 512);
}

static void test_bounds(void)
{
    const char *p = path_of("bounds.img");
    make_file(p, 4096, NULL, 0);
    struct qimg_node *n = open_ok(p, "raw", QIMG_O_RDWR);
    if (!n)
        return;
    uint8_t b[8192] = {0};
    CHECK(qimg_node_pread(n, 4096, 0, b, 0) == 0);
    CHECK(qimg_node_pread(n, 4095, 1, b, 0) == 0);
    CHECK(qimg_node_pread(n, 4095, 2, b, 0) == -EIO);
    CHECK(qimg_node_pread(n, 4097, 0, b, 0) == -EIO);
    CHECK(qimg_node_pread(n, 0, 8192, b, 0) == -EIO);
    CHECK(qimg_node_pread(n, UINT64_MAX - 10, 20, b, 0) == -EIO);
    CHECK(qimg_node_pread(n, 10, UINT64_MAX - 5, b, 0) == -EIO);
    CHECK(qimg_node_pwrite(n, 4000, 100, b, 0) == -EIO);
    CHECK(qimg_node_pwrite_zeroes(n, 4000, 100, 0) == -EIO);
    CHECK(qimg_node_pdiscard(n, 4000, 100) == -EIO);
    CHECK(file_size(p) == 4096);
    struct qimg_block_status st;
    CHECK(qimg_node_block_status(n, 4096, 10, &st) == -EINVAL);
    qimg_node_unref(n);
}

static void test_read_only(void)
{
    const char *p = path_of("ro.img");
    struct chunk c[] = {{0, 4096, 0x42}};
    make_file(p, 4096, c, 1);
    struct qimg_node *n = open_ok(p, "raw", 0);
    if (!n)
        return;
    uint8_t b[512] = {0};
    struct qimg_error err = {0};
    CHECK(qimg_node_pwrite(n, 0, 512, b, 0) == -EPERM);
    CHECK(qimg_node_pwrite(n, 1, 3, b, 0) == -EPERM);
    CHECK(qimg_node_pwrite_zeroes(n, 0, 512, 0) == -EPERM);
    CHECK(qimg_node_pdiscard(n, 0, 512) == -EPERM);
    CHECK(qimg_node_pwrite(qimg_node_file(n), 0, 512, b, 0) == -EPERM);
    CHECK(qimg_node_truncate(n, 8192, false, QIMG_PREALLOC_OFF, &err) == -EACCES);
    CHECK_STR(err.msg, "Image is read-only");
    CHECK(qimg_node_pread(n, 0, 512, b, 0) == 0 && b[0] == 0x42);
    qimg_node_unref(n);
    CHECK(file_size(p) == 4096);
}

static void test_discard_modes(void)
{
    const char *p = path_of("discard.img");
    struct chunk c[] = {{0, 1 << 20, 0x99}};
    make_file(p, 1 << 20, c, 1);
    uint64_t before = file_allocated(p);

    /* discard=ignore (the default): nothing happens. */
    struct qimg_node *n = open_ok(p, "raw", QIMG_O_RDWR);
    if (!n)
        return;
    CHECK(qimg_node_pdiscard(n, 0, 1 << 20) == 0);
    CHECK(qimg_node_pwrite_zeroes(n, 0, 512 << 10, QIMG_REQ_MAY_UNMAP) == 0);
    qimg_node_unref(n);
    CHECK(file_allocated(p) == before);

    /* discard=unmap: holes. */
    n = open_ok(p, "raw", QIMG_O_RDWR | QIMG_O_UNMAP);
    if (!n)
        return;
    CHECK(qimg_node_pdiscard(n, 512 << 10, 512 << 10) == 0);
    CHECK(qimg_node_pwrite_zeroes(n, 0, 256 << 10, QIMG_REQ_MAY_UNMAP) == 0);
    uint8_t b[4096];
    CHECK(qimg_node_pread(n, (512 << 10) + 100, 4096, b, 0) == 0);
    CHECK(b[0] == 0 && b[4095] == 0);
    qimg_node_unref(n);
    CHECK(file_allocated(p) <= (256 << 10) + 8192);

    /* The same through --image-opts' discard option on the file. */
    make_file(p, 1 << 20, c, 1);
    struct qimg_opts *o = qimg_opts_new();
    qimg_opts_set(o, "discard", "unmap"); /* -f file: the protocol node takes it */
    struct qimg_error err = {0};
    n = NULL;
    CHECK(qimg_open(&n, p, "file", o, QIMG_O_RDWR, &err) == 0);
    qimg_opts_free(o);
    if (!n)
        return;
    CHECK(qimg_node_pdiscard(n, 0, 1 << 20) == 0);
    qimg_node_unref(n);
    CHECK(file_allocated(p) < before);
    CHECK(file_size(p) == 1 << 20);
}

/* ---------------------------------------------------------------- block status */

static void test_block_status(void)
{
    const char *p = path_of("sparse.img");
    struct chunk c[] = {{64 << 10, 64 << 10, 1}, {512 << 10, 4096, 2}};
    make_file(p, 1 << 20, c, 2);
    struct qimg_node *n = open_ok(p, "raw", 0);
    if (!n)
        return;
    struct qimg_node *f = qimg_node_file(n);
    struct qimg_block_status st;

    /* Does the filesystem report holes at all? */
    CHECK(qimg_node_block_status(f, 0, 1 << 20, &st) == 0);
    if (st.flags & QIMG_BLK_DATA) {
        qimg_node_unref(n);
        SKIP("the filesystem reports no holes (no SEEK_HOLE)");
    }
    CHECK(st.flags == (QIMG_BLK_ZERO | QIMG_BLK_OFFSET_VALID));
    CHECK(st.bytes == 64 << 10);
    CHECK(st.offset == 0);

    CHECK(qimg_node_block_status(f, 64 << 10, 1 << 20, &st) == 0);
    CHECK(st.flags == (QIMG_BLK_DATA | QIMG_BLK_OFFSET_VALID));
    CHECK(st.bytes == 64 << 10);
    CHECK(st.offset == 64 << 10);
    CHECK(st.file == f);

    /* len limits the answer; the hole up to EOF. */
    CHECK(qimg_node_block_status(f, 64 << 10, 1000, &st) == 0);
    CHECK(st.bytes == 1000);
    CHECK(qimg_node_block_status(f, (512 << 10) + 4096, 1 << 20, &st) == 0);
    CHECK(st.flags == (QIMG_BLK_ZERO | QIMG_BLK_OFFSET_VALID));
    CHECK(st.bytes == (1 << 20) - (512 << 10) - 4096);

    /* raw: file holes become ZERO (the RECURSE flag never leaks out). */
    CHECK(qimg_node_block_status(n, 0, 1 << 20, &st) == 0);
    CHECK(st.flags == (QIMG_BLK_ZERO | QIMG_BLK_OFFSET_VALID));
    CHECK(st.bytes == 64 << 10);
    CHECK(st.file == f);
    CHECK(qimg_node_block_status(n, 100 << 10, 1 << 20, &st) == 0);
    CHECK(st.flags == (QIMG_BLK_DATA | QIMG_BLK_OFFSET_VALID));
    CHECK(st.bytes == 28 << 10);
    CHECK(st.offset == 100 << 10);
    CHECK(st.file == f);

    /* A single-layer chain answers the same, from depth 0. */
    uint64_t off = 0, data = 0;
    while (off < (1 << 20)) {
        CHECK(qimg_chain_block_status(n, NULL, off, (1 << 20) - off, &st) == 0);
        CHECK(st.depth == 0);
        CHECK(st.bytes > 0);
        CHECK(!(st.flags & QIMG_BLK_RECURSE));
        if (st.bytes == 0)
            break;
        if (st.flags & QIMG_BLK_DATA)
            data += st.bytes;
        off += st.bytes;
    }
    CHECK(off == 1 << 20);
    CHECK(data == (64 << 10) + 4096);
    qimg_node_unref(n);
}

/* ---------------------------------------------------------------- truncate, create */

static void test_truncate(void)
{
    const char *p = path_of("trunc.img");
    make_file(p, 4096, NULL, 0);
    struct qimg_node *n = open_ok(p, "raw", QIMG_O_RDWR | QIMG_O_RESIZE);
    if (!n)
        return;
    struct qimg_error err = {0};

    CHECK(qimg_node_truncate(n, 8 << 20, false, QIMG_PREALLOC_OFF, &err) == 0);
    CHECK(qimg_node_length(n) == 8 << 20);
    CHECK(file_allocated(p) < 1 << 20);

    CHECK(qimg_node_truncate(n, 16 << 20, false, QIMG_PREALLOC_FALLOC, &err) == 0);
    CHECK(file_size(p) == 16 << 20);
    CHECK(file_allocated(p) >= 8 << 20);

    CHECK(qimg_node_truncate(n, 20 << 20, false, QIMG_PREALLOC_FULL, &err) == 0);
    CHECK(file_size(p) == 20 << 20);
    CHECK(file_allocated(p) >= 12 << 20);
    uint8_t b[4096];
    CHECK(qimg_node_pread(n, (20 << 20) - 4096, 4096, b, 0) == 0);
    CHECK(b[0] == 0 && b[4095] == 0);

    CHECK(qimg_node_truncate(n, 1 << 20, false, QIMG_PREALLOC_OFF, &err) == 0);
    CHECK(qimg_node_length(n) == 1 << 20);

    qimg_error_clear(&err);
    CHECK(qimg_node_truncate(n, 2 << 20, false, QIMG_PREALLOC_METADATA, &err) == -ENOTSUP);
    CHECK_STR(err.msg, "Unsupported preallocation mode: metadata");
    qimg_error_clear(&err);
    CHECK(qimg_node_truncate(n, 512 << 10, false, QIMG_PREALLOC_FULL, &err) < 0);
    CHECK_STR(err.msg, "Preallocation can only be used for growing images");
    CHECK(qimg_node_length(n) == 1 << 20);
    qimg_node_unref(n);
}

static void test_create_and_describe(void)
{
    const struct qimg_driver *raw = qimg_driver_find("raw");
    struct qimg_opts *o = qimg_opts_new();
    qimg_opts_set(o, "size", "1048576");
    char *line = qimg_create_describe("x.raw", raw, o);
    CHECK_STR(line, "Formatting 'x.raw', fmt=raw size=1048576");
    free(line);
    qimg_opts_set(o, "preallocation", "full");
    line = qimg_create_describe("x.raw", raw, o);
    CHECK_STR(line, "Formatting 'x.raw', fmt=raw size=1048576 preallocation=full");
    free(line);
    qimg_opts_free(o);

    const char *p = path_of("created.raw");
    struct qimg_error err = {0};
    o = qimg_opts_new();
    qimg_opts_set(o, "size", "1000");
    CHECK(qimg_create(p, "raw", o, &err) == 0);
    qimg_opts_free(o);
    CHECK(file_size(p) == 1024); /* whole sectors */

    o = qimg_opts_new();
    qimg_opts_set(o, "size", "2097152");
    qimg_opts_set(o, "preallocation", "falloc");
    CHECK(qimg_create(p, "raw", o, &err) == 0);
    qimg_opts_free(o);
    CHECK(file_size(p) == 2 << 20);
    CHECK(file_allocated(p) >= 2 << 20);

    o = qimg_opts_new();
    qimg_opts_set(o, "size", "1048576");
    qimg_opts_set(o, "preallocation", "metadata");
    CHECK(qimg_create(p, "raw", o, &err) == -ENOTSUP);
    CHECK_STR(err.msg, "Unsupported preallocation mode: metadata");
    qimg_opts_free(o);
    CHECK(file_size(p) == 0); /* as QEMU: the old contents are gone by then */

    qimg_error_clear(&err);
    make_file(p, 12345, NULL, 0);
    o = qimg_opts_new();
    qimg_opts_set(o, "size", "1048576");
    qimg_opts_set(o, "preallocation", "bogus");
    CHECK(qimg_create(p, "raw", o, &err) == -EINVAL);
    CHECK_STR(err.msg, "invalid parameter value: bogus");
    qimg_opts_free(o);
    CHECK(file_size(p) == 12345); /* a refused create leaves the old file alone */

    qimg_error_clear(&err);
    CHECK(qimg_create(p, "nosuch", NULL, &err) == -EINVAL);
    CHECK_STR(err.msg, "Unknown file format 'nosuch'");

    qimg_error_clear(&err);
    o = qimg_opts_new();
    qimg_opts_set(o, "size", "1048576");
    char msg[PATH_MAX + 64];
    snprintf(msg, sizeof(msg), "Could not create '%s': Is a directory", tmpdir);
    CHECK(qimg_create(tmpdir, "raw", o, &err) == -EISDIR);
    CHECK_STR(err.msg, msg);
    qimg_opts_free(o);
}

/* ---------------------------------------------------------------- cache modes */

static void test_cache_parse(void)
{
    static const struct {
        const char *mode;
        unsigned flags;
    } modes[] = {
        {"none", QIMG_O_NOCACHE},
        {"off", QIMG_O_NOCACHE},
        {"writeback", 0},
        {"writethrough", QIMG_O_WRITETHROUGH},
        {"directsync", QIMG_O_NOCACHE | QIMG_O_WRITETHROUGH},
        {"unsafe", QIMG_O_NO_FLUSH},
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        unsigned f = 0xdead;
        CHECK(qimg_cache_parse(modes[i].mode, &f) == 0);
        CHECK(f == modes[i].flags);
    }
    unsigned f = 0;
    CHECK(qimg_cache_parse("bogus", &f) == -EINVAL);
    CHECK(qimg_cache_parse("", &f) == -EINVAL);
    CHECK(qimg_cache_parse("None", &f) == -EINVAL);
}

static void test_cache_modes_open(void)
{
    const char *p = path_of("cache.img");
    make_file(p, 1 << 20, NULL, 0);
    struct qimg_node *n = open_ok(p, "raw", QIMG_O_RDWR);
    if (n) {
        CHECK(open_with_direct(p) == 0);
        CHECK(qimg_node_file(n)->request_alignment == 1);
        qimg_node_unref(n);
    }
    n = open_ok(p, "raw", QIMG_O_RDWR | QIMG_O_NO_FLUSH);
    if (n) {
        CHECK(qimg_node_flush(n) == 0);
        qimg_node_unref(n);
    }
    if (!direct_supported())
        SKIP("the temporary directory's filesystem does not support O_DIRECT");
    unsigned flags;
    CHECK(qimg_cache_parse("none", &flags) == 0);
    n = open_ok(p, "raw", QIMG_O_RDWR | flags);
    if (n) {
        CHECK(open_with_direct(p) == 1);
        uint32_t a = qimg_node_file(n)->request_alignment;
        CHECK(a >= 512 && a <= 4096 && (a & (a - 1)) == 0);
        CHECK(n->request_alignment == a);
        CHECK(qimg_node_flush(n) == 0);
        qimg_node_unref(n);
    }
    /* cache.direct=on as an option does the same. */
    struct qimg_opts *o = qimg_opts_new();
    qimg_opts_set(o, "file.cache.direct", "on");
    struct qimg_error err = {0};
    n = NULL;
    CHECK(qimg_open(&n, p, "raw", o, 0, &err) == 0);
    qimg_opts_free(o);
    if (n) {
        CHECK(open_with_direct(p) == 1);
        qimg_node_unref(n);
    }
    CHECK(open_with_direct(p) == -1); /* everything closed */
}

/* ---------------------------------------------------------------- locking */

static void test_locks_between_opens(void)
{
    const char *p = path_of("locked.img");
    make_file(p, 1 << 20, NULL, 0);
    char msg[PATH_MAX + 200];
    struct qimg_error err = {0};

    struct qimg_node *w = open_ok(p, "raw", QIMG_O_RDWR | QIMG_O_RESIZE);
    if (!w)
        return;
    CHECK(qimg_node_file(w)->perm ==
          (QIMG_PERM_CONSISTENT_READ | QIMG_PERM_WRITE | QIMG_PERM_RESIZE));
    /* raw shares everything: readers and writers get in. */
    struct qimg_node *r = open_ok(p, NULL, 0);
    qimg_node_unref(r);
    r = open_ok(p, "raw", QIMG_O_RDWR);
    qimg_node_unref(r);
    /* A creator refuses to let anyone else resize. */
    struct qimg_opts *o = qimg_opts_new();
    qimg_opts_set(o, "size", "4096");
    CHECK(qimg_create(p, "raw", o, &err) == -EAGAIN);
    snprintf(msg, sizeof(msg),
             "Failed to get shared \"resize\" lock\nIs another process using the image [%s]?", p);
    CHECK_STR(err.msg, msg);
    CHECK(file_size(p) == 1 << 20);
    qimg_node_unref(w);

    /* Nothing left behind: now the create goes through. */
    qimg_error_clear(&err);
    CHECK(qimg_create(p, "raw", o, &err) == 0);
    qimg_opts_free(o);
    CHECK(file_size(p) == 4096);

    /* locking=off on the holder lets the creator through. */
    o = qimg_opts_new();
    qimg_opts_set(o, "file.locking", "off");
    w = NULL;
    CHECK(qimg_open(&w, p, "raw", o, QIMG_O_RDWR | QIMG_O_RESIZE, &err) == 0);
    qimg_opts_free(o);
    o = qimg_opts_new();
    qimg_opts_set(o, "size", "8192");
    CHECK(qimg_create(p, "raw", o, &err) == 0);
    qimg_opts_free(o);
    qimg_node_unref(w);
}

/* ---------------------------------------------------------------- probed raw guard */

static const uint8_t fake_magic[4] = {'Q', 'T', 'S', 'T'};

static int fake_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= 4 && memcmp(buf, fake_magic, 4) == 0 ? 100 : 0;
}

static int fake_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    (void)n;
    (void)opts;
    return qimg_error_set(err, -ENOTSUP, "fake format");
}

static const struct qimg_driver fake_driver = {
    .name = "qimgtestfmt",
    .probe = fake_probe,
    .open = fake_open,
};

static void guard_magic(const char *fmtname, const uint8_t *magic, size_t mlen)
{
    const char *p = path_of("guard.img");
    make_file(p, 65536, NULL, 0);
    struct qimg_node *n = open_ok(p, NULL, QIMG_O_RDWR);
    if (!n)
        return;
    CHECK(qimg_node_probed_raw(n));
    uint8_t b[1024] = {0};
    memcpy(b, magic, mlen);
    /* The whole magic at 0, in one write or by completing a prefix already there. */
    CHECK(qimg_node_pwrite(n, 0, 512, b, 0) == -EPERM);
    CHECK(qimg_node_pwrite(n, 0, mlen, b, 0) == -EPERM);
    CHECK(qimg_node_pwrite(n, 0, 1, b, 0) == 0);
    CHECK(qimg_node_pwrite(n, 1, mlen - 1, b + 1, 0) == -EPERM);
    /* Elsewhere it is just data. */
    CHECK(qimg_node_pwrite(n, 512, mlen, b, 0) == 0);
    CHECK(qimg_node_pwrite(n, 4096, 1024, b, 0) == 0);
    qimg_node_unref(n);
    uint8_t head[4];
    int fd = open(p, O_RDONLY);
    CHECK(pread(fd, head, 4, 0) == 4);
    close(fd);
    CHECK(memcmp(head, magic, mlen < 4 ? mlen : 4) != 0);

    /* With the format named, nothing is restricted. */
    n = open_ok(p, "raw", QIMG_O_RDWR);
    if (!n)
        return;
    CHECK(qimg_node_pwrite(n, 0, 512, b, 0) == 0);
    qimg_node_unref(n);
    /* ... and the image now probes as the other format. */
    uint8_t sector[512];
    fd = open(p, O_RDONLY);
    CHECK(pread(fd, sector, sizeof(sector), 0) == (ssize_t)sizeof(sector));
    close(fd);
    CHECK(qimg_probe_buffer(sector, sizeof(sector), p) == qimg_driver_find(fmtname));
}

static void test_probed_raw_guard(void)
{
    qimg_driver_register(&fake_driver);
    guard_magic("qimgtestfmt", fake_magic, sizeof(fake_magic));
    if (qimg_driver_find("qcow2")) {
        /* "QFI\xfb" and a version: what the qcow2 probe (as QEMU's) recognises. */
        static const uint8_t qcow2_magic[8] = {'Q', 'F', 'I', 0xfb, 0, 0, 0, 3};
        guard_magic("qcow2", qcow2_magic, sizeof(qcow2_magic));
    }
}

/* ---------------------------------------------------------------- info */

static void test_image_info(void)
{
    const char *p = path_of("info.img");
    struct chunk c[] = {{0, 8192, 1}};
    make_file(p, 1 << 20, c, 1);
    struct qimg_node *n = open_ok(p, NULL, QIMG_O_NO_IO);
    if (!n)
        return;
    struct qimg_error err = {0};
    struct qimg_json *j = qimg_node_image_info(n, &err);
    CHECK(j != NULL);
    if (j) {
        CHECK_STR(qimg_json_get(j, "format")->s, "raw");
        CHECK(qimg_json_get(j, "virtual-size")->i == 1 << 20);
        CHECK(qimg_json_get(j, "actual-size")->i >= 8192);
        struct qimg_json *children = qimg_json_get(j, "children");
        CHECK(children && children->n == 1);
        qimg_json_free(j);
    }
    /* info takes no "consistent read" lock (QEMU's info opens without I/O). */
    CHECK(qimg_node_file(n)->perm == 0);
    qimg_node_unref(n);
}

/* ---------------------------------------------------------------- main */

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(void)
{
    static const struct harness_test tests[] = {
        {"open_probe_raw", test_open_probe_raw},
        {"open_json_and_options", test_open_json_and_options},
        {"raw_offset_size_window", test_raw_offset_size_window},
        {"requests_buffered", test_requests_buffered},
        {"requests_writethrough", test_requests_writethrough},
        {"requests_direct", test_requests_direct},
        {"direct_tiny_image", test_direct_tiny_image},
        {"bounds", test_bounds},
        {"read_only", test_read_only},
        {"discard_modes", test_discard_modes},
        {"block_status", test_block_status},
        {"truncate", test_truncate},
        {"create_and_describe", test_create_and_describe},
        {"cache_parse", test_cache_parse},
        {"cache_modes_open", test_cache_modes_open},
        {"locks_between_opens", test_locks_between_opens},
        {"probed_raw_guard", test_probed_raw_guard},
        {"image_info", test_image_info},
        {NULL, NULL},
    };
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/var/tmp";
    snprintf(tmpdir, sizeof(tmpdir), "%s/qimg-test-core-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    qimg_init();
    int ret = harness_run(tests);
    if (skipped)
        fprintf(stderr, "%d test(s) skipped parts (see SKIP lines)\n", skipped);
    rm_tree(tmpdir);
    return ret;
}
