/* SPDX-License-Identifier: MIT */
/*
 * Machine-readable progress (a qimg extension, issue 22): --progress=fd:N or
 * --progress-fd=N writes one line "<done>/<total>\n" in bytes to file
 * descriptor N each time the figure changes, the convention nbdcopy's
 * --progress=FD set for tools such as virt-v2v. A successful job ends with
 * "<total>/<total>". Independent of -p (qemu-img's human bar), which stays.
 * Called from the engines' progress callbacks (any thread).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static int progress_fd = -1;
static uint64_t last_done = UINT64_MAX, last_total = UINT64_MAX, seen_total;
static pthread_mutex_t fd_lock = PTHREAD_MUTEX_INITIALIZER;

bool cli_extras(void)
{
    /* qemu-img's name keeps qemu-img 9.1's exact command set and options. */
    return strncmp(cli_prog, "qemu-img", 8) != 0;
}

int cli_progress_fd_option(int opt, const char *arg)
{
    const char *num = arg;
    if (opt == CLI_OPT_PROGRESS) {
        if (strncmp(arg, "fd:", 3) != 0) {
            cli_error("--progress must be fd:N (a file descriptor number), not '%s'", arg);
            return -1;
        }
        num = arg + 3;
    }
    char *end;
    errno = 0;
    long fd = strtol(num, &end, 10);
    if (!*num || *end || errno || fd < 0 || fd > INT32_MAX) {
        cli_error("Invalid progress file descriptor '%s'", num);
        return -1;
    }
    if (fcntl((int)fd, F_GETFD) < 0) {
        cli_error("Invalid progress file descriptor %ld: %s", fd, strerror(errno));
        return -1;
    }
    progress_fd = (int)fd;
    /* A reader that goes away must not kill the job: writes then fail with EPIPE. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

bool cli_progress_fd_enabled(void)
{
    return progress_fd >= 0;
}

/* Write all of buf; a failing fd is dropped (progress is not worth failing the job). */
static void put_line(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(progress_fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            progress_fd = -1;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

void cli_progress_fd(uint64_t done, uint64_t total)
{
    if (progress_fd < 0)
        return;
    pthread_mutex_lock(&fd_lock);
    if (done > total)
        done = total;
    /* Lines only move forward: never a smaller done for the same total. */
    if (total == last_total && last_done != UINT64_MAX && done <= last_done) {
        pthread_mutex_unlock(&fd_lock);
        return;
    }
    char line[64];
    int n = snprintf(line, sizeof(line), "%" PRIu64 "/%" PRIu64 "\n", done, total);
    put_line(line, (size_t)n);
    last_done = done;
    last_total = seen_total = total;
    pthread_mutex_unlock(&fd_lock);
}

void cli_progress_fd_end(uint64_t total)
{
    if (progress_fd < 0)
        return;
    if (total == UINT64_MAX)
        total = last_total == UINT64_MAX ? 0 : seen_total;
    cli_progress_fd(total, total);
}
