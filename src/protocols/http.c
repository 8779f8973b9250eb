/* SPDX-License-Identifier: MIT */
/*
 * The "http", "https", "ftp" and "ftps" protocols: a read-only image behind
 * a URL, read with byte-range requests through libcurl (QEMU's curl driver:
 * same options, messages and readahead). Each request takes an easy handle
 * from a pool, so several threads read at once, each handle keeping its
 * connection alive; recently fetched ranges (the request plus readahead)
 * are kept so that small metadata reads (a qcow2 header, its L1 table) cost
 * one round trip between them.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/builtin.h"
#include "protocols/lazy-curl.h"
#include "qimg/driver.h"
#include "qimg/secret.h"
#include "util/mem.h"

/* libcurl, loaded by http_open (the driver has no create). */
#ifdef QIMG_SONAME_LIBCURL
LAZYLIB_DEFINE(curl, QIMG_SONAME_LIBCURL, LAZY_CURL_SYMS);
#endif

#define HTTP_READAHEAD_DEFAULT (256 * 1024) /* QEMU's READ_AHEAD_DEFAULT */
#define HTTP_TIMEOUT_DEFAULT 5
#define HTTP_TIMEOUT_MAX 10000
#define HTTP_POOL 16       /* easy handles kept for reuse */
#define HTTP_CACHE 8       /* fetched ranges kept (QEMU's CURL_NUM_STATES) */
#define HTTP_CACHE_MAX (4u << 20) /* larger fetches are bulk copies: not kept */

struct http_range {
    uint64_t start, len, stamp;
    uint8_t *data;
};

struct http_state {
    char *url;
    uint64_t length;
    uint64_t readahead;
    long timeout;
    bool sslverify;
    char *cookie, *username, *password, *proxy_username, *proxy_password;

    pthread_mutex_t lock; /* pool and cache */
    CURL *pool[HTTP_POOL];
    size_t npool;
    struct http_range cache[HTTP_CACHE];
    uint64_t clock;
};

static const struct qimg_opt_desc http_open_opts[] = {
    {"url", QIMG_OPT_STRING, "URL to open", NULL},
    {"readahead", QIMG_OPT_SIZE, "Readahead size", NULL},
    {"sslverify", QIMG_OPT_BOOL, "Verify SSL certificate", NULL},
    {"timeout", QIMG_OPT_NUMBER, "Curl timeout", NULL},
    {"cookie", QIMG_OPT_STRING, "Pass the cookie or list of cookies with each request", NULL},
    {"cookie-secret", QIMG_OPT_STRING, "ID of secret used as cookie passed with each request",
     NULL},
    {"username", QIMG_OPT_STRING, "Username for HTTP auth", NULL},
    {"password-secret", QIMG_OPT_STRING, "ID of secret used as password for HTTP auth", NULL},
    {"proxy-username", QIMG_OPT_STRING, "Username for HTTP proxy auth", NULL},
    {"proxy-password-secret", QIMG_OPT_STRING, "ID of secret used as password for HTTP proxy auth",
     NULL},
    {0},
};

/* The options that name the node in JSON (QEMU's strong runtime options). */
static const char *const http_strong_opts[] = {"url", "sslverify", "cookie", "cookie-secret",
                                               "username", "password-secret", "proxy-username",
                                               "proxy-password-secret", NULL};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
}

/* A secret's text, or NULL with err set ("No secret with id 'x'"). */
static char *secret_text(const char *id, struct qimg_error *err)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (qimg_secret_lookup(id, &data, &len, err) < 0)
        return NULL;
    return (char *)data; /* NUL-terminated by the store */
}

static size_t discard_cb(char *ptr, size_t size, size_t n, void *opaque)
{
    (void)ptr;
    (void)opaque;
    return size * n;
}

static CURL *handle_new(const struct http_state *s)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, discard_cb);
    curl_easy_setopt(c, CURLOPT_URL, s->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_AUTOREFERER, 1L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, s->timeout);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, s->sslverify ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, s->sslverify ? 2L : 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,ftp,ftps");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https,ftp,ftps");
    if (s->cookie)
        curl_easy_setopt(c, CURLOPT_COOKIE, s->cookie);
    if (s->username)
        curl_easy_setopt(c, CURLOPT_USERNAME, s->username);
    if (s->password)
        curl_easy_setopt(c, CURLOPT_PASSWORD, s->password);
    if (s->proxy_username)
        curl_easy_setopt(c, CURLOPT_PROXYUSERNAME, s->proxy_username);
    if (s->proxy_password)
        curl_easy_setopt(c, CURLOPT_PROXYPASSWORD, s->proxy_password);
    return c;
}

static CURL *handle_get(struct http_state *s)
{
    CURL *c = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->npool)
        c = s->pool[--s->npool];
    pthread_mutex_unlock(&s->lock);
    return c ? c : handle_new(s);
}

static void handle_put(struct http_state *s, CURL *c)
{
    pthread_mutex_lock(&s->lock);
    if (s->npool < HTTP_POOL) {
        s->pool[s->npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (c)
        curl_easy_cleanup(c);
}

/* "Accept-Ranges: bytes" in the answer to the HEAD request (QEMU's check). */
static size_t header_cb(char *ptr, size_t size, size_t n, void *opaque)
{
    bool *accept_range = opaque;
    size_t len = size * n;
    static const char name[] = "accept-ranges:";
    if (len > strlen(name) && !strncasecmp(ptr, name, strlen(name))) {
        const char *p = ptr + strlen(name), *end = ptr + len;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 5 && !strncmp(p, "bytes", 5)) {
            p += 5;
            while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
                p++;
            if (p == end)
                *accept_range = true;
        }
    }
    return len;
}

/* HEAD: the length, and whether ranges may be asked for. */
static int http_probe_length(struct http_state *s, const char *proto, struct qimg_error *err)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    bool accept_range = false;
    CURL *c = handle_new(s);
    if (!c)
        return qimg_error_set(err, -EIO, "CURL: Error opening file: curl library "
                                         "initialization failed.");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &accept_range);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_cb);
    CURLcode rc = curl_easy_perform(c);
    curl_off_t cl = -1;
    int ret = 0;
    if (rc != CURLE_OK) {
        ret = qimg_error_set(err, -EIO, "CURL: Error opening file: %s",
                             errbuf[0] ? errbuf : curl_easy_strerror(rc));
    } else if (curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) != CURLE_OK ||
               cl < 0) {
        ret = qimg_error_set(err, -EIO, "CURL: Error opening file: Server didn't report file "
                                        "size.");
    } else if (!strncmp(proto, "http", 4) && !accept_range) {
        ret = qimg_error_set(err, -EIO, "CURL: Error opening file: Server does not support "
                                        "'range' (byte ranges).");
    }
    s->length = (uint64_t)(cl < 0 ? 0 : cl);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, discard_cb); /* not fwrite to HEADERDATA */
    curl_easy_setopt(c, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(c, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    handle_put(s, c);
    return ret;
}

static int take_options(struct http_state *s, struct qimg_opts *opts, struct qimg_error *err)
{
    s->readahead = HTTP_READAHEAD_DEFAULT;
    if (qimg_opts_take_size(opts, "readahead", &s->readahead, err) < 0)
        return err->code;
    if (s->readahead & 511)
        return qimg_error_set(err, -EINVAL, "HTTP_READAHEAD_SIZE %" PRIu64 " is not a multiple "
                                            "of 512", s->readahead);
    const char *t = qimg_opts_take(opts, "timeout");
    s->timeout = HTTP_TIMEOUT_DEFAULT;
    if (t) {
        char *end;
        errno = 0;
        long long v = strtoll(t, &end, 0);
        if (!*t || *end || errno)
            return qimg_error_set(err, -EINVAL, "Parameter 'timeout' expects a number");
        if (v < 0 || v > HTTP_TIMEOUT_MAX)
            return qimg_error_set(err, -EINVAL, "timeout parameter is too large or negative");
        s->timeout = (long)v;
    }
    s->sslverify = true;
    if (qimg_opts_take_bool(opts, "sslverify", &s->sslverify, err) < 0)
        return err->code;
    const char *cookie = qimg_opts_take(opts, "cookie");
    const char *cookie_secret = qimg_opts_take(opts, "cookie-secret");
    if (cookie && cookie_secret)
        return qimg_error_set(err, -EINVAL,
                              "curl driver cannot handle both cookie and cookie secret");
    if (cookie_secret && !(s->cookie = secret_text(cookie_secret, err)))
        return err->code;
    if (cookie)
        s->cookie = xstrdup(cookie);
    const char *user = qimg_opts_take(opts, "username");
    s->username = user ? xstrdup(user) : NULL;
    const char *pw = qimg_opts_take(opts, "password-secret");
    if (pw && !(s->password = secret_text(pw, err)))
        return err->code;
    const char *puser = qimg_opts_take(opts, "proxy-username");
    s->proxy_username = puser ? xstrdup(puser) : NULL;
    const char *ppw = qimg_opts_take(opts, "proxy-password-secret");
    if (ppw && !(s->proxy_password = secret_text(ppw, err)))
        return err->code;
    return 0;
}

/* Keep the node named by its URL unless other strong options make QEMU name it in JSON. */
static void set_naming_options(struct qimg_opts *opts, const char *url)
{
    bool strong = false;
    for (const char *const *k = http_strong_opts + 1; *k; k++)
        strong = strong || qimg_opts_has(opts, *k);
    qimg_opts_del(opts, "filename");
    if (strong) {
        qimg_opts_set(opts, "url", url);
        qimg_opts_take(opts, "url");
    } else {
        qimg_opts_del(opts, "url");
    }
}

static int http_open(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    const char *proto = n->drv->name;
    struct http_state *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    n->opaque = s;
    int ret = lazy_curl_load(err);
    if (ret < 0)
        return ret;
    pthread_once(&curl_once, curl_init_once);
    const char *url = qimg_opts_take(opts, "url");
    const char *filename = qimg_opts_take(opts, "filename");
    if (!url)
        url = filename;
    if (!url)
        return qimg_error_set(err, -EINVAL, "curl block driver requires an 'url' option");
    size_t plen = strlen(proto);
    if (strncasecmp(url, proto, plen) || strncmp(url + plen, "://", 3))
        return qimg_error_set(err, -EINVAL, "%s curl driver cannot handle the URL '%s' (does "
                                            "not start with '%s://')", proto, url, proto);
    s->url = xstrdup(url);
    ret = take_options(s, opts, err);
    if (ret < 0)
        return ret;
    if (n->flags & QIMG_O_RDWR)
        return qimg_error_set(err, -EACCES, "curl driver does not support writes");
    set_naming_options(opts, s->url);
    free(n->filename);
    n->filename = xstrdup(s->url);
    return http_probe_length(s, proto, err);
}

static void http_close(struct qimg_node *n)
{
    struct http_state *s = n->opaque;
    if (!s)
        return;
    for (size_t i = 0; i < s->npool; i++)
        curl_easy_cleanup(s->pool[i]);
    for (size_t i = 0; i < HTTP_CACHE; i++)
        free(s->cache[i].data);
    pthread_mutex_destroy(&s->lock);
    free(s->url);
    free(s->cookie);
    free(s->username);
    free(s->password);
    free(s->proxy_username);
    free(s->proxy_password);
    free(s);
    n->opaque = NULL;
}

static int64_t http_get_length(struct qimg_node *n)
{
    const struct http_state *s = n->opaque;
    return (int64_t)s->length;
}

struct sink {
    uint8_t *buf;
    uint64_t cap, got;
};

/* Body bytes into the buffer; more than asked for (a server ignoring Range) aborts. */
static size_t body_cb(char *ptr, size_t size, size_t n, void *opaque)
{
    struct sink *k = opaque;
    size_t len = size * n;
    if (len > k->cap - k->got)
        return 0;
    memcpy(k->buf + k->got, ptr, len);
    k->got += len;
    return len;
}

/* GET bytes [start, start+len) into buf: 0 or -EIO. */
static int fetch(struct http_state *s, uint64_t start, uint64_t len, uint8_t *buf)
{
    CURL *c = handle_get(s);
    if (!c)
        return -ENOMEM;
    char range[64];
    snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, start, start + len - 1);
    struct sink k = {buf, len, 0};
    curl_easy_setopt(c, CURLOPT_RANGE, range);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &k);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, NULL);
    if (rc != CURLE_OK) {
        curl_easy_cleanup(c); /* its connection may be in any state */
        return -EIO;
    }
    handle_put(s, c);
    return k.got == len ? 0 : -EIO;
}

static bool from_cache(struct http_state *s, uint64_t off, uint64_t len, uint8_t *buf)
{
    bool hit = false;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < HTTP_CACHE && !hit; i++) {
        struct http_range *r = &s->cache[i];
        if (r->data && off >= r->start && off + len <= r->start + r->len) {
            memcpy(buf, r->data + (off - r->start), len);
            r->stamp = ++s->clock;
            hit = true;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return hit;
}

/* Keep data (owned from here) as the range at start, replacing the least recent. */
static void to_cache(struct http_state *s, uint64_t start, uint64_t len, uint8_t *data)
{
    pthread_mutex_lock(&s->lock);
    struct http_range *victim = &s->cache[0];
    for (size_t i = 1; i < HTTP_CACHE; i++)
        if (!s->cache[i].data || (victim->data && s->cache[i].stamp < victim->stamp))
            victim = &s->cache[i];
    uint8_t *old = victim->data;
    *victim = (struct http_range){start, len, ++s->clock, data};
    pthread_mutex_unlock(&s->lock);
    free(old);
}

static int http_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    struct http_state *s = n->opaque;
    (void)flags;
    uint8_t *out = buf;
    if (off + len > s->length) { /* the sector-rounding tail past the file: zeroes */
        uint64_t in = off < s->length ? s->length - off : 0;
        memset(out + in, 0, len - in);
        len = in;
    }
    if (!len || from_cache(s, off, len, out))
        return 0;
    uint64_t want = len + s->readahead;
    if (want > s->length - off)
        want = s->length - off;
    if (want > HTTP_CACHE_MAX)
        return fetch(s, off, len, out);
    uint8_t *data = xmalloc(want);
    int ret = fetch(s, off, want, data);
    if (ret < 0) {
        free(data);
        return ret;
    }
    memcpy(out, data, len);
    to_cache(s, off, want, data);
    return 0;
}

#define HTTP_DRIVER(proto)                                                                     \
    {                                                                                          \
        .name = proto, .is_protocol = true, .protocol_prefix = proto,                          \
        .open_opts = http_open_opts, .open = http_open, .close = http_close,                   \
        .get_length = http_get_length, .pread = http_pread,                                    \
        .strong_opts = http_strong_opts,                                                       \
    }

const struct qimg_driver qimg_http_driver = HTTP_DRIVER("http");
const struct qimg_driver qimg_https_driver = HTTP_DRIVER("https");
const struct qimg_driver qimg_ftp_driver = HTTP_DRIVER("ftp");
const struct qimg_driver qimg_ftps_driver = HTTP_DRIVER("ftps");
