# SPDX-License-Identifier: MIT
"""qemu-img rebase, safe and unsafe, across chains of three and more layers, against the
oracle (7.2).

Differences from 7.2, following 9.1:
- rebase -c (compress what is merged) is new in 9.1: checked on its own (content,
  check, the merged clusters compressed).
- Without -F, 7.2 merges and only then fails ("backing format must be specified");
  qimg refuses before touching the image. Message and exit code are the same and
  the guest view is unchanged either way; only the allocation differs.
"""
import pytest

from test_chain_helpers import (MiB, assert_same_images, build_chain, header_backing,
                                oracle_identical, oracle_map, oracle_check_clean, oracle_io)

LAYERS = ["top.qcow2", "mid.qcow2", "base.qcow2"]
OTHER = [("nb.qcow2", None, "8M",
          ["write -P 9 4M 256k", "write -P 9 0 64k", "write -P 9 300k 4k", "write -P 2 1M 64k",
           "write -P 3 64k 64k"])]


@pytest.fixture
def dirs(tmp_path, oracle):
    da, db = tmp_path / "oracle", tmp_path / "ours"
    for d in (da, db):
        build_chain(oracle, d)
        build_chain(oracle, d, OTHER)
    return da, db


@pytest.mark.parametrize("args", [
    ["-b", "base.qcow2", "-F", "qcow2", "top.qcow2"],
    ["-b", "nb.qcow2", "-F", "qcow2", "top.qcow2"],
    ["-b", "nb.qcow2", "-F", "qcow2", "mid.qcow2"],
    ["-b", "", "top.qcow2"],
    ["-b", "", "mid.qcow2"],
    ["-u", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"],
    ["-u", "top.qcow2"],
    ["-u", "-b", "", "top.qcow2"],
    ["-q", "-t", "none", "-T", "none", "-b", "base.qcow2", "-F", "qcow2", "-f", "qcow2",
     "top.qcow2"],
    ["-U", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"],
])
def test_rebase_like_qemu_img(dirs, ours, oracle, args):
    da, db = dirs
    ro = oracle.img("rebase", *args, cwd=da)
    rq = ours.img("rebase", *args, cwd=db)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)
    # an unsafe rebase onto another file changes what the guest sees: compare the files
    assert_same_images(da, db, LAYERS + ["nb.qcow2"])


def test_rebase_absolute_path(dirs, ours, oracle):
    da, db = dirs
    ro = oracle.img("rebase", "-b", str(da / "nb.qcow2"), "-F", "qcow2", "top.qcow2", cwd=da)
    rq = ours.img("rebase", "-b", str(db / "nb.qcow2"), "-F", "qcow2", "top.qcow2", cwd=db)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err) == (0, "", "")
    assert header_backing(db / "top.qcow2") == (str(db / "nb.qcow2"), "qcow2")
    oracle_identical(da / "top.qcow2", db / "top.qcow2")
    assert oracle_map(da / "top.qcow2") == oracle_map(db / "top.qcow2")


def test_rebase_keeps_guest_view(dirs, ours):
    _, db = dirs
    ref = db / "ref.raw"
    assert ours.img("convert", "-O", "raw", "top.qcow2", str(ref), cwd=db).rc == 0
    for target in ["nb.qcow2", "base.qcow2", ""]:
        args = ["-b", target] + (["-F", "qcow2"] if target else [])
        r = ours.img("rebase", *args, "top.qcow2", cwd=db)
        assert r.rc == 0, r
        oracle_identical(db / "top.qcow2", ref)
        oracle_check_clean(db / "top.qcow2")
    assert header_backing(db / "top.qcow2") == (None, None)


def test_rebase_relative_to_image_dir(tmp_path, ours, oracle):
    """A relative new backing file is looked up next to the image, and stored as given."""
    da, db = tmp_path / "oracle" / "sub", tmp_path / "ours" / "sub"
    for d in (da, db):
        build_chain(oracle, d)
        build_chain(oracle, d, OTHER)
    ro = oracle.img("rebase", "-b", "nb.qcow2", "-F", "qcow2", "sub/top.qcow2", cwd=da.parent)
    rq = ours.img("rebase", "-b", "nb.qcow2", "-F", "qcow2", "sub/top.qcow2", cwd=db.parent)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)
    assert header_backing(db / "top.qcow2") == ("nb.qcow2", "qcow2")
    assert_same_images(da, db, LAYERS)


@pytest.mark.parametrize("args", [
    ["top.qcow2"],
    ["-b", "nosuch.qcow2", "-F", "qcow2", "top.qcow2"],
    ["-b", "base.qcow2", "-F", "foo", "top.qcow2"],
    ["-t", "foo", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"],
    ["-T", "foo", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"],
    ["-b", "base.qcow2", "-F", "qcow2", "a", "b"],
    ["-u", "-b", "x", "top.qcow2"],
    ["-b", "nb.qcow2", "-F", "qcow2", "nosuch.qcow2"],
])
def test_rebase_errors(dirs, ours, oracle, args):
    da, db = dirs
    ro = oracle.img("rebase", *args, cwd=da)
    rq = ours.img("rebase", *args, cwd=db)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)
    assert_same_images(da, db, LAYERS)


def test_rebase_without_format_refused_before_merging(dirs, ours, oracle):
    da, db = dirs
    ro = oracle.img("rebase", "-b", "nb.qcow2", "top.qcow2", cwd=da)
    rq = ours.img("rebase", "-b", "nb.qcow2", "top.qcow2", cwd=db)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)
    assert rq.err.endswith("backing format must be specified\n")
    oracle_identical(da / "top.qcow2", db / "top.qcow2")
    assert header_backing(db / "top.qcow2") == ("mid.qcow2", "qcow2")


def test_rebase_compress_9_1(dirs, ours):
    """-c (9.1): the merged clusters are written compressed; the guest view is unchanged."""
    _, db = dirs
    ref = db / "ref.raw"
    assert ours.img("convert", "-O", "raw", "top.qcow2", str(ref), cwd=db).rc == 0
    r = ours.img("rebase", "-c", "-b", "nb.qcow2", "-F", "qcow2", "top.qcow2", cwd=db)
    assert (r.rc, r.out, r.err) == (0, "", "")
    oracle_identical(db / "top.qcow2", ref)
    oracle_check_clean(db / "top.qcow2")
    m = oracle_map(db / "top.qcow2")
    # cluster 0 came from base (pattern 1) and differs from nb's: merged, compressed (7.2's
    # map shows compressed data without an offset); the one at 64k is the same in both
    assert m.startswith('[{ "start": 0, "length": 65536, "depth": 0, "present": true, '
                        '"zero": false, "data": true},\n{ "start": 65536, "length": 65536, '
                        '"depth": 1,')


def test_diff_recipe(tmp_path, ours, oracle):
    """The manual's recipe: an overlay on the modified copy, rebased onto the base, is thin."""
    d = tmp_path
    (d / "base.img").write_bytes(bytes(16 * MiB))
    oracle_io("-f", "raw", "-c", "write -P 1 0 4M", "-c", "write -P 2 8M 1M", "base.img", cwd=d)
    (d / "modified.img").write_bytes((d / "base.img").read_bytes())
    oracle_io("-f", "raw", "-c", "write -P 3 1M 4k", "-c", "write -z 8M 64k",
              "-c", "write -P 4 12M 128k", "modified.img", cwd=d)
    for tool, name in ((ours, "diff.qcow2"), (oracle, "diff-o.qcow2")):
        r = tool.img("create", "-q", "-f", "qcow2", "-b", "modified.img", "-F", "raw", name, cwd=d)
        assert r.rc == 0, r
        r = tool.img("rebase", "-b", "base.img", "-F", "raw", name, cwd=d)
        assert (r.rc, r.out, r.err) == (0, "", ""), r
    oracle_identical(d / "diff.qcow2", d / "modified.img")
    oracle_check_clean(d / "diff.qcow2")
    assert oracle_map(d / "diff.qcow2") == oracle_map(d / "diff-o.qcow2")
    # only the three changed clusters (64k, 64k, 2 x 64k) are in the diff
    data = [line for line in oracle_map(d / "diff.qcow2").splitlines() if '"depth": 0' in line]
    assert sum(int(x.split('"length": ')[1].split(",")[0]) for x in data) == 4 * 65536


def test_rebase_chain_built_by_qimg(tmp_path, ours, oracle):
    da, db = tmp_path / "oracle", tmp_path / "ours"
    for d in (da, db):
        build_chain(ours, d)
        build_chain(ours, d, OTHER)
    ro = oracle.img("rebase", "-b", "nb.qcow2", "-F", "qcow2", "top.qcow2", cwd=da)
    rq = ours.img("rebase", "-b", "nb.qcow2", "-F", "qcow2", "top.qcow2", cwd=db)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)
    assert_same_images(da, db, LAYERS + ["nb.qcow2"])
    # and qemu-img rebases what qimg rebased
    assert oracle.img("rebase", "-b", "", "top.qcow2", cwd=db).rc == 0
    assert ours.img("rebase", "-b", "", "top.qcow2", cwd=da).rc == 0
    assert_same_images(db, da, LAYERS, maps=False)


def test_unsafe_rebase_keeps_unknown_extensions(dirs, ours, oracle):
    """The header is rebuilt: features, other extensions and the size stay; check is clean."""
    _, db = dirs
    (db / "a-much-longer-backing-file-name-than-before.qcow2").write_bytes(
        (db / "mid.qcow2").read_bytes())
    r = ours.img("rebase", "-u", "-b", "a-much-longer-backing-file-name-than-before.qcow2",
                 "-F", "qcow2", "top.qcow2", cwd=db)
    assert r.rc == 0, r
    assert header_backing(db / "top.qcow2") == (
        "a-much-longer-backing-file-name-than-before.qcow2", "qcow2")
    oracle_check_clean(db / "top.qcow2")
    r = oracle.img("info", "-U", "--output=json", "top.qcow2", cwd=db)
    assert '"virtual-size": 8388608' in r.out and '"backing-filename-format": "qcow2"' in r.out
    r = ours.img("rebase", "-u", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2", cwd=db)
    assert r.rc == 0
    oracle_io("-c", "read -P 6 5M 64k", "top.qcow2", cwd=db)


def test_unsafe_rebase_onto_missing_file(dirs, ours, oracle):
    da, db = dirs
    args = ["-u", "-b", "nosuch.qcow2", "-F", "qcow2", "top.qcow2"]
    ro = oracle.img("rebase", *args, cwd=da)
    rq = ours.img("rebase", *args, cwd=db)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err) == (0, "", "")
    assert header_backing(db / "top.qcow2") == header_backing(da / "top.qcow2") == (
        "nosuch.qcow2", "qcow2")
    # the fix: point it back
    assert ours.img("rebase", "-u", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2", cwd=db).rc == 0
    assert oracle.img("rebase", "-u", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2",
                      cwd=da).rc == 0
    assert_same_images(da, db, LAYERS)


def test_rebase_onto_old_chain_file_in_other_format_keeps_view(dirs, ours):
    """-b base.qcow2 -F raw: base.qcow2 is in the old chain, but read as raw it differs.

    qimg compares the contents and merges what differs, so the guest view stays.
    (qemu-img 7.2 skips what the layers above the file of the same name do not
    allocate, and its guest view changes: not followed.)
    """
    _, db = dirs
    ref = db / "ref.raw"
    assert ours.img("convert", "-O", "raw", "top.qcow2", str(ref), cwd=db).rc == 0
    r = ours.img("rebase", "-b", "base.qcow2", "-F", "raw", "top.qcow2", cwd=db)
    assert (r.rc, r.out, r.err) == (0, "", "")
    assert header_backing(db / "top.qcow2") == ("base.qcow2", "raw")
    oracle_identical(db / "top.qcow2", ref)
    oracle_check_clean(db / "top.qcow2")


@pytest.mark.parametrize("length", [300, 600, 1100])
def test_unsafe_rebase_header_room(tmp_path, ours, oracle, length):
    """512-byte clusters: a name that does not fit says so; over 1023 bytes is invalid."""
    for tool, name in ((oracle, "o.qcow2"), (ours, "q.qcow2")):
        assert tool.img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", name, "1M",
                        cwd=tmp_path).rc == 0
    ro = oracle.img("rebase", "-u", "-b", "x" * length, "-F", "qcow2", "o.qcow2", cwd=tmp_path)
    rq = ours.img("rebase", "-u", "-b", "x" * length, "-F", "qcow2", "q.qcow2", cwd=tmp_path)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)
    assert header_backing(tmp_path / "q.qcow2") == header_backing(tmp_path / "o.qcow2")
