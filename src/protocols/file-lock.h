/* SPDX-License-Identifier: MIT */
#ifndef QIMG_PROTOCOLS_FILE_LOCK_H
#define QIMG_PROTOCOLS_FILE_LOCK_H

#include "qimg/error.h"

/*
 * Move fd's image locks from (old_perm, old_shared) to (perm, shared), or
 * leave them as they were and fail with qemu-img's "Failed to get ... lock".
 */
int file_lock_update(int fd, const char *filename, unsigned old_perm, unsigned old_shared,
                     unsigned perm, unsigned shared, struct qimg_error *err);

#endif
