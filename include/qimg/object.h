/* SPDX-License-Identifier: MIT */
/*
 * User-creatable objects (`--object TYPE,id=ID,...` or `--object {json}`), as
 * qemu-img accepts them: the same types, checks and messages. Secrets are
 * kept (qimg/secret.h); the other types qemu-img can create (TLS
 * credentials, throttle groups, authorisation lists ...) are checked and
 * recorded by id, since no qimg driver uses them yet.
 */
#ifndef QIMG_OBJECT_H
#define QIMG_OBJECT_H

#include <stdbool.h>
#include <stdio.h>

#include "qimg/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Create the object spec describes; ids are unique across all objects. */
int qimg_object_add(const char *spec, struct qimg_error *err);
/*
 * Does spec ask for help ("help", "TYPE,help")? Then print what qemu-img
 * prints (the list of types, or the type's properties) to f and return true.
 */
bool qimg_object_help(const char *spec, FILE *f);
/* Forget every object and secret. */
void qimg_object_clear_all(void);

#ifdef __cplusplus
}
#endif

#endif
