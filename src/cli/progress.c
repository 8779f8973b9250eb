/* SPDX-License-Identifier: MIT */
/*
 * qemu-img's progress line: "    (NN.NN/100%)" redrawn in place with -p, and
 * printed once on SIGUSR1 without -p. Updated from any worker thread.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>

#include "cli/cli.h"

static bool progress_enabled;
static volatile sig_atomic_t progress_requested;
static double last_printed = -1;
static atomic_flag printing = ATOMIC_FLAG_INIT;

static void on_sigusr1(int sig)
{
    (void)sig;
    progress_requested = 1;
}

void cli_progress_init(bool enabled)
{
    progress_enabled = enabled;
    last_printed = -1;
    struct sigaction sa = {.sa_handler = on_sigusr1};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    if (enabled)
        cli_progress_update(0, 1);
}

void cli_progress_update(double done, double total)
{
    double pct = total > 0 ? done * 100.0 / total : 100.0;
    if (pct > 100)
        pct = 100;
    if (atomic_flag_test_and_set(&printing))
        return;
    if (progress_enabled) {
        /* Redraw after more than 1% of progress, and always at 0 and 100%, as qemu-img does. */
        if (last_printed < 0 || pct > last_printed + 1.0 || pct == 100 || pct == 0) {
            printf("    (%3.2f/100%%)\r", pct);
            fflush(stdout);
            last_printed = pct;
        }
    } else if (progress_requested) {
        progress_requested = 0;
        printf("    (%3.2f/100%%)\n", pct);
        fflush(stdout);
    }
    atomic_flag_clear(&printing);
}

void cli_progress_end(void)
{
    /* qemu-img only ends the line: the caller prints 100% when the job got there. */
    if (progress_enabled) {
        printf("\n");
        fflush(stdout);
    }
}
