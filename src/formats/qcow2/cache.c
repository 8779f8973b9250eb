/* SPDX-License-Identifier: MIT */
/*
 * Bounded caches of cluster-sized metadata tables (L2 tables, refcount
 * blocks). Write-through: callers change a table in the cache and write the
 * changed bytes to the file at once, so the on-disk order of metadata updates
 * is the order the code performs them in (data, refcounts, L2, L1) and a
 * killed process leaves at worst leaked clusters.
 *
 * A power loss keeps an arbitrary subset of the writes since the last flush,
 * so where order matters for it a barrier (qcow2_barrier: flush the data and
 * image files) separates the writes: new clusters' data and refcounts before
 * the L2 or L1 entry that links them, an unlinking entry before the refcount
 * decrement that frees its cluster. The common case, an allocating write into
 * clusters nothing referenced before, does not pay a flush per request: its L2
 * entries only mark the cached table dirty (qcow2_l2_defer), and dirty tables
 * go to the file after one barrier (qcow2_l2_writeback) on flush, close and
 * eviction, and before snapshot, amend, resize, check, a backing file change or
 * make_empty (driver.c): the order QEMU's cache dependencies give.
 * A killed process loses the deferred entries: the clusters leak, as allowed.
 *
 * The one exception is lazy refcounts (qcow2.txt, compatible bit 0): the
 * refcount updates qcow2_refcount_defer names (all of them once a session has
 * set the dirty bit) only change the cached block and mark it dirty; it is
 * written back whole at the points listed at qcow2_refcount_writeback, among
 * them when it is the least recently used entry that has to make room (QEMU
 * raises refblock_update_part for each such write). Callers hold n->lock; a
 * pointer returned by qcow2_cache_get stays valid until the next get on the
 * same cache.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"
#include "util/mem.h"

void qcow2_cache_init(struct qcow2_cache *c, size_t entries, uint64_t table_size)
{
    c->e = xcalloc(entries, sizeof(*c->e));
    c->n = entries;
    c->last_hit = 0;
    c->tick = 0;
    c->table_size = table_size;
}

void qcow2_cache_destroy(struct qcow2_cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->e[i].buf);
    free(c->e);
    c->e = NULL;
    c->n = 0;
}

/* Write one dirty table back whole; it stays cached (and dirty on failure). */
static int entry_writeback(struct qimg_node *n, struct qcow2_cache *c,
                           struct qcow2_cache_entry *e)
{
    if (!e->offset || !e->dirty)
        return 0;
    struct qcow2_state *s = n->opaque;
    if (c == &s->rb_cache)
        qimg_debug_event(n->file, QIMG_DBG_REFBLOCK_UPDATE_PART);
    int ret = qimg_node_pwrite(n->file, e->offset, c->table_size, e->buf, 0);
    if (ret == 0)
        e->dirty = false;
    return ret;
}

int qcow2_barrier(struct qimg_node *n)
{
    int ret = n->data_file ? qimg_node_flush(n->data_file) : 0;
    return ret < 0 ? ret : qimg_node_flush(n->file);
}

static bool any_dirty(const struct qcow2_cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].offset && c->e[i].dirty)
            return true;
    return false;
}

int qcow2_l2_writeback(struct qimg_node *n, bool then_barrier)
{
    struct qcow2_state *s = n->opaque;
    struct qcow2_cache *c = &s->l2_cache;
    if (!c->e || !any_dirty(c))
        return 0;
    /* The clusters the deferred entries link: data and refcounts stable first. */
    int ret = qcow2_barrier(n);
    for (size_t i = 0; ret == 0 && i < c->n; i++)
        ret = entry_writeback(n, c, &c->e[i]);
    /* ... and the tables themselves before whatever the caller writes next. */
    return ret < 0 || !then_barrier ? ret : qcow2_barrier(n);
}

/*
 * A writethrough request whose L2 entries could not be written back fails;
 * like QEMU's, its mapping is then forgotten, not retried by a later request:
 * the cached tables go back to what the file says.
 */
void qcow2_l2_forget_dirty(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    struct qcow2_cache *c = &s->l2_cache;
    for (size_t i = 0; c->e && i < c->n; i++)
        if (c->e[i].offset && c->e[i].dirty) {
            c->e[i].dirty = false;
            c->e[i].offset = 0;
        }
}

int qcow2_refcount_writeback(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    struct qcow2_cache *c = &s->rb_cache;
    int first_err = 0;
    for (size_t i = 0; i < c->n; i++) {
        int ret = entry_writeback(n, c, &c->e[i]);
        if (ret < 0 && !first_err)
            first_err = ret;
    }
    return first_err;
}

int qcow2_refcount_settle(struct qimg_node *n)
{
    struct qcow2_state *s = n->opaque;
    if (!qcow2_uses_lazy_refcounts(s) && !s->lazy_dirty)
        return 0; /* nothing is ever deferred: skip the lock on every request */
    pthread_mutex_lock(&n->lock);
    int ret = qcow2_lazy_dirty(s) ? 0 : qcow2_refcount_writeback(n);
    pthread_mutex_unlock(&n->lock);
    return ret;
}

void qcow2_cache_mark_dirty(struct qcow2_cache *c, uint64_t offset)
{
    if (c->e[c->last_hit].offset == offset && offset) {
        c->e[c->last_hit].dirty = true;
        return;
    }
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].offset == offset && offset)
            c->e[i].dirty = true;
}

int qcow2_cache_get(struct qimg_node *n, struct qcow2_cache *c, uint64_t offset, bool fresh,
                    uint8_t **out)
{
    struct qcow2_cache_entry *hit = NULL;
    if (c->e[c->last_hit].offset == offset && offset) {
        hit = &c->e[c->last_hit];
    } else {
        for (size_t i = 0; i < c->n; i++) {
            if (c->e[i].offset == offset) {
                hit = &c->e[i];
                c->last_hit = i;
                break;
            }
        }
    }
    if (hit) {
        hit->last_use = ++c->tick;
        if (fresh)
            memset(hit->buf, 0, c->table_size);
        *out = hit->buf;
        return 0;
    }
    size_t victim = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (!c->e[i].offset) {
            victim = i;
            break;
        }
        if (c->e[i].last_use < c->e[victim].last_use)
            victim = i;
    }
    struct qcow2_cache_entry *e = &c->e[victim];
    /* A dirty victim (deferred refcounts or L2 entries) goes to the file before its slot
     * is reused; a deferred L2 table only after the clusters it links are stable. */
    int ret = 0;
    if (e->offset && e->dirty && c == &((struct qcow2_state *)n->opaque)->l2_cache)
        ret = qcow2_barrier(n);
    if (ret == 0)
        ret = entry_writeback(n, c, e);
    if (ret < 0)
        return ret;
    e->dirty = false;
    if (!e->buf) {
        e->buf = qimg_alloc_aligned(c->table_size);
        if (!e->buf)
            return -ENOMEM;
    }
    e->offset = 0;
    if (fresh) {
        memset(e->buf, 0, c->table_size);
    } else {
        /* QEMU raises l2_load on an L2 cache miss only (refblock_load is the caller's). */
        if (c == &((struct qcow2_state *)n->opaque)->l2_cache)
            qimg_debug_event(n->file, QIMG_DBG_L2_LOAD);
        ret = qimg_node_pread(n->file, offset, c->table_size, e->buf, 0);
        if (ret < 0)
            return ret;
    }
    e->offset = offset;
    e->last_use = ++c->tick;
    c->last_hit = victim;
    *out = e->buf;
    return 0;
}

/* Dirty entries stay: what they hold is newer than the file and still owed to it. */
void qcow2_cache_drop(struct qcow2_cache *c, uint64_t offset)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].offset == offset && !c->e[i].dirty)
            c->e[i].offset = 0;
}

int qcow2_meta_write(struct qimg_node *n, uint64_t offset, const void *buf, size_t len)
{
    return qimg_node_pwrite(n->file, offset, len, buf, 0);
}
