/* SPDX-License-Identifier: MIT */
/* qimg: the qemu-img compatible command line. Dispatch, --help and --version. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/heap-policy.h"
#include "qimg/driver.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} commands[] = {
    {"amend", cmd_amend},     {"bench", cmd_bench},       {"bitmap", cmd_bitmap},
    {"check", cmd_check},     {"commit", cmd_commit},     {"compare", cmd_compare},
    {"convert", cmd_convert}, {"create", cmd_create},     {"dd", cmd_dd},
    {"info", cmd_info},       {"map", cmd_map},           {"measure", cmd_measure},
    {"snapshot", cmd_snapshot}, {"rebase", cmd_rebase},   {"resize", cmd_resize},
};

/* Commands of qimg's own, beyond qemu-img (issue 22): only under the qimg name (cli_extras). */
static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} extra_commands[] = {
    {"checksum", cmd_checksum},
};

/*
 * "qemu-img version 9.1.0 (qimg 0.2.0)": the qemu-img release implemented,
 * then qimg's own version in the place where distributions put their package
 * version ("qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7)"), so scripts that
 * parse qemu-img's version read 9.1.0 under either name. The copyright line
 * is qimg's: it is not QEMU's code (doc/versioning.md).
 */
#define VERSION_LINES \
    "%s version " QIMG_QEMU_VERSION " (qimg " QIMG_VERSION ")\n" \
    "Copyright (c) the qimg authors; a reimplementation of qemu-img from the QEMU Project\n"

static void print_version(void)
{
    printf(VERSION_LINES, cli_prog);
}

static void print_format_name(const struct qimg_driver *drv, void *ctx)
{
    (void)ctx;
    printf(" %s", drv->name);
}

static const char help_syntax[] =
    "Command syntax:\n"
    "  amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename\n"
    "  bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] filename\n"
    "  bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... [-b source_file [-F source_fmt]] [-g granularity] [--object objectdef] [--image-opts | -f fmt] filename bitmap\n"
    "  check [--object objectdef] [--image-opts] [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename\n"
    "%s"
    "  commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename\n"
    "  compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2\n"
    "  convert [--object objectdef] [--image-opts] [--target-image-opts] [--target-is-zero] [--bitmaps] [-U] [-C] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] [-l snapshot_param] [-S sparse_size] [-r rate_limit] [-m num_coroutines] [-W] [--salvage] filename [filename2 [...]] output_filename\n"
    "  create [--object objectdef] [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]\n"
    "  dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] [skip=blocks] if=input of=output\n"
    "  info [--object objectdef] [--image-opts] [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename\n"
    "  map [--object objectdef] [--image-opts] [-f fmt] [--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] filename\n"
    "  measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [--object objectdef] [--image-opts] [-f fmt] [-l snapshot_param] filename]\n"
    "  snapshot [--object objectdef] [--image-opts] [-U] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] filename\n"
    "  rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] [-c] -b backing_file [-F backing_fmt] filename\n"
    "  resize [--object objectdef] [--image-opts] [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size\n";

/* The checksum line of "Command syntax:" under the qimg name. */
static const char help_syntax_checksum[] =
    "  checksum [--object objectdef] [--image-opts] [-f fmt] [-T src_cache] [-p] [--progress=fd:N] [--progress-fd=N] [-a algorithm] [-U] filename\n";

/* What qimg adds to qemu-img's commands, listed under the qimg name only. */
static const char help_extras[] =
    "qimg extensions (not in qemu-img; absent when invoked as qemu-img):\n"
    "  amend --progress=fd:N | --progress-fd=N\n"
    "  check --dry-run (with -r leaks or -r all)\n"
    "  commit --progress=fd:N | --progress-fd=N\n"
    "  compare --progress=fd:N | --progress-fd=N\n"
    "  convert --progress=fd:N | --progress-fd=N\n"
    "  dd --progress=fd:N | --progress-fd=N\n"
    "  rebase --progress=fd:N | --progress-fd=N\n"
    "\n"
    "  'checksum' prints a digest of the guest-visible content, the same for every\n"
    "       format and layout of it (blksum's construction: 64 KiB blocks, 64\n"
    "       streams); '-a' names the hash (default sha256)\n"
    "  '--progress=fd:N' writes '<done>/<total>' in bytes, one line per change, to\n"
    "       file descriptor N ('--progress-fd=N' is the same)\n"
    "  '--dry-run' with check -r reports what the repair would change and the exit\n"
    "       code it would give, without writing to the image\n";

static const char help_params[] =
    "Command parameters:\n"
    "  'filename' is a disk image filename\n"
    "  'objectdef' is a QEMU user creatable object definition. See the qemu(1)\n"
    "    manual page for a description of the object properties. The most common\n"
    "    object type is a 'secret', which is used to supply passwords and/or\n"
    "    encryption keys.\n"
    "  'fmt' is the disk image format. It is guessed automatically in most cases\n"
    "  'cache' is the cache mode used to write the output disk image, the valid\n"
    "    options are: 'none', 'writeback' (default, except for convert), 'writethrough',\n"
    "    'directsync' and 'unsafe' (default for convert)\n"
    "  'src_cache' is the cache mode used to read input disk images, the valid\n"
    "    options are the same as for the 'cache' option\n"
    "  'size' is the disk image size in bytes. Optional suffixes\n"
    "    'k' or 'K' (kilobyte, 1024), 'M' (megabyte, 1024k), 'G' (gigabyte, 1024M),\n"
    "    'T' (terabyte, 1024G), 'P' (petabyte, 1024T) and 'E' (exabyte, 1024P)  are\n"
    "    supported. 'b' is ignored.\n"
    "  'output_filename' is the destination disk image filename\n"
    "  'output_fmt' is the destination format\n"
    "  'options' is a comma separated list of format specific options in a\n"
    "    name=value format. Use -o help for an overview of the options supported by\n"
    "    the used format\n"
    "  'snapshot_param' is param used for internal snapshot, format\n"
    "    is 'snapshot.id=[ID],snapshot.name=[NAME]', or\n"
    "    '[ID_OR_NAME]'\n"
    "  '-c' indicates that target image must be compressed (qcow format only)\n"
    "  '-u' allows unsafe backing chains. For rebasing, it is assumed that old and\n"
    "       new backing file match exactly. The image doesn't need a working\n"
    "       backing file before rebasing in this case (useful for renaming the\n"
    "       backing file). For image creation, allow creating without attempting\n"
    "       to open the backing file.\n"
    "  '-h' with or without a command shows this help and lists the supported formats\n"
    "  '-p' show progress of command (only certain commands)\n"
    "  '-q' use Quiet mode - do not print any output (except errors)\n"
    "  '-S' indicates the consecutive number of bytes (defaults to 4k) that must\n"
    "       contain only zeros for qemu-img to create a sparse image during\n"
    "       conversion. If the number of bytes is 0, the source will not be scanned for\n"
    "       unallocated or zero sectors, and the destination image will always be\n"
    "       fully allocated\n"
    "  '--output' takes the format in which the output must be done (human or json)\n"
    "  '-n' skips the target volume creation (useful if the volume is created\n"
    "       prior to running qemu-img)\n"
    "\n"
    "Parameters to bitmap subcommand:\n"
    "  'bitmap' is the name of the bitmap to manipulate, through one or more\n"
    "       actions from '--add', '--remove', '--clear', '--enable', '--disable',\n"
    "       or '--merge source'\n"
    "  '-g granularity' sets the granularity for '--add' actions\n"
    "  '-b source' and '-F src_fmt' tell '--merge' actions to find the source\n"
    "       bitmaps from an alternative file\n"
    "\n"
    "Parameters to check subcommand:\n"
    "  '-r' tries to repair any inconsistencies that are found during the check.\n"
    "       '-r leaks' repairs only cluster leaks, whereas '-r all' fixes all\n"
    "       kinds of errors, with a higher risk of choosing the wrong fix or\n"
    "       hiding corruption that has already occurred.\n"
    "\n"
    "Parameters to convert subcommand:\n"
    "  '--bitmaps' copies all top-level persistent bitmaps to destination\n"
    "  '-m' specifies how many coroutines work in parallel during the convert\n"
    "       process (defaults to 8)\n"
    "  '-W' allow to write to the target out of order rather than sequential\n"
    "\n"
    "Parameters to snapshot subcommand:\n"
    "  'snapshot' is the name of the snapshot to create, apply or delete\n"
    "  '-a' applies a snapshot (revert disk to saved state)\n"
    "  '-c' creates a snapshot\n"
    "  '-d' deletes a snapshot\n"
    "  '-l' lists all snapshots in the given image\n"
    "\n"
    "Parameters to compare subcommand:\n"
    "  '-f' first image format\n"
    "  '-F' second image format\n"
    "  '-s' run in Strict mode - fail on different image size or sector allocation\n"
    "\n"
    "Parameters to dd subcommand:\n"
    "  'bs=BYTES' read and write up to BYTES bytes at a time (default: 512)\n"
    "  'count=N' copy only N input blocks\n"
    "  'if=FILE' read from FILE\n"
    "  'of=FILE' write to FILE\n"
    "  'skip=N' skip N bs-sized blocks at the start of input\n";

static void print_help(void)
{
    printf(VERSION_LINES
           "usage: %s [standard options] command [command options]\n"
           "QEMU disk image utility\n"
           "\n"
           "    '-h', '--help'       display this help and exit\n"
           "    '-V', '--version'    output version information and exit\n"
           "    '-T', '--trace'      [[enable=]<pattern>][,events=<file>][,file=<file>]\n"
           "                         specify tracing options\n"
           "\n",
           cli_prog, cli_prog);
    printf(help_syntax, cli_extras() ? help_syntax_checksum : "");
    fputs("\n", stdout);
    fputs(help_params, stdout);
    if (cli_extras())
        printf("\n%s", help_extras);
    printf("\nSupported formats:");
    qimg_driver_foreach(print_format_name, NULL);
    /* Bugs in qimg are not QEMU's: the reports go to this project. */
    printf("\n\nReport bugs in qimg to the qimg project, not to QEMU: see BUGS in qimg(1).\n"
           "More information on the QEMU project at <https://qemu.org>.\n");
}

/* "-h" or "--help" among a command's arguments (before "--"). */
static bool wants_help(int argc, char **argv)
{
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "-h") || !strcmp(argv[k], "--help"))
            return true;
        if (!strcmp(argv[k], "--"))
            break;
    }
    return false;
}

int main(int argc, char **argv)
{
    const char *slash = strrchr(argv[0], '/');
    cli_prog = slash ? slash + 1 : argv[0];
    /* Past RLIMIT_FSIZE a write must fail with EFBIG and a message, not kill us (as QEMU). */
    signal(SIGXFSZ, SIG_IGN);
    heap_policy_init(true);
    qimg_init();

    /* Standard options come before the command. */
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            print_help();
            return 0;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            print_version();
            return 0;
        } else if (!strcmp(a, "-T") || !strcmp(a, "--trace")) {
            if (++i >= argc)
                return cli_usage_error("missing argument for option '%s'", a);
            /* Tracing is accepted for compatibility; qimg has no trace events. */
        } else if (!strncmp(a, "--trace=", 8)) {
            continue;
        } else {
            return cli_usage_error("unrecognized option '%s'", a);
        }
    }
    if (i >= argc)
        return cli_usage_error("Not enough arguments");
    const char *cmd = argv[i];
    for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
        if (!strcmp(cmd, commands[c].name)) {
            /* Subcommands parse argv as "cmd [options...]": getopt starts after argv[0]. */
            optind = 1;
            int sub_argc = argc - i;
            char **sub_argv = argv + i;
            if (wants_help(sub_argc, sub_argv)) {
                print_help();
                return 0;
            }
            return commands[c].fn(sub_argc, sub_argv);
        }
    }
    for (size_t c = 0; cli_extras() && c < sizeof(extra_commands) / sizeof(extra_commands[0]); c++) {
        if (!strcmp(cmd, extra_commands[c].name)) {
            optind = 1;
            if (wants_help(argc - i, argv + i)) {
                print_help();
                return 0;
            }
            return extra_commands[c].fn(argc - i, argv + i);
        }
    }
    return cli_usage_error("Command not found: %s", cmd);
}
