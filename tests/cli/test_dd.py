# SPDX-License-Identifier: MIT
"""qemu-img dd on raw images: output files and messages against the oracle."""
import random

import pytest

from conftest import data_runs, write_pattern

MiB = 1 << 20


def make_input(d):
    p = d / "src.raw"
    if p.exists():
        p.unlink()
    rnd = random.Random(7).randbytes(256 * 1024)
    write_pattern(p, {0: rnd, MiB: rnd[:8192], 3 * MiB + 100: b"\x42" * 5000}, 4 * MiB)
    o = d / "odd.raw"
    if o.exists():
        o.unlink()
    write_pattern(o, {0: b"\x33" * 1000}, 1000)


def files(d):
    """Every file but the inputs, with its content."""
    return {p.name: p.read_bytes() for p in d.iterdir() if p.name not in ("src.raw", "odd.raw")}


CASES = [
    [],
    ["if=src.raw", "of=d.raw"],
    ["if=src.raw", "of=d.raw", "bs=64k", "count=4"],
    ["if=src.raw", "of=d.raw", "bs=64k", "count=16", "skip=4"],
    ["if=src.raw", "of=d.raw", "bs=64k", "skip=63"],
    ["if=src.raw", "of=d.raw", "bs=64k", "skip=64"],
    ["if=src.raw", "of=d.raw", "bs=64k", "skip=70"],
    ["if=src.raw", "of=d.raw", "bs=64k", "count=4", "skip=8"],
    ["if=src.raw", "of=d.raw", "bs=64k", "count=100"],
    ["if=src.raw", "of=d.raw", "bs=1M", "count=2", "skip=1"],
    ["if=odd.raw", "of=d.raw", "bs=3"],  # (bs=3 over 4 MiB takes the oracle a minute)
    ["if=src.raw", "of=d.raw", "bs=3", "count=5"],
    ["if=src.raw", "of=d.raw", "bs=3", "skip=5", "count=10"],
    ["if=src.raw", "of=d.raw", "bs=1.5k", "skip=3"],
    ["if=src.raw", "of=d.raw", "bs=5M"],
    ["if=src.raw", "of=d.raw", "bs=5M", "skip=1"],
    ["if=src.raw", "of=d.raw", "bs=1k", "count=1k", "skip=0x10"],
    ["if=src.raw", "of=d.raw", "count=08"],
    ["if=src.raw", "of=d.raw", "count=0"],
    ["if=src.raw", "of=d.raw", "skip=0x1"],
    ["if=src.raw", "of=d.raw", "count=1E"],
    ["if=src.raw", "of=d.raw", "skip=4E"],
    ["if=src.raw", "of=d.raw", "skip=9223372036854775807"],
    ["if=src.raw", "of=d.raw", "bs=2147483647", "count=1"],
    ["if=src.raw", "of=d.raw", "bs=1k", "bs=2k"],
    ["-f", "raw", "-O", "raw", "if=src.raw", "of=d.raw", "bs=4k", "count=300", "skip=2"],
    ["if=odd.raw", "of=d.raw"],
    ["if=odd.raw", "of=d.raw", "bs=100", "skip=3"],
    ["--image-opts", "if=driver=raw,file.filename=src.raw", "of=d.raw"],
    ["-U", "if=src.raw", "of=d.raw", "bs=64k", "count=2"],
    ["if=src.raw", "of=d.raw", "--", "bs=1k", "count=3"],
    # errors
    ["if=src.raw"],
    ["of=d.raw"],
    ["if=src.raw", "of="],
    ["if=", "of=d.raw"],
    ["if=src.raw", "of=d.raw", "bs=0"],
    ["bs=0"],
    ["if=src.raw", "of=d.raw", "bs=abc"],
    ["if=src.raw", "of=d.raw", "bs="],
    ["if=src.raw", "of=d.raw", "bs=2G"],
    ["if=src.raw", "of=d.raw", "count=abc"],
    ["if=src.raw", "of=d.raw", "count=1.5"],
    ["if=src.raw", "of=d.raw", "count=16E"],
    ["if=src.raw", "of=d.raw", "count="],
    ["if=src.raw", "of=d.raw", "skip=abc"],
    ["if=src.raw", "of=d.raw", "skip="],
    ["if=src.raw", "of=d.raw", "foo=bar"],
    ["if=src.raw", "of=d.raw", "foo"],
    ["if=src.raw", "of=d.raw", "=x"],
    ["if=src.raw", "of=d.raw", "BS=1"],
    ["if=src.raw", "of=d.raw", "conv=notrunc"],
    ["if"],
    ["if=src.raw", "of=d.raw", "if=x"],
    ["-O", "nosuch", "if=src.raw", "of=d.raw"],
    ["-O", "nosuch", "if=nonexist", "of=d.raw"],
    ["-f", "nosuch", "if=src.raw", "of=d.raw"],
    ["if=nonexist", "of=d.raw"],
    ["if=src.raw", "of=/nonexistent-dir/d.raw"],
    ["--image-opts", "-f", "raw", "if=src.raw", "of=d.raw"],
    ["--image-opts", "-f", "raw"],
    ["-x", "if=src.raw", "of=d.raw"],
    ["-p", "if=src.raw", "of=d.raw"],
    ["-o", "a", "if=src.raw", "of=d.raw"],
    ["if=src.raw", "of=d.raw", "extra"],
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) or "<none>" for c in CASES])
def test_dd_matches_oracle(ours, oracle, tmp_path, args):
    make_input(tmp_path)
    a = ours.img("dd", *args)
    ours_files = files(tmp_path)
    for p in tmp_path.iterdir():
        p.unlink()
    make_input(tmp_path)
    b = oracle.img("dd", *args)
    oracle_files = files(tmp_path)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert ours_files.keys() == oracle_files.keys()
    for name in ours_files:
        assert ours_files[name] == oracle_files[name], name


def test_dd_count_includes_skipped_blocks(ours, tmp_path):
    # qemu-img (7.2 and 9.1) limit the input to its first `count` blocks, skipped ones included.
    make_input(tmp_path)
    r = ours.img("dd", "-f", "raw", "if=src.raw", "of=d.raw", "bs=64k", "count=16", "skip=4")
    assert (r.rc, r.out, r.err) == (0, "", "")
    src = (tmp_path / "src.raw").read_bytes()
    assert (tmp_path / "d.raw").read_bytes() == src[4 * 65536:16 * 65536]


def blkdebug_src(sector):
    """src.raw behind the blkdebug filter: guest reads touching the sector fail with EIO."""
    return ('json:{"driver": "raw", "file": {"driver": "blkdebug", "inject-error": '
            '[{"event": "read_aio", "errno": 5, "sector": %d}], '
            '"image": {"driver": "file", "filename": "src.raw"}}}' % sector)


@pytest.mark.parametrize("sector,bs", [(0, "512"), (MiB // 512 + 2, "64k")])
def test_dd_read_error(ours, oracle, tmp_path, sector, bs):
    """A read error: qemu-img's message and exit code, and the output file as qemu-img
    leaves it (created at full size; the data before the failing block copied; here the
    failing block is the first of a data extent, where both tools' requests start)."""
    make_input(tmp_path)
    args = ["dd", f"if={blkdebug_src(sector)}", "of=d.raw", f"bs={bs}"]
    a = ours.img(*args)
    ours_out = (tmp_path / "d.raw").read_bytes()
    (tmp_path / "d.raw").unlink()
    b = oracle.img(*args)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err) == (
        1, "", "qemu-img: error while reading from input image file: Input/output error\n")
    assert ours_out == (tmp_path / "d.raw").read_bytes()


@pytest.mark.parametrize("op,msg", [
    ("bs=-1", "Invalid bs specified. Must be between 1 and 2147483647."),
    ("count=-1", "Invalid count specified. Must be between 0 and 9223372036854775807."),
    ("skip=-1", "Invalid skip specified. Must be between 0 and 9223372036854775807."),
])
def test_dd_negative_values_use_91_wording(ours, tmp_path, op, msg):
    # qemu-img 9.1 reports negative numbers as out of range (7.2 called them malformed).
    make_input(tmp_path)
    r = ours.img("dd", "if=src.raw", "of=d.raw", op)
    assert (r.rc, r.out, r.err) == (1, "", f"qemu-img: {msg}\n")


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
@pytest.mark.parametrize("src_fmt", ["raw", "qcow2"])
def test_dd_output_fully_allocated_like_oracle(ours, oracle, tmp_path, fmt, src_fmt):
    """dd writes every block, zeroes and holes too: the output is as allocated as qemu-img's
    (same map, same disk usage), not sparse as convert would leave it."""
    make_input(tmp_path)
    src = "src.raw"
    if src_fmt == "qcow2":
        assert oracle.img("convert", "-O", "qcow2", "src.raw", "src.qcow2").rc == 0
        src = "src.qcow2"
    for tool, out in ((ours, "a.img"), (oracle, "b.img")):
        r = tool.img("dd", "-f", src_fmt, "-O", fmt, "bs=64k", f"if={src}", f"of={out}")
        assert r.rc == 0, r
    assert oracle.img("compare", "a.img", "b.img").rc == 0
    ma = oracle.img("map", "--output=json", "-f", fmt, "a.img").out
    mb = oracle.img("map", "--output=json", "-f", fmt, "b.img").out
    assert ma == mb
    assert data_runs(tmp_path / "a.img") == data_runs(tmp_path / "b.img")

