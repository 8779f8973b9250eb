/* SPDX-License-Identifier: MIT */
/* (being implemented) */
#include "util/threadpool.h"
