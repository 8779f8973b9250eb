# SPDX-License-Identifier: MIT
"""The null-co / null-aio protocols against the oracle (Debian's qemu 7.2).

Differences from QEMU, by design and named here:
- block status: QEMU reports read-zeroes=off ranges as unallocated and not
  zero ("present": false, "zero": false); qimg reports every range as zero in
  both modes (what convert and compare conclude from QEMU's answer anyway), so
  `map --output=json` differs in "present"/"zero"/"offset" and the human map
  (empty) is the same.
- json: filenames with options print as QEMU regenerates them
  ('json:{"driver": "null-co", "size": 4096}'); qimg prints 'null-co://'.
- 9.1's info adds the "Child node" section and map's "compressed" member.
"""
import json
import re

import pytest

from conftest import QIMG_IO


def strip_child(text):
    return text.split("Child node")[0]


def normalize(text):
    return re.sub(r"\d\d\.\d\d sec \(.*\)", "T", text)


@pytest.mark.parametrize("spec", ["null-co://", "null-aio://", 'json:{"driver": "null-co"}'])
def test_info_human_like_oracle(ours, oracle, spec):
    a, b = ours.img("info", spec), oracle.img("info", spec)
    assert a.rc == b.rc == 0
    assert strip_child(a.out) == b.out
    assert a.err == b.err  # the probing warning for the plain filename, or nothing


def test_info_size_option(ours):
    r = ours.img("info", "--output=json", 'json:{"driver": "null-co", "size": 4096}')
    assert r.rc == 0
    data = json.loads(r.out)
    assert data["virtual-size"] == 4096 and data["format"] == "null-co"
    assert data["actual-size"] == 0


def test_map_human_empty_like_oracle(ours, oracle):
    for spec in ("null-co://", 'json:{"driver": "null-co", "size": 1048576, "read-zeroes": true}'):
        a, b = ours.img("map", spec), oracle.img("map", spec)
        assert a.rc == b.rc == 0
        assert a.out == b.out == "Offset          Length          Mapped to       File\n"


NAMING_SPECS = [
    "null-co://",
    'json:{"driver": "null-co", "size": 1048576}',
    'json:{"driver": "null-co", "size": 1048576, "read-zeroes": true}',
    'json:{"driver": "null-co", "read-zeroes": true}',
    'json:{"driver": "null-aio", "size": 1048576, "latency-ns": 10}',
    'json:{"driver": "raw", "file": {"driver": "null-co", "size": 1048576}}',
    'json:{"driver": "raw", "size": 512, "file": {"driver": "null-co", "read-zeroes": true}}',
]


def _strip_91(text):
    """9.1's map adds "compressed" and info adds "children": not in the 7.2 oracle."""
    j = json.loads(text)
    if isinstance(j, list):
        return [{k: v for k, v in e.items() if k != "compressed"} for e in j]
    j.pop("children", None)
    return j


@pytest.mark.parametrize("spec", NAMING_SPECS)
def test_map_and_info_json_like_oracle(ours, oracle, spec):
    """Block status (unknown content without read-zeroes: not present, not zero), the
    json: node names (size and read-zeroes are strong options), and no dirty-flag or
    format-specific where null-co answers no get_info."""
    for cmd in (["map", "--output=json"], ["info", "--output=json"]):
        a, b = ours.img(*cmd, spec), oracle.img(*cmd, spec)
        assert a.rc == b.rc == 0, (a, b)
        assert _strip_91(a.out) == _strip_91(b.out)


def test_convert_and_compare(ours, oracle, tmp_path):
    src = 'json:{"driver": "null-co", "size": 4194304}'
    for tool, name in ((ours, "a.raw"), (oracle, "b.raw")):
        assert tool.img("convert", "-O", "raw", src, name).rc == 0
    a, b = (tmp_path / "a.raw").read_bytes(), (tmp_path / "b.raw").read_bytes()
    assert a == b == b"\0" * 4194304
    for tool in (ours, oracle):
        r = tool.img("compare", src, "a.raw")
        assert (r.rc, r.out) == (0, "Images are identical.\n")
    (tmp_path / "c.raw").write_bytes(b"\0" * 4096 + b"\1" + b"\0" * (4194304 - 4097))
    a, b = ours.img("compare", src, "c.raw"), oracle.img("compare", src, "c.raw")
    assert (a.rc, a.out) == (b.rc, b.out) == (1, "Content mismatch at offset 4096!\n")


def test_convert_to_null_target(ours, tmp_path):
    (tmp_path / "s.raw").write_bytes(b"\7" * 65536)
    r = ours.img("convert", "-n", "-O", "raw", "s.raw", "null-co://")
    assert r.rc == 0, r.err


@pytest.mark.skipif(not QIMG_IO.exists(), reason="qimg-io is not built")
@pytest.mark.parametrize("spec,fmt", [
    ("null-co://", []),
    ("null-aio://", ["-f", "raw"]),
    ('json:{"driver": "null-co", "read-zeroes": true}', []),
    ('json:{"driver": "null-co", "read-zeroes": false, "latency-ns": 1000}', []),
])
def test_qemu_io_like_oracle(ours, oracle, spec, fmt):
    """read-zeroes=off leaves qemu-io's 0xab-filled buffer as it was, as in QEMU."""
    args = fmt + ["-c", "read -v 0 16", "-c", "write -P 1 0 512", "-c", "read -P 1 0 512",
                  "-c", "read -P 0 0 512", "-c", "write -z 0 4k", "-c", "discard 0 4k",
                  "-c", "flush", spec]
    a, b = ours.io(*args), oracle.io(*args)
    assert normalize(a.out) == normalize(b.out)
    assert a.err.replace(str(ours.io_path), "qemu-io") == b.err
    assert a.rc == b.rc


@pytest.mark.parametrize("spec", [
    "null-co://foo",
    'json:{"driver": "null-co", "latency-ns": -1}',
    'json:{"driver": "null-co", "bogus": 1}',
])
def test_bad_options_like_oracle(ours, oracle, spec):
    a, b = ours.img("info", spec), oracle.img("info", spec)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert a.rc == 1


@pytest.mark.parametrize("spec,msg", [
    # QEMU 7.2 aborts on these (an assertion in its option parser); qimg reports them.
    ('json:{"driver": "null-co", "size": -1}', "size"),
    ('json:{"driver": "null-co", "read-zeroes": "x"}', "read-zeroes"),
])
def test_bad_values_rejected(ours, spec, msg):
    r = ours.img("info", spec)
    assert r.rc == 1 and msg in r.err.splitlines()[0]
