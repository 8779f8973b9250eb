/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: a hostile image goes through what qemu-img info, map,
 * convert and check do with it: open (probing or a fixed format), ImageInfo,
 * block status over the whole image, reads of what is allocated (bounded), and
 * the format's read-only check. Built once per format (QIMG_FUZZ_FORMAT; NULL
 * probes). Any crash, leak, hang or unbounded allocation is a bug.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qimg/driver.h"
#include "qimg/qimg.h"

#ifndef QIMG_FUZZ_FORMAT
#define QIMG_FUZZ_FORMAT NULL
#endif

#define MAX_READ_TOTAL (8u << 20) /* bytes read per input, to keep runs fast */
#define MAX_STATUS_CALLS 4096

static char path[64];

static void exercise(struct qimg_node *n)
{
    struct qimg_error err = {0};
    struct qimg_json *info = qimg_node_image_info(n, &err);
    qimg_json_free(info);

    int64_t size = qimg_node_length(n);
    if (size <= 0)
        return;
    uint8_t *buf = malloc(65536);
    if (!buf)
        return;
    uint64_t off = 0, read_total = 0;
    for (int calls = 0; off < (uint64_t)size && calls < MAX_STATUS_CALLS; calls++) {
        struct qimg_block_status st;
        if (qimg_chain_block_status(n, NULL, off, (uint64_t)size - off, &st) < 0 || !st.bytes)
            break;
        if ((st.flags & QIMG_BLK_DATA) && read_total < MAX_READ_TOTAL) {
            uint64_t len = st.bytes < 65536 ? st.bytes : 65536;
            (void)qimg_node_pread(n, off, len, buf, 0);
            read_total += len;
        }
        off += st.bytes;
    }
    free(buf);

    const struct qimg_driver *drv = qimg_node_driver(n);
    if (drv->check) {
        struct qimg_check_result res = {0};
        struct qimg_error cerr = {0};
        (void)drv->check(n, &res, 0, &cerr);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    qimg_init();
    snprintf(path, sizeof(path), "/tmp/qimg-fuzz-%d.img", (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    struct qimg_node *n = NULL;
    struct qimg_error err = {0};
    /* Backing files are not followed: an input must not reach other files. */
    if (qimg_open(&n, path, QIMG_FUZZ_FORMAT, NULL, QIMG_O_NO_BACKING | QIMG_O_NO_LOCK, &err) == 0) {
        exercise(n);
        qimg_node_unref(n);
    }
    unlink(path);
    return 0;
}
