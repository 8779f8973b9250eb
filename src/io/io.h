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

/*
 * Breakpoint mode (aio.c). An aio request: perform runs the I/O (on the
 * request's own thread once a breakpoint was set), complete prints its report
 * (at once without breakpoints, else at the next poll point).
 */
struct io_req {
    int (*perform)(struct io_req *r);
    void (*complete)(struct io_req *r);
    struct qimg_node *node;
    int64_t off, count;
    uint8_t *buf; /* freed with the request */
    unsigned flags;
    int pattern;  /* aio_read -P: the expected byte, or -1 */
    bool qflag, vflag, cflag, zflag;
    const char *name; /* the command */
    struct timeval t1, t2;
    int ret;
};

extern bool io_bp_mode; /* a breakpoint was set: requests run on threads */
void io_bp_note_tag(const char *tag); /* a breakpoint tag, to resume everything at the end */
void io_bp_forget_tags(void);
void io_req_run(struct io_req *r);    /* takes r */
void io_req_free(struct io_req *r);
void io_aio_reap(void);               /* print the reports of finished requests */
/* Wait for every aio request and print their reports; -1 when some had to be resumed. */
int io_aio_drain(const char *what);
void io_bp_settle(void); /* wait until nothing can move without a resume */
/* Run call(arg) on a thread; what names the caller when a resume is needed. */
int io_bp_call(const char *what, int (*call)(void *arg), void *arg);
int io_bp_run_command(const struct io_command *cmd, int argc, char **argv);
int io_bp_wait_break(const char *tag);

/* Set by quit: stop reading commands. */
extern bool io_quit;

#endif
