/* SPDX-License-Identifier: MIT */
/* qimg_run_parallel: n copies of one worker, the caller being one of them. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "util/threadpool.h"

struct trampoline {
    void (*fn)(void *arg);
    void *arg;
};

static void *thread_main(void *p)
{
    struct trampoline *t = p;
    t->fn(t->arg);
    return NULL;
}

int qimg_run_parallel(unsigned n, void (*fn)(void *arg), void *arg)
{
    struct trampoline t = {fn, arg};
    pthread_t *tids = NULL;
    unsigned started = 0;
    int ret = 0;

    if (n > 1) {
        tids = calloc(n - 1, sizeof(*tids));
        if (!tids)
            ret = -ENOMEM;
        for (unsigned i = 0; tids && i < n - 1; i++) {
            int e = pthread_create(&tids[i], NULL, thread_main, &t);
            if (e) {
                /* Fewer workers is slower, not wrong: go on with those we have. */
                ret = -e;
                break;
            }
            started++;
        }
    }
    fn(arg);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    return started > 0 || n <= 1 ? 0 : ret;
}
