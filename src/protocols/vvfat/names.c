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
#include <stdlib.h>
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

static uint32_t hash_bytes(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* The slot of index holding an entry with short name `name`, or the empty slot for it. */
static size_t index_slot(const struct vvfat_dir_table *t, const uint8_t *name)
{
    size_t mask = t->index_cap - 1;
    for (size_t i = hash_bytes(name, 11) & mask;; i = (i + 1) & mask) {
        uint32_t v = t->index[i];
        if (!v || !memcmp(t->bytes + (size_t)(v - 1) * VVFAT_DIRENT, name, 11))
            return i;
    }
}

static void index_insert(struct vvfat_dir_table *t, size_t entry)
{
    if (2 * (t->index_used + 1) > t->index_cap) {
        uint32_t *old = t->index;
        size_t old_cap = t->index_cap;
        t->index_cap = old_cap ? old_cap * 2 : 1024;
        t->index = xcalloc(t->index_cap, sizeof(*t->index));
        for (size_t i = 0; i < old_cap; i++)
            if (old[i])
                t->index[index_slot(t, t->bytes + (size_t)(old[i] - 1) * VVFAT_DIRENT)] = old[i];
        free(old);
    }
    size_t slot = index_slot(t, vvfat_dirent(t, entry));
    if (!t->index[slot]) { /* a duplicate (never made here) changes nothing */
        t->index[slot] = (uint32_t)(entry + 1);
        t->index_used++;
    }
}

/* The tail record of base key (created with next = start); valid until the next call. */
static struct vvfat_tail *tail_find(struct vvfat_dir_table *t, const uint8_t key[12],
                                    uint32_t start)
{
    if (2 * (t->tails_used + 1) > t->tails_cap) {
        struct vvfat_tail *old = t->tails;
        size_t old_cap = t->tails_cap;
        t->tails_cap = old_cap ? old_cap * 2 : 256;
        t->tails = xcalloc(t->tails_cap, sizeof(*t->tails));
        t->tails_used = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].next)
                *tail_find(t, old[i].key, old[i].next) = old[i];
        free(old);
    }
    size_t mask = t->tails_cap - 1;
    size_t i = hash_bytes(key, 12) & mask;
    while (t->tails[i].next && memcmp(t->tails[i].key, key, 12))
        i = (i + 1) & mask;
    if (!t->tails[i].next) {
        memcpy(t->tails[i].key, key, 12);
        t->tails[i].next = start + 1; /* stored plus one: 0 marks a free slot */
        t->tails_used++;
    }
    return &t->tails[i];
}

/* Index the 8.3 entries of the directory starting at dir_start, up to entry self. */
static void index_sync(struct vvfat_dir_table *t, size_t dir_start, size_t self)
{
    if (!t->index || t->index_dir != dir_start) {
        vvfat_names_index_free(t);
        t->index_dir = t->index_upto = dir_start;
    }
    for (; t->index_upto < self; t->index_upto++)
        if (vvfat_dirent(t, t->index_upto)[DIRENT_ATTR] != ATTR_LFN)
            index_insert(t, t->index_upto);
    if (!t->index) { /* an empty directory so far */
        t->index_cap = 1024;
        t->index = xcalloc(t->index_cap, sizeof(*t->index));
    }
}

void vvfat_names_index_free(struct vvfat_dir_table *t)
{
    free(t->index);
    free(t->tails);
    t->index = NULL;
    t->tails = NULL;
    t->index_cap = t->index_used = t->tails_cap = t->tails_used = 0;
}

/*
 * Fill the short name of entry self: the base, then with "~N" tails (N from 1
 * when the base lost characters) until no earlier entry of its directory has
 * it. Names are only ever added, so a tail found taken stays taken: the search
 * for a base resumes where the last one for that base stopped.
 */
static void make_short_name(struct vvfat_dir_table *t, size_t dir_start, size_t self,
                            const char *name)
{
    uint8_t *e = vvfat_dirent(t, self);
    uint8_t key[12];
    bool lossy = short_name_base(name, e);
    memcpy(key, e, 11);
    key[11] = lossy;
    index_sync(t, dir_start, self);
    size_t base_len = 0;
    while (base_len < 8 && e[base_len] != ' ')
        base_len++;
    struct vvfat_tail *tail = tail_find(t, key, lossy ? 1 : 0);
    uint32_t n;
    for (n = tail->next - 1; n < SHORT_TAIL_MAX; n++) {
        if (n > 0) {
            char text[8];
            size_t len = (size_t)snprintf(text, sizeof(text), "~%u", n);
            size_t at = base_len < 8 - len ? base_len : 8 - len;
            memcpy(e + at, text, len);
        }
        if (!t->index[index_slot(t, e)])
            break;
    }
    tail->next = n + 1;
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
