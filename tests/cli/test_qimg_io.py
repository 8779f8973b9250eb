# SPDX-License-Identifier: MIT
"""qimg-io against Debian's qemu-io (7.2): the same command scripts print the
same output (timing figures filtered) and leave byte-identical raw images.

Where qemu-io 9.1 differs from 7.2 the test says so; none of the behaviour
compared here changed between them.
"""
import os
import re
import signal
import subprocess

import pytest

from conftest import ORACLE_IO, QIMG_IO

pytestmark = pytest.mark.skipif(not QIMG_IO.exists(), reason="qimg-io is not built")

SIZE = 1 << 20


def normalize(text, tool):
    # Durations print as "00.00 sec", or "m:ss.ss"/"h:mm:ss.ss" when long (qemu-io 7.2's
    # aio_write -z reports a bogus start time, so long ones do appear).
    text = re.sub(r"(\d+:)*\d+\.\d+( sec)? \(.*\)", "X sec (...)", text)
    text = re.sub(r"\d+:\d\d:\d\d\.\d\d,[0-9.]+,[0-9.]+$", "T,R,O", text, flags=re.M)
    # getopt names the program as invoked (a path); qemu's own messages use "qemu-io".
    return text.replace(str(tool.io_path), "qemu-io")


def make_image(path, size=SIZE):
    """A sparse raw image with some recognisable data in it."""
    with open(path, "wb") as f:
        f.truncate(size)
        if size >= 20480:
            f.seek(12288)
            f.write(bytes(range(256)) * 16)


def workdir(tool):
    """ours and oracle share tmp_path: each gets its own directory in it."""
    d = tool.cwd / ("oracle" if tool.io_path == ORACLE_IO else "ours")
    d.mkdir(exist_ok=True)
    return d


def run_both(both, args, size=SIZE, image="r.raw", input=None):
    """Run the same argv on fresh copies of an image; return both results."""
    results = []
    for tool in both:
        d = workdir(tool)
        if image:
            make_image(d / image, size)
        r = tool.io(*args, input=input, cwd=d)
        results.append((tool, r))
    return results


def assert_same(both, args, size=SIZE, image="r.raw", input=None):
    (ours, r1), (oracle, r2) = run_both(both, args, size, image, input)
    assert normalize(r1.out, ours) == normalize(r2.out, oracle)
    assert normalize(r1.err, ours) == normalize(r2.err, oracle)
    assert r1.rc == r2.rc
    return r1


def cmds(*lines):
    out = []
    for line in lines:
        out += ["-c", line]
    return out


def test_read_write_basic(both, tmp_path):
    args = ["-f", "raw"] + cmds(
        "write -P 0xab 0 64k", "read -P 0xab 0 64k", "read -P 0xcd 0 512",
        "read -v 0 40", "read -v 12k 40", "write -P 1 0 1536", "read -P 1 0 1536",
        "write 0 2095616", "r 0 1", "w -P 7 100000 1", "read -P 7 100000 1",
        "read 0 0", "read 0 0x10", "read 0 1.5k",
        "read -P 0 -s 20 -l 4 0 100", "read -P 0 -s 0 -l 4 0 100",
        "read -P 0 -l 40 -s 90 0 100", "read -q -P 1 0 8", "read -q 0 1",
        "read -C -q 0 1", "read -v -q 0 1", "read -C 0 3k", "write -C 0 1",
        "read -p 0 1", "write -p -f 0 1", "write -q 0 1")
    r = assert_same(both, args + ["r.raw"])
    assert "Pattern verification failed at offset 0, 512 bytes" in r.out
    assert r.rc == 1  # a failed pattern check fails the run


def test_images_identical_after_writes(both):
    args = ["-f", "raw"] + cmds(
        "write -P 0x11 0 4k", "write -z 8k 4k", "write -z -u 16k 8k", "write -z -n 64k 4k",
        "writev -P 0x22 100 10 20 30", "aio_write -P 0x33 200k 1k 512", "aio_flush",
        "write -P 0x44 1 511", "discard 128k 64k", "discard 300k 1", "write -f -P 5 4k 4k")
    assert_same(both, args + ["r.raw"])
    ours, oracle = both
    assert (workdir(ours) / "r.raw").read_bytes() == (workdir(oracle) / "r.raw").read_bytes()
    cmp = subprocess.run(["cmp", workdir(ours) / "r.raw", workdir(oracle) / "r.raw"])
    assert cmp.returncode == 0


def test_vectored_and_aio(both):
    args = ["-f", "raw"] + cmds(
        "readv -C 0 1k 1k", "writev -P 0x41 100 10 20", "readv -v 90 20 20",
        "readv -P 0x41 100 10 20", "readv -P 0 0 4 4", "aio_write -P 5 4k 1k 512", "aio_flush",
        "aio_read -P 5 4k 1k 512", "aio_flush", "aio_read -P 6 4k 1k", "aio_flush",
        "aio_read -v 12k 16", "aio_flush", "aio_write -i 0 1", "aio_read -i 0 1",
        "aio_write -z 0 1 1", "aio_write -u 0 1", "readv 0 3G", "aio_read 2M 1", "aio_flush",
        "aio_write 2M 1", "aio_flush", "readv 1M 1", "writev 1M 1", "writev -P 300 0 1",
        "writev 0 x", "aio_write -z -u 8k 4k", "aio_flush")
    assert_same(both, args + ["r.raw"])


def test_argument_errors(both):
    args = ["-f", "raw"] + cmds(
        "read", "read -P", "read -P 1 -s 3 0 512", "read -s 3 0 512", "read -P 300 0 1",
        "read -P x 0 1", "read x 1", "read 0 x", "read -1 1", "read 0 -1", "read 1 2 3",
        "read -x 0 1", "read 1M 1", "read 0 2M", "read 0 2G", "read 0 99999999999999999999",
        "read 0 8E", "read 0 7E", "read 0x 1", "write 0 8E", "write -z -P 1 0 1",
        "write -u 0 1", "write -n 0 1", "write -s /nonexist 0 1", "write -s r.raw -P 1 0 1",
        "write -z -b 0 1", "write -c -f 0 512", "write -b -f 0 512", "write -c 1 512",
        "write -P 0x1ff 0 1", "write -P -1 0 1", "write 0 1k 1k", "write 0 2G",
        "alloc", "alloc x", "alloc 0 x", "alloc 1 2 3", "sleep x", "sleep 5k", "sigraise x",
        "sigraise 100", "truncate x", "truncate -m bogus 1M", "truncate 1 2 3 4",
        "discard x 1", "discard 0", "discard 0 3G", "help nosuch", "help a b", "length 1",
        "nosuch", "open", "map x", "close 1")
    r = assert_same(both, args + ["r.raw"])
    assert 'command "nosuch" not found' in r.err
    assert r.rc == 1


def test_unsupported_on_raw(both):
    # Compressed writes and the VM-state area are format features raw lacks.
    args = ["-f", "raw"] + cmds(
        "write -c 0 64k", "write -b 0 512", "read -b 0 512", "read -b 1 1",
        "write -b -c 0 1", "write -c -z 0 512", "write -z -c 0 1")
    r = assert_same(both, args + ["r.raw"])
    assert "write failed: Operation not supported" in r.out
    assert "read failed: Operation not supported" in r.out


def test_out_of_range_and_zero_length(both):
    args = ["-f", "raw"] + cmds(
        "write 1M 1", "write -z 1M 1", "discard 1M 1", "discard 2M 1", "read 1M 1",
        "write -P 0xcd 0 0", "discard 0 0", "write -z 0 0", "writev 0 0", "aio_write 0 0",
        "aio_flush")
    r = assert_same(both, args + ["r.raw"])
    assert "read failed: Input/output error" in r.out


def test_image_commands(both):
    args = ["-f", "raw"] + cmds(
        "length", "l", "info", "i", "map", "alloc 0", "alloc 0 1M", "alloc 1M", "alloc 0 2M",
        "alloc 1 1", "a 512 1", "alloc 2M", "flush", "f", "discard -C 0 1", "discard -q 0 1",
        "d 0 4k", "truncate 2M", "length", "map", "truncate -m falloc 3M",
        "truncate -m full 4M", "t 1k", "length", "map", "truncate 1M", "sleep 10",
        "sigraise 0")
    assert_same(both, args + ["r.raw"])
    ours, oracle = both
    assert os.path.getsize(workdir(ours) / "r.raw") == os.path.getsize(workdir(oracle) / "r.raw")


def test_empty_image(both):
    assert_same(both, ["-f", "raw"] + cmds("map", "alloc 0", "length", "info", "read 0 1")
                + ["r.raw"], size=0)


def test_read_only(both):
    args = ["-r", "-f", "raw"] + cmds(
        "write 0 1", "write -z 0 1", "discard 0 1", "truncate 2M", "flush",
        "aio_write 0 1", "aio_flush", "writev 0 1", "write -c 0 512", "write", "map",
        "info", "length", "read 0 1")
    r = assert_same(both, args + ["r.raw"])
    assert "qemu-io: Block node is read-only" in r.err


def test_help(both):
    names = ["", "abort", "aio_flush", "aio_read", "aio_write", "alloc", "break", "close",
             "discard", "flush", "help", "info", "length", "map", "open", "quit", "read",
             "readv", "remove_break", "reopen", "resume", "sigraise", "sleep", "truncate",
             "wait_break", "write", "writev", "r", "?"]
    args = cmds(*["help " + n for n in names]) + cmds("?")
    assert_same(both, args, image=None)
    assert_same(both, ["--help"], image=None)
    assert_same(both, ["-h"], image=None)


def test_command_line_errors(both):
    assert_same(both, ["nonexist"])
    assert_same(both, ["-f", "bogus", "r.raw"])
    assert_same(both, ["-t", "bogus", "-c", "length", "r.raw"])
    assert_same(both, ["-d", "bogus", "-c", "length", "r.raw"])
    assert_same(both, ["-i", "bogus", "r.raw"])
    assert_same(both, ["-k", "-c", "length", "r.raw"])
    assert_same(both, ["-x"])
    assert_same(both, ["r.raw", "r.raw"])
    assert_same(both, ["-c", "length"], image=None)
    assert_same(both, ["--image-opts", "-f", "raw", "-c", "length",
                       "driver=raw,file.filename=r.raw"])
    assert_same(both, ["--image-opts", "driver=raw,file.filename=nonexist"])
    r = assert_same(both, ["-c", "nosuch", "-f", "raw", "r.raw"])
    assert r.rc == 1 and r.err == 'command "nosuch" not found\n'


def test_options_accepted(both):
    for opts in (["-d", "unmap"], ["-d", "ignore"], ["-n"], ["-t", "none"], ["--cache", "unsafe"],
                 ["-t", "writethrough"], ["-C"], ["-m"], ["--misalign"], ["-r", "-U"], ["-U"],
                 ["--aio", "threads"], ["-i", "native", "-t", "none"], ["-f", "qcow2", "-f", "raw"],
                 ["--image-opts"]):
        target = "driver=raw,file.filename=r.raw" if "--image-opts" in opts else "r.raw"
        assert_same(both, opts + cmds("write -P 3 1 511", "read -v 0 16", "length",
                                      "discard 0 4k", "read -v 0 16") + [target])


def test_probed_raw_warning(both):
    assert_same(both, cmds("length", "write -P 1 0 1") + ["r.raw"])
    assert_same(both, ["-r"] + cmds("length") + ["r.raw"])


def test_discard_modes_change_the_image(both):
    for mode in ("unmap", "ignore"):
        assert_same(both, ["-f", "raw", "-d", mode] + cmds(
            "write -P 1 0 64k", "discard 0 64k", "read -P 1 0 64k", "discard 64k 1k") +
            ["r.raw"])
        ours, oracle = both
        assert (workdir(ours) / "r.raw").read_bytes() == (workdir(oracle) / "r.raw").read_bytes()


def test_open_close_reopen(both):
    args = cmds(
        "open -o driver=raw r.raw", "length", "open r.raw", "close", "length", "close",
        "open nonexist", "open -r -o driver=raw,file.filename=r.raw", "write 0 1",
        "reopen -w", "write -P 2 0 1", "reopen -r", "write 0 1", "read -P 2 0 1",
        "reopen -c none", "read -P 2 0 1", "reopen -c bogus", "reopen -o foo=bar",
        "reopen -r -w", "reopen x", "o -n -d ignore -o driver=raw r.raw", "c",
        "open -r -s -C -k -U -t writeback -o driver=raw r.raw", "read 0 1", "close",
        "reopen -r", "open -o driver=raw,file.filename=nonexist")
    r = assert_same(both, args)
    assert "can't open device nonexist" in r.err


def test_prompt_mode_from_pipe(both):
    script = ("read 0 1\nlength\n\nnosuch\nwrite -P 1 0 1\n  read  -P  1   0 1\nhelp help\n"
              "open r.raw\n")
    r = assert_same(both, ["-f", "raw", "r.raw"], input=script)
    assert r.out.startswith("qemu-io> read 1/1 bytes")
    assert r.out.endswith("qemu-io> ")
    assert r.rc == 1
    r = assert_same(both, ["-f", "raw", "r.raw"], input="length\nquit\nlength\n")
    assert r.out == "qemu-io> 1 MiB\nqemu-io> " and r.rc == 0
    r = assert_same(both, [], input="open -o driver=raw r.raw\nlength\n", image="r.raw")
    assert r.rc == 0


def test_quit_stops_commands(both):
    r = assert_same(both, ["-f", "raw"] + cmds("length", "q", "nosuch") + ["r.raw"])
    assert r.rc == 0


def test_snapshot_mode_leaves_image(both):
    args = ["-s", "-f", "raw"] + cmds(
        "write -P 3 0 4k", "read -P 3 0 4k", "map", "info", "write -z 128k 64k",
        "write -z 300k 1k", "discard 512k 128k", "discard 900k 1k", "map", "read -v 12k 16",
        "read -P 0 512k 128k", "alloc 0 1M", "truncate 2M", "length", "map", "info",
        "truncate 100k", "map", "truncate 1M", "read -v 96k 16", "read -v 12k 16",
        "flush", "write -P 9 1M 1")
    assert_same(both, args + ["r.raw"])
    ours, oracle = both
    for tool in both:
        fresh = workdir(tool) / "fresh.raw"
        make_image(fresh)
        assert (workdir(tool) / "r.raw").read_bytes() == fresh.read_bytes()
    # The overlay is qcow2 in QEMU; "info" says so in both.
    r = assert_same(both, ["-s", "-f", "raw"] + cmds("info", "open -s -o driver=raw r.raw")
                    + ["r.raw"])
    assert r.out.startswith("format name: qcow2\n")
    assert_same(both, cmds("open -s -o driver=raw r.raw", "write -P 5 0 64k", "map", "close",
                           "open -o driver=raw r.raw", "read -P 5 0 1"))


def test_abort_leaves_image_as_written(both):
    for tool in both:
        make_image(workdir(tool) / "r.raw")
        r = tool.io("-f", "raw", "-c", "write -P 9 0 4k", "-c", "abort", "-c", "write 0 8k",
                    "r.raw", cwd=workdir(tool))
        assert r.rc == -signal.SIGABRT
        data = (workdir(tool) / "r.raw").read_bytes()
        assert data[:4096] == b"\x09" * 4096 and data[4096:8192] == b"\0" * 4096
    sh = subprocess.run(["sh", "-c", f"'{QIMG_IO}' -c abort; echo $?"], capture_output=True,
                        text=True)
    assert sh.stdout.strip().endswith("134")


def test_sigraise(both):
    for tool in both:
        make_image(workdir(tool) / "r.raw")
        r = tool.io("-f", "raw", "-c", "write -P 9 0 4k", "-c", "sigraise 15", "-c", "length",
                    "r.raw", cwd=workdir(tool))
        assert r.rc == -signal.SIGTERM
        assert r.out.startswith("wrote 4096/4096")


@pytest.mark.skipif(not ORACLE_IO, reason="no oracle")
def test_cvtstr_sizes(both):
    args = ["-f", "raw"] + cmds("write 0 1", "write 0 512", "write 0 1536", "write 0 2M",
                                "write 0 1023", "write 0 1025", "write 0 1114112",
                                "alloc 1536 1", "alloc 1114112 1") + ["r.raw"]
    r = assert_same(both, args, size=4 << 20)
    assert "1.500 KiB, 1 ops" in r.out and "2 MiB, 1 ops" in r.out
