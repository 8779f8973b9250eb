/* SPDX-License-Identifier: MIT */
/*
 * Human output of ImageInfo, as qemu-img prints it: the node's summary lines,
 * the format-specific block dumped generically (keys with '-' shown as ' ',
 * lists as "[i]:"), and each child node indented below "Child node '/name':".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "qimg/driver.h"

/* snapshot.c: "Snapshot list:", the header and one row per SnapshotInfo. */
void cli_print_snapshot_table_indented(const struct qimg_json *snapshots, int indent);

static int64_t json_int(const struct qimg_json *j)
{
    if (!j)
        return 0;
    return j->type == QIMG_JSON_UINT ? (int64_t)j->u : j->i;
}

static const char *json_str(const struct qimg_json *j)
{
    return j && j->type == QIMG_JSON_STRING ? j->s : NULL;
}

static void print_node(const struct qimg_json *info, int indent, bool protocol)
{
    char vsize[32], dsize[32];
    const char *ind = "";
    char indbuf[4200]; /* nested nodes go 1024 deep (the JSON nesting limit) */
    snprintf(indbuf, sizeof(indbuf), "%*s", indent * 4, "");
    ind = indbuf;
    int64_t vs = json_int(qimg_json_get(info, "virtual-size"));
    qimg_size_to_str((uint64_t)vs, vsize, sizeof(vsize));
    const struct qimg_json *as = qimg_json_get(info, "actual-size");
    if (as)
        qimg_size_to_str((uint64_t)json_int(as), dsize, sizeof(dsize));
    else
        snprintf(dsize, sizeof(dsize), "unavailable");
    printf("%s%s: %s\n", ind, protocol ? "filename" : "image",
           json_str(qimg_json_get(info, "filename")));
    printf("%s%s: %s\n", ind, protocol ? "protocol type" : "file format",
           json_str(qimg_json_get(info, "format")));
    printf("%s%s: %s (%" PRId64 " bytes)\n", ind, protocol ? "file length" : "virtual size", vsize,
           vs);
    printf("%sdisk size: %s\n", ind, dsize);
    const struct qimg_json *enc = qimg_json_get(info, "encrypted");
    if (enc && enc->b)
        printf("%sencrypted: yes\n", ind);
    const struct qimg_json *cs = qimg_json_get(info, "cluster-size");
    if (cs)
        printf("%scluster_size: %" PRId64 "\n", ind, json_int(cs));
    const struct qimg_json *dirty = qimg_json_get(info, "dirty-flag");
    if (dirty && dirty->b)
        printf("%scleanly shut down: no\n", ind);
    const char *bf = json_str(qimg_json_get(info, "backing-filename"));
    if (bf) {
        const char *full = json_str(qimg_json_get(info, "full-backing-filename"));
        printf("%sbacking file: %s", ind, bf);
        if (!full)
            printf(" (cannot determine actual path)");
        else if (strcmp(bf, full) != 0)
            printf(" (actual path: %s)", full);
        printf("\n");
    }
    const char *bff = json_str(qimg_json_get(info, "backing-filename-format"));
    if (bff)
        printf("%sbacking file format: %s\n", ind, bff);
    const struct qimg_json *snapshots = qimg_json_get(info, "snapshots");
    if (snapshots && snapshots->n > 0)
        cli_print_snapshot_table_indented(snapshots, indent * 4);
    const struct qimg_json *fs = qimg_json_get(info, "format-specific");
    const struct qimg_json *data = fs ? qimg_json_get(fs, "data") : NULL;
    if (data && data->n > 0) {
        printf("%sFormat specific information:\n", ind);
        qimg_json_print_human(stdout, data, indent + 1);
    }
}

static void print_with_children(const struct qimg_json *info, int indent, bool protocol,
                                const char *path)
{
    print_node(info, indent, protocol);
    const struct qimg_json *children = qimg_json_get(info, "children");
    for (size_t i = 0; children && i < children->n; i++) {
        const struct qimg_json *c = children->items[i];
        const char *name = json_str(qimg_json_get(c, "name"));
        char child_path[8192];
        snprintf(child_path, sizeof(child_path), "%s/%s", path, name);
        printf("%*sChild node '%s':\n", indent * 4, "", child_path);
        /* A child is shown as a protocol unless it is a format (raw over qcow2) or has
         * children of its own (a filter such as blkdebug). */
        const struct qimg_json *ci = qimg_json_get(c, "info");
        const struct qimg_driver *drv = qimg_driver_find(json_str(qimg_json_get(ci, "format")));
        const struct qimg_json *grandchildren = qimg_json_get(ci, "children");
        bool leaf = !grandchildren || grandchildren->n == 0;
        print_with_children(ci, indent + 1, (!drv || drv->is_protocol) && leaf, child_path);
    }
}

void cli_print_image_info_human(const struct qimg_json *info)
{
    print_with_children(info, 0, false, "");
}
