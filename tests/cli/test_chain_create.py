# SPDX-License-Identifier: MIT
"""qemu-img create -b BACKING [-F FMT] [-u]: qemu-img 9.1's rules, against the oracle (7.2).

9.1 difference (samples-qemu-img-9.1.md, 6): after "Backing file specified
without backing format", the "Detected format of FMT." hint ends with a newline
(7.2 leaves it out); the oracle's stderr gets that newline added before comparing.
"""
import re

import pytest

from test_chain_helpers import header_backing, oracle_check_clean

DETECTED = re.compile(r"Detected format of [a-z0-9]+\.$")


def expected_err(oracle_err):
    return oracle_err + "\n" if DETECTED.search(oracle_err) else oracle_err


@pytest.fixture
def dirs(tmp_path, oracle):
    out = []
    for name in ("oracle", "ours"):
        d = tmp_path / name
        (d / "sub").mkdir(parents=True)
        for args in (["-f", "qcow2", "a.qcow2", "3M"], ["-f", "raw", "r.raw", "1M"],
                     ["-f", "qcow2", "sub/b.qcow2", "2M"]):
            assert oracle.img("create", "-q", *args, cwd=d).rc == 0
        out.append(d)
    return out


CASES = [
    ["-b", "a.qcow2", "n.qcow2"],
    ["-b", "r.raw", "n.qcow2"],
    ["-b", "nosuch.qcow2", "n.qcow2"],
    ["-b", "nosuch.qcow2", "-F", "qcow2", "n.qcow2"],
    ["-b", "nosuch.qcow2", "-F", "qcow2", "n.qcow2", "1M"],
    ["-u", "-b", "nosuch.qcow2", "-F", "qcow2", "n.qcow2"],
    ["-u", "-b", "nosuch.qcow2", "n.qcow2", "1M"],
    ["-u", "-b", "nosuch.qcow2", "-F", "qcow2", "n.qcow2", "1M"],
    ["-u", "-b", "a.qcow2", "-F", "qcow2", "n.qcow2"],
    ["-b", "a.qcow2", "-F", "raw", "n.qcow2"],
    ["-b", "a.qcow2", "-F", "qcow2", "n.qcow2"],
    ["-b", "a.qcow2", "-F", "qcow2", "n.qcow2", "5M"],
    ["-b", "a.qcow2", "-F", "qcow2", "n.qcow2", "1M"],
    ["-b", "a.qcow2", "-F", "qcow2", "-o", "size=2M", "n.qcow2"],
    ["-b", "a.qcow2", "-F", "foo", "n.qcow2"],
    ["-b", "r.raw", "-F", "qcow2", "n.qcow2"],
    ["-b", "r.raw", "-F", "raw", "n.qcow2"],
    ["-b", "sub", "-F", "raw", "n.qcow2"],
    ["-b", "n.qcow2", "-F", "qcow2", "n.qcow2"],
    ["-b", "", "-F", "qcow2", "n.qcow2", "1M"],
    ["-F", "qcow2", "n.qcow2", "1M"],
    ["-o", "backing_file=a.qcow2", "n.qcow2"],
    ["-o", "backing_file=a.qcow2,backing_fmt=qcow2", "n.qcow2"],
    ["-b", "a.qcow2", "-F", "qcow2", "-o", "backing_fmt=raw", "n.qcow2"],
    ["-b", "x.qcow2", "-F", "qcow2", "-o", "backing_file=a.qcow2", "n.qcow2"],
    ["-b", "b.qcow2", "-F", "qcow2", "sub/n.qcow2"],
    ["-b", "a.qcow2", "-F", "qcow2", "sub/n.qcow2"],
    ["-b", "../a.qcow2", "-F", "qcow2", "sub/n.qcow2"],
    ["-b", "a.qcow2", "-F", "qcow2", "-o", "compat=0.10", "n.qcow2"],
    ["-b", "a.qcow2", "-F", "qcow2", "-o", "cluster_size=4k,extended_l2=off", "n.qcow2"],
]


@pytest.mark.parametrize("args", CASES)
def test_create_backing_like_qemu_img(dirs, ours, oracle, args):
    da, db = dirs
    ro = oracle.img("create", "-f", "qcow2", *args, cwd=da)
    rq = ours.img("create", "-f", "qcow2", *args, cwd=db)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, expected_err(ro.err))
    for n in ("n.qcow2", "sub/n.qcow2"):
        assert (da / n).exists() == (db / n).exists()
        if (db / n).exists():
            assert header_backing(db / n) == header_backing(da / n)
            if "nosuch" not in " ".join(args):
                oracle_check_clean(db / n)
                r1 = oracle.img("info", "--output=json", n, cwd=da)
                r2 = oracle.img("info", "--output=json", n, cwd=db)
                assert r1.out.replace(str(da), "") == r2.out.replace(str(db), "")


def test_detected_format_line_ends_with_newline_9_1(dirs, ours):
    _, db = dirs
    r = ours.img("create", "-f", "qcow2", "-b", "a.qcow2", "nofmt.qcow2", cwd=db)
    assert r.rc == 1
    assert r.err == ("qemu-img: nofmt.qcow2: Backing file specified without backing format\n"
                     "Detected format of qcow2.\n")
    assert not (db / "nofmt.qcow2").exists()


def test_size_from_backing(dirs, ours):
    _, db = dirs
    r = ours.img("create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "top.qcow2", cwd=db)
    assert r.rc == 0
    assert r.out == ("Formatting 'top.qcow2', fmt=qcow2 cluster_size=65536 extended_l2=off "
                     "compression_type=zlib size=3145728 backing_file=a.qcow2 backing_fmt=qcow2 "
                     "lazy_refcounts=off refcount_bits=16\n")
    assert header_backing(db / "top.qcow2") == ("a.qcow2", "qcow2")


def test_raw_target_refuses_backing(dirs, ours, oracle):
    da, db = dirs
    ro = oracle.img("create", "-f", "raw", "-b", "a.qcow2", "-F", "qcow2", "n.raw", cwd=da)
    rq = ours.img("create", "-f", "raw", "-b", "a.qcow2", "-F", "qcow2", "n.raw", cwd=db)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)
