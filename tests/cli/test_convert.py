# SPDX-License-Identifier: MIT
"""qemu-img convert on raw images: content, sparseness, options and messages against the oracle."""
import filecmp
import os
import re
import resource
import signal
import subprocess
import time

import pytest

from conftest import allocated_bytes, write_pattern

MiB = 1 << 20


def make_inputs(d):
    """src.raw: 4 MiB, data at [0, 64k) and [1M, 1M+8k), the rest holes (and a non-zero
    byte pattern so that misplaced data shows); out.raw: an existing 4 MiB target;
    small.raw: a 1 MiB one; odd.raw: 1000 bytes."""
    for name in ("src.raw", "out.raw", "small.raw", "odd.raw"):
        p = d / name
        if p.exists():
            p.unlink()
    write_pattern(d / "src.raw", {0: bytes(range(256)) * 256, MiB: b"\x09" * 8192}, 4 * MiB)
    write_pattern(d / "out.raw", {0: b"\x55" * (4 * MiB)}, 4 * MiB)
    write_pattern(d / "small.raw", {}, MiB)
    write_pattern(d / "odd.raw", {0: b"\x11" * 1000}, 1000)


def snapshot_dir(d):
    return {p.name: p.stat().st_size for p in d.iterdir()}


def clean_dir(d):
    for p in d.iterdir():
        p.unlink()


ERROR_CASES = [
    [],
    ["src.raw"],
    ["-O", "raw", "-o", "help"],
    ["-O", "raw", "-o", "help", "src.raw"],
    ["-O", "raw", "-o", "help", "src.raw", "x.raw"],
    ["-o", "?", "src.raw", "x.raw"],
    ["-O", "nosuch", "-o", "help"],
    ["-O", "nosuch", "src.raw", "x.raw"],
    ["-f", "nosuch", "src.raw", "x.raw"],
    ["nonexist.raw", "x.raw"],
    ["src.raw", "nonexist.raw", "x.raw"],
    ["-m", "0", "src.raw", "x.raw"],
    ["-m", "17", "src.raw", "x.raw"],
    ["-m", "abc", "src.raw", "x.raw"],
    ["-m", "1x", "src.raw", "x.raw"],
    ["-S", "abc", "src.raw", "x.raw"],
    ["-S", "100", "src.raw", "x.raw"],
    ["-S", "600", "src.raw", "x.raw"],
    ["-S", "17M", "src.raw", "x.raw"],
    ["-S", "abc", "-m", "0", "src.raw", "x.raw"],
    ["-m", "0", "-S", "abc", "src.raw", "x.raw"],
    ["-r", "abc", "src.raw", "x.raw"],
    ["--target-is-zero", "src.raw", "x.raw"],
    ["--target-is-zero", "src.raw"],
    ["--target-image-opts", "src.raw", "x.raw"],
    ["-c", "src.raw", "x.raw"],
    ["-O", "raw", "-c", "src.raw", "x.raw"],
    ["-n", "-c", "src.raw", "out.raw"],
    ["-B", "base.raw", "src.raw", "x.raw"],
    ["-F", "raw", "src.raw", "x.raw"],
    ["-c", "-B", "b", "src.raw", "x.raw"],
    ["-l", "foo", "src.raw", "x.raw"],
    ["-l", "snapshot.name=x", "src.raw", "x.raw"],
    ["-l", "snapshot.bogus=1", "src.raw", "x.raw"],
    ["-l", "snapshot.name=a,foo", "src.raw", "x.raw"],
    ["-l", "foo", "src.raw", "src.raw", "x.raw"],
    ["-s", "foo", "src.raw", "x.raw"],
    ["--bitmaps", "src.raw", "x.raw"],
    ["--skip-broken-bitmaps", "src.raw", "x.raw"],
    ["-t", "bogus", "src.raw", "x.raw"],
    ["-T", "bogus", "src.raw", "x.raw"],
    ["-t", "bogus", "-T", "bogus", "src.raw", "x.raw"],
    ["-n", "-t", "bogus", "src.raw", "out.raw"],
    ["-o", "nosuch=1", "src.raw", "x.raw"],
    ["-o", "size=abc", "src.raw", "x.raw"],
    ["-o", "nocow=maybe", "src.raw", "x.raw"],
    ["-o", "preallocation=bogus", "src.raw", "x.raw"],
    ["-o", ",", "src.raw", "x.raw"],
    ["-o", "", "src.raw", "x.raw"],
    ["-n", "-o", "size=1M", "src.raw", "out.raw"],
    ["-n", "src.raw", "small.raw"],
    ["-n", "src.raw", "nonexist.raw"],
    ["-n", "-O", "nosuch", "src.raw", "out.raw"],
    ["-C", "-c", "src.raw", "x.raw"],
    ["-C", "-S", "4k", "src.raw", "x.raw"],
    ["-C", "--salvage", "src.raw", "x.raw"],
    ["--image-opts", "-f", "raw", "src.raw", "x.raw"],
    ["src.raw", "/nonexistent-dir/x.raw"],
    ["-x", "src.raw", "x.raw"],
    ["--nosuch", "src.raw", "x.raw"],
    ["--target-is-zero=1", "src.raw", "x.raw"],
    ["-m"],
    ["-p", "-n", "src.raw", "small.raw"],
    ["-p", "nonexist.raw", "x.raw"],
    ["-p", "-m", "0", "src.raw", "x.raw"],
    # successes whose output (none) and files must match too
    ["-o", "size=1M", "src.raw", "x.raw"],
    ["-q", "src.raw", "x.raw"],
    ["-U", "src.raw", "x.raw"],
    ["-r", "0", "src.raw", "x.raw"],
    ["-m", "0x8", "src.raw", "x.raw"],
    ["-n", "-B", "b", "src.raw", "out.raw"],
    ["-n", "--target-image-opts", "src.raw", "driver=raw,file.filename=out.raw"],
    ["--image-opts", "driver=raw,file.filename=src.raw", "x.raw"],
    ["-f", "raw", "odd.raw", "x.raw"],
    ["src.raw", "src.raw", "x.raw"],
]


@pytest.mark.parametrize("args", ERROR_CASES, ids=[" ".join(c) or "<none>" for c in ERROR_CASES])
def test_convert_matches_oracle(ours, oracle, tmp_path, args):
    make_inputs(tmp_path)
    a = ours.img("convert", *args)
    ours_files = snapshot_dir(tmp_path)
    clean_dir(tmp_path)
    make_inputs(tmp_path)
    b = oracle.img("convert", *args)
    oracle_files = snapshot_dir(tmp_path)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert ours_files == oracle_files


def convert_both(ours, oracle, tmp_path, args, src="src.raw"):
    """Convert with each implementation; return (ours_path, oracle_path)."""
    r = ours.img("convert", *args, src, "ours.raw")
    assert (r.rc, r.out, r.err) == (0, "", ""), r
    r = oracle.img("convert", *args, src, "oracle.raw")
    assert r.rc == 0, r
    return tmp_path / "ours.raw", tmp_path / "oracle.raw"


@pytest.fixture
def big_src(tmp_path):
    """24 MiB: random data, zero-filled data blocks, holes, an unaligned tail of data."""
    p = tmp_path / "big.raw"
    rnd = os.urandom(3 * MiB)
    write_pattern(p, {
        0: rnd[:MiB],
        3 * MiB: b"\0" * (2 * MiB),            # allocated zeroes: must not stay allocated
        5 * MiB + 4096: rnd[MiB:MiB + 5000],    # data not aligned to -S
        9 * MiB: rnd[:2 * MiB] + b"\0" * 65536 + rnd[2 * MiB:],
        24 * MiB - 777: b"\x01" * 777,
    }, 24 * MiB)
    return p


CONTENT_VARIANTS = [
    [],
    ["-W"],
    ["-m", "1"],
    ["-m", "16"],
    ["-m", "16", "-W"],
    ["-C"],
    ["-S", "64k"],
    ["-S", "512"],
    ["-t", "none"],
    ["-T", "none"],
    ["-t", "writeback", "-T", "directsync"],
    ["-O", "raw", "-f", "raw"],
]


@pytest.mark.parametrize("args", CONTENT_VARIANTS, ids=[" ".join(a) or "default" for a in CONTENT_VARIANTS])
def test_convert_content_and_sparseness(ours, oracle, tmp_path, big_src, args):
    o, q = convert_both(ours, oracle, tmp_path, ["-f", "raw", *args], src=big_src.name)
    assert filecmp.cmp(o, big_src, shallow=False)
    assert o.stat().st_size == q.stat().st_size
    assert allocated_bytes(o) <= allocated_bytes(q)
    r = oracle.img("compare", "-f", "raw", "-F", "raw", o.name, big_src.name)
    assert r.rc == 0 and r.out == "Images are identical.\n"


def test_convert_sparse_zero_0_fully_allocates(ours, tmp_path, big_src):
    assert ours.img("convert", "-f", "raw", "-S", "0", big_src.name, "full.raw").rc == 0
    assert filecmp.cmp(tmp_path / "full.raw", big_src, shallow=False)
    assert allocated_bytes(tmp_path / "full.raw") >= 24 * MiB


def test_convert_default_skips_zeroes(ours, tmp_path, big_src):
    assert ours.img("convert", "-f", "raw", big_src.name, "s.raw").rc == 0
    # 1 MiB + 5000 bytes + 4 MiB + 777 bytes of data; everything else is a hole.
    assert allocated_bytes(tmp_path / "s.raw") <= 6 * MiB


def test_convert_concatenates_sources(ours, oracle, tmp_path, big_src):
    make_inputs(tmp_path)
    args = ["-f", "raw", "src.raw", "odd.raw", big_src.name]
    assert ours.img("convert", *args, "cat1.raw").rc == 0
    assert oracle.img("convert", *args, "cat2.raw").rc == 0
    assert filecmp.cmp(tmp_path / "cat1.raw", tmp_path / "cat2.raw", shallow=False)
    # A 1000-byte image reads as two whole sectors (QEMU counts sizes in sectors).
    expected = (tmp_path / "src.raw").read_bytes() + (tmp_path / "odd.raw").read_bytes() + \
        b"\0" * 24 + big_src.read_bytes()
    assert (tmp_path / "cat1.raw").read_bytes()[:len(expected)] == expected


def test_convert_n_onto_larger_target(ours, oracle, tmp_path):
    make_inputs(tmp_path)
    for tool, name in ((ours, "t1.raw"), (oracle, "t2.raw")):
        write_pattern(tmp_path / name, {0: b"\x77" * (6 * MiB)}, 6 * MiB)
        r = tool.img("convert", "-n", "-f", "raw", "-O", "raw", "src.raw", name)
        assert (r.rc, r.out, r.err) == (0, "", "")
    a, b = (tmp_path / "t1.raw").read_bytes(), (tmp_path / "t2.raw").read_bytes()
    assert a == b
    assert a[:4 * MiB] == (tmp_path / "src.raw").read_bytes()
    assert a[4 * MiB:] == b"\x77" * (2 * MiB)


def test_convert_n_zeroes_old_content(ours, tmp_path):
    make_inputs(tmp_path)
    r = ours.img("convert", "-n", "-f", "raw", "-O", "raw", "src.raw", "out.raw")
    assert r.rc == 0
    assert (tmp_path / "out.raw").read_bytes() == (tmp_path / "src.raw").read_bytes()


def test_convert_target_is_zero_leaves_zero_ranges_alone(ours, tmp_path):
    make_inputs(tmp_path)
    r = ours.img("convert", "-n", "--target-is-zero", "-f", "raw", "-O", "raw", "src.raw",
                 "out.raw")
    assert (r.rc, r.err) == (0, "")
    data = (tmp_path / "out.raw").read_bytes()
    src = (tmp_path / "src.raw").read_bytes()
    # Only the data ranges were written; the old 0x55 bytes in the holes stay (as in qemu-img).
    assert data[:65536] == src[:65536]
    assert data[MiB:MiB + 8192] == src[MiB:MiB + 8192]
    assert data[65536:65537] == b"\x55"


def test_convert_target_is_zero_on_zeroed_target(ours, tmp_path, big_src):
    write_pattern(tmp_path / "z.raw", {}, 24 * MiB)
    r = ours.img("convert", "-n", "--target-is-zero", "-f", "raw", "-O", "raw", big_src.name, "z.raw")
    assert r.rc == 0
    assert filecmp.cmp(tmp_path / "z.raw", big_src, shallow=False)


def test_convert_rate_limit(ours, tmp_path):
    write_pattern(tmp_path / "r.raw", {0: os.urandom(4 * MiB)}, 4 * MiB)
    t = time.monotonic()
    r = ours.img("convert", "-f", "raw", "-r", "2M", "r.raw", "r2.raw")
    elapsed = time.monotonic() - t
    assert r.rc == 0
    assert elapsed >= 1.5
    assert filecmp.cmp(tmp_path / "r.raw", tmp_path / "r2.raw", shallow=False)


@pytest.mark.parametrize("args", [[], ["-S", "0"], ["-m", "1"]], ids=["default", "S0", "m1"])
def test_convert_progress_matches_oracle(ours, oracle, tmp_path, big_src, args):
    make_inputs(tmp_path)
    for src in ("src.raw", big_src.name):
        a = ours.img("convert", "-p", "-f", "raw", *args, src, "p1.raw")
        b = oracle.img("convert", "-p", "-f", "raw", *args, src, "p2.raw")
        assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
        # (text mode reads each \r, and the final \r\n, as \n)
        assert a.out.startswith("    (0.00/100%)\n") and a.out.endswith("    (100.00/100%)\n    (100.00/100%)\n")


def test_convert_progress_two_sources_and_quiet(ours, oracle, tmp_path):
    make_inputs(tmp_path)
    a = ours.img("convert", "-p", "-f", "raw", "src.raw", "src.raw", "p1.raw")
    b = oracle.img("convert", "-p", "-f", "raw", "src.raw", "src.raw", "p2.raw")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert "(44.44/100%)" in a.out
    a = ours.img("convert", "-p", "-q", "-f", "raw", "src.raw", "p1.raw")
    assert (a.rc, a.out, a.err) == (0, "", "")


def test_convert_sigusr1_prints_progress(bindir, tmp_path):
    """Without -p, SIGUSR1 prints one progress line (the copy is slowed down with -r)."""
    write_pattern(tmp_path / "r.raw", {0: os.urandom(4 * MiB)}, 4 * MiB)
    p = subprocess.Popen([str(bindir / "qemu-img"), "convert", "-f", "raw", "-r", "2M",
                          "r.raw", "r2.raw"], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    p.send_signal(signal.SIGUSR1)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    # qemu-img prints it on stderr (stdout stays empty); see test_conformance_cli.py
    assert out == "" and err.endswith("/100%)\n") and err.startswith("    (")


def blkdebug_src(*sectors, errno=5):
    """src.raw behind the blkdebug filter (QEMU's syntax): guest reads that touch one of the
    512-byte sectors fail with errno, every time."""
    rules = ", ".join('{"event": "read_aio", "errno": %d, "sector": %d}' % (errno, s)
                      for s in sectors)
    return ('json:{"driver": "raw", "file": {"driver": "blkdebug", "inject-error": [%s], '
            '"image": {"driver": "file", "filename": "src.raw"}}}' % rules)


def test_convert_read_error_fails(ours, oracle, tmp_path):
    """A read error ends the copy with qemu-img's message and exit code. (What the target
    holds then is not compared: qemu-img's parallel requests leave it undefined.)"""
    make_inputs(tmp_path)
    src = blkdebug_src(8)
    a = ours.img("convert", "-O", "raw", src, "e1.raw")
    b = oracle.img("convert", "-O", "raw", src, "e2.raw")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err) == (
        1, "", "qemu-img: error while reading at byte 0: Input/output error\n")


def test_convert_read_error_is_the_first_in_the_image(ours, tmp_path):
    """Workers read in parallel, yet the error named is always the first one in the image,
    and everything before it is copied, as a sequential copy would leave it."""
    make_inputs(tmp_path)
    both = blkdebug_src(8, MiB // 512 + 3)
    second = blkdebug_src(MiB // 512 + 3)
    src = (tmp_path / "src.raw").read_bytes()
    for _ in range(5):
        a = ours.img("convert", "-O", "raw", both, "e1.raw")
        assert (a.rc, a.err) == (1, "qemu-img: error while reading at byte 0: Input/output error\n")
        a = ours.img("convert", "-O", "raw", second, "e2.raw")
        assert (a.rc, a.err) == (
            1, f"qemu-img: error while reading at byte {MiB}: Input/output error\n")
        assert (tmp_path / "e2.raw").read_bytes()[:MiB] == src[:MiB]


@pytest.mark.parametrize("quiet", [False, True])
def test_convert_salvage_zeroes_unreadable_sectors(ours, oracle, tmp_path, quiet):
    """--salvage: every unreadable 512-byte sector becomes zeroes and gets its own warning
    (adjacent ones too), in the errno's words; -q silences them. qemu-img's parallel
    requests print the warnings in any order: they are compared as sets."""
    make_inputs(tmp_path)
    bad = [8, 9, 100, MiB // 512 + 4]
    src = blkdebug_src(*bad)
    q = ["-q"] if quiet else []
    a = ours.img("convert", *q, "--salvage", "-O", "raw", src, "e1.raw")
    b = oracle.img("convert", *q, "--salvage", "-O", "raw", src, "e2.raw")
    assert (a.rc, a.out) == (b.rc, b.out) == (0, "")
    assert sorted(a.err.splitlines()) == sorted(b.err.splitlines())
    want_err = [] if quiet else sorted(
        f"qemu-img: warning: error while reading offset {s * 512}: Input/output error"
        for s in bad)
    assert sorted(a.err.splitlines()) == want_err
    got = (tmp_path / "e1.raw").read_bytes()
    assert got == (tmp_path / "e2.raw").read_bytes()
    want = bytearray((tmp_path / "src.raw").read_bytes())
    for s in bad:
        want[s * 512:(s + 1) * 512] = bytes(512)
    assert got == bytes(want)


def test_convert_salvage_reports_each_sector_of_an_aligned_failure(ours, oracle, tmp_path):
    """With a 4 KiB request alignment a bad sector fails its whole 4 KiB block: qemu-img
    still reads and reports 512-byte sectors, eight of them per failing block, and the
    errno (ENOSPC here) names the error."""
    make_inputs(tmp_path)
    src = blkdebug_src(9, errno=28).replace('"driver": "blkdebug", ',
                                            '"driver": "blkdebug", "align": 4096, ')
    a = ours.img("convert", "--salvage", "-O", "qcow2", src, "e1.qcow2")
    b = oracle.img("convert", "--salvage", "-O", "qcow2", src, "e2.qcow2")
    assert (a.rc, a.out) == (b.rc, b.out) == (0, "")
    assert sorted(a.err.splitlines()) == sorted(b.err.splitlines()) == sorted(
        f"qemu-img: warning: error while reading offset {off}: No space left on device"
        for off in range(4096, 8192, 512))
    r = oracle.img("compare", "e1.qcow2", "e2.qcow2")
    assert (r.rc, r.out) == (0, "Images are identical.\n")


def _fill_limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (MiB, MiB))


def test_convert_full_target_fails_clearly(ours, tmp_path, big_src):
    """Writes past a 1 MiB limit fail: one error line, exit 1 (a small tmpfs when we can mount
    one, else RLIMIT_FSIZE)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mnt)],
                             capture_output=True).returncode == 0
    try:
        if mounted:
            r = ours.img("convert", "-f", "raw", str(big_src), str(mnt / "t.raw"))
            assert r.rc == 1
            # Where the space runs out depends on the filesystem; qemu-img's wording does not.
            assert re.fullmatch(r"qemu-img: error while writing at byte \d+: "
                                r"No space left on device\n", r.err), r.err
        else:
            write_pattern(tmp_path / "t.raw", {}, 24 * MiB)
            proc = subprocess.run([str(ours.img_path), "convert", "-n", "-f", "raw", "-O", "raw",
                                   str(big_src), "t.raw"], cwd=tmp_path, capture_output=True,
                                  text=True, preexec_fn=_fill_limit)
            assert proc.returncode == 1
            assert proc.stderr.count("\n") == 1
            assert "error while writing at byte" in proc.stderr
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)])


@pytest.mark.parametrize("opt,what", [("-S", "buffer size for sparse output"),
                                      ("-r", "rate limit")])
def test_convert_negative_sizes_use_91_wording(ours, tmp_path, opt, what):
    # qemu-img 9.1 reports a negative size as out of range (7.2 called it malformed).
    make_inputs(tmp_path)
    r = ours.img("convert", opt, "-1", "src.raw", "x.raw")
    assert r.rc == 1
    assert r.err == (f"qemu-img: Invalid {what} specified. "
                     "Must be between 0 and 9223372036854775807.\n")
    assert not (tmp_path / "x.raw").exists()
