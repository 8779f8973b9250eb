# SPDX-License-Identifier: MIT
"""qemu-img info on raw images, human and JSON, against the oracle (7.2) and 9.1's samples."""
import json

import pytest

from conftest import write_pattern, strip_child


def strip_children_json(text):
    """Drop 9.1's "children" member (absent in 7.2), keeping the rest byte-exact."""
    data = json.loads(text)
    data.pop("children", None)
    return data


@pytest.fixture
def img(ours, tmp_path):
    assert ours.img("create", "-f", "raw", "r.raw", "100M").rc == 0
    write_pattern(tmp_path / "r.raw", {0: b"\1" * 65536, 50 << 20: b"\2" * 4096})
    return "r.raw"


def test_info_human_matches_91_layout(ours, img):
    r = ours.img("info", img)
    assert r.rc == 0
    lines = r.out.splitlines()
    assert lines[0] == "image: r.raw"
    assert lines[1] == "file format: raw"
    assert lines[2] == "virtual size: 100 MiB (104857600 bytes)"
    assert lines[3].startswith("disk size: ")
    assert lines[4] == "Child node '/file':"
    assert lines[5] == "    filename: r.raw"
    assert lines[6] == "    protocol type: file"
    assert lines[7] == "    file length: 100 MiB (104857600 bytes)"
    assert lines[8].startswith("    disk size: ")
    assert len(lines) == 9


def test_info_human_equals_oracle_without_child(ours, oracle, img):
    a, b = ours.img("info", img), oracle.img("info", img)
    assert a.rc == b.rc == 0
    assert strip_child(a.out) == b.out


def test_info_json_equals_oracle_without_children(ours, oracle, img):
    a, b = ours.img("info", "--output=json", img), oracle.img("info", "--output=json", img)
    assert a.rc == b.rc == 0
    assert strip_children_json(a.out) == json.loads(b.out)
    # member order and layout: everything but the children block is byte-identical
    tail = a.out[a.out.index('\n    "virtual-size"'):]
    assert tail == b.out[b.out.index('\n    "virtual-size"'):]


def test_info_json_children_layout(ours, img):
    r = ours.img("info", "--output=json", img)
    expected_head = (
        '{\n    "children": [\n        {\n            "name": "file",\n'
        '            "info": {\n                "children": [\n                ],\n'
        '                "virtual-size": 104857600,\n                "filename": "r.raw",\n'
        '                "format": "file",\n')
    assert r.out.startswith(expected_head)
    assert '"format-specific": {\n                    "type": "file",\n' \
           '                    "data": {\n                    }\n                },' in r.out


@pytest.mark.parametrize("args", [
    ["info", "nosuch.qcow2"],
    ["info", "-f", "nosuch", "r.raw"],
    ["info", "-f", "file", "r.raw"],
    ["info", "--output=xml", "r.raw"],
    ["info"],
    ["info", "a", "b"],
    ["info", "--bogus", "r.raw"],
    ["info", "--image-opts", "driver=raw,file.filename=r.raw,foo=1"],
    ["info", "--image-opts", "driver=raw,file.filename=r.raw,file.foo=1"],
    ["info", ""],
    ["info", "/"],
])
def test_info_errors_and_variants_match_oracle(ours, oracle, img, args):
    a, b = ours.img(*args), oracle.img(*args)
    assert a.rc == b.rc
    assert a.err == b.err
    if b.rc == 0:
        assert strip_child(a.out) == b.out


def test_info_json_filename(ours, oracle, img):
    arg = 'json:{"driver":"raw","file":{"driver":"file","filename":"r.raw"}}'
    a, b = ours.img("info", "--output=json", arg), oracle.img("info", "--output=json", arg)
    assert a.rc == b.rc == 0
    assert strip_children_json(a.out) == json.loads(b.out)


def test_info_image_opts(ours, oracle, img):
    arg = "driver=raw,file.filename=r.raw"
    a, b = ours.img("info", "--image-opts", arg), oracle.img("info", "--image-opts", arg)
    assert a.rc == b.rc == 0
    assert strip_child(a.out) == b.out


def test_info_backing_chain_on_raw_is_single_image(ours, img):
    a = ours.img("info", "--backing-chain", "--output=json", img)
    assert a.rc == 0
    data = json.loads(a.out)
    assert isinstance(data, list) and len(data) == 1 and data[0]["format"] == "raw"


def test_info_force_share(ours, img):
    r = ours.img("info", "-U", img)
    assert r.rc == 0 and r.out.startswith("image: r.raw\n")


def test_invoked_name_prefixes_messages(tmp_path):
    from conftest import QIMG, run
    r = run([QIMG, "info", "missing.img"], cwd=tmp_path)
    assert r.err.startswith("qimg: Could not open 'missing.img'")


def test_odd_sized_raw_counts_whole_sectors(ours, oracle, tmp_path):
    # QEMU measures every image in 512-byte sectors: a 1000-byte file is 1024 bytes.
    (tmp_path / "odd.raw").write_bytes(b"\x5a" * 1000)
    a = ours.img("info", "--output=json", "odd.raw")
    b = oracle.img("info", "--output=json", "odd.raw")
    assert json.loads(a.out)["virtual-size"] == json.loads(b.out)["virtual-size"] == 1024
    a, b = ours.img("map", "--output=json", "-f", "raw", "odd.raw"), \
        oracle.img("map", "--output=json", "-f", "raw", "odd.raw")
    assert a.out.replace(', "compressed": false', "") == b.out
