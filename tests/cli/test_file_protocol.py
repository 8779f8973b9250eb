# SPDX-License-Identifier: MIT
"""The file protocol through the command line: open options, cache modes, odd files.

Differential against the oracle wherever 7.2 and 9.1 agree (for info, 9.1's
"Child node" section is stripped from our output before comparing).
"""
import os
import re
import shutil

import pytest

from conftest import run, strip_child

STRACE = shutil.which("strace")


def compare(ours, oracle, tmp_path, args, setup=None, info=False):
    results = []
    for tool in (ours, oracle):
        for p in tmp_path.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        (setup or default_setup)(tmp_path)
        results.append(tool.img(*args))
    a, b = results
    if info:
        a.out = strip_child(a.out)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    return a


def default_setup(tmp_path):
    with open(tmp_path / "r.raw", "wb") as f:
        f.truncate(1 << 20)
        f.write(b"\x11" * 4096)


OPEN_OPTION_CASES = [
    "driver=raw,file.filename=r.raw",
    "driver=raw,file.filename=r.raw,file.locking=off",
    "driver=raw,file.filename=r.raw,file.locking=on",
    "driver=raw,file.filename=r.raw,file.locking=auto",
    "driver=raw,file.filename=r.raw,file.locking=bogus",
    "driver=raw,file.filename=r.raw,file.cache.direct=on",
    "driver=raw,file.filename=r.raw,file.cache.direct=maybe",
    "driver=raw,file.filename=r.raw,file.cache.no-flush=on",
    "driver=raw,file.filename=r.raw,file.aio=threads",
    "driver=raw,file.filename=r.raw,file.aio=native",
    "driver=raw,file.filename=r.raw,file.aio=native,file.cache.direct=on",
    "driver=raw,file.filename=r.raw,file.aio=bogus",
    "driver=raw,file.filename=r.raw,file.discard=unmap",
    "driver=raw,file.filename=r.raw,file.discard=ignore",
    "driver=raw,file.filename=r.raw,file.discard=bogus",
    "driver=raw,file.filename=r.raw,file.x=1",
    "driver=raw,file.filename=r.raw,x=1",
    "driver=raw,file.filename=r.raw,file.driver=nosuch",
    "driver=raw,file.filename=r.raw,size=1000",
    # offset/size rename the node to a json: filename (raw.c: raw_refresh_filename)
    "driver=raw,file.filename=r.raw,size=4096",
    "driver=raw,file.filename=r.raw,offset=4096",
    "driver=raw,file.filename=r.raw,offset=4096,size=8192",
    "driver=raw,file.filename=r.raw,offset=4096,size=8192,file.locking=off",
    # offset past the end: 9.1 names the offset 0 in its message, 7.2 the value
    # (test_filters.py covers it with 9.1's text)
    "driver=raw,file.filename=nosuch.raw",
    "driver=raw",
    "driver=file,filename=r.raw",
    "driver=file,filename=r.raw,bogus=1",
]


@pytest.mark.parametrize("spec", OPEN_OPTION_CASES)
def test_image_opts_match_oracle(ours, oracle, tmp_path, spec):
    compare(ours, oracle, tmp_path, ["info", "--image-opts", spec], info=True)


JSON_CASES = [
    '{"driver": "raw", "file": {"driver": "file", "filename": "r.raw"}}',
    '{"driver": "raw", "file": {"driver": "file", "filename": "r.raw", "bogus": 1}}',
    '{"driver": "raw", "file": {"driver": "file", "filename": "r.raw"}, "bogus": 1}',
    '{"driver": "file", "filename": "r.raw", "x": "y"}',
    '{"driver": "raw", "file": {"driver": "file", "filename": "r.raw", "locking": "bogus"}}',
    '{"driver": "nosuch", "file": {"driver": "file", "filename": "r.raw"}}',
    '{"driver": "raw", "offset": 512, "file": {"driver": "file", "filename": "r.raw"}}',
    '{"driver": "raw", "size": 1024, "offset": "512", "file": {"driver": "file", '
    '"filename": "r.raw", "aio": "threads"}}',
    '{"driver": "raw", "size": 1024, "file": "r.raw"}',
    '{',
    '[]',
]


@pytest.mark.parametrize("js", JSON_CASES)
def test_json_filenames_match_oracle(ours, oracle, tmp_path, js):
    compare(ours, oracle, tmp_path, ["info", "json:" + js], info=True)


CACHE_MODES = ["none", "off", "writeback", "writethrough", "directsync", "unsafe", "bogus", ""]


@pytest.mark.parametrize("mode", CACHE_MODES)
def test_check_cache_modes_match_oracle(ours, oracle, tmp_path, mode):
    compare(ours, oracle, tmp_path, ["check", "-T", mode, "r.raw"])


def open_flags(tool, tmp_path, args, name):
    """The open(2) flags each descriptor of `name` was opened with, via strace."""
    trace = tmp_path / "trace.txt"
    # LeakSanitizer cannot run under ptrace; an ASan build of ours is traced without it.
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    r = run(["strace", "-f", "-qq", "-e", "trace=openat", "-o", trace, tool.img_path, *args],
            cwd=tmp_path, env=env)
    flags = []
    for line in trace.read_text().splitlines():
        m = re.search(r'openat\(AT_FDCWD, "([^"]*)", ([A-Z_|]+)', line)
        if m and os.path.basename(m.group(1)) == name and "= -1" not in line:
            flags.append(set(m.group(2).split("|")))
    trace.unlink()
    return r, flags


@pytest.mark.skipif(not STRACE, reason="strace is not installed")
@pytest.mark.parametrize("mode,direct", [("none", True), ("directsync", True),
                                         ("writeback", False), ("writethrough", False),
                                         ("unsafe", False)])
def test_cache_mode_reaches_open(ours, oracle, tmp_path, mode, direct):
    default_setup(tmp_path)
    for tool in (ours, oracle):
        r, flags = open_flags(tool, tmp_path, ["check", "-T", mode, "-f", "raw", "r.raw"], "r.raw")
        assert r.rc == 63, r
        # The image is opened for I/O once with O_DIRECT exactly when the mode bypasses
        # the page cache (QEMU also opens a probe descriptor with O_NONBLOCK first).
        io_opens = [f for f in flags if "O_NONBLOCK" not in f]
        assert io_opens, flags
        assert ("O_DIRECT" in io_opens[0]) == direct, (tool.img_path, flags)


def test_info_proc_file_without_end(ours, oracle, tmp_path):
    compare(ours, oracle, tmp_path, ["info", "/proc/self/mem"])


def test_info_char_device(ours, oracle, tmp_path):
    compare(ours, oracle, tmp_path, ["info", "/dev/null"], info=True)
    compare(ours, oracle, tmp_path, ["info", "-f", "raw", "/dev/null"], info=True)


def test_filename_with_colon(ours, oracle, tmp_path):
    def setup(d):
        default_setup(d)
        os.rename(d / "r.raw", d / "a:b.raw")
    compare(ours, oracle, tmp_path, ["info", "./a:b.raw"], setup=setup, info=True)


def test_filename_with_unknown_protocol_prefix(ours, oracle, tmp_path):
    def setup(d):
        default_setup(d)
        os.rename(d / "r.raw", d / "a:b.raw")
    compare(ours, oracle, tmp_path, ["info", "a:b.raw"], setup=setup, info=True)


def test_info_protocol_as_format(ours, oracle, tmp_path):
    compare(ours, oracle, tmp_path, ["info", "-f", "file", "r.raw"], info=True)


def test_sparse_create_stays_sparse(ours, tmp_path):
    assert ours.img("create", "-q", "-f", "raw", "big.raw", "1T").rc == 0
    st = os.stat(tmp_path / "big.raw")
    assert st.st_size == 1 << 40
    assert st.st_blocks * 512 <= 64 << 10
    r = ours.img("info", "big.raw")
    assert "virtual size: 1 TiB (1099511627776 bytes)" in r.out


@pytest.mark.parametrize("prealloc", ["off", "falloc", "full"])
def test_create_preallocation_allocates_like_oracle(ours, oracle, tmp_path, prealloc):
    sizes = []
    for tool in (ours, oracle):
        r = tool.img("create", "-q", "-f", "raw", "-o", f"preallocation={prealloc}", "p.raw",
                     "3M")
        assert r.rc == 0, r
        st = os.stat(tmp_path / "p.raw")
        sizes.append((st.st_size, st.st_blocks * 512))
        if prealloc == "full":
            assert (tmp_path / "p.raw").read_bytes() == bytes(3 << 20)
        (tmp_path / "p.raw").unlink()
    assert sizes[0] == sizes[1]


RESIZE_CASES = [
    ["resize", "-f", "raw", "r.raw", "2M"],
    ["resize", "-f", "raw", "--preallocation=falloc", "r.raw", "2M"],
    ["resize", "-f", "raw", "--preallocation=full", "r.raw", "2M"],
    ["resize", "-f", "raw", "--preallocation=metadata", "r.raw", "2M"],
    ["resize", "-f", "raw", "--preallocation=full", "--shrink", "r.raw", "512K"],
    ["resize", "-f", "raw", "--shrink", "r.raw", "1000"],
    ["resize", "--image-opts", "driver=raw,file.filename=r.raw,file.cache.direct=on", "3M"],
]


@pytest.mark.parametrize("args", RESIZE_CASES, ids=[" ".join(a) for a in RESIZE_CASES])
def test_resize_file_match_oracle(ours, oracle, tmp_path, args):
    results = []
    for tool in (ours, oracle):
        for p in tmp_path.iterdir():
            p.unlink()
        default_setup(tmp_path)
        r = tool.img(*args)
        st = os.stat(tmp_path / "r.raw")
        results.append((r.rc, r.out, r.err, st.st_size, st.st_blocks >= (1 << 20) // 512 * 2))
    assert results[0] == results[1]
