/* SPDX-License-Identifier: MIT */
/* Unit tests for the byte primitives: endian access, checked arithmetic, alignment, CRC-32C, UUIDs. */
#include <errno.h>
#include <stdint.h>

#include "harness.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/uuid.h"

static void test_endian(void)
{
    uint8_t b[9] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09};
    /* Unaligned on purpose: formats read fields at any offset. */
    CHECK(qimg_le16(b + 1) == 0x0302);
    CHECK(qimg_be16(b + 1) == 0x0203);
    CHECK(qimg_le32(b + 1) == 0x05040302u);
    CHECK(qimg_be32(b + 1) == 0x02030405u);
    CHECK(qimg_le64(b + 1) == 0x0908070605040302ull);
    CHECK(qimg_be64(b + 1) == 0x0203040506070809ull);
    uint8_t o[9] = {0};
    qimg_put_le32(o + 1, 0xbeda107f);
    CHECK(o[1] == 0x7f && o[2] == 0x10 && o[3] == 0xda && o[4] == 0xbe && o[0] == 0 && o[5] == 0);
    qimg_put_be64(o + 1, 0x0102030405060708ull);
    CHECK(o[1] == 1 && o[8] == 8 && qimg_be64(o + 1) == 0x0102030405060708ull);
    qimg_put_le64(o, 0xfffffffffffffffeull);
    CHECK(o[0] == 0xfe && o[7] == 0xff && qimg_le64(o) == 0xfffffffffffffffeull);
    qimg_put_be16(o, 0xabcd);
    CHECK(o[0] == 0xab && o[1] == 0xcd);
    qimg_put_le16(o, 0xabcd);
    CHECK(o[0] == 0xcd && o[1] == 0xab);
    qimg_put_be32(o, 0x11223344);
    CHECK(qimg_le32(o) == 0x44332211u);
}

static void test_checked(void)
{
    uint64_t r = 7;
    CHECK(qimg_add_u64(1, 2, &r) && r == 3);
    CHECK(!qimg_add_u64(UINT64_MAX, 1, &r));
    CHECK(qimg_add_u64(UINT64_MAX - 1, 1, &r) && r == UINT64_MAX);
    CHECK(qimg_mul_u64(1ull << 31, 1ull << 32, &r) && r == 1ull << 63);
    CHECK(!qimg_mul_u64(1ull << 32, 1ull << 32, &r));
    CHECK(qimg_mul_u64(0, UINT64_MAX, &r) && r == 0);
    CHECK(qimg_muladd_u64(4, 5, 6, &r) && r == 26);
    CHECK(!qimg_muladd_u64(1ull << 63, 2, 0, &r));
    CHECK(!qimg_muladd_u64(1ull << 62, 2, 1ull << 63, &r));
    CHECK(qimg_range_within(0, 10, 10));
    CHECK(qimg_range_within(10, 0, 10));
    CHECK(!qimg_range_within(11, 0, 10));
    CHECK(!qimg_range_within(5, 6, 10));
    CHECK(!qimg_range_within(5, UINT64_MAX, 10)); /* off + len wraps to 4 */
    CHECK(!qimg_range_within(UINT64_MAX, 2, UINT64_MAX));
}

static void test_align(void)
{
    CHECK(qimg_is_pow2(1) && qimg_is_pow2(1ull << 63) && !qimg_is_pow2(0) && !qimg_is_pow2(6));
    CHECK(qimg_is_aligned(4096, 512) && !qimg_is_aligned(4097, 512) && qimg_is_aligned(0, 512));
    CHECK(qimg_align_down(1023, 512) == 512 && qimg_align_down(1024, 512) == 1024);
    CHECK(qimg_align_up(1, 512) == 512 && qimg_align_up(512, 512) == 512 && qimg_align_up(0, 8) == 0);
    CHECK(qimg_div_round_up(0, 3) == 0 && qimg_div_round_up(7, 3) == 3 && qimg_div_round_up(9, 3) == 3);
    CHECK(qimg_div_round_up(UINT64_MAX, 2) == (UINT64_MAX >> 1) + 1);
    uint64_t r;
    CHECK(qimg_round_up_checked(5000000, 512, &r) && r == 5000192);
    CHECK(qimg_round_up_checked(10, 3, &r) && r == 12);
    CHECK(!qimg_round_up_checked(UINT64_MAX - 1, 1ull << 20, &r));
    CHECK(qimg_min_u64(3, 4) == 3 && qimg_max_u64(3, 4) == 4);
}

static void test_crc32c(void)
{
    /* RFC 3720 B.4 test vectors and the common "123456789" check value. */
    uint8_t buf[48];
    memset(buf, 0, 32);
    CHECK(qimg_crc32c(buf, 32) == 0x8a9136aau);
    memset(buf, 0xff, 32);
    CHECK(qimg_crc32c(buf, 32) == 0x62a8ab43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    CHECK(qimg_crc32c(buf, 32) == 0x46dd794eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    CHECK(qimg_crc32c(buf, 32) == 0x113fdb5cu);
    CHECK(qimg_crc32c("123456789", 9) == 0xe3069283u);
    CHECK(qimg_crc32c("", 0) == 0);
    /* Split and unaligned updates give the one-shot value. */
    for (int i = 0; i < 48; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    uint32_t whole = qimg_crc32c(buf + 1, 45);
    for (size_t cut = 0; cut <= 45; cut += 5) {
        uint32_t c = qimg_crc32c_update(0xffffffffu, buf + 1, cut);
        c = ~qimg_crc32c_update(c, buf + 1 + cut, 45 - cut);
        CHECK(c == whole);
    }
}

static void test_uuid(void)
{
    uint8_t u[16], v[16];
    char s[QIMG_UUID_STR_LEN];
    CHECK(qimg_uuid_parse("12345678-9abc-DEF0-0102-030405060708", u) == 0);
    CHECK(u[0] == 0x12 && u[3] == 0x78 && u[7] == 0xf0 && u[15] == 0x08);
    qimg_uuid_format(u, s);
    CHECK_STR(s, "12345678-9abc-def0-0102-030405060708");
    CHECK(qimg_uuid_parse("12345678-9abc-def0-0102-03040506070", u) == -EINVAL);
    CHECK(qimg_uuid_parse("12345678x9abc-def0-0102-030405060708", u) == -EINVAL);
    CHECK(qimg_uuid_parse("12345678-9abc-def0-0102-03040506070g", u) == -EINVAL);
    CHECK(qimg_uuid_parse("12345678-9abc-def0-0102-0304050607080", u) == -EINVAL);
    memcpy(v, u, 16);
    qimg_uuid_swap_guid(v);
    qimg_uuid_format(v, s);
    CHECK_STR(s, "78563412-bc9a-f0de-0102-030405060708");
    qimg_uuid_swap_guid(v);
    CHECK(memcmp(u, v, 16) == 0);
    qimg_uuid_generate(u);
    qimg_uuid_generate(v);
    CHECK(memcmp(u, v, 16) != 0);
    CHECK((u[6] >> 4) == 4 && (u[8] & 0xc0) == 0x80);
    CHECK(!qimg_uuid_is_null(u));
    memset(u, 0, 16);
    CHECK(qimg_uuid_is_null(u));
}

int main(void)
{
    static const struct harness_test tests[] = {
        {"endian", test_endian},   {"checked", test_checked}, {"align", test_align},
        {"crc32c", test_crc32c},   {"uuid", test_uuid},       {NULL, NULL},
    };
    return harness_run(tests);
}
