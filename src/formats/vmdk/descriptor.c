/* SPDX-License-Identifier: MIT */
/*
 * The VMDK descriptor (vmdk-libyal: "Descriptor file"), read the way
 * qemu-img 9.1 reads it: keys are found by substring search anywhere in the
 * text, extent lines are "ACCESS SECTORS TYPE "NAME" [OFFSET]", lines whose
 * access is not RW or whose type qemu does not know (ZERO among them) are
 * skipped, and a malformed FLAT/VMFS/other line is an error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/vmdk/vmdk.h"
#include "util/mem.h"

#define VMDK_MAX_EXTENTS 65536 /* more lines than a 1 MiB descriptor can hold */

static const char *next_line(const char *s)
{
    const char *nl = strchr(s, '\n');
    return nl ? nl + 1 : s + strlen(s);
}

/* The quoted value of key ("key=\"value\""), as qemu finds it; -1 when absent or too long. */
static int quoted_value(const char *text, const char *key, char *out, size_t cap)
{
    const char *p = strstr(text, key);
    if (!p)
        return -1;
    size_t rest = strlen(p);
    size_t skip = strlen(key) + 2; /* the '=' and '"' qemu assumes */
    if (skip >= rest)
        return -1;
    p += skip;
    const char *q = strchr(p, '"');
    if (!q || (size_t)(q - p) + 1 > cap)
        return -1;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = 0;
    return 0;
}

static bool known_type(const char *t)
{
    static const char *const types[] = {"FLAT", "SPARSE", "VMFS", "VMFSSPARSE", "SESPARSE"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(t, types[i]))
            return true;
    return false;
}

static int invalid_line(const char *p, struct qimg_error *err)
{
    const char *np = next_line(p);
    if (np > p && np[-1] == '\n')
        np--;
    return qimg_error_set(err, -EINVAL, "Invalid extent line: %.*s", (int)(np - p), p);
}

/* One line: 1 an extent, 0 skipped, negative an error. */
static int parse_extent_line(const char *p, struct vmdk_desc_extent *x, struct qimg_error *err)
{
    char access[11];
    int64_t sectors = 0, flat_offset = -1;
    /* sscanf from the line on, as qemu scans it (a field may run into the next lines). */
    int matches = sscanf(p, "%10s %" SCNd64 " %10s \"%511[^\n\r\"]\" %" SCNd64, access, &sectors,
                         x->type, x->fname, &flat_offset);
    if (matches < 4 || strcmp(access, "RW"))
        return 0;
    if (!strcmp(x->type, "FLAT")) {
        if (matches != 5 || flat_offset < 0)
            return invalid_line(p, err);
    } else if (!strcmp(x->type, "VMFS")) {
        if (matches != 4)
            return invalid_line(p, err);
        flat_offset = 0;
    } else if (matches != 4) {
        return invalid_line(p, err);
    }
    if (sectors <= 0 || !known_type(x->type))
        return 0;
    x->sectors = (uint64_t)sectors;
    x->flat_offset = flat_offset < 0 ? 0 : (uint64_t)flat_offset;
    return 1;
}

int vmdk_desc_parse(const char *text, struct vmdk_desc *d, struct qimg_error *err)
{
    memset(d, 0, sizeof(*d));
    if (quoted_value(text, "createType", d->create_type, sizeof(d->create_type)) < 0)
        return qimg_error_set(err, -EINVAL, "invalid VMDK image descriptor");
    size_t cap = 0;
    for (const char *p = text; *p; p = next_line(p)) {
        struct vmdk_desc_extent x;
        memset(&x, 0, sizeof(x));
        int ret = parse_extent_line(p, &x, err);
        if (ret < 0) {
            vmdk_desc_free(d);
            return ret;
        }
        if (ret == 0)
            continue;
        if (d->n_extents == VMDK_MAX_EXTENTS) {
            vmdk_desc_free(d);
            return qimg_error_set(err, -EINVAL, "Too many extents in the VMDK descriptor");
        }
        if (d->n_extents == cap) {
            cap = cap ? cap * 2 : 4;
            d->extents = xrealloc(d->extents, cap * sizeof(*d->extents));
        }
        d->extents[d->n_extents++] = x;
    }
    return 0;
}

void vmdk_desc_free(struct vmdk_desc *d)
{
    free(d->extents);
    free(d->parent_hint);
    memset(d, 0, sizeof(*d));
}

int vmdk_desc_read_cid(const char *text, bool parent, uint32_t *cid)
{
    const char *key = parent ? "parentCID" : "CID";
    const char *p = strstr(text, key);
    if (!p)
        return -EINVAL;
    p += strlen(key) + 1;
    if (p > text + strlen(text))
        return -EINVAL;
    unsigned int v;
    if (sscanf(p, "%x", &v) != 1)
        return -EINVAL;
    *cid = v;
    return 0;
}

/*
 * A descriptor file: comment lines and blank lines (spaces, an optional '\r')
 * before "version=1|2|3" and a line end.
 */
int vmdk_desc_probe(const uint8_t *buf, size_t len)
{
    const char *p = (const char *)buf, *end = p + len;
    while (p < end) {
        if (*p == '#') {
            while (p < end && *p != '\n')
                p++;
            p++;
            continue;
        }
        if (*p == ' ') {
            while (p < end && *p == ' ')
                p++;
            if (p < end && *p == '\r')
                p++;
            if (p == end || *p != '\n')
                return 0;
            p++;
            continue;
        }
        static const char *const lines[] = {"version=1\n",   "version=2\n",   "version=3\n",
                                            "version=1\r\n", "version=2\r\n", "version=3\r\n"};
        for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
            size_t l = strlen(lines[i]);
            if ((size_t)(end - p) >= l && !memcmp(p, lines[i], l))
                return 100;
        }
        return 0;
    }
    return 0;
}
