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

int qimg_parse_number(const char *str, uint64_t *out)
{
    if (!str)
        return -EINVAL;
    const char *p = str;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '+' || *p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return -EINVAL; /* strtoull would skip more spaces and signs here */
    char *end;
    errno = 0;
    unsigned long long v = strtoull(str, &end, 0);
    if (errno == ERANGE)
        return -ERANGE;
    if (*end)
        return -EINVAL;
    *out = v;
    return 0;
}

/* The digits after a decimal point ("5" of "1.5k") as a fraction in [0, 1]. */
static const char *parse_fraction(const char *p, double *fraction)
{
    size_t n = strspn(p, "0123456789");
    *fraction = 0;
    if (n) {
        char *digits = strndup(p - 1, n + 1); /* ".5": strtod rounds it correctly */
        if (digits)
            *fraction = strtod(digits, NULL);
        free(digits);
    }
    return p + n;
}

/*
 * qemu 9.1's qemu_strtosz, as observed: leading white space and '+' are skipped, a leading
 * '-' (even "-0") is out of range; hex ("0x400") takes neither a fraction nor a suffix
 * (7.2 accepted "0x400k" with a deprecation warning); a decimal may have a fraction, even
 * with no digit before or after the point (".5k", "1."), which is rounded to the nearest
 * byte; a non-zero fraction of a byte ("1.5", "1.5b") is invalid, a zero one ("1024.0",
 * "1024.0b") is not.
 */
int qimg_parse_size(const char *str, uint64_t default_unit, uint64_t *out)
{
    const char *p = str;
    if (!p)
        return -EINVAL;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '-')
        return -ERANGE;
    if (*p == '+')
        p++;

    char *e;
    unsigned long long whole = 0;
    errno = 0;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        if (!isxdigit((unsigned char)p[2]))
            return -EINVAL;
        whole = strtoull(p + 2, &e, 16);
        if (errno == ERANGE)
            return -ERANGE;
        if (*e)
            return -EINVAL;
        if (default_unit > 1 && whole > UINT64_MAX / default_unit)
            return -ERANGE;
        *out = whole * (default_unit ? default_unit : 1);
        return 0;
    }

    const char *end = p;
    bool has_int = isdigit((unsigned char)*p);
    if (has_int) {
        whole = strtoull(p, &e, 10);
        if (errno == ERANGE)
            return -ERANGE;
        end = e;
    }
    double fraction = 0;
    bool has_fraction = *end == '.';
    if (has_fraction) {
        if (!has_int && !isdigit((unsigned char)end[1]))
            return -EINVAL;
        end = parse_fraction(end + 1, &fraction);
    } else if (!has_int) {
        return -EINVAL;
    }

    uint64_t mul = default_unit;
    if (*end) {
        int shift = suffix_shift(*end);
        if (shift < 0 || end[1])
            return -EINVAL;
        mul = 1ULL << shift;
    }
    if (mul == 0)
        mul = 1;
    if (fraction != 0 && mul == 1)
        return -EINVAL;
    if (whole > UINT64_MAX / mul)
        return -ERANGE;
    uint64_t val = whole * mul;
    if (fraction != 0) {
        double extra = fraction * (double)mul + 0.5;
        if ((double)val + extra >= 18446744073709551616.0)
            return -ERANGE;
        uint64_t add = (uint64_t)extra;
        if (add > UINT64_MAX - val)
            return -ERANGE;
        val += add;
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
