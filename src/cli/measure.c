/* SPDX-License-Identifier: MIT */
/* qemu-img measure: being implemented (issue 2). */
#include "cli/cli.h"

int cmd_measure(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'measure' is not supported by this build of qimg yet");
    return 1;
}
