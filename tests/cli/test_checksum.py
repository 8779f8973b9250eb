# SPDX-License-Identifier: MIT
"""qimg checksum (a qimg extension, issue 22): blksum's block hash of the guest-visible
content, the same for every format and layout of the same disk.

The known answers come from an independent implementation of the construction here
(Python hashlib), as blkhash publishes it: 64 KiB blocks, block i's digest into stream
i % 64, the root digest over the 64 stream digests; output "<hex>  <filename>"."""
import hashlib
import time

import pytest

from conftest import QIMG, run

MiB = 1 << 20
BLOCK = 64 * 1024
STREAMS = 64


def blkhash_file(path, alg="sha256"):
    """The construction over a raw file's bytes (a whole-zero block: its digest, once)."""
    zero_md = hashlib.new(alg, bytes(BLOCK)).digest()
    streams = [hashlib.new(alg) for _ in range(STREAMS)]
    with open(path, "rb") as f:
        i = 0
        while True:
            block = f.read(BLOCK)
            if not block:
                break
            md = zero_md if block == bytes(BLOCK) else hashlib.new(alg, block).digest()
            streams[i % STREAMS].update(md)
            i += 1
    root = hashlib.new(alg)
    for s in streams:
        root.update(s.digest())
    return root.hexdigest()


def make_raw(path, size, writes):
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in writes:
            f.seek(off)
            f.write(data)


def checksum(path, *opts, cwd=None):
    r = run([QIMG, "checksum", *opts, path], cwd=cwd)
    assert r.rc == 0 and r.err == "", r
    digest, name = r.out.rstrip("\n").split("  ")
    assert name == str(path) and r.out.endswith("\n") and r.out.count("\n") == 1
    return digest


# Data at block starts, mid-block, across a block boundary, and a partial last block.
WRITES = [(0, b"\x01" * 5000), (70000, bytes(range(256)) * 40), (3 * MiB - 100, b"\xaa" * 300),
          (5 * MiB, b"last")]
SIZE = 5 * MiB + 4096  # the last block is 4 KiB: hashed as it is, not as a whole block


@pytest.fixture
def disk(tmp_path):
    raw = tmp_path / "d.raw"
    make_raw(raw, SIZE, WRITES)
    return raw


def test_known_answer(disk):
    assert checksum(disk) == blkhash_file(disk)


@pytest.mark.parametrize("alg", ["sha1", "sha512", "sha3-256", "md5"])
def test_known_answer_algorithms(disk, alg):
    assert checksum(disk, "-a", alg) == blkhash_file(disk, alg.replace("-", "_"))


def test_known_answer_empty_and_zero(tmp_path):
    empty = tmp_path / "e.raw"
    empty.write_bytes(b"")
    assert checksum(empty) == blkhash_file(empty)
    zeros = tmp_path / "z.raw"
    zeros.write_bytes(bytes(3 * BLOCK))  # allocated zeroes: the same as a hole
    assert checksum(zeros) == blkhash_file(zeros)


@pytest.mark.parametrize("layout", ["empty", "data-then-holes", "holes-then-data", "odd-run"])
def test_known_answer_long_zero_runs(tmp_path, layout):
    """Zero runs long enough for streams to share their work (>= 64 blocks per stream)."""
    size = {"odd-run": 300 * MiB + 3 * BLOCK}.get(layout, 320 * MiB)
    writes = {"data-then-holes": [(0, b"x" * 3 * BLOCK)],
              "holes-then-data": [(300 * MiB + 5, b"y" * 1000)],
              "odd-run": [(BLOCK * 7, b"z"), (size - 10, b"end")]}.get(layout, [])
    raw = tmp_path / "s.raw"
    make_raw(raw, size, writes)
    want = blkhash_file(raw)
    assert checksum(raw) == want
    q = tmp_path / "s.qcow2"
    assert run([QIMG, "convert", "-f", "raw", "-O", "qcow2", raw, q]).rc == 0
    assert checksum(q) == want


def test_same_digest_every_layout(oracle, disk, tmp_path):
    want = blkhash_file(disk)
    copies = {"qcow2": [], "zlib": ["-c"], "zstd": ["-c", "-o", "compression_type=zstd"],
              "small-clusters": ["-o", "cluster_size=4096"]}
    for name, opts in copies.items():
        out = tmp_path / f"{name}.qcow2"
        r = oracle.img("convert", "-f", "raw", "-O", "qcow2", *opts, disk, out)
        assert r.rc == 0, r
        assert checksum(out) == want, name
    # A backing chain with the same content: base holds part, the top the rest.
    base, top = tmp_path / "base.qcow2", tmp_path / "top.qcow2"
    assert oracle.img("create", "-q", "-f", "qcow2", base, str(SIZE)).rc == 0
    assert oracle.img("create", "-q", "-f", "qcow2", "-b", base.name, "-F", "qcow2",
                      top).rc == 0
    # The base gets the content but its first 64 KiB zeroed; the top holds the first
    # write and zeroes a range that reads as zeroes anyway: the chain reads as the disk.
    r = oracle.img("convert", "-n", "-f", "raw", "-O", "qcow2", disk, base)
    assert r.rc == 0, r
    assert oracle.io("-f", "qcow2", "-c", "write -z 0 64k", base).rc == 0
    assert checksum(base) != want
    assert oracle.io("-f", "qcow2", "-c", "write -P 1 0 5000", "-c", "write -z 1M 1M",
                     top).rc == 0
    assert checksum(top) == want
    assert checksum(top, "-f", "qcow2") == want


def test_one_byte_differs(disk, tmp_path):
    other = tmp_path / "o.raw"
    other.write_bytes(disk.read_bytes())
    with open(other, "r+b") as f:
        f.seek(2 * MiB + 12345)  # inside a hole of disk
        f.write(b"\x01")
    assert checksum(other) != checksum(disk)
    assert checksum(other) == blkhash_file(other)
    with open(other, "r+b") as f:
        f.seek(2 * MiB + 12345)
        f.write(b"\x00")
        f.seek(70001)  # inside data
        f.write(b"\xff")
    assert checksum(other) != checksum(disk)


def test_holes_are_not_read(oracle, tmp_path):
    """An empty 4 TiB qcow2: reading it would take hours; block status says zero."""
    img = tmp_path / "big.qcow2"
    assert oracle.img("create", "-q", "-f", "qcow2", img, "4T").rc == 0
    t0 = time.monotonic()
    d = checksum(img)
    assert time.monotonic() - t0 < 10
    # 2^26 zero blocks, 2^20 per stream: every stream is H(zero_md * 2^20).
    zero_md = hashlib.sha256(bytes(BLOCK)).digest()
    s = hashlib.sha256(zero_md * (1 << 20)).digest()
    assert d == hashlib.sha256(s * STREAMS).hexdigest()


def test_progress_bar_and_errors(disk, tmp_path):
    r = run([QIMG, "checksum", "-p", disk])
    assert r.rc == 0 and "(100.00/100%)" in r.out and r.out.endswith(f"  {disk}\n"), r
    r = run([QIMG, "checksum", "-a", "nosuch", disk])
    assert (r.rc, r.out, r.err) == (1, "", "qimg: Unsupported algorithm 'nosuch'\n")
    r = run([QIMG, "checksum", tmp_path / "missing.qcow2"])
    assert r.rc == 1 and r.err.startswith("qimg: Could not open "), r
    r = run([QIMG, "checksum"])
    assert r.rc == 1 and "Expecting one image file name" in r.err, r
    r = run([QIMG, "checksum", "--help"])
    assert r.rc == 0 and "  checksum [" in r.out and "'checksum' prints a digest" in r.out


def test_image_opts(disk):
    assert checksum(f"driver=raw,file.filename={disk}", "--image-opts") == blkhash_file(disk)


def test_qemu_img_name_has_no_checksum(ours, oracle, disk):
    """Under the qemu-img name the command set is qemu-img 9.1's: no checksum."""
    mine, theirs = ours.img("checksum", disk), oracle.img("checksum", disk)
    assert (mine.rc, mine.out, mine.err) == (theirs.rc, theirs.out, theirs.err) == \
        (1, "", "qemu-img: Command not found: checksum\n"
                "Try 'qemu-img --help' for more information\n")
    assert "checksum" not in ours.img("--help").out
