# SPDX-License-Identifier: MIT
"""QED against the oracle (qemu-img/qemu-io 7.2; expectations checked by hand with 9.1).

Layout: /work/shared/specs/qed.txt. 9.1 and 7.2 agree on everything compared here (create
layout and messages, open errors, check and repair counters, need-check handling, resize,
rebase, commit); 9.1's human info adds the child node, stripped with strip_child.

One deliberate difference from both: a partial write into a zero cluster (offset 1) of an
image with a backing file. qemu fills the rest of the new cluster from the backing file, so
bytes the guest read as zeroes change; qimg fills it with zeroes as qed.txt says ("Zero data
clusters": "populated with zeroes and the data being written")."""
import json
import struct

import pytest

from conftest import strip_child

KiB, MiB = 1 << 10, 1 << 20
CS = 64 * KiB  # default cluster size


def header(cs=CS, ts=4, hs=1, feat=0, compat=0, auto=0, l1=CS, size=4 * MiB, bno=0, bns=0):
    """qed.txt: Header (little-endian)."""
    return struct.pack("<IIIIQQQQQII", 0x00444551, cs, ts, hs, feat, compat, auto, l1, size,
                       bno, bns)


def same(a, b):
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)


def check_clean(tool, img):
    r = tool.img("check", img)
    assert r.rc == 0 and r.out.startswith("No errors were found on the image.\n"), r


def poke64(path, off, value):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(struct.pack("<Q", value))


def features(path):
    return struct.unpack("<Q", path.read_bytes()[16:24])[0]


CREATE = {
    "default": ([], "10M"),
    "4k-ts2": (["-o", "cluster_size=4k,table_size=2"], "64M"),
    "ts16": (["-o", "table_size=16"], "1G"),
    "odd-size": ([], "1000"),
    "zero-size": ([], "0"),
    "max-4k-ts2": (["-o", "cluster_size=4k,table_size=2"], "4G"),
    "big": ([], "64T"),
}


@pytest.mark.parametrize("name", CREATE)
def test_create_layout_equals_oracle(ours, oracle, tmp_path, name):
    opts, size = CREATE[name]
    a = ours.img("create", "-f", "qed", *opts, "a.qed", size)
    b = oracle.img("create", "-f", "qed", *opts, "b.qed", size)
    assert (a.rc, a.out.replace("a.qed", "X"), a.err) == (b.rc, b.out.replace("b.qed", "X"), b.err)
    assert (tmp_path / "a.qed").read_bytes() == (tmp_path / "b.qed").read_bytes()
    check_clean(oracle, "a.qed")
    ja = json.loads(ours.img("info", "--output=json", "a.qed").out)
    jb = json.loads(oracle.img("info", "--output=json", "a.qed").out)
    ja.pop("children", None)
    assert ja == jb
    assert strip_child(ours.img("info", "a.qed").out) == oracle.img("info", "a.qed").out


CREATE_ERRORS = {
    "cluster-1000": ["-o", "cluster_size=1000"],
    "cluster-0": ["-o", "cluster_size=0"],
    "cluster-128M": ["-o", "cluster_size=128M"],
    "table-3": ["-o", "table_size=3"],
    "table-32": ["-o", "table_size=32"],
    "table-0": ["-o", "table_size=0"],
    "size-over-max": ["-o", "cluster_size=4k,table_size=2"],  # 4G max, asks 5G
    # qemu's maximum (entries^2 * cluster) wraps to 0 in 64 bits: "less than 0 bytes"
    "max-wraps": ["-o", "cluster_size=64M,table_size=16"],
}


@pytest.mark.parametrize("name", CREATE_ERRORS)
def test_create_errors_as_oracle(ours, oracle, tmp_path, name):
    size = "5G" if name == "size-over-max" else "1M"
    a = ours.img("create", "-f", "qed", *CREATE_ERRORS[name], "a.qed", size)
    b = oracle.img("create", "-f", "qed", *CREATE_ERRORS[name], "b.qed", size)
    assert a.rc == b.rc == 1
    assert (a.out.replace("a.qed", "X"), a.err.replace("a.qed", "X")) == \
        (b.out.replace("b.qed", "X"), b.err.replace("b.qed", "X"))
    # qemu checks the options after making the file and leaves it behind, empty
    assert (tmp_path / "a.qed").exists() == (tmp_path / "b.qed").exists()


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "qed"])
def test_create_with_backing(ours, oracle, tmp_path, fmt):
    """backing_fmt=raw becomes the no-probe feature bit; other formats are not recorded."""
    assert oracle.img("create", "-q", "-f", fmt, "base", "3M").rc == 0
    a = ours.img("create", "-f", "qed", "-b", "base", "-F", fmt, "a.qed")
    b = oracle.img("create", "-f", "qed", "-b", "base", "-F", fmt, "b.qed")
    assert (a.rc, a.out.replace("a.qed", "X")) == (b.rc, b.out.replace("b.qed", "X"))
    data = (tmp_path / "a.qed").read_bytes()
    assert data == (tmp_path / "b.qed").read_bytes()
    assert features(tmp_path / "a.qed") == (5 if fmt == "raw" else 1)
    assert data[64:68] == b"base"
    ia, ib = ours.img("info", "a.qed"), oracle.img("info", "a.qed")
    assert strip_child(ia.out) == ib.out
    assert ("backing file format: raw" in ia.out) == (fmt == "raw")
    ja = json.loads(ours.img("info", "--output=json", "--backing-chain", "a.qed").out)
    jb = json.loads(oracle.img("info", "--output=json", "--backing-chain", "a.qed").out)
    for x in ja + jb:
        x.pop("children", None)
        x.pop("actual-size", None)
    assert ja == jb


def io_both(ours, oracle, tmp_path, create, cmds, size="4M", backing=None):
    """Run the same qemu-io commands on an image each tool created; return both paths."""
    for tool, name in ((ours, "a.qed"), (oracle, "b.qed")):
        extra = ["-b", backing, "-F", "raw"] if backing else []
        assert tool.img("create", "-q", "-f", "qed", *extra, *create, name, size).rc == 0
        args = []
        for c in cmds:
            args += ["-c", c]
        r = tool.io("-f", "qed", *args, name)
        assert r.rc == 0 and "failed" not in r.out + r.err, r
    return tmp_path / "a.qed", tmp_path / "b.qed"


WRITES = {
    # a partial zero write is written as zeroed data (a cluster is allocated); whole clusters
    # become zero clusters, or get zeroes in place when allocated
    "zero": ["write -z 0 512", "write -z 64k 64k", "write -P 1 128k 512", "write -z 128k 64k",
             "write -z 192k 128k", "write -z 1000k 100k"],
    "unaligned": ["write -P 3 1000 3000", "write -P 4 70000 1200000", "read -P 3 1000 3000"],
    "overwrite": ["write -P 1 0 1M", "write -P 2 4k 8k", "write -P 3 60k 8k", "read -P 2 4k 8k"],
    "zero-unmap": ["write -P 1 0 1M", "write -z -u 0 512k", "read -P 0 0 512k"],
    "discard": ["write -P 1 0 1M", "discard 0 512k", "read -P 1 0 512k"],
}


@pytest.mark.parametrize("name", WRITES)
@pytest.mark.parametrize("create", [[], ["-o", "cluster_size=4k,table_size=2"]],
                         ids=["64k", "4k"])
def test_writes_byte_identical(ours, oracle, tmp_path, name, create):
    a, b = io_both(ours, oracle, tmp_path, create, WRITES[name])
    assert a.read_bytes() == b.read_bytes()
    check_clean(oracle, "a.qed")
    same(ours.img("map", "--output=json", "b.qed"), ours.img("map", "--output=json", "a.qed"))
    assert ours.img("map", "--output=json", "a.qed").out.replace(', "compressed": false', "") \
        == oracle.img("map", "--output=json", "a.qed").out


def test_several_l2_tables(ours, oracle, tmp_path):
    """Writes across L2 tables: each table goes right after the data that needed it."""
    a, b = io_both(ours, oracle, tmp_path, ["-o", "cluster_size=4k,table_size=2"],
                   ["write -P 1 0 3M", "write -z 1M 8M", "write -P 5 30M 2M",
                    "write -P 6 50M 100", "write -z 60M 4k"], size="64M")
    assert a.read_bytes() == b.read_bytes()
    assert oracle.img("compare", "a.qed", "b.qed").rc == 0


def test_backing_copy_on_write(ours, oracle, tmp_path):
    (tmp_path / "base.raw").write_bytes(b"\x07" * (3 * MiB))
    cmds = ["write -z 0 64k", "write -P 1 70000 512", "write -P 2 200k 1k", "write -z 1M 1M",
            "write -P 3 2500k 1M", "read -P 7 128k 64k", "read -P 0 3600k 496k"]
    a, b = io_both(ours, oracle, tmp_path, [], cmds, backing="base.raw")
    assert a.read_bytes() == b.read_bytes()
    assert oracle.img("compare", "a.qed", "b.qed").out == "Images are identical.\n"
    x = ours.img("map", "--output=json", "a.qed").out.replace(', "compressed": false', "")
    assert x == oracle.img("map", "--output=json", "a.qed").out
    same(ours.img("map", "a.qed"), oracle.img("map", "a.qed"))
    check_clean(oracle, "a.qed")


def test_zero_cluster_partial_write_reads_zeroes(ours, oracle, tmp_path):
    """qed.txt: a write to a zero cluster fills the new cluster with zeroes. qemu 7.2 and 9.1
    fill it from the backing file instead (the module docstring): we keep the spec."""
    (tmp_path / "base.raw").write_bytes(b"\x07" * MiB)
    assert ours.img("create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", "a.qed").rc == 0
    r = ours.io("-c", "write -z 0 64k", "-c", "write -P 1 1024 512", "a.qed")
    assert r.rc == 0
    for tool in (ours, oracle):
        r = tool.io("-c", "read -P 0 0 1024", "-c", "read -P 1 1024 512",
                    "-c", "read -P 0 1536 64000", "a.qed")
        assert "failed" not in r.out, r
    check_clean(oracle, "a.qed")


def test_convert_both_ways_and_with_backing(ours, oracle, tmp_path):
    data = bytearray(5 * MiB)
    data[:MiB] = b"\x01" * MiB
    data[3 * MiB:3 * MiB + 4096] = b"\x02" * 4096
    (tmp_path / "src.raw").write_bytes(bytes(data))
    for tool, name in ((ours, "a"), (oracle, "b")):
        assert tool.img("convert", "-O", "qed", "src.raw", name + ".qed").rc == 0
        assert tool.img("convert", "-O", "raw", name + ".qed", name + ".raw").rc == 0
        assert tool.img("convert", "-O", "qed", "-B", "src.raw", "-F", "raw", name + ".qed",
                        name + "-top.qed").rc == 0
    assert (tmp_path / "a.qed").read_bytes() == (tmp_path / "b.qed").read_bytes()
    assert (tmp_path / "a.raw").read_bytes() == bytes(data)
    assert (tmp_path / "a-top.qed").read_bytes() == (tmp_path / "b-top.qed").read_bytes()
    same(ours.img("compare", "a.qed", "src.raw"), oracle.img("compare", "a.qed", "src.raw"))


# Hostile headers: qemu's open checks in its order and words (qed.txt: Header).
HOSTILE = {
    "magic": lambda: b"QEX\0" + header()[4:],
    "features": lambda: header(feat=0x18),
    "cluster-1000": lambda: header(cs=1000),
    "cluster-128M": lambda: header(cs=1 << 27),
    "table-3": lambda: header(ts=3),
    "table-0": lambda: header(ts=0),
    "table-1": lambda: header(ts=1),  # qemu creates such images but never opens them
    "size-odd": lambda: header(size=1000),
    "size-huge": lambda: header(size=1 << 60),
    "l1-past-end": lambda: header(l1=1 << 40),
    "l1-unaligned": lambda: header(l1=CS + 1),
    "l1-in-header": lambda: header(l1=0),
    "l1-overflow": lambda: header(l1=(1 << 64) - CS),
    "header-huge": lambda: header(hs=0x10000000),
    "backing-name-outside-header": lambda: header(feat=1, bno=CS - 6, bns=100),
    "backing-name-4096": lambda: header(feat=1, hs=2, l1=2 * CS, bno=64, bns=4096),
    "autoclear": lambda: header(auto=8),
    "compat": lambda: header(compat=8),
    "short-file": lambda: header()[:40],
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_header(ours, oracle, tmp_path, name):
    h = HOSTILE[name]()
    img = tmp_path / "h.qed"
    img.write_bytes(h if name == "short-file" else h + bytes(8 * CS - len(h)))
    for args in (["info"], ["check"], ["map", "--output=json"]):
        a = ours.img(*args, "-f", "qed", "h.qed")
        b = oracle.img(*args, "-f", "qed", "h.qed")
        assert a.rc >= 0
        assert (a.rc, a.err) == (b.rc, b.err), args
        if args == ["info"]:
            assert strip_child(a.out) == b.out
        elif args[0] == "map":
            assert a.out.replace(', "compressed": false', "") == b.out


def test_header_size_too_large(ours, oracle, tmp_path):
    """header_size * cluster_size past 32 bits, with the L1 table (sparse) after it."""
    with open(tmp_path / "h.qed", "wb") as f:
        f.write(header(cs=4096, ts=2, hs=0x100000, l1=0x100000 * 4096))
        f.truncate(0x100000 * 4096 + 4 * 4096)
    a, b = ours.img("info", "h.qed"), oracle.img("info", "h.qed")
    assert (a.rc, a.err) == (b.rc, b.err) == (1, "qemu-img: Could not open 'h.qed': "
                                                  "QED header size is too large\n")


def base_image(oracle, tmp_path):
    """4M, data clusters at 0x50000, 0x60000 (guest 0, 64k), L2 at 0x70000, 0xb0000 (2M)."""
    assert oracle.img("create", "-q", "-f", "qed", "base.qed", "4M").rc == 0
    assert oracle.io("-c", "write -P 1 0 128k", "-c", "write -P 2 2M 64k", "base.qed").rc == 0
    return tmp_path / "base.qed"


# name -> (file offset, new value) on base_image: an L1 entry at 0x10000, L2 entries at 0x70000
CORRUPTIONS = {
    "l2-past-end": (0x70008, 0x1000000),
    "l2-unaligned": (0x70008, 0x60100),
    "l2-duplicate": (0x70100, 0x50000),
    "l1-past-end": (0x10000, 0x1000000),
    "l1-unaligned": (0x10008, 0x1234),
    "l1-duplicate": (0x10008, 0x70000),
    "leak": None,
    "clean": None,
}


def corrupt(oracle, tmp_path, name, dst):
    src = base_image(oracle, tmp_path)
    dst = tmp_path / dst
    dst.write_bytes(src.read_bytes())
    if CORRUPTIONS[name]:
        poke64(dst, *CORRUPTIONS[name])
    if name == "leak":
        with open(dst, "ab") as f:
            f.write(bytes(2 * CS))
    return dst


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_check_and_repair_as_oracle(ours, oracle, tmp_path, name):
    a = corrupt(oracle, tmp_path, name, "a.qed")
    b = tmp_path / "b.qed"
    b.write_bytes(a.read_bytes())
    for args in (["check"], ["check", "--output=json"], ["check", "-r", "leaks"],
                 ["check", "-r", "all"], ["check"]):
        x, y = ours.img(*args, "a.qed"), oracle.img(*args, "b.qed")
        assert (x.rc, x.out.replace("a.qed", "X"), x.err) == \
            (y.rc, y.out.replace("b.qed", "X"), y.err), args
    assert a.read_bytes() == b.read_bytes()


def test_need_check_set_while_dirty_and_cleared_on_close(ours, oracle, tmp_path):
    assert ours.img("create", "-q", "-f", "qed", "a.qed", "4M").rc == 0
    r = ours.io("-c", "write -P 1 0 64k", "-c", "abort", "a.qed")
    assert r.rc != 0
    assert features(tmp_path / "a.qed") == 2  # QED_F_NEED_CHECK, left by the "crash"
    check_clean(oracle, "a.qed")  # a read-only check leaves the flag
    assert features(tmp_path / "a.qed") == 2
    r = ours.io("-c", "read -P 1 0 64k", "a.qed")  # a writer checks, then clears it
    assert r.rc == 0 and "failed" not in r.out
    assert features(tmp_path / "a.qed") == 0
    assert ours.io("-c", "write -P 2 64k 64k", "a.qed").rc == 0
    assert features(tmp_path / "a.qed") == 0  # a clean close


def test_need_check_not_set_with_backing_file(ours, tmp_path):
    """With a backing file qemu flushes data before the table update instead."""
    (tmp_path / "base.raw").write_bytes(bytes(MiB))
    assert ours.img("create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", "a.qed").rc == 0
    ours.io("-c", "write -P 1 0 64k", "-c", "abort", "a.qed")
    assert features(tmp_path / "a.qed") == 5


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n != "clean"])
def test_dirty_image_repaired_on_open_as_oracle(ours, oracle, tmp_path, name):
    """A read-write open of an image marked dirty repairs what check -r would."""
    a = corrupt(oracle, tmp_path, name, "a.qed")
    poke64(a, 16, 2)
    b = tmp_path / "b.qed"
    b.write_bytes(a.read_bytes())
    x = ours.io("-c", "read 0 512", "a.qed")
    y = oracle.io("-c", "read 0 512", "b.qed")
    assert x.rc == y.rc
    assert a.read_bytes() == b.read_bytes()
    # read-only opens change nothing
    before = a.read_bytes()
    poke64(a, 16, 2)
    before = a.read_bytes()
    assert ours.img("info", "a.qed").rc == 0
    assert a.read_bytes() == before


RESIZES = [["8M"], ["+3G"], ["--", "-1M"], ["--shrink", "1M"], ["1000"], ["100T"],
           ["--preallocation=full", "16M"], ["--preallocation=falloc", "16M"]]


@pytest.mark.parametrize("args", RESIZES, ids=lambda a: " ".join(a))
def test_resize_as_oracle(ours, oracle, tmp_path, args):
    for tool, name in ((ours, "a.qed"), (oracle, "b.qed")):
        assert tool.img("create", "-q", "-f", "qed", name, "4M").rc == 0
    x = ours.img("resize", "-f", "qed", "a.qed", *args)
    y = oracle.img("resize", "-f", "qed", "b.qed", *args)
    same(x, y)
    assert (tmp_path / "a.qed").read_bytes() == (tmp_path / "b.qed").read_bytes()


def test_rebase_and_commit_as_oracle(ours, oracle, tmp_path):
    for tool, t in ((ours, "a"), (oracle, "b")):
        assert tool.img("create", "-q", "-f", "qed", f"base.{t}", "4M").rc == 0
        assert tool.io("-f", "qed", "-c", "write -P 1 0 2M", f"base.{t}").rc == 0
        assert tool.img("create", "-q", "-f", "qed", "-b", f"base.{t}", "-F", "qed",
                        f"top.{t}").rc == 0
        assert tool.io("-f", "qed", "-c", "write -P 2 1M 1M", "-c", "write -z 3M 64k",
                       f"top.{t}").rc == 0
        # qemu cannot empty a QED layer: the top stays as it was, and commit succeeds
        r = tool.img("commit", f"top.{t}")
        assert (r.rc, r.out, r.err) == (0, "Image committed.\n", "")
        assert tool.img("create", "-q", "-f", "raw", f"new.{t}", "4M").rc == 0
        assert tool.img("rebase", "-u", "-b", f"new.{t}", "-F", "raw", f"top.{t}").rc == 0
        assert tool.img("rebase", "-b", f"base.{t}", "-F", "qed", f"top.{t}").rc == 0
        (tmp_path / f"after-rebase.{t}").write_bytes((tmp_path / f"top.{t}").read_bytes())
        assert tool.img("rebase", "-b", "", f"top.{t}").rc == 0
    for name in ("base", "after-rebase", "top"):
        assert (tmp_path / f"{name}.a").read_bytes().replace(b".a", b".b") == \
            (tmp_path / f"{name}.b").read_bytes(), name
    assert oracle.img("compare", "top.a", "top.b").rc == 0


@pytest.mark.parametrize("length", [2000, 4040])
def test_rebase_long_names_as_oracle(ours, oracle, tmp_path, length):
    """QED has no 1023-byte limit (qcow2's): the name must fit in the header cluster(s)
    after the 64-byte header, else ENOSPC ("No space left in the file header")."""
    for tool, name in ((ours, "a.qed"), (oracle, "b.qed")):
        assert tool.img("create", "-q", "-f", "qed", "-o", "cluster_size=4k,table_size=2",
                        name, "1M").rc == 0
    x = ours.img("rebase", "-u", "-F", "raw", "-b", "x" * length, "a.qed")
    y = oracle.img("rebase", "-u", "-F", "raw", "-b", "x" * length, "b.qed")
    # qimg's CLI cuts messages at 4 KiB (cli_error's buffer): compare the start only
    assert (x.rc, x.out, x.err[:3000]) == (y.rc, y.out, y.err[:3000])
    assert (tmp_path / "a.qed").read_bytes() == (tmp_path / "b.qed").read_bytes()


UNSUPPORTED = {
    "amend": ["amend", "-o", "cluster_size=4k", "a.qed"],
    "measure": ["measure", "-O", "qed", "--size", "1G"],
    "snapshot": ["snapshot", "-c", "s1", "a.qed"],
    "bitmap": ["bitmap", "--add", "a.qed", "b0"],
}


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_unsupported_operations_as_oracle(ours, oracle, tmp_path, name):
    """9.1's QED has no amend, measure, snapshots or persistent bitmaps."""
    assert oracle.img("create", "-q", "-f", "qed", "a.qed", "1M").rc == 0
    before = (tmp_path / "a.qed").read_bytes()
    x, y = ours.img(*UNSUPPORTED[name]), oracle.img(*UNSUPPORTED[name])
    assert x.rc == y.rc == 1
    # the bitmap message names qemu's internal node ("#block106"): compare up to it
    # 9.1: "Could not create snapshot 's1': Operation not supported"; 7.2 adds "-95 (...)"
    want = y.err.replace("-95 (Operation not supported)", "Operation not supported")
    assert x.err.split("#block")[0] == want.split("#block")[0]
    assert (tmp_path / "a.qed").read_bytes() == before


@pytest.mark.parametrize("name", ["l2-past-end", "l2-duplicate", "leak", "clean"])
def test_check_repair_of_dirty_image_as_oracle(ours, oracle, tmp_path, name):
    """check -r on an image marked dirty: repaired as qemu does, the flag cleared on close."""
    a = corrupt(oracle, tmp_path, name, "a.qed")
    poke64(a, 16, 2)
    b = tmp_path / "b.qed"
    b.write_bytes(a.read_bytes())
    x, y = ours.img("check", "-r", "all", "a.qed"), oracle.img("check", "-r", "all", "b.qed")
    assert (x.rc, x.out.replace("a.qed", "X"), x.err) == (y.rc, y.out.replace("b.qed", "X"), y.err)
    assert a.read_bytes() == b.read_bytes()
    assert features(a) == 0
