/* SPDX-License-Identifier: MIT */
/* Messages, option parsing and image opening shared by the subcommands. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

const char *cli_prog = "qimg";

static void print_prefixed(FILE *f, const char *msg)
{
    fprintf(f, "%s: %s\n", cli_prog, msg);
}

void cli_error(const char *fmt, ...)
{
    char buf[QIMG_ERROR_MAX * 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fflush(stdout);
    print_prefixed(stderr, buf);
}

void cli_error_obj(const struct qimg_error *err, const char *prefix_fmt, ...)
{
    char prefix[QIMG_ERROR_MAX] = "";
    if (prefix_fmt) {
        va_list ap;
        va_start(ap, prefix_fmt);
        vsnprintf(prefix, sizeof(prefix), prefix_fmt, ap);
        va_end(ap);
    }
    cli_error("%s%s", prefix, err->msg[0] ? err->msg : strerror(err->code ? -err->code : EIO));
}

int cli_usage_error(const char *fmt, ...)
{
    char buf[QIMG_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    cli_error("%s", buf);
    fprintf(stderr, "Try '%s --help' for more information\n", cli_prog);
    return 1;
}

void cli_warn(const char *fmt, ...)
{
    char buf[QIMG_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    cli_error("warning: %s", buf);
}

int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts)
{
    char spec[128];
    /* Leading ':' makes getopt report a missing argument as ':' and stay quiet. */
    snprintf(spec, sizeof(spec), ":%s", shortopts);
    opterr = 0;
    /* Under qemu-img's name the extensions' long options do not exist (cli_extras). */
    struct option plain[64];
    if (longopts && !cli_extras()) {
        size_t n = 0;
        for (const struct option *o = longopts; o->name && n + 1 < 64; o++) {
            if (o->val < CLI_OPT_EXTRA)
                plain[n++] = *o;
        }
        plain[n] = (struct option){0};
        longopts = plain;
    }
    int c = getopt_long(argc, argv, spec, longopts, NULL);
    if (c == '?') {
        if (optopt && optopt < 256 && !(optind > 0 && strncmp(argv[optind - 1], "--", 2) == 0))
            cli_usage_error("unrecognized option '-%c'", optopt);
        else
            cli_usage_error("unrecognized option '%s'", argv[optind - 1]);
        return '?';
    }
    if (c == ':') {
        cli_usage_error("missing argument for option '%s'", argv[optind - 1]);
        return '?';
    }
    return c;
}

int cli_parse_image_size(const char *arg, const char *what, int64_t *out)
{
    uint64_t v;
    int ret = qimg_parse_size(arg, 1, &v);
    if (ret < 0 && ret != -ERANGE) {
        cli_error("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", what);
        cli_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return -1;
    }
    if (ret == -ERANGE || v > INT64_MAX) {
        cli_error("Invalid %s specified. Must be between 0 and 9223372036854775807.", what);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

int cli_parse_rate(const char *arg, uint64_t *out)
{
    int64_t rate;
    if (cli_parse_image_size(arg, "rate limit", &rate) < 0)
        return -1;
    *out = (uint64_t)rate;
    return 0;
}

int cli_parse_output(const char *arg, enum cli_output *out)
{
    if (!strcmp(arg, "json")) {
        *out = CLI_OUTPUT_JSON;
    } else if (!strcmp(arg, "human")) {
        *out = CLI_OUTPUT_HUMAN;
    } else {
        cli_error("--output must be used with human or json as argument.");
        return -1;
    }
    return 0;
}

int cli_parse_cache(const char *mode, unsigned *flags, bool is_source)
{
    if (qimg_cache_parse(mode, flags) < 0) {
        cli_error("Invalid %scache option: %s", is_source ? "source " : "", mode);
        return -1;
    }
    return 0;
}

struct qimg_node *cli_open_image(const struct cli_open *o)
{
    struct qimg_error err = {0};
    struct qimg_node *n = NULL;
    int ret;
    if (o->image_opts) {
        /* qemu-img checks this when it opens the image, after the command's own options. */
        if (o->fmt) {
            cli_error("--image-opts and --format are mutually exclusive");
            return NULL;
        }
        struct qimg_opts *opts = qimg_opts_new();
        ret = qimg_opts_parse(opts, o->filename, NULL, &err);
        if (ret == 0)
            ret = qimg_open_image_opts(&n, opts, o->flags, &err);
        qimg_opts_free(opts);
    } else {
        ret = qimg_open(&n, o->filename, o->fmt, o->opts, o->flags, &err);
    }
    if (ret < 0) {
        cli_error_obj(&err, "Could not open '%s': ", o->filename);
        return NULL;
    }
    if (qimg_node_probed_raw(n) && (o->flags & QIMG_O_RDWR)) {
        /* The name the raw node had when probed, its file's, as QEMU's: "./a:b",
         * "r.raw", json:{"lun": ...} for a protocol with no plain name (iscsi). */
        const struct qimg_node *probed = qimg_node_file(n) ? qimg_node_file(n) : n;
        fflush(stdout);
        fprintf(stderr,
                "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
                "         Automatically detecting the format is dangerous for raw images, "
                "write operations on block 0 will be restricted.\n"
                "         Specify the 'raw' format explicitly to remove the restrictions.\n",
                qimg_node_filename(probed));
    }
    return n;
}

int cli_add_object(const char *spec)
{
    if (qimg_object_help(spec, stdout))
        exit(0);
    struct qimg_error err = {0};
    int ret = qimg_object_add(spec, &err);
    if (ret < 0)
        cli_error_obj(&err, NULL);
    return ret;
}
