/* SPDX-License-Identifier: MIT */
/*
 * Secrets and base64. The AES vectors were made with `openssl enc
 * -aes-256-cbc` (key "1234...9012", iv "1234567890123456") and checked
 * against qemu-img, which unlocks a LUKS image with them
 * (tests/cli/test_object.py::test_encrypted_secret_vectors_unlock_in_qemu).
 */
#include <stdlib.h>
#include <string.h>
#include <linux/keyctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"
#include "qimg/qimg.h"
#include "util/base64.h"

#define KEY "12345678901234567890123456789012"
#define IV_B64 "MTIzNDU2Nzg5MDEyMzQ1Ng=="

static bool decodes_to(const char *in, const char *want, size_t want_len)
{
    uint8_t *out = NULL;
    size_t len = 0;
    struct qimg_error err = {0};
    if (qimg_base64_decode(in, strlen(in), &out, &len, &err) < 0)
        return false;
    bool ok = len == want_len && memcmp(out, want, len) == 0 && out[len] == 0;
    free(out);
    return ok;
}

/* What glib's g_base64_decode (QEMU's decoder) gives for the same inputs. */
static void test_base64(void)
{
    static const struct {
        const char *in, *want;
        size_t len;
    } cases[] = {
        {"YWI=", "ab", 2},        {"YWI==", "ab", 2},       {"YWI", "", 0},
        {"Y", "", 0},             {"YW==", "a", 1},         {"YWI=YWI=", "abab", 4},
        {"YWJj\nZA==", "abcd", 4}, {"YWJjZA", "abc", 3},     {"=YWI", "\x01\x85\x88", 3},
        {"a===", "h", 1},         {"YWJjZA===", "abcd", 4}, {"", "", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK(decodes_to(cases[i].in, cases[i].want, cases[i].len));

    uint8_t *out = NULL;
    size_t len = 0;
    struct qimg_error err = {0};
    CHECK(qimg_base64_decode("YW Jj", 5, &out, &len, &err) < 0);
    CHECK_STR(err.msg, "Base64 data contains invalid characters");
    CHECK(qimg_base64_decode("YWI=\r", 5, &out, &len, &err) < 0);
}

/* Add an object; return its error message ("" on success). */
static const char *add(const char *spec)
{
    static struct qimg_error err;
    memset(&err, 0, sizeof(err));
    return qimg_object_add(spec, &err) < 0 ? err.msg : "";
}

static bool secret_is(const char *id, const char *want, size_t want_len)
{
    uint8_t *data = NULL;
    size_t len = 0;
    struct qimg_error err = {0};
    if (qimg_secret_lookup(id, &data, &len, &err) < 0)
        return false;
    bool ok = len == want_len && memcmp(data, want, len) == 0;
    free(data);
    return ok;
}

static void test_plain_secrets(void)
{
    qimg_object_clear_all();
    CHECK_STR(add("secret,id=a,data=87539319"), "");
    CHECK(secret_is("a", "87539319", 8));
    CHECK_STR(add("secret,id=b,data=ODc1MzkzMTk=,format=base64"), "");
    CHECK(secret_is("b", "87539319", 8));
    CHECK_STR(add("{\"qom-type\": \"secret\", \"id\": \"c\", \"data\": \"x,y\"}"), "");
    CHECK(secret_is("c", "x,y", 3));
    CHECK_STR(add("secret,id=d,data=a,,b"), "");
    CHECK(secret_is("d", "a,b", 3));

    char path[] = "/tmp/qimg-secret-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, "pw\n\0x", 5) == 5);
    close(fd);
    char spec[256];
    snprintf(spec, sizeof(spec), "secret,id=f,file=%s", path);
    CHECK_STR(add(spec), "");
    CHECK(secret_is("f", "pw\n\0x", 5)); /* the whole file, newline and NUL included */
    unlink(path);

    struct qimg_error err = {0};
    uint8_t *data;
    size_t len;
    CHECK(qimg_secret_lookup("nope", &data, &len, &err) < 0);
    CHECK_STR(err.msg, "No secret with id 'nope'");
    CHECK_STR(add("secret,id=a,data=again"),
              "attempt to add duplicate property 'a' to object (type 'container')");
    CHECK(secret_is("a", "87539319", 8));
    qimg_object_clear_all();
    CHECK(!secret_is("a", "87539319", 8));
}

static void test_encrypted_secrets(void)
{
    qimg_object_clear_all();
    CHECK_STR(add("secret,id=k,data=" KEY), "");
    /* PKCS#7 padding as openssl writes it */
    CHECK_STR(add("secret,id=p,keyid=k,iv=" IV_B64 ",format=base64,data=yEgloYj3AnSjAjqPpjbrBQ=="), "");
    CHECK(secret_is("p", "pass", 4));
    CHECK_STR(add("secret,id=q,keyid=k,iv=" IV_B64
                  ",format=base64,data=HtIDHaKY/uQxdCFUVtNuKCvFMRHpRjFrQa62bF0ngc4="), "");
    CHECK(secret_is("q", "a secret of 31 bytes, no more..", 31));
    /* Only the last byte counts: 3 bytes of "passpasspassp\3\3\3" go */
    CHECK_STR(add("secret,id=r,keyid=k,iv=" IV_B64 ",format=base64,data=+z6oVMbXyV7Lqt99ftTSjQ=="), "");
    CHECK(secret_is("r", "passpasspassp", 13));
    CHECK_STR(add("secret,id=e,keyid=k,iv=" IV_B64 ",format=base64,data=tVIs1T89WnKMXFMUdO/BUA=="), "");
    CHECK(secret_is("e", "", 0));

    CHECK_STR(add("secret,id=z,keyid=k,iv=" IV_B64 ",format=base64,data=OZC9KZc43vbaA1dh0j0mjQ=="),
              "Incorrect number of padding bytes (32) found on decrypted data");
    CHECK_STR(add("secret,id=z,keyid=k,iv=" IV_B64 ",data=YWJj"),
              "Length 4 must be a multiple of block size 16");
    CHECK_STR(add("secret,id=z,keyid=k,iv=abc,data=a"), "IV should be 16 bytes in length not 0");
    CHECK_STR(add("secret,id=z,keyid=k,data=a"), "IV is required to decrypt secret");
    CHECK_STR(add("secret,id=s,data=short"), "");
    CHECK_STR(add("secret,id=z,keyid=s,iv=" IV_B64 ",data=a"), "Key should be 32 bytes in length");
    CHECK_STR(add("secret,id=z,keyid=none,format=base64,data=!!"), "No secret with id 'none'");
    CHECK(!secret_is("z", "", 0));
    qimg_object_clear_all();
}

/* secret_keyring: a key this process adds to its own keyring (keyctl(2), add_key(2)). */
static void test_keyring_secret(void)
{
    qimg_object_clear_all();
    long serial = syscall(SYS_add_key, "user", "qimg-test", "from the keyring", (size_t)16,
                          KEY_SPEC_PROCESS_KEYRING);
    if (serial < 0) {
        fprintf(stderr, "keyring_secret: add_key unavailable here, skipped\n");
        return;
    }
    char spec[128];
    snprintf(spec, sizeof(spec), "secret_keyring,id=kr,serial=%ld", serial);
    CHECK_STR(add(spec), "");
    CHECK(secret_is("kr", "from the keyring", 16));
    snprintf(spec, sizeof(spec), "secret_keyring,id=kr2,serial=%ld,format=base64", serial);
    CHECK_STR(add(spec), "Base64 data contains invalid characters");
    qimg_object_clear_all();
}

int main(void)
{
    static const struct harness_test tests[] = {
        {"base64", test_base64},
        {"plain_secrets", test_plain_secrets},
        {"encrypted_secrets", test_encrypted_secrets},
        {"keyring_secret", test_keyring_secret},
        {NULL, NULL},
    };
    return harness_run(tests);
}
