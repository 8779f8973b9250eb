# SPDX-License-Identifier: MIT
"""Image locking against QEMU's own processes (issue 23 item 5).

An image a running qemu-nbd (Debian's, write mode, on a unix socket) holds
cannot be opened for writing by qimg, with QEMU's message; an image qimg-io
holds cannot be written by Debian's qemu-img; -U still reads in both cases.
"""
import shutil
import subprocess
import time

import pytest

from conftest import ORACLE_IMG, QIMG_IO, run

QEMU_NBD = shutil.which("qemu-nbd")


def locked_message(prog, name):
    return (f"{prog}: Could not open '{name}': Failed to get \"write\" lock\n"
            f"Is another process using the image [{name}]?\n")


def wait_locked(path, holder=None, errfile=None, seconds=60):
    """Until the holder has the image open for writing: QEMU's write-permission lock byte
    (101) shows in /proc/locks. Watched, not probed: an opener of our own racing the holder's
    open would make the holder fail to get its lock (seen on a loaded machine)."""
    from test_locking import held_bytes
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if 101 in held_bytes(path):
            return
        if holder is not None and holder.poll() is not None:
            break
        time.sleep(0.05)
    why = errfile.read_text() if errfile else ""
    raise AssertionError(f"the holder never locked the image: {why}")


@pytest.fixture
def image(tmp_path):
    if not ORACLE_IMG:
        pytest.skip("needs Debian's qemu-img")
    run([ORACLE_IMG, "create", "-q", "-f", "qcow2", tmp_path / "a.qcow2", "1M"])
    return tmp_path / "a.qcow2"


@pytest.mark.skipif(not QEMU_NBD, reason="needs Debian's qemu-nbd")
def test_qemu_nbd_holds_image(tmp_path, ours, image):
    sock = tmp_path / "nbd.sock"
    err = open(tmp_path / "nbd.err", "w")
    nbd = subprocess.Popen([QEMU_NBD, "-k", str(sock), "-f", "qcow2", str(image)],
                           stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    try:
        wait_locked(image, nbd, tmp_path / "nbd.err")
        for argv in (["resize", "a.qcow2", "2M"], ["snapshot", "-c", "s", "a.qcow2"],
                     ["amend", "-o", "compat=0.10", "a.qcow2"]):
            mine, theirs = ours.img(*argv), run([ORACLE_IMG, *argv], cwd=tmp_path)
            assert (mine.rc, mine.out, mine.err) == (theirs.rc, theirs.out, theirs.err)
            assert mine.rc == 1 and mine.err == locked_message("qemu-img", "a.qcow2")
        r = ours.io("-c", "write 0 4k", "a.qcow2")
        assert r.rc == 1 and 'Failed to get "write" lock' in r.err
        # reads: info without -U wants a shared read lock qemu-nbd refuses; -U works
        mine, theirs = ours.img("info", "a.qcow2"), run([ORACLE_IMG, "info", "a.qcow2"],
                                                        cwd=tmp_path)
        assert (mine.rc, mine.err) == (theirs.rc, theirs.err)
        assert ours.img("info", "-U", "a.qcow2").rc == 0
        assert ours.img("check", "-U", "a.qcow2").rc == 0
        assert ours.io("-U", "-r", "-c", "read 0 4k", "a.qcow2").rc == 0
    finally:
        nbd.terminate()
        nbd.wait(timeout=10)
    assert ours.img("resize", "a.qcow2", "2M").rc == 0  # released


def test_qimg_io_holds_image(tmp_path, ours, image):
    holder = subprocess.Popen([str(QIMG_IO), "-c", "sleep 30000", str(image)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_locked(image, holder)
        r = run([ORACLE_IMG, "resize", "a.qcow2", "2M"], cwd=tmp_path)
        assert r.rc == 1 and r.err == locked_message("qemu-img", "a.qcow2")
        assert ours.img("resize", "a.qcow2", "2M").err == r.err
        assert run([ORACLE_IMG, "info", "-U", "a.qcow2"], cwd=tmp_path).rc == 0
        assert run([ORACLE_IMG, "check", "-U", "a.qcow2"], cwd=tmp_path).rc == 0
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert run([ORACLE_IMG, "resize", "a.qcow2", "2M"], cwd=tmp_path).rc == 0
