/* SPDX-License-Identifier: MIT */
/* qemu-img compare: being implemented (issue 2). */
#include "cli/cli.h"

int cmd_compare(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'compare' is not supported by this build of qimg yet");
    return 1;
}
