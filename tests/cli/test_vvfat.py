# SPDX-License-Identifier: MIT
"""vvfat (fat:[floppy:][rw:][12|16|32:]DIR): a host directory as a FAT disk, read-only.

Differential against the oracle (Debian's qemu-img 7.2, whose vvfat lays the
disk out as 9.1 does): converted images are byte-identical, including the
slack past each file's end (QEMU shows what its cluster buffer last held),
and fsck.fat/mtools see the host's files in them.

Timestamps come from stat() in local time: both tools run with TZ=UTC, the
files get fixed modification times and an access time of now (so reading
them does not move the access date, which is all FAT keeps of it).

Differences named here:
- 9.1 adds the "Child node" section to info and "children" to info JSON,
  and "compressed" to map JSON; 7.2 has neither (stripped before comparing).
- rw: QEMU writes guest changes back to the directory through a temporary
  qcow image; qimg refuses a writable rw open ("vvfat's rw mode (writing back
  to the directory) is not supported"), so nothing on the host is ever changed.
  Read-only opens of fat:rw: give QEMU's "Unable to set VVFAT to 'rw' when
  drive is read-only", as QEMU does.
- Short names: QEMU searches for a free "~N" tail by rescanning the directory
  for every candidate (5000 colliding names take it about a minute); qimg
  gives the same names in linear time.
- fsck.fat is clean on the 504 MB FAT16, 32 MB FAT12 and floppy FAT12 disks.
  QEMU's FAT32 disk (a FAT16 boot sector over a 32-bit FAT) and its FAT16
  floppy are not clean for fsck.fat; qimg's are byte-identical to them, and
  fsck.fat says the same of both.

No fuzz harness: vvfat reads a host directory, not an image file, so there
is no untrusted byte stream to fuzz; its hostile inputs (huge or unreadable
files, odd names, deep, looping or crowded trees) are tested here.
"""
import json
import os
import random
import re
import shutil
import struct
import subprocess
import time

import pytest

from conftest import ORACLE_IMG, as_nobody

PART = 63 * 512  # the FAT partition of a hard disk image starts at sector 63
FIXED_MTIME = 1262304000 + 86400 * 40 + 3723  # 2010-02-10 01:02:03 UTC
FILE_SIZES = {"one": 1, "sector.bin": 512, "cluster-1": 8191, "cluster": 8192,
              "cluster+1": 8193, "big.dat": 100000}
LONG_NAMES = ["A Long File Name.txt", "abcdefghijklm", "abcdefghijklmn", ".hidden",
              "a.b.c", "longname1.txt", "longname2.txt", "\u00e9t\u00e9.txt", "a+b",
              "x.abcd", "..dots", "MiXeD.Tx", "ABC.TXT"]


def env_utc():
    env = dict(os.environ)
    env["TZ"] = "UTC"
    return env


def settle_times(root):
    """Fixed mtimes, atime now: FAT dates that no read moves."""
    now = time.time()
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (now, FIXED_MTIME))
    os.utime(root, (now, FIXED_MTIME))


def make_tree(root):
    rng = random.Random(18)
    root.mkdir()
    (root / "empty").write_bytes(b"")
    for name, size in FILE_SIZES.items():
        (root / name).write_bytes(bytes(rng.getrandbits(8) for _ in range(size)))
    for name in LONG_NAMES:
        (root / name).write_bytes(name.encode() * 3)
    sub = root / "sub dir"
    (sub / "deeper" / "deepest").mkdir(parents=True)
    (sub / "empty dir").mkdir()
    (sub / "notes.txt").write_bytes(b"in a subdirectory\n")
    (sub / "deeper" / "f").write_bytes(b"y\n")
    (sub / "deeper" / "deepest" / "tail").write_bytes(bytes(rng.getrandbits(8)
                                                           for _ in range(20000)))
    many = root / "many"
    many.mkdir()
    for i in range(300):  # a subdirectory spanning several clusters
        (many / f"file number {i}").write_bytes(str(i).encode())
    settle_times(root)
    return root


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "d")


def host_files(root):
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


def same_file(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        off = 0
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                i = next(k for k in range(min(len(x), len(y))) if x[k] != y[k]) \
                    if x and y else 0
                return f"first difference at {off + i:#x}"
            if not x:
                return None
            off += len(x)


def convert_both(ours, oracle, spec, tmp_path):
    a, b = tmp_path / "ours.raw", tmp_path / "oracle.raw"
    ra = ours.img("convert", "-O", "raw", spec, a, env=env_utc())
    rb = oracle.img("convert", "-O", "raw", spec, b, env=env_utc())
    assert ra.rc == rb.rc == 0, (ra, rb)
    assert ra.err == rb.err
    return a, b


SPECS = ["fat:d", "fat:16:d", "fat:12:d", "fat:32:d", "fat:floppy:d", "fat:floppy:12:d",
         "fat:floppy:16:d"]


@pytest.mark.parametrize("spec", SPECS)
def test_convert_identical_to_qemu(ours, oracle, tmp_path, spec):
    make_tree(tmp_path / "d")
    if "floppy:12" in spec:  # 1.44 MB: keep it small enough
        shutil.rmtree(tmp_path / "d" / "many")
        os.remove(tmp_path / "d" / "big.dat")
        settle_times(tmp_path / "d")
    a, b = convert_both(ours, oracle, spec, tmp_path)
    assert os.path.getsize(a) == os.path.getsize(b)
    assert same_file(a, b) is None


def test_odd_names_identical_to_qemu(ours, oracle, tmp_path):
    """Not UTF-8 (QEMU warns, no long name), outside the BMP, 200 characters long."""
    d = tmp_path / "d"
    d.mkdir()
    for i, name in enumerate([b"\xffname.txt", b"over\xe0\x80\xafong", "emoji\U0001F600.txt".encode(),
                              b"x" * 200 + b".txt", b"caf\xc3\xa9", b"ok"]):
        with open(os.path.join(bytes(d), name), "wb") as f:
            f.write(b"%d" % i)
    settle_times(d)
    results = []
    for tool, out in ((ours, "ours.raw"), (oracle, "oracle.raw")):
        r = subprocess.run([str(tool.img_path), "convert", "fat:d", out], cwd=tmp_path,
                           capture_output=True, env=env_utc())  # the message is not UTF-8
        assert r.returncode == 0, r.stderr
        results.append(r.stderr)
    assert results[0] == results[1]
    assert results[0].count(b"vvfat: invalid UTF-8 name: ") == 2
    assert same_file(tmp_path / "ours.raw", tmp_path / "oracle.raw") is None


def test_image_identical_by_qemu_compare(ours, oracle, tree, tmp_path):
    """qemu-img compare reads the fat: disk itself against the other tool's image."""
    _, b = convert_both(ours, oracle, "fat:d", tmp_path)
    r = ours.img("compare", "fat:d", b, env=env_utc())
    assert (r.rc, r.out) == (0, "Images are identical.\n")


def partition(img, tmp_path, floppy=False):
    data = open(img, "rb").read()
    p = tmp_path / "part.img"
    p.write_bytes(data if floppy else data[PART:])
    return p


def mtools(*args):
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1", TZ="UTC")
    return subprocess.run(args, capture_output=True, env=env)


@pytest.mark.parametrize("spec,floppy", [("fat:d", False), ("fat:12:d", False),
                                         ("fat:floppy:d", True)])
def test_fsck_and_mtools_see_the_files(ours, tree, tmp_path, spec, floppy):
    if not shutil.which("fsck.fat") or not shutil.which("mcopy"):
        pytest.skip("dosfstools/mtools not installed")
    img = tmp_path / "ours.raw"
    assert ours.img("convert", "-O", "raw", spec, img, env=env_utc()).rc == 0
    part = partition(img, tmp_path, floppy)
    r = subprocess.run(["fsck.fat", "-n", part], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "files" in r.stdout
    out = tmp_path / "copied"
    out.mkdir()
    r = mtools("mcopy", "-s", "-n", "-i", str(part), "::*", str(out))
    assert r.returncode == 0, r.stderr
    assert host_files(out) == host_files(tree)
    listing = mtools("mdir", "-i", str(part), "::").stdout.decode()
    assert "QEMU VVFAT" in listing and "2010-02-10" in listing


def strip_child(text):
    return text.split("Child node")[0]


INFO_SPECS = ["fat:d", "fat:floppy:d", "fat:12:d",
              'json:{"driver": "vvfat", "dir": "d", "label": "MYLABEL"}',
              'json:{"driver": "raw", "file": {"driver": "vvfat", "dir": "d", "floppy": true}}']


@pytest.mark.parametrize("spec", INFO_SPECS)
def test_info_like_oracle(ours, oracle, tree, spec):
    a, b = ours.img("info", spec), oracle.img("info", spec)
    assert a.rc == b.rc == 0, (a, b)
    assert strip_child(a.out) == b.out
    assert a.err == b.err
    # 9.1 (by hand): the child is the vvfat node, "protocol type: vvfat", no disk size
    if spec.startswith("fat:"):
        assert "protocol type: vvfat" in a.out and "disk size: unavailable" in a.out
    ja = json.loads(ours.img("info", "--output=json", spec).out)
    jb = json.loads(oracle.img("info", "--output=json", spec).out)
    ja.pop("children", None)
    assert ja == jb


def test_tree_too_big_for_small_floppy(ours, oracle, tree):
    a, b = ours.img("info", "fat:floppy:12:d"), oracle.img("info", "fat:floppy:12:d")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert "Directory does not fit in FAT12 (capacity 1.44 MB)" in a.err


def test_info_fat_type_and_format_vvfat(ours, oracle, tree):
    for spec in ("fat:32:d", "fat:floppy:16:d"):
        a, b = ours.img("info", spec), oracle.img("info", spec)
        assert (a.rc, strip_child(a.out), a.err) == (b.rc, b.out, b.err)
    a = ours.img("info", "-f", "vvfat", "--output=json", "fat:d")
    b = oracle.img("info", "-f", "vvfat", "--output=json", "fat:d")
    ja = json.loads(a.out)
    ja.pop("children", None)
    assert ja == json.loads(b.out)
    assert ja["format"] == "vvfat" and ja["virtual-size"] == 528482304


def test_label_in_boot_sector_and_root(ours, oracle, tree, tmp_path):
    spec = 'json:{"driver": "vvfat", "dir": "d", "label": "lab"}'
    a, b = convert_both(ours, oracle, spec, tmp_path)
    data = open(a, "rb").read(PART + 512)
    assert data[PART + 43:PART + 54] == b"lab        "
    assert same_file(a, b) is None


def test_map_like_oracle(ours, oracle, tree):
    for spec in ("fat:d", "fat:floppy:d"):
        a, b = ours.img("map", spec), oracle.img("map", spec)
        assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
        assert a.rc == 1 and "external, encrypted or compressed" in a.err
        ja = json.loads(ours.img("map", "--output=json", spec).out)
        jb = json.loads(oracle.img("map", "--output=json", spec).out)
        for e in ja:
            e.pop("compressed")  # 9.1 only
        assert ja == jb


def test_read_only_open_refused_like_oracle(ours, oracle, tree):
    """qemu-io opens read-write: vvfat without rw refuses; read-only opens read."""
    for spec in ("fat:d", "fat:nonexistent"):
        a, b = ours.io("-c", "read 0 512", spec), oracle.io("-c", "read 0 512", spec)
        assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
        assert "Image is read-only" in a.err
    a = ours.io("-r", "-c", "read -P 0xeb 32256 1", "-c", "read -P 0x55 32766 1", "fat:d")
    b = oracle.io("-r", "-c", "read -P 0xeb 32256 1", "-c", "read -P 0x55 32766 1", "fat:d")
    assert a.rc == b.rc == 0
    assert a.out.count("read 1/1 bytes") == 2 and "Pattern verification failed" not in a.out


@pytest.fixture
def bad_dirs(tmp_path):
    (tmp_path / "huge").mkdir()
    with open(tmp_path / "huge" / "f", "wb") as f:
        f.truncate(3 << 30)  # sparse: over QEMU's 2 GB file limit
    (tmp_path / "toobig").mkdir()
    with open(tmp_path / "toobig" / "f", "wb") as f:
        f.truncate(600 << 20)  # sparse: more than FAT16's 504 MB disk
    (tmp_path / "crowded").mkdir()
    for i in range(256):  # 256 files of 2 entries each overflow the 512-entry root
        (tmp_path / "crowded" / f"file{i}").write_bytes(b"")
    (tmp_path / "full").mkdir()
    for i in range(255):
        (tmp_path / "full" / f"file{i}").write_bytes(b"")
    (tmp_path / "edge").mkdir()
    with open(tmp_path / "edge" / "f", "wb") as f:
        f.truncate((64472 - 2) * 8192)  # exactly the clusters FAT16 has
    (tmp_path / "plainfile").write_bytes(b"x")
    return tmp_path


BAD_SPECS = [
    "fat:nonexistent", "fat:plainfile", "fat:", "fat:huge", "fat:toobig", "fat:12:toobig",
    "fat:32:toobig", "fat:crowded", "fat:floppy:crowded", "fat:rw:full", "fat:floppy:rw:full",
    'json:{"driver": "vvfat", "dir": "full", "fat-type": 17}',
    'json:{"driver": "vvfat", "dir": "full", "label": "waytoolonglabel"}',
    'json:{"driver": "vvfat"}',
    'json:{"driver": "vvfat", "dir": "full", "rw": true}',
]


@pytest.mark.parametrize("spec", BAD_SPECS)
def test_bad_input_like_oracle(ours, oracle, bad_dirs, spec):
    a, b = ours.img("info", spec), oracle.img("info", spec)
    assert a.rc == b.rc == 1, (a, b)
    assert (a.out, a.err) == (b.out, b.err)


@pytest.mark.parametrize("spec", ["fat:full", "fat:edge"])
def test_limits_still_open_like_oracle(ours, oracle, bad_dirs, spec):
    a, b = ours.img("info", spec), oracle.img("info", spec)
    assert a.rc == b.rc == 0
    assert strip_child(a.out) == b.out


def test_plain_path_with_format_vvfat(ours, oracle, tree):
    a, b = ours.img("info", "-f", "vvfat", "d"), oracle.img("info", "-f", "vvfat", "d")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert "File name string must start with 'fat:'" in a.err


def test_writable_rw_refused(ours, tree):
    r = ours.io("-c", "read 0 512", "fat:rw:d")
    assert r.rc == 1 and "rw mode" in r.err


def hexdump_bytes(text):
    """The bytes of qemu-io's `read -v` lines (the hex columns only)."""
    out = bytearray()
    for line in text.splitlines():
        m = re.match(r"[0-9a-f]{8}:  ((?:[0-9a-f]{2} )+)", line)
        if m:
            out += bytes.fromhex(m.group(1))
    return bytes(out)


def test_qemu_io_reads_any_range(ours, oracle, tree, tmp_path):
    """Unaligned reads across MBR, boot sector, FATs, root, directories, files and slack
    give the bytes of QEMU's converted image (reads in any order: the slack is computed)."""
    _, b = convert_both(ours, oracle, "fat:d", tmp_path)
    ref = open(b, "rb").read(4 << 20)
    rng = random.Random(7)
    ranges = [(0x1b0, 0x60), (PART - 3, 9), (PART + 511, 2), (0x47000 - 5, 40),
              (0x4b000 - 100, 300)]
    ranges += [(rng.randrange(0x40000, 0x3f0000), rng.randrange(1, 20000)) for _ in range(12)]
    for off, length in reversed(ranges):
        r = ours.io("-r", "-c", f"read -v {off} {length}", "fat:d", env=env_utc())
        assert r.rc == 0, r
        assert hexdump_bytes(r.out) == ref[off:off + length], (off, length)


def test_subdirectory_overflowing_the_disk_like_oracle(ours, oracle, tmp_path):
    """23000 names need more directory clusters than a 1.44 MB floppy has (qimg stops
    reading there; QEMU reads on, then says the same)."""
    sub = tmp_path / "d" / "s"
    sub.mkdir(parents=True)
    for i in range(23000):
        (sub / f"f{i}").write_bytes(b"")
    a, b = ours.img("info", "fat:floppy:12:d"), oracle.img("info", "fat:floppy:12:d")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert "Directory does not fit in FAT12 (capacity 1.44 MB)" in a.err


def test_writable_rw_refused_as_convert_target(ours, tree, tmp_path):
    """convert -n into fat:rw: would write into the host directory: refused, nothing changed."""
    src = tmp_path / "src.raw"
    src.write_bytes(b"\xaa" * (1 << 20))
    before = host_files(tree)
    r = ours.img("convert", "-n", "-O", "raw", src, "fat:rw:d")
    assert r.rc == 1
    assert r.err == ("qemu-img: Could not open 'fat:rw:d': vvfat's rw mode (writing back to "
                     "the directory) is not supported\n")
    assert host_files(tree) == before


@pytest.mark.parametrize("spec,floppy", [("fat:32:d", False), ("fat:floppy:16:d", True)])
def test_fsck_says_of_ours_what_it_says_of_qemus(ours, oracle, tree, tmp_path, spec, floppy):
    """QEMU's FAT32 and FAT16 floppy disks are not fsck.fat clean; ours are the same bytes."""
    if not shutil.which("fsck.fat"):
        pytest.skip("dosfstools not installed")
    a, b = convert_both(ours, oracle, spec, tmp_path)
    assert same_file(a, b) is None
    reports = []
    for img in (a, b):
        part = partition(img, tmp_path, floppy)
        r = subprocess.run(["fsck.fat", "-n", part], capture_output=True, text=True)
        reports.append((r.returncode, r.stdout.replace(str(part), "IMG")))
    assert reports[0] == reports[1]


def test_colliding_short_names_like_oracle(ours, oracle, tmp_path):
    """1200 names that all shorten to ALONGN: "~N" tails up to ALO~1200, as QEMU gives them."""
    sub = tmp_path / "d" / "s"
    sub.mkdir(parents=True)
    for i in range(1200):
        (sub / f"a long name number {i}").write_bytes(b"%d" % i if i % 7 == 0 else b"")
    (sub / "ALONGN").write_bytes(b"")  # takes the base itself
    settle_times(tmp_path / "d")
    a, b = convert_both(ours, oracle, "fat:d", tmp_path)
    assert same_file(a, b) is None


def fat16_directory(data, first_cluster):
    """The 32-byte entries of the FAT16 directory chain starting at first_cluster."""
    boot = data[PART:PART + 512]
    spc, reserved, nfats, root_entries, spf = (boot[13], struct.unpack_from("<H", boot, 14)[0],
                                               boot[16], struct.unpack_from("<H", boot, 17)[0],
                                               struct.unpack_from("<H", boot, 22)[0])
    fat = PART + reserved * 512
    clusters = PART + (reserved + nfats * spf) * 512 + root_entries * 32
    out, c = b"", first_cluster
    while 2 <= c < 0xfff8:
        at = clusters + (c - 2) * spc * 512
        out += data[at:at + spc * 512]
        c = struct.unpack_from("<H", data, fat + 2 * c)[0]
    return [out[i:i + 32] for i in range(0, len(out), 32)]


def test_many_colliding_short_names_fast_and_unique(ours, tmp_path):
    """60000 colliding names (QEMU would take hours): linear time, every short name unique."""
    sub = tmp_path / "d" / "s"
    sub.mkdir(parents=True)
    for i in range(60000):
        (sub / f"a long name number {i}").write_bytes(b"")
    img = tmp_path / "ours.raw"
    start = time.monotonic()
    r = ours.img("convert", "-O", "raw", "fat:d", img, timeout=60)
    assert r.rc == 0, r
    assert time.monotonic() - start < 30
    data = open(img, "rb").read(64 << 20)
    boot = data[PART:PART + 512]
    root_at = PART + (1 + 2 * struct.unpack_from("<H", boot, 22)[0]) * 512
    s_entry = next(data[root_at + i:root_at + i + 32] for i in range(0, 512 * 32, 32)
                   if data[root_at + i:root_at + i + 11] == b"S          ")
    entries = fat16_directory(data, struct.unpack_from("<H", s_entry, 26)[0])
    names = [e[:11] for e in entries if e[0] not in (0, 0xe5) and e[11] != 0x0f]
    assert len(names) == 60002  # ".", ".." and the files
    assert len(set(names)) == len(names)
    assert b"AL~60000   " in names


def test_symlink_loops_like_oracle(ours, oracle, tmp_path):
    """A link to its own directory: both follow it until the kernel says ELOOP.
    (d/self/.. is d's parent, whose times go into the disk: not the output's directory.)"""
    d = tmp_path / "w" / "d"
    d.mkdir(parents=True)
    (d / "f").write_bytes(b"data\n")
    os.symlink(".", d / "self")
    settle_times(tmp_path / "w")
    os.symlink("nowhere", d / "dangling")  # stat fails: left out, as QEMU does
    os.utime(d, (time.time(), FIXED_MTIME))
    a, b = convert_both(ours, oracle, "fat:w/d", tmp_path)
    assert same_file(a, b) is None
    assert os.path.getsize(a) == 528482304


def test_unreadable_files_read_as_zeroes_like_oracle(nobody_dir):
    """Files nobody may open: QEMU lists them and shows zeroes (no error); later files'
    slack is unaffected by them. An unreadable subdirectory fails the open."""
    d = nobody_dir / "d"
    d.mkdir()
    rng = random.Random(5)
    sizes = [10000, 100, 50, 9000, 20000, 10, 8192, 3, 16385, 700]
    for i, size in enumerate(sizes):
        p = d / f"file{i}"
        p.write_bytes(bytes(rng.getrandbits(8) for _ in range(size)))
        if i % 3 == 1:
            os.chmod(p, 0)
    settle_times(d)
    results = []
    for tool in (nobody_dir / "ours" / "qemu-img", ORACLE_IMG):
        out = nobody_dir / "work" / "disk.raw"
        r = as_nobody(tool, ["convert", "fat:d", out], nobody_dir, env=env_utc())
        assert (r.rc, r.err) == (0, "")
        results.append(out.read_bytes())
        out.unlink()
    assert results[0] == results[1]
    contents = {i: (d / f"file{i}") for i in range(len(sizes))}
    for i, p in contents.items():
        os.chmod(p, 0o644)
        data = p.read_bytes()
        assert (data[:64] in results[0]) == (i % 3 != 1), i
    (d / "sub").mkdir(mode=0o700)
    errs = []
    for tool in (nobody_dir / "ours" / "qemu-img", ORACLE_IMG):
        r = as_nobody(tool, ["info", "fat:d"], nobody_dir)
        errs.append((r.rc, r.out, r.err))
    assert errs[0] == errs[1]
    assert errs[0][0] == 1 and "Could not read directory d/sub" in errs[0][2]


def test_paths_past_path_max_like_oracle(ours, oracle, tmp_path):
    """A tree deeper than PATH_MAX: the directory whose own path still fits but whose "."
    does not gets "." and ".." holding only their names, as QEMU leaves them; what lies
    below is left out. No error."""
    now = time.time()
    fds = [os.open(tmp_path, os.O_RDONLY)]
    names = ["d"]
    os.mkdir("d", dir_fd=fds[0])
    fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[0]))
    path_len = len("d")
    try:
        while path_len < 4094:  # "d/xxx.../xxx" of exactly 4094 bytes: "/." makes 4096
            name = "x" * min(99, 4094 - path_len - 1)
            os.mkdir(name, dir_fd=fds[-1])
            fds.append(os.open(name, os.O_RDONLY, dir_fd=fds[-1]))
            names.append(name)
            f = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fds[-1])
            os.write(f, b"level %d\n" % (len(names) - 1))
            os.close(f)
            os.utime("f", (now, FIXED_MTIME), dir_fd=fds[-1])
            path_len += 1 + len(name)
        for k in range(len(names) - 1, -1, -1):  # directories once their contents are made
            os.utime(names[k], (now, FIXED_MTIME), dir_fd=fds[k])
    finally:
        for fd in fds:
            os.close(fd)
    deepest = len(names) - 1
    a, b = convert_both(ours, oracle, "fat:d", tmp_path)
    assert same_file(a, b) is None
    data = open(a, "rb").read()
    assert b"level %d\n" % (deepest - 1) in data and b"level %d\n" % deepest not in data
