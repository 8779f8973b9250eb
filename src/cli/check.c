/* SPDX-License-Identifier: MIT */
/* qemu-img check [--object objectdef] [--image-opts] [-q] [-f fmt] [--output=ofmt]
 *                [-r [leaks | all]] [-T src_cache] [-U] filename
 * The generic part: formats without a check answer exit 63, as qemu-img does.
 * The report itself comes with the qcow2 checker (its own issue). */
#include <string.h>

#include "cli/cli.h"
#include "qimg/driver.h"

int cmd_check(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_OBJECT, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"format", required_argument, NULL, 'f'},
        {"repair", required_argument, NULL, 'r'},
        {"output", required_argument, NULL, OPT_OUTPUT},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    struct cli_open o = {.flags = QIMG_O_NO_BACKING};
    enum cli_output output = CLI_OUTPUT_HUMAN;
    int fix = 0, c;
    unsigned cache = 0;

    while ((c = cli_getopt(argc, argv, "hf:r:T:qU", longopts)) != -1) {
        switch (c) {
        case 'f': o.fmt = optarg; break;
        case 'r':
            if (!strcmp(optarg, "leaks")) {
                fix = QIMG_CHECK_FIX_LEAKS;
            } else if (!strcmp(optarg, "all")) {
                fix = QIMG_CHECK_FIX_LEAKS | QIMG_CHECK_FIX_ERRORS;
            } else {
                return cli_usage_error(
                    "Unknown option value for -r (expecting 'leaks' or 'all'): %s", optarg);
            }
            break;
        case 'T':
            if (cli_parse_cache(optarg, &cache, true) < 0)
                return 1;
            break;
        case 'q': o.quiet = true; break;
        case 'U': o.flags |= QIMG_O_FORCE_SHARE; break;
        case OPT_OUTPUT:
            if (cli_parse_output(optarg, &output) < 0)
                return 1;
            break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                return 1;
            break;
        case OPT_IMAGE_OPTS: o.image_opts = true; break;
        default: return 1;
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("Expecting one image file name");
    o.filename = argv[optind];
    if (fix && (o.flags & QIMG_O_FORCE_SHARE)) {
        cli_error("force-share is not supported with -r");
        return 1;
    }
    o.flags |= cache | (fix ? QIMG_O_RDWR : 0);
    struct qimg_node *n = cli_open_image(&o);
    if (!n)
        return 1;
    int ret = 63;
    if (!qimg_node_driver(n)->check) {
        cli_error("This image format does not support checks");
    } else {
        cli_error("check of '%s' images is not supported by this build of qimg yet",
                  qimg_node_format(n));
        ret = 1;
    }
    qimg_node_unref(n);
    return ret;
}
