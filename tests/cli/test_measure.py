# SPDX-License-Identifier: MIT
"""qemu-img measure with raw output, from --size and from a source image, against the oracle."""
import json

import pytest

from conftest import write_pattern

MiB = 1 << 20


@pytest.fixture(scope="module")
def imgs(tmp_path_factory):
    t = tmp_path_factory.mktemp("measure")
    write_pattern(t / "m.raw", {0: b"abc", 5 * MiB: b"\x01" * 4096}, size=20 * MiB)
    (t / "z.raw").write_bytes(b"")
    return t


def same(ours, oracle, cwd, *args):
    a, b = ours.img(*args, cwd=cwd), oracle.img(*args, cwd=cwd)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err), (args, a, b)
    return a


@pytest.mark.parametrize("args", [
    ["-O", "raw", "--size", "1G"],
    ["--size", "1G"],
    ["--size", "0"],
    ["--size", "4096"],
    ["--output=json", "-O", "raw", "--size", "1G"],
    ["--output=human", "--size", "3M"],
    ["-O", "raw", "m.raw"],
    ["m.raw"],
    ["z.raw"],
    ["-O", "raw", "-f", "raw", "m.raw"],
    ["-O", "raw", "--output=json", "m.raw"],
    ["-U", "-O", "raw", "m.raw"],
    ["-O", "raw", "--image-opts", "driver=raw,file.filename=m.raw"],
    ["-O", "raw", "--image-opts", "driver=raw,file.filename=m.raw,offset=4096,size=8192"],
    ['json:{"driver":"raw","file":{"driver":"file","filename":"m.raw"}}'],
    ["--object", "secret,id=s0,data=x", "--size", "1M"],
    # -o: the output format's create options and the file protocol's
    ["-O", "raw", "-o", "preallocation=full", "--size", "1G"],
    ["-O", "raw", "-o", "preallocation=full", "m.raw"],
    ["-O", "raw", "-o", "preallocation=off,nocow=on", "--size", "1G"],
    ["-O", "raw", "-o", "extent_size_hint=1M", "--size", "1G"],
    ["-O", "raw", "-o", "size=5M", "--size", "1G"],
    ["-O", "raw", "--size", "1G", "-o", "size=3"],
    ["-O", "raw", "-o", "size=1M", "m.raw"],
    ["-O", "raw", "-o", "preallocation=full", "-o", "nocow=off", "--size", "1G"],
])
def test_measure_matches_oracle(ours, oracle, imgs, args):
    r = same(ours, oracle, imgs, "measure", *args)
    assert r.rc == 0


@pytest.mark.parametrize("args", [
    [],
    ["-O", "raw"],
    ["-O", "raw", "--size", "1G", "m.raw"],
    ["--size", "1G", "-f", "raw", "m.raw"],
    ["--size", "1G", "m.raw", "m.raw"],
    ["m.raw", "m.raw"],
    ["-O", "raw", "m.raw", "extra"],
    ["--size", "1G", "--image-opts"],
    ["--size", "1G", "-f", "raw"],
    ["--size", "1G", "-l", "x"],
    ["-f", "raw"],
    ["-O", "raw", "--size", "abc"],
    ["-O", "raw", "--size", "1Q"],
    ["--size", "abc", "m.raw"],
    ["-O", "nosuch", "--size", "1G"],
    ["-O", "nosuch", "m.raw"],
    ["-O", "nosuch", "nosuch"],
    ["-O", "file", "--size", "1M"],
    ["-O", "raw", "nosuch"],
    ["-f", "nosuch", "m.raw"],
    ["--output=xml", "-O", "raw", "--size", "1G"],
    ["--image-opts", "driver=raw,file.filename=m.raw,foo=bar"],
    # -o help is not special to measure: it is an unknown option (after the size checks)
    ["-O", "raw", "-o", "help"],
    ["-o", "help"],
    ["-O", "raw", "-o", "?"],
    ["-O", "raw", "-o", "help", "--size", "1G"],
    ["-O", "raw", "-o", "help", "m.raw"],
    ["-o", "help", "m.raw"],
    ["-O", "nosuch", "-o", "help", "--size", "1G"],
    ["-O", "raw", "-o", "foo=bar", "--size", "1G"],
    ["-O", "raw", "-o", "foo=bar", "nosuch"],
    ["-O", "raw", "-o", "a=b=c", "--size", "1G"],
    ["-O", "raw", "-o", "size=abc", "--size", "1G"],
    ["-O", "raw", "-o", "nocow=maybe", "--size", "1G"],
    ["-O", "raw", "-o", "preallocation=full", "-o", "foo=1", "--size", "1G"],
    ["--size", "1G", "-o", "backing_file=x"],
    # invalid option lists are refused while parsing the options
    ["-O", "raw", "-o", ",,", "--size", "1G"],
    ["-O", "raw", "-o", ",,", "nosuch"],
    ["-o", ",,", "-O", "nosuch", "--size", "1G"],
    ["-o", ",,", "--size", "abc"],
    ["--size", "abc", "-o", ",,"],
    ["-o", "", "--size", "1M"],
    ["-o", ",a", "--size", "1M"],
    ["-o", "a,,,", "--size", "1M"],
    ["-o", ",,a", "--size", "1M"],
    ["-o", "size=1M,", "--size", "1M"],
    ["-o", "=", "--size", "1M"],
    # -l: parsed up front, then refused for raw
    ["-O", "raw", "-l", "snap", "m.raw"],
    ["-O", "raw", "-l", "snapshot.name=x", "m.raw"],
    ["-O", "raw", "-l", "snapshot.id=1,snapshot.name=x", "m.raw"],
    ["-O", "raw", "-l", "snapshot.foo=x", "m.raw"],
    ["-l", "snapshot.foo=x"],
    ["-l", "snapshot.foo=x", "--size", "1G"],
])
def test_measure_errors_match_oracle(ours, oracle, imgs, args):
    r = same(ours, oracle, imgs, "measure", *args)
    assert r.rc == 1


def test_measure_human_and_json(ours, imgs):
    r = ours.img("measure", "-O", "raw", "m.raw", cwd=imgs)
    assert r.out == "required size: 20971520\nfully allocated size: 20971520\n"
    r = ours.img("measure", "--output=json", "--size", "1G", cwd=imgs)
    assert r.out == '{\n    "required": 1073741824,\n    "fully-allocated": 1073741824\n}\n'
    assert json.loads(r.out) == {"required": 1 << 30, "fully-allocated": 1 << 30}


def test_measure_negative_size_uses_91_wording(ours, imgs):
    # qemu-img 9.1 reports a negative size as out of range (7.2: "You may use k, M, G ...").
    r = ours.img("measure", "--size", "-1", cwd=imgs)
    assert (r.rc, r.out) == (1, "")
    assert r.err == ("qemu-img: Invalid image size specified. "
                     "Must be between 0 and 9223372036854775807.\n")


@pytest.mark.parametrize("size", ["1", "1000", "9223372036854775807"])
def test_measure_raw_rounds_to_sectors(ours, oracle, imgs, size):
    same(ours, oracle, imgs, "measure", "--size", size)


def test_measure_raw_ignores_bad_preallocation(ours, oracle, imgs):
    same(ours, oracle, imgs, "measure", "-o", "preallocation=bogus", "--size", "1G")
