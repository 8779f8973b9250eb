/* SPDX-License-Identifier: MIT */
/* Whole-image commands: discard, flush, truncate, length, info, map, alloc. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "io/io.h"
#include "qimg/driver.h"

int io_cmd_discard(int argc, char **argv)
{
    bool cflag = false, qflag = false;
    int c;
    while ((c = getopt(argc, argv, "Cq")) != -1) {
        switch (c) {
        case 'C': cflag = true; break;
        case 'q': qflag = true; break;
        default:
            io_usage(io_find_command("discard"));
            return -EINVAL;
        }
    }
    if (optind != argc - 2) {
        io_usage(io_find_command("discard"));
        return -EINVAL;
    }
    int64_t off = io_cvtnum(argv[optind]);
    if (off < 0) {
        io_print_cvtnum_err(off, argv[optind]);
        return -EINVAL;
    }
    int64_t count = io_cvtnum(argv[optind + 1]);
    if (count < 0) {
        io_print_cvtnum_err(count, argv[optind + 1]);
        return -EINVAL;
    }
    if (count > IO_REQUEST_MAX) {
        printf("length cannot exceed %lld, given %s\n", IO_REQUEST_MAX, argv[optind + 1]);
        return -EINVAL;
    }
    struct timeval t1, t2;
    gettimeofday(&t1, NULL);
    int ret = qimg_node_pdiscard(io_img.node, (uint64_t)off, (uint64_t)count);
    gettimeofday(&t2, NULL);
    if (ret < 0) {
        printf("discard failed: %s\n", strerror(-ret));
        return ret;
    }
    if (!qflag) {
        t2 = io_tdiff(t2, t1);
        io_print_report("discard", &t2, off, count, count, 1, cflag);
    }
    return 0;
}

int io_cmd_flush(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return qimg_node_flush(io_img.node);
}

int io_cmd_truncate(int argc, char **argv)
{
    enum qimg_prealloc prealloc = QIMG_PREALLOC_OFF;
    int c;
    while ((c = getopt(argc, argv, "m:")) != -1) {
        switch (c) {
        case 'm':
            if (qimg_prealloc_parse(optarg, &prealloc) < 0) {
                io_error("Invalid preallocation mode '%s'", optarg);
                return -EINVAL;
            }
            break;
        default:
            io_usage(io_find_command("truncate"));
            return -EINVAL;
        }
    }
    if (optind != argc - 1) {
        io_usage(io_find_command("truncate"));
        return -EINVAL;
    }
    int64_t size = io_cvtnum(argv[optind]);
    if (size < 0) {
        io_print_cvtnum_err(size, argv[optind]);
        return (int)size;
    }
    struct qimg_error err = {0};
    int ret = qimg_node_truncate(io_img.node, (uint64_t)size, false, prealloc, &err);
    if (ret < 0) {
        io_error("%s", err.msg[0] ? err.msg : strerror(-ret));
        return ret;
    }
    return 0;
}

int io_cmd_length(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int64_t size = qimg_node_length(io_img.node);
    if (size < 0) {
        printf("getlength: %s\n", strerror((int)-size));
        return (int)size;
    }
    char buf[64];
    io_cvtstr((double)size, buf, sizeof(buf));
    printf("%s\n", buf);
    return 0;
}

int io_cmd_info(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct qimg_node *n = io_img.node;
    if (io_is_snapshot(n)) {
        io_snapshot_info(n);
        return 0;
    }
    struct qimg_driver_info di = {0};
    struct qimg_error err = {0};
    /* qemu-io names a protocol twice (as format, then as protocol) */
    printf("format name: %s\n", qimg_node_format(n));
    if (n->drv->is_protocol)
        printf("format name: %s\n", qimg_node_format(n));
    /* The node that answers: a filter (blkdebug) asks its child; file and host_device answer
     * with nothing; the rest (null-co, host_cdrom) have no answer and qemu-io stops. */
    struct qimg_node *src = n;
    while (!src->drv->get_info && src->drv->is_filter && src->file)
        src = src->file;
    const char *name = src->drv->name;
    if (!src->drv->get_info && strcmp(name, "file") && strcmp(name, "host_device"))
        return 0;
    int ret = src->drv->get_info ? src->drv->get_info(src, &di, &err) : 0;
    if (ret == -ENOTSUP && !err.msg[0])
        return 0; /* nothing below answers (raw over null-co) */
    if (ret < 0) {
        io_error("%s", err.msg);
        return -EIO;
    }
    if (src != n) { /* what the child has to say of itself is not the filter's */
        qimg_json_free(di.format_specific);
        qimg_json_free(di.snapshots);
        di.format_specific = di.snapshots = NULL;
    }
    char cs[64], vm[64];
    io_cvtstr((double)di.cluster_size, cs, sizeof(cs));
    io_cvtstr((double)di.vm_state_offset, vm, sizeof(vm));
    printf("cluster size: %s\nvm state offset: %s\n", cs, vm);
    const struct qimg_json *data =
        di.format_specific ? qimg_json_get(di.format_specific, "data") : NULL;
    if (data && data->n > 0) {
        printf("Format specific information:\n");
        qimg_json_print_human(stdout, data, 1);
    }
    qimg_json_free(di.format_specific);
    qimg_json_free(di.snapshots);
    return 0;
}

/* Allocation status of this layer only, as qemu-io asks it: 1, 0, or -errno. num 0 at EOF. */
static int is_allocated(struct qimg_node *n, int64_t off, int64_t bytes, int64_t *num)
{
    struct qimg_block_status st;
    int64_t size = qimg_node_length(n);
    if (size < 0)
        return (int)size;
    if (bytes <= 0 || off >= size) {
        *num = 0;
        return 0;
    }
    int ret = qimg_node_block_status(n, (uint64_t)off, (uint64_t)bytes, &st);
    if (ret < 0)
        return ret;
    *num = (int64_t)st.bytes;
    return (st.flags & (QIMG_BLK_DATA | QIMG_BLK_ZERO)) ? 1 : 0;
}

/* The run starting at off with one allocation status, adjacent answers merged. */
static int map_run(struct qimg_node *n, int64_t off, int64_t bytes, int64_t *pnum)
{
    int64_t num = 0;
    int first = is_allocated(n, off, bytes, &num);
    if (first < 0)
        return first;
    *pnum = num;
    while (num > 0 && *pnum < bytes) {
        int ret = is_allocated(n, off + *pnum, bytes - *pnum, &num);
        if (ret < 0)
            return ret;
        if (ret != first || num == 0)
            break;
        *pnum += num;
    }
    return first;
}

int io_cmd_map(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct qimg_node *n = io_img.node;
    int64_t length = qimg_node_length(n);
    if (length < 0) {
        io_error("Failed to query image length: %s", strerror((int)-length));
        return (int)length;
    }
    for (int64_t off = 0; off < length;) {
        int64_t num;
        int ret = map_run(n, off, length - off, &num);
        if (ret < 0) {
            io_error("Failed to get allocation status: %s", strerror(-ret));
            return ret;
        }
        if (!num) {
            io_error("Unexpected end of image");
            return -EIO;
        }
        char s1[64], s2[64];
        io_cvtstr((double)num, s1, sizeof(s1));
        io_cvtstr((double)off, s2, sizeof(s2));
        printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n", s1, (uint64_t)num,
               ret ? "    allocated" : "not allocated", s2, (uint64_t)off);
        off += num;
    }
    return 0;
}

int io_cmd_alloc(int argc, char **argv)
{
    int64_t start = io_cvtnum(argv[1]), count = 512;
    if (start < 0) {
        io_print_cvtnum_err(start, argv[1]);
        return -EINVAL;
    }
    if (argc == 3) {
        count = io_cvtnum(argv[2]);
        if (count < 0) {
            io_print_cvtnum_err(count, argv[2]);
            return -EINVAL;
        }
    }
    int64_t off = start, remaining = count, sum = 0;
    while (remaining) {
        int64_t num = 0;
        int ret = is_allocated(io_img.node, off, remaining, &num);
        if (ret < 0) {
            printf("is_allocated failed: %s\n", strerror(-ret));
            return ret;
        }
        off += num;
        remaining -= num;
        if (ret)
            sum += num;
        if (num == 0) {
            count -= remaining;
            remaining = 0;
        }
    }
    char s[64];
    io_cvtstr((double)start, s, sizeof(s));
    printf("%" PRId64 "/%" PRId64 " bytes allocated at offset %s\n", sum, count, s);
    return 0;
}
