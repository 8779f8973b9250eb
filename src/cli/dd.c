/* SPDX-License-Identifier: MIT */
/*
 * qemu-img dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks]
 *             [skip=blocks] if=input of=output
 *
 * qemu-img's semantics (observed): the output is created with the size to be
 * copied; count limits the input to its first count blocks, skipped ones
 * included, so "bs=64k count=16 skip=4" copies 12 blocks; a skip past that
 * end is reported but is not a failure.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engines/copy.h"
#include "qimg/driver.h"

enum { OPT_IMAGE_OPTS = 256, OPT_FORCE_SHARE, OPT_OBJECT };

struct dd_opts {
    const char *fmt, *out_fmt, *in, *out;
    bool image_opts, force_share;
    uint64_t bs, count, skip;
    bool has_count, has_skip;
};

static int parse_bs(const char *arg, uint64_t *out)
{
    uint64_t v;
    int ret = qimg_parse_size(arg, 1, &v);
    if (ret < 0 && ret != -ERANGE) {
        cli_error("Invalid bs specified. You may use k, M, G, T, P or E suffixes for");
        cli_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return -1;
    }
    if (ret == -ERANGE || v == 0 || v > INT_MAX) {
        cli_error("Invalid bs specified. Must be between 1 and %d.", INT_MAX);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_operand(const char *arg, struct dd_opts *o)
{
    const char *eq = strchr(arg, '=');
    size_t klen = eq ? (size_t)(eq - arg) : strlen(arg);
    const char *val = eq ? eq + 1 : NULL;
    int64_t v;

#define KEY_IS(k) (klen == strlen(k) && !strncmp(arg, k, klen) && val)
    if (KEY_IS("bs"))
        return parse_bs(val, &o->bs);
    if (KEY_IS("count")) {
        if (cli_parse_image_size(val, "count", &v) < 0)
            return -1;
        o->count = (uint64_t)v;
        o->has_count = true;
        return 0;
    }
    if (KEY_IS("skip")) {
        if (cli_parse_image_size(val, "skip", &v) < 0)
            return -1;
        o->skip = (uint64_t)v;
        o->has_skip = true;
        return 0;
    }
    if (KEY_IS("if")) {
        o->in = val;
        return 0;
    }
    if (KEY_IS("of")) {
        o->out = val;
        return 0;
    }
#undef KEY_IS
    cli_error("unrecognized operand %.*s", (int)klen, arg);
    return -1;
}

static void copy_error(const struct qimg_copy_result *res, const struct qimg_error *err)
{
    const char *why = strerror(res->errnum ? res->errnum : EIO);
    if (res->failure == QIMG_COPY_FAILED_READ || res->failure == QIMG_COPY_FAILED_STATUS)
        cli_error("error while reading from input image file: %s", why);
    else if (res->failure == QIMG_COPY_FAILED_WRITE || res->failure == QIMG_COPY_FAILED_FLUSH)
        cli_error("error while writing to output image file: %s", why);
    else
        cli_error_obj(err, NULL);
}

static void on_progress(void *opaque, uint64_t done, uint64_t total)
{
    (void)opaque;
    cli_progress_fd(done, total);
}

int cmd_dd(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"force-share", no_argument, NULL, OPT_FORCE_SHARE},
        {"object", required_argument, NULL, OPT_OBJECT},
        CLI_PROGRESS_FD_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    struct dd_opts o = {.out_fmt = "raw", .bs = 512};
    struct qimg_node *in = NULL, *out = NULL;
    struct qimg_opts *opts = NULL;
    struct qimg_error err = {0};
    int c, ret = 1;

    while ((c = cli_getopt(argc, argv, "hf:O:U", longopts)) != -1) {
        switch (c) {
        case 'f': o.fmt = optarg; break;
        case 'O': o.out_fmt = optarg; break;
        case 'U':
        case OPT_FORCE_SHARE: o.force_share = true; break;
        case OPT_IMAGE_OPTS: o.image_opts = true; break;
        case CLI_OPT_PROGRESS:
        case CLI_OPT_PROGRESS_FD:
            if (cli_progress_fd_option(c, optarg) < 0)
                goto out;
            break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                goto out;
            break;
        default: goto out;
        }
    }
    for (int i = optind; i < argc; i++)
        if (parse_operand(argv[i], &o) < 0)
            goto out;
    if (!o.in || !o.out) {
        cli_error("Must specify both input and output files");
        goto out;
    }
    if (o.image_opts && o.fmt) {
        cli_error("--image-opts and --format are mutually exclusive");
        goto out;
    }
    struct cli_open io = {.filename = o.in,
                          .fmt = o.fmt,
                          .image_opts = o.image_opts,
                          .flags = o.force_share ? QIMG_O_FORCE_SHARE : 0};
    in = cli_open_image(&io);
    if (!in)
        goto out;
    const struct qimg_driver *drv = qimg_driver_find(o.out_fmt);
    if (!drv) {
        cli_error("Unknown file format");
        goto out;
    }
    int64_t len = qimg_node_length(in);
    if (len < 0) {
        cli_error("Failed to get size for '%s'", o.in);
        goto out;
    }
    uint64_t size = (uint64_t)len;
    if (o.has_count && o.count <= INT64_MAX / o.bs && size > o.count * o.bs)
        size = o.count * o.bs;
    bool cannot_skip = o.has_skip && (o.skip > INT64_MAX / o.bs || size < o.skip * o.bs);
    uint64_t start = cannot_skip ? 0 : o.skip * o.bs;
    uint64_t out_size = cannot_skip ? 0 : size - start;

    opts = qimg_opts_new();
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRIu64, out_size);
    qimg_opts_set(opts, "size", buf);
    if (qimg_create(o.out, o.out_fmt, opts, &err) < 0) {
        cli_error_obj(&err, "%s: error while creating output image: ", o.out);
        goto out;
    }
    struct cli_open oo = {.filename = o.out, .fmt = o.out_fmt, .flags = QIMG_O_RDWR};
    out = cli_open_image(&oo);
    if (!out)
        goto out;
    if (cannot_skip) {
        /* qemu-img reports this and succeeds with an empty output. */
        cli_error("%s: cannot skip to specified offset", o.in);
        ret = 0;
        goto out;
    }

    struct qimg_copy_source src = {.node = in, .offset = start, .length = size - start};
    struct qimg_copy_job job = {
        .src = &src,
        .n_src = 1,
        .dst = out,
        /* dd writes every block it reads, zeroes too: the output ends fully allocated, as
           qemu-img dd leaves it (du, map and info show the same). */
        .sparse_size = 0,
        .flush = true,
        .progress = on_progress,
    };
    struct qimg_copy_result res;
    if (qimg_copy_run(&job, &res, &err) < 0) {
        copy_error(&res, &err);
        goto out;
    }
    cli_progress_fd_end(res.data_bytes);
    ret = 0;
out:
    qimg_node_unref(out);
    qimg_node_unref(in);
    qimg_opts_free(opts);
    return ret;
}
