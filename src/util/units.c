/* SPDX-License-Identifier: MIT */
/* Size parsing and printing with qemu's rules (util/cutils.c behaviour, observed). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qimg/units.h"

static int suffix_shift(char c)
{
    switch (c) {
    case 'b': case 'B': return 0;
    case 'k': case 'K': return 10;
    case 'm': case 'M': return 20;
    case 'g': case 'G': return 30;
    case 't': case 'T': return 40;
    case 'p': case 'P': return 50;
    case 'e': case 'E': return 60;
    default: return -1;
    }
}

int qimg_parse_uint(const char *str, uint64_t *out)
{
    if (!str || !*str || isspace((unsigned char)*str) || *str == '-')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(str, &end, 0);
    if (errno == ERANGE)
        return -ERANGE;
    if (end == str || *end)
        return -EINVAL;
    *out = v;
    return 0;
}

int qimg_parse_size(const char *str, uint64_t default_unit, uint64_t *out)
{
    const char *p = str;
    if (!p)
        return -EINVAL;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '-')
        return -ERANGE; /* qemu 9.1 reports negatives as out of range */
    if (!*p)
        return -EINVAL;

    uint64_t whole;
    double fraction = 0;
    const char *end;
    bool hex = (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'));
    errno = 0;
    char *e;
    unsigned long long v = strtoull(p, &e, hex ? 16 : 10);
    if (e == p || (hex && e == p + 2))
        return -EINVAL;
    if (errno == ERANGE)
        return -ERANGE;
    whole = v;
    end = e;
    bool has_fraction = false;
    if (*end == '.' && !hex) {
        char *fe;
        /* parse the fraction part as "0.xyz" */
        char buf[64];
        size_t n = strspn(end + 1, "0123456789");
        if (n == 0 || n > 40)
            return -EINVAL;
        snprintf(buf, sizeof(buf), "0.%.*s", (int)n, end + 1);
        fraction = strtod(buf, &fe);
        end += 1 + n;
        has_fraction = true;
    }
    uint64_t mul = default_unit;
    int shift = *end ? suffix_shift(*end) : -1;
    if (shift >= 0) {
        mul = 1ULL << shift;
        end++;
    } else if (*end) {
        return -EINVAL;
    }
    if (*end)
        return -EINVAL;
    /* A fraction needs a unit bigger than a byte to mean anything. */
    if (has_fraction && mul == 1)
        return -EINVAL;
    if (hex && shift >= 0 && mul != 1 && has_fraction)
        return -EINVAL;
    if (mul != 0 && whole > UINT64_MAX / mul)
        return -ERANGE;
    uint64_t val = whole * mul;
    if (has_fraction) {
        double extra = fraction * (double)mul;
        if ((double)val + extra >= 18446744073709551616.0)
            return -ERANGE;
        val += (uint64_t)extra;
    }
    *out = val;
    return 0;
}

void qimg_size_to_str(uint64_t bytes, char *buf, size_t len)
{
    static const char *const suffixes[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    int exp;
    /* Switch to the next unit once the integer part reaches 1000 (no "1e+03"). */
    frexp((double)bytes / (1000.0 / 1024.0), &exp);
    int i = (exp - 1) / 10;
    if (i < 0)
        i = 0;
    if (i > 6)
        i = 6;
    double div = (double)(1ULL << (i * 10));
    snprintf(buf, len, "%0.3g %sB", (double)bytes / div, suffixes[i]);
}

void qimg_cvtstr(double value, char *buf, size_t len)
{
    static const struct {
        double unit;
        const char *suffix;
    } units[] = {
        {1152921504606846976.0, " EiB"}, {1125899906842624.0, " PiB"},
        {1099511627776.0, " TiB"},       {1073741824.0, " GiB"},
        {1048576.0, " MiB"},             {1024.0, " KiB"},
    };
    const char *suffix = " bytes";
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (value >= units[i].unit) {
            value /= units[i].unit;
            suffix = units[i].suffix;
            break;
        }
    }
    char num[64];
    snprintf(num, sizeof(num), "%.3f", value);
    char *trim = strstr(num, ".000");
    if (trim)
        *trim = '\0';
    snprintf(buf, len, "%s%s", num, suffix);
}
