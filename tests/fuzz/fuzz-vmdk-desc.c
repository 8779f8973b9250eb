/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the VMDK descriptor parser (src/formats/vmdk/
 * descriptor.c): probe, extent lines, createType, CID/parentCID on any text.
 * The sparse header is covered by fuzz-vmdk (fuzz-image.c opening as vmdk).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/vmdk/vmdk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)vmdk_desc_probe(data, size);
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    struct vmdk_desc d;
    struct qimg_error err = {0};
    if (vmdk_desc_parse(text, &d, &err) == 0)
        vmdk_desc_free(&d);
    uint32_t cid;
    (void)vmdk_desc_read_cid(text, false, &cid);
    (void)vmdk_desc_read_cid(text, true, &cid);
    free(text);
    return 0;
}
