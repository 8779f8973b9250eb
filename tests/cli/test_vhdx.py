# SPDX-License-Identifier: MIT
"""VHDX against qemu-img: layouts, hostile images, the log, interop.

Hostile and dirty-log images are made from a qemu-created image by patching
fields (MS-VHDX sections cited) and fixing the checksums the patch breaks
(crc32c over the 4 KiB header or 64 KiB region table). Expected text is
qemu-img 9.1's; the Debian 7.2 oracle prints the same unless a comment says.
"""
import re
import struct

import pytest

from conftest import strip_child

MiB = 1 << 20
TIMING = re.compile(r"\d+\.\d+ sec \([^)]*\)")
H1, H2, RT1, RT2 = 0x10000, 0x20000, 0x30000, 0x40000
BAT, META = 0x200000, 0x300000  # default layout: log 1 MiB at 1 MiB
LOG = 0x100000


def crc32c(data):
    crc = 0xFFFFFFFF
    table = crc32c.table
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        t.append(c)
    return t


crc32c.table = _table()


def fix_crc(b, off, length):
    struct.pack_into("<I", b, off + 4, 0)
    struct.pack_into("<I", b, off + 4, crc32c(bytes(b[off:off + length])))


def patch(path, edits, fix=()):
    """edits: (offset, struct format, value); fix: which of h1 h2 r1 r2 to re-checksum."""
    b = bytearray(path.read_bytes())
    for off, fmt, val in edits:
        struct.pack_into(fmt, b, off, val)
    for f in fix:
        fix_crc(b, {"h1": H1, "h2": H2, "r1": RT1, "r2": RT2}[f],
                4096 if f[0] == "h" else 65536)
    path.write_bytes(b)


def norm(text):
    """9.1's map JSON adds "compressed" and its info the file child; 7.2 has neither."""
    return strip_child(text).replace(', "compressed": false', "")


def same(a, b):
    assert (a.rc, norm(a.out), a.err) == (b.rc, b.out, b.err)


def check_clean(oracle, name):
    r = oracle.img("check", "-f", "vhdx", name)
    assert r.rc == 0, r


# --- hostile images: one clear error, qemu's wording --------------------------------------

HOSTILE = {
    # [2.2.2] headers: one bad checksum falls back to the other; both bad, a bad version or
    # equal sequence numbers: no valid header.
    "h1-bad-crc": ([(H1 + 0x10, "B", 1)], ()),
    "both-bad-crc": ([(H1 + 0x10, "B", 1), (H2 + 0x10, "B", 1)], ()),
    "equal-seq": ([(H1 + 8, "<Q", 5), (H2 + 8, "<Q", 5)], ("h1", "h2")),
    "version-2": ([(H1 + 66, "<H", 2), (H2 + 66, "<H", 2)], ("h1", "h2")),
    "log-offset-unaligned": ([(H1 + 72, "<Q", 0x100001), (H2 + 72, "<Q", 0x100001)], ("h1", "h2")),
    "log-overlaps-bat": ([(H1 + 68, "<I", 0x100100), (H2 + 68, "<I", 0x100100)], ("h1", "h2")),
    # [2.2.3] region table
    "region-signature": ([(RT1, "B", 0), (RT2, "B", 0)], ()),
    "region-crc": ([(RT1 + 0x10, "B", 0)], ()),
    "region-count": ([(RT1 + 8, "<I", 3000)], ("r1",)),
    "bat-unaligned-overlaps-meta": ([(RT1 + 0x20, "<Q", 0x200001)], ("r1",)),
    "bat-short-length-ok": ([(RT1 + 0x28, "<I", 0x1001)], ("r1",)),
    "bat-on-metadata": ([(RT1 + 0x20, "<Q", 0x300000)], ("r1",)),
    "bat-on-log": ([(RT1 + 0x20, "<Q", 0x100000)], ("r1",)),
    "bat-on-file-id": ([(RT1 + 0x20, "<Q", 0)], ("r1",)),
    "bat-past-eof": ([(RT1 + 0x20, "<Q", 1 << 40)], ("r1",)),
    "bat-offset-huge": ([(RT1 + 0x20, "<Q", (1 << 64) - MiB)], ("r1",)),
    "unknown-required-region": ([(RT1 + 0x10, "B", 0x55), (RT1 + 0x2C, "<I", 1)], ("r1",)),
    "no-bat-region": ([(RT1 + 0x10, "B", 0x55)], ("r1",)),
    # [2.6] metadata
    "meta-signature": ([(META, "B", 0)], ()),
    "meta-count": ([(META + 10, "<H", 2048)], ()),
    "meta-count-2047": ([(META + 10, "<H", 2047)], ()),
    "block-size-3M": ([(META + 0x10000, "<I", 3 * MiB)], ()),
    "block-size-512K": ([(META + 0x10000, "<I", MiB // 2)], ()),
    "block-size-512M": ([(META + 0x10000, "<I", 512 * MiB)], ()),
    "block-size-0": ([(META + 0x10000, "<I", 0)], ()),
    "has-parent-no-locator": ([(META + 0x10004, "<I", 2)], ()),
    "leave-blocks-allocated": ([(META + 0x10004, "<I", 1)], ()),
    "size-0": ([(META + 0x10008, "<Q", 0)], ()),
    "size-huge": ([(META + 0x10008, "<Q", 0xFFFFFFFFFFFFFF00)], ()),
    "size-64T-bat-too-small": ([(META + 0x10008, "<Q", 64 << 40)], ()),
    "size-unaligned": ([(META + 0x10008, "<Q", 1000)], ()),
    "logical-4096": ([(META + 0x10020, "<I", 4096)], ()),
    "physical-1024": ([(META + 0x10024, "<I", 1024)], ()),
    "item-offset-small": ([(META + 0x30, "<I", 0x100)], ()),
    "item-offset-end": ([(META + 0x30, "<I", 0xFFFF8)], ()),
    "unknown-required-item": ([(META + 0x20, "B", 0x55)], ()),
    "missing-file-params": ([(META + 0x20, "B", 0x55), (META + 0x38, "<I", 0)], ()),
    "missing-page83": ([(META + 0x60, "B", 0x55), (META + 0x78, "<I", 0)], ()),
    # [2.5.1] BAT entries: past the end of the file, over metadata, invalid states
    "bat-state-undefined": ([(BAT, "<Q", 1)], ()),
    "bat-state-4": ([(BAT, "<Q", 4)], ()),
    "bat-state-unmapped-v095": ([(BAT, "<Q", 5)], ()),
    "bat-partially-present": ([(BAT, "<Q", 0x700007)], ()),
    "bat-end-past-eof": ([(BAT, "<Q", 0x700006)], ()),
    "bat-start-past-eof": ([(BAT, "<Q", 0x800006)], ()),
    "bat-two-past-eof": ([(BAT, "<Q", 0x700006), (BAT + 8, "<Q", 0x900006)], ()),
    "bat-on-header-section": ([(BAT, "<Q", 0x6)], ()),
    "bat-offset-max": ([(BAT, "<Q", 0xFFFFFFFFFFF00006)], ()),
}

@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_equal_oracle(ours, oracle, tmp_path, case):
    edits, fix = HOSTILE[case]
    assert oracle.img("create", "-q", "-f", "vhdx", "m.vhdx", "64M").rc == 0
    patch(tmp_path / "m.vhdx", edits, fix)
    for args in (["info"], ["check"], ["map", "--output=json"]):
        a = ours.img(*args, "-f", "vhdx", "m.vhdx")
        b = oracle.img(*args, "-f", "vhdx", "m.vhdx")
        assert a.rc >= 0
        same(a, b)
    a = ours.io("-r", "-f", "vhdx", "-c", "read 0 4k", "m.vhdx")
    b = oracle.io("-r", "-f", "vhdx", "-c", "read 0 4k", "m.vhdx")
    assert (a.rc, TIMING.sub("X", a.out), a.err) == (b.rc, TIMING.sub("X", b.out), b.err)


def test_differencing_refused(ours, oracle, tmp_path):
    """has_parent with a parent locator item: qemu supports no differencing VHDX (ENOTSUP)."""
    assert oracle.img("create", "-q", "-f", "vhdx", "m.vhdx", "64M").rc == 0
    locator = bytes.fromhex("2d5fd3a80bb34d45abf7d3d84834ab0c")
    b = bytearray((tmp_path / "m.vhdx").read_bytes())
    struct.pack_into("<I", b, META + 0x10004, 2)
    struct.pack_into("<H", b, META + 10, 6)
    b[META + 0xC0:META + 0xD0] = locator
    struct.pack_into("<III", b, META + 0xD0, 0x10030, 0x20, 4)
    (tmp_path / "m.vhdx").write_bytes(b)
    a, o = ours.img("info", "m.vhdx"), oracle.img("info", "m.vhdx")
    same(a, o)
    assert "Operation not supported" in a.err


# --- create --------------------------------------------------------------------------------

def masked(path):
    b = bytearray(path.read_bytes())
    meta = struct.unpack_from("<Q", b, RT1 + 0x40)[0]
    for s, e in ((8, 0x208), (H1 + 4, H1 + 0x30), (H2 + 4, H2 + 0x30),
                 (meta + 0x10010, meta + 0x10020)):
        b[s:e] = bytes(e - s)
    return bytes(b)


@pytest.mark.parametrize("opts,size", [
    ([], "64M"), ([], "5000000"), ([], "1"), ([], "0"), ([], "1G"), ([], "10G"), ([], "2T"), ([], "64T"),
    (["-o", "block_size=1M"], "5G"), (["-o", "block_size=1M"], "16T"),
    (["-o", "block_size=32M"], "64M"), (["-o", "block_size=1536K"], "10M"),
    (["-o", "block_size=512M"], "10M"), (["-o", "block_size=1"], "10M"),
    (["-o", "log_size=3M"], "64M"), (["-o", "log_size=1536K"], "10M"),
    (["-o", "log_size=8M,block_size=1M"], "64M"),
    (["-o", "subformat=fixed"], "20M"), (["-o", "subformat=fixed,block_size=1M"], "5000000"),
    (["-o", "subformat=fixed,block_state_zero=off"], "20M"),
    (["-o", "block_state_zero=off"], "64M"),
    (["-o", "subformat=dynamic,block_state_zero=on"], "3M"),
])
def test_create_layout_equal_oracle(ours, oracle, tmp_path, opts, size):
    a = ours.img("create", "-f", "vhdx", *opts, "a.vhdx", size)
    b = oracle.img("create", "-f", "vhdx", *opts, "b.vhdx", size)
    assert (a.rc, a.out.replace("a.vhdx", "b.vhdx"), a.err) == (b.rc, b.out, b.err)
    assert masked(tmp_path / "a.vhdx") == masked(tmp_path / "b.vhdx")
    check_clean(oracle, "a.vhdx")


def test_create_creator_and_random_fields(ours, tmp_path):
    for f in ("a.vhdx", "b.vhdx"):
        assert ours.img("create", "-q", "-f", "vhdx", f, "1M").rc == 0
    a, b = (tmp_path / "a.vhdx").read_bytes(), (tmp_path / "b.vhdx").read_bytes()
    assert a[8:0x208].decode("utf-16-le").rstrip("\0") == "QEMU v9.1.0"  # 7.2: "QEMU v7.2.x"
    # both headers: the same GUIDs, sequence numbers N and N + 1 (N 32 random bits)
    assert a[H1 + 0x10:H1 + 0x30] == a[H2 + 0x10:H2 + 0x30] != b[H1 + 0x10:H1 + 0x30]
    s1, s2 = struct.unpack_from("<Q", a, H1 + 8)[0], struct.unpack_from("<Q", a, H2 + 8)[0]
    assert s2 == s1 + 1 and s1 < (1 << 32)


@pytest.mark.parametrize("args", [
    ["-o", "subformat=foo", "p.vhdx", "10M"],
    ["-o", "block_size=3M", "p.vhdx", "10M"],
    ["-o", "block_size=255M", "p.vhdx", "10M"],
    ["-o", "log_size=0", "p.vhdx", "10M"],
    ["-o", "log_size=4G", "p.vhdx", "10M"],
    ["-o", "block_state_zero=maybe", "p.vhdx", "10M"],
    ["p.vhdx", "65T"],
    ["p.vhdx"],
])
def test_create_errors_equal_oracle(ours, oracle, tmp_path, args):
    a = ours.img("create", "-f", "vhdx", *args)
    (tmp_path / "p.vhdx").unlink(missing_ok=True)
    b = oracle.img("create", "-f", "vhdx", *args)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)


def test_create_help(ours, oracle):
    a, b = ours.img("create", "-f", "vhdx", "-o", "help"), oracle.img("create", "-f", "vhdx", "-o", "help")
    assert a.rc == b.rc == 0
    assert a.out.split("\n\n")[0] == b.out.split("\n\n")[0]


# --- writes: the same bytes as qemu-io's (log entries, headers, block placement) -----------

def masked_written(path):
    b = bytearray(masked(path))
    log_off = struct.unpack_from("<Q", b, H1 + 72)[0]
    log_len = struct.unpack_from("<I", b, H1 + 68)[0]
    for k in range(log_off, log_off + log_len, 0x2000):
        # checksum, random log GUID, the unused end of the descriptor sector (qemu: stale heap)
        for s, e in ((k + 4, k + 8), (k + 32, k + 48), (k + 0x60, k + 0x1000)):
            b[s:e] = bytes(e - s)
    return bytes(b)


WRITES = {
    "two-blocks": ["write -P 0x11 4096 4096", "write -P 0x22 9M 4096"],
    "span": ["write -P 3 8000000 1000000", "read -P 3 8000000 1000000", "read -P 0 0 4096"],
    "overwrite": ["write -P 1 0 64k", "write -P 2 512 512", "read -P 2 512 512"],
    "zero": ["write -z 1M 64k", "write -P 4 3M 4k", "write -z 3M 512", "read -P 0 3M 512"],
    "discard": ["write -P 5 0 1M", "discard 0 1M", "read -P 5 0 1M"],
    "many": [f"write -P {i} {i * 2}M 4k" for i in range(1, 40)],  # log wraps (1 MiB blocks)
}


@pytest.mark.parametrize("opts", [[], ["-o", "block_size=1M"], ["-o", "subformat=fixed"],
                                  ["-o", "subformat=fixed,block_state_zero=off"],
                                  ["-o", "block_state_zero=off"]],
                         ids=["dynamic", "1M", "fixed", "fixed-nozero", "nozero"])
@pytest.mark.parametrize("script", WRITES)
def test_writes_equal_oracle(ours, oracle, tmp_path, script, opts):
    assert oracle.img("create", "-q", "-f", "vhdx", *opts, "a.vhdx", "96M").rc == 0
    (tmp_path / "b.vhdx").write_bytes((tmp_path / "a.vhdx").read_bytes())
    args = ["-f", "vhdx"]
    for c in WRITES[script]:
        args += ["-c", c]
    a, b = ours.io(*args, "a.vhdx"), oracle.io(*args, "b.vhdx")
    assert (a.rc, TIMING.sub("X", a.out), a.err) == (b.rc, TIMING.sub("X", b.out), b.err)
    assert masked_written(tmp_path / "a.vhdx") == masked_written(tmp_path / "b.vhdx")
    check_clean(oracle, "a.vhdx")
    assert oracle.img("compare", "a.vhdx", "b.vhdx").rc == 0
    # headers: the same number of updates (sequence numbers), log GUID cleared
    for h in (H1, H2):
        ours_h, theirs = (tmp_path / "a.vhdx").read_bytes(), (tmp_path / "b.vhdx").read_bytes()
        assert ours_h[h + 8:h + 16] == theirs[h + 8:h + 16]
        assert ours_h[h + 48:h + 64] == bytes(16)


def test_write_refused_in_header_section(ours, oracle, tmp_path):
    """A FULLY_PRESENT block below 1 MiB: qemu fails the write (EFAULT), never overwrites."""
    assert oracle.img("create", "-q", "-f", "vhdx", "-o", "block_size=1M", "a.vhdx", "8M").rc == 0
    b = bytearray((tmp_path / "a.vhdx").read_bytes())
    struct.pack_into("<Q", b, BAT + 8, 0x6)  # block 1 at offset 0
    (tmp_path / "a.vhdx").write_bytes(b)
    (tmp_path / "b.vhdx").write_bytes(b)
    a = ours.io("-f", "vhdx", "-c", "write -P 1 1M 4k", "a.vhdx")
    o = oracle.io("-f", "vhdx", "-c", "write -P 1 1M 4k", "b.vhdx")
    assert (a.rc, TIMING.sub("X", a.out), a.err) == (o.rc, TIMING.sub("X", o.out), o.err)


# --- the log ------------------------------------------------------------------------------

def dirty_log_image(oracle, tmp_path, name="d.vhdx", entries=1):
    """A VHDX whose log holds `entries` valid entries not yet applied: qemu-io writes blocks
    (each BAT update goes through the log), then the headers get the last entry's log GUID
    back and the BAT entries return to ZERO (state 2), as if qemu had stopped before replay.
    Field values: log at 1 MiB, entries of 8 KiB (header sector with one data descriptor,
    data sector), sequence numbers 1.. in one session; all entries get the same log GUID and
    tail 0 here so that they form one active chain, and their checksums are recomputed."""
    assert oracle.img("create", "-q", "-f", "vhdx", "-o", "block_size=1M", name, "64M").rc == 0
    cmds = []
    for i in range(entries):
        cmds += ["-c", f"write -P {0x51 + i} {i * 2}M 512"]
    assert oracle.io("-f", "vhdx", *cmds, name).rc == 0
    path = tmp_path / name
    b = bytearray(path.read_bytes())
    guid = bytes(b[LOG + 32:LOG + 48])
    for i in range(entries):
        e = LOG + i * 0x2000
        b[e + 32:e + 48] = guid
        struct.pack_into("<I", b, e + 12, 0)
        b[e + 0x60:e + 0x1000] = bytes(0x1000 - 0x60)
        fix_crc(b, e, 0x2000)
        struct.pack_into("<Q", b, BAT + 8 * i * 2, 2)
    for h in (H1, H2):
        b[h + 48:h + 64] = guid
        fix_crc(b, h, 4096)
    path.write_bytes(b)
    return path


def test_dirty_log_read_only_refused(ours, oracle, tmp_path):
    dirty_log_image(oracle, tmp_path)
    for args in (["info"], ["check"], ["map"], ["convert", "-O", "raw"]):
        extra = ["x.raw"] if args[0] == "convert" else []
        a = ours.img(*args, "d.vhdx", *extra)
        b = oracle.img(*args, "d.vhdx", *extra)
        same(a, b)
        assert a.rc == 1 and "opened read-only, but contains a log that needs to be replayed" in a.err
        assert "qemu-img check -r all 'd.vhdx'" in a.err
    a = ours.io("-r", "-c", "read 0 512", "d.vhdx")
    b = oracle.io("-r", "-c", "read 0 512", "d.vhdx")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)


@pytest.mark.parametrize("entries", [1, 3])
def test_dirty_log_replayed_read_write(ours, oracle, tmp_path, entries):
    src = dirty_log_image(oracle, tmp_path, entries=entries)
    (tmp_path / "o.vhdx").write_bytes(src.read_bytes())
    cmds = []
    for i in range(entries):
        cmds += ["-c", f"read -P {0x51 + i} {i * 2}M 512"]
    a = ours.io(*cmds, "d.vhdx")
    b = oracle.io(*cmds, "o.vhdx")
    assert (a.rc, TIMING.sub("X", a.out), a.err) == (b.rc, TIMING.sub("X", b.out), b.err)
    assert a.rc == 0
    ours_b, theirs = (tmp_path / "d.vhdx").read_bytes(), (tmp_path / "o.vhdx").read_bytes()
    assert masked(tmp_path / "d.vhdx") == masked(tmp_path / "o.vhdx")
    for h in (H1, H2):  # the same number of header updates; the log GUID dropped
        assert ours_b[h + 8:h + 16] == theirs[h + 8:h + 16]
        assert ours_b[h + 48:h + 64] == bytes(16)
    check_clean(oracle, "d.vhdx")


def test_dirty_log_check_repair(ours, oracle, tmp_path):
    dirty_log_image(oracle, tmp_path)
    (tmp_path / "o.vhdx").write_bytes((tmp_path / "d.vhdx").read_bytes())
    a = ours.img("check", "-r", "all", "d.vhdx")
    b = oracle.img("check", "-r", "all", "o.vhdx")
    assert (a.rc, a.out.replace("d.vhdx", "o.vhdx"), a.err) == (b.rc, b.out, b.err)
    assert "1 corruptions" in a.out
    same(ours.img("check", "d.vhdx"), oracle.img("check", "o.vhdx"))


LOG_DAMAGE = {
    "bad-checksum": lambda b: b.__setitem__(LOG + 0x1100, b[LOG + 0x1100] ^ 1),
    "huge-descriptor-count": lambda b: struct.pack_into("<I", b, LOG + 24, 0x7FFFFFFF),
    "huge-entry-length": lambda b: struct.pack_into("<I", b, LOG + 8, 0x7FFFF000),
    "unaligned-entry-length": lambda b: struct.pack_into("<I", b, LOG + 8, 0x2001),
    "bad-data-sequence": lambda b: struct.pack_into("<I", b, LOG + 0x1FFC, 9),
    "bad-descriptor-signature": lambda b: b.__setitem__(LOG + 0x40, 0),
}


@pytest.mark.parametrize("damage", LOG_DAMAGE)
def test_damaged_log_entries(ours, oracle, tmp_path, damage):
    """Entries that are not valid are no log: qemu opens the image unchanged, both ways;
    a bad descriptor in an entry whose header is good fails the open (EINVAL)."""
    path = dirty_log_image(oracle, tmp_path)
    b = bytearray(path.read_bytes())
    LOG_DAMAGE[damage](b)
    path.write_bytes(b)
    (tmp_path / "o.vhdx").write_bytes(b)
    same(ours.img("info", "d.vhdx"), oracle.img("info", "d.vhdx"))
    a = ours.io("-c", "read -P 0 0 512", "d.vhdx")
    o = oracle.io("-c", "read -P 0 0 512", "o.vhdx")
    assert (a.rc, TIMING.sub("X", a.out), a.err.replace("d.vhdx", "o.vhdx")) == \
        (o.rc, TIMING.sub("X", o.out), o.err)
    assert (tmp_path / "d.vhdx").read_bytes() == (tmp_path / "o.vhdx").read_bytes() == bytes(b)


def test_log_version_refused_with_log(ours, oracle, tmp_path):
    path = dirty_log_image(oracle, tmp_path)
    patch(path, [(H1 + 64, "<H", 1), (H2 + 64, "<H", 1)], ("h1", "h2"))
    same(ours.img("info", "d.vhdx"), oracle.img("info", "d.vhdx"))


# --- interop --------------------------------------------------------------------------------

@pytest.mark.parametrize("opts", [[], ["-o", "subformat=fixed"], ["-o", "block_size=1M,log_size=2M"],
                                  ["-o", "block_state_zero=off"]],
                         ids=["dynamic", "fixed", "1M", "nozero"])
def test_convert_both_ways(ours, oracle, tmp_path, opts):
    assert oracle.img("create", "-q", "-f", "raw", "s.raw", "20M").rc == 0
    assert oracle.io("-f", "raw", "-c", "write -P 7 1M 3M", "-c", "write -P 9 17M 100k",
                     "s.raw").rc == 0
    a = ours.img("convert", "-O", "vhdx", *opts, "s.raw", "a.vhdx")
    b = oracle.img("convert", "-O", "vhdx", *opts, "s.raw", "b.vhdx")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    # the same layout: blocks appended in the same order, BAT updates through the log
    assert masked_written(tmp_path / "a.vhdx") == masked_written(tmp_path / "b.vhdx")
    check_clean(oracle, "a.vhdx")
    assert oracle.img("compare", "a.vhdx", "s.raw").rc == 0
    assert ours.img("compare", "b.vhdx", "s.raw").rc == 0
    assert ours.img("convert", "-O", "qcow2", "b.vhdx", "c.qcow2").rc == 0
    assert oracle.img("compare", "c.qcow2", "s.raw").rc == 0
    for tool in (ours, oracle):
        r = tool.img("map", "--output=json", "a.vhdx")
        assert r.rc == 0
    same(ours.img("map", "--output=json", "b.vhdx"), oracle.img("map", "--output=json", "b.vhdx"))
    same(ours.img("info", "b.vhdx"), oracle.img("info", "b.vhdx"))


def test_parallel_writes_into_one_new_block(ours, oracle, tmp_path):
    """Eight aio writes into one block not yet allocated: one home, all data kept (the block
    is pending while its first writer's data moves without the lock)."""
    assert oracle.img("create", "-q", "-f", "vhdx", "-o", "block_size=1M", "a.vhdx", "16M").rc == 0
    (tmp_path / "b.vhdx").write_bytes((tmp_path / "a.vhdx").read_bytes())
    args = []
    for i in range(8):
        args += ["-c", f"aio_write -P {i + 1} {i * 128}k 128k"]
    args += ["-c", "aio_flush"]
    for i in range(8):
        args += ["-c", f"read -P {i + 1} {i * 128}k 128k"]
    a, b = ours.io(*args, "a.vhdx"), oracle.io(*args, "b.vhdx")
    assert a.rc == b.rc == 0
    assert sorted(TIMING.sub("X", a.out).splitlines()) == sorted(TIMING.sub("X", b.out).splitlines())
    check_clean(oracle, "a.vhdx")
    assert oracle.img("compare", "a.vhdx", "b.vhdx").rc == 0
    assert (tmp_path / "a.vhdx").stat().st_size == (tmp_path / "b.vhdx").stat().st_size


# --- a log written from the spec [2.3], as Hyper-V writes it: several entries, descriptors
# of both kinds (qemu itself only ever writes one data descriptor per entry) --------------

def log_entry(seq, guid, descs, tail, file_len):
    """One entry: header + descriptors in the first sector(s), then one data sector per data
    descriptor. descs: ("data", file_offset, 4096 bytes) or ("zero", file_offset, length)."""
    nd = len(descs)
    hdr_sectors = (64 + 32 * nd + 4095) // 4096
    data = [d for d in descs if d[0] == "data"]
    length = 4096 * (hdr_sectors + len(data))
    e = bytearray(length)
    struct.pack_into("<4sIIIQII16sQQ", e, 0, b"loge", 0, length, tail, seq, nd, 0, guid,
                     file_len, file_len)
    k = 0
    for i, d in enumerate(descs):
        o = 64 + 32 * i
        if d[0] == "zero":
            struct.pack_into("<4sIQQQ", e, o, b"zero", 0, d[2], d[1], seq)
        else:
            sector = d[2]
            struct.pack_into("<4s4s8sQQ", e, o, b"desc", sector[4092:], sector[:8], d[1], seq)
            ds = 4096 * (hdr_sectors + k)
            struct.pack_into("<4sI", e, ds, b"data", seq >> 32)
            e[ds + 8:ds + 4092] = sector[8:4092]
            struct.pack_into("<I", e, ds + 4092, seq & 0xFFFFFFFF)
            k += 1
    fix_crc(e, 0, length)
    return bytes(e)


def spec_log_image(oracle, tmp_path):
    """Field values: a 16 MiB image, 1 MiB blocks, log GUID 0x11 * 16, file 9 MiB long.
    Entry 1 (seq 0x100000005, at log offset 0, tail 0): BAT sector with block 0 FULLY_PRESENT
    at 8 MiB, then 0x77 * 4096 for block 0's first 4 KiB. Entry 2 (seq 0x100000006, at 8 KiB):
    0x66 * 4096 at block 0 + 8 KiB and a zero descriptor of 4 KiB over block 0's first 4 KiB
    written just before. Entry 3 (seq 0x100000006 again, at 20 KiB): not in the chain."""
    assert oracle.img("create", "-q", "-f", "vhdx", "-o", "block_size=1M", "s.vhdx", "16M").rc == 0
    path = tmp_path / "s.vhdx"
    b = bytearray(path.read_bytes())
    b += bytes(9 * MiB - len(b))
    guid = b"\x11" * 16
    bat = bytearray(b[BAT:BAT + 4096])
    struct.pack_into("<Q", bat, 0, 8 * MiB | 6)
    e1 = log_entry(0x100000005, guid, [("data", BAT, bytes(bat)), ("data", 8 * MiB, b"\x77" * 4096)],
                   0, 9 * MiB)
    e2 = log_entry(0x100000006, guid, [("data", 8 * MiB + 8192, b"\x66" * 4096),
                                       ("zero", 8 * MiB, 4096)], 0, 9 * MiB)
    e3 = log_entry(0x100000006, guid, [("data", 8 * MiB + 4096, b"\x55" * 4096)], 0, 9 * MiB)
    b[LOG:LOG + len(e1)] = e1
    b[LOG + len(e1):LOG + len(e1) + len(e2)] = e2
    b[LOG + 0x5000:LOG + 0x5000 + len(e3)] = e3
    for h in (H1, H2):
        b[h + 48:h + 64] = guid
        fix_crc(b, h, 4096)
    path.write_bytes(b)
    return path


def test_spec_log_replayed(ours, oracle, tmp_path):
    src = spec_log_image(oracle, tmp_path)
    (tmp_path / "o.vhdx").write_bytes(src.read_bytes())
    same(ours.img("info", "s.vhdx"), oracle.img("info", "s.vhdx"))  # read-only: refused
    cmds = ["-c", "read -P 0 0 4k", "-c", "read -P 0 4k 4k", "-c", "read -P 0x66 8k 4k",
            "-c", "read -P 0 12k 1M"]
    a, b = ours.io(*cmds, "s.vhdx"), oracle.io(*cmds, "o.vhdx")
    assert (a.rc, TIMING.sub("X", a.out), a.err) == (b.rc, TIMING.sub("X", b.out), b.err)
    assert a.rc == 0 and "Pattern verification failed" not in a.out
    assert masked(tmp_path / "s.vhdx") == masked(tmp_path / "o.vhdx")
    check_clean(oracle, "s.vhdx")


def test_log_of_whole_log_entries_bounded(ours, tmp_path, oracle):
    """Hostile: every 4 KiB of a 64 MiB log starts an entry that claims the whole log (with a
    matching GUID, bad checksums): the search is bounded and ends in one error, no hang."""
    assert oracle.img("create", "-q", "-f", "vhdx", "-o", "log_size=64M", "h.vhdx", "8M").rc == 0
    path = tmp_path / "h.vhdx"
    b = bytearray(path.read_bytes())
    guid = b"\x22" * 16
    sector = bytearray(4096)
    struct.pack_into("<4sIIIQII16s", sector, 0, b"loge", 0, 64 * MiB, 0, 1, 0, 0, guid)
    b[LOG:LOG + 64 * MiB] = bytes(sector) * (16 * 1024)
    for h in (H1, H2):
        b[h + 48:h + 64] = guid
        fix_crc(b, h, 4096)
    path.write_bytes(b)
    r = ours.img("info", "h.vhdx", timeout=120)
    assert r.rc == 1 and r.err == "qemu-img: Could not open 'h.vhdx': Could not open 'h.vhdx': " \
        "Invalid argument\n"
