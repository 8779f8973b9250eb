# SPDX-License-Identifier: MIT
"""qemu-img check for qcow2: reports, repairs and exit codes against the oracle.

Images are made by the oracle (qemu-img create + qemu-io writes), damaged on
purpose with qcow2_corrupt, and identical copies are checked by qemu-img and
by qimg: stdout, stderr and the exit code must be equal for `check`,
`check --output=json`, `check -r leaks` and `check -r all`; a repaired copy
must then pass the oracle's `qemu-img check` exactly as the oracle's own
repaired copy does, and `qemu-img compare` equal to it.

The oracle is qemu-img 7.2; qemu-img 9.1's check reports the same messages
for everything exercised here (its refcount rebuilding algorithm is the one
7.1 introduced), so no case needs a 9.1-specific expectation.
"""
import shutil
import signal

import pytest

from conftest import ORACLE_IMG, ORACLE_IO, run
from qcow2_corrupt import (INCOMPAT_CORRUPT, INCOMPAT_DIRTY, OFLAG_COMPRESSED,
                           OFLAG_COPIED, OFLAG_ZERO, Qcow2)

pytestmark = pytest.mark.skipif(not ORACLE_IMG or not ORACLE_IO, reason="oracle not installed")

MODES = [[], ["--output=json"], ["-r", "leaks"], ["-r", "all"], ["-r", "all", "--output=json"],
         ["-q"]]


def make_image(oracle, path, opts="", size="4M", writes=("write -P 1 0 1M",)):
    args = ["create", "-q", "-f", "qcow2"]
    if opts:
        args += ["-o", opts]
    r = oracle.img(*args, str(path), size)
    assert r.rc == 0, r.err
    cmd = []
    for w in writes:
        cmd += ["-c", w]
    if cmd:
        r = oracle.io("-f", "qcow2", *cmd, str(path))
        assert r.rc == 0, r.err
    return Qcow2(path)


def check_both(ours, oracle, src, args, tmp_path, tag):
    """Check identical copies of src with both tools; return the two copies' paths."""
    paths = []
    results = []
    for who, tool in (("o", oracle), ("q", ours)):
        d = tmp_path / f"{tag}-{who}"
        d.mkdir()
        dst = d / "t.qcow2"
        shutil.copyfile(src, dst)
        results.append(tool.img("check", *args, "t.qcow2", cwd=d))
        paths.append(dst)
    o, q = results
    assert (q.out, q.err, q.rc) == (o.out, o.err, o.rc), f"args={args}\noracle={o}\nours={q}"
    return paths


def _strip_end(out):
    return "".join(l for l in out.splitlines(True) if not l.startswith("Image end offset"))


def compare_all_modes(ours, oracle, src, tmp_path, modes=MODES, tag="m", same_end=True):
    """same_end=False: QEMU rewrites persistent bitmaps when it closes a read-write image
    (qimg leaves them where they are), so repaired images may end at different offsets."""
    for i, args in enumerate(modes):
        opath, qpath = check_both(ours, oracle, src, args, tmp_path, f"{tag}{i}")
        if "-r" not in args:
            continue
        # The repaired copies: the oracle judges ours as it judges its own.
        o = oracle.img("check", str(opath))
        q = oracle.img("check", str(qpath))
        if not same_end:
            o.out, q.out = _strip_end(o.out), _strip_end(q.out)
        assert (q.out.replace(str(qpath), ""), q.err, q.rc) == \
            (o.out.replace(str(opath), ""), o.err, o.rc), f"after {args}: {o} vs {q}"
        if o.rc == 0:
            r = oracle.img("compare", "-f", "qcow2", "-F", "qcow2", str(opath), str(qpath))
            assert r.rc == 0, r.out + r.err
        if same_end:
            # Same repair, same layout: the rebuilt refcount structure lands where QEMU's
            # does and freed clusters are punched out as QEMU punches them.
            assert open(opath, "rb").read() == open(qpath, "rb").read(), f"after {args}"


@pytest.fixture
def base(oracle, tmp_path):
    """4 MiB image, 1 MiB written: clusters 0 header, 1 reftable, 2 refblock, 3 L1, 4 L2,
    5..20 data."""
    return make_image(oracle, tmp_path / "base.qcow2")


def test_clean_image(both, tmp_path, base):
    ours, oracle = both
    compare_all_modes(ours, oracle, base.path, tmp_path)


def test_sample_from_manual(both, tmp_path, base):
    """samples-qemu-img-9.1.md: leak past EOF (ignored), refcount too high, refcount 0."""
    ours, oracle = both
    base.set_refcount(40, 1)
    base.set_refcount(5, 2)
    base.set_refcount(2, 0)
    q = ours.img("check", base.path)
    assert q.rc == 2
    assert q.out == ("\n2 errors were found on the image.\n"
                     "Data may be corrupted, or further writes to the image may corrupt it.\n"
                     "\n1 leaked clusters were found on the image.\n"
                     "This means waste of disk space, but no harm to data.\n"
                     "16/64 = 25.00% allocated, 0.00% fragmented, 0.00% compressed clusters\n"
                     "Image end offset: 1376256\n")
    assert q.err == ("ERROR cluster 2 refcount=0 reference=1\n"
                     "Leaked cluster 5 refcount=2 reference=1\n"
                     "ERROR OFLAG_COPIED data cluster: l2_entry=8000000000050000 refcount=2\n")
    compare_all_modes(ours, oracle, base.path, tmp_path)


def _leak_data(q):
    q.set_refcount(q.host_cluster(0), 2)


def _leak_free(q):
    # A cluster inside the file that nothing references.
    q.truncate(q.file_size() + 2 * q.cluster_size)
    q.set_refcount(q.file_size() // q.cluster_size - 1, 1)


def _refcount_zero(q):
    q.set_refcount(q.host_cluster(65536), 0)


def _refcount_low_shared(q):
    # Two guest clusters share one host cluster: its refcount 1 is too low.
    q.set_l2_entry(2 * 65536, q.l2_entry(65536) & ~OFLAG_COPIED)
    q.set_l2_entry(65536, q.l2_entry(65536) & ~OFLAG_COPIED)


def _copied_cleared_data(q):
    q.set_l2_entry(0, q.l2_entry(0) & ~OFLAG_COPIED)


def _copied_cleared_l1(q):
    q.set_l1_entry(0, q.l1_entry(0) & ~OFLAG_COPIED)


def _copied_set_shared(q):
    # Refcount 2 on a cluster whose entry claims to be the only reference.
    q.set_refcount(q.host_cluster(0), 2)
    q.set_refcount(q.l2_cluster(0), 2)


def _l2_past_eof(q):
    q.set_l2_entry(3 * 65536, OFLAG_COPIED | (q.file_size() + 10 * q.cluster_size))


def _l2_unaligned(q):
    q.set_l2_entry(3 * 65536, q.l2_entry(3 * 65536) + 512)


def _zero_alloc_unaligned(q):
    q.set_l2_entry(3 * 65536, (q.l2_entry(3 * 65536) + 512) | OFLAG_ZERO)


def _l1_unaligned(q):
    q.set_l1_entry(0, q.l1_entry(0) + 512)


def _l2_reserved(q):
    q.set_l2_entry(65536, q.l2_entry(65536) | (1 << 56))


def _l1_reserved(q):
    q.set_l1_entry(0, q.l1_entry(0) | (1 << 60))


def _overlap_metadata(q):
    # A data cluster mapped onto the L2 table itself.
    q.set_l2_entry(4 * 65536, OFLAG_COPIED | (q.l2_cluster(0) << q.cluster_bits))


def _rt_unaligned(q):
    q.set_rt_entry(0, q.rt_entry(0) + 512)


def _rt_reserved(q):
    q.set_rt_entry(0, q.rt_entry(0) | 1)


def _rt_outside(q):
    q.set_rt_entry(1, q.file_size() + 5 * q.cluster_size)


def _rt_missing(q):
    q.set_rt_entry(0, 0)


def _refblock_refcount(q):
    q.set_refcount(q.rt_entry(0) >> q.cluster_bits, 2)


def _many(q):
    _leak_data(q)
    _copied_cleared_l1(q)
    _l2_reserved(q)
    _leak_free(q)


CORRUPTIONS = {
    "leak_data": _leak_data,
    "leak_free": _leak_free,
    "refcount_zero": _refcount_zero,
    "refcount_low_shared": _refcount_low_shared,
    "copied_cleared_data": _copied_cleared_data,
    "copied_cleared_l1": _copied_cleared_l1,
    "copied_set_shared": _copied_set_shared,
    "l2_past_eof": _l2_past_eof,
    "l2_unaligned": _l2_unaligned,
    "zero_alloc_unaligned": _zero_alloc_unaligned,
    "l1_unaligned": _l1_unaligned,
    "l2_reserved": _l2_reserved,
    "l1_reserved": _l1_reserved,
    "overlap_metadata": _overlap_metadata,
    "rt_unaligned": _rt_unaligned,
    "rt_reserved": _rt_reserved,
    "rt_outside": _rt_outside,
    "rt_missing": _rt_missing,
    "refblock_refcount": _refblock_refcount,
    "many": _many,
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption(both, tmp_path, name):
    ours, oracle = both
    q = make_image(oracle, tmp_path / "c.qcow2",
                   writes=("write -P 1 0 1M", "write -P 2 3M 64k"))
    CORRUPTIONS[name](q)
    compare_all_modes(ours, oracle, q.path, tmp_path)


SPECS = ["compat=0.10", "cluster_size=512", "cluster_size=4k,refcount_bits=1",
         "cluster_size=2M", "refcount_bits=64", "refcount_bits=8", "refcount_bits=2",
         "extended_l2=on", "compression_type=zstd",
         # 64 refcounts per block: many blocks, a multi-cluster refcount table to rebuild
         "cluster_size=512,refcount_bits=64"]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("damage", ["none", "leak", "zero"])
def test_geometries(both, tmp_path, spec, damage):
    ours, oracle = both
    cs = 65536
    for part in spec.split(","):
        if part.startswith("cluster_size="):
            v = part.split("=")[1]
            cs = int(v[:-1]) * {"k": 1024, "M": 1 << 20}[v[-1]] if v[-1] in "kM" else int(v)
    q = make_image(oracle, tmp_path / "g.qcow2", spec, "8M",
                   ("write -P 1 0 64k", "write -P 2 100k 3k", "write -z 1M 128k",
                    f"write -c -P 3 2M {cs}", f"write -c -P 4 {2 * 1024 * 1024 + cs} {cs}",
                    "write -P 5 4000k 1k", "write -c -P 6 6M 2M"))
    if damage == "leak":
        q.set_refcount(q.host_cluster(0), 2)
    elif damage == "zero":
        q.set_refcount(q.host_cluster(0), 0)
    compare_all_modes(ours, oracle, q.path, tmp_path)


def test_compressed_copied_flag(both, tmp_path):
    ours, oracle = both
    q = make_image(oracle, tmp_path / "z.qcow2",
                   writes=("write -c -P 1 0 64k", "write -c -P 2 64k 64k", "write -P 3 1M 64k"))
    assert q.l2_entry(0) & OFLAG_COMPRESSED
    q.set_l2_entry(0, q.l2_entry(0) | OFLAG_COPIED)
    compare_all_modes(ours, oracle, q.path, tmp_path)


def test_extended_l2_bitmaps(both, tmp_path):
    ours, oracle = both
    q = make_image(oracle, tmp_path / "x.qcow2", "extended_l2=on", "4M",
                   ("write -P 1 0 64k", "write -P 2 1M 4k"))
    q.set_l2_bitmap(0, q.l2_bitmap(0) | (1 << 32))          # alloc & zero at once
    q.set_l2_bitmap(2 * 65536, 1)                           # unallocated with bitmap
    compare_all_modes(ours, oracle, q.path, tmp_path)


def test_fragmentation(both, tmp_path):
    ours, oracle = both
    q = make_image(oracle, tmp_path / "f.qcow2", "", "4M",
                   ("write -P 1 1M 64k", "write -P 2 0 64k", "write -P 3 2M 64k",
                    "write -c -P 4 3M 64k"))
    compare_all_modes(ours, oracle, q.path, tmp_path, [[], ["--output=json"]])


def test_snapshots_counted(both, tmp_path):
    """Snapshot L1 tables (and what they map) are references too."""
    ours, oracle = both
    path = tmp_path / "s.qcow2"
    make_image(oracle, path, writes=("write -P 1 0 1M",))
    assert oracle.img("snapshot", "-c", "one", str(path)).rc == 0
    r = oracle.io("-f", "qcow2", "-c", "write -P 2 0 128k", str(path))
    assert r.rc == 0
    assert oracle.img("snapshot", "-c", "two", str(path)).rc == 0
    compare_all_modes(ours, oracle, path, tmp_path)
    q = Qcow2(path)
    q.set_refcount(q.host_cluster(512 * 1024), 1)  # shared with the snapshots: too low
    compare_all_modes(ours, oracle, path, tmp_path, tag="low")


def test_bitmaps_counted(both, tmp_path):
    """Persistent bitmaps (directory, tables, data) are references; repairs keep them."""
    ours, oracle = both
    path = tmp_path / "b.qcow2"
    make_image(oracle, path, "", "64M", ())
    assert oracle.img("bitmap", "--add", str(path), "b0").rc == 0
    assert oracle.img("bitmap", "--add", "-g", "512", str(path), "b1").rc == 0
    assert oracle.io("-f", "qcow2", "-c", "write -P 1 0 4M", str(path)).rc == 0
    compare_all_modes(ours, oracle, path, tmp_path, same_end=False)
    q = Qcow2(path)
    q.set_refcount(q.host_cluster(0), 2)
    compare_all_modes(ours, oracle, path, tmp_path, tag="leak", same_end=False)
    opath, qpath = check_both(ours, oracle, path, ["-r", "all"], tmp_path, "info")
    o = oracle.img("info", str(opath))
    r = oracle.img("info", str(qpath))
    strip = lambda s, p: "".join(l for l in s.replace(str(p), "").splitlines(True)
                                 if not l.startswith("disk size"))
    assert strip(r.out, qpath) == strip(o.out, opath)
    assert "name: b1" in r.out


def test_corrupt_bit(both, tmp_path, base):
    """check -r all repairs an image marked corrupt and clears the bit."""
    ours, oracle = both
    base.set_incompat(base.incompat | INCOMPAT_CORRUPT)
    base.set_refcount(base.host_cluster(0), 2)
    compare_all_modes(ours, oracle, base.path, tmp_path)
    opath, qpath = check_both(ours, oracle, base.path, ["-r", "all"], tmp_path, "bit")
    assert Qcow2(qpath).incompat == Qcow2(opath).incompat == 0


def _dirty_image(oracle, path, opts="lazy_refcounts=on"):
    make_image(oracle, path, opts, "4M", ())
    r = run([ORACLE_IO, "-f", "qcow2", "-c", "write -P 1 0 1M", "-c", "write -P 2 2M 64k",
             "-c", "abort", str(path)])
    assert r.rc == -signal.SIGABRT
    q = Qcow2(path)
    assert q.incompat & INCOMPAT_DIRTY
    return q


def test_dirty_bit_check(both, tmp_path):
    """A lazy-refcounts image killed mid-way: check reports, -r all rebuilds, bit cleared.
    `-r leaks` cannot rebuild (exit 1), yet QEMU clears the dirty bit when it closes the
    read-write image all the same; the byte comparison holds qimg to that."""
    ours, oracle = both
    q = _dirty_image(oracle, tmp_path / "d.qcow2")
    compare_all_modes(ours, oracle, q.path, tmp_path)
    opath, qpath = check_both(ours, oracle, q.path, ["-r", "all"], tmp_path, "bit")
    assert not Qcow2(qpath).incompat & INCOMPAT_DIRTY


def test_dirty_repaired_on_open(both, tmp_path):
    """Opening a dirty image read-write repairs it first, as QEMU does."""
    ours, oracle = both
    q = _dirty_image(oracle, tmp_path / "d.qcow2")
    o_path, q_path = tmp_path / "o.qcow2", tmp_path / "q.qcow2"
    shutil.copyfile(q.path, o_path)
    shutil.copyfile(q.path, q_path)
    o = oracle.io("-c", "write -P 7 3M 64k", str(o_path))
    r = ours.img("resize", "-f", "qcow2", str(q_path), "+0")  # read-write open
    assert o.rc == 0
    assert r.rc == 0, r.err
    # The repair prints the same messages (qemu-io's and ours, on stderr).
    assert r.err == o.err
    assert not Qcow2(q_path).incompat & INCOMPAT_DIRTY
    c = oracle.img("check", str(q_path))
    assert c.rc == 0 and c.out.startswith("No errors were found"), c
    assert oracle.io("-c", "read -P 1 0 1M", "-c", "read -P 2 2M 64k", str(q_path)).rc == 0


def test_dirty_read_only_not_repaired(both, tmp_path):
    ours, oracle = both
    q = _dirty_image(oracle, tmp_path / "d.qcow2")
    before = open(q.path, "rb").read()
    r = ours.img("info", q.path)
    assert r.rc == 0
    assert open(q.path, "rb").read() == before


def test_options(both, tmp_path, base):
    ours, oracle = both
    base.set_refcount(base.host_cluster(0), 2)
    for args in (["-f", "qcow2"], ["-T", "none"], ["-U"], ["-q", "-r", "leaks"],
                 ["-r", "leaks", "--output=json"],
                 ["-U", "-r", "all"], ["-r", "bogus"], ["--output=xml"]):
        opath, qpath = check_both(ours, oracle, base.path, args, tmp_path,
                                  "o" + "".join(a.strip("-=") for a in args))
    # --image-opts with an option string
    o = oracle.img("check", "--image-opts", f"driver=qcow2,file.filename={base.path}")
    q = ours.img("check", "--image-opts", f"driver=qcow2,file.filename={base.path}")
    assert (q.out, q.err, q.rc) == (o.out, o.err, o.rc)


def test_unsupported_format(both, tmp_path):
    ours, oracle = both
    (tmp_path / "r.raw").write_bytes(b"\0" * 65536)
    o = oracle.img("check", "r.raw")
    q = ours.img("check", "r.raw")
    assert (q.out, q.err, q.rc) == (o.out, o.err, o.rc) == ("", o.err, 63)


def test_hostile_huge_refcount_table(ours, tmp_path, base):
    """A refcount table entry far past the end: reported, no huge allocation."""
    base.set_rt_entry(3, (1 << 55))
    r = ours.img("check", base.path)
    assert r.rc == 2
    assert "refcount block 3 is outside image" in r.err


def _shared_300(q):
    """300 more guest clusters map guest 1M's host cluster: the count passes 255 (a carry
    into the high byte of a 16-bit refcount) or overflows narrower refcounts."""
    e = q.l2_entry(1 << 20)
    for i in range(1, 301):
        q.set_l2_entry((1 << 20) + i * q.cluster_size, e)


MANY_BLOCKS_DAMAGE = {
    "none": lambda q: None,
    "zero": lambda q: q.set_refcount(q.host_cluster(2 << 20), 0),
    # A block in the middle of the table is missing: its clusters all read as refcount 0.
    "block_missing": lambda q: q.set_rt_entry(q.host_cluster(1 << 20) // q.rb_entries, 0),
    "shared": _shared_300,
    # The file's last cluster: with 1-bit refcounts it lies in the last block's final,
    # partly used byte (see the assertion below).
    "last_zero": lambda q: q.set_refcount(q.file_size() // q.cluster_size - 1, 0),
}


@pytest.mark.parametrize("spec", ["cluster_size=512", "cluster_size=512,refcount_bits=8",
                                  "cluster_size=512,refcount_bits=1"])
@pytest.mark.parametrize("damage", sorted(MANY_BLOCKS_DAMAGE))
def test_many_refcount_blocks(both, tmp_path, spec, damage):
    """Tens of refcount blocks (a partly used last one; sub-byte entries ending mid-byte):
    the comparison a whole block at a time must report exactly what the per-cluster one
    reports, wherever in the table the damage lies."""
    ours, oracle = both
    q = make_image(oracle, tmp_path / "m.qcow2", spec, "8M",
                   ("write -P 1 0 3M", "write -c -P 2 4M 64k", "write -P 3 6M 5k"))
    clusters = q.file_size() // q.cluster_size
    assert clusters > 10 * q.rb_entries or q.refcount_bits == 1
    if q.refcount_bits == 1:
        assert clusters > q.rb_entries and clusters % 8, "want a last block ending mid-byte"
    MANY_BLOCKS_DAMAGE[damage](q)
    compare_all_modes(ours, oracle, q.path, tmp_path)


@pytest.mark.parametrize("damage", sorted(MANY_BLOCKS_DAMAGE))
def test_check_through_blkdebug(both, tmp_path, damage):
    """Below a blkdebug filter (which sees each refcount lookup) the check looks refcounts
    up one cluster at a time: same report and same repair as the oracle's."""
    ours, oracle = both
    q = make_image(oracle, tmp_path / "m.qcow2", "cluster_size=512", "8M",
                   ("write -P 1 0 3M", "write -c -P 2 4M 64k", "write -P 3 6M 5k"))
    MANY_BLOCKS_DAMAGE[damage](q)
    for i, args in enumerate([[], ["--output=json"], ["-r", "all"]]):
        paths, results = [], []
        for who, tool in (("o", oracle), ("q", ours)):
            d = tmp_path / f"b{i}-{who}"
            d.mkdir()
            shutil.copyfile(q.path, d / "t.qcow2")
            (d / "empty.conf").write_text("")
            results.append(tool.img("check", *args, "-f", "qcow2", "blkdebug:empty.conf:t.qcow2",
                                    cwd=d))
            paths.append(d / "t.qcow2")
        o, r = results
        assert (r.out, r.err, r.rc) == (o.out, o.err, o.rc), f"args={args}\noracle={o}\nours={r}"
        assert open(paths[0], "rb").read() == open(paths[1], "rb").read(), f"after {args}"
