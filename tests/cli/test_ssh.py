# SPDX-License-Identifier: MIT
"""The ssh protocol (SFTP) against a real sshd on loopback with throwaway keys and an
ssh-agent of its own, differential against Debian's qemu-img 7.2 (qemu-block-extra's ssh
driver). The remote files live on this machine, so what the client wrote is checked
directly.

9.1 differences named here: human info adds "Child node '/file':" (strip_child), and
9.1 warns about unknown URI parameters ("Unsupported parameter 'foo' in URI"; 7.2 is
silent).
"""
import pytest

from conftest import strip_child
from servers import LOOPBACK, free_port, servers  # noqa: F401  (fixture)


@pytest.fixture
def sshd(servers):
    return servers.sshd()


def url(srv, path, hkc="no", user="root"):
    q = f"?host_key_check={hkc}" if hkc else ""
    return f"ssh://{user}@{LOOPBACK}:{srv.port}{path}{q}"


def same(a, b):
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)


@pytest.fixture
def image(tmp_path, oracle):
    img = tmp_path / "d.qcow2"
    assert oracle.img("create", "-f", "qcow2", img, "4M").rc == 0
    assert oracle.io("-c", "write -P 6 1M 64k", img).rc == 0
    return img


def test_info_map_compare(both, sshd, image):
    ours, oracle = both
    u = url(sshd, image)
    a, b = ours.img("info", u, env=sshd.env), oracle.img("info", u, env=sshd.env)
    assert a.rc == b.rc == 0 and strip_child(a.out) == b.out
    assert "    protocol type: ssh\n" in a.out
    same(ours.img("map", u, env=sshd.env), oracle.img("map", u, env=sshd.env))
    same(ours.img("compare", u, image, env=sshd.env),
         oracle.img("compare", u, image, env=sshd.env))


def test_host_key_checks(both, sshd, image):
    ours, oracle = both
    good = url(sshd, image, hkc=f"sha256:{sshd.fingerprint}")
    a, b = ours.img("info", good, env=sshd.env), oracle.img("info", good, env=sshd.env)
    assert a.rc == b.rc == 0 and strip_child(a.out) == b.out
    for name in (url(sshd, image, hkc="sha256:00" + sshd.fingerprint),
                 url(sshd, image, hkc="bogus"),
                 url(sshd, image, hkc=None),  # known_hosts: this throwaway host is not there
                 f"ssh://root@{LOOPBACK}:{sshd.port}?host_key_check=no",
                 url(sshd, "/nonexistent/file")):
        same(ours.img("info", name, env=sshd.env), oracle.img("info", name, env=sshd.env))
    j = ('json:{"driver":"qcow2","file":{"driver":"ssh","server":{"host":"%s","port":"%d"},'
         '"path":"%s","host-key-check":{"mode":"hash","type":"sha256","hash":"%s"}}}'
         % (LOOPBACK, sshd.port, image, sshd.fingerprint))
    a, b = ours.img("info", j, env=sshd.env), oracle.img("info", j, env=sshd.env)
    assert a.rc == b.rc == 0 and strip_child(a.out) == b.out


def test_unknown_uri_parameter_warns(ours, sshd, image):
    r = ours.img("info", url(sshd, image) + "&foo=bar", env=sshd.env)
    assert r.rc == 0 and r.err == "qemu-img: warning: Unsupported parameter 'foo' in URI\n"


def test_refusals(both, sshd, image):
    ours, oracle = both
    u = url(sshd, image)
    no_agent = dict(sshd.env, SSH_AUTH_SOCK="")
    same(ours.img("info", u, env=no_agent), oracle.img("info", u, env=no_agent))
    closed = f"ssh://root@{LOOPBACK}:{free_port()}/x?host_key_check=no"
    same(ours.img("info", closed), oracle.img("info", closed))


def test_convert_and_create_on_remote(ours, oracle, sshd, image, tmp_path):
    out = tmp_path / "out.qcow2"
    r = ours.img("convert", "-O", "qcow2", image, url(sshd, out), env=sshd.env)
    assert r.rc == 0, r
    assert oracle.img("check", out).rc == 0
    assert oracle.img("compare", image, out).rc == 0
    raw = tmp_path / "new.raw"
    r = ours.img("create", "-f", "raw", url(sshd, raw), "3M", env=sshd.env)
    assert r.rc == 0, r
    assert raw.stat().st_size == 3 << 20


def test_writes_through_qemu_io(ours, oracle, sshd, tmp_path):
    raw = tmp_path / "w.raw"
    oracle.img("create", "-f", "raw", raw, "1M")
    r = ours.io("-f", "raw", "-c", "write -P 5 4k 200k", "-c", "flush", url(sshd, raw),
                env=sshd.env)
    assert r.rc == 0, r
    r = oracle.io("-f", "raw", "-c", "read -P 5 4k 200k", "-c", "read -P 0 0 4k", raw)
    assert "Pattern verification failed" not in r.out and r.rc == 0, r
