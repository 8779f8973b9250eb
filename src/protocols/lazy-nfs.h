/* SPDX-License-Identifier: MIT */
/*
 * libnfs (nfs.c), loaded on first use (lazylib.h).
 * Include this instead of the library's headers and call lazy_nfs_load() in every entry
 * point before the first library call.
 * The list is the driver's undefined symbols the library defines (nm -u); one missing links
 * against the real symbol and the build fails, so the list cannot silently fall short.
 */
#ifndef QIMG_PROTOCOLS_LAZY_NFS_H
#define QIMG_PROTOCOLS_LAZY_NFS_H

#include <nfsc/libnfs.h>

#include "protocols/lazylib.h"

#ifdef QIMG_SONAME_LIBNFS
#define LAZY_NFS_SYMS(X) \
    X(nfs_close) X(nfs_creat) X(nfs_destroy_context) X(nfs_fstat64) X(nfs_fsync_async) \
    X(nfs_ftruncate) X(nfs_get_error) X(nfs_get_fd) X(nfs_get_readmax) X(nfs_get_writemax) \
    X(nfs_init_context) X(nfs_mount) X(nfs_open) X(nfs_pread_async) X(nfs_pwrite_async) \
    X(nfs_service) X(nfs_set_autoreconnect) X(nfs_set_debug) X(nfs_set_gid) \
    X(nfs_set_pagecache) X(nfs_set_readahead) X(nfs_set_tcp_syncnt) X(nfs_set_uid) \
    X(nfs_which_events)

extern struct lazy_nfs_syms {
    LAZY_NFS_SYMS(LAZYLIB_FIELD)
} lazy_nfs;
extern struct lazylib lazy_nfs_lib;

#define nfs_close             (lazy_nfs.nfs_close)
#define nfs_creat             (lazy_nfs.nfs_creat)
#define nfs_destroy_context   (lazy_nfs.nfs_destroy_context)
#define nfs_fstat64           (lazy_nfs.nfs_fstat64)
#define nfs_fsync_async       (lazy_nfs.nfs_fsync_async)
#define nfs_ftruncate         (lazy_nfs.nfs_ftruncate)
#define nfs_get_error         (lazy_nfs.nfs_get_error)
#define nfs_get_fd            (lazy_nfs.nfs_get_fd)
#define nfs_get_readmax       (lazy_nfs.nfs_get_readmax)
#define nfs_get_writemax      (lazy_nfs.nfs_get_writemax)
#define nfs_init_context      (lazy_nfs.nfs_init_context)
#define nfs_mount             (lazy_nfs.nfs_mount)
#define nfs_open              (lazy_nfs.nfs_open)
#define nfs_pread_async       (lazy_nfs.nfs_pread_async)
#define nfs_pwrite_async      (lazy_nfs.nfs_pwrite_async)
#define nfs_service           (lazy_nfs.nfs_service)
#define nfs_set_autoreconnect (lazy_nfs.nfs_set_autoreconnect)
#define nfs_set_debug         (lazy_nfs.nfs_set_debug)
#define nfs_set_gid           (lazy_nfs.nfs_set_gid)
#define nfs_set_pagecache     (lazy_nfs.nfs_set_pagecache)
#define nfs_set_readahead     (lazy_nfs.nfs_set_readahead)
#define nfs_set_tcp_syncnt    (lazy_nfs.nfs_set_tcp_syncnt)
#define nfs_set_uid           (lazy_nfs.nfs_set_uid)
#define nfs_which_events      (lazy_nfs.nfs_which_events)
#endif

/* Loads the library (once); 0, or a negative errno with the reason in err. */
static inline int lazy_nfs_load(struct qimg_error *err)
{
#ifdef QIMG_SONAME_LIBNFS
    int r_nfs = lazylib_load(&lazy_nfs_lib, err);
    if (r_nfs < 0)
        return r_nfs;
#endif
    (void)err;
    return 0;
}

#endif
