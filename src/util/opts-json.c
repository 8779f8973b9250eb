/* SPDX-License-Identifier: MIT */
/* json:{...} filenames flattened into dotted option keys, as QEMU's block layer does. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "qimg/opts.h"
#include "util/mem.h"

static int flatten(struct qimg_opts *o, const char *prefix, json_t *v, struct qimg_error *err)
{
    char buf[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *child;
        json_object_foreach(v, key, child) {
            char *name = prefix ? xasprintf("%s.%s", prefix, key) : xstrdup(key);
            int ret = flatten(o, name, child, err);
            free(name);
            if (ret < 0)
                return ret;
        }
        return 0;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child) {
            char *name = xasprintf("%s.%zu", prefix ? prefix : "", i);
            int ret = flatten(o, name, child, err);
            free(name);
            if (ret < 0)
                return ret;
        }
        return 0;
    }
    case JSON_STRING:
        qimg_opts_set(o, prefix, json_string_value(v));
        return 0;
    case JSON_INTEGER:
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        qimg_opts_set_typed(o, prefix, buf, QIMG_OPTV_NUMBER);
        return 0;
    case JSON_REAL:
        snprintf(buf, sizeof(buf), "%g", json_real_value(v));
        qimg_opts_set_typed(o, prefix, buf, QIMG_OPTV_NUMBER);
        return 0;
    case JSON_TRUE:
        qimg_opts_set_typed(o, prefix, "on", QIMG_OPTV_BOOL);
        return 0;
    case JSON_FALSE:
        qimg_opts_set_typed(o, prefix, "off", QIMG_OPTV_BOOL);
        return 0;
    case JSON_NULL: /* "backing": null; an empty string to readers that ignore the type */
        qimg_opts_set_typed(o, prefix, "", QIMG_OPTV_NULL);
        return 0;
    default:
        return qimg_error_set(err, -EINVAL, "Invalid JSON value for option '%s'",
                              prefix ? prefix : "");
    }
}

int qimg_opts_parse_json(struct qimg_opts *o, const char *json, struct qimg_error *err)
{
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        /* QEMU's parser words an input that stops mid-value this way. */
        if ((size_t)jerr.position >= strlen(json))
            return qimg_error_set(err, -EINVAL,
                                  "Could not parse the JSON options: JSON parse error, premature EOI");
        return qimg_error_set(err, -EINVAL, "Could not parse the JSON options: %s", jerr.text);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return qimg_error_set(err, -EINVAL, "Invalid JSON object given");
    }
    int ret = flatten(o, NULL, root, err);
    json_decref(root);
    return ret;
}
