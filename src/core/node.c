/* SPDX-License-Identifier: MIT */
/*
 * Opening images: protocol node first, then probing, the format node on top,
 * permissions (image locks) once the format is known, then the backing chain.
 */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "core/node-internal.h"
#include "qimg/driver.h"
#include "qimg/json.h"
#include "util/mem.h"

#define PROBE_BUF_SIZE 2048
#define MAX_BACKING_DEPTH 256 /* an over-deep (or looping) chain is refused */

struct qimg_node *qimg_node_alloc(const struct qimg_driver *drv, const char *filename,
                                  unsigned flags)
{
    struct qimg_node *n = xcalloc(1, sizeof(*n));
    n->drv = drv;
    n->filename = xstrdup(filename ? filename : "");
    n->flags = flags;
    n->refcnt = 1;
    n->request_alignment = 1;
    pthread_mutex_init(&n->lock, NULL);
    pthread_mutex_init(&n->rmw_lock, NULL);
    return n;
}

void qimg_node_ref(struct qimg_node *n)
{
    __atomic_add_fetch(&n->refcnt, 1, __ATOMIC_SEQ_CST);
}

void qimg_node_unref(struct qimg_node *n)
{
    if (!n || __atomic_sub_fetch(&n->refcnt, 1, __ATOMIC_SEQ_CST) > 0)
        return;
    if (n->drv && n->drv->close)
        n->drv->close(n);
    qimg_node_unref(n->backing);
    qimg_node_unref(n->data_file);
    qimg_node_unref(n->file);
    pthread_mutex_destroy(&n->lock);
    pthread_mutex_destroy(&n->rmw_lock);
    qimg_opts_free(n->options);
    free(n->backing_file);
    free(n->backing_format);
    free(n->full_backing_filename);
    free(n->filename);
    free(n);
}

const char *qimg_node_filename(const struct qimg_node *n) { return n->filename; }
const char *qimg_node_format(const struct qimg_node *n) { return n->drv->name; }
const struct qimg_driver *qimg_node_driver(const struct qimg_node *n) { return n->drv; }
struct qimg_node *qimg_node_file(const struct qimg_node *n) { return n->file; }
struct qimg_node *qimg_node_backing(const struct qimg_node *n) { return n->backing; }
bool qimg_node_probed_raw(const struct qimg_node *n) { return n->probed_raw; }
bool qimg_node_is_writable(const struct qimg_node *n) { return n->flags & QIMG_O_RDWR; }
const char *qimg_node_backing_file(const struct qimg_node *n) { return n->backing_file; }
const char *qimg_node_backing_format(const struct qimg_node *n) { return n->backing_format; }

/* Keys the block layer takes for every node, not a driver's own. */
static bool generic_key(const char *key)
{
    static const char *const keys[] = {"node-name", "read-only", "auto-read-only",
                                       "force-share", "discard", "detect-zeroes", NULL};
    for (size_t i = 0; keys[i]; i++)
        if (!strcmp(key, keys[i]))
            return true;
    return !strncmp(key, "cache.", 6);
}

/* Options a driver did not take are an error, in QEMU's wording. */
/* The first option nobody took, in QDict iteration order (the one QEMU names). */
static const char *first_unused_qdict(const struct qimg_opts *opts, bool skip_generic)
{
    struct qimg_json *keys = qimg_json_object();
    const char **names = NULL;
    size_t n = 0;
    for (size_t i = 0; opts && i < opts->n; i++) {
        if (opts->v[i].used || (skip_generic && generic_key(opts->v[i].key)))
            continue;
        names = xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = opts->v[i].key;
        qimg_json_add_bool(keys, opts->v[i].key, true);
    }
    const char *first = NULL;
    if (n) {
        size_t *order = qimg_json_output_order(keys);
        first = names[order[0]];
        free(order);
    }
    qimg_json_free(keys);
    free(names);
    return first;
}

int qimg_check_qapi_options(const struct qimg_opts *o, struct qimg_error *err)
{
    const char *key = first_unused_qdict(o, true);
    return key ? qimg_error_set(err, -EINVAL, "Parameter '%s' is unexpected", key) : 0;
}

static int check_unused(const struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    const char *key = first_unused_qdict(opts, false);
    if (!key)
        return 0;
    if (n->drv->qapi_options)
        return qimg_error_set(err, -EINVAL, "Parameter '%s' is unexpected", key);
    if (n->drv->is_protocol && !n->drv->format_without_file)
        return qimg_error_set(err, -EINVAL, "Block protocol '%s' doesn't support the option '%s'",
                              n->drv->name, key);
    return qimg_error_set(err, -EINVAL, "Block format '%s' does not support the option '%s'",
                          n->drv->name, key);
}

/*
 * A name given as a filename (not as the "filename" option) drops the prefix
 * of QEMU's file-posix protocols ("file:", "host_device:", "host_cdrom:") as
 * their drivers parse it; what remains is a path even if it has a colon, so it
 * is spelled "./a:b" when it would otherwise read as a protocol. NULL when the
 * name has no such prefix.
 */
char *qimg_parse_file_prefix(const struct qimg_driver *drv, const char *filename)
{
    if (drv != &qimg_file_driver && drv != &qimg_host_device_driver &&
        drv != &qimg_host_cdrom_driver)
        return NULL;
    size_t plen = strlen(drv->protocol_prefix);
    if (!filename || strncmp(filename, drv->protocol_prefix, plen) || filename[plen] != ':')
        return NULL;
    const char *path = filename + plen + 1;
    return qimg_protocol_prefix_len(path) ? xasprintf("./%s", path) : xstrdup(path);
}

int qimg_open_protocol(struct qimg_node **out, const char *filename, struct qimg_opts *opts,
                       unsigned flags, struct qimg_error *err)
{
    struct qimg_opts *local = opts ? opts : qimg_opts_new();
    const char *drvname = qimg_opts_take(local, "driver");
    const struct qimg_driver *drv = NULL;
    int ret;

    if (drvname) {
        drv = qimg_driver_find(drvname);
        if (!drv) {
            ret = qimg_error_set(err, -EINVAL, "Unknown driver '%s'", drvname);
            goto out;
        }
    } else if (filename) {
        drv = qimg_driver_find_protocol(filename);
        size_t plen = qimg_protocol_prefix_len(filename);
        if (!drv && plen) {
            ret = qimg_error_set(err, -EINVAL, "Unknown protocol '%.*s'", (int)plen, filename);
            goto out;
        }
    }
    if (!filename)
        filename = qimg_opts_peek(local, "filename");
    if (!drv && !filename) { /* nothing names the protocol */
        ret = qimg_error_set(err, -EINVAL, "Must specify either driver or file");
        goto out;
    }
    if (!drv) /* a device is a host_device, as QEMU probes it */
        drv = qimg_file_probe_protocol(filename);

    char *path = NULL;
    if (filename && !qimg_opts_has(local, "filename")) {
        path = qimg_parse_file_prefix(drv, filename);
        if (path)
            filename = path;
        qimg_opts_set(local, "filename", filename);
    }
    /* A dry run reads the file only; its writes go to the overlay put over it below. */
    unsigned dry = flags & QIMG_O_DRY_RUN;
    if (dry)
        flags &= ~(QIMG_O_RDWR | QIMG_O_RESIZE | QIMG_O_DRY_RUN);
    struct qimg_node *n = qimg_node_alloc(drv, filename, flags);
    free(path);
    ret = drv->open(n, local, err);
    if (ret == 0)
        ret = check_unused(n, local, err);
    if (ret < 0) {
        qimg_node_unref(n);
        goto out;
    }
    n->options = qimg_opts_clone(local);
    qimg_node_refresh_filename(n);
    if (dry) {
        ret = qimg_overlay_wrap(&n, flags | QIMG_O_RDWR | QIMG_O_RESIZE | dry, err);
        if (ret < 0) {
            qimg_node_unref(n);
            goto out;
        }
    }
    *out = n;
out:
    if (!opts)
        qimg_opts_free(local);
    return ret;
}

struct probe_ctx {
    const uint8_t *buf;
    size_t len;
    const char *filename;
    const struct qimg_driver *best;
    int score;
};

static void probe_one(const struct qimg_driver *drv, void *p)
{
    struct probe_ctx *c = p;
    if (!drv->probe)
        return;
    int s = drv->probe(c->buf, c->len, c->filename);
    if (s > c->score) {
        c->score = s;
        c->best = drv;
    }
}

const struct qimg_driver *qimg_probe_buffer(const uint8_t *buf, size_t len, const char *filename)
{
    struct probe_ctx ctx = {buf, len, filename, NULL, 1};
    qimg_driver_foreach(probe_one, &ctx);
    return ctx.best;
}

/* Pick a format by content; raw (score 1) when nothing claims it. */
static const struct qimg_driver *probe_format(struct qimg_node *proto, struct qimg_error *err)
{
    uint8_t *buf = xcalloc(1, PROBE_BUF_SIZE);
    int64_t len = qimg_node_length(proto);
    size_t n = 0;
    if (len > 0) {
        n = len < PROBE_BUF_SIZE ? (size_t)len : PROBE_BUF_SIZE;
        int ret = qimg_node_pread(proto, 0, n, buf, 0);
        if (ret < 0) {
            qimg_error_errno(err, ret, "Could not read image for determining its format");
            free(buf);
            return NULL;
        }
    }
    struct probe_ctx ctx = {buf, n, proto->filename, NULL, 0};
    qimg_driver_foreach(probe_one, &ctx);
    free(buf);
    if (!ctx.best)
        ctx.best = qimg_driver_find("raw");
    return ctx.best;
}

/*
 * Permissions a format takes on its file (QEMU's defaults, observed through its
 * lock bytes): it always wants consistent reads; writable images also want
 * write, and formats that own their layout (everything but raw) want resize and
 * refuse to share write and resize with anyone, as does a reader that needs a
 * stable image (QIMG_O_STABLE: convert's sources). -U shares everything.
 */
static void format_file_perms(const struct qimg_node *fmt, unsigned flags, unsigned *perm,
                              unsigned *shared)
{
    bool rw = flags & QIMG_O_RDWR;
    *perm = QIMG_PERM_CONSISTENT_READ;
    *shared = QIMG_PERM_ALL;
    if (rw)
        *perm |= QIMG_PERM_WRITE;
    if (flags & QIMG_O_RESIZE)
        *perm |= QIMG_PERM_RESIZE;
    if ((!fmt->drv->shares_all || (flags & QIMG_O_STABLE)) && !(flags & QIMG_O_FORCE_SHARE)) {
        if (rw)
            *perm |= QIMG_PERM_RESIZE;
        *shared &= ~(QIMG_PERM_WRITE | QIMG_PERM_RESIZE);
    }
}

int qimg_node_set_perm(struct qimg_node *n, unsigned perm, unsigned shared, struct qimg_error *err)
{
    if (n->flags & QIMG_O_NO_LOCK)
        return 0;
    if (!n->drv->set_perm)
        return 0;
    return n->drv->set_perm(n, perm, shared, err);
}

/*
 * The name a relative backing file is taken relative to: for a json: image
 * whose file children are filters over a plain file, that file (QEMU's
 * refreshed filename sees through such children the same way).
 */
static const char *overlay_path(const struct qimg_node *n)
{
    const char *name = n->filename;
    for (const struct qimg_node *c = n->file; c && name && !strncmp(name, "json:", 5); c = c->file)
        name = c->filename;
    return name;
}

/* The backing file name resolved the way QEMU does: relative to the overlay's directory. */
char *qimg_resolve_backing_path(const char *overlay, const char *backing)
{
    /* "proto:..." stays as it is even if no driver has that protocol (QEMU's rule) */
    if (backing[0] == '/' || qimg_protocol_prefix_len(backing) || !strncmp(backing, "json:", 5))
        return xstrdup(backing);
    const char *slash = strrchr(overlay, '/');
    if (!slash)
        return xstrdup(backing);
    return xasprintf("%.*s%s", (int)(slash - overlay + 1), overlay, backing);
}

/*
 * The images being opened on this thread, top first (real paths of plain
 * files; NULL for the rest): a backing file naming one of them is a loop.
 */
static _Thread_local char *opening[MAX_BACKING_DEPTH + 1];

static char *real_path_of(const char *filename)
{
    if (!filename || qimg_protocol_prefix_len(filename) || !strncmp(filename, "json:", 5))
        return NULL;
    return realpath(filename, NULL);
}

static bool creates_loop(const char *backing, int depth)
{
    char *real = real_path_of(backing);
    bool loop = false;
    for (int i = 0; real && i <= depth && i <= MAX_BACKING_DEPTH; i++)
        loop = loop || (opening[i] && !strcmp(opening[i], real));
    free(real);
    return loop;
}

/*
 * "backing" and "backing.*" open options (QEMU's BlockdevOptionsGenericCOWFormat):
 * null (or the deprecated "") opens no backing file, a string names a node
 * (qimg has none), backing.* options open the backing file instead of the
 * header's name. Taken only when the backing file is opened, so that
 * qemu-img info (no backing) refuses them as unsupported, as QEMU does.
 */
static int take_backing_opts(struct qimg_opts *o, unsigned flags, struct qimg_opts *bopts,
                             bool *none, struct qimg_error *err)
{
    *none = false;
    enum qimg_opt_value_type t = qimg_opts_type(o, "backing");
    const char *v = qimg_opts_peek(o, "backing");
    if (v && !v[0] && t != QIMG_OPTV_NULL)
        qimg_warn("Use of \"backing\": \"\" is deprecated; use \"backing\": null instead\n");
    if (flags & QIMG_O_NO_BACKING) {
        if (v && !v[0]) /* QEMU takes null (or "") even then; a node name stays unused */
            qimg_opts_take(o, "backing");
        return 0;
    }
    qimg_opts_extract_prefix(o, "backing.", bopts);
    if (!v)
        return 0;
    qimg_opts_take(o, "backing");
    if (!v[0]) {
        *none = true;
        return 0;
    }
    return qimg_error_set(err, -EINVAL, "Could not open backing file: Cannot find device='%s' "
                                        "nor node-name='%s'", v, v);
}

static int open_backing(struct qimg_node *n, struct qimg_opts *bopts, unsigned flags, int depth,
                        struct qimg_error *err)
{
    if (!n->backing_file || !n->backing_file[0] || (flags & QIMG_O_NO_BACKING))
        return 0;
    if (depth >= MAX_BACKING_DEPTH)
        return qimg_error_set(err, -ELOOP, "Backing chain too deep (more than %d images)",
                              MAX_BACKING_DEPTH);
    if (creates_loop(n->full_backing_filename, depth))
        return qimg_error_set(err, -ELOOP, "Backing file '%s' creates an infinite loop",
                              n->full_backing_filename);
    unsigned bflags = (flags & ~(QIMG_O_RDWR | QIMG_O_RESIZE)) | (flags & QIMG_O_FORCE_SHARE);
    struct qimg_error berr = {0};
    opening[depth] = real_path_of(n->filename);
    bool named = qimg_opts_has(bopts, "file.filename") || qimg_opts_has(bopts, "filename") ||
                 qimg_opts_has(bopts, "file.driver");
    const char *fmt = qimg_opts_has(bopts, "driver") ? NULL : n->backing_format;
    int ret = qimg_open_depth(&n->backing, named ? NULL : n->full_backing_filename, fmt,
                              bopts->n ? bopts : NULL, bflags, depth + 1, &berr);
    free(opening[depth]);
    opening[depth] = NULL;
    if (ret == -ELOOP)
        qimg_error_set(err, ret, "%s", berr.msg); /* said once, not once per layer */
    else if (ret < 0)
        qimg_error_set(err, ret, "Could not open backing file: %s", berr.msg);
    return ret;
}

/*
 * QEMU's generic cache options on a format node: they hold for it and, unless
 * a child says otherwise (file.cache.direct), for the nodes below it.
 */
static int take_cache_flags(struct qimg_opts *o, unsigned *flags, struct qimg_error *err)
{
    static const struct {
        const char *key;
        unsigned flag;
    } keys[] = {{"cache.direct", QIMG_O_NOCACHE}, {"cache.no-flush", QIMG_O_NO_FLUSH}};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        bool b;
        int ret = qimg_opts_take_bool(o, keys[i].key, &b, err);
        if (ret < 0)
            return ret;
        if (ret > 0)
            *flags = b ? (*flags | keys[i].flag) : (*flags & ~keys[i].flag);
    }
    return 0;
}

/*
 * The "file" child of a format. As in QEMU, an explicit driver decides what
 * it is: a format there (raw over qcow2, qcow2 over raw) is a whole image
 * opened from the child's options; otherwise its name picks a protocol.
 */
static int open_file_child(struct qimg_node **out, const char *filename, struct qimg_opts *opts,
                           unsigned flags, int depth, struct qimg_error *err)
{
    const char *drvname = qimg_opts_peek(opts, "driver");
    const struct qimg_driver *drv = drvname ? qimg_driver_find(drvname) : NULL;
    if (!drv || drv->is_protocol)
        return qimg_open_protocol(out, filename, opts, flags, err);
    /*
     * Same depth: nesting is bounded by the options themselves (as in QEMU, no
     * limit), and the child's backing is opened before this node's (so the
     * loop check's slot for this depth is free then).
     */
    /* Not opening the backing file is for the top node (qemu-img info): a format
     * under a filter or raw opens its own, as in QEMU. */
    return qimg_open_depth(out, filename, NULL, opts, flags & ~QIMG_O_NO_BACKING, depth, err);
}

int qimg_open_depth(struct qimg_node **out, const char *filename, const char *format,
                    struct qimg_opts *opts, unsigned flags, int depth, struct qimg_error *err)
{
    struct qimg_opts *o = opts ? qimg_opts_clone(opts) : qimg_opts_new();
    struct qimg_opts *file_opts = qimg_opts_new();
    struct qimg_opts *backing_opts = qimg_opts_new();
    struct qimg_node *proto = NULL, *n = NULL;
    int ret;

    if (filename && strncmp(filename, "json:", 5) == 0) {
        ret = qimg_opts_parse_json(o, filename + 5, err);
        if (ret < 0)
            goto out;
        filename = NULL;
    }
    const char *drvname = qimg_opts_take(o, "driver");
    if (!format)
        format = drvname;
    qimg_opts_extract_prefix(o, "file.", file_opts);
    const char *file_ref = qimg_opts_take(o, "file");
    if (file_ref) {
        /* A string child is a reference to an existing node; qemu-img has none to name. */
        ret = qimg_error_set(err, -EINVAL, "Cannot find device='%s' nor node-name='%s'",
                             file_ref, file_ref);
        goto out;
    }
    const struct qimg_driver *fmt_drv = NULL;
    if (format) {
        fmt_drv = qimg_driver_find(format);
        if (!fmt_drv) {
            ret = qimg_error_set(err, -EINVAL, "Unknown driver '%s'", format);
            goto out;
        }
    }
    if (fmt_drv && fmt_drv->is_protocol) {
        /* -f file (or a protocol named as format): the protocol is the image. */
        qimg_opts_set(o, "driver", fmt_drv->name);
        ret = qimg_open_protocol(&proto, filename, o, flags, err);
        if (ret < 0)
            goto out;
        unsigned perm = QIMG_PERM_CONSISTENT_READ | ((flags & QIMG_O_RDWR) ? QIMG_PERM_WRITE : 0) |
                        ((flags & QIMG_O_RESIZE) ? QIMG_PERM_RESIZE : 0);
        ret = qimg_node_set_perm(proto, perm, QIMG_PERM_ALL, err);
        if (ret < 0)
            goto out;
        *out = proto;
        proto = NULL;
        goto out;
    }
    ret = take_cache_flags(o, &flags, err);
    if (ret < 0)
        goto out;
    /*
     * A format node's own "filename" option names nothing (QEMU leaves it
     * unused): its image is the positional name or the file.* options.
     */
    if (!filename && !file_opts->n) {
        if (fmt_drv) /* a format with nothing under it */
            ret = qimg_error_set(err, -EINVAL, "A block device must be specified for \"file\"");
        else
            ret = qimg_error_set(err, -EINVAL, "Must specify either driver or file");
        goto out;
    }

    ret = open_file_child(&proto, filename, file_opts, flags, depth, err);
    if (ret < 0)
        goto out;
    char *stripped = filename ? qimg_parse_file_prefix(proto->drv, filename) : NULL;
    if (!filename || stripped) /* named as its file ("./a:b" for "file:a:b") */
        filename = proto->filename;
    free(stripped);
    bool probed = false;
    if (!fmt_drv) {
        fmt_drv = probe_format(proto, err);
        if (!fmt_drv) {
            ret = -EIO;
            goto out;
        }
        probed = true;
    }
    n = qimg_node_alloc(fmt_drv, filename, flags);
    n->file = proto;
    proto = NULL;
    n->probed_raw = probed && strcmp(fmt_drv->name, "raw") == 0;

    unsigned perm, shared;
    format_file_perms(n, flags, &perm, &shared);
    ret = qimg_node_set_perm(n->file, perm, shared, err);
    if (ret < 0)
        goto out;
    bool no_backing = false;
    ret = take_backing_opts(o, flags, backing_opts, &no_backing, err);
    if (ret < 0)
        goto out;
    ret = fmt_drv->open(n, o, err);
    if (ret < 0)
        goto out;
    ret = check_unused(n, o, err);
    if (ret < 0)
        goto out;
    if (n->backing_file && n->backing_file[0] && !n->full_backing_filename)
        n->full_backing_filename = qimg_resolve_backing_path(overlay_path(n), n->backing_file);
    ret = open_backing(n, backing_opts, flags | (no_backing ? QIMG_O_NO_BACKING : 0), depth,
                       err);
    if (ret < 0)
        goto out;
    n->options = o;
    o = NULL;
    qimg_node_refresh_filename(n);
    *out = n;
    n = NULL;
out:
    qimg_node_unref(n);
    qimg_node_unref(proto);
    qimg_opts_free(o);
    qimg_opts_free(file_opts);
    qimg_opts_free(backing_opts);
    return ret;
}

int qimg_open(struct qimg_node **out, const char *filename, const char *format,
              struct qimg_opts *opts, unsigned flags, struct qimg_error *err)
{
    return qimg_open_depth(out, filename, format, opts, flags, 0, err);
}

int qimg_open_image_opts(struct qimg_node **out, struct qimg_opts *opts, unsigned flags,
                         struct qimg_error *err)
{
    return qimg_open_depth(out, NULL, NULL, opts, flags, 0, err);
}
