/* SPDX-License-Identifier: MIT */
/* The copy engine (being implemented). */
#include "engines/copy.h"
