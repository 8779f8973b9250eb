/* SPDX-License-Identifier: MIT */
/*
 * Byte primitives for on-disk formats: endian loads and stores on unaligned
 * byte pointers, checked arithmetic for sizes and offsets read from images,
 * and alignment helpers. Header-only and dependency-free so that every format
 * (and the fuzz harnesses) can use them on hot paths.
 *
 * Hostile images (DESIGN.md): every size, count and offset read from an image
 * goes through the checked helpers before it is used to allocate or to seek.
 */
#ifndef QIMG_UTIL_BYTES_H
#define QIMG_UTIL_BYTES_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Endian loads and stores: memcpy compiles to one (possibly byte-swapped) move. */
static inline uint16_t qimg_bswap16(uint16_t v) { return __builtin_bswap16(v); }
static inline uint32_t qimg_bswap32(uint32_t v) { return __builtin_bswap32(v); }
static inline uint64_t qimg_bswap64(uint64_t v) { return __builtin_bswap64(v); }

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define QIMG_TO_LE(bits, v) (v)
#define QIMG_TO_BE(bits, v) qimg_bswap##bits(v)
#else
#define QIMG_TO_LE(bits, v) qimg_bswap##bits(v)
#define QIMG_TO_BE(bits, v) (v)
#endif

#define QIMG_DEFINE_LOAD_STORE(bits)                                                           \
    static inline uint##bits##_t qimg_le##bits(const void *p)                                  \
    {                                                                                          \
        uint##bits##_t v;                                                                      \
        memcpy(&v, p, sizeof(v));                                                              \
        return QIMG_TO_LE(bits, v);                                                            \
    }                                                                                          \
    static inline uint##bits##_t qimg_be##bits(const void *p)                                  \
    {                                                                                          \
        uint##bits##_t v;                                                                      \
        memcpy(&v, p, sizeof(v));                                                              \
        return QIMG_TO_BE(bits, v);                                                            \
    }                                                                                          \
    static inline void qimg_put_le##bits(void *p, uint##bits##_t v)                            \
    {                                                                                          \
        v = QIMG_TO_LE(bits, v);                                                               \
        memcpy(p, &v, sizeof(v));                                                              \
    }                                                                                          \
    static inline void qimg_put_be##bits(void *p, uint##bits##_t v)                            \
    {                                                                                          \
        v = QIMG_TO_BE(bits, v);                                                               \
        memcpy(p, &v, sizeof(v));                                                              \
    }

QIMG_DEFINE_LOAD_STORE(16)
QIMG_DEFINE_LOAD_STORE(32)
QIMG_DEFINE_LOAD_STORE(64)
#undef QIMG_DEFINE_LOAD_STORE

/* Checked arithmetic: true (and *out set) when the result fits, false on overflow. */
static inline bool qimg_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}
static inline bool qimg_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
/* a * b + c, the usual "table base + index * entry size" of a format. */
static inline bool qimg_muladd_u64(uint64_t a, uint64_t b, uint64_t c, uint64_t *out)
{
    uint64_t m;
    return qimg_mul_u64(a, b, &m) && qimg_add_u64(m, c, out);
}
/* Does [off, off + len) lie within [0, limit)? Overflow-safe (len 0 at limit is inside). */
static inline bool qimg_range_within(uint64_t off, uint64_t len, uint64_t limit)
{
    return off <= limit && len <= limit - off;
}

/* Alignment. a must be a power of two for the is_aligned/align_* helpers. */
static inline bool qimg_is_pow2(uint64_t v) { return v && !(v & (v - 1)); }
static inline bool qimg_is_aligned(uint64_t v, uint64_t a) { return (v & (a - 1)) == 0; }
static inline uint64_t qimg_align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }
/* Rounds up; callers whose v comes from an image check v <= UINT64_MAX - (a - 1) first. */
static inline uint64_t qimg_align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
/* Any a > 0, no overflow for any v. */
static inline uint64_t qimg_div_round_up(uint64_t v, uint64_t a) { return v / a + (v % a != 0); }
/* Round up to any multiple a > 0; false when the result would not fit. */
static inline bool qimg_round_up_checked(uint64_t v, uint64_t a, uint64_t *out)
{
    return qimg_mul_u64(qimg_div_round_up(v, a), a, out);
}
static inline uint64_t qimg_min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static inline uint64_t qimg_max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

#endif
