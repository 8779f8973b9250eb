/* SPDX-License-Identifier: MIT */
/*
 * Image locking compatible with QEMU's (qemu-behaviour-facts.md, "Image locking"):
 * shared OFD locks on single bytes; byte 100+i held means "I use permission i",
 * byte 200+i held means "nobody else may use permission i". Conflicts are
 * detected with F_OFD_GETLK after taking our own locks.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "protocols/file-lock.h"

#define LOCK_PERM_BASE 100
#define LOCK_SHARED_BASE 200
#define PERM_COUNT 4

static const char *const perm_names[PERM_COUNT] = {
    "consistent read", "write", "write unchanged", "resize",
};

static int lock_byte(int fd, off_t byte, short type)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* Does another open file description hold a lock on this byte? */
static int byte_taken(int fd, off_t byte)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return -errno;
    return fl.l_type != F_UNLCK;
}

/* Hold exactly the bytes for perm (100+i) and for what we refuse to share (200+i). */
static int apply_locks(int fd, unsigned perm, unsigned unshared)
{
    for (int i = 0; i < PERM_COUNT; i++) {
        int ret = lock_byte(fd, LOCK_PERM_BASE + i, (perm >> i & 1) ? F_RDLCK : F_UNLCK);
        if (ret == 0)
            ret = lock_byte(fd, LOCK_SHARED_BASE + i, (unshared >> i & 1) ? F_RDLCK : F_UNLCK);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int file_lock_update(int fd, const char *filename, unsigned old_perm, unsigned old_shared,
                     unsigned perm, unsigned shared, struct qimg_error *err)
{
    unsigned unshared = ~shared & ((1u << PERM_COUNT) - 1);
    int ret = apply_locks(fd, perm, unshared);
    if (ret < 0) {
        if (ret == -EINVAL || ret == -ENOTSUP || ret == -ENOLCK)
            return 0; /* a filesystem without OFD locks: QEMU carries on too */
        apply_locks(fd, old_perm, ~old_shared & ((1u << PERM_COUNT) - 1));
        return qimg_error_errno(err, ret, "Failed to lock byte %d", LOCK_PERM_BASE);
    }
    for (int i = 0; i < PERM_COUNT; i++) {
        if ((perm >> i & 1) && byte_taken(fd, LOCK_SHARED_BASE + i) > 0) {
            apply_locks(fd, old_perm, ~old_shared & ((1u << PERM_COUNT) - 1));
            return qimg_error_set(err, -EAGAIN,
                                  "Failed to get \"%s\" lock\n"
                                  "Is another process using the image [%s]?",
                                  perm_names[i], filename);
        }
    }
    for (int i = 0; i < PERM_COUNT; i++) {
        if ((unshared >> i & 1) && byte_taken(fd, LOCK_PERM_BASE + i) > 0) {
            apply_locks(fd, old_perm, ~old_shared & ((1u << PERM_COUNT) - 1));
            return qimg_error_set(err, -EAGAIN,
                                  "Failed to get shared \"%s\" lock\n"
                                  "Is another process using the image [%s]?",
                                  perm_names[i], filename);
        }
    }
    return 0;
}
