/* SPDX-License-Identifier: MIT */
/* On-demand loading of a client library: lazylib.h. */
#include "protocols/lazylib.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* Serialises first loads; loads are rare (once per library and process). */
static pthread_mutex_t lazylib_lock = PTHREAD_MUTEX_INITIALIZER;

static void lazylib_fail(struct lazylib *lib, int code, const char *reason)
{
    lib->code = code;
    snprintf(lib->msg, sizeof lib->msg, "Could not load %s: %s", lib->soname,
             reason ? reason : "unknown error");
}

static void lazylib_try(struct lazylib *lib)
{
    dlerror();
    void *handle = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        lazylib_fail(lib, -ENOENT, dlerror());
        return;
    }
    /* The table is n function pointers in a row; dlsym's void * is stored into each. */
    _Static_assert(sizeof(void *) == sizeof(void (*)(void)), "function pointers fit void *");
    char *slot = lib->table;
    for (size_t i = 0; i < lib->n; i++, slot += sizeof(void *)) {
        dlerror();
        void *sym = dlsym(handle, lib->names[i]);
        const char *why = dlerror();
        if (why || !sym) {
            lazylib_fail(lib, -ENOSYS, why ? why : "symbol is NULL");
            memset(lib->table, 0, lib->n * sizeof(void *));
            dlclose(handle);
            return;
        }
        memcpy(slot, &sym, sizeof sym);
    }
    lib->code = 0; /* the handle stays open for the process's life */
}

int lazylib_load(struct lazylib *lib, struct qimg_error *err)
{
    int state = atomic_load_explicit(&lib->state, memory_order_acquire);
    if (state == 0) {
        pthread_mutex_lock(&lazylib_lock);
        state = atomic_load_explicit(&lib->state, memory_order_relaxed);
        if (state == 0) {
            lazylib_try(lib);
            state = lib->code == 0 ? 1 : -1;
            atomic_store_explicit(&lib->state, state, memory_order_release);
        }
        pthread_mutex_unlock(&lazylib_lock);
    }
    if (state > 0)
        return 0;
    return qimg_error_set(err, lib->code, "%s", lib->msg);
}
