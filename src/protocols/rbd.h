/* SPDX-License-Identifier: MIT */
/*
 * The rbd protocol's address: where an image lives in a Ceph cluster and how
 * to log in (rbd-name.c), shared by open and create (rbd.c).
 */
#ifndef QIMG_PROTOCOLS_RBD_H
#define QIMG_PROTOCOLS_RBD_H

#include <rados/librados.h>
#include <stddef.h>

#include "qimg/error.h"
#include "qimg/opts.h"

struct rbd_spec {
    char *pool, *ns, *image, *snap; /* ns and snap may be NULL */
    char *conf, *user, *key_secret; /* NULL: librados' defaults */
    char *mon_host;                 /* server.N.host/port joined, or NULL */
    char *auth_client_required;     /* auth-client-required.N joined, or NULL */
    char **kv;                      /* legacy "name=value" pairs for rados_conf_set */
    size_t nkv;                     /* kv holds 2 * nkv strings */
};

/*
 * rbd:pool[/namespace]/image[@snapshot][:key=value...] into options as QEMU
 * names them (pool, namespace, image, snapshot, conf, user); the other
 * key=value pairs are Ceph settings, kept in spec->kv. Backslash escapes
 * the next character.
 */
int rbd_parse_legacy(const char *filename, struct qimg_opts *o, struct rbd_spec *spec,
                     struct qimg_error *err);
/* The open options (json:/--image-opts keys) into spec; "filename" parsed first. */
int rbd_spec_take(struct rbd_spec *spec, struct qimg_opts *o, struct qimg_error *err);
void rbd_spec_clear(struct rbd_spec *spec);

/* Connect to the cluster and open the pool (and namespace) spec names: QEMU's steps. */
int rbd_connect(const struct rbd_spec *spec, rados_t *cluster, rados_ioctx_t *io,
                struct qimg_error *err);

#endif
