/* SPDX-License-Identifier: MIT */
/*
 * Option lists: one type for -o, --image-opts, json:{...} filenames and --object.
 * Keys are flat and dotted ("file.filename"), values are strings; each key
 * remembers whether a consumer took it, so leftovers become
 * "Invalid parameter 'x'" just as in qemu-img.
 */
#ifndef QIMG_OPTS_H
#define QIMG_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qimg/error.h"

#ifdef __cplusplus
extern "C" {
#endif

enum qimg_opt_type { QIMG_OPT_STRING, QIMG_OPT_BOOL, QIMG_OPT_NUMBER, QIMG_OPT_SIZE };

/* One entry of a driver's create or open option table. Tables end with {NULL}. */
struct qimg_opt_desc {
    const char *name;
    enum qimg_opt_type type;
    const char *help;
    const char *def_value; /* default shown in "Formatting ..." when set, or NULL */
};

/* What a value was written as: key=value strings, or a json: filename's scalars. */
enum qimg_opt_value_type { QIMG_OPTV_STRING, QIMG_OPTV_NUMBER, QIMG_OPTV_BOOL, QIMG_OPTV_NULL };

struct qimg_opt {
    char *key;
    char *value;
    bool used;
    enum qimg_opt_value_type type; /* json:{...} keeps 512 and true apart from "512" and "on" */
};

struct qimg_opts {
    struct qimg_opt *v;
    size_t n, cap;
};

struct qimg_opts *qimg_opts_new(void);
void qimg_opts_free(struct qimg_opts *o);
struct qimg_opts *qimg_opts_clone(const struct qimg_opts *o);

/*
 * Parse "k=v,k2=v2" (",," escapes a comma). A bare word becomes
 * implied_key=word when implied_key is given and it is the first element,
 * "help" stays a key with value NULL, otherwise a bare word means word=on.
 * Later keys override earlier ones with the same name.
 */
int qimg_opts_parse(struct qimg_opts *o, const char *str, const char *implied_key,
                    struct qimg_error *err);
/* Parse a json:{...} filename into dotted keys ("file": {"filename": x} -> file.filename=x). */
int qimg_opts_parse_json(struct qimg_opts *o, const char *json, struct qimg_error *err);

/* Set (replace) a value. */
void qimg_opts_set(struct qimg_opts *o, const char *key, const char *value);
/* Value or NULL; does not mark the key used. */
const char *qimg_opts_peek(const struct qimg_opts *o, const char *key);
/* The type a present key's value was given as (QIMG_OPTV_STRING if absent). */
enum qimg_opt_value_type qimg_opts_type(const struct qimg_opts *o, const char *key);
void qimg_opts_set_typed(struct qimg_opts *o, const char *key, const char *value,
                         enum qimg_opt_value_type type);
/* Value or NULL; marks the key used. */
const char *qimg_opts_take(struct qimg_opts *o, const char *key);
bool qimg_opts_has(const struct qimg_opts *o, const char *key);
void qimg_opts_del(struct qimg_opts *o, const char *key);
/* Typed getters: take the key, parse it, report qemu's wording on bad values. 1 if found. */
int qimg_opts_take_bool(struct qimg_opts *o, const char *key, bool *out, struct qimg_error *err);
int qimg_opts_take_size(struct qimg_opts *o, const char *key, uint64_t *out,
                        struct qimg_error *err);
int qimg_opts_take_uint(struct qimg_opts *o, const char *key, uint64_t *out,
                        struct qimg_error *err);
/*
 * Move every "prefix.x" key into dst as "x" (e.g. "file." options for the
 * protocol child). The moved keys count as used in src.
 */
void qimg_opts_extract_prefix(struct qimg_opts *src, const char *prefix, struct qimg_opts *dst);
/* First key nobody took, or NULL. */
const char *qimg_opts_first_unused(const struct qimg_opts *o);
/* Check every key against a table: "Invalid parameter 'x'" for unknown ones. */
int qimg_opts_validate(const struct qimg_opts *o, const struct qimg_opt_desc *desc,
                       struct qimg_error *err);
/* Print "-o help" for a table, qemu-img's layout, sorted by name. */
void qimg_opts_print_help(FILE *f, const char *fmt_name, const struct qimg_opt_desc *desc);
const struct qimg_opt_desc *qimg_opt_desc_find(const struct qimg_opt_desc *desc,
                                               const char *name);
/* Does a parsed "-o" list ask for help ("help" or "?")? */
bool qimg_opts_wants_help(const struct qimg_opts *o);

#ifdef __cplusplus
}
#endif

#endif
