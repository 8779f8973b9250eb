# SPDX-License-Identifier: MIT
"""Shared fixtures for the CLI tests.

qimg is run through a symlink named ``qemu-img`` (and qimg-io through
``qemu-io``) so that its messages carry the same program prefix as the
oracle's, and outputs can be compared byte for byte with Debian's qemu-utils.
"""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("QIMG_BUILD", ROOT / "build"))
QIMG = BUILD / "qimg"
QIMG_IO = BUILD / "qimg-io"
ORACLE_IMG = shutil.which("qemu-img")
ORACLE_IO = shutil.which("qemu-io")


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return f"Result(rc={self.rc}, out={self.out!r}, err={self.err!r})"


def run(argv, cwd=None, input=None, env=None, timeout=300):
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, input=input,
                          capture_output=True, text=True, env=env, timeout=timeout)
    return Result(proc)


@pytest.fixture(scope="session")
def bindir(tmp_path_factory):
    """A directory holding qemu-img/qemu-io named symlinks to qimg/qimg-io."""
    d = tmp_path_factory.mktemp("bin")
    (d / "qemu-img").symlink_to(QIMG)
    if QIMG_IO.exists():
        (d / "qemu-io").symlink_to(QIMG_IO)
    return d


def retry_cpu(tool, *argv, tries=10):
    """tool.img(*argv), again while it fails with "Unable to get accurate CPU usage":
    QEMU times PBKDF2 to choose LUKS iteration counts (even to measure) and that timing
    fails now and then on a loaded VM."""
    for _ in range(tries):
        r = tool.img(*argv)
        if "Unable to get accurate CPU usage" not in r.err:
            break
    return r


class Tool:
    """Run one implementation (ours or the oracle) with a fixed working dir."""

    def __init__(self, img, io, cwd):
        self.img_path = img
        self.io_path = io
        self.cwd = cwd

    def img(self, *args, **kw):
        return run([self.img_path, *args], cwd=kw.pop("cwd", self.cwd), **kw)

    def io(self, *args, **kw):
        return run([self.io_path, *args], cwd=kw.pop("cwd", self.cwd), **kw)


@pytest.fixture
def ours(bindir, tmp_path):
    return Tool(bindir / "qemu-img", bindir / "qemu-io", tmp_path)


@pytest.fixture
def oracle(tmp_path):
    if not ORACLE_IMG:
        pytest.skip("qemu-img (the oracle) is not installed")
    return Tool(ORACLE_IMG, ORACLE_IO, tmp_path)


@pytest.fixture
def both(ours, oracle):
    return ours, oracle


def write_pattern(path, chunks, size=None):
    """Write {offset: bytes} into a (sparse) file of the given size."""
    with open(path, "r+b" if os.path.exists(path) else "w+b") as f:
        if size is not None:
            f.truncate(size)
        for off, data in chunks.items():
            f.seek(off)
            f.write(data)


def allocated_bytes(path):
    return os.stat(path).st_blocks * 512


def data_runs(path):
    """(start, end) of a file's data runs (SEEK_DATA/SEEK_HOLE): what is allocated, whatever
    the filesystem's block layout (st_blocks also counts extent-tree blocks, which depend on
    the order of writes)."""
    runs = []
    with open(path, "rb") as f:
        fd, end, pos = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while pos < end:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            pos = os.lseek(fd, start, os.SEEK_HOLE)
            runs.append((start, pos))
    return runs


def strip_child(text, header="Child node '/file':"):
    """qemu-img 9.1's human info adds "Child node '/file':" sections (and vmdk's
    "Child node '/extents.N':") that 7.2 lacks: drop them (and their indented lines)
    so our output compares with the 7.2 oracle's. header "Child node '" drops every
    child's section."""
    out, skip = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith(header) or line.startswith("Child node '/extents."):
            skip = True
            continue
        if skip and line.startswith("    "):
            continue
        skip = False
        out.append(line)
    return "".join(out)


def sector_runs(model):
    """Merge a {sector: pattern or None} model of what an image must hold into
    [offset, length, pattern] runs of adjacent 512-byte sectors (None: undefined)."""
    runs = []
    for sector in sorted(model):
        pattern = model[sector]
        if pattern is None:
            continue
        if runs and runs[-1][0] + runs[-1][1] == sector * 512 and runs[-1][2] == pattern:
            runs[-1][1] += 512
        else:
            runs.append([sector * 512, 512, pattern])
    return runs


# --- as the user nobody (root ignores file modes) ---------------------------------------------

SETPRIV = shutil.which("setpriv")
NOBODY_UID = NOBODY_GID = 65534


@pytest.fixture
def nobody_dir():
    """A world-readable directory the user nobody can work in: ours/qemu-img, a copy of qimg
    (reachable whatever the build dir's modes), and work/, writable by anyone."""
    if not SETPRIV or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run as nobody")
    if not ORACLE_IMG:
        pytest.skip("qemu-img (the oracle) is not installed")
    d = Path(tempfile.mkdtemp(prefix="qimg-nobody-"))
    try:
        os.chmod(d, 0o755)
        ours_dir, work = d / "ours", d / "work"
        ours_dir.mkdir(mode=0o755)
        work.mkdir()
        os.chmod(work, 0o777)
        shutil.copy(QIMG, ours_dir / "qemu-img")
        os.chmod(ours_dir / "qemu-img", 0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def as_nobody(binary, args, cwd, env=None):
    return run([SETPRIV, f"--reuid={NOBODY_UID}", f"--regid={NOBODY_GID}", "--clear-groups",
                binary, *args], cwd=cwd, env=env)
