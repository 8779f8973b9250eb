/* SPDX-License-Identifier: MIT */
/* qemu-img check [--object objectdef] [--image-opts] [-q] [-f fmt] [--output=ofmt]
 *                [-r [leaks | all]] [-T src_cache] [-U] filename
 * Runs the format's check (repairing with -r), prints the ImageCheck report
 * (human or JSON) and exits as qemu-img.rst says: 0 clean, 1 check not
 * completed, 2 corruptions, 3 leaks only, 63 format without checks. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "qimg/driver.h"
#include "qimg/json.h"

static void print_human(const struct qimg_check_result *r, bool quiet)
{
    if (quiet)
        return;
    if (!(r->corruptions || r->leaks || r->check_errors)) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions)
            printf("\n%d errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image may corrupt it.\n",
                   r->corruptions);
        if (r->leaks)
            printf("\n%d leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n",
                   r->leaks);
        if (r->check_errors)
            printf("\n%d internal errors have occurred during the check.\n", r->check_errors);
    }
    if (r->total_clusters && r->allocated_clusters)
        printf("%llu/%llu = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed "
               "clusters\n",
               (unsigned long long)r->allocated_clusters, (unsigned long long)r->total_clusters,
               r->allocated_clusters * 100.0 / r->total_clusters,
               r->fragmented_clusters * 100.0 / r->allocated_clusters,
               r->compressed_clusters * 100.0 / r->allocated_clusters);
    if (r->image_end_offset)
        printf("Image end offset: %llu\n", (unsigned long long)r->image_end_offset);
}

/* ImageCheck (qapi), members in schema order; optional ones only when non-zero. */
static void print_json(const struct qimg_check_result *r, const char *filename,
                       const char *format, bool quiet)
{
    if (quiet)
        return;
    struct qimg_json *j = qimg_json_object();
    qimg_json_add_str(j, "filename", filename);
    qimg_json_add_str(j, "format", format);
    qimg_json_add_int(j, "check-errors", r->check_errors);
    if (r->image_end_offset)
        qimg_json_add_int(j, "image-end-offset", (int64_t)r->image_end_offset);
    if (r->corruptions)
        qimg_json_add_int(j, "corruptions", r->corruptions);
    if (r->leaks)
        qimg_json_add_int(j, "leaks", r->leaks);
    if (r->corruptions_fixed)
        qimg_json_add_int(j, "corruptions-fixed", r->corruptions_fixed);
    if (r->leaks_fixed)
        qimg_json_add_int(j, "leaks-fixed", r->leaks_fixed);
    if (r->total_clusters)
        qimg_json_add_int(j, "total-clusters", (int64_t)r->total_clusters);
    if (r->allocated_clusters)
        qimg_json_add_int(j, "allocated-clusters", (int64_t)r->allocated_clusters);
    if (r->fragmented_clusters)
        qimg_json_add_int(j, "fragmented-clusters", (int64_t)r->fragmented_clusters);
    if (r->compressed_clusters)
        qimg_json_add_int(j, "compressed-clusters", (int64_t)r->compressed_clusters);
    qimg_json_print(stdout, j, 0);
    printf("\n");
    qimg_json_free(j);
}

/* check -r ... --dry-run (a qimg extension): what the repair would have written. */
static void print_dry_run(struct qimg_node *n, const struct qimg_check_result *r, int ret)
{
    struct qimg_dry_run_stats st;
    if (qimg_node_dry_run_stats(n, &st) < 0)
        return;
    int code = ret < 0 || r->check_errors ? 1 : r->corruptions ? 2 : r->leaks ? 3 : 0;
    printf("Dry run: the repair would write %llu bytes in %llu requests (%llu distinct 4 KiB "
           "pages)",
           (unsigned long long)st.bytes, (unsigned long long)st.requests,
           (unsigned long long)st.pages);
    if (st.new_size != st.old_size)
        printf(" and resize the image file from %lld to %lld bytes", (long long)st.old_size,
               (long long)st.new_size);
    printf(";\nthe image was not modified. The repair would exit with code %d.\n", code);
}

static int run_check(struct qimg_node *n, struct qimg_check_result *r, int fix)
{
    struct qimg_error err = {0};
    memset(r, 0, sizeof(*r));
    int ret = qimg_node_driver(n)->check(n, r, fix, &err);
    if (ret < 0 && qimg_error_is_set(&err))
        cli_error("%s", err.msg);
    return ret;
}

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
        {"dry-run", no_argument, NULL, CLI_OPT_DRY_RUN},
        {NULL, 0, NULL, 0},
    };
    struct cli_open o = {.flags = QIMG_O_NO_BACKING};
    enum cli_output output = CLI_OUTPUT_HUMAN;
    int fix = 0, c;
    bool dry_run = false;
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
        case CLI_OPT_DRY_RUN: dry_run = true; break;
        default: return 1;
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("Expecting one image file name");
    o.filename = argv[optind];
    if (dry_run && !fix)
        return cli_usage_error("--dry-run needs -r leaks or -r all");
    if (fix && (o.flags & QIMG_O_FORCE_SHARE)) {
        cli_error("Could not open '%s': force-share=on can only be used with read-only images",
                  o.filename);
        return 1;
    }
    /* Repairs punch the clusters they free out of the file (QEMU discards them). */
    o.flags |= cache | QIMG_O_CHECK | (fix ? QIMG_O_RDWR | QIMG_O_UNMAP : 0) |
               (dry_run ? QIMG_O_DRY_RUN : 0);
    struct qimg_node *n = cli_open_image(&o);
    if (!n)
        return 1;
    if (!qimg_node_driver(n)->check) {
        cli_error("This image format does not support checks");
        qimg_node_unref(n);
        return 63;
    }
    struct qimg_check_result r;
    int ret = run_check(n, &r, fix);
    if (ret == -ENOTSUP) {
        /* A format that cannot repair (vdi with -r) says so as qemu-img does. */
        cli_error("This image format does not support checks");
        qimg_node_unref(n);
        return 63;
    }
    if (ret == 0 && (r.corruptions_fixed || r.leaks_fixed)) {
        int corruptions_fixed = r.corruptions_fixed, leaks_fixed = r.leaks_fixed;
        if (output == CLI_OUTPUT_HUMAN && !o.quiet && dry_run)
            printf("Dry run: the repair would fix these inconsistencies (nothing is written):\n\n"
                   "    %d leaked clusters\n"
                   "    %d corruptions\n\n"
                   "Double checking the image as the repair would leave it...\n",
                   r.leaks_fixed, r.corruptions_fixed);
        else if (output == CLI_OUTPUT_HUMAN && !o.quiet)
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %d leaked clusters\n"
                   "    %d corruptions\n\n"
                   "Double checking the fixed image now...\n",
                   leaks_fixed, corruptions_fixed);
        fflush(stdout);
        ret = run_check(n, &r, 0);
        r.corruptions_fixed = corruptions_fixed;
        r.leaks_fixed = leaks_fixed;
    }
    if (ret == 0) {
        if (output == CLI_OUTPUT_HUMAN)
            print_human(&r, o.quiet);
        else
            print_json(&r, o.filename, qimg_node_format(n), o.quiet);
    }
    if (dry_run && output == CLI_OUTPUT_HUMAN && !o.quiet)
        print_dry_run(n, &r, ret);
    fflush(stdout);
    qimg_node_unref(n);
    if (ret < 0 || r.check_errors) {
        if (ret < 0)
            cli_error("Check failed: %s", strerror(-ret));
        else
            cli_error("Check failed");
        return 1;
    }
    return r.corruptions ? 2 : r.leaks ? 3 : 0;
}
