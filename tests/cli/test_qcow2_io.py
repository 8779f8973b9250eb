# SPDX-License-Identifier: MIT
"""qcow2 reads and writes through libqimg, cross-checked with the oracle.

qimg-io does not exist yet in every build, so the driver is driven by a small
exerciser (tests/unit/qcow2-rw.c) compiled here against the build's libqimg.a.
Images the oracle writes must read back identically through our driver; what
we write must read back identically through qemu-img/qemu-io, and
`qemu-img check` must stay clean (no errors, no leaks).
"""
import os
import random
import subprocess

import pytest

from conftest import BUILD, ROOT, run

EXERCISER_SRC = ROOT / "tests" / "unit" / "qcow2-rw.c"


@pytest.fixture(scope="session")
def rw(tmp_path_factory):
    built = BUILD / "tests" / "unit" / "qcow2-rw"
    if built.exists():
        return built
    lib = BUILD / "libqimg.a"
    if not lib.exists():
        pytest.skip("libqimg.a not built")
    exe = tmp_path_factory.mktemp("qcow2rw") / "qcow2-rw"
    cmd = ["cc", "-std=c11", "-D_GNU_SOURCE", "-D_FILE_OFFSET_BITS=64", "-O1",
           f"-I{ROOT / 'include'}", f"-I{ROOT / 'src'}", "-o", str(exe), str(EXERCISER_SRC),
           str(lib), "-lz", "-lzstd", "-lnettle", "-lpthread", "-lm"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip("could not build the qcow2 exerciser: " + p.stderr[-500:])
    return exe


def ex(rw, *args, cwd):
    r = run([rw, *args], cwd=cwd)
    assert r.rc == 0, r.err
    return r


def check_clean(oracle, img):
    r = oracle.img("check", img)
    assert r.rc == 0, r.out + r.err
    assert r.out.startswith("No errors were found on the image."), r.out


SPECS = ["compat=0.10", "cluster_size=512", "cluster_size=4k,refcount_bits=1",
         "cluster_size=2M", "refcount_bits=64", "extended_l2=on",
         "extended_l2=on,cluster_size=16k", "compression_type=zstd", "lazy_refcounts=on"]

def cluster_size_of(spec):
    for part in spec.split(","):
        if part.startswith("cluster_size="):
            v = part.split("=")[1]
            return int(v[:-1]) * (1024 if v[-1] == "k" else 1 << 20) if v[-1] in "kM" else int(v)
    return 65536


def oracle_writes(spec):
    cs = cluster_size_of(spec)
    return ["write -P 0xab 0 64k", "write -P 0x11 100k 3k", "write -z 1M 128k",
            f"write -c -P 0x22 2M {cs}", "write -P 0x33 4000k 1k", "write -c -P 0x44 6M 2M"]


@pytest.mark.parametrize("spec", SPECS)
def test_read_oracle_image(rw, oracle, tmp_path, spec):
    oracle.img("create", "-q", "-f", "qcow2", "-o", spec, "o.qcow2", "8M")
    args = []
    for c in oracle_writes(spec):
        args += ["-c", c]
    assert oracle.io("-f", "qcow2", *args, "o.qcow2").rc == 0
    oracle.img("convert", "-O", "raw", "o.qcow2", "ref.raw")
    ex(rw, "-r", "o.qcow2", "dump", "ours.raw", cwd=tmp_path)
    assert (tmp_path / "ours.raw").read_bytes() == (tmp_path / "ref.raw").read_bytes()


@pytest.mark.parametrize("spec", SPECS)
def test_writes_match_raw_reference(rw, oracle, tmp_path, spec):
    oracle.img("create", "-q", "-f", "qcow2", "-o", spec, "o.qcow2", "8M")
    args = []
    for c in oracle_writes(spec):
        args += ["-c", c]
    oracle.io("-f", "qcow2", *args, "o.qcow2")
    oracle.img("convert", "-O", "raw", "o.qcow2", "o.raw")
    cs = cluster_size_of(spec)
    ops = ["write", "65536", "4096", "0x55", "zero", "2M", "64k", "write", "3M", "70000", "0x66",
           "writec", "4M", str(cs), "0x77", "discard", "0", str(cs), "write", "7M", "512", "0x88",
           "zero", "1536", "1024", "write", "6M", "1000448", "0x99", "zero", "5M", "1M", "unmap"]
    ex(rw, "-u", "o.qcow2", *ops, cwd=tmp_path)
    ref = ["write -P 0x55 65536 4096", "write -z 2M 64k", "write -P 0x66 3M 70000",
           f"write -P 0x77 4M {cs}", f"write -z 0 {cs}", "write -P 0x88 7M 512",
           "write -z 1536 1024", "write -P 0x99 6M 1000448", "write -z 5M 1M"]
    args = []
    for c in ref:
        args += ["-c", c]
    oracle.io("-f", "raw", *args, "o.raw")
    check_clean(oracle, "o.qcow2")
    r = oracle.img("compare", "-f", "qcow2", "-F", "raw", "o.qcow2", "o.raw")
    assert r.rc == 0, r.out + r.err
    # qemu-io reads our compressed cluster and our COW'd partial clusters.
    r = oracle.io("-f", "qcow2", "-c", f"read -P 0x77 4M {min(cs, 1 << 20)}", "-c",
                  "read -P 0x66 3M 70000",
                  "o.qcow2")
    assert r.rc == 0 and "verification failed" not in r.out, r.out


def _random_source(path, mib):
    rnd = random.Random(mib)
    with open(path, "wb") as f:
        for i in range(mib):
            if i % 3 == 0:
                f.write(bytes(1 << 20))
            else:
                f.write(bytes([rnd.randrange(256)]) * (1 << 19) + rnd.randbytes(1 << 19))


@pytest.mark.parametrize("spec", ["cluster_size=512,refcount_bits=64",
                                  "cluster_size=512,refcount_bits=1", "cluster_size=4k", "",
                                  "extended_l2=on", "compat=0.10,cluster_size=1k",
                                  "cluster_size=2M,refcount_bits=8"])
def test_threaded_writers_and_refcount_growth(rw, oracle, tmp_path, spec):
    # 8 writers allocate concurrently; with 512-byte clusters and wide refcounts the
    # refcount table has to grow several times.
    _random_source(tmp_path / "src.raw", 48)
    opts = ["-o", spec] if spec else []
    oracle.img("create", "-q", "-f", "qcow2", *opts, "t.qcow2", "48M")
    ex(rw, "t.qcow2", "load", "src.raw", "8", "196608", cwd=tmp_path)
    check_clean(oracle, "t.qcow2")
    r = oracle.img("compare", "-f", "qcow2", "-F", "raw", "t.qcow2", "src.raw")
    assert r.rc == 0, r.out + r.err
    # Overwrite in place with another chunking, read back through our driver.
    ex(rw, "t.qcow2", "load", "src.raw", "4", "1048576", cwd=tmp_path)
    ex(rw, "-r", "t.qcow2", "dump", "back.raw", cwd=tmp_path)
    assert (tmp_path / "back.raw").read_bytes() == (tmp_path / "src.raw").read_bytes()
    check_clean(oracle, "t.qcow2")


@pytest.mark.parametrize("spec", ["", "extended_l2=on", "compat=0.10", "cluster_size=4k"])
def test_backing_copy_on_write(rw, oracle, tmp_path, spec):
    oracle.img("create", "-q", "-f", "qcow2", "base.qcow2", "4M")
    oracle.io("-c", "write -P 0x5a 0 4M", "-c", "write -P 0x6b 3M 1M", "base.qcow2")
    opts = ["-o", spec] if spec else []
    oracle.img("create", "-q", "-f", "qcow2", *opts, "-b", "base.qcow2", "-F", "qcow2",
               "top.qcow2", "6M")
    ex(rw, "top.qcow2", "write", "1000448", "4096", "0x01", "write", "3M", "512", "0x02",
       "write", "4M", "4096", "0x03", "zero", "2M", "64k", cwd=tmp_path)
    oracle.img("convert", "-O", "raw", "base.qcow2", "ref.raw")
    with open(tmp_path / "ref.raw", "r+b") as f:
        f.truncate(6 << 20)
        for off, n, b in ((1000448, 4096, 1), (3 << 20, 512, 2), (4 << 20, 4096, 3)):
            f.seek(off)
            f.write(bytes([b]) * n)
        f.seek(2 << 20)
        f.write(bytes(65536))
    check_clean(oracle, "top.qcow2")
    r = oracle.img("compare", "-F", "raw", "top.qcow2", "ref.raw")
    assert r.rc == 0, r.out + r.err
    ex(rw, "-r", "top.qcow2", "dump", "ours.raw", cwd=tmp_path)
    assert (tmp_path / "ours.raw").read_bytes() == (tmp_path / "ref.raw").read_bytes()


def test_block_status(rw, oracle, tmp_path):
    oracle.img("create", "-q", "-f", "qcow2", "t.qcow2", "4M")
    oracle.io("-c", "write -P 1 0 128k", "-c", "write -z 1M 64k", "-c", "write -c -P 2 2M 64k",
              "t.qcow2")
    r = ex(rw, "-r", "t.qcow2", "map", cwd=tmp_path)
    lines = [line.split(" ")[:3] for line in r.out.splitlines()]
    assert lines == [["0", "131072", "data"], ["131072", "917504", "-"],
                     ["1048576", "65536", "-,zero"], ["1114112", "983040", "-"],
                     ["2097152", "65536", "data,compressed"], ["2162688", "2031616", "-"]]
    assert "@" in r.out.splitlines()[0]


def test_truncate_grow_and_shrink(rw, oracle, tmp_path):
    oracle.img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "t.qcow2", "1M")
    ex(rw, "t.qcow2", "write", "0", "1M", "0x42", "truncate", "3G", "write", "3000M", "4096",
       "0x43", cwd=tmp_path)
    check_clean(oracle, "t.qcow2")
    r = oracle.io("-c", "read -P 0x42 0 1M", "-c", "read -P 0x43 3000M 4k", "-c",
                  "read -P 0 1M 1M", "t.qcow2")
    assert "verification failed" not in r.out, r.out
    before = os.path.getsize(tmp_path / "t.qcow2")
    ex(rw, "t.qcow2", "truncate", "512k", cwd=tmp_path)
    check_clean(oracle, "t.qcow2")
    info = oracle.img("info", "t.qcow2").out
    assert "virtual size: 512 KiB" in info
    r = oracle.io("-c", "read -P 0x42 0 512k", "t.qcow2")
    assert "verification failed" not in r.out, r.out
    # Clusters past the new end are freed and the file trimmed after its last used one.
    assert os.path.getsize(tmp_path / "t.qcow2") < before


def test_overlap_with_metadata_marks_corrupt(rw, oracle, tmp_path):
    oracle.img("create", "-q", "-f", "qcow2", "t.qcow2", "1G")
    oracle.io("-c", "write -P 1 0 64k", "t.qcow2")
    # Point the data cluster of guest offset 0 at the L1 table (cluster 3).
    data = bytearray((tmp_path / "t.qcow2").read_bytes())
    l2 = int.from_bytes(data[0x30000:0x30008], "big") & 0x00fffffffffffe00
    data[l2:l2 + 8] = (0x8000000000030000).to_bytes(8, "big")
    (tmp_path / "t.qcow2").write_bytes(bytes(data))
    r = run([rw, "t.qcow2", "write", "0", "512", "0x09"], cwd=tmp_path)
    assert r.rc == 1
    assert ("qcow2: Marking image as corrupt: Preventing invalid write on metadata (overlaps "
            "with active L1 table); further corruption events will be suppressed") in r.err
    info = oracle.img("info", "t.qcow2").out
    assert "corrupt: true" in info
    r = run([rw, "t.qcow2", "write", "0", "512", "0x09"], cwd=tmp_path)
    assert r.rc == 1 and "Image is corrupt; cannot be opened read/write" in r.err


@pytest.mark.parametrize("cluster", ["4k", "64k", "2M"])
def test_zero_cow_allocation_matches_qemu_io(ours, oracle, tmp_path, cluster):
    """A partial write into a fresh cluster with nothing underneath: the cluster is zeroed
    efficiently (cluster_alloc_space) and only the data written, and the file ends where
    QEMU's does (a zero write past EOF extends the file): byte-identical to qemu-io's image."""
    files = []
    for tool, name in ((ours, "ours.qcow2"), (oracle, "theirs.qcow2")):
        assert oracle.img("create", "-q", "-f", "qcow2", "-o", f"cluster_size={cluster}",
                          name, "16M", cwd=tmp_path).rc == 0
        r = tool.io("-c", "write -P 5 4k 4k", "-c", "write -P 6 9M 60k",
                    "-c", "write -P 7 15M 512", name, cwd=tmp_path)
        assert r.rc == 0, r
        files.append(tmp_path / name)
    assert os.path.getsize(files[0]) == os.path.getsize(files[1])
    assert files[0].read_bytes() == files[1].read_bytes()
    check_clean(oracle, files[0])
