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


# ---- info and map through a filter ----

FILTER_OPTS = {
    "preallocate": "driver=preallocate",
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
        outs.append((info.rc, strip_child(info.out), info.err,
                     strip_json_children(json.loads(infoj.out)) if infoj.rc == 0 else infoj.err,
                     m.out, m.err, map_json(tool, *args, cwd=d)))
    assert outs[0] == outs[1]
    assert outs[0][0] == 0
