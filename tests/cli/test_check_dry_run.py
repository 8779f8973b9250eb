# SPDX-License-Identifier: MIT
"""check -r leaks|all --dry-run (a qimg extension, issue 22): the repair runs over an
in-memory overlay, reports what it would change and the exit code it would give, and
not a byte of the image changes. Each kind of damage of the repair tests
(test_qcow2_check.CORRUPTIONS) is dry-run and then really repaired on a copy: same
repair messages, same counts, same exit code."""
import hashlib
import re
import shutil

import pytest

from conftest import QIMG, run
from test_qcow2_check import CORRUPTIONS, make_image


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def fixed_counts(out):
    """(leaks, corruptions) of the 'found and repaired' block, or None when nothing was."""
    m = re.search(r"\n    (\d+) leaked clusters\n    (\d+) corruptions\n", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


@pytest.mark.parametrize("mode", ["leaks", "all"])
@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_dry_run_matches_repair(oracle, tmp_path, name, mode):
    q = make_image(oracle, tmp_path / "c.qcow2", writes=("write -P 1 0 1M", "write -P 2 3M 64k"))
    CORRUPTIONS[name](q)
    dry, real = tmp_path / "dry.qcow2", tmp_path / "real.qcow2"
    shutil.copyfile(q.path, dry)
    shutil.copyfile(q.path, real)
    before = digest(dry)
    d = run([QIMG, "check", "-r", mode, "--dry-run", dry])
    assert digest(dry) == before, "the dry run wrote to the image"
    r = run([QIMG, "check", "-r", mode, real])
    # The same exit code as the repair's, the same per-item repair messages.
    assert d.rc == r.rc, (d, r)
    assert d.err == r.err
    assert fixed_counts(d.out) == fixed_counts(r.out)
    if fixed_counts(r.out):
        assert "Dry run: the repair would fix these inconsistencies" in d.out
        assert "The following inconsistencies were found and repaired" not in d.out
        if digest(real) != before:
            m = re.search(r"the repair would write (\d+) bytes in (\d+) requests", d.out)
            assert m and int(m.group(2)) > 0, d.out
    assert f"The repair would exit with code {r.rc}." in d.out
    # The image is still damaged as before: the real check still finds the damage.
    assert run([QIMG, "check", dry]).rc == run([QIMG, "check", q.path]).rc


def test_dry_run_clean_image(oracle, tmp_path):
    q = make_image(oracle, tmp_path / "c.qcow2")
    before = digest(q.path)
    d = run([QIMG, "check", "-r", "all", "--dry-run", q.path])
    assert d.rc == 0, d
    assert "No errors were found on the image." in d.out
    assert "would write 0 bytes in 0 requests" in d.out
    assert digest(q.path) == before


def test_dry_run_json_and_quiet(oracle, tmp_path):
    q = make_image(oracle, tmp_path / "c.qcow2")
    CORRUPTIONS["leak_data"](q)
    before = digest(q.path)
    damaged = run([QIMG, "check", q.path])
    assert damaged.rc != 0
    j = run([QIMG, "check", "-r", "leaks", "--dry-run", "--output=json", q.path])
    assert j.rc == 0 and '"leaks-fixed": 1' in j.out, j
    assert run([QIMG, "check", "-r", "leaks", "--dry-run", "-q", q.path]).out == ""
    assert digest(q.path) == before
    after = run([QIMG, "check", q.path])
    assert (after.rc, after.out, after.err) == (damaged.rc, damaged.out, damaged.err)


def test_dry_run_needs_repair_mode(tmp_path):
    r = run([QIMG, "check", "--dry-run", tmp_path / "x.qcow2"])
    assert r.rc == 1
    assert r.err.startswith("qimg: --dry-run needs -r leaks or -r all\n")


def test_dry_run_refused_under_qemu_img_name(ours, oracle, tmp_path):
    """qemu-img has no --dry-run: the qemu-img name gives its unrecognized option error."""
    q = make_image(oracle, tmp_path / "c.qcow2")
    mine = ours.img("check", "-r", "leaks", "--dry-run", q.path)
    theirs = oracle.img("check", "-r", "leaks", "--dry-run", q.path)
    assert (mine.rc, mine.err) == (theirs.rc, theirs.err) == \
        (1, "qemu-img: unrecognized option '--dry-run'\n"
            "Try 'qemu-img --help' for more information\n")
