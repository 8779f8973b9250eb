/* SPDX-License-Identifier: MIT */
/*
 * Subcommands whose issues have not landed yet would fail here with a clear
 * message and exit code 1; every subcommand is implemented now (amend was the
 * last, in amend.c).
 */
#include "cli/cli.h"
