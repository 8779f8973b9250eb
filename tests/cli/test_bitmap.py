# SPDX-License-Identifier: MIT
"""qemu-img bitmap, persistent dirty bitmaps in qcow2 (qcow2.txt: Bitmaps).

Differential against the oracle (qemu-img/qemu-io 7.2): bitmaps one tool
adds, merges, clears or dirties the other sees identically (info
--output=json, and the bits themselves read straight from the file);
qemu-img check stays clean after every step; a crash leaves them in use
(inconsistent), never corrupt. Error messages that name a QEMU-internal node
("#block123") are compared up to that name.
"""
import json
import re
import struct

import pytest


def bitmaps_on_disk(path):
    """{name: (flags, granularity_bits, bits bytes)} parsed from the image."""
    d = open(path, "rb").read()
    cs = 1 << struct.unpack(">I", d[20:24])[0]
    size = struct.unpack(">Q", d[24:32])[0]
    hlen = struct.unpack(">I", d[100:104])[0]
    off, ext = hlen, None
    while True:
        t, l = struct.unpack(">II", d[off:off + 8])
        if t == 0:
            break
        if t == 0x23852875:
            ext = struct.unpack(">IIQQ", d[off + 8:off + 32])
        off += 8 + ((l + 7) & ~7)
    if not ext:
        return {}
    nb, _, _, doff = ext
    res = {}
    p = doff
    for _ in range(nb):
        to, ts, fl, ty, gb, nl, ed = struct.unpack(">QIIBBHI", d[p:p + 24])
        name = d[p + 24 + ed:p + 24 + ed + nl].decode()
        nbytes = (((size + (1 << gb) - 1) >> gb) + 7) // 8
        bits = b""
        for k in range(ts):
            (e,) = struct.unpack(">Q", d[to + 8 * k:to + 8 * k + 8])
            host = e & 0x00fffffffffffe00
            chunk = d[host:host + cs] if host else (b"\xff" if e & 1 else b"\0") * cs
            bits += chunk
        res[name] = (fl, gb, bits[:nbytes])
        p += (24 + ed + nl + 7) & ~7
    return res


def fs_bitmaps(tool, name):
    r = tool.img("info", "--output=json", name)
    assert r.rc == 0, r
    return json.loads(r.out)["format-specific"]["data"].get("bitmaps")


def check_clean(oracle, name):
    r = oracle.img("check", name)
    assert r.rc == 0 and "No errors were found on the image." in r.out, r


def make(tool, name="a.qcow2", size="64M", *opts):
    r = tool.img("create", "-f", "qcow2", *opts, name, size)
    assert r.rc == 0, r


def same_result(a, b):
    norm = lambda s: re.sub(r"#block\d+", "#block", s)
    assert (a.rc, a.out, norm(a.err)) == (b.rc, b.out, norm(b.err))


def test_add_matches_oracle(both):
    ours, oracle = both
    for tool, name in ((ours, "o.qcow2"), (oracle, "q.qcow2")):
        make(ours, name)
        for args in (["--add", "-g", "128k"], ["--add", "--disable"], ["--add", "-g", "2G"]):
            r = tool.img("bitmap", *args, name, f"bm{args[-1]}")
            assert (r.rc, r.out, r.err) == (0, "", ""), r
        check_clean(oracle, name)
    assert fs_bitmaps(ours, "o.qcow2") == fs_bitmaps(oracle, "q.qcow2")
    assert fs_bitmaps(oracle, "o.qcow2") == fs_bitmaps(oracle, "q.qcow2")
    assert bitmaps_on_disk(ours.cwd / "o.qcow2") == bitmaps_on_disk(ours.cwd / "q.qcow2")
    # Human output and JSON member order as qemu-img prints them.
    a = ours.img("info", "o.qcow2").out
    b = oracle.img("info", "q.qcow2").out
    sect = lambda t: t[t.index("    bitmaps:"):t.index("    refcount bits")]
    assert sect(a) == sect(b)
    a = ours.img("info", "--output=json", "o.qcow2").out
    b = oracle.img("info", "--output=json", "q.qcow2").out
    js = lambda t: t[t.index('"bitmaps"'):t.index('"refcount-bits"')]
    assert js(a) == js(b)


@pytest.mark.parametrize("writer", ["ours", "oracle"])
def test_writes_dirty_enabled_bitmaps(both, writer):
    ours, oracle = both
    w = ours if writer == "ours" else oracle
    for tool, name in ((ours, "o.qcow2"), (oracle, "q.qcow2")):
        make(oracle, name)
        tool.img("bitmap", "--add", "-g", "128k", name, "on")
        tool.img("bitmap", "--add", "--disable", name, "off")
        tool.img("bitmap", "--add", "-g", "512", name, "fine")
    for name in ("o.qcow2", "q.qcow2"):
        r = w.io("-c", "write 0 64k", "-c", "write 1M 4k", "-c", "write -z 3M 128k",
                 "-c", "discard 5M 64k", "-c", "write 63M 1536", name)
        assert r.rc == 0, r
        check_clean(oracle, name)
    a = bitmaps_on_disk(ours.cwd / "o.qcow2")
    b = bitmaps_on_disk(ours.cwd / "q.qcow2")
    assert a == b
    assert a["off"][2] == bytes(len(a["off"][2]))
    assert a["on"][2][0] == 1 and a["on"][2][1] == 1
    assert fs_bitmaps(ours, "o.qcow2") == fs_bitmaps(oracle, "q.qcow2")


def test_merge_clear_enable_interop(both):
    ours, oracle = both
    make(oracle, "a.qcow2")
    oracle.img("bitmap", "--add", "a.qcow2", "src")
    oracle.io("-c", "write 0 64k", "-c", "write 10M 64k", "a.qcow2")
    oracle.img("bitmap", "--add", "--disable", "-g", "1M", "a.qcow2", "dst")
    r = ours.img("bitmap", "--merge", "src", "--enable", "a.qcow2", "dst")
    assert (r.rc, r.err) == (0, ""), r
    check_clean(oracle, "a.qcow2")
    d = bitmaps_on_disk(ours.cwd / "a.qcow2")
    assert d["dst"][2][:2] == b"\x01\x04" and d["dst"][0] == 2
    # The same steps by the oracle on a copy give the same bits.
    (ours.cwd / "b.qcow2").write_bytes((ours.cwd / "a.qcow2").read_bytes())
    ours.img("bitmap", "--clear", "a.qcow2", "src")
    oracle.img("bitmap", "--clear", "b.qcow2", "src")
    assert bitmaps_on_disk(ours.cwd / "a.qcow2") == bitmaps_on_disk(ours.cwd / "b.qcow2")
    # Merge from another image (-b/-F), then disable and remove.
    make(ours, "s.qcow2")
    ours.img("bitmap", "--add", "-g", "64k", "s.qcow2", "x")
    ours.io("-c", "write 32M 64k", "s.qcow2")
    for tool, name in ((ours, "a.qcow2"), (oracle, "b.qcow2")):
        r = tool.img("bitmap", "--merge", "x", "-b", "s.qcow2", "-F", "qcow2", "--disable",
                     name, "src")
        assert r.rc == 0, r
        check_clean(oracle, name)
    assert bitmaps_on_disk(ours.cwd / "a.qcow2") == bitmaps_on_disk(ours.cwd / "b.qcow2")
    for tool, name in ((ours, "a.qcow2"), (oracle, "b.qcow2")):
        assert tool.img("bitmap", "--remove", name, "dst").rc == 0
        check_clean(oracle, name)
    assert fs_bitmaps(oracle, "a.qcow2") == fs_bitmaps(oracle, "b.qcow2")
    for tool, name in ((oracle, "a.qcow2"), (ours, "b.qcow2")):
        assert tool.img("bitmap", "--remove", name, "src").rc == 0
        check_clean(oracle, name)
        assert fs_bitmaps(oracle, name) is None


@pytest.mark.parametrize("args", [
    ["--add", "a.qcow2", "bm0"],
    ["--add", "-g", "1000", "a.qcow2", "x"],
    ["--add", "-g", "256", "a.qcow2", "x"],
    ["--add", "-g", "4G", "a.qcow2", "x"],
    ["--add", "-g", "abc", "a.qcow2", "x"],
    ["--add", "a.qcow2", ""],
    ["--add", "a.qcow2", "n" * 1024],
    ["--remove", "a.qcow2", "nope"],
    ["--clear", "a.qcow2", "nope"],
    ["--enable", "a.qcow2", "nope"],
    ["--disable", "a.qcow2", "nope"],
    ["--merge", "nope", "a.qcow2", "bm0"],
    ["--merge", "bm0", "a.qcow2", "nope"],
    ["a.qcow2", "bm0"],
    ["--add", "a.qcow2"],
    ["-g", "64k", "--remove", "a.qcow2", "bm0"],
    ["--add", "-b", "x", "a.qcow2", "b"],
    ["--merge", "bm0", "-F", "raw", "a.qcow2", "b"],
    ["--add", "--add", "a.qcow2", "twice"],
    ["--add", "v2.qcow2", "b"],
    ["--add", "-f", "raw", "r.raw", "b"],
])
def test_errors_match_oracle(both, args):
    ours, oracle = both
    make(oracle)
    make(oracle, "v2.qcow2", "1M", "-o", "compat=0.10")
    oracle.img("create", "-f", "raw", "r.raw", "1M")
    oracle.img("bitmap", "--add", "a.qcow2", "bm0")
    (ours.cwd / "b.qcow2").write_bytes((ours.cwd / "a.qcow2").read_bytes())
    a = ours.img("bitmap", *args)
    args = ["b.qcow2" if x == "a.qcow2" else x for x in args]
    b = oracle.img("bitmap", *args)
    same_result(a, b)
    assert fs_bitmaps(oracle, "a.qcow2") == fs_bitmaps(oracle, "b.qcow2")


def test_crash_leaves_bitmaps_in_use(both):
    ours, oracle = both
    make(ours)
    ours.img("bitmap", "--add", "-g", "128k", "a.qcow2", "bm0")
    ours.img("bitmap", "--add", "--disable", "a.qcow2", "bm1")
    (ours.cwd / "b.qcow2").write_bytes((ours.cwd / "a.qcow2").read_bytes())
    r = ours.io("-c", "write 2M 64k", "-c", "abort", "a.qcow2")
    assert r.rc != 0
    r = oracle.io("-c", "write 2M 64k", "-c", "abort", "b.qcow2")
    assert r.rc != 0
    for name in ("a.qcow2", "b.qcow2"):
        check_clean(oracle, name)
        a = ours.img("check", name)
        assert a.rc == 0 and "No errors were found" in a.out, a
    assert fs_bitmaps(ours, "a.qcow2") == fs_bitmaps(oracle, "b.qcow2") == [
        {"flags": ["in-use", "auto"], "name": "bm0", "granularity": 131072},
        {"flags": ["in-use"], "name": "bm1", "granularity": 65536}]
    a = ours.img("info", "a.qcow2")
    b = oracle.img("info", "b.qcow2")
    sect = lambda t: t[t.index("    bitmaps:"):t.index("    refcount bits")]
    assert sect(a.out) == sect(b.out)
    # Unusable but removable; convert needs --skip-broken-bitmaps.
    for args in (["--clear"], ["--enable"], ["--merge", "bm1"]):
        same_result(ours.img("bitmap", *args, "a.qcow2", "bm0"),
                    oracle.img("bitmap", *args, "b.qcow2", "bm0"))
    same_result(ours.img("convert", "--bitmaps", "-O", "qcow2", "a.qcow2", "c.qcow2"),
                oracle.img("convert", "--bitmaps", "-O", "qcow2", "b.qcow2", "d.qcow2"))
    a = ours.img("convert", "--bitmaps", "--skip-broken-bitmaps", "-O", "qcow2", "a.qcow2",
                 "c.qcow2")
    b = oracle.img("convert", "--bitmaps", "--skip-broken-bitmaps", "-O", "qcow2", "b.qcow2",
                   "d.qcow2")
    same_result(a, b)
    check_clean(oracle, "c.qcow2")
    assert fs_bitmaps(oracle, "c.qcow2") is None
    # Writes keep working on an image with inconsistent bitmaps; they stay as they are.
    assert ours.io("-c", "write 0 64k", "a.qcow2").rc == 0
    check_clean(oracle, "a.qcow2")
    assert ours.img("bitmap", "--remove", "a.qcow2", "bm0").rc == 0
    check_clean(oracle, "a.qcow2")
    assert ours.img("bitmap", "--add", "a.qcow2", "bm0").rc == 0
    check_clean(oracle, "a.qcow2")
    assert fs_bitmaps(oracle, "a.qcow2") == [
        {"flags": ["in-use"], "name": "bm1", "granularity": 65536},
        {"flags": ["auto"], "name": "bm0", "granularity": 65536}]


def test_convert_bitmaps(both):
    ours, oracle = both
    make(oracle, "a.qcow2")
    for args in (["--add", "-g", "128k", "a.qcow2", "b1"], ["--add", "a.qcow2", "b2"],
                 ["--add", "--disable", "-g", "4k", "a.qcow2", "b3"]):
        oracle.img("bitmap", *args)
    oracle.io("-c", "write 0 64k", "-c", "write 7M 128k", "a.qcow2")
    r = ours.img("convert", "--bitmaps", "-O", "qcow2", "a.qcow2", "o.qcow2")
    assert (r.rc, r.err) == (0, ""), r
    r = oracle.img("convert", "--bitmaps", "-O", "qcow2", "a.qcow2", "q.qcow2")
    assert r.rc == 0
    check_clean(oracle, "o.qcow2")
    assert fs_bitmaps(oracle, "o.qcow2") == fs_bitmaps(oracle, "q.qcow2")
    assert bitmaps_on_disk(ours.cwd / "o.qcow2") == bitmaps_on_disk(ours.cwd / "q.qcow2")
    # Refusals, in qemu-img's order and words.
    ours.img("create", "-f", "raw", "r.raw", "1M")
    for args in (["-O", "raw", "a.qcow2", "x.raw"], ["-O", "qcow2", "a.qcow2", "a.qcow2", "x2"],
                 ["-O", "qcow2", "-f", "raw", "r.raw", "x3"],
                 ["-O", "qcow2", "-o", "compat=0.10", "a.qcow2", "x4"]):
        same_result(ours.img("convert", "--bitmaps", *args),
                    oracle.img("convert", "--bitmaps", *args))


@pytest.mark.parametrize("opts", [[], ["-o", "cluster_size=4k"], ["-o", "cluster_size=2M"],
                                  ["-o", "compat=0.10"]])
def test_measure_bitmaps(both, opts):
    ours, oracle = both
    make(oracle, "a.qcow2", "100M")
    oracle.img("bitmap", "--add", "-g", "512", "a.qcow2", "fine")
    oracle.img("bitmap", "--add", "a.qcow2", "a-much-longer-bitmap-name-than-usual")
    for fmt in ("human", "json"):
        same_result(ours.img("measure", "--output=" + fmt, "-O", "qcow2", *opts, "a.qcow2"),
                    oracle.img("measure", "--output=" + fmt, "-O", "qcow2", *opts, "a.qcow2"))


def _ext_offset(d):
    hlen = struct.unpack(">I", d[100:104])[0]
    off = hlen
    while True:
        t, l = struct.unpack(">II", d[off:off + 8])
        if t in (0, 0x23852875):
            return off if t else None
        off += 8 + ((l + 7) & ~7)


@pytest.mark.parametrize("how", ["zero_bitmaps", "dir_unaligned", "dir_huge", "dir_past_eof",
                                 "gran_bits", "table_unaligned"])
def test_hostile_bitmap_directory(ours, how):
    make(ours, "a.qcow2", "1M")
    ours.img("bitmap", "--add", "a.qcow2", "bm")
    p = ours.cwd / "a.qcow2"
    d = bytearray(p.read_bytes())
    e = _ext_offset(d) + 8
    doff = struct.unpack(">Q", d[e + 16:e + 24])[0]
    if how == "zero_bitmaps":
        d[e:e + 4] = struct.pack(">I", 0)
    elif how == "dir_unaligned":
        d[e + 16:e + 24] = struct.pack(">Q", doff + 8)
    elif how == "dir_huge":
        d[e + 8:e + 16] = struct.pack(">Q", 1 << 40)
    elif how == "dir_past_eof":
        d[e + 16:e + 24] = struct.pack(">Q", 1 << 40)
    elif how == "gran_bits":
        d[doff + 17] = 63
    else:
        d[doff:doff + 8] = struct.pack(">Q", 0x10200)
    p.write_bytes(bytes(d))
    r = ours.img("info", "a.qcow2")
    assert r.rc == 1 and r.err.startswith("qemu-img: Could not open 'a.qcow2': "), r
    assert r.err.count("\n") == 1


def test_resize_follows_bitmaps(both):
    ours, oracle = both
    make(ours, "a.qcow2", "1M")
    ours.img("bitmap", "--add", "-g", "512", "a.qcow2", "b")
    assert ours.img("resize", "a.qcow2", "64M").rc == 0
    assert ours.io("-c", "write 60M 64k", "a.qcow2").rc == 0
    check_clean(oracle, "a.qcow2")
    bits = bitmaps_on_disk(ours.cwd / "a.qcow2")["b"][2]
    assert len(bits) == (64 << 20) // 512 // 8
    assert bits[(60 << 20) // 512 // 8] == 0xff
    assert ours.img("resize", "--shrink", "a.qcow2", "1M").rc == 0
    check_clean(oracle, "a.qcow2")
    assert fs_bitmaps(oracle, "a.qcow2") == [{"flags": ["auto"], "name": "b", "granularity": 512}]
    # Not with an inconsistent bitmap, as qemu-img refuses.
    (ours.cwd / "c.qcow2").write_bytes((ours.cwd / "a.qcow2").read_bytes())
    ours.io("-c", "write 0 512", "-c", "abort", "a.qcow2")
    oracle.io("-c", "write 0 512", "-c", "abort", "c.qcow2")
    same_result(ours.img("resize", "a.qcow2", "2M"), oracle.img("resize", "c.qcow2", "2M"))


def _clear_bitmaps_autoclear(path):
    """What a program without bitmap support leaves: the extension, but autoclear bit 0 off."""
    with open(path, "r+b") as f:
        f.seek(88)
        v = struct.unpack(">Q", f.read(8))[0]
        f.seek(88)
        f.write(struct.pack(">Q", v & ~1))


@pytest.mark.parametrize("step", ["info", "check", "write", "bitmap-list"])
def test_bitmaps_modified_by_unaware_program(ours, oracle, tmp_path, step):
    """QEMU warns (two lines, the second without newline) and treats the bitmaps as gone:
    read-only opens ignore them, check counts their clusters as leaks, a write drops the
    extension."""
    res = []
    for tool, name in ((ours, "ours"), (oracle, "theirs")):
        d = tmp_path / name
        d.mkdir()
        assert oracle.img("create", "-q", "-f", "qcow2", "a.qcow2", "1M", cwd=d).rc == 0
        assert oracle.img("bitmap", "--add", "a.qcow2", "bm", cwd=d).rc == 0
        _clear_bitmaps_autoclear(d / "a.qcow2")
        if step == "info":
            r = tool.img("info", "--output=json", "a.qcow2", cwd=d)
        elif step == "check":
            r = tool.img("check", "a.qcow2", cwd=d)
        elif step == "write":
            r = tool.io("-c", "write -P 1 0 4k", "a.qcow2", cwd=d)
            r.out = re.sub(r"\d[\d.]* (sec|ops|KiB|MiB).*", "", r.out)
        else:
            r = tool.img("info", "a.qcow2", cwd=d)
            r.out = ""  # human info's child-node section is 9.1's, not 7.2's
        c = oracle.img("check", "a.qcow2", cwd=d)
        res.append((r.rc, r.err, r.out if step != "info" else json.loads(r.out)
                    .get("format-specific"), c.rc, c.out.splitlines()[:-1], c.err))
    assert res[0] == res[1]
    assert "a program lacking bitmap support modified this file" in res[0][1]
