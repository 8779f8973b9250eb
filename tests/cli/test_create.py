# SPDX-License-Identifier: MIT
"""qemu-img create on raw images: output, messages and exit codes against the oracle."""
import os

import pytest

CASES = [
    ["create", "-f", "raw", "r.raw", "100M"],
    ["create", "-f", "raw", "r.raw", "1.5M"],
    ["create", "-f", "raw", "r.raw", "0x10"],
    ["create", "-f", "raw", "r.raw", "1b"],
    ["create", "r.raw", "1M"],
    ["create", "-f", "raw", "-o", "preallocation=falloc", "r.raw", "1M"],
    ["create", "-f", "raw", "-o", "preallocation=full,size=2M", "r.raw"],
    ["create", "-f", "raw", "-o", "nocow=on", "r.raw", "1M"],
    ["create", "-f", "raw", "-o", "size=1M,size=2M", "r.raw"],
    ["create", "-f", "raw", "-o", "size=1M", "-o", "preallocation=off", "r.raw"],
    ["create", "-f", "raw", "-o", "help"],
    ["create", "-f", "raw", "-o", "help", "r.raw"],
    ["create", "-f", "raw", "-o", "help,size=1M"],
    ["create", "-f", "file", "r.raw", "1M"],
    ["create", "-q", "-f", "raw", "r.raw", "1M"],
    # bad input
    ["create", "-f", "raw", "r.raw", "1Q"],
    ["create", "-f", "raw", "r.raw", "1.5"],
    ["create", "-f", "raw", "r.raw", "1e3"],
    ["create", "-f", "raw", "r.raw", ""],
    ["create", "-f", "nosuch", "z.img", "1M"],
    ["create", "-f", "raw", "-o", "nosuch=1", "z.raw", "1M"],
    ["create", "-f", "raw", "-o", "size=abc", "r.raw"],
    ["create", "-f", "raw", "-o", "preallocation=bogus", "r.raw", "1M"],
    ["create", "-f", "raw", "-o", "size=1M", "r.raw", "2M"],
    ["create", "-f", "raw", "r.raw"],
    ["create", "-f", "raw", "r.raw", "1M", "extra"],
    ["create"],
    ["create", "-f"],
    ["create", "-z", "r.raw", "1M"],
    ["create", "--bogus", "r.raw", "1M"],
    ["create", "-f", "raw", "-b", "x.raw", "-F", "raw", "r.raw", "1M"],
    ["create", "-f", "raw", "/nonexistent-dir/r.raw", "1M"],
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) for c in CASES])
def test_create_matches_oracle(ours, oracle, tmp_path, args):
    a = ours.img(*args, cwd=tmp_path)
    ours_files = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    for p in tmp_path.iterdir():
        p.unlink()
    b = oracle.img(*args, cwd=tmp_path)
    oracle_files = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert ours_files == oracle_files


def test_create_negative_size_uses_91_wording(ours):
    # qemu-img 9.1 reports a negative size as out of range (7.2 said "Invalid image size").
    r = ours.img("create", "-f", "raw", "n.raw", "--", "-1")
    assert r.rc == 1
    assert r.err == ("qemu-img: Invalid image size specified. "
                     "Must be between 0 and 9223372036854775807.\n")


def test_create_too_large_size(ours, oracle):
    a = ours.img("create", "-f", "raw", "n.raw", "99999999E")
    assert a.rc == 1
    assert "Must be between 0 and 9223372036854775807." in a.err


def test_create_preallocation_full_allocates(ours, tmp_path):
    r = ours.img("create", "-f", "raw", "-o", "preallocation=full", "f.raw", "4M")
    assert r.rc == 0
    st = os.stat(tmp_path / "f.raw")
    assert st.st_size == 4 << 20
    assert st.st_blocks * 512 >= 4 << 20


def test_create_sparse_by_default(ours, tmp_path):
    assert ours.img("create", "-f", "raw", "s.raw", "1G").rc == 0
    assert os.stat(tmp_path / "s.raw").st_blocks * 512 <= 64 << 10


def test_create_overwrites_existing_file(ours, tmp_path):
    p = tmp_path / "e.raw"
    p.write_bytes(b"x" * 8192)
    assert ours.img("create", "-f", "raw", "e.raw", "4k").rc == 0
    assert p.read_bytes() == b"\0" * 4096
