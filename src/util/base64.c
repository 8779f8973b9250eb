/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>

#include "util/base64.h"
#include "util/mem.h"

static int sextet(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int qimg_base64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len,
                       struct qimg_error *err)
{
    for (size_t i = 0; i < len; i++)
        if (sextet(in[i]) < 0 && in[i] != '=' && in[i] != '\n')
            return qimg_error_set(err, -EINVAL, "Base64 data contains invalid characters");
    qimg_base64_decode_lenient(in, len, out, out_len);
    return 0;
}

void qimg_base64_decode_lenient(const char *in, size_t len, uint8_t **out, size_t *out_len)
{
    uint8_t *buf = xmalloc(len / 4 * 3 + 1);
    size_t n = 0, have = 0, pad = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        int v = in[i] == '=' ? 0 : sextet(in[i]);
        if (v < 0)
            continue; /* a line break (or, lenient, anything outside the alphabet) */
        /* '=' in the third or fourth place pads the group; earlier it is a zero sextet. */
        if (in[i] == '=' && have >= 2)
            pad++;
        acc = acc << 6 | (uint32_t)v;
        if (++have == 4) {
            uint8_t group[3] = {(uint8_t)(acc >> 16), (uint8_t)(acc >> 8), (uint8_t)acc};
            for (size_t k = 0; k < 3 - pad; k++)
                buf[n++] = group[k];
            have = pad = 0;
            acc = 0;
        }
    }
    buf[n] = 0;
    *out = buf;
    *out_len = n;
}
