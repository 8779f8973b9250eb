# SPDX-License-Identifier: MIT
"""info --backing-chain and map across chains of three and more layers, against the
oracle (7.2), and guest reads through chains.

9.1 differences (samples-qemu-img-9.1.md): info adds the "Child node '/file':"
section (human) and "children" (JSON), removed from ours before comparing;
map --output=json adds "compressed", likewise removed.
"""
import json

import pytest

from test_chain_helpers import (CHAIN_LAYERS, COMPRESSED, build_chain, oracle_io,
                                strip_children, strip_json_children)

LAYERS = ["top.qcow2", "mid.qcow2", "base.qcow2"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    from conftest import ORACLE_IMG, ORACLE_IO, Tool
    if not ORACLE_IMG:
        pytest.skip("qemu-img (the oracle) is not installed")
    d = tmp_path_factory.mktemp("chain")
    build_chain(Tool(ORACLE_IMG, ORACLE_IO, d), d)
    # a fourth layer in a subdirectory, with a relative path back up
    (d / "sub").mkdir()
    build_chain(Tool(ORACLE_IMG, ORACLE_IO, d), d / "sub",
                [("l4.qcow2", "../top.qcow2", None, ["write -P 10 7M 64k", "write -z 0 64k"])])
    return d


TOPS = ["top.qcow2", "mid.qcow2", "sub/l4.qcow2"]


@pytest.mark.parametrize("img", TOPS)
def test_info_backing_chain_human(chain, ours, oracle, img):
    ro = oracle.img("info", "--backing-chain", img, cwd=chain)
    rq = ours.img("info", "--backing-chain", img, cwd=chain)
    assert rq.rc == ro.rc == 0
    assert "Child node '/file':" in rq.out
    assert strip_children(rq.out) == ro.out


@pytest.mark.parametrize("img", TOPS)
def test_info_backing_chain_json(chain, ours, oracle, img):
    ro = oracle.img("info", "--backing-chain", "--output=json", img, cwd=chain)
    rq = ours.img("info", "--backing-chain", "--output=json", img, cwd=chain)
    assert rq.rc == ro.rc == 0
    ours_list = json.loads(rq.out)
    assert isinstance(ours_list, list)
    assert len(ours_list) == {"top.qcow2": 3, "mid.qcow2": 2, "sub/l4.qcow2": 4}[img]
    assert strip_json_children(ours_list) == json.loads(ro.out)


@pytest.mark.parametrize("img", TOPS)
@pytest.mark.parametrize("opts", [[], ["--output=json"], ["--start-offset=1M"],
                                  ["--start-offset=3M", "--max-length=2M", "--output=json"]])
def test_map_like_qemu_img(chain, ours, oracle, img, opts):
    ro = oracle.img("map", *opts, img, cwd=chain)
    rq = ours.img("map", *opts, img, cwd=chain)
    assert (rq.rc, rq.err.replace("qemu-img", "")) == (ro.rc, ro.err.replace("qemu-img", ""))
    out = COMPRESSED.sub("", rq.out) if "--output=json" in opts else rq.out
    assert out == ro.out


def test_map_human_without_compressed(tmp_path, ours, oracle):
    """Human map works across a chain whose layers hold no compressed clusters."""
    layers = [(n, b, s, [w for w in ws if "-c" not in w]) for n, b, s, ws in CHAIN_LAYERS]
    build_chain(oracle, tmp_path, layers)
    ro = oracle.img("map", "top.qcow2", cwd=tmp_path)
    rq = ours.img("map", "top.qcow2", cwd=tmp_path)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)
    assert ro.rc == 0 and "mid.qcow2" in ro.out and "base.qcow2" in ro.out


@pytest.mark.parametrize("img", TOPS)
def test_reads_fall_through(chain, ours, oracle, tmp_path, img):
    """Every guest byte read through the chain (qimg convert) equals the oracle's."""
    a, b = tmp_path / "a.raw", tmp_path / "b.raw"
    assert oracle.img("convert", "-O", "raw", img, str(a), cwd=chain).rc == 0
    assert ours.img("convert", "-O", "raw", img, str(b), cwd=chain).rc == 0
    assert a.read_bytes() == b.read_bytes()


def test_reads_past_shorter_backing_are_zero(chain, ours):
    # top is 8 MiB over a 4 MiB mid: 4M..8M reads zeroes except what top wrote
    r = ours.io("-r", "-c", "read -P 0 4352k 704k", "-c", "read -P 8 4032k 128k",
                "-c", "read -P 6 5M 64k", "-c", "read -P 0 7M 1M", "top.qcow2", cwd=chain)
    assert r.rc == 0 and "fail" not in r.out.lower(), r


def test_subcluster_fall_through(tmp_path, ours, oracle):
    """Extended L2: a 4 KiB write in the top allocates one subcluster; the rest reads below."""
    layers = [
        ("base.qcow2", None, "1M", ["write -P 1 0 1M"]),
        ("mid.qcow2", "base.qcow2", None, ["write -P 2 32k 8k"]),
        ("top.qcow2", "mid.qcow2", None, ["write -P 3 4k 4k", "write -z 40k 2k"]),
    ]
    build_chain(oracle, tmp_path, layers, create_opts=["-o", "extended_l2=on"])
    r = ours.io("-r", "-c", "read -P 1 0 4k", "-c", "read -P 3 4k 4k", "-c", "read -P 1 8k 24k",
                "-c", "read -P 2 32k 8k", "-c", "read -P 0 40k 2k", "-c", "read -P 1 42k 982k",
                "top.qcow2", cwd=tmp_path)
    assert r.rc == 0 and "fail" not in r.out.lower(), r
    ro = oracle.img("map", "--output=json", "top.qcow2", cwd=tmp_path)
    rq = ours.img("map", "--output=json", "top.qcow2", cwd=tmp_path)
    assert COMPRESSED.sub("", rq.out) == ro.out


def test_qimg_built_chain_reads_in_qemu(tmp_path, ours, oracle):
    build_chain(ours, tmp_path)
    oracle_io("-r", "-c", "read -P 5 128k 4k", "-c", "read -P 1 132k 60k", "-c",
              "read -P 4 3M 64k", "-c", "read -P 0 4352k 704k", "top.qcow2", cwd=tmp_path)
    ro = oracle.img("map", "--output=json", "top.qcow2", cwd=tmp_path)
    rq = ours.img("map", "--output=json", "top.qcow2", cwd=tmp_path)
    assert COMPRESSED.sub("", rq.out) == ro.out


def test_backing_loop_refused(tmp_path, ours, oracle):
    d = tmp_path
    assert oracle.img("create", "-q", "-f", "qcow2", "a.qcow2", "1M", cwd=d).rc == 0
    assert oracle.img("create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2",
                      "b.qcow2", cwd=d).rc == 0
    assert oracle.img("rebase", "-u", "-b", "b.qcow2", "-F", "qcow2", "a.qcow2", cwd=d).rc == 0
    ro = oracle.img("info", "--backing-chain", "b.qcow2", cwd=d)
    rq = ours.img("info", "--backing-chain", "b.qcow2", cwd=d)
    assert (rq.rc, rq.out, rq.err) == (ro.rc, ro.out, ro.err)
    assert rq.err == "qemu-img: Backing file 'b.qcow2' creates an infinite loop.\n"
    # qemu-img 7.2 recurses without end here; qimg refuses once
    for cmd in (["map", "b.qcow2"], ["compare", "b.qcow2", "a.qcow2"],
                ["convert", "-O", "raw", "b.qcow2", "x.raw"], ["commit", "b.qcow2"],
                ["rebase", "-b", "", "b.qcow2"]):
        r = ours.img(*cmd, cwd=d, timeout=60)
        assert r.rc == (2 if cmd[0] == "compare" else 1)
        assert r.err == ("qemu-img: Could not open 'b.qcow2': Backing file 'b.qcow2' creates "
                         "an infinite loop\n"), (cmd, r)
    # an unsafe rebase (no backing opened) is how it is fixed
    assert ours.img("rebase", "-u", "-b", "", "a.qcow2", cwd=d).rc == 0
    assert ours.img("map", "b.qcow2", cwd=d).rc == 0


def test_self_loop_refused(tmp_path, ours):
    d = tmp_path
    assert ours.img("create", "-q", "-f", "qcow2", "s.qcow2", "1M", cwd=d).rc == 0
    assert ours.img("rebase", "-u", "-b", "s.qcow2", "-F", "qcow2", "s.qcow2", cwd=d).rc == 0
    r = ours.img("info", "--backing-chain", "--output=json", "s.qcow2", cwd=d)
    assert (r.rc, r.out, r.err) == (1, "", "qemu-img: Backing file 's.qcow2' creates an "
                                           "infinite loop.\n")
    r = ours.img("map", "s.qcow2", cwd=d)
    assert r.rc == 1 and "creates an infinite loop" in r.err


def test_over_deep_chain_refused(tmp_path, ours):
    """More than 256 images under the top: refused with one message, not one per layer."""
    d = tmp_path
    assert ours.img("create", "-q", "-f", "qcow2", "l0.qcow2", "1M", cwd=d).rc == 0
    for i in range(1, 259):
        r = ours.img("create", "-q", "-u", "-f", "qcow2", "-b", f"l{i - 1}.qcow2", "-F", "qcow2",
                     f"l{i}.qcow2", "1M", cwd=d)
        assert r.rc == 0, r
    r = ours.img("map", "l258.qcow2", cwd=d)
    assert (r.rc, r.err) == (1, "qemu-img: Could not open 'l258.qcow2': Backing chain too deep "
                                "(more than 256 images)\n")
    r = ours.img("info", "--backing-chain", "l258.qcow2", cwd=d)
    assert r.rc == 1 and r.err == "qemu-img: Backing chain of 'l258.qcow2' is too deep\n"
    # 200 layers are fine
    r = ours.io("-r", "-c", "read -P 0 0 64k", "l200.qcow2", cwd=d)
    assert r.rc == 0 and "fail" not in r.out.lower()


def test_size_mismatch_map_depth_for_short_middle(tmp_path, ours, oracle):
    """A short layer in the middle: what lies past its end is decided at the layer above."""
    layers = [
        ("base.qcow2", None, "8M", ["write -P 1 0 8M"]),
        ("mid.qcow2", "base.qcow2", "2M", ["write -P 2 1M 64k"]),
        ("top.qcow2", "mid.qcow2", "6M", ["write -P 3 5M 64k"]),
    ]
    build_chain(oracle, tmp_path, layers)
    ro = oracle.img("map", "--output=json", "top.qcow2", cwd=tmp_path)
    rq = ours.img("map", "--output=json", "top.qcow2", cwd=tmp_path)
    assert COMPRESSED.sub("", rq.out) == ro.out
    r = ours.io("-r", "-c", "read -P 1 0 1M", "-c", "read -P 0 2M 3M", "-c",
                "read -P 3 5M 64k", "top.qcow2", cwd=tmp_path)
    assert r.rc == 0 and "fail" not in r.out.lower(), r
