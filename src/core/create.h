/* SPDX-License-Identifier: MIT */
/* Creation helpers the CLI uses: merged option tables and validation. */
#ifndef QIMG_CORE_CREATE_H
#define QIMG_CORE_CREATE_H

#include "qimg/driver.h"

/* The protocol a new image named filename will be created on ("file" by default). */
const struct qimg_driver *qimg_create_protocol_driver(const char *filename);
/* Format options followed by the protocol's extra ones; caller frees the array. */
struct qimg_opt_desc *qimg_create_opts_merged(const struct qimg_driver *drv,
                                              const struct qimg_driver *proto);
/* Unknown names and malformed values, in qemu-img's words; sizes become bytes. */
int qimg_create_validate(const struct qimg_opt_desc *desc, struct qimg_opts *opts,
                         struct qimg_error *err);

#endif
