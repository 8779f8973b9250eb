/* SPDX-License-Identifier: MIT */
/*
 * The human form of structured data that qemu-img info and qemu-io info print
 * under "Format specific information:": one "key: value" line per member in
 * QEMU's member order, '-' in keys shown as ' ', nested objects and lists
 * indented by four spaces per level, list items as "[i]:".
 */
#include <inttypes.h>
#include <stdlib.h>

#include "qimg/json.h"

static void print_key(FILE *f, const char *key, int indent)
{
    fprintf(f, "%*s", indent * 4, "");
    for (const char *p = key; *p; p++)
        fputc(*p == '-' ? ' ' : *p, f);
}

static void print_scalar(FILE *f, const struct qimg_json *v)
{
    switch (v->type) {
    case QIMG_JSON_BOOL: fputs(v->b ? "true" : "false", f); break;
    case QIMG_JSON_INT: fprintf(f, "%" PRId64, v->i); break;
    case QIMG_JSON_UINT: fprintf(f, "%" PRIu64, v->u); break;
    case QIMG_JSON_STRING: fputs(v->s, f); break;
    default: break;
    }
}

static bool is_container(const struct qimg_json *v)
{
    return v->type == QIMG_JSON_OBJECT || v->type == QIMG_JSON_ARRAY;
}

void qimg_json_print_human(FILE *f, const struct qimg_json *v, int indent)
{
    if (v->type == QIMG_JSON_OBJECT) {
        size_t *order = qimg_json_output_order(v);
        for (size_t k = 0; k < v->n; k++) {
            const struct qimg_json *item = v->items[order[k]];
            print_key(f, v->keys[order[k]], indent);
            if (is_container(item)) {
                fputs(":\n", f);
                qimg_json_print_human(f, item, indent + 1);
            } else {
                fputs(": ", f);
                print_scalar(f, item);
                fputc('\n', f);
            }
        }
        free(order);
    } else if (v->type == QIMG_JSON_ARRAY) {
        for (size_t i = 0; i < v->n; i++) {
            fprintf(f, "%*s[%zu]:", indent * 4, "", i);
            if (is_container(v->items[i])) {
                fputc('\n', f);
                qimg_json_print_human(f, v->items[i], indent + 1);
            } else {
                fputc(' ', f);
                print_scalar(f, v->items[i]);
                fputc('\n', f);
            }
        }
    }
}
