/* SPDX-License-Identifier: MIT */
/* Zero detection for whole buffers (convert -S, compare, dd). */
#ifndef QIMG_UTIL_ZERO_H
#define QIMG_UTIL_ZERO_H

#include <stdbool.h>
#include <stddef.h>

/* True when every byte of buf is zero. */
bool qimg_is_zero(const void *buf, size_t len);
/*
 * Length of the run starting at buf that is all zero (want_zero) or holds
 * data (!want_zero), in units of gran bytes (the last unit may be short).
 */
size_t qimg_zero_run(const void *buf, size_t len, size_t gran, bool want_zero);

#endif
