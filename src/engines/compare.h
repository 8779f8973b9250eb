/* SPDX-License-Identifier: MIT */
#ifndef QIMG_ENGINES_COMPARE_H
#define QIMG_ENGINES_COMPARE_H

#include "qimg/qimg.h"

#endif
