# SPDX-License-Identifier: MIT
"""convert's fast paths give the same result as the plain one.

-C (copy offload), -c on many workers (compression outside the image lock),
-W and -m: content equal to the source, holes kept, and the images clean and
readable for QEMU's own tools. Speed is measured in bench/, never here.
"""
import os
import re

import pytest

from conftest import allocated_bytes, run, write_pattern, ORACLE_IMG, ORACLE_IO

KiB, MiB = 1 << 10, 1 << 20


def text_block(n, seed):
    """Compressible but not trivial data."""
    words = [f"w{(seed * 7919 + i * 104729) % 1000:03d}" for i in range(n // 4 + 1)]
    return " ".join(words).encode()[:n]


def make_source(path, size=12 * MiB + 512):
    """Data at unaligned offsets (not on 64 KiB clusters), incompressible data, holes,
    a zero-filled data run, and data in the image's last, partial cluster."""
    chunks = {
        0: text_block(3000, 1),
        4 * KiB + 512: text_block(9 * KiB, 2),
        70 * KiB: os.urandom(100 * KiB),           # does not compress
        MiB: b"\0" * (256 * KiB),                  # allocated zeroes
        MiB + 300 * KiB: text_block(3 * MiB, 3),   # several chunks of data
        8 * MiB - 4 * KiB: text_block(8 * KiB, 4),  # straddles a 2 MiB chunk boundary
        size - 1024: text_block(1024, 5),          # the last, partial cluster
    }
    write_pattern(path, chunks, size)


@pytest.fixture
def src(tmp_path):
    make_source(tmp_path / "src.raw")
    return tmp_path / "src.raw"


def oracle_check(path, fmt="qcow2"):
    if not ORACLE_IMG:
        pytest.skip("qemu-img (the oracle) is not installed")
    r = run([ORACLE_IMG, "check", "-f", fmt, path])
    assert r.rc == 0 and "No errors were found on the image." in r.out, r


def oracle_compare(a, b):
    r = run([ORACLE_IMG, "compare", a, b])
    assert r.rc == 0 and r.out == "Images are identical.\n", r


def test_offload_raw_to_raw_identical(ours, src, tmp_path):
    assert ours.img("convert", "-f", "raw", "-O", "raw", "src.raw", "plain.raw").rc == 0
    r = ours.img("convert", "-C", "-f", "raw", "-O", "raw", "src.raw", "off.raw")
    assert r.rc == 0 and r.out == "" and r.err == "", r
    assert (tmp_path / "off.raw").read_bytes() == (tmp_path / "src.raw").read_bytes()
    assert (tmp_path / "off.raw").read_bytes() == (tmp_path / "plain.raw").read_bytes()
    # Holes stay holes: nothing beyond the source's own allocation.
    assert allocated_bytes(tmp_path / "off.raw") <= allocated_bytes(tmp_path / "src.raw") + 64 * KiB


@pytest.mark.parametrize("args", [
    ["-O", "qcow2"],                     # offload falls back to read/write for qcow2 targets
    ["-O", "raw", "-m", "16", "-W"],
    ["-O", "raw", "-n"],                 # existing target
])
def test_offload_other_paths(ours, src, tmp_path, args):
    if "-n" in args:
        write_pattern(tmp_path / "out.img", {0: b"\x55" * (12 * MiB + 512)}, 12 * MiB + 512)
    r = ours.img("convert", "-C", "-f", "raw", *args, "src.raw", "out.img")
    assert r.rc == 0, r
    oracle_compare(tmp_path / "src.raw", tmp_path / "out.img")


def test_offload_from_qcow2(ours, src, tmp_path):
    assert ours.img("convert", "-f", "raw", "-O", "qcow2", "src.raw", "s.qcow2").rc == 0
    r = ours.img("convert", "-C", "-O", "raw", "s.qcow2", "out.raw")
    assert r.rc == 0, r
    assert (tmp_path / "out.raw").read_bytes() == (tmp_path / "src.raw").read_bytes()


def test_offload_with_raw_offset(ours, src, tmp_path):
    """Offload translates a raw node's offset: json:/image-opts windows copy the right bytes."""
    r = ours.img("convert", "-C", "-O", "raw",
                 'json:{"driver":"raw","offset":1048576,"file":{"driver":"file",'
                 '"filename":"src.raw"}}', "out.raw")
    assert r.rc == 0, r
    assert (tmp_path / "out.raw").read_bytes() == (tmp_path / "src.raw").read_bytes()[MiB:]


@pytest.mark.parametrize("ctype", ["zlib", "zstd"])
@pytest.mark.parametrize("cluster", ["65536", "2M", "4096"])
def test_compressed_workers_identical(ours, src, tmp_path, ctype, cluster):
    """Compression on many workers writes the very file one worker writes (in-order stores);
    -W gives the same content; QEMU checks, compares and reads them."""
    opts = f"compression_type={ctype},cluster_size={cluster}"
    outs = {}
    for name, extra in (("m1", ["-m", "1"]), ("m16", ["-m", "16"]), ("def", []),
                        ("ooo", ["-m", "16", "-W"])):
        r = ours.img("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", opts, *extra,
                     "src.raw", f"{name}.qcow2")
        assert r.rc == 0 and r.err == "", r
        outs[name] = (tmp_path / f"{name}.qcow2").read_bytes()
        oracle_check(tmp_path / f"{name}.qcow2")
        oracle_compare(tmp_path / "src.raw", tmp_path / f"{name}.qcow2")
    assert outs["m1"] == outs["m16"] == outs["def"]
    # QEMU's qemu-io inflates our clusters (4 KiB window) and reads the partial last one.
    r = run([ORACLE_IO, "-r", "-f", "qcow2", "-c", "read -P 0 5M 64k", "-c",
             f"read -v {12 * MiB - 512} 512", tmp_path / "m16.qcow2"])
    assert r.rc == 0 and "Pattern verification failed" not in r.out, r


def test_compressed_map_and_size(ours, oracle, src, tmp_path):
    """Compressed clusters are reported compressed, holes stay holes, and the image is no
    larger than 1.05 times qemu-img's."""
    for tool, name in ((ours, "a.qcow2"), (oracle, "b.qcow2")):
        assert tool.img("convert", "-c", "-f", "raw", "-O", "qcow2", "src.raw", name).rc == 0
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    assert a.stat().st_size <= 1.05 * b.stat().st_size
    r = run([ORACLE_IMG, "check", a])
    assert "compressed clusters" in r.out
    ma = oracle.img("map", "--output=json", "a.qcow2").out
    assert '"data": false' in ma  # holes were not written


def test_compressed_from_qcow2_with_backing(ours, oracle, src, tmp_path):
    """A source chain whose layers split clusters: every cluster is read whole."""
    assert oracle.img("convert", "-f", "raw", "-O", "qcow2", "src.raw", "base.qcow2").rc == 0
    assert oracle.img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                      "top.qcow2").rc == 0
    assert oracle.io("-f", "qcow2", "-c", "write -P 0x33 100k 8k", "-c", "write -z 1M 64k",
                     "top.qcow2").rc == 0
    r = ours.img("convert", "-c", "-O", "qcow2", "-m", "8", "top.qcow2", "out.qcow2")
    assert r.rc == 0, r
    oracle_check(tmp_path / "out.qcow2")
    oracle_compare(tmp_path / "top.qcow2", tmp_path / "out.qcow2")


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_workers_and_out_of_order_identical(ours, src, tmp_path, fmt):
    """-m and -W change only the speed: same content, and for raw the same bytes and holes."""
    results = {}
    for name, extra in (("seq", ["-m", "1"]), ("par", ["-m", "16"]), ("ooo", ["-m", "16", "-W"])):
        r = ours.img("convert", "-f", "raw", "-O", fmt, *extra, "src.raw", f"{name}.img")
        assert r.rc == 0, r
        oracle_compare(tmp_path / "src.raw", tmp_path / f"{name}.img")
        if fmt == "qcow2":
            oracle_check(tmp_path / f"{name}.img")
        results[name] = tmp_path / f"{name}.img"
    if fmt == "raw":
        data = {k: p.read_bytes() for k, p in results.items()}
        assert data["seq"] == data["par"] == data["ooo"]
        alloc = {k: allocated_bytes(p) for k, p in results.items()}
        assert alloc["seq"] == alloc["par"] == alloc["ooo"]
    else:
        # In-order writes allocate host clusters in guest order: the same file.
        assert results["seq"].read_bytes() == results["par"].read_bytes()


@pytest.mark.parametrize("cluster", ["512", "64k", "2M"])
@pytest.mark.parametrize("extra", [[], ["-m", "1"], ["-W"]])
def test_chunks_on_target_clusters_like_qemu(ours, oracle, src, tmp_path, cluster, extra):
    """Chunks of data end on the target's cluster boundaries (data starting and ending
    inside clusters, runs longer than a chunk): the image holds what qemu-img's holds, with
    the same clusters allocated, and checks clean."""
    args = ["convert", "-f", "raw", "-O", "qcow2", "-o", f"cluster_size={cluster}", *extra,
            "src.raw"]
    assert ours.img(*args, "ours.qcow2").rc == 0
    assert oracle.img(*args, "theirs.qcow2").rc == 0
    oracle_compare(tmp_path / "ours.qcow2", tmp_path / "theirs.qcow2")
    oracle_check(tmp_path / "ours.qcow2")
    maps = [run([ORACLE_IMG, "map", "--output=json", tmp_path / n]).out
            for n in ("ours.qcow2", "theirs.qcow2")]
    strip = [re.sub(r', "offset": \d+', "", m) for m in maps]
    if extra != ["-W"]:  # out of order, host clusters need not be contiguous as qemu's
        assert strip[0] == strip[1]
    assert os.path.getsize(tmp_path / "ours.qcow2") == os.path.getsize(tmp_path / "theirs.qcow2")
