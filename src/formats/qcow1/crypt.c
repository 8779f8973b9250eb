/* SPDX-License-Identifier: MIT */
/*
 * qcow's legacy AES encryption, as qemu-img 9.1 does it (crypto/qcow-aes.h).
 * Only data clusters are encrypted (no compression with encryption).
 *
 * Writes go out as whole clusters: qemu encrypts the unwritten sectors of a
 * new cluster (as zeroes) too, so that every sector of an allocated cluster
 * decrypts. Requests are sector-aligned (request_alignment 512).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/qcow-aes.h"
#include "formats/qcow1/qcow1.h"
#include "util/bytes.h"
#include "util/mem.h"

int qcow1_open_crypt(struct qimg_node *n, struct qimg_opts *opts, struct qimg_error *err)
{
    struct qcow1_state *s = n->opaque;
    const char *id = opts ? qimg_opts_take(opts, "encrypt.key-secret") : NULL;
    if (opts)
        qimg_opts_take(opts, "encrypt.format");
    n->request_alignment = QIMG_CRYPTO_SECTOR;
    if (!id && (n->flags & QIMG_O_NO_IO))
        return 0; /* info needs no key */
    return qimg_qcow_aes_new(id, "encrypt.key-secret", &s->crypt, err);
}

/* Decrypt the data runs of [off, off+len) in buf (read through the mapped layer). */
static int decrypt_runs(struct qimg_node *n, uint64_t off, uint64_t len, uint8_t *buf)
{
    struct qcow1_state *s = n->opaque;
    uint64_t pos = 0;
    while (pos < len) {
        struct qimg_map m;
        pthread_mutex_lock(&n->lock);
        int ret = qcow1_mapped_ops.map(n, off + pos, len - pos, &m);
        pthread_mutex_unlock(&n->lock);
        if (ret < 0)
            return ret;
        if (m.kind == QIMG_MAP_DATA)
            qimg_sector_decrypt(s->crypt, (off + pos) / QIMG_CRYPTO_SECTOR, buf + pos, m.bytes);
        pos += m.bytes;
    }
    return 0;
}

int qcow1_crypt_pread(struct qimg_node *n, uint64_t off, uint64_t len, void *buf,
                      unsigned flags)
{
    struct qcow1_state *s = n->opaque;
    if (!s->crypt)
        return -EACCES;
    int ret = qimg_mapped_pread(n, off, len, buf, flags);
    return ret < 0 ? ret : decrypt_runs(n, off, len, buf);
}

int qcow1_crypt_pwrite(struct qimg_node *n, uint64_t off, uint64_t len, const void *buf,
                       unsigned flags)
{
    struct qcow1_state *s = n->opaque;
    if (!s->crypt)
        return -EACCES;
    uint64_t c0 = off - off % s->cluster_size;
    uint64_t c1 = qimg_min_u64(qimg_align_up(off + len, s->cluster_size),
                               qimg_align_up(s->size, QIMG_CRYPTO_SECTOR));
    uint8_t *tmp = qimg_alloc_aligned(c1 - c0);
    if (!tmp)
        return -ENOMEM;
    int ret = 0;
    if (c0 < off || off + len < c1)
        ret = qcow1_crypt_pread(n, c0, c1 - c0, tmp, 0);
    if (ret == 0) {
        memcpy(tmp + (off - c0), buf, len);
        qimg_sector_encrypt(s->crypt, c0 / QIMG_CRYPTO_SECTOR, tmp, c1 - c0);
        ret = qimg_mapped_pwrite(n, c0, c1 - c0, tmp, flags);
    }
    free(tmp);
    return ret;
}
