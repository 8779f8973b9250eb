/* SPDX-License-Identifier: MIT */
/* Error reporting: functions return 0 or a negative errno and describe the failure here. */
#ifndef QIMG_ERROR_H
#define QIMG_ERROR_H

#include <stdarg.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QIMG_ERROR_MAX 2048

/*
 * A user-facing error message, composed like qemu-img's: inner layers set the
 * detail ("No such file or directory"), outer layers prefix context
 * ("Could not open 'x': "). Nothing below src/cli prints.
 */
struct qimg_error {
    int code;                 /* negative errno, 0 while unset */
    char msg[QIMG_ERROR_MAX]; /* the message, without the program prefix */
};

/* Set the message unless one is already set (the innermost cause wins). Returns code. */
int qimg_error_set(struct qimg_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Set the message, replacing any earlier one. Returns code. */
int qimg_error_reset(struct qimg_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like qimg_error_set with ": strerror(-code)" appended. Returns code. */
int qimg_error_errno(struct qimg_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Put context in front of the existing message. */
void qimg_error_prefix(struct qimg_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void qimg_error_clear(struct qimg_error *err);

/*
 * Warnings the library cannot return as an error (the operation goes on): the
 * handler gets the text without program prefix, which may hold several lines
 * and need not end with a newline. The default writes "PROGRAM: warning: TEXT"
 * to stderr, PROGRAM being the invoked name, as QEMU's tools do.
 */
typedef void (*qimg_warning_fn)(const char *text);
void qimg_set_warning_handler(qimg_warning_fn fn);
void qimg_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * An error message printed on the spot (QEMU's error_report) where the operation
 * then fails with a generic error: "PROGRAM: TEXT" on stderr (no "warning:").
 */
void qimg_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A line QEMU prints bare (fprintf to stderr: no program name) before it fails. */
void qimg_report_bare(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * Failures that end the process in QEMU rather than fail a request (blkverify
 * finding its two images differ). The handler gets the text (one line, no
 * newline). The default writes "TEXT\n" to stderr and exits with status 1,
 * as QEMU does; a handler that returns lets the request fail with -EIO.
 */
typedef void (*qimg_fatal_fn)(const char *text);
void qimg_set_fatal_handler(qimg_fatal_fn fn);
void qimg_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline bool qimg_error_is_set(const struct qimg_error *err)
{
    return err && err->msg[0] != '\0';
}

#ifdef __cplusplus
}
#endif

#endif
