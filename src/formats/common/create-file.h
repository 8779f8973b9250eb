/* SPDX-License-Identifier: MIT */
/*
 * The protocol file under a new image, created empty with the protocol's own
 * create options (preallocation, nocow, extent_size_hint) taken out of the
 * format's: what qemu's formats without their own preallocation do before
 * writing their header (vdi, parallels, qcow).
 */
#ifndef QIMG_FORMATS_COMMON_CREATE_FILE_H
#define QIMG_FORMATS_COMMON_CREATE_FILE_H

#include "qimg/driver.h"

int qimg_format_create_empty_file(const char *filename, struct qimg_opts *opts,
                                  struct qimg_error *err);

#endif
