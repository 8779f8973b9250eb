/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core (being written). */
#include "harness.h"
#include "qimg/qimg.h"

static void test_init(void)
{
    qimg_init();
    CHECK(1);
}

int main(void)
{
    static const struct harness_test tests[] = {{"init", test_init}, {NULL, NULL}};
    return harness_run(tests);
}
