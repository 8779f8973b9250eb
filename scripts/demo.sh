#!/bin/sh
# A short demo of the main job on data made here: a raw disk holding a real ext4
# filesystem, then create / info / convert / compare / map.
set -eu
BUILD=${1:-build}
QIMG=$(cd "$BUILD" && pwd)/qimg
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "qimg demo in $WORK"
mkdir -p files
cp -r /usr/share/doc/meson files/ 2>/dev/null || echo "some files" > files/a.txt
seq 1 200000 > files/numbers.txt
step "$QIMG" create -f raw disk.raw 64M
mkfs.ext4 -q -F -d files disk.raw
echo "(filled disk.raw with an ext4 filesystem holding $(du -sh files | cut -f1) of files)"
step "$QIMG" info disk.raw
step "$QIMG" info --output=json disk.raw
if "$QIMG" convert -f raw -O raw disk.raw copy.raw 2>/dev/null; then
    step "$QIMG" convert -p -f raw -O raw disk.raw copy.raw
    step "$QIMG" compare -f raw -F raw disk.raw copy.raw
    step "$QIMG" map -f raw copy.raw
    echo "disk.raw allocates $(du -k disk.raw | cut -f1) KiB, copy.raw $(du -k copy.raw | cut -f1) KiB"
fi
echo
echo "demo finished"
