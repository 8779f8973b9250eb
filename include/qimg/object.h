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
/* The properties of a TLS credentials object (tls-creds-x509, -psk, -anon) drivers use. */
struct qimg_tls_creds {
    char *type;     /* "tls-creds-x509" ... */
    char *dir;      /* NULL when not given (anon) */
    char *endpoint; /* "client" (the default) or "server" */
    char *username; /* psk: NULL means QEMU's default "qemu" */
    bool verify_peer;
};
/*
 * Look up TLS credentials by id for a client, with QEMU's messages: "No TLS
 * credentials with id 'x'", "Object with id 'x' is not TLS credentials",
 * "Expecting TLS credentials with a client endpoint". Free with
 * qimg_tls_creds_clear.
 */
int qimg_object_tls_client_creds(const char *id, struct qimg_tls_creds *out,
                                 struct qimg_error *err);
void qimg_tls_creds_clear(struct qimg_tls_creds *c);
/* Forget every object and secret. */
void qimg_object_clear_all(void);

#ifdef __cplusplus
}
#endif

#endif
