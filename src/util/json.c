/* SPDX-License-Identifier: MIT */
/*
 * JSON value tree and qemu-img's pretty printer. Member order is QEMU's
 * observable order: its QDict iterates hash buckets (512 of them) in order
 * and, inside a bucket, the newest member first; the hash is the tdb hash
 * QDict documents. Objects here record insertion order and the printer
 * derives the bucket order from it.
 */
#include <stdlib.h>
#include <string.h>

#include "qimg/json.h"
#include "util/mem.h"

#define QDICT_BUCKETS 512

static struct qimg_json *json_new(enum qimg_json_type t)
{
    struct qimg_json *j = xcalloc(1, sizeof(*j));
    j->type = t;
    return j;
}

struct qimg_json *qimg_json_object(void) { return json_new(QIMG_JSON_OBJECT); }
struct qimg_json *qimg_json_array(void) { return json_new(QIMG_JSON_ARRAY); }
struct qimg_json *qimg_json_null(void) { return json_new(QIMG_JSON_NULL); }

struct qimg_json *qimg_json_string(const char *s)
{
    struct qimg_json *j = json_new(QIMG_JSON_STRING);
    j->s = xstrdup(s ? s : "");
    return j;
}

struct qimg_json *qimg_json_int(int64_t v)
{
    struct qimg_json *j = json_new(QIMG_JSON_INT);
    j->i = v;
    return j;
}

struct qimg_json *qimg_json_uint(uint64_t v)
{
    struct qimg_json *j = json_new(QIMG_JSON_UINT);
    j->u = v;
    return j;
}

struct qimg_json *qimg_json_bool(bool v)
{
    struct qimg_json *j = json_new(QIMG_JSON_BOOL);
    j->b = v;
    return j;
}

void qimg_json_free(struct qimg_json *j)
{
    if (!j)
        return;
    if (j->type == QIMG_JSON_STRING)
        free(j->s);
    for (size_t i = 0; i < j->n; i++) {
        qimg_json_free(j->items[i]);
        if (j->keys)
            free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j);
}

static void json_push(struct qimg_json *c, const char *key, struct qimg_json *val)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->items = xrealloc(c->items, c->cap * sizeof(*c->items));
        if (c->type == QIMG_JSON_OBJECT)
            c->keys = xrealloc(c->keys, c->cap * sizeof(*c->keys));
    }
    c->items[c->n] = val;
    if (c->type == QIMG_JSON_OBJECT)
        c->keys[c->n] = xstrdup(key);
    c->n++;
}

struct qimg_json *qimg_json_add(struct qimg_json *obj, const char *key, struct qimg_json *val)
{
    json_push(obj, key, val);
    return val;
}

void qimg_json_add_str(struct qimg_json *o, const char *k, const char *s)
{
    qimg_json_add(o, k, qimg_json_string(s));
}
void qimg_json_add_int(struct qimg_json *o, const char *k, int64_t v)
{
    qimg_json_add(o, k, qimg_json_int(v));
}
void qimg_json_add_uint(struct qimg_json *o, const char *k, uint64_t v)
{
    qimg_json_add(o, k, qimg_json_uint(v));
}
void qimg_json_add_bool(struct qimg_json *o, const char *k, bool v)
{
    qimg_json_add(o, k, qimg_json_bool(v));
}

struct qimg_json *qimg_json_append(struct qimg_json *arr, struct qimg_json *val)
{
    json_push(arr, NULL, val);
    return val;
}

struct qimg_json *qimg_json_get(const struct qimg_json *obj, const char *key)
{
    if (!obj || obj->type != QIMG_JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0)
            return obj->items[i];
    return NULL;
}

/* QDict's bucket for a key (tdb hash, as QEMU's qdict documents it). */
static unsigned qdict_bucket(const char *name)
{
    uint32_t value = 0x238F13AFu * (uint32_t)strlen(name);
    for (uint32_t i = 0; name[i]; i++)
        value += (uint32_t)(unsigned char)name[i] << (i * 5 % 24);
    return (1103515243u * value + 12345u) % QDICT_BUCKETS;
}

struct order_key {
    unsigned bucket;
    size_t index;
};

static int order_cmp(const void *a, const void *b)
{
    const struct order_key *x = a, *y = b;
    if (x->bucket != y->bucket)
        return x->bucket < y->bucket ? -1 : 1;
    return x->index > y->index ? -1 : (x->index < y->index ? 1 : 0); /* newest first */
}

size_t *qimg_json_output_order(const struct qimg_json *obj)
{
    struct order_key *k = xcalloc(obj->n, sizeof(*k));
    for (size_t i = 0; i < obj->n; i++) {
        k[i].bucket = qdict_bucket(obj->keys[i]);
        k[i].index = i;
    }
    qsort(k, obj->n, sizeof(*k), order_cmp);
    size_t *idx = xcalloc(obj->n, sizeof(*idx));
    for (size_t i = 0; i < obj->n; i++)
        idx[i] = k[i].index;
    free(k);
    return idx;
}

/* qemu's escaping: control characters and non-ASCII as \uXXXX (upper-case hex). */
void qimg_json_print_string(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        unsigned cp = *p;
        int extra = 0;
        if (cp >= 0x80) {
            if ((cp & 0xe0) == 0xc0) { cp &= 0x1f; extra = 1; }
            else if ((cp & 0xf0) == 0xe0) { cp &= 0x0f; extra = 2; }
            else if ((cp & 0xf8) == 0xf0) { cp &= 0x07; extra = 3; }
            else { cp = 0xfffd; }
            for (int i = 0; i < extra; i++) {
                if ((p[1] & 0xc0) != 0x80) { cp = 0xfffd; break; }
                p++;
                cp = (cp << 6) | (*p & 0x3f);
            }
        }
        p++;
        switch (cp) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (cp >= 0x10000) {
                cp -= 0x10000;
                fprintf(f, "\\u%04X\\u%04X", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            } else if (cp < 0x20 || cp >= 0x7f) {
                fprintf(f, "\\u%04X", cp);
            } else {
                fputc((int)cp, f);
            }
        }
    }
    fputc('"', f);
}

static void indent(FILE *f, int level)
{
    fprintf(f, "%*s", level * 4, "");
}

void qimg_json_print(FILE *f, const struct qimg_json *j, int level)
{
    switch (j->type) {
    case QIMG_JSON_NULL: fputs("null", f); break;
    case QIMG_JSON_BOOL: fputs(j->b ? "true" : "false", f); break;
    case QIMG_JSON_INT: fprintf(f, "%lld", (long long)j->i); break;
    case QIMG_JSON_UINT: fprintf(f, "%llu", (unsigned long long)j->u); break;
    case QIMG_JSON_STRING: qimg_json_print_string(f, j->s); break;
    case QIMG_JSON_ARRAY:
        fputs("[\n", f);
        for (size_t i = 0; i < j->n; i++) {
            indent(f, level + 1);
            qimg_json_print(f, j->items[i], level + 1);
            fputs(i + 1 < j->n ? ",\n" : "\n", f);
        }
        indent(f, level);
        fputc(']', f);
        break;
    case QIMG_JSON_OBJECT: {
        size_t *order = qimg_json_output_order(j);
        fputs("{\n", f);
        for (size_t k = 0; k < j->n; k++) {
            size_t i = order[k];
            indent(f, level + 1);
            qimg_json_print_string(f, j->keys[i]);
            fputs(": ", f);
            qimg_json_print(f, j->items[i], level + 1);
            fputs(k + 1 < j->n ? ",\n" : "\n", f);
        }
        indent(f, level);
        fputc('}', f);
        free(order);
        break;
    }
    }
}

static void print_compact(FILE *f, const struct qimg_json *j)
{
    if (j->type == QIMG_JSON_ARRAY) {
        fputc('[', f);
        for (size_t i = 0; i < j->n; i++) {
            print_compact(f, j->items[i]);
            if (i + 1 < j->n)
                fputs(", ", f);
        }
        fputc(']', f);
    } else if (j->type == QIMG_JSON_OBJECT) {
        size_t *order = qimg_json_output_order(j);
        fputc('{', f);
        for (size_t k = 0; k < j->n; k++) {
            qimg_json_print_string(f, j->keys[order[k]]);
            fputs(": ", f);
            print_compact(f, j->items[order[k]]);
            if (k + 1 < j->n)
                fputs(", ", f);
        }
        fputc('}', f);
        free(order);
    } else {
        qimg_json_print(f, j, 0); /* scalars print the same either way */
    }
}

char *qimg_json_compact(const struct qimg_json *j)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        abort(); /* out of memory, as xmalloc treats it */
    print_compact(f, j);
    fclose(f);
    return buf;
}
