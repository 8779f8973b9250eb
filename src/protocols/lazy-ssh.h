/* SPDX-License-Identifier: MIT */
/*
 * libssh (ssh.c), loaded on first use (lazylib.h).
 * Include this instead of the library's headers and call lazy_ssh_load() in every entry
 * point before the first library call.
 * The list is the driver's undefined symbols the library defines (nm -u); one missing links
 * against the real symbol and the build fails, so the list cannot silently fall short.
 */
#ifndef QIMG_PROTOCOLS_LAZY_SSH_H
#define QIMG_PROTOCOLS_LAZY_SSH_H

#include <libssh/libssh.h>
#include <libssh/sftp.h>

#include "protocols/lazylib.h"

#ifdef QIMG_SONAME_LIBSSH
#define LAZY_SSH_SYMS(X) \
    X(sftp_attributes_free) X(sftp_close) X(sftp_extension_supported) X(sftp_free) \
    X(sftp_fstat) X(sftp_fsync) X(sftp_get_error) X(sftp_init) X(sftp_new) X(sftp_open) \
    X(sftp_read) X(sftp_seek64) X(sftp_write) X(ssh_clean_pubkey_hash) X(ssh_connect) \
    X(ssh_disconnect) X(ssh_free) X(ssh_get_error) X(ssh_get_error_code) \
    X(ssh_get_publickey_hash) X(ssh_get_server_publickey) X(ssh_key_free) X(ssh_key_type) \
    X(ssh_key_type_to_char) X(ssh_new) X(ssh_options_set) X(ssh_session_is_known_server) \
    X(ssh_userauth_list) X(ssh_userauth_none) X(ssh_userauth_publickey_auto)

extern struct lazy_ssh_syms {
    LAZY_SSH_SYMS(LAZYLIB_FIELD)
} lazy_ssh;
extern struct lazylib lazy_ssh_lib;

#define sftp_attributes_free        (lazy_ssh.sftp_attributes_free)
#define sftp_close                  (lazy_ssh.sftp_close)
#define sftp_extension_supported    (lazy_ssh.sftp_extension_supported)
#define sftp_free                   (lazy_ssh.sftp_free)
#define sftp_fstat                  (lazy_ssh.sftp_fstat)
#define sftp_fsync                  (lazy_ssh.sftp_fsync)
#define sftp_get_error              (lazy_ssh.sftp_get_error)
#define sftp_init                   (lazy_ssh.sftp_init)
#define sftp_new                    (lazy_ssh.sftp_new)
#define sftp_open                   (lazy_ssh.sftp_open)
#define sftp_read                   (lazy_ssh.sftp_read)
#define sftp_seek64                 (lazy_ssh.sftp_seek64)
#define sftp_write                  (lazy_ssh.sftp_write)
#define ssh_clean_pubkey_hash       (lazy_ssh.ssh_clean_pubkey_hash)
#define ssh_connect                 (lazy_ssh.ssh_connect)
#define ssh_disconnect              (lazy_ssh.ssh_disconnect)
#define ssh_free                    (lazy_ssh.ssh_free)
#define ssh_get_error               (lazy_ssh.ssh_get_error)
#define ssh_get_error_code          (lazy_ssh.ssh_get_error_code)
#define ssh_get_publickey_hash      (lazy_ssh.ssh_get_publickey_hash)
#define ssh_get_server_publickey    (lazy_ssh.ssh_get_server_publickey)
#define ssh_key_free                (lazy_ssh.ssh_key_free)
#define ssh_key_type                (lazy_ssh.ssh_key_type)
#define ssh_key_type_to_char        (lazy_ssh.ssh_key_type_to_char)
#define ssh_new                     (lazy_ssh.ssh_new)
#define ssh_options_set             (lazy_ssh.ssh_options_set)
#define ssh_session_is_known_server (lazy_ssh.ssh_session_is_known_server)
#define ssh_userauth_list           (lazy_ssh.ssh_userauth_list)
#define ssh_userauth_none           (lazy_ssh.ssh_userauth_none)
#define ssh_userauth_publickey_auto (lazy_ssh.ssh_userauth_publickey_auto)
#endif

/* Loads the library (once); 0, or a negative errno with the reason in err. */
static inline int lazy_ssh_load(struct qimg_error *err)
{
#ifdef QIMG_SONAME_LIBSSH
    int r_ssh = lazylib_load(&lazy_ssh_lib, err);
    if (r_ssh < 0)
        return r_ssh;
#endif
    (void)err;
    return 0;
}

#endif
