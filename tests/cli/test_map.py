# SPDX-License-Identifier: MIT
"""qemu-img map on sparse raw images, human and JSON, against the oracle (7.2).

qemu-img 9.1 adds a "compressed" member to every JSON entry, after "data"
(samples-qemu-img-9.1.md, difference 2): ours must have it; it is removed
before comparing with 7.2's output, which must otherwise match byte for byte.
"""
import os
import re

import pytest

from conftest import write_pattern

MiB = 1 << 20
COMPRESSED = re.compile(r', "compressed": (true|false)')


def strip_compressed(text):
    """Our 9.1 JSON without "compressed", after checking every entry has it after "data"."""
    for line in text.splitlines():
        assert re.search(r'"data": (true|false), "compressed": (true|false)', line), line
    return COMPRESSED.sub("", text)


@pytest.fixture(scope="module")
def imgs(tmp_path_factory):
    """Read-only images of various shapes, shared by the module's tests."""
    t = tmp_path_factory.mktemp("map")
    # data at 0, 64k, 1M, 5M; 1.2 MB of data at 8000 KiB; a hole to 20 MiB
    chunks = {0: b"abc", 65536: b"abc", MiB: b"abc", 5 * MiB: b"abc"}
    chunks[8192000] = os.urandom(1228800)
    write_pattern(t / "m.raw", chunks, size=20 * MiB)
    write_pattern(t / "hole.raw", {}, size=10 * MiB)
    (t / "full.raw").write_bytes(os.urandom(2 * MiB))
    write_pattern(t / "tail.raw", {10 * MiB - 4096: b"\x01" * 4096}, size=10 * MiB)
    write_pattern(t / "head.raw", {0: b"\x01" * 2 * MiB}, size=100 * MiB)  # the sample's shape
    (t / "z.raw").write_bytes(b"")
    (t / "we ird.raw").write_bytes(b"\x01" * 4096)
    return t


def run_both(ours, oracle, cwd, *args):
    return ours.img(*args, cwd=cwd), oracle.img(*args, cwd=cwd)


@pytest.mark.parametrize("img", ["m.raw", "hole.raw", "full.raw", "tail.raw", "head.raw",
                                 "z.raw", "we ird.raw"])
@pytest.mark.parametrize("opts", [
    [],
    ["--start-offset=1"],
    ["--start-offset=1k"],
    ["--start-offset=70000", "--max-length=5000000"],
    ["--start-offset=1M", "--max-length=1"],
    ["--start-offset=1", "--max-length=100"],
    ["--max-length=0"],
    ["--max-length=1G"],
    ["--start-offset=10M"],
    ["--start-offset=20M"],
    ["--start-offset=30M"],
    ["--start-offset=9223372036854775807"],
    ["--start-offset", "4096", "--max-length", "8192"],
    ["-f", "raw"],
    ["-f", "file"],
    ["-U"],
])
def test_map_matches_oracle(ours, oracle, imgs, img, opts):
    for fmt in ("human", "json"):
        a, b = run_both(ours, oracle, imgs, "map", f"--output={fmt}", *opts, img)
        assert (a.rc, a.err) == (b.rc, b.err) == (0, "")
        if fmt == "json":
            assert strip_compressed(a.out) == b.out
        else:
            assert a.out == b.out


def test_map_default_is_human(ours, oracle, imgs):
    a, b = run_both(ours, oracle, imgs, "map", "m.raw")
    assert a.rc == 0 and a.out == b.out
    assert a.out.splitlines()[0] == "Offset          Length          Mapped to       File"
    assert a.out.splitlines()[1] == "0               0x1000          0               m.raw"


def test_map_json_sample_shape(ours, imgs):
    # samples-qemu-img-9.1.md: "qemu-img map --output=json r.raw" (2 MiB data in 100 MiB).
    r = ours.img("map", "--output=json", "head.raw", cwd=imgs)
    assert r.rc == 0
    assert r.out == (
        '[{ "start": 0, "length": 2097152, "depth": 0, "present": true, "zero": false, '
        '"data": true, "compressed": false, "offset": 0},\n'
        '{ "start": 2097152, "length": 102760448, "depth": 0, "present": true, "zero": true, '
        '"data": false, "compressed": false, "offset": 2097152}]\n')


def test_map_empty_range_entry(ours, imgs):
    r = ours.img("map", "--output=json", "--start-offset=30M", "m.raw", cwd=imgs)
    assert r.out == ('[{ "start": 31457280, "length": 0, "depth": 0, "present": false, '
                     '"zero": false, "data": false, "compressed": false}]\n')


@pytest.mark.parametrize("args", [
    ["--image-opts", "driver=raw,file.filename=m.raw,offset=4096,size=65536"],
    ["--image-opts", "driver=raw,file.filename=m.raw,offset=512,size=65536"],
    ["--image-opts", "driver=file,filename=m.raw", "--max-length=100000"],
    ['json:{"driver":"raw","file":{"driver":"file","filename":"m.raw"}}'],
    ["--object", "secret,id=s0,data=x", "m.raw"],
])
def test_map_open_variants_match_oracle(ours, oracle, imgs, args):
    for fmt in ("human", "json"):
        a, b = run_both(ours, oracle, imgs, "map", f"--output={fmt}", *args)
        assert (a.rc, a.err) == (b.rc, b.err) == (0, "")
        assert (strip_compressed(a.out) if fmt == "json" else a.out) == b.out


@pytest.mark.parametrize("args", [
    [],
    ["a", "b"],
    ["nosuch"],
    ["--bogus", "m.raw"],
    ["--output=xml", "m.raw"],
    ["--output"],
    ["-f", "nosuch", "m.raw"],
    ["--start-offset=abc", "m.raw"],
    ["--start-offset=1x", "m.raw"],
    ["--max-length=1x", "m.raw"],
    ["--start-offset=9223372036854775808", "m.raw"],
    ["--max-length=9223372036854775808", "m.raw"],
    ["--start-offset=99999999E", "m.raw"],
    ["--image-opts", "driver=raw,file.filename=m.raw,foo=1"],
])
def test_map_errors_match_oracle(ours, oracle, imgs, args):
    a, b = run_both(ours, oracle, imgs, "map", *args)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert a.rc == 1


@pytest.mark.parametrize("opt,what", [("--start-offset=-1", "start offset"),
                                      ("--max-length=-1", "max length")])
def test_map_negative_uses_91_wording(ours, imgs, opt, what):
    # qemu-img 9.1 reports negatives as out of range (7.2: "You may use k, M, G ...").
    r = ours.img("map", opt, "m.raw", cwd=imgs)
    assert r.rc == 1
    assert r.err == (f"qemu-img: Invalid {what} specified. "
                     "Must be between 0 and 9223372036854775807.\n")


def test_map_human_merges_contiguous_data(ours, imgs):
    r = ours.img("map", "full.raw", cwd=imgs)
    assert r.out.splitlines()[1:] == ["0               0x200000        0               full.raw"]
