/* SPDX-License-Identifier: MIT */
/* A minimal unit test harness: CHECK records failures; main prints "N passed, N failed". */
#ifndef QIMG_TESTS_HARNESS_H
#define QIMG_TESTS_HARNESS_H

#include <stdio.h>
#include <string.h>

static int harness_failed_checks;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);           \
            harness_failed_checks++;                                                           \
        }                                                                                      \
    } while (0)

#define CHECK_STR(a, b)                                                                        \
    do {                                                                                       \
        const char *a_ = (a), *b_ = (b);                                                       \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                               \
            fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, a_ ? a_ : "(null)", \
                    b_ ? b_ : "(null)");                                                       \
            harness_failed_checks++;                                                           \
        }                                                                                      \
    } while (0)

struct harness_test {
    const char *name;
    void (*fn)(void);
};

static inline int harness_run(const struct harness_test *tests)
{
    int passed = 0, failed = 0;
    for (const struct harness_test *t = tests; t->name; t++) {
        int before = harness_failed_checks;
        t->fn();
        if (harness_failed_checks == before) {
            passed++;
        } else {
            failed++;
            fprintf(stderr, "FAIL %s\n", t->name);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif
