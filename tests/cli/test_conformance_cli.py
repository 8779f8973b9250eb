# SPDX-License-Identifier: MIT
"""CLI messages, sizes, progress and create clean-up as qemu-img 9.1 has them (issue 12).

Differential against Debian's qemu-img 7.2 where 7.2 and 9.1 agree; where they differ the
expected 9.1 text is written out and the 7.2 behaviour named.
"""
import os
import re
import signal
import subprocess
import time

import pytest


def files_after(tool, tmp_path, *args, sizes=True):
    """Run a command in an empty tmp_path; return its result and the files it left."""
    for p in tmp_path.iterdir():
        p.unlink()
    r = tool.img(*args, cwd=tmp_path)
    return r, sorted((p.name, p.stat().st_size if sizes else None) for p in tmp_path.iterdir())


def assert_same(ours, oracle, tmp_path, *args, sizes=True):
    """Same output, exit code and files left (with their lengths unless sizes=False: our qcow2
    images are longer than 7.2's, see test_qcow2_create.py)."""
    a, a_files = files_after(ours, tmp_path, *args, sizes=sizes)
    b, b_files = files_after(oracle, tmp_path, *args, sizes=sizes)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert a_files == b_files
    return a


# --- item 12: sizes -------------------------------------------------------------------------

# Sizes 7.2 and 9.1 read alike (checked by hand against 9.1): a zero fraction of a byte is a
# size, a non-zero one is not; fractions with a unit round to the nearest byte.
SIZES = ["1024.0", "1024.0b", "1.", "1.0", "00.0b", "1.5k", "1.9999k", "1.3M", "0.3k",
         "+1024", " 1024", "+0x10", "0x400", "0XA", "0010",
         "1.1111111111111111111111111111111111111111111111111111111111111111111111111k",
         "0.0000000000000000000000000000000000000000000000000000000001k",
         "1024.5", "1024.5b", "1.5", "1.0000000001", "1e3", "1.5e3", "1024 ", "1024 k",
         "1kb", "0x10.5", "0x", "0x 10", "1..5k", ".", ".k", "1. 5k", "1.-5k"]


@pytest.mark.parametrize("size", SIZES)
def test_size_argument_like_qemu(ours, oracle, tmp_path, size):
    assert_same(ours, oracle, tmp_path, "create", "-f", "raw", "r.raw", size)


@pytest.mark.parametrize("size", SIZES)
def test_size_option_like_qemu(ours, oracle, tmp_path, size):
    assert_same(ours, oracle, tmp_path, "create", "-f", "raw", "-o", "size=" + size, "r.raw")


@pytest.mark.parametrize("size, expected", [(".5k", 512), ("+.5k", 512), (" .5k", 512)])
def test_size_fraction_without_integer_part(ours, tmp_path, size, expected):
    # 9.1 accepts a fraction with no digit before the point; 7.2 refused ".5k".
    r = ours.img("create", "-f", "raw", "r.raw", size)
    assert (r.rc, r.err) == (0, "")
    assert r.out == f"Formatting 'r.raw', fmt=raw size={expected}\n"


def test_size_fraction_rounding_to_64_bits(ours):
    # 9.1 rounds 7.99999999999999999999E up to 8 EiB, beyond the 63-bit limit; 7.2 computed
    # 8070450532247928832 and went on to "The image size is too large".
    r = ours.img("create", "-f", "raw", "r.raw", "7.99999999999999999999E")
    assert (r.rc, r.out) == (1, "")
    assert r.err == ("qemu-img: Invalid image size specified. "
                     "Must be between 0 and 9223372036854775807.\n")


@pytest.mark.parametrize("how", ["argument", "option"])
def test_size_hex_with_suffix_refused(ours, tmp_path, how):
    # 9.1 refuses a unit on a hex number; 7.2 took "0x400k" as 1 MiB with a deprecation warning.
    if how == "argument":
        r = ours.img("create", "-f", "raw", "r.raw", "0x400k")
        assert r.err == ("qemu-img: Invalid image size specified. You may use k, M, G, T, P or "
                         "E suffixes for\nqemu-img: kilobytes, megabytes, gigabytes, terabytes, "
                         "petabytes and exabytes.\n")
    else:
        r = ours.img("create", "-f", "raw", "-o", "size=0x400k", "r.raw")
        assert r.err == ("qemu-img: r.raw: Parameter 'size' expects a non-negative number "
                         "below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, "
                         "giga-, tera-, peta-\nand exabytes, respectively.\n")
    assert (r.rc, r.out) == (1, "")
    assert not (tmp_path / "r.raw").exists()


@pytest.mark.parametrize("value", ["-1024", "-0", " -1"])
@pytest.mark.parametrize("cmd", ["create", "amend"])
def test_negative_size_option_out_of_range(ours, tmp_path, cmd, value):
    # 9.1: "Value '-1024' is out of range for parameter 'size'"; 7.2 said "Parameter 'size'
    # expects a non-negative number below 2^64 ...".
    if cmd == "create":
        r = ours.img("create", "-f", "qcow2", "-o", "size=" + value, "a.qcow2")
        prefix = "a.qcow2: "
    else:
        assert ours.img("create", "-q", "-f", "qcow2", "a.qcow2", "1M").rc == 0
        r = ours.img("amend", "-o", "size=" + value, "a.qcow2")
        prefix = ""
    assert (r.rc, r.out) == (1, "")
    assert r.err == f"qemu-img: {prefix}Value '{value}' is out of range for parameter 'size'\n"


def test_size_option_beyond_64_bits(ours, oracle, tmp_path):
    for v in ("18446744073709551616", "16E"):
        assert_same(ours, oracle, tmp_path, "create", "-f", "raw", "-o", "size=" + v, "r.raw")


def test_size_option_minus_one_means_no_size(ours, oracle, tmp_path):
    # qemu takes size=2^64-1 (-1) for "no size given"
    r = assert_same(ours, oracle, tmp_path, "create", "-f", "raw", "-o",
                    "size=18446744073709551615", "r.raw")
    assert "needs a size parameter" in r.err


def test_size_option_printed_signed(ours, oracle, tmp_path):
    r = assert_same(ours, oracle, tmp_path, "create", "-f", "raw", "-o",
                    "size=9223372036854775808", "r.raw")
    assert "size=-9223372036854775808" in r.out


def test_amend_fractional_size_option(ours, oracle, tmp_path):
    # "1.0" is a size (1 byte): amend gets as far as the 512-byte rule
    for tool in (ours, oracle):
        assert tool.img("create", "-q", "-f", "qcow2", "a.qcow2", "1M").rc == 0
    a = ours.img("amend", "-o", "size=1.0", "a.qcow2")
    assert oracle.img("create", "-q", "-f", "qcow2", "a.qcow2", "1M").rc == 0
    b = oracle.img("amend", "-o", "size=1.0", "a.qcow2")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)


REFCOUNT_BITS = ["", "abc", "-1", "-16", "0", "3", "128", "16k", "1.5", "0x10", "010", " 16",
                 "16 ", "+16", "- 1", "+-1", "0x", "18446744073709551616"]


@pytest.mark.parametrize("value", REFCOUNT_BITS)
def test_refcount_bits_create_like_qemu(ours, oracle, tmp_path, value):
    assert_same(ours, oracle, tmp_path, "create", "-f", "qcow2", "-o",
                "refcount_bits=" + value, "a.qcow2", "1M", sizes=False)


@pytest.mark.parametrize("value", REFCOUNT_BITS)
def test_refcount_bits_amend_like_qemu(ours, oracle, tmp_path, value):
    results = []
    for tool in (ours, oracle):
        assert tool.img("create", "-q", "-f", "qcow2", "a.qcow2", "1M").rc == 0
        r = tool.img("amend", "-o", "refcount_bits=" + value, "a.qcow2")
        info = tool.img("info", "--output=json", "a.qcow2")
        results.append((r.rc, r.out, r.err, '"refcount-bits": 8' in info.out))
    assert results[0] == results[1]


# --- item 14: convert -B with several sources, commit -b ------------------------------------

CONVERT_BACKING_CASES = [
    ["-O", "qcow2", "-B", "base.qcow2", "a.raw", "b.raw", "out.qcow2"],
    ["-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "a.raw", "b.raw", "out.qcow2"],
    ["-O", "qcow2", "-o", "backing_file=base.qcow2,backing_fmt=qcow2", "a.raw", "b.raw",
     "out.qcow2"],
    ["-O", "qcow2", "-o", "backing_file=", "a.raw", "b.raw", "out.qcow2"],
    ["-O", "qcow2", "-B", "", "a.raw", "b.raw", "out.qcow2"],
    ["-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "-n", "a.raw", "b.raw", "out.qcow2"],
    ["-O", "qcow2", "-B", "base.qcow2", "--bitmaps", "a.raw", "b.raw", "out.qcow2"],
    # the checks before it win
    ["-O", "qcow2", "-B", "base.qcow2", "a.raw", "nosuch.raw", "out.qcow2"],
    ["-O", "qcow2", "-B", "base.qcow2", "-l", "snap", "a.raw", "b.raw", "out.qcow2"],
    ["-O", "qcow2", "-o", "backing_file=base.qcow2,bogus=1", "a.raw", "b.raw", "out.qcow2"],
    ["-O", "raw", "-B", "base.qcow2", "a.raw", "b.raw", "out.qcow2"],
    # -F without a backing file: the format's create refuses it, no file is left
    ["-O", "qcow2", "-F", "qcow2", "a.raw", "b.raw", "out.qcow2"],
    ["-O", "qcow2", "-F", "qcow2", "a.raw", "out.qcow2"],
    ["-O", "qcow2", "-o", "backing_fmt=qcow2", "a.raw", "out.qcow2"],
]


@pytest.mark.parametrize("args", CONVERT_BACKING_CASES, ids=[" ".join(c) for c in
                                                              CONVERT_BACKING_CASES])
def test_convert_backing_with_several_sources(ours, oracle, tmp_path, args):
    results = []
    for tool in (ours, oracle):
        for p in tmp_path.iterdir():
            p.unlink()
        for name in ("a.raw", "b.raw"):
            (tmp_path / name).write_bytes(b"\x11" * 65536)
        assert oracle.img("create", "-q", "-f", "qcow2", "base.qcow2", "2M").rc == 0
        r = tool.img("convert", *args)
        results.append((r.rc, r.out, r.err, (tmp_path / "out.qcow2").exists()))
    assert results[0] == results[1]
    assert results[0][0] == 1


def make_chain(oracle, tmp_path):
    """dir/base.qcow2 <- dir/mid.qcow2 <- dir/top.qcow2, backing names stored relative."""
    d = tmp_path / "dir"
    if d.exists():
        for p in d.iterdir():
            p.unlink()
    else:
        d.mkdir()
    for args in (["dir/base.qcow2", "1M"],
                 ["-b", "base.qcow2", "-F", "qcow2", "dir/mid.qcow2"],
                 ["-b", "mid.qcow2", "-F", "qcow2", "dir/top.qcow2"]):
        assert oracle.img("create", "-q", "-f", "qcow2", *args).rc == 0
    assert oracle.io("-c", "write -P 0x5a 0 64k", "dir/top.qcow2").rc == 0


@pytest.mark.parametrize("base", [
    "base.qcow2", "./base.qcow2", "sub/../base.qcow2", "../dir/base.qcow2", "mid.qcow2",
    # relative to the working directory these exist, but qemu resolves them against the
    # directory of the image that names the layer
    "dir/base.qcow2", "dir/mid.qcow2",
    "top.qcow2", "dir/top.qcow2", "nosuch.qcow2", "", "file:base.qcow2"])
def test_commit_base_names_like_qemu(ours, oracle, tmp_path, base):
    results = []
    for tool in (ours, oracle):
        make_chain(oracle, tmp_path)
        (tmp_path / "dir" / "sub").mkdir()
        r = tool.img("commit", "-b", base, "dir/top.qcow2")
        committed = oracle.io("-c", "read -P 0x5a 0 64k", "-f", "qcow2", "-r",
                              "dir/base.qcow2" if "base" in base else "dir/mid.qcow2")
        (tmp_path / "dir" / "sub").rmdir()
        results.append((r.rc, r.out, r.err, "Pattern verification failed" in committed.out))
    assert results[0] == results[1]


def test_commit_base_relative_to_chain_not_cwd(ours, oracle, tmp_path):
    make_chain(oracle, tmp_path)
    r = ours.img("commit", "-b", "./base.qcow2", "dir/top.qcow2")
    assert (r.rc, r.out, r.err) == (0, "Image committed.\n", "")
    assert "Pattern verification failed" not in oracle.io(
        "-c", "read -P 0x5a 0 64k", "-r", "dir/base.qcow2").out
    make_chain(oracle, tmp_path)
    r = ours.img("commit", "-b", "dir/base.qcow2", "dir/top.qcow2")
    assert (r.rc, r.out) == (1, "")
    assert r.err == ("qemu-img: Did not find 'dir/base.qcow2' in the backing chain of "
                     "'dir/top.qcow2'\n")


# --- item 15: progress ----------------------------------------------------------------------

PROGRESS_LINE = re.compile(r"    \(\d{1,3}\.\d\d/100%\)\n")


def sigusr1_run(tool, cwd, args, ready):
    """Run a slowed-down command, send SIGUSR1 once ready() says it is copying; return
    (rc, stdout, stderr)."""
    p = subprocess.Popen([str(tool.img_path), *args], cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not ready() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGUSR1)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


def test_convert_sigusr1_without_p_prints_on_stderr(ours, oracle, tmp_path):
    """Without -p, SIGUSR1 prints the progress once, on stderr, at the next step."""
    (tmp_path / "src.raw").write_bytes(os.urandom(4 << 20))
    for tool in (ours, oracle):
        out = tmp_path / "out.raw"
        if out.exists():
            out.unlink()
        rc, so, se = sigusr1_run(tool, tmp_path, ["convert", "-m", "1", "-r", "1M", "-O", "raw",
                                                  "src.raw", "out.raw"], out.exists)
        assert (rc, so) == (0, "")
        assert PROGRESS_LINE.fullmatch(se), se


def test_commit_sigusr1_without_p_prints_on_stderr(ours, oracle, tmp_path):
    results = []
    for tool in (ours, oracle):
        for p in tmp_path.iterdir():
            p.unlink()
        assert oracle.img("create", "-q", "-f", "qcow2", "base.qcow2", "4M").rc == 0
        assert oracle.img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                          "top.qcow2").rc == 0
        assert oracle.io("-c", "write -P 7 0 4M", "top.qcow2").rc == 0
        start = os.stat(tmp_path / "base.qcow2").st_size
        rc, so, se = sigusr1_run(tool, tmp_path, ["commit", "-r", "1M", "top.qcow2"],
                                 lambda: os.stat(tmp_path / "base.qcow2").st_size > start)
        assert (rc, so) == (0, "Image committed.\n")
        results.append(se)
    for se in results:
        assert PROGRESS_LINE.fullmatch(se), se


def rebase_chain(oracle, cwd, size, top_writes, new_writes=("write -P 3 0 64k",)):
    for p in cwd.iterdir():
        p.unlink()
    assert oracle.img("create", "-q", "-f", "qcow2", "base.qcow2", size, cwd=cwd).rc == 0
    assert oracle.io("-c", "write -P 1 0 64k", "base.qcow2", cwd=cwd).rc == 0
    assert oracle.img("create", "-q", "-f", "qcow2", "new.qcow2", size, cwd=cwd).rc == 0
    for w in new_writes:
        assert oracle.io("-c", w, "new.qcow2", cwd=cwd).rc == 0
    assert oracle.img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                      "mid.qcow2", cwd=cwd).rc == 0
    mid_write = "write -P 2 4M 3M" if size in ("16M", "64M", "1G") else "write -P 2 1M 1M"
    assert oracle.io("-c", mid_write, "mid.qcow2", cwd=cwd).rc == 0
    assert oracle.img("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2",
                      "top.qcow2", cwd=cwd).rc == 0
    for w in top_writes:
        assert oracle.io("-c", w, "top.qcow2", cwd=cwd).rc == 0


REBASE_PROGRESS = [
    # (size, writes into top, rebase -b): one 2 MiB piece = one step of 100/(size/2M) percent
    ("64M", ["write -P 4 4M 1M", "write -P 5 40M 2M", "write -P 6 60M 64k"], "new.qcow2"),
    ("5M", [], "new.qcow2"),          # steps of 50%: the bar would pass 100
    ("4097k", [], "new.qcow2"),
    ("1G", [], "new.qcow2"),          # steps of 0.195%, drawn every 2%
    ("16M", ["write -P 3 0 64k"], "base.qcow2"),  # onto a file in the chain: only what
    ("16M", [], "mid.qcow2"),                     # the layers above it allocate moves it
]                                                 # (onto the old backing itself: 0 and 100)


@pytest.mark.parametrize("size,writes,new", REBASE_PROGRESS)
def test_rebase_progress_steps_like_qemu(ours, oracle, tmp_path, size, writes, new):
    results = []
    for tool in (ours, oracle):
        rebase_chain(oracle, tmp_path, size, writes)
        ref = oracle.img("convert", "-O", "raw", "top.qcow2", "ref.raw")
        assert ref.rc == 0
        r = tool.img("rebase", "-p", "-b", new, "-F", "qcow2", "top.qcow2")
        assert oracle.img("compare", "-F", "raw", "top.qcow2", "ref.raw").rc == 0
        results.append((r.rc, r.out, r.err))
    assert results[0] == results[1]
    assert results[0][1].count("/100%)") >= (2 if new == "mid.qcow2" else 4)


# --- item 16: a failed create leaves what qemu-img leaves -----------------------------------

FAILED_CREATES = [
    # qcow2 makes the file, then checks its options: on failure it deletes the file, even one
    # that was there before
    ["-f", "qcow2", "-o", "cluster_size=1536", "x.img", "1M"],
    ["-f", "qcow2", "-o", "refcount_bits=3", "x.img", "1M"],
    ["-f", "qcow2", "-o", "compat=0.10,lazy_refcounts=on", "x.img", "1M"],
    ["-f", "qcow2", "-o", "compat=9", "x.img", "1M"],
    ["-f", "qcow2", "-o", "preallocation=bogus", "x.img", "1M"],
    ["-f", "qcow2", "-o", "data_file_raw=on", "x.img", "1M"],
    ["-f", "qcow2", "-o", "extended_l2=on,cluster_size=4k", "x.img", "1M"],
    ["-f", "qcow2", "-F", "qcow2", "x.img", "1M"],
    ["-f", "qcow2", "-F", "qcow2", "-o", "cluster_size=1536", "x.img", "1M"],
    ["-f", "qcow2", "-F", "qcow2", "-o", "compat=0.10,lazy_refcounts=on", "x.img", "1M"],
    ["-f", "qcow2", "-o", "cluster_size=512", "x.img", "64T"],
    ["-f", "qcow2", "-o", "preallocation=metadata", "x.img", "1E"],
    ["-f", "qcow2", "-o", "data_file=d.raw", "x.img", "1E"],
    # refused before anything is made: the file stays
    ["-f", "qcow2", "-o", "refcount_bits=abc", "x.img", "1M"],
    ["-f", "qcow2", "-b", "nosuch.qcow2", "-F", "qcow2", "x.img", "1M"],
    # raw is the protocol's create: what it made stays
    ["-f", "raw", "-o", "preallocation=bogus", "x.img", "1M"],
    ["-f", "raw", "x.img", "9223372036854775807"],
]


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
@pytest.mark.parametrize("args", FAILED_CREATES, ids=[" ".join(a) for a in FAILED_CREATES])
def test_failed_create_leaves_what_qemu_leaves(ours, oracle, tmp_path, args, existing):
    results = []
    for tool in (ours, oracle):
        for p in tmp_path.iterdir():
            p.unlink()
        if existing:
            (tmp_path / "x.img").write_bytes(b"hello\n")
            (tmp_path / "d.raw").write_bytes(b"data\n")
        r = tool.img("create", *args)
        left = {p.name: (p.read_bytes() if p.stat().st_size < 64 else p.stat().st_size)
                for p in tmp_path.iterdir()}
        results.append((r.rc, r.out, r.err, left))
    assert results[0] == results[1]
    assert results[0][0] == 1


@pytest.mark.parametrize("args", [["-O", "qcow2", "-o", "compat=0.10,lazy_refcounts=on"],
                                  ["-O", "qcow2", "-F", "qcow2"]])
def test_failed_convert_create_removes_target(ours, oracle, tmp_path, args):
    results = []
    for tool in (ours, oracle):
        (tmp_path / "src.raw").write_bytes(b"\1" * 65536)
        (tmp_path / "out.qcow2").write_bytes(b"old\n")
        r = tool.img("convert", *args, "src.raw", "out.qcow2")
        results.append((r.rc, r.out, r.err, (tmp_path / "out.qcow2").exists()))
    assert results[0] == results[1]
    assert results[0][0] == 1 and not results[0][3]


def test_negative_size_option_of_protocol(ours):
    # 9.1 wording (7.2: "Parameter 'extent_size_hint' expects a non-negative number ...")
    r = ours.img("create", "-f", "raw", "-o", "size=1M,extent_size_hint=-1", "r.raw")
    assert (r.rc, r.out) == (1, "")
    assert r.err == "qemu-img: r.raw: Value '-1' is out of range for parameter 'extent_size_hint'\n"


# --image-opts with -f: qemu-img refuses the pair when it opens the image, for every command
# that opens one through its common path (7.2 and 9.1 alike).
@pytest.mark.parametrize("args", [
    ["info"], ["check"], ["map"], ["measure", "-O", "qcow2"], ["commit"],
    ["rebase", "-u", "-b", ""], ["amend", "-o", "size=1M"], ["bench", "-c", "1"],
    ["resize", "--image-opts", "-f", "raw", "driver=raw,file.filename=r.raw", "2M"]])
def test_image_opts_with_format_refused(ours, oracle, tmp_path, args):
    (tmp_path / "r.raw").write_bytes(bytes(1 << 20))
    if "--image-opts" not in args:
        args = args + ["-f", "raw", "--image-opts", "driver=raw,file.filename=r.raw"]
    r = assert_same(ours, oracle, tmp_path, *args)
    assert r.rc == 1 and "mutually exclusive" in r.err
