# SPDX-License-Identifier: MIT
"""qcow2 external data files (data_file, data_file_raw), differential against the oracle (7.2):
create (metadata byte-identical, the data file created and preallocated like QEMU's), open,
reads and writes through qimg-io and qemu-io both ways, check, map, convert, amend, and
hostile data file names."""
import filecmp
import json
import os
import struct

import pytest

MiB = 1 << 20

CREATE_OPTS = [
    "data_file=d.raw",
    "data_file=d.raw,data_file_raw=on",
    "data_file=d.raw,preallocation=metadata",
    "data_file=d.raw,preallocation=falloc",
    "data_file=d.raw,data_file_raw=on,preallocation=full",
    "data_file=d.raw,data_file_raw=on,preallocation=metadata",
    "data_file=d.raw,cluster_size=4096,lazy_refcounts=on",
]
CREATE_ERRORS = [
    "data_file=d.raw,compat=0.10",
    "data_file_raw=on",
    "data_file=",
    "data_file=/nonexistent-dir/x.raw",
]

IO_SCRIPT = ["write -P 1 0 1M", "write -P 2 100k 4k", "write -z 64k 128k", "discard 512k 64k",
             "write -z -u 768k 64k", "write -P 3 3M 1M", "write -z 1000k 8k"]


def dirs(tmp_path):
    out = []
    for name in ("ours", "theirs"):
        d = tmp_path / name
        d.mkdir()
        out.append(d)
    return out


@pytest.mark.parametrize("opts", CREATE_OPTS)
def test_create_matches_oracle(ours, oracle, tmp_path, opts):
    od, td = dirs(tmp_path)
    a = ours.img("create", "-f", "qcow2", "-o", opts, "i.qcow2", "4M", cwd=od)
    b = oracle.img("create", "-f", "qcow2", "-o", opts, "i.qcow2", "4M", cwd=td)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert (od / "i.qcow2").read_bytes() == (td / "i.qcow2").read_bytes()
    sa, sb = os.stat(od / "d.raw"), os.stat(td / "d.raw")
    assert sa.st_size == sb.st_size == 4 * MiB
    assert (sa.st_blocks > 0) == (sb.st_blocks > 0) or abs(sa.st_blocks - sb.st_blocks) < 64
    for d in (od, td):
        r = oracle.img("check", "i.qcow2", cwd=d)
        assert r.rc == 0, r
    ia = json.loads(oracle.img("info", "--output=json", "i.qcow2", cwd=od).out)
    ib = json.loads(oracle.img("info", "--output=json", "i.qcow2", cwd=td).out)
    ia.pop("actual-size"), ib.pop("actual-size")
    assert ia == ib


@pytest.mark.parametrize("opts", CREATE_ERRORS)
def test_create_errors_match_oracle(ours, oracle, tmp_path, opts):
    od, td = dirs(tmp_path)
    a = ours.img("create", "-f", "qcow2", "-o", opts, "i.qcow2", "4M", cwd=od)
    b = oracle.img("create", "-f", "qcow2", "-o", opts, "i.qcow2", "4M", cwd=td)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert sorted(os.listdir(od)) == sorted(os.listdir(td))


@pytest.mark.parametrize("raw", ["off", "on"])
@pytest.mark.parametrize("writer", ["ours", "theirs"])
def test_io_cross_readable(ours, oracle, tmp_path, raw, writer):
    """The same qemu-io script through each tool gives the same files; each reads the other's."""
    od, td = dirs(tmp_path)
    for d in (od, td):
        assert oracle.img("create", "-f", "qcow2", "-o", f"data_file=d.raw,data_file_raw={raw}",
                          "i.qcow2", "4M", cwd=d).rc == 0
    args = [a for cmd in IO_SCRIPT for a in ("-c", cmd)]
    a = ours.io(*args, "i.qcow2", cwd=od)
    b = oracle.io(*args, "i.qcow2", cwd=td)
    assert a.rc == b.rc == 0, (a, b)
    assert filecmp.cmp(od / "i.qcow2", td / "i.qcow2", shallow=False)
    if raw == "on":
        assert filecmp.cmp(od / "d.raw", td / "d.raw", shallow=False)
    # Each tool reads what the other wrote.
    reads = ["read -P 1 0 64k", "read -P 0 64k 128k", "read -P 2 100k 4k" if False else
             "read -P 1 192k 320k", "read -P 0 512k 64k", "read -P 0 768k 64k",
             "read -P 3 3M 1M", "read -P 0 1000k 8k"]
    rargs = [a for cmd in reads for a in ("-c", cmd)]
    src = od if writer == "ours" else td
    for tool in (ours, oracle):
        r = tool.io(*rargs, "i.qcow2", cwd=src)
        assert r.rc == 0 and "Pattern verification failed" not in r.out, r
    for tool in (ours, oracle):
        r = tool.img("check", "i.qcow2", cwd=src)
        assert r.rc == 0, r
    a = ours.img("map", "--output=json", "i.qcow2", cwd=src)
    b = oracle.img("map", "--output=json", "i.qcow2", cwd=src)
    # 9.1 adds "compressed" to every map entry; 7.2 does not have it.
    assert json.loads(a.out.replace(', "compressed": false', "")) == json.loads(b.out)
    a = ours.img("map", "i.qcow2", cwd=src)
    b = oracle.img("map", "i.qcow2", cwd=src)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    a = ours.img("check", "i.qcow2", cwd=src)
    b = oracle.img("check", "i.qcow2", cwd=src)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)


def test_raw_data_file_is_the_guest_view(ours, oracle, tmp_path):
    od, _ = dirs(tmp_path)
    assert ours.img("create", "-f", "qcow2", "-o", "data_file=d.raw,data_file_raw=on",
                    "i.qcow2", "4M", cwd=od).rc == 0
    args = [a for cmd in IO_SCRIPT for a in ("-c", cmd)]
    assert ours.io(*args, "i.qcow2", cwd=od).rc == 0
    assert ours.img("convert", "-O", "raw", "i.qcow2", "view.raw", cwd=od).rc == 0
    assert filecmp.cmp(od / "view.raw", od / "d.raw", shallow=False)


def test_convert_to_and_from_data_file(ours, oracle, tmp_path):
    od, _ = dirs(tmp_path)
    assert oracle.img("create", "-f", "raw", "src.raw", "8M", cwd=od).rc == 0
    assert oracle.io("-f", "raw", "-c", "write -P 9 0 1M", "-c", "write -P 8 5M 100k",
                     "src.raw", cwd=od).rc == 0
    for opts, name in (("data_file=o.data", "o.qcow2"),
                       ("data_file=r.data,data_file_raw=on", "r.qcow2")):
        r = ours.img("convert", "-O", "qcow2", "-o", opts, "src.raw", name, cwd=od)
        assert r.rc == 0, r
        r = oracle.img("compare", "src.raw", name, cwd=od)
        assert r.rc == 0, r
        assert oracle.img("check", name, cwd=od).rc == 0
    assert filecmp.cmp(od / "src.raw", od / "r.data", shallow=False)
    # Oracle-made data file image converted by qimg.
    assert oracle.img("convert", "-O", "qcow2", "-o", "data_file=t.data", "src.raw", "t.qcow2",
                      cwd=od).rc == 0
    assert ours.img("convert", "-O", "raw", "t.qcow2", "back.raw", cwd=od).rc == 0
    assert filecmp.cmp(od / "src.raw", od / "back.raw", shallow=False)


def test_image_opts_data_file_override(ours, oracle, tmp_path):
    od, _ = dirs(tmp_path)
    assert oracle.img("create", "-f", "qcow2", "-o", "data_file=d.raw", "i.qcow2", "4M",
                      cwd=od).rc == 0
    assert oracle.io("-c", "write -P 4 0 64k", "i.qcow2", cwd=od).rc == 0
    os.rename(od / "d.raw", od / "e.raw")
    for spec in ("driver=qcow2,file.filename=i.qcow2,data-file=e.raw",
                 "driver=qcow2,file.filename=i.qcow2,data-file.filename=e.raw"):
        r = ours.io("-c", "read -P 4 0 64k", "--image-opts", spec, cwd=od)
        assert r.rc == 0 and "verification failed" not in r.out, r
    a = ours.io("-c", "read 0 512", "i.qcow2", cwd=od)
    b = oracle.io("-c", "read 0 512", "i.qcow2", cwd=od)
    assert (a.rc, a.err) == (b.rc, b.err)
    # info reads metadata only: a missing data file is no error there.
    r = ours.img("info", "i.qcow2", cwd=od)
    assert r.rc == 0 and "data file: d.raw" in r.out


def test_info_shows_data_file(ours, oracle, tmp_path):
    od, _ = dirs(tmp_path)
    assert oracle.img("create", "-f", "qcow2", "-o", "data_file=d.raw,data_file_raw=on",
                      "i.qcow2", "4M", cwd=od).rc == 0
    a = json.loads(ours.img("info", "--output=json", "i.qcow2", cwd=od).out)
    b = json.loads(oracle.img("info", "--output=json", "i.qcow2", cwd=od).out)
    # 9.1 lists the node's children (7.2 has no "children"): file and data-file.
    kids = {c["name"]: c["info"] for c in a.pop("children")}
    assert kids["data-file"]["filename"] == "d.raw" and kids["data-file"]["virtual-size"] == 4 * MiB
    a.pop("actual-size"), b.pop("actual-size")
    assert a == b
    a = ours.img("info", "i.qcow2", cwd=od).out
    b = oracle.img("info", "i.qcow2", cwd=od).out
    strip = lambda s: [x for x in s.splitlines() if not x.startswith("disk size")
                       and not x.startswith("Child node")]
    assert [x for x in strip(a) if x.startswith("    data file")] == \
           [x for x in strip(b) if x.startswith("    data file")]


@pytest.mark.parametrize("opts", ["data_file=new.raw", "data_file_raw=off", "data_file_raw=on",
                                  "compat=0.10", "lazy_refcounts=on", "refcount_bits=8"])
def test_amend_data_file_images(ours, oracle, tmp_path, opts):
    od, td = dirs(tmp_path)
    for d in (od, td):
        assert oracle.img("create", "-f", "qcow2", "-o", "data_file=d.raw,data_file_raw=on",
                          "i.qcow2", "4M", cwd=d).rc == 0
        assert oracle.io("-c", "write -P 4 0 64k", "i.qcow2", cwd=d).rc == 0
    a = ours.img("amend", "-o", opts, "i.qcow2", cwd=od)
    b = oracle.img("amend", "-o", opts, "i.qcow2", cwd=td)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert filecmp.cmp(od / "i.qcow2", td / "i.qcow2", shallow=False)


def _set_data_file_name(path, name):
    """Rewrite the data file name extension of a fresh 64 KiB-cluster image."""
    buf = bytearray(path.read_bytes()[:65536])
    hlen = struct.unpack(">I", buf[100:104])[0]
    off = hlen
    exts = []
    while True:
        t, ln = struct.unpack(">II", buf[off:off + 8])
        if t == 0:
            break
        exts.append((t, bytes(buf[off + 8:off + 8 + ln])))
        off += 8 + (ln + 7) // 8 * 8
    out = bytearray()
    for t, data in exts:
        if t == 0x44415441:
            data = name
        out += struct.pack(">II", t, len(data)) + data + b"\0" * ((-len(data)) % 8)
    out += b"\0" * 8
    assert hlen + len(out) <= 65536
    buf[hlen:hlen + len(out)] = out
    with open(path, "r+b") as f:
        f.write(buf)


@pytest.mark.parametrize("name", [b"a" * 5000, b"", b"sub/../../nope.raw"],
                         ids=["too-long", "empty", "dotdot"])
def test_hostile_data_file_names(ours, oracle, tmp_path, name):
    od, _ = dirs(tmp_path)
    assert oracle.img("create", "-f", "qcow2", "-o", "data_file=d.raw", "i.qcow2", "4M",
                      cwd=od).rc == 0
    _set_data_file_name(od / "i.qcow2", name)
    for args in (["check", "i.qcow2"], ["convert", "-O", "raw", "i.qcow2", "o.raw"]):
        r = ours.img(*args, cwd=od)
        assert r.rc != 0 and r.err.count("\n") == 1 and r.err.startswith("qemu-img: "), r
    r = ours.io("-c", "read 0 512", "i.qcow2", cwd=od)
    assert r.rc != 0


def test_check_on_data_file_image(ours, oracle, tmp_path):
    od, _ = dirs(tmp_path)
    assert oracle.img("create", "-f", "qcow2", "-o", "data_file=d.raw", "i.qcow2", "8M",
                      cwd=od).rc == 0
    assert oracle.io("-c", "write -P 1 0 200k", "-c", "write -P 2 5M 64k", "i.qcow2",
                     cwd=od).rc == 0
    for args in (["check", "i.qcow2"], ["check", "--output=json", "i.qcow2"],
                 ["check", "-r", "all", "i.qcow2"]):
        a = ours.img(*args, cwd=od)
        b = oracle.img(*args, cwd=od)
        assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err), args


# --- what QEMU refuses on data-file images, and resize carrying the data file along ---

def _pair(ours, oracle, tmp_path, opts="data_file=d.raw", size="1M"):
    od, td = dirs(tmp_path)
    for tool, d in ((ours, od), (oracle, td)):
        r = tool.img("create", "-q", "-f", "qcow2", "-o", opts, "a.qcow2", size, cwd=d)
        assert r.rc == 0, r
    return od, td


def test_snapshots_refused(ours, oracle, tmp_path):
    od, td = _pair(ours, oracle, tmp_path)
    for args in (["-c", "s1"], ["-a", "s1"], ["-d", "s1"], ["-l"]):
        a = ours.img("snapshot", *args, "a.qcow2", cwd=od)
        b = oracle.img("snapshot", *args, "a.qcow2", cwd=td)
        # 9.1: "...: Operation not supported" (7.2: "...: -95 (Operation not supported)").
        b.err = b.err.replace("-95 (Operation not supported)", "Operation not supported")
        assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err), args
    assert oracle.img("check", "a.qcow2", cwd=od).rc == 0
    r = oracle.img("snapshot", "-l", "a.qcow2", cwd=od)
    assert r.rc == 0 and r.out == ""


def test_compressed_writes_refused(ours, oracle, tmp_path):
    od, td = _pair(ours, oracle, tmp_path)
    a = ours.io("-c", "write -c -P 7 0 64k", "a.qcow2", cwd=od)
    b = oracle.io("-c", "write -c -P 7 0 64k", "a.qcow2", cwd=td)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert "Operation not supported" in a.out + a.err
    r = oracle.io("-c", "read -P 0 0 64k", "a.qcow2", cwd=od)
    assert r.rc == 0 and "Pattern verification failed" not in r.out, r


def test_convert_compressed_to_data_file_fails(ours, oracle, tmp_path):
    od, td = dirs(tmp_path)
    for d in (od, td):
        (d / "s.raw").write_bytes(b"\5" * (128 << 10) + bytes(MiB - (128 << 10)))
    a = ours.img("convert", "-c", "-O", "qcow2", "-o", "data_file=t.raw", "s.raw", "t.qcow2",
                 cwd=od)
    b = oracle.img("convert", "-c", "-O", "qcow2", "-o", "data_file=t.raw", "s.raw", "t.qcow2",
                   cwd=td)
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert a.rc == 1 and "Operation not supported" in a.err


@pytest.mark.parametrize("raw", ["off", "on"])
@pytest.mark.parametrize("prealloc", ["off", "metadata", "falloc", "full"])
def test_resize_resizes_the_data_file(ours, oracle, tmp_path, raw, prealloc):
    od, td = _pair(ours, oracle, tmp_path, f"data_file=d.raw,data_file_raw={raw}")
    for tool, d in ((ours, od), (oracle, td)):
        r = tool.io("-c", "write -P 9 0 64k", "a.qcow2", cwd=d)
        assert r.rc == 0, r
        r = tool.img("resize", f"--preallocation={prealloc}", "a.qcow2", "3M", cwd=d)
        assert (r.rc, r.out) == (0, "Image resized.\n"), r
    for d in (od, td):
        assert os.stat(d / "d.raw").st_size == 3 * MiB
        # Allocation of the data file follows the preallocation mode.
        assert (os.stat(d / "d.raw").st_blocks * 512 >= 2 * MiB) == (prealloc in ("falloc",
                                                                                 "full"))
    ma = json.loads(oracle.img("map", "--output=json", "a.qcow2", cwd=od).out)
    mb = json.loads(oracle.img("map", "--output=json", "a.qcow2", cwd=td).out)
    assert ma == mb
    ca = oracle.img("check", "a.qcow2", cwd=od)
    cb = oracle.img("check", "a.qcow2", cwd=td)
    assert ca.rc == 0 and ca.out.splitlines()[:-1] == cb.out.splitlines()[:-1], (ca, cb)
    for tool, d in ((ours, od), (oracle, td)):
        r = tool.img("resize", "--shrink", "a.qcow2", "2M", cwd=d)
        assert r.rc == 0, r
        assert os.stat(d / "d.raw").st_size == 2 * MiB
        r = oracle.io("-c", "read -P 9 0 64k", "-c", "read -P 0 64k 1984k", "a.qcow2", cwd=d)
        assert r.rc == 0 and "verification failed" not in r.out, r
        assert oracle.img("check", "a.qcow2", cwd=d).rc == 0
