/* SPDX-License-Identifier: MIT */
/* libqimg: everything a program using the library includes. */
#ifndef QIMG_QIMG_H
#define QIMG_QIMG_H

#include "qimg/error.h"
#include "qimg/json.h"
#include "qimg/node.h"
#include "qimg/object.h"
#include "qimg/opts.h"
#include "qimg/secret.h"
#include "qimg/units.h"

/* Register the built-in drivers; idempotent. Call once before qimg_open. */
void qimg_init(void);

#define QIMG_VERSION "9.1.0"

#endif
