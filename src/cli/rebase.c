/* SPDX-License-Identifier: MIT */
/* qemu-img rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache]
 *                 [-T src_cache] [-p] [-u] [-c] -b backing_file [-F backing_fmt] filename
 *
 * Unsafe mode (-u) only rewrites the backing file name and format in the
 * header. Safe mode first merges into the image every cluster it does not
 * allocate itself whose content differs between the old backing chain and
 * the new one, so that what the guest reads stays the same:
 *   - the image's cluster size is the unit (whole clusters are written, as
 *     qemu-img 9.1 writes them to avoid copy-on-write);
 *   - the old content is written as data (compressed with -c), except past
 *     the end of the old backing file, where it is zeroes and written as a
 *     zero write;
 *   - what the image allocates itself (data or zero) is never touched.
 * -b "" merges everything the old chain provides and leaves the image alone.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "qimg/driver.h"
#include "util/mem.h"

#define REBASE_BUF (2u << 20)
#define REBASE_DEFAULT_CLUSTER 65536

struct rebase_opts {
    struct cli_open img;
    const char *base, *base_fmt;
    const char *cache, *src_cache;
    bool unsafe, compress, progress, quiet, force_share;
};

/* One backing side of the comparison: its node (NULL: none) and the size it reads data up to. */
struct side {
    struct qimg_node *node;
    uint64_t size;
};

static int side_read(const struct side *s, uint64_t off, uint64_t len, uint8_t *buf)
{
    uint64_t have = !s->node || off >= s->size ? 0 : s->size - off;
    if (have > len)
        have = len;
    memset(buf + have, 0, len - have);
    return have ? qimg_node_pread(s->node, off, have, buf, 0) : 0;
}

/* Write the old content of [off, off+len) (one cluster or its tail) into the image. */
static int merge_piece(const struct rebase_opts *o, struct qimg_node *img, const struct side *old,
                       uint64_t off, uint64_t len, const uint8_t *buf)
{
    if (off >= old->size)
        return qimg_node_pwrite_zeroes(img, off, len, 0);
    if (o->compress)
        return qimg_node_pwrite_compressed(img, off, len, buf);
    return qimg_node_pwrite(img, off, len, buf, 0);
}

/*
 * [off, off+len) is not allocated in the image: compare the two backings cluster by
 * cluster and merge what differs. off is cluster aligned.
 */
static int merge_range(const struct rebase_opts *o, struct qimg_node *img, const struct side *old,
                       const struct side *new, uint64_t cluster, uint64_t off, uint64_t len,
                       uint8_t *buf_old, uint8_t *buf_new)
{
    while (len) {
        uint64_t now = len < REBASE_BUF ? len : REBASE_BUF;
        /* Never straddle the old backing file's end: data before it, zeroes after. */
        if (off < old->size && now > old->size - off)
            now = old->size - off;
        int ret = side_read(old, off, now, buf_old);
        if (ret == 0)
            ret = side_read(new, off, now, buf_new);
        if (ret < 0)
            return ret;
        for (uint64_t done = 0; done < now;) {
            uint64_t piece = cluster - (off + done) % cluster;
            if (piece > now - done)
                piece = now - done;
            if (memcmp(buf_old + done, buf_new + done, piece)) {
                ret = merge_piece(o, img, old, off + done, piece, buf_old + done);
                if (ret < 0)
                    return ret;
            }
            done += piece;
        }
        off += now;
        len -= now;
    }
    return 0;
}

static int open_new_backing(const struct rebase_opts *o, struct qimg_node *img, unsigned flags,
                            struct qimg_node **out)
{
    struct qimg_error err = {0};
    char *path = qimg_backing_path(img, o->base);
    int ret = qimg_open(out, path, o->base_fmt, NULL, flags, &err);
    free(path);
    if (ret < 0) {
        cli_error_obj(&err, "Could not open new backing file '%s': ", o->base);
        return -1;
    }
    return 0;
}

/*
 * The layer of the old backing chain that the new backing file is, if any (rebasing onto a
 * backing file further down): what no layer above it allocates needs no merging, and
 * qemu-img's bar does not move for it.
 */
static struct qimg_node *new_backing_in_chain(const struct rebase_opts *o, struct qimg_node *img)
{
    if (!o->base[0])
        return NULL;
    char *path = qimg_backing_path(img, o->base);
    char *want = realpath(path, NULL);
    free(path);
    struct qimg_node *found = NULL;
    for (struct qimg_node *cur = qimg_node_backing(img); want && cur && !found;
         cur = qimg_node_backing(cur)) {
        char *real = realpath(qimg_node_filename(cur), NULL);
        /* read as another format it is other content: merge what differs (qemu-img
         * skips it and the guest view changes: not followed) */
        if (real && !strcmp(real, want) && o->base_fmt &&
            !strcmp(qimg_node_format(cur), o->base_fmt))
            found = cur;
        free(real);
    }
    free(want);
    return found;
}

static int safe_merge(const struct rebase_opts *o, struct qimg_node *img, unsigned src_flags)
{
    struct qimg_node *nb = NULL;
    uint8_t *buf_old = NULL, *buf_new = NULL;
    int ret = -1;
    if (o->base[0] && open_new_backing(o, img, src_flags, &nb) < 0)
        return -1;
    int64_t size = qimg_node_length(img);
    struct side old = {.node = qimg_node_backing(img)}, new = {.node = nb};
    int64_t olen = old.node ? qimg_node_length(old.node) : 0;
    int64_t nlen = new.node ? qimg_node_length(new.node) : 0;
    if (size < 0 || olen < 0 || nlen < 0) {
        cli_error("Could not get the size of the images: %s",
                  strerror(-(int)(size < 0 ? size : olen < 0 ? olen : nlen)));
        goto out;
    }
    old.size = (uint64_t)olen;
    new.size = (uint64_t)nlen;
    uint64_t cluster = qimg_node_cluster_size(img);
    if (!cluster)
        cluster = REBASE_DEFAULT_CLUSTER;
    buf_old = qimg_alloc_aligned(REBASE_BUF);
    buf_new = qimg_alloc_aligned(REBASE_BUF);
    if (!buf_old || !buf_new) {
        cli_error("%s", strerror(ENOMEM));
        goto out;
    }
    /*
     * qemu-img's walk and bar: the image in pieces of at most 2 MiB, each either allocated
     * in the image (skipped, the bar stays) or not (merged, the bar moves one fixed step of
     * 100 / (size / min(size, 2 MiB)) percent, even when that overshoots).
     */
    float step = size ? 100.0f / (float)((uint64_t)size / (size < REBASE_BUF ? (uint64_t)size
                                                                              : REBASE_BUF))
                      : 0;
    struct qimg_node *prefix = new_backing_in_chain(o, img);
    int r = 0;
    for (uint64_t off = 0; r == 0 && off < (uint64_t)size;) {
        uint64_t n = (uint64_t)size - off < REBASE_BUF ? (uint64_t)size - off : REBASE_BUF;
        struct qimg_block_status st;
        r = qimg_node_block_status(img, off, n, &st);
        if (r < 0) {
            cli_error("error while reading image metadata: %s", strerror(-r));
            goto out;
        }
        if (st.bytes && st.bytes < n)
            n = st.bytes;
        if (!(st.flags & (QIMG_BLK_DATA | QIMG_BLK_ZERO)) && prefix) {
            /* (the old backing file itself: nothing above it) */
            r = prefix == old.node ? 0 : qimg_chain_block_status(old.node, prefix, off, n, &st);
            if (prefix == old.node)
                st = (struct qimg_block_status){.bytes = n};
            if (r < 0) {
                cli_error("error while reading image metadata: %s", strerror(-r));
                goto out;
            }
            if (st.bytes && st.bytes < n)
                n = st.bytes;
            if (!(st.flags & (QIMG_BLK_DATA | QIMG_BLK_ZERO))) {
                off += n; /* the same data below in both chains */
                continue;
            }
            st.flags = 0;
        }
        if (!(st.flags & (QIMG_BLK_DATA | QIMG_BLK_ZERO))) {
            r = merge_range(o, img, &old, &new, cluster, off, n, buf_old, buf_new);
            if (r < 0) {
                cli_error("error while rebasing at offset %" PRIu64 ": %s", off, strerror(-r));
                goto out;
            }
            cli_progress_add(step);
        }
        off += n;
        cli_progress_fd(off, (uint64_t)size);
    }
    r = qimg_node_flush(img);
    if (r < 0) {
        cli_error("error while flushing: %s", strerror(-r));
        goto out;
    }
    ret = 0;
out:
    free(buf_old);
    free(buf_new);
    qimg_node_unref(nb);
    return ret;
}

static int parse_args(int argc, char **argv, struct rebase_opts *o)
{
    enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"force-share", no_argument, NULL, 'U'},
        {"compress", no_argument, NULL, 'c'},
        CLI_PROGRESS_FD_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = cli_getopt(argc, argv, "hf:F:b:upt:T:qUc", longopts)) != -1) {
        switch (c) {
        case 'f': o->img.fmt = optarg; break;
        case 'F': o->base_fmt = optarg; break;
        case 'b': o->base = optarg; break;
        case 'u': o->unsafe = true; break;
        case 'p': o->progress = true; break;
        case 't': o->cache = optarg; break;
        case 'T': o->src_cache = optarg; break;
        case 'q': o->quiet = true; break;
        case 'U': o->force_share = true; break;
        case 'c': o->compress = true; break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                return -1;
            break;
        case OPT_IMAGE_OPTS: o->img.image_opts = true; break;
        case CLI_OPT_PROGRESS:
        case CLI_OPT_PROGRESS_FD:
            if (cli_progress_fd_option(c, optarg) < 0)
                return -1;
            break;
        default: return -1;
        }
    }
    if (o->quiet)
        o->progress = false;
    if (optind != argc - 1) {
        cli_usage_error("Expecting one image file name");
        return -1;
    }
    if (!o->unsafe && !o->base) {
        cli_usage_error("Must specify backing file (-b) or use unsafe mode (-u)");
        return -1;
    }
    o->img.filename = argv[optind];
    return 0;
}

/* The final step of both modes; the words are qemu-img's. */
static int change_backing(const struct rebase_opts *o, struct qimg_node *img)
{
    struct qimg_error err = {0};
    const char *base = o->base ? o->base : "";
    int ret = qimg_change_backing_file(img, base, o->base_fmt, &err);
    if (ret == -ENOSPC)
        cli_error("Could not change the backing file to '%s': No space left in the file header",
                  base);
    else if (ret < 0)
        cli_error("Could not change the backing file to '%s': %s", base, strerror(-ret));
    return ret < 0 ? -1 : 0;
}

int cmd_rebase(int argc, char **argv)
{
    struct rebase_opts o = {.cache = "writeback", .src_cache = "writeback"};
    struct qimg_node *img = NULL;
    unsigned flags, src_flags;
    int ret = 1;

    if (parse_args(argc, argv, &o) < 0)
        return 1;
    if (cli_parse_cache(o.cache, &flags, false) < 0 ||
        cli_parse_cache(o.src_cache, &src_flags, true) < 0)
        return 1;
    if (o.base_fmt && !qimg_driver_find(o.base_fmt)) {
        cli_error("Invalid format name: '%s'", o.base_fmt);
        return 1;
    }
    o.img.flags = flags | QIMG_O_RDWR | (o.unsafe ? QIMG_O_NO_BACKING : 0);
    o.img.quiet = o.quiet;
    img = cli_open_image(&o.img);
    if (!img)
        return 1;
    const struct qimg_driver *drv = qimg_node_driver(img);
    if (!drv->change_backing_file) {
        cli_error("Could not change the backing file to '%s': %s", o.base ? o.base : "",
                  strerror(ENOTSUP));
        goto out;
    }
    /*
     * qemu-img 7.2 merges first and only then finds that the format is missing;
     * refusing before touching the image leaves the same guest view.
     */
    if (o.base && o.base[0] && !o.base_fmt) {
        cli_error("Could not change the backing file to '%s': backing format must be specified",
                  o.base);
        goto out;
    }
    if (o.compress && !drv->pwrite_compressed) {
        cli_error("Compression not supported for this file format");
        goto out;
    }
    cli_progress_init_step(o.progress, 2.0f);
    if (!o.unsafe &&
        safe_merge(&o, img, src_flags | (o.force_share ? QIMG_O_FORCE_SHARE : 0)) < 0) {
        cli_progress_end();
        goto out;
    }
    if (change_backing(&o, img) < 0) {
        cli_progress_end();
        goto out;
    }
    cli_progress_update(1, 1);
    cli_progress_end();
    int64_t vsize = qimg_node_length(img);
    cli_progress_fd_end(vsize > 0 ? (uint64_t)vsize : 0);
    ret = 0;
out:
    qimg_node_unref(img);
    return ret;
}
