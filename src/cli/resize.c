/* SPDX-License-Identifier: MIT */
/* qemu-img resize [--object objectdef] [--image-opts] [-f fmt] [--preallocation=prealloc] [-q]
 *                 [--shrink] filename [+ | -]size
 * The size is always the last argument, taken off before option parsing so
 * that "-1G" is a relative size and not an option. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* The largest image the block layer accepts: INT64_MAX rounded down to 1 GiB. */
#define RESIZE_MAX_LENGTH (INT64_MAX - (int64_t)(QIMG_GiB - 1))

enum size_rel { SIZE_ABSOLUTE, SIZE_GROW, SIZE_SHRINK };

/* "[+|-]size" with the option parser's wording for bad values (the size is a "size" option). */
static int parse_new_size(const char *arg, enum size_rel *rel, uint64_t *out)
{
    const char *p = arg;
    *rel = SIZE_ABSOLUTE;
    if (*p == '+') {
        *rel = SIZE_GROW;
        p++;
    } else if (*p == '-') {
        *rel = SIZE_SHRINK;
        p++;
    }
    int ret = *p == '-' ? -EINVAL : qimg_parse_size(p, 1, out);
    if (ret == -ERANGE) {
        cli_error("Value '%s' is out of range for parameter 'size'", p);
        return -1;
    }
    if (ret < 0) {
        cli_error("Parameter 'size' expects a non-negative number below 2^64\n"
                  "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
                  "and exabytes, respectively.");
        return -1;
    }
    return 0;
}

static int resize_node(struct qimg_node *n, enum size_rel rel, uint64_t n_size,
                       enum qimg_prealloc prealloc, bool shrink)
{
    int64_t cur = qimg_node_length(n);
    if (cur < 0) {
        cli_error("Failed to inquire current image length: %s", strerror((int)-cur));
        return -1;
    }
    /* Relative sizes wrap like qemu-img's signed arithmetic; anything <= 0 is refused. */
    uint64_t total = n_size;
    if (rel == SIZE_GROW)
        total = (uint64_t)cur + n_size;
    else if (rel == SIZE_SHRINK)
        total = (uint64_t)cur - n_size;
    if ((int64_t)total <= 0) {
        cli_error("New image size must be positive");
        return -1;
    }
    if (prealloc != QIMG_PREALLOC_OFF && (int64_t)total <= cur) {
        cli_error("Preallocation can only be used for growing images");
        return -1;
    }
    if ((int64_t)total < cur && !shrink) {
        cli_error("Use the --shrink option to perform a shrink operation.");
        cli_warn("Shrinking an image will delete all data beyond the shrunken image's end. "
                 "Before performing such an operation, make sure there is no important data "
                 "there.");
        return -1;
    }
    if ((int64_t)total > RESIZE_MAX_LENGTH) {
        cli_error("offset(%" PRIu64 ") exceeds maximum(%" PRId64 ")", total,
                  (int64_t)RESIZE_MAX_LENGTH);
        return -1;
    }
    struct qimg_error err = {0};
    if (qimg_node_truncate(n, total, false, prealloc, &err) < 0) {
        cli_error_obj(&err, NULL);
        return -1;
    }
    return 0;
}

int cmd_resize(int argc, char **argv)
{
    enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS, OPT_PREALLOC, OPT_SHRINK };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"preallocation", required_argument, NULL, OPT_PREALLOC},
        {"shrink", no_argument, NULL, OPT_SHRINK},
        {NULL, 0, NULL, 0},
    };
    struct cli_open o = {.flags = QIMG_O_RDWR | QIMG_O_RESIZE};
    enum qimg_prealloc prealloc = QIMG_PREALLOC_OFF;
    bool shrink = false;
    int c;

    if (argc < 3)
        return cli_usage_error("Not enough arguments");
    const char *size_arg = argv[--argc];

    while ((c = cli_getopt(argc, argv, "hf:q", longopts)) != -1) {
        switch (c) {
        case 'f': o.fmt = optarg; break;
        case 'q': o.quiet = true; break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                return 1;
            break;
        case OPT_IMAGE_OPTS: o.image_opts = true; break;
        case OPT_PREALLOC:
            if (qimg_prealloc_parse(optarg, &prealloc) < 0) {
                cli_error("Invalid preallocation mode '%s'", optarg);
                return 1;
            }
            break;
        case OPT_SHRINK: shrink = true; break;
        default: return 1;
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("Expecting image file name and size");
    o.filename = argv[optind];

    enum size_rel rel;
    uint64_t n_size;
    if (parse_new_size(size_arg, &rel, &n_size) < 0)
        return 1;
    if (o.image_opts && o.fmt) {
        cli_error("--image-opts and --format are mutually exclusive");
        return 1;
    }

    struct qimg_node *n = cli_open_image(&o);
    if (!n)
        return 1;
    int ret = resize_node(n, rel, n_size, prealloc, shrink);
    if (ret == 0 && !o.quiet)
        printf("Image resized.\n");
    fflush(stdout);
    qimg_node_unref(n);
    return ret < 0 ? 1 : 0;
}
