/* SPDX-License-Identifier: MIT */
/*
 * Subcommands whose issues have not landed yet: they fail with a clear message
 * and exit code 1 instead of doing anything half-way.
 */
#include "cli/cli.h"

static int not_yet(const char *cmd)
{
    cli_error("'%s' is not supported by this build of qimg yet", cmd);
    return 1;
}

int cmd_amend(int argc, char **argv) { (void)argc; (void)argv; return not_yet("amend"); }
