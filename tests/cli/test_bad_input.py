# SPDX-License-Identifier: MIT
"""Bad input: one clear error in qemu-img's words, a non-zero exit, nothing clobbered.

Each case runs ours and the oracle in fresh, identical directories and
compares exit code, output, error text and the files left behind. Where 9.1
words a message differently from 7.2 (negative sizes), the 9.1 wording is
asserted on ours alone.
"""
import os
import resource
import shutil
import signal
import subprocess

import pytest

from conftest import NOBODY_GID, NOBODY_UID, ORACLE_IMG, as_nobody, run



def populate(d):
    with open(d / "r.raw", "wb") as f:
        f.truncate(1 << 20)
        f.write(b"\x42" * 4096)
    (d / "dir").mkdir()


def snapshot(d):
    """Name -> (size, first bytes) of everything in d, to see what a command changed."""
    out = {}
    for p in sorted(d.iterdir()):
        if p.is_dir():
            out[p.name] = "dir"
        else:
            with open(p, "rb") as f:
                out[p.name] = (p.stat().st_size, f.read(64))
    return out


def differential(ours, oracle, tmp_path, args, setup=populate, **kw):
    results = []
    for tool in (ours, oracle):
        for p in tmp_path.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        setup(tmp_path)
        r = tool.img(*args, **kw)
        results.append((r, snapshot(tmp_path)))
    (a, fa), (b, fb) = results
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert fa == fb
    return a


def assert_one_error(r):
    assert r.rc != 0
    lines = r.err.splitlines()
    assert lines and lines[0].startswith("qemu-img: "), r


CASES = [
    # missing, directory, unknown format
    ["info", "nofile.raw"],
    ["info", "-f", "raw", "nofile.raw"],
    ["check", "nofile.raw"],
    ["info", "dir"],
    ["info", "-f", "raw", "dir"],
    ["info", "-f", "file", "dir"],
    ["check", "dir"],
    ["info", ""],
    ["info", "-f", "nosuch", "r.raw"],
    ["check", "-f", "nosuch", "r.raw"],
    ["create", "-f", "nosuch", "r.raw", "1M"],
    ["create", "-f", "raw", "dir", "1M"],
    ["create", "-f", "raw", "dir/", "1M"],
    ["create", "-f", "raw", "nodir/x.raw", "1M"],
    ["create", "-f", "raw", "", "1M"],
    # sizes
    ["create", "-f", "raw", "r.raw", "1Q"],
    ["create", "-f", "raw", "r.raw", "99999999E"],
    ["create", "-f", "raw", "r.raw", "8E"],
    ["create", "-f", "raw", "r.raw", "1E"],
    ["create", "-f", "raw", "r.raw", "9223372036854775807"],
    ["create", "-f", "raw", "r.raw", "0x"],
    ["create", "-f", "raw", "r.raw", "1.5.5M"],
    # malformed -o
    ["create", "-f", "raw", "-o", "size=", "r.raw"],
    ["create", "-f", "raw", "-o", "=x", "r.raw", "1M"],
    ["create", "-f", "raw", "-o", ",,,", "r.raw", "1M"],
    ["create", "-f", "raw", "-o", ",", "r.raw", "1M"],
    ["create", "-f", "raw", "-o", "", "r.raw", "1M"],
    ["create", "-f", "raw", "-o", ",size=1M", "r.raw"],
    ["create", "-f", "raw", "-o", "size=1M,", "r.raw"],
    ["create", "-f", "raw", "-o", "size=1M,,,", "r.raw"],
    ["create", "-f", "raw", "-o", "size=1M", "-o", ",", "r.raw"],
    ["create", "-f", "raw", "-o", "size=1M,nocow=maybe", "r.raw"],
    # negative -o sizes: 9.1 says "Value '-1' is out of range for parameter ..." where 7.2
    # said "expects a non-negative number": test_conformance_cli.py::test_negative_size_*
    ["create", "-f", "raw", "-o", "size=1M,preallocation=metadata", "r.raw"],
    # cache modes
    ["check", "-T", "bogus", "r.raw"],
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) or "(empty)" for c in CASES])
def test_bad_input_matches_oracle(ours, oracle, tmp_path, args):
    r = differential(ours, oracle, tmp_path, args)
    assert_one_error(r)


@pytest.mark.parametrize("size", ["-1", "-1M", "-0.5"])
def test_negative_size_uses_91_wording(ours, tmp_path, size):
    populate(tmp_path)
    before = snapshot(tmp_path)
    r = ours.img("create", "-f", "raw", "r.raw", "--", size)
    assert r.rc == 1
    assert r.out == ""
    assert r.err == ("qemu-img: Invalid image size specified. "
                     "Must be between 0 and 9223372036854775807.\n")
    assert snapshot(tmp_path) == before


def test_failed_create_leaves_existing_file_alone(ours, oracle, tmp_path):
    # Option and size errors are found before the target is touched.
    for args in (["create", "-f", "raw", "-o", "size=abc", "r.raw"],
                 ["create", "-f", "raw", "-o", "bogus=1", "r.raw", "1M"],
                 ["create", "-f", "raw", "r.raw", "1Q"],
                 ["create", "-f", "raw", "-o", "preallocation=bogus", "r.raw", "1M"]):
        r = differential(ours, oracle, tmp_path, args)
        assert_one_error(r)
        assert (tmp_path / "r.raw").read_bytes()[:4096] == b"\x42" * 4096


# --- permissions (as user nobody: root ignores file modes) --------------------------------

def nobody_differential(nobody_dir, args, setup):
    work = nobody_dir / "work"
    results = []
    for binary in (nobody_dir / "ours" / "qemu-img", ORACLE_IMG):
        for p in work.iterdir():
            p.unlink()
        setup(work)
        r = as_nobody(binary, args, work)
        results.append((r.rc, r.out, r.err, snapshot(work)))
    assert results[0] == results[1]
    return results[0]


def unreadable(work):
    p = work / "r.raw"
    p.write_bytes(b"\x42" * 4096)
    os.chmod(p, 0o000)


def read_only(work):
    p = work / "r.raw"
    p.write_bytes(b"\x42" * 4096)
    os.chown(p, NOBODY_UID, NOBODY_GID)
    os.chmod(p, 0o444)


@pytest.mark.parametrize("args", [["info", "r.raw"], ["info", "-f", "raw", "r.raw"],
                                  ["check", "r.raw"]])
def test_unreadable_file(nobody_dir, args):
    rc, out, err, _ = nobody_differential(nobody_dir, args, unreadable)
    assert rc == 1
    assert err == "qemu-img: Could not open 'r.raw': Could not open 'r.raw': Permission denied\n"


def test_read_only_file_can_be_read(nobody_dir):
    rc, out, err, _ = nobody_differential(nobody_dir, ["check", "-f", "raw", "r.raw"], read_only)
    assert rc == 63 and err == "qemu-img: This image format does not support checks\n"


@pytest.mark.parametrize("args", [["resize", "-f", "raw", "r.raw", "1M"],
                                  ["create", "-f", "raw", "r.raw", "1M"]])
def test_read_only_target(nobody_dir, args):
    rc, out, err, files = nobody_differential(nobody_dir, args, read_only)
    assert rc == 1
    assert "Permission denied" in err
    assert files["r.raw"] == (4096, b"\x42" * 64)


def test_create_in_read_only_directory(nobody_dir):
    def setup(work):
        os.chmod(work, 0o555)
    try:
        rc, out, err, _ = nobody_differential(nobody_dir, ["create", "-f", "raw", "n.raw", "1M"],
                                              setup)
    finally:
        os.chmod(nobody_dir / "work", 0o777)
    assert rc == 1
    assert err == "qemu-img: n.raw: Could not create 'n.raw': Permission denied\n"


# --- a full disk -------------------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs mounted under the test's directory (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt])
    if r.rc != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.err.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], timeout=30)


FULL_DISK_CASES = [
    ["create", "-f", "raw", "-o", "preallocation=full", "big.raw", "4M"],
    ["create", "-f", "raw", "-o", "preallocation=falloc", "big.raw", "4M"],
    ["create", "-q", "-f", "raw", "-o", "preallocation=full", "big.raw", "4M"],
]


@pytest.mark.parametrize("args", FULL_DISK_CASES, ids=[" ".join(a) for a in FULL_DISK_CASES])
def test_full_disk_create(ours, oracle, small_fs, args):
    results = []
    for tool in (ours, oracle):
        for p in small_fs.iterdir():
            p.unlink()
        r = tool.img(*args, cwd=small_fs)
        results.append((r.rc, r.out, r.err, snapshot(small_fs)))
    assert results[0] == results[1]
    rc, out, err, files = results[0]
    assert rc == 1
    assert "No space left on device" in err
    # Nothing is left that claims to be the image: the file is empty.
    assert files == {"big.raw": (0, b"")}


@pytest.mark.parametrize("prealloc", ["full", "falloc"])
def test_full_disk_resize(ours, oracle, small_fs, prealloc):
    results = []
    for tool in (ours, oracle):
        for p in small_fs.iterdir():
            p.unlink()
        with open(small_fs / "r.raw", "wb") as f:
            f.write(b"\x42" * 4096)
        r = tool.img("resize", "-f", "raw", f"--preallocation={prealloc}", "r.raw", "8M",
                     cwd=small_fs)
        results.append((r.rc, r.out, r.err, snapshot(small_fs)))
    assert results[0] == results[1]
    assert results[0][0] == 1
    assert results[0][3]["r.raw"] == (4096, b"\x42" * 64)  # size unchanged


def run_limited(binary, args, cwd, limit):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    proc = subprocess.run([str(binary), *args], cwd=cwd, capture_output=True, text=True,
                          preexec_fn=preexec, timeout=60)
    return proc


@pytest.mark.parametrize("prealloc", ["off", "falloc", "full"])
def test_file_size_limit(bindir, oracle, tmp_path, prealloc):
    # RLIMIT_FSIZE: the kernel refuses to grow the file (EFBIG) and would kill with SIGXFSZ;
    # qemu-img survives and reports the size as too large for the format.
    results = []
    for binary in (bindir / "qemu-img", ORACLE_IMG):
        p = tmp_path / "l.raw"
        if p.exists():
            p.unlink()
        r = run_limited(binary, ["create", "-q", "-f", "raw", "-o", f"preallocation={prealloc}",
                                 "l.raw", "4M"], tmp_path, 1 << 20)
        assert r.returncode != -signal.SIGXFSZ, "killed by SIGXFSZ"
        results.append((r.returncode, r.stdout, r.stderr, p.stat().st_size))
    assert results[0] == results[1]
    assert results[0][0] == 1
    assert results[0][2] == "qemu-img: l.raw: The image size is too large for file format 'raw'\n"
