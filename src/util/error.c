/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qimg/error.h"

static void error_vformat(struct qimg_error *err, int code, const char *fmt, va_list ap)
{
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int qimg_error_set(struct qimg_error *err, int code, const char *fmt, ...)
{
    if (!err || qimg_error_is_set(err))
        return code;
    va_list ap;
    va_start(ap, fmt);
    error_vformat(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int qimg_error_reset(struct qimg_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    error_vformat(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int qimg_error_errno(struct qimg_error *err, int code, const char *fmt, ...)
{
    if (!err || qimg_error_is_set(err))
        return code;
    va_list ap;
    va_start(ap, fmt);
    error_vformat(err, code, fmt, ap);
    va_end(ap);
    size_t len = strlen(err->msg);
    snprintf(err->msg + len, sizeof(err->msg) - len, ": %s", strerror(code < 0 ? -code : code));
    return code;
}

void qimg_error_prefix(struct qimg_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[QIMG_ERROR_MAX], joined[QIMG_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    snprintf(joined, sizeof(joined), "%s%s", prefix, err->msg);
    memcpy(err->msg, joined, sizeof(err->msg));
}

void qimg_error_clear(struct qimg_error *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

static void default_warning(const char *text)
{
    fprintf(stderr, "%s: warning: %s", program_invocation_short_name, text);
}

static qimg_warning_fn warning_handler = default_warning;

void qimg_set_warning_handler(qimg_warning_fn fn)
{
    warning_handler = fn ? fn : default_warning;
}

static void vformat(char *buf, const char *fmt, va_list ap)
{
    vsnprintf(buf, QIMG_ERROR_MAX, fmt, ap);
    fflush(stdout); /* keep the order of interleaved output */
}

void qimg_warn(const char *fmt, ...)
{
    char buf[QIMG_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vformat(buf, fmt, ap);
    va_end(ap);
    warning_handler(buf);
}

void qimg_report(const char *fmt, ...)
{
    char buf[QIMG_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vformat(buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", program_invocation_short_name, buf);
}

void qimg_report_bare(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout); /* keep the order of interleaved output */
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void default_fatal(const char *text)
{
    fflush(stdout);
    fprintf(stderr, "%s\n", text);
    exit(1);
}

static qimg_fatal_fn fatal_handler = default_fatal;

void qimg_set_fatal_handler(qimg_fatal_fn fn)
{
    fatal_handler = fn ? fn : default_fatal;
}

void qimg_fatal(const char *fmt, ...)
{
    char buf[QIMG_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fatal_handler(buf);
}
