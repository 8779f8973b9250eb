/* SPDX-License-Identifier: MIT */
/*
 * Secrets: named byte strings that drivers look up by id (LUKS key-secret,
 * encrypt.key-secret, password-secret), defined by `--object secret,...`
 * as in QEMU (docs/system/secrets.rst): inline data, a file, base64, or
 * AES-256-CBC ciphertext under another secret's key. The store is
 * process-wide and thread-safe.
 */
#ifndef QIMG_SECRET_H
#define QIMG_SECRET_H

#include <stddef.h>
#include <stdint.h>

#include "qimg/error.h"
#include "qimg/opts.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Store a copy of data under id; an id already present is refused. */
int qimg_secret_add(const char *id, const void *data, size_t len, struct qimg_error *err);
/*
 * A copy of the secret's bytes (*data, *len; NUL-terminated, free() it), or
 * "No secret with id 'x'".
 */
int qimg_secret_lookup(const char *id, uint8_t **data, size_t *len, struct qimg_error *err);
/* Forget every secret (their bytes are wiped). */
void qimg_secret_clear_all(void);

/*
 * Create secret id from the properties of a `secret` object (data or file,
 * format raw or base64, keyid and iv) or a `secret_keyring` one (serial of
 * a Linux key instead of data). Takes the keys it uses; checks and errors
 * as QEMU words them.
 */
int qimg_secret_create(const char *id, const char *type, struct qimg_opts *props,
                       struct qimg_error *err);

#ifdef __cplusplus
}
#endif

#endif
