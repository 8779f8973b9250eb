# SPDX-License-Identifier: MIT
"""qemu-img commit through the copy engine: the cases test_chain_commit.py leaves out.

Chains are built by the oracle in two directories; qimg commits in one, qemu-img (7.2) in
the other, and every layer is compared (guest contents, qemu-img check, backing strings,
allocation maps without host offsets), as in test_chain_commit.py.
"""
import json
import os
import time

import pytest

from test_chain_helpers import (MiB, assert_same_images, build_chain, oracle_check_clean,
                                oracle_io, sh)
from conftest import ORACLE_IMG

LAYERS = ["top.qcow2", "mid.qcow2", "base.qcow2"]

# base: data everywhere. mid: zero clusters over base's data (whole and partial, with and
# without an allocation), data. top: zeroes over mid's data, data over mid's zero clusters,
# a partial cluster (COW from base) and data that is all zeroes.
ZEROED_MIDDLE = [
    ("base.qcow2", None, "8M", ["write -P 1 0 8M"]),
    ("mid.qcow2", "base.qcow2", None,
     ["write -z 64k 128k", "write -P 2 1M 1M", "write -z -u 4M 64k", "write -z 6M 4k",
      "write -P 4 7M 64k", "write -z 7M 64k"]),
    ("top.qcow2", "mid.qcow2", None,
     ["write -z 1M 64k", "write -P 3 4M 64k", "write -P 5 5M 4k", "write -P 0 3M 64k",
      "write -z 7M 128k"]),
]


def cluster_map(path, cluster=65536):
    """The oracle's allocation map cut into clusters: (start, depth, present, zero, data,
    has a host offset) per cluster, so that it does not depend on which host clusters happen
    to be contiguous (map merges those) and thus on allocation order."""
    p = sh([ORACLE_IMG, "map", "-U", "--output=json", path], cwd=None)
    out = []
    for e in json.loads(p.stdout):
        for off in range(e["start"], e["start"] + e["length"], cluster):
            out.append((off, e["depth"], e["present"], e["zero"], e["data"], "offset" in e))
    return out


def commit_both(tmp_path, ours, oracle, layers, args, names=LAYERS, sub="", progress=False):
    """Commit in both directories; returns our result. With progress, only the lines after
    the progress output are compared (qemu-img prints a varying number of progress lines)."""
    da, db = tmp_path / "oracle" / sub, tmp_path / "ours" / sub
    for d in (da, db):
        build_chain(oracle, d, layers)
    ro = oracle.img("commit", *args, cwd=da)
    rq = ours.img("commit", *args, cwd=db)
    if progress:
        assert (rq.rc, rq.out.splitlines()[-2:], rq.err) == (ro.rc, ro.out.splitlines()[-2:],
                                                             ro.err)
    else:
        assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)
    assert_same_images(da, db, names, maps=False)
    for n in names:
        assert cluster_map(da / n) == cluster_map(db / n), n
    return rq


@pytest.mark.parametrize("args", [
    ["-b", "base.qcow2", "top.qcow2"],
    ["top.qcow2"],
    ["-d", "top.qcow2"],
    ["-f", "qcow2", "mid.qcow2"],
    ["-t", "none", "-b", "base.qcow2", "top.qcow2"],
])
def test_commit_zeroed_middle_layer(tmp_path, ours, oracle, args):
    """Zero clusters of the layers above base become zeroes in base (over its data), data that
    is all zeroes stays data, and base keeps the allocation under zeroed clusters."""
    r = commit_both(tmp_path, ours, oracle, ZEROED_MIDDLE, args)
    assert r.out == "Image committed.\n"


@pytest.mark.parametrize("args", [["top.qcow2"], ["-b", "base.qcow2", "top.qcow2"]])
def test_commit_top_smaller_than_base(tmp_path, ours, oracle, args):
    """A top shorter than its backing: only its length is committed and base keeps its size
    (and what lies past the top's end)."""
    layers = [ZEROED_MIDDLE[0], ZEROED_MIDDLE[1],
              ("top.qcow2", "mid.qcow2", "3M", ["write -P 6 0 64k", "write -z 1M 1M",
                                                 "write -P 7 3141632 4k"])]
    commit_both(tmp_path, ours, oracle, layers, args)
    r = oracle.img("info", "--output=json", "mid.qcow2", cwd=tmp_path / "ours")
    assert json.loads(r.out)["virtual-size"] == 8 * MiB


def test_commit_grows_base_over_longer_backing(tmp_path, ours, oracle):
    """mid (2 MiB) grows to the top's 8 MiB: its new area must read as zeroes, not as the
    longer base under it shows through, except where the top has data."""
    layers = [("base.qcow2", None, "8M", ["write -P 1 0 8M"]),
              ("mid.qcow2", "base.qcow2", "2M", ["write -P 2 0 64k"]),
              ("top.qcow2", "mid.qcow2", "8M", ["write -P 3 6M 64k", "write -z 3M 64k"])]
    commit_both(tmp_path, ours, oracle, layers, ["top.qcow2"])
    oracle_io("-c", "read -P 0 2M 4M", "-c", "read -P 3 6M 64k", "-c", "read -P 0 7M 1M",
              "mid.qcow2", cwd=tmp_path / "ours")


def test_commit_into_raw_base(tmp_path, ours, oracle):
    """A raw base: data and zero ranges land in the file like qemu-img puts them."""
    da, db = tmp_path / "oracle", tmp_path / "ours"
    for d in (da, db):
        d.mkdir()
        with open(d / "base.raw", "wb") as f:
            f.write(b"\x11" * (4 * MiB))
        assert oracle.img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw",
                          "top.qcow2", cwd=d).rc == 0
        oracle_io("-c", "write -P 3 64k 64k", "-c", "write -z 1M 128k", "-c",
                  "write -P 4 3146240 1k", "top.qcow2", cwd=d)
    ro = oracle.img("commit", "top.qcow2", cwd=da)
    rq = ours.img("commit", "top.qcow2", cwd=db)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err) == (0, "Image committed.\n", "")
    assert (db / "base.raw").read_bytes() == (da / "base.raw").read_bytes()
    # the zeroed range is a hole in both
    assert cluster_map(db / "base.raw", 4096) == cluster_map(da / "base.raw", 4096)
    r = oracle.img("compare", "top.qcow2", str(da / "top.qcow2"), cwd=db)
    assert (r.rc, r.out) == (0, "Images are identical.\n")


@pytest.mark.parametrize("args", [["top.qcow2"], ["-b", "base.qcow2", "top.qcow2"]])
def test_commit_many_extents(tmp_path, ours, oracle, args):
    """Enough scattered extents (data, zeroes, partial clusters) to keep every worker busy,
    in a 64 MiB chain: the in-order writes leave the same images as qemu-img."""
    writes = []
    for i in range(120):
        off = (i * 7919 * 4096) % (60 * MiB)
        kind = i % 5
        if kind == 3:
            writes.append(f"write -z {off} {64 + (i % 3) * 64}k")
        elif kind == 4:
            writes.append(f"write -P {i % 250 + 1} {off + 512} {(i % 7 + 1) * 3}k")
        else:
            writes.append(f"write -P {i % 250 + 1} {off} {(i % 9 + 1) * 64}k")
    layers = [("base.qcow2", None, "64M", ["write -P 1 0 16M", "write -P 2 40M 8M"]),
              ("mid.qcow2", "base.qcow2", None, writes[:40]),
              ("top.qcow2", "mid.qcow2", None, writes[40:])]
    commit_both(tmp_path, ours, oracle, layers, args)


def test_commit_nothing_allocated(tmp_path, ours, oracle):
    layers = [ZEROED_MIDDLE[0], ZEROED_MIDDLE[1], ("top.qcow2", "mid.qcow2", None, [])]
    r = commit_both(tmp_path, ours, oracle, layers, ["-p", "top.qcow2"], progress=True)
    assert r.out.endswith("    (100.00/100%)\nImage committed.\n")


@pytest.mark.parametrize("how", ["image-opts", "json"])
def test_commit_image_opts(tmp_path, ours, oracle, how):
    """The top named by --image-opts or a json: filename; its chain comes from its header."""
    if how == "image-opts":
        args = ["--image-opts", "driver=qcow2,file.filename=top.qcow2"]
    else:
        args = ['json:{"driver": "qcow2", "file": {"driver": "file", "filename": "top.qcow2"}}']
    commit_both(tmp_path, ours, oracle, ZEROED_MIDDLE, args)


def test_commit_object_option(tmp_path, ours, oracle):
    """--object defines objects (a secret here) before the images are opened."""
    commit_both(tmp_path, ours, oracle, ZEROED_MIDDLE,
                ["--object", "secret,id=sec0,data=123456", "-q", "top.qcow2"])


def test_commit_read_error(tmp_path, ours, oracle):
    """A read error in the top (blkdebug under it): qemu-img's message and exit code, the
    top is not emptied, and every layer stays consistent. (What reached mid before the
    error is not compared: qemu-img's parallel requests leave that undefined.)"""
    top = ('json:{"driver": "qcow2", "file": {"driver": "blkdebug", "inject-error": '
           '[{"event": "read_aio", "errno": 5}], '
           '"image": {"driver": "file", "filename": "top.qcow2"}}}')
    da, db = tmp_path / "oracle", tmp_path / "ours"
    for d in (da, db):
        build_chain(oracle, d, ZEROED_MIDDLE)
    ro = oracle.img("commit", top, cwd=da)
    rq = ours.img("commit", top, cwd=db)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err) == (
        1, "", "qemu-img: Block job failed: Input/output error\n")
    for n in LAYERS:
        oracle_check_clean(db / n)
    r = oracle.img("compare", "top.qcow2", str(da / "top.qcow2"), cwd=db)
    assert (r.rc, r.out) == (0, "Images are identical.\n")
    oracle_io("-c", "read -P 3 4M 64k", "top.qcow2", cwd=db)


def test_commit_rate_limit(tmp_path, ours, oracle):
    """-r: 1 MiB of data at 512 KiB/s takes two seconds at least; the result is unchanged."""
    layers = [ZEROED_MIDDLE[0], ZEROED_MIDDLE[1],
              ("top.qcow2", "mid.qcow2", None, ["write -P 9 0 512k", "write -P 8 2M 512k"])]
    da, db = tmp_path / "oracle", tmp_path / "ours"
    for d in (da, db):
        build_chain(oracle, d, layers)
    t0 = time.monotonic()
    rq = ours.img("commit", "-r", "512k", "top.qcow2", cwd=db)
    elapsed = time.monotonic() - t0
    assert (rq.rc, rq.out) == (0, "Image committed.\n")
    assert elapsed >= 1.9, elapsed
    assert oracle.img("commit", "top.qcow2", cwd=da).rc == 0
    assert_same_images(da, db, LAYERS)


def test_commit_flushes_ahead_on_long_copies(tmp_path, ours):
    """More data than one flush-ahead interval (128 MiB): the worker that flushes while the
    others copy neither stalls the copy nor loses data."""
    d = tmp_path / "big"
    layers = [("base.qcow2", None, "160M", []), ("mid.qcow2", "base.qcow2", None, []),
              ("top.qcow2", "mid.qcow2", None,
               ["write -P 1 0 64M", "write -z 64M 1M", "write -P 2 65M 71M", "write -P 3 150M 4M"])]
    build_chain(ours, d, layers)
    r = ours.img("commit", "-b", "base.qcow2", "top.qcow2", cwd=d)
    assert (r.rc, r.out, r.err) == (0, "Image committed.\n", "")
    oracle_io("-c", "read -P 1 0 64M", "-c", "read -P 0 64M 1M", "-c", "read -P 2 65M 71M",
              "-c", "read -P 0 136M 14M", "-c", "read -P 3 150M 4M", "base.qcow2", cwd=d)
    oracle_check_clean(d / "base.qcow2")
    for n in LAYERS:
        os.unlink(d / n)
