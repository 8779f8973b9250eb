# SPDX-License-Identifier: MIT
"""The format contract: what every image format must do like qemu-img does.

A format joins by adding one entry to FORMATS (doc/adding-a-format.md): its
create variants, what of its header is random (masked before comparing
bytes), and the parts of the contract it is known to break, each with the
reason. Every test runs the same commands through qimg (as `qemu-img` /
`qemu-io`) and through the oracle (Debian's qemu-utils 7.2) and compares
outputs, exit codes and image contents; images we write must pass the
oracle's check and compare identical to the oracle's.

9.1 vs 7.2 differences normalised here: 9.1's map JSON adds "compressed",
its info adds the file child (human: "Child node '/file':", JSON:
"children"), and QEMU's automatic node names ("#block123") count nodes.
"""
import json
import re
from dataclasses import dataclass, field

import pytest

from conftest import strip_child

TIMING = re.compile(r"(\d+\.\d+ sec|\d+:\d\d:\d\d\.\d+) \([^)]*\)")  # 9.1 and 7.2 print h:mm:ss.ss past 1 s
MiB = 1 << 20


@dataclass
class Fmt:
    name: str
    variants: dict  # variant name -> create options (a list of argv words)
    size: str = "5M"  # virtual size of the images the tests create
    mask: tuple = ()  # (start, stop) byte ranges that are random at creation
    byte_exact: bool = True  # images from the same commands are byte-identical
    # "test" or "test:variant" -> why the format breaks that part of the contract today
    excluded: dict = field(default_factory=dict)


SCRIPTS_NAMES = ("write-read", "unaligned", "zero", "zero-unmap", "discard", "overwrite", "tail")

FORMATS = [
    Fmt("raw", {"default": []}),
    Fmt("qcow2", {"default": [], "4k": ["-o", "cluster_size=4k"], "v2": ["-o", "compat=0.10"],
                  "l2ext": ["-o", "extended_l2=on"]},
        excluded={
            "create-length": "qimg pads the new L1 table to a whole sector (a 5M image is "
                             "197120 bytes, qemu's 196616); the bytes before are identical",
            "truncations:4k": "an L2 table cut off by the end of the file: qemu reads the "
                              "missing part as zeroes, qimg says 'Could not read file metadata'",
        }),
    # qemu writes random image and modification UUIDs into the VDI header.
    Fmt("vdi", {"dynamic": [], "static": ["-o", "static=on"]}, size="5000000",
        mask=((0x188, 0x1A8),)),
    # qemu stamps the VHD footer (a copy at 0 on dynamic disks, and the last 512
    # bytes) with the time, a random UUID, and the checksum over both.
    Fmt("vpc", {"dynamic": [], "dynamic-force": ["-o", "force_size=on"]},
        mask=((24, 28), (64, 84), (-488, -484), (-448, -428)),
        excluded={"convert:dynamic": "without force_size the size rounds up to a CHS geometry (as qemu's does), so "
                       "back.raw is longer than src.raw; test_vpc.py covers it"}),
    Fmt("vpc", {"fixed": ["-o", "subformat=fixed"],
                "fixed-force": ["-o", "subformat=fixed,force_size=on"]},
        mask=((-488, -484), (-448, -428)),
        excluded={"convert:fixed": "without force_size the size rounds up to a CHS geometry (as qemu's does), so "
                       "back.raw is longer than src.raw; test_vpc.py covers it"}),
    # vhdx: creator "QEMU v<version>" (7.2 vs 9.1), random header sequence numbers and GUIDs,
    # page83 GUID; per 8 KiB log entry its checksum, random log GUID and the unused end of its
    # descriptor sector (qemu leaves stale heap bytes there, often earlier guest data).
    Fmt("vhdx", {"dynamic": [], "fixed": ["-o", "subformat=fixed"],
                 "nozero": ["-o", "block_state_zero=off,block_size=1M"]}, size="5000000",
        mask=((0x8, 0x208), (0x10004, 0x10030), (0x20004, 0x20030), (0x310010, 0x310020))
        + tuple(r for k in range(0x100000, 0x200000, 0x2000)
                for r in ((k + 4, k + 8), (k + 32, k + 48), (k + 0x60, k + 0x1000)))),
    Fmt("parallels", {"default": [], "64k": ["-o", "cluster_size=64k"]},
        excluded={
            "io:zero": "9.1 unmaps whole clusters on zero writes (7.2 writes zeroes as data): "
                       "test_parallels.py::test_discard_and_zero_free_clusters_as_9_1",
            "io:zero-unmap": "as io:zero (9.1 discards, 7.2 writes data)",
            "io:discard": "9.1 discards clusters, 7.2 ignores discard",
            "truncations": "9.1's check tests data_off and calls even unallocated entries of a "
                           "file shorter than a cluster outside the image (7.2 does neither): "
                           "test_parallels.py::test_truncated_check_as_9_1",
        }),
    Fmt("qcow", {"default": []}),
    # vmdk: qemu writes a random CID ("%x", so its length varies too) into the descriptor.
    Fmt("vmdk", {"monolithicSparse": [], "zeroed": ["-o", "zeroed_grain=on"]},
        mask=((0x200, 0x2A00),)),
    # Not byte-exact: descriptor files (CID length) and deflate output (qimg: zlib level 1).
    Fmt("vmdk", {"streamOptimized": ["-o", "subformat=streamOptimized"],
                 "twoGbMaxExtentSparse": ["-o", "subformat=twoGbMaxExtentSparse"],
                 "monolithicFlat": ["-o", "subformat=monolithicFlat"],
                 "twoGbMaxExtentFlat": ["-o", "subformat=twoGbMaxExtentFlat"]}, byte_exact=False,
        excluded={**{f"io:{s}:streamOptimized": "9.1 maps grains \"compressed\": true, 7.2 has "
                     "no such key (test_vmdk.py covers stream I/O)" for s in SCRIPTS_NAMES},
                  **{f"{t}:streamOptimized": "its script writes part of a grain, which qemu "
                     "refuses for streamOptimized (test_vmdk.py)" for t in
                     ("compare", "info", "resize", "truncations")}}),
    Fmt("qed", {"default": [], "4k": ["-o", "cluster_size=4k,table_size=2"]}),
]

CASES = [pytest.param(f, v, id=f"{f.name}-{v}") for f in FORMATS for v in f.variants]

SCRIPTS = {
    "write-read": ["write -P 0x11 0 64k", "write -P 0x22 1M 4k", "read -P 0x11 0 64k",
                   "read -P 0x22 1M 4k", "read -P 0 64k 4k"],
    "unaligned": ["write -P 3 1000 3000", "write -P 4 70000 1200000", "read -P 3 1000 3000",
                  "read -P 4 70000 1200000", "read -P 0 0 1000"],
    "zero": ["write -P 5 0 2M", "write -z 512k 64k", "write -z 3M 1M", "read -P 0 512k 64k",
             "read -P 5 0 512k"],
    "zero-unmap": ["write -P 6 0 2M", "write -z -u 1M 1M", "read -P 0 1M 1M", "read -P 6 0 1M"],
    "discard": ["write -P 7 0 2M", "discard 1M 1M", "read -P 7 0 1M"],
    "overwrite": ["write -P 8 0 1M", "write -P 9 4096 8192", "read -P 9 4096 8192",
                  "read -P 8 0 4096", "read -P 8 12288 4096"],
    "tail": ["write -P 10 4194304 805696", "read -P 10 4194304 805696"],
}


def excluded(fmt, test, variant=None):
    for key in (test, f"{test}:{variant}"):
        if key in fmt.excluded:
            pytest.skip(f"{fmt.name}: {fmt.excluded[key]}")


def masked(fmt, path):
    b = bytearray(path.read_bytes())
    for start, stop in fmt.mask:
        b[start:stop] = bytes(stop - start)
    return bytes(b)


def norm(text):
    text = text.replace(', "compressed": false', "")
    return re.sub(r"#block\d+", "#block", strip_child(text))


def same(a, b):
    assert (a.rc, norm(a.out), norm(a.err)) == (b.rc, b.out, re.sub(r"#block\d+", "#block", b.err))


def io_script(tool, fmt, image, script):
    args = ["-f", fmt.name]
    for c in script:
        args += ["-c", c]
    r = tool.io(*args, image)
    return r.rc, TIMING.sub("X", r.out), r.err


def create_pair(fmt, variant, ours, oracle):
    """a.img by us, b.img by the oracle, from the same command."""
    opts = fmt.variants[variant]
    a = ours.img("create", "-f", fmt.name, *opts, "a.img", fmt.size)
    b = oracle.img("create", "-f", fmt.name, *opts, "b.img", fmt.size)
    return a, b


def check_clean(oracle, fmt, image):
    r = oracle.img("check", "-f", fmt.name, image)
    if fmt.name in ("raw", "vpc", "qcow"):
        assert r.rc == 63  # "This image format does not support checks"
        return
    assert r.rc == 0 and r.out.startswith("No errors were found on the image.\n"), r


@pytest.mark.parametrize("fmt,variant", CASES)
def test_create(ours, oracle, tmp_path, fmt, variant):
    excluded(fmt, "create", variant)
    a, b = create_pair(fmt, variant, ours, oracle)
    assert (a.rc, a.out.replace("a.img", "X"), a.err) == (b.rc, b.out.replace("b.img", "X"), b.err)
    if fmt.byte_exact:
        a_bytes, b_bytes = masked(fmt, tmp_path / "a.img"), masked(fmt, tmp_path / "b.img")
        if "create-length" in fmt.excluded:  # known: only the zero padding at the end differs
            a_bytes, b_bytes = a_bytes.rstrip(b"\0"), b_bytes.rstrip(b"\0")
        assert a_bytes == b_bytes
    check_clean(oracle, fmt, "a.img")


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("fmt,variant", CASES)
def test_io_script(ours, oracle, tmp_path, fmt, variant, script):
    excluded(fmt, "io:" + script, variant)
    opts = fmt.variants[variant]
    for image in ("a.img", "b.img"):  # two creates keep the files sparse, as qemu made them
        assert oracle.img("create", "-q", "-f", fmt.name, *opts, image, fmt.size).rc == 0
    want = io_script(oracle, fmt, "a.img", SCRIPTS[script])
    got = io_script(ours, fmt, "b.img", SCRIPTS[script])
    assert got == want
    check_clean(oracle, fmt, "b.img")
    assert oracle.img("compare", "-f", fmt.name, "-F", fmt.name, "a.img", "b.img").rc == 0
    if fmt.byte_exact:
        assert masked(fmt, tmp_path / "a.img") == masked(fmt, tmp_path / "b.img")
    for args in (["map", "--output=json"], ["map"]):
        a = ours.img(*args, "-f", fmt.name, "b.img")
        a.out = re.sub(r"\bb(-\w+)?\.img", r"a\1.img", a.out)  # also extents (b-flat.img)
        same(a, oracle.img(*args, "-f", fmt.name, "a.img"))


def source_raw(tmp_path):
    data = bytearray(5 * MiB)
    data[100:70000] = b"\x5a" * 69900
    data[2 * MiB:2 * MiB + 4096] = b"\xa5" * 4096
    data[5 * MiB - 512:] = b"\x01" * 512
    (tmp_path / "src.raw").write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("fmt,variant", CASES)
def test_convert_both_ways(ours, oracle, tmp_path, fmt, variant):
    excluded(fmt, "convert", variant)
    data = source_raw(tmp_path)
    opts = fmt.variants[variant]
    a = ours.img("convert", "-O", fmt.name, *opts, "src.raw", "a.img")
    b = oracle.img("convert", "-O", fmt.name, *opts, "src.raw", "b.img")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    check_clean(oracle, fmt, "a.img")
    if fmt.byte_exact:
        assert masked(fmt, tmp_path / "a.img") == masked(fmt, tmp_path / "b.img")
    same(ours.img("compare", "-f", fmt.name, "-F", "raw", "a.img", "src.raw"),
         oracle.img("compare", "-f", fmt.name, "-F", "raw", "a.img", "src.raw"))
    same(ours.img("compare", "-f", fmt.name, "-F", fmt.name, "a.img", "b.img"),
         oracle.img("compare", "-f", fmt.name, "-F", fmt.name, "a.img", "b.img"))
    assert ours.img("convert", "-f", fmt.name, "-O", "raw", "b.img", "back.raw").rc == 0
    assert (tmp_path / "back.raw").read_bytes() == data


@pytest.mark.parametrize("fmt,variant", CASES)
def test_compare_differs_like_oracle(ours, oracle, tmp_path, fmt, variant):
    excluded(fmt, "compare", variant)
    assert create_pair(fmt, variant, ours, oracle)[0].rc == 0
    assert ours.io("-f", fmt.name, "-c", "write -P 1 3M 512", "a.img").rc == 0
    for args in (["compare"], ["compare", "-s"], ["compare", "-q"]):
        same(ours.img(*args, "a.img", "b.img"), oracle.img(*args, "a.img", "b.img"))


@pytest.mark.parametrize("fmt,variant", CASES)
def test_check_and_info(ours, oracle, tmp_path, fmt, variant):
    excluded(fmt, "info", variant)
    assert oracle.img("create", "-q", "-f", fmt.name, *fmt.variants[variant], "a.img", fmt.size).rc == 0
    assert oracle.io("-f", fmt.name, "-c", "write -P 2 1M 100k", "a.img").rc == 0
    for args in (["check"], ["check", "--output=json"], ["info"]):
        same(ours.img(*args, "-f", fmt.name, "a.img"), oracle.img(*args, "-f", fmt.name, "a.img"))
    a = json.loads(ours.img("info", "--output=json", "a.img").out)
    b = json.loads(oracle.img("info", "--output=json", "a.img").out)
    assert a.pop("children")[-1]["name"] == "file"  # after vmdk's "extents.N"
    a.pop("actual-size", None), b.pop("actual-size", None)  # the filesystem's business
    assert a == b


RESIZES = [["+1M"], ["16M"], ["--shrink", "4M"], ["--shrink", "1M"], ["1"]]


@pytest.mark.parametrize("args", RESIZES, ids=lambda a: "_".join(a))
@pytest.mark.parametrize("fmt,variant", CASES)
def test_resize(ours, oracle, tmp_path, fmt, variant, args):
    """Same result or the same refusal (vdi: "Image format driver does not support resize")."""
    excluded(fmt, "resize", variant)
    assert oracle.img("create", "-q", "-f", fmt.name, *fmt.variants[variant], "a.img", fmt.size).rc == 0
    assert oracle.img("create", "-q", "-f", fmt.name, *fmt.variants[variant], "b.img", fmt.size).rc == 0
    for image in ("a.img", "b.img"):
        assert oracle.io("-f", fmt.name, "-c", "write -P 3 512k 1M", image).rc == 0
    same(ours.img("resize", "-f", fmt.name, "b.img", *args),
         oracle.img("resize", "-f", fmt.name, "a.img", *args))
    same(ours.img("compare", "-f", fmt.name, "-F", fmt.name, "b.img", "a.img"),
         oracle.img("compare", "-f", fmt.name, "-F", fmt.name, "b.img", "a.img"))
    check_clean(oracle, fmt, "b.img")


def truncation_points(length):
    return sorted({0, 1, 64, 511, 512, 4096, length // 2, length - 1} - {length})


@pytest.mark.parametrize("fmt,variant", CASES)
def test_hostile_truncations(ours, oracle, tmp_path, fmt, variant):
    """A cut-off image (an interrupted download): the same answers as qemu-img, no crash."""
    excluded(fmt, "truncations", variant)
    assert oracle.img("create", "-q", "-f", fmt.name, *fmt.variants[variant], "a.img", fmt.size).rc == 0
    assert oracle.io("-f", fmt.name, "-c", "write -P 4 0 1M", "-c", "write -P 5 3M 4k", "a.img").rc == 0
    whole = (tmp_path / "a.img").read_bytes()
    for cut in truncation_points(len(whole)):
        (tmp_path / "t.img").write_bytes(whole[:cut])
        for args in (["info"], ["check"], ["map", "--output=json"]):
            x = ours.img(*args, "-f", fmt.name, "t.img")
            y = oracle.img(*args, "-f", fmt.name, "t.img")
            assert x.rc >= 0, (cut, args)  # never killed by a signal
            assert (x.rc, norm(x.out), norm(x.err)) == (y.rc, y.out, y.err), (cut, args)
