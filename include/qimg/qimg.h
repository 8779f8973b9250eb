/* SPDX-License-Identifier: MIT */
/*
 * libqimg: the one header a program using the library includes; it pulls in
 * the others. Link with `pkg-config --cflags --libs qimg`. The functions
 * declared under include/qimg/ are the library's API and the only symbols
 * libqimg.so exports (doc/versioning.md); the driver interface (driver.h) is
 * internal and not installed. examples/ shows a program using it.
 */
#ifndef QIMG_QIMG_H
#define QIMG_QIMG_H

#include "qimg/error.h"
#include "qimg/json.h"
#include "qimg/node.h"
#include "qimg/object.h"
#include "qimg/opts.h"
#include "qimg/secret.h"
#include "qimg/units.h"
#include "qimg/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Register the built-in drivers. Optional: the first driver lookup (qimg_open,
 * qimg_create ...) does it; idempotent and thread-safe.
 */
void qimg_init(void);

/* The library's own version at run time, QIMG_VERSION of the libqimg built. */
const char *qimg_version(void);

#ifdef __cplusplus
}
#endif

#endif
