# SPDX-License-Identifier: MIT
"""Inputs the fuzzers once broke qimg with (tests/fuzz/regressions/): each must
give a clean result or one clear error, never a crash or a hang."""
import shutil
import subprocess

import pytest

from conftest import QIMG, ROOT

INPUTS = sorted((ROOT / "tests" / "fuzz" / "regressions").glob("*"))
COMMANDS = [["info"], ["info", "--output=json"], ["map", "--output=json"], ["check"],
            ["compare", "{img}", "{img}"], ["convert", "-O", "raw", "{img}", "{out}"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
@pytest.mark.parametrize("path", INPUTS, ids=[p.name for p in INPUTS])
def test_fuzz_input_handled_cleanly(tmp_path, path, cmd):
    img = tmp_path / path.name
    shutil.copy(path, img)
    args = [a.format(img=img, out=tmp_path / "out.raw") for a in cmd]
    if "{img}" not in " ".join(cmd):
        args.append(str(img))
    try:
        p = subprocess.run([str(QIMG), *args], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"qimg {' '.join(cmd)} hung on {path.name}")
    assert p.returncode >= 0, f"killed by signal {-p.returncode}"
    assert p.returncode in (0, 1, 2, 3, 4, 63)  # compare uses 4 for read errors
    assert "AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr
