/* SPDX-License-Identifier: MIT */
/* Helpers the network protocols share: URI pieces and TCP connections in QEMU's words. */
#ifndef QIMG_PROTOCOLS_NET_UTIL_H
#define QIMG_PROTOCOLS_NET_UTIL_H

#include <stddef.h>
#include <sys/socket.h>

#include "qimg/error.h"

/* The first len bytes of s with %XX escapes decoded (caller frees). */
char *net_percent_decode(const char *s, size_t len);
/*
 * A stream socket connected to host:port (family AF_UNSPEC, AF_INET or
 * AF_INET6), trying each address in turn; -errno with QEMU's message
 * ("address resolution failed for h:p: ...", "Failed to connect to 'h:p': ...").
 */
int net_connect_tcp(const char *host, const char *port, int family, struct qimg_error *err);

struct qimg_opts;
/*
 * "Create" on a protocol whose images exist already (a LUN, an export), as
 * QEMU's simple create does: open filename read-write, check the size
 * fits (the driver's truncate, not exact) and zero the first sector, so
 * that nothing old is probed there. Takes "size" and "preallocation".
 */
int net_create_on_existing(const char *drvname, const char *filename, struct qimg_opts *opts,
                           struct qimg_error *err);

#endif
