/* SPDX-License-Identifier: MIT */
#ifndef QIMG_UTIL_THREADPOOL_H
#define QIMG_UTIL_THREADPOOL_H

#endif
