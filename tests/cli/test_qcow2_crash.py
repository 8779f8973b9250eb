# SPDX-License-Identifier: MIT
"""Crash safety of the qcow2 driver: leaks allowed, corruption never.

qimg-io runs a script of writes on an image made by qimg and `abort`s (the
process ends at once, nothing is flushed or closed) after each command in
turn; then the oracle's `qemu-img check` must find no corruption (exit 0, or
3 for leaks) and every write acknowledged before the abort must read back
through the oracle's qemu-io. A `qimg convert -O qcow2` is killed with
SIGKILL at several moments and its target checked the same way.

Images with lazy_refcounts=on are left dirty on purpose; their crashes are
compared with QEMU's in test_qcow2_lazy.py.
"""
import os
import signal
import subprocess
import time

import pytest

from conftest import ORACLE_IMG, ORACLE_IO, QIMG, QIMG_IO, run, sector_runs

pytestmark = [
    pytest.mark.skipif(not QIMG_IO.exists(), reason="qimg-io is not built"),
    pytest.mark.skipif(not ORACLE_IO, reason="qemu-io (the oracle) is not installed"),
]

K, M = 1024, 1 << 20

# name: (create options, size, script)
SCRIPTS = {
    "alloc_cow_zero_discard": ("", "4M", [
        "write -P 0x11 0 64k", "write -P 0x12 100k 3k", "write -P 0x13 1M 200k",
        "write -z 1M 64k", "write -P 0x14 70k 1k", "discard 0 64k", "write -z -u 2M 128k",
        "write -P 0x15 3M 64k"]),
    "compressed": ("", "2M", [
        "write -c -P 0x21 0 64k", "write -c -P 0x22 64k 64k", "write -P 0x23 192k 64k",
        "write -c -P 0x24 256k 64k", "discard 64k 64k", "write -c -P 0x25 512k 64k"]),
    # 512-byte clusters and 64-bit refcounts: 64 refcounts per block, so these writes
    # allocate several refcount blocks and grow the refcount table.
    "refcount_growth": ("cluster_size=512,refcount_bits=64", "16M", [
        "write -P 0x31 0 256k", "write -P 0x32 1M 1M", "write -P 0x33 4M 2M",
        "write -P 0x34 300k 1k", "discard 1M 512k", "write -P 0x35 8M 1M"]),
    # A 512-byte-cluster image grown past its L1 table (truncate), then written there.
    "l1_growth": ("cluster_size=512", "1M", [
        "write -P 0x41 0 64k", "truncate 64M", "write -P 0x42 60M 64k",
        "write -P 0x43 32M 1k", "write -z 60M 4k"]),
    "extended_l2": ("extended_l2=on", "2M", [
        "write -P 0x51 2k 3k", "write -P 0x52 64k 64k", "write -z 66k 2k",
        "discard 128k 64k", "write -P 0x53 130k 1k"]),
    "v2": ("compat=0.10", "2M", [
        "write -P 0x61 0 64k", "write -P 0x62 70k 1k", "write -z 0 64k",
        "write -c -P 0x63 256k 64k"]),
}


def size_of(s):
    return int(s[:-1]) * {"k": K, "M": M}[s[-1]] if s[-1] in "kM" else int(s)


def parse(c):
    w = c.split()
    if w[0] == "truncate":
        return "truncate", None, size_of(w[1]), 0
    pat, flags, i = None, set(), 1
    while w[i].startswith("-"):
        if w[i] == "-P":
            pat = int(w[i + 1], 0)
            i += 2
        else:
            flags.add(w[i])
            i += 1
    kind = "zero" if w[0] == "write" and "-z" in flags else w[0]
    return kind, (0 if kind == "zero" else pat), size_of(w[i]), size_of(w[i + 1])


def expected(cmds):
    """[(off, len, pattern)] known after cmds all completed."""
    known = {}
    for c in cmds:
        kind, pat, off, ln = parse(c)
        if kind == "truncate":
            continue
        for s in range(off // 512, (off + ln) // 512):
            known[s] = pat if kind in ("write", "zero") else None
    return sector_runs(known)


def assert_consistent(d, img, what, allow_dirty=False):
    r = run([ORACLE_IMG, "check", img], cwd=d)
    text = r.out + r.err
    assert r.rc in (0, 3), f"{what}: {r}"
    assert "ERROR" not in text and "corrupt" not in text.lower(), f"{what}: {r}"
    return r


def assert_reads_back(d, img, cmds, what):
    ranges = expected(cmds)
    if not ranges:
        return
    args = []
    for off, ln, p in ranges:
        args += ["-c", f"read -q -P {p} {off} {ln}"]
    # -r: the oracle must not repair (a dirty image is repaired on read-write open)
    r = run([ORACLE_IO, "-r", "-f", "qcow2", *args, img], cwd=d)
    assert r.rc == 0 and not (r.out + r.err).strip(), f"{what}: data lost: {r}"


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_abort_after_each_command(tmp_path, name):
    opts, size, cmds = SCRIPTS[name]
    for i in range(len(cmds) + 1):
        d = tmp_path / f"at{i}"
        d.mkdir()
        args = ["create", "-q", "-f", "qcow2"] + (["-o", opts] if opts else []) + ["t.qcow2", size]
        r = run([QIMG, *args], cwd=d)
        assert r.rc == 0, r
        script = [x for c in cmds[:i] + ["abort"] for x in ("-c", c)]
        r = run([QIMG_IO, "-f", "qcow2", *script, "t.qcow2"], cwd=d)
        assert r.rc != 0 and "failed" not in r.out + r.err, f"{name}@{i}: {r}"
        what = f"{name}: abort after {i} commands"
        assert_consistent(d, "t.qcow2", what)
        assert_reads_back(d, "t.qcow2", cmds[:i], what)


def test_kill_convert(tmp_path):
    """SIGKILL a running convert at several moments: the target is never corrupt."""
    src = tmp_path / "src.raw"
    with open(src, "wb") as f:
        for i in range(96):
            f.write(bytes([i + 1]) * (512 * K) + os.urandom(512 * K))
    checked = 0
    for delay in (0.02, 0.05, 0.1, 0.2, 0.4):
        dst = tmp_path / f"dst-{delay}.qcow2"
        p = subprocess.Popen([str(QIMG), "convert", "-O", "qcow2", "-o", "cluster_size=4096",
                              str(src), str(dst)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if p.returncode == 0 or not dst.exists() or dst.stat().st_size < 512:
            continue  # finished first, or killed before the header existed
        r = run([ORACLE_IMG, "check", "-U", dst.name], cwd=tmp_path)
        if "Could not open" in r.err or "Image is not in qcow2 format" in r.err:
            continue  # killed while create wrote the initial metadata
        assert r.rc in (0, 3) and "ERROR" not in r.out, f"killed after {delay}s: {r}"
        checked += 1
    assert checked, "convert was never caught mid-way"
