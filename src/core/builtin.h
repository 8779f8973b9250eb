/* SPDX-License-Identifier: MIT */
/* The drivers compiled into libqimg. Each driver file exports its vtable here. */
#ifndef QIMG_CORE_BUILTIN_H
#define QIMG_CORE_BUILTIN_H

#include "qimg/driver.h"

extern const struct qimg_driver qimg_file_driver;
extern const struct qimg_driver qimg_host_device_driver;
extern const struct qimg_driver qimg_host_cdrom_driver;
/* file.c: the protocol a plain name gets (host_device for a device, else file). */
const struct qimg_driver *qimg_file_probe_protocol(const char *filename);
extern const struct qimg_driver qimg_raw_driver;
extern const struct qimg_driver qimg_blkdebug_driver;
extern const struct qimg_driver qimg_powerfail_driver;
extern const struct qimg_driver qimg_null_co_driver;
extern const struct qimg_driver qimg_null_aio_driver;
extern const struct qimg_driver qimg_vvfat_driver;
extern const struct qimg_driver qimg_qcow2_driver;
extern const struct qimg_driver qimg_vdi_driver;
extern const struct qimg_driver qimg_vpc_driver;
extern const struct qimg_driver qimg_vhdx_driver;
extern const struct qimg_driver qimg_cloop_driver;
extern const struct qimg_driver qimg_bochs_driver;
extern const struct qimg_driver qimg_dmg_driver;
extern const struct qimg_driver qimg_parallels_driver;
extern const struct qimg_driver qimg_qcow1_driver;
extern const struct qimg_driver qimg_vmdk_driver;
extern const struct qimg_driver qimg_qed_driver;
extern const struct qimg_driver qimg_luks_driver;
/* src/filters/: block filters over a "file" child */
extern const struct qimg_driver qimg_copy_on_read_driver;
extern const struct qimg_driver qimg_preallocate_driver;
extern const struct qimg_driver qimg_compress_driver;
extern const struct qimg_driver qimg_throttle_driver;
extern const struct qimg_driver qimg_blkverify_driver;
extern const struct qimg_driver qimg_quorum_driver;
extern const struct qimg_driver qimg_blklogwrites_driver;
extern const struct qimg_driver qimg_nbd_driver; /* with libnbd */
extern const struct qimg_driver qimg_http_driver; /* these four with libcurl */
extern const struct qimg_driver qimg_https_driver;
extern const struct qimg_driver qimg_ftp_driver;
extern const struct qimg_driver qimg_ftps_driver;
extern const struct qimg_driver qimg_ssh_driver; /* with libssh */
extern const struct qimg_driver qimg_iscsi_driver; /* with libiscsi */
extern const struct qimg_driver qimg_iser_driver;  /* with libiscsi */
extern const struct qimg_driver qimg_nfs_driver;   /* with libnfs */
extern const struct qimg_driver qimg_gluster_driver; /* with libgfapi */
extern const struct qimg_driver qimg_rbd_driver; /* with librbd */

void qimg_register_builtin_drivers(void);

#endif
