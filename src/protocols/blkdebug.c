/* SPDX-License-Identifier: MIT */
/*
 * The "blkdebug" filter: passes every request to its "image" child and fails
 * the ones its rules select, so that error paths can be tested (QEMU's
 * docs/devel/testing/blkdebug.rst). Syntax: "blkdebug:CONFIG:IMAGE" (CONFIG may
 * be empty) or json:/--image-opts with "config", "image", "inject-error.N.*",
 * "set-state.N.*", "align" and the transfer limits.
 *
 * Rules. An event (l2_load, read_aio, ...) is raised by the format above
 * through qimg_debug_event (raw raises read_aio/write_aio before each guest
 * read and write, as QEMU's raw does; reads that are not guest I/O, such as
 * probing, raise nothing), or by this filter itself: flush_to_os and
 * flush_to_disk for flushes (QEMU's generic flush raises them on the child of
 * the node being flushed). When an event matches inject-error rules (and the engine's
 * state, which starts at 1, equals the rule's state or the rule has none),
 * those rules become the active ones, replacing the earlier set. Every
 * request then checks the active rules: the first whose iotype includes the
 * request's and whose sector (if any) lies in the request fails it with its
 * errno; a "once" rule is deleted after failing one request. set-state rules
 * matching the event move the state after all rules were looked at.
 *
 * Flushes follow what qemu-io shows of QEMU's write generations: a write in
 * writethrough mode (or with FUA) is followed by flush_to_os and a flush
 * check; an explicit flush raises flush_to_os, flush_to_disk only when guest
 * writes happened since the last explicit flush, and is checked against the
 * rules only when this node saw writes since its last flush.
 *
 * Breakpoints (qemu-io's break, resume, remove_break, wait_break): when an
 * event is raised, every pending breakpoint on it fires, newest first: it is
 * removed (one-shot), "blkdebug: Suspended request 'TAG'" is printed, and the
 * raising thread blocks until each of those suspensions has been resumed
 * (what qemu-io shows when two breakpoints share an event: one request is
 * suspended under both tags and needs both resumed). resume picks the newest
 * suspension with the tag. The raising thread may hold its format's locks
 * meanwhile; callers issue such requests from threads of their own.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "core/node-internal.h"
#include "qimg/driver.h"
#include "util/mem.h"

#define SECTOR 512
#define MAX_RULES 4096 /* per open: more is a mistake, not a test */

enum io_type {
    IO_READ = 1u << 0,
    IO_WRITE = 1u << 1,
    IO_WRITE_ZEROES = 1u << 2,
    IO_DISCARD = 1u << 3,
    IO_FLUSH = 1u << 4,
    IO_BLOCK_STATUS = 1u << 5,
    IO_ALL = 0x3fu,
};

static const struct {
    const char *name;
    unsigned mask;
} io_types[] = {
    {"read", IO_READ},       {"write", IO_WRITE}, {"write-zeroes", IO_WRITE_ZEROES},
    {"discard", IO_DISCARD}, {"flush", IO_FLUSH}, {"block-status", IO_BLOCK_STATUS},
};

struct rule {
    bool inject; /* inject-error; else set-state */
    bool removed;
    bool active;
    bool once;
    enum qimg_debug_event event;
    int64_t state; /* 0: any */
    int64_t new_state;
    int error;      /* errno to fail with; <= 0 lets the request succeed */
    int64_t sector; /* -1: any */
    unsigned iotype;
    unsigned active_seq; /* order within the active set */
};

/* A pending breakpoint (newest first in the list). */
struct breakpoint {
    enum qimg_debug_event event;
    char *tag;
    struct breakpoint *next;
};

/* A request blocked at breakpoints: how many of its suspensions are not resumed yet. */
struct waiter {
    unsigned pending;
};

/* One suspension (newest first in the list). */
struct suspension {
    char *tag;
    struct waiter *w;
    struct suspension *next;
};

struct blkdebug_state {
    pthread_mutex_t lock;
    pthread_cond_t resumed; /* a waiter's pending count dropped */
    struct breakpoint *breakpoints;
    struct suspension *suspended;
    struct rule *rules;
    size_t n_rules;
    int64_t state;
    unsigned active_seq; /* next order number for the active set */
    bool parent_dirty; /* guest writes since the last explicit flush */
    bool self_dirty;   /* writes through this node since its last flush check */
    uint64_t max_transfer, opt_write_zero, max_write_zero, opt_discard, max_discard;
    char *config; /* the config file's name, for the node's name */
};

static const struct qimg_opt_desc blkdebug_open_opts[] = {
    {"config", QIMG_OPT_STRING, "Path to the configuration file", NULL},
    {"x-image", QIMG_OPT_STRING, "[internal use only, will be removed]", NULL},
    {"align", QIMG_OPT_SIZE, "Required alignment in bytes", NULL},
    {"max-transfer", QIMG_OPT_SIZE, "Maximum transfer size in bytes", NULL},
    {"opt-write-zero", QIMG_OPT_SIZE, "Optimum write zero alignment in bytes", NULL},
    {"max-write-zero", QIMG_OPT_SIZE, "Maximum write zero size in bytes", NULL},
    {"opt-discard", QIMG_OPT_SIZE, "Optimum discard alignment in bytes", NULL},
    {"max-discard", QIMG_OPT_SIZE, "Maximum discard size in bytes", NULL},
    {0},
};

/* ---- rule options ---- */

static int parse_int64(const char *s, int64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || *end)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "on") || !strcmp(s, "true") || !strcmp(s, "yes")) {
        *out = true;
        return 0;
    }
    if (!strcmp(s, "off") || !strcmp(s, "false") || !strcmp(s, "no")) {
        *out = false;
        return 0;
    }
    return -EINVAL;
}

static int take_number(struct qimg_opts *o, const char *key, int64_t *out, struct qimg_error *err)
{
    const char *v = qimg_opts_take(o, key);
    if (!v)
        return 0;
    if (parse_int64(v, out) < 0)
        return qimg_error_set(err, -EINVAL, "Parameter '%s' expects a number", key);
    return 1;
}

static int take_flag(struct qimg_opts *o, const char *key, bool *out, struct qimg_error *err)
{
    const char *v = qimg_opts_take(o, key);
    if (v && parse_bool(v, out) < 0)
        return qimg_error_set(err, -EINVAL, "Parameter '%s' expects 'on' or 'off'", key);
    return 0;
}

/*
 * One rule from its keys (the N in inject-error.N.*). from_config picks the
 * config file's wording for unknown keys.
 */
static int parse_rule(struct blkdebug_state *s, struct qimg_opts *o, bool inject, bool from_config,
                      struct qimg_error *err)
{
    struct rule r = {.inject = inject, .state = 0, .error = EIO, .sector = -1, .iotype = IO_ALL};
    const char *section = inject ? "inject-error" : "set-state";
    const char *ev = qimg_opts_take(o, "event");
    if (!ev)
        return qimg_error_set(err, -EINVAL, "Missing event name for rule");
    if (qimg_debug_event_parse(ev, &r.event) < 0)
        return qimg_error_set(err, -EINVAL, "invalid parameter value: %s", ev);
    if (take_number(o, "state", &r.state, err) < 0)
        return err->code;
    if (inject) {
        int64_t e = EIO;
        if (take_number(o, "errno", &e, err) < 0)
            return err->code;
        if (e < INT_MIN || e > INT_MAX)
            return qimg_error_set(err, -EINVAL, "Parameter 'errno' expects a number");
        r.error = (int)e;
        if (take_number(o, "sector", &r.sector, err) < 0)
            return err->code;
        if (take_flag(o, "once", &r.once, err) < 0)
            return err->code;
        bool immediately = false; /* requests fail synchronously here anyway */
        if (take_flag(o, "immediately", &immediately, err) < 0)
            return err->code;
        const char *t = qimg_opts_take(o, "iotype");
        if (t) {
            r.iotype = 0;
            for (size_t i = 0; i < sizeof(io_types) / sizeof(io_types[0]); i++)
                if (!strcmp(io_types[i].name, t))
                    r.iotype = io_types[i].mask;
            if (!r.iotype)
                return qimg_error_set(err, -EINVAL, "invalid parameter value: %s", t);
        }
    } else {
        if (take_number(o, "new_state", &r.new_state, err) < 0)
            return err->code;
    }
    const char *bad = qimg_opts_first_unused(o);
    if (bad) {
        if (from_config)
            return qimg_error_set(err, -EINVAL, "Invalid parameter '%s'", bad);
        return qimg_error_set(err, -EINVAL, "[%s] section doesn't support the option '%s'",
                              section, bad);
    }
    if (s->n_rules >= MAX_RULES)
        return qimg_error_set(err, -EINVAL, "Too many blkdebug rules (at most %d)", MAX_RULES);
    s->rules = xrealloc(s->rules, (s->n_rules + 1) * sizeof(*s->rules));
    s->rules[s->n_rules++] = r;
    return 0;
}

/* Every "<section>.N.*" group of opts, N = 0, 1, ... until one is missing. */
static int parse_rule_list(struct blkdebug_state *s, struct qimg_opts *opts, const char *section,
                           bool from_config, struct qimg_error *err)
{
    for (unsigned i = 0;; i++) {
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "%s.%u.", section, i);
        struct qimg_opts *o = qimg_opts_new();
        qimg_opts_extract_prefix(opts, prefix, o);
        if (o->n == 0) {
            qimg_opts_free(o);
            return 0;
        }
        int ret = parse_rule(s, o, !strcmp(section, "inject-error"), from_config, err);
        qimg_opts_free(o);
        if (ret < 0)
            return ret;
    }
}

/*
 * The config file: .ini-like, "[inject-error]" and "[set-state]" sections of
 * `key = "value"` lines, '#' comments. Read into "section.N.key" options.
 */
static int read_config(const char *path, struct qimg_opts *out, struct qimg_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return qimg_error_errno(err, -errno, "Could not read blkdebug config file");
    char line[1024];
    char section[32] = "";
    unsigned count[2] = {0, 0};
    int ret = 0, lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        p[strcspn(p, "\r\n")] = '\0';
        if (!*p || *p == '#')
            continue;
        if (*p == '[') {
            char name[64];
            if (sscanf(p, "[%63[^]]]", name) != 1) {
                ret = qimg_error_set(err, -EINVAL, "%s:%d: parse error", path, lineno);
                break;
            }
            int idx = !strcmp(name, "inject-error") ? 0 : !strcmp(name, "set-state") ? 1 : -1;
            if (idx < 0) {
                ret = qimg_error_set(err, -EINVAL, "There is no option group '%s'", name);
                break;
            }
            snprintf(section, sizeof(section), "%s.%u", name, count[idx]++);
            continue;
        }
        char key[64], value[1024] = "";
        if (sscanf(p, "%63[^ =\t] = \"%1023[^\"]\"", key, value) < 1 || !section[0]) {
            ret = qimg_error_set(err, -EINVAL, "%s:%d: parse error", path, lineno);
            break;
        }
        char full[160];
        snprintf(full, sizeof(full), "%s.%s", section, key);
        qimg_opts_set(out, full, value);
    }
    if (ret == 0 && ferror(f))
        ret = qimg_error_errno(err, -EIO, "Could not read blkdebug config file");
    fclose(f);
    return ret;
}

/* ---- the engine ---- */

static void blkdebug_event(struct qimg_node *n, enum qimg_debug_event ev)
{
    struct blkdebug_state *s = n->opaque;
    pthread_mutex_lock(&s->lock);
    bool injected = false;
    int64_t new_state = s->state;
    for (size_t i = 0; i < s->n_rules; i++) {
        struct rule *r = &s->rules[i];
        if (r->removed || r->event != ev || (r->state && r->state != s->state))
            continue;
        if (r->inject) {
            if (!injected) {
                for (size_t j = 0; j < s->n_rules; j++)
                    s->rules[j].active = false;
                injected = true;
            }
            r->active = true;
            r->active_seq = s->active_seq++;
        } else {
            new_state = r->new_state;
        }
    }
    s->state = new_state;

    /* Breakpoints on ev fire now, newest first; the request waits for all. */
    struct waiter w = {0};
    for (struct breakpoint **pp = &s->breakpoints; *pp;) {
        struct breakpoint *b = *pp;
        if (b->event != ev) {
            pp = &b->next;
            continue;
        }
        *pp = b->next;
        struct suspension *sus = xmalloc(sizeof(*sus));
        sus->tag = b->tag;
        sus->w = &w;
        sus->next = s->suspended;
        s->suspended = sus;
        w.pending++;
        free(b);
        printf("blkdebug: Suspended request '%s'\n", sus->tag);
    }
    if (w.pending)
        fflush(stdout); /* whoever waits for this request sees the line out */
    while (w.pending)
        pthread_cond_wait(&s->resumed, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

/* ---- breakpoints ---- */

static int blkdebug_debug_breakpoint(struct qimg_node *n, const char *event, const char *tag)
{
    struct blkdebug_state *s = n->opaque;
    enum qimg_debug_event ev;
    if (qimg_debug_event_parse(event, &ev) < 0)
        return -ENOENT;
    struct breakpoint *b = xmalloc(sizeof(*b));
    b->event = ev;
    b->tag = xstrdup(tag);
    pthread_mutex_lock(&s->lock);
    b->next = s->breakpoints;
    s->breakpoints = b;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Resume the newest suspension with tag (all of them when all is set); locked. */
static int resume_locked(struct blkdebug_state *s, const char *tag, bool all)
{
    int ret = -ENOENT;
    for (struct suspension **pp = &s->suspended; *pp;) {
        struct suspension *sus = *pp;
        if (strcmp(sus->tag, tag) != 0) {
            pp = &sus->next;
            continue;
        }
        *pp = sus->next;
        printf("blkdebug: Resuming request '%s'\n", sus->tag);
        sus->w->pending--;
        free(sus->tag);
        free(sus);
        ret = 0;
        if (!all)
            break;
    }
    if (ret == 0)
        pthread_cond_broadcast(&s->resumed);
    return ret;
}

static int blkdebug_debug_resume(struct qimg_node *n, const char *tag)
{
    struct blkdebug_state *s = n->opaque;
    pthread_mutex_lock(&s->lock);
    int ret = resume_locked(s, tag, false);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* qemu-io: resumes what was stopped with tag, but succeeds only if a pending one went. */
static int blkdebug_debug_remove_breakpoint(struct qimg_node *n, const char *tag)
{
    struct blkdebug_state *s = n->opaque;
    int ret = -ENOENT;
    pthread_mutex_lock(&s->lock);
    resume_locked(s, tag, true);
    for (struct breakpoint **pp = &s->breakpoints; *pp;) {
        struct breakpoint *b = *pp;
        if (strcmp(b->tag, tag) != 0) {
            pp = &b->next;
            continue;
        }
        *pp = b->next;
        free(b->tag);
        free(b);
        ret = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static bool blkdebug_debug_is_suspended(struct qimg_node *n, const char *tag)
{
    struct blkdebug_state *s = n->opaque;
    bool found = false;
    pthread_mutex_lock(&s->lock);
    for (struct suspension *sus = s->suspended; sus && !found; sus = sus->next)
        found = !strcmp(sus->tag, tag);
    pthread_mutex_unlock(&s->lock);
    return found;
}

/* 0, or the error the first matching active rule injects. */
static int rule_check(struct qimg_node *n, uint64_t off, uint64_t len, unsigned iotype)
{
    struct blkdebug_state *s = n->opaque;
    struct rule *hit = NULL;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_rules; i++) {
        struct rule *r = &s->rules[i];
        if (!r->active || r->removed || !(r->iotype & iotype))
            continue;
        if (r->sector != -1) {
            if (r->sector < 0 || (uint64_t)r->sector > UINT64_MAX / SECTOR)
                continue;
            uint64_t at = (uint64_t)r->sector * SECTOR;
            if (at < off || at - off >= len)
                continue;
        }
        if (!hit || r->active_seq < hit->active_seq)
            hit = r;
    }
    int ret = 0;
    if (hit) {
        ret = hit->error > 0 ? -hit->error : 0;
        if (hit->once)
            hit->removed = true;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* ---- open ---- */

/* "blkdebug:CONFIG:IMAGE" -> config (may be empty) and image. */
static int split_filename(const char *filename, char **config, char **image,
                          struct qimg_error *err)
{
    const char *p = filename + strlen("blkdebug:");
    const char *colon = strchr(p, ':');
    if (!colon || !colon[1])
        return qimg_error_set(err, -EINVAL, "blkdebug requires both config file and image path");
    *config = xasprintf("%.*s", (int)(colon - p), p);
    *image = xstrdup(colon + 1);
    return 0;
}

static int take_limit(struct qimg_opts *opts, const char *key, uint64_t align, uint64_t *out,
                      struct qimg_error *err)
{
    int r = qimg_opts_take_size(opts, key, out, err);
    if (r <= 0)
        return r;
    if (*out > INT32_MAX || (align && *out % align))
        return qimg_error_set(err, -EINVAL, "Cannot meet constraints with %s %llu", key,
                              (unsigned long long)*out);
    return 0;
}

static int blkdebug_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct blkdebug_state *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->resumed, NULL);
    s->state = 1;
    n->opaque = s;
    char *config = NULL, *image = NULL;
    struct qimg_opts *image_opts = qimg_opts_new();
    struct qimg_opts *cfg = qimg_opts_new();
    int ret = 0;

    const char *filename = qimg_opts_take(opts, "filename");
    if (filename && !strncmp(filename, "blkdebug:", 9)) {
        ret = split_filename(filename, &config, &image, err);
        if (ret < 0)
            goto out;
    }
    const char *v = qimg_opts_take(opts, "config");
    if (v) {
        free(config);
        config = xstrdup(v);
    }
    v = qimg_opts_take(opts, "image");
    if (v) {
        /* A string "image" names an existing node; qimg has no named nodes. */
        ret = qimg_error_set(err, -EINVAL, "Cannot find device='%s' nor node-name='%s'", v, v);
        goto out;
    }
    v = qimg_opts_take(opts, "x-image"); /* the filename, as QEMU's internal option has it */
    if (v) {
        free(image);
        image = xstrdup(v);
    }
    qimg_opts_extract_prefix(opts, "image.", image_opts);

    if (config && *config) {
        ret = read_config(config, cfg, err);
        if (ret < 0)
            goto out;
        if ((ret = parse_rule_list(s, cfg, "inject-error", true, err)) < 0 ||
            (ret = parse_rule_list(s, cfg, "set-state", true, err)) < 0)
            goto out;
    }
    if ((ret = parse_rule_list(s, opts, "inject-error", false, err)) < 0 ||
        (ret = parse_rule_list(s, opts, "set-state", false, err)) < 0)
        goto out;

    uint64_t align = 0;
    ret = qimg_opts_take_size(opts, "align", &align, err);
    if (ret < 0)
        goto out;
    if (ret > 0 && (align == 0 || align > INT32_MAX || (align & (align - 1)))) {
        ret = qimg_error_set(err, -EINVAL, "Cannot meet constraints with align %llu",
                             (unsigned long long)align);
        goto out;
    }
    if ((ret = take_limit(opts, "max-transfer", align, &s->max_transfer, err)) < 0 ||
        (ret = take_limit(opts, "opt-write-zero", align, &s->opt_write_zero, err)) < 0 ||
        (ret = take_limit(opts, "max-write-zero", align, &s->max_write_zero, err)) < 0 ||
        (ret = take_limit(opts, "opt-discard", align, &s->opt_discard, err)) < 0 ||
        (ret = take_limit(opts, "max-discard", align, &s->max_discard, err)) < 0)
        goto out;

    if (!image && !qimg_opts_has(image_opts, "filename") && !qimg_opts_has(image_opts, "driver")) {
        ret = qimg_error_set(err, -EINVAL, "A block device must be specified for \"image\"");
        goto out;
    }
    const char *drvname = qimg_opts_peek(image_opts, "driver");
    const struct qimg_driver *cdrv = drvname ? qimg_driver_find(drvname) : NULL;
    if (cdrv && !cdrv->is_protocol) {
        /* A format under the filter: open it as an image of its own. */
        if (image)
            qimg_opts_set(image_opts, "file.filename", image);
        ret = qimg_open_image_opts(&n->file, image_opts, n->flags, err);
    } else {
        ret = qimg_open_protocol(&n->file, image, image_opts, n->flags, err);
        if (ret == 0 && qimg_opts_first_unused(image_opts))
            ret = qimg_error_set(err, -EINVAL, "Block protocol '%s' doesn't support the option '%s'",
                                 n->file->drv->name, qimg_opts_first_unused(image_opts));
    }
    if (ret < 0)
        goto out;
    n->request_alignment = align ? (uint32_t)align : n->file->request_alignment;
    if (n->request_alignment < n->file->request_alignment)
        n->request_alignment = n->file->request_alignment;
    s->config = config ? xstrdup(config) : NULL;
out:
    free(config);
    free(image);
    qimg_opts_free(image_opts);
    qimg_opts_free(cfg);
    return ret;
}

static void blkdebug_close(struct qimg_node *n)
{
    struct blkdebug_state *s = n->opaque;
    if (!s)
        return;
    /* Suspended requests would still use the state: the caller drains first. */
    while (s->breakpoints) {
        struct breakpoint *b = s->breakpoints;
        s->breakpoints = b->next;
        free(b->tag);
        free(b);
    }
    pthread_cond_destroy(&s->resumed);
    pthread_mutex_destroy(&s->lock);
    free(s->rules);
    free(s->config);
    free(s);
    n->opaque = NULL;
}

static int blkdebug_set_perm(struct qimg_node *n, unsigned perm, unsigned shared,
                             struct qimg_error *err)
{
    int ret = qimg_node_set_perm(n->file, perm, shared, err);
    if (ret == 0) {
        n->perm = perm;
        n->shared_perm = shared;
    }
    return ret;
}

/* ---- requests ---- */

static int64_t blkdebug_get_length(struct qimg_node *n)
{
    return qimg_node_length(n->file);
}

static int64_t blkdebug_get_allocated_size(struct qimg_node *n)
{
    (void)n;
    return -ENOTSUP; /* QEMU: "disk size: unavailable" */
}

static int blkdebug_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                          unsigned flags)
{
    int ret = rule_check(n, off, len, IO_READ);
    if (ret < 0)
        return ret;
    return qimg_node_pread(n->file, off, len, buf, flags);
}

static void mark_dirty(struct qimg_node *n)
{
    struct blkdebug_state *s = n->opaque;
    pthread_mutex_lock(&s->lock);
    s->parent_dirty = s->self_dirty = true;
    pthread_mutex_unlock(&s->lock);
}

/* Checked flush of this node (the child flushes itself as its flags say). */
static int flush_check(struct qimg_node *n)
{
    struct blkdebug_state *s = n->opaque;
    pthread_mutex_lock(&s->lock);
    bool dirty = s->self_dirty;
    s->self_dirty = false;
    pthread_mutex_unlock(&s->lock);
    return dirty ? rule_check(n, 0, 0, IO_FLUSH) : 0;
}

/* A write that must be stable: QEMU follows it with a flush of the layers above. */
static int write_done(struct qimg_node *n, unsigned flags)
{
    mark_dirty(n);
    if (!(flags & QIMG_REQ_FUA) && !(n->flags & QIMG_O_WRITETHROUGH))
        return 0;
    blkdebug_event(n, QIMG_DBG_FLUSH_TO_OS);
    return flush_check(n);
}

static int blkdebug_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                           unsigned flags)
{
    blkdebug_event(n, QIMG_DBG_PWRITEV); /* QEMU's generic write path raises these */
    int ret = rule_check(n, off, len, IO_WRITE);
    if (ret == 0)
        ret = qimg_node_pwrite(n->file, off, len, buf, flags);
    if (ret == 0)
        blkdebug_event(n, QIMG_DBG_PWRITEV_DONE);
    if (ret == 0)
        ret = write_done(n, flags);
    return ret;
}

static int blkdebug_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    blkdebug_event(n, QIMG_DBG_PWRITEV_ZERO);
    int ret = rule_check(n, off, len, IO_WRITE_ZEROES);
    if (ret == 0)
        ret = qimg_node_pwrite_zeroes(n->file, off, len, flags);
    if (ret == 0)
        blkdebug_event(n, QIMG_DBG_PWRITEV_DONE);
    if (ret == 0)
        ret = write_done(n, flags);
    return ret;
}

static int blkdebug_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    int ret = rule_check(n, off, len, IO_DISCARD);
    if (ret < 0)
        return ret;
    return qimg_node_pdiscard(n->file, off, len);
}

static int blkdebug_flush(struct qimg_node *n)
{
    struct blkdebug_state *s = n->opaque;
    blkdebug_event(n, QIMG_DBG_FLUSH_TO_OS);
    if (n->flags & QIMG_O_NO_FLUSH)
        return 0;
    pthread_mutex_lock(&s->lock);
    bool guest_writes = s->parent_dirty;
    s->parent_dirty = false;
    pthread_mutex_unlock(&s->lock);
    if (guest_writes)
        blkdebug_event(n, QIMG_DBG_FLUSH_TO_DISK);
    int ret = flush_check(n);
    if (ret < 0)
        return ret;
    return qimg_node_flush(n->file);
}

static int blkdebug_truncate(struct qimg_node *n, uint64_t size, bool exact,
                             enum qimg_prealloc prealloc, struct qimg_error *err)
{
    return qimg_node_truncate(n->file, size, exact, prealloc, err);
}

static int blkdebug_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                                 struct qimg_block_status *st)
{
    int ret = rule_check(n, off, len, IO_BLOCK_STATUS);
    if (ret < 0)
        return ret;
    return qimg_node_block_status(n->file, off, len, st);
}

static bool blkdebug_has_zero_init(struct qimg_node *n)
{
    return qimg_node_has_zero_init(n->file);
}

/* QEMU's plain name for the filter: "blkdebug:CONFIG:IMAGE" (CONFIG may be empty). */
static char *blkdebug_plain_filename(struct qimg_node *n)
{
    const struct blkdebug_state *s = n->opaque;
    if (!n->file || !n->file->filename || !strncmp(n->file->filename, "json:", 5))
        return NULL;
    return xasprintf("blkdebug:%s:%s", s->config ? s->config : "", n->file->filename);
}

static const char *const blkdebug_strong_opts[] = {"inject-error", "set-state", "align",
                                                   "max-transfer", "opt-write-zero",
                                                   "max-write-zero", "opt-discard",
                                                   "max-discard", NULL};

const struct qimg_driver qimg_blkdebug_driver = {
    .name = "blkdebug",
    .strong_opts = blkdebug_strong_opts,
    .child_name = "image",
    .plain_filename = blkdebug_plain_filename,
    .is_protocol = true,
    .protocol_prefix = "blkdebug",
    .is_filter = true,
    .open_opts = blkdebug_open_opts,
    .open = blkdebug_open,
    .close = blkdebug_close,
    .set_perm = blkdebug_set_perm,
    .get_length = blkdebug_get_length,
    .get_allocated_size = blkdebug_get_allocated_size,
    .pread = blkdebug_pread,
    .pwrite = blkdebug_pwrite,
    .pwrite_zeroes = blkdebug_pwrite_zeroes,
    .pdiscard = blkdebug_pdiscard,
    .flush = blkdebug_flush,
    .truncate = blkdebug_truncate,
    .block_status = blkdebug_block_status,
    .has_zero_init = blkdebug_has_zero_init,
    .debug_event = blkdebug_event,
    .debug_breakpoint = blkdebug_debug_breakpoint,
    .debug_remove_breakpoint = blkdebug_debug_remove_breakpoint,
    .debug_resume = blkdebug_debug_resume,
    .debug_is_suspended = blkdebug_debug_is_suspended,
};
