# SPDX-License-Identifier: MIT
"""qemu-img compare on raw images: messages, offsets and exit codes against the oracle (7.2).

Exit codes (qemu-img.rst): 0 identical, 1 different, 2 error opening, 3 error
checking allocation, 4 error reading.
"""
import os

import pytest

from conftest import write_pattern

MiB = 1 << 20


def make(path, size, chunks=None):
    write_pattern(path, chunks or {}, size=size)


@pytest.fixture(scope="module")
def imgs(tmp_path_factory):
    """Read-only images shared by the module's tests (compare never writes)."""
    t = tmp_path_factory.mktemp("compare")
    make(t / "a.raw", 10 * MiB)
    make(t / "b.raw", 10 * MiB, {100000: b"\x07"})           # the samples' byte at 100000
    make(t / "c.raw", 12 * MiB)                              # longer, zero tail
    make(t / "d.raw", 12 * MiB, {11000000: b"\x07"})         # longer, data in the tail
    make(t / "dd.raw", 12 * MiB, {5000: b"z", 11000000: b"\x07"})
    make(t / "e.raw", 12 * MiB, {10 * MiB + 1000: b"\x07"})
    make(t / "f.raw", 10 * MiB, {5 * MiB + 70001: b"\x07"})
    make(t / "g.raw", 10 * MiB, {0: b"\x01"})
    make(t / "last.raw", 10 * MiB, {10 * MiB - 1: b"\x01"})
    # same content, different allocation: an explicit zero block vs a hole
    make(t / "h1.raw", 10 * MiB, {40960: bytes(4096)})
    make(t / "h2.raw", 10 * MiB)
    make(t / "h3.raw", 10 * MiB, {40960: bytes(4096), 49152: bytes(4096)})
    make(t / "h4.raw", 12 * MiB)
    rnd = os.urandom(6 * MiB)
    (t / "r1.raw").write_bytes(rnd)
    (t / "r2.raw").write_bytes(rnd)
    (t / "s1.raw").write_bytes(rnd)
    (t / "s2.raw").write_bytes(rnd)
    os.truncate(t / "s2.raw", 12 * MiB)
    (t / "s3.raw").write_bytes(rnd + os.urandom(4 * MiB))
    (t / "z.raw").write_bytes(b"")
    return t


def same(ours, oracle, cwd, *args):
    a, b = ours.img(*args, cwd=cwd), oracle.img(*args, cwd=cwd)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err), (args, a, b)
    return a


@pytest.mark.parametrize("args", [
    ["a.raw", "a.raw"],
    ["a.raw", "b.raw"],
    ["-f", "raw", "-F", "raw", "a.raw", "b.raw"],
    ["a.raw", "f.raw"],
    ["a.raw", "g.raw"],
    ["a.raw", "last.raw"],
    ["r1.raw", "r2.raw"],
    ["z.raw", "z.raw"],
    ["z.raw", "a.raw"],
    ["g.raw", "z.raw"],
    # different sizes: the longer image's tail must read as zeroes
    ["a.raw", "c.raw"],
    ["c.raw", "a.raw"],
    ["a.raw", "d.raw"],
    ["d.raw", "a.raw"],
    ["a.raw", "e.raw"],
    ["a.raw", "dd.raw"],
    ["s1.raw", "s2.raw"],
    ["s3.raw", "s2.raw"],
    # strict mode: size, then block status
    ["-s", "a.raw", "c.raw"],
    ["-s", "d.raw", "a.raw"],
    ["-s", "a.raw", "dd.raw"],
    ["-s", "a.raw", "a.raw"],
    ["-s", "r1.raw", "r2.raw"],
    ["-s", "h1.raw", "h2.raw"],
    ["-s", "h2.raw", "h1.raw"],
    ["-s", "h1.raw", "h3.raw"],
    ["-s", "h2.raw", "a.raw"],
    ["-s", "h2.raw", "h4.raw"],
    ["h1.raw", "h2.raw"],
    ["-s", "a.raw", "b.raw"],
    # quiet
    ["-q", "a.raw", "d.raw"],
    ["-q", "a.raw", "a.raw"],
    ["-q", "-s", "a.raw", "c.raw"],
    # other options
    ["-U", "a.raw", "b.raw"],
    ["-T", "none", "a.raw", "b.raw"],
    ["-T", "writeback", "a.raw", "a.raw"],
    ["--image-opts", "driver=raw,file.filename=a.raw", "driver=raw,file.filename=b.raw"],
    ["--image-opts", "driver=raw,file.filename=a.raw,offset=512",
     "driver=raw,file.filename=a.raw,size=512"],
    ['json:{"driver":"raw","file":{"driver":"file","filename":"a.raw"}}', "b.raw"],
    ["--object", "secret,id=s0,data=x", "a.raw", "a.raw"],
])
def test_compare_matches_oracle(ours, oracle, imgs, args):
    same(ours, oracle, imgs, "compare", *args)


@pytest.mark.parametrize("args", [
    [],
    ["a.raw"],
    ["a.raw", "b.raw", "c.raw"],
    ["--bogus", "a.raw", "b.raw"],
    ["-T"],
    ["-T", "bogus", "a.raw", "a.raw"],
    ["-T", "bogus", "a.raw"],
    ["-f", "nosuch", "a.raw", "a.raw"],
    ["-F", "nosuch", "a.raw", "a.raw"],
    ["a.raw", "nosuch"],
    ["nosuch", "a.raw"],
    ["-f", "raw", "--image-opts", "driver=raw,file.filename=a.raw", "a.raw"],
    ["-F", "raw", "--image-opts", "driver=raw,file.filename=a.raw", "a.raw"],
    ["-T", "bogus", "-f", "raw", "--image-opts", "a", "b"],
    ["--image-opts", "driver=raw,file.filename=a.raw,foo=1", "a.raw"],
])
def test_compare_errors_match_oracle(ours, oracle, imgs, args):
    r = same(ours, oracle, imgs, "compare", *args)
    assert r.rc in (1, 2)


def test_compare_exit_codes(ours, imgs):
    assert ours.img("compare", "a.raw", "c.raw", cwd=imgs).rc == 0
    assert ours.img("compare", "a.raw", "b.raw", cwd=imgs).rc == 1
    assert ours.img("compare", "-s", "a.raw", "c.raw", cwd=imgs).rc == 1
    assert ours.img("compare", "a.raw", "nosuch", cwd=imgs).rc == 2       # error opening
    assert ours.img("compare", "-T", "bogus", "a.raw", "b.raw", cwd=imgs).rc == 2
    assert ours.img("compare", "a.raw", cwd=imgs).rc == 1                  # usage


def test_compare_sample_offset(ours, imgs):
    # samples-qemu-img-9.1.md: a byte at 100000 is reported at its sector, 99840.
    r = ours.img("compare", "a.raw", "b.raw", cwd=imgs)
    assert (r.rc, r.out, r.err) == (1, "Content mismatch at offset 99840!\n", "")


def test_compare_size_warning_then_identical(ours, imgs):
    r = ours.img("compare", "a.raw", "c.raw", cwd=imgs)
    assert r.out == "Warning: Image size mismatch!\nImages are identical.\n"


@pytest.mark.parametrize("args", [
    ["-p", "a.raw", "b.raw"],
    ["-p", "a.raw", "a.raw"],
    ["-p", "r1.raw", "r2.raw"],                 # 2 MiB chunks: 20% steps
    ["-p", "-q", "r1.raw", "r2.raw"],           # -q silences -p
    ["-p", "s1.raw", "s2.raw"],                 # progress across the tail
    ["-p", "s3.raw", "s2.raw"],
    ["-p", "a.raw", "d.raw"],
    ["-p", "-s", "a.raw", "d.raw"],
    ["-p", "-s", "h1.raw", "h3.raw"],
    ["-p", "a.raw", "nosuch"],                  # the progress line still ends
    ["-p", "-T", "bogus", "a.raw", "a.raw"],
    ["-p", "-q", "-T", "bogus", "a.raw", "b.raw"],
])
def test_compare_progress_matches_oracle(ours, oracle, imgs, args):
    same(ours, oracle, imgs, "compare", *args)


def behind_blkdebug(name, fmt, rules):
    """name opened through the blkdebug filter (QEMU's syntax) with the given inject-error rules."""
    return ('json:{"driver": "%s", "file": {"driver": "blkdebug", "inject-error": [%s], '
            '"image": {"driver": "file", "filename": "%s"}}}' % (fmt, ", ".join(rules), name))


def read_fault(sector):
    return '{"event": "read_aio", "errno": 5, "sector": %d}' % sector


@pytest.mark.parametrize("which,sector,extra", [
    ("first", 8, []),                     # the first chunk
    ("second", 8, []),
    ("first", 3 * MiB // 512, []),        # mid-image, after equal chunks
    ("second", 3 * MiB // 512, ["-s"]),
    ("tail", 6 * MiB // 512, []),         # the start of the longer image's tail, read too
    ("tail", 6 * MiB // 512, ["-p"]),
])
def test_compare_read_error_exit_4(ours, oracle, imgs, which, sector, extra):
    """A read error: "Error while reading offset N of F: strerror", exit 4. (r1 and r2 hold the
    same 6 MiB of random data; s3 is r1 followed by 4 MiB more.)"""
    if which == "tail":
        pair = [behind_blkdebug("s3.raw", "raw", [read_fault(sector)]), "s1.raw"]
    else:
        faulty = behind_blkdebug("r1.raw", "raw", [read_fault(sector)])
        pair = [faulty, "r2.raw"] if which == "first" else ["r2.raw", faulty]
    a = same(ours, oracle, imgs, "compare", *extra, *pair)
    assert a.rc == 4 and "Error while reading offset" in a.err


@pytest.mark.parametrize("order,extra", [("first", []), ("second", []), ("second", ["-s"])])
def test_compare_status_error_exit_3(ours, oracle, imgs, tmp_path, order, extra):
    """Block status failing (an L2 table that cannot be read): "Sector allocation test failed
    for F", exit 3."""
    r = oracle.img("convert", "-O", "qcow2", str(imgs / "r1.raw"), str(tmp_path / "r1.qcow2"))
    assert r.rc == 0, r
    faulty = behind_blkdebug(str(tmp_path / "r1.qcow2"), "qcow2",
                             ['{"event": "l2_load", "errno": 5}'])
    pair = [faulty, "r2.raw"] if order == "first" else ["r2.raw", faulty]
    a = same(ours, oracle, imgs, "compare", *extra, *pair)
    assert a.rc == 3 and "Sector allocation test failed for" in a.err
