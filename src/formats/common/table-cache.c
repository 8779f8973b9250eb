/* SPDX-License-Identifier: MIT */
/* The metadata-table cache (see table-cache.h). */
#include "formats/common/table-cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/bytes.h"
#include "util/mem.h"

void qimg_table_cache_init(struct qimg_table_cache *c, struct qimg_node *node, size_t entries,
                           uint64_t table_size)
{
    *c = (struct qimg_table_cache){
        .node = node,
        .table_size = table_size,
        .limit = UINT64_MAX,
        .load_event = QIMG_DBG_NONE,
        .writeback_event = QIMG_DBG_NONE,
        .e = xcalloc(entries ? entries : 1, sizeof(*c->e)),
        .n = entries ? entries : 1,
    };
}

void qimg_table_cache_destroy(struct qimg_table_cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->e[i].buf);
    free(c->e);
    c->e = NULL;
    c->n = 0;
}

/* Bytes of the table at offset that lie before the limit. */
static uint64_t table_bytes(const struct qimg_table_cache *c, uint64_t offset)
{
    if (offset >= c->limit)
        return 0;
    return qimg_min_u64(c->table_size, c->limit - offset);
}

static void raise_event(struct qimg_table_cache *c, enum qimg_debug_event ev)
{
    if (ev != QIMG_DBG_NONE)
        qimg_debug_event(c->node, ev);
}

static int entry_writeback(struct qimg_table_cache *c, struct qimg_table_cache_entry *e)
{
    if (!e->used || !e->dirty)
        return 0;
    raise_event(c, c->writeback_event);
    int ret = qimg_node_pwrite(c->node, e->offset, table_bytes(c, e->offset), e->buf, 0);
    if (ret == 0)
        e->dirty = false;
    return ret;
}

static struct qimg_table_cache_entry *lookup(struct qimg_table_cache *c, uint64_t offset)
{
    if (c->e[c->last_hit].used && c->e[c->last_hit].offset == offset)
        return &c->e[c->last_hit];
    for (size_t i = 0; i < c->n; i++) {
        if (c->e[i].used && c->e[i].offset == offset) {
            c->last_hit = i;
            return &c->e[i];
        }
    }
    return NULL;
}

/* A free slot, else the least recently used one. */
static size_t victim_slot(const struct qimg_table_cache *c)
{
    size_t victim = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (!c->e[i].used)
            return i;
        if (c->e[i].last_use < c->e[victim].last_use)
            victim = i;
    }
    return victim;
}

static int fill(struct qimg_table_cache *c, struct qimg_table_cache_entry *e, uint64_t offset,
                bool fresh)
{
    uint64_t have = table_bytes(c, offset);
    memset(e->buf + have, 0, c->table_size - have);
    if (fresh) {
        memset(e->buf, 0, have);
        return 0;
    }
    raise_event(c, c->load_event);
    int64_t flen = qimg_node_length(c->node);
    if (flen < 0)
        return (int)flen;
    uint64_t in_file = offset >= (uint64_t)flen ? 0 : qimg_min_u64(have, (uint64_t)flen - offset);
    memset(e->buf + in_file, 0, have - in_file);
    return in_file ? qimg_node_pread(c->node, offset, in_file, e->buf, 0) : 0;
}

int qimg_table_cache_get(struct qimg_table_cache *c, uint64_t offset, bool fresh, uint8_t **out)
{
    struct qimg_table_cache_entry *e = lookup(c, offset);
    if (e) {
        e->last_use = ++c->tick;
        if (fresh)
            memset(e->buf, 0, c->table_size);
        *out = e->buf;
        return 0;
    }
    size_t slot = victim_slot(c);
    e = &c->e[slot];
    int ret = entry_writeback(c, e);
    if (ret < 0)
        return ret;
    if (!e->buf && !(e->buf = qimg_alloc_aligned(c->table_size)))
        return -ENOMEM;
    e->used = false;
    e->dirty = false;
    ret = fill(c, e, offset, fresh);
    if (ret < 0)
        return ret;
    e->used = true;
    e->offset = offset;
    e->last_use = ++c->tick;
    c->last_hit = slot;
    *out = e->buf;
    return 0;
}

int qimg_table_cache_store(struct qimg_table_cache *c, uint64_t offset, uint64_t start,
                           uint64_t len)
{
    struct qimg_table_cache_entry *e = lookup(c, offset);
    if (!e || !qimg_range_within(start, len, table_bytes(c, offset)))
        return -EINVAL;
    int ret = qimg_node_pwrite(c->node, offset + start, len, e->buf + start, 0);
    if (ret < 0 && !e->dirty)
        e->used = false; /* the cached table must say what the node says */
    return ret;
}

void qimg_table_cache_mark_dirty(struct qimg_table_cache *c, uint64_t offset)
{
    struct qimg_table_cache_entry *e = lookup(c, offset);
    if (e)
        e->dirty = true;
}

int qimg_table_cache_flush(struct qimg_table_cache *c)
{
    int first_err = 0;
    for (size_t i = 0; i < c->n; i++) {
        int ret = entry_writeback(c, &c->e[i]);
        if (ret < 0 && !first_err)
            first_err = ret;
    }
    return first_err;
}

void qimg_table_cache_drop(struct qimg_table_cache *c, uint64_t offset)
{
    struct qimg_table_cache_entry *e = lookup(c, offset);
    if (e && !e->dirty)
        e->used = false;
}
