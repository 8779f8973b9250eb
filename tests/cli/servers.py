# SPDX-License-Identifier: MIT
"""Real network servers for the protocol tests, on loopback only.

Each server runs in the foreground as a child of the test process, listens on
a UNIX socket under the test's tmp_path or on 127.0.0.1 at a free high port,
and is stopped (and reaped) when the test ends. A missing server program is a
failure, not a skip: scripts/setup-deps.sh installs them all.
"""
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

LOOPBACK = "127.0.0.1"
_x509_cache = None  # (server, client) credential directories, shared by the session's tests


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

    def lighttpd(self, docroot, tls=False, access_log=None):
        """lighttpd serving DOCROOT (Range requests, HEAD), over TLS with a throwaway CA's
        certificate for 127.0.0.1 when tls is set, logging each request to access_log
        when given; .url is the base URL."""
        port = free_port()
        self.count += 1
        conf = self.dir / f"lighttpd{self.count}.conf"
        lines = [f'server.document-root = "{docroot}"', f'server.bind = "{LOOPBACK}"',
                 f"server.port = {port}", f'server.errorlog = "{self.dir}/lighttpd.err"',
                 'mimetype.assign = ( "" => "application/octet-stream" )']
        if access_log:
            # request, status, body bytes sent, then the headers the tests look for
            lines += ['server.modules += ( "mod_accesslog" )',
                      f'accesslog.filename = "{access_log}"',
                      'accesslog.format = "%r %>s %b cookie=%{Cookie}i auth=%{Authorization}i"']
        if tls:
            cert, key = self.certificate()
            lines += ['server.modules += ( "mod_openssl" )', 'ssl.engine = "enable"',
                      f'ssl.pemfile = "{cert}"', f'ssl.privkey = "{key}"']
        conf.write_text("\n".join(lines) + "\n")
        scheme = "https" if tls else "http"
        return self._spawn([need("lighttpd"), "-D", "-f", conf],
                           url=f"{scheme}://{LOOPBACK}:{port}", port=port)

    def python_http(self, docroot):
        """Python's http.server: no Range support (what qemu-img refuses)."""
        port = free_port()
        return self._spawn([sys.executable, "-m", "http.server", "--bind", LOOPBACK,
                            "--directory", docroot, str(port)],
                           url=f"http://{LOOPBACK}:{port}", port=port)

    def certificate(self):
        """A throwaway CA and a server certificate it signs for 127.0.0.1: (cert, key)."""
        d = self.dir / "pki"
        if (d / "server.crt").exists():
            return d / "server.crt", d / "server.key"
        d.mkdir()
        ssl = need("openssl")

        def run(*argv):
            subprocess.run([ssl, *map(str, argv)], check=True, capture_output=True)
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
            "/CN=qimg test CA", "-keyout", d / "ca.key", "-out", d / "ca.crt")
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={LOOPBACK}",
            "-keyout", d / "server.key", "-out", d / "server.csr")
        (d / "ext.cnf").write_text(f"subjectAltName = IP:{LOOPBACK}\n")
        run("x509", "-req", "-in", d / "server.csr", "-CA", d / "ca.crt", "-CAkey",
            d / "ca.key", "-CAcreateserial", "-days", "2", "-extfile", d / "ext.cnf",
            "-out", d / "server.crt")
        return d / "server.crt", d / "server.key"

    def x509_dirs(self):
        """QEMU's x509 credential directories, signed by a throwaway CA: (server, client,
        other) (ca-cert.pem plus server-cert/key.pem or client-cert/key.pem; the server's
        certificate names 127.0.0.1 and localhost, other's names only other.example)."""
        global _x509_cache
        if _x509_cache:  # made once per session: key generation is the slow part
            return _x509_cache
        d = self.dir / "x509"
        server, client, other = d / "server", d / "client", d / "other"
        for sub in (server, client, other):
            sub.mkdir(parents=True)
        ssl = need("openssl")

        def run(*argv):
            subprocess.run([ssl, *map(str, argv)], check=True, capture_output=True)
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
            "/CN=qimg test CA", "-keyout", d / "ca-key.pem", "-out", d / "ca-cert.pem")
        for sub, role, ext in ((server, "server", f"subjectAltName = IP:{LOOPBACK},DNS:localhost"
                                "\nextendedKeyUsage = serverAuth\n"),
                               (client, "client", "extendedKeyUsage = clientAuth\n"),
                               (other, "server", "subjectAltName = DNS:other.example\n"
                                "extendedKeyUsage = serverAuth\n")):
            (sub / "ca-cert.pem").write_bytes((d / "ca-cert.pem").read_bytes())
            run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN=qimg {role}",
                "-keyout", sub / f"{role}-key.pem", "-out", d / f"{role}.csr")
            (d / f"{role}.ext").write_text(ext)
            run("x509", "-req", "-in", d / f"{role}.csr", "-CA", d / "ca-cert.pem", "-CAkey",
                d / "ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", d / f"{role}.ext",
                "-out", sub / f"{role}-cert.pem")
        _x509_cache = (server, client, other)
        return _x509_cache

    def sshd(self):
        """sshd on 127.0.0.1 at a free port with a throwaway host key, accepting a
        throwaway user key from an ssh-agent of its own (.env has SSH_AUTH_SOCK for the
        clients); .fingerprint is the host key's SHA-256 in hex."""
        d = self.dir / "ssh"
        d.mkdir()
        keygen = need("ssh-keygen")
        for key in ("host_key", "user_key"):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", d / key], check=True)
        (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
        # sshd insists on its privilege separation directory (Debian makes it at boot).
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        port = free_port()
        (d / "sshd_config").write_text(
            f"Port {port}\nListenAddress {LOOPBACK}\nHostKey {d}/host_key\n"
            f"PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\nStrictModes no\n"
            "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n")
        agent_sock = d / "agent.sock"
        self._spawn([need("ssh-agent"), "-D", "-a", agent_sock], url=None, sock=str(agent_sock))
        env = dict(os.environ, SSH_AUTH_SOCK=str(agent_sock))
        subprocess.run([need("ssh-add"), "-q", d / "user_key"], env=env, check=True,
                       capture_output=True)
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        assert os.path.exists(sshd), "sshd is not installed: run scripts/setup-deps.sh"
        srv = self._spawn([sshd, "-D", "-e", "-f", d / "sshd_config"], url=None, port=port)
        srv.env = env
        line = subprocess.run([keygen, "-l", "-E", "sha256", "-f", d / "host_key.pub"],
                              check=True, capture_output=True, text=True).stdout
        b64 = line.split()[1].split(":", 1)[1]
        srv.fingerprint = base64.b64decode(b64 + "=" * (-len(b64) % 4)).hex()
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
