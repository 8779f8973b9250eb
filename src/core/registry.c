/* SPDX-License-Identifier: MIT */
/*
 * The driver registry: the only global mutable state, written once when the
 * built-in drivers register. That happens on the first lookup (or qimg_init),
 * so a library user needs no init call (issue 21).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "qimg/driver.h"
#include "qimg/qimg.h"
#include "core/builtin.h"

#define MAX_DRIVERS 64

static const struct qimg_driver *drivers[MAX_DRIVERS];
static size_t n_drivers;
static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;

static void ensure_builtin_drivers(void)
{
    pthread_once(&builtin_once, qimg_register_builtin_drivers);
}

void qimg_driver_register(const struct qimg_driver *drv)
{
    for (size_t i = 0; i < n_drivers; i++)
        if (drivers[i] == drv)
            return;
    if (n_drivers < MAX_DRIVERS)
        drivers[n_drivers++] = drv;
}

const struct qimg_driver *qimg_driver_find(const char *name)
{
    ensure_builtin_drivers();
    for (size_t i = 0; name && i < n_drivers; i++)
        if (strcmp(drivers[i]->name, name) == 0)
            return drivers[i];
    return NULL;
}

/* "proto:rest" names a protocol when the colon comes before any '/' (QEMU's rule). */
size_t qimg_protocol_prefix_len(const char *filename)
{
    size_t n = strcspn(filename, ":/");
    return filename[n] == ':' ? n : 0;
}

const struct qimg_driver *qimg_driver_find_protocol(const char *filename)
{
    ensure_builtin_drivers();
    const char *colon = strchr(filename, ':');
    if (!colon)
        return NULL;
    /* A '/' before the colon means a path such as "./a:b", not a protocol. */
    const char *slash = strchr(filename, '/');
    if (slash && slash < colon)
        return NULL;
    size_t len = (size_t)(colon - filename);
    for (size_t i = 0; i < n_drivers; i++) {
        const char *prefix = drivers[i]->protocol_prefix;
        if (prefix && strlen(prefix) == len && strncmp(prefix, filename, len) == 0)
            return drivers[i];
        for (const char *const *a = drivers[i]->protocol_aliases; a && *a; a++)
            if (strlen(*a) == len && strncmp(*a, filename, len) == 0)
                return drivers[i];
    }
    return NULL;
}

static int driver_cmp(const void *a, const void *b)
{
    const struct qimg_driver *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

void qimg_driver_foreach(void (*fn)(const struct qimg_driver *drv, void *ctx), void *ctx)
{
    ensure_builtin_drivers();
    const struct qimg_driver *sorted[MAX_DRIVERS];
    memcpy(sorted, drivers, n_drivers * sizeof(*sorted));
    qsort(sorted, n_drivers, sizeof(*sorted), driver_cmp);
    for (size_t i = 0; i < n_drivers; i++)
        fn(sorted[i], ctx);
}

void qimg_init(void)
{
    ensure_builtin_drivers();
}
