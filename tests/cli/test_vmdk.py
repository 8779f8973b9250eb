# SPDX-License-Identifier: MIT
"""VMDK against the oracle (qemu-img/qemu-io 7.2; expectations checked by hand with 9.1).

Layout facts: /work/shared/specs/vmdk-libyal.asciidoc. qemu writes a random
CID ("%x": its length varies) into the descriptor, so descriptors are compared
with the CID replaced. 9.1 vs 7.2: map JSON gains "compressed" (true for
stream grains), info gains the child nodes (the extents as "extents.N").
"""
import json
import re
import struct
import zlib

import pytest

from conftest import strip_child  # drops 9.1's "Child node" sections (file, extents.N)

MiB = 1 << 20
CID = re.compile(r"^CID=[0-9a-f]+$", re.M)
DESC = slice(0x200, 0x2A00)  # embedded descriptor area of a monolithic sparse extent


def norm_desc(text):
    return CID.sub("CID=X", text)


def embedded_desc(path):
    return path.read_bytes()[DESC].rstrip(b"\0").decode()


def masked_sparse(path):
    b = bytearray(path.read_bytes())
    b[DESC] = bytes(DESC.stop - DESC.start)
    return bytes(b)


def check_clean(tool, img):
    r = tool.img("check", img)
    assert (r.rc, r.out, r.err) == (0, "No errors were found on the image.\n", ""), r


def no_compressed(text):
    return text.replace(', "compressed": false', "").replace(', "compressed": true', "")


CREATE = {
    "default": ([], "100M"),
    "odd-size": ([], "1000"),
    "zero": ([], "0"),
    "big": ([], "3T"),
    "zeroed": (["-o", "zeroed_grain=on"], "1G"),
    "stream": (["-o", "subformat=streamOptimized"], "10M"),
    "stream-zeroed": (["-o", "subformat=streamOptimized,zeroed_grain=on"], "1M"),
    "lsilogic": (["-o", "adapter_type=lsilogic,hwversion=7,toolsversion=123"], "64M"),
    "buslogic-compat6": (["-o", "adapter_type=buslogic,compat6=on"], "64M"),
    "legacyESX": (["-o", "adapter_type=legacyESX"], "64M"),
}


@pytest.mark.parametrize("name", CREATE)
def test_create_sparse_equals_oracle(ours, oracle, tmp_path, name):
    opts, size = CREATE[name]
    a = ours.img("create", "-f", "vmdk", *opts, "a.vmdk", size)
    b = oracle.img("create", "-f", "vmdk", *opts, "b.vmdk", size)
    assert (a.rc, a.out.replace("a.vmdk", "X"), a.err) == (b.rc, b.out.replace("b.vmdk", "X"), b.err)
    assert masked_sparse(tmp_path / "a.vmdk") == masked_sparse(tmp_path / "b.vmdk")
    da, db = embedded_desc(tmp_path / "a.vmdk"), embedded_desc(tmp_path / "b.vmdk")
    assert norm_desc(da).replace('"a.vmdk"', "X") == norm_desc(db).replace('"b.vmdk"', "X")
    x, y = oracle.img("check", "a.vmdk"), oracle.img("check", "b.vmdk")
    assert (x.rc, x.out, x.err.replace("a.vmdk", "X")) == (y.rc, y.out, y.err.replace("b.vmdk", "X"))
    if name != "zero":  # qemu takes capacity 0 for "the descriptor is the image" and fails
        check_clean(oracle, "a.vmdk")
    x, y = ours.img("info", "a.vmdk"), oracle.img("info", "a.vmdk")
    assert (x.rc, x.err) == (y.rc, y.err)


SPLIT = {
    "monolithicFlat": (["-o", "subformat=monolithicFlat"], "10M", ["-flat"]),
    "twoGbSparse": (["-o", "subformat=twoGbMaxExtentSparse"], "5G", ["-s001", "-s002", "-s003"]),
    "twoGbFlat": (["-o", "subformat=twoGbMaxExtentFlat,adapter_type=lsilogic"], "3G",
                  ["-f001", "-f002"]),
}


@pytest.mark.parametrize("name", SPLIT)
def test_create_split_equals_oracle(ours, oracle, tmp_path, name):
    opts, size, suffixes = SPLIT[name]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = ours.img("create", "-f", "vmdk", *opts, "a/img.vmdk", size)
    b = oracle.img("create", "-f", "vmdk", *opts, "b/img.vmdk", size)
    assert (a.rc, a.out.replace("a/", ""), a.err) == (b.rc, b.out.replace("b/", ""), b.err)
    assert norm_desc((tmp_path / "a/img.vmdk").read_text()) == \
        norm_desc((tmp_path / "b/img.vmdk").read_text())
    for s in suffixes:
        x, y = tmp_path / f"a/img{s}.vmdk", tmp_path / f"b/img{s}.vmdk"
        assert x.stat().st_size == y.stat().st_size
        if "f0" not in s and "flat" not in s:
            assert x.read_bytes() == y.read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == \
        sorted(p.name for p in (tmp_path / "b").iterdir())
    check_clean(oracle, "a/img.vmdk")
    for args in (["info"], ["info", "--output=json"]):
        x = ours.img(*args, "b/img.vmdk")
        y = oracle.img(*args, "b/img.vmdk")
        assert (x.rc, x.err) == (y.rc, y.err)
        if args == ["info"]:
            assert strip_child(x.out) == y.out
        else:
            jx, jy = json.loads(x.out), json.loads(y.out)
            assert jx["format-specific"] == jy["format-specific"]
            jx.pop("actual-size"), jy.pop("actual-size")
            assert jx.pop("children")[-1]["name"] == "file"
            assert jx == jy


def test_info_children_as_91(ours, oracle, tmp_path):
    """9.1 lists the extent files as children "extents.N", newest first, before "file"."""
    assert oracle.img("create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse",
                      "t.vmdk", "5G").rc == 0
    kids = [c["name"] for c in json.loads(ours.img("info", "--output=json", "t.vmdk").out)["children"]]
    assert kids == ["extents.2", "extents.1", "extents.0", "file"]
    human = ours.img("info", "t.vmdk").out
    assert human.index("Child node '/extents.2':") < human.index("Child node '/extents.0':") \
        < human.index("Child node '/file':")


CREATE_ERRORS = [
    ["-o", "subformat=foo"],
    ["-o", "adapter_type=foo"],
    ["-o", "compat6=on,hwversion=7"],
    ["-o", "subformat=monolithicFlat,zeroed_grain=on"],
    ["-o", "subformat=monolithicFlat", "-F", "vmdk", "-b", "base.vmdk"],
    ["-o", "backing_file=base.vmdk,backing_fmt=raw"],
    ["-F", "vmdk", "-b", "nonexistent.vmdk"],
]


@pytest.mark.parametrize("opts", CREATE_ERRORS, ids=lambda o: "_".join(o))
def test_create_errors_as_oracle(ours, oracle, tmp_path, opts):
    assert oracle.img("create", "-q", "-f", "vmdk", "base.vmdk", "1M").rc == 0
    a = ours.img("create", "-f", "vmdk", *opts, "x.vmdk", "1M")
    b = oracle.img("create", "-f", "vmdk", *opts, "y.vmdk", "1M")
    assert (a.rc, a.out.replace("x.vmdk", "X"), a.err.replace("x.vmdk", "X")) == \
        (b.rc, b.out.replace("y.vmdk", "X"), b.err.replace("y.vmdk", "X"))
    assert (tmp_path / "x.vmdk").exists() == (tmp_path / "y.vmdk").exists()


def source_raw(tmp_path, size=6 * MiB):
    data = bytearray(size)
    data[100:70000] = b"\x5a" * 69900
    data[2 * MiB:2 * MiB + 4096] = bytes(range(256)) * 16
    data[size - 512:] = b"\x01" * 512
    (tmp_path / "src.raw").write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("opts", [["-o", "subformat=streamOptimized"], ["-c"],
                                  ["-c", "-o", "subformat=streamOptimized"]],
                         ids=["stream", "c-sparse", "c-stream"])
def test_convert_stream_interop(ours, oracle, tmp_path, opts):
    data = source_raw(tmp_path)
    a = ours.img("convert", "-O", "vmdk", *opts, "src.raw", "a.vmdk")
    b = oracle.img("convert", "-O", "vmdk", *opts, "src.raw", "b.vmdk")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    check_clean(oracle, "a.vmdk")
    assert oracle.img("compare", "a.vmdk", "src.raw").rc == 0
    assert oracle.img("compare", "a.vmdk", "b.vmdk").rc == 0
    assert ours.img("compare", "b.vmdk", "src.raw").rc == 0
    # both map the same (9.1 marks the grains compressed, 7.2 cannot say)
    x = ours.img("map", "--output=json", "a.vmdk")
    y = oracle.img("map", "--output=json", "b.vmdk")
    assert no_compressed(x.out) == y.out
    assert ours.img("convert", "-O", "raw", "b.vmdk", "back.raw").rc == 0
    assert (tmp_path / "back.raw").read_bytes() == data
    assert ours.img("convert", "-O", "qcow2", "b.vmdk", "c.qcow2").rc == 0
    assert oracle.img("compare", "c.qcow2", "src.raw").rc == 0


def test_stream_map_marks_compressed_as_91(ours, oracle, tmp_path):
    source_raw(tmp_path)
    assert oracle.img("convert", "-O", "vmdk", "-o", "subformat=streamOptimized", "src.raw",
                      "s.vmdk").rc == 0
    first = ours.img("map", "--output=json", "s.vmdk").out.splitlines()[0]
    assert first == ('[{ "start": 0, "length": 131072, "depth": 0, "present": true, "zero": false, '
                     '"data": true, "compressed": true},')
    # human map refuses compressed data, as both releases do
    x, y = ours.img("map", "s.vmdk"), oracle.img("map", "s.vmdk")
    assert (x.rc, x.out, x.err) == (y.rc, y.out, y.err)


def test_stream_second_write_refused_as_qemu(ours, oracle, tmp_path):
    for img in ("a.vmdk", "b.vmdk"):
        assert oracle.img("create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", img,
                          "5M").rc == 0
    script = ["-c", "write -P 1 0 64k", "-c", "write -P 2 0 64k", "-c", "write -P 3 1M 4k",
              "-c", "write -P 4 4M 1M", "-c", "read -P 1 0 64k", "-c", "read -P 4 4M 1M"]
    x = ours.io("-f", "vmdk", *script, "a.vmdk")
    y = oracle.io("-f", "vmdk", *script, "b.vmdk")
    t = re.compile(r"\d+\.\d+ sec \([^)]*\)")
    assert (x.rc, t.sub("X", x.out), x.err) == (y.rc, t.sub("X", y.out), y.err)
    assert "Could not write to allocated cluster for streamOptimized" in x.err
    assert oracle.img("compare", "a.vmdk", "b.vmdk").rc == 0
    check_clean(oracle, "a.vmdk")


# ---- hand-made images (vmdk-libyal.asciidoc) ----

def sparse_header(capacity, grain=128, gtes=512, gd=None, rgd=None, overhead=None, version=1,
                  flags=3, compress=0, desc_off=0, desc_size=0):
    h = bytearray(512)
    h[0:4] = b"KDMV"
    struct.pack_into("<IIQQQQIQQQ", h, 4, version, flags, capacity, grain, desc_off, desc_size,
                     gtes, rgd or 0, gd if gd is not None else 0, overhead or 0)
    h[73:77] = b"\n \r\n"
    struct.pack_into("<H", h, 77, compress)
    return h


def marker(val, size, typ):
    m = bytearray(512)
    struct.pack_into("<QII", m, 0, val, size, typ)
    return m


def ova_stream(tmp_path, grains):
    """An OVA-style streamOptimized disk: GD offset -1 in the header, grains, GT and GD in the
    stream behind markers, then footer (a header copy with the GD offset) and end of stream."""
    cap = 128 * 512  # sectors: one full grain table
    desc = (b'# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
            b'createType="streamOptimized"\n\n# Extent description\nRW 65536 SPARSE "x.vmdk"\n')
    out = bytearray(sparse_header(cap, gd=0xFFFFFFFFFFFFFFFF, overhead=128, version=3,
                                  flags=0x30001, compress=1, desc_off=1, desc_size=20))
    out += desc.ljust(20 * 512, b"\0")
    out += bytes(128 * 512 - len(out))
    gt = [0] * 512
    for idx, payload in grains.items():
        comp = zlib.compress(payload)
        gt[idx] = len(out) // 512
        g = struct.pack("<QI", idx * 128, len(comp)) + comp
        out += g + bytes(-len(g) % 512)
    out += marker(4, 0, 1)  # GT marker: 4 sectors
    gt_sector = len(out) // 512
    out += struct.pack("<512I", *gt)
    out += marker(1, 0, 2)  # GD marker
    gd_sector = len(out) // 512
    out += struct.pack("<I", gt_sector).ljust(512, b"\0")
    out += marker(1, 0, 3)  # footer marker
    out += sparse_header(cap, gd=gd_sector, overhead=128, version=3, flags=0x30001, compress=1,
                         desc_off=1, desc_size=20)
    out += marker(0, 0, 0)  # end of stream
    (tmp_path / "ova.vmdk").write_bytes(bytes(out))


def test_ova_stream_with_footer_reads_as_oracle(ours, oracle, tmp_path):
    ova_stream(tmp_path, {0: b"\x11" * 65536, 5: bytes(range(256)) * 256, 511: b"\x77" * 65536})
    for args in (["convert", "-O", "raw", "ova.vmdk"], ):
        assert ours.img(*args, "a.raw").rc == 0
        assert oracle.img(*args, "b.raw").rc == 0
    assert (tmp_path / "a.raw").read_bytes() == (tmp_path / "b.raw").read_bytes()
    assert (tmp_path / "a.raw").read_bytes()[5 * 65536:5 * 65536 + 256] == bytes(range(256))
    x, y = ours.img("info", "ova.vmdk"), oracle.img("info", "ova.vmdk")
    assert (x.rc, strip_child(x.out), x.err) == (y.rc, y.out, y.err)
    x, y = ours.img("check", "ova.vmdk"), oracle.img("check", "ova.vmdk")
    assert (x.rc, x.out, x.err) == (y.rc, y.out, y.err)


def test_version3_sparse_is_read_only(ours, oracle, tmp_path):
    assert oracle.img("create", "-q", "-f", "vmdk", "v3.vmdk", "1M").rc == 0
    assert oracle.io("-f", "vmdk", "-c", "write -P 9 0 64k", "v3.vmdk").rc == 0
    with open(tmp_path / "v3.vmdk", "r+b") as f:
        f.seek(4)
        f.write(struct.pack("<I", 3))
    for args in (["-c", "read -P 9 0 64k"], ["-c", "write 0 512"]):
        x = ours.io("-f", "vmdk", *args, "v3.vmdk")
        y = oracle.io("-f", "vmdk", *args, "v3.vmdk")
        t = re.compile(r"\d+\.\d+ sec \([^)]*\)")
        assert (x.rc, t.sub("X", x.out), x.err) == (y.rc, t.sub("X", y.out), y.err)
    x = ours.img("convert", "-O", "raw", "v3.vmdk", "a.raw")
    assert x.rc == 0
    assert (tmp_path / "a.raw").read_bytes()[:65536] == b"\x09" * 65536


def patch(path, off, fmt, *vals):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(struct.pack(fmt, *vals))


HOSTILE = {
    "version-4": (4, "<I", 4),
    "gtes-too-many": (44, "<I", 1024),
    "granularity-huge": (20, "<Q", 0x400000),
    "granularity-zero": (20, "<Q", 0),
    "overhead-past-end": (64, "<Q", 1 << 40),
    "gd-past-end": (56, "<Q", 1 << 40),
    "gd-at-end-no-footer": (56, "<Q", 0xFFFFFFFFFFFFFFFF),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_header_as_oracle(ours, oracle, tmp_path, name):
    off, fmt, val = HOSTILE[name]
    assert oracle.img("create", "-q", "-f", "vmdk", "h.vmdk", "4M").rc == 0
    assert oracle.io("-f", "vmdk", "-c", "write -P 7 0 128k", "h.vmdk").rc == 0
    patch(tmp_path / "h.vmdk", off, fmt, val)
    for args in (["info"], ["check"], ["convert", "-O", "raw", "h.vmdk", "out.raw"]):
        x = ours.img(*args[:1], "-f", "vmdk", *(args[1:] or ["h.vmdk"]))
        y = oracle.img(*args[:1], "-f", "vmdk", *(args[1:] or ["h.vmdk"]))
        assert x.rc >= 0
        assert (x.rc, strip_child(x.out), x.err) == (y.rc, y.out, y.err), args


def test_huge_capacity_one_clear_error(ours, oracle, tmp_path):
    """Capacity 2^62 sectors: qemu's 32-bit L1 size wraps to 0 and the size check fails.
    qemu prints "Can't get image size 'h.vmdk': File too large" (no "Could not open"
    prefix, which qimg's CLI adds to every open error)."""
    assert oracle.img("create", "-q", "-f", "vmdk", "h.vmdk", "4M").rc == 0
    patch(tmp_path / "h.vmdk", 12, "<Q", 1 << 62)
    # (7.2's check and map open it and fail later, on sector 0 and the size)
    x, y = ours.img("info", "h.vmdk"), oracle.img("info", "h.vmdk")
    assert x.rc == y.rc == 1 and x.out == y.out == ""
    assert x.err.endswith("File too large\n") and y.err.endswith("File too large\n")
    for args in (["check"], ["map"], ["convert", "-O", "raw", "h.vmdk", "o.raw"]):
        assert ours.img(*args, *(["h.vmdk"] if args[0] != "convert" else [])).rc == 1


def test_grain_table_entry_past_eof_check_as_oracle(ours, oracle, tmp_path):
    assert oracle.img("create", "-q", "-f", "vmdk", "c.vmdk", "4M").rc == 0
    assert oracle.io("-f", "vmdk", "-c", "write -P 7 0 64k", "c.vmdk").rc == 0
    raw = (tmp_path / "c.vmdk").read_bytes()
    gd = struct.unpack_from("<Q", raw, 56)[0]
    gt = struct.unpack_from("<I", raw, gd * 512)[0]
    patch(tmp_path / "c.vmdk", gt * 512 + 4, "<I", 0x100000)
    for args in (["check"], ["check", "--output=json"]):
        x, y = ours.img(*args, "c.vmdk"), oracle.img(*args, "c.vmdk")
        assert (x.rc, x.out, x.err) == (y.rc, y.out, y.err)


def test_compressed_grain_inflating_past_grain(ours, oracle, tmp_path):
    """A grain whose stream holds more than 64 KiB: a read error, never an overrun."""
    ova_stream(tmp_path, {0: b"\x11" * 65536})
    raw = bytearray((tmp_path / "ova.vmdk").read_bytes())
    comp = zlib.compress(b"\x22" * 200000)
    start = 128 * 512
    raw[start:start + 12 + len(comp)] = struct.pack("<QI", 0, len(comp)) + comp
    (tmp_path / "ova.vmdk").write_bytes(bytes(raw))
    t = re.compile(r"\d+\.\d+ sec \([^)]*\)")
    x = ours.io("-f", "vmdk", "-c", "read 0 64k", "ova.vmdk")
    y = oracle.io("-f", "vmdk", "-c", "read 0 64k", "ova.vmdk")
    assert (x.rc, t.sub("X", x.out), x.err) == (y.rc, t.sub("X", y.out), y.err)


DESCS = {
    "no-createType": 'version=1\nCID=1\nparentCID=ffffffff\nRW 2048 FLAT "d.raw" 0\n',
    "monolithicSparse-desc": 'version=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicSparse"\n'
                             'RW 2048 SPARSE "d.raw"\n',
    "flat-no-offset": 'version=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
                      'RW 2048 FLAT "d.raw"\n',
    "vmfs-offset": 'version=1\nCID=1\nparentCID=ffffffff\ncreateType="vmfs"\n'
                   'RW 2048 VMFS "d.raw" 5\n',
    "missing-extent": 'version=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
                      'RW 2048 FLAT "nothere.raw" 0\n',
    "zero-and-ro-skipped": 'version=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
                           'RW 2048 FLAT "d.raw" 0\nRW 4096 ZERO\nRDONLY 100 FLAT "d.raw" 0\n'
                           'NOACCESS 100 FLAT "d.raw" 0\nRW 1024 FLAT "d.raw" 2048\n',
    "vmfs": 'version=1\nCID=1\nparentCID=ffffffff\ncreateType="vmfs"\nRW 2048 VMFS "d.raw"\n',
    "crlf": 'version=1\r\nCID=1\r\nparentCID=ffffffff\r\ncreateType="monolithicFlat"\r\n'
            'RW 2048 FLAT "d.raw" 0\r\n',
    "no-cid": 'version=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "d.raw" 0\n',
    "many-extents": 'version=1\nCID=1\nparentCID=ffffffff\ncreateType="twoGbMaxExtentFlat"\n'
                    + 'RW 1 FLAT "d.raw" 0\n' * 3000,
    "absolute-name": None,
}


@pytest.mark.parametrize("name", DESCS)
def test_descriptor_files_as_oracle(ours, oracle, tmp_path, name):
    (tmp_path / "d.raw").write_bytes(bytes(range(256)) * 12 * 1024)
    text = DESCS[name]
    if text is None:
        text = ('version=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
                f'RW 2048 FLAT "{tmp_path}/d.raw" 0\n')
    (tmp_path / "d.vmdk").write_text(text)
    for args in (["info"], ["check"], ["convert", "-O", "raw", "d.vmdk"]):
        x = ours.img(*args[:1], "-f", "vmdk", *(args[1:] or ["d.vmdk"]), *(["x.raw"] if args[0] == "convert" else []))
        y = oracle.img(*args[:1], "-f", "vmdk", *(args[1:] or ["d.vmdk"]), *(["y.raw"] if args[0] == "convert" else []))
        assert x.rc >= 0
        assert (x.rc, strip_child(x.out), x.err) == (y.rc, y.out, y.err), args
    if (tmp_path / "y.raw").exists():
        assert (tmp_path / "x.raw").read_bytes() == (tmp_path / "y.raw").read_bytes()


def test_probe_descriptor_file(ours, tmp_path):
    (tmp_path / "d.raw").write_bytes(bytes(1 << 20))
    (tmp_path / "d.vmdk").write_text('# comment\n   \nversion=1\nCID=1\nparentCID=ffffffff\n'
                                     'createType="monolithicFlat"\nRW 2048 FLAT "d.raw" 0\n')
    assert "file format: vmdk" in ours.img("info", "d.vmdk").out
    (tmp_path / "e.vmdk").write_text('x\nversion=1\n')
    assert "file format: raw" in ours.img("info", "e.vmdk").out


def test_backing_chain_with_cid(ours, oracle, tmp_path):
    assert oracle.img("create", "-q", "-f", "vmdk", "base.vmdk", "4M").rc == 0
    assert oracle.io("-f", "vmdk", "-c", "write -P 1 0 1M", "base.vmdk").rc == 0
    a = ours.img("create", "-f", "vmdk", "-F", "vmdk", "-b", "base.vmdk", "top.vmdk")
    b = oracle.img("create", "-f", "vmdk", "-F", "vmdk", "-b", "base.vmdk", "top2.vmdk")
    assert (a.rc, a.out.replace("top.vmdk", "X")) == (b.rc, b.out.replace("top2.vmdk", "X"))
    base_cid = re.search(r"^CID=([0-9a-f]+)$", embedded_desc(tmp_path / "base.vmdk"), re.M)[1]
    d = embedded_desc(tmp_path / "top.vmdk")
    assert f"parentCID={base_cid}\n" in d and 'parentFileNameHint="base.vmdk"\n' in d
    assert ours.io("-f", "vmdk", "-c", "write -P 2 512k 4k", "top.vmdk").rc == 0
    check_clean(oracle, "top.vmdk")
    t = re.compile(r"\d+\.\d+ sec \([^)]*\)")
    for tool in (ours, oracle):
        r = tool.io("-f", "vmdk", "-c", "read -P 1 0 512k", "-c", "read -P 2 512k 4k",
                    "-c", "read -P 1 516k 60k", "-c", "read -P 0 1M 1M", "top.vmdk")
        assert r.rc == 0 and "verification failed" not in r.out, r
    x = ours.img("info", "--backing-chain", "top.vmdk")
    y = oracle.img("info", "--backing-chain", "top.vmdk")
    assert (x.rc, strip_child(x.out)) == (y.rc, y.out)
    x = ours.img("map", "--output=json", "top.vmdk")
    y = oracle.img("map", "--output=json", "top.vmdk")
    assert no_compressed(x.out) == y.out


def test_first_write_rewrites_cid(ours, oracle, tmp_path):
    assert ours.img("create", "-q", "-f", "vmdk", "c.vmdk", "1M").rc == 0
    before = embedded_desc(tmp_path / "c.vmdk")
    assert ours.io("-f", "vmdk", "-c", "write 0 512", "c.vmdk").rc == 0
    after = embedded_desc(tmp_path / "c.vmdk")
    assert norm_desc(before) == norm_desc(after)
    assert CID.search(before)[0] != CID.search(after)[0]
    check_clean(oracle, "c.vmdk")


def test_parent_cid_mismatch_refuses_backing_reads(ours, oracle, tmp_path):
    """Writing to the base gives it a new CID: qemu then refuses to read the overlay's
    unallocated parts (EINVAL), while allocated parts still read."""
    assert oracle.img("create", "-q", "-f", "vmdk", "b.vmdk", "1M").rc == 0
    assert oracle.img("create", "-q", "-f", "vmdk", "-F", "vmdk", "-b", "b.vmdk", "t.vmdk").rc == 0
    assert oracle.io("-f", "vmdk", "-c", "write -P 2 64k 64k", "t.vmdk").rc == 0
    assert oracle.io("-f", "vmdk", "-c", "write -P 1 0 4k", "b.vmdk").rc == 0
    t = re.compile(r"\d+\.\d+ sec \([^)]*\)")
    for script in (["-c", "read 0 4k"], ["-c", "read -P 2 64k 64k"]):
        x = ours.io("-f", "vmdk", *script, "t.vmdk")
        y = oracle.io("-f", "vmdk", *script, "t.vmdk")
        assert (x.rc, t.sub("X", x.out), x.err) == (y.rc, t.sub("X", y.out), y.err)
    x = ours.img("convert", "-O", "raw", "t.vmdk", "x.raw")
    y = oracle.img("convert", "-O", "raw", "t.vmdk", "y.raw")
    assert (x.rc, x.out, x.err) == (y.rc, y.out, y.err)


REFUSALS = {
    "check-r": ["check", "-r", "all", "r.vmdk"],
    "resize": ["resize", "r.vmdk", "+1M"],
    "measure": ["measure", "-O", "vmdk", "r.vmdk"],
    "amend": ["amend", "-o", "zeroed_grain=on", "r.vmdk"],
    "rebase": ["rebase", "-u", "-F", "vmdk", "-b", "", "r.vmdk"],
    "snapshot": ["snapshot", "-c", "s1", "r.vmdk"],
}


@pytest.mark.parametrize("name", REFUSALS)
def test_unsupported_as_oracle(ours, oracle, tmp_path, name):
    assert oracle.img("create", "-q", "-f", "vmdk", "r.vmdk", "1M").rc == 0
    x, y = ours.img(*REFUSALS[name]), oracle.img(*REFUSALS[name])
    # 9.1 prints "...: Operation not supported", 7.2 "...: -95 (Operation not supported)"
    y.err = y.err.replace("-95 (Operation not supported)", "Operation not supported")
    assert (x.rc, x.out, x.err) == (y.rc, y.out, y.err)


def cowd_extent(path, grains):
    """An ESX vmfsSparse ("COWD") extent: 1 MiB, 4 KiB grains, one 4096-entry grain table."""
    h = bytearray(512)
    h[0:4] = b"COWD"
    struct.pack_into("<IIIIII", h, 4, 1, 3, 2048, 8, 4, 1)
    out = h + bytes(3 * 512)
    out += struct.pack("<I", 5).ljust(512, b"\0")  # GD at sector 4 -> GT at sector 5
    gt = [0] * 4096
    data = bytearray()
    for i, payload in grains.items():
        gt[i] = 37 + len(data) // 512
        data += payload
    out += struct.pack("<4096I", *gt)  # sectors 5..36
    out += data
    path.write_bytes(bytes(out))


def test_vmfs_sparse_cowd_reads_as_oracle(ours, oracle, tmp_path):
    cowd_extent(tmp_path / "c-delta.vmdk", {0: b"\x31" * 4096, 100: bytes(range(256)) * 16})
    (tmp_path / "c.vmdk").write_text(
        'version=1\nCID=2\nparentCID=ffffffff\ncreateType="vmfsSparse"\n'
        'RW 2048 VMFSSPARSE "c-delta.vmdk"\n')
    for args in (["info"], ["map", "--output=json"], ["check"]):
        x, y = ours.img(*args, "c.vmdk"), oracle.img(*args, "c.vmdk")
        assert (x.rc, no_compressed(strip_child(x.out)), x.err) == (y.rc, y.out, y.err), args
    assert ours.img("convert", "-O", "raw", "c.vmdk", "a.raw").rc == 0
    assert oracle.img("convert", "-O", "raw", "c.vmdk", "b.raw").rc == 0
    a = (tmp_path / "a.raw").read_bytes()
    assert a == (tmp_path / "b.raw").read_bytes()
    assert a[100 * 4096:100 * 4096 + 256] == bytes(range(256))


def test_vmfs_sparse_cowd_writes_as_oracle(ours, oracle, tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        cowd_extent(tmp_path / d / "c-delta.vmdk", {0: b"\x31" * 4096})
        (tmp_path / d / "c.vmdk").write_text(
            'version=1\nCID=2\nparentCID=ffffffff\ncreateType="vmfsSparse"\n'
            'RW 2048 VMFSSPARSE "c-delta.vmdk"\n')
    script = ["-c", "write -P 5 8k 6k", "-c", "write -P 6 512k 4k", "-c", "read -P 5 8k 6k"]
    t = re.compile(r"\d+\.\d+ sec \([^)]*\)")
    x = ours.io("-f", "vmdk", *script, "a/c.vmdk")
    y = oracle.io("-f", "vmdk", *script, "b/c.vmdk")
    assert (x.rc, t.sub("X", x.out), x.err) == (y.rc, t.sub("X", y.out), y.err)
    assert (tmp_path / "a/c-delta.vmdk").read_bytes() == (tmp_path / "b/c-delta.vmdk").read_bytes()
    assert oracle.img("compare", "a/c.vmdk", "b/c.vmdk").rc == 0
