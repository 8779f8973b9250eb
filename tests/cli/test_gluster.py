# SPDX-License-Identifier: MIT
"""The gluster protocol against a real GlusterFS volume (glusterd with one brick on
127.0.0.2, gluster_server.py), differential against Debian's qemu-img 7.2 with
qemu-block-extra's gluster driver (the 9.1 oracle in /work/shared/oracle is built
without it). The brick is a directory here, so what each tool wrote is compared byte
for byte.

libgfapi takes about ten seconds to let go of a volume (glfs_fini), in both tools, so
each command costs that: the two tools run side by side, and independent commands
run at once. libgfapi logs to stderr by default ("[2026-...] I [...]" lines, with
times): those lines are dropped before comparing.

9.1 differences named here: human info adds "Child node '/file':" sections and JSON
info a "children" list (both stripped), JSON map entries add "compressed" (stripped).
"""
import hashlib
import json
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import strip_child
from gluster_server import GLUSTER_HOST, glusterd  # noqa: F401  (fixture)

# One worker runs every test here: they share the session's glusterd.
pytestmark = pytest.mark.xdist_group("gluster")

MiB = 1 << 20


def norm(result, ours):
    """(rc, stdout, stderr) without libgfapi's log lines and 9.1's additions."""
    err = re.sub(r"(?m)^\[20\d\d-.*\n", "", result.err)
    out = result.out
    if ours:
        out = strip_child(re.sub(r', "compressed": (true|false)', "", out))
        if out.startswith("{"):
            info = json.loads(out)
            info.pop("children", None)
            out = json.dumps(info, indent=4) + "\n"
    return result.rc, out, err


def run_pairs(ours, oracle, cases):
    """Run each (our args, the oracle's args) with both tools, all at once; the
    normalised results, in order."""
    with ThreadPoolExecutor(max_workers=32) as pool:  # mostly waiting on glfs_fini
        futs = [(pool.submit(ours.img, *a), pool.submit(oracle.img, *b)) for a, b in cases]
        return [(norm(fa.result(), True), norm(fb.result(), False)) for fa, fb in futs]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 16 MiB raw image: random data runs (some not 4 KiB aligned), holes, and zeroes
    written as data."""
    path = tmp_path_factory.mktemp("gluster-src") / "src.raw"
    rnd = random.Random(23)
    with open(path, "wb") as f:
        f.truncate(16 * MiB)
        for off, length in ((0, 300000), (3 * MiB, 64 * 1024), (5 * MiB + 512, 2 * MiB),
                            (15 * MiB, 1 * MiB)):
            f.seek(off)
            f.write(rnd.randbytes(length))
        f.seek(9 * MiB)
        f.write(bytes(1 * MiB))
    return path


def test_convert_in_and_out(both, glusterd, source, tmp_path):  # noqa: F811
    """raw -> gluster (the tools create the file in the volume) and back, raw and qcow2:
    the brick's files are the same, map (holes by SEEK_DATA) and info agree, and the
    copies back equal the source."""
    ours, oracle = both
    u = glusterd.url
    cases = [(["convert", "-f", "raw", "-O", fmt, source, u(f"c-a.{fmt}")],
              ["convert", "-f", "raw", "-O", fmt, source, u(f"c-b.{fmt}")])
             for fmt in ("raw", "qcow2")]
    for a, b in run_pairs(ours, oracle, cases):
        assert a == b and a[0] == 0
    brick = glusterd.brick
    assert (brick / "c-a.raw").read_bytes() == (brick / "c-b.raw").read_bytes() == \
        source.read_bytes()
    assert (brick / "c-a.qcow2").read_bytes() == (brick / "c-b.qcow2").read_bytes()
    cases = []
    for name in ("c-{}.raw", "c-{}.qcow2"):
        for cmd in (["map", "--output=json"], ["info"]):
            cases.append(([*cmd, u(name.format("a"))], [*cmd, u(name.format("a"))]))
    cases.append((["convert", "-O", "raw", u("c-a.qcow2"), tmp_path / "back-a.raw"],
                  ["convert", "-O", "raw", u("c-b.qcow2"), tmp_path / "back-b.raw"]))
    cases.append((["compare", u("c-a.qcow2"), source], ["compare", u("c-b.qcow2"), source]))
    for a, b in run_pairs(ours, oracle, cases):
        assert a == b and a[0] == 0
    assert (tmp_path / "back-a.raw").read_bytes() == (tmp_path / "back-b.raw").read_bytes() \
        == source.read_bytes()


def test_create_resize_and_io(both, glusterd):  # noqa: F811
    """create with each preallocation mode (files made 0600), a missing directory;
    resize; qemu-io writes, zero writes, discards and reads on twin files."""
    ours, oracle = both
    u = glusterd.url
    cases = []
    for mode in ("off", "falloc", "full", "metadata"):
        cases.append((["create", "-f", "raw", "-o", f"preallocation={mode}", u(f"p-{mode}-a"),
                       "1M"],
                      ["create", "-f", "raw", "-o", f"preallocation={mode}", u(f"p-{mode}-b"),
                       "1M"]))
    cases.append((["create", "-f", "raw", u("nodir/x.raw"), "1M"],
                  ["create", "-f", "raw", u("nodir/x.raw"), "1M"]))
    for a, b in run_pairs(ours, oracle, cases):
        assert (a[0], a[2]) == (b[0], b[2].replace("-b'", "-a'").replace("-b:", "-a:"))
        assert a[1] == b[1].replace("-b'", "-a'")
    for mode in ("off", "falloc", "full"):
        fa, fb = glusterd.brick / f"p-{mode}-a", glusterd.brick / f"p-{mode}-b"
        assert fa.stat().st_size == fb.stat().st_size == MiB
        assert fa.stat().st_mode & 0o777 == fb.stat().st_mode & 0o777 == 0o600
        assert fa.stat().st_blocks == fb.stat().st_blocks
    for f in ("io-a", "io-b"):
        (glusterd.brick / f).write_bytes(b"\xa5" * (4 * MiB))
    cmds = ["write -q -P 1 0 1M", "write -q -z 512k 512k", "write -q -z -u 1M 256k",
            "discard -q 2M 1M", "write -q -P 2 5000 3000", "read -q -P 2 5000 3000",
            "read -q -P 0 512k 512k", "read -q -P 0xa5 3M 1M", "flush"]
    args = [a for c in cmds for a in ("-c", c)]
    pool = ThreadPoolExecutor(max_workers=2)  # beside the resizes below
    io_a = pool.submit(ours.io, "-f", "raw", *args, u("io-a"))
    io_b = pool.submit(oracle.io, "-f", "raw", *args, u("io-b"))
    cases = [(["resize", "-f", "raw", u("p-off-a"), "3M"], ["resize", "-f", "raw", u("p-off-b"), "3M"]),
             (["resize", "-f", "raw", "--shrink", u("p-falloc-a"), "512K"],
              ["resize", "-f", "raw", "--shrink", u("p-falloc-b"), "512K"]),
             (["resize", "-f", "raw", "--preallocation=falloc", u("p-full-a"), "2M"],
              ["resize", "-f", "raw", "--preallocation=falloc", u("p-full-b"), "2M"])]
    for a, b in run_pairs(ours, oracle, cases):
        assert a == b
    for name in ("p-off", "p-falloc", "p-full"):
        fa, fb = glusterd.brick / f"{name}-a", glusterd.brick / f"{name}-b"
        assert fa.stat().st_size == fb.stat().st_size
    assert norm(io_a.result(), True) == norm(io_b.result(), False)
    pool.shutdown()
    assert (glusterd.brick / "io-a").read_bytes() == (glusterd.brick / "io-b").read_bytes()


def test_names_and_errors(both, glusterd):  # noqa: F811
    """URL forms (the name keeps the URL as given), --image-opts and json: (named in
    JSON), and the refusals: malformed URLs with QEMU's usage hint, missing options with
    their hints, a missing file, a volume or server that is not there."""
    ours, oracle = both
    (glusterd.brick / "n.raw").write_bytes(bytes(MiB))
    vol, h = glusterd.volume, GLUSTER_HOST
    srv = f"server.0.type=inet,server.0.host={h},server.0.port=24007"
    names = [glusterd.url("n.raw"), f"gluster://{h}:24007/{vol}/n.raw",
             f"gluster+tcp://{h}/{vol}/n.raw", f"gluster+rdma://{h}/{vol}/n.raw",
             glusterd.url("missing.raw"), f"gluster://{h}/nosuchvol/n.raw",
             f"gluster://{h}:1/{vol}/n.raw", f"gluster://{h}/{vol}", f"gluster://{h}//n.raw",
             f"gluster:///{vol}/n.raw", f"gluster+unix:///{vol}/n.raw?socket=/nonexistent",
             f"gluster+unix://{h}/{vol}/n.raw?socket=/x", f"gluster+unix:///{vol}/n.raw",
             f"gluster://{h}/{vol}/n.raw?socket=x", f"gluster+foo://{h}/{vol}/n.raw",
             'json:{"driver":"gluster","volume":"%s","path":"n.raw","server":[{"type":"inet",'
             '"host":"%s","port":"24007"}]}' % (vol, h)]
    cases = [(["info", n], ["info", n]) for n in names]
    opts = [f"driver=gluster,volume={vol},path=n.raw,{srv}",
            f"driver=gluster,volume={vol},path=n.raw,{srv},debug=0,logfile=/dev/null",
            f"driver=gluster,volume={vol},path=n.raw,server.0.type=inet,server.0.host={h}",
            f"driver=gluster,volume={vol},path=n.raw,server.0.type=inet,server.0.port=1",
            f"driver=gluster,volume={vol},path=n.raw,server.0.type=foo,server.0.host={h}",
            f"driver=gluster,volume={vol},path=n.raw,server.0.type=unix,server.0.path=/nonexistent",
            f"driver=gluster,volume={vol},path=n.raw", f"driver=gluster,path=n.raw,{srv}",
            f"driver=gluster,volume={vol},{srv}", f"driver=gluster,volume={vol},path=n.raw,{srv},foo=1"]
    cases += [(["info", "--image-opts", o], ["info", "--image-opts", o]) for o in opts]
    for (a, b), case in zip(run_pairs(ours, oracle, cases), cases):
        assert a == b, case


def test_brick_gone_mid_convert(ours, glusterd, tmp_path):  # noqa: F811
    """The brick dies during a convert: qimg stops with an error in bounded time and the
    source is untouched. The brick is restarted for the tests after this one."""
    src = tmp_path / "big.raw"
    src.write_bytes(random.Random(5).randbytes(64 * MiB))
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    with open(glusterd.brick / "gone.raw", "wb") as f:  # convert -n: one open, no create
        f.truncate(64 * MiB)
    killer = threading.Timer(2.0, glusterd.kill_brick)
    killer.start()
    try:
        start = time.monotonic()
        r = ours.img("convert", "-n", "-r", "8M", "-f", "raw", "-O", "raw", src,
                     glusterd.url("gone.raw"), timeout=120)
        elapsed = time.monotonic() - start
    finally:
        killer.join()
        glusterd.restart_brick()
    err = re.sub(r"(?m)^\[20\d\d-.*\n", "", r.err)
    assert r.rc == 1 and elapsed < 60, (r.rc, elapsed, err)
    assert re.fullmatch(r"qemu-img: error while writing at byte \d+: .+\n", err), err
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
