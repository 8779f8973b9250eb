/* SPDX-License-Identifier: MIT */
/* Sizes as qemu-img reads and prints them. */
#ifndef QIMG_UNITS_H
#define QIMG_UNITS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QIMG_KiB (1ULL << 10)
#define QIMG_MiB (1ULL << 20)
#define QIMG_GiB (1ULL << 30)
#define QIMG_TiB (1ULL << 40)

/*
 * Parse a size as qemu 9.1 does: an optional b/k/K/M/G/T/P/E suffix (powers of 1024);
 * fractions with a unit above a byte ("1.5G", ".5k"; rounded to the byte) or zero
 * fractions ("1024.0"). Returns 0, -EINVAL (malformed) or -ERANGE (too big or negative).
 * default_unit multiplies a number with no suffix (1 for bytes).
 */
int qimg_parse_size(const char *str, uint64_t default_unit, uint64_t *out);
/* Strict unsigned decimal/hex/octal integer (no suffix). */
int qimg_parse_uint(const char *str, uint64_t *out);
/*
 * A QemuOpts number as qemu reads it (strtoull, base 0): leading white space and a sign are
 * accepted, "-1" wraps to UINT64_MAX. Returns 0, -EINVAL or -ERANGE (beyond 64 bits).
 */
int qimg_parse_number(const char *str, uint64_t *out);

/* "1 GiB", "196 KiB", "1.5 MiB": qemu's size_to_str (3 significant digits). */
void qimg_size_to_str(uint64_t bytes, char *buf, size_t len);
/* qemu-io's cvtstr: "512 bytes", "1.500 KiB", "2 MiB" (three decimals, ".000" dropped). */
void qimg_cvtstr(double value, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
