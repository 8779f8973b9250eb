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
        self.dir = os.path.abspath(str(directory))
        self.conf = os.path.join(self.dir, "ceph.conf")
        self.port = _free_port()
        self.store_bytes = store_mib << 20
        self.procs = {}
        self.env = dict(os.environ, CEPH_CONF=self.conf)
        self.startup_seconds = None

    def _ceph(self, *args, timeout=60, check=True, prog="ceph"):
        r = subprocess.run([prog, "-c", self.conf, *args], capture_output=True, text=True,
                           timeout=timeout, env=self.env)
        if check and r.returncode:
            raise RuntimeError(f"{prog} {' '.join(args)}: rc={r.returncode} {r.stderr.strip()}")
        return r

    def _daemon(self, name, argv):
        log = open(os.path.join(self.dir, "log", f"{name}.out"), "wb")
        self.procs[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)
        log.close()

    def start(self):
        t0 = time.monotonic()
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
        osd_uuid = str(uuid.uuid4())
        osd_id = self._ceph("osd", "new", osd_uuid).stdout.strip()
        os.makedirs(os.path.join(self.dir, "osd", f"ceph-{osd_id}"), exist_ok=True)
        subprocess.run(["ceph-osd", "-c", self.conf, "-i", osd_id, "--mkfs", "--osd-uuid",
                        osd_uuid], check=True, capture_output=True, env=self.env)
        self._daemon("osd", ["ceph-osd", "-c", self.conf, "-f", "-i", osd_id])
        self._ceph("osd", "pool", "create", "rbd", "8")
        self._ceph("osd", "pool", "set", "rbd", "size", "1", "--yes-i-really-mean-it")
        self._ceph("pool", "init", "rbd", prog="rbd")
        self.startup_seconds = time.monotonic() - t0
        return self

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

    def rbd(self, *args, check=True, timeout=60):
        return self._ceph(*args, prog="rbd", check=check, timeout=timeout)


if __name__ == "__main__":
    c = Cluster(sys.argv[1])
    try:
        c.start()
        print(c.conf, flush=True)
        print(f"started in {c.startup_seconds:.1f}s", file=sys.stderr, flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        c.stop()
