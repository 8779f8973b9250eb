/* SPDX-License-Identifier: MIT */
/*
 * qemu-img convert [--object objectdef] [--image-opts] [--target-image-opts] [--target-is-zero]
 *                  [--bitmaps] [-U] [-C] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache]
 *                  [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options]
 *                  [-l snapshot_param] [-S sparse_size] [-r rate_limit] [-m num_coroutines] [-W]
 *                  [--salvage] filename [filename2 [...]] output_filename
 *
 * The checks run in the order qemu-img runs them (observed), since the first
 * failing one decides the message.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/create-opts.h"
#include "core/create.h"
#include "engines/copy.h"
#include "qimg/driver.h"

enum {
    OPT_OBJECT = 256,
    OPT_IMAGE_OPTS,
    OPT_TARGET_IMAGE_OPTS,
    OPT_TARGET_IS_ZERO,
    OPT_BITMAPS,
    OPT_SKIP_BROKEN,
    OPT_SALVAGE,
    OPT_FORCE_SHARE,
};

struct convert_opts {
    const char *fmt, *out_fmt, *backing, *backing_fmt, *snapshot;
    const char *cache, *src_cache;
    struct cli_option_list optlist;
    bool image_opts, tgt_image_opts, target_is_zero, bitmaps, skip_broken;
    bool force_share, copy_range, compress, progress, quiet, skip_create, ooo, salvage;
    bool explicit_sparse;
    unsigned workers;
    uint64_t sparse, rate;
};

/*
 * -S and -r are sizes read like every other (qemu-img 9.1's cvtnum): a
 * negative one is out of range, where 7.2 called it malformed.
 */

/* -m: an integer in C syntax (strtol, base 0), 1..16. */
static int parse_workers(const char *arg, unsigned *out)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 0);
    if (errno || end == arg || *end || v < 1 || v > QIMG_COPY_MAX_WORKERS) {
        cli_error("Invalid number of coroutines. Allowed number of coroutines is between 1 and %d",
                  QIMG_COPY_MAX_WORKERS);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static int parse_sparse(const char *arg, uint64_t *out)
{
    int64_t sv;
    if (cli_parse_image_size(arg, "buffer size for sparse output", &sv) < 0)
        return -1;
    uint64_t v = (uint64_t)sv;
    if (v % 512 || v > QIMG_COPY_MAX_SPARSE) {
        cli_error("Invalid buffer size for sparse output specified. Valid sizes are multiples of "
                  "512 up to %u. Select 0 to disable sparse detection (fully allocates output).",
                  QIMG_COPY_MAX_SPARSE);
        return -1;
    }
    *out = v;
    return 0;
}

/* An -o list must have no empty element (",," is an escaped comma). */
static bool option_list_valid(const char *s)
{
    if (!*s)
        return false;
    size_t elem = 0;
    for (const char *p = s; *p; p++) {
        if (*p == ',' && p[1] == ',') {
            p++;
            elem += 2;
        } else if (*p == ',') {
            if (!elem)
                return false;
            elem = 0;
        } else {
            elem++;
        }
    }
    return elem > 0;
}

/*
 * -l: "snapshot.id=...,snapshot.name=..." is an option list checked now;
 * anything else is an ID or name looked up once the image is open.
 */
/* snapshot.c: load the -l snapshot into a read-only source; -1 after the error. */
int cli_snapshot_load_param(struct qimg_node *n, const char *param);
/* bitmap.c: convert --bitmaps, checked before creating, copied after the data. */
int cli_convert_check_bitmaps(struct qimg_node *src, bool skip_broken);
int cli_convert_copy_bitmaps(struct qimg_node *src, struct qimg_node *dst, bool skip_broken);

static int check_snapshot_param(const char *arg)
{
    if (strncmp(arg, "snapshot.", 9) != 0)
        return 0;
    char *copy = strdup(arg);
    int ret = 0;
    if (!copy)
        return -1;
    /* ",," escapes are kept inside values; only the keys matter here. */
    for (char *p = copy, *start = copy; ret == 0; p++) {
        if (*p == ',' && p[1] == ',') {
            p++;
            continue;
        }
        if (*p != ',' && *p)
            continue;
        bool last = !*p;
        *p = '\0';
        char *eq = strchr(start, '=');
        if (!eq) {
            cli_warn("short-form boolean option '%s' deprecated\nPlease use %s=on instead", start,
                     start);
        } else {
            *eq = '\0';
        }
        if (strcmp(start, "snapshot.id") && strcmp(start, "snapshot.name")) {
            cli_error("Invalid parameter '%s'", start);
            cli_error("Failed in parsing snapshot param '%s'", arg);
            ret = -1;
        }
        if (last)
            break;
        start = p + 1;
    }
    free(copy);
    return ret;
}

static int parse_args(int argc, char **argv, struct convert_opts *o)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"target-image-opts", no_argument, NULL, OPT_TARGET_IMAGE_OPTS},
        {"target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO},
        {"bitmaps", no_argument, NULL, OPT_BITMAPS},
        {"skip-broken-bitmaps", no_argument, NULL, OPT_SKIP_BROKEN},
        {"salvage", no_argument, NULL, OPT_SALVAGE},
        {"force-share", no_argument, NULL, OPT_FORCE_SHARE},
        CLI_PROGRESS_FD_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = cli_getopt(argc, argv, "hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:", longopts)) != -1) {
        switch (c) {
        case 'f': o->fmt = optarg; break;
        case 'O': o->out_fmt = optarg; break;
        case 'B': o->backing = optarg; break;
        case 'F': o->backing_fmt = optarg; break;
        case 'C': o->copy_range = true; break;
        case 'c': o->compress = true; break;
        case 'o':
            if (!option_list_valid(optarg)) {
                cli_error("Invalid option list: %s", optarg);
                return -1;
            }
            if (cli_option_list_add(&o->optlist, optarg) < 0)
                return -1;
            break;
        case 'l':
            if (check_snapshot_param(optarg) < 0)
                return -1;
            o->snapshot = optarg;
            break;
        case 'S':
            if (parse_sparse(optarg, &o->sparse) < 0)
                return -1;
            o->explicit_sparse = true;
            break;
        case 'p': o->progress = true; break;
        case 't': o->cache = optarg; break;
        case 'T': o->src_cache = optarg; break;
        case 'q': o->quiet = true; break;
        case 'n': o->skip_create = true; break;
        case 'm':
            if (parse_workers(optarg, &o->workers) < 0)
                return -1;
            break;
        case 'W': o->ooo = true; break;
        case 'U':
        case OPT_FORCE_SHARE: o->force_share = true; break;
        case 'r':
            if (cli_parse_rate(optarg, &o->rate) < 0)
                return -1;
            break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                return -1;
            break;
        case OPT_IMAGE_OPTS: o->image_opts = true; break;
        case CLI_OPT_PROGRESS:
        case CLI_OPT_PROGRESS_FD:
            if (cli_progress_fd_option(c, optarg) < 0)
                return -1;
            break;
        case OPT_TARGET_IMAGE_OPTS: o->tgt_image_opts = true; break;
        case OPT_TARGET_IS_ZERO: o->target_is_zero = true; break;
        case OPT_BITMAPS: o->bitmaps = true; break;
        case OPT_SKIP_BROKEN: o->skip_broken = true; break;
        case OPT_SALVAGE: o->salvage = true; break;
        default: return -1;
        }
    }
    return 0;
}

/* Option combinations qemu-img refuses before looking at any file. */
static int check_combinations(const struct convert_opts *o)
{
    if (o->skip_broken && !o->bitmaps)
        cli_error("Use of --skip-broken-bitmaps requires --bitmaps");
    else if (o->copy_range && o->compress)
        cli_error("Cannot enable copy offloading when -c is used");
    else if (o->copy_range && o->explicit_sparse)
        cli_error("Cannot enable copy offloading when -S is used");
    else if (o->copy_range && o->salvage)
        cli_error("Cannot use copy offloading in salvaging mode");
    else if (o->tgt_image_opts && !o->skip_create)
        cli_error("--target-image-opts requires use of -n flag");
    else if (o->target_is_zero && !o->skip_create)
        cli_error("--target-is-zero requires use of -n flag");
    else if (o->skip_create && o->optlist.joined)
        cli_error("-o has no effect when skipping image creation");
    else
        return 0;
    return -1;
}

/* qemu-img 9.1 refuses -B (or -o backing_file, even empty) with several sources, after the
 * -o options and the format's backing support are checked, before --bitmaps. */
#define CONCAT_WITH_BACKING                                                                       \
    "Having a backing file for the target makes no sense when concatenating multiple input "     \
    "images"

/*
 * Without -n: the target's format, its -o options (validated as create does),
 * -B/-F and -c, checked before anything is created. Fills opts.
 */
static int prepare_create(const struct convert_opts *o, const char *out_filename, int n_src,
                          struct qimg_opts *opts)
{
    const struct qimg_driver *drv = qimg_driver_find(o->out_fmt);
    struct qimg_error err = {0};
    if (!drv) {
        cli_error("Unknown file format '%s'", o->out_fmt);
        return -1;
    }
    if (!drv->create_opts) {
        cli_error("Format driver '%s' does not support image creation", o->out_fmt);
        return -1;
    }
    size_t plen = qimg_protocol_prefix_len(out_filename); /* "a:b" without "file:" */
    if (plen && !qimg_driver_find_protocol(out_filename)) {
        cli_error("Unknown protocol '%.*s'", (int)plen, out_filename);
        return -1;
    }
    if (cli_option_list_parse(&o->optlist, opts, &err) < 0) {
        cli_error_obj(&err, NULL);
        return -1;
    }
    struct qimg_opt_desc *desc =
        qimg_create_opts_merged(drv, qimg_create_protocol_driver(out_filename));
    int ret = qimg_create_validate(desc, opts, &err);
    bool has_backing = qimg_opt_desc_find(desc, "backing_file") != NULL;
    free(desc);
    if (ret < 0) {
        cli_error_obj(&err, NULL);
        return -1;
    }
    if (o->backing) {
        if (!has_backing) {
            cli_error("Backing file not supported for file format '%s'", o->out_fmt);
            return -1;
        }
        qimg_opts_set(opts, "backing_file", o->backing);
    }
    if (o->backing_fmt) {
        if (!has_backing) {
            cli_error("Backing file format not supported for file format '%s'", o->out_fmt);
            return -1;
        }
        qimg_opts_set(opts, "backing_fmt", o->backing_fmt);
    }
    if (n_src > 1 && qimg_opts_has(opts, "backing_file")) {
        cli_error(CONCAT_WITH_BACKING);
        return -1;
    }
    if (o->compress && !drv->pwrite_compressed) {
        cli_error("Compression not supported for this file format");
        return -1;
    }
    const char *legacy = qimg_opts_peek(opts, "encryption");
    bool encrypt = qimg_opts_has(opts, "encrypt.format") ||
                   (legacy && (!strcmp(legacy, "on") || !strcmp(legacy, "yes") ||
                               !strcmp(legacy, "true")));
    if (o->compress && encrypt) {
        cli_error("Compression and encryption not supported at the same time");
        return -1;
    }
    if (qimg_opts_has(opts, "backing_file") && !qimg_opts_has(opts, "backing_fmt")) {
        cli_error("Use of backing file requires explicit backing format");
        return -1;
    }
    return 0;
}

/*
 * A target with a backing file (-B, or -o backing_file) gets what the source's
 * top layer holds: its backing is taken to match the target's, so what the top
 * leaves unallocated stays unallocated (qemu-img copies only the top layer).
 * Past the end of a new target's backing file the target reads as zeroes, so
 * only data is copied there (zeroes found inside data are still written).
 * Returns 0 or -errno with err set.
 */
static int copy_onto_backing(struct qimg_copy_job *job, struct qimg_copy_source *src,
                             bool fresh_target, struct qimg_error *err)
{
    struct qimg_node *src_backing = job->n_src == 1 ? qimg_node_backing(src->node) : NULL;
    if (src_backing) {
        job->base = src_backing;
        job->skip_unallocated = true;
    }
    struct qimg_node *dst_backing = qimg_node_backing(job->dst);
    int64_t blen = dst_backing ? qimg_node_length(dst_backing) : -1;
    if (!fresh_target || job->n_src != 1 || blen < 0 || (uint64_t)blen >= src->length)
        return qimg_copy_run(job, NULL, err);
    const struct qimg_copy_source whole = *src;
    src->length = (uint64_t)blen;
    int ret = src->length ? qimg_copy_run(job, NULL, err) : 0;
    for (uint64_t off = (uint64_t)blen; ret == 0 && off < whole.length;) {
        struct qimg_block_status st;
        ret = qimg_chain_block_status(whole.node, job->base, whole.offset + off,
                                      whole.length - off, &st);
        if (ret < 0) {
            qimg_error_set(err, ret, "error while reading block status at offset %llu: %s",
                           (unsigned long long)off, strerror(-ret));
            break;
        }
        uint64_t n = st.bytes && st.bytes <= whole.length - off ? st.bytes : whole.length - off;
        if ((st.flags & QIMG_BLK_DATA) && !(st.flags & QIMG_BLK_ZERO)) {
            src->offset = whole.offset + off;
            src->length = n;
            job->dst_offset = off;
            ret = qimg_copy_run(job, NULL, err);
        }
        off += n;
    }
    *src = whole;
    job->dst_offset = 0;
    return ret;
}

static void on_progress(void *opaque, uint64_t done, uint64_t total)
{
    (void)opaque;
    cli_progress_update((double)done, (double)total);
    cli_progress_fd(done, total);
}

static void on_read_error(void *opaque, uint64_t offset, uint64_t len, int errnum)
{
    const struct convert_opts *o = opaque;
    (void)len;
    if (!o->quiet)
        cli_warn("error while reading offset %" PRIu64 ": %s", offset, strerror(errnum));
}

/*
 * The new target is opened with the secrets its -o options named
 * ("key-secret", "encrypt.key-secret"), as qemu-img carries them over.
 */
static struct qimg_opts *key_secret_opts(const struct qimg_opts *create_opts)
{
    struct qimg_opts *k = NULL;
    for (size_t i = 0; create_opts && i < create_opts->n; i++) {
        const char *key = create_opts->v[i].key;
        size_t len = strlen(key);
        if (!create_opts->v[i].value ||
            (strcmp(key, "key-secret") && (len < 11 || strcmp(key + len - 11, ".key-secret"))))
            continue;
        if (!k)
            k = qimg_opts_new();
        qimg_opts_set(k, key, create_opts->v[i].value);
    }
    return k;
}

static struct qimg_node *open_target(const struct convert_opts *o, const char *out_filename,
                                     unsigned flags, struct qimg_opts *secrets)
{
    struct cli_open t = {.filename = out_filename,
                         .fmt = o->tgt_image_opts ? NULL : o->out_fmt,
                         .image_opts = o->tgt_image_opts,
                         .flags = flags,
                         .quiet = o->quiet,
                         .opts = secrets};
    return cli_open_image(&t);
}

int cmd_convert(int argc, char **argv)
{
    struct convert_opts o = {.out_fmt = "raw", .cache = "unsafe", .src_cache = "writeback",
                             .workers = QIMG_COPY_DEFAULT_WORKERS,
                             .sparse = QIMG_COPY_DEFAULT_SPARSE};
    struct qimg_node **src = NULL, *dst = NULL;
    struct qimg_copy_source *copy_src = NULL;
    struct qimg_opts *create_opts = NULL;
    struct qimg_error err = {0};
    int n_src = 0, ret = 1;
    bool progress_started = false;

    if (parse_args(argc, argv, &o) < 0 || check_combinations(&o) < 0)
        goto out;
    int bs_n = argc - optind - 1;
    const char *out_filename = bs_n >= 1 ? argv[argc - 1] : NULL;
    if (cli_option_list_wants_help(&o.optlist)) {
        ret = cli_print_create_help(o.out_fmt, out_filename) < 0 ? 1 : 0;
        goto out;
    }
    if (bs_n < 1) {
        cli_error("Must specify image file name");
        goto out;
    }
    unsigned src_flags, dst_flags;
    if (cli_parse_cache(o.src_cache, &src_flags, true) < 0)
        goto out;
    if (o.quiet)
        o.progress = false;
    cli_progress_init(o.progress);
    progress_started = true;
    if (o.image_opts && o.fmt) {
        cli_error("--image-opts and --format are mutually exclusive");
        goto out;
    }

    src = calloc((size_t)bs_n, sizeof(*src));
    copy_src = calloc((size_t)bs_n, sizeof(*copy_src));
    if (!src || !copy_src)
        goto out;
    uint64_t total = 0;
    for (; n_src < bs_n; n_src++) {
        struct cli_open so = {.filename = argv[optind + n_src],
                              .fmt = o.fmt,
                              .image_opts = o.image_opts,
                              .flags = src_flags | QIMG_O_STABLE |
                                       (o.force_share ? QIMG_O_FORCE_SHARE : 0),
                              .quiet = o.quiet};
        src[n_src] = cli_open_image(&so);
        if (!src[n_src])
            goto out;
    }
    if (o.snapshot) {
        if (bs_n > 1) {
            cli_error("No support for concatenating multiple snapshot");
            goto out;
        }
        if (cli_snapshot_load_param(src[0], o.snapshot) < 0)
            goto out;
    }
    for (int i = 0; i < n_src; i++) {
        int64_t len = qimg_node_length(src[i]);
        if (len < 0) {
            cli_error("Could not get size of %s: %s", argv[optind + i], strerror((int)-len));
            goto out;
        }
        copy_src[i] = (struct qimg_copy_source){.node = src[i], .length = (uint64_t)len};
        total += (uint64_t)len;
    }

    if (!o.skip_create) {
        create_opts = qimg_opts_new();
        if (prepare_create(&o, out_filename, n_src, create_opts) < 0)
            goto out;
    } else if (n_src > 1 && o.backing) {
        cli_error(CONCAT_WITH_BACKING);
        goto out;
    }
    if (o.bitmaps) {
        if (n_src > 1) {
            cli_error("Copying bitmaps only possible with single source");
            goto out;
        }
        if (cli_convert_check_bitmaps(src[0], o.skip_broken) < 0)
            goto out;
    }
    bool target_has_backing =
        o.backing || (create_opts && qimg_opts_peek(create_opts, "backing_file"));
    if (!o.skip_create) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%" PRIu64, total);
        qimg_opts_set(create_opts, "size", buf); /* the sources decide, whatever -o said */
        if (qimg_create(out_filename, o.out_fmt, create_opts, &err) < 0) {
            cli_error_obj(&err, "%s: error while converting %s: ", out_filename, o.out_fmt);
            goto out;
        }
    }
    if (cli_parse_cache(o.cache, &dst_flags, false) < 0)
        goto out;
    struct qimg_opts *secrets = key_secret_opts(create_opts);
    /* qemu-img opens the target with discard=unmap unless -S 0: zeroes may deallocate. */
    dst = open_target(&o, out_filename, dst_flags | QIMG_O_RDWR | (o.sparse ? QIMG_O_UNMAP : 0),
                      secrets);
    qimg_opts_free(secrets);
    if (!dst)
        goto out;
    if (o.bitmaps && !qimg_bitmap_supported(dst)) {
        cli_error("Format driver '%s' does not support bitmaps", qimg_node_format(dst));
        goto out;
    }
    if (o.compress && !qimg_node_driver(dst)->pwrite_compressed) {
        cli_error("Compression not supported for this file format");
        goto out;
    }
    if (o.skip_create) {
        int64_t dlen = qimg_node_length(dst);
        if (dlen < 0 || (uint64_t)dlen < total) {
            cli_error("output file is smaller than input file");
            goto out;
        }
    }
    if (o.target_is_zero && qimg_node_backing(dst)) {
        cli_error("Cannot use --target-is-zero when the destination image has a backing file");
        goto out;
    }

    struct qimg_copy_job job = {
        .src = copy_src,
        .n_src = (size_t)n_src,
        .dst = dst,
        .workers = o.workers,
        .out_of_order = o.ooo,
        .sparse_size = o.sparse,
        .target_is_zero = o.target_is_zero || (!o.skip_create && qimg_node_has_zero_init(dst)),
        .compress = o.compress || qimg_node_needs_compressed_writes(dst),
        .offload = o.copy_range,
        .salvage = o.salvage,
        .rate_limit = o.rate,
        .flush = true,
        .progress = on_progress, /* also without -p: SIGUSR1 prints it */
        .read_error = on_read_error,
        .opaque = &o,
    };
    if ((target_has_backing ? copy_onto_backing(&job, copy_src, !o.skip_create, &err)
                            : qimg_copy_run(&job, NULL, &err)) < 0) {
        cli_error_obj(&err, NULL);
        goto out;
    }
    cli_progress_update(1, 1);
    cli_progress_fd_end(UINT64_MAX);
    if (o.bitmaps && cli_convert_copy_bitmaps(src[0], dst, o.skip_broken) < 0)
        goto out;
    ret = 0;
out:
    if (progress_started)
        cli_progress_end();
    qimg_node_unref(dst);
    for (int i = 0; i < n_src; i++)
        qimg_node_unref(src[i]);
    free(src);
    free(copy_src);
    qimg_opts_free(create_opts);
    cli_option_list_free(&o.optlist);
    return ret;
}
