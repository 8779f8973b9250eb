/* SPDX-License-Identifier: MIT */
/* qemu-img map: being implemented (issue 2). */
#include "cli/cli.h"

int cmd_map(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'map' is not supported by this build of qimg yet");
    return 1;
}
