/* SPDX-License-Identifier: MIT */
#include "core/builtin.h"

void qimg_register_builtin_drivers(void)
{
    qimg_driver_register(&qimg_file_driver);
    qimg_driver_register(&qimg_raw_driver);
    qimg_driver_register(&qimg_blkdebug_driver);
    qimg_driver_register(&qimg_null_co_driver);
    qimg_driver_register(&qimg_null_aio_driver);
    qimg_driver_register(&qimg_qcow2_driver);
#ifdef QIMG_HAVE_LIBNBD
    qimg_driver_register(&qimg_nbd_driver);
#endif
}
