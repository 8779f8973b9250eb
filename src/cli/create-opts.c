/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/create-opts.h"
#include "core/create.h"
#include "core/node-internal.h"
#include "qimg/driver.h"

/* qemu-img refuses an empty list, a leading comma and an unescaped trailing comma. */
static bool option_list_is_valid(const char *s)
{
    size_t len = strlen(s), commas = 0;
    if (len == 0 || s[0] == ',')
        return false;
    while (commas < len && s[len - 1 - commas] == ',')
        commas++;
    return commas % 2 == 0;
}

int cli_option_list_add(struct cli_option_list *l, const char *arg)
{
    if (!option_list_is_valid(arg)) {
        cli_error("Invalid option list: %s", arg);
        return -1;
    }
    if (!l->joined) {
        l->joined = strdup(arg);
    } else {
        char *j;
        if (asprintf(&j, "%s,%s", l->joined, arg) < 0)
            return -1;
        free(l->joined);
        l->joined = j;
    }
    return l->joined ? 0 : -1;
}

bool cli_option_list_wants_help(const struct cli_option_list *l)
{
    if (!l->joined)
        return false;
    struct qimg_opts *o = qimg_opts_new();
    bool help = qimg_opts_parse(o, l->joined, NULL, NULL) == 0 && qimg_opts_wants_help(o);
    qimg_opts_free(o);
    return help;
}

int cli_option_list_parse(const struct cli_option_list *l, struct qimg_opts *opts,
                          struct qimg_error *err)
{
    return l->joined ? qimg_opts_parse(opts, l->joined, NULL, err) : 0;
}

void cli_option_list_free(struct cli_option_list *l)
{
    free(l->joined);
    l->joined = NULL;
}

int cli_print_create_help(const char *fmt, const char *filename)
{
    const struct qimg_driver *drv = qimg_driver_find(fmt);
    if (!drv) {
        cli_error("Unknown file format '%s'", fmt);
        return -1;
    }
    if (!drv->create_opts) {
        cli_error("Format driver '%s' does not support image creation", fmt);
        return -1;
    }
    if (filename) {
        struct qimg_opt_desc *m =
            qimg_create_opts_merged(drv, qimg_create_protocol_driver(filename));
        qimg_opts_print_help(stdout, NULL, m);
        free(m);
    } else {
        qimg_opts_print_help(stdout, fmt, drv->create_opts);
        printf("\nThe protocol level may support further options.\n"
               "Specify the target filename to include those options.\n");
    }
    return 0;
}

char *cli_resolve_relative(const char *image, const char *path)
{
    return qimg_resolve_backing_path(image, path);
}
