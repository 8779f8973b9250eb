/* SPDX-License-Identifier: MIT */
#ifndef QIMG_ENGINES_COPY_H
#define QIMG_ENGINES_COPY_H

#include "qimg/qimg.h"

#endif
