/* SPDX-License-Identifier: MIT */
/* qemu-img bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)...
 *                  [-b source_file [-F source_fmt]] [-g granularity] [--object objectdef]
 *                  [--image-opts | -f fmt] filename bitmap
 * The actions run in the order given; the first failure stops the rest, and
 * what was done before it is kept (stored when the image is closed). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

enum bitmap_act { ACT_ADD, ACT_REMOVE, ACT_CLEAR, ACT_ENABLE, ACT_DISABLE, ACT_MERGE };

static const char *const act_names[] = {"add", "remove", "clear", "enable", "disable", "merge"};

struct action {
    enum bitmap_act act;
    const char *src; /* --merge */
};

int cmd_bitmap(int argc, char **argv)
{
    enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS, OPT_ADD, OPT_REMOVE, OPT_CLEAR, OPT_ENABLE,
           OPT_DISABLE, OPT_MERGE };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"add", no_argument, NULL, OPT_ADD},
        {"remove", no_argument, NULL, OPT_REMOVE},
        {"clear", no_argument, NULL, OPT_CLEAR},
        {"enable", no_argument, NULL, OPT_ENABLE},
        {"disable", no_argument, NULL, OPT_DISABLE},
        {"merge", required_argument, NULL, OPT_MERGE},
        {"granularity", required_argument, NULL, 'g'},
        {"source-file", required_argument, NULL, 'b'},
        {"source-format", required_argument, NULL, 'F'},
        {NULL, 0, NULL, 0},
    };
    struct cli_open o = {.flags = QIMG_O_RDWR | QIMG_O_UNMAP};
    const char *src_file = NULL, *src_fmt = NULL;
    int64_t granularity = 0;
    bool add = false, merge = false;
    struct action *acts = calloc((size_t)argc + 1, sizeof(*acts));
    size_t n_acts = 0;
    int ret = 1, c;
    struct qimg_node *n = NULL, *src = NULL;

    if (!acts)
        return 1;
    while ((c = cli_getopt(argc, argv, "b:f:F:g:h", longopts)) != -1) {
        switch (c) {
        case 'b': src_file = optarg; break;
        case 'f': o.fmt = optarg; break;
        case 'F': src_fmt = optarg; break;
        case 'g': {
            uint64_t g;
            if (qimg_parse_size(optarg, 1, &g) < 0 || g > INT64_MAX) {
                cli_error("Invalid granularity specified. You may use k, M, G, T, P or E "
                          "suffixes for");
                cli_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
                goto out;
            }
            granularity = (int64_t)g;
            break;
        }
        case OPT_ADD: acts[n_acts++].act = ACT_ADD; add = true; break;
        case OPT_REMOVE: acts[n_acts++].act = ACT_REMOVE; break;
        case OPT_CLEAR: acts[n_acts++].act = ACT_CLEAR; break;
        case OPT_ENABLE: acts[n_acts++].act = ACT_ENABLE; break;
        case OPT_DISABLE: acts[n_acts++].act = ACT_DISABLE; break;
        case OPT_MERGE:
            acts[n_acts].act = ACT_MERGE;
            acts[n_acts++].src = optarg;
            merge = true;
            break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                goto out;
            break;
        case OPT_IMAGE_OPTS: o.image_opts = true; break;
        default: goto out;
        }
    }
    if (!n_acts) {
        cli_error("Need at least one of --add, --remove, --clear, --enable, --disable, or --merge");
        goto out;
    }
    if (granularity && !add) {
        cli_error("granularity only supported with --add");
        goto out;
    }
    if (src_fmt && !src_file) {
        cli_error("-F only supported with -b");
        goto out;
    }
    if (src_file && !merge) {
        cli_error("Merge bitmap source file only supported with --merge");
        goto out;
    }
    if (optind != argc - 2) {
        cli_error("Expecting filename and bitmap name");
        goto out;
    }
    o.filename = argv[optind];
    const char *bitmap = argv[optind + 1];
    if (o.image_opts && o.fmt) {
        cli_error("--image-opts and --format are mutually exclusive");
        goto out;
    }

    n = cli_open_image(&o);
    if (!n)
        goto out;
    if (src_file) {
        struct cli_open so = {.filename = src_file, .fmt = src_fmt};
        src = cli_open_image(&so);
        if (!src)
            goto out;
    }
    for (size_t i = 0; i < n_acts; i++) {
        struct qimg_error err = {0};
        int r = 0;
        switch (acts[i].act) {
        case ACT_ADD:
            /* qemu-img passes the granularity on as a 32-bit value. */
            if (granularity && (uint32_t)granularity == 0)
                r = qimg_error_set(&err, -EINVAL,
                                   "Granularity must be power of 2 and at least 512");
            else
                r = qimg_bitmap_add(n, bitmap, (uint32_t)granularity, false, &err);
            break;
        case ACT_REMOVE: r = qimg_bitmap_remove(n, bitmap, &err); break;
        case ACT_CLEAR: r = qimg_bitmap_clear(n, bitmap, &err); break;
        case ACT_ENABLE: r = qimg_bitmap_set_enabled(n, bitmap, true, &err); break;
        case ACT_DISABLE: r = qimg_bitmap_set_enabled(n, bitmap, false, &err); break;
        case ACT_MERGE:
            r = qimg_bitmap_merge(n, bitmap, src ? src : n, acts[i].src, &err);
            break;
        }
        if (r < 0) {
            cli_error_obj(&err, "Operation %s on bitmap %s failed: ", act_names[acts[i].act],
                          bitmap);
            goto out;
        }
    }
    ret = 0;
out:
    qimg_node_unref(src);
    qimg_node_unref(n);
    free(acts);
    return ret;
}

/*
 * convert --bitmaps, before anything is created: the source must keep
 * persistent bitmaps, and without --skip-broken-bitmaps none may be
 * inconsistent. qemu-img walks its bitmaps newest first. 0, or -1 after the error.
 */
int cli_convert_check_bitmaps(struct qimg_node *src, bool skip_broken)
{
    if (!qimg_bitmap_supported(src)) {
        cli_error("Source lacks bitmap support");
        return -1;
    }
    struct qimg_bitmap_info *bm;
    size_t count;
    struct qimg_error err = {0};
    if (qimg_bitmap_list(src, &bm, &count, &err) < 0) {
        cli_error_obj(&err, NULL);
        return -1;
    }
    int ret = 0;
    for (size_t i = count; !skip_broken && ret == 0 && i-- > 0;) {
        if (bm[i].in_use) {
            cli_error("Cannot copy inconsistent bitmap '%s'", bm[i].name);
            fprintf(stderr, "Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to "
                            "delete it\n");
            ret = -1;
        }
    }
    qimg_bitmap_list_free(bm, count);
    return ret;
}

/* convert --bitmaps, after the data: recreate and fill every bitmap in dst. */
int cli_convert_copy_bitmaps(struct qimg_node *src, struct qimg_node *dst, bool skip_broken)
{
    struct qimg_bitmap_info *bm;
    size_t count;
    struct qimg_error err = {0};
    if (qimg_bitmap_list(src, &bm, &count, &err) < 0) {
        cli_error_obj(&err, NULL);
        return -1;
    }
    for (size_t i = count; skip_broken && i-- > 0;)
        if (bm[i].in_use)
            cli_warn("Skipping inconsistent bitmap '%s'", bm[i].name);
    /* Created oldest first, so that the target's directory lists them as the source's does. */
    int ret = 0;
    for (size_t i = 0; ret == 0 && i < count; i++) {
        if (bm[i].in_use)
            continue;
        qimg_error_clear(&err);
        if (qimg_bitmap_add(dst, bm[i].name, bm[i].granularity, !bm[i].enabled, &err) < 0) {
            cli_error_obj(&err, "Failed to create bitmap %s: ", bm[i].name);
            ret = -1;
        } else if (qimg_bitmap_merge(dst, bm[i].name, src, bm[i].name, &err) < 0) {
            cli_error_obj(&err, "Failed to populate bitmap %s: ", bm[i].name);
            struct qimg_error e2 = {0};
            qimg_bitmap_remove(dst, bm[i].name, &e2);
            ret = -1;
        }
    }
    qimg_bitmap_list_free(bm, count);
    return ret;
}
