/* SPDX-License-Identifier: MIT */
/*
 * Number parsing and the result lines of qemu-io (observed): "read N/N bytes
 * at offset O", the rate line, the -C machine-readable line and the -v dump.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/io.h"

void io_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", io_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int64_t io_cvtnum(const char *s)
{
    uint64_t v;
    int ret = qimg_parse_size(s, 1, &v);
    if (ret < 0)
        return ret;
    if (v > INT64_MAX)
        return -ERANGE;
    return (int64_t)v;
}

void io_print_cvtnum_err(int64_t rc, const char *arg)
{
    switch (rc) {
    case -ERANGE:
        printf("Parsing error: argument too large -- %s\n", arg);
        break;
    case -EINVAL:
        printf("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- %s\n",
               arg);
        break;
    default:
        printf("Parsing error: %s\n", arg);
        break;
    }
}

int io_parse_pattern(const char *arg)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 0);
    if (errno || end == arg || *end || v < 0 || v > 0xff) {
        printf("%s is not a valid pattern byte\n", arg);
        return -1;
    }
    return (int)v;
}

/* Bytes print with six decimals ("611.780195 bytes"), bigger units with three. */
void io_cvtstr(double value, char *buf, size_t len)
{
    if (value >= 1024) {
        qimg_cvtstr(value, buf, len);
        return;
    }
    char num[64];
    snprintf(num, sizeof(num), "%f", value);
    char *dot = strstr(num, ".000000");
    if (dot && dot[7] == '\0')
        *dot = '\0';
    snprintf(buf, len, "%s bytes", num);
}

struct timeval io_tdiff(struct timeval t1, struct timeval t2)
{
    t1.tv_sec -= t2.tv_sec;
    if (t1.tv_usec < t2.tv_usec) {
        t1.tv_usec += 1000000;
        t1.tv_sec--;
    }
    t1.tv_usec -= t2.tv_usec;
    return t1;
}

static double tv_seconds(const struct timeval *t)
{
    double s = (double)t->tv_sec + (double)t->tv_usec / 1e6;
    return s > 0 ? s : 1e-6; /* a request finer than the clock still took time */
}

static void timestr(const struct timeval *t, char *buf, size_t len, bool fixed)
{
    unsigned long secs = (unsigned long)t->tv_sec;
    unsigned hundredths = (unsigned)(t->tv_usec / 10000);
    unsigned long h = secs / 3600, m = (secs % 3600) / 60, s = secs % 60;
    if (fixed)
        snprintf(buf, len, "%lu:%02lu:%02lu.%02u", h, m, s, hundredths);
    else if (h)
        snprintf(buf, len, "%lu:%02lu:%02lu.%02u", h, m, s, hundredths);
    else if (m)
        snprintf(buf, len, "%lu:%02lu.%02u", m, s, hundredths);
    else
        snprintf(buf, len, "%02lu.%02u sec", s, hundredths);
}

void io_print_report(const char *op, const struct timeval *t, int64_t offset, int64_t count,
                     int64_t total, int cnt, bool cflag)
{
    char ts[64], s1[64], s2[64];
    double secs = tv_seconds(t);
    if (cflag) {
        timestr(t, ts, sizeof(ts), true);
        printf("%" PRId64 ",%d,%s,%.3f,%.3f\n", total, cnt, ts, (double)total / secs,
               cnt / secs);
        return;
    }
    printf("%s %" PRId64 "/%" PRId64 " bytes at offset %" PRId64 "\n", op, total, count, offset);
    io_cvtstr((double)total, s1, sizeof(s1));
    io_cvtstr((double)total / secs, s2, sizeof(s2));
    timestr(t, ts, sizeof(ts), false);
    printf("%s, %d ops; %s (%s/sec and %.4f ops/sec)\n", s1, cnt, ts, s2, cnt / secs);
}

void io_dump_buffer(const void *buf, int64_t offset, int64_t len)
{
    const uint8_t *p = buf;
    for (int64_t i = 0; i < len; i += 16) {
        int64_t n = len - i < 16 ? len - i : 16;
        printf("%08" PRIx64 ":  ", (uint64_t)(offset + i));
        for (int64_t j = 0; j < n; j++)
            printf("%02x ", p[i + j]);
        putchar(' ');
        for (int64_t j = 0; j < n; j++) {
            uint8_t c = p[i + j];
            putchar(c > ' ' && c < '~' ? c : '.');
        }
        putchar('\n');
    }
}
