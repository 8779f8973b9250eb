/* SPDX-License-Identifier: MIT */
/* Shared pieces of the qimg command line: messages, option parsing, opening images. */
#ifndef QIMG_CLI_CLI_H
#define QIMG_CLI_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "qimg/qimg.h"

/* The name the program was invoked as ("qimg", or "qemu-img" through a symlink). */
extern const char *cli_prog;

/* "prog: message" on stderr (the message may hold hint lines after '\n'). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* cli_error with the error's message, after an optional context prefix. */
void cli_error_obj(const struct qimg_error *err, const char *prefix_fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* "prog: message" + "Try 'prog --help' for more information"; returns 1. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * getopt_long with qemu-img's messages for unknown options and missing
 * arguments. Returns the option, -1 at the end, or '?' after printing the error.
 */
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts);

/* Sizes on the command line, with qemu-img 9.1's two error wordings. */
int cli_parse_image_size(const char *arg, const char *what, int64_t *out);

/* -r RATE (bytes per second, size suffixes) for convert and commit. */
int cli_parse_rate(const char *arg, uint64_t *out);

enum cli_output { CLI_OUTPUT_HUMAN, CLI_OUTPUT_JSON };
/* "--output=human|json"; prints the error and returns -1 when neither. */
int cli_parse_output(const char *arg, enum cli_output *out);

/* Options shared by most subcommands when opening an image. */
struct cli_open {
    const char *filename;
    const char *fmt;
    bool image_opts; /* filename is an option string */
    unsigned flags;  /* QIMG_O_* */
    bool quiet;
    struct qimg_opts *opts; /* extra driver options (plain filenames), or NULL */
};

/*
 * Open an image as qemu-img does: "Could not open 'x': " prefixed to errors,
 * the probing warning for writable probed-raw images. NULL after printing the
 * error.
 */
struct qimg_node *cli_open_image(const struct cli_open *o);
/* -t/-T: parse a cache mode into QIMG_O_* flags; prints the error itself. */
int cli_parse_cache(const char *mode, unsigned *flags, bool is_source);
/* --object: create the object (qimg/object.h); help prints and exits 0, errors print. */
int cli_add_object(const char *spec);

/* Progress for -p and SIGUSR1: "    (NN.NN/100%)" redrawn with \r. */
void cli_progress_init(bool enabled);
/* step: the least move (in percent) that redraws the bar (qemu-img's min_skip; init: 1). */
void cli_progress_init_step(bool enabled, float step);
void cli_progress_update(double done, double total);
/* Move the bar by percent (rebase's fixed steps). */
void cli_progress_add(float percent);
void cli_progress_end(void);

/*
 * qimg's extensions (issue 22): commands and long options that exist only
 * under the qimg name; through a qemu-img-named link the command set and
 * options are qemu-img 9.1's exactly (cli_getopt drops these long options).
 */
bool cli_extras(void);
#define CLI_OPT_EXTRA 0x1000 /* long option values from here on are extensions */
#define CLI_OPT_PROGRESS (CLI_OPT_EXTRA + 1)    /* --progress=fd:N */
#define CLI_OPT_PROGRESS_FD (CLI_OPT_EXTRA + 2) /* --progress-fd=N */
#define CLI_OPT_DRY_RUN (CLI_OPT_EXTRA + 3)     /* check -r ... --dry-run */
#define CLI_PROGRESS_FD_LONGOPTS                                         \
    {"progress", required_argument, NULL, CLI_OPT_PROGRESS},            \
    {"progress-fd", required_argument, NULL, CLI_OPT_PROGRESS_FD}
/* Parse --progress=fd:N / --progress-fd=N (opt says which); -1 after printing the error. */
int cli_progress_fd_option(int opt, const char *arg);
bool cli_progress_fd_enabled(void);
/* "<done>/<total>\n" to the progress fd when the figure moved (any thread). */
void cli_progress_fd(uint64_t done, uint64_t total);
/* The job succeeded: "<total>/<total>" (UINT64_MAX: the last total seen). */
void cli_progress_fd_end(uint64_t total);

/* Human output of an ImageInfo tree (info, info --backing-chain). */
void cli_print_image_info_human(const struct qimg_json *info);

/* Subcommands. */
int cmd_amend(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bitmap(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_checksum(int argc, char **argv);
int cmd_commit(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_dd(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_measure(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_rebase(int argc, char **argv);
int cmd_resize(int argc, char **argv);

#endif
