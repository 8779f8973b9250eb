/* SPDX-License-Identifier: MIT */
/*
 * The debug-event API and the blkdebug filter: event names parse both ways,
 * raw over blkdebug passes I/O through, and rules on a metadata event
 * (l2_load, which qcow2 raises for real) fire only once the event is raised
 * by hand through qimg_debug_event on the format node's file, honouring
 * sector, once, errno, iotype and state.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "qimg/driver.h"
#include "qimg/qimg.h"

static char tmpdir[PATH_MAX];
static char image[PATH_MAX];

static struct qimg_node *open_json(const char *rules)
{
    char spec[4096];
    snprintf(spec, sizeof(spec),
             "json:{\"driver\": \"raw\", \"file\": {\"driver\": \"blkdebug\", %s%s"
             "\"image\": {\"driver\": \"file\", \"filename\": \"%s\"}}}",
             rules, *rules ? ", " : "", image);
    struct qimg_node *n = NULL;
    struct qimg_error err = {0};
    int ret = qimg_open(&n, spec, NULL, NULL, QIMG_O_RDWR, &err);
    if (ret < 0)
        fprintf(stderr, "open: %s\n", err.msg);
    return n;
}

static void test_event_names(void)
{
    enum qimg_debug_event ev;
    CHECK(qimg_debug_event_parse("l2_load", &ev) == 0 && ev == QIMG_DBG_L2_LOAD);
    CHECK(qimg_debug_event_parse("cluster_alloc_space", &ev) == 0 &&
          ev == QIMG_DBG_CLUSTER_ALLOC_SPACE);
    CHECK(qimg_debug_event_parse("none", &ev) == 0 && ev == QIMG_DBG_NONE);
    CHECK(qimg_debug_event_parse("bogus", &ev) == -EINVAL);
    CHECK(qimg_debug_event_parse(NULL, &ev) == -EINVAL);
    for (int i = 0; i < QIMG_DBG__MAX; i++) {
        const char *name = qimg_debug_event_name((enum qimg_debug_event)i);
        CHECK(name && qimg_debug_event_parse(name, &ev) == 0 && (int)ev == i);
    }
    CHECK_STR(qimg_debug_event_name(QIMG_DBG_FLUSH_TO_DISK), "flush_to_disk");
    CHECK(qimg_debug_event_name(QIMG_DBG__MAX) == NULL);
}

static void test_no_filter_is_noop(void)
{
    struct qimg_node *n = NULL;
    struct qimg_error err = {0};
    CHECK(qimg_open(&n, image, "raw", NULL, QIMG_O_RDWR, &err) == 0);
    if (!n)
        return;
    qimg_debug_event(qimg_node_file(n), QIMG_DBG_L2_LOAD); /* file protocol: ignored */
    qimg_debug_event(NULL, QIMG_DBG_L2_LOAD);
    char buf[512];
    CHECK(qimg_node_pread(n, 0, sizeof(buf), buf, 0) == 0);
    qimg_node_unref(n);
}

static void test_passthrough(void)
{
    struct qimg_node *n = open_json("");
    CHECK(n != NULL);
    if (!n)
        return;
    CHECK_STR(qimg_node_driver(qimg_node_file(n))->name, "blkdebug");
    char w[4096], r[4096];
    memset(w, 0x5a, sizeof(w));
    CHECK(qimg_node_pwrite(n, 4096, sizeof(w), w, 0) == 0);
    CHECK(qimg_node_pread(n, 4096, sizeof(r), r, 0) == 0);
    CHECK(memcmp(w, r, sizeof(r)) == 0);
    CHECK(qimg_node_length(n) == 1 << 20);
    CHECK(qimg_node_flush(n) == 0);
    qimg_node_unref(n);
}

static void test_l2_load_rule(void)
{
    struct qimg_node *n = open_json(
        "\"inject-error\": [{\"event\": \"l2_load\", \"errno\": 28, \"sector\": 16, "
        "\"once\": true}]");
    CHECK(n != NULL);
    if (!n)
        return;
    struct qimg_node *file = qimg_node_file(n);
    char buf[512];
    /* Not raised yet: nothing fails. */
    CHECK(qimg_node_pread(file, 8192, 512, buf, 0) == 0);
    qimg_debug_event(file, QIMG_DBG_L2_LOAD);
    CHECK(qimg_node_pread(file, 0, 512, buf, 0) == 0);        /* other sector */
    CHECK(qimg_node_pread(file, 8192, 512, buf, 0) == -ENOSPC); /* sector 16 */
    CHECK(qimg_node_pread(file, 8192, 512, buf, 0) == 0);     /* once: gone */
    qimg_debug_event(file, QIMG_DBG_L2_LOAD);
    CHECK(qimg_node_pread(file, 8192, 512, buf, 0) == 0); /* and stays gone */
    qimg_node_unref(n);
}

static void test_state_and_iotype(void)
{
    struct qimg_node *n = open_json(
        "\"set-state\": [{\"event\": \"l2_load\", \"state\": 1, \"new_state\": 2}], "
        "\"inject-error\": [{\"event\": \"l2_update\", \"state\": 2, \"iotype\": \"write\"}]");
    CHECK(n != NULL);
    if (!n)
        return;
    struct qimg_node *file = qimg_node_file(n);
    char buf[512] = {0};
    qimg_debug_event(file, QIMG_DBG_L2_UPDATE); /* state 1: no match */
    CHECK(qimg_node_pwrite(file, 0, 512, buf, 0) == 0);
    qimg_debug_event(file, QIMG_DBG_L2_LOAD); /* -> state 2 */
    qimg_debug_event(file, QIMG_DBG_L2_UPDATE);
    CHECK(qimg_node_pread(file, 0, 512, buf, 0) == 0);         /* reads unaffected */
    CHECK(qimg_node_pwrite(file, 0, 512, buf, 0) == -EIO);     /* default errno */
    CHECK(qimg_node_pwrite(n, 0, 512, buf, 0) == -EIO);        /* raw's writes too */
    CHECK(qimg_node_pwrite(file, 0, 512, buf, 0) == -EIO);     /* persistent */
    qimg_node_unref(n);
}

static void test_bad_rules(void)
{
    static const char *const bad[] = {
        "\"inject-error\": [{\"event\": \"bogus\"}]",
        "\"inject-error\": [{\"errno\": 5}]",
        "\"inject-error\": [{\"event\": \"l2_load\", \"errno\": \"99999999999\"}]",
        "\"inject-error\": [{\"event\": \"l2_load\", \"once\": \"maybe\"}]",
        "\"align\": 3",
        "\"max-transfer\": 513, \"align\": 512",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char spec[4096];
        snprintf(spec, sizeof(spec),
                 "json:{\"driver\": \"raw\", \"file\": {\"driver\": \"blkdebug\", %s, "
                 "\"image\": {\"driver\": \"file\", \"filename\": \"%s\"}}}",
                 bad[i], image);
        struct qimg_node *n = NULL;
        struct qimg_error err = {0};
        CHECK(qimg_open(&n, spec, NULL, NULL, 0, &err) == -EINVAL);
        CHECK(err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL);
        CHECK(n == NULL);
    }
}

int main(void)
{
    qimg_init();
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpdir, sizeof(tmpdir), "%s/qimg-blkdebug-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(image, sizeof(image), "%s/r.raw", tmpdir);
    int fd = open(image, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 1 << 20) < 0) {
        perror(image);
        return 1;
    }
    close(fd);
    static const struct harness_test tests[] = {
        {"event_names", test_event_names},
        {"no_filter_is_noop", test_no_filter_is_noop},
        {"passthrough", test_passthrough},
        {"l2_load_rule", test_l2_load_rule},
        {"state_and_iotype", test_state_and_iotype},
        {"bad_rules", test_bad_rules},
        {NULL, NULL},
    };
    int ret = harness_run(tests);
    unlink(image);
    rmdir(tmpdir);
    return ret;
}
