# SPDX-License-Identifier: MIT
"""qemu-img amend on qcow2, differential against the oracle (7.2): each tool amends its own
identical copy of an image the oracle built; messages, exit codes, the amended image's info
(and bytes, where QEMU's result is deterministic), check clean, guest data unchanged."""
import filecmp
import json
import shutil

import pytest

MiB = 1 << 20

# Built by the oracle, so both sides start from the same bytes.
SETUPS = {
    "v3": [["create", "-f", "qcow2", "i.qcow2", "64M"]],
    "v2": [["create", "-f", "qcow2", "-o", "compat=0.10", "i.qcow2", "64M"]],
    "rc8": [["create", "-f", "qcow2", "-o", "refcount_bits=8", "i.qcow2", "64M"]],
    "extl2": [["create", "-f", "qcow2", "-o", "extended_l2=on", "i.qcow2", "64M"]],
    "zstd": [["create", "-f", "qcow2", "-o", "compression_type=zstd", "i.qcow2", "64M"]],
    "lazy": [["create", "-f", "qcow2", "-o", "lazy_refcounts=on", "i.qcow2", "64M"]],
    "snap": [["create", "-f", "qcow2", "i.qcow2", "64M"], ["snapshot", "-c", "s1", "i.qcow2"]],
    "datasnap": [["create", "-f", "qcow2", "i.qcow2", "64M"], ["io", "write -P 1 0 256k"],
                 ["snapshot", "-c", "s1", "i.qcow2"]],
    "snap_resized": [["create", "-f", "qcow2", "i.qcow2", "64M"],
                     ["snapshot", "-c", "s1", "i.qcow2"], ["resize", "i.qcow2", "128M"]],
}
IO_SETUPS = {
    # data, allocated zero clusters, plain zero clusters, data past 1 MiB
    "zeros": ["write -P 1 0 192k", "write -z 64k 64k", "write -z 1M 64k", "write -P 2 2M 64k",
              "write -z -u 2M 64k", "write -P 3 40M 1M"],
    "data": ["write -P 7 0 1M", "write -P 8 10M 3M", "write -P 9 60M 64k"],
    "zstdc": ["write -c -P 4 0 64k"],
}


def build(oracle, tmp_path, setup, io=None, sub="base"):
    d = tmp_path / sub
    d.mkdir()
    for args in SETUPS[setup]:
        if args[0] == "io":
            r = oracle.io("-f", "qcow2", "-c", args[1], "i.qcow2", cwd=d)
        else:
            r = oracle.img(*args, cwd=d)
        assert r.rc == 0, r
    for cmd in IO_SETUPS.get(io, []):
        r = oracle.io("-f", "qcow2", "-c", cmd, "i.qcow2", cwd=d)
        assert r.rc == 0, r
    return d


def pair(oracle, tmp_path, setup, io=None):
    base = build(oracle, tmp_path, setup, io)
    dirs = []
    for name in ("ours", "theirs"):
        d = tmp_path / name
        shutil.copytree(base, d)
        dirs.append(d)
    assert oracle.img("convert", "-O", "raw", "i.qcow2", "before.raw", cwd=dirs[1]).rc == 0
    return dirs


def info(oracle, d):
    r = oracle.img("info", "--output=json", "i.qcow2", cwd=d)
    assert r.rc == 0, r
    j = json.loads(r.out)
    j.pop("actual-size", None)
    return j


def amend_both(ours, oracle, tmp_path, setup, opts, io=None, extra=()):
    od, td = pair(oracle, tmp_path, setup, io)
    a = ours.img("amend", *extra, "-o", opts, "i.qcow2", cwd=od)
    b = oracle.img("amend", *extra, "-o", opts, "i.qcow2", cwd=td)
    return a, b, od, td


def assert_consistent(oracle, d, before):
    r = oracle.img("check", "i.qcow2", cwd=d)
    assert r.rc == 0, r
    r = oracle.img("compare", "-f", "qcow2", "-F", "raw", "i.qcow2", str(before), cwd=d)
    assert r.rc == 0, r


@pytest.mark.parametrize("setup,opts,io,identical", [
    ("v3", "compat=0.10", None, True),
    ("v2", "compat=1.1", None, True),
    ("v2", "compat=v3", "data", True),
    ("v3", "compat=v2", "data", True),
    ("v3", "compat=0.10", "zeros", True),
    ("v3", "lazy_refcounts=on", None, True),
    ("lazy", "lazy_refcounts=off", "data", True),
    ("v3", "refcount_bits=8", None, True),
    ("v3", "refcount_bits=1", "data", True),
    ("v3", "refcount_bits=64", "data", True),
    ("rc8", "refcount_bits=16", "data", True),
    ("v3", "refcount_bits=4,lazy_refcounts=on", "zeros", True),
    ("v2", "compat=1.1,refcount_bits=2,lazy_refcounts=on", "data", True),
    ("rc8", "refcount_bits=16,compat=0.10", "data", True),
    ("v3", "size=128M", "data", True),
    ("v3", "size=0", None, True),
    ("zstd", "compat=0.10", None, True),
    ("snap", "compat=0.10", "data", True),
    ("datasnap", "compat=0.10", "zeros", True),
    ("datasnap", "refcount_bits=8", "zeros", True),
    ("v3", "compat=1.1,lazy_refcounts=off", None, True),
])
def test_amend_matches_oracle(ours, oracle, tmp_path, setup, opts, io, identical):
    a, b, od, td = amend_both(ours, oracle, tmp_path, setup, opts, io)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert a.rc == 0
    assert info(oracle, od) == info(oracle, td)
    before = td / "before.raw"
    assert_consistent(oracle, od, before)
    assert_consistent(oracle, td, before)
    if identical:
        assert filecmp.cmp(od / "i.qcow2", td / "i.qcow2", shallow=False)


@pytest.mark.parametrize("setup,opts,io", [
    ("rc8", "compat=0.10", None),
    ("extl2", "compat=0.10", None),
    ("zstd", "compat=0.10", "zstdc"),
    ("snap_resized", "compat=0.10", None),
    ("v2", "lazy_refcounts=on", None),
    ("v2", "refcount_bits=8", None),
    ("v3", "compat=0.10,refcount_bits=8", None),
    ("v3", "compat=0.10,lazy_refcounts=on", None),
    ("v3", "compat=foo", None),
    ("v3", "refcount_bits=3", None),
    ("v3", "refcount_bits=128", None),
    ("v3", "refcount_bits=x", None),
    ("v3", "lazy_refcounts=foo", None),
    ("v3", "size=foo", None),
    ("v3", "size=1000", None),
    # size=-1: 9.1 says "out of range" (7.2 "expects a non-negative number"), see
    # test_conformance_cli.py::test_negative_size_option_out_of_range
    ("v3", "data_file=x.raw", None),
    ("v3", "data_file_raw=on", None),
    ("v3", "backing_file=b.qcow2", None),
    ("v3", "backing_fmt=raw", None),
    ("v3", "backing_file=", None),
    ("v3", "encrypt.new-secret=x", None),
    ("v3", "foo=bar", None),
    ("v3", "cluster_size=4096", None),
    ("v3", "preallocation=full", None),
    ("v3", "compression_type=zstd", None),
    ("v3", "extended_l2=on", None),
    ("v3", "encryption=on", None),
    ("v3", "encrypt.format=luks", None),
    ("datasnap", "refcount_bits=1", None),
])
def test_amend_errors_match_oracle(ours, oracle, tmp_path, setup, opts, io):
    a, b, od, td = amend_both(ours, oracle, tmp_path, setup, opts, io)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert a.rc == 1
    assert info(oracle, od) == info(oracle, td)
    assert_consistent(oracle, od, td / "before.raw")


def test_amend_refcount_error_leaves_data(ours, oracle, tmp_path):
    a, b, od, td = amend_both(ours, oracle, tmp_path, "datasnap", "refcount_bits=1")
    assert "has a refcount of 2" in a.err
    assert filecmp.cmp(od / "i.qcow2", tmp_path / "base" / "i.qcow2", shallow=False)


def test_amend_same_backing_is_a_no_op(ours, oracle, tmp_path):
    for d in ("o", "t"):
        (tmp_path / d).mkdir()
        assert oracle.img("create", "-f", "qcow2", "b.qcow2", "8M", cwd=tmp_path / d).rc == 0
        assert oracle.img("create", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "i.qcow2",
                          cwd=tmp_path / d).rc == 0
    for opts in ("backing_file=b.qcow2,backing_fmt=qcow2", "backing_file=b.qcow2",
                 "backing_fmt=qcow2", "backing_fmt=raw,backing_file=b.qcow2"):
        a = ours.img("amend", "-o", opts, "i.qcow2", cwd=tmp_path / "o")
        b = oracle.img("amend", "-o", opts, "i.qcow2", cwd=tmp_path / "t")
        assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err), opts
    assert filecmp.cmp(tmp_path / "o" / "i.qcow2", tmp_path / "t" / "i.qcow2", shallow=False)


def test_downgrade_with_backing_keeps_zero_clusters_zero(ours, oracle, tmp_path):
    """A plain zero cluster over a backing file must still read as zeroes in v2."""
    for d in ("o", "t"):
        p = tmp_path / d
        p.mkdir()
        assert oracle.img("create", "-f", "qcow2", "b.qcow2", "4M", cwd=p).rc == 0
        assert oracle.io("-c", "write -P 5 0 4M", "b.qcow2", cwd=p).rc == 0
        assert oracle.img("create", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "i.qcow2",
                          cwd=p).rc == 0
        assert oracle.io("-c", "write -z 64k 128k", "-c", "write -P 6 1M 64k",
                         "-c", "write -z 1M 64k", "i.qcow2", cwd=p).rc == 0
        assert oracle.img("convert", "-O", "raw", "i.qcow2", "before.raw", cwd=p).rc == 0
    a = ours.img("amend", "-o", "compat=0.10", "i.qcow2", cwd=tmp_path / "o")
    b = oracle.img("amend", "-o", "compat=0.10", "i.qcow2", cwd=tmp_path / "t")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    for d in ("o", "t"):
        assert_consistent(oracle, tmp_path / d, tmp_path / d / "before.raw")
    assert info(oracle, tmp_path / "o") == info(oracle, tmp_path / "t")


@pytest.mark.parametrize("args", [
    ["-f", "qcow2", "-o", "help"],
    ["-f", "qcow2", "-o", "help", "i.qcow2"],
    ["-o", "help", "i.qcow2"],
    ["-o", "?", "i.qcow2"],
    ["-o", "help"],
    ["i.qcow2"],
    ["-f", "raw", "-o", "size=1M", "i.qcow2"],
    ["-f", "foo", "-o", "help"],
    ["-o", "compat=0.10", "i.qcow2", "extra"],
    ["-o", ",", "i.qcow2"],
    ["-o", "", "i.qcow2"],
    ["-o", "compat=0.10", "nonexist.qcow2"],
    ["-t", "bogus", "-o", "compat=0.10", "i.qcow2"],
    ["-q", "-o", "compat=0.10", "i.qcow2"],
    ["--force", "-o", "lazy_refcounts=on", "i.qcow2"],
    ["-o", "compat=0.10", "-o", "lazy_refcounts=off", "i.qcow2"],
    ["-p", "-o", "lazy_refcounts=on", "i.qcow2"],
    ["-p", "-o", "size=128M", "i.qcow2"],
    ["--image-opts", "-o", "lazy_refcounts=on", "driver=qcow2,file.filename=i.qcow2"],
])
def test_amend_cli_matches_oracle(ours, oracle, tmp_path, args):
    od, td = pair(oracle, tmp_path, "v3")
    a = ours.img("amend", *args, cwd=od)
    b = oracle.img("amend", *args, cwd=td)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert filecmp.cmp(od / "i.qcow2", td / "i.qcow2", shallow=False)


def test_amend_raw_refused(ours, oracle, tmp_path):
    for d in ("o", "t"):
        (tmp_path / d).mkdir()
        assert oracle.img("create", "-f", "raw", "r.raw", "1M", cwd=tmp_path / d).rc == 0
    for args in (["-o", "size=2M", "r.raw"], ["-o", "help", "r.raw"],
                 ["-f", "raw", "-o", "help"]):
        a = ours.img("amend", *args, cwd=tmp_path / "o")
        b = oracle.img("amend", *args, cwd=tmp_path / "t")
        assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err), args


def test_downgrade_with_bitmaps_refused(ours, oracle, tmp_path):
    """7.2 downgrades and leaves a v2 image with a bitmaps extension and leaked clusters;
    qimg refuses instead (the bitmaps cannot be kept in v2), leaving the image intact."""
    od, td = pair(oracle, tmp_path, "v3")
    assert oracle.img("bitmap", "--add", "i.qcow2", "b0", cwd=od).rc == 0
    r = ours.img("amend", "-o", "compat=0.10", "i.qcow2", cwd=od)
    assert r.rc == 1 and r.err == "qemu-img: Cannot downgrade an image with bitmaps\n"
    r = oracle.img("check", "i.qcow2", cwd=od)
    assert r.rc == 0, r
    assert "b0" in oracle.img("info", "i.qcow2", cwd=od).out


def test_refcount_change_many_refblocks(ours, oracle, tmp_path):
    """Small clusters: several refcount blocks in both widths, the table grows."""
    for d in ("o", "t"):
        p = tmp_path / d
        p.mkdir()
        assert oracle.img("create", "-f", "qcow2", "-o", "cluster_size=512", "i.qcow2", "8M",
                          cwd=p).rc == 0
        assert oracle.io("-c", "write -P 3 0 3M", "-c", "write -P 4 5M 1M", "i.qcow2",
                         cwd=p).rc == 0
        assert oracle.img("convert", "-O", "raw", "i.qcow2", "before.raw", cwd=p).rc == 0
    for opts in ("refcount_bits=64", "refcount_bits=1", "refcount_bits=16"):
        a = ours.img("amend", "-o", opts, "i.qcow2", cwd=tmp_path / "o")
        b = oracle.img("amend", "-o", opts, "i.qcow2", cwd=tmp_path / "t")
        assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
        for d in ("o", "t"):
            assert_consistent(oracle, tmp_path / d, tmp_path / d / "before.raw")
        assert info(oracle, tmp_path / "o") == info(oracle, tmp_path / "t")


# --- amend -p: the bar moves as qemu-img's does ---

def _progress_steps(out):
    return [float(x.split("/")[0]) for x in out.replace("\r", "\n").replace("(", " ").split()
            if x.endswith("/100%)")]


PROGRESS_CASES = [
    # (create options, qemu-io script, with snapshot, amend options)
    ("cluster_size=4096", ["write -P 1 0 8M", "write -z 16M 4M"], False, "compat=0.10"),
    ("cluster_size=4096", ["write -P 1 0 8M", "write -z 16M 4M"], True, "compat=0.10"),
    ("cluster_size=65536", ["write -P 1 0 8M"], False, "compat=0.10"),
    ("cluster_size=512", ["write -P 1 0 1M"], False, "compat=0.10"),
    ("cluster_size=4096,compat=0.10", ["write -P 1 0 8M"], False, "compat=1.1"),
    ("cluster_size=4096", [], False, "lazy_refcounts=on"),
]


@pytest.mark.parametrize("copts,script,snap,opts", PROGRESS_CASES)
def test_amend_progress_matches_oracle(ours, oracle, tmp_path, copts, script, snap, opts):
    base = tmp_path / "base"
    base.mkdir()
    assert oracle.img("create", "-q", "-f", "qcow2", "-o", copts, "i.qcow2", "64M",
                      cwd=base).rc == 0
    for cmd in script:
        assert oracle.io("-c", cmd, "i.qcow2", cwd=base).rc == 0
    if snap:
        assert oracle.img("snapshot", "-c", "s", "i.qcow2", cwd=base).rc == 0
    od, td = tmp_path / "ours", tmp_path / "theirs"
    shutil.copytree(base, od)
    shutil.copytree(base, td)
    a = ours.img("amend", "-p", "-o", opts, "i.qcow2", cwd=od)
    b = oracle.img("amend", "-p", "-o", opts, "i.qcow2", cwd=td)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    steps = _progress_steps(a.out)
    assert steps[0] == 0 and steps[-1] == 100 and steps == sorted(steps)
    if opts == "compat=0.10" and "4096" in copts:
        assert len(steps) > 30  # one step per L1 entry, not just 0% and 100%
    assert oracle.img("check", "i.qcow2", cwd=od).rc == 0


def test_amend_refcount_progress_moves(ours, oracle, tmp_path):
    """QEMU 7.2's bar for a refcount width change is its own (and even runs backwards when
    combined with an upgrade); ours moves forward once per refcount block written."""
    d = tmp_path
    assert oracle.img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "i.qcow2",
                      "64M", cwd=d).rc == 0
    assert oracle.io("-c", "write -P 3 0 8M", "i.qcow2", cwd=d).rc == 0
    assert oracle.img("convert", "-O", "raw", "i.qcow2", "before.raw", cwd=d).rc == 0
    r = ours.img("amend", "-p", "-o", "refcount_bits=4", "i.qcow2", cwd=d)
    assert r.rc == 0 and r.err == "", r
    steps = _progress_steps(r.out)
    assert steps[0] == 0 and steps[-1] == 100 and steps == sorted(steps)
    assert len([s for s in steps if 0 < s < 100]) >= 10, steps
    assert oracle.img("check", "i.qcow2", cwd=d).rc == 0
    assert oracle.img("compare", "-F", "raw", "i.qcow2", "before.raw", cwd=d).rc == 0
