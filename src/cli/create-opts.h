/* SPDX-License-Identifier: MIT */
/* -o option lists (create, convert, amend, measure) and "-o help". */
#ifndef QIMG_CLI_CREATE_OPTS_H
#define QIMG_CLI_CREATE_OPTS_H

#include "qimg/opts.h"

/* Repeated -o arguments, joined with ',' as qemu-img joins them. */
struct cli_option_list {
    char *joined;
};

int cli_option_list_add(struct cli_option_list *l, const char *arg);
bool cli_option_list_wants_help(const struct cli_option_list *l);
int cli_option_list_parse(const struct cli_option_list *l, struct qimg_opts *opts,
                          struct qimg_error *err);
void cli_option_list_free(struct cli_option_list *l);
/* Print the create options of fmt ("Supported fmt options:" or merged with filename's protocol). */
int cli_print_create_help(const char *fmt, const char *filename);
/* A path relative to another image's directory, as backing file names are. */
char *cli_resolve_relative(const char *image, const char *path);

#endif
