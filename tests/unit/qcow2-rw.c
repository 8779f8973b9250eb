/* SPDX-License-Identifier: MIT */
/*
 * qcow2 exerciser for tests/cli/test_qcow2_io.py: drives libqimg's node API
 * on one image with a list of operations, so the driver can be checked
 * against qemu-img/qemu-io without qimg-io.
 *
 *   qcow2-rw [-f fmt] [-r] [-u] IMAGE OP...   (-r read-only, -u discard=unmap)
 *     dump FILE                 read the whole image into a raw FILE
 *     write OFF LEN BYTE        write LEN bytes of BYTE
 *     writec OFF LEN BYTE       compressed write of one cluster
 *     zero OFF LEN [unmap]      write zeroes
 *     discard OFF LEN
 *     load FILE [THREADS [CHUNK]]  copy a raw FILE into the image (THREADS writers)
 *     map                       print block status runs
 *     truncate SIZE
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "qimg/driver.h"
#include "qimg/node.h"

/* A number with an optional k/M/G suffix. */
static uint64_t num(const char *s)
{
    char *end;
    uint64_t v = strtoull(s, &end, 0);
    switch (*end) {
    case 'k': return v << 10;
    case 'M': return v << 20;
    case 'G': return v << 30;
    default: return v;
    }
}

struct loader {
    struct qimg_node *n;
    FILE *f;
    const char *path;
    uint64_t size, chunk;
    int id, threads;
    int ret;
};

static void *load_worker(void *p)
{
    struct loader *l = p;
    FILE *f = fopen(l->path, "rb");
    uint8_t *buf = malloc(l->chunk);
    if (!f || !buf) {
        l->ret = -ENOMEM;
        goto out;
    }
    for (uint64_t off = (uint64_t)l->id * l->chunk; off < l->size;
         off += (uint64_t)l->threads * l->chunk) {
        uint64_t len = l->size - off < l->chunk ? l->size - off : l->chunk;
        if (fseeko(f, (off_t)off, SEEK_SET) || fread(buf, 1, len, f) != len) {
            l->ret = -EIO;
            break;
        }
        bool zero = true;
        for (uint64_t i = 0; i < len && zero; i++)
            zero = buf[i] == 0;
        if (zero)
            continue;
        int ret = qimg_node_pwrite(l->n, off, len, buf, 0);
        if (ret < 0) {
            l->ret = ret;
            break;
        }
    }
out:
    if (f)
        fclose(f);
    free(buf);
    return NULL;
}

static int do_load(struct qimg_node *n, const char *path, int threads, uint64_t chunk)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    fseeko(f, 0, SEEK_END);
    uint64_t size = (uint64_t)ftello(f);
    fclose(f);
    int64_t isz = qimg_node_length(n);
    if (isz >= 0 && size > (uint64_t)isz)
        size = (uint64_t)isz;
    pthread_t th[64];
    struct loader l[64];
    if (threads < 1 || threads > 64)
        threads = 1;
    for (int i = 0; i < threads; i++) {
        l[i] = (struct loader){n, NULL, path, size, chunk, i, threads, 0};
        pthread_create(&th[i], NULL, load_worker, &l[i]);
    }
    int ret = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        if (l[i].ret < 0)
            ret = l[i].ret;
    }
    return ret;
}

static int do_dump(struct qimg_node *n, const char *path)
{
    int64_t size = qimg_node_length(n);
    if (size < 0)
        return (int)size;
    FILE *f = fopen(path, "wb");
    if (!f)
        return -errno;
    const uint64_t chunk = 1 << 20;
    uint8_t *buf = malloc(chunk);
    int ret = 0;
    for (uint64_t off = 0; off < (uint64_t)size && ret == 0; off += chunk) {
        uint64_t len = (uint64_t)size - off < chunk ? (uint64_t)size - off : chunk;
        ret = qimg_node_pread(n, off, len, buf, 0);
        if (ret == 0 && fwrite(buf, 1, len, f) != len)
            ret = -EIO;
    }
    free(buf);
    fclose(f);
    return ret;
}

static int do_map(struct qimg_node *n)
{
    int64_t size = qimg_node_length(n);
    for (uint64_t off = 0; off < (uint64_t)size;) {
        struct qimg_block_status st;
        int ret = qimg_node_block_status(n, off, (uint64_t)size - off, &st);
        if (ret < 0)
            return ret;
        printf("%llu %llu %s%s%s", (unsigned long long)off, (unsigned long long)st.bytes,
               st.flags & QIMG_BLK_DATA ? "data" : "-", st.flags & QIMG_BLK_ZERO ? ",zero" : "",
               st.flags & QIMG_BLK_COMPRESSED ? ",compressed" : "");
        if (st.flags & QIMG_BLK_OFFSET_VALID)
            printf(" @%llu", (unsigned long long)st.offset);
        printf("\n");
        off += st.bytes;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *fmt = "qcow2";
    unsigned flags = QIMG_O_RDWR;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-f") && i + 1 < argc)
            fmt = argv[++i];
        else if (!strcmp(argv[i], "-r"))
            flags &= ~QIMG_O_RDWR;
        else if (!strcmp(argv[i], "-u"))
            flags |= QIMG_O_UNMAP;
    }
    if (i >= argc) {
        fprintf(stderr, "usage: qcow2-rw [-f fmt] [-r] IMAGE OP...\n");
        return 2;
    }
    qimg_register_builtin_drivers();
    struct qimg_error err = {0};
    struct qimg_node *n = NULL;
    if (qimg_open(&n, argv[i], fmt, NULL, flags, &err) < 0) {
        fprintf(stderr, "qcow2-rw: Could not open '%s': %s\n", argv[i], err.msg);
        return 1;
    }
    int ret = 0;
    for (i++; i < argc && ret == 0; i++) {
        const char *op = argv[i];
        char **a = &argv[i + 1];
        int left = argc - i - 1;
        if (!strcmp(op, "dump") && left >= 1) {
            ret = do_dump(n, a[0]);
            i += 1;
        } else if ((!strcmp(op, "write") || !strcmp(op, "writec")) && left >= 3) {
            uint64_t len = num(a[1]);
            uint8_t *buf = malloc(len ? len : 1);
            memset(buf, (int)num(a[2]), len);
            ret = op[5] == 'c' ? qimg_node_pwrite_compressed(n, num(a[0]), len, buf)
                               : qimg_node_pwrite(n, num(a[0]), len, buf, 0);
            free(buf);
            i += 3;
        } else if (!strcmp(op, "zero") && left >= 2) {
            bool unmap = left >= 3 && !strcmp(a[2], "unmap");
            ret = qimg_node_pwrite_zeroes(n, num(a[0]), num(a[1]),
                                          unmap ? QIMG_REQ_MAY_UNMAP : 0);
            i += 2 + unmap;
        } else if (!strcmp(op, "discard") && left >= 2) {
            ret = qimg_node_pdiscard(n, num(a[0]), num(a[1]));
            i += 2;
        } else if (!strcmp(op, "load") && left >= 1) {
            int threads = left >= 2 ? atoi(a[1]) : 1;
            uint64_t chunk = left >= 3 ? num(a[2]) : 65536;
            ret = do_load(n, a[0], threads, chunk);
            i += 1 + (left >= 2) + (left >= 3);
        } else if (!strcmp(op, "map")) {
            ret = do_map(n);
        } else if (!strcmp(op, "truncate") && left >= 1) {
            ret = qimg_node_truncate(n, num(a[0]), false, QIMG_PREALLOC_OFF, &err);
            i += 1;
        } else {
            fprintf(stderr, "qcow2-rw: bad operation '%s'\n", op);
            ret = -EINVAL;
        }
        if (ret < 0)
            fprintf(stderr, "qcow2-rw: %s failed: %s%s%s\n", op, strerror(-ret),
                    err.msg[0] ? ": " : "", err.msg);
    }
    if (ret == 0)
        ret = qimg_node_flush(n);
    qimg_node_unref(n);
    return ret < 0 ? 1 : 0;
}
