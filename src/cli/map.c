/* SPDX-License-Identifier: MIT */
/* qemu-img map [--object objectdef] [--image-opts] [-f fmt] [--start-offset=offset]
 *              [--max-length=len] [--output=ofmt] [-U] filename
 * Walks the chain's block status and prints one MapEntry (qapi: MapEntry) per
 * run, adjacent runs with the same attributes (and contiguous host offsets)
 * merged. Human output lists only data with a host offset. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* Block status is asked for at most this much at a time. */
#define MAP_STEP (1ULL << 30)

struct map_entry {
    uint64_t start, length;
    int depth;
    bool present, zero, data, compressed;
    bool has_offset;
    uint64_t offset;
    const char *filename; /* node holding the data, when has_offset */
};

struct map_out {
    enum cli_output fmt;
    bool first;
};

static void entry_from_status(struct map_entry *e, uint64_t off, const struct qimg_block_status *st)
{
    bool allocated = st->flags & (QIMG_BLK_DATA | QIMG_BLK_ZERO);
    *e = (struct map_entry){
        .start = off,
        .length = st->bytes,
        .depth = st->depth,
        .present = allocated && !(st->flags & QIMG_BLK_SHORT_BACKING),
        /* Unallocated down to the bottom of the chain reads as zeroes. */
        .zero = (st->flags & QIMG_BLK_ZERO) || (!allocated && !(st->flags & QIMG_BLK_UNKNOWN)),
        .data = st->flags & QIMG_BLK_DATA,
        .compressed = st->flags & QIMG_BLK_COMPRESSED,
        .has_offset = (st->flags & QIMG_BLK_OFFSET_VALID) != 0,
        .offset = st->offset,
    };
    if (e->has_offset && st->file)
        e->filename = qimg_node_filename(st->file);
}

static bool mergeable(const struct map_entry *a, const struct map_entry *b)
{
    if (a->depth != b->depth || a->present != b->present || a->zero != b->zero ||
        a->data != b->data || a->compressed != b->compressed || a->has_offset != b->has_offset)
        return false;
    if (!a->has_offset)
        return true;
    if (a->offset + a->length != b->offset)
        return false;
    if (!a->filename || !b->filename)
        return a->filename == b->filename;
    return strcmp(a->filename, b->filename) == 0;
}

static const char *json_bool(bool b)
{
    return b ? "true" : "false";
}

/* Print one entry; -1 (after the error) when human output cannot show it. */
static int dump_entry(struct map_out *out, const struct map_entry *e)
{
    if (out->fmt == CLI_OUTPUT_JSON) {
        /* qemu-img 9.1 layout: one entry per line, "compressed" after "data". */
        printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %d"
               ", \"present\": %s, \"zero\": %s, \"data\": %s, \"compressed\": %s",
               out->first ? "[" : ",\n", e->start, e->length, e->depth, json_bool(e->present),
               json_bool(e->zero), json_bool(e->data), json_bool(e->compressed));
        if (e->has_offset)
            printf(", \"offset\": %" PRIu64, e->offset);
        printf("}");
        out->first = false;
        return 0;
    }
    if (e->data && !e->has_offset) {
        cli_error("File contains external, encrypted or compressed clusters.");
        return -1;
    }
    if (e->data && !e->zero)
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e->start, e->length,
               e->offset, e->filename ? e->filename : "");
    return 0;
}

static int map_range(struct qimg_node *n, uint64_t start, uint64_t end, struct map_out *out)
{
    struct map_entry curr = {.start = start};
    int ret = 0;
    for (uint64_t off = start; off < end;) {
        uint64_t want = end - off < MAP_STEP ? end - off : MAP_STEP;
        struct qimg_block_status st;
        int r = qimg_chain_block_status(n, NULL, off, want, &st);
        if (r < 0) {
            if (out->fmt == CLI_OUTPUT_JSON && out->first)
                printf("["); /* qemu-img opens the list before the first lookup */
            cli_error("Could not read file metadata: %s", strerror(-r));
            return -1;
        }
        if (st.bytes == 0 || st.bytes > want)
            st.bytes = want;
        struct map_entry next;
        entry_from_status(&next, off, &st);
        if (curr.length > 0 && mergeable(&curr, &next)) {
            curr.length += next.length;
        } else {
            if (curr.length > 0 && dump_entry(out, &curr) < 0)
                return -1;
            curr = next;
        }
        off += st.bytes;
    }
    ret = dump_entry(out, &curr);
    return ret;
}

int cmd_map(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_OBJECT, OPT_IMAGE_OPTS, OPT_START, OPT_MAXLEN };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"format", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, OPT_OUTPUT},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"force-share", no_argument, NULL, 'U'},
        {"start-offset", required_argument, NULL, OPT_START},
        {"max-length", required_argument, NULL, OPT_MAXLEN},
        {NULL, 0, NULL, 0},
    };
    struct cli_open o = {0};
    struct map_out out = {.fmt = CLI_OUTPUT_HUMAN, .first = true};
    int64_t start = 0, max_length = INT64_MAX;
    int c;

    while ((c = cli_getopt(argc, argv, "hf:U", longopts)) != -1) {
        switch (c) {
        case 'f': o.fmt = optarg; break;
        case 'U': o.flags |= QIMG_O_FORCE_SHARE; break;
        case OPT_OUTPUT:
            if (cli_parse_output(optarg, &out.fmt) < 0)
                return 1;
            break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                return 1;
            break;
        case OPT_IMAGE_OPTS: o.image_opts = true; break;
        case OPT_START:
            if (cli_parse_image_size(optarg, "start offset", &start) < 0)
                return 1;
            break;
        case OPT_MAXLEN:
            if (cli_parse_image_size(optarg, "max length", &max_length) < 0)
                return 1;
            break;
        default: return 1;
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("Expecting one image file name");
    o.filename = argv[optind];

    struct qimg_node *n = cli_open_image(&o);
    if (!n)
        return 1;
    int64_t size = qimg_node_length(n);
    if (size < 0) {
        cli_error("Could not get the size of '%s': %s", o.filename, strerror((int)-size));
        qimg_node_unref(n);
        return 1;
    }
    uint64_t end = (uint64_t)size;
    if ((uint64_t)max_length < end - ((uint64_t)start < end ? (uint64_t)start : end))
        end = (uint64_t)start + (uint64_t)max_length;

    if (out.fmt == CLI_OUTPUT_HUMAN)
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    int ret = map_range(n, (uint64_t)start, end, &out);
    if (out.fmt == CLI_OUTPUT_JSON && !out.first)
        printf("]\n");
    fflush(stdout);
    qimg_node_unref(n);
    return ret < 0 ? 1 : 0;
}
