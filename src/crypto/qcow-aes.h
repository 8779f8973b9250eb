/* SPDX-License-Identifier: MIT */
/*
 * The legacy AES encryption of qcow and qcow2 (crypt_method 1): the key is the
 * secret's first 16 bytes, zero-padded; AES-128-CBC per 512-byte sector with
 * a plain64 IV from the GUEST sector number (qcow2.txt: Data encryption).
 */
#ifndef QIMG_CRYPTO_QCOW_AES_H
#define QIMG_CRYPTO_QCOW_AES_H

#include "crypto/sector.h"

/* The sector cipher for the secret named id (QEMU's messages when it is missing or unknown). */
int qimg_qcow_aes_new(const char *secret_id, const char *key_name,
                      struct qimg_sector_crypt **out, struct qimg_error *err);

#endif
