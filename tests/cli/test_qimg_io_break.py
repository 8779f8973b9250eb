# SPDX-License-Identifier: MIT
"""qemu-io's break, remove_break, resume and wait_break against the oracle.

A breakpoint is set on blkdebug (``blkdebug::IMAGE`` puts the filter under
the format): the next request raising the event stops there until resumed.
Scripts are compared with Debian's qemu-io 7.2 for output, exit status and
the resulting image (byte for byte for raw; same guest content and a clean
``qemu-img check`` for qcow2).

qemu-io prints an aio request's report when its main loop sees the
completion; when two requests complete before the same poll point their
order depends on QEMU's thread pool, so runs of consecutive reports are
compared as sets. The tests pass ``-t writeback`` (qemu-io 7.2 defaults to
writethrough, which adds flushes after every write; qimg-io follows 9.1).

Where qemu-io would wait forever (wait_break for a breakpoint nothing can
reach, aio_flush or exit with a request still suspended, a command blocked
behind one) qimg-io must not: those run ours only, under a timeout.
"""
import re
import subprocess

import pytest

from conftest import ORACLE_IMG, QIMG_IO

pytestmark = pytest.mark.skipif(not QIMG_IO.exists(), reason="qimg-io is not built")

TIMEOUT = 60  # seconds; a hang fails the test instead of the suite
REPORT = re.compile(r"^(read|wrote) \d+/\d+ bytes at offset \d+$")


def normalize(text):
    """Timings vary; a run of consecutive aio reports is compared as a set."""
    text = re.sub(r"\d+(\.\d+)? \S+/sec and [0-9.]+ ops/sec", "X", text)
    text = re.sub(r"(\d+:)?\d\d:\d\d\.\d\d|\d\d\.\d\d sec", "T", text)
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        run = []
        while i + 1 < len(lines) and REPORT.match(lines[i]):
            run.append(lines[i] + "\n" + lines[i + 1])
            i += 2
        if run:
            out.extend(sorted(run))
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out)


def cmds(*lines):
    return [x for line in lines for x in ("-c", line)]


def make_image(tool, d, fmt):
    """The same starting image on both sides (made with the oracle's tools when present)."""
    d.mkdir(exist_ok=True)
    img = d / "img"
    if fmt == "raw":
        img.write_bytes(b"\x07" * 65536 + b"\0" * (1024 * 1024 - 65536))
    else:
        creator = ORACLE_IMG if ORACLE_IMG else tool.img_path
        subprocess.run([str(creator), "create", "-q", "-f", "qcow2", str(img), "1M"],
                       check=True)
    return img


def run_side(tool, d, fmt, script, extra=(), image="blkdebug::img", stdin=None):
    make_image(tool, d, fmt)
    args = ["-t", "writeback", *extra]
    if fmt:
        args += ["-f", fmt]
    if stdin is None:
        args += cmds(*script)
    else:
        stdin = "".join(line + "\n" for line in script)
    return tool.io(*args, image, cwd=d, input=stdin, timeout=TIMEOUT)


def assert_same(ours, oracle, fmt, script, extra=(), image="blkdebug::img", stdin=False):
    a = run_side(ours, ours.cwd / "ours", fmt, script, extra, image, stdin or None)
    b = run_side(oracle, oracle.cwd / "oracle", fmt, script, extra, image, stdin or None)
    assert normalize(a.out) == normalize(b.out)
    assert a.err == b.err
    assert a.rc == b.rc
    ia, ib = ours.cwd / "ours" / "img", oracle.cwd / "oracle" / "img"
    if fmt == "raw":
        assert ia.read_bytes() == ib.read_bytes()
    else:
        chk = oracle.img("check", str(ia))
        assert chk.rc == 0, chk.out + chk.err
        cmp = oracle.img("compare", "-f", "qcow2", "-F", "qcow2", str(ia), str(ib))
        assert cmp.rc == 0, cmp.out + cmp.err
    return a


# ---- raw over blkdebug: write_aio/read_aio come from the raw format ----

RAW = [
    ("basic", ["break write_aio A", "aio_write -P 1 0 512", "wait_break A", "resume A",
               "aio_flush", "read -P 1 0 512"]),
    # two breakpoints on one event: the first request stops under both tags
    # (newest first) and goes on only when both are resumed
    ("two_tags_one_request", ["break write_aio A", "break write_aio B", "aio_write -P 1 0 512",
                              "aio_write -P 2 512 512", "resume A", "resume B", "aio_flush",
                              "read -P 1 0 512", "read -P 2 512 512"]),
    ("two_tags_resume_newest_first", ["break write_aio A", "break write_aio B",
                                      "aio_write 0 512", "length", "resume B", "length",
                                      "resume A", "aio_flush"]),
    ("wait_break_other_tag_after_resume", ["break write_aio A", "break write_aio B",
                                           "aio_write 0 512", "wait_break B", "resume A",
                                           "wait_break B", "resume B", "aio_flush"]),
    # resume picks the newest request suspended with the tag
    ("same_tag_newest_first", ["break write_aio A", "aio_write -P 1 0 512",
                               "break write_aio A", "aio_write -P 2 512 512", "resume A",
                               "sleep 100", "resume A", "aio_flush"]),
    # remove_break resumes what stopped, but fails: no pending breakpoint was removed
    ("remove_break_resumes", ["break write_aio A", "aio_write -P 3 0 512", "remove_break A",
                              "aio_flush", "read -P 3 0 512"]),
    ("remove_break_pending", ["break none A", "break write_aio A", "break read_aio A",
                              "remove_break A", "aio_write 0 512", "aio_read 0 512",
                              "aio_flush", "remove_break A"]),
    # other requests go on while one is suspended; sleep and write are poll points
    ("read_suspended_write_goes_on", ["break read_aio A", "aio_read -P 7 0 4k",
                                      "aio_write -P 8 64k 4k", "wait_break A", "sleep 100",
                                      "length", "resume A", "aio_flush"]),
    ("sync_io_while_suspended", ["break write_aio A", "aio_write -P 1 0 4k", "wait_break A",
                                 "read -P 7 8k 4k", "write -P 9 16k 4k", "resume A",
                                 "aio_flush", "read -P 1 0 4k", "read -P 9 16k 4k"]),
    ("zero_write_event", ["break pwritev_zero A", "aio_write -z 0 4k", "wait_break A",
                          "resume A", "aio_flush", "aio_read -v -P 0 0 16", "aio_flush",
                          "aio_read -P 5 16 16", "aio_flush"]),
    ("filter_events", ["break pwritev A", "break pwritev_done B", "aio_write -P 4 0 4k",
                       "wait_break A", "resume A", "wait_break B", "resume B", "aio_flush"]),
    ("quiet_and_vectored", ["break write_aio A", "aio_write -q -P 6 0 512 512",
                            "wait_break A", "resume A", "aio_flush", "aio_read -P 6 0 1k",
                            "aio_flush"]),
    ("reopen_after_resume", ["break write_aio A", "aio_write -P 2 0 512", "resume A",
                             "reopen", "read -P 2 0 512"]),
]


@pytest.mark.parametrize("name,script", RAW, ids=[s[0] for s in RAW])
def test_raw_like_oracle(ours, oracle, name, script):
    r = assert_same(ours, oracle, "raw", script)
    assert "Suspended request" in r.out or name == "remove_break_pending"


def test_stdin_script_like_oracle(ours, oracle):
    r = assert_same(ours, oracle, "raw", ["break write_aio A", "aio_write -P 1 0 512",
                                          "wait_break A", "resume A", "aio_flush"], stdin=True)
    assert r.out.count("qemu-io> ") == 6


ERRORS = [
    # (script, image, format)
    (["break foo A"], "blkdebug::img", "raw"),
    (["break foo A"], "img", "raw"),
    (["break write_aio A"], "img", "raw"),
    (["break write_aio"], "blkdebug::img", "raw"),
    (["break write_aio A B"], "blkdebug::img", "raw"),
    (["resume A"], "blkdebug::img", "raw"),
    (["resume A"], "img", "raw"),
    (["resume"], "blkdebug::img", "raw"),
    (["remove_break A"], "blkdebug::img", "raw"),
    (["remove_break A"], "img", "raw"),
    (["wait_break"], "blkdebug::img", "raw"),
    (["break write_aio A", "remove_break A", "remove_break A", "resume A"],
     "blkdebug::img", "raw"),
    (["break write_aio A", "aio_write 0 512", "resume A", "resume A", "aio_flush"],
     "blkdebug::img", "raw"),
    (["break l2_update A"], "img", "qcow2"),
    (["break l2_bogus A"], "blkdebug::img", "qcow2"),
]


@pytest.mark.parametrize("script,image,fmt", ERRORS)
def test_errors_like_oracle(ours, oracle, script, image, fmt):
    r = assert_same(ours, oracle, fmt, script, image=image)
    assert r.rc == 1


def test_snapshot_overlay_has_no_breakpoints(ours, oracle):
    r = assert_same(ours, oracle, "raw", ["break write_aio A", "aio_write 0 512", "aio_flush"],
                    extra=["-s"])
    assert r.out.startswith("Could not set breakpoint: Operation not supported\n")


# ---- qcow2 over blkdebug: the driver's metadata events ----

QCOW2_EVENTS = ["write_aio", "l2_update", "cluster_alloc", "refblock_alloc", "refblock_load",
                "l2_alloc_write", "l1_update", "pwritev", "pwritev_done"]


@pytest.mark.parametrize("event", QCOW2_EVENTS)
def test_qcow2_event_like_oracle(ours, oracle, event):
    r = assert_same(ours, oracle, "qcow2", [
        "break %s A" % event, "aio_write -P 1 0 4k", "wait_break A", "resume A", "aio_flush",
        "read -P 1 0 4k", "read -P 0 4k 60k"])
    assert r.out.startswith("blkdebug: Suspended request 'A'\nblkdebug: Resuming request 'A'\n")


QCOW2 = [
    ("two_events_in_turn", ["break cluster_alloc A", "break l2_update B", "aio_write -P 1 0 4k",
                            "wait_break A", "resume A", "wait_break B", "resume B",
                            "aio_flush", "read -P 1 0 4k"]),
    ("remove_pending_second", ["break cluster_alloc A", "break l2_update B",
                               "aio_write -P 1 0 4k", "remove_break B", "resume A",
                               "aio_flush", "read -P 1 0 4k"]),
    # an overwrite in place stops without the driver's lock: others go on
    ("overwrite_in_place", ["write -P 9 0 192k", "break write_aio A", "aio_write -P 1 0 64k",
                            "wait_break A", "aio_write -P 2 128k 64k", "sleep 100", "length",
                            "resume A", "aio_flush", "read -P 1 0 64k", "read -P 9 64k 64k",
                            "read -P 2 128k 64k"]),
    ("read_suspended", ["write -P 9 0 192k", "break read_aio A", "aio_read -P 9 0 64k",
                        "wait_break A", "aio_write -P 2 128k 64k", "sleep 100",
                        "read -P 2 128k 64k", "resume A", "aio_flush", "map"]),
    ("second_allocation", ["write -P 9 0 64k", "break cluster_alloc A",
                           "aio_write -P 3 256k 4k", "wait_break A", "resume A", "aio_flush",
                           "read -P 3 256k 4k", "map"]),
]


@pytest.mark.parametrize("name,script", QCOW2, ids=[s[0] for s in QCOW2])
def test_qcow2_like_oracle(ours, oracle, name, script):
    assert_same(ours, oracle, "qcow2", script)


# ---- where qemu-io would hang: qimg-io fails or resumes, and never hangs ----

def run_ours(ours, fmt, script, image="blkdebug::img"):
    return run_side(ours, ours.cwd, fmt, script, image=image)


def test_wait_break_never_reached_fails(ours):
    r = run_ours(ours, "raw", ["break read_aio A", "aio_write -P 1 0 512", "wait_break A",
                               "remove_break A", "read -P 1 0 512"])
    assert r.rc == 1
    assert r.err == ("qemu-io: wait_break A would wait forever: no request in flight can "
                     "reach the breakpoint\n")
    # qemu-io's main loop ran while waiting: the write's report came out first
    assert normalize(r.out) == normalize(
        "wrote 512/512 bytes at offset 0\n512 bytes, 1 ops; 00.00 sec (1 KiB/sec and 1 ops/sec)\n"
        "read 512/512 bytes at offset 0\n512 bytes, 1 ops; 00.00 sec (1 KiB/sec and 1 ops/sec)\n")


@pytest.mark.parametrize("image", ["blkdebug::img", "img"])
def test_wait_break_without_requests_fails(ours, image):
    r = run_ours(ours, "raw", ["wait_break A", "length"], image=image)
    assert r.rc == 1 and r.out == "1 MiB\n"
    assert "wait_break A would wait forever" in r.err


def test_wait_break_after_resume_fails(ours):
    r = run_ours(ours, "raw", ["break write_aio A", "aio_write 0 512", "wait_break A",
                               "resume A", "wait_break A"])
    assert r.rc == 1 and "wait_break A would wait forever" in r.err


def test_exit_with_suspended_request_terminates(ours, tmp_path):
    r = run_ours(ours, "qcow2", ["break l2_update A", "aio_write -P 1 0 4k"])
    assert r.rc == 1
    # The suspended request is the write's own metadata sync (qemu-io's default
    # writethrough: the L2 table goes out, after a flush, before the request ends),
    # which the next command (here the write's wait, or exit) has to resume.
    assert re.fullmatch(r"qemu-io: (exit|write) would wait forever for a request suspended at a "
                        r"breakpoint; resuming all suspended requests\n", r.err), r.err
    assert r.out.startswith("blkdebug: Suspended request 'A'\nblkdebug: Resuming request 'A'\n"
                            "wrote 4096/4096 bytes at offset 0\n")
    # the request completed before the image was closed
    chk = ours.img("check", str(tmp_path / "img"))
    assert chk.rc == 0, chk.out
    rd = ours.io("-f", "qcow2", "-c", "read -P 1 0 4k", str(tmp_path / "img"))
    assert rd.rc == 0 and "read 4096/4096" in rd.out


def test_aio_flush_with_suspended_request_resumes(ours):
    r = run_ours(ours, "raw", ["break write_aio A", "aio_write -P 1 0 512", "aio_flush",
                               "read -P 1 0 512"])
    assert r.rc == 1
    assert "aio_flush would wait forever" in r.err
    assert normalize(r.out) == normalize(
        "blkdebug: Suspended request 'A'\nblkdebug: Resuming request 'A'\n"
        "wrote 512/512 bytes at offset 0\n512 bytes, 1 ops; 00.00 sec (1 KiB/sec and 1 ops/sec)\n"
        "read 512/512 bytes at offset 0\n512 bytes, 1 ops; 00.00 sec (1 KiB/sec and 1 ops/sec)\n")


def test_sync_request_hitting_breakpoint_resumes(ours):
    r = run_ours(ours, "raw", ["break read_aio A", "read -P 7 0 512", "length"])
    assert r.rc == 1
    assert r.err == ("qemu-io: read would wait forever for a request suspended at a "
                     "breakpoint; resuming all suspended requests\n")
    assert normalize(r.out) == normalize(
        "blkdebug: Suspended request 'A'\nblkdebug: Resuming request 'A'\n"
        "read 512/512 bytes at offset 0\n512 bytes, 1 ops; 00.00 sec (1 KiB/sec and 1 ops/sec)\n"
        "1 MiB\n")


def test_sync_command_behind_qcow2_metadata_lock(ours, tmp_path):
    """qcow2 raises l2_update holding its metadata lock: a read must wait for
    the suspended write, which qimg-io resumes (saying so) rather than hang."""
    r = run_ours(ours, "qcow2", ["break l2_update A", "aio_write -P 1 0 4k", "wait_break A",
                                 "read -P 1 0 4k", "aio_flush", "info"])
    assert r.rc == 1
    assert "read would wait forever" in r.err
    assert "read 4096/4096 bytes at offset 0" in r.out and "format name: qcow2" in r.out
    assert "Pattern verification failed" not in r.out
    assert ours.img("check", str(tmp_path / "img")).rc == 0


@pytest.mark.parametrize("cmd", ["close", "reopen"])
def test_close_and_reopen_with_suspended_request(ours, cmd):
    r = run_ours(ours, "raw", ["break write_aio A", "aio_write -P 1 0 512", cmd, "length"])
    assert r.rc == 1
    assert r.err.startswith("qemu-io: %s would wait forever" % cmd)
    assert "blkdebug: Resuming request 'A'\nwrote 512/512 bytes at offset 0\n" in r.out


def test_breakpoint_hit_while_closing(ours):
    """qcow2 flushes its file on close: a flush_to_os breakpoint stops the close
    (an overwrite: an allocating write would flush before its L2 entry already)."""
    r = run_ours(ours, "qcow2", ["write -P 2 0 4k", "break flush_to_os A", "write -P 1 0 4k"])
    assert r.rc == 1
    assert "exit would wait forever" in r.err
    assert "blkdebug: Suspended request 'A'\nblkdebug: Resuming request 'A'\n" in r.out
