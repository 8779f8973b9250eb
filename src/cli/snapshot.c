/* SPDX-License-Identifier: MIT */
/* qemu-img snapshot [--object objectdef] [--image-opts] [-U] [-q]
 *                   [-l | -a snapshot | -c snapshot | -d snapshot] filename
 * and the snapshot table qemu-img 9.1 prints (here and in info). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "cli/cli.h"

static int64_t json_num(const struct qimg_json *sn, const char *key, bool *present)
{
    const struct qimg_json *j = qimg_json_get(sn, key);
    if (present)
        *present = j != NULL;
    if (!j)
        return 0;
    return j->type == QIMG_JSON_UINT ? (int64_t)j->u : j->i;
}

static const char *json_text(const struct qimg_json *sn, const char *key)
{
    const struct qimg_json *j = qimg_json_get(sn, key);
    return j && j->type == QIMG_JSON_STRING ? j->s : "";
}

/* qemu-img 9.1's columns (7.2 printed "VM SIZE" / "VM CLOCK" in other widths). */
static void print_row(int indent, const char *id, const char *tag, const char *size,
                      const char *date, const char *clock, const char *icount)
{
    printf("%*s%-7s %-16s %8s %19s %15s %10s\n", indent, "", id, tag, size, date, clock,
           icount);
}

/* A child node's table (9.1's info) is indented like the rest of its lines. */
void cli_print_snapshot_table_indented(const struct qimg_json *snapshots, int indent)
{
    printf("%*sSnapshot list:\n", indent, "");
    print_row(indent, "ID", "TAG", "VM_SIZE", "DATE", "VM_CLOCK", "ICOUNT");
    for (size_t i = 0; snapshots && i < snapshots->n; i++) {
        const struct qimg_json *sn = snapshots->items[i];
        /* 9.1 prints "--" for a snapshot without an icount (7.2 left the column empty). */
        char size[32], date[64] = "", clock[64], icount[32] = "--";
        qimg_size_to_str((uint64_t)json_num(sn, "vm-state-size", NULL), size, sizeof(size));
        time_t t = (time_t)json_num(sn, "date-sec", NULL);
        struct tm tm;
        if (localtime_r(&t, &tm))
            strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
        uint64_t secs = (uint64_t)json_num(sn, "vm-clock-sec", NULL);
        uint64_t nsec = (uint64_t)json_num(sn, "vm-clock-nsec", NULL);
        snprintf(clock, sizeof(clock), "%04d:%02d:%02d.%03d", (int)(secs / 3600),
                 (int)((secs / 60) % 60), (int)(secs % 60), (int)(nsec / 1000000));
        bool has_icount;
        int64_t ic = json_num(sn, "icount", &has_icount);
        if (has_icount)
            snprintf(icount, sizeof(icount), "%" PRId64, ic);
        print_row(indent, json_text(sn, "id"), json_text(sn, "name"), size, date, clock,
                  icount);
    }
}

enum action { ACT_NONE, ACT_LIST, ACT_APPLY, ACT_CREATE, ACT_DELETE };

static int list_snapshots(struct qimg_node *n)
{
    struct qimg_snapshot_info *sn;
    size_t count;
    struct qimg_error err = {0};
    if (qimg_snapshot_list(n, &sn, &count, &err) < 0 || count == 0)
        return 0; /* qemu-img prints nothing for images without snapshots */
    struct qimg_json *arr = qimg_json_array();
    for (size_t i = 0; i < count; i++)
        qimg_json_append(arr, qimg_snapshot_info_json(&sn[i]));
    cli_print_snapshot_table_indented(arr, 0);
    qimg_json_free(arr);
    qimg_snapshot_list_free(sn, count);
    return 0;
}

static int create_snapshot(struct qimg_node *n, const char *name)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    /* qemu-img records no VM state, no VM clock and an icount of 0. */
    struct qimg_snapshot_info sn = {
        .name = (char *)name,
        .date_sec = (uint32_t)tv.tv_sec,
        .date_nsec = (uint32_t)tv.tv_usec * 1000,
        .icount = 0,
    };
    struct qimg_error err = {0};
    int ret = qimg_snapshot_create(n, &sn, &err);
    if (ret < 0) {
        /* 9.1's wording; 7.2 printed the errno too: "-22 (Invalid argument)". */
        cli_error("Could not create snapshot '%s': %s", name, strerror(-ret));
        return -1;
    }
    return 0;
}

/* qemu-img finds the snapshot to delete by name, then deletes it by ID and name. */
static int delete_snapshot(struct qimg_node *n, const char *name)
{
    struct qimg_snapshot_info *sn = NULL;
    size_t count = 0;
    struct qimg_error err = {0};
    long found = -1;
    if (qimg_snapshot_list(n, &sn, &count, &err) == 0) {
        for (size_t i = 0; i < count && found < 0; i++)
            if (!strcmp(sn[i].name, name))
                found = (long)i;
    }
    int ret = -1;
    if (found < 0) {
        cli_error("Could not delete snapshot '%s': snapshot not found", name);
    } else {
        qimg_error_clear(&err);
        if (qimg_snapshot_delete(n, sn[found].id, sn[found].name, &err) < 0)
            cli_error_obj(&err, "Could not delete snapshot '%s': ", name);
        else
            ret = 0;
    }
    qimg_snapshot_list_free(sn, count);
    return ret;
}

int cmd_snapshot(int argc, char **argv)
{
    enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"object", required_argument, NULL, OPT_OBJECT},
        {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
        {"force-share", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    struct cli_open o = {.flags = QIMG_O_RDWR | QIMG_O_UNMAP};
    enum action action = ACT_NONE;
    const char *name = NULL;
    int c;
    while ((c = cli_getopt(argc, argv, "la:c:d:f:hqU", longopts)) != -1) {
        enum action a = ACT_NONE;
        switch (c) {
        case 'f': o.fmt = optarg; break;
        case 'q': o.quiet = true; break;
        case 'U': o.flags |= QIMG_O_FORCE_SHARE; break;
        case 'l': a = ACT_LIST; break;
        case 'a': a = ACT_APPLY; break;
        case 'c': a = ACT_CREATE; break;
        case 'd': a = ACT_DELETE; break;
        case OPT_OBJECT:
            if (cli_add_object(optarg) < 0)
                return 1;
            break;
        case OPT_IMAGE_OPTS: o.image_opts = true; break;
        default: return 1;
        }
        if (a != ACT_NONE) {
            if (action != ACT_NONE)
                return cli_usage_error("Cannot mix '-l', '-a', '-c', '-d'");
            action = a;
            if (a == ACT_LIST)
                o.flags &= ~QIMG_O_RDWR; /* no need for write access */
            else
                name = optarg;
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("Expecting one image file name");
    o.filename = argv[optind];
    if (o.image_opts && o.fmt) {
        cli_error("--image-opts and --format are mutually exclusive");
        return 1;
    }

    if ((o.flags & QIMG_O_FORCE_SHARE) && (o.flags & QIMG_O_RDWR)) {
        cli_error("Could not open '%s': force-share=on can only be used with read-only images",
                  o.filename);
        return 1;
    }
    struct qimg_node *n = cli_open_image(&o);
    if (!n)
        return 1;
    int ret = 0;
    struct qimg_error err = {0};
    switch (action) {
    case ACT_NONE: break;
    case ACT_LIST: ret = list_snapshots(n); break;
    case ACT_CREATE: ret = create_snapshot(n, name); break;
    case ACT_APPLY:
        ret = qimg_snapshot_goto(n, name, &err);
        if (ret == -ENOTSUP && qimg_node_probed_raw(n)) {
            /* QEMU closes and reopens the format around its fallback: the warning again. */
            fprintf(stderr,
                    "WARNING: Image format was not specified for '%s' and probing guessed "
                    "raw.\n"
                    "         Automatically detecting the format is dangerous for raw images, "
                    "write operations on block 0 will be restricted.\n"
                    "         Specify the 'raw' format explicitly to remove the restrictions.\n",
                    o.filename);
        }
        if (ret < 0)
            cli_error_obj(&err, "Could not apply snapshot '%s': ", name);
        break;
    case ACT_DELETE: ret = delete_snapshot(n, name); break;
    }
    fflush(stdout);
    qimg_node_unref(n);
    return ret < 0 ? 1 : 0;
}

/*
 * convert -l / measure -l: "snapshot.id=ID,snapshot.name=NAME" loads the
 * snapshot matching both given keys; anything else is an ID, else a name.
 * The node must be read-only. 0, or -1 after printing qemu-img's error.
 */
int cli_snapshot_load_param(struct qimg_node *n, const char *param)
{
    struct qimg_error err = {0};
    int ret;
    if (strncmp(param, "snapshot.", 9) == 0) {
        struct qimg_opts *o = qimg_opts_new();
        ret = qimg_opts_parse(o, param, NULL, &err);
        if (ret == 0)
            ret = qimg_snapshot_load_tmp(n, qimg_opts_peek(o, "snapshot.id"),
                                         qimg_opts_peek(o, "snapshot.name"), &err);
        qimg_opts_free(o);
    } else {
        ret = qimg_snapshot_load_tmp_by_id_or_name(n, param, &err);
    }
    if (ret < 0) {
        cli_error_obj(&err, "Failed to load snapshot: ");
        return -1;
    }
    return 0;
}
