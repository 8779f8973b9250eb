/* SPDX-License-Identifier: MIT */
/* Allocation that aborts on exhaustion: metadata sizes are capped before allocating. */
#ifndef QIMG_UTIL_MEM_H
#define QIMG_UTIL_MEM_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Aligned buffer for O_DIRECT-capable I/O; free with free(). NULL on failure. */
void *qimg_alloc_aligned(size_t size);

/*
 * Malloc tuning is the program's policy, not the library's: a driver whose
 * client library allocates large transient buffers (librbd) announces it with
 * qimg_mem_want_large_buffers(), and the program's hook, if it set one,
 * decides what to do (qimg and qimg-io raise glibc's mmap threshold).
 */
void qimg_mem_set_large_buffer_hook(void (*hook)(void));
void qimg_mem_want_large_buffers(void);

#endif
