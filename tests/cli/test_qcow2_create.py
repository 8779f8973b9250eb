# SPDX-License-Identifier: MIT
"""qemu-img create/info/measure for qcow2 against the oracle (Debian's qemu-img 7.2).

Both 7.2 and 9.1 write only the L1 table's entries (a 1 GiB image is 196624
bytes long); 9.1's info prints that length rounded up to 512 bytes ("file
length: 192 KiB (197120 bytes)", samples-qemu-img-9.1.md). Our image must be
as long as the oracle's and equal to it.
"""
import json

import pytest

from conftest import data_runs

CREATE_CASES = [
    ("default", [], "1G"),
    ("v2", ["-o", "compat=0.10"], "1G"),
    ("v2-names", ["-o", "compat=v2,cluster_size=4k,preallocation=metadata,lazy_refcounts=off"],
     "64M"),
    ("v3-name", ["-o", "compat=v3"], "1M"),
    ("c512", ["-o", "cluster_size=512"], "1M"),
    ("c512-1G", ["-o", "cluster_size=512"], "1G"),
    ("c4k", ["-o", "cluster_size=4k"], "64M"),
    ("c2M", ["-o", "cluster_size=2M"], "10G"),
    ("rb1", ["-o", "refcount_bits=1"], "1G"),
    ("rb8", ["-o", "refcount_bits=8,cluster_size=1k"], "100M"),
    ("rb64", ["-o", "refcount_bits=64"], "1G"),
    ("ext-zstd", ["-o", "extended_l2=on,cluster_size=128k,compression_type=zstd,refcount_bits=64"],
     "64M"),
    ("lazy", ["-o", "lazy_refcounts=on"], "1G"),
    ("size0", [], "0"),
    ("odd-size", [], "1000"),
    ("prealloc-metadata", ["-o", "preallocation=metadata"], "1M"),
    ("prealloc-metadata-10G", ["-o", "preallocation=metadata"], "10G"),
    ("prealloc-metadata-c512", ["-o", "cluster_size=512,preallocation=metadata"], "4M"),
    ("prealloc-falloc", ["-o", "preallocation=falloc"], "256M"),  # falloc really allocates: keep CI disk use small
    ("prealloc-full", ["-o", "preallocation=full"], "3M"),
    ("prealloc-full-c4k", ["-o", "cluster_size=4k,preallocation=full"], "64M"),
    ("prealloc-ext", ["-o", "extended_l2=on,preallocation=metadata"], "16M"),
    ("prealloc-falloc-rb64", ["-o", "cluster_size=1k,preallocation=falloc,refcount_bits=64"], "64M"),
]

ERROR_CASES = [
    ["-o", "cluster_size=4k,extended_l2=on"],
    ["-o", "cluster_size=1000"],
    ["-o", "cluster_size=256"],
    ["-o", "cluster_size=4M"],
    ["-o", "refcount_bits=3"],
    ["-o", "refcount_bits=128"],
    ["-o", "refcount_bits=0"],
    ["-o", "refcount_bits=abc"],
    ["-o", "compat=foo"],
    ["-o", "compat=0.10,lazy_refcounts=on"],
    ["-o", "compat=0.10,refcount_bits=8"],
    ["-o", "compat=0.10,extended_l2=on"],
    ["-o", "compat=0.10,compression_type=zstd"],
    ["-o", "compat=0.10,lazy_refcounts=on,extended_l2=on,cluster_size=4k"],
    ["-o", "refcount_bits=3,compat=0.10,lazy_refcounts=on"],
    ["-o", "refcount_bits=3,extended_l2=on,cluster_size=4k"],
    ["-o", "compression_type=lz"],
    ["-o", "preallocation=foo"],
    ["-o", "compression_type=foo,preallocation=foo"],
    ["-o", "compat=foo,preallocation=foo"],
    ["-o", "lazy_refcounts=maybe"],
    ["-o", "nosuch=1"],
    ["-o", "data_file_raw=on"],
]


def _run_both(ours, oracle, tmp_path, args, size):
    (tmp_path / "o").mkdir()
    (tmp_path / "m").mkdir()
    extra = [size] if size is not None else []
    a = oracle.img("create", "-f", "qcow2", *args, "t.qcow2", *extra, cwd=tmp_path / "o")
    b = ours.img("create", "-f", "qcow2", *args, "t.qcow2", *extra, cwd=tmp_path / "m")
    return a, b, tmp_path / "o" / "t.qcow2", tmp_path / "m" / "t.qcow2"


def _same_image(ref, mine):
    """Byte-equal over the oracle's length (holes skipped), only zeroes after it."""
    rlen, mlen = ref.stat().st_size, mine.stat().st_size
    assert rlen == mlen
    with open(ref, "rb") as fr, open(mine, "rb") as fm:
        for start, end in sorted(data_runs(ref) + data_runs(mine)):
            for off in range(start, end, 1 << 22):
                n = min(1 << 22, end - off)
                fr.seek(off)
                fm.seek(off)
                a = fr.read(n)
                b = fm.read(n)
                assert b[:len(a)] == a, f"images differ near offset {off}"
                assert b[len(a):] == bytes(len(b) - len(a))


@pytest.mark.parametrize("name,args,size", CREATE_CASES, ids=[c[0] for c in CREATE_CASES])
def test_create_matches_oracle(ours, oracle, tmp_path, name, args, size):
    a, b, ref, mine = _run_both(ours, oracle, tmp_path, args, size)
    assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err)
    assert a.rc == 0
    _same_image(ref, mine)
    chk = oracle.img("check", str(mine))
    assert chk.rc == 0, chk.out + chk.err
    assert chk.out.startswith("No errors were found on the image.")


def test_create_with_backing_matches_oracle(ours, oracle, tmp_path):
    for d in ("o", "m"):
        (tmp_path / d).mkdir()
        oracle.img("create", "-q", "-f", "qcow2", "base.qcow2", "32M", cwd=tmp_path / d)
    for args in (["-b", "base.qcow2", "-F", "qcow2"],
                 ["-b", "base.qcow2", "-F", "qcow2", "-o", "cluster_size=4k"],
                 ["-b", "base.qcow2", "-F", "qcow2", "-o", "compat=0.10"],
                 ["-b", "base.qcow2", "-F", "qcow2", "-o",
                  "extended_l2=on,preallocation=metadata"]):
        a = oracle.img("create", "-f", "qcow2", *args, "t.qcow2", cwd=tmp_path / "o")
        b = ours.img("create", "-f", "qcow2", *args, "t.qcow2", cwd=tmp_path / "m")
        assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err)
        _same_image(tmp_path / "o" / "t.qcow2", tmp_path / "m" / "t.qcow2")


def test_backing_and_preallocation_needs_extended_l2(ours, oracle, tmp_path):
    oracle.img("create", "-q", "-f", "raw", "b.raw", "1M")
    args = ["create", "-f", "qcow2", "-b", "b.raw", "-F", "raw", "-o", "preallocation=metadata",
            "t.qcow2"]
    a = oracle.img(*args)
    b = ours.img(*args)
    assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err)


@pytest.mark.parametrize("args", ERROR_CASES, ids=[" ".join(c) for c in ERROR_CASES])
def test_create_errors_match_oracle(ours, oracle, tmp_path, args):
    a, b, _, _ = _run_both(ours, oracle, tmp_path, args, "1M")
    assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err)


def test_encryption_without_secret_fails_cleanly(ours, oracle):
    # Encryption works with a key-secret (tests/cli/test_qcow2_encrypt.py).
    for opt in ("encryption=on", "encrypt.format=luks"):
        r = ours.img("create", "-f", "qcow2", "-o", opt, "t.qcow2", "1M")
        t = oracle.img("create", "-f", "qcow2", "-o", opt, "t.qcow2", "1M")
        assert (r.rc, r.out, r.err) == (t.rc, t.out, t.err)
        assert r.rc == 1 and "Parameter 'encrypt.key-secret' is required for cipher" in r.err


def test_formatting_line_order(ours, oracle, tmp_path):
    # Every option at once (except those we refuse), given in reverse order.
    opts = ("lazy_refcounts=on,compat=1.1,size=1M,compression_type=zstd,"
            "preallocation=off,extended_l2=off,cluster_size=512,encryption=off")
    a = oracle.img("create", "-f", "qcow2", "-o", opts, "t.qcow2")
    (tmp_path / "t.qcow2").unlink()
    b = ours.img("create", "-f", "qcow2", "-o", opts, "t.qcow2")
    assert a.rc == 0
    assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err)


def test_create_help_matches_oracle(ours, oracle):
    a = oracle.img("create", "-f", "qcow2", "-o", "help")
    b = ours.img("create", "-f", "qcow2", "-o", "help")
    assert (b.rc, b.out) == (a.rc, a.out)


INFO_CASES = [[], ["-o", "compat=0.10"],
              ["-o", "extended_l2=on,cluster_size=128k,compression_type=zstd,refcount_bits=64"],
              ["-o", "lazy_refcounts=on,refcount_bits=1"]]


@pytest.mark.parametrize("args", INFO_CASES, ids=[" ".join(c) or "default" for c in INFO_CASES])
def test_info_format_specific(ours, oracle, tmp_path, args):
    oracle.img("create", "-q", "-f", "qcow2", *args, "t.qcow2", "64M")
    a = json.loads(oracle.img("info", "--output=json", "t.qcow2").out)
    r = ours.img("info", "--output=json", "t.qcow2")
    assert r.rc == 0, r.err
    b = json.loads(r.out)
    for key in ("format", "virtual-size", "cluster-size", "format-specific", "dirty-flag"):
        assert b[key] == a[key]
    # Member order as qemu-img prints it.
    fa = oracle.img("info", "t.qcow2").out.split("Format specific information:")[1]
    fb = ours.img("info", "t.qcow2").out.split("Format specific information:")[1]
    assert fb.split("Child node")[0] == fa.split("Child node")[0]


def test_info_backing(ours, oracle, tmp_path):
    oracle.img("create", "-q", "-f", "qcow2", "base.qcow2", "64M")
    oracle.img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2")
    b = json.loads(ours.img("info", "--output=json", "top.qcow2").out)
    assert b["backing-filename"] == "base.qcow2"
    assert b["backing-filename-format"] == "qcow2"


MEASURE_CASES = [["--size", "1G"], ["--size", "100G", "-o", "cluster_size=512"],
                 ["--size", "10G", "-o", "refcount_bits=64,cluster_size=4k"],
                 ["--size", "5G", "-o", "extended_l2=on"],
                 ["--size", "1G", "-o", "preallocation=full"],
                 ["--size", "123456789"]]


@pytest.mark.parametrize("args", MEASURE_CASES, ids=[" ".join(c) for c in MEASURE_CASES])
def test_measure_size(ours, oracle, args):
    a = oracle.img("measure", "-O", "qcow2", *args)
    b = ours.img("measure", "-O", "qcow2", *args)
    assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err)


def test_measure_source(ours, oracle, tmp_path):
    oracle.img("create", "-q", "-f", "qcow2", "base.qcow2", "1G")
    oracle.img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2")
    oracle.io("-c", "write -P 0xab 0 64k", "-c", "write -z 64k 64k", "-c",
              "write -c -P 0x11 1M 64k", "-c", "write -P 1 300M 3M", "top.qcow2")
    for opts in (["-o", "cluster_size=2M"], [], ["-o", "cluster_size=4k"]):
        a = oracle.img("measure", "-O", "qcow2", *opts, "top.qcow2")
        b = ours.img("measure", "-O", "qcow2", *opts, "top.qcow2")
        assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err)
