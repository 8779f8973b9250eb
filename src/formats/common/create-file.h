/* SPDX-License-Identifier: MIT */
/* The protocol file under a new image, as qemu's format drivers make it. */
#ifndef QIMG_FORMATS_COMMON_CREATE_FILE_H
#define QIMG_FORMATS_COMMON_CREATE_FILE_H

#include "qimg/driver.h"

/*
 * Create filename empty (size 0) with the protocol's own options taken from
 * opts (preallocation, nocow, extent_size_hint): the format then writes its
 * layout into it (VDI, QED).
 */
int qimg_create_empty_protocol_file(const char *filename, struct qimg_opts *opts,
                                    struct qimg_error *err);

#endif
