# SPDX-License-Identifier: MIT
"""A real GlusterFS server on loopback for the gluster tests: Debian's glusterd with a
one-brick volume on a directory under the test's temporary directory.

glusterd runs in the foreground (-N) as a child of the test process, with a working
directory and control socket of its own. It listens on 127.0.0.2 at glusterd's fixed
port 24007: the brick process it starts always asks the brick's host at 24007 for its
volume file, and the gluster CLI refuses 127.0.0.1 (and "localhost") as a brick's host,
so the whole server lives on the second loopback address (glusterd passes its bind
address on to the brick). The volume is created with "force" (a brick on the root
filesystem), started, and stopped and deleted at the end. A missing glusterd is a
failure, not a skip: scripts/setup-deps.sh installs it. It needs root.
"""
import os
import signal
import socket
import subprocess
import time

import pytest

from servers import need

GLUSTER_HOST = "127.0.0.2"


def _listening(port):
    try:
        with socket.create_connection((GLUSTER_HOST, port), timeout=1):
            return True
    except OSError:
        return False


class Glusterd:
    """A running glusterd serving one started volume, self.volume, whose brick is
    self.brick (a directory: the volume's files appear there)."""

    def __init__(self, tmp_dir):
        self.dir = tmp_dir
        self.volume = f"qimg{os.getpid()}"
        self.brick = tmp_dir / "brick"
        self.brick.mkdir()
        work = tmp_dir / "work"
        work.mkdir()
        self.sock = tmp_dir / "glusterd.socket"
        vol = tmp_dir / "glusterd.vol"
        vol.write_text(f"""volume management
    type mgmt/glusterd
    option working-directory {work}
    option transport-type socket
    option transport.socket.listen-port 24007
    option transport.socket.bind-address {GLUSTER_HOST}
    option transport.address-family inet
    option glusterd-sockfile {self.sock}
    option ping-timeout 0
    option event-threads 1
end-volume
""")
        assert not _listening(24007), f"something already listens on {GLUSTER_HOST}:24007"
        self.proc = subprocess.Popen(
            [need("glusterd"), "-N", "-f", str(vol), "-p", str(tmp_dir / "glusterd.pid"),
             "-l", str(tmp_dir / "glusterd.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (_listening(24007) and self.sock.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"glusterd did not start: see {tmp_dir}")
            time.sleep(0.05)
        self.cli("volume", "create", self.volume, f"{GLUSTER_HOST}:{self.brick}", "force")
        self.cli("volume", "start", self.volume)

    def cli(self, *args, check=True):
        r = subprocess.run([need("gluster"), f"--glusterd-sock={self.sock}", "--mode=script",
                            *args], capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"gluster {' '.join(args)}: {r.stdout}{r.stderr}")
        return r

    def kill_brick(self):
        """The brick process gone at once, as a crashed server (by the pid its glusterd
        recorded for it)."""
        pidfile = (f"/var/run/gluster/vols/{self.volume}/{GLUSTER_HOST}-"
                   + str(self.brick).strip("/").replace("/", "-") + ".pid")
        with open(pidfile) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)

    def restart_brick(self):
        self.cli("volume", "start", self.volume, "force")

    def url(self, name):
        return f"gluster://{GLUSTER_HOST}/{self.volume}/{name}"

    def stop(self):
        if self.proc.poll() is None:
            self.cli("volume", "stop", self.volume, "force", check=False)  # ends the brick
            self.cli("volume", "delete", self.volume, check=False)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def glusterd(tmp_path_factory):
    """One gluster volume for the session's gluster tests (each test uses files of its own)."""
    g = Glusterd(tmp_path_factory.mktemp("glusterd"))
    yield g
    g.stop()
