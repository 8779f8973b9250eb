# SPDX-License-Identifier: MIT
"""The nbd protocol against real servers on loopback (qemu-nbd, nbdkit), differential
against Debian's qemu-img 7.2 where 7.2 and 9.1 agree.

9.1 differences named here: human info adds "Child node '/file':" (strip_child), JSON
map entries add "compressed" (stripped), JSON info adds "children" (compared apart), and
convert into an unreachable export words the creation fallback's failure differently.
"""
import json
import re
import socket
import threading
import time

import pytest

from conftest import strip_child
from servers import LOOPBACK, free_port, servers  # noqa: F401  (fixture)

MiB = 1 << 20


def strip_compressed(text):
    return re.sub(r', "compressed": (true|false)', "", text)


def same(a, b):
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)


@pytest.fixture
def chain(tmp_path, oracle):
    """A qcow2 overlay over a qcow2 base: data in the base, data and zeroes in the top."""
    base, top = tmp_path / "base.qcow2", tmp_path / "top.qcow2"
    assert oracle.img("create", "-f", "qcow2", base, "4M").rc == 0
    assert oracle.io("-c", "write -P 1 0 1M", base).rc == 0
    assert oracle.img("create", "-f", "qcow2", "-b", base, "-F", "qcow2", top).rc == 0
    assert oracle.io("-c", "write -P 2 1M 512k", "-c", "write -z 2M 512k", top).rc == 0
    return top


def test_info_and_map_through_qemu_nbd(both, servers, chain):
    ours, oracle = both
    url = servers.qemu_nbd(chain, "qcow2", export="ex").url
    a, b = ours.img("info", url), oracle.img("info", url)
    assert a.rc == 0 and strip_child(a.out) == b.out
    # 9.1 names the protocol child; 7.2 does not.
    assert f"Child node '/file':\n    filename: {url}\n    protocol type: nbd\n" in a.out
    for args in (["map", url], ["map", "--output=json", url]):
        a, b = ours.img(*args), oracle.img(*args)
        assert a.rc == b.rc == 0 and strip_compressed(a.out) == b.out
    a, b = ours.img("info", "--output=json", url), oracle.img("info", "--output=json", url)
    ja, jb = json.loads(a.out), json.loads(b.out)
    assert ja.pop("children")[0]["info"]["format"] == "nbd"
    assert ja == jb


def test_allocation_depth_as_dirty_bitmap(both, servers, chain):
    """qemu-nbd -A exports qemu:allocation-depth; x-dirty-bitmap shows it through map."""
    ours, oracle = both
    srv = servers.qemu_nbd(chain, "qcow2", export="ex", extra=["-A"])
    opts = (f"driver=nbd,server.type=unix,server.path={srv.sock},export=ex,"
            "x-dirty-bitmap=qemu:allocation-depth")
    for out in ("human", "json"):
        a = ours.img("map", f"--output={out}", "--image-opts", opts)
        b = oracle.img("map", f"--output={out}", "--image-opts", opts)
        assert a.rc == b.rc == 0 and strip_compressed(a.out) == b.out
    # The depth-1 ranges (hole bit) are not present; depth 2 reads as data+zero.
    assert '"present": false' in b.out


@pytest.mark.parametrize("form", ["uri", "uri_tcp", "legacy", "legacy_unix", "unix_uri",
                                  "json", "json_raw", "json_legacy_keys", "json_numeric_port"])
def test_names(both, servers, form):
    ours, oracle = both
    tcp = servers.nbdkit("memory", "8M", tcp=True)
    uxs = servers.nbdkit("memory", "8M")
    port, sock = tcp.port, uxs.sock
    name = {
        "uri": f"nbd://{LOOPBACK}:{port}/x",
        "uri_tcp": f"nbd+tcp://{LOOPBACK}:{port}",
        "legacy": f"nbd:{LOOPBACK}:{port}:exportname=x",
        "legacy_unix": f"nbd:unix:{sock}",
        "unix_uri": f"nbd+unix:///x?socket={sock}",
        "json": 'json:{"driver":"nbd","server":{"type":"inet","host":"%s","port":"%d"},'
                '"export":"x"}' % (LOOPBACK, port),
        "json_raw": 'json:{"driver":"raw","file":{"driver":"nbd","server":{"type":"unix",'
                    '"path":"%s"}}}' % sock,
        "json_legacy_keys": 'json:{"driver":"nbd","host":"%s","port":"%d"}' % (LOOPBACK, port),
        "json_numeric_port": 'json:{"driver":"nbd","server":{"type":"inet","host":"%s",'
                             '"port":%d}}' % (LOOPBACK, port),
    }[form]
    a, b = ours.img("info", name), oracle.img("info", name)
    assert a.rc == b.rc == 0 and strip_child(a.out) == b.out


BAD_NAMES = [
    "nbd://127.0.0.1:abc/x", "nbd+unix:///ex?socket=/x&foo=b", "nbd://127.0.0.1/x?socket=y",
    "nbd+foo://127.0.0.1/x", "nbd:", "nbd://", "nbd:///x", "nbd://127.0.0.1:99999/x",
    "nbd+unix://host/ex?socket=/x", "nbd:127.0.0.1", "nbd:[::1", "nbd:nonexistent.invalid:1",
    "nbd:unix:/nonexistent/sock", "nbd+unix:///?socket=", "nbd:unix:/x:exportname=",
    'json:{"driver":"nbd"}', 'json:{"driver":"nbd","server":{"type":"bad"}}',
    'json:{"driver":"nbd","server":{"type":"inet","host":"127.0.0.1"}}',
    'json:{"driver":"nbd","host":"127.0.0.1","path":"/x"}',
    'json:{"driver":"nbd","host":"127.0.0.1","port":"1","server":{"type":"inet"}}',
    'json:{"driver":"nbd","server":{"type":"unix","path":"/x","host":"y"}}',
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_match_oracle(both, name):
    ours, oracle = both
    same(ours.img("info", name), oracle.img("info", name))


def test_connection_refused_matches_oracle(both):
    ours, oracle = both
    port = free_port()  # nobody listens there
    for name in (f"nbd://{LOOPBACK}:{port}/x", f"nbd:{LOOPBACK}:{port}"):
        a, b = ours.img("info", name), oracle.img("info", name)
        same(a, b)
        assert "Connection refused" in a.err


@pytest.mark.parametrize("extra", ["reconnect-delay=abc", "foo=1", "server.port=abc",
                                   "tls-creds=nope", "server.ipv6=off,server.ipv4=off",
                                   "x-dirty-bitmap=nosuch", "reconnect-delay=5,open-timeout=1",
                                   "server.numeric=on,server.keep-alive=on,tls-hostname=h"])
def test_image_opts_match_oracle(both, servers, extra):
    ours, oracle = both
    srv = servers.nbdkit("memory", "1M", tcp=True)
    opts = f"driver=nbd,server.type=inet,server.host={LOOPBACK},server.port={srv.port},{extra}"
    same(ours.img("info", "--image-opts", opts), oracle.img("info", "--image-opts", opts))


def test_missing_export_names_server_message(both, servers, tmp_path, oracle):
    ours, _ = both
    img = tmp_path / "d.raw"
    oracle.img("create", "-f", "raw", img, "1M")
    srv = servers.qemu_nbd(img, "raw", export="ex")
    name = f"nbd+unix:///nosuch?socket={srv.sock}"
    a, b = ours.img("info", name), oracle.img("info", name)
    same(a, b)
    assert "Requested export not available\nserver reported: export 'nosuch' not present" in a.err


def _fake_server(behaviour):
    """A TCP listener that greets like a web server or hangs up at once."""
    lsock = socket.socket()
    lsock.bind((LOOPBACK, 0))
    lsock.listen(4)

    def serve():
        for _ in range(2):
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            if behaviour == "http":
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            conn.close()
        lsock.close()

    threading.Thread(target=serve, daemon=True).start()
    return lsock.getsockname()[1]


@pytest.mark.parametrize("behaviour", ["http", "hangup"])
def test_not_an_nbd_server(both, behaviour):
    ours, oracle = both
    port = _fake_server(behaviour)
    a = ours.img("info", f"nbd://{LOOPBACK}:{port}")
    b = oracle.img("info", f"nbd://{LOOPBACK}:{port}")
    same(a, b)
    assert ("Bad initial magic" if behaviour == "http" else "Failed to read initial magic") in a.err


def test_convert_from_nbd_matches_oracle(both, servers, chain, tmp_path):
    ours, oracle = both
    url = servers.qemu_nbd(chain, "qcow2", export="ex").url
    for tool, name in ((ours, "ours.qcow2"), (oracle, "theirs.qcow2")):
        r = tool.img("convert", "-O", "qcow2", url, tmp_path / name)
        assert r.rc == 0, r
    assert oracle.img("compare", tmp_path / "ours.qcow2", tmp_path / "theirs.qcow2").rc == 0
    assert oracle.img("check", tmp_path / "ours.qcow2").rc == 0
    a = oracle.img("map", "--output=json", tmp_path / "ours.qcow2")
    b = oracle.img("map", "--output=json", tmp_path / "theirs.qcow2")
    assert a.out == b.out  # the same holes: zeroes were found by block status, not read
    same(ours.img("compare", url, tmp_path / "theirs.qcow2"),
         oracle.img("compare", url, tmp_path / "theirs.qcow2"))


def test_convert_to_nbd_and_back(both, servers, tmp_path):
    ours, oracle = both
    src = tmp_path / "src.qcow2"
    oracle.img("create", "-f", "qcow2", src, "8M")
    oracle.io("-c", "write -P 5 0 3M", "-c", "write -P 6 5M 1M", src)
    srv = servers.nbdkit("memory", "8M")
    r = ours.img("convert", "-n", "-O", "raw", src, srv.url)
    assert r.rc == 0, r
    r = oracle.img("compare", "-f", "qcow2", "-F", "raw", src, srv.url)
    assert r.rc == 0, r
    # Without -n: creating on an existing export is the generic fallback.
    oracle.io("-f", "raw", "-c", "write -P 9 0 8M", srv.url)
    r = ours.img("convert", "-O", "raw", src, srv.url)
    assert r.rc == 0, r
    assert oracle.img("compare", "-f", "qcow2", "-F", "raw", src, srv.url).rc == 0


def test_create_on_export(both, servers):
    ours, oracle = both
    srv = servers.nbdkit("memory", "8M")
    for args in (["-f", "raw", srv.url, "16M"], ["-f", "raw", "-o", "preallocation=full",
                                                 srv.url, "4M"],
                 ["-f", "raw", srv.url, "4M", "-o", "foo=bar"], ["-f", "raw", srv.url]):
        same(ours.img("create", *args), oracle.img("create", *args))
    r = ours.img("create", "-f", "qcow2", srv.url, "4M")
    assert r.rc == 0, r
    a, b = ours.img("info", srv.url), oracle.img("info", srv.url)
    assert strip_child(a.out) == b.out and "file format: qcow2" in b.out
    assert oracle.img("check", srv.url).rc == 0


def test_convert_into_unreachable_export(ours):
    """9.1 words the failed creation fallback as below (7.2: "... does not support image
    creation, and opening the image failed: ...")."""
    r = ours.img("convert", "-O", "raw", "null-co://", f"nbd://{LOOPBACK}:{free_port()}/x")
    assert r.rc == 1
    assert re.fullmatch(
        r"qemu-img: nbd://127\.0\.0\.1:\d+/x: error while converting raw: Protocol driver "
        r"'nbd' does not support creating new images, so an existing image must be selected "
        r"as the target; however, opening the given target as an existing image failed: "
        r"Failed to connect to '127\.0\.0\.1:\d+': Connection refused\n", r.err), r.err


def test_requests_through_qemu_io(both, servers):
    """write, zero (with and without unmap), discard and flush reach the export."""
    ours, oracle = both
    srv = servers.nbdkit("memory", "1M")
    oracle.io("-f", "raw", "-c", "write -P 0xff 0 1M", srv.url)
    r = ours.io("-f", "raw", "-c", "write -P 7 0 64k", "-c", "write -z 64k 64k",
                "-c", "write -z -u 128k 64k", "-c", "discard 192k 64k", "-c", "flush", srv.url)
    assert r.rc == 0 and "discard 65536/65536 bytes at offset 196608" in r.out, r
    r = oracle.io("-f", "raw", "-c", "read -P 7 0 64k", "-c", "read -P 0 64k 128k",
                  "-c", "read -P 0xff 256k 768k", srv.url)
    assert r.rc == 0 and "Pattern verification failed" not in r.out, r


def test_odd_sized_export(both, servers):
    ours, oracle = both
    url = servers.nbdkit("memory", "1000").url
    a, b = ours.img("info", url), oracle.img("info", url)
    assert strip_child(a.out) == b.out
    a = ours.io("-f", "raw", "-c", "read -P 0 0 1024", "-c", "write -P 1 512 512", url)
    b = oracle.io("-f", "raw", "-c", "read -P 0 0 1024", "-c", "write -P 1 512 512", url)
    assert a.out.split("\n")[0] == b.out.split("\n")[0] == "read 1024/1024 bytes at offset 0"
    assert "write failed: No space left on device" in a.out + a.err
    assert "write failed: No space left on device" in b.out + b.err


def test_read_only_export(both, servers, tmp_path, oracle):
    ours, _ = both
    img = tmp_path / "ro.raw"
    oracle.img("create", "-f", "raw", img, "1M")
    srv = servers.nbdkit("file", img, readonly=True)
    a = ours.img("convert", "-n", "-O", "raw", "null-co://", srv.url)
    b = oracle.img("convert", "-n", "-O", "raw", "null-co://", srv.url)
    assert a.rc == b.rc == 1
    assert a.err == b.err


def test_read_error_injected(both, servers):
    """nbdkit's error filter fails every read: the error reaches convert's message."""
    ours, oracle = both
    srv = servers.nbdkit("pattern", "4M", "error-pread=EIO", "error-pread-rate=1",
                         filters=["error"])
    a = ours.img("convert", "-f", "raw", "-n", srv.url, "--target-image-opts", "driver=null-co,size=4M")
    b = oracle.img("convert", "-f", "raw", "-n", srv.url, "--target-image-opts", "driver=null-co,size=4M")
    assert a.rc == b.rc == 1
    line = "qemu-img: error while reading at byte 0: Input/output error\n"
    assert line in b.err and a.err == line
    # Probing reads too: the same message when the format is not given.
    same(ours.img("info", srv.url), oracle.img("info", srv.url))


def test_server_gone_mid_convert(ours, oracle, servers, tmp_path):
    """The server dies while convert reads: one clear error, exit 1, a consistent target."""
    srv = servers.nbdkit("pattern", "256M", "rdelay=40ms", filters=["delay"])
    threading.Timer(0.8, srv.stop).start()
    t0 = time.monotonic()
    r = ours.img("convert", "-O", "qcow2", srv.url, tmp_path / "out.qcow2")
    assert time.monotonic() - t0 < 30
    assert r.rc == 1
    assert re.fullmatch(r"qemu-img: error while reading at byte \d+: Cannot send after "
                        r"transport endpoint shutdown\n", r.err), r.err
    c = oracle.img("check", tmp_path / "out.qcow2")
    assert c.rc in (0, 3), c  # leaks at most, never corruption


def test_multi_conn_uses_several_connections(ours, servers, tmp_path):
    """A multi-conn server gets more than one connection for a copy (nbdkit's log filter
    records each)."""
    log = tmp_path / "nbdkit.log"
    srv = servers.nbdkit("pattern", "64M", f"logfile={log}", filters=["log"])
    r = ours.img("convert", "-O", "raw", srv.url, tmp_path / "out.raw")
    assert r.rc == 0, r
    servers.stop_all()
    connects = [l for l in log.read_text().splitlines() if " Connect " in l]
    assert len(connects) > 1


@pytest.fixture
def tls_server(servers, tmp_path, oracle):
    """qemu-nbd over TCP requiring x509 TLS (client certificates verified too)."""
    img = tmp_path / "tls.qcow2"
    oracle.img("create", "-f", "qcow2", img, "4M")
    oracle.io("-c", "write -P 8 1M 1M", img)
    server_dir, client_dir, _ = servers.x509_dirs()
    srv = servers.qemu_nbd(img, "qcow2", export="ex", tcp=True, extra=[
        "--object", f"tls-creds-x509,id=tls0,dir={server_dir},endpoint=server",
        "--tls-creds", "tls0"])
    srv.client_object = f"tls-creds-x509,id=tls0,dir={client_dir},endpoint=client"
    srv.opts = (f"driver=nbd,server.type=inet,server.host={LOOPBACK},server.port={srv.port},"
                "export=ex,tls-creds=tls0")
    return srv


def test_tls_x509(both, tls_server, tmp_path):
    ours, oracle = both
    args = ["--object", tls_server.client_object, "--image-opts", tls_server.opts]
    a, b = ours.img("info", *args), oracle.img("info", *args)
    assert a.rc == b.rc == 0 and a.out == b.out
    same(ours.img("map", *args), oracle.img("map", *args))
    r = ours.img("convert", "-O", "raw", "--object", tls_server.client_object,
                 "--image-opts", tls_server.opts, tmp_path / "out.raw")
    assert r.rc == 0, r
    assert oracle.img("compare", "-U", "-f", "qcow2", tmp_path / "tls.qcow2",
                              tmp_path / "out.raw").rc == 0


def test_tls_required_by_server(both, tls_server):
    """Without tls-creds: QEMU's two lines, then the server's own text (libnbd asks for
    another option first, so the server names that one)."""
    ours, oracle = both
    a, b = ours.img("info", tls_server.url), oracle.img("info", tls_server.url)
    assert a.rc == b.rc == 1
    assert a.err.splitlines()[:2] == b.err.splitlines()[:2]
    assert "Did you forget a valid tls-creds?" in a.err


def test_tls_creds_lookup_errors(both, tls_server):
    ours, oracle = both
    for obj in ("secret,id=tls0,data=x", tls_server.client_object.replace("id=tls0", "id=other")):
        args = ["info", "--object", obj, "--image-opts", tls_server.opts]
        same(ours.img(*args), oracle.img(*args))


def test_tls_hostname_override(both, tls_server):
    """QEMU checks the certificate against tls-hostname; libnbd can check only the host it
    connects to, so qimg refuses another name rather than not check it."""
    ours, oracle = both
    opts = tls_server.opts + ",tls-hostname=wrong.example"
    opts = opts.replace(f"server.host={LOOPBACK}", "server.host=localhost")
    args = ["info", "--object", tls_server.client_object, "--image-opts", opts]
    a, b = ours.img(*args), oracle.img(*args)
    assert a.rc == b.rc == 1
    assert "Certificate does not match the hostname wrong.example" in b.err
    assert "tls-hostname 'wrong.example' cannot be checked" in a.err


def test_tls_certificate_for_another_host(both, servers, tmp_path, oracle):
    """A server whose certificate (from the right CA) names another host is refused.
    QEMU: "Certificate does not match the hostname 127.0.0.1"; qimg: gnutls' words."""
    ours, oracle = both
    img = tmp_path / "o.raw"
    oracle.img("create", "-f", "raw", img, "1M")
    _, client_dir, other_dir = servers.x509_dirs()
    srv = servers.qemu_nbd(img, "raw", export="ex", tcp=True, extra=[
        "--object", f"tls-creds-x509,id=tls0,dir={other_dir},endpoint=server",
        "--tls-creds", "tls0"])
    args = ["info", "--object", f"tls-creds-x509,id=tls0,dir={client_dir},endpoint=client",
            "--image-opts", f"driver=nbd,server.type=inet,server.host={LOOPBACK},"
            f"server.port={srv.port},export=ex,tls-creds=tls0"]
    a, b = ours.img(*args), oracle.img(*args)
    assert a.rc == b.rc == 1
    assert "Certificate does not match the hostname 127.0.0.1" in b.err
    assert a.err.startswith("qemu-img: Could not open 'driver=nbd,") and "certificate" in a.err


def test_tls_psk(both, servers, tmp_path, oracle):
    ours, oracle = both
    d = tmp_path / "psk"
    d.mkdir()
    (d / "keys.psk").write_text("qemu:" + "0123456789abcdef" * 4 + "\n")
    img = tmp_path / "p.raw"
    oracle.img("create", "-f", "raw", img, "1M")
    oracle.io("-f", "raw", "-c", "write -P 3 0 64k", img)
    srv = servers.qemu_nbd(img, "raw", export="ex", extra=[
        "--object", f"tls-creds-psk,id=tls0,dir={d},endpoint=server", "--tls-creds", "tls0"])
    args = ["--object", f"tls-creds-psk,id=tls0,dir={d},endpoint=client", "--image-opts",
            f"driver=nbd,server.type=unix,server.path={srv.sock},export=ex,tls-creds=tls0"]
    a, b = ours.img("info", *args), oracle.img("info", *args)
    assert a.rc == b.rc == 0 and a.out == b.out
    same(ours.img("compare", *args, f"driver=raw,file.filename={img}"),
         oracle.img("compare", *args, f"driver=raw,file.filename={img}"))
