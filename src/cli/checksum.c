/* SPDX-License-Identifier: MIT */
/*
 * qimg checksum [--object objectdef] [--image-opts] [-f fmt] [-T src_cache] [-p]
 *               [--progress=fd:N] [-a algorithm] [-U] filename
 *
 * A qimg extension (issue 22, not in qemu-img): prints a digest of the
 * image's guest-visible content, "<hex digest>  <filename>" as blksum and
 * sha256sum print it, with blksum's construction (engines/blkhash.h), so the
 * digest is the same for raw, qcow2, compressed or chained copies of the
 * same disk, and equals `blksum`'s. Exit 0, or 1 on an error.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "engines/checksum.h"

static void on_progress(void *opaque, uint64_t done, uint64_t total)
{
    (void)opaque;
    cli_progress_update((double)done, (double)total);
    cli_progress_fd(done, total);
}

int cmd_checksum(int argc, char **argv)
{
    enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"force-share", no_argument, NULL, 'U'},
        {"algorithm", required_argument, NULL, 'a'},
        CLI_PROGRESS_FD_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *fmt = NULL, *cache = NULL, *alg = NULL;
    bool progress = false, image_opts = false;
    unsigned flags = 0;
    int c;

    while ((c = cli_getopt(argc, argv, "hf:T:pa:U", longopts)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'T': cache = optarg; break;
        case 'p': progress = true; break;
        case 'a': alg = optarg; break;
        case 'U': flags |= QIMG_O_FORCE_SHARE; break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                return 1;
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
    if (optind != argc - 1)
        return cli_usage_error("Expecting one image file name");
    const char *name = argv[optind];
    if (alg && !blkhash_lookup(alg)) {
        cli_error("Unsupported algorithm '%s'", alg);
        return 1;
    }
    if (cache && cli_parse_cache(cache, &flags, true) < 0)
        return 1;
    if (image_opts && fmt) {
        cli_error("--image-opts and --format are mutually exclusive");
        return 1;
    }
    struct cli_open o = {.filename = name, .fmt = fmt, .image_opts = image_opts, .flags = flags};
    struct qimg_node *img = cli_open_image(&o);
    if (!img)
        return 1;

    cli_progress_init(progress);
    struct qimg_checksum_params params = {.algorithm = alg, .progress = on_progress};
    struct qimg_error err = {0};
    uint8_t md[BLKHASH_MAX_DIGEST];
    unsigned len = 0;
    int ret = qimg_checksum(img, &params, md, &len, &err);
    if (progress)
        cli_progress_end();
    qimg_node_unref(img);
    if (ret < 0) {
        cli_error_obj(&err, NULL);
        return 1;
    }
    cli_progress_fd_end(UINT64_MAX);
    for (unsigned i = 0; i < len; i++)
        printf("%02x", md[i]);
    printf("  %s\n", name);
    return 0;
}
