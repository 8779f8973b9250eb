/* SPDX-License-Identifier: MIT */
/*
 * On-demand loading of the network client libraries (doc/network-storage.md).
 *
 * qimg does not link librbd, libgfapi, libcurl, libnbd, libssh, libiscsi or libnfs: linking
 * them costs every process ~100 ms of CPU before main() (their dependencies and static
 * constructors). A driver includes its lazy-*.h header instead of the library's own; that
 * header declares a table of function pointers and #defines each function the driver calls
 * to the table's entry, so the driver's code reads as direct calls. The driver's entry points
 * (open, create) call the header's lazy_*_load() first, which dlopen()s the library once per
 * process and resolves every entry; a failure is an ordinary error of that open or create.
 *
 * When the library's soname could not be found at configure time (QIMG_SONAME_LIB* is not
 * defined), the lazy-*.h header only includes the library's headers, lazy_*_load() succeeds
 * and the build links the library directly, as before.
 */
#ifndef QIMG_PROTOCOLS_LAZYLIB_H
#define QIMG_PROTOCOLS_LAZYLIB_H

#include <stdatomic.h>
#include <stddef.h>

#include "qimg/error.h"

struct lazylib {
    const char *soname;       /* what dlopen() is given, e.g. "librbd.so.1" */
    const char *const *names; /* the symbols, in the order of the table's fields */
    void *table;              /* a struct of n function pointers, filled by lazylib_load */
    size_t n;
    /* Filled by lazylib_load: */
    atomic_int state; /* 0 not tried yet, 1 loaded, -1 failed (code and msg say why) */
    int code;
    char msg[512];
};

/*
 * Load lib->soname (once per process; thread-safe) and resolve every name into its slot.
 * Returns 0, or a negative errno with "Could not load SONAME: REASON" in err; a later call
 * returns the same error without trying again.
 */
int lazylib_load(struct lazylib *lib, struct qimg_error *err);

/* For the lazy-*.h headers: one field of the table, and one name of the list. */
#define LAZYLIB_FIELD(fn) __typeof__(fn) *fn;
#define LAZYLIB_NAME(fn) #fn,

/*
 * Define the table `lazy_TAG` and its descriptor `lazy_TAG_lib` (in exactly one .c file per
 * library). LIST is the header's X-macro of the library's functions.
 */
#define LAZYLIB_DEFINE(tag, soname_, LIST)                                                      \
    struct lazy_##tag##_syms lazy_##tag;                                                        \
    static const char *const lazy_##tag##_names[] = {LIST(LAZYLIB_NAME)};                       \
    struct lazylib lazy_##tag##_lib = {                                                         \
        .soname = soname_,                                                                      \
        .names = lazy_##tag##_names,                                                            \
        .table = &lazy_##tag,                                                                   \
        .n = sizeof lazy_##tag##_names / sizeof lazy_##tag##_names[0],                          \
    };                                                                                          \
    _Static_assert(sizeof lazy_##tag == sizeof lazy_##tag##_names / sizeof(char *) * sizeof(void (*)(void)), \
                   "lazy_" #tag ": one table field per name")

#endif
