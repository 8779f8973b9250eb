/* SPDX-License-Identifier: MIT */
/*
 * The secret store (qimg/secret.h). Secrets are created from `--object
 * secret` properties as QEMU documents them (docs/system/secrets.rst): the
 * bytes come from `data` or `file`, optionally base64 (`format`), optionally
 * AES-256-CBC ciphertext under the 32-byte secret `keyid` with a 16-byte
 * base64 `iv`; the decrypted text ends in padding whose length is its last
 * byte (PKCS#7, as `openssl enc` writes it).
 */
#include <errno.h>
#include <nettle/aes.h>
#include <nettle/cbc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/keyctl.h>

#include "qimg/secret.h"
#include "util/base64.h"
#include "util/mem.h"

#define AES_BLOCK 16

struct secret {
    char *id;
    uint8_t *data;
    size_t len;
    struct secret *next;
};

static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static struct secret *store;

/* Wipe before freeing: secrets should not linger in freed memory. */
static void free_bytes(uint8_t *p, size_t len)
{
    if (p) {
        volatile uint8_t *v = p;
        for (size_t i = 0; i < len; i++)
            v[i] = 0;
    }
    free(p);
}

static uint8_t *copy_bytes(const void *data, size_t len)
{
    uint8_t *p = xmalloc(len + 1);
    if (len)
        memcpy(p, data, len);
    p[len] = 0;
    return p;
}

int qimg_secret_add(const char *id, const void *data, size_t len, struct qimg_error *err)
{
    pthread_mutex_lock(&store_lock);
    for (struct secret *s = store; s; s = s->next) {
        if (strcmp(s->id, id) == 0) {
            pthread_mutex_unlock(&store_lock);
            return qimg_error_set(err, -EEXIST,
                                  "attempt to add duplicate property '%s' to object (type "
                                  "'container')", id);
        }
    }
    struct secret *s = xcalloc(1, sizeof(*s));
    s->id = xstrdup(id);
    s->data = copy_bytes(data, len);
    s->len = len;
    s->next = store;
    store = s;
    pthread_mutex_unlock(&store_lock);
    return 0;
}

int qimg_secret_lookup(const char *id, uint8_t **data, size_t *len, struct qimg_error *err)
{
    pthread_mutex_lock(&store_lock);
    for (struct secret *s = store; s; s = s->next) {
        if (strcmp(s->id, id) == 0) {
            *data = copy_bytes(s->data, s->len);
            *len = s->len;
            pthread_mutex_unlock(&store_lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&store_lock);
    return qimg_error_set(err, -ENOENT, "No secret with id '%s'", id);
}

void qimg_secret_clear_all(void)
{
    pthread_mutex_lock(&store_lock);
    while (store) {
        struct secret *s = store;
        store = s->next;
        free_bytes(s->data, s->len);
        free(s->id);
        free(s);
    }
    pthread_mutex_unlock(&store_lock);
}

/* The whole file, as glib reads it for QEMU (messages in glib's words). */
static int read_file(const char *path, uint8_t **out, size_t *out_len, struct qimg_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return qimg_error_set(err, -errno, "Unable to read %s: Failed to open file \u201c%s\u201d: %s",
                              path, path, strerror(errno));
    size_t cap = 4096, len = 0;
    uint8_t *buf = xmalloc(cap + 1);
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                int e = errno ? errno : EIO;
                fclose(f);
                free_bytes(buf, cap);
                return qimg_error_set(err, -e, "Unable to read %s: Error reading file \u201c%s\u201d: %s",
                                      path, path, strerror(e));
            }
            break;
        }
        if (len == cap) {
            if (cap >= (64u << 20)) { /* a secret, not a disk image */
                fclose(f);
                free_bytes(buf, cap);
                return qimg_error_set(err, -EFBIG, "Unable to read %s: File too large", path);
            }
            uint8_t *bigger = xmalloc(cap * 2 + 1);
            memcpy(bigger, buf, len);
            free_bytes(buf, cap);
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    buf[len] = 0;
    *out = buf;
    *out_len = len;
    return 0;
}

/*
 * AES-256-CBC decryption of input (base64 text if base64) under secret keyid
 * (docs/system/secrets.rst); the key and the IV are checked first, as QEMU does.
 */
static int decrypt(const char *keyid, const char *iv_b64, const uint8_t *input, size_t len,
                   bool base64, uint8_t **out, size_t *out_len, struct qimg_error *err)
{
    uint8_t *key = NULL, *iv = NULL, *ct = NULL;
    size_t key_len = 0, iv_len = 0, ct_len = 0;
    int ret = qimg_secret_lookup(keyid, &key, &key_len, err);
    if (ret < 0)
        return ret;
    if (key_len != 32) {
        ret = qimg_error_set(err, -EINVAL, "Key should be 32 bytes in length");
        goto out;
    }
    if (!iv_b64) {
        ret = qimg_error_set(err, -EINVAL, "IV is required to decrypt secret");
        goto out;
    }
    ret = qimg_base64_decode(iv_b64, strlen(iv_b64), &iv, &iv_len, err);
    if (ret < 0)
        goto out;
    if (iv_len != AES_BLOCK) {
        ret = qimg_error_set(err, -EINVAL, "IV should be 16 bytes in length not %zu", iv_len);
        goto out;
    }
    if (base64) {
        ret = qimg_base64_decode((const char *)input, len, &ct, &ct_len, err);
        if (ret < 0)
            goto out;
        input = ct;
        len = ct_len;
    }
    if (len % AES_BLOCK) {
        ret = qimg_error_set(err, -EINVAL, "Length %zu must be a multiple of block size 16", len);
        goto out;
    }
    uint8_t *plain = xmalloc(len + 1);
    struct aes256_ctx ctx;
    aes256_set_decrypt_key(&ctx, key);
    cbc_decrypt(&ctx, (nettle_cipher_func *)aes256_decrypt, AES_BLOCK, iv, len, plain, input);
    memset(&ctx, 0, sizeof(ctx));
    size_t pad = len ? plain[len - 1] : 0;
    if (pad > AES_BLOCK) {
        free_bytes(plain, len);
        ret = qimg_error_set(err, -EINVAL,
                             "Incorrect number of padding bytes (%zu) found on decrypted data", pad);
        goto out;
    }
    plain[len - pad] = 0;
    *out = plain;
    *out_len = len - pad;
out:
    free_bytes(key, key_len);
    free_bytes(iv, iv_len);
    free_bytes(ct, ct_len);
    return ret;
}

/* The payload of Linux key serial (keyctl(2) KEYCTL_READ). */
static int read_key(const char *serial_str, uint8_t **out, size_t *out_len,
                    struct qimg_error *err)
{
    int32_t serial = (int32_t)strtol(serial_str, NULL, 0);
    long n = syscall(SYS_keyctl, KEYCTL_READ, serial, NULL, 0);
    uint8_t *buf = NULL;
    while (n >= 0) {
        size_t cap = (size_t)n;
        buf = xmalloc(cap + 1);
        n = syscall(SYS_keyctl, KEYCTL_READ, serial, buf, cap);
        if (n >= 0 && (size_t)n <= cap) {
            buf[n] = 0;
            *out = buf;
            *out_len = (size_t)n;
            return 0;
        }
        free_bytes(buf, cap); /* the key grew meanwhile: again */
        buf = NULL;
    }
    return qimg_error_set(err, -errno, "Unable to read serial key %08x: %s", (uint32_t)serial,
                          strerror(errno));
}

int qimg_secret_create(const char *id, const char *type, struct qimg_opts *props,
                       struct qimg_error *err)
{
    bool keyring = strcmp(type, "secret_keyring") == 0;
    const char *data = keyring ? NULL : qimg_opts_take(props, "data");
    const char *file = keyring ? NULL : qimg_opts_take(props, "file");
    const char *serial = keyring ? qimg_opts_take(props, "serial") : NULL;
    const char *format = qimg_opts_take(props, "format");
    const char *keyid = qimg_opts_take(props, "keyid");
    const char *iv = qimg_opts_take(props, "iv");
    bool base64 = format && strcmp(format, "base64") == 0;
    if (format && !base64 && strcmp(format, "raw") != 0)
        return qimg_error_set(err, -EINVAL, "Parameter 'format' does not accept value '%s'",
                              format);

    uint8_t *input = NULL, *value = NULL;
    size_t input_len = 0, value_len = 0;
    int ret;
    if (file && data)
        return qimg_error_set(err, -EINVAL, "'file' and 'data' are mutually exclusive");
    if (serial) {
        ret = read_key(serial, &input, &input_len, err);
        if (ret < 0)
            return ret;
    } else if (file) {
        ret = read_file(file, &input, &input_len, err);
        if (ret < 0)
            return ret;
    } else if (data) {
        input_len = strlen(data);
        input = copy_bytes(data, input_len);
    } else {
        return qimg_error_set(err, -EINVAL, "Either 'file' or 'data' must be provided");
    }

    if (keyid)
        ret = decrypt(keyid, iv, input, input_len, base64, &value, &value_len, err);
    else if (base64)
        ret = qimg_base64_decode((const char *)input, input_len, &value, &value_len, err);
    else {
        value = input;
        value_len = input_len;
        input = NULL;
        ret = 0;
    }
    free_bytes(input, input_len);
    if (ret < 0)
        return ret;
    ret = qimg_secret_add(id, value, value_len, err);
    free_bytes(value, value_len);
    return ret;
}
