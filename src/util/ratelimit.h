/* SPDX-License-Identifier: MIT */
#ifndef QIMG_UTIL_RATELIMIT_H
#define QIMG_UTIL_RATELIMIT_H

#endif
