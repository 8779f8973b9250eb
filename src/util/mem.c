/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/mem.h"

static void oom(void)
{
    fputs("qimg: out of memory\n", stderr);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        oom();
    return p;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        oom();
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        oom();
    va_end(ap);
    return s;
}

void *qimg_alloc_aligned(size_t size)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, size ? size : 4096) != 0)
        return NULL;
    return p;
}

static void (*large_buffer_hook)(void);

void qimg_mem_set_large_buffer_hook(void (*hook)(void)) { large_buffer_hook = hook; }

void qimg_mem_want_large_buffers(void)
{
    if (large_buffer_hook)
        large_buffer_hook();
}
