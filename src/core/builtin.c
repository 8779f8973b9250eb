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
    qimg_driver_register(&qimg_qcow2_driver);
    qimg_driver_register(&qimg_vdi_driver);
    qimg_driver_register(&qimg_luks_driver);
}
