# SPDX-License-Identifier: MIT
"""The rbd protocol against a real one-node Ceph cluster on 127.0.0.1 (rbd_cluster.py:
one monitor, one memstore OSD, a pool "rbd" of size 1), started once per session,
differential against Debian's qemu-img 7.2 with qemu-block-extra's rbd driver (the 9.1
oracle has no rbd driver, so 7.2 is the only reference here).

9.1 differences named here: human info adds "Child node '/file':" (strip_child) and
JSON info "children"; map JSON adds "compressed"; the snapshot table's header and
column widths changed (rows are compared field by field); "snapshot -c" of an existing
name ends "File exists" (7.2: "-17 (File exists)"); -f rbd's empty format-specific
block is not printed (7.2 prints the bare "Format specific information:" line); LUKS
info adds "detached header: false".

Encryption (encrypt.*) is librbd's LUKS, as in Debian's build; layered encryption
(encrypt.parent) and "luks-any" need a newer librbd than Debian 12's (16.2), so both
tools refuse them here.
"""
import hashlib
import json
import os
import re
import subprocess
import time

import pytest

from conftest import data_runs, strip_child, write_pattern
from rbd_cluster import Cluster, missing_programs

# One worker runs them all: they share the session's cluster (the suite runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("ceph")

MIB = 1 << 20
SIZE = 32 * MIB


@pytest.fixture(scope="session")
def ceph(tmp_path_factory):
    missing = missing_programs()
    if missing:
        pytest.skip(f"Ceph is not installed ({', '.join(missing)}): run scripts/setup-deps.sh")
    cluster = Cluster(tmp_path_factory.mktemp("ceph"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


_count = [0]


def fresh(prefix="img"):
    _count[0] += 1
    return f"{prefix}{_count[0]}"


def name(ceph, image, extra=""):
    return f"rbd:rbd/{image}:conf={ceph.conf}{extra}"


def same(a, b):
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def source(tmp_path):
    """A sparse raw image with data in a few objects (4 MiB each by default)."""
    src = tmp_path / "src.raw"
    write_pattern(src, {0: b"\x11" * 8192, 5 * MIB + 4096: b"\x22" * 65536,
                        17 * MIB: os.urandom(3 * MIB), SIZE - 4096: b"\x33" * 4096}, SIZE)
    return src


def snapshot_rows(text):
    """(id, tag, vm size) per snapshot row: the table's layout differs in 9.1."""
    rows = []
    for line in text.splitlines():
        m = re.match(r"^(\S+)\s+(\S+)\s+(\d+(?:\.\d+)? \S+)\s+\d{4}-", line)
        if m:
            rows.append(m.groups())
    return rows


def human_info(text):
    """Info text without 9.1's child sections and with the snapshot table as rows."""
    text = strip_child(text)
    head = text.split("Snapshot list:\n")[0]
    return head.replace("Format specific information:\n", ""), snapshot_rows(text)


def json_info(text):
    j = json.loads(text)
    j.pop("children", None)
    return j


def json_map(text):
    return text.replace('"compressed": false, ', "")


def test_cluster_starts_quickly(ceph):
    print(f"Ceph cluster started in {ceph.startup_seconds:.1f}s")
    assert ceph.startup_seconds < 60


def test_convert_in_and_out_both_tools(both, ceph, source, tmp_path):
    ours, oracle = both
    a, b = fresh(), fresh()
    assert ours.img("convert", "-O", "raw", source, name(ceph, a)).rc == 0
    assert oracle.img("convert", "-O", "raw", source, name(ceph, b)).rc == 0
    for img in (a, b):
        same(ours.img("compare", "-f", "raw", "-F", "raw", name(ceph, img), source),
             oracle.img("compare", "-f", "raw", "-F", "raw", name(ceph, img), source))
        assert ours.img("compare", "-f", "raw", name(ceph, img), source).out == \
            "Images are identical.\n"
    # The same objects were written: holes in the source stay unallocated in rbd.
    ma = ours.img("map", "-f", "raw", "--output=json", name(ceph, a))
    mb = oracle.img("map", "-f", "raw", "--output=json", name(ceph, b))
    assert ma.rc == mb.rc == 0 and json_map(ma.out) == mb.out
    assert '"data": false' in mb.out  # the oracle skipped holes too: the check can fail
    # And back out, each tool reading the other's image.
    out_a, out_b = tmp_path / "a.raw", tmp_path / "b.raw"
    assert ours.img("convert", "-O", "raw", name(ceph, b), out_a).rc == 0
    assert oracle.img("convert", "-O", "raw", name(ceph, a), out_b).rc == 0
    assert sha(out_a) == sha(out_b) == sha(source)
    assert data_runs(out_a) == data_runs(out_b)  # unallocated objects were not read as data


def test_convert_1g_parallel(both, ceph, tmp_path):
    """The issue's round trip: a sparse 1 GiB image into rbd and back, with 16 requests in
    flight written out of order (-m 16 -W): identical data, the same objects allocated, and
    the holes read back as holes."""
    ours, oracle = both
    src = tmp_path / "1g.raw"
    write_pattern(src, {i * 61 * MIB + 12345 * 512: os.urandom(300 * 1024) for i in range(16)},
                  1 << 30)
    a, b = fresh(), fresh()
    for tool, img in ((ours, a), (oracle, b)):
        r = tool.img("convert", "-m", "16", "-W", "-O", "raw", src, name(ceph, img))
        assert (r.rc, r.err) == (0, "")
    ma = ours.img("map", "-f", "raw", "--output=json", name(ceph, a))
    mb = oracle.img("map", "-f", "raw", "--output=json", name(ceph, b))
    assert ma.rc == mb.rc == 0 and json_map(ma.out) == mb.out
    same(ours.img("compare", "-f", "raw", "-F", "raw", name(ceph, b), src),
         oracle.img("compare", "-f", "raw", "-F", "raw", name(ceph, a), src))
    out_a, out_b = tmp_path / "a.raw", tmp_path / "b.raw"
    assert ours.img("convert", "-m", "16", "-O", "raw", name(ceph, b), out_a).rc == 0
    assert oracle.img("convert", "-m", "16", "-O", "raw", name(ceph, a), out_b).rc == 0
    for out in (out_a, out_b):  # (hashing 1 GiB twice would cost more than the converts)
        r = oracle.img("compare", "-f", "raw", "-F", "raw", out, src)
        assert (r.rc, r.out) == (0, "Images are identical.\n")
    assert data_runs(out_a) == data_runs(out_b)


def test_info_and_map_identical(both, ceph, source):
    ours, oracle = both
    img = fresh()
    assert oracle.img("convert", "-O", "raw", source, name(ceph, img)).rc == 0
    for fmt in ([], ["-f", "raw"], ["-f", "rbd"]):
        a = ours.img("info", *fmt, name(ceph, img))
        b = oracle.img("info", *fmt, name(ceph, img))
        assert a.rc == b.rc == 0 and human_info(a.out) == human_info(b.out)
        a = ours.img("info", "--output=json", *fmt, name(ceph, img))
        b = oracle.img("info", "--output=json", *fmt, name(ceph, img))
        assert a.rc == b.rc == 0 and json_info(a.out) == json_info(b.out)
    assert "    protocol type: rbd\n" in ours.img("info", name(ceph, img)).out
    same(ours.img("map", "-f", "raw", name(ceph, img)),
         oracle.img("map", "-f", "raw", name(ceph, img)))
    a = ours.img("map", "--output=json", "-f", "raw", name(ceph, img))
    b = oracle.img("map", "--output=json", "-f", "raw", name(ceph, img))
    assert a.rc == b.rc == 0 and json_map(a.out) == b.out


def test_names_and_open_options(both, ceph):
    ours, oracle = both
    img = fresh()
    assert oracle.img("create", "-f", "raw", name(ceph, img), "4M").rc == 0
    mon = f"127.0.0.1\\:{ceph.port}"
    names = [name(ceph, img, ":id=admin"),
             f"rbd:rbd/{img}:mon_host={mon}:auth_supported=none:rados_osd_op_timeout=5",
             f"rbd:rbd/{img}@:conf={ceph.conf}",
             f'json:{{"driver":"raw","file":{{"driver":"rbd","pool":"rbd","image":"{img}",'
             f'"conf":"{ceph.conf}"}}}}']
    for n in names:
        a, b = ours.img("info", n), oracle.img("info", n)
        assert a.rc == b.rc == 0 and human_info(a.out) == human_info(b.out)
    for opts in (f"driver=rbd,pool=rbd,image={img},conf={ceph.conf},user=admin,"
                 "auth-client-required.0=none",
                 f"driver=rbd,pool=rbd,image={img},server.0.host=127.0.0.1,"
                 f"server.0.port={ceph.port},auth-client-required.0=none"):
        a = ours.img("info", "--image-opts", opts)
        b = oracle.img("info", "--image-opts", opts)
        assert a.rc == b.rc == 0 and human_info(a.out) == human_info(b.out)
    secret = ["--object", "secret,id=s0,data=abc", "--image-opts"]
    for opts in (f"driver=rbd,pool=rbd,image={img},conf={ceph.conf},key-secret=s0",
                 f"driver=rbd,pool=rbd,image={img},conf={ceph.conf},key-secret=nosuch",
                 f"driver=rbd,pool=rbd,image={img},conf={ceph.conf},password-secret=s0"):
        a, b = ours.img("info", *secret, opts), oracle.img("info", *secret, opts)
        assert (a.rc, a.err) == (b.rc, b.err) and human_info(a.out) == human_info(b.out)
        a = ours.img("info", "--output=json", *secret, opts)
        b = oracle.img("info", "--output=json", *secret, opts)
        assert (a.rc, a.err) == (b.rc, b.err)
        assert a.rc or json_info(a.out) == json_info(b.out)
    # Legacy Ceph settings in the name: a cephx key (unused under auth "none") and a
    # password-secret.
    for n in (name(ceph, img, ":id=admin:key=AQBxn2ZlAAAAABAA1Tf3Mj7Lk5X0v2q7zW9v3A=="),
              name(ceph, img, ":password-secret=s0")):
        a = ours.img("info", "--object", "secret,id=s0,data=abc", n)
        b = oracle.img("info", "--object", "secret,id=s0,data=abc", n)
        assert (a.rc, a.err) == (b.rc, b.err) and human_info(a.out) == human_info(b.out)


def test_open_errors(both, ceph):
    ours, oracle = both
    conf = ceph.conf
    for n in (name(ceph, "nonexistent"), f"rbd:nopool/x:conf={conf}", "rbd:rbd",
              name(ceph, "x", ":foo=bar"), name(ceph, "x", ":id"),
              f"rbd:rbd/ns1/x:conf={conf}", f"rbd:rbd/im\\:g:conf={conf}"):
        same(ours.img("info", n), oracle.img("info", n))
    for opts in (f"driver=rbd,pool=rbd,conf={conf}", f"driver=rbd,image=x,conf={conf}",
                 "driver=rbd,pool=rbd,image=x,conf=/nonexistent.conf",
                 f"driver=rbd,pool=rbd,image=x,conf={conf},auth-client-required.0=bogus",
                 f"driver=rbd,pool=rbd,image=x,conf={conf},foo=1",
                 f"driver=rbd,pool=rbd,image=x,conf={conf},server.0.host=127.0.0.1,"
                 "server.0.port=1,server.0.foo=1",
                 f"driver=rbd,pool=rbd,image=x,conf={conf},password-secret=p,key-secret=p"):
        same(ours.img("info", "--object", "secret,id=p,data=x", "--image-opts", opts),
             oracle.img("info", "--object", "secret,id=p,data=x", "--image-opts", opts))


def test_create_and_resize(both, ceph):
    ours, oracle = both
    a, b = fresh(), fresh()
    ra = ours.img("create", "-f", "raw", "-o", "cluster_size=64k", name(ceph, a), "1000")
    rb = oracle.img("create", "-f", "raw", "-o", "cluster_size=64k", name(ceph, b), "1000")
    assert (ra.rc, ra.err) == (rb.rc, rb.err) == (0, "")
    ia, ib = ours.img("info", name(ceph, a)), oracle.img("info", name(ceph, a))
    assert human_info(ia.out) == human_info(ib.out)
    assert "virtual size: 1 KiB (1024 bytes)\ncluster_size: 65536\n" in ia.out.replace(
        "disk size: unavailable\n", "")
    same(ours.img("create", "-f", "raw", name(ceph, a), "1M"),
         oracle.img("create", "-f", "raw", name(ceph, a), "1M"))  # exists already
    for cs in ("1000", "2k", "64M"):
        c = fresh()
        same(ours.img("create", "-f", "raw", "-o", f"cluster_size={cs}", name(ceph, c), "1M"),
             oracle.img("create", "-f", "raw", "-o", f"cluster_size={cs}", name(ceph, c), "1M"))
    same(ours.img("create", "-f", "raw", "-o", "help", name(ceph, a)),
         oracle.img("create", "-f", "raw", "-o", "help", name(ceph, a)))
    for args in (["20M"], ["--shrink", "512"], ["+1M"]):
        same(ours.img("resize", "-f", "raw", name(ceph, a), *args),
             oracle.img("resize", "-f", "raw", name(ceph, b), *args))
        assert ours.img("info", name(ceph, a)).out.replace(a, b) == \
            ours.img("info", name(ceph, b)).out


def test_io_requests(ceph, tmp_path, ours, oracle):
    """Writes, zero writes (unmapping or not), discards through qemu-io land as the
    oracle's do: same content and the same allocated objects."""
    a, b = fresh(), fresh()
    cmds = ["write -P 7 0 6M", "write -z 1M 64k", "write -z -u 4M 4M", "discard 12M 4M",
            "write -P 9 13M 4k", "flush"]
    for tool, img in ((ours, a), (oracle, b)):
        assert oracle.img("create", "-f", "raw", name(ceph, img), "16M").rc == 0
        args = [x for c in cmds for x in ("-c", c)]
        r = tool.io("-f", "raw", *args, name(ceph, img))
        assert r.rc == 0 and "error" not in r.out + r.err
    ma = oracle.img("map", "--output=json", "-f", "raw", name(ceph, a))
    mb = oracle.img("map", "--output=json", "-f", "raw", name(ceph, b))
    assert ma.out == mb.out
    assert oracle.img("compare", "-f", "raw", "-F", "raw", name(ceph, a), name(ceph, b)).rc == 0


def test_snapshots(both, ceph, source):
    ours, oracle = both
    img = fresh()
    n = name(ceph, img)
    assert ours.img("convert", "-O", "raw", source, n).rc == 0
    assert ours.img("snapshot", "-c", "s1", n).rc == 0
    assert ours.img("snapshot", "-c", "s2", n).rc == 0
    a, b = ours.img("snapshot", "-l", n), oracle.img("snapshot", "-l", n)
    assert a.rc == b.rc == 0
    assert snapshot_rows(a.out) == snapshot_rows(b.out) == [
        ("s1", "s1", "32 MiB"), ("s2", "s2", "32 MiB")]
    # 9.1 ends with the errno's text (7.2: "-17 (File exists)"); the report before is the same.
    a, b = ours.img("snapshot", "-c", "s1", n), oracle.img("snapshot", "-c", "s1", n)
    assert a.rc == b.rc == 1
    assert a.err.splitlines()[-2:] == ["qemu-img: failed to create snap: File exists",
                                       "qemu-img: Could not create snapshot 's1': File exists"]
    assert b.err.splitlines()[-2] == a.err.splitlines()[-2]
    same(ours.img("snapshot", "-d", "nosuch", n), oracle.img("snapshot", "-d", "nosuch", n))
    # QEMU reopens raw after applying through it, so its probing warning comes twice;
    # ours comes once (not emulated): the error itself is the same.
    a, b = ours.img("snapshot", "-a", "nosuch", n), oracle.img("snapshot", "-a", "nosuch", n)
    assert a.rc == b.rc == 1 and a.err.splitlines()[-1] == b.err.splitlines()[-1]
    # The snapshot opens read-only, with the same data, map and info.
    snap = f"rbd:rbd/{img}@s1:conf={ceph.conf}"
    same(ours.img("snapshot", "-c", "s3", snap), oracle.img("snapshot", "-c", "s3", snap))
    same(ours.img("map", "-f", "raw", snap), oracle.img("map", "-f", "raw", snap))
    a, b = ours.img("info", snap), oracle.img("info", snap)
    assert human_info(a.out) == human_info(b.out)
    # Apply: new writes are rolled back; delete: the list shrinks.
    assert oracle.io("-f", "raw", "-c", "write -P 0x44 0 1M", n).rc == 0
    assert ours.img("compare", "-f", "raw", n, source).rc == 1
    assert ours.img("snapshot", "-a", "s1", n).rc == 0
    assert oracle.img("compare", "-f", "raw", n, source).out == "Images are identical.\n"
    assert ours.img("snapshot", "-d", "s1", n).rc == 0
    assert snapshot_rows(oracle.img("snapshot", "-l", n).out) == [("s2", "s2", "32 MiB")]


def test_cluster_gone_mid_convert(ours, tmp_path):
    """Monitor and OSD killed while convert writes into rbd: the convert ends with a clear
    error within the clients' timeouts (3 s each here) and the source is untouched. (The
    monitor alone is off the data path: writes to a live OSD would go on.)"""
    if missing_programs():
        pytest.skip("Ceph is not installed: run scripts/setup-deps.sh")
    cluster = Cluster(tmp_path / "ceph", store_mib=512)
    try:
        cluster.start()
        src = tmp_path / "src.raw"
        write_pattern(src, {0: os.urandom(SIZE)}, SIZE)
        before = sha(src)
        timeouts = ":rados_osd_op_timeout=3:rados_mon_op_timeout=3:client_mount_timeout=3"
        target = f"rbd:rbd/k:conf={cluster.conf}{timeouts}"
        proc = subprocess.Popen([ours.img_path, "convert", "-r", "8M", "-O", "raw", str(src),
                                 target], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        time.sleep(1.0)
        assert proc.poll() is None, "convert ended before the cluster went away"
        cluster.kill("mon")
        cluster.kill("osd")
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - t0
        assert proc.returncode == 1
        assert re.search(r"qemu-img: error while writing at byte \d+: Connection timed out\n$",
                         err), err
        assert "rbd request failed: cmd 1 offset" in err
        assert elapsed < 45
        assert sha(src) == before
    finally:
        cluster.stop()


def luks_info(text):
    return human_info(text.replace("    detached header: false\n", ""))


def luks_json(text):
    j = json_info(text)
    j.get("format-specific", {}).get("data", {}).pop("detached-header", None)
    return j


ENC = ["--object", "secret,id=s,data=pw", "--object", "secret,id=w,data=wrong"]


def enc_opts(ceph, img, extra):
    return f"driver=rbd,pool=rbd,image={img},conf={ceph.conf}{extra}"


def test_encryption_create_errors(both, ceph):
    """encrypt.* create options checked as QEMU does; an image whose encryption could not
    be set up is removed again."""
    ours, oracle = both
    img = fresh("enc")
    for o in ("encrypt.format=luks", "encrypt.key-secret=s",
              "encrypt.format=bogus,encrypt.key-secret=s",
              "encrypt.format=luks-any,encrypt.key-secret=s",
              "encrypt.format=luks,encrypt.key-secret=nosuch",
              "encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-alg=bogus",
              "encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-alg=aes-192",
              "encrypt.format=luks,encrypt.key-secret=s,encrypt.foo=1",
              "encrypt.format=luks,encrypt.key-secret=nosuch,cluster_size=1000",
              "encrypt.format=luks2,encrypt.key-secret=s"):  # 1M: no room for a LUKS2 header
        same(ours.img("create", "-f", "raw", *ENC, "-o", o, name(ceph, img), "1M"),
             oracle.img("create", "-f", "raw", *ENC, "-o", o, name(ceph, img), "1M"))
        assert img not in ceph.rbd("ls", "rbd").stdout.split()


def test_encryption(both, ceph, tmp_path):
    """A LUKS image made by ours: the oracle reads what ours wrote through the encryption,
    info with and without the key is the same; wrong formats and options fail alike.
    (librbd's LUKS spends seconds on every keyed open, so there are few: LUKS2 is checked
    by its create errors.)"""
    ours, oracle = both
    data = tmp_path / "data.raw"
    write_pattern(data, {0: b"\x5a" * 4096, 3 * MIB: os.urandom(MIB)}, 8 * MIB)
    o = "encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-alg=aes-128"
    a = fresh("enc")
    r = ours.img("create", "-f", "raw", *ENC, "-o", o, name(ceph, a), "8M")
    assert (r.rc, r.err) == (0, "")
    # librbd took room for the header (4 MiB: one object) and the image grew by it, as
    # the oracle's does (observed: 8M -> 12 MiB).
    assert re.search(r"size (.*) in", ceph.rbd("info", f"rbd/{a}").stdout).group(1) == "12 MiB"
    key = ",encrypt.format=luks,encrypt.key-secret=s"
    # Ours writes through the encryption, the oracle reads it back with the key.
    r = ours.img("convert", "-n", *ENC, "-f", "raw", data, "--target-image-opts",
                 enc_opts(ceph, a, key))
    assert r.rc == 0, r.err
    r = oracle.img("compare", *ENC, "--image-opts", enc_opts(ceph, a, key),
                   f"driver=raw,file.driver=file,file.filename={data}")
    assert (r.rc, r.out) == (0, "Images are identical.\n"), r.err
    # Opened with the key the image is its data (the oracle's info, read once by hand, is
    # this too; each keyed open costs seconds).
    ia = ours.img("info", *ENC, "--image-opts", enc_opts(ceph, a, key))
    assert ia.rc == 0 and human_info(ia.out) == (
        f'image: json:{{"pool": "rbd", "image": "{a}", "conf": "{ceph.conf}", "driver": "rbd"}}\n'
        "file format: rbd\nvirtual size: 8 MiB (8388608 bytes)\ndisk size: unavailable\n"
        "cluster_size: 4194304\n", [])
    # Without the key: the header as either tool sees it.
    for args in (["-f", "rbd"], ["--output=json", "-f", "rbd"]):
        ia, ib = ours.img("info", *args, name(ceph, a)), oracle.img("info", *args, name(ceph, a))
        assert ia.rc == ib.rc == 0
        if "--output=json" in args:
            assert json_info(ia.out) == json_info(ib.out)
            assert json_info(ia.out)["format-specific"]["data"] == {"encryption-format": "luks"}
        else:
            assert human_info(ia.out) == human_info(ib.out)
    # LUKS1 is probed without a key, as the luks format over rbd.
    ia, ib = ours.img("info", name(ceph, a)), oracle.img("info", name(ceph, a))
    assert ia.rc == ib.rc == 0 and "file format: luks\n" in ib.out
    assert luks_info(ia.out) == luks_info(ib.out)
    ia = ours.img("info", "--output=json", name(ceph, a))
    ib = oracle.img("info", "--output=json", name(ceph, a))
    assert luks_json(ia.out) == luks_json(ib.out)
    # Open errors: the wrong format, missing and unknown keys, an image without encryption.
    # (A wrong passphrase, "encryption load fail: Operation not permitted" in both, costs
    # libcryptsetup 15-20 s per tool here: not repeated in the suite.)
    plain = fresh()
    assert oracle.img("create", "-f", "raw", name(ceph, plain), "4M").rc == 0
    for img, extra in ((a, ",encrypt.format=luks2,encrypt.key-secret=s"),
                       (a, ",encrypt.format=luks"), (a, ",encrypt.key-secret=s"),
                       (a, ",encrypt.format=luks,encrypt.key-secret=nosuch"),
                       (a, ",encrypt.format=luks-any,encrypt.key-secret=s"),
                       (a, ",encrypt.format=luks,encrypt.key-secret=s,encrypt.bar=1"),
                       (plain, ",encrypt.format=luks,encrypt.key-secret=s")):
        same(ours.img("info", *ENC, "--image-opts", enc_opts(ceph, img, extra)),
             oracle.img("info", *ENC, "--image-opts", enc_opts(ceph, img, extra)))
