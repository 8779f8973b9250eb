/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the mapped-image layer and the table cache, through a toy
 * format: 16 blocks of 4 KiB, a table in memory (0: unallocated, 1: zero
 * flag, else the host offset), new blocks appended to a temporary file.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/common/mapped.h"
#include "formats/common/table-cache.h"
#include "harness.h"
#include "qimg/qimg.h"

#define BS 4096u
#define NBLOCKS 16u
#define TOY_UNALLOC 0
#define TOY_ZERO 1

struct toy {
    struct qimg_mapped mapped; /* first, as the layer requires */
    uint64_t table[NBLOCKS];
    uint64_t file_end;
    int allocs, commits, zero_calls, discard_calls;
    uint64_t written_start, written_end;
    uint64_t forbidden_host; /* check_host_write refuses writes touching it (0: none) */
    uint64_t zero_off, zero_len;
    /* Blocks from SPLIT on live in other (per-run data node), appended at other_end. */
    struct qimg_node *other;
    uint64_t other_end;
    int backing_veto; /* backing_read_ok's answer */
};

#define SPLIT 8u

static int toy_map(struct qimg_node *n, uint64_t off, uint64_t len, struct qimg_map *m)
{
    struct toy *t = n->opaque;
    uint64_t e = t->table[off / BS], in = off % BS;
    m->kind = e == TOY_UNALLOC ? QIMG_MAP_UNALLOCATED : e == TOY_ZERO ? QIMG_MAP_ZERO : QIMG_MAP_DATA;
    m->host_valid = m->in_place = m->kind == QIMG_MAP_DATA;
    m->host = m->host_valid ? e + in : 0;
    m->bytes = BS - in < len ? BS - in : len; /* one block per run: simple and legal */
    m->file = t->other && off / BS >= SPLIT ? t->other : NULL;
    return 0;
}

static int toy_alloc(struct qimg_node *n, struct qimg_alloc *a)
{
    struct toy *t = n->opaque;
    if (t->other && a->guest / BS >= SPLIT) {
        a->file = t->other;
        a->host = t->other_end;
        t->other_end += a->bytes;
    } else {
        a->host = t->file_end;
        t->file_end += a->bytes;
    }
    t->allocs++;
    return 0;
}

static int toy_commit(struct qimg_node *n, struct qimg_alloc *a)
{
    struct toy *t = n->opaque;
    for (uint64_t i = 0; i < a->bytes / BS; i++)
        t->table[a->guest / BS + i] = a->host + i * BS;
    t->commits++;
    t->written_start = a->written_start;
    t->written_end = a->written_end;
    return 0;
}

static int toy_zero(struct qimg_node *n, uint64_t off, uint64_t len, unsigned flags)
{
    (void)flags;
    struct toy *t = n->opaque;
    t->zero_calls++;
    t->zero_off = off;
    t->zero_len = len;
    for (uint64_t b = off / BS; b < (off + len) / BS; b++)
        t->table[b] = TOY_ZERO;
    return 0;
}

static int toy_discard(struct qimg_node *n, uint64_t off, uint64_t len)
{
    struct toy *t = n->opaque;
    t->discard_calls++;
    for (uint64_t b = off / BS; b < (off + len) / BS; b++)
        t->table[b] = TOY_UNALLOC;
    return 0;
}

static int toy_check_host_write(struct qimg_node *n, uint64_t host, uint64_t len)
{
    struct toy *t = n->opaque;
    if (t->forbidden_host && host <= t->forbidden_host && t->forbidden_host < host + len)
        return -EIO;
    return 0;
}

static int toy_backing_read_ok(struct qimg_node *n)
{
    return ((struct toy *)n->opaque)->backing_veto;
}

static const struct qimg_mapped_ops toy_ops = {
    .map = toy_map, .alloc = toy_alloc, .commit = toy_commit,
    .zero_blocks = toy_zero, .discard_blocks = toy_discard,
    .check_host_write = toy_check_host_write, .backing_read_ok = toy_backing_read_ok,
};

static int64_t toy_length(struct qimg_node *n)
{
    (void)n;
    return NBLOCKS * BS;
}

static void toy_close(struct qimg_node *n)
{
    free(n->opaque);
}

static const struct qimg_driver toy_driver = {
    .name = "toy",
    .close = toy_close,
    .get_length = toy_length,
    .pread = qimg_mapped_pread,
    .pwrite = qimg_mapped_pwrite,
    .pwrite_zeroes = qimg_mapped_pwrite_zeroes,
    .pdiscard = qimg_mapped_pdiscard,
    .block_status = qimg_mapped_block_status,
};

static char dir[] = "/tmp/qimg-test-mapped-XXXXXX";

static const char *path_of(const char *name)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return path;
}

static struct qimg_node *open_file(const char *name, uint64_t size)
{
    const char *path = path_of(name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    fclose(f);
    if (truncate(path, (off_t)size) < 0)
        return NULL;
    struct qimg_node *file = NULL;
    struct qimg_error err = {0};
    if (qimg_open_protocol(&file, path, NULL, QIMG_O_RDWR | QIMG_O_UNMAP, &err) < 0)
        return NULL;
    return file;
}

static struct qimg_node *toy_open(void)
{
    struct qimg_node *n = qimg_node_alloc(&toy_driver, "toy", QIMG_O_RDWR | QIMG_O_UNMAP);
    struct toy *t = calloc(1, sizeof(*t));
    t->mapped = (struct qimg_mapped){.ops = &toy_ops, .block_size = BS, .max_alloc = 2 * BS};
    t->file_end = BS; /* a "header" block first */
    n->opaque = t;
    n->file = open_file("toy.img", 0);
    return n;
}

static bool all(const uint8_t *p, int v, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)v)
            return false;
    return true;
}

static void test_read_holes_and_partial_write(void)
{
    struct qimg_node *n = toy_open();
    struct toy *t = n->opaque;
    CHECK(n->file != NULL);
    uint8_t buf[3 * BS], pat[100];
    memset(buf, 0xee, sizeof(buf));
    CHECK(qimg_node_pread(n, 0, sizeof(buf), buf, 0) == 0 && all(buf, 0, sizeof(buf)));
    memset(pat, 7, sizeof(pat));
    CHECK(qimg_node_pwrite(n, BS + 10, sizeof(pat), pat, 0) == 0);
    CHECK(t->allocs == 1 && t->commits == 1 && t->table[1] == BS);
    CHECK(t->written_start == BS && t->written_end == 2 * BS);
    CHECK(qimg_node_pread(n, 0, sizeof(buf), buf, 0) == 0);
    CHECK(all(buf, 0, BS + 10) && all(buf + BS + 10, 7, 100) && all(buf + BS + 110, 0, 2 * BS - 110));
    /* the whole block reached the file, COW head and tail as zeroes */
    CHECK(qimg_node_length(n->file) == 2 * BS);
    /* an overwrite in place allocates nothing */
    CHECK(qimg_node_pwrite(n, BS, 10, pat, 0) == 0 && t->allocs == 1);
    /* the format may veto data writes (qcow2: metadata overlap), in place or allocating */
    t->forbidden_host = BS + 5;
    CHECK(qimg_node_pwrite(n, BS, 10, pat, 0) == -EIO);
    t->forbidden_host = 2 * BS + 1;
    CHECK(qimg_node_pwrite(n, 0, 10, pat, 0) == -EIO && t->commits == 1);
    qimg_node_unref(n);
}

static void test_multi_block_write_and_cap(void)
{
    struct qimg_node *n = toy_open();
    struct toy *t = n->opaque;
    uint8_t *buf = malloc(5 * BS), *back = malloc(5 * BS);
    for (size_t i = 0; i < 5 * BS; i++)
        buf[i] = (uint8_t)(i * 13);
    CHECK(qimg_node_pwrite(n, 2 * BS + 1, 4 * BS, buf, 0) == 0);
    /* five blocks touched, max_alloc two blocks: three allocations, contiguous host */
    CHECK(t->allocs == 3);
    for (int b = 2; b < 7; b++)
        CHECK(t->table[b] == BS + (uint64_t)(b - 2) * BS);
    CHECK(qimg_node_pread(n, 2 * BS + 1, 4 * BS, back, 0) == 0 && memcmp(buf, back, 4 * BS) == 0);
    CHECK(qimg_node_pread(n, 2 * BS, 1, back, 0) == 0 && back[0] == 0);
    free(buf);
    free(back);
    qimg_node_unref(n);
}

static void test_backing_cow(void)
{
    struct qimg_node *n = toy_open();
    struct qimg_node *b = open_file("backing.raw", NBLOCKS * BS);
    uint8_t pat[BS];
    memset(pat, 0x42, sizeof(pat));
    CHECK(b && qimg_node_pwrite(b, 0, BS, pat, 0) == 0);
    n->backing = b;
    uint8_t buf[BS];
    CHECK(qimg_node_pread(n, 0, BS, buf, 0) == 0 && all(buf, 0x42, BS));
    uint8_t one = 9;
    CHECK(qimg_node_pwrite(n, 100, 1, &one, 0) == 0);
    CHECK(qimg_node_pread(n, 0, BS, buf, 0) == 0);
    CHECK(all(buf, 0x42, 100) && buf[100] == 9 && all(buf + 101, 0x42, BS - 101));
    struct qimg_block_status st;
    CHECK(qimg_node_block_status(n, BS, BS, &st) == 0 && st.flags == 0); /* unallocated */
    CHECK(qimg_node_block_status(n, 0, BS, &st) == 0);
    CHECK((st.flags & QIMG_BLK_DATA) && (st.flags & QIMG_BLK_OFFSET_VALID) && st.offset == BS);
    qimg_node_unref(n);
}

/* Runs and allocations may name their own data node (vmdk extent files). */
static void test_per_run_file(void)
{
    struct qimg_node *n = toy_open();
    struct toy *t = n->opaque;
    t->other = open_file("other.img", 0);
    t->other_end = BS; /* host 0 would read as "unallocated" in the toy's table */
    uint8_t pat[BS], buf[BS];
    memset(pat, 0x5c, sizeof(pat));
    CHECK(qimg_node_pwrite(n, SPLIT * BS, BS, pat, 0) == 0);
    CHECK(t->table[SPLIT] == BS && t->other_end == 2 * BS);
    CHECK(qimg_node_length(t->other) == 2 * BS && qimg_node_length(n->file) == 0);
    CHECK(qimg_node_pread(t->other, BS, BS, buf, 0) == 0 && all(buf, 0x5c, BS));
    CHECK(qimg_node_pread(n, SPLIT * BS, BS, buf, 0) == 0 && all(buf, 0x5c, BS));
    memset(pat, 0x5d, 100);
    CHECK(qimg_node_pwrite(n, SPLIT * BS, 100, pat, 0) == 0); /* in place, in other */
    CHECK(qimg_node_pread(t->other, BS, BS, buf, 0) == 0 && all(buf, 0x5d, 100));
    struct qimg_block_status st;
    CHECK(qimg_node_block_status(n, SPLIT * BS, BS, &st) == 0);
    CHECK(st.file == t->other && st.offset == BS && (st.flags & QIMG_BLK_OFFSET_VALID));
    qimg_node_unref(t->other);
    qimg_node_unref(n);
}

/* backing_read_ok vetoes reads of unallocated runs from the backing file, COW included. */
static void test_backing_veto(void)
{
    struct qimg_node *n = toy_open();
    struct toy *t = n->opaque;
    n->backing = open_file("backing2.raw", NBLOCKS * BS);
    uint8_t buf[BS];
    memset(buf, 1, sizeof(buf));
    CHECK(qimg_node_pwrite(n, 0, BS, buf, 0) == 0);
    t->backing_veto = -EINVAL;
    CHECK(qimg_node_pread(n, BS, BS, buf, 0) == -EINVAL);
    CHECK(qimg_node_pread(n, 0, BS, buf, 0) == 0 && all(buf, 1, BS));
    CHECK(qimg_node_pwrite(n, 2 * BS + 10, 10, buf, 0) == -EINVAL); /* COW head */
    struct qimg_block_status st;
    CHECK(qimg_node_block_status(n, BS, BS, &st) == 0 && st.flags == 0);
    t->backing_veto = 0;
    CHECK(qimg_node_pread(n, BS, BS, buf, 0) == 0 && all(buf, 0, BS));
    qimg_node_unref(n);
}

static void test_zero_and_discard(void)
{
    struct qimg_node *n = toy_open();
    struct toy *t = n->opaque;
    uint8_t *buf = malloc(4 * BS);
    memset(buf, 5, 4 * BS);
    CHECK(qimg_node_pwrite(n, 0, 4 * BS, buf, 0) == 0);
    /* [100, 3*BS+100): partial head and tail as data, blocks 1..2 by the format */
    CHECK(qimg_node_pwrite_zeroes(n, 100, 3 * BS, 0) == 0);
    CHECK(t->zero_calls == 1 && t->zero_off == BS && t->zero_len == 2 * BS);
    CHECK(qimg_node_pread(n, 0, 4 * BS, buf, 0) == 0);
    CHECK(all(buf, 5, 100) && all(buf + 100, 0, 3 * BS) && all(buf + 3 * BS + 100, 5, BS - 100));
    struct qimg_block_status st;
    CHECK(qimg_node_block_status(n, BS, BS, &st) == 0 && st.flags == QIMG_BLK_ZERO);
    /* discard: only whole blocks reach the format */
    CHECK(qimg_node_pdiscard(n, 10, 2 * BS) == 0);
    CHECK(t->discard_calls == 1 && t->table[0] != TOY_UNALLOC && t->table[1] == TOY_UNALLOC);
    CHECK(qimg_node_pdiscard(n, 3 * BS + 1, 10) == 0 && t->discard_calls == 1);
    free(buf);
    qimg_node_unref(n);
}

static void test_table_cache(void)
{
    struct qimg_node *f = open_file("tables", 3 * 512 + 100);
    uint8_t blob[512];
    memset(blob, 0x11, sizeof(blob));
    CHECK(qimg_node_pwrite(f, 512, 512, blob, 0) == 0);
    struct qimg_table_cache c;
    qimg_table_cache_init(&c, f, 2, 512);
    c.limit = 3 * 512 + 50; /* the last table ends early */
    uint8_t *t;
    CHECK(qimg_table_cache_get(&c, 512, false, &t) == 0 && all(t, 0x11, 512));
    CHECK(qimg_table_cache_get(&c, 0, false, &t) == 0 && all(t, 0, 512)); /* offset 0 is fine */
    /* write-back: dirty, then evicted by a third table */
    CHECK(qimg_table_cache_get(&c, 512, false, &t) == 0);
    t[0] = 0x99;
    qimg_table_cache_mark_dirty(&c, 512);
    CHECK(qimg_table_cache_get(&c, 1024, false, &t) == 0); /* evicts table 0 (LRU) */
    CHECK(qimg_table_cache_get(&c, 1536, false, &t) == 0); /* evicts 512: written back */
    uint8_t byte = 0;
    CHECK(qimg_node_pread(f, 512, 1, &byte, 0) == 0 && byte == 0x99);
    /* a table crossing the limit: only 50 bytes are its own; past the file: zeroes */
    CHECK(all(t, 0, 512));
    t[10] = 0x77;
    CHECK(qimg_table_cache_store(&c, 1536, 0, 50) == 0);
    CHECK(qimg_table_cache_store(&c, 1536, 0, 51) == -EINVAL);
    struct stat sb;
    CHECK(stat(path_of("tables"), &sb) == 0 && sb.st_size == 3 * 512 + 100); /* not grown */
    CHECK(qimg_node_pread(f, 1536 + 10, 1, &byte, 0) == 0 && byte == 0x77);
    CHECK(qimg_table_cache_flush(&c) == 0);
    qimg_table_cache_destroy(&c);
    qimg_node_unref(f);
}

int main(void)
{
    qimg_init();
    if (!mkdtemp(dir))
        return 1;
    static const struct harness_test tests[] = {
        {"read holes, partial write", test_read_holes_and_partial_write},
        {"multi-block write, alloc cap", test_multi_block_write_and_cap},
        {"backing copy-on-write", test_backing_cow},
        {"zero writes and discard", test_zero_and_discard},
        {"per-run data node", test_per_run_file},
        {"backing read veto", test_backing_veto},
        {"table cache", test_table_cache},
        {NULL, NULL},
    };
    int ret = harness_run(tests);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        ret = 1;
    return ret;
}
