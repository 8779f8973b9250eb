/* SPDX-License-Identifier: MIT */
/*
 * LUKS key slot management (qemu-img amend -o state=...,keyslot=...,
 * old-secret=...,new-secret=...,iter-time=...), with QEMU's checks, its
 * refusals without --force and its messages.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/afsplit.h"
#include "crypto/luks.h"
#include "qimg/opts.h"
#include "qimg/secret.h"
#include "util/mem.h"

static int write_header(struct qimg_luks *l, const struct qimg_luks_io *io,
                        struct qimg_error *err)
{
    uint8_t buf[QIMG_LUKS_HEADER_LEN];
    qimg_luks_encode(&l->hdr, buf);
    int ret = io->write(io->opaque, 0, buf, sizeof(buf));
    if (ret < 0)
        return qimg_error_errno(err, ret, "Cannot write LUKS header");
    return 0;
}

static bool slot_active(const struct qimg_luks *l, int i)
{
    return l->hdr.slots[i].active == QIMG_LUKS_SLOT_ACTIVE;
}

static int activate(struct qimg_luks *l, const struct qimg_luks_amend *a,
                    const struct qimg_luks_io *io, struct qimg_error *err)
{
    int slot = a->keyslot;
    if (slot >= 0 && slot_active(l, slot) && !a->force)
        return qimg_error_set(err, -EINVAL,
                              "Refusing to overwrite active keyslot %d - please erase it first",
                              slot);
    for (int i = 0; slot < 0 && i < QIMG_LUKS_NUM_SLOTS; i++)
        if (!slot_active(l, i))
            slot = i;
    if (slot < 0)
        return qimg_error_set(err, -EINVAL, "Can't add a keyslot - all keyslots are in use");
    if (!l->master_key)
        return qimg_error_set(err, -EINVAL, "The LUKS volume is not unlocked");
    l->params.iter_time_ms = a->has_iter_time ? a->iter_time_ms : 2000;
    int ret = qimg_luks_slot_write(l, slot, a->new_pw, a->new_len, io, err);
    return ret < 0 ? ret : write_header(l, io, err);
}

/* Overwrite the key material with random bytes and mark the slot unused. */
static int erase_slot(struct qimg_luks *l, int i, const struct qimg_luks_io *io,
                      struct qimg_error *err)
{
    struct qimg_luks_slot *s = &l->hdr.slots[i];
    size_t len = qimg_luks_split_len(l->hdr.key_bytes);
    uint8_t *junk = xmalloc(len);
    int ret = qimg_random_bytes(junk, len);
    if (ret == 0 && (ret = io->write(io->opaque, (uint64_t)s->key_offset * 512, junk, len)) < 0)
        qimg_error_errno(err, ret, "Cannot erase keyslot %d", i);
    else if (ret < 0)
        qimg_error_errno(err, ret, "Unable to generate random data");
    free(junk);
    if (ret < 0)
        return ret;
    s->active = QIMG_LUKS_SLOT_INACTIVE;
    s->iterations = 0;
    memset(s->salt, 0, sizeof(s->salt));
    return 0;
}

/* Which active slots does pw open? A bit per slot in *mask. */
static int slots_opened_by(struct qimg_luks *l, const uint8_t *pw, size_t len,
                           const struct qimg_luks_io *io, unsigned *mask, struct qimg_error *err)
{
    uint8_t *key = xmalloc(l->hdr.key_bytes);
    int ret = 0;
    *mask = 0;
    for (int i = 0; i < QIMG_LUKS_NUM_SLOTS && ret == 0; i++) {
        if (!slot_active(l, i))
            continue;
        ret = qimg_luks_slot_candidate(l, i, pw, len, io, key, err);
        if (ret == 0 && qimg_luks_master_key_matches(l, key))
            *mask |= 1u << i;
    }
    memset(key, 0, l->hdr.key_bytes);
    free(key);
    return ret;
}

static int erase(struct qimg_luks *l, const struct qimg_luks_amend *a,
                 const struct qimg_luks_io *io, struct qimg_error *err)
{
    unsigned active = 0, mask = 0;
    for (int i = 0; i < QIMG_LUKS_NUM_SLOTS; i++)
        if (slot_active(l, i))
            active |= 1u << i;
    if (a->old_pw) {
        int ret = slots_opened_by(l, a->old_pw, a->old_len, io, &mask, err);
        if (ret < 0)
            return ret;
        if (a->keyslot >= 0) {
            if (!(mask & (1u << a->keyslot)))
                return qimg_error_set(err, -EINVAL,
                                      "Given keyslot %d doesn't contain the given old password "
                                      "for erase operation",
                                      a->keyslot);
            mask = 1u << a->keyslot;
        }
        if (!mask)
            return qimg_error_set(err, -EINVAL,
                                  "No keyslots match given (old) password for erase operation");
        if (mask == active && !a->force)
            return qimg_error_set(err, -EINVAL,
                                  "All the active keyslots match the (old) password that was "
                                  "given and erasing them will erase all the data in the image "
                                  "irreversibly - refusing operation");
    } else {
        if (!(active & (1u << a->keyslot)))
            return qimg_error_set(err, -EINVAL, "Given keyslot %d is already erased (inactive) ",
                                  a->keyslot);
        if (active == (1u << a->keyslot) && !a->force)
            return qimg_error_set(err, -EINVAL,
                                  "Attempt to erase the only active keyslot %d which will erase "
                                  "all the data in the image irreversibly - refusing operation",
                                  a->keyslot);
        mask = 1u << a->keyslot;
    }
    for (int i = 0; i < QIMG_LUKS_NUM_SLOTS; i++) {
        if (mask & (1u << i)) {
            int ret = erase_slot(l, i, io, err);
            if (ret < 0)
                return ret;
        }
    }
    return write_header(l, io, err);
}

int qimg_luks_amend(struct qimg_luks *l, const struct qimg_luks_amend *a,
                    const struct qimg_luks_io *io, struct qimg_error *err)
{
    if (a->keyslot >= QIMG_LUKS_NUM_SLOTS)
        return qimg_error_set(err, -EINVAL, "Invalid keyslot %d specified, must be between 0 and %d",
                              a->keyslot, QIMG_LUKS_NUM_SLOTS - 1);
    if (a->active) {
        if (a->old_pw)
            return qimg_error_set(err, -EINVAL,
                                  "'old-secret' must not be given when activating keyslots");
        if (!a->new_pw)
            return qimg_error_set(err, -EINVAL, "'new-secret' is required to activate a keyslot");
        return activate(l, a, io, err);
    }
    if (a->new_pw)
        return qimg_error_set(err, -EINVAL, "'new-secret' must not be given when erasing keyslots");
    if (a->has_iter_time)
        return qimg_error_set(err, -EINVAL, "'iter-time' must not be given when erasing keyslots");
    if (a->keyslot < 0 && !a->old_pw)
        return qimg_error_set(err, -EINVAL,
                              "To erase keyslot(s), either explicit keyslot index or the password "
                              "currently contained in them must be given");
    return erase(l, a, io, err);
}

/*
 * A secret amend uses: looked up only where the operation needs it; one given
 * where it does not count as given ("" here) so that the key slot code refuses it.
 */
static int amend_secret(struct qimg_opts *opts, const char *prefix, const char *name, bool needed,
                        uint8_t **pw, size_t *len, struct qimg_error *err)
{
    char key[64];
    snprintf(key, sizeof(key), "%s%s", prefix, name);
    const char *id = qimg_opts_take(opts, key);
    if (!id)
        return 0;
    if (!needed) {
        *pw = (uint8_t *)xstrdup("");
        *len = 0;
        return 0;
    }
    return qimg_secret_lookup(id, pw, len, err);
}

static void free_secret(uint8_t *pw, size_t len)
{
    if (pw) {
        memset(pw, 0, len);
        free(pw);
    }
}

int qimg_luks_amend_opts(struct qimg_luks *l, struct qimg_opts *opts, const char *prefix,
                         bool force, const struct qimg_luks_io *io, struct qimg_error *err)
{
    struct qimg_luks_amend a = {.keyslot = -1, .force = force};
    uint8_t *old_pw = NULL, *new_pw = NULL;
    uint64_t slot = 0;
    char key[64];
    snprintf(key, sizeof(key), "%sstate", prefix);
    const char *state = qimg_opts_take(opts, key);
    if (!state)
        return qimg_error_set(err, -EINVAL, "Parameter 'state' is missing");
    if (strcmp(state, "active") && strcmp(state, "inactive"))
        return qimg_error_set(err, -EINVAL, "Parameter 'state' does not accept value '%s'", state);
    a.active = !strcmp(state, "active");
    snprintf(key, sizeof(key), "%skeyslot", prefix);
    int ret = qimg_opts_take_uint(opts, key, &slot, err);
    if (ret < 0)
        return ret;
    if (ret > 0)
        a.keyslot = slot > INT32_MAX ? INT32_MAX : (int)slot;
    snprintf(key, sizeof(key), "%siter-time", prefix);
    if ((ret = qimg_opts_take_uint(opts, key, &a.iter_time_ms, err)) < 0)
        return ret;
    a.has_iter_time = ret > 0;
    ret = amend_secret(opts, prefix, "old-secret", !a.active, &old_pw, &a.old_len, err);
    if (ret >= 0)
        ret = amend_secret(opts, prefix, "new-secret", a.active, &new_pw, &a.new_len, err);
    if (ret >= 0) {
        a.old_pw = old_pw;
        a.new_pw = new_pw;
        ret = qimg_luks_amend(l, &a, io, err);
    }
    free_secret(old_pw, a.old_len);
    free_secret(new_pw, a.new_len);
    return ret;
}
