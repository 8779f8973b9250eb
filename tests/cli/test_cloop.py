# SPDX-License-Identifier: MIT
"""cloop (compressed loop, V2), read only: images made by Debian's create_compressed_fs
(cloop-utils) and by hand from specs/cloop-facts.md read, convert, compare, map and info
like qemu-img; hostile offset tables and block sizes give qemu's messages; writes are refused
with qemu's "Image is read-only".

Hand-made images (`cloop()` below) follow cloop-facts.md "V2 layout": the 128-byte preamble
(NUL padded), big-endian u32 block_size at 0x80 and n_blocks at 0x84, then n_blocks + 1
big-endian u64 absolute offsets (the last one ends the last block) and the zlib (RFC 1950)
blocks back to back, each inflating to block_size bytes.
"""
import re
import shutil
import struct
import subprocess
import zlib

import pytest

from conftest import strip_child
from readonly_common import same_info, same_map, same_raw, write, writes_are_refused

HEX = re.compile(r"^(?:[0-9a-f]+: (?: [0-9a-f]{2})+|read .*)")
PREAMBLE = (b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 "
            b"/dev/cloop $1\nexit $?\n")


def cloop(blocks, block_size, offsets=None, n_blocks=None, preamble=PREAMBLE):
    """A V2 image of the given uncompressed blocks (offsets/n_blocks override the real ones)."""
    comp = [zlib.compress(b, 9) for b in blocks]
    n = len(blocks) if n_blocks is None else n_blocks
    head = preamble.ljust(128, b"\0") + struct.pack(">II", block_size, n)
    if offsets is None:
        pos = len(head) + 8 * (len(blocks) + 1)
        offsets = [pos]
        for c in comp:
            pos += len(c)
            offsets.append(pos)
    return head + b"".join(struct.pack(">Q", o) for o in offsets) + b"".join(comp)


def guest_blocks(block_size, count):
    """Blocks of mixed content: text, zeroes, a pattern, incompressible bytes."""
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            b = (b"block %d " % i) * (block_size // 8 + 1)
        elif kind == 1:
            b = bytes(block_size)
        elif kind == 2:
            b = bytes(range(256)) * (block_size // 256 + 1)
        else:
            b = bytes((i * 7919 + k * 31) * 2654435761 >> 13 & 0xFF for k in range(block_size))
        out.append(b[:block_size])
    return out


@pytest.mark.parametrize("block_size,count", [(512, 1), (512, 9), (4096, 7), (65536, 5)])
def test_hand_made_reads_like_qemu(both, tmp_path, block_size, count):
    ours, oracle = both
    blocks = guest_blocks(block_size, count)
    img = write(tmp_path, "t.cloop", cloop(blocks, block_size))
    same_raw(ours, oracle, img, tmp_path, expect=b"".join(blocks))
    same_info(ours, oracle, img)
    same_map(ours, oracle, img)


@pytest.mark.skipif(not shutil.which("create_compressed_fs"), reason="cloop-utils missing")
@pytest.mark.parametrize("block_size", [65536, 131072])
def test_create_compressed_fs_image(both, tmp_path, block_size):
    """Debian's create_compressed_fs writes the image; the input's tail pads with zeroes."""
    ours, oracle = both
    src = tmp_path / "in.bin"
    data = b"".join(guest_blocks(4096, 100)) + b"tail" * 1000
    src.write_bytes(data)
    img = tmp_path / "t.cloop"
    p = subprocess.run(["create_compressed_fs", "-q", "-B", str(block_size), str(src), str(img)],
                       capture_output=True)
    assert p.returncode == 0, p
    raw = same_raw(ours, oracle, img, tmp_path)
    assert raw[:len(data)] == data and raw[len(data):] == bytes(len(raw) - len(data))
    assert len(raw) % block_size == 0
    same_info(ours, oracle, img)
    same_map(ours, oracle, img)


def test_probe_needs_the_preamble(both, tmp_path):
    ours, oracle = both
    blocks = guest_blocks(512, 2)
    img = write(tmp_path, "t.img", cloop(blocks, 512, preamble=b"#!/bin/sh\n# other\n"))
    a, b = ours.img("info", str(img)), oracle.img("info", str(img))
    assert a.rc == b.rc == 0 and "file format: raw" in a.out and "file format: raw" in b.out
    # Named explicitly, the preamble does not matter.
    a = ours.img("convert", "-f", "cloop", "-O", "raw", str(img), str(tmp_path / "o.raw"))
    assert a.rc == 0 and (tmp_path / "o.raw").read_bytes() == b"".join(blocks)


GOOD = guest_blocks(512, 3)


def hostile_images():
    """(name, image bytes): each header limit qemu 9.1 checks at open (messages observed)."""
    return [
        ("bs-zero", cloop(GOOD, 0)),
        ("bs-unaligned", cloop(GOOD, 513)),
        ("bs-too-big", cloop(GOOD, (64 << 20) + 512)),
        ("n-blocks-max", cloop(GOOD, 512, n_blocks=0xFFFFFFFF)),
        ("n-blocks-above", cloop(GOOD, 512, n_blocks=0x3FFFFFFF)),
        ("table-wraps", cloop(GOOD, 512, n_blocks=0x1FFFFFFF)),  # (n+1)*8 wraps to 0 in 32 bits
        ("too-many-offsets", cloop(GOOD, 512, n_blocks=0x0FFFFFFF)),
        ("not-monotonic", cloop(GOOD, 512, offsets=[200, 300, 250, 400])),
        ("block-too-big", cloop(GOOD, 512, offsets=[200, 300, 301 + (128 << 20), 302 + (128 << 20)])),
    ]


@pytest.mark.parametrize("name,data", hostile_images(), ids=[n for n, _ in hostile_images()])
def test_hostile_headers_give_qemus_message(both, tmp_path, name, data):
    ours, oracle = both
    img = write(tmp_path, name + ".cloop", data)
    for argv in (["info", "-f", "cloop", str(img)],
                 ["convert", "-f", "cloop", "-O", "raw", str(img), str(tmp_path / "o.raw")]):
        a, b = ours.img(*argv), oracle.img(*argv)
        assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err), argv
        assert a.rc == 1 and a.err.startswith("qemu-img: Could not open"), a


def test_exactly_128mib_compressed_block_is_accepted(both, tmp_path):
    """The limit is "more than 2 x 64 MiB": the boundary opens (the bad block then fails)."""
    ours, oracle = both
    img = write(tmp_path, "b.cloop",
                cloop(GOOD, 512, offsets=[200, 300, 300 + (128 << 20), 400 + (128 << 20)]))
    a, b = ours.img("info", str(img)), oracle.img("info", str(img))
    assert a.rc == b.rc == 0 and strip_child(a.out) == b.out


@pytest.mark.parametrize("how", ["truncated-table", "bad-zlib", "short-stream",
                                 "offset-past-eof"])
def test_damaged_blocks_read_as_io_errors(both, tmp_path, how):
    ours, oracle = both
    data = bytearray(cloop(GOOD, 512))
    if how == "truncated-table":
        data = data[:140]  # offsets read as zeroes past EOF: opens, every block is empty
    elif how == "bad-zlib":
        first = 0x88 + 8 * (len(GOOD) + 1)  # block 0's zlib stream
        data[first + 2:first + 12] = b"\xff" * 10
    elif how == "short-stream":  # block 1 claims a zlib stream of the wrong length
        data[0x88 + 8:0x88 + 16] = struct.pack(">Q", struct.unpack(">Q", data[0x88 + 8:0x88 + 16])[0] - 3)
    else:  # the last block lies wholly past the end of the file: it reads as zeroes
        n = len(GOOD)
        data[0x88 + 8 * (n - 1):0x88 + 8 * (n + 1)] = struct.pack(">QQ", len(data) + 100,
                                                                  len(data) + 200)
    img = write(tmp_path, "d.cloop", bytes(data))
    argv = ["convert", "-O", "raw", str(img), str(tmp_path / "o.raw")]
    a, b = ours.img(*argv), oracle.img(*argv)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert a.rc == 1 and "Input/output error" in a.err
    # Block by block, qemu-io fails exactly where qemu's does.
    for off in range(0, 512 * len(GOOD), 512):
        a = ours.io("-r", "-c", f"read {off} 512", str(img))
        b = oracle.io("-r", "-c", f"read {off} 512", str(img))
        assert (a.rc, a.err, "failed" in a.out) == (b.rc, b.err, "failed" in b.out), off


def test_writes_are_refused(both, tmp_path):
    writes_are_refused(*both, write(tmp_path, "t.cloop", cloop(GOOD, 512)))


def test_qemu_io_reads_across_blocks(both, tmp_path):
    ours, oracle = both
    blocks = guest_blocks(4096, 6)
    img = write(tmp_path, "t.cloop", cloop(blocks, 4096))
    flat = b"".join(blocks)
    for off, ln in ((0, 4096), (4000, 5000), (12288 - 1, 3), (0, len(flat))):
        a = ours.io("-r", "-c", f"read -v {off} {ln}", str(img))
        b = oracle.io("-r", "-c", f"read -v {off} {ln}", str(img))
        # Hex columns only (the last line has timings). qimg-io's ASCII column shows
        # punctuation where qemu-io prints '.' for anything not alphanumeric: not ours here.
        strip = lambda s: [HEX.match(line).group(0) for line in s.splitlines()[:-1]]
        assert a.rc == b.rc == 0 and strip(a.out) == strip(b.out)
