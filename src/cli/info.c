/* SPDX-License-Identifier: MIT */
/* qemu-img info [--object objectdef] [--image-opts] [-f fmt] [--output=ofmt]
 *               [--backing-chain] [-U] filename */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define MAX_CHAIN 256

/* The ImageInfo of each image of the chain, top first; NULL after printing an error. */
static struct qimg_json *collect_chain(struct cli_open *o, bool chain)
{
    struct qimg_json *list = qimg_json_array();
    char *seen[MAX_CHAIN + 1]; /* owns every name visited, the current one last */
    size_t n_seen = 0;
    char *next_name = strdup(o->filename), *next_fmt = o->fmt ? strdup(o->fmt) : NULL;
    bool first = true;

    while (next_name) {
        seen[n_seen++] = next_name;
        for (size_t i = 0; i + 1 < n_seen; i++) {
            if (!strcmp(seen[i], next_name)) {
                cli_error("Backing file '%s' creates an infinite loop.", next_name);
                goto fail;
            }
        }
        if (n_seen > MAX_CHAIN) {
            cli_error("Backing chain of '%s' is too deep", o->filename);
            goto fail;
        }
        struct cli_open cur = *o;
        cur.filename = next_name;
        cur.fmt = next_fmt;
        cur.image_opts = first && o->image_opts;
        struct qimg_node *n = cli_open_image(&cur);
        if (!n)
            goto fail;
        struct qimg_error err = {0};
        struct qimg_json *info = qimg_node_image_info(n, &err);
        if (!info) {
            cli_error_obj(&err, NULL);
            qimg_node_unref(n);
            goto fail;
        }
        qimg_json_append(list, info);
        free(next_fmt);
        next_fmt = NULL;
        next_name = NULL;
        const struct qimg_json *full = qimg_json_get(info, "full-backing-filename");
        if (chain && full) {
            next_name = strdup(full->s);
            const char *bf = qimg_node_backing_format(n);
            next_fmt = bf ? strdup(bf) : NULL;
        }
        qimg_node_unref(n);
        first = false;
    }
    for (size_t i = 0; i < n_seen; i++)
        free(seen[i]);
    return list;
fail:
    for (size_t i = 0; i < n_seen; i++)
        free(seen[i]);
    free(next_fmt);
    qimg_json_free(list);
    return NULL;
}

int cmd_info(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_BACKING_CHAIN, OPT_OBJECT, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"format", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, OPT_OUTPUT},
        {"backing-chain", no_argument, NULL, OPT_BACKING_CHAIN},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"force-share", no_argument, NULL, 'U'},
        {"limits", no_argument, NULL, 257 + 10},
        {NULL, 0, NULL, 0},
    };
    struct cli_open o = {.flags = QIMG_O_NO_BACKING | QIMG_O_NO_IO};
    enum cli_output output = CLI_OUTPUT_HUMAN;
    bool chain = false;
    int c;

    while ((c = cli_getopt(argc, argv, "f:hU", longopts)) != -1) {
        switch (c) {
        case 'f': o.fmt = optarg; break;
        case 'U': o.flags |= QIMG_O_FORCE_SHARE; break;
        case OPT_OUTPUT:
            if (cli_parse_output(optarg, &output) < 0)
                return 1;
            break;
        case OPT_BACKING_CHAIN: chain = true; break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                return 1;
            break;
        case OPT_IMAGE_OPTS: o.image_opts = true; break;
        case 257 + 10: break;
        default: return 1;
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("Expecting one image file name");
    o.filename = argv[optind];

    struct qimg_json *list = collect_chain(&o, chain);
    if (!list)
        return 1;
    if (output == CLI_OUTPUT_JSON) {
        if (chain)
            qimg_json_print(stdout, list, 0);
        else
            qimg_json_print(stdout, list->items[0], 0);
        printf("\n");
    } else {
        for (size_t i = 0; i < list->n; i++) {
            if (i > 0)
                printf("\n");
            cli_print_image_info_human(list->items[i]);
        }
    }
    qimg_json_free(list);
    return 0;
}
