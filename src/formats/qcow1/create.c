/* SPDX-License-Identifier: MIT */
/*
 * Creating qcow (v1) images as qemu-img 9.1 lays them out: the 48-byte
 * header, the backing file name right after it, the L1 table at the next
 * 8-byte boundary written as whole zero sectors. 4 KiB clusters with 512-entry
 * L2 tables; under a backing file 512-byte clusters with 4096-entry L2 tables
 * (so that sector writes never copy from the backing file). Encryption (AES)
 * needs encrypt.key-secret, as in qemu; the key itself is not stored.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow1/qcow1.h"
#include "qimg/secret.h"
#include "formats/common/create-file.h"
#include "util/bytes.h"
#include "util/mem.h"

struct qcow1_params {
    uint64_t size;
    const char *backing_file;
    const char *secret;
    bool encrypt;
};

static int take_params(struct qimg_opts *o, struct qcow1_params *p, struct qimg_error *err)
{
    int ret = qimg_opts_take_size(o, "size", &p->size, err);
    bool legacy = false;
    if (ret >= 0)
        ret = qimg_opts_take_bool(o, "encryption", &legacy, err);
    if (ret < 0)
        return ret;
    p->backing_file = qimg_opts_take(o, "backing_file");
    qimg_opts_take(o, "backing_fmt"); /* checked by the caller, not stored by qcow */
    const char *format = qimg_opts_take(o, "encrypt.format");
    const char *secret = qimg_opts_take(o, "encrypt.key-secret");
    if (format && strcmp(format, "aes"))
        return qimg_error_set(err, -EINVAL, "Unsupported encryption format '%s'", format);
    p->encrypt = legacy || format;
    p->secret = secret;
    return 0;
}

/* After the file exists, as qemu checks it (a missing key leaves an empty file). */
static int check_secret(const struct qcow1_params *p, struct qimg_error *err)
{
    const char *secret = p->secret;
    if (!p->encrypt)
        return 0;
    if (!secret)
        return qimg_error_set(err, -EINVAL, "Parameter 'encrypt.key-secret' is required for cipher");
    uint8_t *pw;
    size_t len;
    int ret = qimg_secret_lookup(secret, &pw, &len, err);
    if (ret == 0)
        free(pw); /* qemu only checks that the key is there */
    return ret;
}

/* Header, backing name and zeroed L1 sectors in one buffer of *len bytes. */
static uint8_t *build(const struct qcow1_params *p, uint64_t *len, struct qimg_error *err)
{
    size_t name_len = p->backing_file ? strlen(p->backing_file) : 0;
    if (name_len > QCOW1_MAX_BACKING_NAME) {
        qimg_error_set(err, -EINVAL, "Backing file name too long");
        return NULL;
    }
    unsigned cluster_bits = p->backing_file ? QCOW1_BACKING_CLUSTER_BITS : QCOW1_CLUSTER_BITS;
    unsigned l2_bits = p->backing_file ? QCOW1_BACKING_L2_BITS : QCOW1_L2_BITS;
    uint64_t l1_entries = qimg_div_round_up(p->size, 1ull << (cluster_bits + l2_bits));
    uint64_t size; /* qemu stores the size rounded up to whole sectors */
    if (!qimg_round_up_checked(p->size, 512, &size)) {
        qimg_error_set(err, -EINVAL, "Image too large");
        return NULL;
    }
    if (l1_entries > INT32_MAX / 8) {
        qimg_error_set(err, -EINVAL, "Image too large");
        return NULL;
    }
    uint64_t header = qimg_align_up(QCOW1_HEADER_SIZE + name_len, 8);
    *len = header + qimg_align_up(l1_entries * 8, 512);
    uint8_t *b = xcalloc(1, *len);
    qimg_put_be32(b + QCOW1_OFF_MAGIC, QCOW1_MAGIC);
    qimg_put_be32(b + QCOW1_OFF_VERSION, QCOW1_VERSION);
    if (name_len) {
        qimg_put_be64(b + QCOW1_OFF_BACKING_OFFSET, QCOW1_HEADER_SIZE);
        qimg_put_be32(b + QCOW1_OFF_BACKING_SIZE, (uint32_t)name_len);
        memcpy(b + QCOW1_HEADER_SIZE, p->backing_file, name_len);
    }
    qimg_put_be64(b + QCOW1_OFF_SIZE, size);
    b[QCOW1_OFF_CLUSTER_BITS] = (uint8_t)cluster_bits;
    b[QCOW1_OFF_L2_BITS] = (uint8_t)l2_bits;
    qimg_put_be32(b + QCOW1_OFF_CRYPT, p->encrypt ? QCOW1_CRYPT_AES : QCOW1_CRYPT_NONE);
    qimg_put_be64(b + QCOW1_OFF_L1_OFFSET, header);
    return b;
}

int qcow1_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    struct qcow1_params p = {0};
    int ret = take_params(opts, &p, err);
    if (ret < 0)
        return ret;
    uint64_t len;
    uint8_t *buf = build(&p, &len, err);
    if (!buf)
        return err->code ? err->code : -EINVAL;
    ret = qimg_format_create_empty_file(filename, opts, err);
    if (ret == 0)
        ret = check_secret(&p, err);
    struct qimg_node *file = NULL;
    if (ret == 0)
        ret = qimg_open_protocol(&file, filename, NULL, QIMG_O_RDWR, err);
    if (ret == 0) {
        ret = qimg_node_pwrite(file, 0, len, buf, 0);
        if (ret == 0)
            ret = qimg_node_flush(file);
        if (ret < 0)
            qimg_error_errno(err, ret, "Could not write the qcow header");
        qimg_node_unref(file);
    }
    free(buf);
    return ret;
}
