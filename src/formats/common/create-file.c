/* SPDX-License-Identifier: MIT */
#include "formats/common/create-file.h"

int qimg_create_empty_protocol_file(const char *filename, struct qimg_opts *opts,
                                    struct qimg_error *err)
{
    struct qimg_opts *po = qimg_opts_new();
    qimg_opts_set(po, "size", "0");
    const char *keep[] = {"preallocation", "nocow", "extent_size_hint"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        const char *v = qimg_opts_take(opts, keep[i]);
        if (v)
            qimg_opts_set(po, keep[i], v);
    }
    int ret = qimg_create_protocol(filename, po, err);
    qimg_opts_free(po);
    return ret;
}
