/* SPDX-License-Identifier: MIT */
/*
 * A small JSON value tree for qemu-img's structured output (ImageInfo,
 * ImageCheck, BlockMeasureInfo, ...). The writer reproduces qemu-img's layout
 * byte for byte, including its member order: QEMU serialises through a hash
 * dictionary, so members come out ordered by bucket (hash % 512) and, within a
 * bucket, newest first. Build objects in QAPI schema order and the writer does
 * the rest.
 */
#ifndef QIMG_JSON_H
#define QIMG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

enum qimg_json_type {
    QIMG_JSON_NULL,
    QIMG_JSON_BOOL,
    QIMG_JSON_INT,
    QIMG_JSON_UINT,
    QIMG_JSON_STRING,
    QIMG_JSON_ARRAY,
    QIMG_JSON_OBJECT,
};

struct qimg_json {
    enum qimg_json_type type;
    union {
        bool b;
        int64_t i;
        uint64_t u;
        char *s;
    };
    /* arrays and objects */
    struct qimg_json **items;
    char **keys; /* objects only */
    size_t n, cap;
};

struct qimg_json *qimg_json_object(void);
struct qimg_json *qimg_json_array(void);
struct qimg_json *qimg_json_string(const char *s);
struct qimg_json *qimg_json_int(int64_t v);
struct qimg_json *qimg_json_uint(uint64_t v);
struct qimg_json *qimg_json_bool(bool v);
struct qimg_json *qimg_json_null(void);
void qimg_json_free(struct qimg_json *j);

/* Object members (insertion order is remembered; a value is owned by its parent). */
struct qimg_json *qimg_json_add(struct qimg_json *obj, const char *key, struct qimg_json *val);
void qimg_json_add_str(struct qimg_json *obj, const char *key, const char *s);
void qimg_json_add_int(struct qimg_json *obj, const char *key, int64_t v);
void qimg_json_add_uint(struct qimg_json *obj, const char *key, uint64_t v);
void qimg_json_add_bool(struct qimg_json *obj, const char *key, bool v);
struct qimg_json *qimg_json_append(struct qimg_json *arr, struct qimg_json *val);
struct qimg_json *qimg_json_get(const struct qimg_json *obj, const char *key);

/*
 * One-line form, as in QEMU's generated "json:{...}" filenames: members in the
 * same order as the pretty form, separated by ", " and ": ". Caller frees.
 */
char *qimg_json_compact(const struct qimg_json *j);
/* Pretty-print in qemu-img's layout (4-space indent), without a trailing newline. */
void qimg_json_print(FILE *f, const struct qimg_json *j, int indent_level);
/* Members of obj in the order qemu-img prints them (array of indices, caller frees). */
size_t *qimg_json_output_order(const struct qimg_json *obj);
/* The human "key: value" form qemu-img info uses for format-specific data. */
void qimg_json_print_human(FILE *f, const struct qimg_json *j, int indent_level);
/* Write a JSON string literal with qemu's escaping. */
void qimg_json_print_string(FILE *f, const char *s);

#ifdef __cplusplus
}
#endif

#endif
