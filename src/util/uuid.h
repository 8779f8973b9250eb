/* SPDX-License-Identifier: MIT */
/*
 * UUIDs: 16 bytes in RFC 4122 order (as qemu prints them). Formats that store
 * the Microsoft GUID layout (VDI, VHDX: first three fields little-endian)
 * convert with qimg_uuid_swap_guid on load and store.
 */
#ifndef QIMG_UTIL_UUID_H
#define QIMG_UTIL_UUID_H

#include <stdbool.h>
#include <stdint.h>

#define QIMG_UUID_STR_LEN 37 /* 36 characters and the NUL */

/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", lower case. */
void qimg_uuid_format(const uint8_t uuid[16], char out[QIMG_UUID_STR_LEN]);
/* Parse that form (either case); -EINVAL for anything else. */
int qimg_uuid_parse(const char *s, uint8_t uuid[16]);
/* A random version 4 UUID (getrandom; falls back to /dev/urandom). */
void qimg_uuid_generate(uint8_t uuid[16]);
bool qimg_uuid_is_null(const uint8_t uuid[16]);
/* RFC 4122 order <-> GUID order (swaps the first three fields' byte order, in place). */
void qimg_uuid_swap_guid(uint8_t uuid[16]);

#endif
