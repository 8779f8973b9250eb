/* SPDX-License-Identifier: MIT */
/*
 * Test helper (not a test): open an image through libqimg, keep it open, and
 * hold its image locks until stdin reaches EOF. tests/cli/test_locking.py runs
 * QEMU's tools against the image while this holds it.
 *
 *   lockholder [-f FMT] [-w] [-R] [-U] [-t CACHE] [--image-opts] FILE
 *
 * -w opens read-write, -R as for a resize, -U with force-share. Prints
 * "ready" once the image is open, or the open error ("Could not open ...") on
 * stderr and exits 1.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "qimg/qimg.h"

int main(int argc, char **argv)
{
    const char *fmt = NULL, *filename = NULL;
    unsigned flags = 0;
    int image_opts = 0;

    qimg_init();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-f") && i + 1 < argc) {
            fmt = argv[++i];
        } else if (!strcmp(a, "-w")) {
            flags |= QIMG_O_RDWR;
        } else if (!strcmp(a, "-R")) {
            flags |= QIMG_O_RDWR | QIMG_O_RESIZE;
        } else if (!strcmp(a, "-U")) {
            flags |= QIMG_O_FORCE_SHARE;
        } else if (!strcmp(a, "-t") && i + 1 < argc) {
            unsigned cache;
            if (qimg_cache_parse(argv[++i], &cache) < 0) {
                fprintf(stderr, "lockholder: bad cache mode %s\n", argv[i]);
                return 2;
            }
            flags |= cache;
        } else if (!strcmp(a, "--image-opts")) {
            image_opts = 1;
        } else if (a[0] != '-' && !filename) {
            filename = a;
        } else {
            fprintf(stderr, "usage: lockholder [-f FMT] [-w] [-R] [-U] [-t CACHE] "
                            "[--image-opts] FILE\n");
            return 2;
        }
    }
    if (!filename) {
        fprintf(stderr, "lockholder: no file\n");
        return 2;
    }

    struct qimg_node *n = NULL;
    struct qimg_error err = {0};
    int ret;
    if (image_opts) {
        struct qimg_opts *opts = qimg_opts_new();
        ret = qimg_opts_parse(opts, filename, NULL, &err);
        if (ret == 0)
            ret = qimg_open_image_opts(&n, opts, flags, &err);
        qimg_opts_free(opts);
    } else {
        ret = qimg_open(&n, filename, fmt, NULL, flags, &err);
    }
    if (ret < 0) {
        fprintf(stderr, "lockholder: Could not open '%s': %s\n", filename, err.msg);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);

    char buf[256];
    while (read(STDIN_FILENO, buf, sizeof(buf)) > 0) {
    }
    qimg_node_unref(n);
    return 0;
}
