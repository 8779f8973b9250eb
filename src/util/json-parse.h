/* SPDX-License-Identifier: MIT */
/* Reading JSON as QEMU's parser does (json:{...} filenames); see json-parse.c. */
#ifndef QIMG_UTIL_JSON_PARSE_H
#define QIMG_UTIL_JSON_PARSE_H

#include "qimg/json.h"

/*
 * Parse one JSON value. 0 and *out (NULL when text holds no value at all), or
 * -EINVAL and *errmsg (QEMU's words, e.g. "JSON parse error, stray 'x'"; caller
 * frees). Doubles that are not integers come back as their "%.17g" text.
 */
int qimg_json_parse(const char *text, struct qimg_json **out, char **errmsg);

#endif
