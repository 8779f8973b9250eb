/* SPDX-License-Identifier: MIT */
/* qemu-img amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force]
 *                -o options filename */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/create-opts.h"
#include "core/create.h"
#include "qimg/driver.h"

/* "Amend options for 'fmt':" and the driver's amend table; 0, or 1 after an error. */
static int print_amend_help(const struct qimg_driver *drv, const char *fmt)
{
    if (!drv) {
        cli_error("Unknown file format '%s'", fmt);
        return 1;
    }
    if (!drv->amend || !drv->amend_opts) {
        cli_error("Format driver '%s' does not support option amendment", fmt);
        return 1;
    }
    /* qimg_opts_print_help's header is create's; print ours and the sorted table under it. */
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem)
        return 1;
    qimg_opts_print_help(mem, NULL, drv->amend_opts);
    fclose(mem);
    const char *body = strchr(buf, '\n');
    printf("Amend options for '%s':\n%s", fmt, body ? body + 1 : "");
    free(buf);
    return 0;
}

/* Table of amend options followed by the create-only ones (for the hint). */
static struct qimg_opt_desc *amend_and_create_opts(const struct qimg_driver *drv)
{
    size_t na = 0, nc = 0;
    while (drv->amend_opts[na].name)
        na++;
    while (drv->create_opts && drv->create_opts[nc].name)
        nc++;
    struct qimg_opt_desc *d = calloc(na + nc + 1, sizeof(*d));
    if (!d)
        return NULL;
    memcpy(d, drv->amend_opts, na * sizeof(*d));
    if (nc)
        memcpy(d + na, drv->create_opts, nc * sizeof(*d));
    return d;
}

/*
 * qemu-img parses -o against the amend table; when that fails but the list
 * would parse as create options, the error gets a hint that the option
 * only works at creation.
 */
static int validate_amend_opts(const struct qimg_driver *drv, struct qimg_opts *opts)
{
    struct qimg_error err = {0};
    struct qimg_opts *probe = qimg_opts_clone(opts);
    int ret = qimg_create_validate(drv->amend_opts, opts, &err);
    if (ret < 0) {
        struct qimg_opt_desc *both = amend_and_create_opts(drv);
        struct qimg_error err2 = {0};
        if (both && qimg_create_validate(both, probe, &err2) == 0)
            cli_error("%s\nThis option is only supported for image creation", err.msg);
        else
            cli_error_obj(&err, NULL);
        free(both);
    }
    qimg_opts_free(probe);
    return ret;
}

/* --progress=fd:N: amend counts steps, not bytes; the fraction done is scaled to the disk size. */
static uint64_t amend_size;

static void report_progress(void *opaque, double done, double total)
{
    (void)opaque;
    cli_progress_update(done, total);
    if (total > 0 && done >= 0)
        cli_progress_fd((uint64_t)((double)amend_size * (done > total ? 1.0 : done / total)),
                        amend_size);
}

int cmd_amend(int argc, char **argv)
{
    enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS, OPT_FORCE };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"force", no_argument, NULL, OPT_FORCE},
        CLI_PROGRESS_FD_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    struct cli_open o = {.flags = QIMG_O_RDWR};
    struct cli_option_list optlist = {0};
    const char *cache = "writeback";
    bool progress = false, force = false;
    int c, ret = 1;
    struct qimg_node *n = NULL;
    struct qimg_opts *opts = NULL;

    while ((c = cli_getopt(argc, argv, "ho:f:t:pq", longopts)) != -1) {
        switch (c) {
        case 'o':
            if (cli_option_list_add(&optlist, optarg) < 0)
                goto out;
            break;
        case 'f': o.fmt = optarg; break;
        case 't': cache = optarg; break;
        case 'p': progress = true; break;
        case 'q': o.quiet = true; break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                goto out;
            break;
        case OPT_IMAGE_OPTS: o.image_opts = true; break;
        case CLI_OPT_PROGRESS:
        case CLI_OPT_PROGRESS_FD:
            if (cli_progress_fd_option(c, optarg) < 0)
                goto out;
            break;
        case OPT_FORCE: force = true; break;
        default: goto out;
        }
    }
    if (!optlist.joined) {
        cli_usage_error("Must specify options (-o)");
        goto out;
    }
    if (o.quiet)
        progress = false;
    cli_progress_init(progress);
    o.filename = optind == argc - 1 ? argv[argc - 1] : NULL;
    bool help = cli_option_list_wants_help(&optlist);
    if (o.fmt && help) {
        /* With -f, the help needs no image. */
        ret = print_amend_help(qimg_driver_find(o.fmt), o.fmt);
        goto out_progress;
    }
    if (optind != argc - 1) {
        cli_error("Expecting one image file name");
        goto out_progress;
    }
    unsigned cache_flags = 0;
    if (cli_parse_cache(cache, &cache_flags, false) < 0)
        goto out_progress;
    o.flags |= cache_flags;
    n = cli_open_image(&o);
    if (!n)
        goto out_progress;
    const struct qimg_driver *drv = qimg_node_driver(n);
    if (help) {
        ret = print_amend_help(drv, qimg_node_format(n));
        goto out_progress;
    }
    if (!drv->amend || !drv->amend_opts) {
        cli_error("Format driver '%s' does not support option amendment", qimg_node_format(n));
        goto out_progress;
    }
    struct qimg_error err = {0};
    opts = qimg_opts_new();
    if (cli_option_list_parse(&optlist, opts, &err) < 0) {
        cli_error_obj(&err, NULL);
        goto out_progress;
    }
    if (validate_amend_opts(drv, opts) < 0)
        goto out_progress;
    int64_t vsize = qimg_node_length(n);
    amend_size = vsize > 0 ? (uint64_t)vsize : 0;
    n->progress = report_progress; /* also without -p: SIGUSR1 prints it */
    int aret = drv->amend(n, opts, force, &err);
    cli_progress_update(1, 1);
    if (aret < 0) {
        cli_error_obj(&err, NULL);
        goto out_progress;
    }
    cli_progress_fd_end(amend_size);
    ret = 0;
out_progress:
    cli_progress_end();
out:
    if (n)
        qimg_node_unref(n);
    qimg_opts_free(opts);
    cli_option_list_free(&optlist);
    return ret;
}
