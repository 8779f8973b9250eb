/* SPDX-License-Identifier: MIT */
/* qemu-img compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p]
 *                  [-q] [-s] [-U] filename1 filename2
 * Exit codes (qemu-img.rst): 0 identical, 1 different, 2 error opening an
 * image (or other setup error), 3 error checking allocation, 4 error reading. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "engines/compare.h"

enum { CMP_SAME = 0, CMP_DIFFERENT = 1, CMP_OPEN_ERROR = 2, CMP_STATUS_ERROR = 3,
       CMP_READ_ERROR = 4 };

struct compare_ui {
    bool quiet;
};

static void on_progress(void *opaque, uint64_t done, uint64_t total)
{
    (void)opaque;
    cli_progress_update((double)done, (double)total);
    cli_progress_fd(done, total);
}

static void on_size_mismatch(void *opaque)
{
    struct compare_ui *ui = opaque;
    if (!ui->quiet)
        printf("Warning: Image size mismatch!\n");
}

static int report(const struct qimg_compare_result *res, int ret, const char *name1,
                  const char *name2, bool quiet)
{
    if (ret < 0) {
        const char *name = res->failed_image == 1 ? name1 : name2;
        if (res->failure == QIMG_COMPARE_FAIL_STATUS) {
            cli_error("Sector allocation test failed for %s", name);
            return CMP_STATUS_ERROR;
        }
        cli_error("Error while reading offset %" PRIu64 " of %s: %s", res->offset, name,
                  strerror(-ret));
        return CMP_READ_ERROR;
    }
    switch (res->outcome) {
    case QIMG_COMPARE_IDENTICAL:
        if (!quiet)
            printf("Images are identical.\n");
        return CMP_SAME;
    case QIMG_COMPARE_CONTENT_MISMATCH:
        if (!quiet)
            printf("Content mismatch at offset %" PRIu64 "!\n", res->offset);
        break;
    case QIMG_COMPARE_SIZE_MISMATCH:
        if (!quiet)
            printf("Strict mode: Image size mismatch!\n");
        break;
    case QIMG_COMPARE_STATUS_MISMATCH:
        if (!quiet)
            printf("Strict mode: Offset %" PRIu64 " block status mismatch!\n", res->offset);
        break;
    }
    return CMP_DIFFERENT;
}

int cmd_compare(int argc, char **argv)
{
    enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"force-share", no_argument, NULL, 'U'},
        CLI_PROGRESS_FD_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *fmt1 = NULL, *fmt2 = NULL, *cache = NULL;
    bool progress = false, quiet = false, strict = false, image_opts = false;
    unsigned flags = 0;
    int c;

    while ((c = cli_getopt(argc, argv, "hf:F:T:pqsU", longopts)) != -1) {
        switch (c) {
        case 'f': fmt1 = optarg; break;
        case 'F': fmt2 = optarg; break;
        case 'T': cache = optarg; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 's': strict = true; break;
        case 'U': flags |= QIMG_O_FORCE_SHARE; break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                return CMP_OPEN_ERROR;
            break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        case CLI_OPT_PROGRESS:
        case CLI_OPT_PROGRESS_FD:
            if (cli_progress_fd_option(c, optarg) < 0)
                return 1;
            break;
        default: return 1;
        }
    }
    if (quiet)
        progress = false;
    if (optind != argc - 2)
        return cli_usage_error("Expecting two image file names");
    const char *name1 = argv[optind], *name2 = argv[optind + 1];

    int rc = CMP_OPEN_ERROR;
    struct qimg_node *n1 = NULL, *n2 = NULL;
    if (cache && cli_parse_cache(cache, &flags, true) < 0)
        goto out;
    if (image_opts && (fmt1 || fmt2)) {
        cli_error("--image-opts and --format are mutually exclusive");
        goto out;
    }
    struct cli_open o1 = {.filename = name1, .fmt = fmt1, .image_opts = image_opts,
                          .flags = flags, .quiet = quiet};
    struct cli_open o2 = o1;
    o2.filename = name2;
    o2.fmt = fmt2;
    n1 = cli_open_image(&o1);
    if (!n1)
        goto out;
    n2 = cli_open_image(&o2);
    if (!n2)
        goto out;

    cli_progress_init(progress);
    struct compare_ui ui = {.quiet = quiet};
    struct qimg_compare_params params = {
        .strict = strict,
        .progress = on_progress,
        .size_mismatch = on_size_mismatch,
        .opaque = &ui,
    };
    struct qimg_compare_result res;
    int ret = qimg_compare(n1, n2, &params, &res);
    rc = report(&res, ret, name1, name2, quiet);
    if (rc == CMP_SAME)
        cli_progress_fd_end(UINT64_MAX);
out:
    if (progress) {
        /* qemu-img ends the progress line here, whatever happened after the options. */
        printf("\n");
    }
    fflush(stdout);
    if (n2)
        qimg_node_unref(n2);
    if (n1)
        qimg_node_unref(n1);
    return rc;
}
