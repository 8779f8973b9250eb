/* SPDX-License-Identifier: MIT */
/*
 * A JSON reader with the leniencies and the messages of QEMU's own parser,
 * which reads json:{...} filenames (observed from qemu-img 9.1):
 *
 * - strings in double or single quotes; both take \" and \' besides JSON's
 *   escapes; raw bytes must be UTF-8 (the two-byte NUL C0 80 is allowed),
 *   \u0000 reads as C0 80; no control characters;
 * - numbers beyond int64 read as uint64, then as doubles;
 * - lexical errors ("stray 'TEXT'", TEXT being the token up to and including
 *   the bad character) win over grammar errors in the same value, because
 *   QEMU parses a value only once its brackets balance;
 * - one value only: anything after it is "Expecting at most one JSON value";
 * - nesting deeper than 1024 brackets is refused.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json-parse.h"
#include "util/mem.h"

#define MAX_NESTING 1024

enum tok_type { T_EOI, T_PUNCT, T_STRING, T_NUMBER, T_KEYWORD, T_ERROR };

struct token {
    enum tok_type type;
    const char *text; /* into the input */
    size_t len;
};

struct lexer {
    const char *p;
};

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* A string token, quotes included; stops at a byte QEMU's lexer refuses in one. */
static enum tok_type lex_string(const char **pp)
{
    const char *p = *pp;
    char quote = *p++;
    for (;;) {
        unsigned char c = (unsigned char)*p;
        if (!c) { /* unterminated: the token so far */
            *pp = p;
            return T_ERROR;
        }
        p++;
        if (c < 0x20 || c > 0xfd)
            break;
        if (c == quote) {
            *pp = p;
            return T_STRING;
        }
        if (c == '\\') {
            unsigned char e = (unsigned char)*p;
            if (!e) {
                *pp = p;
                return T_ERROR;
            }
            p++;
            if (e < 0x20 || e > 0xfd)
                break;
        }
    }
    *pp = p;
    return T_ERROR;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?; a bad character is part of the error. */
static enum tok_type lex_number(const char **pp)
{
    const char *p = *pp;
    if (*p == '-')
        p++;
#define NEED_DIGIT()                                                                            \
    do {                                                                                       \
        if (!is_digit(*p)) {                                                                   \
            *pp = *p ? p + 1 : p;                                                              \
            return T_ERROR;                                                                    \
        }                                                                                      \
    } while (0)
    NEED_DIGIT();
    if (*p == '0') {
        p++;
        if (is_digit(*p)) {
            *pp = p + 1;
            return T_ERROR;
        }
    } else {
        while (is_digit(*p))
            p++;
    }
    if (*p == '.') {
        p++;
        NEED_DIGIT();
        while (is_digit(*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        NEED_DIGIT();
        while (is_digit(*p))
            p++;
    }
#undef NEED_DIGIT
    *pp = p;
    return T_NUMBER;
}

static struct token lex(struct lexer *lx)
{
    while (*lx->p == ' ' || *lx->p == '\t' || *lx->p == '\r' || *lx->p == '\n')
        lx->p++;
    struct token t = {T_EOI, lx->p, 0};
    const char *p = lx->p;
    char c = *p;
    if (!c)
        return t;
    if (strchr("{}[]:,", c)) {
        t.type = T_PUNCT;
        p++;
    } else if (c == '"' || c == '\'') {
        t.type = lex_string(&p);
    } else if (c == '-' || is_digit(c)) {
        t.type = lex_number(&p);
    } else if (c >= 'a' && c <= 'z') {
        t.type = T_KEYWORD;
        while (*p >= 'a' && *p <= 'z')
            p++;
    } else {
        t.type = T_ERROR;
        p++;
    }
    t.len = (size_t)(p - lx->p);
    lx->p = p;
    return t;
}

/* ---- grammar, over the tokens of one balanced value ---- */

struct parser {
    const struct token *t;
    size_t n, i;
    char *err; /* "JSON parse error, ..." once set */
};

static struct qimg_json *fail(struct parser *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The first error of a value is the one reported. */
static struct qimg_json *fail(struct parser *ps, const char *fmt, ...)
{
    if (!ps->err) {
        char what[128];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        ps->err = xasprintf("JSON parse error, %s", what);
    }
    return NULL;
}

static const struct token *peek(struct parser *ps)
{
    return ps->i < ps->n ? &ps->t[ps->i] : NULL;
}

static bool is_punct(const struct token *t, char c)
{
    return t && t->type == T_PUNCT && t->text[0] == c;
}

static int hex4(const char *s, const char *end)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        if (s + k >= end)
            return -1;
        char c = s[k];
        int d = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Length of the UTF-8 sequence at s (QEMU's modified UTF-8: C0 80 is NUL), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, const unsigned char *end)
{
    if (s[0] == 0xc0 && s + 1 < end && s[1] == 0x80)
        return 2;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (!len || s[0] > 0xf4 || (size_t)(end - s) < len)
        return 0;
    unsigned cp = s[0] & (0x7f >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3f);
    }
    static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static void put_utf8(char **o, unsigned cp)
{
    unsigned char *u = (unsigned char *)*o;
    if (cp == 0) { /* QEMU's modified UTF-8 */
        *u++ = 0xc0;
        *u++ = 0x80;
    } else if (cp < 0x80) {
        *u++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *u++ = (unsigned char)(0xc0 | cp >> 6);
        *u++ = (unsigned char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *u++ = (unsigned char)(0xe0 | cp >> 12);
        *u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        *u++ = (unsigned char)(0x80 | (cp & 0x3f));
    } else {
        *u++ = (unsigned char)(0xf0 | cp >> 18);
        *u++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        *u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        *u++ = (unsigned char)(0x80 | (cp & 0x3f));
    }
    *o = (char *)u;
}

/* \uXXXX at s (after the 'u'), a surrogate pair taken whole; -1 if not a character. */
static int unicode_escape(const char **sp, const char *end)
{
    const char *s = *sp;
    int cp = hex4(s, end);
    if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff))
        return -1;
    s += 4;
    if (cp >= 0xd800 && cp <= 0xdbff) {
        int lo = (end - s >= 6 && s[0] == '\\' && s[1] == 'u') ? hex4(s + 2, end) : -1;
        if (lo < 0xdc00 || lo > 0xdfff)
            return -1;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        s += 6;
    }
    *sp = s;
    return cp;
}

/* The character an escape other than \u stands for; 0 if it is none. */
static char simple_escape(char c)
{
    switch (c) {
    case '"': case '\'': case '\\': case '/': return c;
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    default: return 0;
    }
}

static struct qimg_json *parse_string(struct parser *ps, const struct token *t)
{
    const char *s = t->text + 1, *end = t->text + t->len - 1;
    char *buf = xmalloc(t->len * 2 + 1), *o = buf; /* \u0000 (6 bytes) grows to 2 */
    while (s < end) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x80) {
            size_t len = utf8_len((const unsigned char *)s, (const unsigned char *)end);
            if (!len)
                goto bad_utf8;
            memcpy(o, s, len);
            o += len;
            s += len;
            continue;
        }
        s++;
        if (c != '\\') {
            *o++ = (char)c;
            continue;
        }
        char plain = simple_escape(*s);
        if (plain) {
            *o++ = plain;
            s++;
        } else if (*s == 'u') {
            const char *u = ++s;
            int cp = unicode_escape(&s, end + 1); /* the closing quote may be read, not taken */
            if (cp < 0 || s > end) { /* named by the 4 characters after \u, quote included */
                int shown = end + 1 - u < 4 ? (int)(end + 1 - u) : 4;
                free(buf);
                return fail(ps, "\\u%.*s is not a valid Unicode character", shown, u);
            }
            put_utf8(&o, (unsigned)cp);
        } else {
            free(buf);
            return fail(ps, "invalid escape sequence in string");
        }
    }
    *o = 0;
    struct qimg_json *j = qimg_json_string(buf);
    free(buf);
    return j;
bad_utf8:
    free(buf);
    return fail(ps, "invalid UTF-8 sequence in string");
}

static struct qimg_json *parse_number(const struct token *t)
{
    char *text = xasprintf("%.*s", (int)t->len, t->text);
    struct qimg_json *j = NULL;
    char *end;
    if (!strpbrk(text, ".eE")) {
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (!errno) {
            j = qimg_json_int(v);
        } else if (text[0] != '-') {
            errno = 0;
            unsigned long long u = strtoull(text, &end, 10);
            if (!errno)
                j = qimg_json_uint(u);
        }
    }
    if (!j) {
        /* A double: QEMU spells it "%.17g" when it becomes an option's text. */
        double d = strtod(text, &end);
        if (d >= -9.2e18 && d <= 9.2e18 && d == (double)(long long)d)
            j = qimg_json_int((long long)d);
        else {
            char buf[64];
            snprintf(buf, sizeof(buf), "%.17g", d);
            j = qimg_json_string(buf);
        }
    }
    free(text);
    return j;
}

static struct qimg_json *parse_value(struct parser *ps);

static struct qimg_json *parse_object(struct parser *ps)
{
    struct qimg_json *obj = qimg_json_object();
    ps->i++;
    if (is_punct(peek(ps), '}')) {
        ps->i++;
        return obj;
    }
    for (;;) {
        struct qimg_json *key = parse_value(ps);
        if (!key)
            goto fail;
        if (key->type != QIMG_JSON_STRING) {
            qimg_json_free(key);
            fail(ps, "key is not a string in object");
            goto fail;
        }
        const struct token *t = peek(ps);
        if (!t || !is_punct(t, ':')) {
            qimg_json_free(key);
            fail(ps, "%s", t ? "missing : in object pair" : "premature EOI");
            goto fail;
        }
        ps->i++;
        struct qimg_json *val = parse_value(ps);
        if (!val || qimg_json_get(obj, key->s)) {
            if (val)
                fail(ps, "duplicate key");
            qimg_json_free(key);
            qimg_json_free(val);
            goto fail;
        }
        qimg_json_add(obj, key->s, val);
        qimg_json_free(key);
        t = peek(ps);
        if (is_punct(t, '}')) {
            ps->i++;
            return obj;
        }
        if (!is_punct(t, ',')) {
            fail(ps, "%s", t ? "expected separator in dict" : "premature EOI");
            goto fail;
        }
        ps->i++;
    }
fail:
    qimg_json_free(obj);
    return NULL;
}

static struct qimg_json *parse_array(struct parser *ps)
{
    struct qimg_json *arr = qimg_json_array();
    ps->i++;
    if (is_punct(peek(ps), ']')) {
        ps->i++;
        return arr;
    }
    for (;;) {
        struct qimg_json *v = parse_value(ps);
        if (!v)
            break;
        qimg_json_append(arr, v);
        const struct token *t = peek(ps);
        if (is_punct(t, ']')) {
            ps->i++;
            return arr;
        }
        if (!is_punct(t, ',')) {
            fail(ps, "%s", t ? "expected separator in list" : "premature EOI");
            break;
        }
        ps->i++;
    }
    qimg_json_free(arr);
    return NULL;
}

static struct qimg_json *parse_value(struct parser *ps)
{
    const struct token *t = peek(ps);
    if (!t)
        return fail(ps, "premature EOI");
    switch (t->type) {
    case T_PUNCT:
        if (t->text[0] == '{')
            return parse_object(ps);
        if (t->text[0] == '[')
            return parse_array(ps);
        return fail(ps, "expecting value");
    case T_STRING:
        ps->i++;
        return parse_string(ps, t);
    case T_NUMBER:
        ps->i++;
        return parse_number(t);
    case T_KEYWORD:
        ps->i++;
        if (t->len == 4 && !strncmp(t->text, "true", 4))
            return qimg_json_bool(true);
        if (t->len == 5 && !strncmp(t->text, "false", 5))
            return qimg_json_bool(false);
        if (t->len == 4 && !strncmp(t->text, "null", 4))
            return qimg_json_null();
        return fail(ps, "invalid keyword '%.*s'", (int)t->len, t->text);
    default:
        return fail(ps, "expecting value");
    }
}

/* ---- values: tokens are gathered until their brackets balance, then parsed ---- */

struct reader {
    struct qimg_json *result;
    char *err;
};

/* One value or error is complete; only the first counts, a second is an error itself. */
static void emit(struct reader *r, struct qimg_json *v, char *err)
{
    if (r->result) {
        qimg_json_free(r->result);
        r->result = NULL;
        r->err = xstrdup("Expecting at most one JSON value");
    }
    if (r->err) {
        qimg_json_free(v);
        free(err);
        return;
    }
    r->result = v;
    r->err = err;
}

static void parse_group(struct reader *r, const struct token *toks, size_t n)
{
    struct parser ps = {toks, n, 0, NULL};
    struct qimg_json *v = parse_value(&ps);
    emit(r, v, ps.err);
}

int qimg_json_parse(const char *text, struct qimg_json **out, char **errmsg)
{
    struct reader r = {0};
    struct lexer lx = {text};
    struct token *toks = NULL;
    size_t n = 0, cap = 0;
    int braces = 0, brackets = 0;
    while (!r.err) {
        struct token t = lex(&lx);
        if (t.type == T_EOI) {
            if (n)
                parse_group(&r, toks, n);
            break;
        }
        if (t.type == T_ERROR) {
            emit(&r, NULL, xasprintf("JSON parse error, stray '%.*s'", (int)t.len, t.text));
            n = braces = brackets = 0;
            continue;
        }
        if (t.type == T_PUNCT) {
            braces += t.text[0] == '{' ? 1 : t.text[0] == '}' ? -1 : 0;
            brackets += t.text[0] == '[' ? 1 : t.text[0] == ']' ? -1 : 0;
        }
        if (braces + brackets > MAX_NESTING) {
            emit(&r, NULL, xstrdup("JSON nesting depth limit exceeded"));
            n = braces = brackets = 0;
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            toks = xrealloc(toks, cap * sizeof(*toks));
        }
        toks[n++] = t;
        if ((braces > 0 || brackets > 0) && braces >= 0 && brackets >= 0)
            continue;
        parse_group(&r, toks, n);
        n = braces = brackets = 0;
    }
    free(toks);
    *out = r.result;
    *errmsg = r.err;
    return r.err ? -EINVAL : 0;
}
