/* SPDX-License-Identifier: MIT */
/* Base64 (RFC 4648 section 4) decoding for secrets and dmg block tables. */
#ifndef QIMG_UTIL_BASE64_H
#define QIMG_UTIL_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "qimg/error.h"

/*
 * Decode len characters of base64 into a new buffer (*out, *out_len; *out is
 * NUL-terminated for callers that want a string). Only the alphabet, '=' and
 * newlines are allowed ("Base64 data contains invalid characters"
 * otherwise, QEMU's wording). As in the glib decoder QEMU uses, data is
 * read in groups of four characters: '=' in a group's third or fourth place
 * drops a byte of it, and a last group shorter than four characters yields
 * nothing ("YWI=" is "ab", "YWI" is empty).
 */
int qimg_base64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len,
                       struct qimg_error *err);
/*
 * The same decoding, skipping every character outside the alphabet as glib's
 * g_base64_decode does (QEMU reads dmg's plist <data> that way).
 */
void qimg_base64_decode_lenient(const char *in, size_t len, uint8_t **out, size_t *out_len);

#endif
