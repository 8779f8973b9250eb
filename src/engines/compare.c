/* SPDX-License-Identifier: MIT */
/* The compare engine (being implemented). */
#include "engines/compare.h"
