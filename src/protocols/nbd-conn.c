/* SPDX-License-Identifier: MIT */
/* NBD connections on libnbd's asynchronous API (see nbd-conn.h). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "protocols/nbd-conn.h"
#include "util/mem.h"

static void conn_wake(struct nbd_conn *c)
{
    uint64_t one = 1;
    ssize_t r = write(c->wake_fd, &one, sizeof(one));
    (void)r; /* the counter only saturates when the thread is already awake */
}

/* Poll the socket in the direction libnbd wants and tell it what happened. */
static void *conn_loop(void *opaque)
{
    struct nbd_conn *c = opaque;
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd p[2] = {{.fd = c->wake_fd, .events = POLLIN}, {.fd = -1}};
        unsigned dir = 0;
        int fd = nbd_aio_get_fd(c->h);
        if (fd >= 0 && !nbd_aio_is_dead(c->h) && !nbd_aio_is_closed(c->h)) {
            dir = nbd_aio_get_direction(c->h);
            p[1].fd = fd;
            p[1].events = (short)(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                                  ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
        }
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(c->wake_fd, &v, sizeof(v));
            (void)r;
        }
        short ev = p[1].revents;
        if ((ev & (POLLIN | POLLHUP | POLLERR)) && (dir & LIBNBD_AIO_DIRECTION_READ))
            nbd_aio_notify_read(c->h);
        else if ((ev & (POLLOUT | POLLHUP | POLLERR)) && (dir & LIBNBD_AIO_DIRECTION_WRITE))
            nbd_aio_notify_write(c->h);
    }
    return NULL;
}

int nbd_conn_start(struct nbd_conn *c, struct nbd_handle *h)
{
    c->h = h;
    c->stop = false;
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wake_fd < 0)
        return -errno;
    int ret = pthread_create(&c->thread, NULL, conn_loop, c);
    if (ret) {
        close(c->wake_fd);
        c->wake_fd = -1;
        return -ret;
    }
    c->running = true;
    return 0;
}

void nbd_conn_close(struct nbd_conn *c)
{
    if (c->running) {
        __atomic_store_n(&c->stop, true, __ATOMIC_RELEASE);
        conn_wake(c);
        pthread_join(c->thread, NULL);
        close(c->wake_fd);
        c->running = false;
    }
    if (c->h) {
        /* NBD_CMD_DISC after the replies in flight, so that the server ends cleanly. */
        if (!nbd_aio_is_dead(c->h) && !nbd_aio_is_closed(c->h))
            nbd_shutdown(c->h, 0);
        nbd_close(c->h);
        c->h = NULL;
    }
}

void nbd_batch_init(struct nbd_batch *b)
{
    memset(b, 0, sizeof(*b));
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
}

void nbd_batch_destroy(struct nbd_batch *b)
{
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    free(b->extents);
}

static void batch_error(struct nbd_batch *b, int error)
{
    pthread_mutex_lock(&b->lock);
    if (error && !b->error)
        b->error = error;
    pthread_mutex_unlock(&b->lock);
}

static int on_complete(void *opaque, int *error)
{
    batch_error(opaque, *error);
    return 1; /* retire the command: nobody asks libnbd about it later */
}

/* libnbd frees a callback exactly once, whether the command was issued or not. */
static void on_free(void *opaque)
{
    struct nbd_batch *b = opaque;
    pthread_mutex_lock(&b->lock);
    if (--b->pending == 0)
        pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

nbd_completion_callback nbd_batch_completion(struct nbd_batch *b)
{
    pthread_mutex_lock(&b->lock);
    b->pending++;
    pthread_mutex_unlock(&b->lock);
    return (nbd_completion_callback){.callback = on_complete, .user_data = b, .free = on_free};
}

static int on_extents(void *opaque, const char *context, uint64_t offset, uint32_t *entries,
                      size_t n, int *error)
{
    struct nbd_batch *b = opaque;
    (void)offset;
    (void)error;
    if (strcmp(context, b->context) || b->extents || n < 2)
        return 0;
    b->extents = xmalloc(n * sizeof(*entries));
    memcpy(b->extents, entries, n * sizeof(*entries));
    b->n_extents = n / 2;
    return 0;
}

nbd_extent_callback nbd_batch_extents(struct nbd_batch *b)
{
    return (nbd_extent_callback){.callback = on_extents, .user_data = b};
}

void nbd_batch_issued(struct nbd_batch *b, struct nbd_conn *c, int64_t cookie)
{
    if (cookie < 0) {
        int e = nbd_get_errno();
        batch_error(b, e ? e : EIO); /* never issued: only the free callback runs */
        return;
    }
    conn_wake(c);
}

int nbd_batch_wait(struct nbd_batch *b)
{
    pthread_mutex_lock(&b->lock);
    while (b->pending)
        pthread_cond_wait(&b->cond, &b->lock);
    int e = b->error;
    pthread_mutex_unlock(&b->lock);
    return e ? -e : 0;
}
