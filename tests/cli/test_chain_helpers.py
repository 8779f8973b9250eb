# SPDX-License-Identifier: MIT
"""Helpers for the backing chain tests (test_chain_*.py); no tests here.

A chain is built the same way in two directories (by one tool), then one
operation is run by qimg in one and by qemu-img (the oracle, 7.2) in the
other, and the results are compared: guest contents (qemu-img compare),
qemu-img check, the backing file name and format stored in each header, and
the allocation map (qemu-img map --output=json without host offsets, which
depend on allocation order).
"""
import re
import struct
import subprocess

from conftest import ORACLE_IMG, ORACLE_IO, strip_child

MiB = 1 << 20
OFFSET = re.compile(r', "offset": \d+')
COMPRESSED = re.compile(r', "compressed": (true|false)')

# The standard chain: base (4 MiB) <- mid (same size) <- top (8 MiB, longer than its backing).
CHAIN_LAYERS = [
    ("base.qcow2", None, "4M",
     ["write -P 1 0 192k", "write -P 2 1M 64k", "write -z 2M 64k", "write -P 7 3M 64k"]),
    ("mid.qcow2", "base.qcow2", None,
     ["write -P 3 64k 64k", "write -c -P 4 3M 64k", "write -z 1M 32k", "write -P 2 1600k 64k"]),
    ("top.qcow2", "mid.qcow2", "8M",
     ["write -P 5 128k 4k", "write -z 1M 64k", "write -P 6 5M 64k", "write -P 0 6M 64k",
      "write -P 8 4032k 128k"]),
]


def sh(argv, cwd, check=True):
    p = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True)
    if check:
        assert p.returncode == 0, (argv, p.stdout, p.stderr)
    return p


def build_chain(tool, d, layers=CHAIN_LAYERS, create_opts=()):
    """Create the layers in d with tool (a conftest Tool), writing with its qemu-io."""
    d.mkdir(parents=True, exist_ok=True)
    for name, backing, size, writes in layers:
        args = ["create", "-q", "-f", "qcow2", *create_opts]
        if backing:
            args += ["-b", backing, "-F", "qcow2"]
        args.append(name)
        if size:
            args.append(size)
        r = tool.img(*args, cwd=d)
        assert r.rc == 0, r
        if writes:
            io_args = ["-f", "qcow2"]
            for w in writes:
                io_args += ["-c", w]
            r = tool.io(*io_args, name, cwd=d)
            assert r.rc == 0 and "error" not in r.out.lower(), r


def oracle_map(path):
    """Allocation map by the oracle, without host offsets."""
    p = sh([ORACLE_IMG, "map", "-U", "--output=json", path], cwd=None)
    return OFFSET.sub("", p.stdout)


def oracle_check_clean(path):
    p = sh([ORACLE_IMG, "check", "-U", path], cwd=None, check=False)
    assert p.returncode == 0, (path, p.stdout, p.stderr)
    assert "No errors were found on the image." in p.stdout, p.stdout


def oracle_identical(a, b):
    p = sh([ORACLE_IMG, "compare", "-U", a, b], cwd=None, check=False)
    assert p.returncode == 0 and p.stdout == "Images are identical.\n", (a, b, p)


def header_backing(path):
    """(backing file name, backing format) as stored in a qcow2 header, None when absent."""
    with open(path, "rb") as f:
        head = f.read(104)
        version = struct.unpack(">I", head[4:8])[0]
        boff, bsize = struct.unpack(">QI", head[8:20])
        cs = 1 << struct.unpack(">I", head[20:24])[0]
        f.seek(0)
        c0 = f.read(cs)
    hlen = 72 if version == 2 else struct.unpack(">I", c0[100:104])[0]
    name = c0[boff:boff + bsize].decode() if boff else None
    fmt = None
    off = hlen
    end = boff if boff else cs
    while off + 8 <= end:
        etype, elen = struct.unpack(">II", c0[off:off + 8])
        if etype == 0:
            break
        if etype == 0xE2792ACA:
            fmt = c0[off + 8:off + 8 + elen].decode()
        off += 8 + (elen + 7) // 8 * 8
    return name, fmt


def assert_same_images(da, db, names, maps=True):
    """Images of the same names in da (oracle's) and db (ours) are equivalent."""
    for n in names:
        a, b = da / n, db / n
        oracle_identical(a, b)
        oracle_check_clean(b)
        assert header_backing(a) == header_backing(b), n
        if maps:
            assert oracle_map(a) == oracle_map(b), n


def oracle_io(*args, cwd=None):
    return sh([ORACLE_IO, *args], cwd=cwd)


def strip_children(text):
    """qemu-img 9.1 human info: drop the "Child node '/file':" sections (7.2 has none)."""
    return strip_child(text)


def strip_json_children(obj):
    if isinstance(obj, list):
        return [strip_json_children(o) for o in obj]
    if isinstance(obj, dict):
        return {k: strip_json_children(v) for k, v in obj.items() if k != "children"}
    return obj
