# SPDX-License-Identifier: MIT
"""qemu-img resize on raw images: messages, exit codes, file size and allocation, against the
oracle (7.2), each tool working on its own identical copy."""
import os

import pytest

from conftest import allocated_bytes, write_pattern

MiB = 1 << 20

WARNING = (
    "WARNING: Image format was not specified for 'r.raw' and probing guessed raw.\n"
    "         Automatically detecting the format is dangerous for raw images, write operations "
    "on block 0 will be restricted.\n"
    "         Specify the 'raw' format explicitly to remove the restrictions.\n")
SHRINK_REFUSED = (
    "qemu-img: Use the --shrink option to perform a shrink operation.\n"
    "qemu-img: warning: Shrinking an image will delete all data beyond the shrunken image's end. "
    "Before performing such an operation, make sure there is no important data there.\n")


def both(ours, oracle, tmp_path, init, *args, data=None):
    """Run resize on two identical copies of r.raw (init bytes); return results and the dirs."""
    dirs = []
    for name in ("ours", "oracle"):
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        p = d / "r.raw"
        if p.exists():
            p.unlink()
        write_pattern(p, data or {}, size=init)
        dirs.append(d)
    a = ours.img("resize", *args, cwd=dirs[0])
    b = oracle.img("resize", *args, cwd=dirs[1])
    return a, b, dirs[0] / "r.raw", dirs[1] / "r.raw"


def same(ours, oracle, tmp_path, init, *args, data=None):
    a, b, pa, pb = both(ours, oracle, tmp_path, init, *args, data=data)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err), (args, a, b)
    assert os.path.getsize(pa) == os.path.getsize(pb)
    return a, pa, pb


@pytest.mark.parametrize("init,args", [
    (MiB, ["r.raw", "+1M"]),                        # probed raw: the warning, then resized
    (MiB, ["r.raw", "1M"]),
    (MiB, ["-f", "raw", "r.raw", "3M"]),
    (MiB, ["-f", "raw", "r.raw", "+1000"]),
    (MiB, ["-f", "raw", "r.raw", "+0"]),
    (MiB, ["-f", "raw", "r.raw", "--", "-0"]),
    (MiB, ["-f", "raw", "r.raw", "++1"]),
    (MiB, ["-f", "raw", "r.raw", "0x200000"]),
    (MiB, ["-f", "raw", "r.raw", "2m"]),
    (MiB, ["-f", "raw", "r.raw", "1.5M"]),
    (MiB, ["-q", "-f", "raw", "r.raw", "2M"]),
    (MiB, ["-q", "r.raw", "2M"]),                   # -q keeps the probing warning
    (MiB, ["--object", "secret,id=s0,data=x", "-f", "raw", "r.raw", "2M"]),
    (MiB, ["--image-opts", "driver=raw,file.filename=r.raw", "4M"]),
    (MiB, ["-f", "file", "r.raw", "5M"]),
    (3 * MiB, ["-f", "raw", "--shrink", "r.raw", "-1M"]),
    (3 * MiB, ["-f", "raw", "--shrink", "r.raw", "1024"]),
    (3 * MiB, ["--shrink", "r.raw", "1M"]),
    (3 * MiB, ["-f", "raw", "--shrink", "r.raw", "1.5k"]),
    (3 * MiB, ["-f", "raw", "--shrink", "--preallocation=off", "r.raw", "1M"]),
])
def test_resize_matches_oracle(ours, oracle, tmp_path, init, args):
    r, _, _ = same(ours, oracle, tmp_path, init, *args)
    assert r.rc == 0


@pytest.mark.parametrize("init,args", [
    (MiB, []),
    (MiB, ["r.raw"]),
    (MiB, ["-f", "raw", "r.raw"]),
    (MiB, ["-f", "raw", "r.raw", "1M", "x"]),
    (MiB, ["--bogus", "r.raw", "2M"]),
    (MiB, ["-U", "-f", "raw", "r.raw", "2M"]),
    (MiB, ["nosuch", "1M"]),
    (MiB, ["-f", "nosuch", "r.raw", "1M"]),
    # shrinking needs --shrink
    (3 * MiB, ["-f", "raw", "r.raw", "1M"]),
    (3 * MiB, ["-f", "raw", "r.raw", "-1M"]),
    (3 * MiB, ["r.raw", "1M"]),
    (3 * MiB, ["-f", "raw", "r.raw", "1.5k"]),
    (3 * MiB, ["-f", "raw", "r.raw", "100b"]),
    # bad sizes, in the option parser's words
    (MiB, ["-f", "raw", "r.raw", "abc"]),
    (MiB, ["-f", "raw", "r.raw", "1Q"]),
    (MiB, ["-f", "raw", "r.raw", "+abc"]),
    (MiB, ["-f", "raw", "r.raw", "+-1"]),
    (MiB, ["-f", "raw", "r.raw", "--", "--1"]),
    (MiB, ["-f", "raw", "r.raw", "3MiB"]),
    (MiB, ["-f", "raw", "r.raw", "1e3"]),
    (MiB, ["-f", "raw", "r.raw", "99999999E"]),
    (MiB, ["-f", "raw", "r.raw", "18446744073709551616"]),
    (MiB, ["-f", "raw", "r.raw", "+16E"]),
    (MiB, ["nosuch", "abc"]),                       # the size is checked before opening
    # sizes that end up <= 0 or too large
    (MiB, ["-f", "raw", "r.raw", "0"]),
    (MiB, ["-f", "raw", "--shrink", "r.raw", "0"]),
    (2 * MiB, ["-f", "raw", "r.raw", "--", "-1G"]),
    (2 * MiB, ["-f", "raw", "--shrink", "r.raw", "--", "-2M"]),
    (MiB, ["-f", "raw", "r.raw", "9223372036854775808"]),
    (MiB, ["-f", "raw", "r.raw", "18446744073709551615"]),
    (MiB, ["-f", "raw", "r.raw", "+9223372036854775807"]),
    (MiB, ["-f", "raw", "r.raw", "+8E"]),
    (MiB, ["-f", "raw", "r.raw", "8E"]),
    (MiB, ["-f", "raw", "r.raw", "9223372036854775807"]),
    (MiB, ["-f", "raw", "r.raw", "7E"]),            # the file system refuses
    (MiB, ["nosuch", "--", "-1G"]),
    (MiB, ["nosuch", "0"]),
    # preallocation
    (MiB, ["-f", "raw", "--preallocation=bogus", "r.raw", "4M"]),
    (MiB, ["-f", "raw", "--preallocation=bogus", "nosuch", "1M"]),
    (MiB, ["-f", "raw", "--preallocation=metadata", "r.raw", "4M"]),
    (MiB, ["-f", "raw", "--preallocation=falloc", "r.raw", "+0"]),
    (MiB, ["-f", "raw", "--preallocation=full", "r.raw", "0"]),
    (4 * MiB, ["-f", "raw", "--preallocation=full", "r.raw", "1M"]),
    (4 * MiB, ["-f", "raw", "--shrink", "--preallocation=falloc", "r.raw", "1M"]),
    (4 * MiB, ["-f", "raw", "--shrink", "--preallocation=metadata", "r.raw", "1M"]),
    # fixed-size raw and option conflicts
    (MiB, ["--image-opts", "driver=raw,file.filename=r.raw,size=512", "4M"]),
    (MiB, ["--image-opts", "driver=raw,file.filename=r.raw,size=1048576", "+0"]),
    (6 * MiB, ["--image-opts", "driver=raw,file.filename=r.raw,offset=512", "4M"]),
    (MiB, ["-f", "raw", "--image-opts", "driver=raw,file.filename=r.raw", "2M"]),
    (MiB, ["--image-opts", "driver=raw,file.filename=r.raw,foo=1", "2M"]),
])
def test_resize_errors_match_oracle(ours, oracle, tmp_path, init, args):
    r, pa, _ = same(ours, oracle, tmp_path, init, *args)
    assert r.rc == 1
    if pa.exists():
        assert os.path.getsize(pa) == init


def test_resize_sample_messages(ours, tmp_path):
    # samples-qemu-img-9.1.md, "resize r.raw +1M" / "resize r.raw 1M" / "--shrink"
    write_pattern(tmp_path / "r.raw", {}, size=100 * MiB)
    r = ours.img("resize", "r.raw", "+1M")
    assert (r.rc, r.out, r.err) == (0, "Image resized.\n", WARNING)
    assert os.path.getsize(tmp_path / "r.raw") == 101 * MiB
    r = ours.img("resize", "r.raw", "1M")
    assert (r.rc, r.out, r.err) == (1, "", WARNING + SHRINK_REFUSED)
    r = ours.img("resize", "--shrink", "r.raw", "1M")
    assert (r.rc, r.out, r.err) == (0, "Image resized.\n", WARNING)
    assert os.path.getsize(tmp_path / "r.raw") == MiB


@pytest.mark.parametrize("mode", ["off", "falloc", "full"])
def test_resize_preallocation_allocates(ours, oracle, tmp_path, mode):
    r, pa, pb = same(ours, oracle, tmp_path, MiB, "-f", "raw", f"--preallocation={mode}",
                     "r.raw", "5M", data={0: b"\x01" * 4096})
    assert (r.rc, r.out) == (0, "Image resized.\n")
    assert os.path.getsize(pa) == 5 * MiB
    if mode == "off":
        assert allocated_bytes(pa) < MiB
    else:
        assert allocated_bytes(pa) >= 4 * MiB
    # same allocation as qemu-img, give or take file system rounding
    assert abs(allocated_bytes(pa) - allocated_bytes(pb)) <= 64 * 1024
    with open(pa, "rb") as f:
        data = f.read()
    assert data[:4096] == b"\x01" * 4096 and data[4096:] == bytes(5 * MiB - 4096)


def test_resize_shrink_keeps_head(ours, tmp_path):
    write_pattern(tmp_path / "r.raw", {0: b"\x02" * 8192, 3 * MiB: b"\x03"}, size=4 * MiB)
    r = ours.img("resize", "-f", "raw", "--shrink", "r.raw", "-3M")
    assert r.rc == 0
    assert (tmp_path / "r.raw").read_bytes() == b"\x02" * 8192 + bytes(MiB - 8192)


def test_resize_raw_with_offset_grows(ours, oracle, tmp_path):
    r, pa, _ = same(ours, oracle, tmp_path, MiB,
                    "--image-opts", "driver=raw,file.filename=r.raw,offset=512", "4M")
    assert r.rc == 0 and os.path.getsize(pa) == 4 * MiB + 512


@pytest.mark.parametrize("mode", ["off", "metadata", "falloc", "full"])
@pytest.mark.parametrize("size,writes,new", [
    ("1M", ["write -P 0x11 0 64k", "write -P 0x22 960k 64k"], "3M"),   # data at guest 0
    ("1000k", ["write -P 0x11 0 4k", "write -P 0x33 990k 10k"], "2M"),  # partial last cluster
    ("1M", ["write -z 0 64k", "write -c -P 0x44 64k 64k"], "1088k"),  # zero + compressed
])
def test_qcow2_resize_preallocation_keeps_data_like_oracle(ours, oracle, tmp_path, mode, size,
                                                           writes, new):
    """Growing a qcow2 with preallocation keeps every byte and maps the new range as qemu-img
    does (falloc/full once remapped guest cluster 0 onto the new area: data lost, leaks)."""
    for tool, name in ((ours, "a.qcow2"), (oracle, "b.qcow2")):
        assert oracle.img("create", "-q", "-f", "qcow2", name, size).rc == 0
        args = []
        for w in writes:
            args += ["-c", w]
        assert oracle.io(*args, name).rc == 0
        r = tool.img("resize", f"--preallocation={mode}", name, new)
        assert r.rc == 0, r
    assert oracle.img("compare", "a.qcow2", "b.qcow2").out == "Images are identical.\n"
    assert oracle.img("check", "a.qcow2").rc == 0
    ma = oracle.img("map", "--output=json", "a.qcow2").out
    mb = oracle.img("map", "--output=json", "b.qcow2").out
    assert ma == mb


@pytest.mark.parametrize("fmt,opts", [("raw", None), ("qcow2", None), ("qcow2", "cluster_size=4k"),
                                      ("qcow2", "extended_l2=on"), ("qcow2", "compat=0.10")])
@pytest.mark.parametrize("init,new", [("1000k", "3333k"), ("1000k", "+512"), ("64k", "65M"),
                                      ("100000512", "100000k"), ("1000k", "300k"),
                                      ("3M", "1M")])
@pytest.mark.parametrize("mode", ["off", "metadata", "falloc", "full"])
def test_resize_file_length_like_oracle(ours, oracle, tmp_path, fmt, opts, init, new, mode):
    """Every preallocation mode, growing and shrinking: the same result and a host file of
    exactly qemu-img's length (a grown L1 table at the end of the file was padded to 512
    bytes; qemu writes only its entries)."""
    sizes = []
    for tool, name in ((ours, "a"), (oracle, "b")):
        create = ["create", "-q", "-f", fmt] + (["-o", opts] if opts else []) + [name, init]
        assert oracle.img(*create).rc == 0
        assert oracle.io("-f", fmt, "-c", "write -P 1 0 20k", name).rc == 0
        r = tool.img("resize", "-f", fmt, "--shrink", f"--preallocation={mode}", name, new)
        sizes.append((r.rc, r.out, r.err.replace(f"'{name}'", "'X'"),
                      os.path.getsize(tmp_path / name)))
    assert sizes[0] == sizes[1]
