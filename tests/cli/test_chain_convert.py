# SPDX-License-Identifier: MIT
"""convert -B and convert/compare across chains, against the oracle (7.2).

With a backing file for the target (-B, or -o backing_file), qemu-img copies
what the source's top layer holds (taking the source's backing file to match
the target's), writes zeroes where the top reads zeroes up to the end of the
target's backing file, and leaves the rest unallocated. Without one, a chain
is flattened.
"""
import pytest

from test_chain_helpers import (assert_same_images, build_chain, header_backing,
                                oracle_identical)


@pytest.fixture
def dirs(tmp_path, oracle):
    da, db = tmp_path / "oracle", tmp_path / "ours"
    for d in (da, db):
        build_chain(oracle, d)
        build_chain(oracle, d, [("flat.qcow2", None, "8M", ["write -P 4 6M 128k",
                                                           "write -z 0 64k"])])
        build_chain(oracle, d, [("short.qcow2", None, "2M", ["write -P 2 0 2M"])])
    return da, db


@pytest.mark.parametrize("args", [
    ["-O", "qcow2", "-B", "mid.qcow2", "-F", "qcow2", "top.qcow2", "out.qcow2"],
    ["-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "top.qcow2", "out.qcow2"],
    ["-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "mid.qcow2", "out.qcow2"],
    ["-O", "qcow2", "-B", "mid.qcow2", "-F", "qcow2", "flat.qcow2", "out.qcow2"],
    ["-O", "qcow2", "-B", "short.qcow2", "-F", "qcow2", "flat.qcow2", "out.qcow2"],
    ["-O", "qcow2", "-B", "short.qcow2", "-F", "qcow2", "top.qcow2", "out.qcow2"],
    ["-O", "qcow2", "-o", "backing_file=mid.qcow2,backing_fmt=qcow2", "top.qcow2", "out.qcow2"],
    ["-O", "qcow2", "-B", "mid.qcow2", "-F", "qcow2", "-o", "compat=0.10", "top.qcow2",
     "out.qcow2"],
    ["-O", "qcow2", "top.qcow2", "out.qcow2"],
    ["-O", "qcow2", "-c", "top.qcow2", "out.qcow2"],
    ["-O", "raw", "top.qcow2", "out.qcow2"],
    ["-O", "qcow2", "-B", "mid.qcow2", "top.qcow2", "out.qcow2"],
    ["-O", "raw", "-B", "mid.qcow2", "-F", "qcow2", "top.qcow2", "out.qcow2"],
    ["-O", "qcow2", "-B", "nosuch.qcow2", "-F", "qcow2", "top.qcow2", "out.qcow2"],
])
def test_convert_like_qemu_img(dirs, ours, oracle, args):
    da, db = dirs
    ro = oracle.img("convert", *args, cwd=da)
    rq = ours.img("convert", *args, cwd=db)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)
    if ro.rc == 0:
        fmt = args[args.index("-O") + 1]
        if fmt == "qcow2":
            # compat=0.10 has no zero clusters: qemu-img writes the zeroes it finds past the
            # backing file's end as data; qimg's qcow2 driver sees that they read as zeroes
            # already and writes nothing. Same guest view, different allocation.
            assert_same_images(da, db, ["out.qcow2"], maps="compat=0.10" not in args)
        else:
            assert (da / "out.qcow2").read_bytes() == (db / "out.qcow2").read_bytes()
    else:
        assert (da / "out.qcow2").exists() == (db / "out.qcow2").exists()


def test_convert_flattens_chain(dirs, ours):
    _, db = dirs
    assert ours.img("convert", "-O", "qcow2", "top.qcow2", "flat-out.qcow2", cwd=db).rc == 0
    assert header_backing(db / "flat-out.qcow2") == (None, None)
    oracle_identical(db / "flat-out.qcow2", db / "top.qcow2")


def test_convert_diff_onto_same_content_backing(dirs, ours):
    """-B with a backing equal to the source's: the output reads as the source."""
    _, db = dirs
    r = ours.img("convert", "-O", "qcow2", "-B", "mid.qcow2", "-F", "qcow2", "top.qcow2",
                 "diff.qcow2", cwd=db)
    assert r.rc == 0, r
    assert header_backing(db / "diff.qcow2") == ("mid.qcow2", "qcow2")
    oracle_identical(db / "diff.qcow2", db / "top.qcow2")


@pytest.mark.parametrize("pair", [
    ("top.qcow2", "top.qcow2"),
    ("top.qcow2", "mid.qcow2"),
    ("mid.qcow2", "base.qcow2"),
    ("flat.qcow2", "top.qcow2"),
    ("short.qcow2", "base.qcow2"),
])
@pytest.mark.parametrize("strict", [[], ["-s"]])
def test_compare_across_chains(dirs, ours, oracle, pair, strict):
    da, _ = dirs
    ro = oracle.img("compare", *strict, *pair, cwd=da)
    rq = ours.img("compare", *strict, *pair, cwd=da)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)


def test_compare_chain_with_its_flat_copy(dirs, ours, oracle):
    da, _ = dirs
    assert oracle.img("convert", "-O", "raw", "top.qcow2", "top.raw", cwd=da).rc == 0
    for tool in (ours, oracle):
        r = tool.img("compare", "-f", "qcow2", "-F", "raw", "top.qcow2", "top.raw", cwd=da)
        assert (r.rc, r.out) == (0, "Images are identical.\n")
