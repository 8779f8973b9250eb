/* SPDX-License-Identifier: MIT */
/*
 * glibc malloc tuning for qimg and qimg-io: the programs' policy, which the
 * library never sets itself (an embedding program keeps its own).
 */
#include <malloc.h>
#include "cli/heap-policy.h"
#include "util/mem.h"

/*
 * librbd's messenger threads receive every data message into a buffer of its
 * own, as large as the request (MiBs). Under a fixed mmap threshold of a MiB
 * each such buffer is a fresh mapping, faulted in page by page and unmapped
 * again: converting 1 GiB out of rbd took 9 s instead of 1.3 s. Once such a
 * driver opens, buffers up to 64 MiB come from the heap, where they are
 * reused, and the heap's top is not given back for every freed buffer.
 */
#define LARGE_BUFFER_MMAP_THRESHOLD (64 << 20)

static void heap_for_large_buffers(void)
{
    mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, 2 * LARGE_BUFFER_MMAP_THRESHOLD);
}

void heap_policy_init(bool small_mmap_threshold)
{
    /*
     * One malloc arena: the copy workers' large, short-lived buffers otherwise
     * spread over per-thread arenas that keep them resident (measured: raw->qcow2
     * 0.47 s / 126 MB peak -> 0.26 s / 44 MB; doc/benchmarks.md).
     */
    mallopt(M_ARENA_MAX, 1);
    /*
     * Buffers of a MiB and more come from mmap and go back on free. Left to
     * glibc's sliding threshold they end up in the heap, where each aligned
     * 2 MiB copy-on-write buffer of a qcow2 with 2M clusters lands above the
     * last and the heap only grows (bench/run "convert qcow2 2M": peak RSS
     * 50 MB -> 19 MB, same time; the copy engine keeps its buffers per worker).
     */
    if (small_mmap_threshold)
        mallopt(M_MMAP_THRESHOLD, 1 << 20);
    qimg_mem_set_large_buffer_hook(heap_for_large_buffers);
}
