/* SPDX-License-Identifier: MIT */
/*
 * The "ssh" protocol: a file on another host over SFTP (libssh), as QEMU's
 * ssh driver reaches it: ssh://[user@]host[:port]/path[?host_key_check=X]
 * or server.host/server.port/path/user/host-key-check options; the host key
 * checked against known_hosts (default), a fingerprint, or not at all;
 * authentication by public key from the ssh-agent (or default identities).
 * One SFTP handle carries every request, under a mutex.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/builtin.h"
#include "protocols/lazy-ssh.h"
#include "protocols/net-util.h"
#include "qimg/driver.h"
#include "util/mem.h"

/* libssh, loaded by session_open. */
#ifdef QIMG_SONAME_LIBSSH
LAZYLIB_DEFINE(ssh, QIMG_SONAME_LIBSSH, LAZY_SSH_SYMS);
#endif

#define SSH_DEFAULT_PORT "22"
#define SSH_IO_CHUNK (64 * 1024) /* what one SFTP read or write carries at most */

enum hkc_mode { HKC_KNOWN_HOSTS, HKC_NONE, HKC_HASH };

struct ssh_addr {
    char *host, *port, *path, *user;
    enum hkc_mode hkc;
    char *hkc_type, *hkc_hash; /* HKC_HASH: "sha256", hex */
    char *hkc_legacy;          /* host_key_check as the URI gave it, for the name */
};

struct ssh_state {
    struct ssh_addr a;
    ssh_session session;
    sftp_session sftp;
    sftp_file file;
    uint64_t length;
    bool can_fsync;
    pthread_mutex_t lock;
};

static const struct qimg_opt_desc ssh_open_opts[] = {
    {"filename", QIMG_OPT_STRING, "URL of the remote file", NULL},
    {"path", QIMG_OPT_STRING, "Path of the image on the host", NULL},
    {"user", QIMG_OPT_STRING, "User as which to connect", NULL},
    {"host_key_check", QIMG_OPT_STRING, "Defines how and what to check the host key against",
     NULL},
    {0},
};

static const struct qimg_opt_desc ssh_create_opts[] = {
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {0},
};

static void addr_clear(struct ssh_addr *a)
{
    free(a->host);
    free(a->port);
    free(a->path);
    free(a->user);
    free(a->hkc_type);
    free(a->hkc_hash);
    free(a->hkc_legacy);
    memset(a, 0, sizeof(*a));
}

/* "no", "yes", "md5:H", "sha1:H", "sha256:H" (QEMU's legacy host_key_check). */
static int parse_hkc_legacy(struct ssh_addr *a, const char *v, struct qimg_error *err)
{
    static const char *const types[] = {"md5", "sha1", "sha256", NULL};
    if (!strcmp(v, "no")) {
        a->hkc = HKC_NONE;
        return 0;
    }
    if (!strcmp(v, "yes")) {
        a->hkc = HKC_KNOWN_HOSTS;
        return 0;
    }
    for (const char *const *t = types; *t; t++) {
        size_t len = strlen(*t);
        if (!strncmp(v, *t, len) && v[len] == ':') {
            a->hkc = HKC_HASH;
            a->hkc_type = xstrdup(*t);
            a->hkc_hash = xstrdup(v + len + 1);
            return 0;
        }
    }
    return qimg_error_set(err, -EINVAL, "unknown host_key_check setting (%s)", v);
}

/* ssh://[user@]host[:port]/path[?host_key_check=X] into options, as QEMU's parse does. */
static int parse_uri(const char *uri, struct qimg_opts *o, struct qimg_error *err)
{
    if (strncmp(uri, "ssh://", 6))
        return qimg_error_set(err, -EINVAL, "URI scheme must be 'ssh'");
    const char *p = uri + 6;
    size_t auth_len = strcspn(p, "/?#");
    const char *auth = p, *rest = p + auth_len;
    const char *at = memchr(auth, '@', auth_len);
    if (at) {
        char *user = net_percent_decode(auth, (size_t)(at - auth));
        qimg_opts_set(o, "user", user);
        free(user);
        auth_len -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    const char *colon = memchr(auth, ':', auth_len);
    size_t host_len = colon ? (size_t)(colon - auth) : auth_len;
    if (!host_len)
        return qimg_error_set(err, -EINVAL, "No hostname was specified");
    char *host = xasprintf("%.*s", (int)host_len, auth);
    qimg_opts_set(o, "server.host", host);
    free(host);
    char *port = colon ? xasprintf("%.*s", (int)(auth + auth_len - colon - 1), colon + 1)
                       : xstrdup(SSH_DEFAULT_PORT);
    qimg_opts_set(o, "server.port", port[0] ? port : SSH_DEFAULT_PORT);
    free(port);
    size_t path_len = strcspn(rest, "?#");
    if (!path_len)
        return qimg_error_set(err, -EINVAL, "missing remote path in URI");
    char *path = net_percent_decode(rest, path_len);
    qimg_opts_set(o, "path", path);
    free(path);
    const char *q = rest[path_len] == '?' ? rest + path_len + 1 : NULL;
    while (q && *q && *q != '#') {
        size_t len = strcspn(q, "&#");
        const char *eq = memchr(q, '=', len);
        if (eq && (size_t)(eq - q) == 14 && !strncmp(q, "host_key_check", 14)) {
            char *v = net_percent_decode(eq + 1, (size_t)(q + len - eq - 1));
            qimg_opts_set(o, "host_key_check", v);
            free(v);
        } else if (len) {
            qimg_warn("Unsupported parameter '%.*s' in URI\n",
                      (int)(eq ? (size_t)(eq - q) : len), q);
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

static char *local_user(void)
{
    struct passwd *pw = getpwuid(getuid());
    return xstrdup(pw && pw->pw_name ? pw->pw_name : "root");
}

/* Options (after the URI, if any) into the address; QEMU's checks and messages. */
static int take_addr(struct ssh_addr *a, struct qimg_opts *o, struct qimg_error *err)
{
    const char *filename = qimg_opts_take(o, "filename");
    if (filename) {
        int ret = parse_uri(filename, o, err);
        if (ret < 0)
            return ret;
    }
    const char *host = qimg_opts_take(o, "host"), *port = qimg_opts_take(o, "port");
    if (host && !qimg_opts_has(o, "server.host"))
        qimg_opts_set(o, "server.host", host);
    if (port && !qimg_opts_has(o, "server.port"))
        qimg_opts_set(o, "server.port", port);
    const char *v = qimg_opts_take(o, "server.host");
    if (!v)
        return qimg_error_set(err, -EINVAL, "Parameter 'host' is missing");
    a->host = xstrdup(v);
    v = qimg_opts_take(o, "server.port");
    a->port = xstrdup(v ? v : SSH_DEFAULT_PORT);
    v = qimg_opts_take(o, "path");
    if (!v)
        return qimg_error_set(err, -EINVAL, "Parameter 'path' is missing");
    a->path = xstrdup(v);
    v = qimg_opts_take(o, "user");
    a->user = v ? xstrdup(v) : local_user();
    const char *legacy = qimg_opts_take(o, "host_key_check");
    const char *mode = qimg_opts_take(o, "host-key-check.mode");
    if (legacy) {
        a->hkc_legacy = xstrdup(legacy);
        return parse_hkc_legacy(a, legacy, err);
    }
    if (!mode || !strcmp(mode, "known_hosts")) {
        a->hkc = HKC_KNOWN_HOSTS;
    } else if (!strcmp(mode, "none")) {
        a->hkc = HKC_NONE;
    } else if (!strcmp(mode, "hash")) {
        const char *type = qimg_opts_take(o, "host-key-check.type");
        const char *hash = qimg_opts_take(o, "host-key-check.hash");
        if (!type)
            return qimg_error_set(err, -EINVAL, "Parameter 'type' is missing");
        if (!hash)
            return qimg_error_set(err, -EINVAL, "Parameter 'hash' is missing");
        if (strcmp(type, "md5") && strcmp(type, "sha1") && strcmp(type, "sha256"))
            return qimg_error_set(err, -EINVAL, "Parameter 'type' does not accept value '%s'",
                                  type);
        a->hkc = HKC_HASH;
        a->hkc_type = xstrdup(type);
        a->hkc_hash = xstrdup(hash);
    } else {
        return qimg_error_set(err, -EINVAL, "Parameter 'mode' does not accept value '%s'", mode);
    }
    return 0;
}

/* The server key's fingerprint as lowercase hex without colons, or NULL. */
static char *key_fingerprint(ssh_key key, const char *type)
{
    enum ssh_publickey_hash_type t = !strcmp(type, "md5")    ? SSH_PUBLICKEY_HASH_MD5
                                     : !strcmp(type, "sha1") ? SSH_PUBLICKEY_HASH_SHA1
                                                             : SSH_PUBLICKEY_HASH_SHA256;
    unsigned char *hash = NULL;
    size_t len = 0;
    if (ssh_get_publickey_hash(key, t, &hash, &len) < 0)
        return NULL;
    char *hex = xmalloc(len * 2 + 1);
    for (size_t i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", hash[i]);
    ssh_clean_pubkey_hash(&hash);
    return hex;
}

/* The user's hash matches hex, ignoring case and colons. */
static bool hash_matches(const char *want, const char *hex)
{
    for (;; want++) {
        while (*want == ':')
            want++;
        if (!*want || !*hex)
            return !*want && !*hex;
        if ((*want | 0x20) != *hex++)
            return false;
    }
}

static int check_host_key(struct ssh_state *s, struct qimg_error *err)
{
    const struct ssh_addr *a = &s->a;
    if (a->hkc == HKC_NONE)
        return 0;
    if (a->hkc == HKC_KNOWN_HOSTS) {
        switch (ssh_session_is_known_server(s->session)) {
        case SSH_KNOWN_HOSTS_OK: return 0;
        case SSH_KNOWN_HOSTS_CHANGED:
            return qimg_error_set(err, -EINVAL, "host key does not match the one in "
                                                "known_hosts");
        case SSH_KNOWN_HOSTS_OTHER:
            return qimg_error_set(err, -EINVAL, "host key for this server not found, another "
                                                "type exists");
        case SSH_KNOWN_HOSTS_UNKNOWN:
            return qimg_error_set(err, -EINVAL, "no host key was found in known_hosts");
        case SSH_KNOWN_HOSTS_NOT_FOUND:
            return qimg_error_set(err, -ENOENT, "known_hosts file not found");
        default:
            return qimg_error_set(err, -EINVAL, "error while checking the host");
        }
    }
    ssh_key key = NULL;
    if (ssh_get_server_publickey(s->session, &key) != SSH_OK)
        return qimg_error_set(err, -EINVAL, "failed to read remote host key");
    char *hex = key_fingerprint(key, a->hkc_type);
    int ret = 0;
    if (!hex)
        ret = qimg_error_set(err, -EINVAL, "failed to read remote host key");
    else if (!hash_matches(a->hkc_hash, hex))
        ret = qimg_error_set(err, -EPERM, "remote host %s key fingerprint '%s:%s' does not match "
                                          "host_key_check '%s:%s'",
                             ssh_key_type_to_char(ssh_key_type(key)), a->hkc_type, hex,
                             a->hkc_type, a->hkc_hash);
    free(hex);
    ssh_key_free(key);
    return ret;
}

static int authenticate(struct ssh_state *s, struct qimg_error *err)
{
    if (ssh_userauth_none(s->session, NULL) == SSH_AUTH_SUCCESS)
        return 0;
    int methods = ssh_userauth_list(s->session, NULL);
    if ((methods & SSH_AUTH_METHOD_PUBLICKEY) &&
        ssh_userauth_publickey_auto(s->session, NULL, NULL) == SSH_AUTH_SUCCESS)
        return 0;
    return qimg_error_set(err, -EPERM, "failed to authenticate using publickey authentication "
                                       "and the identities held by your ssh-agent");
}

/* Connect, check the host, log in and start SFTP: QEMU's steps and messages. */
static int session_open(struct ssh_state *s, struct qimg_error *err)
{
    int lret = lazy_ssh_load(err); /* open and create come through here */
    if (lret < 0)
        return lret;
    int fd = net_connect_tcp(s->a.host, s->a.port, AF_UNSPEC, err);
    if (fd < 0)
        return fd;
    s->session = ssh_new();
    if (!s->session) {
        close(fd);
        return qimg_error_set(err, -EINVAL, "failed to initialize libssh session");
    }
    socket_t sock = fd;
    int port = atoi(s->a.port);
    ssh_options_set(s->session, SSH_OPTIONS_FD, &sock); /* the session owns fd now */
    ssh_options_set(s->session, SSH_OPTIONS_HOST, s->a.host);
    ssh_options_set(s->session, SSH_OPTIONS_PORT, &port);
    ssh_options_set(s->session, SSH_OPTIONS_USER, s->a.user);
    if (ssh_connect(s->session) != SSH_OK)
        return qimg_error_set(err, -EINVAL, "failed to establish SSH session: %s",
                              ssh_get_error(s->session));
    int ret = check_host_key(s, err);
    if (ret == 0)
        ret = authenticate(s, err);
    if (ret < 0)
        return ret;
    s->sftp = sftp_new(s->session);
    if (!s->sftp || sftp_init(s->sftp) != SSH_OK)
        return qimg_error_set(err, -EINVAL, "failed to initialize sftp handle: %s",
                              ssh_get_error(s->session));
    s->can_fsync = sftp_extension_supported(s->sftp, "fsync@openssh.com", "1");
    return 0;
}

static int sftp_error(struct ssh_state *s, struct qimg_error *err, const char *fmt,
                      const char *arg)
{
    char what[4096];
    snprintf(what, sizeof(what), fmt, arg);
    int serr = s->sftp ? sftp_get_error(s->sftp) : 0;
    return qimg_error_set(err, serr == SSH_FX_NO_SUCH_FILE ? -ENOENT : -EIO,
                          "%s: %s (libssh error code: %d, sftp error code: %d)", what,
                          ssh_get_error(s->session), ssh_get_error_code(s->session), serr);
}

static void state_free(struct ssh_state *s)
{
    if (s->file)
        sftp_close(s->file);
    if (s->sftp)
        sftp_free(s->sftp);
    if (s->session) {
        ssh_disconnect(s->session);
        ssh_free(s->session);
    }
    addr_clear(&s->a);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int open_remote(struct ssh_state *s, int flags, struct qimg_error *err)
{
    s->file = sftp_open(s->sftp, s->a.path, flags, 0644);
    if (!s->file)
        return sftp_error(s, err, "failed to open remote file '%s'", s->a.path);
    sftp_attributes attr = sftp_fstat(s->file);
    if (!attr)
        return sftp_error(s, err, "failed to read file attributes of '%s'", s->a.path);
    s->length = attr->size;
    sftp_attributes_free(attr);
    return 0;
}

/* Keep the node named ssh://...: the options it was given are not shown in JSON. */
static void drop_naming_options(struct qimg_opts *o)
{
    static const char *const keys[] = {"server.host", "server.port", "path", "user",
                                       "host_key_check", "host-key-check.mode",
                                       "host-key-check.type", "host-key-check.hash", NULL};
    for (const char *const *k = keys; *k; k++)
        qimg_opts_del(o, *k);
}

static int ssh_open_node(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct ssh_state *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    n->opaque = s;
    int ret = take_addr(&s->a, opts, err);
    if (ret == 0)
        ret = session_open(s, err);
    if (ret == 0)
        ret = open_remote(s, (n->flags & QIMG_O_RDWR) ? O_RDWR : O_RDONLY, err);
    if (ret == 0)
        drop_naming_options(opts);
    return ret;
}

static void ssh_close_node(struct qimg_node *n)
{
    if (n->opaque)
        state_free(n->opaque);
    n->opaque = NULL;
}

static char *ssh_plain_filename(struct qimg_node *n)
{
    const struct ssh_addr *a = &((struct ssh_state *)n->opaque)->a;
    return xasprintf("ssh://%s@%s:%s%s%s%s", a->user, a->host, a->port, a->path,
                     a->hkc_legacy ? "?host_key_check=" : "",
                     a->hkc_legacy ? a->hkc_legacy : "");
}

static int64_t ssh_get_length(struct qimg_node *n)
{
    struct ssh_state *s = n->opaque;
    pthread_mutex_lock(&s->lock);
    int64_t len = (int64_t)s->length;
    pthread_mutex_unlock(&s->lock);
    return len;
}

static int ssh_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf, unsigned flags)
{
    struct ssh_state *s = n->opaque;
    uint8_t *p = buf;
    (void)flags;
    int ret = 0;
    pthread_mutex_lock(&s->lock);
    if (sftp_seek64(s->file, off) < 0)
        ret = -EIO;
    while (ret == 0 && len) {
        size_t now = len < SSH_IO_CHUNK ? (size_t)len : SSH_IO_CHUNK;
        ssize_t r = sftp_read(s->file, p, now);
        if (r < 0) {
            ret = -EIO;
        } else if (r == 0) {
            memset(p, 0, len); /* past the end: the sector-rounding tail reads as zeroes */
            len = 0;
        } else {
            p += r;
            len -= (uint64_t)r;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int ssh_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                      unsigned flags)
{
    struct ssh_state *s = n->opaque;
    const uint8_t *p = buf;
    (void)flags;
    int ret = 0;
    pthread_mutex_lock(&s->lock);
    if (sftp_seek64(s->file, off) < 0)
        ret = -EIO;
    uint64_t pos = off;
    while (ret == 0 && len) {
        size_t now = len < SSH_IO_CHUNK ? (size_t)len : SSH_IO_CHUNK;
        ssize_t r = sftp_write(s->file, p, now);
        if (r <= 0) {
            ret = -EIO;
            break;
        }
        p += r;
        len -= (uint64_t)r;
        pos += (uint64_t)r;
    }
    if (pos > s->length)
        s->length = pos;
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int ssh_flush(struct qimg_node *n)
{
    struct ssh_state *s = n->opaque;
    if (!s->can_fsync)
        return 0; /* QEMU warns once and goes on: the server cannot do better */
    pthread_mutex_lock(&s->lock);
    int ret = sftp_fsync(s->file) < 0 ? -EIO : 0;
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* Grow by writing the last byte (SFTP has no truncate on a handle that libssh exposes). */
static int grow_to(struct ssh_state *s, uint64_t size)
{
    if (size <= s->length)
        return 0;
    static const uint8_t zero;
    int ret = 0;
    pthread_mutex_lock(&s->lock);
    if (sftp_seek64(s->file, size - 1) < 0 || sftp_write(s->file, &zero, 1) != 1)
        ret = -EIO;
    else
        s->length = size;
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int ssh_truncate(struct qimg_node *n, uint64_t size, bool exact, enum qimg_prealloc prealloc,
                        struct qimg_error *err)
{
    struct ssh_state *s = n->opaque;
    (void)exact;
    if (prealloc != QIMG_PREALLOC_OFF)
        return qimg_error_set(err, -ENOTSUP, "Unsupported preallocation mode '%s'",
                              qimg_prealloc_name(prealloc));
    if (size < s->length)
        return qimg_error_set(err, -ENOTSUP, "ssh driver does not support shrinking files");
    int ret = grow_to(s, size);
    return ret < 0 ? qimg_error_errno(err, ret, "Failed to grow file") : 0;
}

static int ssh_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    uint64_t size = 0;
    if (qimg_opts_take_size(opts, "size", &size, err) < 0)
        return err->code;
    struct qimg_opts *o = qimg_opts_new();
    qimg_opts_set(o, "filename", filename);
    struct ssh_state *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    int ret = take_addr(&s->a, o, err);
    if (ret == 0)
        ret = session_open(s, err);
    if (ret == 0)
        ret = open_remote(s, O_RDWR | O_CREAT | O_TRUNC, err);
    if (ret == 0) {
        ret = grow_to(s, size);
        if (ret < 0)
            qimg_error_errno(err, ret, "Failed to grow file");
    }
    state_free(s);
    qimg_opts_free(o);
    return ret;
}

static bool ssh_has_zero_init(struct qimg_node *n)
{
    (void)n;
    return true; /* a new remote file reads as zeroes */
}

const struct qimg_driver qimg_ssh_driver = {
    .name = "ssh",
    .is_protocol = true,
    .protocol_prefix = "ssh",
    .create_opts = ssh_create_opts,
    .open_opts = ssh_open_opts,
    .open = ssh_open_node,
    .close = ssh_close_node,
    .create = ssh_create,
    .get_length = ssh_get_length,
    .pread = ssh_pread,
    .pwrite = ssh_pwrite,
    .flush = ssh_flush,
    .truncate = ssh_truncate,
    .has_zero_init = ssh_has_zero_init,
    .plain_filename = ssh_plain_filename,
};
