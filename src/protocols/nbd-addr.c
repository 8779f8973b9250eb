/* SPDX-License-Identifier: MIT */
/*
 * Where an NBD server is: QEMU's filename syntaxes (the NBD URI of
 * nbd-proto.md's companion "URI format", and the legacy nbd:host:port and
 * nbd:unix:path forms), its server.* options (a SocketAddress) with the
 * deprecated host/port/path keys, the names QEMU shows for a node, and the
 * socket connection with QEMU's error messages.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "protocols/nbd.h"
#include "protocols/net-util.h"
#include "util/mem.h"

void nbd_addr_clear(struct nbd_addr *a)
{
    free(a->host);
    free(a->port);
    free(a->path);
    free(a->export);
    *a = (struct nbd_addr){0};
}

/*
 * nbd[+tcp]://[user@]host[:port][/export][?] and nbd+unix://[/export]?socket=path.
 * Anything else is "No valid URL specified" (-EINVAL), as in QEMU.
 */
static int parse_uri(const char *uri, struct nbd_addr *a)
{
    const char *sep = strstr(uri, "://");
    size_t slen = (size_t)(sep - uri);
    bool is_unix;
    if (slen == 3 && !strncmp(uri, "nbd", 3))
        is_unix = false;
    else if (slen == 7 && !strncmp(uri, "nbd+tcp", 7))
        is_unix = false;
    else if (slen == 8 && !strncmp(uri, "nbd+unix", 8))
        is_unix = true;
    else
        return -EINVAL;
    const char *p = sep + 3;
    size_t auth_len = strcspn(p, "/?#");
    const char *auth = p, *rest = p + auth_len;
    size_t path_len = strcspn(rest, "?#");
    const char *query = rest[path_len] == '?' ? rest + path_len + 1 : NULL;
    size_t query_len = query ? strcspn(query, "#") : 0;

    const char *at = memchr(auth, '@', auth_len);
    if (at) {
        auth_len -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    const char *host = auth, *port = NULL;
    size_t host_len = auth_len;
    if (auth_len && auth[0] == '[') {
        const char *close = memchr(auth, ']', auth_len);
        if (!close)
            return -EINVAL;
        host = auth + 1;
        host_len = (size_t)(close - auth - 1);
        if (close + 1 < auth + auth_len) {
            if (close[1] != ':')
                return -EINVAL;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(auth, ':', auth_len);
        if (colon) {
            host_len = (size_t)(colon - auth);
            port = colon + 1;
        }
    }
    unsigned long portnum = 0;
    if (port) {
        size_t plen = (size_t)(auth + auth_len - port);
        for (size_t i = 0; i < plen; i++) {
            if (port[i] < '0' || port[i] > '9')
                return -EINVAL;
            portnum = portnum * 10 + (unsigned long)(port[i] - '0');
            if (portnum > 65535)
                return -EINVAL;
        }
    }

    const char *path = rest;
    if (path_len && path[0] == '/') {
        path++;
        path_len--;
    }
    if (path_len)
        a->export = net_percent_decode(path, path_len);

    /* Query parameters: none for TCP, exactly "socket=" for unix. */
    size_t nparams = 0;
    const char *socket = NULL;
    size_t socket_len = 0;
    for (const char *q = query; q && q < query + query_len;) {
        size_t len = strcspn(q, "&");
        if (len > (size_t)(query + query_len - q))
            len = (size_t)(query + query_len - q);
        if (len) {
            nparams++;
            if (len >= 7 && !strncmp(q, "socket=", 7)) {
                socket = q + 7;
                socket_len = len - 7;
            }
        }
        q += len + 1;
    }
    if (nparams > 1 || (is_unix && nparams == 0) || (!is_unix && nparams))
        return -EINVAL;
    if (is_unix) {
        if (host_len || port || !socket)
            return -EINVAL;
        a->type = NBD_ADDR_UNIX;
        a->path = net_percent_decode(socket, socket_len);
        return 0;
    }
    if (!host_len)
        return -EINVAL;
    a->type = NBD_ADDR_INET;
    a->host = net_percent_decode(host, host_len);
    a->port = portnum ? xasprintf("%lu", portnum) : xstrdup(NBD_DEFAULT_PORT);
    return 0;
}

/* QEMU's inet_parse for the legacy form: host:port, [v6host]:port, then ,ipv4 ,ipv6 ... */
static int parse_inet(const char *spec, struct nbd_addr *a, struct qimg_error *err)
{
    const char *host, *port;
    size_t host_len;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':' || !close[2])
            return qimg_error_set(err, -EINVAL, "error parsing IPv6 address '%s'", spec);
        host = spec + 1;
        host_len = (size_t)(close - spec - 1);
        port = close + 2;
    } else {
        const char *colon = strchr(spec, ':');
        if (!colon || !colon[1] || colon[1] == ',')
            return qimg_error_set(err, -EINVAL, "error parsing address '%s'", spec);
        host = spec;
        host_len = (size_t)(colon - spec);
        port = colon + 1;
    }
    size_t port_len = strcspn(port, ",");
    a->type = NBD_ADDR_INET;
    a->host = xasprintf("%.*s", (int)host_len, host);
    a->port = xasprintf("%.*s", (int)port_len, port);
    for (const char *o = port + port_len; *o == ',';) {
        o++;
        size_t len = strcspn(o, ",");
        if (len == 4 && !strncmp(o, "ipv4", 4))
            a->ipv4 = true;
        else if (len == 4 && !strncmp(o, "ipv6", 4))
            a->ipv6 = true;
        o += len;
    }
    return 0;
}

/*
 * The legacy syntax: nbd:unix:PATH[:exportname=X] or nbd:HOST:PORT[:exportname=X].
 * An empty export name or address leaves the address unset ("NBD server
 * address missing" follows), as QEMU does.
 */
static int parse_legacy(const char *filename, struct nbd_addr *a, bool *set,
                        struct qimg_error *err)
{
    static const char en[] = ":exportname=";
    char *file = xstrdup(filename);
    int ret = 0;
    *set = false;
    char *export = strstr(file, en);
    if (export) {
        if (!export[strlen(en)])
            goto out;
        *export = 0;
        a->export = xstrdup(export + strlen(en));
    }
    const char *spec = file + 4; /* after "nbd:" */
    if (!*spec)
        goto out;
    if (!strncmp(spec, "unix:", 5)) {
        a->type = NBD_ADDR_UNIX;
        a->path = xstrdup(spec + 5);
    } else {
        ret = parse_inet(spec, a, err);
        if (ret < 0)
            goto out;
    }
    *set = true;
out:
    free(file);
    return ret;
}

static bool has_prefix_key(const struct qimg_opts *o, const char *prefix)
{
    size_t len = strlen(prefix);
    for (size_t i = 0; i < o->n; i++)
        if (!strncmp(o->v[i].key, prefix, len))
            return true;
    return false;
}

static const char *const inet_keys[] = {"host", "port", "numeric", "to", "ipv4", "ipv6",
                                        "keep-alive", "keep-alive-count", "keep-alive-idle",
                                        "keep-alive-interval", "mptcp", NULL};
static const char *const unix_keys[] = {"path", "abstract", "tight", NULL};

static bool in_list(const char *const *list, const char *key)
{
    for (; *list; list++)
        if (!strcmp(*list, key))
            return true;
    return false;
}

/* server.* as QAPI's SocketAddress visitor checks it: type, required members, strays. */
static int take_server(struct qimg_opts *o, struct nbd_addr *a, struct qimg_error *err)
{
    const char *type = qimg_opts_take(o, "server.type");
    if (!type)
        return qimg_error_set(err, -EINVAL, "Parameter 'type' is missing");
    const char *const *keys;
    if (!strcmp(type, "inet")) {
        a->type = NBD_ADDR_INET;
        keys = inet_keys;
        const char *host = qimg_opts_take(o, "server.host");
        if (!host)
            return qimg_error_set(err, -EINVAL, "Parameter 'host' is missing");
        const char *port = qimg_opts_take(o, "server.port");
        if (!port)
            return qimg_error_set(err, -EINVAL, "Parameter 'port' is missing");
        a->host = xstrdup(host);
        a->port = xstrdup(port);
    } else if (!strcmp(type, "unix")) {
        a->type = NBD_ADDR_UNIX;
        keys = unix_keys;
        const char *path = qimg_opts_take(o, "server.path");
        if (!path)
            return qimg_error_set(err, -EINVAL, "Parameter 'path' is missing");
        a->path = xstrdup(path);
    } else if (!strcmp(type, "vsock") || !strcmp(type, "fd")) {
        return qimg_error_set(err, -ENOTSUP, "NBD server address type '%s' is not supported",
                              type);
    } else {
        return qimg_error_set(err, -EINVAL, "Parameter 'type' does not accept value '%s'", type);
    }
    for (size_t i = 0; i < o->n; i++) {
        const char *k = o->v[i].key;
        if (o->v[i].used || strncmp(k, "server.", 7))
            continue;
        if (!in_list(keys, k + 7))
            return qimg_error_set(err, -EINVAL, "Parameter '%s' is unexpected", k + 7);
    }
    if (a->type == NBD_ADDR_INET) {
        int r4 = qimg_opts_take_bool(o, "server.ipv4", &a->ipv4, err);
        if (r4 < 0)
            return r4;
        int r6 = qimg_opts_take_bool(o, "server.ipv6", &a->ipv6, err);
        if (r6 < 0)
            return r6;
        if (r4 > 0 && r6 > 0 && !a->ipv4 && !a->ipv6)
            return qimg_error_set(err, -EINVAL, "Cannot disable IPv4 and IPv6 at same time");
        /* ipv4=off alone means IPv6 only, and the other way round. */
        if (r4 > 0 && r6 == 0)
            a->ipv6 = !a->ipv4;
        if (r6 > 0 && r4 == 0)
            a->ipv4 = !a->ipv6;
        a->needs_json = r4 > 0 || r6 > 0 || qimg_opts_has(o, "server.to");
        for (const char *const *k = inet_keys; *k; k++) {
            char *key = xasprintf("server.%s", *k);
            qimg_opts_take(o, key); /* accepted; qimg has no use for them */
            free(key);
        }
    } else {
        qimg_opts_take(o, "server.abstract");
        qimg_opts_take(o, "server.tight");
    }
    return 0;
}

/* The deprecated top-level host/port/path keys, turned into server.*. */
static int take_legacy_keys(struct qimg_opts *o, struct qimg_error *err)
{
    const char *host = qimg_opts_take(o, "host"), *port = qimg_opts_take(o, "port");
    const char *path = qimg_opts_take(o, "path");
    if (!host && !port && !path)
        return 0;
    if (has_prefix_key(o, "server."))
        return qimg_error_set(err, -EINVAL,
                              "Cannot use 'server' and path/host/port at the same time");
    if (path && host)
        return qimg_error_set(err, -EINVAL, "path and host may not be used at the same time");
    if (path && port)
        return qimg_error_set(err, -EINVAL, "port may not be used without host");
    if (path) {
        qimg_opts_set(o, "server.type", "unix");
        qimg_opts_set(o, "server.path", path);
    } else {
        if (!host)
            return qimg_error_set(err, -EINVAL, "port may not be used without host");
        qimg_opts_set(o, "server.type", "inet");
        qimg_opts_set(o, "server.host", host);
        qimg_opts_set(o, "server.port", port ? port : NBD_DEFAULT_PORT);
    }
    return 0;
}

int nbd_addr_from_opts(struct nbd_addr *a, struct qimg_opts *o, struct qimg_error *err)
{
    *a = (struct nbd_addr){0};
    const char *filename = qimg_opts_take(o, "filename");
    /* A filename counts only when nothing else says where the server is. */
    bool explicit = qimg_opts_has(o, "export") || qimg_opts_has(o, "host") ||
                    qimg_opts_has(o, "port") || qimg_opts_has(o, "path") ||
                    has_prefix_key(o, "server.");
    if (filename && !explicit) {
        bool set = true;
        if (strstr(filename, "://")) {
            if (parse_uri(filename, a) < 0) {
                nbd_addr_clear(a);
                return qimg_error_set(err, -EINVAL, "No valid URL specified");
            }
        } else {
            int ret = parse_legacy(filename, a, &set, err);
            if (ret < 0)
                return ret;
        }
        if (set)
            return 0;
        nbd_addr_clear(a);
        return qimg_error_set(err, -EINVAL, "NBD server address missing");
    }
    int ret = take_legacy_keys(o, err);
    if (ret < 0)
        return ret;
    if (!has_prefix_key(o, "server."))
        return qimg_error_set(err, -EINVAL, "NBD server address missing");
    ret = take_server(o, a, err);
    if (ret < 0)
        return ret;
    const char *export = qimg_opts_take(o, "export");
    if (export)
        a->export = xstrdup(export);
    return 0;
}

char *nbd_addr_name(const struct nbd_addr *a)
{
    if (a->type == NBD_ADDR_UNIX)
        return a->export ? xasprintf("nbd+unix:///%s?socket=%s", a->export, a->path)
                         : xasprintf("nbd+unix://?socket=%s", a->path);
    return a->export ? xasprintf("nbd://%s:%s/%s", a->host, a->port, a->export)
                     : xasprintf("nbd://%s:%s", a->host, a->port);
}

char *nbd_addr_describe(const struct nbd_addr *a)
{
    if (a->type == NBD_ADDR_UNIX)
        return xstrdup(a->path);
    return xasprintf("%s:%s", a->host, a->port);
}

static int connect_unix(const struct nbd_addr *a, struct qimg_error *err)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(a->path) >= sizeof(sun.sun_path))
        return qimg_error_set(err, -EINVAL, "UNIX socket path '%s' is too long", a->path);
    strcpy(sun.sun_path, a->path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return qimg_error_errno(err, -errno, "Failed to create socket");
    /* An empty path names no socket: QEMU reports it refused. */
    if (!a->path[0]) {
        close(fd);
        return qimg_error_errno(err, -ECONNREFUSED, "Failed to connect to '%s'", a->path);
    }
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int e = errno;
        close(fd);
        return qimg_error_errno(err, -e, "Failed to connect to '%s'", a->path);
    }
    return fd;
}

static int connect_inet(const struct nbd_addr *a, struct qimg_error *err)
{
    int family = (a->ipv4 && !a->ipv6) ? AF_INET : (a->ipv6 && !a->ipv4) ? AF_INET6 : AF_UNSPEC;
    return net_connect_tcp(a->host, a->port, family, err);
}

int nbd_addr_connect(const struct nbd_addr *a, struct qimg_error *err)
{
    return a->type == NBD_ADDR_UNIX ? connect_unix(a, err) : connect_inet(a, err);
}
