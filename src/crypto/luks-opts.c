/* SPDX-License-Identifier: MIT */
/*
 * LUKS create options (QCryptoBlockCreateOptionsLUKS) from an option list:
 * "cipher-alg" and friends for the luks format, "encrypt.cipher-alg" and
 * friends for qcow2. QEMU names a rejected enum value by its member name,
 * without the prefix ("Parameter 'cipher-alg' does not accept value 'x'").
 */
#include <errno.h>
#include <stdio.h>

#include "crypto/luks.h"
#include "qimg/opts.h"

static int take_enum(struct qimg_opts *opts, const char *prefix, const char *name,
                     int (*parse)(const char *), int *out, struct qimg_error *err)
{
    char key[64];
    snprintf(key, sizeof(key), "%s%s", prefix, name);
    const char *v = qimg_opts_take(opts, key);
    if (!v)
        return 0;
    int x = parse(v);
    if (x < 0)
        return qimg_error_set(err, -EINVAL, "Parameter '%s' does not accept value '%s'", name, v);
    *out = x;
    return 1;
}

int qimg_luks_take_params(struct qimg_opts *opts, const char *prefix, struct qimg_luks_params *p,
                          struct qimg_error *err)
{
    qimg_luks_params_default(p);
    int alg = p->cipher_alg, mode = p->cipher_mode, ivgen = p->ivgen_alg;
    int ivhash = p->ivgen_hash, hash = p->hash;
    char iter_key[64];
    snprintf(iter_key, sizeof(iter_key), "%siter-time", prefix);
    int ret = take_enum(opts, prefix, "cipher-alg", qimg_cipher_alg_parse, &alg, err);
    if (ret >= 0)
        ret = take_enum(opts, prefix, "cipher-mode", qimg_cipher_mode_parse, &mode, err);
    if (ret >= 0)
        ret = take_enum(opts, prefix, "ivgen-alg", qimg_ivgen_parse, &ivgen, err);
    if (ret >= 0 &&
        (ret = take_enum(opts, prefix, "ivgen-hash-alg", qimg_hash_parse, &ivhash, err)) > 0)
        p->has_ivgen_hash = true;
    if (ret >= 0)
        ret = take_enum(opts, prefix, "hash-alg", qimg_hash_parse, &hash, err);
    if (ret >= 0)
        ret = qimg_opts_take_uint(opts, iter_key, &p->iter_time_ms, err);
    if (ret < 0)
        return ret;
    p->cipher_alg = alg;
    p->cipher_mode = mode;
    p->ivgen_alg = ivgen;
    p->ivgen_hash = ivhash;
    p->hash = hash;
    return 0;
}
