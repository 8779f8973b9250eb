# SPDX-License-Identifier: MIT
"""The "backing" open options, differential against the oracle: null and the deprecated ""
open no backing file, a string names a node (qemu-img has none), backing.* opens the backing
file with those options; qemu-img info, which opens no backing file, refuses backing.* and
names the first unused option in QDict order."""
import re

import pytest

SPECS = [
    "driver=qcow2,file.filename=top.qcow2,backing=",
    "driver=qcow2,file.filename=top.qcow2,backing=foo",
    "driver=qcow2,file.filename=top.qcow2,backing.driver=qcow2",
    "driver=qcow2,file.filename=top.qcow2,backing.file.filename=base.qcow2",
    "driver=qcow2,file.filename=top.qcow2,backing.file.filename=base.qcow2,backing.driver=qcow2",
    "driver=qcow2,file.filename=top.qcow2,backing.file.filename=base.qcow2,backing.bogus=1",
    "driver=qcow2,file.filename=top.qcow2,backing.driver=raw,backing.file.filename=base.qcow2",
    'json:{"driver": "qcow2", "file": {"driver": "file", "filename": "top.qcow2"}, '
    '"backing": null}',
    'json:{"driver": "qcow2", "file": {"driver": "file", "filename": "top.qcow2"}, '
    '"backing": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.qcow2"}}}',
]


def _norm(text):
    return re.sub(r"\(\d[^)]*\)", "()", re.sub(r"\d\d\.\d\d sec", "T", text))


@pytest.fixture
def chain(oracle, tmp_path):
    assert oracle.img("create", "-q", "-f", "qcow2", "base.qcow2", "1M", cwd=tmp_path).rc == 0
    assert oracle.io("-c", "write -P 7 0 64k", "base.qcow2", cwd=tmp_path).rc == 0
    assert oracle.img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                      "top.qcow2", cwd=tmp_path).rc == 0
    return tmp_path


@pytest.mark.parametrize("spec", SPECS)
def test_backing_options_like_oracle(ours, oracle, chain, spec):
    json_spec = spec.startswith("json:")
    io_args = ([spec] if json_spec else ["--image-opts", spec])
    for cmd in (["-c", "read -P 7 0 64k"], ["-c", "read -P 0 0 64k"]):
        a = ours.io(*cmd, *io_args, cwd=chain)
        b = oracle.io(*cmd, *io_args, cwd=chain)
        assert (a.rc, _norm(a.out), a.err.replace("qimg-io", "qemu-io")) == \
            (b.rc, _norm(b.out), b.err), spec
    a = ours.img("info", *io_args, cwd=chain)
    b = oracle.img("info", *io_args, cwd=chain)
    assert a.rc == b.rc and a.err == b.err, (a, b)
    if a.rc == 0:
        assert a.out.splitlines()[:4] == b.out.splitlines()[:4]
