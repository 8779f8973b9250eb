/* SPDX-License-Identifier: MIT */
/* Unit tests for the on-demand loader of the client libraries (src/protocols/lazylib.h). */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "harness.h"
#include "protocols/lazylib.h"

/* A library that does not exist: the error names it and dlopen's reason, every time. */
static void test_missing_library(void)
{
    static struct {
        size_t (*strlen)(const char *);
    } table;
    static const char *const names[] = {"strlen"};
    static struct lazylib lib = {.soname = "libqimg-no-such-lib.so.9", .names = names,
                                 .table = &table, .n = 1};
    struct qimg_error err = {0};
    CHECK(lazylib_load(&lib, &err) == -ENOENT);
    CHECK(err.code == -ENOENT);
    CHECK(!strncmp(err.msg, "Could not load libqimg-no-such-lib.so.9: ", 41));
    CHECK(strstr(err.msg, "libqimg-no-such-lib.so.9: cannot open shared object file") != NULL);
    CHECK(table.strlen == NULL);
    /* A second call does not try again: the same error. */
    struct qimg_error again = {0};
    CHECK(lazylib_load(&lib, &again) == -ENOENT);
    CHECK_STR(again.msg, err.msg);
    CHECK(table.strlen == NULL);
}

/* The library is there but lacks a symbol: the load fails as a whole, the table stays empty. */
static void test_missing_symbol(void)
{
    static struct {
        size_t (*strlen)(const char *);
        void (*missing)(void);
    } table;
    static const char *const names[] = {"strlen", "qimg_no_such_symbol"};
    static struct lazylib lib = {.soname = "libc.so.6", .names = names, .table = &table, .n = 2};
    struct qimg_error err = {0};
    CHECK(lazylib_load(&lib, &err) == -ENOSYS);
    CHECK(!strncmp(err.msg, "Could not load libc.so.6: ", 26));
    CHECK(strstr(err.msg, "undefined symbol: qimg_no_such_symbol") != NULL);
    CHECK(table.strlen == NULL && table.missing == NULL);
    struct qimg_error again = {0};
    CHECK(lazylib_load(&lib, &again) == -ENOSYS);
    CHECK_STR(again.msg, err.msg);
}

/* A successful load fills the table in the order of the names; err stays untouched. */
static void test_load(void)
{
    static struct {
        size_t (*strlen)(const char *);
        int (*strcmp)(const char *, const char *);
    } table;
    static const char *const names[] = {"strlen", "strcmp"};
    static struct lazylib lib = {.soname = "libc.so.6", .names = names, .table = &table, .n = 2};
    struct qimg_error err = {0};
    CHECK(lazylib_load(&lib, &err) == 0);
    CHECK(err.code == 0 && err.msg[0] == '\0');
    CHECK(table.strlen && table.strlen("qimg") == 4);
    CHECK(table.strcmp && table.strcmp("a", "b") < 0);
    CHECK(lazylib_load(&lib, &err) == 0);
}

/* Threads racing for the first load all see it done once. */
static struct {
    double (*fabs)(double);
} fabs_table;
static const char *const fabs_names[] = {"fabs"};
static struct lazylib fabs_lib = {.soname = "libm.so.6", .names = fabs_names,
                                  .table = &fabs_table, .n = 1};

static void *race(void *opaque)
{
    struct qimg_error err = {0};
    int *ret = opaque;
    *ret = lazylib_load(&fabs_lib, &err);
    if (*ret == 0 && fabs_table.fabs(-2.5) != 2.5)
        *ret = -1;
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[8];
    int ret[8];
    for (int i = 0; i < 8; i++)
        CHECK(pthread_create(&t[i], NULL, race, &ret[i]) == 0);
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        CHECK(ret[i] == 0);
    }
}

int main(void)
{
    static const struct harness_test tests[] = {
        {"missing_library", test_missing_library},
        {"missing_symbol", test_missing_symbol},
        {"load", test_load},
        {"threads", test_threads},
        {NULL, NULL},
    };
    return harness_run(tests);
}
