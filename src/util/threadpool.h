/* SPDX-License-Identifier: MIT */
/*
 * Running one function on several threads at once: the engines' workers.
 * Each worker pulls its own work from shared state, so no queue is needed here.
 */
#ifndef QIMG_UTIL_THREADPOOL_H
#define QIMG_UTIL_THREADPOOL_H

/*
 * Call fn(arg) on n threads (the calling thread is one of them) and return
 * once all have returned. n == 0 counts as 1. Returns 0, or -errno when no
 * extra thread could be started (fn then still ran on the calling thread;
 * threads that did start are joined).
 */
int qimg_run_parallel(unsigned n, void (*fn)(void *arg), void *arg);

#endif
