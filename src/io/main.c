/* SPDX-License-Identifier: MIT */
/*
 * qimg-io's command line: qemu-io's options, the image opened once, then the
 * -c commands in order, or commands read from standard input after a
 * "qemu-io> " prompt (printed whether or not stdin is a terminal). The exit
 * status is 1 when opening fails or any command failed.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/heap-policy.h"
#include "io/io.h"
#include "util/mem.h"

const char *io_prog = "qemu-io";

static void usage(void)
{
    printf("Usage: %s [OPTIONS]... [-c STRING]... [file]\n"
           "QEMU Disk exerciser\n"
           "\n"
           "  --object OBJECTDEF   define an object such as 'secret' for\n"
           "                       passwords and/or encryption keys\n"
           "  --image-opts         treat file as option string\n"
           "  -c, --cmd STRING     execute command with its arguments\n"
           "                       from the given string\n"
           "  -f, --format FMT     specifies the block driver to use\n"
           "  -r, --read-only      export read-only\n"
           "  -s, --snapshot       use snapshot file\n"
           "  -n, --nocache        disable host cache, short for -t none\n"
           "  -C, --copy-on-read   enable copy-on-read\n"
           "  -m, --misalign       misalign allocations for O_DIRECT\n"
           "  -k, --native-aio     use kernel AIO implementation\n"
           "                       (Linux only, prefer use of -i)\n"
           "  -i, --aio=MODE       use AIO mode (threads, native or io_uring)\n"
           "  -t, --cache=MODE     use the given cache mode for the image\n"
           "  -d, --discard=MODE   use the given discard mode for the image\n"
           "  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]\n"
           "                       specify tracing options\n"
           "                       see qemu-img(1) man page for full description\n"
           "  -U, --force-share    force shared permissions\n"
           "  -h, --help           display this help and exit\n"
           "  -V, --version        output version information and exit\n"
           "\n"
           "See '%s -c help' for information on available commands.\n"
           "\n"
           "See <https://qemu.org/contribute/report-a-bug> for how to report bugs.\n"
           "More information on the QEMU project at <https://qemu.org>.\n",
           io_prog, io_prog);
}

enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS };

static const struct option long_options[] = {
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {"cmd", required_argument, NULL, 'c'},
    {"format", required_argument, NULL, 'f'},
    {"read-only", no_argument, NULL, 'r'},
    {"snapshot", no_argument, NULL, 's'},
    {"nocache", no_argument, NULL, 'n'},
    {"copy-on-read", no_argument, NULL, 'C'},
    {"misalign", no_argument, NULL, 'm'},
    {"native-aio", no_argument, NULL, 'k'},
    {"discard", required_argument, NULL, 'd'},
    {"cache", required_argument, NULL, 't'},
    {"trace", required_argument, NULL, 'T'},
    {"object", required_argument, NULL, OPT_OBJECT},
    {"image-opts", no_argument, NULL, OPT_IMAGE_OPTS},
    {"force-share", no_argument, NULL, 'U'},
    {"aio", required_argument, NULL, 'i'},
    {NULL, 0, NULL, 0},
};

/* Options shared by the command line and the "open" command. */
struct io_open_args {
    unsigned flags;
    const char *aio;
    bool snapshot;
};

int io_parse_discard(const char *mode, unsigned *flags)
{
    if (!strcmp(mode, "ignore") || !strcmp(mode, "off"))
        *flags &= ~QIMG_O_UNMAP;
    else if (!strcmp(mode, "unmap") || !strcmp(mode, "on"))
        *flags |= QIMG_O_UNMAP;
    else
        return -1;
    return 0;
}

int io_parse_cache(const char *mode, unsigned *flags)
{
    unsigned f;
    if (qimg_cache_parse(mode, &f) < 0)
        return -1;
    *flags = (*flags & ~(QIMG_O_NOCACHE | QIMG_O_WRITETHROUGH | QIMG_O_NO_FLUSH |
                        QIMG_O_META_SYNC)) | f;
    return 0;
}

int io_parse_aio(const char *mode)
{
    return strcmp(mode, "threads") && strcmp(mode, "native") && strcmp(mode, "io_uring") ? -1 : 0;
}

static char *read_line(FILE *f)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    if (n < 0) {
        free(line);
        return NULL;
    }
    if (n > 0 && line[n - 1] == '\n')
        line[n - 1] = '\0';
    return line;
}

static int command_loop(char **cmds, int ncmds)
{
    int failed = 0;
    if (ncmds) {
        for (int i = 0; i < ncmds && !io_quit; i++)
            if (io_run_command(cmds[i]) < 0)
                failed = 1;
        return failed;
    }
    while (!io_quit) {
        printf("%s> ", io_prog);
        fflush(stdout);
        char *line = read_line(stdin);
        if (!line)
            break;
        if (io_run_command(line) < 0)
            failed = 1;
        free(line);
    }
    return failed;
}

static int close_image(void *arg)
{
    (void)arg;
    io_close_image();
    return 0;
}

int main(int argc, char **argv)
{
    const char *slash = strrchr(argv[0], '/');
    io_prog = slash ? slash + 1 : argv[0];
    heap_policy_init(false);
    qimg_init();

    char **cmds = xcalloc((size_t)argc + 1, sizeof(*cmds));
    int ncmds = 0;
    const char *format = NULL;
    bool image_opts = false, snapshot = false, native_aio = false;
    unsigned flags = QIMG_O_RDWR | QIMG_O_UNMAP | QIMG_O_META_SYNC; /* qemu-io: writethrough */
    int c, ret = 0;

    while ((c = getopt_long(argc, argv, "hVc:d:f:rsnCmkt:T:Ui:", long_options, NULL)) != -1) {
        switch (c) {
        case 's':
            snapshot = true;
            break;
        case 'n':
            flags = (flags & ~(QIMG_O_WRITETHROUGH | QIMG_O_NO_FLUSH | QIMG_O_META_SYNC)) |
                    QIMG_O_NOCACHE;
            break;
        case 'C':
        case 'm':
        case 'T':
            break; /* copy-on-read, misalignment, tracing: no visible effect here */
        case 'd':
            if (io_parse_discard(optarg, &flags) < 0) {
                io_error("Invalid discard option: %s", optarg);
                ret = 1;
                goto out;
            }
            break;
        case 'f':
            format = optarg;
            break;
        case 'c':
            cmds[ncmds++] = optarg;
            break;
        case 'r':
            flags &= ~QIMG_O_RDWR;
            break;
        case 'k':
            native_aio = true;
            break;
        case 'i':
            if (io_parse_aio(optarg) < 0) {
                io_error("Invalid aio option: %s", optarg);
                ret = 1;
                goto out;
            }
            native_aio = !strcmp(optarg, "native");
            break;
        case 't':
            if (io_parse_cache(optarg, &flags) < 0) {
                io_error("Invalid cache option: %s", optarg);
                ret = 1;
                goto out;
            }
            break;
        case 'U':
            flags |= QIMG_O_FORCE_SHARE;
            break;
        case 'V':
            printf("%s version " QIMG_QEMU_VERSION " (qimg " QIMG_VERSION ")\n"
                   "Copyright (c) the qimg authors; a reimplementation of qemu-io from the QEMU Project\n",
                   io_prog);
            ret = 0;
            goto out;
        case 'h':
            usage();
            ret = 0;
            goto out;
        case OPT_OBJECT: {
            if (qimg_object_help(optarg, stdout)) {
                ret = 0;
                goto out;
            }
            struct qimg_error oerr = {0};
            if (qimg_object_add(optarg, &oerr) < 0) {
                io_error("%s", oerr.msg);
                ret = 1;
                goto out;
            }
            break;
        }
        case OPT_IMAGE_OPTS:
            image_opts = true;
            break;
        default:
            usage();
            ret = 1;
            goto out;
        }
    }
    if (argc - optind > 1) {
        usage();
        ret = 1;
        goto out;
    }
    if (format && image_opts) {
        io_error("--image-opts and -f are mutually exclusive");
        ret = 1;
        goto out;
    }
    if (optind < argc) {
        if (io_open_image(argv[optind], format, NULL, image_opts, flags, snapshot,
                          native_aio) < 0) {
            ret = 1;
            goto out;
        }
    }
    ret = command_loop(cmds, ncmds);
    if (io_bp_mode) {
        /* Requests still suspended, or a breakpoint hit while closing: qemu-io would hang. */
        int drained = io_aio_drain("exit");
        /* Closed even then: what the resumed requests wrote is owed its metadata. */
        if (io_bp_call("exit", close_image, NULL) < 0 || drained < 0)
            ret = 1;
        io_bp_forget_tags();
    } else {
        io_close_image();
    }
out:
    free(cmds); /* one exit path: the command list is freed on every way out */
    fflush(stdout);
    return ret;
}
