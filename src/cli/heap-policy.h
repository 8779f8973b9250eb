/* SPDX-License-Identifier: MIT */
#ifndef QIMG_CLI_HEAP_POLICY_H
#define QIMG_CLI_HEAP_POLICY_H

#include <stdbool.h>

/* Set the programs' malloc policy; qimg fixes a 1 MiB mmap threshold, qimg-io does not. */
void heap_policy_init(bool small_mmap_threshold);

#endif
