/* SPDX-License-Identifier: MIT */
/*
 * Directory entry names: the VFAT long-name entries (the name in UTF-16,
 * 13 units each, last part first) and the 8.3 short name QEMU derives from
 * it (Microsoft FAT spec, "FAT Long Directory Entries"; the short name
 * rules are QEMU 9.1's: upper case, the last dot starts the extension,
 * leading dots and characters outside [0-9A-Z$%'-_@~`!(){}^#&] are dropped,
 * and a "~N" tail is added when anything was lost or the name is taken).
 */
#include <stdio.h>
#include <string.h>

#include "protocols/vvfat/vvfat.h"
#include "util/bytes.h"
#include "util/mem.h"

#define LFN_UNITS 13 /* UTF-16 units per long-name entry */
#define SHORT_TAIL_MAX 999999

size_t vvfat_dir_append(struct vvfat_dir_table *t)
{
    if (t->count == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 256;
        t->bytes = xrealloc(t->bytes, t->cap * VVFAT_DIRENT);
    }
    memset(vvfat_dirent(t, t->count), 0, VVFAT_DIRENT);
    return t->count++;
}

/* The next code point of UTF-8 s at *i (advancing it), or -1 for a bad sequence (one byte). */
static long utf8_next(const char *s, size_t *i)
{
    const unsigned char *p = (const unsigned char *)s + *i;
    int extra = p[0] < 0x80 ? 0 : p[0] >= 0xf0 && p[0] < 0xf5 ? 3 : p[0] >= 0xe0 ? 2
                                                                : p[0] >= 0xc2 ? 1 : -1;
    if (extra < 0) {
        (*i)++;
        return -1;
    }
    long c = extra ? p[0] & (0x3f >> extra) : p[0];
    for (int k = 1; k <= extra; k++) {
        if ((p[k] & 0xc0) != 0x80) {
            (*i)++;
            return -1;
        }
        c = (c << 6) | (p[k] & 0x3f);
    }
    *i += (size_t)extra + 1;
    if ((extra == 2 && c < 0x800) || (extra == 3 && c < 0x10000))
        return -1; /* overlong */
    return c;
}

/* A character as the short name keeps it (upper case), or 0 when it has no place there. */
static uint8_t short_char(long c)
{
    if (c >= 'a' && c <= 'z')
        c -= 'a' - 'A';
    else if (c == 0x131) /* dotless i and long s have ASCII capitals */
        c = 'I';
    else if (c == 0x17f)
        c = 'S';
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'))
        return (uint8_t)c;
    if (c > 0 && c < 0x80 && strchr("$%'-_@~`!(){}^#&", (int)c))
        return (uint8_t)c;
    return 0;
}

/* The 8.3 name (space padded) of name; true when something of the name was lost. */
static bool short_name_base(const char *name, uint8_t out[11])
{
    memset(out, ' ', 11);
    bool lossy = false;
    size_t last_dot = 0, i = 0, j = 0;
    bool have_dot = false;
    while (name[i]) {
        size_t at = i;
        long c = utf8_next(name, &i);
        if (c == '.') {
            if (j == 0) { /* a dot before any kept character: dropped */
                lossy = true;
                continue;
            }
            lossy |= have_dot;
            have_dot = true;
            last_dot = at;
        } else if (!have_dot) {
            uint8_t v = short_char(c);
            if (j < 8 && v)
                out[j++] = v;
            else
                lossy = true;
        }
    }
    if (have_dot) {
        i = last_dot + 1;
        for (j = 0; name[i];) {
            uint8_t v = short_char(utf8_next(name, &i));
            if (j < 3 && v)
                out[8 + j++] = v;
            else
                lossy = true;
        }
    }
    return lossy;
}

static bool short_name_taken(struct vvfat_dir_table *t, size_t dir_start, size_t self)
{
    const uint8_t *mine = vvfat_dirent(t, self);
    for (size_t k = dir_start; k < self; k++) {
        const uint8_t *e = vvfat_dirent(t, k);
        if (e[DIRENT_ATTR] != ATTR_LFN && !memcmp(e, mine, 11))
            return true;
    }
    return false;
}

/* Fill the short name of entry self, adding "~N" until it is unique in its directory. */
static void make_short_name(struct vvfat_dir_table *t, size_t dir_start, size_t self,
                            const char *name)
{
    uint8_t *e = vvfat_dirent(t, self);
    bool lossy = short_name_base(name, e);
    size_t base_len = 0;
    while (base_len < 8 && e[base_len] != ' ')
        base_len++;
    for (unsigned n = lossy ? 1 : 0; n < SHORT_TAIL_MAX; n++) {
        if (n > 0) {
            char tail[8];
            size_t len = (size_t)snprintf(tail, sizeof(tail), "~%u", n);
            size_t at = base_len < 8 - len ? base_len : 8 - len;
            memcpy(e + at, tail, len);
        }
        if (!short_name_taken(t, dir_start, self))
            return;
    }
}

/* name as UTF-16 units into out (cap units); the count, or 0 when name is not UTF-8. */
static size_t utf16_units(const char *name, uint16_t *out, size_t cap)
{
    size_t n = 0, i = 0;
    while (name[i]) {
        long c = utf8_next(name, &i);
        if (c < 0 || (c >= 0xd800 && c < 0xe000) || c > 0x10ffff || n + 2 > cap)
            return 0;
        if (c >= 0x10000) {
            out[n++] = (uint16_t)(0xd800 + ((c - 0x10000) >> 10));
            out[n++] = (uint16_t)(0xdc00 + ((c - 0x10000) & 0x3ff));
        } else {
            out[n++] = (uint16_t)c;
        }
    }
    return n;
}

static const uint8_t lfn_offsets[LFN_UNITS] = {1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30};

/* The long-name entries of name, last part first; how many. */
static size_t add_long_name(struct vvfat_dir_table *t, const char *name)
{
    uint16_t units[1024];
    size_t len = utf16_units(name, units, sizeof(units) / sizeof(units[0]));
    if (!len) /* QEMU says so and gives the entry no long name */
        qimg_report_bare("vvfat: invalid UTF-8 name: %s", name);
    size_t count = (len + LFN_UNITS - 1) / LFN_UNITS;
    for (size_t k = 0; k < count; k++) {
        uint8_t *e = vvfat_dirent(t, vvfat_dir_append(t));
        size_t part = count - 1 - k;
        e[0] = (uint8_t)((part + 1) | (k == 0 ? 0x40 : 0));
        e[DIRENT_ATTR] = ATTR_LFN;
        for (size_t u = 0; u < LFN_UNITS; u++) {
            size_t pos = part * LFN_UNITS + u;
            uint16_t v = pos < len ? units[pos] : pos == len ? 0 : 0xffff;
            qimg_put_le16(e + lfn_offsets[u], v);
        }
    }
    return count;
}

/* Long-name entries carry this sum of their 8.3 name. */
static uint8_t short_name_checksum(const uint8_t *name)
{
    uint8_t sum = 0;
    for (int i = 0; i < 11; i++)
        sum = (uint8_t)(((sum & 1) << 7) + (sum >> 1) + name[i]);
    return sum;
}

size_t vvfat_add_named_entry(struct vvfat_dir_table *t, size_t dir_start, const char *name)
{
    size_t first_long = t->count;
    size_t nlong = add_long_name(t, name);
    size_t self = vvfat_dir_append(t);
    make_short_name(t, dir_start, self, name);
    uint8_t sum = short_name_checksum(vvfat_dirent(t, self));
    for (size_t k = 0; k < nlong; k++)
        vvfat_dirent(t, first_long + k)[13] = sum;
    return self;
}
