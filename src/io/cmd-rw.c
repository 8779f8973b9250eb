/* SPDX-License-Identifier: MIT */
/*
 * read, readv, write, writev and the aio_ forms. The aio commands complete
 * before returning (same output as qemu-io once aio_flush has run) until a
 * breakpoint is set; then they run on threads of their own and report at
 * poll points (aio.c). Like qemu-io's, they never fail the command: errors
 * are only printed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "io/io.h"
#include "util/mem.h"

#define SECTOR 512

static uint8_t *io_alloc(int64_t len, int pattern)
{
    uint8_t *buf = qimg_alloc_aligned(len ? (size_t)len : 1);
    if (!buf) {
        fprintf(stderr, "%s: Out of memory\n", io_prog);
        exit(1);
    }
    memset(buf, pattern, len ? (size_t)len : 1);
    return buf;
}

static int parse_num(const char *arg, int64_t *out)
{
    *out = io_cvtnum(arg);
    if (*out < 0) {
        io_print_cvtnum_err(*out, arg);
        return -1;
    }
    return 0;
}

static bool check_sector_aligned(int64_t v, const char *what)
{
    if (v & (SECTOR - 1)) {
        printf("%" PRId64 " is not a sector-aligned value for '%s'\n", v, what);
        return false;
    }
    return true;
}

static int64_t pattern_mismatch(const uint8_t *buf, int pattern, int64_t len)
{
    for (int64_t i = 0; i < len; i++)
        if (buf[i] != pattern)
            return i;
    return -1;
}

static void finish(const char *op, struct timeval t1, int64_t off, int64_t count, bool cflag)
{
    struct timeval t2;
    gettimeofday(&t2, NULL);
    t2 = io_tdiff(t2, t1);
    io_print_report(op, &t2, off, count, count, 1, cflag);
}

int io_cmd_read(int argc, char **argv)
{
    bool cflag = false, qflag = false, vflag = false, bflag = false, sflag = false, lflag = false;
    int pattern = -1, c;
    int64_t poff = 0, pcount = 0, off, count;

    while ((c = getopt(argc, argv, "bCpP:qs:l:v")) != -1) {
        switch (c) {
        case 'b': bflag = true; break;
        case 'C': cflag = true; break;
        case 'p': break; /* ignored for backwards compatibility */
        case 'P':
            pattern = io_parse_pattern(optarg);
            if (pattern < 0)
                return -EINVAL;
            break;
        case 'q': qflag = true; break;
        case 'l':
            if (parse_num(optarg, &pcount) < 0)
                return -EINVAL;
            lflag = true;
            break;
        case 's':
            if (parse_num(optarg, &poff) < 0)
                return -EINVAL;
            sflag = true;
            break;
        case 'v': vflag = true; break;
        default:
            io_usage(io_find_command("read"));
            return -EINVAL;
        }
    }
    if (optind != argc - 2) {
        io_usage(io_find_command("read"));
        return -EINVAL;
    }
    if (parse_num(argv[optind], &off) < 0 || parse_num(argv[optind + 1], &count) < 0)
        return -EINVAL;
    if (count > IO_REQUEST_MAX) {
        printf("length cannot exceed %lld, given %s\n", IO_REQUEST_MAX, argv[optind + 1]);
        return -EINVAL;
    }
    if (pattern < 0 && (lflag || sflag)) {
        io_usage(io_find_command("read"));
        return -EINVAL;
    }
    if (!lflag)
        pcount = count - poff;
    if (pcount < 0 || poff + pcount > count) {
        printf("pattern verification range exceeds end of read data\n");
        return -EINVAL;
    }
    if (bflag && (!check_sector_aligned(off, "offset") || !check_sector_aligned(count, "count")))
        return -EINVAL;

    uint8_t *buf = io_alloc(count, 0xab);
    struct timeval t1;
    gettimeofday(&t1, NULL);
    /* The VM state area belongs to formats with internal snapshots; none here has one. */
    int ret = bflag ? qimg_node_vmstate_rw(io_img.node, (uint64_t)off, buf, (uint64_t)count, false)
                    : qimg_node_pread(io_img.node, (uint64_t)off, (uint64_t)count, buf, 0);
    struct timeval t2;
    gettimeofday(&t2, NULL);
    if (ret < 0) {
        printf("read failed: %s\n", strerror(-ret));
        goto out;
    }
    if (pattern >= 0 && pattern_mismatch(buf + poff, pattern, pcount) >= 0) {
        printf("Pattern verification failed at offset %" PRId64 ", %" PRId64 " bytes\n",
               off + poff, pcount);
        ret = -EINVAL;
    }
    if (qflag)
        goto out;
    if (vflag)
        io_dump_buffer(buf, off, count);
    t2 = io_tdiff(t2, t1);
    io_print_report("read", &t2, off, count, count, 1, cflag);
out:
    free(buf);
    return ret;
}

/* "off len [len..]" of the vectored commands: the offset and the summed length. */
static int parse_vector(int argc, char **argv, int first, int64_t *off, int64_t *total)
{
    if (parse_num(argv[first], off) < 0)
        return -1;
    *total = 0;
    for (int i = first + 1; i < argc; i++) {
        int64_t len;
        if (parse_num(argv[i], &len) < 0)
            return -1;
        if (len > IO_REQUEST_MAX) {
            printf("Argument '%s' exceeds maximum size %lld\n", argv[i], IO_REQUEST_MAX);
            return -1;
        }
        *total += len;
    }
    return 0;
}

static int read_perform(struct io_req *r)
{
    return qimg_node_pread(r->node, (uint64_t)r->off, (uint64_t)r->count, r->buf, 0);
}

/* What readv and aio_read print once the read is done; negative when it failed. */
static int read_report(struct io_req *r)
{
    if (r->ret < 0) {
        printf("readv failed: %s\n", strerror(-r->ret));
        return r->ret;
    }
    int ret = 0;
    if (r->pattern >= 0 && pattern_mismatch(r->buf, r->pattern, r->count) >= 0) {
        printf("Pattern verification failed at offset %" PRId64 ", %" PRId64 " bytes\n", r->off,
               r->count);
        ret = -EINVAL;
    }
    if (r->qflag)
        return ret;
    if (r->vflag)
        io_dump_buffer(r->buf, r->off, r->count);
    struct timeval t = io_tdiff(r->t2, r->t1);
    io_print_report("read", &t, r->off, r->count, r->count, 1, r->cflag);
    return ret;
}

static void read_complete(struct io_req *r)
{
    read_report(r);
}

/* readv and aio_read: one read over the summed buffers. */
static int vector_read(int argc, char **argv, bool aio)
{
    bool cflag = false, qflag = false, vflag = false;
    int pattern = -1, c;
    int64_t off, count;
    const char *name = aio ? "aio_read" : "readv";

    while ((c = getopt(argc, argv, aio ? "CP:iqv" : "CP:qv")) != -1) {
        switch (c) {
        case 'C': cflag = true; break;
        case 'P':
            pattern = io_parse_pattern(optarg);
            if (pattern < 0)
                return aio ? 0 : -EINVAL;
            break;
        case 'i':
            printf("injecting invalid read request\n");
            return 0;
        case 'q': qflag = true; break;
        case 'v': vflag = true; break;
        default:
            io_usage(io_find_command(name));
            return aio ? 0 : -EINVAL;
        }
    }
    if (optind > argc - 2) {
        io_usage(io_find_command(name));
        return aio ? 0 : -EINVAL;
    }
    if (parse_vector(argc, argv, optind, &off, &count) < 0)
        return aio ? 0 : -EINVAL;

    struct io_req *r = xcalloc(1, sizeof(*r));
    *r = (struct io_req){.perform = read_perform, .complete = read_complete, .node = io_img.node,
                         .off = off, .count = count, .buf = io_alloc(count, 0xab),
                         .pattern = pattern, .qflag = qflag, .vflag = vflag, .cflag = cflag,
                         .name = name};
    if (!aio) {
        /* readv reports its own failure */
        gettimeofday(&r->t1, NULL);
        r->ret = read_perform(r);
        gettimeofday(&r->t2, NULL);
        int ret = read_report(r);
        io_req_free(r);
        return ret;
    }
    io_req_run(r);
    return 0;
}

int io_cmd_readv(int argc, char **argv)
{
    return vector_read(argc, argv, false);
}

int io_cmd_aio_read(int argc, char **argv)
{
    return vector_read(argc, argv, true);
}

/* Fill buf from the start of a file (write -s). */
static int read_source_file(const char *path, uint8_t *buf, int64_t count)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    int64_t done = 0;
    while (done < count) {
        ssize_t r = read(fd, buf + done, (size_t)(count - done));
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
            else
                io_error("Failed to read all bytes");
            close(fd);
            return -1;
        }
        done += r;
    }
    close(fd);
    return 0;
}

int io_cmd_write(int argc, char **argv)
{
    bool bflag = false, cflag = false, Cflag = false, qflag = false, zflag = false;
    bool fua = false, unmap = false, nofallback = false;
    const char *source = NULL;
    int pattern = 0xcd, c, sources = 0;
    int64_t off, count;

    while ((c = getopt(argc, argv, "bcCfnpP:quzs:")) != -1) {
        switch (c) {
        case 'b': bflag = true; break;
        case 'c': cflag = true; break;
        case 'C': Cflag = true; break;
        case 'f': fua = true; break;
        case 'n': nofallback = true; break;
        case 'p': break; /* ignored for backwards compatibility */
        case 'P':
            sources++;
            pattern = io_parse_pattern(optarg);
            if (pattern < 0)
                return -EINVAL;
            break;
        case 'q': qflag = true; break;
        case 's':
            sources++;
            source = optarg;
            break;
        case 'u': unmap = true; break;
        case 'z':
            sources++;
            zflag = true;
            break;
        default:
            io_usage(io_find_command("write"));
            return -EINVAL;
        }
    }
    if (optind != argc - 2) {
        io_usage(io_find_command("write"));
        return -EINVAL;
    }
    if (bflag && zflag) {
        printf("-b and -z cannot be specified at the same time\n");
        return -EINVAL;
    }
    if (fua && (bflag || cflag)) {
        printf("-f and -b or -c cannot be specified at the same time\n");
        return -EINVAL;
    }
    if (nofallback && !zflag) {
        printf("-n requires -z to be specified\n");
        return -EINVAL;
    }
    if (unmap && !zflag) {
        printf("-u requires -z to be specified\n");
        return -EINVAL;
    }
    if (sources > 1) {
        printf("Only one of -z, -P, and -s can be specified at the same time\n");
        return -EINVAL;
    }
    if (parse_num(argv[optind], &off) < 0 || parse_num(argv[optind + 1], &count) < 0)
        return -EINVAL;
    if (count > IO_REQUEST_MAX && !nofallback) {
        printf("length cannot exceed %lld without -n, given %s\n", IO_REQUEST_MAX,
               argv[optind + 1]);
        return -EINVAL;
    }
    if ((bflag || cflag) &&
        (!check_sector_aligned(off, "offset") || !check_sector_aligned(count, "count")))
        return -EINVAL;

    uint8_t *buf = NULL;
    if (!zflag) {
        buf = io_alloc(count, pattern);
        if (source && read_source_file(source, buf, count) < 0) {
            free(buf);
            return -EINVAL;
        }
    }
    struct timeval t1;
    gettimeofday(&t1, NULL);
    int ret;
    if (zflag) {
        unsigned f = (fua ? QIMG_REQ_FUA : 0) | (unmap ? QIMG_REQ_MAY_UNMAP : 0) |
                     (nofallback ? QIMG_REQ_NO_FALLBACK : 0);
        ret = qimg_node_pwrite_zeroes(io_img.node, (uint64_t)off, (uint64_t)count, f);
    } else if (bflag) {
        ret = qimg_node_vmstate_rw(io_img.node, (uint64_t)off, buf, (uint64_t)count, true);
    } else if (cflag) {
        ret = qimg_node_pwrite_compressed(io_img.node, (uint64_t)off, (uint64_t)count, buf);
    } else {
        ret = qimg_node_pwrite(io_img.node, (uint64_t)off, (uint64_t)count, buf,
                               fua ? QIMG_REQ_FUA : 0);
    }
    free(buf);
    if (ret < 0) {
        printf("write failed: %s\n", strerror(-ret));
        return ret;
    }
    if (!qflag)
        finish("wrote", t1, off, count, Cflag);
    return 0;
}

static int write_perform(struct io_req *r)
{
    if (r->zflag)
        return qimg_node_pwrite_zeroes(r->node, (uint64_t)r->off, (uint64_t)r->count, r->flags);
    return qimg_node_pwrite(r->node, (uint64_t)r->off, (uint64_t)r->count, r->buf, r->flags);
}

/* What writev and aio_write print once the write is done. */
static int write_report(struct io_req *r)
{
    if (r->ret < 0) {
        printf("%s failed: %s\n", r->name, strerror(-r->ret));
        return r->ret;
    }
    if (!r->qflag) {
        struct timeval t = io_tdiff(r->t2, r->t1);
        io_print_report("wrote", &t, r->off, r->count, r->count, 1, r->cflag);
    }
    return 0;
}

static void write_complete(struct io_req *r)
{
    write_report(r);
}

/* writev and aio_write: one write of the summed buffers. */
static int vector_write(int argc, char **argv, bool aio)
{
    bool cflag = false, qflag = false, zflag = false, fua = false, unmap = false, pflag = false;
    int pattern = 0xcd, c;
    int64_t off, count;
    const char *name = aio ? "aio_write" : "writev";
    int fail = aio ? 0 : -EINVAL;

    while ((c = getopt(argc, argv, aio ? "CfiqzP:u" : "CfqP:")) != -1) {
        switch (c) {
        case 'C': cflag = true; break;
        case 'f': fua = true; break;
        case 'i':
            printf("injecting invalid write request\n");
            return 0;
        case 'q': qflag = true; break;
        case 'z': zflag = true; break;
        case 'u': unmap = true; break;
        case 'P':
            pflag = true;
            pattern = io_parse_pattern(optarg);
            if (pattern < 0)
                return fail;
            break;
        default:
            io_usage(io_find_command(name));
            return fail;
        }
    }
    if (optind > argc - 2) {
        io_usage(io_find_command(name));
        return fail;
    }
    if (zflag && optind != argc - 2) {
        printf("-z supports only a single length parameter\n");
        return fail;
    }
    if (unmap && !zflag) {
        printf("-u requires -z to be specified\n");
        return fail;
    }
    if (zflag && pflag) {
        printf("-z and -P cannot be specified at the same time\n");
        return fail;
    }
    if (parse_vector(argc, argv, optind, &off, &count) < 0)
        return fail;

    struct io_req *r = xcalloc(1, sizeof(*r));
    unsigned f = (fua ? QIMG_REQ_FUA : 0) | (unmap ? QIMG_REQ_MAY_UNMAP : 0);
    *r = (struct io_req){.perform = write_perform, .complete = write_complete,
                         .node = io_img.node, .off = off, .count = count,
                         .buf = zflag ? NULL : io_alloc(count, pattern), .flags = f,
                         .qflag = qflag, .cflag = cflag, .zflag = zflag, .name = name};
    if (!aio) {
        gettimeofday(&r->t1, NULL);
        r->ret = write_perform(r);
        gettimeofday(&r->t2, NULL);
        int ret = write_report(r);
        io_req_free(r);
        return ret;
    }
    io_req_run(r);
    return 0;
}

int io_cmd_writev(int argc, char **argv)
{
    return vector_write(argc, argv, false);
}

int io_cmd_aio_write(int argc, char **argv)
{
    return vector_write(argc, argv, true);
}

int io_cmd_aio_flush(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    /* Without breakpoints every aio request has already completed. */
    return io_aio_drain("aio_flush");
}
