/* SPDX-License-Identifier: MIT */
/* UUID formatting, parsing and generation (RFC 4122 sections 3 and 4.4). */
#include "util/uuid.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Byte index after which the text form has a dash. */
static bool dash_after(int i)
{
    return i == 3 || i == 5 || i == 7 || i == 9;
}

void qimg_uuid_format(const uint8_t uuid[16], char out[QIMG_UUID_STR_LEN])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        *p++ = hex[uuid[i] >> 4];
        *p++ = hex[uuid[i] & 15];
        if (dash_after(i))
            *p++ = '-';
    }
    *p = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int qimg_uuid_parse(const char *s, uint8_t uuid[16])
{
    if (strlen(s) != QIMG_UUID_STR_LEN - 1)
        return -EINVAL;
    for (int i = 0; i < 16; i++) {
        int hi = hexval(s[0]), lo = hexval(s[1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        uuid[i] = (uint8_t)(hi << 4 | lo);
        s += 2;
        if (dash_after(i) && *s++ != '-')
            return -EINVAL;
    }
    return 0;
}

static void random_bytes(uint8_t *buf, size_t len)
{
    ssize_t got = getrandom(buf, len, 0);
    if (got == (ssize_t)len)
        return;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        got = read(fd, buf, len);
        close(fd);
        if (got == (ssize_t)len)
            return;
    }
    /* No entropy source at all: mix the clock and the process id (unique, not secret). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)getpid() << 48;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        buf[i] = (uint8_t)x;
    }
}

void qimg_uuid_generate(uint8_t uuid[16])
{
    random_bytes(uuid, 16);
    uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40); /* version 4 */
    uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80); /* variant 10 */
}

bool qimg_uuid_is_null(const uint8_t uuid[16])
{
    for (int i = 0; i < 16; i++)
        if (uuid[i])
            return false;
    return true;
}

void qimg_uuid_swap_guid(uint8_t u[16])
{
    uint8_t t;
    t = u[0], u[0] = u[3], u[3] = t;
    t = u[1], u[1] = u[2], u[2] = t;
    t = u[4], u[4] = u[5], u[5] = t;
    t = u[6], u[6] = u[7], u[7] = t;
}
