# SPDX-License-Identifier: MIT
"""Real network servers for the protocol tests, on loopback only.

Each server runs in the foreground as a child of the test process, listens on
a UNIX socket under the test's tmp_path or on 127.0.0.1 at a free high port,
and is stopped (and reaped) when the test ends. A missing server program is a
failure, not a skip: scripts/setup-deps.sh installs them all.
"""
import shutil
import signal
import socket
import subprocess
import time

import pytest

LOOPBACK = "127.0.0.1"


def free_port():
    """A free TCP port on the loopback interface (high, chosen by the kernel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def need(program):
    path = shutil.which(program)
    assert path, f"{program} is not installed: run scripts/setup-deps.sh"
    return path


def _reachable(unix_path=None, port=None):
    try:
        if unix_path:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(unix_path)
        else:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                pass
        return True
    except OSError:
        return False


class Server:
    """One running server: its process and the name a client opens it by."""

    def __init__(self, proc, url, sock=None, port=None, log=None):
        self.proc, self.url, self.sock, self.port, self.log = proc, url, sock, port, log

    def wait_ready(self, timeout=10):
        """Wait until the server accepts connections (probing may count as a client)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early: {self.proc.args}")
            if _reachable(unix_path=self.sock, port=self.port):
                return self
            time.sleep(0.02)
        raise AssertionError(f"server not ready: {self.proc.args}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ServerPool:
    """Starts servers for one test and stops every one of them afterwards."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.servers = []
        self.count = 0

    def _spawn(self, argv, **kw):
        proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        srv = Server(proc, **kw)
        self.servers.append(srv)
        return srv.wait_ready()

    def _endpoint(self, tcp):
        self.count += 1
        if tcp:
            return None, free_port()
        return str(self.dir / f"nbd{self.count}.sock"), None

    @staticmethod
    def _nbd_url(sock, port, export):
        if sock:
            return f"nbd+unix:///{export}?socket={sock}" if export else f"nbd+unix://?socket={sock}"
        return f"nbd://{LOOPBACK}:{port}/{export}" if export else f"nbd://{LOOPBACK}:{port}"

    def nbdkit(self, plugin, *args, filters=(), tcp=False, export="", readonly=False):
        """nbdkit PLUGIN ARGS... (memory, file, sparse-random, pattern; filters such as error)."""
        sock, port = self._endpoint(tcp)
        argv = [need("nbdkit"), "--foreground", "--exit-with-parent"]
        argv += ["-i", LOOPBACK, "-p", port] if tcp else ["-U", sock]
        if readonly:
            argv.append("-r")
        for f in filters:
            argv.append(f"--filter={f}")
        argv += [plugin, *args]
        return self._spawn(argv, url=self._nbd_url(sock, port, export), sock=sock, port=port)

    def qemu_nbd(self, image, fmt, export="", extra=(), tcp=False):
        """qemu-nbd serving IMAGE (format FMT) until the test ends, to any number of clients
        one after another (--persistent)."""
        sock, port = self._endpoint(tcp)
        argv = [need("qemu-nbd"), "--persistent", "-f", fmt]
        argv += ["-b", LOOPBACK, "-p", port] if tcp else ["-k", sock]
        if export:
            argv += ["-x", export]
        argv += [*extra, image]
        srv = self._spawn(argv, url=self._nbd_url(sock, port, export), sock=sock, port=port)
        return srv

    def stop_all(self):
        for srv in reversed(self.servers):
            srv.stop()
        self.servers.clear()


@pytest.fixture
def servers(tmp_path):
    pool = ServerPool(tmp_path)
    yield pool
    pool.stop_all()
