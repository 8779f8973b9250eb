/* SPDX-License-Identifier: MIT */
/*
 * qcow2 create and measure. A new image is laid out as qemu-img lays it out
 * (header cluster, refcount table, refcount block, L1 table), by writing the
 * size-0 image and then growing it through the driver itself, so the result
 * is byte-identical to qemu-img's. Preallocation: metadata maps every
 * cluster; falloc/full first place a refcount area (blocks + new table) at
 * the end of the file, then the data clusters, then the L2 tables.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/builtin.h"
#include "formats/qcow2/qcow2.h"
#include "util/mem.h"

/* Order = the order of qemu-img's "Formatting ..." line; defaults printed as it prints them. */
const struct qimg_opt_desc qcow2_create_opts[] = {
    {"encryption", QIMG_OPT_BOOL,
     "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)", NULL},
    {"encrypt.format", QIMG_OPT_STRING, "Encrypt the image, format choices: 'aes', 'luks'", NULL},
    {"encrypt.key-secret", QIMG_OPT_STRING, "ID of secret providing qcow AES key or LUKS passphrase",
     NULL},
    {"encrypt.cipher-alg", QIMG_OPT_STRING, "Name of encryption cipher algorithm", NULL},
    {"encrypt.cipher-mode", QIMG_OPT_STRING, "Name of encryption cipher mode", NULL},
    {"encrypt.ivgen-alg", QIMG_OPT_STRING, "Name of IV generator algorithm", NULL},
    {"encrypt.ivgen-hash-alg", QIMG_OPT_STRING, "Name of IV generator hash algorithm", NULL},
    {"encrypt.hash-alg", QIMG_OPT_STRING, "Name of encryption hash algorithm", NULL},
    {"encrypt.iter-time", QIMG_OPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL},
    {"cluster_size", QIMG_OPT_SIZE, "qcow2 cluster size", "65536"},
    {"extended_l2", QIMG_OPT_BOOL, "Extended L2 tables", "off"},
    {"preallocation", QIMG_OPT_STRING,
     "Preallocation mode (allowed values: off, metadata, falloc, full)", NULL},
    {"compression_type", QIMG_OPT_STRING, "Compression method used for image cluster compression",
     "zlib"},
    {"size", QIMG_OPT_SIZE, "Virtual disk size", NULL},
    {"compat", QIMG_OPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])", NULL},
    {"backing_file", QIMG_OPT_STRING, "File name of a base image", NULL},
    {"backing_fmt", QIMG_OPT_STRING, "Image format of the base image", NULL},
    {"data_file", QIMG_OPT_STRING, "File name of an external data file", NULL},
    {"data_file_raw", QIMG_OPT_BOOL, "The external data file must stay valid as a raw image", NULL},
    {"lazy_refcounts", QIMG_OPT_BOOL, "Postpone refcount updates", "off"},
    {"refcount_bits", QIMG_OPT_NUMBER, "Width of a reference count entry in bits", "16"},
    {0},
};

struct create_params {
    uint64_t size, cluster_size, refcount_bits;
    unsigned version;
    bool extended_l2, lazy_refcounts;
    int compression;
    enum qimg_prealloc prealloc;
    const char *backing_file, *backing_fmt;
    const char *data_file; /* external data file (qcow2.txt), or NULL */
    bool data_raw;
    struct qcow2_crypt_create crypt; /* crypt.c: encryption=on / encrypt.* */
};

static int parse_bool(struct qimg_opts *o, const char *key, bool *out, struct qimg_error *err)
{
    *out = false;
    int ret = qimg_opts_take_bool(o, key, out, err);
    return ret < 0 ? ret : 0;
}

static unsigned log2u(uint64_t v)
{
    unsigned r = 0;
    while (v > 1) {
        v >>= 1;
        r++;
    }
    return r;
}

/* Options common to create and measure, checked in qemu-img's order. */
static int parse_params(struct qimg_opts *o, struct create_params *p, bool for_measure,
                        struct qimg_error *err)
{
    memset(p, 0, sizeof(*p));
    p->version = 3;
    p->cluster_size = 65536;
    p->refcount_bits = 16;
    int ret;
    const char *compat = qimg_opts_take(o, "compat");
    if (compat) {
        p->version = qcow2_parse_compat(compat);
        if (!p->version)
            return qimg_error_set(err, -EINVAL, "Parameter 'version' does not accept value '%s'",
                                  compat);
    }
    const char *pa = qimg_opts_take(o, "preallocation");
    if (pa && qimg_prealloc_parse(pa, &p->prealloc) < 0)
        return qimg_error_set(err, -EINVAL,
                              "Parameter 'preallocation' does not accept value '%s'", pa);
    const char *ct = qimg_opts_take(o, "compression_type");
    if (ct) {
        if (!strcmp(ct, "zlib"))
            p->compression = QCOW2_COMPRESSION_ZLIB;
        else if (!strcmp(ct, "zstd"))
            p->compression = QCOW2_COMPRESSION_ZSTD;
        else
            return qimg_error_set(err, -EINVAL,
                                  "Parameter 'compression-type' does not accept value '%s'", ct);
    }
    if ((ret = qimg_opts_take_size(o, "size", &p->size, err)) < 0 ||
        (ret = qimg_opts_take_size(o, "cluster_size", &p->cluster_size, err)) < 0 ||
        (ret = qimg_opts_take_uint(o, "refcount_bits", &p->refcount_bits, err)) < 0 ||
        (ret = parse_bool(o, "extended_l2", &p->extended_l2, err)) < 0 ||
        (ret = parse_bool(o, "lazy_refcounts", &p->lazy_refcounts, err)) < 0)
        return ret;
    uint64_t cs = p->cluster_size;
    if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
        return qimg_error_set(err, -EINVAL,
                              "Cluster size must be a power of two between 512 and 2048k");
    /* qemu checks this right after the cluster size (the image file is deleted again) */
    if (!for_measure && qimg_opts_has(o, "backing_fmt") && !qimg_opts_has(o, "backing_file"))
        return qimg_error_set(err, -EINVAL, "Backing format cannot be used without backing file");
    if (p->extended_l2 && p->version < 3)
        return qimg_error_set(err, -EINVAL, "Extended L2 entries are only supported with "
                                            "compatibility level 1.1 and above (use version=v3 or "
                                            "greater)");
    if (p->extended_l2 && cs < 16384)
        return qimg_error_set(err, -EINVAL, "Extended L2 entries are only supported with cluster "
                                            "sizes of at least 16384 bytes");
    if (p->lazy_refcounts && p->version < 3)
        return qimg_error_set(err, -EINVAL, "Lazy refcounts only supported with compatibility "
                                            "level 1.1 and above (use version=v3 or greater)");
    uint64_t rb = p->refcount_bits;
    if (rb == 0 || rb > 64 || (rb & (rb - 1)))
        return qimg_error_set(err, -EINVAL,
                              "Refcount width must be a power of two and may not exceed 64 bits");
    if (rb != 16 && p->version < 3)
        return qimg_error_set(err, -EINVAL, "Different refcount widths than 16 bits require "
                                            "compatibility level 1.1 or above (use version=v3 or "
                                            "greater)");
    if (p->compression != QCOW2_COMPRESSION_ZLIB && p->version < 3)
        return qimg_error_set(err, -EINVAL, "Non-zlib compression type is only supported with "
                                            "compatibility level 1.1 and above (use version=v3 or "
                                            "greater)");
    p->size = qcow2_align_up(p->size, 512);
    if (for_measure)
        return 0;
    p->backing_file = qimg_opts_take(o, "backing_file");
    p->backing_fmt = qimg_opts_take(o, "backing_fmt");
    const char *data_file = qimg_opts_take(o, "data_file");
    bool data_raw = false;
    if ((ret = parse_bool(o, "data_file_raw", &data_raw, err)) < 0)
        return ret;
    if (data_raw && !data_file)
        return qimg_error_set(err, -EINVAL, "data-file-raw requires data-file");
    if (data_raw && p->backing_file)
        return qimg_error_set(err, -EINVAL,
                              "Backing file and data-file-raw cannot be used at the same time");
    if (data_file && p->version < 3)
        return qimg_error_set(err, -EINVAL, "External data files are only supported with "
                                            "compatibility level 1.1 and above (use version=v3 "
                                            "or greater)");
    p->data_file = data_file;
    p->data_raw = data_raw;
    if ((ret = qcow2_crypt_parse_create(o, false, &p->crypt, err)) < 0)
        return ret;
    if (p->backing_file && p->prealloc != QIMG_PREALLOC_OFF && !p->extended_l2)
        return qimg_error_set(err, -EINVAL,
                              "Backing file and preallocation can only be used at the same time "
                              "if extended_l2 is on");
    return 0;
}

/* Write the size-0 image: header, refcount table (cluster 1), refcount block (cluster 2). */
static int write_empty(struct qimg_node *file, const struct create_params *p,
                       struct qimg_error *err)
{
    struct qcow2_state s = {0};
    uint64_t cs = p->cluster_size;
    s.version = p->version;
    s.cluster_bits = log2u(cs);
    s.cluster_size = cs;
    s.rt_offset = cs;
    s.rt_clusters = 1;
    s.refcount_order = log2u(p->refcount_bits);
    s.refcount_bits = (unsigned)p->refcount_bits;
    s.header_length = p->version >= 3 ? QCOW2_CREATE_HEADER_LEN : QCOW2_V2_HEADER_LEN;
    s.compression_type = (uint8_t)p->compression;
    if (p->compression)
        s.incompat |= QCOW2_INCOMPAT_COMPRESSION;
    if (p->extended_l2)
        s.incompat |= QCOW2_INCOMPAT_EXTL2;
    if (p->lazy_refcounts)
        s.compat |= QCOW2_COMPAT_LAZY_REFCOUNTS;
    if (p->backing_fmt)
        s.backing_format = (char *)p->backing_fmt;
    if (p->data_file) {
        s.incompat |= QCOW2_INCOMPAT_DATA_FILE;
        s.data_file_name = (char *)p->data_file;
        if (p->data_raw)
            s.autoclear |= QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    }
    uint8_t *buf = qimg_alloc_aligned(3 * cs);
    if (!buf)
        return qimg_error_set(err, -ENOMEM, "Could not allocate the header");
    memset(buf, 0, 3 * cs);
    int ret = qcow2_header_build(&s, p->backing_file, buf, cs);
    if (ret < 0) {
        free(buf);
        return qimg_error_set(err, ret, "Header too large for the cluster size");
    }
    qcow2_put64(buf + cs, 2 * cs);
    for (uint64_t i = 0; i < 3; i++)
        refcount_set_entry(&s, buf + 2 * cs, i, 1);
    ret = qimg_node_pwrite(file, 0, 3 * cs, buf, 0);
    free(buf);
    if (ret < 0)
        return qimg_error_errno(err, ret, "Could not write qcow2 header");
    return 0;
}

static uint64_t l2_entries_for(uint64_t cs, bool ext)
{
    return cs / (ext ? 16 : 8);
}

static int create_image(const char *filename, struct qimg_opts *opts, struct create_params *pp,
                        struct qimg_error *err);

int qcow2_create(const char *filename, struct qimg_opts *opts, struct qimg_error *err)
{
    struct create_params p;
    int ret = parse_params(opts, &p, false, err);
    if (ret == 0)
        ret = create_image(filename, opts, &p, err);
    qcow2_crypt_create_clear(&p.crypt);
    return ret;
}

static int create_image(const char *filename, struct qimg_opts *opts, struct create_params *pp,
                        struct qimg_error *err)
{
    const struct create_params p = *pp;
    int ret;
    struct qimg_opts *po;
    enum qimg_prealloc mode = p.prealloc;
    if (p.data_file) {
        /*
         * The data file first, at the full size, with the data preallocation;
         * the qcow2 file then maps every cluster when the data must stay a
         * raw image or is preallocated. Mapping a size that ends inside a
         * cluster writes zeroes from the end to the cluster's end, and then
         * the data file gets nothing else: no preallocation, not even its
         * first block (observed with qemu-img 7.2).
         */
        bool mapped = p.data_raw || p.prealloc != QIMG_PREALLOC_OFF;
        bool partial = mapped && p.size % p.cluster_size;
        char sz[32];
        snprintf(sz, sizeof(sz), "%" PRIu64, partial ? 0 : p.size);
        po = qimg_opts_new();
        qimg_opts_set(po, "size", sz);
        if (!partial && (p.prealloc == QIMG_PREALLOC_FALLOC || p.prealloc == QIMG_PREALLOC_FULL))
            qimg_opts_set(po, "preallocation", qimg_prealloc_name(p.prealloc));
        ret = qimg_create_protocol(p.data_file, po, err);
        qimg_opts_free(po);
        if (ret < 0)
            return ret;
        if (mapped)
            mode = QIMG_PREALLOC_METADATA;
    }
    po = qimg_opts_new();
    qimg_opts_set(po, "size", "0");
    const char *keep[] = {"nocow", "extent_size_hint"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = qimg_opts_take(opts, keep[i]);
        if (v)
            qimg_opts_set(po, keep[i], v);
    }
    ret = qimg_create_protocol(filename, po, err);
    qimg_opts_free(po);
    if (ret < 0)
        return ret;
    struct qimg_node *file = NULL;
    ret = qimg_open_protocol(&file, filename, NULL, QIMG_O_RDWR, err);
    if (ret < 0)
        return ret;
    ret = write_empty(file, &p, err);
    if (ret < 0) {
        qimg_node_unref(file);
        return ret;
    }
    struct qimg_node *n = qimg_node_alloc(&qimg_qcow2_driver, filename,
                                          QIMG_O_RDWR | QIMG_O_NO_BACKING);
    n->file = file;
    struct qimg_opts *oo = qimg_opts_new();
    ret = qimg_qcow2_driver.open(n, oo, err);
    qimg_opts_free(oo);
    /* qemu-img words every failure of this first resize so. */
    if (ret == 0 && (ret = qcow2_grow_to(n, p.size, mode, err)) < 0)
        qimg_error_prefix(err, "Could not resize image: ");
    if (ret == 0)
        ret = qcow2_crypt_setup(n, &p.crypt, err); /* after the L1 table, as QEMU */
    if (ret == 0 && (ret = qimg_node_flush(n)) < 0)
        qimg_error_errno(err, ret, "Could not flush the new image");
    qimg_node_unref(n);
    return ret;
}

/* compat=0.10|v2 -> 2, compat=1.1|v3 -> 3, anything else 0 (callers word the error). */
int qcow2_parse_compat(const char *compat)
{
    if (!strcmp(compat, "0.10") || !strcmp(compat, "v2"))
        return 2;
    if (!strcmp(compat, "1.1") || !strcmp(compat, "v3"))
        return 3;
    return 0;
}

/* qcow2.txt geometry: refcount blocks and table for `clusters` clusters plus themselves. */
static uint64_t refcount_meta_clusters(uint64_t clusters, uint64_t cs, uint64_t refcount_bits)
{
    uint64_t rbe = cs * 8 / refcount_bits, blocks = 0, table = 0;
    for (;;) {
        uint64_t nb = qcow2_div_round_up(clusters + blocks + table, rbe);
        uint64_t nt = qcow2_div_round_up(nb * 8, cs);
        if (nb == blocks && nt == table)
            return blocks + table;
        blocks = nb;
        table = nt;
    }
}

static uint64_t prealloc_size(uint64_t size, uint64_t cs, uint64_t refcount_bits, bool ext)
{
    uint64_t aligned = qcow2_align_up(size, cs);
    uint64_t clusters = aligned / cs;
    uint64_t nl2 = qcow2_div_round_up(clusters, l2_entries_for(cs, ext));
    uint64_t meta = 1 + nl2 + qcow2_div_round_up(nl2 * 8, cs);
    meta += refcount_meta_clusters(meta + clusters, cs, refcount_bits);
    return meta * cs + aligned;
}

int qcow2_measure(struct qimg_opts *opts, struct qimg_node *src, uint64_t size,
                  struct qimg_measure *out, struct qimg_error *err)
{
    struct create_params p;
    int ret = parse_params(opts, &p, true, err);
    if (ret < 0)
        return ret;
    const char *drop[] = {"backing_file", "backing_fmt", "data_file", "data_file_raw",
                          "lazy_refcounts"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        qimg_opts_take(opts, drop[i]);
    /* QEMU formats a LUKS header to measure it: the secret is needed too. */
    ret = qcow2_crypt_parse_create(opts, true, &p.crypt, err);
    uint64_t luks = qcow2_crypt_measure(&p.crypt, p.cluster_size);
    qcow2_crypt_create_clear(&p.crypt);
    if (ret < 0)
        return ret;
    uint64_t cs = p.cluster_size, data = 0;
    if (src) {
        int64_t len = qimg_node_length(src);
        if (len < 0)
            return qimg_error_errno(err, (int)len, "Unable to get image virtual_size");
        size = (uint64_t)len;
        uint64_t last = UINT64_MAX, off = 0;
        while (off < size) {
            struct qimg_block_status st;
            ret = qimg_chain_block_status(src, NULL, off, size - off, &st);
            if (ret < 0)
                return qimg_error_errno(err, ret, "Unable to get block status");
            if ((st.flags & QIMG_BLK_DATA) && !(st.flags & QIMG_BLK_ZERO)) {
                uint64_t c0 = off / cs, c1 = qcow2_div_round_up(off + st.bytes, cs);
                if (last != UINT64_MAX && c0 <= last)
                    c0 = last + 1;
                if (c1 > c0) {
                    data += (c1 - c0) * cs;
                    last = c1 - 1;
                }
            }
            off += st.bytes;
        }
        out->has_bitmaps = src->drv == &qimg_qcow2_driver;
        out->bitmaps = 0;
    }
    uint64_t full = prealloc_size(size, cs, p.refcount_bits, p.extended_l2);
    out->fully_allocated = full + luks;
    if (p.prealloc == QIMG_PREALLOC_FALLOC || p.prealloc == QIMG_PREALLOC_FULL)
        out->required = full + luks;
    else
        out->required = full - qcow2_align_up(size, cs) + data + luks;
    return 0;
}
