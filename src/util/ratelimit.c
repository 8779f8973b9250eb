/* SPDX-License-Identifier: MIT */
/* (being implemented) */
#include "util/ratelimit.h"
