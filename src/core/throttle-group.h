/* SPDX-License-Identifier: MIT */
/* The throttle-group objects --object created (core/object.c), for the throttle filter. */
#ifndef QIMG_CORE_THROTTLE_GROUP_H
#define QIMG_CORE_THROTTLE_GROUP_H

struct qimg_throttle;

/* The group with this id, or NULL when there is none (or the id names another type). */
struct qimg_throttle *qimg_object_throttle_group(const char *id);

#endif
