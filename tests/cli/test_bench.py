# SPDX-License-Identifier: MIT
"""qemu-img bench: output lines, option errors and what the requests do, against the oracle.

Timings differ by nature: "Run completed in N.NNN seconds." is compared by shape.
"""
import re

import pytest

from conftest import write_pattern

RUN_LINE = re.compile(r"^Run completed in \d+\.\d{3} seconds\.$")


def normalise(out):
    return "\n".join("Run completed in X seconds." if RUN_LINE.match(line) else line
                     for line in out.splitlines())


@pytest.fixture
def images(both, tmp_path):
    ours, oracle = both
    r = oracle.img("create", "-q", "-f", "qcow2", "b.qcow2", "4M")
    assert r.rc == 0, r
    write_pattern(tmp_path / "t.raw", {}, 1 << 20)
    return ours, oracle


OUTPUT_CASES = [
    ["-c", "100"],
    ["-c", "100", "-d", "4", "-s", "4k", "-S", "8k", "-o", "512"],
    ["-c", "0"],
    ["-c", "3", "-s", "0"],
    ["-c", "3", "-s", "1.5k"],
    ["-c", "5", "-S", "0"],
    ["-c", "10", "-d", "10000"],
    ["-c", "5", "-q"],
    ["-w", "-c", "5", "-d", "1", "--flush-interval=2"],
    ["-w", "-c", "10", "--flush-interval=0"],
    ["-w", "-c", "10", "--no-drain"],
    ["-c", "10", "--no-drain"],
    ["-w", "-c", "4", "--pattern=0x41"],
    ["-c", "4", "-i", "threads"],
    ["-c", "4", "-i", "io_uring"],
    ["-c", "4", "-n", "-t", "none"],
    ["-c", "4", "-i", "native", "-t", "directsync"],
    ["-c", "4", "-t", "writethrough", "-f", "qcow2"],
    ["-c", "4", "-f", "raw"],
    ["-c", "4", "-U"],
    # errors
    [],
    ["-c", "-1"],
    ["-c", "x"],
    ["-c", "3000000000"],
    ["-d", "x"],
    ["-d", "-1"],
    ["-s", "x"],
    ["-s", "3G"],
    ["-S", "x"],
    ["-S", "3G"],
    ["-S", "-1"],
    ["-o", "x"],
    ["-o", "-1"],
    ["-o", "1G"],
    ["-i", "bogus"],
    ["-t", "bogus"],
    ["--pattern=300"],
    ["--pattern=x"],
    ["--flush-interval=x"],
    ["--flush-interval=-1", "-w"],
    ["--flush-interval=100"],
    ["-w", "--flush-interval=3"],
    ["-w", "--flush-interval=3", "--no-drain"],
    ["-n", "-c", "3"],
    ["-i", "native", "-c", "3"],
    ["-w", "-U", "-c", "2"],
    ["-f", "qcow2", "-c", "1", "t.raw"],
    ["-c", "1", "nonexist"],
    ["-c", "1", "b.qcow2", "extra"],
    ["--bogus"],
]


@pytest.mark.parametrize("args", OUTPUT_CASES, ids=lambda a: " ".join(a) or "(none)")
def test_bench_matches_oracle(images, args):
    ours, oracle = images
    argv = ["bench"] + args
    if not any(a.endswith((".qcow2", ".raw", "nonexist")) for a in args) and args:
        argv.append("b.qcow2")
    a = ours.img(*argv)
    b = oracle.img(*argv)
    assert (a.rc, normalise(a.out), a.err) == (b.rc, normalise(b.out), b.err)


@pytest.mark.parametrize("size,step,count", [(16384, 6144, 4), (16384, 6144, 5),
                                             (20480, 6144, 4), (16000, 4096, 5)])
def test_bench_write_wraps_like_oracle(both, tmp_path, size, step, count):
    """Offsets advance by the step and wrap at the end of the image, as qemu-img's do."""
    results = []
    for tool in both:
        img = tmp_path / "w.raw"
        if img.exists():
            img.unlink()
        write_pattern(img, {}, size)
        r = tool.img("bench", "-f", "raw", "-w", "-s", "4096", "-S", str(step), "-c", str(count),
                     "-d", "1", "--pattern=0x11", "w.raw")
        results.append((r.rc, r.err, img.read_bytes()))
    assert results[0] == results[1]


def test_bench_write_parallel_pattern(ours, tmp_path):
    """Every request lands, with the pattern, whatever the depth."""
    write_pattern(tmp_path / "p.raw", {}, 1 << 20)
    r = ours.img("bench", "-f", "raw", "-w", "-c", "256", "-d", "32", "-s", "4k",
                 "--pattern=0x5a", "p.raw")
    assert r.rc == 0 and r.err == ""
    assert (tmp_path / "p.raw").read_bytes() == b"\x5a" * (1 << 20)


def test_bench_read_qcow2_data(ours, oracle, tmp_path):
    """Reads of allocated qcow2 data run and succeed, also with O_DIRECT."""
    assert oracle.img("create", "-q", "-f", "qcow2", "d.qcow2", "8M").rc == 0
    assert oracle.io("-f", "qcow2", "-c", "write -P 7 0 8M", "d.qcow2").rc == 0
    for extra in ([], ["-t", "none"], ["-n", "-t", "none"]):
        r = ours.img("bench", "-c", "1000", "-d", "8", *extra, "d.qcow2")
        assert r.rc == 0, r
        assert r.out.splitlines()[0] == ("Sending 1000 read requests, 4096 bytes each, 8 in "
                                         "parallel (starting at offset 0, step size 4096)")
        assert RUN_LINE.match(r.out.splitlines()[1])
