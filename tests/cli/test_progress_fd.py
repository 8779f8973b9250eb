# SPDX-License-Identifier: MIT
"""--progress=fd:N / --progress-fd=N (a qimg extension, issue 22): one line
"<done>/<total>" in bytes per change on file descriptor N, done never going back,
ending at total/total; -p's human bar stays. Under the qemu-img name the options do
not exist (qemu-img 9.1's exact option set)."""
import os
import re
import subprocess

import pytest

from conftest import QIMG, run

MiB = 1 << 20


def run_with_fd(args, cwd, option="fd"):
    """Run qimg with a pipe's write end as the progress fd: (result, lines)."""
    r, w = os.pipe()
    spec = f"--progress=fd:{w}" if option == "fd" else f"--progress-fd={w}"
    argv = [str(QIMG), args[0], spec] + [str(a) for a in args[1:]]
    proc = subprocess.Popen(argv, cwd=cwd, pass_fds=(w,), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    os.close(w)
    with os.fdopen(r, "r") as f:
        data = f.read()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (argv, out, err)
    return out, data.splitlines()


def assert_progress(lines):
    assert lines, "no progress lines"
    pairs = []
    for line in lines:
        m = re.fullmatch(r"(\d+)/(\d+)", line)
        assert m, line
        pairs.append((int(m.group(1)), int(m.group(2))))
    dones = [d for d, _ in pairs]
    assert dones == sorted(dones), lines  # monotonic
    assert all(d <= t for d, t in pairs), lines
    assert len(set(pairs)) == len(pairs), lines  # one line per change
    done, total = pairs[-1]
    assert done == total, lines
    return pairs


@pytest.fixture
def images(oracle, tmp_path):
    """a.raw: 16 MiB, data in four places; a.qcow2 its copy; top over base for commit/rebase."""
    raw = tmp_path / "a.raw"
    with open(raw, "wb") as f:
        f.truncate(16 * MiB)
        for i, off in enumerate((0, 3 * MiB, 9 * MiB, 15 * MiB)):
            f.seek(off)
            f.write(bytes([i + 1]) * MiB)
    assert oracle.img("convert", "-f", "raw", "-O", "qcow2", raw, tmp_path / "a.qcow2").rc == 0
    for name in ("base", "base2"):
        assert oracle.img("create", "-q", "-f", "qcow2", tmp_path / f"{name}.qcow2", "16M").rc == 0
    assert oracle.io("-f", "qcow2", "-c", "write -P 7 0 4M", tmp_path / "base.qcow2").rc == 0
    assert oracle.img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                      tmp_path / "top.qcow2").rc == 0
    assert oracle.io("-f", "qcow2", "-c", "write -P 9 2M 6M", tmp_path / "top.qcow2").rc == 0
    return tmp_path


COMMANDS = {
    "convert": ["convert", "-f", "raw", "-O", "qcow2", "a.raw", "out.qcow2"],
    "commit": ["commit", "top.qcow2"],
    "rebase": ["rebase", "-b", "base2.qcow2", "-F", "qcow2", "top.qcow2"],
    "compare": ["compare", "a.raw", "a.qcow2"],
    "dd": ["dd", "-O", "raw", "bs=1M", "if=a.raw", "of=out.raw"],
    "amend": ["amend", "-o", "compat=0.10", "a.qcow2"],
    "checksum": ["checksum", "a.qcow2"],
}


@pytest.mark.parametrize("option", ["fd", "fd-equals"])
@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_progress_lines(images, cmd, option):
    out, lines = run_with_fd(COMMANDS[cmd], images, "fd" if option == "fd" else "progress-fd")
    pairs = assert_progress(lines)
    total = pairs[-1][1]
    if cmd in ("compare", "checksum", "rebase", "amend"):
        assert total == 16 * MiB, lines  # the virtual size
    if cmd in ("convert", "dd", "checksum"):
        assert total > 0 and len(pairs) >= 2, lines


def test_progress_fd_with_human_bar(images):
    out, lines = run_with_fd(["convert", "-p", "-f", "raw", "-O", "raw", "a.raw", "o.raw"],
                             images)
    assert_progress(lines)
    assert "(100.00/100%)" in out  # -p keeps qemu-img's bar on stdout


def test_progress_fd_checksum_sparse(oracle, tmp_path):
    """Zero runs move the figure too: an empty 1 TiB image reports up to its size."""
    assert oracle.img("create", "-q", "-f", "qcow2", tmp_path / "e.qcow2", "1T").rc == 0
    out, lines = run_with_fd(["checksum", "e.qcow2"], tmp_path)
    assert assert_progress(lines)[-1] == (1 << 40, 1 << 40)


def test_bad_progress_fd(tmp_path):
    r = run([QIMG, "convert", "--progress=fd:99", "a", "b"], cwd=tmp_path)
    assert r.rc == 1 and r.err.startswith("qimg: Invalid progress file descriptor 99: "), r
    r = run([QIMG, "convert", "--progress=3", "a", "b"], cwd=tmp_path)
    assert r.rc == 1 and "--progress must be fd:N" in r.err, r
    r = run([QIMG, "compare", "--progress-fd=x", "a", "b"], cwd=tmp_path)
    assert r.rc == 1 and "Invalid progress file descriptor 'x'" in r.err, r


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_qemu_img_name_has_no_progress_fd(ours, oracle, images, cmd):
    if cmd == "checksum":
        args = ["checksum", "a.qcow2"]  # the command itself does not exist there
    else:
        args = [COMMANDS[cmd][0], "--progress=fd:2"] + COMMANDS[cmd][1:]
    mine, theirs = ours.img(*args, cwd=images), oracle.img(*args, cwd=images)
    assert (mine.rc, mine.out, mine.err) == (theirs.rc, theirs.out, theirs.err)
    assert mine.rc == 1
