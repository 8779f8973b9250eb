# SPDX-License-Identifier: MIT
"""qemu-img commit across chains of three and more layers, against the oracle (7.2).

Each case builds the same chain in two directories, runs the commit with
qimg in one and with qemu-img in the other, and compares every layer: guest
contents, qemu-img check, backing strings in the headers and allocation maps
(host offsets left out: qemu-img commits in parallel, so its allocation order
is not deterministic).
"""
import os

import pytest

from test_chain_helpers import (CHAIN_LAYERS, assert_same_images, build_chain, header_backing,
                                oracle_io, oracle_map)

LAYERS = ["top.qcow2", "mid.qcow2", "base.qcow2"]


@pytest.fixture
def dirs(tmp_path, oracle):
    da, db = tmp_path / "oracle", tmp_path / "ours"
    build_chain(oracle, da)
    build_chain(oracle, db)
    return da, db


@pytest.mark.parametrize("args", [
    ["top.qcow2"],
    ["-d", "top.qcow2"],
    ["-b", "base.qcow2", "top.qcow2"],
    ["-b", "mid.qcow2", "top.qcow2"],
    ["-q", "-b", "base.qcow2", "-d", "top.qcow2"],
    ["-t", "none", "-r", "1G", "top.qcow2"],
    ["-f", "qcow2", "mid.qcow2"],
    ["-b", "./base.qcow2", "top.qcow2"],
])
def test_commit_like_qemu_img(dirs, ours, oracle, args):
    da, db = dirs
    ro = oracle.img("commit", *args, cwd=da)
    rq = ours.img("commit", *args, cwd=db)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)
    assert_same_images(da, db, LAYERS)


def test_commit_absolute_base_path(dirs, ours, oracle):
    da, db = dirs
    ro = oracle.img("commit", "-b", str(da / "base.qcow2"), "top.qcow2", cwd=da)
    rq = ours.img("commit", "-b", str(db / "base.qcow2"), "top.qcow2", cwd=db)
    assert (rq.rc, rq.out) == (ro.rc, ro.out) == (0, "Image committed.\n")
    assert_same_images(da, db, LAYERS)


def test_commit_empties_top_like_qemu(dirs, ours, oracle):
    """The emptied top is rebuilt as qemu-img leaves it: four clusters, nothing mapped."""
    da, db = dirs
    oracle.img("commit", "top.qcow2", cwd=da)
    ours.img("commit", "top.qcow2", cwd=db)
    assert os.path.getsize(db / "top.qcow2") == os.path.getsize(da / "top.qcow2") == 4 * 65536
    assert '"depth": 0, "present": true' not in oracle_map(db / "top.qcow2")


def test_commit_grows_smaller_base(dirs, ours, oracle):
    """mid (4 MiB) grows to the top's 8 MiB; what the top does not write stays unallocated."""
    da, db = dirs
    ours.img("commit", "top.qcow2", cwd=db)
    r = oracle.img("info", "--output=json", "mid.qcow2", cwd=db)
    assert '"virtual-size": 8388608' in r.out
    oracle.img("commit", "top.qcow2", cwd=da)
    assert_same_images(da, db, LAYERS)


def test_commit_compat_010(tmp_path, ours, oracle):
    """v2 images are emptied cluster by cluster (no refcount rebuild), as qemu-img does."""
    da, db = tmp_path / "oracle", tmp_path / "ours"
    for d in (da, db):
        build_chain(oracle, d, create_opts=["-o", "compat=0.10"])
    ro = oracle.img("commit", "top.qcow2", cwd=da)
    rq = ours.img("commit", "top.qcow2", cwd=db)
    assert (rq.rc, rq.out) == (ro.rc, ro.out)
    assert_same_images(da, db, LAYERS)


def test_commit_four_layers_middle(tmp_path, ours, oracle):
    """commit of a middle layer of four into its base; the layers above keep reading the same."""
    layers = CHAIN_LAYERS + [("l4.qcow2", "top.qcow2", None, ["write -P 9 64k 8k"])]
    da, db = tmp_path / "oracle", tmp_path / "ours"
    for d in (da, db):
        build_chain(oracle, d, layers)
    ro = oracle.img("commit", "-b", "base.qcow2", "top.qcow2", cwd=da)
    rq = ours.img("commit", "-b", "base.qcow2", "top.qcow2", cwd=db)
    assert (rq.rc, rq.out) == (ro.rc, ro.out)
    assert_same_images(da, db, LAYERS + ["l4.qcow2"])


def test_chain_built_by_qimg_committed_by_qemu(tmp_path, ours, oracle):
    da, db = tmp_path / "oracle", tmp_path / "ours"
    build_chain(ours, da)
    build_chain(oracle, db)
    # our chain reads like the oracle's
    assert_same_images(db, da, LAYERS, maps=False)
    oracle.img("commit", "top.qcow2", cwd=da)
    oracle.img("commit", "top.qcow2", cwd=db)
    assert_same_images(db, da, LAYERS, maps=False)


def test_chain_built_by_qemu_committed_by_qimg_read_by_qemu(dirs, ours, oracle):
    da, db = dirs
    r = ours.img("commit", "-p", "top.qcow2", cwd=db)
    # (text mode reads the progress line's \r as a line end)
    assert r.rc == 0 and r.out.endswith("    (100.00/100%)\nImage committed.\n"), r
    r = ours.img("commit", "mid.qcow2", cwd=db)
    assert r.rc == 0, r
    oracle.img("commit", "top.qcow2", cwd=da)
    oracle.img("commit", "mid.qcow2", cwd=da)
    assert_same_images(da, db, LAYERS)
    oracle_io("-c", "read -P 6 5M 64k", "-c", "read -P 5 128k 4k", "top.qcow2", cwd=db)


@pytest.mark.parametrize("args", [
    ["base.qcow2"],
    ["-b", "top.qcow2", "top.qcow2"],
    ["-b", "nosuch.qcow2", "top.qcow2"],
    ["-r", "foo", "top.qcow2"],
    ["-t", "foo", "top.qcow2"],
    ["top.qcow2", "mid.qcow2"],
    [],
    ["nosuch.qcow2"],
    ["-f", "raw", "top.qcow2"],
])
def test_commit_errors(dirs, ours, oracle, args):
    da, db = dirs
    ro = oracle.img("commit", *args, cwd=da)
    rq = ours.img("commit", *args, cwd=db)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)
    assert_same_images(da, db, LAYERS)


def test_commit_keeps_backing_strings(dirs, ours):
    _, db = dirs
    before = [header_backing(db / n) for n in LAYERS]
    assert ours.img("commit", "top.qcow2", cwd=db).rc == 0
    assert [header_backing(db / n) for n in LAYERS] == before
