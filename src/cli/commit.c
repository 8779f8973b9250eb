/* SPDX-License-Identifier: MIT */
/* qemu-img commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base]
 *                 [-r rate_limit] [-d] [-p] filename
 *
 * Copies what the layers above BASE (the top's backing file by default)
 * allocate into BASE, growing BASE first when it is smaller, then empties the
 * top unless -d (-b implies -d: the layers in between no longer match).
 *
 * The chain is looked at read-only first to find BASE; then BASE is opened
 * read-write with its own chain under it, the layers in between read-only on
 * their own, and the top read-write, and the layers are linked again.
 *
 * Ranges reading as zeroes become zero writes that may unmap what base held
 * there (qemu-img leaves such clusters unallocated); data is copied as it is,
 * even when it is all zeroes (qemu-img's commit does no zero detection).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engines/copy.h"
#include "util/mem.h"

struct layer {
    char *filename;
    char *fmt; /* NULL: probe */
};

struct commit_opts {
    struct cli_open top;
    const char *base;
    const char *cache;
    bool drop, progress, quiet;
    uint64_t rate;
};

static bool same_file(const char *a, const char *b)
{
    if (!strcmp(a, b))
        return true;
    char ra[PATH_MAX], rb[PATH_MAX];
    return realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

/*
 * Does -b name this layer (reached from parent)? As qemu-img 9.1 finds a backing image: the
 * name parent stores, or a file that is the layer once a relative name is taken relative to
 * parent's directory (not the working directory: "-b dir/base" for dir/top -> dir/base is
 * not found, "-b ./base" is).
 */
static bool names_layer(const char *base, struct qimg_node *parent, struct qimg_node *layer)
{
    const char *stored = qimg_node_backing_file(parent);
    if (stored && !strcmp(base, stored))
        return true;
    char *path = qimg_backing_path(parent, base);
    bool same = same_file(path, qimg_node_filename(layer));
    free(path);
    return same;
}

/*
 * Open the chain read-only and list the layers from the top down to the base
 * (inclusive). Returns the number of layers, or -1 after printing an error.
 */
static int find_layers(const struct commit_opts *o, struct layer **out)
{
    struct cli_open ro = o->top;
    ro.flags &= ~(QIMG_O_RDWR | QIMG_O_UNMAP);
    struct qimg_node *top = cli_open_image(&ro);
    if (!top)
        return -1;
    int n = -1;
    if (!qimg_node_backing(top)) {
        cli_error("Image does not have a backing file");
        goto out;
    }
    struct layer *l = NULL;
    int count = 1;
    struct qimg_node *parent = top, *cur = qimg_node_backing(top);
    for (;;) {
        count++;
        if (!o->base || names_layer(o->base, parent, cur))
            break;
        if (!qimg_node_backing(cur)) {
            cli_error("Did not find '%s' in the backing chain of '%s'", o->base, o->top.filename);
            goto out;
        }
        parent = cur;
        cur = qimg_node_backing(cur);
    }
    l = xcalloc((size_t)count, sizeof(*l));
    cur = top;
    for (int i = 0; i < count; i++) {
        if (i > 0) {
            l[i].filename = xstrdup(qimg_node_full_backing_filename(cur));
            const char *bf = qimg_node_backing_format(cur);
            l[i].fmt = bf ? xstrdup(bf) : NULL;
            cur = qimg_node_backing(cur);
        }
    }
    *out = l;
    n = count;
out:
    qimg_node_unref(top);
    return n;
}

static void free_layers(struct layer *l, int n)
{
    for (int i = 0; i < n; i++) {
        free(l[i].filename);
        free(l[i].fmt);
    }
    free(l);
}

/*
 * The secrets the top's options give layer depth ("backing.encrypt.key-secret",
 * "backing.backing.key-secret", ...), so that a layer reopened on its own
 * unlocks as it did in the chain; with_below: those of the layers under it
 * too (base keeps its own backing chain). NULL when there are none.
 */
static struct qimg_opts *layer_crypt_opts(const struct cli_open *top, int depth, bool with_below)
{
    struct qimg_opts *all = qimg_opts_new(), *out = NULL;
    struct qimg_error err = {0};
    if (top->image_opts)
        qimg_opts_parse(all, top->filename, NULL, &err);
    else if (!strncmp(top->filename, "json:", 5))
        qimg_opts_parse_json(all, top->filename + 5, &err);
    size_t plen = strlen("backing.") * (size_t)depth;
    for (size_t i = 0; i < all->n; i++) {
        const char *k = all->v[i].key;
        bool under = strlen(k) > plen;
        for (int d = 0; d < depth && under; d++)
            under = !strncmp(k + strlen("backing.") * (size_t)d, "backing.", strlen("backing."));
        if (!under)
            continue;
        const char *rest = k + plen, *own = rest;
        while (with_below && !strncmp(own, "backing.", strlen("backing.")))
            own += strlen("backing.");
        if (strncmp(own, "encrypt.", strlen("encrypt.")) && strcmp(own, "key-secret"))
            continue;
        if (!out)
            out = qimg_opts_new();
        qimg_opts_set_typed(out, rest, all->v[i].value, all->v[i].type);
    }
    qimg_opts_free(all);
    return out;
}

static struct qimg_node *open_layer(const struct cli_open *top, int depth, const struct layer *l,
                                    unsigned flags)
{
    struct qimg_error err = {0};
    struct qimg_node *n = NULL;
    struct qimg_opts *opts = layer_crypt_opts(top, depth, !(flags & QIMG_O_NO_BACKING));
    int ret = qimg_open(&n, l->filename, l->fmt, opts, flags, &err);
    qimg_opts_free(opts);
    if (ret < 0) {
        cli_error_obj(&err, "Could not open '%s': ", l->filename);
        return NULL;
    }
    return n;
}

/*
 * The top, reopened read-write over the layers commit links under it itself:
 * its backing.* options (the lower layers' secrets) went to those layers, so
 * they count as used here.
 */
static struct qimg_node *open_top(const struct cli_open *top)
{
    bool json = !top->image_opts && !strncmp(top->filename, "json:", 5);
    if (!top->image_opts && !json)
        return cli_open_image(top);
    struct qimg_opts *opts = qimg_opts_new();
    struct qimg_error err = {0};
    struct qimg_node *n = NULL;
    int ret = json ? qimg_opts_parse_json(opts, top->filename + 5, &err)
                   : qimg_opts_parse(opts, top->filename, NULL, &err);
    bool has_backing_opts = false;
    for (size_t i = 0; ret == 0 && i < opts->n; i++) {
        if (!strncmp(opts->v[i].key, "backing.", strlen("backing."))) {
            opts->v[i].used = true;
            has_backing_opts = true;
        }
    }
    if (ret == 0 && !has_backing_opts) {
        qimg_opts_free(opts);
        return cli_open_image(top);
    }
    if (ret == 0)
        ret = qimg_open_image_opts(&n, opts, top->flags, &err);
    qimg_opts_free(opts);
    if (ret < 0) {
        cli_error_obj(&err, "Could not open '%s': ", top->filename);
        return NULL;
    }
    return n;
}

/* Grow base to the top's size; the new area must read as zeroes even over a longer backing. */
static int grow_base(struct qimg_node *base, uint64_t size)
{
    int64_t old = qimg_node_length(base);
    if (old < 0) {
        cli_error("Could not get the size of the base image: %s", strerror((int)-old));
        return -1;
    }
    if ((uint64_t)old >= size)
        return 0;
    struct qimg_error err = {0};
    if (qimg_node_truncate(base, size, false, QIMG_PREALLOC_OFF, &err) < 0) {
        cli_error_obj(&err, "Top image %s is larger than its base image, and resizing the "
                            "base failed: ", qimg_node_filename(base));
        return -1;
    }
    /* Only where base's own backing file reaches does the new area need zeroes. */
    struct qimg_node *below = qimg_node_backing(base);
    int64_t below_len = below ? qimg_node_length(below) : 0;
    uint64_t end = below_len > old ? (uint64_t)below_len : (uint64_t)old;
    if (end > size)
        end = size;
    if (end > (uint64_t)old) {
        int ret = qimg_node_pwrite_zeroes(base, (uint64_t)old, end - (uint64_t)old, 0);
        if (ret < 0) {
            cli_error("Block job failed: %s", strerror(-ret));
            return -1;
        }
    }
    return 0;
}

static void on_progress(void *opaque, uint64_t done, uint64_t total)
{
    (void)opaque;
    cli_progress_update((double)done, (double)total);
    cli_progress_fd(done, total);
}

/*
 * Everything the layers above base allocate goes into base, through the copy
 * engine: parallel reads of the top's chain, in-order writes into base,
 * flushed along the way and at the end.
 */
static int commit_run(const struct commit_opts *o, struct qimg_node *top, struct qimg_node *base)
{
    int64_t size = qimg_node_length(top);
    if (size < 0) {
        cli_error("Could not get the size of '%s': %s", o->top.filename, strerror((int)-size));
        return -1;
    }
    if (grow_base(base, (uint64_t)size) < 0)
        return -1;
    struct qimg_copy_source src = {.node = top, .length = (uint64_t)size};
    struct qimg_copy_job job = {
        .src = &src,
        .n_src = 1,
        .base = base,
        .dst = base,
        .sparse_size = QIMG_COPY_DEFAULT_SPARSE,
        /* qemu-img's commit copies data as it is; zero ranges may unmap what base holds. */
        .no_zero_scan = true,
        .skip_unallocated = true,
        .rate_limit = o->rate,
        .flush = true,
        .progress = on_progress, /* also without -p: SIGUSR1 prints it */
    };
    struct qimg_copy_result res;
    struct qimg_error err = {0};
    if (qimg_copy_run(&job, &res, &err) < 0) {
        cli_error("Block job failed: %s", strerror(res.errnum));
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, struct commit_opts *o)
{
    enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        CLI_PROGRESS_FD_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = cli_getopt(argc, argv, "f:ht:b:dpqr:", longopts)) != -1) {
        switch (c) {
        case 'f': o->top.fmt = optarg; break;
        case 't': o->cache = optarg; break;
        case 'b':
            o->base = optarg;
            o->drop = true; /* the layers in between stop matching the top */
            break;
        case 'd': o->drop = true; break;
        case 'p': o->progress = true; break;
        case 'q': o->quiet = true; break;
        case 'r':
            if (cli_parse_rate(optarg, &o->rate) < 0)
                return -1;
            break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                return -1;
            break;
        case OPT_IMAGE_OPTS: o->top.image_opts = true; break;
        case CLI_OPT_PROGRESS:
        case CLI_OPT_PROGRESS_FD:
            if (cli_progress_fd_option(c, optarg) < 0)
                return -1;
            break;
        default: return -1;
        }
    }
    if (optind != argc - 1) {
        cli_usage_error("Expecting one image file name");
        return -1;
    }
    o->top.filename = argv[optind];
    if (o->quiet)
        o->progress = false;
    return 0;
}

int cmd_commit(int argc, char **argv)
{
    struct commit_opts o = {.cache = "writeback"};
    struct layer *layers = NULL;
    struct qimg_node **nodes = NULL;
    int n_layers = 0, ret = 1;
    unsigned cache_flags;

    if (parse_args(argc, argv, &o) < 0)
        return 1;
    if (cli_parse_cache(o.cache, &cache_flags, false) < 0)
        return 1;
    o.top.flags = cache_flags | QIMG_O_RDWR | QIMG_O_UNMAP;
    o.top.quiet = o.quiet;

    n_layers = find_layers(&o, &layers);
    if (n_layers < 0)
        return 1;
    nodes = xcalloc((size_t)n_layers, sizeof(*nodes));
    int b = n_layers - 1;
    nodes[b] = open_layer(&o.top, b, &layers[b], cache_flags | QIMG_O_RDWR | QIMG_O_UNMAP | QIMG_O_RESIZE);
    if (!nodes[b])
        goto out;
    for (int i = b - 1; i >= 1; i--) {
        nodes[i] = open_layer(&o.top, i, &layers[i], (cache_flags & ~QIMG_O_RDWR) | QIMG_O_NO_BACKING);
        if (!nodes[i])
            goto out;
        qimg_node_set_backing(nodes[i], nodes[i + 1]);
    }
    struct cli_open top = o.top;
    top.flags |= QIMG_O_NO_BACKING;
    nodes[0] = open_top(&top);
    if (!nodes[0])
        goto out;
    qimg_node_set_backing(nodes[0], nodes[1]);

    cli_progress_init(o.progress);
    int r = commit_run(&o, nodes[0], nodes[b]);
    if (r == 0 && !o.drop) {
        struct qimg_error err = {0};
        r = qimg_make_empty(nodes[0], &err);
        if (r < 0)
            cli_error_obj(&err, "Could not empty %s: ", o.top.filename);
    }
    if (r == 0) {
        cli_progress_update(1, 1);
        cli_progress_fd_end(UINT64_MAX);
    }
    cli_progress_end();
    if (r < 0)
        goto out;
    if (!o.quiet)
        printf("Image committed.\n");
    ret = 0;
out:
    for (int i = 0; nodes && i < n_layers; i++)
        qimg_node_unref(nodes[i]);
    free(nodes);
    free_layers(layers, n_layers);
    return ret;
}
