# SPDX-License-Identifier: MIT
"""Checks shared by the read-only format tests (test_cloop.py, test_bochs.py, test_dmg.py):
info, map and convert against the oracle (Debian's qemu-img 7.2), and qemu's refusals of
writes. `clean` filters the oracle's stderr (7.2's missing-module lines for dmg).

9.1 vs 7.2: 9.1's info adds the file child (human "Child node '/file':", JSON "children")
and its map JSON adds "compressed"; both are dropped from ours before comparing.
"""
import json

from conftest import strip_child


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def same_info(ours, oracle, img, clean=lambda e: e):
    a, b = ours.img("info", str(img)), oracle.img("info", str(img))
    assert (a.rc, strip_child(a.out), a.err) == (b.rc, b.out, clean(b.err))
    a = json.loads(ours.img("info", "--output=json", str(img)).out)
    assert a.pop("children")[0]["name"] == "file"
    assert a == json.loads(oracle.img("info", "--output=json", str(img)).out)


def same_map(ours, oracle, img, clean=lambda e: e):
    a = json.loads(ours.img("map", "--output=json", str(img)).out)
    assert [e.pop("compressed") for e in a] == [False] * len(a)
    assert a == json.loads(oracle.img("map", "--output=json", str(img)).out)
    # No host offsets: qemu's human map refuses such images, and so must we.
    a, b = ours.img("map", str(img)), oracle.img("map", str(img))
    assert (a.rc, a.out, a.err) == (b.rc, b.out, clean(b.err))


def same_raw(ours, oracle, img, tmp_path, expect=None, clean=lambda e: e):
    """Both convert to the same raw bytes (expect them if given); qimg compares identical."""
    a, b = tmp_path / "ours.raw", tmp_path / "oracle.raw"
    ra = ours.img("convert", "-O", "raw", str(img), str(a))
    rb = oracle.img("convert", "-O", "raw", str(img), str(b))
    assert (ra.rc, ra.out, ra.err) == (rb.rc, rb.out, clean(rb.err)) and ra.rc == 0, (ra, rb)
    assert a.read_bytes() == b.read_bytes()
    if expect is not None:
        assert a.read_bytes() == expect
    r = ours.img("compare", str(img), str(b))
    assert r.rc == 0 and r.out == "Images are identical.\n", r
    return a.read_bytes()


def writes_are_refused(ours, oracle, img, clean=lambda e: e):
    """Every command that opens the image for writing fails with qemu's message, check
    says the format has no checks (exit 63), and the file is untouched."""
    before = img.read_bytes()
    for tool, argv in (("io", ["-c", "write 0 512", str(img)]),
                       ("img", ["resize", str(img), "2M"]),
                       ("img", ["amend", "-o", "size=1M", str(img)]),
                       ("img", ["snapshot", "-c", "s", str(img)]),
                       ("img", ["rebase", "-u", "-b", "", str(img)])):
        a = getattr(ours, tool)(*argv)
        b = getattr(oracle, tool)(*argv)
        assert (a.rc, a.out, a.err) == (b.rc, b.out, clean(b.err)), argv
        assert "Image is read-only" in a.err
    a, b = ours.img("check", str(img)), oracle.img("check", str(img))
    assert (a.rc, a.err) == (b.rc, clean(b.err)) == (
        63, "qemu-img: This image format does not support checks\n")
    assert img.read_bytes() == before
