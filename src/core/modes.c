/* SPDX-License-Identifier: MIT */
/* Names of preallocation and cache modes, as qemu-img accepts them. */
#include <errno.h>
#include <string.h>

#include "qimg/node.h"

static const char *const prealloc_names[] = {
    [QIMG_PREALLOC_OFF] = "off",
    [QIMG_PREALLOC_METADATA] = "metadata",
    [QIMG_PREALLOC_FALLOC] = "falloc",
    [QIMG_PREALLOC_FULL] = "full",
};

int qimg_prealloc_parse(const char *s, enum qimg_prealloc *out)
{
    for (int i = 0; i <= QIMG_PREALLOC_FULL; i++) {
        if (strcmp(s, prealloc_names[i]) == 0) {
            *out = (enum qimg_prealloc)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *qimg_prealloc_name(enum qimg_prealloc p)
{
    return prealloc_names[p];
}

/*
 * QEMU's cache modes: "none" bypasses the host cache (O_DIRECT) with writeback
 * semantics; "writethrough" makes each write stable; "directsync" is both;
 * "unsafe" ignores flushes; "writeback" is the plain default.
 */
int qimg_cache_parse(const char *mode, unsigned *flags_out)
{
    unsigned f = 0;
    if (!strcmp(mode, "none") || !strcmp(mode, "off"))
        f = QIMG_O_NOCACHE;
    else if (!strcmp(mode, "directsync"))
        f = QIMG_O_NOCACHE | QIMG_O_WRITETHROUGH;
    else if (!strcmp(mode, "writeback"))
        f = 0;
    else if (!strcmp(mode, "unsafe"))
        f = QIMG_O_NO_FLUSH;
    else if (!strcmp(mode, "writethrough"))
        f = QIMG_O_WRITETHROUGH;
    else
        return -EINVAL;
    *flags_out = f;
    return 0;
}
