/* SPDX-License-Identifier: MIT */
/* The library's version at run time (a program may run against a newer libqimg.so). */
#include "qimg/qimg.h"

const char *qimg_version(void)
{
    return QIMG_VERSION;
}
