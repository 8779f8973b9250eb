/* SPDX-License-Identifier: MIT */
/*
 * libcurl (http.c), loaded on first use (lazylib.h).
 * Include this instead of the library's headers and call lazy_curl_load() in every entry
 * point before the first library call.
 * The list is the driver's undefined symbols the library defines (nm -u); one missing links
 * against the real symbol and the build fails, so the list cannot silently fall short.
 */
#ifndef QIMG_PROTOCOLS_LAZY_CURL_H
#define QIMG_PROTOCOLS_LAZY_CURL_H

/* curl.h's type-checking wrappers are macros named like the functions this header defines. */
#ifdef QIMG_SONAME_LIBCURL
#define CURL_DISABLE_TYPECHECK 1
#endif
#include <curl/curl.h>

#include "protocols/lazylib.h"

#ifdef QIMG_SONAME_LIBCURL
#define LAZY_CURL_SYMS(X) \
    X(curl_easy_cleanup) X(curl_easy_getinfo) X(curl_easy_init) X(curl_easy_perform) \
    X(curl_easy_setopt) X(curl_easy_strerror) X(curl_global_init)

extern struct lazy_curl_syms {
    LAZY_CURL_SYMS(LAZYLIB_FIELD)
} lazy_curl;
extern struct lazylib lazy_curl_lib;

#define curl_easy_cleanup  (lazy_curl.curl_easy_cleanup)
#undef curl_easy_getinfo /* the header's own wrapper macro */
#define curl_easy_getinfo  (lazy_curl.curl_easy_getinfo)
#define curl_easy_init     (lazy_curl.curl_easy_init)
#define curl_easy_perform  (lazy_curl.curl_easy_perform)
#undef curl_easy_setopt /* the header's own wrapper macro */
#define curl_easy_setopt   (lazy_curl.curl_easy_setopt)
#define curl_easy_strerror (lazy_curl.curl_easy_strerror)
#define curl_global_init   (lazy_curl.curl_global_init)
#endif

/* Loads the library (once); 0, or a negative errno with the reason in err. */
static inline int lazy_curl_load(struct qimg_error *err)
{
#ifdef QIMG_SONAME_LIBCURL
    int r_curl = lazylib_load(&lazy_curl_lib, err);
    if (r_curl < 0)
        return r_curl;
#endif
    (void)err;
    return 0;
}

#endif
