/* SPDX-License-Identifier: MIT */
/* qemu-img convert: being implemented (issue 2). */
#include "cli/cli.h"

int cmd_convert(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("'convert' is not supported by this build of qimg yet");
    return 1;
}
