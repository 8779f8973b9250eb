# SPDX-License-Identifier: MIT
"""Encrypted qcow2 (qcow2.txt: crypt_method 1 = legacy AES, 2 = LUKS in clusters the crypto
header extension 0x0537be77 points at): images each side writes read the same on the other
(LUKS tweaks sectors with their HOST sector number, AES with the GUEST one), info's "encrypt"
block, create/open/hostile-extension messages, convert, compare, map, measure, check, amend.

Images are made with encrypt.iter-time=10 so that PBKDF2 stays quick. qemu-img 7.2 sometimes
fails to format a LUKS header on a loaded machine ("Unable to get accurate CPU usage"): the
helpers retry. 9.1 differences (checked by hand with the 9.1 oracle) are named where they occur.
"""
import json
import shutil
import struct

import pytest

from conftest import retry_cpu, strip_child

OBJ = ["--object", "secret,id=sec0,data=123456"]
OBJ2 = [*OBJ, "--object", "secret,id=sec1,data=abcdef"]
LUKS = "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10"
AES = "encrypt.format=aes,encrypt.key-secret=sec0"


def create(tool, path, size="1M", opts=LUKS):
    r = retry_cpu(tool, "create", "-q", "-f", "qcow2", *OBJ, "-o", opts, str(path), size)
    assert r.rc == 0, r
    return path


def image_opts(path, secret="sec0"):
    return ["--image-opts", f"driver=qcow2,file.filename={path},encrypt.key-secret={secret}"]


def io(tool, path, *cmds, objs=OBJ, secret="sec0"):
    argv = [*objs, *image_opts(path, secret)]
    for c in cmds:
        argv += ["-c", c]
    r = tool.io(*argv)
    assert r.rc == 0 and "verification failed" not in r.out, r
    return r


def to_raw(tool, path, out):
    r = tool.img("convert", *OBJ, "-O", "raw", *image_opts(path), str(out))
    assert r.rc == 0, r
    return out.read_bytes()


def check_clean(oracle, path):
    r = oracle.img("check", *OBJ, *image_opts(path))
    assert r.rc == 0 and "No errors were found on the image." in r.out, r


# Partial clusters (COW of encrypted zeroes), a run over several clusters, the last sector.
WRITES = ["write -P 0xab 0 64k", "write -P 0x12 100k 3k", "write -P 0x5c 1023k 1k",
          "write -P 0x77 300k 200k"]
READS = ["read -P 0xab 0 64k", "read -P 0x12 100k 3k", "read -P 0x5c 1023k 1k",
         "read -P 0x77 300k 200k", "read -P 0 64k 36k", "read -P 0 103k 197k"]


def cross(ours, oracle, mine, theirs):
    io(ours, mine, *WRITES)
    io(oracle, mine, *READS)
    io(oracle, theirs, *WRITES)
    io(ours, theirs, *READS)
    check_clean(oracle, mine)


MATRIX = [
    "",
    "encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv",
    "encrypt.cipher-alg=aes-256,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,"
    "encrypt.ivgen-hash-alg=sha256,encrypt.hash-alg=sha1",
    "encrypt.cipher-alg=serpent-256,encrypt.cipher-mode=xts,encrypt.hash-alg=sha512",
    "encrypt.cipher-alg=twofish-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=plain",
    "encrypt.cipher-alg=cast5-128,encrypt.cipher-mode=ctr",
    "encrypt.cipher-alg=aes-256,encrypt.cipher-mode=ecb",
]


@pytest.mark.parametrize("opts", MATRIX)
def test_luks_interop_both_ways(both, tmp_path, opts):
    ours, oracle = both
    o = LUKS + ("," + opts if opts else "")
    mine = create(ours, tmp_path / "o.qcow2", opts=o)
    theirs = create(oracle, tmp_path / "t.qcow2", opts=o)
    # Same layout: the qcow2 header cluster is identical, the LUKS header clusters follow the
    # L1 table with the same cipher strings and key slot offsets.
    dm, dt = mine.read_bytes(), theirs.read_bytes()
    assert len(dm) == len(dt)
    assert dm[:65536] == dt[:65536]
    luks = struct.unpack(">Q", dm[0x78:0x80])[0]
    assert dm[0x70:0x74] == b"\x05\x37\xbe\x77" and dm[0x20:0x24] == b"\0\0\0\2"
    assert dm[luks:luks + 112] == dt[luks:luks + 112]
    cross(ours, oracle, mine, theirs)


def test_luks_sectors_are_host_based(both, tmp_path):
    """qcow2.txt: LUKS uses the physical sector as IV tweak. The same guest data lands in the
    second data cluster of a file: it must decrypt with that host offset on both sides."""
    ours, oracle = both
    img = create(ours, tmp_path / "o.qcow2")
    io(oracle, img, "write -P 0x01 512k 64k")   # first data cluster
    io(ours, img, "write -P 0x02 0 64k")        # second one, guest offset 0
    io(oracle, img, "read -P 0x02 0 64k", "read -P 0x01 512k 64k")
    assert to_raw(ours, img, tmp_path / "a.raw") == to_raw(oracle, img, tmp_path / "b.raw")


def test_aes_create_matches_and_interop(both, tmp_path):
    """9.1 and 7.2 both still create encrypt.format=aes (and encryption=on) images."""
    ours, oracle = both
    for opts in (AES, "encryption=on,encrypt.key-secret=sec0"):
        mine = create(ours, tmp_path / "o.qcow2", opts=opts)
        theirs = create(oracle, tmp_path / "t.qcow2", opts=opts)
        assert mine.read_bytes() == theirs.read_bytes()
        cross(ours, oracle, mine, theirs)
        mine.unlink()
        theirs.unlink()


def test_create_messages_match(both, tmp_path):
    for o in ["encrypt.format=luks", "encrypt.key-secret=sec0", "encrypt.format=foo",
              LUKS + ",encrypt.cipher-alg=foo", LUKS + ",encrypt.cipher-mode=foo",
              LUKS + ",encrypt.ivgen-alg=foo", LUKS + ",encrypt.hash-alg=foo",
              LUKS + ",encrypt.ivgen-hash-alg=foo", LUKS + ",encrypt.iter-time=abc",
              LUKS + ",encrypt.cipher-alg=des", "encrypt.format=luks,encrypt.key-secret=nope",
              AES + ",encrypt.cipher-alg=aes-128", "encryption=on," + LUKS,
              "encryption=on"]:
        res = [retry_cpu(t, "create", "-q", "-f", "qcow2", *OBJ, "-o", o,
                     str(tmp_path / f"x{i}.qcow2"), "1M") for i, t in enumerate(both)]
        assert (res[0].rc, res[0].err) == (res[1].rc, res[1].err.replace("x1", "x0")), o
        assert res[0].rc == 1


def test_info_matches_qemu(both, tmp_path):
    """9.1 prints "detached header: false" in the encrypt block (7.2 has no such line)."""
    ours, oracle = both
    img = create(oracle, tmp_path / "q.qcow2", opts=LUKS + ",encrypt.ivgen-alg=essiv")
    o, t = ours.img("info", str(img)), oracle.img("info", str(img))
    assert o.rc == t.rc == 0
    mine = strip_child(o.out).replace("        detached header: false\n", "")
    assert mine == t.out
    assert "encrypted: yes\n" in o.out and "        detached header: false\n" in o.out
    oj = json.loads(ours.img("info", "--output=json", str(img)).out)
    tj = json.loads(oracle.img("info", "--output=json", str(img)).out)
    oj.pop("children", None)
    assert oj["format-specific"]["data"]["encrypt"].pop("detached-header") is False
    assert oj == tj
    aes = create(ours, tmp_path / "a.qcow2", opts=AES)
    o, t = ours.img("info", str(aes)), oracle.img("info", str(aes))
    assert strip_child(o.out) == t.out and "        format: aes\n" in o.out


@pytest.mark.parametrize("case", ["wrong-password", "missing-secret", "no-key-secret",
                                  "format-mismatch", "aes-no-key-secret", "aes-mismatch"])
def test_open_errors_match(both, tmp_path, case):
    ours, oracle = both
    img = create(oracle, tmp_path / "q.qcow2", opts=AES if case.startswith("aes") else LUKS)
    argv = {
        "wrong-password": ["--object", "secret,id=sec0,data=wrong", *image_opts(img)],
        "missing-secret": image_opts(img),
        "no-key-secret": [str(img)],
        "format-mismatch": [*OBJ, "--image-opts",
                            f"driver=qcow2,file.filename={img},encrypt.key-secret=sec0,"
                            "encrypt.format=aes"],
        "aes-no-key-secret": [str(img)],
        "aes-mismatch": [*OBJ, "--image-opts",
                         f"driver=qcow2,file.filename={img},encrypt.key-secret=sec0,"
                         "encrypt.format=luks"],
    }[case]
    res = [t.img("convert", *argv, "-O", "raw", str(tmp_path / "x.raw")) for t in both]
    assert (res[0].rc, res[0].err) == (res[1].rc, res[1].err)
    assert res[0].rc == 1
    expect = {"wrong-password": "Invalid password, cannot unlock any keyslot",
              "missing-secret": "No secret with id 'sec0'",
              "no-key-secret": "Parameter 'encrypt.key-secret' is required for cipher",
              "format-mismatch": "Header reported 'luks' encryption format but options "
                                 "specify 'aes'",
              "aes-no-key-secret": "Parameter 'encrypt.key-secret' is required for cipher",
              "aes-mismatch": "Header reported 'aes' encryption format but options "
                              "specify 'luks'"}[case]
    assert expect in res[0].err
    r = ours.io(*argv, "-c", "read 0 512")
    assert r.rc == 1 and expect in r.err


# (offset, value, struct format) patches of the crypto header extension at 0x70 and the
# crypt_method field; each must give qemu-img's message (7.2 and 9.1 agree).
HOSTILE = {
    "offset-unaligned": (0x78, 0x40001, ">Q"),
    "offset-past-eof": (0x78, 0x1000000, ">Q"),
    "offset-huge": (0x78, 0xfffffffffff0000, ">Q"),
    "offset-0": (0x78, 0, ">Q"),
    "offset-on-l1": (0x78, 0x30000, ">Q"),
    "length-short": (0x80, 0x10, ">Q"),
    "length-cuts-key-material": (0x80, 0x1000 + 592, ">Q"),
    "ext-size": (0x74, 8, ">I"),
    "method-aes-with-ext": (0x20, 1, ">I"),
    "method-3": (0x20, 3, ">I"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_crypto_extension(both, tmp_path, case):
    ours, oracle = both
    img = create(oracle, tmp_path / "q.qcow2")
    data = bytearray(img.read_bytes())
    off, val, fmt = HOSTILE[case]
    struct.pack_into(fmt, data, off, val)
    img.write_bytes(bytes(data))
    for argv in (["info", str(img)],
                 ["convert", *OBJ, "-O", "raw", *image_opts(img), str(tmp_path / "x.raw")]):
        res = [t.img(*argv, timeout=60) for t in both]
        assert (res[0].rc, res[0].err) == (res[1].rc, res[1].err), argv[0]
    assert res[0].rc == 1


def test_missing_crypto_extension(ours, tmp_path):
    """A LUKS image without the extension: 7.2 and 9.1 crash (SIGSEGV) in info; open refuses."""
    img = create(ours, tmp_path / "q.qcow2")
    data = bytearray(img.read_bytes())
    struct.pack_into(">I", data, 0x70, 0x12345678)  # the extension becomes an unknown one
    img.write_bytes(bytes(data))
    for argv in (["info", str(img)], ["convert", *OBJ, "-O", "raw", *image_opts(img),
                                      str(tmp_path / "x.raw")]):
        r = ours.img(*argv)
        assert r.rc == 1 and r.err.endswith("Missing CRYPTO header for crypt method 2\n"), r


def test_convert_to_and_from_encrypted(both, tmp_path):
    """convert -O qcow2 -o encrypt.* opens the new target with the key (qemu-img carries
    *key-secret over); -n with --target-image-opts; compare across encrypted images."""
    ours, oracle = both
    src = tmp_path / "s.raw"
    src.write_bytes(b"\x11" * 65536 + b"\0" * (1 << 20) + b"\x22" * 4096 + b"\x33" * 512)
    out = []
    for tool, name in ((ours, "o.qcow2"), (oracle, "t.qcow2")):
        r = retry_cpu(tool, "convert", *OBJ, "-O", "qcow2", "-o", LUKS, str(src),
                  str(tmp_path / name))
        assert r.rc == 0, r
        out.append(tmp_path / name)
    assert out[0].stat().st_size == out[1].stat().st_size
    check_clean(oracle, out[0])
    for tool in both:
        r = tool.img("compare", *OBJ, "--image-opts", f"driver=raw,file.filename={src}",
                     f"driver=qcow2,encrypt.key-secret=sec0,file.filename={out[0]}")
        assert r.rc == 0 and r.out == "Images are identical.\n", r
    assert to_raw(ours, out[1], tmp_path / "a.raw") == src.read_bytes()
    # -n into an existing AES image through --target-image-opts, then qcow2 luks -> aes.
    aes = create(oracle, tmp_path / "a.qcow2", size=str(src.stat().st_size), opts=AES)
    r = ours.img("convert", "-n", *OBJ, "--image-opts",
                 f"driver=qcow2,encrypt.key-secret=sec0,file.filename={out[1]}",
                 "--target-image-opts", f"driver=qcow2,encrypt.key-secret=sec0,file.filename={aes}")
    assert r.rc == 0, r
    assert to_raw(oracle, aes, tmp_path / "b.raw") == src.read_bytes()
    check_clean(oracle, aes)


def test_convert_compressed_encrypted_refused(both, tmp_path):
    src = tmp_path / "s.raw"
    src.write_bytes(b"\x11" * 65536)
    for o in (LUKS, "encryption=on,encrypt.key-secret=sec0"):
        res = [t.img("convert", "-c", *OBJ, "-O", "qcow2", "-o", o, str(src),
                     str(tmp_path / "x.qcow2")) for t in both]
        assert (res[0].rc, res[0].err) == (res[1].rc, res[1].err)
        assert "Compression and encryption not supported at the same time" in res[0].err


def test_compressed_write_stays_plain(both, tmp_path):
    """qemu-io write -c on an encrypted image stores the compressed cluster unencrypted (QEMU
    does not encrypt compressed clusters); both sides read what the other wrote."""
    ours, oracle = both
    img = create(ours, tmp_path / "o.qcow2")
    io(ours, img, "write -c -P 0x61 0 64k")
    io(oracle, img, "write -c -P 0x62 64k 64k")
    io(oracle, img, "read -P 0x61 0 64k")
    io(ours, img, "read -P 0x62 64k 64k")
    assert b"\x61" * 4096 not in img.read_bytes()  # compressed, not plain


@pytest.mark.parametrize("opts", [LUKS, AES])
def test_map_shows_no_offsets(both, tmp_path, opts):
    """No host offsets for encrypted clusters (human: qemu-img's "File contains external,
    encrypted or compressed clusters."), compressed (unencrypted) ones included."""
    ours, oracle = both
    img = create(oracle, tmp_path / "q.qcow2", opts=opts)
    io(oracle, img, "write -P 1 0 64k", "write -z 128k 64k", "write -P 2 512k 4k",
       "write -c -P 3 640k 64k")
    for fmt in ("human", "json"):
        res = [t.img("map", "--output=" + fmt, *OBJ, *image_opts(img)) for t in both]
        # 9.1 adds "compressed" to each JSON entry; 7.2 has no such member.
        res[0].out = res[0].out.replace(', "compressed": false', "").replace(
            ', "compressed": true', "")
        assert (res[0].rc, res[0].out, res[0].err) == (res[1].rc, res[1].out, res[1].err)
    r = ours.img("map", "--output=json", *OBJ, *image_opts(img))
    assert '"offset"' not in r.out and '"data": true' in r.out


@pytest.mark.parametrize("opts", [LUKS, LUKS + ",encrypt.cipher-alg=aes-128", AES,
                                  "encryption=on"])
def test_measure(both, tmp_path, opts):
    src = tmp_path / "s.raw"
    src.write_bytes(b"\x11" * 100000)
    for argv in (["--size", "1G"], [str(src)]):
        res = [retry_cpu(t, "measure", *OBJ, "-O", "qcow2", "-o", opts, *argv) for t in both]
        assert (res[0].rc, res[0].out, res[0].err) == (res[1].rc, res[1].out, res[1].err)
        assert res[0].rc == 0
    res = [retry_cpu(t, "measure", "-O", "qcow2", "-o", "encrypt.format=luks", "--size", "1G")
           for t in both]
    assert (res[0].rc, res[0].err) == (res[1].rc, res[1].err) and res[0].rc == 1


def test_check_needs_key_and_counts_luks_clusters(both, tmp_path):
    ours, oracle = both
    img = create(oracle, tmp_path / "q.qcow2")
    io(oracle, img, "write -P 1 0 64k")
    res = [t.img("check", *OBJ, *image_opts(img)) for t in both]
    assert (res[0].rc, res[0].out, res[0].err) == (res[1].rc, res[1].out, res[1].err)
    assert res[0].rc == 0
    res = [t.img("check", str(img)) for t in both]
    assert (res[0].rc, res[0].err) == (res[1].rc, res[1].err) and res[0].rc == 1


AMEND_STEPS = [
    "encrypt.state=active", "encrypt.state=inactive,encrypt.iter-time=10",
    "encrypt.state=inactive,encrypt.new-secret=sec1", "encrypt.state=inactive",
    "encrypt.state=inactive,encrypt.old-secret=sec1", "encrypt.state=inactive,encrypt.keyslot=3",
    "encrypt.state=active,encrypt.new-secret=sec1,encrypt.keyslot=9", "encrypt.state=foo",
    "encrypt.keyslot=1", "encrypt.state=active,encrypt.new-secret=nosec",
    "encrypt.state=inactive,encrypt.keyslot=0", "encrypt.state=inactive,encrypt.old-secret=sec0",
    "encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10",
    "encrypt.state=active,encrypt.new-secret=sec1,encrypt.keyslot=1,encrypt.iter-time=10",
    "encrypt.state=inactive,encrypt.keyslot=1,encrypt.old-secret=sec0",
    "encrypt.state=inactive,encrypt.old-secret=sec1",
    "encrypt.format=luks", "encrypt.cipher-alg=aes-128",
]


def test_amend_keyslots_match(both, tmp_path):
    """Each step's message and exit code as qemu-img's, on copies of one image that each tool
    amends in turn; --force overwrites an active slot and erases the last one."""
    ours, oracle = both
    base = create(ours, tmp_path / "q.qcow2")
    imgs = []
    for name in ("o.qcow2", "t.qcow2"):
        shutil.copy(base, tmp_path / name)
        imgs.append(tmp_path / name)
    for step in AMEND_STEPS:
        res = [retry_cpu(t, "amend", *OBJ2, "-o", step, *image_opts(img))
               for t, img in zip(both, imgs)]
        assert (res[0].rc, res[0].err) == (res[1].rc, res[1].err), step
    check_clean(oracle, imgs[0])
    r = ours.img("amend", "--force", *OBJ2, "-o", "encrypt.state=active,encrypt.new-secret=sec1,"
                 "encrypt.keyslot=0,encrypt.iter-time=10", *image_opts(imgs[0]))
    assert r.rc == 0, r
    assert oracle.io(*OBJ2, *image_opts(imgs[0]), "-c", "read 0 4k").rc == 1
    io(oracle, imgs[0], "write -P 0x3 0 4k", "read -P 0x3 0 4k", objs=OBJ2, secret="sec1")
    r = ours.img("amend", "--force", *OBJ2, "-o", "encrypt.state=inactive,encrypt.old-secret=sec1",
                 *image_opts(imgs[0], "sec1"))
    assert r.rc == 0, r
    assert oracle.img("info", str(imgs[0])).out.count("active: true") == 0


def test_amend_refusals(both, tmp_path):
    ours, oracle = both
    aes = create(oracle, tmp_path / "a.qcow2", opts=AES)
    plain = tmp_path / "p.qcow2"
    assert oracle.img("create", "-q", "-f", "qcow2", str(plain), "1M").rc == 0
    for argv in (image_opts(aes), [str(plain)]):
        res = [t.img("amend", *OBJ2, "-o", "encrypt.state=inactive,encrypt.keyslot=0", *argv)
               for t in both]
        assert (res[0].rc, res[0].err) == (res[1].rc, res[1].err) and res[0].rc == 1


def chain(tool, tmp_path):
    """base <- mid <- top, each qcow2 LUKS under sec0, with data on every layer."""
    b, m, t = tmp_path / "b.qcow2", tmp_path / "m.qcow2", tmp_path / "t.qcow2"
    create(tool, b)
    assert retry_cpu(tool, "create", "-q", "-f", "qcow2", *OBJ, "-o", LUKS, "-b", str(b), "-F",
                 "qcow2", str(m)).rc == 0
    assert retry_cpu(tool, "create", "-q", "-f", "qcow2", *OBJ, "-o", LUKS, "-b", str(m), "-F",
                 "qcow2", str(t)).rc == 0
    io(tool, b, "write -P 0x0b 0 1M")
    r = tool.io(*OBJ, "--image-opts", f"driver=qcow2,file.filename={m},encrypt.key-secret=sec0,"
                "backing.encrypt.key-secret=sec0", "-c", "write -P 0x0d 256k 128k")
    assert r.rc == 0, r
    r = tool.io(*OBJ, "--image-opts", chain_opts(t), "-c", "write -P 0x70 0 64k",
                "-c", "write -P 0x71 300k 8k")
    assert r.rc == 0, r
    return b, m, t


def chain_opts(top):
    return (f"driver=qcow2,file.filename={top},encrypt.key-secret=sec0,"
            "backing.encrypt.key-secret=sec0,backing.backing.encrypt.key-secret=sec0")


@pytest.mark.parametrize("drop", [False, True])
def test_commit_through_encrypted_chain(both, tmp_path, drop):
    """commit reopens the lower layers read-write with the secrets the top's backing.*
    options give them; the result reads as qemu-img's commit leaves it."""
    ours, oracle = both
    raws = []
    for i, tool in enumerate(both):
        d = tmp_path / f"side{i}"
        d.mkdir()
        b, m, t = chain(oracle, d)
        r = tool.img("commit", *OBJ, *(["-d"] if drop else []), "--image-opts", chain_opts(t))
        assert r.rc == 0 and r.out == "Image committed.\n", r
        r = oracle.img("check", *OBJ, "--image-opts",
                       f"driver=qcow2,file.filename={m},encrypt.key-secret=sec0,"
                       "backing.encrypt.key-secret=sec0")
        assert r.rc == 0 and "No errors were found" in r.out, r
        out = []
        for img, opts in ((t, chain_opts(t)),
                          (m, f"driver=qcow2,file.filename={m},encrypt.key-secret=sec0,"
                              "backing.encrypt.key-secret=sec0")):
            r = oracle.img("convert", *OBJ, "-O", "raw", "--image-opts", opts, str(d / "x.raw"))
            assert r.rc == 0, r
            out.append((d / "x.raw").read_bytes())
        raws.append(out)
    assert raws[0] == raws[1]
    assert raws[0][1][:65536] == b"\x70" * 65536  # the top's data is in mid now


def test_commit_without_lower_secret_fails_as_qemu(both, tmp_path):
    ours, oracle = both
    res = []
    for i, tool in enumerate(both):
        d = tmp_path / f"side{i}"
        d.mkdir()
        b, m, t = chain(oracle, d)
        res.append(tool.img("commit", *OBJ, *image_opts(t)))
    assert (res[0].rc, res[0].err.replace("/side0/", "/x/")) == \
        (res[1].rc, res[1].err.replace("/side1/", "/x/"))
    assert res[0].rc == 1 and "Parameter 'encrypt.key-secret' is required" in res[0].err


def test_rebase_encrypted(both, tmp_path):
    """Safe rebase of an encrypted top onto a plain backing reads the old chain with its
    secrets; onto an encrypted one it fails as qemu-img's (the new backing is opened with
    no options, so without a key)."""
    ours, oracle = both
    raws = []
    for i, tool in enumerate(both):
        d = tmp_path / f"side{i}"
        d.mkdir()
        b, m, t = chain(oracle, d)
        plain = d / "p.qcow2"
        assert oracle.img("create", "-q", "-f", "qcow2", str(plain), "1M").rc == 0
        r = tool.img("rebase", *OBJ, "--image-opts", chain_opts(t), "-b", str(b), "-F", "qcow2")
        assert r.rc == 1 and r.err.endswith(
            f"Could not open new backing file '{b}': Parameter 'encrypt.key-secret' is "
            "required for cipher\n"), r
        r = tool.img("rebase", *OBJ, "--image-opts", chain_opts(t), "-b", str(plain), "-F",
                     "qcow2")
        assert r.rc == 0, r
        r = oracle.img("convert", *OBJ, "-O", "raw", *image_opts(t), str(d / "x.raw"))
        assert r.rc == 0, r
        raws.append((d / "x.raw").read_bytes())
        check_clean(oracle, t)
    assert raws[0] == raws[1]
    assert raws[0][256 * 1024:300 * 1024] == b"\x0d" * (44 * 1024)


def test_dd_from_encrypted(both, tmp_path):
    """dd reads an encrypted image named by --image-opts or json: (--object defines the key);
    without the key it fails as qemu-img's."""
    ours, oracle = both
    img = create(oracle, tmp_path / "q.qcow2")
    io(oracle, img, *WRITES)
    js = ('json:{"driver": "qcow2", "file": {"filename": "%s"}, '
          '"encrypt": {"key-secret": "sec0"}}' % img)
    for argv in (["--image-opts", f"if=driver=qcow2,file.filename={img},encrypt.key-secret=sec0"],
                 [f"if={js}"], ["skip=3", "count=5", f"if={js}"]):
        out = []
        for i, tool in enumerate(both):
            dst = tmp_path / f"dd{i}.raw"
            r = tool.img("dd", *OBJ, "-O", "raw", "bs=64k", *argv, f"of={dst}")
            assert r.rc == 0, r
            out.append(dst.read_bytes())
            dst.unlink()
        assert out[0] == out[1]
    res = [t.img("dd", "-O", "raw", f"if={img}", f"of={tmp_path / 'x.raw'}") for t in both]
    assert (res[0].rc, res[0].err) == (res[1].rc, res[1].err) and res[0].rc == 1


def test_bench_cannot_unlock_as_qemu(both, tmp_path):
    """qemu-img bench has no --object (7.2 and 9.1): an encrypted image fails to open, with
    qemu-img's message, however the key is named."""
    img = create(both[1], tmp_path / "q.qcow2")
    js = ('json:{"driver": "qcow2", "file": {"filename": "%s"}, '
          '"encrypt": {"key-secret": "sec0"}}' % img)
    for argv in ([str(img)], [js], [*OBJ, str(img)]):
        res = [t.img("bench", "-c", "10", *argv) for t in both]
        assert (res[0].rc, res[0].err) == (res[1].rc, res[1].err), argv
        assert res[0].rc == 1


def test_compare_two_encrypted_images(both, tmp_path):
    """compare with a different secret on each side (--object twice, --image-opts)."""
    ours, oracle = both
    a = create(oracle, tmp_path / "a.qcow2")
    b = tmp_path / "b.qcow2"
    assert retry_cpu(oracle, "create", "-q", "-f", "qcow2", *OBJ2, "-o",
                 LUKS.replace("sec0", "sec1") + ",encrypt.cipher-alg=aes-128", str(b),
                 "1M").rc == 0
    io(oracle, a, *WRITES)
    io(oracle, b, *WRITES, objs=OBJ2, secret="sec1")
    args = [*OBJ2, "--image-opts", f"driver=qcow2,file.filename={a},encrypt.key-secret=sec0",
            f"driver=qcow2,file.filename={b},encrypt.key-secret=sec1"]
    res = [t.img("compare", *args) for t in both]
    assert (res[0].rc, res[0].out) == (res[1].rc, res[1].out) == (0, "Images are identical.\n")
    io(oracle, b, "write -P 0x99 700k 512", objs=OBJ2, secret="sec1")
    res = [t.img("compare", *args) for t in both]
    assert (res[0].rc, res[0].out) == (res[1].rc, res[1].out)
    assert res[0].rc == 1 and "Content mismatch at offset 716800!" in res[0].out


def test_huge_iteration_count_in_qcow2_refused(ours, tmp_path):
    """The LUKS header inside qcow2 gets the same PBKDF2 cap as a luks volume."""
    img = create(ours, tmp_path / "o.qcow2")
    data = bytearray(img.read_bytes())
    luks = struct.unpack(">Q", data[0x78:0x80])[0]
    data[luks + 208 + 4:luks + 208 + 8] = struct.pack(">I", 0xffffffff)
    img.write_bytes(bytes(data))
    r = ours.img("convert", *OBJ, "-O", "raw", *image_opts(img), str(tmp_path / "x.raw"),
                 timeout=20)
    assert r.rc == 1 and r.err.endswith(
        "Keyslot 0 iteration count 4294967295 is too large (at most 67108864)\n"), r
