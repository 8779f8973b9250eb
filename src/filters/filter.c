/* SPDX-License-Identifier: MIT */
/* Passthrough callbacks shared by the block filters (filter.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "filters/filter.h"
#include "qimg/json.h"
#include "util/mem.h"

int64_t filter_get_length(struct qimg_node *n)
{
    return qimg_node_length(n->file);
}

int filter_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    return qimg_node_pread(n->file, off, len, buf, flags);
}

int filter_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                  unsigned flags)
{
    return qimg_node_pwrite(n->file, off, len, buf, flags);
}

int filter_pwrite_zeroes(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    return qimg_node_pwrite_zeroes(n->file, off, len, flags);
}

int filter_pwrite_compressed(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf)
{
    return qimg_node_pwrite_compressed(n->file, off, len, buf);
}

int filter_pdiscard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    return qimg_node_pdiscard(n->file, off, len);
}

int filter_flush(struct qimg_node *n)
{
    return qimg_node_flush(n->file);
}

int filter_truncate(struct qimg_node *n, uint64_t size, bool exact, enum qimg_prealloc prealloc,
                    struct qimg_error *err)
{
    return qimg_node_truncate(n->file, size, exact, prealloc, err);
}

int filter_block_status(struct qimg_node *n, uint64_t off, uint64_t len,
                        struct qimg_block_status *st)
{
    return qimg_node_block_status(n->file, off, len, st);
}

bool filter_has_zero_init(struct qimg_node *n)
{
    return qimg_node_has_zero_init(n->file);
}

int filter_get_info(struct qimg_node *n, struct qimg_driver_info *info, struct qimg_error *err)
{
    struct qimg_node *src = n->file;
    while (src && !src->drv->get_info && src->drv->is_filter)
        src = src->file;
    if (!src || !src->drv->get_info) {
        const char *name = src ? src->drv->name : "";
        return !strcmp(name, "file") || !strcmp(name, "host_device") ? 0 : -ENOTSUP;
    }
    int ret = src->drv->get_info(src, info, err);
    qimg_json_free(info->format_specific);
    qimg_json_free(info->snapshots);
    info->format_specific = NULL;
    info->snapshots = NULL;
    return ret;
}

int filter_open_child(struct qimg_node **out, const char *name, const char *filename,
                      struct qimg_opts *child_opts, bool probe_format, unsigned flags,
                      struct qimg_error *err)
{
    if (!filename && child_opts->n == 0)
        return qimg_error_set(err, -EINVAL, "A block device must be specified for \"%s\"", name);
    const char *drvname = qimg_opts_peek(child_opts, "driver");
    const struct qimg_driver *drv = drvname ? qimg_driver_find(drvname) : NULL;
    if ((drv && !drv->is_protocol) || (!drvname && probe_format)) {
        if (!drvname && !filename)
            filename = qimg_opts_take(child_opts, "filename");
        return qimg_open(out, filename, NULL, child_opts, flags, err);
    }
    int ret = qimg_open_protocol(out, filename, child_opts, flags, err);
    const char *unused = ret == 0 ? qimg_opts_first_unused(child_opts) : NULL;
    if (unused) {
        ret = qimg_error_set(err, -EINVAL, "Block protocol '%s' doesn't support the option '%s'",
                             (*out)->drv->name, unused);
        qimg_node_unref(*out);
        *out = NULL;
    }
    return ret;
}

static struct qimg_json *typed_value(const struct qimg_opt *o)
{
    char *end;
    long long v = strtoll(o->value, &end, 10);
    if (o->type == QIMG_OPTV_NUMBER && *o->value && !*end)
        return qimg_json_int(v);
    if (o->type == QIMG_OPTV_BOOL)
        return qimg_json_bool(!strcmp(o->value, "on"));
    return qimg_json_string(o->value);
}

struct qimg_json *filter_name_dict(const struct qimg_node *n, const struct qimg_opt_desc *desc)
{
    struct qimg_json *d = qimg_json_object();
    qimg_json_add_str(d, "driver", n->drv->name);
    for (size_t i = 0; n->options && i < n->options->n; i++) {
        const struct qimg_opt *o = &n->options->v[i];
        if (o->value && qimg_opt_desc_find(desc, o->key))
            qimg_json_add(d, o->key, typed_value(o));
    }
    return d;
}

char *filter_json_name(struct qimg_json *dict)
{
    char *body = qimg_json_compact(dict);
    qimg_json_free(dict);
    char *name = xasprintf("json:%s", body);
    free(body);
    return name;
}
