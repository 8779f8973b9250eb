# SPDX-License-Identifier: MIT
"""The iscsi protocol against a real target (tgtd on loopback, iscsi_target.py),
differential against Debian's qemu-img 7.2 with qemu-block-extra's iscsi driver (the
9.1 oracle in /work/shared/oracle is built without it). The LUNs are files on this
machine, so what each tool wrote is compared byte for byte, and where a thin LUN
deallocated (GET LBA STATUS, through map).

9.1 differences named here: human info adds "Child node '/file':" (strip_child), JSON
map entries add "compressed" (stripped), and a failed "create" words QEMU's fallback as
"does not support creating new images, so an existing image must be selected as the
target; however, opening the given target as an existing image failed" (7.2: "does not
support image creation, and opening the image failed").
"""
import hashlib
import random
import re
import threading
import time

import pytest

from conftest import data_runs, strip_child
from iscsi_target import own_tgtd, tgtd  # noqa: F401  (fixtures)
from servers import LOOPBACK, free_port

# One worker runs every test here: they share the session's tgtd.
pytestmark = pytest.mark.xdist_group("iscsi")

MiB = 1 << 20


def strip_compressed(text):
    return re.sub(r', "compressed": (true|false)', "", text)


def same(a, b):
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 32 MiB raw image: random data runs (some not 4 KiB aligned), holes, and a run of
    zeroes written as data."""
    path = tmp_path_factory.mktemp("iscsi-src") / "src.raw"
    rnd = random.Random(20)
    with open(path, "wb") as f:
        f.truncate(32 * MiB)
        for off, length in ((0, 300000), (3 * MiB, 64 * 1024), (5 * MiB + 512, 2 * MiB),
                            (17 * MiB, 1 * MiB), (31 * MiB, 1 * MiB)):
            f.seek(off)
            f.write(rnd.randbytes(length))
        f.seek(9 * MiB)
        f.write(bytes(1 * MiB))
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("thin", [True, False], ids=["thin", "thick"])
def test_convert_in_and_out(both, tgtd, source, tmp_path, thin):  # noqa: F811
    """raw -> LUN and LUN -> raw with both tools: the LUNs hold the same bytes, map (where
    a thin LUN deallocated the zeroes) and info agree, and the copies back are identical."""
    ours, oracle = both
    t = tgtd.new_target([(32 * MiB, thin), (32 * MiB, thin)])
    # Old contents everywhere: convert must write the zeroes too.
    for f in t.files.values():
        f.write_bytes(b"\xa5" * (32 * MiB))
    mine, theirs = t.url(1), t.url(2)
    assert ours.img("convert", "-n", "-f", "raw", "-O", "raw", source, mine).rc == 0
    assert oracle.img("convert", "-n", "-f", "raw", "-O", "raw", source, theirs).rc == 0
    assert t.files[1].read_bytes() == t.files[2].read_bytes() == source.read_bytes()
    for url in (mine, theirs):
        for fmt in ("human", "json"):
            a = ours.img("map", "--output", fmt, "-f", "raw", url)
            b = oracle.img("map", "--output", fmt, "-f", "raw", url)
            assert a.rc == b.rc == 0
            assert strip_compressed(a.out).replace(mine, theirs) == b.out.replace(mine, theirs)
        a, b = ours.img("info", url), oracle.img("info", url)
        assert a.rc == b.rc == 0 and strip_child(a.out) == b.out
    if thin:  # the zero runs were deallocated (WRITE SAME with UNMAP), not written
        assert '"zero": true, "data": false' in oracle.img("map", "--output=json", mine).out
    same(ours.img("compare", "-f", "raw", "-F", "raw", mine, source),
         oracle.img("compare", "-f", "raw", "-F", "raw", mine, source))
    a, b = tmp_path / "a.raw", tmp_path / "b.raw"
    assert ours.img("convert", "-f", "raw", "-O", "raw", mine, a).rc == 0
    assert oracle.img("convert", "-f", "raw", "-O", "raw", theirs, b).rc == 0
    assert a.read_bytes() == b.read_bytes() == source.read_bytes()


def same_bytes(a, b):
    """Do two (sparse) files hold the same bytes? Reads only where either has data."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for start, end in sorted(data_runs(a) + data_runs(b)):
            fa.seek(start)
            fb.seek(start)
            while start < end:
                n = min(end - start, 8 * MiB)
                if fa.read(n) != fb.read(n):
                    return False
                start += n
    return True


def test_convert_1g_in_and_out(both, tgtd, tmp_path):  # noqa: F811
    """A 1 GiB sparse image into thin 1 GiB LUNs and back with both tools: block status
    (GET LBA STATUS on the way out, the source's holes on the way in) keeps it fast, and
    the LUNs, their maps and the copies back are the same."""
    ours, oracle = both
    src = tmp_path / "src1g.raw"
    rnd = random.Random(1024)
    with open(src, "wb") as f:
        f.truncate(1024 * MiB)
        for i in range(16):
            f.seek(i * 64 * MiB + rnd.randrange(0, 60 * MiB, 4096))
            f.write(rnd.randbytes(256 * 1024))
    t = tgtd.new_target([(1024 * MiB, True), (1024 * MiB, True)])
    with open(t.files[1], "r+b") as f1, open(t.files[2], "r+b") as f2:
        for f in (f1, f2):  # old contents where the source has holes
            f.seek(512 * MiB + 12345)
            f.write(b"\x5a" * MiB)
    mine, theirs = t.url(1), t.url(2)
    assert ours.img("convert", "-n", "-f", "raw", "-O", "raw", src, mine).rc == 0
    assert oracle.img("convert", "-n", "-f", "raw", "-O", "raw", src, theirs).rc == 0
    assert same_bytes(t.files[1], src) and same_bytes(t.files[2], src)
    a = ours.img("map", "--output=json", "-f", "raw", mine)
    b = oracle.img("map", "--output=json", "-f", "raw", theirs)
    assert a.rc == b.rc == 0 and strip_compressed(a.out) == b.out.replace(theirs, mine)
    a, b = tmp_path / "a.raw", tmp_path / "b.raw"
    assert ours.img("convert", "-f", "raw", "-O", "raw", mine, a).rc == 0
    assert oracle.img("convert", "-f", "raw", "-O", "raw", theirs, b).rc == 0
    assert same_bytes(a, src) and same_bytes(b, src)
    assert data_runs(a) == data_runs(b)


def test_convert_qcow2_onto_lun_and_back(both, tgtd, tmp_path):  # noqa: F811
    """A qcow2 image made on the LUN by qimg ("create" on an existing LUN, then convert
    into it) passes the oracle's check and reads back identically."""
    ours, oracle = both
    t = tgtd.new_target([(16 * MiB, True)])
    src = tmp_path / "s.qcow2"
    assert oracle.img("create", "-f", "qcow2", src, "8M").rc == 0
    assert oracle.io("-c", "write -P 7 1M 1M", "-c", "write -z 3M 1M", src).rc == 0
    r = ours.img("convert", "-f", "qcow2", "-O", "qcow2", src, t.url())
    assert r.rc == 0, r.err
    assert oracle.img("check", "-f", "qcow2", t.url()).rc == 0
    same(ours.img("compare", src, t.url()), oracle.img("compare", src, t.url()))
    a, b = ours.img("info", t.url()), oracle.img("info", t.url())
    assert a.rc == b.rc == 0 and strip_child(a.out) == b.out


def test_create_and_resize_messages(both, tgtd):  # noqa: F811
    """A LUN is only reused: a size that fits is fine, a larger one or preallocation is
    refused; resize may only keep the size (or shrink with --shrink)."""
    ours, oracle = both
    t = tgtd.new_target([(8 * MiB, False)])
    u = t.url()
    for args in (["-f", "raw", u, "8M"], ["-f", "raw", u, "4M"], ["-f", "raw", u, "9M"],
                 ["-f", "raw", "-o", "preallocation=full", u, "1M"]):
        same(ours.img("create", *args), oracle.img("create", *args))
    for args in ([u, "16M"], [u, "4M"], ["-f", "raw", u, "8M"], ["-f", "raw", u, "16M"],
                 ["-f", "raw", "--shrink", u, "4M"]):
        same(ours.img("resize", *args), oracle.img("resize", *args))
    gone = f"iscsi://{LOOPBACK}:{tgtd.port}/iqn.2024-01.org.qimg:none/1"
    a, b = ours.img("create", "-f", "raw", gone, "1M"), oracle.img("create", "-f", "raw", gone, "1M")
    assert a.rc == b.rc == 1 and a.out == b.out
    assert a.err == b.err.replace(
        "does not support image creation, and opening the image failed",
        "does not support creating new images, so an existing image must be selected as the "
        "target; however, opening the given target as an existing image failed")


def test_open_errors(both, tgtd):  # noqa: F811
    """Wrong LUN, wrong target, nothing listening, malformed URLs, LUN 0 (tgt's
    controller: no capacity, MODE SENSE refused): the oracle's lines and exit codes."""
    ours, oracle = both
    t = tgtd.new_target([(4 * MiB, False)])
    base = f"iscsi://{LOOPBACK}:{tgtd.port}"
    names = [t.url(7), t.url(0), f"{base}/{t.name}x/1", f"iscsi://{LOOPBACK}:{free_port()}/{t.name}/1",
             f"{base}/{t.name}", f"{base}/{t.name}/x", "iscsi:/foo", "iscsi://"]
    for name in names:
        start = time.monotonic()
        a = ours.img("info", name)
        assert time.monotonic() - start < 20
        a.out = strip_child(a.out)
        same(a, oracle.img("info", name))


def test_iser(both, tgtd):  # noqa: F811
    """iser:// and transport=iser go through libiscsi's iSER (RDMA) transport: on a machine
    without RDMA the connect fails with libiscsi's words, in both tools alike."""
    ours, oracle = both
    t = tgtd.new_target([(4 * MiB, False)])
    u = f"iser://{LOOPBACK}:{tgtd.port}/{t.name}/1"
    for args in (["info", u], ["info", "--image-opts", t.opts(driver="iser", transport="iser")],
                 ["info", "--image-opts", t.opts(transport="iser")],
                 ["create", "-f", "raw", u, "1M"]):
        a, b = ours.img(*args), oracle.img(*args)
        assert a.rc == b.rc == 1 and a.out == b.out
        assert a.err == b.err.replace(
            "does not support image creation, and opening the image failed",
            "does not support creating new images, so an existing image must be selected as "
            "the target; however, opening the given target as an existing image failed")


def test_chap(both, tgtd):  # noqa: F811
    """CHAP from the URL, from password-secret, and refusals: no password, a wrong one,
    none at all, both password and password-secret, a missing secret."""
    ours, oracle = both
    t = tgtd.new_target([(4 * MiB, False)], chap=("alice", "s3cret-passw0rd"))
    good = t.url(user="alice", password="s3cret-passw0rd")
    a, b = ours.img("info", good), oracle.img("info", good)
    assert a.rc == b.rc == 0 and strip_child(a.out) == b.out
    sec = ["--object", "secret,id=s0,data=s3cret-passw0rd"]
    o = t.opts(user="alice", **{"password-secret": "s0"})
    a, b = ours.img("info", *sec, "--image-opts", o), oracle.img("info", *sec, "--image-opts", o)
    assert a.rc == b.rc == 0 and strip_child(a.out) == b.out
    for args in ([t.url()], [t.url(user="alice", password="wrong")], [t.url(user="alice")],
                 ["--image-opts", t.opts(user="alice")],
                 [*sec, "--image-opts", t.opts(user="alice", password="x",
                                               **{"password-secret": "s0"})],
                 [*sec, "--image-opts", t.opts(user="alice", **{"password-secret": "s1"})]):
        same(ours.img("info", *args), oracle.img("info", *args))


def test_options(both, tgtd):  # noqa: F811
    """--image-opts and json: with initiator-name, header-digest and timeout (timeout is
    not part of the name); bad values and missing options as the oracle words them."""
    ours, oracle = both
    t = tgtd.new_target([(4 * MiB, True)])
    good = [t.opts(**{"initiator-name": "iqn.2024-01.org.qimg:init", "header-digest": "crc32c",
                      "timeout": "5"}),
            t.opts(**{"header-digest": "none"}), t.opts(**{"header-digest": "crc32c-none"})]
    for o in good:
        a, b = ours.img("info", "--image-opts", o), oracle.img("info", "--image-opts", o)
        assert a.rc == b.rc == 0 and strip_child(a.out) == b.out
    j = ('json:{"driver":"raw","file":{"driver":"iscsi","portal":"%s:%d","target":"%s",'
         '"lun":1,"transport":"tcp","timeout":5}}' % (LOOPBACK, tgtd.port, t.name))
    a, b = ours.img("info", j), oracle.img("info", j)
    assert a.rc == b.rc == 0 and strip_child(a.out) == b.out
    bad = [t.opts(**{"header-digest": "CRC32C"}), t.opts(transport="foo"), t.opts(lun="x"),
           t.opts(timeout="x"), t.opts(foo="bar"),
           f"driver=iscsi,portal={LOOPBACK}:{tgtd.port},target={t.name},lun=1"]
    for o in bad:
        same(ours.img("info", "--image-opts", o), oracle.img("info", "--image-opts", o))


def test_qemu_io_requests(both, tgtd):  # noqa: F811
    """qemu-io's writes, zero writes with and without unmap, discard and reads on twin thin
    LUNs: the same answers, the same bytes, the same allocation."""
    ours, oracle = both
    t = tgtd.new_target([(8 * MiB, True), (8 * MiB, True)])
    cmds = ["write -q -P 1 0 4M", "write -q -z 512k 512k", "write -q -z -u 1M 1M",
            "discard -q 2M 1M", "write -q -P 2 5000 3000", "read -q -P 2 5000 3000",
            "read -q -P 0 1M 1M", "read -q -P 1 3M 1M", "flush"]
    args = [a for c in cmds for a in ("-c", c)]
    same(ours.io("-f", "raw", *args, t.url(1)), oracle.io("-f", "raw", *args, t.url(2)))
    assert t.files[1].read_bytes() == t.files[2].read_bytes()
    a = ours.img("map", "--output=json", "-f", "raw", t.url(1))
    b = oracle.img("map", "--output=json", "-f", "raw", t.url(2))
    assert strip_compressed(a.out) == b.out.replace(t.url(2), t.url(1))


def test_target_gone_mid_convert(ours, own_tgtd, tmp_path):  # noqa: F811
    """The target dies during a convert: qimg stops with a write error, in bounded time,
    and the source is untouched. (qemu-img 7.2 waits for the target for ever here:
    libiscsi reconnects without end unless a timeout is set, so there is no oracle run.)"""
    t = own_tgtd.new_target([(64 * MiB, False)])
    src = tmp_path / "big.raw"
    src.write_bytes(random.Random(3).randbytes(64 * MiB))
    before = digest(src)
    killer = threading.Timer(1.0, own_tgtd.kill)
    killer.start()
    start = time.monotonic()
    r = ours.img("convert", "-n", "-r", "16M", "-f", "raw", "-O", "raw", src, t.url(), timeout=120)
    elapsed = time.monotonic() - start
    killer.join()
    assert r.rc == 1 and elapsed < 60
    assert re.fullmatch(r"qemu-img: error while writing at byte \d+: Input/output error\n", r.err)
    assert digest(src) == before
