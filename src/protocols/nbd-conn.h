/* SPDX-License-Identifier: MIT */
/*
 * One NBD connection driven by libnbd's asynchronous API: a thread per
 * connection polls the socket, so that any number of caller threads can
 * have requests in flight on it at once (libnbd's synchronous calls would
 * serialise them on the handle's lock).
 */
#ifndef QIMG_PROTOCOLS_NBD_CONN_H
#define QIMG_PROTOCOLS_NBD_CONN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocols/lazy-nbd.h"

struct nbd_conn {
    struct nbd_handle *h;
    pthread_t thread;
    int wake_fd; /* eventfd: new requests to send, or stop */
    bool running, stop;
};

/* Requests in flight that the caller waits for together. */
struct nbd_batch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned pending;
    int error; /* first errno a request failed with */
    /* Block status: the extents of the first reply (length, flags pairs). */
    uint32_t *extents;
    size_t n_extents;
    const char *context; /* the meta context to collect */
};

/* Start polling h (connected) in a thread; -errno on failure. */
int nbd_conn_start(struct nbd_conn *c, struct nbd_handle *h);
/* Stop the thread, disconnect politely (NBD_CMD_DISC) and close the handle. */
void nbd_conn_close(struct nbd_conn *c);

void nbd_batch_init(struct nbd_batch *b);
void nbd_batch_destroy(struct nbd_batch *b);
/*
 * The completion callback of one more request of b: counts it pending, so
 * call it (as the nbd_aio_* argument) once per request issued.
 */
nbd_completion_callback nbd_batch_completion(struct nbd_batch *b);
/* Collects the extents of b's context (block status requests). */
nbd_extent_callback nbd_batch_extents(struct nbd_batch *b);
/*
 * Account for a request just issued with a completion from b (cookie from
 * nbd_aio_*): on submission failure record libnbd's errno; otherwise wake
 * the connection's thread to send it.
 */
void nbd_batch_issued(struct nbd_batch *b, struct nbd_conn *c, int64_t cookie);
/* Wait for every request of b: 0, or -errno of the first that failed. */
int nbd_batch_wait(struct nbd_batch *b);

#endif
