/* SPDX-License-Identifier: MIT */
/*
 * Zero detection: a quick look at the first 16 bytes rejects most data, then
 * an 8-byte-word OR reduction that the compiler vectorises (qemu-behaviour-facts.md,
 * "Zero detection").
 */
#include <stdint.h>
#include <string.h>

#include "util/zero.h"

bool qimg_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    size_t head = len < 16 ? len : 16;
    for (size_t i = 0; i < head; i++)
        if (p[i])
            return false;
    p += head;
    len -= head;
    while (len && ((uintptr_t)p & 7)) {
        if (*p)
            return false;
        p++;
        len--;
    }
    const uint64_t *w = (const uint64_t *)(const void *)p;
    size_t words = len / 8;
    for (size_t i = 0; i + 8 <= words; i += 8) {
        uint64_t acc = w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] |
                       w[i + 7];
        if (acc)
            return false;
    }
    for (size_t i = words & ~(size_t)7; i < words; i++)
        if (w[i])
            return false;
    p += words * 8;
    len -= words * 8;
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

size_t qimg_zero_run(const void *buf, size_t len, size_t gran, bool want_zero)
{
    const unsigned char *p = buf;
    size_t off = 0;
    if (gran == 0)
        gran = len;
    while (off < len) {
        size_t n = len - off < gran ? len - off : gran;
        if (qimg_is_zero(p + off, n) != want_zero)
            break;
        off += n;
    }
    return off;
}
