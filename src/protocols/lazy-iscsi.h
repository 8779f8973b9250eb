/* SPDX-License-Identifier: MIT */
/*
 * libiscsi (iscsi.c, iscsi-lun.c), loaded on first use (lazylib.h).
 * Include this instead of the library's headers and call lazy_iscsi_load() in every entry
 * point before the first library call.
 * The list is the driver's undefined symbols the library defines (nm -u); one missing links
 * against the real symbol and the build fails, so the list cannot silently fall short.
 */
#ifndef QIMG_PROTOCOLS_LAZY_ISCSI_H
#define QIMG_PROTOCOLS_LAZY_ISCSI_H

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "protocols/lazylib.h"

#ifdef QIMG_SONAME_LIBISCSI
#define LAZY_ISCSI_SYMS(X) \
    X(iscsi_create_context) X(iscsi_destroy_context) X(iscsi_destroy_url) \
    X(iscsi_full_connect_sync) X(iscsi_get_error) X(iscsi_get_lba_status_sync) \
    X(iscsi_init_transport) X(iscsi_inquiry_sync) X(iscsi_logout_sync) \
    X(iscsi_modesense6_sync) X(iscsi_parse_full_url) X(iscsi_read16_iov_sync) \
    X(iscsi_readcapacity10_sync) X(iscsi_readcapacity16_sync) X(iscsi_set_header_digest) \
    X(iscsi_set_initiator_username_pwd) X(iscsi_set_isid_random) \
    X(iscsi_set_reconnect_max_retries) X(iscsi_set_session_type) X(iscsi_set_targetname) \
    X(iscsi_set_timeout) X(iscsi_synchronizecache10_sync) X(iscsi_unmap_sync) \
    X(iscsi_write16_iov_sync) X(iscsi_writesame16_sync) X(scsi_datain_getfullsize) \
    X(scsi_datain_unmarshall) X(scsi_free_scsi_task)

extern struct lazy_iscsi_syms {
    LAZY_ISCSI_SYMS(LAZYLIB_FIELD)
} lazy_iscsi;
extern struct lazylib lazy_iscsi_lib;

#define iscsi_create_context             (lazy_iscsi.iscsi_create_context)
#define iscsi_destroy_context            (lazy_iscsi.iscsi_destroy_context)
#define iscsi_destroy_url                (lazy_iscsi.iscsi_destroy_url)
#define iscsi_full_connect_sync          (lazy_iscsi.iscsi_full_connect_sync)
#define iscsi_get_error                  (lazy_iscsi.iscsi_get_error)
#define iscsi_get_lba_status_sync        (lazy_iscsi.iscsi_get_lba_status_sync)
#define iscsi_init_transport             (lazy_iscsi.iscsi_init_transport)
#define iscsi_inquiry_sync               (lazy_iscsi.iscsi_inquiry_sync)
#define iscsi_logout_sync                (lazy_iscsi.iscsi_logout_sync)
#define iscsi_modesense6_sync            (lazy_iscsi.iscsi_modesense6_sync)
#define iscsi_parse_full_url             (lazy_iscsi.iscsi_parse_full_url)
#define iscsi_read16_iov_sync            (lazy_iscsi.iscsi_read16_iov_sync)
#define iscsi_readcapacity10_sync        (lazy_iscsi.iscsi_readcapacity10_sync)
#define iscsi_readcapacity16_sync        (lazy_iscsi.iscsi_readcapacity16_sync)
#define iscsi_set_header_digest          (lazy_iscsi.iscsi_set_header_digest)
#define iscsi_set_initiator_username_pwd (lazy_iscsi.iscsi_set_initiator_username_pwd)
#define iscsi_set_isid_random            (lazy_iscsi.iscsi_set_isid_random)
#define iscsi_set_reconnect_max_retries  (lazy_iscsi.iscsi_set_reconnect_max_retries)
#define iscsi_set_session_type           (lazy_iscsi.iscsi_set_session_type)
#define iscsi_set_targetname             (lazy_iscsi.iscsi_set_targetname)
#define iscsi_set_timeout                (lazy_iscsi.iscsi_set_timeout)
#define iscsi_synchronizecache10_sync    (lazy_iscsi.iscsi_synchronizecache10_sync)
#define iscsi_unmap_sync                 (lazy_iscsi.iscsi_unmap_sync)
#define iscsi_write16_iov_sync           (lazy_iscsi.iscsi_write16_iov_sync)
#define iscsi_writesame16_sync           (lazy_iscsi.iscsi_writesame16_sync)
#define scsi_datain_getfullsize          (lazy_iscsi.scsi_datain_getfullsize)
#define scsi_datain_unmarshall           (lazy_iscsi.scsi_datain_unmarshall)
#define scsi_free_scsi_task              (lazy_iscsi.scsi_free_scsi_task)
#endif

/* Loads the library (once); 0, or a negative errno with the reason in err. */
static inline int lazy_iscsi_load(struct qimg_error *err)
{
#ifdef QIMG_SONAME_LIBISCSI
    int r_iscsi = lazylib_load(&lazy_iscsi_lib, err);
    if (r_iscsi < 0)
        return r_iscsi;
#endif
    (void)err;
    return 0;
}

#endif
