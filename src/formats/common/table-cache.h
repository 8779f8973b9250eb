/* SPDX-License-Identifier: MIT */
/*
 * A bounded cache of fixed-size metadata tables (qcow2 L2 tables and refcount
 * blocks, VDI block map pieces, QED L2 tables, VHDX BAT pieces ...), keyed by
 * the table's host offset in one node, least recently used out first.
 *
 * Two write policies, chosen per change by the caller:
 * - write-through: change the cached table, then qimg_table_cache_store the
 *   changed bytes at once, so the on-disk order of metadata updates is the
 *   order the code performs them in;
 * - write-back: qimg_table_cache_mark_dirty; dirty tables go to the node on
 *   qimg_table_cache_flush and when they are evicted (qcow2 lazy refcounts).
 *
 * Callers hold the owning node's lock. A pointer from qimg_table_cache_get
 * stays valid until the next get on the same cache.
 */
#ifndef QIMG_FORMATS_COMMON_TABLE_CACHE_H
#define QIMG_FORMATS_COMMON_TABLE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qimg/driver.h"

struct qimg_table_cache_entry {
    uint64_t offset; /* host offset of the table */
    bool used;       /* the slot holds a table */
    uint64_t last_use;
    bool dirty;
    uint8_t *buf;
};

struct qimg_table_cache {
    struct qimg_node *node; /* where the tables live */
    uint64_t table_size;
    /* Tables end at limit: a table crossing it is read and written only up to it. */
    uint64_t limit;
    enum qimg_debug_event load_event;      /* raised on a miss (QIMG_DBG_NONE: none) */
    enum qimg_debug_event writeback_event; /* raised per dirty write-back */
    struct qimg_table_cache_entry *e;
    size_t n, last_hit;
    uint64_t tick;
};

/* entries >= 1; table_size a multiple of the node's request alignment or not: the core aligns. */
void qimg_table_cache_init(struct qimg_table_cache *c, struct qimg_node *node, size_t entries,
                           uint64_t table_size);
/* Frees the buffers; dirty tables are NOT written (call flush first). */
void qimg_table_cache_destroy(struct qimg_table_cache *c);
/*
 * The table at offset: cached, or read from the node (bytes past the node's
 * end read as zeroes, as QEMU reads short files); fresh: a new table,
 * zero-filled without reading. Evicting a dirty table writes it back
 * first (an error then leaves the cache unchanged).
 */
int qimg_table_cache_get(struct qimg_table_cache *c, uint64_t offset, bool fresh, uint8_t **out);
/* Write bytes [start, start+len) of the cached table at offset to the node (write-through). */
int qimg_table_cache_store(struct qimg_table_cache *c, uint64_t offset, uint64_t start,
                           uint64_t len);
void qimg_table_cache_mark_dirty(struct qimg_table_cache *c, uint64_t offset);
/* Write every dirty table back; the first error is returned, the others still tried. */
int qimg_table_cache_flush(struct qimg_table_cache *c);
/* Forget the table at offset (after a failed write, or when it is freed); dirty ones stay. */
void qimg_table_cache_drop(struct qimg_table_cache *c, uint64_t offset);

#endif
