#!/bin/sh
# A short demo of qimg's main job on data made here: a raw disk holding a real
# ext4 filesystem, converted to qcow2 (plain and compressed) and back, with
# info, compare, map and check along the way, and qemu-img checking our work.
set -eu
BUILD=${1:-build}
QIMG=$(cd "$BUILD" && pwd)/qimg
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
step() { printf '\n\033[1m$ %s\033[0m\n' "$(echo "$*" | sed "s|$QIMG|qimg|g")"; "$@"; }

echo "qimg demo, working in $WORK"
mkdir -p files
cp -r /usr/share/doc/e2fsprogs /usr/share/doc/meson files/ 2>/dev/null || true
seq 1 300000 > files/numbers.txt
step "$QIMG" create -f raw disk.raw 256M
mkfs.ext4 -q -F -d files disk.raw
echo "(disk.raw now holds an ext4 filesystem with $(du -sh files | cut -f1) of files)"
step "$QIMG" info disk.raw
step "$QIMG" map -f raw disk.raw
step "$QIMG" convert -p -f raw -O qcow2 disk.raw disk.qcow2
step "$QIMG" info disk.qcow2
step "$QIMG" convert -c -f raw -O qcow2 disk.raw small.qcow2
step "$QIMG" compare disk.raw small.qcow2
step "$QIMG" convert -f qcow2 -O raw small.qcow2 back.raw
step "$QIMG" compare -f raw -F raw disk.raw back.raw
step "$QIMG" map --output=json small.qcow2
step "$QIMG" measure -O qcow2 disk.raw
if "$QIMG" check disk.qcow2 >/dev/null 2>&1; then step "$QIMG" check disk.qcow2; fi
if command -v qemu-img >/dev/null; then
    step qemu-img check small.qcow2
    step qemu-img compare disk.raw small.qcow2
fi
echo
printf 'sizes: disk.raw %s KiB allocated, disk.qcow2 %s KiB, small.qcow2 (compressed) %s KiB\n' \
    "$(du -k disk.raw | cut -f1)" "$(du -k disk.qcow2 | cut -f1)" "$(du -k small.qcow2 | cut -f1)"
echo "demo finished"
