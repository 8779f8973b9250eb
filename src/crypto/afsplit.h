/* SPDX-License-Identifier: MIT */
/*
 * LUKS anti-forensic splitter (luks1-facts.md, "Anti-forensic splitter"):
 * a key of len bytes becomes stripes * len bytes, all of which are needed to
 * get the key back, so that wiping any part of a key slot destroys it.
 */
#ifndef QIMG_CRYPTO_AFSPLIT_H
#define QIMG_CRYPTO_AFSPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/hash.h"

/* key (len) -> out (len * stripes); random stripes from getrandom. 0 or -errno. */
int qimg_afsplit(enum qimg_hash_alg hash, const uint8_t *key, size_t len, uint32_t stripes,
                 uint8_t *out);
/* in (len * stripes) -> key (len). */
void qimg_afmerge(enum qimg_hash_alg hash, const uint8_t *in, size_t len, uint32_t stripes,
                  uint8_t *key);

/* Fill buf with len random bytes from the kernel. 0 or -errno. */
int qimg_random_bytes(void *buf, size_t len);

#endif
