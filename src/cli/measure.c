/* SPDX-License-Identifier: MIT */
/* qemu-img measure [--output=ofmt] [-O output_fmt] [-o options]
 *                  [--size N | [--object objectdef] [--image-opts] [-f fmt]
 *                  [-l snapshot_param] filename]
 * Asks the output format's driver (->measure) how large a new image would be:
 * empty with --size, or converted from an existing image. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/create-opts.h"
#include "core/create.h"
#include "qimg/driver.h"

/* snapshot.c: load the -l snapshot into a read-only source; -1 after the error. */
int cli_snapshot_load_param(struct qimg_node *n, const char *param);

/* -l: "snapshot.id=ID,snapshot.name=NAME" or a bare ID_OR_NAME. */
static int parse_snapshot_param(const char *arg)
{
    if (strncmp(arg, "snapshot.", 9) != 0)
        return 0;
    struct qimg_opts *o = qimg_opts_new();
    struct qimg_error err = {0};
    int ret = qimg_opts_parse(o, arg, NULL, &err);
    if (ret == 0) {
        for (size_t i = 0; i < o->n; i++) {
            if (strcmp(o->v[i].key, "snapshot.id") && strcmp(o->v[i].key, "snapshot.name")) {
                ret = qimg_error_set(&err, -EINVAL, "Invalid parameter '%s'", o->v[i].key);
                break;
            }
        }
    }
    qimg_opts_free(o);
    if (ret < 0) {
        cli_error_obj(&err, NULL);
        cli_error("Failed in parsing snapshot param '%s'", arg);
        return -1;
    }
    return 0;
}

static void print_measure(const struct qimg_measure *m, enum cli_output fmt)
{
    if (fmt == CLI_OUTPUT_JSON) {
        struct qimg_json *j = qimg_json_object();
        qimg_json_add_int(j, "required", (int64_t)m->required);
        qimg_json_add_int(j, "fully-allocated", (int64_t)m->fully_allocated);
        if (m->has_bitmaps)
            qimg_json_add_int(j, "bitmaps", (int64_t)m->bitmaps);
        qimg_json_print(stdout, j, 0);
        printf("\n");
        qimg_json_free(j);
        return;
    }
    printf("required size: %" PRIu64 "\n", m->required);
    printf("fully allocated size: %" PRIu64 "\n", m->fully_allocated);
    if (m->has_bitmaps)
        printf("bitmaps size: %" PRIu64 "\n", m->bitmaps);
}

/* The output format's -o options, validated against its create options and the file's. */
static struct qimg_opts *output_options(const struct qimg_driver *drv, const char *optlist)
{
    struct qimg_error err = {0};
    struct qimg_opts *opts = qimg_opts_new();
    struct qimg_opt_desc *desc = qimg_create_opts_merged(drv, qimg_create_protocol_driver(NULL));
    int ret = optlist ? qimg_opts_parse(opts, optlist, NULL, &err) : 0;
    if (ret == 0)
        ret = qimg_create_validate(desc, opts, &err);
    free(desc);
    if (ret < 0) {
        cli_error_obj(&err, NULL);
        cli_error("Invalid options for file format '%s'", drv->name);
        qimg_opts_free(opts);
        return NULL;
    }
    return opts;
}

int cmd_measure(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_OBJECT, OPT_IMAGE_OPTS, OPT_SIZE };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"output", required_argument, NULL, OPT_OUTPUT},
        {"size", required_argument, NULL, OPT_SIZE},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    struct cli_open o = {0};
    const char *out_fmt = "raw", *snapshot = NULL;
    enum cli_output output = CLI_OUTPUT_HUMAN;
    struct cli_option_list optlist = {0};
    int64_t size = -1;
    int c, rc = 1;
    struct qimg_node *src = NULL;
    struct qimg_opts *opts = NULL;

    while ((c = cli_getopt(argc, argv, "hf:l:o:O:U", longopts)) != -1) {
        switch (c) {
        case 'f': o.fmt = optarg; break;
        case 'l':
            if (parse_snapshot_param(optarg) < 0)
                goto out;
            snapshot = optarg;
            break;
        case 'o': /* validated there, with qemu-img's message */
            if (cli_option_list_add(&optlist, optarg) < 0)
                goto out;
            break;
        case 'O': out_fmt = optarg; break;
        case 'U': o.flags |= QIMG_O_FORCE_SHARE; break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                goto out;
            break;
        case OPT_IMAGE_OPTS: o.image_opts = true; break;
        case OPT_OUTPUT:
            if (cli_parse_output(optarg, &output) < 0)
                goto out;
            break;
        case OPT_SIZE:
            if (cli_parse_image_size(optarg, "image size", &size) < 0)
                goto out;
            break;
        default: goto out;
        }
    }
    if (argc - optind > 1) {
        cli_error("At most one filename argument is allowed.");
        goto out;
    }
    o.filename = optind < argc ? argv[optind] : NULL;
    if (o.filename && size >= 0) {
        cli_error("--size N cannot be used together with a filename.");
        goto out;
    }
    if (!o.filename && (o.image_opts || o.fmt || snapshot)) {
        cli_error("--image-opts, -f, and -l require a filename argument.");
        goto out;
    }
    if (!o.filename && size < 0) {
        cli_error("Either --size N or one filename must be specified.");
        goto out;
    }

    if (o.filename) {
        src = cli_open_image(&o);
        if (!src)
            goto out;
        if (snapshot && cli_snapshot_load_param(src, snapshot) < 0)
            goto out;
    }
    const struct qimg_driver *drv = qimg_driver_find(out_fmt);
    if (!drv) {
        cli_error("Unknown file format '%s'", out_fmt);
        goto out;
    }
    opts = output_options(drv, optlist.joined);
    if (!opts)
        goto out;
    if (size >= 0) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%" PRId64, size);
        qimg_opts_set(opts, "size", buf);
    }
    if (!drv->measure) {
        cli_error("Block driver '%s' does not support size measurement", drv->name);
        goto out;
    }
    struct qimg_measure m = {0};
    struct qimg_error err = {0};
    if (drv->measure(opts, src, src ? 0 : (uint64_t)size, &m, &err) < 0) {
        cli_error_obj(&err, NULL);
        goto out;
    }
    const char *compat = qimg_opts_peek(opts, "compat");
    if (m.has_bitmaps && src &&
        (!qimg_bitmap_supported(src) ||
         (compat && (!strcmp(compat, "0.10") || !strcmp(compat, "v2")))))
        m.has_bitmaps = false; /* v2 images and sources without bitmaps: no line */
    if (m.has_bitmaps && src) {
        /* What the source's persistent bitmaps need in the target's clusters. */
        const char *cs = qimg_opts_peek(opts, "cluster_size");
        uint64_t csize = 65536;
        if (cs && qimg_parse_size(cs, 1, &csize) < 0)
            csize = 65536;
        m.bitmaps = qimg_bitmap_measure(src, csize);
    }
    print_measure(&m, output);
    rc = 0;
out:
    qimg_opts_free(opts);
    if (src)
        qimg_node_unref(src);
    cli_option_list_free(&optlist);
    return rc;
}
