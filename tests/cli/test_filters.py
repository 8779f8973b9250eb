# SPDX-License-Identifier: MIT
"""Block filter drivers (copy-on-read, preallocate, compress, throttle ...)
against the oracle (Debian's qemu-img/qemu-io 7.2).

Filters are reached from --image-opts and json: names, as QEMU names them.
9.1's human `info` adds "Child node" sections and its JSON info a "children"
list that 7.2 lacks; 9.1's map JSON adds "compressed": those are stripped
before comparing (9.1's exact output was checked by hand against the 9.1
oracle).
"""
import json
import os
import re

import pytest

from conftest import QIMG_IO, strip_child

pytestmark = pytest.mark.skipif(not QIMG_IO.exists(), reason="qimg-io is not built")


def normalize(text):
    return re.sub(r"\d+(\.\d+)? \S+/sec and [0-9.]+ ops/sec", "X", re.sub(
        r"\d\d\.\d\d sec", "T", text))


def workdirs(both):
    """One directory per tool, so each works on images it made itself."""
    out = []
    for tool in both:
        d = tool.cwd / ("oracle" if tool is both[1] else "ours")
        d.mkdir(exist_ok=True)
        out.append(d)
    return out


def strip_child_nodes(text):
    """Drop 9.1's "Child node '...':" sections (any child name; 7.2 prints none)."""
    return strip_child(text, "Child node '")


def strip_json_children(obj):
    if isinstance(obj, dict):
        obj.pop("children", None)
        for v in obj.values():
            strip_json_children(v)
    return obj


def map_json(tool, *args, cwd):
    r = tool.img("map", "--output=json", *args, cwd=cwd)
    assert r.rc == 0, r
    return [{k: v for k, v in e.items() if k != "compressed"} for e in json.loads(r.out)]


def make_chain(tool, d):
    """base.qcow2 (0xaa in its first 64 KiB) <- top.qcow2 (0x01 at 128 KiB)."""
    assert tool.img("create", "-f", "qcow2", "base.qcow2", "1M", cwd=d).rc == 0
    assert tool.io("-c", "write -P 0xaa 0 64k", "base.qcow2", cwd=d).rc == 0
    assert tool.img("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2",
                    cwd=d).rc == 0
    assert tool.io("-c", "write -P 1 128k 64k", "top.qcow2", cwd=d).rc == 0


COR_TOP = "driver=copy-on-read,file.driver=qcow2,file.file.filename=top.qcow2"


# ---- copy-on-read ----

def test_cor_reads_populate_top(both):
    """A read through copy-on-read stores the clusters it read from the backing file (and
    zero clusters where it read zeroes) in the top image; qemu-io's map shows them."""
    results = []
    for tool, d in zip(both, workdirs(both)):
        make_chain(tool, d)
        r = tool.io("-c", "read -P 0xaa 4k 512", "-c", "read -P 0 100k 4k", "-c",
                    "read -P 1 130k 1k", "-c", "map", "--image-opts", COR_TOP, cwd=d)
        results.append((r.rc, normalize(r.out), r.err, map_json(tool, "top.qcow2", cwd=d)))
        # the populated image is valid for the oracle and holds the same data
        assert both[1].img("check", "top.qcow2", cwd=d).rc == 0
    assert results[0] == results[1]
    assert "192 KiB (0x30000) bytes     allocated at offset 0 bytes (0x0)" in results[0][1]


def test_cor_json_filename_and_chain_map(both):
    """Reached through a json: name too; map through the filter skips it (depths as the
    child's chain has them)."""
    name = ('json:{"driver": "copy-on-read", "file": {"driver": "qcow2", '
            '"file": {"driver": "file", "filename": "top.qcow2"}}}')
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_chain(tool, d)
        r = tool.io("-c", "read -P 0 512k 4k", "-c", "map", name, cwd=d)
        outs.append((r.rc, normalize(r.out), r.err, map_json(tool, "top.qcow2", cwd=d)))
    assert outs[0] == outs[1]


@pytest.mark.parametrize("cmd", [["info"], ["map"], ["io", "-r"]])
def test_cor_read_only_refused(both, cmd):
    """A read-only open (qemu-img info/map, qemu-io -r) has nothing to copy into."""
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_chain(tool, d)
        if cmd[0] == "io":
            r = tool.io(*cmd[1:], "-c", "read 0 4k", "--image-opts", COR_TOP, cwd=d)
        else:
            r = tool.img(*cmd, "--image-opts", COR_TOP, cwd=d)
        outs.append((r.rc, r.out, r.err))
    assert outs[0] == outs[1]
    assert "Block node is read-only" in outs[0][2]


@pytest.mark.parametrize("extra,msg", [
    (",bottom=x", "Bottom node 'x' not found"),
    (",foo=x", "Block format 'copy-on-read' does not support the option 'foo'"),
])
def test_cor_bad_options(both, extra, msg):
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_chain(tool, d)
        r = tool.io("-c", "read 0 4k", "--image-opts", COR_TOP + extra, cwd=d)
        outs.append((r.rc, r.out, r.err))
    assert outs[0] == outs[1]
    assert msg in outs[0][2]


# ---- preallocate ----

PREALLOC_QCOW2 = "driver=qcow2,file.driver=preallocate,file.file.driver=file,file.file.filename=p.qcow2"


@pytest.mark.parametrize("opts", ["", ",file.prealloc-align=4096,file.prealloc-size=8192"])
def test_preallocate_under_qcow2(both, opts):
    """Writes through the filter grow the file in preallocated steps; on close it is cut
    back to the data: the same file bytes as the oracle's, a clean check."""
    outs, files = [], []
    for tool, d in zip(both, workdirs(both)):
        assert tool.img("create", "-f", "qcow2", "p.qcow2", "64M", cwd=d).rc == 0
        r = tool.io("-c", "write -P 1 0 64k", "-c", "write -P 2 10M 4k", "-c",
                    "read -P 2 10M 4k", "-c", "map", "--image-opts", PREALLOC_QCOW2 + opts,
                    cwd=d)
        outs.append((r.rc, normalize(r.out), r.err))
        files.append((d / "p.qcow2").read_bytes())
        c = both[1].img("check", "p.qcow2", cwd=d)
        assert c.rc == 0 and "No errors were found" in c.out, c
    assert outs[0] == outs[1]
    assert files[0] == files[1]


@pytest.mark.parametrize("extra", [
    ",file.prealloc-align=3",
    ",file.prealloc-size=-1",
    ",file.prealloc-align=abc",
    ",file.prealloc-bogus=1",
])
def test_preallocate_bad_options(both, extra):
    outs = []
    for tool, d in zip(both, workdirs(both)):
        assert tool.img("create", "-f", "qcow2", "p.qcow2", "64M", cwd=d).rc == 0
        r = tool.io("-c", "read 0 4k", "--image-opts", PREALLOC_QCOW2 + extra, cwd=d)
        outs.append((r.rc, r.out, r.err))
    assert outs[0] == outs[1]
    assert outs[0][0] != 0


# ---- compress ----

def make_source(path):
    """1 MiB raw: compressible data, random data and zeroes, in whole 64 KiB clusters."""
    with open(path, "wb") as f:
        f.truncate(1 << 20)
        f.write(b"abcd" * (1 << 15))
        f.seek(512 << 10)
        f.write(os.urandom(64 << 10))
        f.seek(768 << 10)
        f.write(bytes(range(256)) * 256)


COMPRESS_QCOW2 = "driver=compress,file.driver=qcow2,file.file.filename=c.qcow2"


def test_compress_convert_makes_compressed_clusters(both):
    """convert -n through the filter stores compressed clusters (an incompressible one
    plainly); the oracle's check and map agree with what it made itself."""
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_source(d / "src.raw")
        assert tool.img("create", "-f", "qcow2", "c.qcow2", "1M", cwd=d).rc == 0
        r = tool.img("convert", "-n", "src.raw", "--target-image-opts", COMPRESS_QCOW2, cwd=d)
        check = both[1].img("check", "c.qcow2", cwd=d)
        assert check.rc == 0, check
        assert both[1].img("compare", "src.raw", "c.qcow2", cwd=d).rc == 0
        outs.append((r.rc, r.out, r.err, check.out, map_json(both[1], "c.qcow2", cwd=d)))
    assert outs[0] == outs[1]
    assert "compressed clusters" in outs[0][3] and "0.00% compressed" not in outs[0][3]


def test_compress_qemu_io_writes(both):
    """Partial clusters are read, merged and written whole; a cluster already allocated
    cannot take a compressed write (EIO), as in QEMU."""
    outs = []
    for tool, d in zip(both, workdirs(both)):
        assert tool.img("create", "-f", "qcow2", "c.qcow2", "1M", cwd=d).rc == 0
        r = tool.io("-c", "write -P 1 0 64k", "-c", "write -P 2 512 4k", "-c",
                    "write -P 3 1020k 4k", "-c", "write -P 4 256k 32k", "-c",
                    "read -P 4 256k 32k", "-c", "read -P 0 288k 32k", "-c", "map",
                    "--image-opts", COMPRESS_QCOW2, cwd=d)
        outs.append((r.rc, normalize(r.out), r.err, map_json(both[1], "c.qcow2", cwd=d),
                     both[1].img("check", "c.qcow2", cwd=d).out))
    assert outs[0] == outs[1]
    assert "write failed: Input/output error" in outs[0][1]


@pytest.mark.parametrize("child", ["file.driver=file,file.filename=r.raw",
                                   "file.driver=raw,file.file.filename=r.raw"])
def test_compress_refuses_child_without_compression(both, child):
    outs = []
    for tool, d in zip(both, workdirs(both)):
        (d / "r.raw").write_bytes(bytes(1 << 16))
        r = tool.io("-c", "write 0 4k", "--image-opts", "driver=compress," + child, cwd=d)
        outs.append((r.rc, r.out, r.err))
    assert outs[0] == outs[1]
    assert "Compression is not supported for underlying format" in outs[0][2]


# ---- throttle ----

THROTTLE_RAW = "driver=throttle,throttle-group=tg,file.driver=file,file.filename=r.raw"


def test_throttle_data_and_rate(both):
    """Data passes unchanged; 3 MiB at 1 MiB/s (the first MiB a burst) take about 2 s."""
    import time
    outs = []
    for tool, d in zip(both, workdirs(both)):
        (d / "r.raw").write_bytes(bytes(4 << 20))
        t0 = time.monotonic()
        r = tool.io("--object", "throttle-group,id=tg,limits.bps-total=1048576",
                    "-c", "write -P 7 0 1M", "-c", "read -P 7 0 1M", "-c", "read -P 0 1M 1M",
                    "--image-opts", THROTTLE_RAW, cwd=d)
        elapsed = time.monotonic() - t0
        outs.append((r.rc, re.sub(r"\d+ ops;.*", "", r.out), r.err))
        assert 1.4 < elapsed < 6, elapsed
    assert outs[0] == outs[1]


def test_throttle_group_shared_by_json_object(both):
    outs = []
    for tool, d in zip(both, workdirs(both)):
        (d / "r.raw").write_bytes(bytes(1 << 20))
        r = tool.io("--object", '{"qom-type": "throttle-group", "id": "tg", '
                    '"limits": {"iops-total": 1000}}', "-c", "write -P 9 0 4k",
                    "-c", "read -P 9 0 4k",
                    'json:{"driver": "throttle", "throttle-group": "tg", '
                    '"file": {"driver": "file", "filename": "r.raw"}}', cwd=d)
        outs.append((r.rc, normalize(r.out), r.err))
    assert outs[0] == outs[1]
    assert outs[0][0] == 0


@pytest.mark.parametrize("objopts", [
    "limits.iops-total=5,limits.iops-read=3",
    "limits.bps-total=5,limits.bps-write-max=8",
    "limits.iops-total-max=5",
    "limits.iops-total=-1",
    "limits.bps-total=1000000000000001",
    "limits.iops-total=5,limits.iops-total-max=2",
    "limits.iops-total=5,limits.iops-total-max=20,limits.iops-total-max-length=0",
    "limits.iops-size=5",
    "limits.iops-total-max-length=5",
    "limits.iops-total=5,limits.iops-total-max=6,limits.iops-total-max-length=100000000000",
    "limits.iops-total=1000000000000000,limits.iops-total-max=1000000000000000,"
    "limits.iops-total-max-length=2",
    "limits.iops-total=5,limits.iops-total-max=6,limits.iops-total-max-length=-1",
    "limits.iops-total=1.5",
    "x-iops-total=abc",
    "limits.foo=1",
    "limits=5",
])
def test_throttle_group_bad_limits(both, objopts):
    outs = []
    for tool, d in zip(both, workdirs(both)):
        (d / "r.raw").write_bytes(bytes(1 << 16))
        r = tool.io("--object", "throttle-group,id=tg," + objopts, "-c", "read 0 4k",
                    "--image-opts", THROTTLE_RAW, cwd=d)
        outs.append((r.rc, r.out, r.err))
    assert outs[0] == outs[1]
    assert outs[0][0] != 0


@pytest.mark.parametrize("objects,image", [
    ([], THROTTLE_RAW),
    ([], "driver=throttle,file.driver=file,file.filename=r.raw"),
    (["--object", "secret,id=tg,data=x"], THROTTLE_RAW),
    (["--object", "throttle-group,id=tg"], THROTTLE_RAW.replace(",file.", ",limits.iops-total=5,file.", 1)),
])
def test_throttle_bad_open(both, objects, image):
    outs = []
    for tool, d in zip(both, workdirs(both)):
        (d / "r.raw").write_bytes(bytes(1 << 16))
        r = tool.io(*objects, "-c", "read 0 4k", "--image-opts", image, cwd=d)
        outs.append((r.rc, r.out, r.err))
    assert outs[0] == outs[1]
    assert outs[0][0] != 0


# ---- info and map through a filter ----

FILTER_OPTS = {
    "compress": "driver=compress",
    "preallocate": "driver=preallocate",
    "throttle": "driver=throttle,throttle-group=tg",
}


@pytest.mark.parametrize("flt", sorted(FILTER_OPTS))
def test_info_map_through_filter(both, flt):
    """qemu-img info names the filter node and shows the child's geometry; map through it
    is the child's chain map (the filter is skipped)."""
    spec = FILTER_OPTS[flt] + ",file.driver=qcow2,file.file.filename=top.qcow2"
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_chain(tool, d)
        args = ["--object", "throttle-group,id=tg", "--image-opts", spec]
        info = tool.img("info", *args, cwd=d)
        infoj = tool.img("info", "--output=json", *args, cwd=d)
        m = tool.img("map", *args, cwd=d)
        outs.append((info.rc, strip_child_nodes(info.out), info.err,
                     strip_json_children(json.loads(infoj.out)) if infoj.rc == 0 else infoj.err,
                     m.out, m.err, map_json(tool, *args, cwd=d)))
    assert outs[0] == outs[1]
    assert outs[0][0] == 0


# ---- blkverify ----

def make_verify_pair(tool, d, differ_at=None):
    """a.raw and b.qcow2 with the same data (0x05 at 64 KiB); a.raw also differing at
    differ_at when given."""
    assert tool.img("create", "-f", "raw", "a.raw", "1M", cwd=d).rc == 0
    assert tool.img("create", "-f", "qcow2", "b.qcow2", "1M", cwd=d).rc == 0
    assert tool.io("-f", "raw", "-c", "write -P 5 64k 4k", "a.raw", cwd=d).rc == 0
    assert tool.io("-c", "write -P 5 64k 4k", "b.qcow2", cwd=d).rc == 0
    if differ_at is not None:
        assert tool.io("-f", "raw", "-c", f"write -P 7 {differ_at} 512", "a.raw", cwd=d).rc == 0


def test_blkverify_agreeing_images(both):
    """Reads and writes go to both; equal images read back without complaint."""
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_verify_pair(tool, d)
        r = tool.io("-f", "raw", "-c", "read -P 5 64k 4k", "-c", "write -P 6 8k 512",
                    "-c", "read -P 6 8k 512", "-c", "read 0 1M", "blkverify:a.raw:b.qcow2",
                    cwd=d)
        outs.append((r.rc, normalize(r.out), r.err, (d / "a.raw").read_bytes()[8192:8704]))
    assert outs[0] == outs[1]
    assert outs[0][0] == 0 and outs[0][3] == b"\x06" * 512


@pytest.mark.parametrize("read", ["read 0 1M", "read 64k 128k", "read 130k 512"])
def test_blkverify_mismatch_stops(both, read):
    """A difference ends the process with QEMU's line and status 1."""
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_verify_pair(tool, d, differ_at=130 << 10)
        r = tool.io("-f", "raw", "-c", read, "-c", "read 0 4k", "blkverify:a.raw:b.qcow2",
                    cwd=d)
        outs.append((r.rc, r.out, r.err))
    assert outs[0] == outs[1]
    assert outs[0][0] == 1 and "contents mismatch at offset 133120" in outs[0][2]


def test_blkverify_return_value_mismatch(both):
    """The image under test fails a read the raw copy serves (blkdebug under it)."""
    name = ('json:{"driver": "raw", "file": {"driver": "blkverify", '
            '"raw": {"driver": "file", "filename": "a.raw"}, '
            '"test": {"driver": "raw", "file": {"driver": "blkdebug", '
            '"inject-error": [{"event": "read_aio"}], '
            '"image": {"driver": "file", "filename": "b.raw"}}}}}')
    outs = []
    for tool, d in zip(both, workdirs(both)):
        (d / "a.raw").write_bytes(bytes(1 << 16))
        (d / "b.raw").write_bytes(bytes(1 << 16))
        r = tool.io("-c", "read 0 4k", name, cwd=d)
        outs.append((r.rc, r.out, r.err))
    assert outs[0] == outs[1]
    assert "return value mismatch -5 != 0" in outs[0][2]


@pytest.mark.parametrize("args", [
    ["blkverify:a.raw"],
    ["blkverify:a.raw:"],
    ["blkverify:a.raw:nonexist.raw"],
    ["blkverify:nonexist.raw:a.raw"],
    ["--image-opts", "driver=blkverify,raw.filename=a.raw"],
    ["--image-opts", "driver=blkverify,test.driver=qcow2,test.file.filename=b.qcow2"],
    ["--image-opts", "driver=blkverify,x-raw=a.raw,test.driver=qcow2,"
                     "test.file.filename=b.qcow2,foo=1"],
])
def test_blkverify_bad_open(both, args):
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_verify_pair(tool, d)
        r = tool.io("-c", "read 0 4k", *args, cwd=d)
        outs.append((r.rc, r.out, r.err))
    assert outs[0] == outs[1]
    assert outs[0][0] != 0


def test_blkverify_info_map(both):
    """info shows the raw copy's geometry; map names the raw copy as the file."""
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_verify_pair(tool, d)
        info = tool.img("info", "-f", "raw", "blkverify:a.raw:b.qcow2", cwd=d)
        m = tool.img("map", "-f", "raw", "blkverify:a.raw:b.qcow2", cwd=d)
        outs.append((info.rc, strip_child_nodes(info.out), info.err, m.rc, m.out, m.err,
                     map_json(tool, "-f", "raw", "blkverify:a.raw:b.qcow2", cwd=d)))
    assert outs[0] == outs[1]
    assert "a.raw" in outs[0][4]


# ---- quorum ----

def quorum_opts(files, extra=""):
    kids = ",".join(f"children.{i}.driver=raw,children.{i}.file.filename={f}"
                    for i, f in enumerate(files))
    return f"driver=quorum{extra},{kids}"


def make_copies(d, corrupt=("q1.raw",)):
    """Three 1 MiB copies with 0x01 in the first 64 KiB; corrupt ones hold 0x09 at 4 KiB."""
    for name in ("q0.raw", "q1.raw", "q2.raw"):
        data = bytearray(1 << 20)
        data[:65536] = b"\1" * 65536
        if name in corrupt:
            data[4096:8192] = b"\x09" * 4096
        (d / name).write_bytes(bytes(data))


READS = ["-c", "read -P 1 0 64k", "-c", "read -P 1 0 4k", "-c", "read -P 1 4k 4k"]
Q3 = ["q0.raw", "q1.raw", "q2.raw"]


@pytest.mark.parametrize("files,extra,corrupt", [
    (Q3, ",vote-threshold=2", ("q1.raw",)),        # the corrupted copy is out-voted
    (Q3, ",vote-threshold=1", ("q1.raw",)),
    (Q3, ",vote-threshold=3", ("q1.raw",)),        # no quorum: EIO where they differ
    (Q3, ",vote-threshold=2", ("q1.raw", "q2.raw")),  # two bad copies win
    (Q3, ",vote-threshold=1", ("q1.raw", "q2.raw", "q0.raw")),
    (["q0.raw", "q1.raw"], ",vote-threshold=1", ("q1.raw",)),  # a tie: the later copy
    (["q1.raw", "q0.raw"], ",vote-threshold=1", ("q1.raw",)),
    (["q1.raw", "q0.raw"], ",vote-threshold=2,read-pattern=fifo", ("q1.raw",)),
    (["q1.raw", "q0.raw"], ",vote-threshold=1,read-pattern=quorum", ("q1.raw",)),
])
def test_quorum_votes(both, files, extra, corrupt):
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_copies(d, corrupt)
        r = tool.io(*READS, "-c", "read -v 4k 16", "--image-opts", quorum_opts(files, extra),
                    cwd=d)
        outs.append((r.rc, normalize(r.out), r.err))
    assert outs[0] == outs[1]


def test_quorum_rewrite_corrupted(both):
    """rewrite-corrupted=on repairs the out-voted copy on read."""
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_copies(d)
        r = tool.io(*READS, "--image-opts", quorum_opts(Q3, ",vote-threshold=2,"
                                                         "rewrite-corrupted=on"), cwd=d)
        outs.append((r.rc, normalize(r.out), r.err, (d / "q1.raw").read_bytes()))
    assert outs[0] == outs[1]
    assert outs[0][3][4096:8192] == b"\1" * 4096


def test_quorum_writes_reach_every_child(both):
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_copies(d, ())
        r = tool.io("-c", "write -P 7 100k 8k", "-c", "write -z 0 4k", "-c", "flush",
                    "-c", "read -P 7 100k 8k", "--image-opts",
                    quorum_opts(Q3, ",vote-threshold=2"), cwd=d)
        outs.append((r.rc, normalize(r.out), r.err,
                     [(d / f).read_bytes() for f in Q3]))
    assert outs[0] == outs[1]
    assert outs[0][3][0] == outs[0][3][1] == outs[0][3][2]


def test_quorum_blkverify_mismatch_stops(both):
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_copies(d)
        r = tool.io(*READS, "--image-opts",
                    quorum_opts(["q1.raw", "q0.raw"], ",vote-threshold=2,blkverify=on"), cwd=d)
        outs.append((r.rc, r.out, r.err))
    assert outs[0] == outs[1]
    assert outs[0][0] == 1 and "quorum: offset=0 bytes=65536 contents mismatch at offset 4096" \
        in outs[0][2]


@pytest.mark.parametrize("spec", [
    "driver=quorum",
    "driver=quorum,vote-threshold=1",
    quorum_opts(Q3),
    quorum_opts(Q3, ",vote-threshold=0"),
    quorum_opts(Q3, ",vote-threshold=4"),
    quorum_opts(Q3, ",vote-threshold=x"),
    quorum_opts(Q3, ",vote-threshold=2,read-pattern=bogus"),
    quorum_opts(Q3, ",vote-threshold=2,blkverify=on"),
    quorum_opts(["q0.raw", "q1.raw"], ",vote-threshold=2,blkverify=on,rewrite-corrupted=on"),
    quorum_opts(Q3, ",vote-threshold=2,rewrite-corrupted=x"),
    quorum_opts(Q3, ",vote-threshold=2,foo=1"),
    quorum_opts(["q0.raw", "nonexist.raw"], ",vote-threshold=1"),
    "driver=quorum,vote-threshold=1,children.0=foo",
    "driver=quorum,vote-threshold=1,children.1.driver=raw,children.1.file.filename=q1.raw",
])
def test_quorum_bad_options(both, spec):
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_copies(d, ())
        r = tool.io("-c", "read 0 4k", "--image-opts", spec, cwd=d)
        outs.append((r.rc, r.out, r.err))
    assert outs[0] == outs[1]
    assert outs[0][0] != 0


def test_quorum_info_map(both):
    """info names the node in JSON with its children (listed last first); map shows data
    without a host offset (human map refuses it, as qemu-img does)."""
    spec = quorum_opts(Q3, ",vote-threshold=2")
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_copies(d)
        info = tool.img("info", "--image-opts", spec, cwd=d)
        infoj = tool.img("info", "--output=json", "--image-opts", spec, cwd=d)
        m = tool.img("map", "--image-opts", spec, cwd=d)
        outs.append((info.rc, strip_child_nodes(info.out), info.err,
                     strip_json_children(json.loads(infoj.out)), m.rc, m.out, m.err,
                     map_json(tool, "--image-opts", spec, cwd=d)))
    assert outs[0] == outs[1]
    assert outs[0][0] == 0 and outs[0][1].startswith('image: json:{"children": [')


# ---- blklogwrites ----

BLKLOG = "driver=blklogwrites,file.driver=file,file.filename=d.raw,log.driver=file,log.filename=l.log"


def run_blklog(both, opts, cmds, seed=None):
    """Run cmds through the filter with each tool on a fresh 1 MiB d.raw and an empty (or
    seeded) l.log; returns (rc, out, err, log bytes, data bytes) per tool. The cache mode is
    always named: qemu-io defaults to writethrough, qimg-io to writeback."""
    outs = []
    for tool, d in zip(both, workdirs(both)):
        (d / "d.raw").write_bytes(bytes(1 << 20))
        (d / "l.log").write_bytes(seed or b"")
        r = tool.io(*cmds, "--image-opts", BLKLOG + opts, cwd=d)
        outs.append((r.rc, normalize(r.out), r.err, (d / "l.log").read_bytes(),
                     (d / "d.raw").read_bytes()))
    return outs


@pytest.mark.parametrize("opts,cmds", [
    ("", ["-t", "writeback", "-c", "write -P 1 0 4k", "-c", "write -P 2 8k 512", "-c", "flush",
          "-c", "write -z 16k 4k", "-c", "discard 64k 4k"]),
    (",log-sector-size=4096", ["-t", "writeback", "-c", "write -P 1 512 4k", "-c",
                               "write -f -P 2 8k 512", "-c", "flush", "-c", "flush"]),
    (",log-sector-size=32", ["-t", "writeback", "-c", "write -P 3 0 1k"]),
    (",log-super-update-interval=2", ["-t", "unsafe", "-c", "write -P 1 0 4k", "-c",
                                      "write -P 2 8k 512", "-c", "write -P 3 8k 512"]),
    ("", ["-t", "writethrough", "-c", "write 0 512", "-c", "write 512 512", "-c",
          "write 1k 512"]),
    ("", ["-t", "writeback", "-c", "flush"]),  # nothing written: no log at all
    ("", ["-t", "writeback", "-c", "write 0 512", "-c", "write 512 512", "-c", "write 1k 512",
          "-c", "write -f 0 512", "-c", "write 0 512", "-c", "flush", "-c", "flush"]),
])
def test_blklogwrites_log_is_byte_identical(both, opts, cmds):
    """The log is the dm-log-writes layout QEMU writes, byte for byte."""
    outs = run_blklog(both, opts, cmds)
    assert outs[0] == outs[1]
    assert outs[0][0] == 0


def test_blklogwrites_append(both):
    """log-append=on continues a log (here one QEMU wrote); without it the log restarts."""
    seed = run_blklog(both, "", ["-t", "writeback", "-c", "write -P 1 0 4k", "-c",
                                 "write -P 2 8k 4k"])[1][3]
    assert seed[:8] == b"rhswfsj\0"
    a = run_blklog(both, ",log-append=on", ["-t", "writeback", "-c", "write -P 3 4k 4k",
                                            "-c", "discard 0 4k"], seed)
    b = run_blklog(both, "", ["-t", "writeback", "-c", "write -P 3 4k 512"], seed)
    assert a[0] == a[1] and b[0] == b[1]
    assert len(a[0][3]) > len(seed)


@pytest.mark.parametrize("opts,seed", [
    (",log-sector-size=3", None), (",log-sector-size=16", None),
    (",log-sector-size=16M", None), (",log-sector-size=2M", None),
    (",log-append=on,log-sector-size=512", None), (",log-super-update-interval=0", None),
    (",log-super-update-interval=x", None), (",log-append=x", None), (",foo=1", None),
    (",log-append=on", b"\x55" * 4096),
    (",log-append=on", (0x6a736677736872).to_bytes(8, "little") + (2).to_bytes(8, "little")
     + bytes(496)),
])
def test_blklogwrites_bad_options(both, opts, seed):
    outs = run_blklog(both, opts, ["-t", "writeback", "-c", "write 0 4k"], seed)
    assert outs[0] == outs[1]
    assert outs[0][0] != 0


@pytest.mark.parametrize("spec", [
    "driver=blklogwrites,file.driver=file,file.filename=d.raw",
    "driver=blklogwrites,log.driver=file,log.filename=l.log",
])
def test_blklogwrites_missing_child(both, spec):
    outs = []
    for tool, d in zip(both, workdirs(both)):
        (d / "d.raw").write_bytes(bytes(1 << 16))
        (d / "l.log").write_bytes(b"")
        r = tool.io("-c", "read 0 4k", "--image-opts", spec, cwd=d)
        outs.append((r.rc, r.out, r.err))
    assert outs[0] == outs[1]
    assert "A block device must be specified for" in outs[0][2]


def test_blklogwrites_info_map(both):
    outs = []
    for tool, d in zip(both, workdirs(both)):
        (d / "d.raw").write_bytes(bytes(1 << 20))
        (d / "l.log").write_bytes(b"")
        spec = BLKLOG + ",log-sector-size=4096"
        info = tool.img("info", "--image-opts", spec, cwd=d)
        infoj = tool.img("info", "--output=json", "--image-opts", spec, cwd=d)
        outs.append((info.rc, strip_child_nodes(info.out), info.err,
                     strip_json_children(json.loads(infoj.out)),
                     map_json(tool, "--image-opts", spec, cwd=d)))
    assert outs[0] == outs[1]
    assert outs[0][1].startswith('image: json:{"log": {"driver": "file"')


# ---- raw with offset and size over any child ----

def make_window_source(tool, d):
    assert tool.img("create", "-f", "qcow2", "rq.qcow2", "1M", cwd=d).rc == 0
    assert tool.io("-c", "write -P 3 64k 64k", "-c", "write -P 4 128k 64k", "rq.qcow2",
                   cwd=d).rc == 0


@pytest.mark.parametrize("spec", [
    "driver=raw,offset=64k,size=128k,file.driver=qcow2,file.file.filename=rq.qcow2",
    "driver=raw,offset=0x18000,file.driver=qcow2,file.file.filename=rq.qcow2",
    "driver=raw,file.driver=qcow2,file.file.filename=rq.qcow2",
    "driver=raw,offset=64k,size=64k,file.driver=throttle,file.throttle-group=tg,"
    "file.file.driver=qcow2,file.file.file.filename=rq.qcow2",
])
def test_raw_window_over_format_and_filter(both, spec):
    """raw's offset/size window over a format or a filter: data, info and map (host
    offsets of the qcow2 below, unallocated ranges reading as zeroes) as qemu-img shows."""
    outs = []
    for tool, d in zip(both, workdirs(both)):
        make_window_source(tool, d)
        obj = ["--object", "throttle-group,id=tg"]
        r = tool.io(*obj, "-r", "-c", "read -P 3 0 4k", "-c", "read -v 65532 8",
                    "--image-opts", spec, cwd=d)
        info = tool.img("info", *obj, "--image-opts", spec, cwd=d)
        outs.append((r.rc, normalize(r.out), r.err, info.rc, strip_child_nodes(info.out),
                     info.err, map_json(tool, *obj, "--image-opts", spec, cwd=d)))
    assert outs[0] == outs[1]
    assert outs[0][3] == 0


@pytest.mark.parametrize("window,msg", [
    ("offset=64k,size=1M", "The sum of offset (0) and size (0) has to be smaller or equal to "
                           "the  actual size of the containing file (1048576)"),
    ("offset=2M", "Offset (0) cannot be greater than size of the containing file (1048576)"),
    ("size=1000", "Specified size is not multiple of 512"),
])
def test_raw_window_errors(ours, oracle, window, msg):
    """9.1 names offset and size 0 in the first two messages (7.2: the values given)."""
    spec = f"driver=raw,{window},file.driver=qcow2,file.file.filename=rq.qcow2"
    make_window_source(oracle, ours.cwd)
    a = ours.img("info", "--image-opts", spec)
    b = oracle.img("info", "--image-opts", spec)
    assert a.rc == b.rc == 1
    assert a.err == f"qemu-img: Could not open '{spec}': {msg}\n"
    assert re.sub(r"\(\d+\)", "(N)", a.err) == re.sub(r"\(\d+\)", "(N)", b.err)
