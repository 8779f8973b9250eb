/* SPDX-License-Identifier: MIT */
/*
 * --object (qimg/object.h). The order of checks follows what qemu-img
 * reports first: qom-type missing or unknown, id missing, each property
 * against the type's table (unknown, bad enum, integer or boolean value),
 * a required property missing, the id's spelling, a duplicate id, then the
 * type's own completion (for secrets: data, file, base64, decryption).
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qimg/object.h"
#include "qimg/opts.h"
#include "qimg/secret.h"
#include "core/throttle-group.h"
#include "util/mem.h"
#include "util/throttle.h"

enum prop_kind { P_STRING, P_INT, P_BOOL, P_ENUM, P_OTHER };

struct prop {
    const char *name;
    enum prop_kind kind;
    const char *type_name; /* as "TYPE,help" prints it */
    const char *values;    /* P_ENUM: accepted values, '|'-separated */
};

/* The types qemu-img can create; "TYPE,help" lists props in this (sorted) order. */
struct creatable {
    const char *qom_type;  /* what --object accepts as qom-type */
    const char *help_name; /* the name "help" lists (QOM's; differs for authz-list-file) */
    const char *required;  /* a property that must be given, or NULL */
    struct prop props[21];
};

#define S(n) {n, P_STRING, "string", NULL}
#define I(n) {n, P_INT, "int", NULL}
#define B(n) {n, P_BOOL, "bool", NULL}
#define O(n, t) {n, P_OTHER, t, NULL}
#define E(n, t, v) {n, P_ENUM, t, v}
#define FORMAT_PROP E("format", "QCryptoSecretFormat", "raw|base64")
#define ENDPOINT_PROP E("endpoint", "QCryptoTLSCredsEndpoint", "client|server")

static const struct creatable creatables[] = {
    {"authz-list", "authz-list", NULL,
     {E("policy", "QAuthZListPolicy", "deny|allow"), O("rules", "QAuthZListRule")}},
    {NULL, "authz-list-file", NULL,
     {S("filename"), B("refresh")}},
    {"authz-simple", "authz-simple", "identity", {S("identity")}},
    {"main-loop", "main-loop", NULL,
     {I("aio-max-batch"), I("thread-pool-max"),
      I("thread-pool-min")}},
    {"pr-manager-helper", "pr-manager-helper", "path", {S("path")}},
    {"secret", "secret", NULL,
     {S("data"), S("file"), FORMAT_PROP,
      S("iv"), S("keyid")}},
    {"secret_keyring", "secret_keyring", "serial",
     {FORMAT_PROP, S("iv"), S("keyid"),
      {"serial", P_INT, "int32_t", NULL}}},
    {"thread-context", "thread-context", NULL,
     {O("cpu-affinity", "int"), O("node-affinity", "int")}},
    {"throttle-group", "throttle-group", NULL,
     {O("limits", "ThrottleLimits"),
      I("x-bps-read-max-length"), I("x-bps-read-max"),
      I("x-bps-read"), I("x-bps-total-max-length"),
      I("x-bps-total-max"), I("x-bps-total"),
      I("x-bps-write-max-length"), I("x-bps-write-max"),
      I("x-bps-write"), I("x-iops-read-max-length"),
      I("x-iops-read-max"), I("x-iops-read"),
      I("x-iops-size"), I("x-iops-total-max-length"),
      I("x-iops-total-max"), I("x-iops-total"),
      I("x-iops-write-max-length"), I("x-iops-write-max"),
      I("x-iops-write")}},
    {"tls-cipher-suites", "tls-cipher-suites", NULL,
     {S("dir"), ENDPOINT_PROP, S("priority"),
      B("verify-peer")}},
    {"tls-creds-anon", "tls-creds-anon", NULL,
     {S("dir"), ENDPOINT_PROP, S("priority"),
      B("verify-peer")}},
    {"tls-creds-psk", "tls-creds-psk", NULL,
     {S("dir"), ENDPOINT_PROP, S("priority"),
      S("username"), B("verify-peer")}},
    {"tls-creds-x509", "tls-creds-x509", NULL,
     {S("dir"), ENDPOINT_PROP, S("passwordid"),
      S("priority"), B("sanity-check"),
      B("verify-peer")}},
};

/*
 * The other qom-type values QEMU's schema knows: accepted as names, but
 * qemu-img cannot create them ("invalid object type"), after the first
 * property the schema requires.
 */
static const struct {
    const char *qom_type, *required;
} schema_only[] = {
    {"authz-listfile", "filename"}, {"authz-pam", "service"}, {"can-bus", NULL},
    {"can-host-socketcan", "if"}, {"colo-compare", "primary_in"}, {"cryptodev-backend", NULL},
    {"cryptodev-backend-builtin", NULL}, {"cryptodev-backend-lkcf", NULL},
    {"cryptodev-vhost-user", "chardev"}, {"dbus-vmstate", "addr"}, {"filter-buffer", "netdev"},
    {"filter-dump", "netdev"}, {"filter-mirror", "netdev"}, {"filter-redirector", "netdev"},
    {"filter-replay", "netdev"}, {"filter-rewriter", "netdev"}, {"input-barrier", "name"},
    {"input-linux", "evdev"}, {"iothread", NULL}, {"memory-backend-epc", "size"},
    {"memory-backend-file", "size"}, {"memory-backend-memfd", "size"},
    {"memory-backend-ram", "size"}, {"pef-guest", NULL}, {"qtest", "chardev"},
    {"rng-builtin", NULL}, {"rng-egd", "chardev"}, {"rng-random", NULL},
    {"s390-pv-guest", NULL}, {"sev-guest", "reduced-phys-bits"},
    {"x-remote-object", "fd"}, {"x-vfio-user-server", "socket"},
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static pthread_mutex_t ids_lock = PTHREAD_MUTEX_INITIALIZER;
static char **ids;
static size_t n_ids;
/* TLS credentials kept for the drivers that use them (nbd), under ids_lock. */
static struct tls_entry {
    char *id;
    struct qimg_tls_creds creds;
} *tls_objs;
static size_t n_tls;

static const struct creatable *find_creatable(const char *type, bool by_help_name)
{
    for (size_t i = 0; i < ARRAY_SIZE(creatables); i++) {
        const char *name = by_help_name ? creatables[i].help_name : creatables[i].qom_type;
        if (name && strcmp(name, type) == 0)
            return &creatables[i];
    }
    return NULL;
}

static const struct prop *find_prop(const struct creatable *c, const char *name)
{
    for (const struct prop *p = c->props; p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

static int parse_spec(const char *spec, struct qimg_opts *o, struct qimg_error *err)
{
    if (spec[0] != '{')
        return qimg_opts_parse(o, spec, "qom-type", err);
    int ret = qimg_opts_parse_json(o, spec, err);
    const char *prefix = "Could not parse the JSON options: ";
    if (ret < 0 && err && strncmp(err->msg, prefix, strlen(prefix)) == 0) {
        char *msg = xstrdup(err->msg + strlen(prefix));
        qimg_error_reset(err, ret, "%s", msg);
        free(msg);
    }
    return ret;
}

bool qimg_object_help(const char *spec, FILE *f)
{
    struct qimg_opts *o = qimg_opts_new();
    bool help = false;
    if (parse_spec(spec, o, NULL) == 0) {
        const char *type = qimg_opts_peek(o, "qom-type");
        bool list = type && (strcmp(type, "help") == 0 || strcmp(type, "?") == 0);
        help = list || qimg_opts_wants_help(o);
        const struct creatable *c = help && !list && type ? find_creatable(type, true) : NULL;
        if (c) {
            fprintf(f, "%s options:\n", c->help_name);
            for (const struct prop *p = c->props; p->name; p++)
                fprintf(f, "  %s=<%s>\n", p->name, p->type_name);
        } else if (help) {
            fprintf(f, "List of user creatable objects:\n");
            for (size_t i = 0; i < ARRAY_SIZE(creatables); i++)
                fprintf(f, "  %s\n", creatables[i].help_name);
        }
    }
    qimg_opts_free(o);
    return help;
}

static bool valid_int(const char *v)
{
    char *end;
    errno = 0;
    (void)strtoll(v, &end, 0);
    return *v && !*end && errno == 0;
}

static bool enum_accepts(const char *values, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = values; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return true;
        p += len + (bar ? 1 : 0);
    }
    return false;
}

/* A throttle-group's "limits.NAME" (ThrottleLimits members): integers. */
static const struct prop limit_prop = {"limits", P_INT, "int", NULL};

static bool is_throttle_limit(const struct creatable *c, const char *key)
{
    return !strcmp(c->qom_type ? c->qom_type : "", "throttle-group") &&
           !strncmp(key, "limits.", 7) && qimg_throttle_is_limit(key + 7);
}

static int check_props(const struct creatable *c, const struct qimg_opts *o,
                       struct qimg_error *err)
{
    for (size_t i = 0; i < o->n; i++) {
        const char *k = o->v[i].key, *v = o->v[i].value ? o->v[i].value : "";
        if (strcmp(k, "qom-type") == 0 || strcmp(k, "id") == 0)
            continue;
        const struct prop *p = find_prop(c, k);
        if (!p && is_throttle_limit(c, k))
            p = &limit_prop;
        else if (p && p->kind == P_OTHER && !strcmp(p->type_name, "ThrottleLimits"))
            return qimg_error_set(err, -EINVAL,
                                  "Invalid parameter type for '%s', expected: object", k);
        if (!p)
            return qimg_error_set(err, -EINVAL, "Parameter '%s' is unexpected", k);
        if (p->kind == P_INT && !valid_int(v))
            return qimg_error_set(err, -EINVAL, "Parameter '%s' expects integer", k);
        if (p->kind == P_BOOL && strcmp(v, "on") && strcmp(v, "off") &&
            o->v[i].type != QIMG_OPTV_BOOL)
            return qimg_error_set(err, -EINVAL, "Parameter '%s' expects 'on' or 'off'", k);
        if (p->kind == P_ENUM && !enum_accepts(p->values, v))
            return qimg_error_set(err, -EINVAL, "Parameter '%s' does not accept value '%s'", k, v);
    }
    if (c->required && !qimg_opts_has(o, c->required))
        return qimg_error_set(err, -EINVAL, "Parameter '%s' is missing", c->required);
    return 0;
}

/* QAPI identifiers: a letter, then letters, digits, '-', '.', '_'. */
static bool valid_id(const char *id)
{
    if (!isalpha((unsigned char)id[0]))
        return false;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_')
            return false;
    return true;
}

static bool id_taken(const char *id)
{
    for (size_t i = 0; i < n_ids; i++)
        if (strcmp(ids[i], id) == 0)
            return true;
    return false;
}

/* What completing the object checks, for the types qemu-img completes without hardware. */
static int complete(const char *type, const char *id, struct qimg_opts *o, struct qimg_error *err)
{
    if (strcmp(type, "secret") == 0 || strcmp(type, "secret_keyring") == 0)
        return qimg_secret_create(id, type, o, err);
    if (strcmp(type, "tls-cipher-suites") == 0 && !qimg_opts_has(o, "priority"))
        return qimg_error_set(err, -EINVAL, "'priority' property is not set");
    if (strcmp(type, "tls-creds-psk") == 0 || strcmp(type, "tls-creds-x509") == 0) {
        const char *dir = qimg_opts_peek(o, "dir");
        if (!dir)
            return qimg_error_set(err, -EINVAL, "Missing 'dir' property value");
        const char *first = strcmp(type, "tls-creds-psk") == 0 ? "keys.psk" : "ca-cert.pem";
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, first);
        if (access(path, R_OK) < 0)
            return qimg_error_set(err, -errno, "Unable to access credentials %s: %s", path,
                                  strerror(errno));
    }
    return 0;
}

/* Throttle groups, kept for the throttle filter (under ids_lock). */
static struct throttle_entry {
    char *id;
    struct qimg_throttle *t;
} *throttle_objs;
static size_t n_throttle;

static int keep_throttle_group(const char *id, const struct qimg_opts *o, struct qimg_error *err)
{
    struct qimg_throttle *t = xcalloc(1, sizeof(*t));
    int ret = qimg_throttle_init(t, o, err);
    if (ret < 0) {
        qimg_throttle_destroy(t);
        free(t);
        return ret;
    }
    throttle_objs = xrealloc(throttle_objs, (n_throttle + 1) * sizeof(*throttle_objs));
    throttle_objs[n_throttle++] = (struct throttle_entry){xstrdup(id), t};
    return 0;
}

struct qimg_throttle *qimg_object_throttle_group(const char *id)
{
    struct qimg_throttle *t = NULL;
    pthread_mutex_lock(&ids_lock);
    for (size_t i = 0; i < n_throttle && !t; i++)
        if (!strcmp(throttle_objs[i].id, id))
            t = throttle_objs[i].t;
    pthread_mutex_unlock(&ids_lock);
    return t;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

/* Called with ids_lock held, for a tls-creds-* object just completed. */
static int keep_tls_creds(const char *type, const char *id, struct qimg_opts *o,
                          struct qimg_error *err)
{
    struct qimg_tls_creds c = {.type = xstrdup(type), .verify_peer = true};
    c.dir = dup_or_null(qimg_opts_peek(o, "dir"));
    const char *endpoint = qimg_opts_peek(o, "endpoint");
    c.endpoint = xstrdup(endpoint ? endpoint : "client");
    c.username = dup_or_null(qimg_opts_peek(o, "username"));
    const char *vp = qimg_opts_peek(o, "verify-peer");
    if (vp)
        c.verify_peer = !strcmp(vp, "on") || !strcmp(vp, "true") || !strcmp(vp, "yes");
    (void)err;
    tls_objs = xrealloc(tls_objs, (n_tls + 1) * sizeof(*tls_objs));
    tls_objs[n_tls++] = (struct tls_entry){xstrdup(id), c};
    return 0;
}

void qimg_tls_creds_clear(struct qimg_tls_creds *c)
{
    free(c->type);
    free(c->dir);
    free(c->endpoint);
    free(c->username);
    memset(c, 0, sizeof(*c));
}

int qimg_object_tls_client_creds(const char *id, struct qimg_tls_creds *out,
                                 struct qimg_error *err)
{
    int ret = 0;
    pthread_mutex_lock(&ids_lock);
    const struct tls_entry *e = NULL;
    for (size_t i = 0; i < n_tls && !e; i++)
        if (!strcmp(tls_objs[i].id, id))
            e = &tls_objs[i];
    if (!e && id_taken(id)) {
        ret = qimg_error_set(err, -EINVAL, "Object with id '%s' is not TLS credentials", id);
    } else if (!e) {
        ret = qimg_error_set(err, -ENOENT, "No TLS credentials with id '%s'", id);
    } else if (strcmp(e->creds.endpoint, "client")) {
        ret = qimg_error_set(err, -EINVAL, "Expecting TLS credentials with a client endpoint");
    } else {
        *out = (struct qimg_tls_creds){xstrdup(e->creds.type), dup_or_null(e->creds.dir),
                                       xstrdup(e->creds.endpoint),
                                       dup_or_null(e->creds.username), e->creds.verify_peer};
    }
    pthread_mutex_unlock(&ids_lock);
    return ret;
}

int qimg_object_add(const char *spec, struct qimg_error *err)
{
    struct qimg_opts *o = qimg_opts_new();
    int ret = parse_spec(spec, o, err);
    if (ret < 0)
        goto out;
    const char *type = qimg_opts_peek(o, "qom-type");
    const char *id = qimg_opts_peek(o, "id");
    const struct creatable *c = type ? find_creatable(type, false) : NULL;
    const char *schema_required = NULL;
    bool known = c != NULL;
    for (size_t i = 0; type && !known && i < ARRAY_SIZE(schema_only); i++) {
        if (strcmp(schema_only[i].qom_type, type) == 0) {
            known = true;
            schema_required = schema_only[i].required;
        }
    }
    if (!type) {
        ret = qimg_error_set(err, -EINVAL, "Parameter 'qom-type' is missing");
    } else if (!known) {
        ret = qimg_error_set(err, -EINVAL, "Parameter 'qom-type' does not accept value '%s'",
                             type);
    } else if (!id) {
        ret = qimg_error_set(err, -EINVAL, "Parameter 'id' is missing");
    } else if (!c) {
        if (schema_required && !qimg_opts_has(o, schema_required))
            ret = qimg_error_set(err, -EINVAL, "Parameter '%s' is missing", schema_required);
        else
            ret = qimg_error_set(err, -EINVAL, "invalid object type: %s", type);
    } else if ((ret = check_props(c, o, err)) < 0) {
        /* reported */
    } else if (!valid_id(id)) {
        ret = qimg_error_set(err, -EINVAL,
                             "Parameter 'id' expects an identifier\n"
                             "Identifiers consist of letters, digits, '-', '.', '_', starting "
                             "with a letter.");
    } else {
        pthread_mutex_lock(&ids_lock);
        if (id_taken(id)) {
            ret = qimg_error_set(err, -EEXIST,
                                 "attempt to add duplicate property '%s' to object (type "
                                 "'container')", id);
        } else {
            ret = complete(type, id, o, err);
            if (ret == 0 && !strcmp(type, "throttle-group"))
                ret = keep_throttle_group(id, o, err);
            if (ret == 0) {
                ids = xrealloc(ids, (n_ids + 1) * sizeof(*ids));
                ids[n_ids++] = xstrdup(id);
                if (!strncmp(type, "tls-creds-", 10))
                    ret = keep_tls_creds(type, id, o, err);
            }
        }
        pthread_mutex_unlock(&ids_lock);
    }
out:
    qimg_opts_free(o);
    return ret;
}

void qimg_object_clear_all(void)
{
    pthread_mutex_lock(&ids_lock);
    for (size_t i = 0; i < n_ids; i++)
        free(ids[i]);
    free(ids);
    ids = NULL;
    n_ids = 0;
    for (size_t i = 0; i < n_tls; i++) {
        free(tls_objs[i].id);
        qimg_tls_creds_clear(&tls_objs[i].creds);
    }
    free(tls_objs);
    tls_objs = NULL;
    n_tls = 0;
    for (size_t i = 0; i < n_throttle; i++) {
        free(throttle_objs[i].id);
        qimg_throttle_destroy(throttle_objs[i].t);
        free(throttle_objs[i].t);
    }
    free(throttle_objs);
    throttle_objs = NULL;
    n_throttle = 0;
    pthread_mutex_unlock(&ids_lock);
    qimg_secret_clear_all();
}
