/* SPDX-License-Identifier: MIT */
/* Helpers the network protocols share (net-util.h). */
#include <errno.h>
#include <netdb.h>
#include <unistd.h>

#include "protocols/net-util.h"
#include "qimg/driver.h"
#include "util/mem.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

char *net_percent_decode(const char *s, size_t len)
{
    char *out = xmalloc(len + 1), *o = out;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            *o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = 0;
    return out;
}

int net_connect_tcp(const char *host, const char *port, int family, struct qimg_error *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG,
                             .ai_family = family};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        return qimg_error_set(err, -EINVAL, "address resolution failed for %s:%s: %s", host,
                              port, gai_strerror(rc));
    int e = ECONNREFUSED, fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        e = errno;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return qimg_error_errno(err, -e, "Failed to connect to '%s:%s'", host, port);
    return fd;
}

int net_create_on_existing(const char *drvname, const char *filename, struct qimg_opts *opts,
                           struct qimg_error *err)
{
    uint64_t size = 0;
    enum qimg_prealloc prealloc = QIMG_PREALLOC_OFF;
    if (qimg_opts_take_size(opts, "size", &size, err) < 0)
        return err->code;
    const char *pa = qimg_opts_take(opts, "preallocation");
    if (pa && qimg_prealloc_parse(pa, &prealloc) < 0)
        return qimg_error_set(err, -EINVAL, "Parameter 'preallocation' does not accept value '%s'",
                              pa);
    struct qimg_node *n = NULL;
    struct qimg_error oerr = {0};
    int ret = qimg_open_protocol(&n, filename, NULL, QIMG_O_RDWR | QIMG_O_RESIZE, &oerr);
    if (ret < 0) {
        ret = qimg_error_set(err, ret, "Protocol driver '%s' does not support creating new "
                             "images, so an existing image must be selected as the target; "
                             "however, opening the given target as an existing image failed: "
                             "%s", drvname, oerr.msg);
        qimg_error_clear(&oerr);
        return ret;
    }
    ret = qimg_node_truncate(n, size, false, prealloc, err);
    int64_t have = qimg_node_length(n);
    uint64_t first = have < 0 ? 0 : (uint64_t)have < 512 ? (uint64_t)have : 512;
    if (ret == 0 && first) {
        ret = qimg_node_pwrite_zeroes(n, 0, first, QIMG_REQ_MAY_UNMAP);
        if (ret < 0)
            qimg_error_errno(err, ret, "Failed to clear the new image's first sector");
    }
    qimg_node_unref(n);
    return ret;
}
