/* SPDX-License-Identifier: MIT */
/* json:{...} filenames flattened into dotted option keys, as QEMU's block layer does. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qimg/json.h"
#include "qimg/opts.h"
#include "util/json-parse.h"
#include "util/mem.h"

static void flatten(struct qimg_opts *o, const char *prefix, const struct qimg_json *v)
{
    char buf[64];
    switch (v->type) {
    case QIMG_JSON_OBJECT:
    case QIMG_JSON_ARRAY:
        for (size_t i = 0; i < v->n; i++) {
            char *name = v->type == QIMG_JSON_OBJECT
                             ? (prefix ? xasprintf("%s.%s", prefix, v->keys[i]) : xstrdup(v->keys[i]))
                             : xasprintf("%s.%zu", prefix ? prefix : "", i);
            flatten(o, name, v->items[i]);
            free(name);
        }
        return;
    case QIMG_JSON_STRING:
        qimg_opts_set(o, prefix, v->s);
        return;
    case QIMG_JSON_INT:
        snprintf(buf, sizeof(buf), "%" PRId64, v->i);
        qimg_opts_set_typed(o, prefix, buf, QIMG_OPTV_NUMBER);
        return;
    case QIMG_JSON_UINT:
        snprintf(buf, sizeof(buf), "%" PRIu64, v->u);
        qimg_opts_set_typed(o, prefix, buf, QIMG_OPTV_NUMBER);
        return;
    case QIMG_JSON_BOOL:
        qimg_opts_set_typed(o, prefix, v->b ? "on" : "off", QIMG_OPTV_BOOL);
        return;
    case QIMG_JSON_NULL: /* "backing": null; an empty string to readers that ignore the type */
        qimg_opts_set_typed(o, prefix, "", QIMG_OPTV_NULL);
        return;
    }
}

int qimg_opts_parse_json(struct qimg_opts *o, const char *json, struct qimg_error *err)
{
    struct qimg_json *root;
    char *msg;
    if (qimg_json_parse(json, &root, &msg) < 0) {
        qimg_error_set(err, -EINVAL, "Could not parse the JSON options: %s", msg);
        free(msg);
        return -EINVAL;
    }
    if (!root)
        return qimg_error_set(err, -EINVAL, "Could not parse the JSON options: "
                                            "Expecting a JSON value");
    if (root->type != QIMG_JSON_OBJECT) {
        qimg_json_free(root);
        return qimg_error_set(err, -EINVAL, "Invalid JSON object given");
    }
    flatten(o, NULL, root);
    qimg_json_free(root);
    return 0;
}
