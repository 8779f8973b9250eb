# SPDX-License-Identifier: MIT
"""Bochs growing (redolog) images, read only: images built by hand from specs/bochs-facts.md
read, convert, compare, map and info like qemu-img; hostile headers give qemu's messages;
writes are refused with qemu's "Image is read-only".

`bochs()` below writes what bximage writes for a growing image (bochs-facts.md): the 512-byte
header (magic "Bochs Virtual HD Image", type "Redolog", subtype "Growing", version 0x00020000,
or 0x00010000 without the timestamp field so that the disk size sits at 84), the catalog of
u32 record indexes (0xffffffff: unallocated) and the records, each a bitmap rounded up to
512-byte blocks (bit s % 8 of byte s / 8: sector s is present) then the extent's sectors.
All integers little-endian.
"""
import struct

import pytest

from readonly_common import same_info, same_map, same_raw, write, writes_are_refused

UNALLOCATED = 0xFFFFFFFF


def bochs(disk, extent=4096, bitmap=1, catalog=None, version=2, data=None, header=512,
          magic=b"Bochs Virtual HD Image", typ=b"Redolog", sub=b"Growing", absent=()):
    """data: {sector: 512 bytes}; records are allocated in the order of their first sector.
    Sectors in `absent` get a record but a clear bitmap bit (their bytes must not show)."""
    data = dict(data or {})
    spe = extent // 512
    ncat = catalog if catalog is not None else -(-disk // extent)
    cat = [UNALLOCATED] * ncat
    records = []
    bitmap_blocks = -(-bitmap // 512)
    extent_blocks = -(-extent // 512)
    for sec in sorted(set(data) | set(absent)):
        e = sec // spe
        if cat[e] == UNALLOCATED:
            cat[e] = len(records)
            records.append(bytearray(512 * (bitmap_blocks + extent_blocks)))
        rec, s = records[cat[e]], sec % spe
        if sec in absent:
            rec[512 * (bitmap_blocks + s):512 * (bitmap_blocks + s + 1)] = b"\xAA" * 512
            continue
        rec[s // 8] |= 1 << (s % 8)
        rec[512 * (bitmap_blocks + s):512 * (bitmap_blocks + s + 1)] = data[sec]
    h = bytearray(header)
    h[0:32] = magic.ljust(32, b"\0")
    h[32:48] = typ.ljust(16, b"\0")
    h[48:64] = sub.ljust(16, b"\0")
    struct.pack_into("<II", h, 64, 0x00010000 if version == 1 else 0x00020000, header)
    struct.pack_into("<III", h, 72, ncat, bitmap, extent)
    struct.pack_into("<Q", h, 84 if version == 1 else 88, disk)
    return bytes(h) + b"".join(struct.pack("<I", c) for c in cat) + b"".join(records)


def sector(tag):
    return (b"%s-" % tag.encode()) * 255 + b"!!"


def expected(disk, data):
    out = bytearray(disk - disk % 512)
    for sec, d in data.items():
        out[512 * sec:512 * (sec + 1)] = d
    return bytes(out)


DATA = {0: sector("a"), 3: sector("b"), 9: sector("c"), 100: sector("d"), 2047: sector("e"),
        8: sector("f")}


def same_info_map(ours, oracle, img):
    same_info(ours, oracle, img)
    same_map(ours, oracle, img)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("extent,bitmap", [(4096, 1), (512, 1), (65536, 16), (8 << 20, 2048)])
def test_reads_like_qemu(both, tmp_path, version, extent, bitmap):
    ours, oracle = both
    disk = 1 << 20
    img = write(tmp_path, "t.bochs", bochs(disk, extent=extent, bitmap=bitmap, version=version,
                                           data=DATA, absent=(1, 2, 101)))
    same_raw(ours, oracle, img, tmp_path, expected(disk, DATA))
    same_info_map(ours, oracle, img)


def test_odd_disk_size_rounds_down_to_sectors(both, tmp_path):
    ours, oracle = both
    disk = (1 << 20) + 300
    img = write(tmp_path, "t.bochs", bochs(disk, data=DATA))
    same_raw(ours, oracle, img, tmp_path, expected(disk, DATA))
    same_info_map(ours, oracle, img)


def test_bigger_header_and_catalog(both, tmp_path):
    """The catalog starts at the header size the header gives; spare catalog entries are fine."""
    ours, oracle = both
    img = write(tmp_path, "t.bochs", bochs(1 << 20, header=1024, catalog=300, data=DATA))
    same_raw(ours, oracle, img, tmp_path, expected(1 << 20, DATA))


def test_truncated_records_read_as_zeroes(both, tmp_path):
    """qemu reads past the end of the file as zeroes: bitmaps and data there are empty."""
    ours, oracle = both
    img = write(tmp_path, "t.bochs", bochs(1 << 20, data=DATA)[:512 + 1024 + 700])
    a, b = tmp_path / "a.raw", tmp_path / "b.raw"
    assert ours.img("convert", "-O", "raw", str(img), str(a)).rc == 0
    assert oracle.img("convert", "-O", "raw", str(img), str(b)).rc == 0
    assert a.read_bytes() == b.read_bytes()


def test_zero_bitmap_size_wraps_like_qemu(both, tmp_path):
    """bitmap = 0: qemu's 32-bit 1 + (bitmap - 1) / 512 puts the data 4 GiB away (zeroes)."""
    ours, oracle = both
    img = write(tmp_path, "t.bochs", bochs(1 << 20, bitmap=0, data={0: sector("z")}))
    a, b = tmp_path / "a.raw", tmp_path / "b.raw"
    assert ours.img("convert", "-O", "raw", str(img), str(a)).rc == 0
    assert oracle.img("convert", "-O", "raw", str(img), str(b)).rc == 0
    assert a.read_bytes() == b.read_bytes()


HOSTILE = [
    ("not-growing", dict(sub=b"Undoable")),
    ("not-redolog", dict(typ=b"Growing")),
    ("bad-magic", dict(magic=b"Bochs Virtual HD Imag")),
    ("extent-small", dict(extent=256, catalog=4096)),
    ("extent-not-pow2", dict(extent=1536, catalog=1000)),
    ("extent-too-big", dict(extent=16 << 20, catalog=1)),
    ("catalog-too-big", dict(catalog=0x100001)),
    ("catalog-too-small", dict(catalog=255)),
]


@pytest.mark.parametrize("name,kw", HOSTILE, ids=[n for n, _ in HOSTILE])
def test_hostile_headers_give_qemus_message(both, tmp_path, name, kw):
    ours, oracle = both
    data = bochs(1 << 20, **kw)
    img = write(tmp_path, name + ".bochs", data[:4096])
    for argv in (["info", "-f", "bochs", str(img)],
                 ["convert", "-f", "bochs", "-O", "raw", str(img), str(tmp_path / "o.raw")]):
        a, b = ours.img(*argv), oracle.img(*argv)
        assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err), argv
        assert a.rc == 1 and "Could not open" in a.err
    # Not probed as bochs: subtype, type or magic wrong
    if name.startswith(("not-", "bad-")):
        a, b = ours.img("info", str(img)), oracle.img("info", str(img))
        assert "file format: raw" in a.out and "file format: raw" in b.out


def test_writes_are_refused(both, tmp_path):
    writes_are_refused(*both, write(tmp_path, "t.bochs", bochs(1 << 20, data=DATA)))


def test_qemu_io_unaligned_reads(both, tmp_path):
    ours, oracle = both
    img = write(tmp_path, "t.bochs", bochs(1 << 20, data=DATA))
    flat = expected(1 << 20, DATA)
    for off, ln in ((1, 1), (511, 2), (4095, 700), (4600, 40000)):
        pattern = flat[off]
        a = ours.io("-r", "-c", f"read -P {pattern} {off} 1", str(img))
        b = oracle.io("-r", "-c", f"read -P {pattern} {off} 1", str(img))
        assert a.rc == b.rc == 0 and "verification failed" not in a.out + b.out
        a = ours.io("-r", "-c", f"read {off} {ln}", str(img))
        assert a.rc == 0 and f"read {ln}/{ln} bytes at offset {off}" in a.out
