/* SPDX-License-Identifier: MIT */
/* qemu-img create [--object objectdef] [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u]
 *                 [-o options] filename [size] */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/create-opts.h"
#include "core/create.h"
#include "qimg/driver.h"

/*
 * qemu-img 9.1's backing file rules: the backing file is opened (unless -u)
 * to check it and to take the size from it; a missing -F is an error that
 * names the detected format.
 */
static int check_backing(const char *filename, const char *backing, const char *backing_fmt,
                         bool unsafe, struct qimg_opts *opts)
{
    if (!strcmp(filename, backing)) {
        cli_error("%s: Error: Trying to create an image with the same filename as the backing "
                  "file", filename);
        return -1;
    }
    if (!backing[0]) {
        cli_error("%s: Expected backing file name, got empty string", filename);
        return -1;
    }
    if (unsafe) {
        if (!backing_fmt) {
            cli_error("%s: Backing file specified without backing format", filename);
            return -1;
        }
        return 0;
    }
    struct qimg_error err = {0};
    struct qimg_node *bn = NULL;
    char *path = cli_resolve_relative(filename, backing);
    int ret = qimg_open(&bn, path, backing_fmt, NULL, QIMG_O_NO_BACKING | QIMG_O_NO_IO, &err);
    free(path);
    if (ret < 0) {
        cli_error("%s: %s\nCould not open backing image.", filename, err.msg);
        return -1;
    }
    if (!backing_fmt) {
        cli_error("%s: Backing file specified without backing format\nDetected format of %s.",
                  filename, qimg_node_format(bn));
        qimg_node_unref(bn);
        return -1;
    }
    int64_t size = qimg_node_length(bn);
    qimg_node_unref(bn);
    if (!qimg_opts_has(opts, "size")) {
        if (size < 0) {
            cli_error("%s: Could not get size of '%s': %s", filename, backing,
                      strerror((int)-size));
            return -1;
        }
        char buf[32];
        snprintf(buf, sizeof(buf), "%" PRId64, size);
        qimg_opts_set(opts, "size", buf);
    }
    return 0;
}

int cmd_create(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"object", required_argument, NULL, 256},
        {NULL, 0, NULL, 0},
    };
    const char *fmt = "raw", *backing = NULL, *backing_fmt = NULL;
    bool quiet = false, unsafe = false;
    struct cli_option_list optlist = {0};
    int c, ret = 1;

    while ((c = cli_getopt(argc, argv, "F:b:f:ho:qu", longopts)) != -1) {
        switch (c) {
        case 'F': backing_fmt = optarg; break;
        case 'b': backing = optarg; break;
        case 'f': fmt = optarg; break;
        case 'o':
            if (cli_option_list_add(&optlist, optarg) < 0)
                goto out;
            break;
        case 'q': quiet = true; break;
        case 'u': unsafe = true; break;
        case 256:
            if (cli_add_object(optarg) < 0)
                goto out;
            break;
        default: goto out;
        }
    }
    const char *filename = optind < argc ? argv[optind++] : NULL;
    if (cli_option_list_wants_help(&optlist)) {
        ret = cli_print_create_help(fmt, filename) < 0 ? 1 : 0;
        goto out;
    }
    if (!filename) {
        cli_usage_error("Expecting image file name");
        goto out;
    }
    int64_t img_size = -1;
    if (optind < argc) {
        if (cli_parse_image_size(argv[optind++], "image size", &img_size) < 0)
            goto out;
    }
    if (optind < argc) {
        cli_usage_error("Unexpected argument: %s", argv[optind]);
        goto out;
    }

    const struct qimg_driver *drv = qimg_driver_find(fmt);
    if (!drv || !drv->create) {
        cli_error("%s: Unknown file format '%s'", filename, fmt);
        goto out;
    }
    size_t plen = qimg_protocol_prefix_len(filename); /* "a:b" without "file:" */
    if (plen && !qimg_driver_find_protocol(filename)) {
        cli_error("%s: Unknown protocol '%.*s'", filename, (int)plen, filename);
        goto out;
    }
    struct qimg_error err = {0};
    struct qimg_opts *opts = qimg_opts_new();
    if (cli_option_list_parse(&optlist, opts, &err) < 0) {
        cli_error_obj(&err, "%s: ", filename);
        qimg_opts_free(opts);
        goto out;
    }
    if (img_size >= 0) {
        if (qimg_opts_has(opts, "size")) {
            cli_error("%s: The image size must be specified only once", filename);
            qimg_opts_free(opts);
            goto out;
        }
        char buf[32];
        snprintf(buf, sizeof(buf), "%" PRId64, img_size);
        qimg_opts_set(opts, "size", buf);
    }
    struct qimg_opt_desc *desc = qimg_create_opts_merged(drv, qimg_create_protocol_driver(filename));
    bool has_backing_opt = qimg_opt_desc_find(desc, "backing_file") != NULL;
    if (backing) {
        if (!has_backing_opt) {
            cli_error("%s: Backing file not supported for file format '%s'", filename, fmt);
            goto out_opts;
        }
        qimg_opts_set(opts, "backing_file", backing);
    }
    if (backing_fmt) {
        if (!has_backing_opt) {
            cli_error("%s: Backing file not supported for file format '%s'", filename, fmt);
            goto out_opts;
        }
        qimg_opts_set(opts, "backing_fmt", backing_fmt);
    }
    if (qimg_create_validate(desc, opts, &err) < 0) {
        cli_error_obj(&err, "%s: ", filename);
        goto out_opts;
    }
    const char *bfile = qimg_opts_peek(opts, "backing_file");
    const char *bfmt = qimg_opts_peek(opts, "backing_fmt");
    if (bfile && check_backing(filename, bfile, bfmt, unsafe, opts) < 0)
        goto out_opts;
    /* qemu-img takes a size of -1 (UINT64_MAX, as -o size=18446744073709551615 gives) for
     * "no size given" */
    const char *size_opt = qimg_opts_peek(opts, "size");
    if (!size_opt || !strcmp(size_opt, "18446744073709551615")) {
        cli_error("%s: Image creation needs a size parameter", filename);
        goto out_opts;
    }
    if (!quiet) {
        char *line = qimg_create_describe(filename, drv, opts);
        printf("%s\n", line);
        fflush(stdout);
        free(line);
    }
    int cret = qimg_create(filename, fmt, opts, &err);
    if (cret == -EFBIG) {
        /* qemu-img create words a too-large image this way, whichever layer ran out of room. */
        qimg_error_reset(&err, cret, "The image size is too large for file format '%s'%s", fmt,
                         strcmp(fmt, "qcow2") == 0 ? " (try using a larger cluster size)" : "");
    }
    if (cret < 0) {
        cli_error_obj(&err, "%s: ", filename);
        goto out_opts;
    }
    ret = 0;
out_opts:
    free(desc);
    qimg_opts_free(opts);
out:
    cli_option_list_free(&optlist);
    return ret;
}
