# SPDX-License-Identifier: MIT
"""Image locking, in both directions against QEMU's tools.

QEMU locks single bytes of an image with shared OFD locks: byte 100+i held
means "I use permission i", byte 200+i "nobody else may use permission i"
(consistent read, write, write unchanged, resize). qimg takes the same bytes,
so a qemu-img or qemu-io that holds an image stops qimg with qemu-img's own
message, and an image qimg holds stops QEMU's tools.

The holders are real processes: qemu-io reading commands from a pipe we keep
open, qemu-nbd serving on a unix socket in the test's directory, and our
tests/unit/lockholder (libqimg, kept open until its stdin closes). A Python
byte holder takes arbitrary lock bytes to pin down what each command asks for.
Every background process is stopped by the fixture's finalizer, with timeouts.
"""
import fcntl
import os
import select
import shutil
import struct
import subprocess
import time

import pytest

from conftest import BUILD, ORACLE_IMG, ORACLE_IO, QIMG, run

QEMU_NBD = shutil.which("qemu-nbd")
LOCKHOLDER = BUILD / "tests" / "unit" / "lockholder"

LOCKED_RESIZE = ('Failed to get "resize" lock\n'
                 'Is another process using the image [{f}]?\n')
LOCKED_WRITE = ('Failed to get "write" lock\n'
                'Is another process using the image [{f}]?\n')
LOCKED_SHARED_WRITE = ('Failed to get shared "write" lock\n'
                       'Is another process using the image [{f}]?\n')
LOCKED_SHARED_RESIZE = ('Failed to get shared "resize" lock\n'
                        'Is another process using the image [{f}]?\n')

needs_oracle = pytest.mark.skipif(not ORACLE_IMG or not ORACLE_IO,
                                  reason="qemu-img/qemu-io (the oracle) are not installed")


def held_bytes(path):
    """The lock bytes anyone holds on path, from /proc/locks (ranges expanded)."""
    ino = os.stat(path).st_ino
    held = set()
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if fields[1] == "->":  # a blocked waiter
                continue
            dev_ino, start, end = fields[5], fields[6], fields[7]
            if int(dev_ino.rsplit(":", 1)[1]) != ino:
                continue
            end = int(start) if end == "EOF" else int(end)
            held.update(range(int(start), end + 1))
    return held


class Background:
    """Long-running holders; the finalizer ends each one it started."""

    def __init__(self):
        self.procs = []

    def start(self, argv, cwd):
        proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def wait_locked(self, proc, path, want=None, timeout=60):
        """Wait until path carries locks (exactly `want` when given) while proc runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")
                pytest.fail(f"holder exited early ({proc.returncode}): {err}")
            held = held_bytes(path)
            if held and (want is None or held == want):
                return held
            time.sleep(0.02)
        pytest.fail(f"holder never locked {path} (held: {sorted(held_bytes(path))})")

    def wait_ready(self, proc, timeout=60):
        """lockholder prints "ready" once the image is open."""
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline().decode() if ready else ""
        if line != "ready\n":
            proc.kill()
            pytest.fail("lockholder did not open the image: " +
                        proc.stderr.read().decode(errors="replace"))

    def stop(self, proc):
        if proc.poll() is None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass

    def stop_all(self):
        for proc in self.procs:
            self.stop(proc)
        self.procs = []


@pytest.fixture
def bg():
    b = Background()
    yield b
    b.stop_all()


class ByteHolder:
    """Take arbitrary image lock bytes from this process (an open file description)."""

    def __init__(self, path, lock_bytes):
        self.fd = os.open(path, os.O_RDONLY)
        for b in lock_bytes:
            fl = struct.pack("hhqqi", fcntl.F_RDLCK, os.SEEK_SET, b, 1, 0)
            fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, fl)

    def close(self):
        os.close(self.fd)


def new_raw(tmp_path, name="r.raw", size="1M"):
    r = run([QIMG, "create", "-q", "-f", "raw", tmp_path / name, size])
    assert r.rc == 0, r
    return tmp_path / name


def new_qcow2(tmp_path, name="q.qcow2"):
    r = run([ORACLE_IMG, "create", "-q", "-f", "qcow2", tmp_path / name, "1M"])
    assert r.rc == 0, r
    return tmp_path / name


def same(a, b):
    assert (a.rc, a.err) == (b.rc, b.err)


# --- What each side holds --------------------------------------------------------------------

@needs_oracle
@pytest.mark.parametrize("qemu_io_args,holder_args,expected", [
    (["-r", "-f", "raw"], ["-f", "raw"], {100}),
    (["-f", "raw"], ["-w", "-f", "raw"], {100, 101}),
    (["-r", "-U", "-f", "raw"], ["-U", "-f", "raw"], {100}),
    (["-f", "file"], ["-w", "-f", "file"], {100, 101}),
    (["-r", "-f", "file"], ["-f", "file"], {100}),
    (["-t", "none", "-f", "raw"], ["-w", "-t", "none", "-f", "raw"], {100, 101}),
    (["-t", "unsafe", "-f", "raw"], ["-w", "-t", "unsafe", "-f", "raw"], {100, 101}),
], ids=["raw-ro", "raw-rw", "raw-U", "file-rw", "file-ro", "cache-none", "cache-unsafe"])
def test_held_bytes_match_qemu_io(bg, tmp_path, qemu_io_args, holder_args, expected):
    img = new_raw(tmp_path)
    q = bg.start([ORACLE_IO, *qemu_io_args, img], tmp_path)
    theirs = bg.wait_locked(q, img, expected)
    bg.stop(q)
    assert held_bytes(img) == set()
    h = bg.start([LOCKHOLDER, *holder_args, img], tmp_path)
    bg.wait_ready(h)
    assert held_bytes(img) == theirs == expected
    bg.stop(h)
    assert held_bytes(img) == set()  # closing the image releases every byte


def test_held_bytes_for_resize(bg, tmp_path):
    # qemu-img resize asks for consistent read, write and resize and shares everything
    # (measured with the byte holder below: 200, 201 and 203 stop it, 10x do not).
    img = new_raw(tmp_path)
    h = bg.start([LOCKHOLDER, "-R", "-f", "raw", img], tmp_path)
    bg.wait_ready(h)
    assert held_bytes(img) == {100, 101, 103}


def test_locking_off_holds_nothing(bg, tmp_path):
    img = new_raw(tmp_path)
    h = bg.start([LOCKHOLDER, "-w", "--image-opts",
                  f"driver=raw,file.filename={img},file.locking=off"], tmp_path)
    bg.wait_ready(h)
    assert held_bytes(img) == set()


# --- QEMU holds, qimg runs ---------------------------------------------------------------------

@pytest.fixture
def qemu_nbd_raw(bg, tmp_path):
    if not QEMU_NBD:
        pytest.skip("qemu-nbd is not installed")
    img = new_raw(tmp_path)
    sock = tmp_path / "nbd.sock"  # a unix socket in the test's directory, never the network
    if len(str(sock)) >= 100:
        pytest.skip("temporary directory path too long for a unix socket")
    p = bg.start([QEMU_NBD, "-k", sock, "-f", "raw", img.name], tmp_path)
    bg.wait_locked(p, img, {100, 101, 203})
    return img


@needs_oracle
def test_resize_while_qemu_nbd_serves(ours, oracle, qemu_nbd_raw, tmp_path):
    a = ours.img("resize", "-f", "raw", "r.raw", "+1M")
    b = oracle.img("resize", "-f", "raw", "r.raw", "+1M")
    assert a.rc == 1
    assert a.err == "qemu-img: Could not open 'r.raw': " + LOCKED_RESIZE.format(f="r.raw")
    same(a, b)
    assert os.path.getsize(qemu_nbd_raw) == 1 << 20


@needs_oracle
def test_create_over_image_qemu_nbd_serves(ours, oracle, qemu_nbd_raw, tmp_path):
    qemu_nbd_raw.write_bytes(b"\x55" * (1 << 20))
    a = ours.img("create", "-f", "raw", "r.raw", "2M")
    b = oracle.img("create", "-f", "raw", "r.raw", "2M")
    assert a.rc == 1
    assert a.err == "qemu-img: r.raw: " + LOCKED_RESIZE.format(f="r.raw")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    # The image in use is left alone.
    assert qemu_nbd_raw.read_bytes() == b"\x55" * (1 << 20)


@needs_oracle
def test_read_only_commands_while_qemu_nbd_serves(ours, oracle, qemu_nbd_raw):
    for args in (["info", "-f", "raw", "r.raw"], ["info", "r.raw"], ["info", "-U", "r.raw"],
                 ["check", "r.raw"], ["check", "-f", "raw", "r.raw"]):
        a, b = ours.img(*args), oracle.img(*args)
        same(a, b)


@needs_oracle
def test_writer_while_qemu_io_writes_raw(ours, oracle, bg, tmp_path):
    # A raw image shares everything: a second writer and a creator get through.
    img = new_raw(tmp_path)
    q = bg.start([ORACLE_IO, "-f", "raw", img], tmp_path)
    bg.wait_locked(q, img, {100, 101})
    for args in (["info", "r.raw"], ["check", "r.raw"], ["create", "-f", "raw", "r.raw", "1M"]):
        a, b = ours.img(*args), oracle.img(*args)
        same(a, b)
        if args[0] != "info":  # 9.1's info adds a "Child node" section 7.2 lacks
            assert a.out == b.out
    h = bg.start([LOCKHOLDER, "-w", "-f", "raw", img], tmp_path)
    bg.wait_ready(h)
    assert held_bytes(img) == {100, 101}


@needs_oracle
def test_qcow2_in_use_by_qemu_io(ours, oracle, bg, tmp_path):
    img = new_qcow2(tmp_path)
    q = bg.start([ORACLE_IO, "-f", "qcow2", img], tmp_path)
    bg.wait_locked(q, img, {100, 101, 103, 201, 203})
    # Create over it: the creator wants "write", which the qcow2 user keeps to itself.
    a = ours.img("create", "-f", "raw", "q.qcow2", "1M")
    b = oracle.img("create", "-f", "raw", "q.qcow2", "1M")
    assert a.err.endswith("qemu-img: q.qcow2: " + LOCKED_WRITE.format(f="q.qcow2"))
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    # Read-only access as raw needs nothing the user refuses.
    for args in (["info", "-f", "raw", "q.qcow2"], ["check", "-f", "raw", "q.qcow2"]):
        same(ours.img(*args), oracle.img(*args))
    # A second writer (through libqimg) is refused with QEMU's message.
    h = bg.start([LOCKHOLDER, "-w", "-f", "raw", img], tmp_path)
    h.stdin.close()
    assert h.wait(timeout=10) == 1
    assert h.stderr.read().decode().endswith(LOCKED_WRITE.format(f=img))
    r = run([ORACLE_IO, "-f", "raw", "-c", "quit", img])
    assert "can't open device " + str(img) + ": " + LOCKED_WRITE.format(f=img) in r.err


@needs_oracle
def test_qcow2_info_needs_force_share(ours, oracle, bg, tmp_path):
    img = new_qcow2(tmp_path)
    q = bg.start([ORACLE_IO, "-f", "qcow2", img], tmp_path)
    bg.wait_locked(q, img, {100, 101, 103, 201, 203})
    a, b = ours.img("info", "q.qcow2"), oracle.img("info", "q.qcow2")
    assert a.rc == 1
    assert a.err == "qemu-img: Could not open 'q.qcow2': " + LOCKED_SHARED_WRITE.format(f="q.qcow2")
    same(a, b)
    a = ours.img("info", "-U", "q.qcow2")
    assert a.rc == 0 and a.err == ""


# --- qimg holds, QEMU runs ---------------------------------------------------------------------

@needs_oracle
def test_qemu_convert_refused_while_qimg_writes(bg, oracle, tmp_path):
    img = new_raw(tmp_path)
    h = bg.start([LOCKHOLDER, "-w", "-f", "raw", img], tmp_path)
    bg.wait_ready(h)
    # qemu-img convert keeps writers off its source; our writer is one.
    r = oracle.img("convert", "-f", "raw", "-O", "raw", "r.raw", "o.raw")
    assert r.rc == 1
    assert r.err == "qemu-img: Could not open 'r.raw': " + LOCKED_SHARED_WRITE.format(f="r.raw")
    # -U shares everything and gets through.
    r = oracle.img("convert", "-U", "-f", "raw", "-O", "raw", "r.raw", "o.raw")
    assert r.rc == 0, r
    # Raw shares everything: qemu-io can write at the same time, info reads.
    r = run([ORACLE_IO, "-f", "raw", "-c", "write 0 512", img])
    assert r.rc == 0 and "wrote 512/512" in r.out
    assert oracle.img("info", "r.raw").rc == 0


@needs_oracle
def test_qemu_create_refused_while_qimg_resizes(bg, oracle, tmp_path):
    img = new_raw(tmp_path)
    img.write_bytes(b"\xaa" * 4096)
    h = bg.start([LOCKHOLDER, "-R", "-f", "raw", img], tmp_path)
    bg.wait_ready(h)
    r = oracle.img("create", "-f", "raw", "r.raw", "1M")
    assert r.rc == 1
    assert r.err == "qemu-img: r.raw: " + LOCKED_SHARED_RESIZE.format(f="r.raw")
    assert img.read_bytes() == b"\xaa" * 4096
    bg.stop(h)
    assert oracle.img("create", "-q", "-f", "raw", "r.raw", "1M").rc == 0


@needs_oracle
def test_qemu_refused_while_qimg_holds_qcow2(bg, ours, oracle, tmp_path):
    img = new_qcow2(tmp_path)
    h = bg.start([LOCKHOLDER, "-w", img], tmp_path)
    bg.wait_ready(h)
    assert held_bytes(img) == {100, 101, 103, 201, 203}
    r = oracle.img("info", "q.qcow2")
    assert r.err == "qemu-img: Could not open 'q.qcow2': " + LOCKED_SHARED_WRITE.format(f="q.qcow2")
    assert oracle.img("info", "-U", "q.qcow2").rc == 0
    r = run([ORACLE_IO, "-f", "qcow2", "-c", "quit", img])
    assert LOCKED_WRITE.format(f=img) in r.err


@needs_oracle
def test_locking_off_lets_qemu_through(bg, oracle, tmp_path):
    img = new_raw(tmp_path)
    h = bg.start([LOCKHOLDER, "-R", "--image-opts",
                  f"driver=raw,file.filename={img},file.locking=off"], tmp_path)
    bg.wait_ready(h)
    assert oracle.img("create", "-q", "-f", "raw", "r.raw", "1M").rc == 0


def test_two_qimg_processes(bg, ours, tmp_path):
    # Our own processes exclude each other the same way.
    assert ours.img("create", "-q", "-f", "raw", "r.raw", "1M").rc == 0
    img = tmp_path / "r.raw"
    h = bg.start([LOCKHOLDER, "-R", "-f", "raw", img], tmp_path)
    bg.wait_ready(h)
    r = ours.img("create", "-f", "raw", "r.raw", "1M")
    assert r.rc == 1
    assert r.err == "qemu-img: r.raw: " + LOCKED_SHARED_RESIZE.format(f="r.raw")
    r = ours.img("info", "r.raw")
    assert r.rc == 0
    bg.stop(h)
    assert ours.img("create", "-q", "-f", "raw", "r.raw", "1M").rc == 0


# --- Lock byte by lock byte: what each command asks for and refuses ----------------------------

BYTE_SETS = [[100], [101], [102], [103], [200], [201], [202], [203],
             [200, 201], [201, 203], [201, 103], [203, 103]]

COMMANDS = [
    ["info", "r.raw"],
    ["info", "-f", "raw", "r.raw"],
    ["info", "-U", "r.raw"],
    ["info", "-f", "file", "r.raw"],
    ["info", "--image-opts", "driver=raw,file.filename=r.raw,file.locking=off"],
    ["check", "r.raw"],
    ["check", "-f", "raw", "-T", "none", "r.raw"],
    ["create", "-f", "raw", "r.raw", "1M"],
    ["create", "-q", "-f", "file", "r.raw", "1M"],
    ["resize", "-f", "raw", "r.raw", "2M"],
    ["resize", "-f", "raw", "--shrink", "r.raw", "512K"],
    ["map", "r.raw"],
    ["compare", "r.raw", "r.raw"],
    ["convert", "-f", "raw", "-O", "raw", "r.raw", "o.raw"],
    ["convert", "-U", "-f", "raw", "-O", "raw", "r.raw", "o.raw"],
    ["convert", "-n", "-f", "raw", "-O", "raw", "s.raw", "r.raw"],
    ["dd", "-f", "raw", "-O", "raw", "if=r.raw", "of=o.raw"],
    ["measure", "-f", "raw", "-O", "raw", "r.raw"],
]


def run_under_lock(tool, tmp_path, args, lock_bytes):
    for p in tmp_path.iterdir():
        p.unlink()
    new_raw(tmp_path)
    new_raw(tmp_path, "s.raw")
    holder = ByteHolder(tmp_path / "r.raw", lock_bytes)
    try:
        r = tool.img(*args)
    finally:
        holder.close()
    return r


@needs_oracle
@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_lock_bytes_match_oracle(ours, oracle, tmp_path, args):
    for lock_bytes in BYTE_SETS:
        a = run_under_lock(ours, tmp_path, args, lock_bytes)
        b = run_under_lock(oracle, tmp_path, args, lock_bytes)
        assert (lock_bytes, a.rc, a.err) == (lock_bytes, b.rc, b.err)
