/* SPDX-License-Identifier: MIT */
/* qemu-img dd: being implemented (issue 2). */
#include "cli/cli.h"

int cmd_dd(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'dd' is not supported by this build of qimg yet");
    return 1;
}
