/* SPDX-License-Identifier: MIT */
/*
 * The check report sink: the lines a format's check prints about what it
 * found ("ERROR: ..." as qemu-img prints them on stderr). Library code never
 * prints; it reports here and the caller decides where the text goes (the
 * CLI: stderr, after flushing stdout so the order matches qemu-img's).
 */
#ifndef QIMG_UTIL_REPORT_H
#define QIMG_UTIL_REPORT_H

typedef void (*qimg_check_report_fn)(const char *line);
/* NULL restores the default (stderr). */
void qimg_set_check_report_handler(qimg_check_report_fn fn);
/* One report line; the text carries its own newline, as qemu's messages do. */
void qimg_check_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
