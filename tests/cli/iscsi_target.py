# SPDX-License-Identifier: MIT
"""A real iSCSI target on loopback for the iscsi tests: Debian's tgt (userspace tgtd).

tgtd runs in the foreground as a child of the test process, on 127.0.0.1 at a free
port, with a control socket of its own (-C N: /var/run/tgtd/socket.N), so it clashes
with no other tgtd. LUNs are sparse files under the test's temporary directory, set up
with tgtadm; thin provisioned ones (tgt's thin_provisioning=1) answer GET LBA STATUS,
UNMAP and WRITE SAME with UNMAP by punching holes in their file. A missing tgtd is a
failure, not a skip: scripts/setup-deps.sh installs it. tgtd needs root (it creates
its control socket under /var/run/tgtd).
"""
import os
import random
import signal
import socket
import subprocess
import time

import pytest

from servers import LOOPBACK, free_port, need

IQN_PREFIX = "iqn.2024-01.org.qimg"


def _free_control_port():
    """A control port number (tgtd takes up to 32767) whose socket no tgtd holds."""
    while True:
        n = random.randint(1000, 32767)
        if not os.path.exists(f"/var/run/tgtd/socket.{n}"):
            return n


class Target:
    """One iSCSI target of a tgtd: its LUN files and their URLs."""

    def __init__(self, tgt, tid, name):
        self.tgt, self.tid, self.name = tgt, tid, name
        self.files = {}

    def url(self, lun=1, user=None, password=None):
        auth = ""
        if user is not None:
            auth = user + (f"%{password}" if password is not None else "") + "@"
        return f"iscsi://{auth}{LOOPBACK}:{self.tgt.port}/{self.name}/{lun}"

    def opts(self, lun=1, **extra):
        """--image-opts for the LUN (driver=iscsi,transport=tcp,...)."""
        o = {"driver": "iscsi", "transport": "tcp", "portal": f"{LOOPBACK}:{self.tgt.port}",
             "target": self.name, "lun": str(lun), **extra}
        return ",".join(f"{k}={v}" for k, v in o.items())


class Tgtd:
    """A running tgtd; new_target() adds targets with file-backed LUNs."""

    def __init__(self, tmp_dir):
        self.dir = tmp_dir
        self.port = free_port()
        self.control = _free_control_port()
        self.tids = 0
        self.log = open(tmp_dir / "tgtd.log", "w")
        self.proc = subprocess.Popen(
            [need("tgtd"), "-f", "-C", str(self.control), "--iscsi",
             f"portal={LOOPBACK}:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"tgtd exited early: see {self.dir / 'tgtd.log'}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=1):
                    pass
                if self._adm("--op", "show", "--mode", "target", check=False).returncode == 0:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("tgtd not ready")

    def _adm(self, *args, check=True):
        return subprocess.run([need("tgtadm"), "-C", str(self.control), "--lld", "iscsi",
                               *args], capture_output=True, text=True, check=check)

    def new_target(self, luns, chap=None):
        """A target whose LUN i+1 is a sparse file of luns[i] = (size, thin) (size in
        bytes); chap=(user, password) requires CHAP logins. LUN 0 is tgt's controller."""
        self.tids += 1
        tid = str(self.tids)
        t = Target(self, tid, f"{IQN_PREFIX}:t{tid}")
        self._adm("--op", "new", "--mode", "target", "--tid", tid, "-T", t.name)
        for i, (size, thin) in enumerate(luns, start=1):
            path = self.dir / f"t{tid}-lun{i}.img"
            with open(path, "wb") as f:
                f.truncate(size)
            self._adm("--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", str(i),
                      "-b", str(path))
            if thin:
                self._adm("--op", "update", "--mode", "logicalunit", "--tid", tid, "--lun",
                          str(i), "--params", "thin_provisioning=1")
            t.files[i] = path
        self._adm("--op", "bind", "--mode", "target", "--tid", tid, "-I", "ALL")
        if chap:
            user, password = chap
            self._adm("--op", "new", "--mode", "account", "--user", user, "--password", password)
            self._adm("--op", "bind", "--mode", "account", "--tid", tid, "--user", user)
        return t

    def kill(self):
        """Gone at once, as a crashed or unplugged target (no logout, no FIN handshake)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        # tgtd ignores SIGTERM while it has targets, and its LUNs are scratch files: kill it.
        self.kill()
        self.log.close()
        for suffix in ("", ".lock"):
            try:
                os.unlink(f"/var/run/tgtd/socket.{self.control}{suffix}")
            except OSError:
                pass


@pytest.fixture(scope="session")
def tgtd(tmp_path_factory):
    """One tgtd for the session's iscsi tests (each test makes targets of its own)."""
    t = Tgtd(tmp_path_factory.mktemp("tgtd"))
    yield t
    t.stop()


@pytest.fixture
def own_tgtd(tmp_path):
    """A tgtd for one test alone (a test that kills it)."""
    d = tmp_path / "own-tgtd"
    d.mkdir()
    t = Tgtd(d)
    yield t
    t.stop()
