# SPDX-License-Identifier: MIT
"""dmg (UDIF), read only: images built by hand from specs/dmg-libyal.asciidoc read, convert,
compare, map and info like qemu-img; hostile block tables give qemu's messages; writes are
refused with qemu's "Image is read-only".

`build()` writes what the spec describes: the data fork (chunk payloads back to back), then
either an XML plist whose blkx <data> elements hold base64 mish blocks, or a resource fork
(u32 data offset at 0, u32 data length at 8; each resource a u32 length and a mish block),
then the 512-byte "koly" trailer: data fork offset at 0x18, resource fork offset/length at
0x28/0x30, plist offset/length at 0xd8/0xe0, the sector count at 0x1ec (qemu's virtual size).
A mish block: "mish", version 1, first sector at 8, sector count at 16, data offset at 0x18,
the entry count at 200 and 40-byte entries from 204 (type, comment, sector, sector count,
offset, length; big-endian).

Debian's qemu-img 7.2 (the oracle) has no dmg-bz2 module: it prints "qemu: module
block-block-dmg-bz2 not found ..." (and the same for lzfse) plus "dmg-bzip2 module is missing"
for every dmg image, and fails bzip2 chunks. 9.1 (built with bzip2, without lzfse, like qimg)
prints none of that and reads bzip2 chunks: those lines are dropped before comparing, and the
bzip2 tests check the bytes (9.1's result, verified by hand) instead of 7.2's I/O error.
"""
import base64
import bz2
import re
import struct
import zlib

import pytest

from conftest import strip_child
from readonly_common import same_info, same_map, same_raw, write, writes_are_refused

UDZE, UDRW, UDIG, UDCM, ADC, UDZO, UDBZ, ULFO, UDLE = (
    0, 1, 2, 0x7FFFFFFE, 0x80000004, 0x80000005, 0x80000006, 0x80000007, 0xFFFFFFFF)

MODULE_NOISE = re.compile(r"^(qemu: module block-block-dmg-(bz2|lzfse) not found, .*|"
                          r"qemu-img: warning: dmg-bzip2 module is missing, .*)\n", re.M)


def quiet(err):
    """7.2's stderr without its missing-module lines (see the module docstring)."""
    return MODULE_NOISE.sub("", err)


def payload(kind, data):
    if kind == UDZO:
        return zlib.compress(data)
    if kind == UDBZ:
        return bz2.compress(data)
    return data if kind == UDRW else b""


def mish(entries, first_sector=0, data_offset=0):
    """A block table: entries are (type, sector, count, offset, length), sector relative."""
    h = bytearray(204)
    h[0:4] = b"mish"
    struct.pack_into(">I", h, 4, 1)
    struct.pack_into(">QQQ", h, 8, first_sector, sum(e[2] for e in entries), data_offset)
    struct.pack_into(">I", h, 200, len(entries))
    return bytes(h) + b"".join(struct.pack(">IIQQQQ", t, 0, s, c, o, ln)
                               for t, s, c, o, ln in entries)


def plist(blocks):
    xml = (b'<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0">\n<dict>\n'
           b"<key>resource-fork</key>\n<dict>\n<key>blkx</key>\n<array>\n")
    for i, b in enumerate(blocks):
        enc = base64.b64encode(b)
        enc = b"\n\t\t\t".join(enc[k:k + 52] for k in range(0, len(enc), 52))
        xml += (b"<dict>\n<key>Attributes</key>\n<string>0x0050</string>\n<key>Data</key>\n"
                b"<data>\n\t\t\t" + enc + b"\n\t\t\t</data>\n<key>ID</key>\n<string>%d</string>\n"
                b"</dict>\n" % i)
    return xml + b"</array>\n</dict>\n</dict>\n</plist>\n"


def resource_fork(blocks):
    res = b"".join(struct.pack(">I", len(b)) + b for b in blocks)
    return struct.pack(">IIII", 256, 256 + len(res), len(res), 0).ljust(256, b"\0") + res


def koly(sectors, data_fork=0, rsrc=(0, 0), xml=(0, 0)):
    k = bytearray(512)
    k[0:4] = b"koly"
    struct.pack_into(">III", k, 4, 4, 512, 1)
    struct.pack_into(">Q", k, 0x18, data_fork)
    struct.pack_into(">QQ", k, 0x28, *rsrc)
    struct.pack_into(">QQ", k, 0xD8, *xml)
    struct.pack_into(">IQ", k, 488, 1, sectors)
    return bytes(k)


def build(chunks, fork="xml", data_fork=0, pad=0, tables=None, sectors=None):
    """chunks: (type, sector count, guest bytes or None) in guest order, stored in that
    order. tables: override the mish blocks. Returns (image bytes, expected guest bytes)."""
    data, entries, sector, guest = bytearray(), [], 0, bytearray()
    for kind, count, content in chunks:
        blob = payload(kind, content) if content is not None else b""
        entries.append((kind, sector, count, len(data), len(blob)))
        data += blob
        sector += count
        guest += content if kind in (UDRW, UDZO, UDBZ) else bytes(512 * count)
    entries.append((UDLE, sector, 0, len(data), 0))
    blocks = tables if tables is not None else [mish(entries)]
    body = bytes(data_fork) + bytes(data)
    table = plist(blocks) if fork == "xml" else resource_fork(blocks)
    where = (len(body), len(table))
    k = koly(sector if sectors is None else sectors, data_fork,
             rsrc=where if fork != "xml" else (0, 0), xml=where if fork == "xml" else (0, 0))
    return body + table + bytes(pad) + k, bytes(guest)


def pattern(n, seed):
    return bytes((seed * 131 + i * 7 + (i >> 9)) & 0xFF for i in range(n))


MIXED = [(UDRW, 4, pattern(2048, 1)), (UDZE, 3, None), (UDZO, 8, pattern(4096, 2)),
         (UDIG, 2, None), (UDZO, 1, bytes(512)), (UDRW, 1, b"x" * 512)]


def convert(tool, img, out, *opts):
    r = tool.img("convert", *opts, "-O", "raw", str(img), str(out))
    return r, (out.read_bytes() if r.rc == 0 else None)


def same_everything(ours, oracle, img, tmp_path, guest):
    same_raw(ours, oracle, img, tmp_path, guest, clean=quiet)
    same_info(ours, oracle, img, clean=quiet)
    same_map(ours, oracle, img, clean=quiet)


@pytest.mark.parametrize("fork", ["xml", "rsrc"])
@pytest.mark.parametrize("data_fork,pad", [(0, 0), (1000, 0), (0, 7), (4096, 300)])
def test_reads_like_qemu(both, tmp_path, fork, data_fork, pad):
    """raw, zero, ignore and zlib chunks; a data fork not at 0; a trailer at an odd size."""
    ours, oracle = both
    data, guest = build(MIXED, fork=fork, data_fork=data_fork, pad=pad)
    img = write(tmp_path, "t.dmg", data)
    same_everything(ours, oracle, img, tmp_path, guest)


def test_several_block_tables_and_first_sector(both, tmp_path):
    """Two mish blocks: the second starts at guest sector 6 (its entries count from there)
    and its data offset (0x18) moves its chunks within the data fork."""
    ours, oracle = both
    a, b = pattern(3072, 5), zlib.compress(pattern(2048, 6))
    t1 = mish([(UDRW, 0, 6, 0, 3072), (UDLE, 6, 0, 0, 0)])
    t2 = mish([(UDZO, 0, 4, 0, len(b)), (UDZE, 4, 2, 0, 0), (UDLE, 6, 0, 0, 0)],
              first_sector=6, data_offset=3072)
    img = write(tmp_path, "t.dmg", raw_image([t1, t2], a + b, sectors=12))
    same_everything(ours, oracle, img, tmp_path, a + pattern(2048, 6) + bytes(1024))


def test_bzip2_chunks(ours, tmp_path):
    """9.1 (with bzip2) reads them; Debian's 7.2 lacks the module (module docstring)."""
    chunks = MIXED + [(UDBZ, 4, pattern(2048, 9)), (UDBZ, 2, bytes(1024))]
    data, guest = build(chunks)
    img = write(tmp_path, "t.dmg", data)
    r, raw = convert(ours, img, tmp_path / "o.raw")
    assert r.rc == 0 and r.err == "" and raw == guest, r
    r = ours.img("compare", str(img), str(tmp_path / "o.raw"))
    assert r.rc == 0, r


@pytest.mark.parametrize("kind,warning", [
    (ULFO, "qemu-img: warning: dmg-lzfse module is missing, accessing lzfse compressed "
           "blocks will result in I/O errors\n"),
    (ADC, "qemu-img: warning: Image contains chunks of unknown type 80000004, accessing them "
          "will result in I/O errors\n"),
    (0x80000008, "qemu-img: warning: Image contains chunks of unknown type 80000008, accessing "
                 "them will result in I/O errors\n"),
])
def test_unreadable_chunks_warn_once_and_fail_reads(both, tmp_path, kind, warning):
    ours, oracle = both
    chunks = MIXED + [(kind, 2, None), (UDRW, 1, b"y" * 512), (kind, 2, None)]
    data, _ = build(chunks)
    img = write(tmp_path, "t.dmg", data)
    a, b = ours.img("info", str(img)), oracle.img("info", str(img))
    assert (a.rc, strip_child(a.out), a.err) == (b.rc, b.out, quiet(b.err))
    assert a.err == warning  # once, though two chunks have the type
    ra, _ = convert(ours, img, tmp_path / "a.raw")
    rb, _ = convert(oracle, img, tmp_path / "b.raw")
    assert (ra.rc, ra.err) == (rb.rc, quiet(rb.err))
    assert ra.rc == 1 and ra.err.endswith("Input/output error\n")
    # Sector by sector: the chunks qemu keeps read, the others fail (19 = the "y" sector).
    for sector in (0, 18, 19, 20, 22):
        a = ours.io("-r", "-c", f"read {512 * sector} 512", str(img))
        b = oracle.io("-r", "-c", f"read {512 * sector} 512", str(img))
        assert ("failed" in a.out, a.rc) == ("failed" in b.out, b.rc), sector


def test_comment_and_terminator_entries_are_ignored_silently(both, tmp_path):
    ours, oracle = both
    data, guest = build([(UDRW, 2, pattern(1024, 3)), (UDCM, 0, None), (UDZE, 2, None)])
    img = write(tmp_path, "t.dmg", data)
    same_everything(ours, oracle, img, tmp_path, guest)


HOSTILE_TABLES = [
    ("sector-count", [(UDRW, 0, 131073, 0, 1024)],
     "qemu-img: sector count 131073 for chunk 0 is larger than max (131072)\n"),
    ("length", [(UDZE, 0, 2, 0, 0), (UDZO, 2, 2, 0, (64 << 20) + 1)],
     "qemu-img: length 67108865 for chunk 1 is larger than max (67108864)\n"),
    ("sector-count-zlib", [(UDZO, 0, 1 << 40, 0, 10)],
     "qemu-img: sector count 1099511627776 for chunk 0 is larger than max (131072)\n"),
]


@pytest.mark.parametrize("fork", ["xml", "rsrc"])
@pytest.mark.parametrize("name,entries,msg", HOSTILE_TABLES, ids=[h[0] for h in HOSTILE_TABLES])
def test_chunk_limits_give_qemus_messages(both, tmp_path, fork, name, entries, msg):
    ours, oracle = both
    img = write(tmp_path, "t.dmg", raw_image([mish(entries)], bytes(1024), 4, fork))
    a, b = ours.img("info", str(img)), oracle.img("info", str(img))
    assert (a.rc, a.out, a.err) == (b.rc, b.out, quiet(b.err))
    assert a.rc == 1 and a.err == msg + f"qemu-img: Could not open '{img}': Could not open " \
                                        f"'{img}': Invalid argument\n"


def test_zero_chunks_may_be_huge(both, tmp_path):
    """Zero and ignore chunks have no sector limit (nothing is inflated): 1 TiB of zeroes."""
    ours, oracle = both
    n = 1 + (1 << 31) + (1 << 20)
    entries = [(UDRW, 0, 1, 0, 512), (UDZE, 1, 1 << 31, 0, 0), (UDIG, 1 + (1 << 31), 1 << 20, 0, 0)]
    img = write(tmp_path, "t.dmg", raw_image([mish(entries)], b"z" * 512, sectors=n))
    a, b = ours.img("info", str(img)), oracle.img("info", str(img))
    assert (a.rc, strip_child(a.out), a.err) == (b.rc, b.out, quiet(b.err))
    for off in (0, 512, (1 << 40) - 512, 1 << 40):
        a = ours.io("-r", "-c", f"read -P {0x7a if off == 0 else 0} {off} 512", str(img))
        assert a.rc == 0 and "verification failed" not in a.out, (off, a)


def raw_image(tables, data=b"", sectors=8, fork="xml"):
    table = plist(tables) if fork == "xml" else resource_fork(tables)
    where = (len(data), len(table))
    return data + table + koly(sectors, xml=where if fork == "xml" else (0, 0),
                               rsrc=where if fork != "xml" else (0, 0))


def rsrc_header(data_offset, count, body=b""):
    return struct.pack(">IIII", data_offset, 0, count, 0) + body


BROKEN = [
    ("no-trailer", pattern(4096, 1)),
    ("empty", b""),
    ("tiny", b"koly" * 10),
    ("no-tables", koly(8)),
    ("xml-unclosed-data", b"<plist><data>AAAA" + koly(8, xml=(0, 17))),
    ("xml-too-long", b"<plist/>" + koly(8, xml=(0, 100 * 1024 * 1024 + 1))),
    ("rsrc-offset-past", rsrc_header(100, 8) + koly(8, rsrc=(0, 50))),
    ("rsrc-count-zero", rsrc_header(16, 0) + koly(8, rsrc=(0, 50))),
    ("rsrc-count-past", rsrc_header(16, 40) + koly(8, rsrc=(0, 50))),
    ("rsrc-resource-zero", rsrc_header(16, 8, bytes(8)) + koly(8, rsrc=(0, 24))),
    ("sectors-2^54", raw_image([mish([(UDZE, 0, 8, 0, 0)])], sectors=1 << 54)),
    ("sectors-2^63", raw_image([mish([(UDZE, 0, 8, 0, 0)])], sectors=1 << 63)),
]


@pytest.mark.parametrize("name,data", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_images_fail_like_qemu(both, tmp_path, name, data):
    ours, oracle = both
    img = write(tmp_path, "t.dmg", data)
    for argv in (["info", str(img)], ["info", "-f", "dmg", str(img)],
                 ["convert", "-f", "dmg", "-O", "raw", str(img), str(tmp_path / "o.raw")]):
        a, b = ours.img(*argv), oracle.img(*argv)
        assert (a.rc, strip_child(a.out), a.err) == (b.rc, b.out, quiet(b.err)), argv


@pytest.mark.parametrize("fork", ["xml", "rsrc"])
def test_junk_blocks_are_skipped(both, tmp_path, fork):
    """Blocks that are not mish (bad magic, under 244 bytes) are skipped, as qemu does."""
    ours, oracle = both
    good = mish([(UDRW, 0, 2, 0, 1024), (UDLE, 2, 0, 0, 0)])
    junk = [b"MISH" + good[4:], good[:243], b"plain text"]
    img = write(tmp_path, "t.dmg", raw_image(junk + [good], pattern(1024, 4), 2, fork))
    same_everything(ours, oracle, img, tmp_path, pattern(1024, 4))


def test_lenient_base64_like_glib(both, tmp_path):
    """qemu decodes <data> with glib: junk characters are skipped, '=' drops bytes."""
    ours, oracle = both
    good = mish([(UDRW, 0, 2, 0, 1024), (UDLE, 2, 0, 0, 0)])
    enc = base64.b64encode(good).decode()
    noisy = "<plist><data>" + "!*".join(enc[i:i + 7] for i in range(0, len(enc), 7)) + \
        "</data></plist>"
    body = pattern(1024, 8)
    img = write(tmp_path, "t.dmg",
                body + noisy.encode() + koly(2, xml=(len(body), len(noisy))))
    same_everything(ours, oracle, img, tmp_path, body)


def test_unsorted_and_gappy_tables_read_like_qemu(both, tmp_path):
    """qemu finds sectors by binary search over the chunks in file order: an unsorted table
    hides chunks, a gap fails; sector by sector, qimg fails exactly where qemu does."""
    ours, oracle = both
    body = b"A" * 1024 + b"B" * 1024 + b"C" * 1024
    for entries in ([(UDRW, 10, 2, 0, 1024), (UDRW, 0, 2, 1024, 1024), (UDRW, 4, 2, 2048, 1024)],
                    [(UDRW, 0, 2, 0, 1024), (UDRW, 10, 2, 1024, 1024), (UDZE, 5, 2, 0, 0)]):
        img = write(tmp_path, "t.dmg", raw_image([mish(entries)], body, sectors=14))
        for sector in range(14):
            argv = ["-r", "-c", f"read -v {512 * sector} 16", str(img)]
            a, b = ours.io(*argv), oracle.io(*argv)
            assert a.rc == b.rc and a.out.splitlines()[0][:58] == b.out.splitlines()[0][:58], \
                (entries, sector, a, b)


def test_no_chunks_reads_fail_cleanly(both, tmp_path):
    """A resource fork whose only resource is not a block table: the image opens with no
    chunks. qemu (7.2 and 9.1) then crashes on any read (its binary search looks at the first
    entry of the empty chunk list: SIGSEGV); qimg fails the read with an I/O error."""
    ours, oracle = both
    img = write(tmp_path, "t.dmg",
                rsrc_header(16, 8, struct.pack(">I", 4) + bytes(4)) + koly(8, rsrc=(0, 24)))
    a, b = ours.img("info", str(img)), oracle.img("info", str(img))
    assert (a.rc, strip_child(a.out), a.err) == (b.rc, b.out, quiet(b.err)) and a.rc == 0
    r, _ = convert(ours, img, tmp_path / "o.raw")
    assert (r.rc, r.err) == (1, "qemu-img: error while reading at byte 0: Input/output error\n")


def test_raw_chunk_longer_than_its_data_fails(ours, tmp_path):
    """A raw chunk claiming more sectors than it stores: 9.1 copies those sectors from past
    the end of its buffer (heap bytes); qimg fails them with an I/O error instead and still
    reads the stored ones."""
    body = b"A" * 1024
    img = write(tmp_path, "t.dmg", raw_image([mish([(UDRW, 0, 8, 0, 1024)])], body, sectors=8))
    assert ours.io("-r", "-c", "read -P 0x41 0 1024", str(img)).rc == 0
    r = ours.io("-r", "-c", "read 1024 512", str(img))
    assert "read failed: Input/output error" in r.out + r.err, r


@pytest.mark.parametrize("how", ["bad-zlib", "zlib-too-short", "zlib-too-long", "past-eof"])
def test_damaged_chunks_are_io_errors(both, tmp_path, how):
    ours, oracle = both
    comp = zlib.compress(pattern(2048, 3))
    count = {"zlib-too-short": 5, "zlib-too-long": 3}.get(how, 4)
    if how == "bad-zlib":
        comp = comp[:4] + b"\xff" * 8 + comp[12:]
    offset = 1 << 40 if how == "past-eof" else 0
    img = write(tmp_path, "t.dmg", raw_image([mish([(UDZO, 0, count, offset, len(comp)),
                                                    (UDRW, count, 1, len(comp), 512)])],
                                             comp + b"k" * 512, sectors=count + 1))
    for sector in (0, count):
        argv = ["-r", "-c", f"read {512 * sector} 512", str(img)]
        a, b = ours.io(*argv), oracle.io(*argv)
        assert (a.rc, "failed" in a.out) == (b.rc, "failed" in b.out), sector
    ra, _ = convert(ours, img, tmp_path / "a.raw")
    rb, _ = convert(oracle, img, tmp_path / "b.raw")
    assert (ra.rc, ra.err) == (rb.rc, quiet(rb.err)) and ra.rc == 1


def test_probe_is_by_file_name(both, tmp_path):
    ours, oracle = both
    data, guest = build(MIXED)
    for name, fmt in (("t.dmg", "dmg"), ("t.img", "raw"), ("t.DMG", "raw"), ("t.dmg.x", "raw")):
        img = write(tmp_path, name, data)
        a, b = ours.img("info", str(img)), oracle.img("info", str(img))
        assert f"file format: {fmt}\n" in a.out and f"file format: {fmt}\n" in b.out, name
    img = write(tmp_path, "t.img", data)
    r, raw = convert(ours, img, tmp_path / "o.raw", "-f", "dmg")
    assert r.rc == 0 and raw == guest


def test_writes_are_refused(both, tmp_path):
    writes_are_refused(*both, write(tmp_path, "t.dmg", build(MIXED)[0]), clean=quiet)
