/* SPDX-License-Identifier: MIT */
/* The check report sink (see report.h): the one place check output leaves the library. */
#include "util/report.h"

#include <stdarg.h>
#include <stdio.h>

#include "qimg/error.h"

static void default_report(const char *line)
{
    fflush(stdout); /* keep the order of interleaved output */
    fputs(line, stderr);
}

static qimg_check_report_fn report_handler = default_report;

void qimg_set_check_report_handler(qimg_check_report_fn fn)
{
    report_handler = fn ? fn : default_report;
}

void qimg_check_report(const char *fmt, ...)
{
    char buf[QIMG_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    report_handler(buf);
}
