/* SPDX-License-Identifier: MIT */
/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as VHDX and qcow2-adjacent formats use. */
#ifndef QIMG_UTIL_CRC32C_H
#define QIMG_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * Continue a CRC-32C over buf. Start with crc = 0xffffffff and finish with
 * ~crc, or use qimg_crc32c for the one-shot value (RFC 3720 B.4 test vectors).
 */
uint32_t qimg_crc32c_update(uint32_t crc, const void *buf, size_t len);
uint32_t qimg_crc32c(const void *buf, size_t len);

#endif
