/* SPDX-License-Identifier: MIT */
/*
 * libnbd (nbd.c, nbd-addr.c, nbd-conn.c), loaded on first use (lazylib.h).
 * Include this instead of the library's headers and call lazy_nbd_load() in every entry
 * point before the first library call.
 * The list is the driver's undefined symbols the library defines (nm -u); one missing links
 * against the real symbol and the build fails, so the list cannot silently fall short.
 */
#ifndef QIMG_PROTOCOLS_LAZY_NBD_H
#define QIMG_PROTOCOLS_LAZY_NBD_H

#include <libnbd.h>

#include "protocols/lazylib.h"

#ifdef QIMG_SONAME_LIBNBD
#define LAZY_NBD_SYMS(X) \
    X(nbd_add_meta_context) X(nbd_aio_block_status) X(nbd_aio_connect_socket) \
    X(nbd_aio_connect_tcp) X(nbd_aio_flush) X(nbd_aio_get_direction) X(nbd_aio_get_fd) \
    X(nbd_aio_is_closed) X(nbd_aio_is_connecting) X(nbd_aio_is_dead) X(nbd_aio_is_ready) \
    X(nbd_aio_notify_read) X(nbd_aio_notify_write) X(nbd_aio_pread) X(nbd_aio_pwrite) \
    X(nbd_aio_trim) X(nbd_aio_zero) X(nbd_can_fast_zero) X(nbd_can_flush) X(nbd_can_fua) \
    X(nbd_can_meta_context) X(nbd_can_multi_conn) X(nbd_can_trim) X(nbd_can_zero) \
    X(nbd_clear_debug_callback) X(nbd_close) X(nbd_connect_socket) X(nbd_connect_tcp) \
    X(nbd_create) X(nbd_get_block_size) X(nbd_get_errno) X(nbd_get_error) X(nbd_get_size) \
    X(nbd_is_read_only) X(nbd_poll) X(nbd_set_debug) X(nbd_set_debug_callback) \
    X(nbd_set_export_name) X(nbd_set_tls) X(nbd_set_tls_certificates) X(nbd_set_tls_psk_file) \
    X(nbd_set_tls_username) X(nbd_set_tls_verify_peer) X(nbd_shutdown)

extern struct lazy_nbd_syms {
    LAZY_NBD_SYMS(LAZYLIB_FIELD)
} lazy_nbd;
extern struct lazylib lazy_nbd_lib;

#define nbd_add_meta_context     (lazy_nbd.nbd_add_meta_context)
#define nbd_aio_block_status     (lazy_nbd.nbd_aio_block_status)
#define nbd_aio_connect_socket   (lazy_nbd.nbd_aio_connect_socket)
#define nbd_aio_connect_tcp      (lazy_nbd.nbd_aio_connect_tcp)
#define nbd_aio_flush            (lazy_nbd.nbd_aio_flush)
#define nbd_aio_get_direction    (lazy_nbd.nbd_aio_get_direction)
#define nbd_aio_get_fd           (lazy_nbd.nbd_aio_get_fd)
#define nbd_aio_is_closed        (lazy_nbd.nbd_aio_is_closed)
#define nbd_aio_is_connecting    (lazy_nbd.nbd_aio_is_connecting)
#define nbd_aio_is_dead          (lazy_nbd.nbd_aio_is_dead)
#define nbd_aio_is_ready         (lazy_nbd.nbd_aio_is_ready)
#define nbd_aio_notify_read      (lazy_nbd.nbd_aio_notify_read)
#define nbd_aio_notify_write     (lazy_nbd.nbd_aio_notify_write)
#define nbd_aio_pread            (lazy_nbd.nbd_aio_pread)
#define nbd_aio_pwrite           (lazy_nbd.nbd_aio_pwrite)
#define nbd_aio_trim             (lazy_nbd.nbd_aio_trim)
#define nbd_aio_zero             (lazy_nbd.nbd_aio_zero)
#define nbd_can_fast_zero        (lazy_nbd.nbd_can_fast_zero)
#define nbd_can_flush            (lazy_nbd.nbd_can_flush)
#define nbd_can_fua              (lazy_nbd.nbd_can_fua)
#define nbd_can_meta_context     (lazy_nbd.nbd_can_meta_context)
#define nbd_can_multi_conn       (lazy_nbd.nbd_can_multi_conn)
#define nbd_can_trim             (lazy_nbd.nbd_can_trim)
#define nbd_can_zero             (lazy_nbd.nbd_can_zero)
#define nbd_clear_debug_callback (lazy_nbd.nbd_clear_debug_callback)
#define nbd_close                (lazy_nbd.nbd_close)
#define nbd_connect_socket       (lazy_nbd.nbd_connect_socket)
#define nbd_connect_tcp          (lazy_nbd.nbd_connect_tcp)
#define nbd_create               (lazy_nbd.nbd_create)
#define nbd_get_block_size       (lazy_nbd.nbd_get_block_size)
#define nbd_get_errno            (lazy_nbd.nbd_get_errno)
#define nbd_get_error            (lazy_nbd.nbd_get_error)
#define nbd_get_size             (lazy_nbd.nbd_get_size)
#define nbd_is_read_only         (lazy_nbd.nbd_is_read_only)
#define nbd_poll                 (lazy_nbd.nbd_poll)
#define nbd_set_debug            (lazy_nbd.nbd_set_debug)
#define nbd_set_debug_callback   (lazy_nbd.nbd_set_debug_callback)
#define nbd_set_export_name      (lazy_nbd.nbd_set_export_name)
#define nbd_set_tls              (lazy_nbd.nbd_set_tls)
#define nbd_set_tls_certificates (lazy_nbd.nbd_set_tls_certificates)
#define nbd_set_tls_psk_file     (lazy_nbd.nbd_set_tls_psk_file)
#define nbd_set_tls_username     (lazy_nbd.nbd_set_tls_username)
#define nbd_set_tls_verify_peer  (lazy_nbd.nbd_set_tls_verify_peer)
#define nbd_shutdown             (lazy_nbd.nbd_shutdown)
#endif

/* Loads the library (once); 0, or a negative errno with the reason in err. */
static inline int lazy_nbd_load(struct qimg_error *err)
{
#ifdef QIMG_SONAME_LIBNBD
    int r_nbd = lazylib_load(&lazy_nbd_lib, err);
    if (r_nbd < 0)
        return r_nbd;
#endif
    (void)err;
    return 0;
}

#endif
