/* SPDX-License-Identifier: MIT */
/*
 * librbd and librados (rbd.c, rbd-name.c), loaded on first use (lazylib.h).
 * Include this instead of the library's headers and call lazy_rbd_load() in every entry
 * point before the first library call.
 * The list is the driver's undefined symbols the library defines (nm -u); one missing links
 * against the real symbol and the build fails, so the list cannot silently fall short.
 */
#ifndef QIMG_PROTOCOLS_LAZY_RBD_H
#define QIMG_PROTOCOLS_LAZY_RBD_H

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "protocols/lazylib.h"

#ifdef QIMG_SONAME_LIBRBD
#define LAZY_RBD_SYMS(X) \
    X(rbd_close) X(rbd_create4) X(rbd_diff_iterate2) X(rbd_discard) X(rbd_encryption_format) \
    X(rbd_encryption_load) X(rbd_flush) X(rbd_get_features) X(rbd_get_flags) X(rbd_get_size) \
    X(rbd_image_options_create) X(rbd_image_options_destroy) X(rbd_image_options_set_uint64) \
    X(rbd_namespace_exists) X(rbd_open) X(rbd_open_read_only) X(rbd_read) X(rbd_read2) \
    X(rbd_remove) X(rbd_resize) X(rbd_snap_create) X(rbd_snap_list) X(rbd_snap_list_end) \
    X(rbd_snap_remove) X(rbd_snap_rollback) X(rbd_stat) X(rbd_write2) X(rbd_write_zeroes)

extern struct lazy_rbd_syms {
    LAZY_RBD_SYMS(LAZYLIB_FIELD)
} lazy_rbd;
extern struct lazylib lazy_rbd_lib;

#define rbd_close                    (lazy_rbd.rbd_close)
#define rbd_create4                  (lazy_rbd.rbd_create4)
#define rbd_diff_iterate2            (lazy_rbd.rbd_diff_iterate2)
#define rbd_discard                  (lazy_rbd.rbd_discard)
#define rbd_encryption_format        (lazy_rbd.rbd_encryption_format)
#define rbd_encryption_load          (lazy_rbd.rbd_encryption_load)
#define rbd_flush                    (lazy_rbd.rbd_flush)
#define rbd_get_features             (lazy_rbd.rbd_get_features)
#define rbd_get_flags                (lazy_rbd.rbd_get_flags)
#define rbd_get_size                 (lazy_rbd.rbd_get_size)
#define rbd_image_options_create     (lazy_rbd.rbd_image_options_create)
#define rbd_image_options_destroy    (lazy_rbd.rbd_image_options_destroy)
#define rbd_image_options_set_uint64 (lazy_rbd.rbd_image_options_set_uint64)
#define rbd_namespace_exists         (lazy_rbd.rbd_namespace_exists)
#define rbd_open                     (lazy_rbd.rbd_open)
#define rbd_open_read_only           (lazy_rbd.rbd_open_read_only)
#define rbd_read                     (lazy_rbd.rbd_read)
#define rbd_read2                    (lazy_rbd.rbd_read2)
#define rbd_remove                   (lazy_rbd.rbd_remove)
#define rbd_resize                   (lazy_rbd.rbd_resize)
#define rbd_snap_create              (lazy_rbd.rbd_snap_create)
#define rbd_snap_list                (lazy_rbd.rbd_snap_list)
#define rbd_snap_list_end            (lazy_rbd.rbd_snap_list_end)
#define rbd_snap_remove              (lazy_rbd.rbd_snap_remove)
#define rbd_snap_rollback            (lazy_rbd.rbd_snap_rollback)
#define rbd_stat                     (lazy_rbd.rbd_stat)
#define rbd_write2                   (lazy_rbd.rbd_write2)
#define rbd_write_zeroes             (lazy_rbd.rbd_write_zeroes)
#endif

#ifdef QIMG_SONAME_LIBRADOS
#define LAZY_RADOS_SYMS(X) \
    X(rados_conf_read_file) X(rados_conf_set) X(rados_connect) X(rados_create) \
    X(rados_ioctx_create) X(rados_ioctx_destroy) X(rados_ioctx_set_namespace) \
    X(rados_shutdown)

extern struct lazy_rados_syms {
    LAZY_RADOS_SYMS(LAZYLIB_FIELD)
} lazy_rados;
extern struct lazylib lazy_rados_lib;

#define rados_conf_read_file      (lazy_rados.rados_conf_read_file)
#define rados_conf_set            (lazy_rados.rados_conf_set)
#define rados_connect             (lazy_rados.rados_connect)
#define rados_create              (lazy_rados.rados_create)
#define rados_ioctx_create        (lazy_rados.rados_ioctx_create)
#define rados_ioctx_destroy       (lazy_rados.rados_ioctx_destroy)
#define rados_ioctx_set_namespace (lazy_rados.rados_ioctx_set_namespace)
#define rados_shutdown            (lazy_rados.rados_shutdown)
#endif

/* Loads the library (once); 0, or a negative errno with the reason in err. */
static inline int lazy_rbd_load(struct qimg_error *err)
{
#ifdef QIMG_SONAME_LIBRBD
    int r_rbd = lazylib_load(&lazy_rbd_lib, err);
    if (r_rbd < 0)
        return r_rbd;
#endif
#ifdef QIMG_SONAME_LIBRADOS
    int r_rados = lazylib_load(&lazy_rados_lib, err);
    if (r_rados < 0)
        return r_rados;
#endif
    (void)err;
    return 0;
}

#endif
