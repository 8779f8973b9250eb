# SPDX-License-Identifier: MIT
"""Lazy refcounts (qcow2.txt: compatible bit 0) and the dirty bit (incompatible bit 0).

On an image with lazy_refcounts=on the first allocating write of a session sets
the dirty bit; refcount blocks changed from then on stay in memory until close
(or until a new L2 table, L1 table, refcount block or refcount table is written,
or the image is resized), and a clean close writes them and clears the bit.
Before that, frees are held back too, until the end of the write request (or a
flush). A crash leaves the bit set and the refcounts stale; a read-write open
repairs them.

Every test here runs the same qemu-io script through our qimg-io and through the
oracle (Debian's qemu-io 7.2) on identical images and compares what a user sees:
the header's incompatible_features field (offset 72), `qemu-img info`'s dirty
flag, what the oracle's `qemu-img check` reports, the repair on open, and the
data, read back against a raw image the same script wrote.

Both tools run in their default cache mode (qemu-io: writethrough, whose flush
after each write writes QEMU's L2 cache but, while the image is dirty, not its
refcount cache; qimg-io: writeback with write-through L2 tables), which leaves
the same metadata on disk after every write. Scripts are aborted after writes
only: QEMU keeps a discard's L2 update in its writeback cache until the next
write or flush, where ours is on disk at once.
"""
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import ORACLE_IMG, ORACLE_IO, QIMG, QIMG_IO, run, strip_child

pytestmark = [
    pytest.mark.skipif(not QIMG_IO.exists(), reason="qimg-io is not built"),
    pytest.mark.skipif(not ORACLE_IO, reason="qemu-io (the oracle) is not installed"),
]

DIRTY = 1
WRITERS = {"ours": (QIMG, QIMG_IO), "oracle": (ORACLE_IMG, ORACLE_IO)}


def incompat(path):
    with open(path, "rb") as f:
        return int.from_bytes(f.read(80)[72:80], "big")


def dirty_flag(d, img="t.qcow2"):
    r = run([ORACLE_IMG, "info", "-U", "--output=json", img], cwd=d)
    assert r.rc == 0, r
    return json.loads(r.out)["dirty-flag"]


def io_args(cmds):
    return [x for c in cmds for x in ("-c", c)]


def make(d, opts, size, setup=(), snapshot=False, backing=None):
    """A fresh image made by the oracle (identical for both writers)."""
    d.mkdir(parents=True, exist_ok=True)
    args = ["create", "-q", "-f", "qcow2", "-o", opts]
    if backing is not None:
        with open(d / "b.raw", "wb") as f:
            f.write(bytes([backing]) * (1 << 20))
        args += ["-b", "b.raw", "-F", "raw"]
    r = run([ORACLE_IMG, *args, "t.qcow2", size], cwd=d)
    assert r.rc == 0, r
    if setup:
        r = run([ORACLE_IO, *io_args(setup), "t.qcow2"], cwd=d)
        assert r.rc == 0, r
    if snapshot:
        r = run([ORACLE_IMG, "snapshot", "-c", "s1", "t.qcow2"], cwd=d)
        assert r.rc == 0, r
    return d


def raw_reference(d, size, cmds, backing=None):
    """What the guest must read: the same commands on a raw image (oracle qemu-io)."""
    ref = d / "ref.raw"
    with open(ref, "wb") as f:
        f.truncate(size)
        if backing is not None:
            f.write(bytes([backing]) * (1 << 20))
    if cmds:
        r = run([ORACLE_IO, "-f", "raw", *io_args(cmds), ref.name], cwd=d)
        assert r.rc == 0 and "fail" not in r.out + r.err, r
    return ref


def size_of(s):
    return int(s[:-1]) * {"k": 1 << 10, "M": 1 << 20}[s[-1]] if s[-1] in "kM" else int(s)


def check_text(tool, d, img="t.qcow2"):
    r = run([tool, "check", img], cwd=d)
    return r.rc, r.out, r.err.replace(str(tool), "qemu-img")


# name: (create options, size, setup, script, backing pattern, snapshot before the script)
SCRIPTS = {
    "alloc_discard_zero": ("lazy_refcounts=on", "64M", [], [
        "write -P 1 0 1M", "write -P 2 32M 4M", "write -P 3 512k 1k", "discard 0 256k",
        "write -P 4 100k 8k", "write -z -u 32M 1M", "write -P 5 60M 64k"], None, False),
    # 512-byte clusters: 256 refcounts per block, so the writes need new refcount
    # blocks (written back with the deferred ones) and new L2 tables every 32 KiB.
    "refcount_blocks": ("lazy_refcounts=on,cluster_size=512", "8M", [], [
        "write -P 0x31 0 256k", "write -P 0x32 1M 1M", "write -P 0x34 300k 1k",
        "discard 1M 512k", "write -P 0x33 4M 1M", "write -z 4M 64k", "write -P 0x35 1M 4k",
        "write -P 0x36 6M 300k"], None, False),
    # A resize grows the L1 table; both write every deferred refcount block back.
    "l1_growth": ("lazy_refcounts=on,cluster_size=512", "1M", [], [
        "write -P 0x41 0 64k", "truncate 64M", "write -P 0x42 60M 64k", "write -P 0x43 32M 1k",
        "write -z 60M 4k"], None, False),
    "extended_l2_flush": ("lazy_refcounts=on,extended_l2=on", "2M", [], [
        "write -P 0x51 2k 3k", "write -P 0x52 64k 64k", "write -z 66k 2k",
        "write -P 0x53 130k 1k", "flush", "write -P 0x54 1M 1k"], None, False),
    "prealloc": ("lazy_refcounts=on", "1M", [], [
        "truncate -m metadata 2M", "write -P 1 1M 4k", "truncate -m metadata 3M"], None, False),
    # Frees on a clean lazy image are deferred too: written back at the end of the zero
    # write (QEMU's writethrough flush), kept by the dirty bit the next allocation sets.
    "free_then_alloc": ("lazy_refcounts=on", "1M", ["write -P 1 0 256k"], [
        "write -z -u 0 64k", "discard 64k 64k", "write -P 2 512k 4k", "write -P 3 100k 4k",
        "write -z -u 192k 64k"], None, False),
    "backing_cow": ("lazy_refcounts=on", "1M", [], [
        "write -P 0x61 512 1k", "write -P 0x62 130k 8k", "write -P 0x63 0 64k"], 0x5a, False),
    # Writes to clusters the snapshot shares: COW, the old clusters lose a reference.
    "snapshot_cow": ("lazy_refcounts=on", "1M", ["write -P 1 0 256k"], [
        "write -P 0x71 512 1k", "write -P 0x72 64k 64k", "write -P 0x73 300k 4k"], None, True),
}


def abort_points(cmds):
    """After each command but a discard (see the module docstring)."""
    return [i for i in range(1, len(cmds) + 1) if not cmds[i - 1].startswith("discard")]


def run_writer(tmp_path, name, writer, i, abort=True):
    opts, size, setup, cmds, backing, snap = SCRIPTS[name]
    d = make(tmp_path / f"{writer}{i}", opts, size, setup, snap, backing)
    script = cmds[:i] + (["abort"] if abort else [])
    r = run([WRITERS[writer][1], *io_args(script), "t.qcow2"], cwd=d)
    if abort:
        assert r.rc != 0 and "failed" not in r.out + r.err, (name, writer, i, r)
    else:
        assert r.rc == 0 and "failed" not in r.out + r.err, (name, writer, i, r)
    return d


def assert_reads_like_reference(d, name, i):
    opts, size, setup, cmds, backing, snap = SCRIPTS[name]
    final = size_of(size)
    for c in cmds[:i]:
        w = c.split()
        if w[0] == "truncate":
            final = size_of(w[-1])
    # A raw image has no metadata to preallocate: plain truncate.
    plain = [re.sub(r"^truncate -m \S+ ", "truncate ", c) for c in setup + cmds[:i]]
    ref = raw_reference(d, final, plain, backing)
    r = run([ORACLE_IMG, "compare", "-U", "-f", "raw", "-F", "qcow2", ref.name, "t.qcow2"], cwd=d)
    assert r.rc == 0, (name, i, r)


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_abort_leaves_what_qemu_leaves(tmp_path, name):
    """Aborted at each point, our image is QEMU's: the same dirty bit, and the
    oracle's check reports the same stale refcounts on both (our check prints the
    same too). A read-write open by either tool repairs it (the oracle's check is
    then clean and the bit cleared) and the data reads as the raw reference."""
    cmds = SCRIPTS[name][3]
    for i in abort_points(cmds):
        imgs = {w: run_writer(tmp_path, name, w, i) for w in WRITERS}
        where = f"{name}: abort after {cmds[:i]}"
        q, o = imgs["oracle"], imgs["ours"]
        assert incompat(o / "t.qcow2") == incompat(q / "t.qcow2"), where
        assert dirty_flag(o) == dirty_flag(q), where
        theirs = check_text(ORACLE_IMG, q)
        assert check_text(ORACLE_IMG, o) == theirs, where
        assert check_text(QIMG, o) == theirs, where
        for repairer in WRITERS.values():
            d = o.parent / f"{o.name}-{Path(repairer[1]).name}"
            shutil.copytree(o, d)
            r = run([repairer[1], "-c", "flush", "t.qcow2"], cwd=d)
            assert r.rc == 0 and "fail" not in r.out + r.err, (where, r)
            r = run([ORACLE_IMG, "check", "t.qcow2"], cwd=d)
            assert r.rc == 0 and "No errors" in r.out, (where, repairer, r)
            assert not incompat(d / "t.qcow2") & DIRTY, where
            assert_reads_like_reference(d, name, i)
        for d in tmp_path.iterdir():
            shutil.rmtree(d)


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_clean_close(tmp_path, name):
    """Without a crash both close cleanly: bit cleared, refcounts exact, data intact."""
    cmds = SCRIPTS[name][3]
    imgs = {w: run_writer(tmp_path, name, w, len(cmds), abort=False) for w in WRITERS}
    for w, d in imgs.items():
        assert not incompat(d / "t.qcow2") & DIRTY, w
        r = run([ORACLE_IMG, "check", "t.qcow2"], cwd=d)
        assert r.rc == 0 and "No errors" in r.out, (w, r)
        assert_reads_like_reference(d, name, len(cmds))
    assert incompat(imgs["ours"] / "t.qcow2") == incompat(imgs["oracle"] / "t.qcow2")


# (create options, setup, script before abort, dirty afterwards as in QEMU 7.2)
HEADER_CASES = {
    "alloc": ("lazy_refcounts=on", [], ["write -P 1 0 4k"]),
    "alloc_then_flush": ("lazy_refcounts=on", [], ["write -P 1 0 4k", "flush"]),
    "overwrite": ("lazy_refcounts=on", ["write -P 5 0 64k"], ["write -P 1 0 4k"]),
    "zero_discard": ("lazy_refcounts=on", ["write -P 5 0 64k"],
                     ["write -z 128k 64k", "write -z 4k 4k", "write -z -u 0 64k",
                      "discard 192k 64k"]),
    "compressed": ("lazy_refcounts=on", [], ["write -c -P 1 0 64k"]),
    "compressed_cow": ("lazy_refcounts=on", ["write -c -P 1 0 64k"], ["write -P 2 8k 2k"]),
    "subcluster": ("lazy_refcounts=on,extended_l2=on", ["write -P 1 0 4k"],
                   ["write -P 2 8k 2k"]),
    "prealloc": ("lazy_refcounts=on", [], ["truncate -m metadata 2M"]),
    "not_lazy": ("lazy_refcounts=off", [], ["write -P 1 0 4k", "write -P 2 512k 64k"]),
}


@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_dirty_bit_like_qemu(tmp_path, case):
    """Which scripts leave the dirty bit: exactly those that do in QEMU (an
    allocating write or preallocation; not overwrites, zero writes, discards or
    compressed writes), and an explicit flush does not clear it."""
    opts, setup, script = HEADER_CASES[case]
    seen = {}
    for w, (img, io) in WRITERS.items():
        d = make(tmp_path / w, opts, "1M", setup)
        r = run([io, *io_args(script + ["abort"]), "t.qcow2"], cwd=d)
        assert r.rc != 0 and "failed" not in r.out + r.err, (w, r)
        # QEMU does not flush after a compressed write: its L2 entry never reaches
        # the disk before the abort there (ours does), so only the bits compare.
        chk = None if case == "compressed" else check_text(ORACLE_IMG, d)
        seen[w] = (incompat(d / "t.qcow2"), dirty_flag(d), chk)
    assert seen["ours"] == seen["oracle"]
    lazy_alloc = case in ("alloc", "alloc_then_flush", "compressed_cow", "subcluster",
                          "prealloc")
    assert bool(seen["ours"][0] & DIRTY) == lazy_alloc, seen  # QEMU 7.2's answers


def test_info_and_check_of_dirty_image(tmp_path):
    """`qemu-img info` (human and JSON) and `qemu-img check` of a crashed lazy image:
    ours prints what the oracle prints (9.1's child-node section aside)."""
    d = run_writer(tmp_path, "alloc_discard_zero", "ours", 2)
    for args in (["info", "t.qcow2"], ["info", "--output=json", "t.qcow2"],
                 ["check", "t.qcow2"], ["check", "--output=json", "t.qcow2"]):
        theirs = run([ORACLE_IMG, *args], cwd=d)
        ours = run([QIMG, *args], cwd=d)
        if args[0] == "info" and "--output=json" in args:
            a, b = json.loads(ours.out), json.loads(theirs.out)
            a.pop("children", None)
            assert a == b and a["dirty-flag"] is True
            continue
        assert (ours.rc, strip_child(ours.out), ours.err.replace(str(QIMG), "qemu-img")) == \
            (theirs.rc, theirs.out, theirs.err.replace(ORACLE_IMG, "qemu-img")), args
    assert "cleanly shut down: no" in run([QIMG, "info", "t.qcow2"], cwd=d).out


@pytest.mark.parametrize("amender", list(WRITERS))
@pytest.mark.parametrize("writer", list(WRITERS))
def test_amend_lazy_off_on_dirty_image(tmp_path, writer, amender):
    """amend -o lazy_refcounts=off on a crashed lazy image: repaired on open, then
    clean and consistent, with neither bit set; ours says what the oracle says."""
    out = {}
    for who in ("oracle", amender):
        d = run_writer(tmp_path / who, "alloc_discard_zero", writer, 2)
        r = run([WRITERS[who][0], "amend", "-o", "lazy_refcounts=off", "t.qcow2"], cwd=d)
        out[who] = (r.rc, r.out, r.err.replace(str(WRITERS[who][0]), "qemu-img"))
        with open(d / "t.qcow2", "rb") as f:
            hdr = f.read(88)
        assert int.from_bytes(hdr[72:88], "big") == 0, (who, hdr[72:88])
        r = run([ORACLE_IMG, "check", "t.qcow2"], cwd=d)
        assert r.rc == 0 and "No errors" in r.out, (who, r)
        assert_reads_like_reference(d, "alloc_discard_zero", 2)
    assert out[amender] == out["oracle"]


def test_convert_to_lazy_image(tmp_path):
    """A convert to a lazy image with more refcount blocks than the cache holds (so
    deferred blocks are written back on eviction) and a refcount table growth:
    clean, consistent and identical to the source."""
    src = tmp_path / "src.raw"
    with open(src, "wb") as f:
        for i in range(24):
            f.write(bytes([i * 7 + 1]) * (512 << 10) + bytes(512 << 10))
    dst = tmp_path / "dst.qcow2"
    r = run([QIMG, "convert", "-O", "qcow2", "-o",
             "lazy_refcounts=on,cluster_size=512,refcount_bits=64", src.name, dst.name],
            cwd=tmp_path)
    assert r.rc == 0, r
    assert not incompat(dst) & DIRTY
    r = run([ORACLE_IMG, "check", dst.name], cwd=tmp_path)
    assert r.rc == 0 and "No errors" in r.out, r
    r = run([ORACLE_IMG, "compare", "-f", "raw", "-F", "qcow2", src.name, dst.name],
            cwd=tmp_path)
    assert r.rc == 0, r


def test_close_writeback_failure_keeps_dirty(tmp_path, bindir):
    """When the deferred refcount blocks cannot be written at close, the dirty bit
    stays (the next read-write open repairs), as in QEMU, which says so the same way
    (ours runs as "qemu-io" so that the message's program name compares)."""
    out = {}
    for w, io in (("ours", bindir / "qemu-io"), ("oracle", ORACLE_IO)):
        d = make(tmp_path / w, "lazy_refcounts=on", "1M", ["write -P 1 0 128k"])
        spec = "json:" + json.dumps({"driver": "qcow2", "file": {
            "driver": "blkdebug",
            "inject-error": [{"event": "refblock_update_part", "errno": 5, "once": True}],
            "image": {"driver": "file", "filename": "t.qcow2"}}})
        r = run([io, "-c", "write -P 2 256k 4k", spec], cwd=d)
        out[w] = (r.rc, r.out.split("\n")[0], r.err.replace(str(io), "qemu-io"),
                  incompat(d / "t.qcow2"), check_text(ORACLE_IMG, d))
        r = run([io, "-c", "read -P 2 256k 4k", "t.qcow2"], cwd=d)
        assert r.rc == 0 and "fail" not in r.out + r.err, (w, r)
        r = run([ORACLE_IMG, "check", "t.qcow2"], cwd=d)
        assert r.rc == 0 and "No errors" in r.out, (w, r)
    assert out["ours"] == out["oracle"]
    assert out["ours"][3] & DIRTY and "Failed to flush the refcount block cache" in out["ours"][2]
