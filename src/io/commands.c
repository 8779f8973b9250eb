/* SPDX-License-Identifier: MIT */
/*
 * The command table and dispatcher: name and alias lookup, the "no file open"
 * and argument count checks, the read-only refusal, and help.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/io.h"
#include "util/mem.h"

bool io_quit;

static int cmd_help(int argc, char **argv);

static int cmd_quit(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    io_quit = true;
    return 0;
}

static int cmd_abort(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    abort(); /* crash tests rely on the image being left exactly as it is */
}

static int cmd_sleep(int argc, char **argv)
{
    (void)argc;
    char *end;
    long ms = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end || ms < 0) {
        printf("%s is not a valid number\n", argv[1]);
        return -1;
    }
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0)
        ;
    io_aio_reap(); /* qemu-io's main loop ran meanwhile */
    return 0;
}

static int cmd_sigraise(int argc, char **argv)
{
    (void)argc;
    int64_t sig = io_cvtnum(argv[1]);
    if (sig < 0) {
        io_print_cvtnum_err(sig, argv[1]);
        return -1;
    }
    if (sig > 64) {
        printf("signal argument '%s' is too large to be a valid signal\n", argv[1]);
        return -1;
    }
    /* Flush first: a fatal signal must not lose what was printed so far. */
    fflush(stdout);
    fflush(stderr);
    raise((int)sig);
    return 0;
}

/*
 * Breakpoints: blkdebug's (qimg_debug_* walk down to it). Once one is set,
 * requests run on threads of their own (aio.c). Messages as qemu-io's.
 */
static int cmd_break(int argc, char **argv)
{
    (void)argc;
    int ret = qimg_debug_breakpoint(io_img.node, argv[1], argv[2]);
    if (ret < 0) {
        printf("Could not set breakpoint: %s\n", strerror(-ret));
        return -1;
    }
    io_bp_mode = true;
    io_bp_note_tag(argv[2]);
    return 0;
}

static int cmd_remove_break(int argc, char **argv)
{
    (void)argc;
    int ret = qimg_debug_remove_breakpoint(io_img.node, argv[1]);
    io_bp_settle(); /* what was resumed runs up to its next stop */
    if (ret < 0) {
        printf("Could not remove breakpoint %s: %s\n", argv[1], strerror(-ret));
        return -1;
    }
    return 0;
}

static int cmd_resume(int argc, char **argv)
{
    (void)argc;
    int ret = qimg_debug_resume(io_img.node, argv[1]);
    if (ret < 0) {
        printf("Could not resume request: %s\n", strerror(-ret));
        return -1;
    }
    io_bp_settle();
    return 0;
}

static int cmd_wait_break(int argc, char **argv)
{
    (void)argc;
    /* qemu-io waits forever for a breakpoint that cannot fire; this fails instead. */
    return io_bp_wait_break(argv[1]);
}

/* Sorted by name: "help" lists them in this order. */
const struct io_command io_commands[] = {
    {"abort", NULL, cmd_abort, 0, 0, false, false, NULL,
     "simulate a program crash using abort(3)", NULL},
    {"aio_flush", NULL, io_cmd_aio_flush, 0, 0, true, false, NULL,
     "completes all outstanding aio requests", NULL},
    {"aio_read", NULL, io_cmd_aio_read, 2, -1, true, false,
     "[-Ciqv] [-P pattern] off len [len..]", "asynchronously reads a number of bytes",
     io_help_aio_read},
    {"aio_write", NULL, io_cmd_aio_write, 2, -1, true, true,
     "[-Cfiquz] [-P pattern] off len [len..]", "asynchronously writes a number of bytes",
     io_help_aio_write},
    {"alloc", "a", io_cmd_alloc, 1, 2, true, false, "offset [count]",
     "checks if offset is allocated in the file", NULL},
    {"break", NULL, cmd_break, 2, 2, true, false, "event tag",
     "sets a breakpoint on event and tags the stopped request as tag", NULL},
    {"close", "c", io_cmd_close, 0, 0, true, false, NULL, "close the current open file", NULL},
    {"discard", "d", io_cmd_discard, 2, -1, true, true, "[-Cq] off len",
     "discards a number of bytes at a specified offset", io_help_discard},
    {"flush", "f", io_cmd_flush, 0, 0, true, false, NULL,
     "flush all in-core file state to disk", NULL},
    {"help", "?", cmd_help, 0, 1, false, false, "[command]", "help for one or all commands",
     NULL},
    {"info", "i", io_cmd_info, 0, 0, true, false, NULL,
     "prints information about the current file", NULL},
    {"length", "l", io_cmd_length, 0, 0, true, false, NULL, "gets the length of the current file",
     NULL},
    {"map", NULL, io_cmd_map, 0, 0, true, false, "", "prints the allocated areas of a file",
     NULL},
    {"open", "o", io_cmd_open, 1, -1, false, false,
     "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]", "open the file specified by path",
     io_help_open},
    {"quit", "q", cmd_quit, 0, -1, false, false, NULL, "exit the program", NULL},
    {"read", "r", io_cmd_read, 2, -1, true, false, "[-abCqv] [-P pattern [-s off] [-l len]] off len",
     "reads a number of bytes at a specified offset", io_help_read},
    {"readv", NULL, io_cmd_readv, 2, -1, true, false, "[-Cqv] [-P pattern] off len [len..]",
     "reads a number of bytes at a specified offset", io_help_readv},
    {"remove_break", NULL, cmd_remove_break, 1, 1, true, false, "tag",
     "remove a breakpoint by tag", NULL},
    {"reopen", NULL, io_cmd_reopen, 0, -1, true, false, "[(-r|-w)] [-c cache] [-o options]",
     "reopens an image with new options", io_help_reopen},
    {"resume", NULL, cmd_resume, 1, 1, true, false, "tag", "resumes the request tagged as tag",
     NULL},
    {"sigraise", NULL, cmd_sigraise, 1, 1, false, false, "signal", "raises a signal",
     io_help_sigraise},
    {"sleep", NULL, cmd_sleep, 1, 1, false, false, NULL,
     "waits for the given value in milliseconds", NULL},
    {"truncate", "t", io_cmd_truncate, 1, 3, true, true, "[-m prealloc_mode] off",
     "truncates the current file at the given offset", NULL},
    {"wait_break", NULL, cmd_wait_break, 1, 1, true, false, "tag",
     "waits for the suspension of a request", NULL},
    {"write", "w", io_cmd_write, 2, -1, true, true,
     "[-bcCfnquz] [-P pattern | -s source_file] off len",
     "writes a number of bytes at a specified offset", io_help_write},
    {"writev", NULL, io_cmd_writev, 2, -1, true, true, "[-Cfq] [-P pattern] off len [len..]",
     "writes a number of bytes at a specified offset", io_help_writev},
    {0},
};

const struct io_command *io_find_command(const char *name)
{
    for (const struct io_command *c = io_commands; c->name; c++) {
        if (!strcmp(c->name, name) || (c->altname && !strcmp(c->altname, name)))
            return c;
    }
    return NULL;
}

/* "help r" names the command as it was typed. */
static void io_usage_as(const struct io_command *cmd, const char *name)
{
    if (cmd->args)
        printf("%s %s -- %s\n", name, cmd->args, cmd->oneline);
    else
        printf("%s -- %s\n", name, cmd->oneline);
}

void io_usage(const struct io_command *cmd)
{
    io_usage_as(cmd, cmd->name);
}

static int cmd_help(int argc, char **argv)
{
    if (argc == 2) {
        const struct io_command *c = io_find_command(argv[1]);
        if (!c) {
            printf("command %s not found\n", argv[1]);
            return -1;
        }
        io_usage_as(c, argv[1]);
        if (c->help)
            c->help();
        return 0;
    }
    for (const struct io_command *c = io_commands; c->name; c++)
        io_usage(c);
    printf("\nUse 'help commandname' for extended help.\n");
    return 0;
}

static bool check_argcount(const struct io_command *c, int argc)
{
    int n = argc - 1;
    if (n >= c->argmin && (c->argmax < 0 || n <= c->argmax))
        return true;
    if (c->argmax < 0)
        fprintf(stderr, "bad argument count %d to %s, expected at least %d arguments\n", n,
                c->name, c->argmin);
    else if (c->argmin == c->argmax)
        fprintf(stderr, "bad argument count %d to %s, expected %d arguments\n", n, c->name,
                c->argmin);
    else
        fprintf(stderr, "bad argument count %d to %s, expected between %d and %d arguments\n", n,
                c->name, c->argmin, c->argmax);
    return false;
}

/*
 * Once a breakpoint was set: commands doing I/O run on a thread (a lock held
 * by a suspended request must not block the main thread), write, writev,
 * close and reopen first print what finished before (qemu-io polls there;
 * close and reopen wait for every request).
 */
static int run_bp(const struct io_command *c, int argc, char **argv)
{
    static const char *const threaded[] = {"read", "readv", "write", "writev", "discard",
                                           "flush", "truncate", "length", "info", "map",
                                           "alloc", "close", "reopen", NULL};
    int failed = 0;
    if (!strcmp(c->name, "write") || !strcmp(c->name, "writev"))
        io_aio_reap();
    if (!strcmp(c->name, "close") || !strcmp(c->name, "reopen"))
        failed = io_aio_drain(c->name);
    for (size_t i = 0; threaded[i]; i++)
        if (!strcmp(c->name, threaded[i]))
            return io_bp_run_command(c, argc, argv) < 0 || failed ? -1 : 0;
    int ret = c->func(argc, argv);
    return ret < 0 || failed ? -1 : ret;
}

static int run_argv(int argc, char **argv)
{
    const struct io_command *c = io_find_command(argv[0]);
    if (!c) {
        fprintf(stderr, "command \"%s\" not found\n", argv[0]);
        return -1;
    }
    if (c->needs_file && !io_img.node) {
        fprintf(stderr, "no file open, try 'help open'\n");
        return -1;
    }
    if (!check_argcount(c, argc))
        return -1;
    if (c->needs_write && !qimg_node_is_writable(io_img.node)) {
        io_error("Block node is read-only");
        return -1;
    }
    optind = 0; /* a full getopt reset for every command */
    opterr = 1;
    if (!io_bp_mode)
        return c->func(argc, argv);
    return run_bp(c, argc, argv);
}

/* Split on single spaces, as qemu-io does (no quoting; empty words dropped). */
int io_run_command(const char *line)
{
    char *copy = xstrdup(line);
    size_t cap = 8;
    int argc = 0;
    char **argv = xmalloc(cap * sizeof(*argv));
    for (char *save = copy, *w; (w = strsep(&save, " "));) {
        if (!*w)
            continue;
        if ((size_t)argc + 2 > cap) {
            cap *= 2;
            argv = xrealloc(argv, cap * sizeof(*argv));
        }
        argv[argc++] = w;
    }
    argv[argc] = NULL;
    int ret = argc ? run_argv(argc, argv) : 0;
    free(argv);
    free(copy);
    return ret;
}
