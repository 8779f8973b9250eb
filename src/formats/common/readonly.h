/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the read-only formats (cloop, bochs, dmg): how qemu 9.1 refuses
 * to open them for writing, and how it reads their files (zeroes past the end
 * of a short file; -EIO past what its block layer addresses).
 */
#ifndef QIMG_FORMATS_COMMON_READONLY_H
#define QIMG_FORMATS_COMMON_READONLY_H

#include <stdint.h>

#include "qimg/driver.h"

/* 0, or -EACCES "Image is read-only" when n is opened for writing (qemu's message). */
int qimg_ro_refuse_write(const struct qimg_node *n, struct qimg_error *err);

/*
 * len bytes of file (file_len bytes long) at off: zeroes past its end; -EIO
 * when the range reaches past INT64_MAX (or wraps).
 */
int qimg_ro_file_read(struct qimg_node *file, uint64_t file_len, uint64_t off, uint64_t len,
                      void *buf);

#endif
