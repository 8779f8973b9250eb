# SPDX-License-Identifier: MIT
"""A real NFSv3 server on loopback for the nfs tests: Debian's nfs-ganesha with its VFS
backend, exporting a directory under the test's temporary directory.

ganesha.nfsd runs in the foreground as a child of the test process, its NFS and MOUNT
services bound to 127.0.0.1 at free ports (NLM, RQUOTA and UDP off). NFS clients
(libnfs, so both qemu-img and qimg) find those ports through the portmapper on port
111: when none answers there, an rpcbind is started for the session and stopped
after it. That rpcbind listens on every address: Debian 12's rpcbind aborts ("free():
double free detected") when -h restricts it to 127.0.0.1. The kernel's nfsd is no
option in a container (no nfsd filesystem, no module loading). Missing programs are
failures, not skips: scripts/setup-deps.sh installs them. Both daemons need root.
"""
import signal
import socket
import subprocess
import time

import pytest

from servers import LOOPBACK, free_port, need


def _portmapper_up():
    try:
        with socket.create_connection((LOOPBACK, 111), timeout=1):
            return True
    except OSError:
        return False


def _registered(port):
    """Is an NFS v3 service registered with the portmapper at this TCP port?"""
    r = subprocess.run([need("rpcinfo"), "-p", LOOPBACK], capture_output=True, text=True)
    return any(line.split()[:4] == ["100003", "3", "tcp", str(port)]
               for line in r.stdout.splitlines())


class Ganesha:
    """A running ganesha.nfsd exporting self.export (a directory) as itself."""

    def __init__(self, tmp_dir):
        self.dir = tmp_dir
        self.export = tmp_dir / "export"
        self.export.mkdir()
        self.port, self.mnt_port = free_port(), free_port()
        self.rpcbind = None
        if not _portmapper_up():
            self.rpcbind = subprocess.Popen([need("rpcbind"), "-f", "-w"],
                                            stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._wait(_portmapper_up, "rpcbind")
        conf = tmp_dir / "ganesha.conf"
        conf.write_text(f"""
NFS_CORE_PARAM {{
    Bind_addr = {LOOPBACK};
    NFS_Port = {self.port};
    MNT_Port = {self.mnt_port};
    Protocols = 3;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}}
NFSV4 {{ Graceless = true; }}
NFS_KRB5 {{ Active_krb5 = false; }}
EXPORT {{
    Export_Id = 1;
    Path = {self.export};
    Pseudo = /export;
    Access_Type = RW;
    Squash = No_Root_Squash;
    Protocols = 3;
    Transports = TCP;
    SecType = sys;
    FSAL {{ Name = VFS; }}
}}
""")
        self.conf = conf
        self.log = tmp_dir / "ganesha.log"
        self.start_nfsd()

    def start_nfsd(self):
        """(Re)start ganesha.nfsd on the same ports and export."""
        self.proc = subprocess.Popen(
            [need("ganesha.nfsd"), "-F", "-f", str(self.conf), "-L", str(self.log),
             "-p", str(self.dir / "ganesha.pid"), "-N", "NIV_EVENT"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait(lambda: _registered(self.port), "ganesha.nfsd")

    def kill_nfsd(self):
        """Gone at once, as a crashed server (its portmapper entries stay behind)."""
        self.proc.kill()
        self.proc.wait()

    def _wait(self, ready, what, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            for p in (self.rpcbind, getattr(self, "proc", None)):
                if p is not None and p.poll() is not None:
                    raise AssertionError(f"{what} exited early: see {self.dir}")
            time.sleep(0.05)
        raise AssertionError(f"{what} not ready: see {self.dir}")

    def url(self, name):
        """nfs:// URL of a file in the export (mounted as the export's own path)."""
        return f"nfs://{LOOPBACK}{self.export}/{name}"

    def stop(self):
        # SIGTERM: ganesha unregisters from the portmapper on the way out.
        for p in (self.proc, self.rpcbind):
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="session")
def ganesha(tmp_path_factory):
    """One NFS server for the session's nfs tests (each test uses files of its own)."""
    g = Ganesha(tmp_path_factory.mktemp("ganesha"))
    yield g
    g.stop()
