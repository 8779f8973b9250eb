/* SPDX-License-Identifier: MIT */
/*
 * Naming an rbd image and reaching its cluster, as QEMU's rbd driver does:
 * the legacy rbd:pool[/namespace]/image[@snap][:key=value...] filename, the
 * json:/--image-opts keys (pool, namespace, image, snapshot, conf, user,
 * server.N.host/port, key-secret or legacy password-secret,
 * auth-client-required.N), and the connection steps with their messages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/lazy-rbd.h"
#include "protocols/rbd.h"
#include "qimg/secret.h"
#include "util/mem.h"

/*
 * Cut src at the first delim not escaped by a backslash: *rest is what follows
 * (NULL when there is no delim). src is modified.
 */
static char *next_token(char *src, char delim, char **rest)
{
    char *end = src;
    *rest = NULL;
    for (; *end; end++) {
        if (*end == delim)
            break;
        if (*end == '\\' && end[1])
            end++;
    }
    if (*end == delim) {
        *end = '\0';
        *rest = end + 1;
    }
    return src;
}

/* Drop the backslashes that escape characters, in place. */
static void unescape(char *s)
{
    char *out = s;
    for (; *s; s++, out++) {
        if (*s == '\\' && s[1])
            s++;
        *out = *s;
    }
    *out = '\0';
}

static void add_pair(struct rbd_spec *spec, const char *name, const char *value)
{
    spec->kv = xrealloc(spec->kv, (spec->nkv + 1) * 2 * sizeof(char *));
    spec->kv[2 * spec->nkv] = xstrdup(name);
    spec->kv[2 * spec->nkv + 1] = xstrdup(value);
    spec->nkv++;
}

/* The key=value pairs after the image: conf and id are QEMU's, the rest Ceph's. */
static int parse_pairs(char *p, struct qimg_opts *o, struct rbd_spec *spec,
                       struct qimg_error *err)
{
    while (p) {
        char *name = next_token(p, '=', &p);
        if (!p)
            return qimg_error_set(err, -EINVAL, "conf option %s has no value", name);
        unescape(name);
        char *value = next_token(p, ':', &p);
        unescape(value);
        if (!strcmp(name, "conf"))
            qimg_opts_set(o, "conf", value);
        else if (!strcmp(name, "id"))
            qimg_opts_set(o, "user", value);
        else
            add_pair(spec, name, value);
    }
    return 0;
}

int rbd_parse_legacy(const char *filename, struct qimg_opts *o, struct rbd_spec *spec,
                     struct qimg_error *err)
{
    if (strncmp(filename, "rbd:", 4))
        return qimg_error_set(err, -EINVAL, "File name must start with 'rbd:'");
    char *buf = xstrdup(filename + 4), *p = buf, *image;
    int ret = 0;
    char *pool = next_token(p, '/', &p);
    if (!p) {
        ret = qimg_error_set(err, -EINVAL, "Pool name is required");
        goto out;
    }
    unescape(pool);
    qimg_opts_set(o, "pool", pool);
    /* QEMU looks for '@' anywhere in the rest, key=value pairs included. */
    if (strchr(p, '@')) {
        image = next_token(p, '@', &p);
        char *snap = next_token(p, ':', &p);
        unescape(snap);
        qimg_opts_set(o, "snapshot", snap);
    } else {
        image = next_token(p, ':', &p);
    }
    if (strchr(image, '/')) {
        char *ns = next_token(image, '/', &image);
        unescape(ns);
        qimg_opts_set(o, "namespace", ns);
    } else {
        qimg_opts_set(o, "namespace", "");
    }
    unescape(image);
    qimg_opts_set(o, "image", image);
    ret = parse_pairs(p, o, spec, err);
out:
    free(buf);
    return ret;
}

static char *take_dup(struct qimg_opts *o, const char *key)
{
    const char *v = qimg_opts_take(o, key);
    return v ? xstrdup(v) : NULL;
}

/* Append item to a ';'-separated list. */
static void list_append(char **list, const char *item)
{
    char *joined = *list ? xasprintf("%s;%s", *list, item) : xstrdup(item);
    free(*list);
    *list = joined;
}

/* server.N.host / server.N.port into "host:port;host:port" (IPv6 in brackets). */
static int take_servers(struct rbd_spec *spec, struct qimg_opts *o, struct qimg_error *err)
{
    for (unsigned i = 0;; i++) {
        char key[64];
        snprintf(key, sizeof(key), "server.%u.host", i);
        const char *host = qimg_opts_take(o, key);
        snprintf(key, sizeof(key), "server.%u.port", i);
        const char *port = qimg_opts_take(o, key);
        if (!host && !port)
            return 0;
        if (!host)
            return qimg_error_set(err, -EINVAL, "Parameter 'host' is missing");
        if (!port)
            return qimg_error_set(err, -EINVAL, "Parameter 'port' is missing");
        char *addr = strchr(host, ':') ? xasprintf("[%s]:%s", host, port)
                                       : xasprintf("%s:%s", host, port);
        list_append(&spec->mon_host, addr);
        free(addr);
    }
}

static int take_auth(struct rbd_spec *spec, struct qimg_opts *o, struct qimg_error *err)
{
    for (unsigned i = 0;; i++) {
        char key[64];
        snprintf(key, sizeof(key), "auth-client-required.%u", i);
        const char *mode = qimg_opts_take(o, key);
        if (!mode)
            return 0;
        if (strcmp(mode, "cephx") && strcmp(mode, "none"))
            return qimg_error_set(err, -EINVAL, "Parameter 'null' does not accept value '%s'",
                                  mode);
        list_append(&spec->auth_client_required, mode);
    }
}

int rbd_spec_take(struct rbd_spec *spec, struct qimg_opts *o, struct qimg_error *err)
{
    const char *filename = qimg_opts_take(o, "filename");
    if (filename) {
        int ret = rbd_parse_legacy(filename, o, spec, err);
        if (ret < 0)
            return ret;
    }
    spec->pool = take_dup(o, "pool");
    spec->ns = take_dup(o, "namespace");
    spec->image = take_dup(o, "image");
    spec->snap = take_dup(o, "snapshot");
    spec->conf = take_dup(o, "conf");
    spec->user = take_dup(o, "user");
    spec->key_secret = take_dup(o, "key-secret");
    char *legacy_secret = take_dup(o, "password-secret");
    if (legacy_secret && spec->key_secret) {
        free(legacy_secret);
        return qimg_error_set(err, -EINVAL, "Legacy 'password-secret' clashes with 'key-secret'");
    }
    if (legacy_secret)
        spec->key_secret = legacy_secret;
    if (!spec->pool)
        return qimg_error_set(err, -EINVAL, "Parameter 'pool' is missing");
    if (!spec->image)
        return qimg_error_set(err, -EINVAL, "Parameter 'image' is missing");
    int ret = take_servers(spec, o, err);
    return ret < 0 ? ret : take_auth(spec, o, err);
}

void rbd_spec_clear(struct rbd_spec *spec)
{
    free(spec->pool);
    free(spec->ns);
    free(spec->image);
    free(spec->snap);
    free(spec->conf);
    free(spec->user);
    free(spec->key_secret);
    free(spec->mon_host);
    free(spec->auth_client_required);
    for (size_t i = 0; i < 2 * spec->nkv; i++)
        free(spec->kv[i]);
    free(spec->kv);
    memset(spec, 0, sizeof(*spec));
}

static char *base64_encode(const uint8_t *in, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = xmalloc((len + 2) / 3 * 4 + 1), *p = out;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        *p++ = abc[v >> 18];
        *p++ = abc[(v >> 12) & 63];
        *p++ = i + 1 < len ? abc[(v >> 6) & 63] : '=';
        *p++ = i + 2 < len ? abc[v & 63] : '=';
    }
    *p = '\0';
    return out;
}

/* The cephx key: the secret's bytes, base64-encoded as Ceph reads "key". */
static int set_key(rados_t cluster, const char *secret_id, struct qimg_error *err)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int ret = qimg_secret_lookup(secret_id, &data, &len, err);
    if (ret < 0)
        return ret;
    char *key = base64_encode(data, len);
    memset(data, 0, len);
    free(data);
    ret = rados_conf_set(cluster, "key", key);
    free(key);
    return ret < 0 ? qimg_error_errno(err, ret, "invalid conf option key") : 0;
}

/* Settings after the conf file: legacy pairs, monitors, auth modes, key. */
static int apply_settings(rados_t cluster, const struct rbd_spec *spec, struct qimg_error *err)
{
    for (size_t i = 0; i < spec->nkv; i++) {
        const char *name = spec->kv[2 * i], *value = spec->kv[2 * i + 1];
        int ret = rados_conf_set(cluster, name, value);
        if (ret < 0)
            return qimg_error_errno(err, ret, "invalid conf option %s", name);
    }
    if (spec->mon_host) {
        int ret = rados_conf_set(cluster, "mon_host", spec->mon_host);
        if (ret < 0)
            return qimg_error_errno(err, ret, "invalid conf option mon_host");
    }
    if (spec->auth_client_required) {
        int ret = rados_conf_set(cluster, "auth_client_required", spec->auth_client_required);
        if (ret < 0)
            return qimg_error_errno(err, ret, "Could not set 'auth_client_required'");
    }
    return spec->key_secret ? set_key(cluster, spec->key_secret, err) : 0;
}

static int open_pool(rados_t cluster, const struct rbd_spec *spec, rados_ioctx_t *io,
                     struct qimg_error *err)
{
    int ret = rados_ioctx_create(cluster, spec->pool, io);
    if (ret < 0)
        return qimg_error_errno(err, ret, "error opening pool %s", spec->pool);
    const char *ns = spec->ns ? spec->ns : "";
    rados_ioctx_set_namespace(*io, ns);
    if (!ns[0])
        return 0;
    bool exists = false;
    ret = rbd_namespace_exists(*io, ns, &exists);
    if (ret < 0)
        return qimg_error_errno(err, ret, "error checking namespace");
    if (!exists)
        return qimg_error_set(err, -ENOENT, "namespace '%s' does not exist", ns);
    return 0;
}

int rbd_connect(const struct rbd_spec *spec, rados_t *cluster, rados_ioctx_t *io,
                struct qimg_error *err)
{
    *cluster = NULL;
    *io = NULL;
    /* The one way into the cluster for open and create: librbd is loaded here. */
    int ret = lazy_rbd_load(err);
    if (ret < 0)
        return ret;
    ret = rados_create(cluster, spec->user);
    if (ret < 0) {
        *cluster = NULL;
        return qimg_error_errno(err, ret, "error initializing");
    }
    if (spec->conf) {
        ret = rados_conf_read_file(*cluster, spec->conf);
        if (ret < 0)
            return qimg_error_errno(err, ret, "error reading conf file %s", spec->conf);
    } else {
        rados_conf_read_file(*cluster, NULL); /* the default places; none is fine */
    }
    ret = apply_settings(*cluster, spec, err);
    if (ret < 0)
        return ret;
    ret = rados_connect(*cluster);
    if (ret < 0)
        return qimg_error_errno(err, ret, "error connecting");
    return open_pool(*cluster, spec, io, err);
}
