/* SPDX-License-Identifier: MIT */
/* Option lists (QemuOpts-style "k=v,k2=v2" with ",," escaping). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qimg/opts.h"
#include "qimg/units.h"
#include "util/mem.h"

struct qimg_opts *qimg_opts_new(void)
{
    return xcalloc(1, sizeof(struct qimg_opts));
}

void qimg_opts_free(struct qimg_opts *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++) {
        free(o->v[i].key);
        free(o->v[i].value);
    }
    free(o->v);
    free(o);
}

struct qimg_opts *qimg_opts_clone(const struct qimg_opts *o)
{
    struct qimg_opts *c = qimg_opts_new();
    for (size_t i = 0; o && i < o->n; i++) {
        qimg_opts_set_typed(c, o->v[i].key, o->v[i].value, o->v[i].type);
        c->v[c->n - 1].used = o->v[i].used;
    }
    return c;
}

static struct qimg_opt *opts_find(const struct qimg_opts *o, const char *key)
{
    for (size_t i = 0; o && i < o->n; i++)
        if (strcmp(o->v[i].key, key) == 0)
            return &o->v[i];
    return NULL;
}

void qimg_opts_set(struct qimg_opts *o, const char *key, const char *value)
{
    struct qimg_opt *e = opts_find(o, key);
    if (e) {
        free(e->value);
        e->value = value ? xstrdup(value) : NULL;
        e->used = false;
        e->type = QIMG_OPTV_STRING;
        return;
    }
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 8;
        o->v = xrealloc(o->v, o->cap * sizeof(*o->v));
    }
    o->v[o->n].key = xstrdup(key);
    o->v[o->n].value = value ? xstrdup(value) : NULL;
    o->v[o->n].used = false;
    o->v[o->n].type = QIMG_OPTV_STRING;
    o->n++;
}

void qimg_opts_set_typed(struct qimg_opts *o, const char *key, const char *value,
                         enum qimg_opt_value_type type)
{
    qimg_opts_set(o, key, value);
    opts_find(o, key)->type = type;
}

enum qimg_opt_value_type qimg_opts_type(const struct qimg_opts *o, const char *key)
{
    struct qimg_opt *e = opts_find(o, key);
    return e ? e->type : QIMG_OPTV_STRING;
}

const char *qimg_opts_peek(const struct qimg_opts *o, const char *key)
{
    struct qimg_opt *e = opts_find(o, key);
    return e ? e->value : NULL;
}

const char *qimg_opts_take(struct qimg_opts *o, const char *key)
{
    struct qimg_opt *e = opts_find(o, key);
    if (!e)
        return NULL;
    e->used = true;
    return e->value;
}

bool qimg_opts_has(const struct qimg_opts *o, const char *key)
{
    return opts_find(o, key) != NULL;
}

void qimg_opts_del(struct qimg_opts *o, const char *key)
{
    for (size_t i = 0; o && i < o->n; i++) {
        if (strcmp(o->v[i].key, key) == 0) {
            free(o->v[i].key);
            free(o->v[i].value);
            memmove(&o->v[i], &o->v[i + 1], (o->n - i - 1) * sizeof(*o->v));
            o->n--;
            return;
        }
    }
}

/* Read one element up to an unescaped ',' (or '=' when stop_at_eq); ",," is a comma. */
static const char *parse_token(const char *p, bool stop_at_eq, char **out)
{
    size_t cap = strlen(p) + 1, n = 0;
    char *buf = xmalloc(cap);
    while (*p) {
        if (*p == ',') {
            if (p[1] == ',') {
                buf[n++] = ',';
                p += 2;
                continue;
            }
            break;
        }
        if (stop_at_eq && *p == '=')
            break;
        buf[n++] = *p++;
    }
    buf[n] = '\0';
    *out = buf;
    return p;
}

int qimg_opts_parse(struct qimg_opts *o, const char *str, const char *implied_key,
                    struct qimg_error *err)
{
    const char *p = str;
    bool first = true;
    while (*p) {
        char *key = NULL, *value = NULL;
        p = parse_token(p, true, &key);
        if (*p == '=') {
            p = parse_token(p + 1, false, &value);
        } else if (first && implied_key && strcmp(key, "help") != 0 && strcmp(key, "?") != 0) {
            value = key;
            key = xstrdup(implied_key);
        } else if (strcmp(key, "help") == 0 || strcmp(key, "?") == 0) {
            value = NULL;
        } else {
            value = xstrdup("on");
        }
        if (!*key) {
            free(key);
            free(value);
            return qimg_error_set(err, -EINVAL, "Invalid parameter ''");
        }
        qimg_opts_set(o, key, value);
        free(key);
        free(value);
        first = false;
        if (*p == ',')
            p++;
    }
    return 0;
}

int qimg_opts_take_bool(struct qimg_opts *o, const char *key, bool *out, struct qimg_error *err)
{
    const char *v = qimg_opts_take(o, key);
    if (!v)
        return 0;
    if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "y")) {
        *out = true;
    } else if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "n")) {
        *out = false;
    } else {
        return qimg_error_set(err, -EINVAL, "Parameter '%s' expects 'on' or 'off'", key);
    }
    return 1;
}

int qimg_opts_take_size(struct qimg_opts *o, const char *key, uint64_t *out,
                        struct qimg_error *err)
{
    const char *v = qimg_opts_take(o, key);
    if (!v)
        return 0;
    if (qimg_parse_size(v, 1, out) < 0)
        return qimg_error_set(err, -EINVAL,
                              "Parameter '%s' expects a non-negative number below 2^64\n"
                              "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, "
                              "tera-, peta-\nand exabytes, respectively.",
                              key);
    return 1;
}

int qimg_opts_take_uint(struct qimg_opts *o, const char *key, uint64_t *out,
                        struct qimg_error *err)
{
    const char *v = qimg_opts_take(o, key);
    if (!v)
        return 0;
    if (qimg_parse_uint(v, out) < 0)
        return qimg_error_set(err, -EINVAL, "Parameter '%s' expects a number", key);
    return 1;
}

void qimg_opts_extract_prefix(struct qimg_opts *src, const char *prefix, struct qimg_opts *dst)
{
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < src->n; i++) {
        if (strncmp(src->v[i].key, prefix, plen) == 0 && src->v[i].key[plen]) {
            qimg_opts_set_typed(dst, src->v[i].key + plen, src->v[i].value, src->v[i].type);
            src->v[i].used = true;
        }
    }
}

const char *qimg_opts_first_unused(const struct qimg_opts *o)
{
    for (size_t i = 0; o && i < o->n; i++)
        if (!o->v[i].used)
            return o->v[i].key;
    return NULL;
}

const struct qimg_opt_desc *qimg_opt_desc_find(const struct qimg_opt_desc *desc,
                                               const char *name)
{
    for (; desc && desc->name; desc++)
        if (strcmp(desc->name, name) == 0)
            return desc;
    return NULL;
}

int qimg_opts_validate(const struct qimg_opts *o, const struct qimg_opt_desc *desc,
                       struct qimg_error *err)
{
    for (size_t i = 0; o && i < o->n; i++) {
        if (!qimg_opt_desc_find(desc, o->v[i].key))
            return qimg_error_set(err, -EINVAL, "Invalid parameter '%s'", o->v[i].key);
    }
    return 0;
}

bool qimg_opts_wants_help(const struct qimg_opts *o)
{
    return qimg_opts_has(o, "help") || qimg_opts_has(o, "?");
}

static const char *opt_type_name(enum qimg_opt_type t)
{
    switch (t) {
    case QIMG_OPT_BOOL: return "bool (on/off)";
    case QIMG_OPT_NUMBER: return "num";
    case QIMG_OPT_SIZE: return "size";
    default: return "str";
    }
}

static int desc_cmp(const void *a, const void *b)
{
    const struct qimg_opt_desc *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

void qimg_opts_print_help(FILE *f, const char *fmt_name, const struct qimg_opt_desc *desc)
{
    size_t n = 0;
    while (desc && desc[n].name)
        n++;
    const struct qimg_opt_desc **sorted = xcalloc(n ? n : 1, sizeof(*sorted));
    for (size_t i = 0; i < n; i++)
        sorted[i] = &desc[i];
    qsort(sorted, n, sizeof(*sorted), desc_cmp);
    if (fmt_name)
        fprintf(f, "Supported %s options:\n", fmt_name);
    else
        fprintf(f, "Supported options:\n");
    for (size_t i = 0; i < n; i++) {
        char head[128];
        snprintf(head, sizeof(head), "%s=<%s>", sorted[i]->name, opt_type_name(sorted[i]->type));
        fprintf(f, "  %-22s - %s\n", head, sorted[i]->help);
    }
    free(sorted);
}
