/* SPDX-License-Identifier: MIT */
#include "core/builtin.h"

void qimg_register_builtin_drivers(void)
{
    qimg_driver_register(&qimg_file_driver);
    qimg_driver_register(&qimg_host_device_driver);
    qimg_driver_register(&qimg_host_cdrom_driver);
    qimg_driver_register(&qimg_raw_driver);
    qimg_driver_register(&qimg_blkdebug_driver);
    qimg_driver_register(&qimg_powerfail_driver);
    qimg_driver_register(&qimg_null_co_driver);
    qimg_driver_register(&qimg_null_aio_driver);
    qimg_driver_register(&qimg_vvfat_driver);
    qimg_driver_register(&qimg_qcow2_driver);
    qimg_driver_register(&qimg_vdi_driver);
    qimg_driver_register(&qimg_vpc_driver);
    qimg_driver_register(&qimg_vhdx_driver);
    qimg_driver_register(&qimg_cloop_driver);
    qimg_driver_register(&qimg_bochs_driver);
    qimg_driver_register(&qimg_dmg_driver);
    qimg_driver_register(&qimg_parallels_driver);
    qimg_driver_register(&qimg_qcow1_driver);
    qimg_driver_register(&qimg_vmdk_driver);
    qimg_driver_register(&qimg_qed_driver);
    qimg_driver_register(&qimg_luks_driver);
    qimg_driver_register(&qimg_copy_on_read_driver);
    qimg_driver_register(&qimg_preallocate_driver);
    qimg_driver_register(&qimg_compress_driver);
    qimg_driver_register(&qimg_throttle_driver);
    qimg_driver_register(&qimg_blkverify_driver);
    qimg_driver_register(&qimg_quorum_driver);
    qimg_driver_register(&qimg_blklogwrites_driver);
#ifdef QIMG_HAVE_LIBNBD
    qimg_driver_register(&qimg_nbd_driver);
#endif
#ifdef QIMG_HAVE_LIBCURL
    qimg_driver_register(&qimg_http_driver);
    qimg_driver_register(&qimg_https_driver);
    qimg_driver_register(&qimg_ftp_driver);
    qimg_driver_register(&qimg_ftps_driver);
#endif
#ifdef QIMG_HAVE_LIBSSH
    qimg_driver_register(&qimg_ssh_driver);
#endif
#ifdef QIMG_HAVE_LIBISCSI
    qimg_driver_register(&qimg_iscsi_driver);
    qimg_driver_register(&qimg_iser_driver);
#endif
#ifdef QIMG_HAVE_LIBNFS
    qimg_driver_register(&qimg_nfs_driver);
#endif
#ifdef QIMG_HAVE_LIBGFAPI
    qimg_driver_register(&qimg_gluster_driver);
#endif
#ifdef QIMG_HAVE_LIBRBD
    qimg_driver_register(&qimg_rbd_driver);
#endif
}
