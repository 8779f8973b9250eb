/* SPDX-License-Identifier: MIT */
/*
 * The nbd protocol's pieces shared between its files: where the server is
 * (nbd-addr.c: filenames and options in QEMU's syntax) and the connection
 * (nbd.c, on libnbd).
 */
#ifndef QIMG_PROTOCOLS_NBD_H
#define QIMG_PROTOCOLS_NBD_H

#include <stdbool.h>

#include "qimg/error.h"
#include "qimg/opts.h"

#define NBD_DEFAULT_PORT "10809"

enum nbd_addr_type { NBD_ADDR_INET, NBD_ADDR_UNIX };

/* QEMU's SocketAddress for inet and unix servers, plus the export name. */
struct nbd_addr {
    enum nbd_addr_type type;
    char *host, *port; /* inet */
    char *path;        /* unix */
    char *export;      /* NULL: the default export ("") */
    bool ipv4, ipv6;   /* inet: families allowed (both when neither was named) */
    /* inet options with no place in an nbd:// name (ipv4, ipv6, to): named in JSON. */
    bool needs_json;
};

/*
 * Fill addr from the node's options: a filename (nbd://, nbd+tcp://,
 * nbd+unix://, nbd:host:port, nbd:unix:path) unless server, export or the
 * legacy host/port/path keys are given, then server.* / legacy keys and
 * export. Takes the keys it uses. Errors in QEMU's words.
 */
int nbd_addr_from_opts(struct nbd_addr *addr, struct qimg_opts *opts, struct qimg_error *err);
void nbd_addr_clear(struct nbd_addr *addr);
/* "nbd://host:port[/export]" or "nbd+unix://[/export]?socket=path" (caller frees). */
char *nbd_addr_name(const struct nbd_addr *addr);
/* "host:port" or "path", as connection errors name the server (caller frees). */
char *nbd_addr_describe(const struct nbd_addr *addr);
/* Connect a stream socket to the server: the fd, or -errno with QEMU's message. */
int nbd_addr_connect(const struct nbd_addr *addr, struct qimg_error *err);

#endif
