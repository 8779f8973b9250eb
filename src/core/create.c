/* SPDX-License-Identifier: MIT */
/*
 * Image creation: the format's options merged with its protocol's, validated
 * the way qemu-img validates them, the "Formatting ..." line, and the create.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/builtin.h"
#include "core/create.h"
#include "core/node-internal.h"
#include "qimg/driver.h"
#include "qimg/units.h"
#include "util/mem.h"

static size_t desc_count(const struct qimg_opt_desc *d)
{
    size_t n = 0;
    while (d && d[n].name)
        n++;
    return n;
}

const struct qimg_driver *qimg_create_protocol_driver(const char *filename)
{
    const struct qimg_driver *p = filename ? qimg_driver_find_protocol(filename) : NULL;
    if (!p && filename && !qimg_protocol_prefix_len(filename))
        p = qimg_file_probe_protocol(filename); /* host_device for a device */
    return p ? p : qimg_driver_find("file");
}

struct qimg_opt_desc *qimg_create_opts_merged(const struct qimg_driver *drv,
                                              const struct qimg_driver *proto)
{
    size_t nf = desc_count(drv->create_opts);
    size_t np = (proto && proto != drv) ? desc_count(proto->create_opts) : 0;
    struct qimg_opt_desc *m = xcalloc(nf + np + 1, sizeof(*m));
    size_t n = 0;
    for (size_t i = 0; i < nf; i++)
        m[n++] = drv->create_opts[i];
    for (size_t i = 0; i < np; i++)
        if (!qimg_opt_desc_find(drv->create_opts, proto->create_opts[i].name))
            m[n++] = proto->create_opts[i];
    return m;
}

/* qemu 9.1's QemuOpts wording for a size or number it cannot take. */
static int option_value_error(struct qimg_error *err, enum qimg_opt_type type, int ret,
                              const char *key, const char *value)
{
    if (type == QIMG_OPT_NUMBER)
        return ret == -ERANGE ? qimg_error_set(err, -EINVAL,
                                               "Value '%s' is too large for parameter '%s'",
                                               value, key)
                              : qimg_error_set(err, -EINVAL, "Parameter '%s' expects a number",
                                               key);
    if (ret == -ERANGE)
        return qimg_error_set(err, -EINVAL, "Value '%s' is out of range for parameter '%s'",
                              value, key);
    return qimg_error_set(err, -EINVAL,
                          "Parameter '%s' expects a non-negative number below 2^64\n"
                          "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, "
                          "peta-\nand exabytes, respectively.",
                          key);
}

int qimg_create_validate(const struct qimg_opt_desc *desc, struct qimg_opts *opts,
                         struct qimg_error *err)
{
    for (size_t i = 0; i < opts->n; i++) {
        struct qimg_opt *o = &opts->v[i];
        const struct qimg_opt_desc *d = qimg_opt_desc_find(desc, o->key);
        if (!d)
            return qimg_error_set(err, -EINVAL, "Invalid parameter '%s'", o->key);
        if (!o->value)
            continue;
        uint64_t v;
        char buf[32];
        switch (d->type) {
        case QIMG_OPT_SIZE:
        case QIMG_OPT_NUMBER: {
            /* qemu stores the parsed value: "0x10" prints as 16, "-1" as -1 (signed) */
            int ret = d->type == QIMG_OPT_SIZE ? qimg_parse_size(o->value, 1, &v)
                                               : qimg_parse_number(o->value, &v);
            if (ret < 0)
                return option_value_error(err, d->type, ret, o->key, o->value);
            snprintf(buf, sizeof(buf), "%" PRIu64, v);
            free(o->value);
            o->value = xstrdup(buf);
            break;
        }
        case QIMG_OPT_BOOL:
            if (strcmp(o->value, "on") && strcmp(o->value, "off") && strcmp(o->value, "true") &&
                strcmp(o->value, "false") && strcmp(o->value, "yes") && strcmp(o->value, "no"))
                return qimg_error_set(err, -EINVAL, "Parameter '%s' expects 'on' or 'off'",
                                      o->key);
            break;
        default:
            break;
        }
    }
    return 0;
}

char *qimg_create_describe(const char *filename, const struct qimg_driver *drv,
                           const struct qimg_opts *opts)
{
    struct qimg_opt_desc *desc =
        qimg_create_opts_merged(drv, qimg_create_protocol_driver(filename));
    size_t cap = 256, len = 0;
    char *line = xmalloc(cap);
    len = (size_t)snprintf(line, cap, "Formatting '%s', fmt=%s", filename, drv->name);
    if (len >= cap) {
        cap = len + 1;
        line = xrealloc(line, cap);
        snprintf(line, cap, "Formatting '%s', fmt=%s", filename, drv->name);
    }
    for (size_t i = 0; desc[i].name; i++) {
        const char *v = qimg_opts_peek(opts, desc[i].name);
        if (!v)
            v = desc[i].def_value;
        if (!v)
            continue;
        char num[32];
        if (desc[i].type == QIMG_OPT_SIZE || desc[i].type == QIMG_OPT_NUMBER) {
            /* qemu prints sizes and numbers signed: size=9223372036854775808 shows as
             * -9223372036854775808, refcount_bits=-1 as -1 */
            uint64_t u;
            if (qimg_parse_number(v, &u) == 0) {
                snprintf(num, sizeof(num), "%" PRId64, (int64_t)u);
                v = num;
            }
        }
        size_t need = strlen(desc[i].name) + strlen(v) + 2;
        if (len + need + 1 > cap) {
            cap = (len + need + 1) * 2;
            line = xrealloc(line, cap);
        }
        len += (size_t)snprintf(line + len, cap - len, " %s=%s", desc[i].name, v);
    }
    free(desc);
    return line;
}

/*
 * qemu's qcow2 creates the image file (and the data file) before it checks the options and
 * deletes both when anything fails, even files that existed before; raw's create is the
 * protocol's, which leaves what it made, and so do the other formats' (vdi ...). Files that could not have been created (missing,
 * read-only) stay as they are.
 */
static void discard_failed_create(const struct qimg_driver *drv, const char *filename,
                                  const char *data_file)
{
    /* qcow2's create only: vdi and the others leave what the protocol made, as raw does. */
    if (drv->is_protocol || strcmp(drv->name, "qcow2"))
        return;
    const char *files[] = {filename, data_file};
    for (size_t i = 0; i < 2; i++) {
        struct stat st;
        if (files[i] && !qimg_protocol_prefix_len(files[i]) &&
            stat(files[i], &st) == 0 && S_ISREG(st.st_mode) && access(files[i], W_OK) == 0)
            unlink(files[i]);
    }
}

int qimg_create(const char *filename, const char *format, struct qimg_opts *opts,
                struct qimg_error *err)
{
    const struct qimg_driver *drv = qimg_driver_find(format);
    if (!drv)
        return qimg_error_set(err, -EINVAL, "Unknown file format '%s'", format);
    if (!drv->create)
        return qimg_error_set(err, -ENOTSUP, "Format driver '%s' does not support image creation",
                              drv->name);
    struct qimg_opts *local = opts ? opts : qimg_opts_new();
    const char *df = qimg_opts_peek(local, "data_file");
    char *data_file = df ? xstrdup(df) : NULL;
    int ret = drv->create(filename, local, err);
    if (ret < 0)
        discard_failed_create(drv, filename, data_file);
    free(data_file);
    if (!opts)
        qimg_opts_free(local);
    return ret;
}

int qimg_create_protocol(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    const struct qimg_driver *proto = qimg_create_protocol_driver(filename);
    size_t plen = qimg_protocol_prefix_len(filename);
    if (plen && !qimg_driver_find_protocol(filename))
        return qimg_error_set(err, -EINVAL, "Unknown protocol '%.*s'", (int)plen, filename);
    if (!proto || !proto->create)
        return qimg_error_set(err, -ENOTSUP, "Protocol driver '%s' does not support image creation",
                              proto ? proto->name : "?");
    char *path = qimg_parse_file_prefix(proto, filename);
    int ret = proto->create(path ? path : filename, opts, err);
    free(path);
    return ret;
}
