# SPDX-License-Identifier: MIT
"""parallels against the oracle (qemu-img/qemu-io 7.2; expectations checked by hand with 9.1).

Layout: /work/shared/specs/parallels.txt. 9.1 vs 7.2 differences, named where
they matter: 9.1 checks data_off and duplicate BAT offsets (7.2 does neither),
repairs an unclean/duplicated image on a read-write open, discards clusters on
discard and zero writes (7.2 ignores discard and writes zeroes as data) and
reuses the freed clusters; those tests carry 9.1's text and bytes literally.
"""
import re
import struct

import pytest

TIMING = re.compile(r"\d+\.\d+ sec \([^)]*\)")
MiB = 1 << 20
INUSE = 0x746F6E59


def header(path):
    """(magic, version, heads, cylinders, tracks, bat_entries, nb_sectors, inuse, data_off, flags, ext_off)."""
    return struct.unpack_from("<16sIIIIIQIIIQ", path.read_bytes(), 0)


def bat(path, n):
    return list(struct.unpack_from(f"<{n}I", path.read_bytes(), 64))


def patch(path, off, fmt, *values):
    b = bytearray(path.read_bytes())
    struct.pack_into(fmt, b, off, *values)
    path.write_bytes(bytes(b))


def io_equal(a, b):
    return (a.rc, TIMING.sub("T", a.out), a.err) == (b.rc, TIMING.sub("T", b.out), b.err)


def same(x, y, name_x="a.img", name_y="b.img"):
    return (x.rc, x.out.replace(name_x, "X"), x.err.replace(name_x, "X")) == \
           (y.rc, y.out.replace(name_y, "X"), y.err.replace(name_y, "X"))


def written_image(tool, name, size="10M", opts=()):
    """An image with two clusters: 0x11 at 1M (4k), 0x22 at 5M (512 bytes)."""
    assert tool.img("create", "-q", "-f", "parallels", *opts, name, size).rc == 0
    r = tool.io("-f", "parallels", "-c", "write -P 0x11 1M 4k", "-c", "write -P 0x22 5M 512", name)
    assert r.rc == 0, r


CREATE = {
    "default": ([], "10M"),
    "64k": (["-o", "cluster_size=64k"], "3M"),
    "odd-cluster": (["-o", "cluster_size=3000"], "1M"),  # rounded up to 6 sectors
    "1536": (["-o", "cluster_size=1536"], "1M"),
    "tiny-cluster": (["-o", "cluster_size=256"], "1M"),
    "zero": ([], "0"),
    "odd-size": ([], "3000"),
    "2T": ([], "2T"),  # nb_sectors needs the high 32 bits
    "prealloc-full": (["-o", "preallocation=full"], "3M"),
    "prealloc-falloc": (["-o", "preallocation=falloc"], "3M"),
}


@pytest.mark.parametrize("name", CREATE)
def test_create_layout_equals_oracle(ours, oracle, tmp_path, name):
    opts, size = CREATE[name]
    a = ours.img("create", "-f", "parallels", *opts, "a.img", size)
    b = oracle.img("create", "-f", "parallels", *opts, "b.img", size)
    assert same(a, b)
    assert (tmp_path / "a.img").read_bytes() == (tmp_path / "b.img").read_bytes()
    if name in ("odd-cluster", "1536"):
        return  # cluster sizes not a power of two: see test_check_odd_cluster_as_9_1
    if name not in ("tiny-cluster", "2T"):  # 7.2 reports leaks on these, 9.1 does not
        r = oracle.img("check", "a.img")
        assert r.rc == 0 and r.out.startswith("No errors were found on the image."), r
    r = ours.img("check", "a.img")
    assert r.rc == 0 and r.out.startswith("No errors were found on the image."), r


def test_check_odd_cluster_as_9_1(ours, tmp_path):
    """9.1 rounds the lowest data_off with a power-of-two mask: its own 1536-byte-cluster
    image (data_off 6 sectors) fails its check, which wants 8 (7.2 reports a leak instead)."""
    assert ours.img("create", "-q", "-f", "parallels", "-o", "cluster_size=1536", "a.img", "1M").rc == 0
    assert header(tmp_path / "a.img")[8] == 6
    r = ours.img("check", "a.img")
    assert (r.rc, r.err) == (2, "ERROR data_off field has incorrect value\n"), r
    assert r.out.endswith("Image end offset: 4096\n")
    # a read-write open repairs it (9.1; 7.2 leaves data_off at 6)
    r = ours.io("-c", "write -P 1 0 4k", "a.img")
    assert r.rc == 0 and r.err == "Repairing data_off field has incorrect value\n", r
    assert header(tmp_path / "a.img")[8] == 8


@pytest.mark.parametrize("opts,size", [
    (["-o", "cluster_size=2G"], "1M"),
    (["-o", "cluster_size=512"], "2T"),
    (["-o", "cluster_size=bogus"], "1M"),
])
def test_create_errors_equal_oracle(ours, oracle, tmp_path, opts, size):
    a = ours.img("create", "-f", "parallels", *opts, "a.img", size)
    b = oracle.img("create", "-f", "parallels", *opts, "b.img", size)
    assert a.rc == 1 and same(a, b)


def test_create_help_equals_oracle(ours, oracle):
    a = ours.img("create", "-f", "parallels", "-o", "help")
    b = oracle.img("create", "-f", "parallels", "-o", "help")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)


@pytest.mark.parametrize("opts", [[], ["-o", "cluster_size=64k"], ["-o", "cluster_size=512"]])
def test_writes_byte_identical(ours, oracle, tmp_path, opts):
    written_image(ours, "a.img", opts=opts)
    written_image(oracle, "b.img", opts=opts)
    assert (tmp_path / "a.img").read_bytes() == (tmp_path / "b.img").read_bytes()
    assert header(tmp_path / "a.img")[7] == 0  # inuse cleared on close
    r = oracle.img("check", "a.img")
    assert r.rc == 0, r
    for args in (["map", "--output=json"], ["info"]):
        x, y = ours.img(*args, "a.img"), oracle.img(*args, "a.img")
        assert x.rc == y.rc == 0
        # 9.1 adds "compressed" to map JSON and the child node to info (7.2 prints neither)
        assert x.out.replace(', "compressed": false', "").split("Child node")[0] == y.out


def v1_image(tool, tmp_path, name):
    """A "WithoutFreeSpace" image: BAT entries count sectors, not clusters."""
    written_image(tool, name)
    p = tmp_path / name
    entries = bat(p, 10)
    patch(p, 0, "16s", b"WithoutFreeSpace")
    for i, e in enumerate(entries):
        patch(p, 64 + 4 * i, "<I", e * 2048)
    return p


def test_v1_reads_and_writes_like_oracle(ours, oracle, tmp_path):
    a = v1_image(oracle, tmp_path, "a.img")
    (tmp_path / "b.img").write_bytes(a.read_bytes())
    cmds = ["-c", "read -P 0x11 1M 4k", "-c", "read -P 0x22 5M 512", "-c", "read -P 0 0 1M",
            "-c", "write -P 0x33 8M 4k", "-c", "read -P 0x33 8M 4k"]
    x, y = ours.io(*cmds, "a.img"), oracle.io(*cmds, "b.img")
    assert x.rc == 0 and io_equal(x, y), (x, y)
    assert a.read_bytes() == (tmp_path / "b.img").read_bytes()
    assert bat(a, 10)[8] == 3 * 2048  # the new cluster's entry in sectors
    for args in (["check"], ["map", "--output=json"]):
        x, y = ours.img(*args, "a.img"), oracle.img(*args, "a.img")
        assert x.rc == y.rc == 0 and x.out.replace(', "compressed": false', "") == y.out


def test_convert_both_ways(ours, oracle, tmp_path):
    written_image(oracle, "src.img")
    assert ours.img("convert", "-O", "raw", "src.img", "a.raw").rc == 0
    assert oracle.img("convert", "-O", "raw", "src.img", "b.raw").rc == 0
    assert (tmp_path / "a.raw").read_bytes() == (tmp_path / "b.raw").read_bytes()
    for opts in ([], ["-o", "cluster_size=64k"]):
        assert ours.img("convert", "-O", "parallels", *opts, "a.raw", "a.img").rc == 0
        assert oracle.img("convert", "-O", "parallels", *opts, "b.raw", "b.img").rc == 0
        assert (tmp_path / "a.img").read_bytes() == (tmp_path / "b.img").read_bytes()
        r = oracle.img("compare", "a.img", "src.img")
        assert r.rc == 0, r


def test_inuse_set_while_open(ours, oracle, tmp_path):
    """A session that dies leaves inuse set: qemu-img check calls it not closed correctly."""
    assert ours.img("create", "-q", "-f", "parallels", "a.img", "4M").rc == 0
    r = ours.io("-c", "write -P 1 0 4k", "-c", "abort", "a.img")
    assert r.rc != 0
    assert header(tmp_path / "a.img")[7] == INUSE
    x, y = ours.img("check", "a.img"), oracle.img("check", "a.img")
    assert x.rc == 2 and same(x, y, "a.img", "a.img")
    assert "ERROR image was not closed correctly" in x.err


def unclean_and_leaking(tool, tmp_path, name):
    written_image(tool, name)
    p = tmp_path / name
    patch(p, 44, "<I", INUSE)
    with open(p, "r+b") as f:
        f.truncate(5 * MiB)
    return p


def test_check_unclean_and_leak_equal_oracle(ours, oracle, tmp_path):
    unclean_and_leaking(oracle, tmp_path, "a.img")
    x, y = ours.img("check", "a.img"), oracle.img("check", "a.img")
    assert x.rc == 2 and same(x, y, "a.img", "a.img"), (x, y)
    assert "ERROR space leaked at the end of the image 2097152" in x.err
    x = ours.img("check", "--output=json", "a.img")
    y = oracle.img("check", "--output=json", "a.img")
    assert same(x, y, "a.img", "a.img")


def test_check_repair_equals_oracle(ours, oracle, tmp_path):
    a = unclean_and_leaking(oracle, tmp_path, "a.img")
    (tmp_path / "b.img").write_bytes(a.read_bytes())
    x, y = ours.img("check", "-r", "all", "a.img"), oracle.img("check", "-r", "all", "b.img")
    assert x.rc == 0 and same(x, y), (x, y)
    assert a.read_bytes() == (tmp_path / "b.img").read_bytes()
    assert a.stat().st_size == 3 * MiB and header(a)[7] == 0


def test_check_repair_leaks_only(ours, oracle, tmp_path):
    written_image(oracle, "a.img")
    with open(tmp_path / "a.img", "r+b") as f:
        f.truncate(7 * MiB)
    x = ours.img("check", "-r", "leaks", "a.img")
    assert x.rc == 0 and "4 leaked clusters" in x.out, x
    assert "Repairing space leaked at the end of the image 4194304" in x.err
    assert (tmp_path / "a.img").stat().st_size == 3 * MiB
    assert oracle.img("check", "a.img").rc == 0


def test_check_outside_image_repair(ours, oracle, tmp_path):
    written_image(oracle, "a.img")
    patch(tmp_path / "a.img", 64 + 4 * 2, "<I", 9)  # cluster 2 at 9 MiB, past the 3 MiB file
    (tmp_path / "b.img").write_bytes((tmp_path / "a.img").read_bytes())
    x, y = ours.img("check", "a.img"), oracle.img("check", "b.img")
    # 7.2 counts the cluster past the end in the image end offset; 9.1 aborts in this case
    assert x.rc == y.rc == 2 and x.err == y.err == "ERROR cluster 2 is outside image\n"
    assert "3/10 = 30.00% allocated, 33.33% fragmented" in x.out
    x, y = ours.img("check", "-r", "all", "a.img"), oracle.img("check", "-r", "all", "b.img")
    assert x.rc == 0 and same(x, y), (x, y)
    assert bat(tmp_path / "a.img", 10) == [0, 1, 0, 0, 0, 2, 0, 0, 0, 0]
    assert (tmp_path / "a.img").stat().st_size == 3 * MiB


def test_check_duplicate_as_9_1(ours, oracle, tmp_path):
    """9.1 only (7.2 does not look for duplicates): the report, -EBUSY without -r, a copy with -r."""
    written_image(oracle, "a.img")
    patch(tmp_path / "a.img", 64 + 4 * 5, "<I", 1)  # entry 5 duplicates entry 1
    x = ours.img("check", "a.img")
    assert (x.rc, x.out, x.err) == (1, "", "ERROR space leaked at the end of the image 1048576\n"
                                    "ERROR duplicate offset in BAT entry 5\n"
                                    "qemu-img: Check failed: Device or resource busy\n")
    x = ours.img("check", "-r", "all", "a.img")
    assert x.rc == 0, x
    assert x.err == ("Repairing space leaked at the end of the image 1048576\n"
                     "Repairing duplicate offset in BAT entry 5\n")
    assert x.out.startswith("The following inconsistencies were found and repaired:\n\n"
                            "    1 leaked clusters\n    1 corruptions\n")
    assert bat(tmp_path / "a.img", 10) == [0, 1, 0, 0, 0, 2, 0, 0, 0, 0]
    r = oracle.io("-r", "-c", "read -P 0x11 1M 4k", "-c", "read -P 0x11 5M 4k", "a.img")
    assert r.rc == 0 and "Pattern verification failed" not in r.out, r
    assert oracle.img("check", "a.img").rc == 0


def test_check_data_off_as_9_1(ours, oracle, tmp_path):
    written_image(oracle, "a.img")
    patch(tmp_path / "a.img", 48, "<I", 0x400)  # below the first cluster boundary after the BAT
    x = ours.img("check", "a.img")
    assert x.rc == 2 and x.err == "ERROR data_off field has incorrect value\n", x
    x = ours.img("check", "-r", "all", "a.img")
    assert x.rc == 0 and x.err == "Repairing data_off field has incorrect value\n", x
    assert header(tmp_path / "a.img")[8] == 0x800


def test_rw_open_repairs_as_9_1(ours, oracle, tmp_path):
    """9.1 repairs an unclean image on a read-write open; a read-only one stays as it is."""
    p = unclean_and_leaking(oracle, tmp_path, "a.img")
    before = p.read_bytes()
    r = ours.io("-r", "-c", "read -P 0x11 1M 4k", "a.img")
    assert r.rc == 0 and p.read_bytes() == before
    r = ours.io("-c", "read -P 0x11 1M 4k", "a.img")
    assert r.rc == 0
    assert r.err == ("Repairing image was not closed correctly\n"
                     "Repairing space leaked at the end of the image 2097152\n")
    assert header(p)[7] == 0 and p.stat().st_size == 3 * MiB
    assert oracle.img("check", "a.img").rc == 0


def test_discard_and_zero_free_clusters_as_9_1(ours, oracle, tmp_path):
    """9.1 (not 7.2): whole-cluster discards and zero writes unmap; new clusters reuse the holes."""
    assert ours.img("create", "-q", "-f", "parallels", "a.img", "5M").rc == 0
    r = ours.io("-c", "write -P 7 0 3M", "-c", "discard 1M 1M", "-c", "write -z 2M 1M",
                "-c", "write -z -u 0 1M", "a.img")
    assert r.rc == 0, r
    assert bat(tmp_path / "a.img", 5) == [0] * 5
    assert (tmp_path / "a.img").stat().st_size == 4 * MiB  # data_end does not shrink in a session
    r = ours.io("-c", "write -P 8 4M 4k", "a.img")
    assert r.rc == 0
    assert bat(tmp_path / "a.img", 5) == [0, 0, 0, 0, 1]
    assert (tmp_path / "a.img").stat().st_size == 2 * MiB
    assert oracle.img("check", "a.img").rc == 0
    r = oracle.io("-r", "-c", "read -P 8 4M 4k", "-c", "read -P 0 0 4M", "a.img")
    assert r.rc == 0 and "verification failed" not in r.out


@pytest.mark.parametrize("off,fmt,value", [
    (28, "<I", 0),             # Invalid image: Zero sectors per track
    (28, "<I", 0x10000000),    # Invalid image: Too big cluster
    (32, "<I", 0x20000000),    # Catalog too large
    (16, "<I", 3),             # version: not parallels (probes as raw)
    (56, "<Q", 0x800),         # format extension: bad magic
    (56, "<Q", 1 << 40),       # format extension past the end: magic 0
])
def test_hostile_header_equals_oracle(ours, oracle, tmp_path, off, fmt, value):
    written_image(oracle, "a.img")
    patch(tmp_path / "a.img", off, fmt, value)
    for args in (["info"], ["check"]):
        x, y = ours.img(*args, "a.img"), oracle.img(*args, "a.img")
        x_out = x.out.split("Child node")[0]
        assert (x.rc, x_out, x.err) == (y.rc, y.out, y.err), (args, x, y)


def test_extension_offset_overflow(ours, tmp_path):
    """ext_off * 512 overflows: one clear error (9.1 fails an assertion here)."""
    written_image(ours, "a.img")
    patch(tmp_path / "a.img", 56, "<Q", (1 << 64) - 1)
    r = ours.img("info", "a.img")
    assert r.rc == 1 and "Wrong parallels Format Extension magic: 0x0" in r.err


def test_extension_checksum(ours, oracle, tmp_path):
    import hashlib
    written_image(oracle, "a.img")
    p = tmp_path / "a.img"
    b = bytearray(p.read_bytes())
    ext = bytearray(MiB)  # the extension takes cluster 1: magic, MD5, end of features
    struct.pack_into("<Q", ext, 0, 0xAB234CEF23DCEA87)
    ext[8:24] = hashlib.md5(ext[24:]).digest()
    b[MiB:2 * MiB] = ext
    struct.pack_into("<Q", b, 56, 0x800)
    p.write_bytes(bytes(b))
    x, y = ours.img("info", "a.img"), oracle.img("info", "a.img")
    assert x.rc == y.rc == 0 and x.out.split("Child node")[0] == y.out
    b[MiB + 100] ^= 1  # one bit of the extension cluster changes: the MD5 no longer matches
    p.write_bytes(bytes(b))
    x, y = ours.img("info", "a.img"), oracle.img("info", "a.img")
    assert x.rc == y.rc == 1 and x.err == y.err
    assert "Wrong checksum in Format Extension header" in x.err


def test_disk_size_past_bat_reads_zero(ours, tmp_path):
    """A disk size beyond what the BAT covers (hostile): zeroes there, writes refused."""
    assert ours.img("create", "-q", "-f", "parallels", "a.img", "2M").rc == 0
    patch(tmp_path / "a.img", 36, "<Q", 20480)  # 10 MiB, the BAT has 2 entries
    r = ours.io("-r", "-c", "read -P 0 8M 4k", "a.img")
    assert r.rc == 0 and "verification failed" not in r.out, r
    r = ours.img("map", "--output=json", "a.img")
    assert r.rc == 0
    r = ours.io("-c", "write -P 1 8M 4k", "a.img")
    assert "write failed" in r.out + r.err


def test_truncated_check_as_9_1(ours, tmp_path):
    """A header-only file (cut at 64 bytes): 9.1 finds data_off past the end and every BAT
    entry, allocated or not, outside the image (7.2: "No errors were found")."""
    written_image(ours, "a.img")
    p = tmp_path / "a.img"
    p.write_bytes(p.read_bytes()[:64])
    r = ours.img("check", "a.img")
    assert r.rc == 2
    assert r.err == "ERROR data_off field has incorrect value\n" + "".join(
        f"ERROR cluster {i} is outside image\n" for i in range(10))
    assert r.out == ("\n11 errors were found on the image.\nData may be corrupted, or further "
                     "writes to the image may corrupt it.\nImage end offset: 1048576\n")


def test_new_cluster_over_leaked_tail_reads_zero(ours, oracle, tmp_path):
    """Garbage left past the last cluster (a crashed session) must not show through a new
    cluster: only the guest's bytes are written there, the rest has to read as zeroes.
    A deliberate difference: qemu 7.2 and 9.1 both let the stale bytes through here."""
    written_image(ours, "a.img")
    with open(tmp_path / "a.img", "ab") as f:
        f.write(b"\xee" * (2 * MiB))
    cmds = ["-c", "write -P 0x44 7M 4k", "-c", "read -P 0 7344128 1044480", "-c", "read -P 0x44 7M 4k"]
    x = ours.io(*cmds, "a.img")
    assert x.rc == 0 and "verification failed" not in x.out, x
    assert (tmp_path / "a.img").stat().st_size == 4 * MiB
    assert oracle.img("check", "a.img").rc == 0


def test_reused_cluster_reads_zero(ours, oracle, tmp_path):
    """9.1 reuses a discarded cluster: its old data must not show through a partial write."""
    assert ours.img("create", "-q", "-f", "parallels", "a.img", "4M").rc == 0
    r = ours.io("-c", "write -P 9 0 2M", "-c", "discard 0 1M", "-c", "write -P 5 3M 4k",
                "-c", "read -P 0 3149824 1044480", "-c", "read -P 9 1M 1M", "a.img")
    assert r.rc == 0 and "verification failed" not in r.out, r
    assert bat(tmp_path / "a.img", 4) == [0, 2, 0, 1]
    r = oracle.io("-r", "-c", "read -P 0 3149824 1044480", "a.img")
    assert r.rc == 0 and "verification failed" not in r.out, r


def with_extension(path, features):
    """Append a Format Extension cluster (magic, MD5, the features, end) and point ext_off at it."""
    import hashlib
    b = bytearray(path.read_bytes())
    ext_off = len(b)
    ext = bytearray(MiB)
    struct.pack_into("<Q", ext, 0, 0xAB234CEF23DCEA87)
    pos = 24
    for magic, flags, data, size in features:
        struct.pack_into("<QQII", ext, pos, magic, flags, len(data) if size is None else size, 0)
        pos += 24
        ext[pos:pos + len(data)] = data
        pos += (len(data) + 7) // 8 * 8
    ext[8:24] = hashlib.md5(ext[24:]).digest()
    struct.pack_into("<Q", b, 56, ext_off // 512)
    path.write_bytes(bytes(b + ext))


BITMAP = 0x20385FAE252CB34A


def bitmap(sectors=20480, granularity=128, l1=(1,), l1_size=None):
    n = len(l1) if l1_size is None else l1_size
    return struct.pack("<Q16sII", sectors, b"0123456789abcdef", granularity, n) + \
        b"".join(struct.pack("<Q", e) for e in l1)


@pytest.mark.parametrize("features,err", [
    ([(BITMAP, 0, bitmap(), None)], None),
    ([(BITMAP, 0, bitmap(l1=(1 << 40,)), None)], None),  # L1 entries are not followed on open
    ([(BITMAP, 0, bitmap(sectors=5), None)],
     "Bitmap size (in sectors) 5 differs from disk size in sectors 20480"),
    ([(BITMAP, 0, bitmap(l1_size=100000), None)],
     "Bitmaps feature corrupted: l1 table exceeds extension data_size"),
    ([(0x1234, 1, b"abcd", None)], "Flags for extension feature are unsupported"),
    ([(0x1234, 2, b"abcd", None)], "Flags for extension feature are unsupported"),
    ([(0x1234, 0, b"abcd", None)], "Unknown feature: 0x1234"),
    ([(BITMAP, 0, b"", 0xFFFFFFF0)], "Feature data_size exceedes Format Extension cluster"),
    # 9.1 fails an assertion on these; one clear error here
    ([(BITMAP, 0, bitmap(granularity=0), None)], "Bitmap granularity 0 is not a power of two"),
    ([(BITMAP, 0, bitmap(granularity=3), None)], "Bitmap granularity 3 is not a power of two"),
], ids=["bitmap", "l1-past-end", "bitmap-size", "l1-size", "necessary", "transit", "unknown",
        "data-size", "granularity-0", "granularity-3"])
def test_extension_features_as_9_1(ours, tmp_path, features, err):
    """9.1's answers (checked by hand): the extension is read on a read-only open; its
    dirty bitmaps are not listed by qemu-img info; its cluster counts as a leak."""
    written_image(ours, "a.img")
    with_extension(tmp_path / "a.img", features)
    r = ours.img("info", "a.img")
    if err is None:
        assert r.rc == 0 and "bitmap" not in r.out, r
        r = ours.img("check", "a.img")
        assert r.rc == 3 and r.err == "ERROR space leaked at the end of the image 1048576\n"
    else:
        assert (r.rc, r.err) == (1, f"qemu-img: Could not open 'a.img': {err}\n")


def test_extension_ignored_read_write(ours, tmp_path):
    """9.1 warns and ignores the extension on a read-write open (and keeps ext_off)."""
    written_image(ours, "a.img")
    with_extension(tmp_path / "a.img", [(0x1234, 0, b"abcd", None)])
    r = ours.io("-c", "read -P 0x11 1M 4k", "a.img")
    assert r.rc == 0 and r.err == "qemu-io: warning: Format Extension ignored in RW mode\n", r
    assert header(tmp_path / "a.img")[10] == 3 * MiB // 512  # kept, though the cluster is cut off as a leak (9.1 too)


def test_bat_over_qemu_request_limit(ours, tmp_path):
    """Header and BAT beyond 0x7ffff000 bytes: 9.1 cannot read them in one request (its
    words, prefix doubled); one entry less opens, and a check of it stays quick (the BAT past
    the end of the file reads as zeroes and is not walked)."""
    written_image(ours, "a.img")
    patch(tmp_path / "a.img", 32, "<I", 536869873)
    r = ours.img("info", "a.img")
    assert (r.rc, r.err) == (1, "qemu-img: Could not open 'a.img': Could not open 'a.img': "
                                "Input/output error\n")
    patch(tmp_path / "a.img", 32, "<I", 536869872)
    assert ours.img("info", "a.img").rc == 0
    r = ours.img("check", "a.img")
    assert r.rc == 2 and "/536869872 = " in r.out, r  # the data clusters read as BAT entries


def test_odd_cluster_size_io(ours, oracle, tmp_path):
    """1536-byte clusters (not a power of two): unaligned writes, zero writes of whole and
    partial clusters; the mapped layer rounds by division. qemu reads back the same bytes."""
    assert ours.img("create", "-q", "-f", "parallels", "-o", "cluster_size=1536", "a.img", "64k").rc == 0
    r = ours.io("-c", "write -P 1 1000 5000", "-c", "write -z 1536 3072", "-c", "write -z 5000 100",
                "-c", "write -P 2 9000 1536", "a.img")
    assert r.rc == 0, r
    cmds = ["-c", "read -P 1 1000 536", "-c", "read -P 0 1536 3072", "-c", "read -P 1 4608 392",
            "-c", "read -P 0 5000 100", "-c", "read -P 1 5100 900", "-c", "read -P 2 9000 1536",
            "-c", "read -P 0 0 1000", "-c", "read -P 0 10536 55000"]
    x, y = ours.io("-r", *cmds, "a.img"), oracle.io("-r", *cmds, "a.img")
    assert x.rc == 0 and "verification failed" not in x.out and io_equal(x, y), (x, y)
    r = oracle.img("check", "a.img")  # the read-write open put data_off right (9.1)
    assert r.rc == 0, r
    # a zero write inside one cluster must not free the whole cluster
    r = ours.io("-c", "write -P 3 0 6144", "-c", "write -z 2000 1000", "-c", "read -P 3 1536 464",
                "-c", "read -P 0 2000 1000", "-c", "read -P 3 3000 72", "a.img")
    assert r.rc == 0 and "verification failed" not in r.out, r
