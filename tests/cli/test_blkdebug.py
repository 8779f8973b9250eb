# SPDX-License-Identifier: MIT
"""The blkdebug filter against the oracle (Debian's qemu-io/qemu-img 7.2).

Rules fire on events: read_aio/write_aio come from the raw format above the
filter, flush_to_os/flush_to_disk from flushes (after every write in
writethrough mode). qemu-io 7.2 defaults to writethrough while qimg-io
defaults to writeback, so the flush scenarios name the cache mode (-t)
explicitly. None of the behaviour compared here changed in 9.1, except that
9.1's `info` adds the "Child node" sections (the filter's child is named
"image" there, as in ours).
"""
import json
import re

import pytest

from conftest import QIMG_IO

pytestmark = pytest.mark.skipif(not QIMG_IO.exists(), reason="qimg-io is not built")


def normalize(text):
    return re.sub(r"\d+(\.\d+)? \S+/sec and [0-9.]+ ops/sec", "X", re.sub(
        r"\d\d\.\d\d sec", "T", text))


def blk(rules="", image='{"driver": "file", "filename": "r.raw"}'):
    return ('json:{"driver": "raw", "file": {"driver": "blkdebug", %s"image": %s}}'
            % (rules + ", " if rules else "", image))


def rule_opts(inject=None, set_state=None):
    parts = []
    if inject is not None:
        parts.append('"inject-error": ' + json.dumps(inject))
    if set_state is not None:
        parts.append('"set-state": ' + json.dumps(set_state))
    return ", ".join(parts)


def run_both(ours, oracle, args, files=None):
    out = []
    for tool in (ours, oracle):
        d = tool.cwd / ("oracle" if tool is oracle else "ours")
        d.mkdir(exist_ok=True)
        with open(d / "r.raw", "wb") as f:
            f.truncate(1 << 20)
        for name, text in (files or {}).items():
            (d / name).write_text(text)
        out.append(tool.io(*args, cwd=d))
    return out


def assert_same(ours, oracle, args, files=None):
    a, b = run_both(ours, oracle, args, files)
    assert normalize(a.out) == normalize(b.out)
    assert a.err.replace(str(ours.io_path), "qemu-io") == b.err
    assert a.rc == b.rc
    return a


def cmds(*lines):
    return [x for line in lines for x in ("-c", line)]


def test_plain_passthrough(ours, oracle):
    r = assert_same(ours, oracle, ["-f", "raw"] + cmds(
        "write -P 5 0 64k", "read -P 5 0 64k", "write -z 4k 4k", "read -P 0 4k 4k",
        "discard 8k 4k", "flush") + ["blkdebug::r.raw"])
    assert r.rc == 0


def test_probed_raw_warns_like_qemu(ours, oracle):
    assert_same(ours, oracle, cmds("read 0 512") + ["blkdebug::r.raw"])


SCENARIOS = [
    # (name, inject-error rules, set-state rules, qemu-io commands, extra args)
    ("read_aio_persistent", [{"event": "read_aio", "errno": 5}], None,
     ["read 0 512", "read 0 512", "write 0 512"], []),
    ("read_aio_once", [{"event": "read_aio", "once": True}], None,
     ["read 0 512", "read 0 512", "write 0 512"], []),
    ("read_aio_immediately_enospc", [{"event": "read_aio", "errno": 28, "immediately": True}],
     None, ["read 0 512", "read 0 512"], []),
    ("read_aio_sector", [{"event": "read_aio", "sector": 8}], None,
     ["read 0 512", "read 4096 512", "read 1024 4096", "read 8192 512"], []),
    ("write_aio_once_enospc", [{"event": "write_aio", "once": True, "errno": 28}], None,
     ["write 0 512", "write 0 512", "read 0 512"], []),
    ("iotype_write", [{"event": "read_aio", "iotype": "write"}], None,
     ["read 0 512", "write 0 512", "read 0 512"], []),
    ("iotype_discard", [{"event": "write_aio", "iotype": "discard"}], None,
     ["write 0 512", "write -z 0 512", "discard 0 512", "read 0 512"], []),
    ("zero_write_raises_nothing", [{"event": "write_aio", "iotype": "write-zeroes"}], None,
     ["write -z 0 512", "discard 0 512", "write 0 512", "read 0 512"], []),
    ("unknown_errno", [{"event": "read_aio", "errno": 99999}], None, ["read 0 512"], []),
    ("errno_zero_succeeds", [{"event": "read_aio", "errno": 0}], None, ["read 0 512"], []),
    ("state_second_write", [{"event": "write_aio", "state": 2, "once": True}],
     [{"event": "write_aio", "state": 1, "new_state": 2}],
     ["write 0 512", "write 0 512", "write 0 512", "write 0 512"], []),
    ("flush_to_disk_writethrough", [{"event": "flush_to_disk", "once": True}], None,
     ["write 0 512", "flush", "read 0 512", "read 0 512"], ["-t", "writethrough"]),
    ("flush_to_disk_no_write", [{"event": "flush_to_disk", "once": True}], None,
     ["flush", "read 0 512"], ["-t", "writethrough"]),
    ("flush_to_os_writethrough", [{"event": "flush_to_os"}], None,
     ["write 0 512", "flush", "read 0 512"], ["-t", "writethrough"]),
    ("flush_to_disk_writeback", [{"event": "flush_to_disk"}], None,
     ["write 0 512", "flush", "read 0 512"], ["-t", "writeback"]),
    ("flush_iotype_flush", [{"event": "flush_to_disk", "iotype": "flush"}], None,
     ["write 0 512", "flush", "read 0 512"], ["-t", "writethrough"]),
    ("fua_write", [{"event": "flush_to_os"}], None,
     ["write -f 0 512", "read 0 512"], ["-t", "writeback"]),
]


@pytest.mark.parametrize("name,inject,set_state,lines,extra", SCENARIOS,
                         ids=[s[0] for s in SCENARIOS])
def test_rules_like_oracle(ours, oracle, name, inject, set_state, lines, extra):
    r = assert_same(ours, oracle, extra + cmds(*lines) +
                    [blk(rule_opts(inject, set_state))])
    # every scenario but these makes some request fail
    if name not in ("errno_zero_succeeds", "zero_write_raises_nothing", "flush_to_disk_no_write",
                    "flush_iotype_flush"):
        assert "failed" in r.out


CONFIG = """# a comment
[inject-error]
event = "read_aio"
errno = "28"
once = "on"

[set-state]
event = "read_aio"
state = "1"
new_state = "2"
"""


def test_config_file(ours, oracle):
    r = assert_same(ours, oracle, ["-f", "raw"] + cmds("read 0 512", "read 0 512") +
                    ["blkdebug:bd.cfg:r.raw"], files={"bd.cfg": CONFIG})
    assert r.out.startswith("read failed: No space left on device\n")


def test_config_option_in_json(ours, oracle):
    assert_same(ours, oracle, cmds("read 0 512") +
                ['json:{"driver": "raw", "file": {"driver": "blkdebug", "config": "bd.cfg",'
                 ' "image": {"driver": "file", "filename": "r.raw"}}}'],
                files={"bd.cfg": CONFIG})


def test_image_string_is_a_node_reference(ours, oracle):
    """A string "image" names a node (none exist in qemu-io/qimg), not a file."""
    assert_same(ours, oracle, cmds("read 0 512") + [
        'json:{"driver": "raw", "file": {"driver": "blkdebug", "image": "r.raw",'
        ' "inject-error": [{"event": "read_aio"}]}}'])


BAD = [
    blk(rule_opts([{"event": "bogus"}])),
    blk(rule_opts([{"errno": 5}])),
    blk(rule_opts([{"event": "read_aio", "errno": "x"}])),
    blk(rule_opts([{"event": "read_aio", "iotype": "x"}])),
    blk(rule_opts([{"event": "read_aio", "bogus": 1}])),
    blk('"align": 3'),
    blk('"bogus": 3'),
    "blkdebug:nonexist.cfg:r.raw",
    "blkdebug:",
    "blkdebug:x",
    'json:{"driver": "blkdebug"}',
]


@pytest.mark.parametrize("spec", BAD)
def test_bad_options_like_oracle(ours, oracle, spec):
    r = assert_same(ours, oracle, cmds("read 0 512") + [spec])
    assert r.rc == 1 and r.err.count("\n") == 1


@pytest.mark.parametrize("cfg", ['[foo]\nevent = "read_aio"\n',
                                 '[inject-error]\nevent = "read_aio"\nbogus = "1"\n'])
def test_bad_config_like_oracle(ours, oracle, cfg):
    r = assert_same(ours, oracle, cmds("read 0 512") + ["blkdebug:bd.cfg:r.raw"],
                    files={"bd.cfg": cfg})
    assert r.rc == 1


def strip_child(text):
    return text.split("Child node")[0]


def test_info_like_oracle(ours, oracle, tmp_path):
    (tmp_path / "r.raw").write_bytes(b"\0" * 65536)
    a, b = ours.img("info", "blkdebug::r.raw"), oracle.img("info", "blkdebug::r.raw")
    assert a.rc == b.rc == 0
    assert strip_child(a.out) == b.out
    assert "disk size: unavailable\n" in a.out
    # 9.1: the filter's own node (shown as a format: it has a child), then its "image" child.
    assert "Child node '/file':\n    image: blkdebug::r.raw\n    file format: blkdebug\n" \
        in a.out
    assert "    Child node '/file/image':\n        filename: r.raw\n" in a.out


def test_map_and_convert_through_filter(ours, oracle, tmp_path):
    with open(tmp_path / "r.raw", "wb") as f:
        f.truncate(1 << 20)
        f.seek(65536)
        f.write(b"\1" * 4096)
    a = ours.img("map", "--output=json", "-f", "raw", "blkdebug::r.raw")
    b = oracle.img("map", "--output=json", "-f", "raw", "blkdebug::r.raw")
    assert a.rc == b.rc == 0
    strip = lambda t: [{k: v for k, v in e.items() if k != "compressed"}
                       for e in json.loads(t)]  # "compressed": new in 9.1
    assert strip(a.out) == strip(b.out)
    assert ours.img("convert", "-f", "raw", "-O", "raw", "blkdebug::r.raw", "o.raw").rc == 0
    assert (tmp_path / "o.raw").read_bytes() == (tmp_path / "r.raw").read_bytes()


def test_convert_source_read_error(ours, oracle, tmp_path):
    with open(tmp_path / "r.raw", "wb") as f:
        f.write(b"\1" * (1 << 20))
    src = blk(rule_opts([{"event": "read_aio"}]))
    a = ours.img("convert", "-O", "raw", src, "o.raw")
    b = oracle.img("convert", "-O", "raw", src, "o2.raw")
    assert a.rc == b.rc == 1
    assert "Input/output error" in a.err and "Input/output error" in b.err


NAMING_SPECS = [
    "blkdebug::r.raw",
    "blkdebug:bd.conf:r.raw",
    'json:{"driver": "blkdebug", "image": {"driver": "file", "filename": "r.raw"}}',
    'json:{"driver": "blkdebug", "align": 4096, "image": {"driver": "file", '
    '"filename": "r.raw"}}',
    'json:{"driver": "blkdebug", "inject-error": [{"event": "read_aio", "errno": 5}], '
    '"image": {"driver": "file", "filename": "r.raw"}}',
    blk(),
    blk('"align": 4096, "max-transfer": 65536'),
    'json:{"driver": "raw", "offset": 512, "file": {"driver": "blkdebug", '
    '"image": {"driver": "file", "filename": "r.raw"}}}',
]


@pytest.mark.parametrize("spec", NAMING_SPECS)
def test_node_names_like_oracle(ours, oracle, tmp_path, spec):
    """QEMU's names for the filter: blkdebug:CONFIG:IMAGE while no strong option is set,
    else json:{...} with the options as given (rules flattened) and the "image" child."""
    (tmp_path / "r.raw").write_bytes(bytes(1 << 20))
    (tmp_path / "bd.conf").write_text("")
    res = []
    for tool in (ours, oracle):
        r = tool.img("info", "--output=json", spec, cwd=tmp_path)
        assert r.rc == 0, r
        j = json.loads(r.out)
        j.pop("children", None)  # 9.1's, not in the 7.2 oracle
        res.append(j)
        h = tool.img("info", spec, cwd=tmp_path)
        res.append(h.out.splitlines()[0])
    assert res[0] == res[2] and res[1] == res[3]
