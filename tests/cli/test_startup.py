# SPDX-License-Identifier: MIT
"""Start-up cost: the network client libraries are loaded on first use, not linked.

Linking librbd/librados, libgfapi, libcurl, libnbd, libssh, libiscsi and libnfs cost every
qimg process ~100 ms of CPU before main() (their ~200 dependencies and Ceph's static
constructors); qemu-img loads its block modules on demand. qimg now dlopen()s each library
when a driver first needs it (src/protocols/lazylib.h).
"""
import json
import os
import re
import resource
import shutil
import subprocess

import pytest

from conftest import BUILD, ORACLE_IMG, QIMG, QIMG_IO, run

# Every client library and the libraries only they bring in.
CLIENT_RE = re.compile(r"\blib(rbd|rados|ceph-common|gfapi|glusterfs|gfrpc|gfxdr|curl(-gnutls)?"
                       r"|nbd|ssh|iscsi|nfs)\.so")


def lazy_sonames():
    """{QIMG_SONAME_ suffix: soname} the build loads on demand (from its compile line)."""
    with open(BUILD / "compile_commands.json") as f:
        commands = json.load(f)
    line = next(c["command"] for c in commands if c["file"].endswith("protocols/lazylib.c"))
    return dict(re.findall(r'-DQIMG_SONAME_(\w+)=\\?"([^"\\]+)', line))


LAZY = lazy_sonames()
pytestmark = pytest.mark.skipif(not LAZY, reason="built with the client libraries linked")


def test_every_client_library_is_lazy():
    # Each client library the build found (QIMG_HAVE_*) is loaded on demand: its soname was
    # read at configure time (scripts/soname.py); rbd needs librbd and librados.
    with open(BUILD / "compile_commands.json") as f:
        line = next(c["command"] for c in json.load(f) if c["file"].endswith("lazylib.c"))
    have = set(re.findall(r"-DQIMG_HAVE_(LIB(?:NBD|CURL|SSH|ISCSI|NFS|GFAPI|RBD))\b", line))
    assert have
    assert set(LAZY) == have | ({"LIBRADOS"} if "LIBRBD" in have else set()), (LAZY, have)


@pytest.mark.parametrize("binary", [QIMG, QIMG_IO, BUILD / "src" / "libqimg.so.0"],
                         ids=["qimg", "qimg-io", "libqimg.so"])
def test_not_needed(binary):
    r = run(["readelf", "-d", binary])
    assert r.rc == 0, r
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.out)
    assert needed and "libc.so.6" in needed
    assert not [n for n in needed if CLIENT_RE.search(n) or n in LAZY.values()], needed


def loaded_libs(argv):
    """The libraries the dynamic loader opened for argv (LD_DEBUG=libs trace)."""
    env = dict(os.environ, LD_DEBUG="libs")
    r = run(argv, env=env)
    return r, set(re.findall(r"calling init: (\S+)", r.err))


@pytest.mark.parametrize("binary", [QIMG, QIMG_IO], ids=["qimg", "qimg-io"])
def test_version_maps_no_client_library(binary):
    r, libs = loaded_libs([binary, "--version"])
    assert r.rc == 0, r
    assert any("libc.so.6" in lib for lib in libs), r.err
    assert not [lib for lib in libs if CLIENT_RE.search(lib)], libs


def test_info_on_raw_file_maps_no_client_library(tmp_path):
    img = tmp_path / "a.raw"
    img.write_bytes(b"\0" * 65536)
    r, libs = loaded_libs([QIMG, "info", img])
    assert r.rc == 0, r
    assert not [lib for lib in libs if CLIENT_RE.search(lib)], libs


@pytest.mark.parametrize("url,soname", [
    ("nbd://127.0.0.1:1/x", "LIBNBD"),
    ("http://127.0.0.1:1/x", "LIBCURL"),
    ("ssh://127.0.0.1:1/x", "LIBSSH"),
    ("nfs://127.0.0.1:1/x", "LIBNFS"),
    ("iscsi://127.0.0.1:1/iqn.2000-01.com.example:x/0", "LIBISCSI"),
])
def test_library_loaded_on_first_use(url, soname):
    # A driver that opens (here: a refused connection on port 1) loads its library then.
    if soname not in LAZY:
        pytest.skip(f"{soname} not built lazily")
    r, libs = loaded_libs([QIMG, "info", url])
    assert r.rc == 1, r
    assert any(lib.endswith("/" + LAZY[soname]) for lib in libs), sorted(libs)
    assert "Could not load" not in r.err


def startup_cpu(argv, runs=20):
    """Mean user+system CPU seconds of `runs` runs of argv."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        subprocess.run([str(a) for a in argv], stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)) / runs


@pytest.mark.skipif(not ORACLE_IMG, reason="needs qemu-img")
def test_startup_cpu_below_twice_qemu_img():
    # Was ~100 ms against qemu-img's ~18 ms; now a few ms. Factor 2: generous for noise.
    ours = min(startup_cpu([QIMG, "--version"]) for _ in range(2))
    theirs = max(startup_cpu([ORACLE_IMG, "--version"]) for _ in range(2))
    assert ours < 2 * theirs, (ours, theirs)


def test_pc_lists_no_client_library():
    pc = (BUILD / "meson-private" / "qimg.pc").read_text()
    private = "\n".join(line for line in pc.splitlines() if line.startswith(("Libs", "Requires")))
    assert not re.search(r"-l(rbd|rados|gfapi|glusterfs|curl|nbd|ssh|iscsi|nfs)\b", private), pc
    assert not re.search(r"\b(libcurl|libnbd|libssh|libiscsi|libnfs|glusterfs-api)\b", private), pc


def test_unloadable_library_fails_the_open(tmp_path):
    # dlopen() searches LD_LIBRARY_PATH first: a library of the same soname without the
    # functions makes the load fail; the open fails with one clear error line, no crash.
    if "LIBNBD" not in LAZY:
        pytest.skip("libnbd not built lazily")
    src = tmp_path / "empty.c"
    src.write_text("int qimg_test_placeholder;\n")
    fake = tmp_path / LAZY["LIBNBD"]
    r = run(["cc", "-shared", "-fPIC", f"-Wl,-soname,{fake.name}", "-o", fake, src])
    assert r.rc == 0, r
    env = dict(os.environ, LD_LIBRARY_PATH=str(tmp_path))
    r = run([QIMG, "info", "nbd://127.0.0.1:1/x"], env=env)
    assert r.rc == 1, r
    assert r.out == ""
    assert r.err.count("\n") == 1, r.err
    assert r.err.startswith("qimg: Could not open 'nbd://127.0.0.1:1/x': "
                            f"Could not load {fake.name}: {fake}: undefined symbol: nbd_"), r.err
    # The other protocols are untouched, and so is a plain file.
    img = tmp_path / "a.raw"
    img.write_bytes(b"\0" * 4096)
    assert run([QIMG, "info", img], env=env).rc == 0
