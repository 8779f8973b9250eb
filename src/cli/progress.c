/* SPDX-License-Identifier: MIT */
/*
 * qemu-img's progress line: "    (NN.NN/100%)" redrawn in place on stdout with -p; without
 * -p, a SIGUSR1 makes the next redraw print the line once on stderr, ending in "\n" (as
 * qemu-img 7.2 and 9.1 do). A redraw happens when the value moved by more than the command's
 * step since the last one, or is 0 or 100. Like qemu, the value is a float, and it never
 * shows more than 100. Updated from any worker thread.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>

#include "cli/cli.h"

static bool progress_enabled;
static volatile sig_atomic_t progress_requested;
static float current, last_printed, min_skip = 1.0f;
static atomic_flag printing = ATOMIC_FLAG_INIT;

static void on_sigusr1(int sig)
{
    (void)sig;
    progress_requested = 1;
}

void cli_progress_init_step(bool enabled, float step)
{
    progress_enabled = enabled;
    min_skip = step;
    current = last_printed = 0;
    struct sigaction sa = {.sa_handler = on_sigusr1};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    cli_progress_update(0, 1);
}

void cli_progress_init(bool enabled)
{
    cli_progress_init_step(enabled, 1.0f);
}

static void draw(void)
{
    if (progress_enabled) {
        printf("    (%3.2f/100%%)\r", current);
        fflush(stdout);
    } else if (progress_requested) {
        progress_requested = 0;
        fprintf(stderr, "    (%3.2f/100%%)\n", current);
    }
}

/* The new value; qemu's qemu_progress_print after computing it. */
static void progress_set(float value, bool relative)
{
    if (atomic_flag_test_and_set(&printing))
        return;
    float v = relative ? current + value : value;
    current = v > 100 ? 100 : v;
    if (current > last_printed + min_skip || current < last_printed - min_skip ||
        current == 0 || current == 100) {
        last_printed = current;
        draw();
    }
    atomic_flag_clear(&printing);
}

void cli_progress_update(double done, double total)
{
    progress_set(total > 0 ? (float)(done * 100.0 / total) : 100.0f, false);
}

void cli_progress_add(float percent)
{
    progress_set(percent, true);
}

void cli_progress_end(void)
{
    /* qemu-img only ends the line: the caller prints 100% when the job got there. */
    if (progress_enabled) {
        printf("\n");
        fflush(stdout);
    }
}
