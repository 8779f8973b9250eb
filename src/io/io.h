/* SPDX-License-Identifier: MIT */
/*
 * qimg-io: a qemu-io compatible I/O exerciser over libqimg. One open image,
 * commands read from -c arguments or standard input.
 */
#ifndef QIMG_IO_IO_H
#define QIMG_IO_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>

#include "qimg/qimg.h"

/* The largest single request qemu-io accepts (INT_MAX rounded down to a sector). */
#define IO_REQUEST_MAX 2147483136LL

/* The currently open image, if any. */
struct io_image {
    struct qimg_node *node;  /* what commands act on (the snapshot overlay with -s) */
    struct qimg_node *image; /* the image node itself */
    char *filename;          /* as given, for reopen */
    char *format;            /* -f, or NULL */
    struct qimg_opts *opts;  /* driver options given to open (-o or --image-opts) */
    bool image_opts;         /* filename holds --image-opts options */
    unsigned flags;          /* QIMG_O_* the image was opened with */
    bool snapshot;
};

extern struct io_image io_img;
extern const char *io_prog; /* "qemu-io" or the invoked name */

/* Command table. */
struct io_command {
    const char *name;
    const char *altname;
    int (*func)(int argc, char **argv);
    int argmin, argmax; /* argmax -1: unlimited */
    bool needs_file;
    bool needs_write; /* refused with "Block node is read-only" on a read-only image */
    const char *args;
    const char *oneline;
    void (*help)(void);
};

extern const struct io_command io_commands[];
const struct io_command *io_find_command(const char *name);
void io_usage(const struct io_command *cmd); /* the one-line usage, on stdout */
/* Run one command line; 0 on success, negative on failure. */
int io_run_command(const char *line);

/* Messages. */
void io_error(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* "qemu-io: ..." */

/* Numbers and patterns, as qemu-io parses them. */
int64_t io_cvtnum(const char *s);      /* size with suffixes; negative errno when invalid */
void io_print_cvtnum_err(int64_t rc, const char *arg);
int io_parse_pattern(const char *arg); /* a byte, or -1 after printing the error */
void io_cvtstr(double value, char *buf, size_t len);

/* Reports. */
void io_print_report(const char *op, const struct timeval *t, int64_t offset, int64_t count,
                     int64_t total, int cnt, bool cflag);
void io_dump_buffer(const void *buf, int64_t offset, int64_t len);
struct timeval io_tdiff(struct timeval t1, struct timeval t2);

/* Option values shared by the command line and "open"; -1 when invalid. */
int io_parse_discard(const char *mode, unsigned *flags);
int io_parse_cache(const char *mode, unsigned *flags);
int io_parse_aio(const char *mode);

/* Opening. */
int io_open_image(const char *filename, const char *format, struct qimg_opts *opts,
                  bool image_opts, unsigned flags, bool snapshot, bool native_aio);
void io_close_image(void);
/* The snapshot overlay (-s): a private copy-on-write layer over base. */
struct qimg_node *io_snapshot_new(struct qimg_node *base);
bool io_is_snapshot(const struct qimg_node *n);
void io_snapshot_info(struct qimg_node *n); /* what "info" prints for the overlay */

/* Command groups. */
int io_cmd_read(int argc, char **argv);
int io_cmd_readv(int argc, char **argv);
int io_cmd_write(int argc, char **argv);
int io_cmd_writev(int argc, char **argv);
int io_cmd_aio_read(int argc, char **argv);
int io_cmd_aio_write(int argc, char **argv);
int io_cmd_aio_flush(int argc, char **argv);
int io_cmd_discard(int argc, char **argv);
int io_cmd_flush(int argc, char **argv);
int io_cmd_truncate(int argc, char **argv);
int io_cmd_length(int argc, char **argv);
int io_cmd_info(int argc, char **argv);
int io_cmd_map(int argc, char **argv);
int io_cmd_alloc(int argc, char **argv);
int io_cmd_open(int argc, char **argv);
int io_cmd_close(int argc, char **argv);
int io_cmd_reopen(int argc, char **argv);

void io_help_read(void);
void io_help_readv(void);
void io_help_aio_read(void);
void io_help_write(void);
void io_help_writev(void);
void io_help_aio_write(void);
void io_help_discard(void);
void io_help_open(void);
void io_help_reopen(void);
void io_help_sigraise(void);

/* Set by quit: stop reading commands. */
extern bool io_quit;

#endif
