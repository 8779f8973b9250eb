/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the LUKS1 header parser and key slot reader
 * (src/crypto/luks.c): the input is a header area (header, key material).
 * It is parsed, described as info does, re-encoded (which must reproduce the
 * fields the parser accepted) and, when its PBKDF2 work is small, unlocked
 * with a fixed passphrase. Huge iteration counts are legitimate (slow by
 * design) and skipped here, not refused by the parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/luks.h"

#define MAX_FUZZ_ITERS 2000

struct input {
    const uint8_t *data;
    size_t size;
};

static int input_read(void *opaque, uint64_t off, void *buf, size_t len)
{
    const struct input *in = opaque;
    memset(buf, 0, len);
    if (off < in->size) {
        size_t n = in->size - off < len ? (size_t)(in->size - off) : len;
        memcpy(buf, in->data + off, n);
    }
    return 0;
}

static int input_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    (void)opaque;
    (void)off;
    (void)buf;
    (void)len;
    return -1;
}

static bool cheap_to_unlock(const struct qimg_luks *l)
{
    if (l->hdr.mk_digest_iterations > MAX_FUZZ_ITERS)
        return false;
    for (int i = 0; i < QIMG_LUKS_NUM_SLOTS; i++)
        if (l->hdr.slots[i].active == QIMG_LUKS_SLOT_ACTIVE &&
            l->hdr.slots[i].iterations > MAX_FUZZ_ITERS)
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t hdr[QIMG_LUKS_HEADER_LEN] = {0};
    memcpy(hdr, data, size < sizeof(hdr) ? size : sizeof(hdr));
    struct qimg_luks *l = NULL;
    struct qimg_error err = {0};
    if (qimg_luks_parse(hdr, &l, &err) < 0)
        return 0;
    qimg_json_free(qimg_luks_info_json(l, false));
    uint8_t again[QIMG_LUKS_HEADER_LEN];
    qimg_luks_encode(&l->hdr, again);
    if (memcmp(again + 104, hdr + 104, 64) || memcmp(again + 208, hdr + 208, 384))
        abort(); /* the numeric fields must survive a round trip */
    if (cheap_to_unlock(l)) {
        struct input in = {data, size};
        struct qimg_luks_io io = {&in, input_read, input_write};
        (void)qimg_luks_unlock(l, (const uint8_t *)"123456", 6, &io, &err);
    }
    qimg_luks_free(l);
    return 0;
}
