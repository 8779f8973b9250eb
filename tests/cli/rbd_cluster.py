# SPDX-License-Identifier: MIT
"""A throwaway single-node Ceph cluster on 127.0.0.1 for the rbd tests and the bench.

One monitor at a free port, one OSD on memstore (objects in RAM: nothing to format, so it
starts in seconds), no manager (nothing here needs one), auth "none", pools of size 1 and a
pool "rbd" initialised for images. Everything lives under one directory with its own
ceph.conf; clients reach the cluster with "conf=DIR/ceph.conf" in an rbd: filename (or
CEPH_CONF in the environment). stop() kills the daemons.

Run as a program (python3 rbd_cluster.py DIR) it starts a cluster, prints its conf path
and waits until killed: bench/run uses it that way.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

LOOPBACK = "127.0.0.1"
PROGRAMS = ("ceph-mon", "ceph-osd", "monmaptool", "ceph", "rbd")
# Client timeouts: a cluster that goes away turns into an error within seconds, not a hang.
CLIENT_TIMEOUT = 10


def missing_programs():
    return [p for p in PROGRAMS if not shutil.which(p)]


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


CONF = """[global]
fsid = {fsid}
mon host = v1:{host}:{port}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
ms bind msgr2 = false
ms bind ipv6 = false
public addr = {host}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd objectstore = memstore
osd crush update on start = false
osd class update on start = false
memstore device bytes = {store_bytes}
mon allow pool delete = true
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
run dir = {dir}/run
log file = {dir}/log/$name.log
admin socket = {dir}/run/$name.asok
mon data = {dir}/mon/$cluster-$id
osd data = {dir}/osd/$cluster-$id
osd journal size = 0
keyring = /dev/null
client mount timeout = {timeout}
rados mon op timeout = {timeout}
rados osd op timeout = {timeout}
mon client hunt interval = 1
"""


class Cluster:
    def __init__(self, directory, store_mib=2048):
        self.base = os.path.abspath(str(directory))
        self.dir = self.conf = self.port = self.env = None  # set by start()
        self.store_bytes = store_mib << 20
        self.procs = {}
        self.startup_seconds = None

    def _ceph(self, *args, timeout=60, check=True, prog="ceph", tries=1):
        for attempt in range(tries):
            r = subprocess.run([prog, "-c", self.conf, *args], capture_output=True, text=True,
                               timeout=timeout, env=self.env)
            if not r.returncode:
                break
            time.sleep(0.5)
        if check and r.returncode:
            raise RuntimeError(f"{prog} {' '.join(args)}: rc={r.returncode} {r.stderr.strip()}")
        return r

    def _setup(self, *args, prog="ceph"):
        """A setup command; a young monitor sometimes refuses one (EPERM while the client's
        map is not yet in), so it is tried again."""
        return self._ceph(*args, prog=prog, tries=10)

    def _daemon(self, name, argv):
        log = open(os.path.join(self.dir, "log", f"{name}.out"), "wb")
        self.procs[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)
        log.close()

    def start(self, attempts=3):
        """Start the cluster; a start that goes wrong (a young monitor sometimes hands out
        a map its own commands then refuse as 'wrong fsid') is retried from scratch on a
        new port."""
        t0 = time.monotonic()
        for attempt in range(attempts):
            self.dir = os.path.join(self.base, f"c{attempt}")
            self.conf = os.path.join(self.dir, "ceph.conf")
            self.env = dict(os.environ, CEPH_CONF=self.conf)
            self.port = _free_port()
            try:
                self._start_once()
                break
            except (RuntimeError, subprocess.SubprocessError) as e:
                self.stop()
                if attempt == attempts - 1:
                    raise RuntimeError(f"Ceph cluster did not start: {e}") from e
        self.startup_seconds = time.monotonic() - t0
        return self

    def _start_once(self):
        for sub in ("run", "log", "mon", "osd"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        fsid = str(uuid.uuid4())
        with open(self.conf, "w") as f:
            f.write(CONF.format(fsid=fsid, host=LOOPBACK, port=self.port, dir=self.dir,
                                store_bytes=self.store_bytes, timeout=CLIENT_TIMEOUT))
        monmap = os.path.join(self.dir, "monmap")
        subprocess.run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                        f"[v1:{LOOPBACK}:{self.port}]", monmap], check=True,
                       capture_output=True)
        subprocess.run(["ceph-mon", "-c", self.conf, "--mkfs", "-i", "a", "--monmap", monmap],
                       check=True, capture_output=True, env=self.env)
        self.start_mon()
        if self._setup("fsid").stdout.strip() != fsid:
            raise RuntimeError("the monitor answers with another fsid")
        osd_uuid = str(uuid.uuid4())
        osd_id = self._setup("osd", "new", osd_uuid).stdout.strip()
        os.makedirs(os.path.join(self.dir, "osd", f"ceph-{osd_id}"), exist_ok=True)
        subprocess.run(["ceph-osd", "-c", self.conf, "-i", osd_id, "--mkfs", "--osd-uuid",
                        osd_uuid], check=True, capture_output=True, env=self.env, timeout=60)
        # The OSD is placed by hand: its own placement command at start can go out before
        # its client has the monitor map (auth "none"), is refused as 'wrong fsid' and the
        # OSD exits.
        self._setup("osd", "crush", "add", f"osd.{osd_id}", "1.0", "host=localhost",
                    "root=default")
        self._daemon("osd", ["ceph-osd", "-c", self.conf, "-f", "-i", osd_id])
        self._setup("osd", "pool", "create", "rbd", "8")
        self._setup("osd", "pool", "set", "rbd", "size", "1", "--yes-i-really-mean-it")
        self._setup("pool", "init", "rbd", prog="rbd")
        self._wait_writable()

    def _wait_writable(self, timeout=50):
        """Until the OSD is up and the pool's placement groups take writes: an image
        created and removed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs["osd"].poll() is not None:
                raise RuntimeError(f"ceph-osd exited (see {self.dir}/log)")
            r = self._ceph("create", "--size", "1M", "rbd/probe", prog="rbd", check=False,
                           timeout=timeout)
            if r.returncode == 0:
                self._ceph("rm", "--no-progress", "rbd/probe", prog="rbd")
                return
            time.sleep(0.2)
        raise RuntimeError(f"the Ceph cluster in {self.dir} takes no writes")

    def start_mon(self):
        self._daemon("mon", ["ceph-mon", "-c", self.conf, "-f", "-i", "a"])

    def kill(self, name):
        p = self.procs.get(name)
        if p and p.poll() is None:
            p.kill()
            p.wait()

    def stop(self):
        for name in list(self.procs):
            self.kill(name)
        self.procs = {}

    def rbd(self, *args, check=True, timeout=60):
        return self._ceph(*args, prog="rbd", check=check, timeout=timeout)


if __name__ == "__main__":
    # Blocked, so that sigwait takes them instead of the default action ending the program
    # before the daemons are stopped.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    c = Cluster(sys.argv[1])
    try:
        c.start()
        print(c.conf, flush=True)
        print(f"started in {c.startup_seconds:.1f}s", file=sys.stderr, flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        c.stop()
