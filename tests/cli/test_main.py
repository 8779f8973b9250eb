# SPDX-License-Identifier: MIT
"""Top-level command line: --help, --version, dispatch errors, the invoked name."""
import json
import re
from pathlib import Path

import pytest

from conftest import BUILD, QIMG, run

SAMPLES = Path("/work/shared/specs/samples-qemu-img-9.1.md")
COPYRIGHT = "Copyright (c) the qimg authors; a reimplementation of qemu-img from the QEMU Project"


def qimg_version():
    """qimg's own version, as meson has it (project() in meson.build)."""
    return json.loads((BUILD / "meson-info" / "intro-projectinfo.json").read_text())["version"]


def sample_help():
    """qemu-img 9.1's --help text as recorded in the samples file."""
    text = SAMPLES.read_text()
    start = text.index("$ qemu-img --help\n") + len("$ qemu-img --help\n")
    end = text.index("[exit 0]", start)
    return text[start:end]


@pytest.mark.skipif(not SAMPLES.exists(), reason="samples of qemu-img 9.1 not available")
def test_help_matches_91_except_version_and_formats(ours):
    r = ours.img("--help")
    assert r.rc == 0
    ours_lines = r.out.splitlines()
    want_lines = sample_help().splitlines()
    assert len(ours_lines) == len(want_lines)
    for a, b in zip(ours_lines, want_lines):
        if b.startswith("qemu-img version"):
            assert a == f"qemu-img version 9.1.0 (qimg {qimg_version()})"
        elif b.startswith("Copyright"):
            assert a == COPYRIGHT  # 9.1: QEMU's copyright; qimg is not QEMU's code
        elif "report-a-bug" in b:
            # 9.1 sends bug reports to QEMU; qimg's go to this project.
            assert a == "Report bugs in qimg to the qimg project, not to QEMU: see BUGS in qimg(1)."
        elif b.startswith("Supported formats:"):
            assert a.startswith("Supported formats:")
            assert " raw" in a and " file" in a
        else:
            assert a == b


def test_help_lists_formats_sorted(ours):
    line = [l for l in ours.img("--help").out.splitlines() if l.startswith("Supported formats:")][0]
    names = line.split(":", 1)[1].split()
    assert names == sorted(names)


def test_subcommand_help(ours):
    r = ours.img("info", "-h")
    assert r.rc == 0 and "Command syntax:" in r.out


# How scripts read qemu-img's version (OpenStack's oslo/nova, libguestfs and
# shell's `head -1 | cut -d' ' -f3`): they must read 9.1.0 from qimg as they
# read 7.2.x from Debian's qemu-img, whose line also ends in "(package version)".
VERSION_PARSERS = [
    lambda out: re.search(r"qemu-img version ([0-9\.]*)", out).group(1).rstrip("."),
    lambda out: re.match(r"^qemu-img version (\d+)\.(\d+)\.(\d+)", out).group(0).split()[2],
    lambda out: out.splitlines()[0].split(" ")[2],
]


@pytest.mark.parametrize("opt", ["-V", "--version"])
def test_version(ours, oracle, opt):
    r = ours.img(opt)
    assert (r.rc, r.err) == (0, "")
    # 9.1 prints "qemu-img version 9.1.0" and QEMU's copyright line
    assert r.out == f"qemu-img version 9.1.0 (qimg {qimg_version()})\n{COPYRIGHT}\n"
    o = oracle.img(opt)
    for parse in VERSION_PARSERS:
        assert parse(r.out) == "9.1.0"
        assert re.fullmatch(r"7\.2\.\d+", parse(o.out))
    # The same shape under qimg's own name: the implemented release first.
    assert run([QIMG, opt]).out.splitlines()[0] == f"qimg version 9.1.0 (qimg {qimg_version()})"


def test_io_version(ours):
    r = ours.io("-V")
    assert r.rc == 0
    assert r.out.splitlines()[0] == f"qemu-io version 9.1.0 (qimg {qimg_version()})"


def test_trace_option_accepted(ours, tmp_path):
    assert ours.img("create", "-f", "raw", "t.raw", "1M").rc == 0
    r = ours.img("-T", "foo*", "info", "t.raw")
    assert r.rc == 0 and r.out.startswith("image: t.raw")


@pytest.mark.parametrize("args", [
    [], ["frob"], ["--bogus"], ["create", "-z", "x", "1M"], ["create", "-f"],
    ["check", "-r", "bad", "x"], ["amend", "x"] if False else ["info", "--output=xml", "x"],
])
def test_dispatch_errors_match_oracle(ours, oracle, args):
    a, b = ours.img(*args), oracle.img(*args)
    assert (a.rc, a.err) == (b.rc, b.err)


def test_check_on_raw_exit_63(ours, oracle, tmp_path):
    assert oracle.img("create", "-f", "raw", "c.raw", "1M").rc == 0
    a, b = ours.img("check", "c.raw"), oracle.img("check", "c.raw")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err) == (63, "", "qemu-img: This image format does not support checks\n")


def test_program_name_follows_argv0(tmp_path):
    link = tmp_path / "my-tool"
    link.symlink_to(QIMG)
    r = run([link, "info", "nope"], cwd=tmp_path)
    assert r.err.startswith("my-tool: Could not open 'nope'")
