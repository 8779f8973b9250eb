# SPDX-License-Identifier: MIT
"""http/https (curl protocols) against lighttpd on loopback (TLS with a throwaway CA) and
python's http.server (no Range support), differential against Debian's qemu-img 7.2 with
qemu-block-extra's curl driver.

9.1 differences named here: human info adds "Child node '/file':" (strip_child) and
JSON info adds "children" (compared apart).
"""
import json
import re
import socket
import threading

import pytest

from conftest import strip_child
from servers import LOOPBACK, servers  # noqa: F401  (fixture)

MiB = 1 << 20


def without_glib_noise(err):
    """QEMU's curl driver trips GLib assertions on some error paths (it frees a hash table
    it never made); the messages are QEMU's bug, not behaviour to copy."""
    return "".join(l for l in err.splitlines(keepends=True) if not l.startswith("qemu-img: GLib: "))


def same(a, b):
    assert (a.rc, a.out, a.err) == (b.rc, b.out, without_glib_noise(b.err))


@pytest.fixture
def site(tmp_path, oracle):
    """A document root holding a qcow2 image (data at 1M..2M and 40M..41M, 64M virtual)
    and the same disk as raw."""
    www = tmp_path / "www"
    www.mkdir()
    q = www / "d.qcow2"
    assert oracle.img("create", "-f", "qcow2", q, "64M").rc == 0
    assert oracle.io("-c", "write -P 3 1M 1M", "-c", "write -P 4 40M 1M", q).rc == 0
    assert oracle.img("convert", "-O", "raw", q, www / "d.raw").rc == 0
    return www


def test_info_map_compare_over_http(both, servers, site):
    ours, oracle = both
    base = servers.lighttpd(site).url
    for name in ("d.qcow2", "d.raw"):
        url = f"{base}/{name}"
        a, b = ours.img("info", url), oracle.img("info", url)
        assert a.rc == b.rc == 0 and strip_child(a.out) == b.out
        assert f"Child node '/file':\n    filename: {url}\n    protocol type: http\n" in a.out
        same(ours.img("map", url), oracle.img("map", url))
        same(ours.img("compare", url, site / "d.raw"), oracle.img("compare", url, site / "d.raw"))
    a = ours.img("info", "--output=json", f"{base}/d.qcow2")
    b = oracle.img("info", "--output=json", f"{base}/d.qcow2")
    ja, jb = json.loads(a.out), json.loads(b.out)
    assert ja.pop("children")[0]["info"]["format"] == "http"
    assert ja == jb


def test_convert_from_http(both, servers, site, tmp_path):
    ours, oracle = both
    url = servers.lighttpd(site).url + "/d.qcow2"
    r = ours.img("convert", "-O", "qcow2", url, tmp_path / "out.qcow2")
    assert r.rc == 0, r
    assert oracle.img("compare", tmp_path / "out.qcow2", site / "d.raw").rc == 0
    assert oracle.img("check", tmp_path / "out.qcow2").rc == 0
    # Unallocated clusters were found in the qcow2 metadata, not copied.
    m = oracle.img("map", "--output=json", tmp_path / "out.qcow2")
    assert len([e for e in json.loads(m.out) if e["data"]]) == 2


def test_info_reads_only_what_it_needs(ours, servers, site, tmp_path):
    """qimg info https://.../disk.qcow2 fetches the header and tables, not the image."""
    log = tmp_path / "access.log"
    url = servers.lighttpd(site, access_log=log).url + "/d.qcow2"
    r = ours.img("info", url)
    assert r.rc == 0, r
    servers.stop_all()
    sent = sum(int(l.split()[4]) for l in log.read_text().splitlines() if l.split()[4].isdigit())
    assert 0 < sent < 2 * MiB  # the file holds 2 MiB of data and more of metadata
    requests = log.read_text().splitlines()
    assert requests[0].startswith("HEAD /d.qcow2") and len(requests) < 10


def test_cookie_and_credentials_are_sent(both, servers, site, tmp_path):
    ours, oracle = both
    log = tmp_path / "access.log"
    base = servers.lighttpd(site, access_log=log).url
    args = ["info", "--object", "secret,id=pw,data=p", "--image-opts",
            f"driver=http,url={base}/d.raw,cookie=flavour=oat,username=u,password-secret=pw"]
    a = ours.img(*args)
    assert a.rc == 0, a
    # Named in JSON by its strong options, as QEMU names it.
    b = oracle.img(*args)
    assert a.out.splitlines()[0] == b.out.splitlines()[0]
    assert a.out.startswith('image: json:{') and '"cookie": "flavour=oat"' in a.out
    servers.stop_all()  # lighttpd writes its log out
    text = log.read_text()
    assert text.count("cookie=flavour=oat") >= 2  # ours and the oracle's requests
    assert text.count("auth=Basic dTpw") >= 2  # base64("u:p")


OPTS = ["sslverify=off", "readahead=64k", "timeout=10", "cookie=a=b", "readahead=1000",
        "timeout=-1", "timeout=100000", "timeout=abc", "cookie=x,cookie-secret=y", "username=u",
        "password-secret=nope", "proxy-username=p", "foo=1", "sslverify=maybe",
        "username=u,sslverify=off,cookie=c"]


@pytest.mark.parametrize("extra", OPTS)
def test_options_match_oracle(both, servers, site, extra):
    ours, oracle = both
    url = servers.lighttpd(site).url + "/d.raw"
    opts = f"driver=http,url={url},{extra}"
    same(ours.img("info", "--image-opts", opts), oracle.img("info", "--image-opts", opts))


def test_names_and_refusals_match_oracle(both, servers, site):
    ours, oracle = both
    base = servers.lighttpd(site).url
    norange = servers.python_http(site).url
    cases = [
        ["info", f"{base}/nonexistent"],  # 404
        ["info", f"{norange}/d.raw"],  # no Range support
        ["info", "--image-opts", "driver=http"],
        ["info", 'json:{"driver":"https","url":"%s/d.raw"}' % base],
        ["info", "--image-opts", f"driver=raw,file.driver=http,file.url={base}/d.raw,"
                                 "file.sslverify=off"],
        ["convert", "-n", "-O", "raw", "null-co://", f"{base}/d.raw"],  # read-only
    ]
    for args in cases:
        a, b = ours.img(*args), oracle.img(*args)
        a.out = strip_child(a.out)
        same(a, b)
        assert b.rc == 0 or b.err


def test_https(both, servers, site):
    ours, oracle = both
    base = servers.lighttpd(site, tls=True).url
    url = f"{base}/d.qcow2"
    # The throwaway CA is not trusted: refused, in the TLS library's words (both gnutls).
    a, b = ours.img("info", url), oracle.img("info", url)
    same(a, b)
    assert a.rc == 1 and "CURL: Error opening file:" in a.err
    opts = f"driver=qcow2,file.driver=https,file.url={url},file.sslverify=off"
    a, b = ours.img("info", "--image-opts", opts), oracle.img("info", "--image-opts", opts)
    assert a.rc == b.rc == 0 and strip_child(a.out) == b.out
    raw = f"driver=raw,file.filename={site / 'd.raw'}"
    same(ours.img("compare", "--image-opts", opts, raw),
         oracle.img("compare", "--image-opts", opts, raw))


def test_timeout(ours):
    """A server that accepts and never answers: timeout=1 ends the open after a second."""
    lsock = socket.socket()
    lsock.bind((LOOPBACK, 0))
    lsock.listen(1)
    held = []
    threading.Thread(target=lambda: held.append(lsock.accept()), daemon=True).start()
    url = f"http://{LOOPBACK}:{lsock.getsockname()[1]}/d.raw"
    r = ours.img("info", "--image-opts", f"driver=http,url={url},timeout=1", timeout=20)
    lsock.close()
    assert r.rc == 1
    assert re.fullmatch(r"qemu-img: Could not open 'driver=http,url=\S+,timeout=1': CURL: "
                        r"Error opening file: Operation timed out after \d+ milliseconds with "
                        r"0 bytes received\n", r.err), r.err
