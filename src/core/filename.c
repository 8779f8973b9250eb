/* SPDX-License-Identifier: MIT */
/*
 * Node names as qemu-img shows them ("image:" and "filename"). A node keeps
 * a plain name (its file's, or a driver's own form such as
 * "blkdebug:CONFIG:IMAGE") while nothing but that name describes it. Once
 * options that change what it shows are set (a driver's strong_opts, such as
 * raw's offset and size), or its child can only be described in JSON, QEMU
 * names it "json:{...}": the driver, those options with the types they were
 * given in, and the child's description, members in QDict order.
 */
#include <stdlib.h>
#include <string.h>

#include "core/node-internal.h"
#include "qimg/json.h"
#include "util/json-parse.h"
#include "util/mem.h"

#define QEMU_FILENAME_MAX 4095 /* BlockDriverState.filename holds PATH_MAX bytes */

static bool is_json_name(const char *name)
{
    return name && strncmp(name, "json:", 5) == 0;
}

static struct qimg_json *typed_value(const char *value, enum qimg_opt_value_type type)
{
    char *end;
    long long v = strtoll(value, &end, 10);
    if (type == QIMG_OPTV_NUMBER && *value && !*end)
        return qimg_json_int(v);
    if (type == QIMG_OPTV_BOOL)
        return qimg_json_bool(!strcmp(value, "on"));
    return qimg_json_string(value);
}

/* Adds n's strong options (a name, or its dotted members) to dict; how many were set. */
static size_t add_strong(const struct qimg_node *n, struct qimg_json *dict)
{
    size_t count = 0;
    const struct qimg_opts *o = n->options;
    for (const char *const *s = n->drv->strong_opts; s && *s && o; s++) {
        size_t len = strlen(*s);
        for (size_t i = 0; i < o->n; i++) {
            const char *k = o->v[i].key;
            if (!o->v[i].value || strncmp(k, *s, len) || (k[len] && k[len] != '.'))
                continue;
            qimg_json_add(dict, k, typed_value(o->v[i].value, o->v[i].type));
            count++;
        }
    }
    return count;
}

static struct qimg_json *describe(const struct qimg_node *n);

/* {"driver": ..., strong options..., child: {...}}; *strong counts the options. */
static struct qimg_json *full_dict(const struct qimg_node *n, size_t *strong)
{
    struct qimg_json *d = qimg_json_object();
    qimg_json_add_str(d, "driver", n->drv->name);
    *strong = add_strong(n, d);
    if (n->drv->name_children)
        n->drv->name_children((struct qimg_node *)n, d);
    if (n->file)
        qimg_json_add(d, n->drv->child_name ? n->drv->child_name : "file", describe(n->file));
    return d;
}

static struct qimg_json *describe(const struct qimg_node *n)
{
    if (is_json_name(n->filename)) {
        struct qimg_json *j = NULL;
        char *msg = NULL;
        if (qimg_json_parse(n->filename + 5, &j, &msg) == 0 && j)
            return j;
        free(msg);
    }
    if (n->drv->is_protocol && !n->file) {
        struct qimg_json *d = qimg_json_object();
        qimg_json_add_str(d, "driver", n->drv->name);
        if (n->filename)
            qimg_json_add_str(d, "filename", n->filename);
        return d;
    }
    size_t strong;
    return full_dict(n, &strong);
}

struct qimg_json *qimg_node_describe(const struct qimg_node *n)
{
    return describe(n);
}

void qimg_node_refresh_filename(struct qimg_node *n)
{
    size_t strong = 0;
    struct qimg_json *d = full_dict(n, &strong);
    /*
     * Only a protocol child's name can stand for its parent (raw over qcow2 is
     * JSON), unless the driver names itself (blkdebug:CONFIG:IMAGE).
     */
    bool plain_child = !n->file || (!is_json_name(n->file->filename) &&
                                    (n->file->drv->is_protocol || n->drv->plain_filename));
    if (strong || !plain_child) {
        char *body = qimg_json_compact(d);
        free(n->filename);
        n->filename = xasprintf("json:%s", body);
        free(body);
        /* QEMU keeps names in 4 KiB: a longer one ends in "..." at 4095 characters. */
        if (strlen(n->filename) > QEMU_FILENAME_MAX)
            strcpy(n->filename + QEMU_FILENAME_MAX - 3, "...");
    } else if (n->drv->plain_filename) {
        char *plain = n->drv->plain_filename(n);
        if (plain) {
            free(n->filename);
            n->filename = plain;
        }
    } else if (n->file && n->file->filename && !n->file->file && n->file->drv->plain_filename) {
        /* The protocol names itself (nbd:host:port -> nbd://host:port): QEMU shows that. */
        free(n->filename);
        n->filename = xstrdup(n->file->filename);
    } else if ((!n->filename || !n->filename[0]) && n->file && n->file->filename) {
        free(n->filename); /* opened by options alone: named after its file */
        n->filename = xstrdup(n->file->filename);
    }
    qimg_json_free(d);
}
