#!/bin/sh
# Install the Debian 12 packages qimg needs to build and test, only when some are missing.
# Run as root on a fresh machine (make demo / make check call it).
set -e
# scdoc builds the man pages; g++, man-db and groff-base serve the install test
# (the C++ example, man -l). The network protocols build on libnbd, libcurl and libssh;
# their tests start nbdkit/qemu-nbd, lighttpd and sshd on loopback.
PKGS="meson ninja-build pkg-config gcc make zlib1g-dev libzstd-dev libdeflate-dev nettle-dev \
      qemu-utils python3-pytest e2fsprogs strace cryptsetup-bin \
      scdoc g++ man-db groff-base \
      libnbd-dev nbdkit libnbd-bin libcurl4-gnutls-dev qemu-block-extra lighttpd \
      lighttpd-mod-openssl openssl libssh-dev openssh-server openssh-client"
# iscsi: the driver builds on libiscsi; its tests start Debian's tgt (tgtd) on loopback,
# against qemu-img's iscsi driver (qemu-block-extra).
PKGS="$PKGS libiscsi-dev tgt"
# nfs: the driver builds on libnfs; its tests start nfs-ganesha (VFS backend) and, when no
# portmapper runs, rpcbind on loopback.
PKGS="$PKGS libnfs-dev nfs-ganesha nfs-ganesha-vfs rpcbind"
# gluster: the driver builds on libgfapi; its tests start glusterd with a one-brick volume.
PKGS="$PKGS libglusterfs-dev glusterfs-server"
# The suite runs on every core (pytest-xdist; scripts/run-tests.sh).
PKGS="$PKGS python3-pytest-xdist"
# rbd: librbd to build on; the tests start a one-node Ceph cluster (mon + memstore osd).
PKGS="$PKGS librbd-dev librados-dev ceph-mon ceph-osd ceph-common"
# Read-only formats: dmg's bzip2 chunks (libbz2); cloop images made by the real tool in tests.
PKGS="$PKGS libbz2-dev cloop-utils"
# vvfat: the converted FAT disk checked with dosfstools (fsck.fat) and read back with mtools.
PKGS="$PKGS mtools dosfstools"
# make asan: gcc's sanitizer runtimes (gcc already pulls them in; listed so a missing one is installed)
[ "${QIMG_SETUP_EXTRA:-}" = asan ] && PKGS="$PKGS libasan8 libubsan1"
# make fuzz: clang with libFuzzer and its sanitizer runtimes
[ "${QIMG_SETUP_EXTRA:-}" = fuzz ] && PKGS="$PKGS clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "setup: installing$missing"
if [ "$(id -u)" != 0 ]; then
    echo "setup: missing packages and not root; install them with: apt-get install$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
