/* SPDX-License-Identifier: MIT */
/* qcow/qcow2 legacy AES keys (qcow-aes.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/qcow-aes.h"
#include "qimg/secret.h"

#define KEY_LEN 16

int qimg_qcow_aes_new(const char *secret_id, const char *key_name,
                      struct qimg_sector_crypt **out, struct qimg_error *err)
{
    if (!secret_id)
        return qimg_error_set(err, -EINVAL, "Parameter '%s' is required for cipher", key_name);
    uint8_t *pw;
    size_t len;
    int ret = qimg_secret_lookup(secret_id, &pw, &len, err);
    if (ret < 0)
        return ret;
    uint8_t key[KEY_LEN] = {0};
    memcpy(key, pw, len < KEY_LEN ? len : KEY_LEN);
    memset(pw, 0, len);
    free(pw);
    ret = qimg_sector_crypt_new(out, QIMG_CIPHER_AES_128, QIMG_CIPHER_MODE_CBC,
                                QIMG_IVGEN_PLAIN64, QIMG_HASH_MD5, key, KEY_LEN, err);
    memset(key, 0, sizeof(key));
    return ret;
}
