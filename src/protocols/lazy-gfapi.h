/* SPDX-License-Identifier: MIT */
/*
 * libgfapi (gluster.c), loaded on first use (lazylib.h).
 * Include this instead of the library's headers and call lazy_gfapi_load() in every entry
 * point before the first library call.
 * The list is the driver's undefined symbols the library defines (nm -u); one missing links
 * against the real symbol and the build fails, so the list cannot silently fall short.
 */
#ifndef QIMG_PROTOCOLS_LAZY_GFAPI_H
#define QIMG_PROTOCOLS_LAZY_GFAPI_H

#include <glusterfs/api/glfs.h>

#include "protocols/lazylib.h"

#ifdef QIMG_SONAME_LIBGFAPI
#define LAZY_GFAPI_SYMS(X) \
    X(glfs_close) X(glfs_creat) X(glfs_discard) X(glfs_fallocate) X(glfs_fini) X(glfs_fstat) \
    X(glfs_fsync) X(glfs_ftruncate) X(glfs_init) X(glfs_lseek) X(glfs_new) X(glfs_open) \
    X(glfs_pread) X(glfs_pwrite) X(glfs_set_logging) X(glfs_set_volfile_server) \
    X(glfs_zerofill)

extern struct lazy_gfapi_syms {
    LAZY_GFAPI_SYMS(LAZYLIB_FIELD)
} lazy_gfapi;
extern struct lazylib lazy_gfapi_lib;

#define glfs_close              (lazy_gfapi.glfs_close)
#define glfs_creat              (lazy_gfapi.glfs_creat)
#define glfs_discard            (lazy_gfapi.glfs_discard)
#define glfs_fallocate          (lazy_gfapi.glfs_fallocate)
#define glfs_fini               (lazy_gfapi.glfs_fini)
#define glfs_fstat              (lazy_gfapi.glfs_fstat)
#define glfs_fsync              (lazy_gfapi.glfs_fsync)
#define glfs_ftruncate          (lazy_gfapi.glfs_ftruncate)
#define glfs_init               (lazy_gfapi.glfs_init)
#define glfs_lseek              (lazy_gfapi.glfs_lseek)
#define glfs_new                (lazy_gfapi.glfs_new)
#define glfs_open               (lazy_gfapi.glfs_open)
#define glfs_pread              (lazy_gfapi.glfs_pread)
#define glfs_pwrite             (lazy_gfapi.glfs_pwrite)
#define glfs_set_logging        (lazy_gfapi.glfs_set_logging)
#define glfs_set_volfile_server (lazy_gfapi.glfs_set_volfile_server)
#define glfs_zerofill           (lazy_gfapi.glfs_zerofill)
#endif

/* Loads the library (once); 0, or a negative errno with the reason in err. */
static inline int lazy_gfapi_load(struct qimg_error *err)
{
#ifdef QIMG_SONAME_LIBGFAPI
    int r_gfapi = lazylib_load(&lazy_gfapi_lib, err);
    if (r_gfapi < 0)
        return r_gfapi;
#endif
    (void)err;
    return 0;
}

#endif
