# SPDX-License-Identifier: MIT
"""Read-only commands never modify their inputs (issue 23 item 4).

Every input file (the image, its backing file, convert's and compare's
sources, dd's input) keeps its bytes and mtime. New formats join by adding a
line to FORMATS.
"""
import hashlib
import os

import pytest

from conftest import ORACLE_IMG, ORACLE_IO, run

pytestmark = pytest.mark.skipif(not ORACLE_IMG, reason="needs Debian's qemu-img")

# format -> can it have a backing file
FORMATS = {"raw": False, "qcow2": True}


def fingerprint(paths):
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), os.stat(p).st_mtime_ns)
            for p in paths}


def make_inputs(d, fmt):
    """The image (over a qcow2 backing file when fmt can have one) and a second one."""
    files = []
    if FORMATS[fmt]:
        run([ORACLE_IMG, "create", "-q", "-f", "qcow2", d / "base.qcow2", "1M"])
        run([ORACLE_IO, "-c", "write -P 1 0 256k", d / "base.qcow2"])
        run([ORACLE_IMG, "create", "-q", "-f", fmt, "-b", "base.qcow2", "-F", "qcow2",
             d / "img", "1M"], cwd=d)
        run([ORACLE_IMG, "snapshot", "-c", "s1", d / "img"])
        files.append(d / "base.qcow2")
    else:
        run([ORACLE_IMG, "create", "-q", "-f", fmt, d / "img", "1M"])
    run([ORACLE_IO, "-f", fmt, "-c", "write -P 2 128k 128k", d / "img"])
    run([ORACLE_IMG, "create", "-q", "-f", fmt, d / "other", "1M"])
    files += [d / "img", d / "other"]
    for p in files:  # an mtime in the past, so a rewrite within the same tick shows
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    return files


def commands(fmt, d):
    cmds = [
        ["info", "-f", fmt, "img"],
        ["info", "--backing-chain", "-f", fmt, "img"],
        ["map", "-f", fmt, "img"],
        ["map", "--output=json", "-f", fmt, "img"],
        ["compare", "-f", fmt, "-F", fmt, "img", "other"],
        ["convert", "-f", fmt, "-O", "qcow2", "img", str(d / "out.qcow2")],
        ["convert", "-f", fmt, "-O", "raw", "img", "other", str(d / "out2.raw")],
        ["measure", "-f", fmt, "-O", "qcow2", "img"],
        ["dd", "-f", fmt, "-O", "raw", "if=img", f"of={d / 'dd.raw'}"],
        ["bench", "-f", fmt, "-c", "20", "img"],
    ]
    if fmt == "qcow2":
        cmds += [["check", "-f", fmt, "img"], ["snapshot", "-l", "img"]]
    return cmds


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_read_only_commands_leave_inputs_alone(tmp_path, ours, fmt):
    files = make_inputs(tmp_path, fmt)
    for argv in commands(fmt, tmp_path):
        before = fingerprint(files)
        r = ours.img(*argv)
        assert r.rc in (0, 1), (argv, r)  # compare answers 1 for "differ"
        assert fingerprint(files) == before, f"{argv} modified an input"


def test_inputs_fingerprint_notices_a_write(tmp_path, ours):
    """The check above can fail: a write to the image changes its fingerprint."""
    files = make_inputs(tmp_path, "qcow2")
    before = fingerprint(files)
    ours.io("-c", "write -P 3 0 4k", "img")
    assert fingerprint(files) != before
