/* SPDX-License-Identifier: MIT */
/* qemu-img resize: being implemented (issue 2). */
#include "cli/cli.h"

int cmd_resize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'resize' is not supported by this build of qimg yet");
    return 1;
}
