/* SPDX-License-Identifier: MIT */
/* Opening and closing the image: the command line's image, "open", "close", "reopen". */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/io.h"
#include "qimg/driver.h"
#include "util/mem.h"

struct io_image io_img;

/* "cache.direct"/"cache.no-flush" among driver options become open flags. */
static int take_cache_opts(struct qimg_opts *opts, unsigned *flags, struct qimg_error *err)
{
    static const struct {
        const char *key;
        unsigned flag;
    } keys[] = {{"cache.direct", QIMG_O_NOCACHE}, {"cache.no-flush", QIMG_O_NO_FLUSH}};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (!qimg_opts_has(opts, keys[i].key))
            continue;
        bool b;
        if (qimg_opts_take_bool(opts, keys[i].key, &b, err) < 0)
            return -1;
        qimg_opts_del(opts, keys[i].key);
        *flags = b ? (*flags | keys[i].flag) : (*flags & ~keys[i].flag);
    }
    const char *discard = qimg_opts_peek(opts, "discard");
    if (discard) {
        if (io_parse_discard(discard, flags) < 0)
            return qimg_error_set(err, -22, "Invalid discard option: %s", discard);
        qimg_opts_del(opts, "discard");
    }
    return 0;
}

static int open_node(struct qimg_node **out, const char *filename, const char *format,
                     const struct qimg_opts *opts, bool image_opts, unsigned flags,
                     struct qimg_error *err)
{
    struct qimg_opts *o = opts ? qimg_opts_clone(opts) : qimg_opts_new();
    int ret = 0;
    if (image_opts) {
        struct qimg_opts *given = qimg_opts_new();
        ret = qimg_opts_parse(given, filename, NULL, err);
        for (size_t i = 0; ret == 0 && i < given->n; i++)
            if (!qimg_opts_has(o, given->v[i].key))
                qimg_opts_set(o, given->v[i].key, given->v[i].value);
        qimg_opts_free(given);
        filename = NULL;
    }
    if (ret == 0)
        ret = take_cache_opts(o, &flags, err) < 0 ? -22 : 0;
    if (ret == 0) {
        if (image_opts)
            ret = qimg_open_image_opts(out, o, flags, err);
        else
            ret = qimg_open(out, filename, format, o, flags, err);
    }
    qimg_opts_free(o);
    return ret;
}

int io_open_image(const char *filename, const char *format, struct qimg_opts *opts,
                  bool image_opts, unsigned flags, bool snapshot, bool native_aio)
{
    struct qimg_error err = {0};
    struct qimg_node *n = NULL;
    /* With -s the image itself is only read; writes land in the overlay. */
    unsigned open_flags = snapshot ? (flags & ~QIMG_O_RDWR) : flags;
    int ret;
    if (native_aio && !(flags & QIMG_O_NOCACHE))
        ret = qimg_error_set(&err, -EINVAL, "aio=native was specified, but it requires "
                             "cache.direct=on, which was not specified.");
    else if ((flags & QIMG_O_FORCE_SHARE) && (flags & QIMG_O_RDWR))
        ret = qimg_error_set(&err, -EINVAL,
                             "force-share=on can only be used with read-only images");
    else
        ret = open_node(&n, filename, format, opts, image_opts, open_flags, &err);
    if (ret < 0) {
        const char *msg = err.msg[0] ? err.msg : "Could not open image";
        if (image_opts || !filename)
            io_error("can't open: %s", msg);
        else
            io_error("can't open device %s: %s", filename, msg);
        return -1;
    }
    if (qimg_node_probed_raw(n) && (flags & QIMG_O_RDWR) && !snapshot) {
        fprintf(stderr,
                "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
                "         Automatically detecting the format is dangerous for raw images, "
                "write operations on block 0 will be restricted.\n"
                "         Specify the 'raw' format explicitly to remove the restrictions.\n",
                /* the file's name, as QEMU's raw prints it: "./a:b", "r.raw", rbd's json */
                qimg_node_filename(qimg_node_file(n) ? qimg_node_file(n) : n));
    }
    io_img.image = n;
    io_img.node = n;
    if (snapshot) {
        io_img.node = io_snapshot_new(n);
        io_img.node->flags |= flags & (QIMG_O_RDWR | QIMG_O_UNMAP);
    }
    io_img.filename = filename ? xstrdup(filename) : NULL;
    io_img.format = format ? xstrdup(format) : NULL;
    io_img.opts = opts ? qimg_opts_clone(opts) : NULL;
    io_img.image_opts = image_opts;
    io_img.flags = flags;
    io_img.snapshot = snapshot;
    return 0;
}

void io_close_image(void)
{
    if (io_img.node && io_img.node != io_img.image)
        qimg_node_unref(io_img.node);
    qimg_node_unref(io_img.image);
    free(io_img.filename);
    free(io_img.format);
    qimg_opts_free(io_img.opts);
    memset(&io_img, 0, sizeof(io_img));
}

int io_cmd_close(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    io_close_image();
    return 0;
}

int io_cmd_open(int argc, char **argv)
{
    unsigned flags = QIMG_O_RDWR | QIMG_O_UNMAP | QIMG_O_META_SYNC; /* qemu-io: writethrough */
    bool snapshot = false, native_aio = false;
    struct qimg_opts *opts = qimg_opts_new();
    struct qimg_error err = {0};
    int c, ret = -1;

    while ((c = getopt(argc, argv, "snCro:ki:t:d:U")) != -1) {
        switch (c) {
        case 's':
            snapshot = true;
            break;
        case 'n':
            flags = (flags & ~(QIMG_O_WRITETHROUGH | QIMG_O_NO_FLUSH | QIMG_O_META_SYNC)) |
                    QIMG_O_NOCACHE;
            break;
        case 'C':
            break;
        case 'k':
            native_aio = true;
            break;
        case 'r':
            flags &= ~QIMG_O_RDWR;
            break;
        case 'U':
            flags |= QIMG_O_FORCE_SHARE;
            break;
        case 'o':
            if (qimg_opts_parse(opts, optarg, NULL, &err) < 0) {
                io_error("%s", err.msg);
                goto out;
            }
            break;
        case 'i':
            if (io_parse_aio(optarg) < 0) {
                io_error("Invalid aio option: %s", optarg);
                goto out;
            }
            native_aio = !strcmp(optarg, "native");
            break;
        case 't':
            if (io_parse_cache(optarg, &flags) < 0) {
                io_error("Invalid cache option: %s", optarg);
                goto out;
            }
            break;
        case 'd':
            if (io_parse_discard(optarg, &flags) < 0) {
                io_error("Invalid discard option: %s", optarg);
                goto out;
            }
            break;
        default:
            io_usage(io_find_command("open"));
            goto out;
        }
    }
    if (io_img.node) {
        io_error("file open already, try 'help close'");
        goto out;
    }
    if (optind == argc - 1) {
        ret = io_open_image(argv[optind], NULL, opts, false, flags, snapshot, native_aio);
    } else if (optind == argc) {
        ret = io_open_image(NULL, NULL, opts, false, flags, snapshot, native_aio);
    } else {
        io_usage(io_find_command("open"));
    }
out:
    qimg_opts_free(opts);
    return ret;
}

/*
 * Options reopen can change: a format's own runtime options (its open_opts,
 * such as qcow2's lazy-refcounts or cache-size); they replace the old values
 * and are checked as at open. Anything else must keep its value: QEMU names
 * the option as its node knows it ("file.filename" is 'filename').
 */
static struct qimg_opts *reopen_take_opts(struct qimg_opts *o, unsigned *flags)
{
    struct qimg_error err = {0};
    if (take_cache_opts(o, flags, &err) < 0) {
        io_error("%s", err.msg);
        return NULL;
    }
    const struct qimg_driver *drv = io_img.image ? qimg_node_driver(io_img.image) : NULL;
    bool format = drv && !drv->is_protocol;
    struct qimg_opts *next = io_img.opts ? qimg_opts_clone(io_img.opts) : qimg_opts_new();
    /* New cache sizes replace the old ones as a set (qemu-io 9.1: no conflict with them). */
    static const char *const cache_sizes[] = {"cache-size", "l2-cache-size",
                                              "refcount-cache-size"};
    for (size_t i = 0; format && i < 3; i++) {
        if (!qimg_opts_has(o, cache_sizes[i]))
            continue;
        for (size_t k = 0; k < 3; k++)
            qimg_opts_del(next, cache_sizes[k]);
    }
    for (size_t i = 0; i < o->n; i++) {
        const char *key = o->v[i].key, *value = o->v[i].value ? o->v[i].value : "";
        if (format && qimg_opt_desc_find(drv->open_opts, key)) {
            qimg_opts_set_typed(next, key, value, o->v[i].type);
            continue;
        }
        const char *old = io_img.opts ? qimg_opts_peek(io_img.opts, key) : NULL;
        /* named as the child knows it: one "file." less */
        const char *shown = !strncmp(key, "file.", 5) ? key + 5 : key;
        struct qimg_node *node = io_img.image;
        while (!strncmp(key, "file.", 5)) {
            key += 5;
            node = node ? qimg_node_file(node) : NULL;
        }
        if (!old && node && !strcmp(key, "driver")) /* the node's driver, unchanged */
            old = qimg_node_format(node);
        if (!old || strcmp(old, value)) {
            io_error("Cannot change the option '%s'", shown);
            qimg_opts_free(next);
            return NULL;
        }
    }
    return next;
}

/* Reopen with these options (taken), falling back to the old ones if that fails. */
static int reopen_with(unsigned flags, struct qimg_opts *opts)
{
    if (io_img.snapshot) {
        /* Only the overlay is writable; the image underneath stays read-only. */
        io_img.node->flags = (io_img.node->flags & ~QIMG_O_RDWR) | (flags & QIMG_O_RDWR);
        io_img.flags = flags;
        qimg_opts_free(opts);
        return 0;
    }
    struct qimg_error err = {0};
    struct qimg_node *n = NULL;
    unsigned old_flags = io_img.flags;
    /* Drop the old node first: its locks would conflict with the new one's. */
    qimg_node_unref(io_img.image);
    io_img.image = io_img.node = NULL;
    int ret = open_node(&n, io_img.filename, io_img.format, opts, io_img.image_opts, flags, &err);
    if (ret < 0) {
        io_error("%s", err.msg);
        qimg_opts_free(opts);
        flags = old_flags;
        qimg_error_clear(&err);
        if (open_node(&n, io_img.filename, io_img.format, io_img.opts, io_img.image_opts,
                      flags, &err) < 0) {
            io_error("%s", err.msg);
            io_close_image();
            return -1;
        }
    } else {
        qimg_opts_free(io_img.opts);
        io_img.opts = opts;
    }
    io_img.image = io_img.node = n;
    io_img.flags = flags;
    return ret < 0 ? -1 : 0;
}

int io_cmd_reopen(int argc, char **argv)
{
    unsigned flags = io_img.flags;
    bool rw_given = false;
    struct qimg_opts *opts = qimg_opts_new();
    struct qimg_error err = {0};
    int c, ret = -1;

    while ((c = getopt(argc, argv, "c:o:rw")) != -1) {
        switch (c) {
        case 'c':
            if (io_parse_cache(optarg, &flags) < 0) {
                io_error("Invalid cache option: %s", optarg);
                goto out;
            }
            break;
        case 'o':
            if (qimg_opts_parse(opts, optarg, NULL, &err) < 0) {
                io_error("%s", err.msg);
                goto out;
            }
            break;
        case 'r':
        case 'w':
            if (rw_given) {
                io_error("Only one -r/-w option may be given");
                goto out;
            }
            rw_given = true;
            flags = c == 'r' ? (flags & ~QIMG_O_RDWR) : (flags | QIMG_O_RDWR);
            break;
        default:
            io_usage(io_find_command("reopen"));
            goto out;
        }
    }
    if (optind != argc) {
        io_usage(io_find_command("reopen"));
        goto out;
    }
    struct qimg_opts *next = reopen_take_opts(opts, &flags);
    if (!next)
        goto out;
    ret = reopen_with(flags, next);
out:
    qimg_opts_free(opts);
    return ret;
}
