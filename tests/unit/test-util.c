/* SPDX-License-Identifier: MIT */
/* Unit tests for src/util: sizes, option lists, the JSON writer. */
#include <errno.h>
#include <stdlib.h>

#include "harness.h"
#include "qimg/qimg.h"

static void test_parse_size(void)
{
    uint64_t v;
    CHECK(qimg_parse_size("100M", 1, &v) == 0 && v == 100ULL << 20);
    CHECK(qimg_parse_size("1.5M", 1, &v) == 0 && v == 1572864);
    CHECK(qimg_parse_size("1b", 1, &v) == 0 && v == 1);
    CHECK(qimg_parse_size("0x10", 1, &v) == 0 && v == 16);
    CHECK(qimg_parse_size("4k", 1, &v) == 0 && v == 4096);
    CHECK(qimg_parse_size("1E", 1, &v) == 0 && v == 1ULL << 60);
    CHECK(qimg_parse_size("1Q", 1, &v) == -EINVAL);
    CHECK(qimg_parse_size("1.5", 1, &v) == -EINVAL);
    CHECK(qimg_parse_size("1e3", 1, &v) == -EINVAL);
    CHECK(qimg_parse_size("", 1, &v) == -EINVAL);
    CHECK(qimg_parse_size("-1", 1, &v) == -ERANGE);
    CHECK(qimg_parse_size("99999999E", 1, &v) == -ERANGE);
    CHECK(qimg_parse_size("16E", 1, &v) == -ERANGE);
    /* qemu 9.1: zero fractions of a byte, fractions without an integer part, rounding */
    CHECK(qimg_parse_size("1024.0b", 1, &v) == 0 && v == 1024);
    CHECK(qimg_parse_size(".5k", 1, &v) == 0 && v == 512);
    CHECK(qimg_parse_size("1.9999k", 1, &v) == 0 && v == 2048);
    CHECK(qimg_parse_size("0x400k", 1, &v) == -EINVAL);
    CHECK(qimg_parse_size("-0", 1, &v) == -ERANGE);
    CHECK(qimg_parse_number(" -1", &v) == 0 && v == UINT64_MAX);
    CHECK(qimg_parse_number("18446744073709551616", &v) == -ERANGE);
    CHECK(qimg_parse_number("- 1", &v) == -EINVAL);
}

static void test_size_to_str(void)
{
    char b[32];
    qimg_size_to_str(0, b, sizeof(b));
    CHECK_STR(b, "0 B");
    qimg_size_to_str(4096, b, sizeof(b));
    CHECK_STR(b, "4 KiB");
    qimg_size_to_str(197120, b, sizeof(b));
    CHECK_STR(b, "192 KiB");
    qimg_size_to_str(1073741824, b, sizeof(b));
    CHECK_STR(b, "1 GiB");
    qimg_size_to_str(1000, b, sizeof(b));
    CHECK_STR(b, "0.977 KiB");
    qimg_size_to_str(1572864, b, sizeof(b));
    CHECK_STR(b, "1.5 MiB");
}

static void test_cvtstr(void)
{
    char b[32];
    qimg_cvtstr(512, b, sizeof(b));
    CHECK_STR(b, "512 bytes");
    qimg_cvtstr(1536, b, sizeof(b));
    CHECK_STR(b, "1.500 KiB");
    qimg_cvtstr(2097152, b, sizeof(b));
    CHECK_STR(b, "2 MiB");
    qimg_cvtstr(2095616, b, sizeof(b));
    CHECK_STR(b, "1.999 MiB");
    qimg_cvtstr(1114112, b, sizeof(b));
    CHECK_STR(b, "1.062 MiB");
}

static void test_opts_parse(void)
{
    struct qimg_opts *o = qimg_opts_new();
    struct qimg_error err = {0};
    CHECK(qimg_opts_parse(o, "size=1M,backing_file=a,,b,lazy_refcounts", NULL, &err) == 0);
    CHECK_STR(qimg_opts_peek(o, "size"), "1M");
    CHECK_STR(qimg_opts_peek(o, "backing_file"), "a,b");
    CHECK_STR(qimg_opts_peek(o, "lazy_refcounts"), "on");
    CHECK(qimg_opts_first_unused(o) != NULL);
    qimg_opts_take(o, "size");
    qimg_opts_take(o, "backing_file");
    qimg_opts_take(o, "lazy_refcounts");
    CHECK(qimg_opts_first_unused(o) == NULL);
    CHECK(qimg_opts_parse(o, "help", NULL, &err) == 0 && qimg_opts_wants_help(o));
    qimg_opts_free(o);

    o = qimg_opts_new();
    CHECK(qimg_opts_parse(o, "secret,id=sec0,data=x", "qom-type", &err) == 0);
    CHECK_STR(qimg_opts_peek(o, "qom-type"), "secret");
    CHECK_STR(qimg_opts_peek(o, "id"), "sec0");
    qimg_opts_free(o);
}

static void test_opts_json(void)
{
    struct qimg_opts *o = qimg_opts_new();
    struct qimg_error err = {0};
    CHECK(qimg_opts_parse_json(
              o, "{\"driver\": \"raw\", \"file\": {\"driver\": \"file\", \"filename\": \"x\"}, "
                 "\"size\": 512, \"flag\": true}",
              &err) == 0);
    CHECK_STR(qimg_opts_peek(o, "driver"), "raw");
    CHECK_STR(qimg_opts_peek(o, "file.filename"), "x");
    CHECK_STR(qimg_opts_peek(o, "size"), "512");
    CHECK_STR(qimg_opts_peek(o, "flag"), "on");
    CHECK(qimg_opts_parse_json(o, "{\"driver\":", &err) < 0);
    qimg_opts_free(o);
}

static char *print_to_string(const struct qimg_json *j)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    qimg_json_print(f, j, 0);
    fclose(f);
    return buf;
}

/* Member order follows QEMU's QDict buckets: compare with qemu-img's recorded output. */
static void test_json_order(void)
{
    struct qimg_json *j = qimg_json_object();
    qimg_json_add_str(j, "filename", "r.raw");
    qimg_json_add_str(j, "format", "raw");
    qimg_json_add_bool(j, "dirty-flag", false);
    qimg_json_add_int(j, "actual-size", 4096);
    qimg_json_add_int(j, "virtual-size", 104857600);
    qimg_json_add_str(j, "backing-filename-format", "qcow2");
    qimg_json_add(j, "children", qimg_json_array());
    char *s = print_to_string(j);
    CHECK_STR(s, "{\n    \"children\": [\n    ],\n    \"backing-filename-format\": \"qcow2\",\n"
                 "    \"virtual-size\": 104857600,\n    \"filename\": \"r.raw\",\n"
                 "    \"format\": \"raw\",\n    \"actual-size\": 4096,\n"
                 "    \"dirty-flag\": false\n}");
    free(s);
    qimg_json_free(j);

    j = qimg_json_object();
    qimg_json_add_str(j, "s", "a\"b\\c/\xc3\xa9\t");
    s = print_to_string(j);
    CHECK_STR(s, "{\n    \"s\": \"a\\\"b\\\\c/\\u00E9\\t\"\n}");
    free(s);
    qimg_json_free(j);
}

int main(void)
{
    static const struct harness_test tests[] = {
        {"parse_size", test_parse_size},
        {"size_to_str", test_size_to_str},
        {"cvtstr", test_cvtstr},
        {"opts_parse", test_opts_parse},
        {"opts_json", test_opts_json},
        {"json_order", test_json_order},
        {NULL, NULL},
    };
    return harness_run(tests);
}
