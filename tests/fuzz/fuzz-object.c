/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for --object specs (key=value lists and JSON): parse,
 * check and create (secrets: base64, AES-CBC with a key secret defined
 * here), then forget everything. Must never crash, leak or hang. Specs
 * naming a file are skipped: reading whatever path the fuzzer spells is
 * not the parser's business (and /dev/stdin would block).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qimg/qimg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *spec = malloc(size + 1);
    if (!spec)
        return 0;
    memcpy(spec, data, size);
    spec[size] = 0;
    if (strstr(spec, "file")) { /* a secret read from /dev/stdin would wait forever */
        free(spec);
        return 0;
    }
    struct qimg_error err = {0};
    (void)qimg_object_add("secret,id=k,data=12345678901234567890123456789012", &err);
    struct qimg_error err2 = {0};
    (void)qimg_object_add(spec, &err2);
    FILE *null = fopen("/dev/null", "w");
    if (null) {
        (void)qimg_object_help(spec, null);
        fclose(null);
    }
    qimg_object_clear_all();
    free(spec);
    return 0;
}
