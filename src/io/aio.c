/* SPDX-License-Identifier: MIT */
/*
 * Breakpoint mode: what qemu-io's break, resume, remove_break and wait_break
 * need from the rest of qimg-io.
 *
 * Until a breakpoint is set, aio requests run synchronously (their report is
 * printed by the command itself, as always). Once one is set, a request may
 * stop inside blkdebug (src/protocols/blkdebug.c) with its thread blocked, so:
 *
 *  - every aio request runs on a thread of its own; its report is printed at
 *    a "poll point", in completion order: aio_flush, wait_break, write and
 *    writev, sleep, close, reopen and exit (where qemu-io's main loop runs
 *    and its completions are seen; read, discard, flush ... usually finish
 *    before an earlier aio request's completion is seen, so they are not);
 *  - commands that do I/O run on a thread too, so that the main thread never
 *    blocks behind a suspended request;
 *  - after each command, and after starting a request or resuming one, the
 *    main thread waits until every thread is done or asleep on a lock or
 *    condition variable (suspended at a breakpoint, or waiting for a lock a
 *    suspended request holds): nothing can move then until the next resume,
 *    so "Suspended" lines come out at fixed points of the output.
 *
 * Whether a thread is asleep is read from /proc/self/task/TID (state 'S' and
 * a futex wait channel), so that no lock in the library has to report to us.
 *
 * qemu-io waits forever where nothing can ever move on (wait_break for a
 * breakpoint no request can reach; aio_flush, a synchronous command, close or
 * exit behind a suspended request). qimg-io never hangs: wait_break fails
 * with one line; the others print one line, resume every suspended request
 * (blkdebug prints the "Resuming" lines) and go on, the command failing.
 *
 * Known difference: the qcow2 driver raises some events (l2_update, and
 * write_aio of an allocating write) holding its metadata lock, where QEMU's
 * drops its lock around the data write. A request suspended there keeps
 * every other request on that image waiting (reported as above for a
 * synchronous command; aio requests just wait and complete after the
 * resume), while in QEMU a write to another cluster completes meanwhile.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/io.h"
#include "util/mem.h"

bool io_bp_mode;

/* A thread qimg-io waits for: an aio request or a command. */
struct io_task {
    pthread_t th;
    atomic_int tid;    /* kernel thread id; 0 until the thread runs */
    atomic_bool done;
    struct io_req *req; /* aio request, or NULL for a call */
    int (*call)(void *arg);
    void *arg;
    int ret;
    struct io_task *next;  /* live list */
    struct io_task *cnext; /* completion list */
};

static pthread_mutex_t tasks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct io_task *live;        /* started, not yet reaped (newest first) */
static struct io_task *completed;   /* aio requests done, in completion order */
static struct io_task **completed_tail = &completed;

/* Tags given to successful "break" commands, to resume everything at the end. */
static char **tags;
static size_t n_tags;

void io_bp_note_tag(const char *tag)
{
    for (size_t i = 0; i < n_tags; i++)
        if (!strcmp(tags[i], tag))
            return;
    tags = xrealloc(tags, (n_tags + 1) * sizeof(*tags));
    tags[n_tags++] = xstrdup(tag);
}

void io_bp_forget_tags(void)
{
    for (size_t i = 0; i < n_tags; i++)
        free(tags[i]);
    free(tags);
    tags = NULL;
    n_tags = 0;
}

static void *task_main(void *arg)
{
    struct io_task *t = arg;
    atomic_store(&t->tid, (int)gettid());
    if (t->req) {
        struct io_req *r = t->req;
        r->ret = r->perform(r);
        gettimeofday(&r->t2, NULL);
    } else {
        t->ret = t->call(t->arg);
    }
    pthread_mutex_lock(&tasks_lock);
    if (t->req) {
        *completed_tail = t;
        completed_tail = &t->cnext;
    }
    atomic_store(&t->done, true);
    pthread_mutex_unlock(&tasks_lock);
    return NULL;
}

static void task_start(struct io_task *t)
{
    pthread_mutex_lock(&tasks_lock);
    t->next = live;
    live = t;
    pthread_mutex_unlock(&tasks_lock);
    int err = pthread_create(&t->th, NULL, task_main, t);
    if (err) {
        fprintf(stderr, "%s: cannot start a thread: %s\n", io_prog, strerror(err));
        exit(1);
    }
}

static void task_unlink(struct io_task *t)
{
    pthread_mutex_lock(&tasks_lock);
    for (struct io_task **pp = &live; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    pthread_mutex_unlock(&tasks_lock);
    pthread_join(t->th, NULL);
}

/* ---- quiescence ---- */

/* Read a small /proc file with plain system calls: no lock (malloc's, stdio's) is held. */
static bool read_proc(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return true;
}

/* Is the thread asleep on a futex (a mutex or condition variable)? */
static bool thread_asleep(int tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
    if (!read_proc(path, buf, sizeof(buf)))
        return false;
    const char *p = strrchr(buf, ')'); /* the name may hold anything but ends at the last ')' */
    if (!p || p[1] != ' ' || p[2] != 'S')
        return false;
    /* Interruptible sleeps other than futex waits (I/O on sockets) end by themselves. */
    snprintf(path, sizeof(path), "/proc/self/task/%d/wchan", tid);
    if (read_proc(path, buf, sizeof(buf)) && strcmp(buf, "0") != 0)
        return strstr(buf, "futex") != NULL;
    return true; /* wait channel hidden: the state has to do */
}

enum quiet { BUSY, ASLEEP, NOTHING_LIVE };

/*
 * Is every live task done or asleep? The thread ids are copied first so that
 * the looks into /proc happen with no lock of ours held: a thread waiting for
 * one we hold would look asleep.
 */
static enum quiet all_quiet(void)
{
    size_t n = 0, cap = 0;
    int *tids = NULL;
    bool busy = false;
    pthread_mutex_lock(&tasks_lock);
    for (struct io_task *t = live; t; t = t->next) {
        if (atomic_load(&t->done))
            continue;
        int tid = atomic_load(&t->tid);
        if (!tid) {
            busy = true; /* not even started */
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            tids = xrealloc(tids, cap * sizeof(*tids));
        }
        tids[n++] = tid;
    }
    pthread_mutex_unlock(&tasks_lock);
    for (size_t i = 0; !busy && i < n; i++)
        busy = !thread_asleep(tids[i]);
    free(tids);
    return busy ? BUSY : n ? ASLEEP : NOTHING_LIVE;
}

static bool any_suspended(void)
{
    for (size_t i = 0; io_img.node && i < n_tags; i++)
        if (qimg_debug_is_suspended(io_img.node, tags[i]))
            return true;
    return false;
}

static void nap(void)
{
    struct timespec ts = {0, 200 * 1000};
    nanosleep(&ts, NULL);
}

/*
 * Wait until done(arg) or until no task can move on: every thread is asleep
 * and a request is suspended (only a resume can help then). A thread that a
 * lock release or a resume wakes is runnable before the waker goes on, so a
 * few quiet looks in a row are enough. Threads all asleep with nothing
 * suspended happen only in passing, or in a deadlock (after 2 s of it).
 */
static bool wait_until(bool (*done)(void *arg), void *arg)
{
    int quiet = 0;
    for (;;) {
        if (done(arg))
            return true;
        enum quiet q = all_quiet();
        if (q == NOTHING_LIVE)
            return done(arg);
        quiet = q == ASLEEP ? quiet + 1 : 0;
        if (quiet >= 3 && (any_suspended() || quiet >= 10000))
            return done(arg);
        nap();
    }
}

static bool all_done(void *arg)
{
    (void)arg;
    bool done = true;
    pthread_mutex_lock(&tasks_lock);
    for (struct io_task *t = live; t && done; t = t->next)
        done = atomic_load(&t->done);
    pthread_mutex_unlock(&tasks_lock);
    return done;
}

void io_bp_settle(void)
{
    if (io_bp_mode)
        wait_until(all_done, NULL);
}

/* ---- completions ---- */

void io_aio_reap(void)
{
    if (!io_bp_mode)
        return;
    for (;;) {
        pthread_mutex_lock(&tasks_lock);
        struct io_task *t = completed;
        if (t) {
            completed = t->cnext;
            if (!completed)
                completed_tail = &completed;
        }
        pthread_mutex_unlock(&tasks_lock);
        if (!t)
            return;
        task_unlink(t);
        t->req->complete(t->req);
        io_req_free(t->req);
        free(t);
    }
}

void io_req_free(struct io_req *r)
{
    free(r->buf);
    free(r);
}

void io_req_run(struct io_req *r)
{
    gettimeofday(&r->t1, NULL);
    if (!io_bp_mode) {
        r->ret = r->perform(r);
        gettimeofday(&r->t2, NULL);
        r->complete(r);
        io_req_free(r);
        return;
    }
    struct io_task *t = xcalloc(1, sizeof(*t));
    t->req = r;
    task_start(t);
    io_bp_settle(); /* it has run up to a breakpoint, a lock, or its end */
}

/* ---- getting out of waits that would never end ---- */

/* Resume every suspended request; how many were. */
static int resume_all(void)
{
    int resumed = 0;
    for (size_t i = 0; io_img.node && i < n_tags; i++)
        while (qimg_debug_resume(io_img.node, tags[i]) == 0)
            resumed++;
    return resumed;
}

/*
 * Wait for done(arg); when only a resume could get there, say so once
 * (what: the waiting command), resume everything and go on waiting.
 * 0, or -1 when requests had to be resumed.
 */
static int wait_unstuck(const char *what, bool (*done)(void *arg), void *arg)
{
    int ret = 0;
    while (!wait_until(done, arg)) {
        if (ret == 0)
            io_error("%s would wait forever for a request suspended at a breakpoint; "
                     "resuming all suspended requests", what);
        ret = -1;
        fflush(stdout);
        if (resume_all() == 0) {
            /* Nothing suspended and still nothing moves: a real deadlock. */
            io_error("requests cannot complete; exiting");
            fflush(stdout);
            fflush(stderr);
            _exit(1);
        }
    }
    return ret;
}

int io_aio_drain(const char *what)
{
    if (!io_bp_mode)
        return 0;
    int ret = wait_unstuck(what, all_done, NULL);
    io_aio_reap();
    return ret;
}

static bool task_done(void *arg)
{
    return atomic_load(&((struct io_task *)arg)->done);
}

int io_bp_call(const char *what, int (*call)(void *arg), void *arg)
{
    struct io_task t = {.call = call, .arg = arg};
    task_start(&t);
    int stuck = wait_unstuck(what, task_done, &t);
    task_unlink(&t);
    io_bp_settle();
    return stuck < 0 ? -1 : t.ret;
}

struct command_call {
    const struct io_command *cmd;
    int argc;
    char **argv;
};

static int call_command(void *arg)
{
    struct command_call *c = arg;
    return c->cmd->func(c->argc, c->argv);
}

int io_bp_run_command(const struct io_command *cmd, int argc, char **argv)
{
    struct command_call c = {cmd, argc, argv};
    return io_bp_call(cmd->name, call_command, &c);
}

/* ---- wait_break ---- */

struct wait_break {
    const char *tag;
};

static bool reached(void *arg)
{
    const struct wait_break *w = arg;
    io_aio_reap(); /* qemu-io runs its main loop meanwhile */
    return qimg_debug_is_suspended(io_img.node, w->tag);
}

int io_bp_wait_break(const char *tag)
{
    if (qimg_debug_is_suspended(io_img.node, tag))
        return 0;
    struct wait_break w = {tag};
    if (wait_until(reached, &w))
        return 0;
    io_error("wait_break %s would wait forever: no request in flight can reach the breakpoint",
             tag);
    return -1;
}
