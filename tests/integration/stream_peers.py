"""Peers for the `stream` listener tests (test_stream.py): the real servers moat pipes bytes to,
each on a free port, each stopped by the PID or the thread this module started (never by name).

- Redis        Debian's redis-server, plain TCP, no persistence.
- Mta          a plain SMTP server (python3-aiosmtpd) that records every message it accepts.
- Postgres     a throwaway cluster (initdb, trust auth on 127.0.0.1, ssl off), run as the
               `postgres` system user when the tests run as root (postgres refuses root).
- EchoServer   a threaded TCP (or TLS) line server that answers `NAME: LINE` for each line,
               closes on `QUIT`, sends timed ticks on `TICK N`, and records what it got; with
               proxy_v2 it first reads a PROXY protocol v2 header and answers what it was told.
- SServer      `openssl s_server -www` with one certificate (for SNI passthrough).

and the config pieces: stream_config() (a minimal moat config with one site, which moat needs
today, plus the stream blocks) and stream_block().
"""

import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from helpers import OPENSSL, Cert, clean_env, free_port, log_after, run, wait_for

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PSQL = shutil.which("psql") or str(PG_BIN / "psql")


# -- moat config -------------------------------------------------------------------------------


def stream_block(name, port, *lines):
    """`stream NAME { listen 127.0.0.1:PORT; LINES... }` (PORT may be a list of ports)."""
    ports = port if isinstance(port, (list, tuple)) else [port]
    listen = " ".join("127.0.0.1:%d" % p for p in ports)
    body = "".join("    %s\n" % l for l in lines)
    return "stream %s {\n    listen %s\n%s}\n" % (name, listen, body)


def stream_config(m, pki, docroot, *streams, extra=""):
    """A moat config: the HTTPS listener with one catch-all site (the stream listeners are
    separate from it), error log at info on stderr, and the given stream/upstream blocks.
    No global `trust`: the stream's own `ca` must be what verifies tls:// targets."""
    return (
        "# written by tests/integration/test_stream.py\n"
        "listen 127.0.0.1:%d\nworkers 1\nstate %s\naccess_log %s json\nerror_log stderr info\n"
        "timeouts { head 5s; idle 10s; body 10s; write 10s; drain 2s; handshake 5s }\n"
        "site * {\n    cert %s %s\n    root %s\n}\n%s"
        % (m.port, m.state, m.access_log, pki.default.chain, pki.default.key, docroot, extra)
        + "".join(streams)
    )


def start_moat(m, conf, stream_ports):
    """Write `conf`, start moat and wait until the HTTPS port and every stream port accept."""
    m.write_config(conf)
    m.start(ports=[m.port] + list(stream_ports))
    return m


def stream_logged(m, mark, name, target, timeout=5.0):
    """The log line (after offset `mark`) of a finished connection on stream `name` to
    `target` (a regex: the HOST:PORT, or alternatives)."""
    return log_after(m, mark, r"stream %s\b[^\n]*(?:%s)[^\n]*" % (re.escape(name), target),
                     timeout)


def issue_with_sans(pki, stem, cn, sans, eku="serverAuth"):
    """A leaf from the suite's intermediate with explicit SANs ("IP:127.0.0.1", "DNS:x"):
    Pki.issue only writes DNS names, and a tls://127.0.0.1:PORT target is checked against an
    IP SAN."""
    key = pki._key(stem, "ec")
    csr = pki.dir / (stem + ".csr")
    run([OPENSSL, "req", "-config", pki.cnf, "-new", "-key", key, "-subj", "/CN=" + cn,
         "-out", csr])
    ext = pki.dir / (stem + ".ext")
    ext.write_text("basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
                   "extendedKeyUsage = %s\nsubjectAltName = %s\n"
                   "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
                   % (eku, ",".join(sans)))
    leaf = pki.dir / (stem + ".pem")
    run([OPENSSL, "x509", "-req", "-in", csr, "-CA", pki.inter, "-CAkey", pki.inter_key,
         "-set_serial", "0x" + os.urandom(8).hex(), "-days", "30", "-extfile", ext,
         "-out", leaf])
    chain = pki.dir / (stem + ".chain.pem")
    chain.write_text(leaf.read_text() + pki.inter.read_text())
    return Cert(cn, key, leaf, chain, "ec")


def port_open(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def stop_process(proc, sig=signal.SIGTERM, timeout=10):
    """Stop a process this module started, by its PID (its own session, so a child it forked
    goes with it)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait(timeout=5)


# -- Redis ---------------------------------------------------------------------------------------


class Redis:
    def __init__(self, base):
        if not os.access(REDIS_SERVER, os.X_OK) or not os.access(REDIS_CLI, os.X_OK):
            pytest.skip("redis-server / redis-cli not installed (Debian packages redis-server, "
                        "redis-tools)")
        self.port = free_port()
        self.dir = Path(base)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "redis.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        ok = wait_for(lambda: self.proc.poll() is None and self.cli("PING").stdout.strip()
                      == "PONG", 10, 0.1)
        if not ok:
            self.stop()
            raise AssertionError("redis-server did not start:\n" + self.log_path.read_text())

    def cli(self, *args, stdin=None):
        """redis-cli straight to the server (not through moat)."""
        return subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port)]
                              + [str(a) for a in args], input=stdin, capture_output=True,
                              text=True, timeout=10, env=clean_env())

    def stop(self):
        stop_process(self.proc)


# -- SMTP ----------------------------------------------------------------------------------------


class _Recorder:
    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                  "data": envelope.original_content or envelope.content,
                                  "peer": session.peer})
        return "250 OK queued"


class Mta:
    """A plain SMTP server on a free port (aiosmtpd's thread); its greeting and EHLO answer
    name `mta.internal`, so a test can tell its lines from moat's."""

    HOSTNAME = "mta.internal"

    def __init__(self):
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            pytest.skip("aiosmtpd not installed (Debian package python3-aiosmtpd)")
        self.port = free_port()
        self.handler = _Recorder()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     server_hostname=self.HOSTNAME)
        self.controller.start()

    @property
    def messages(self):
        with self.handler.lock:
            return list(self.handler.messages)

    def wait_message(self, token, timeout=5.0):
        """The recorded message whose content holds `token`, waiting up to `timeout`."""
        def find():
            for msg in self.messages:
                data = msg["data"]
                data = data if isinstance(data, bytes) else data.encode()
                if token.encode() in data:
                    return msg
            return None
        return wait_for(find, timeout)

    def stop(self):
        self.controller.stop()


# -- PostgreSQL ----------------------------------------------------------------------------------


class Postgres:
    """A cluster in a fresh folder under /tmp (pytest's own tmp folders are mode 0700 root, which
    the postgres user cannot enter). As root, initdb and postgres run as the `postgres` system
    user (Popen's user=/group=, so the PID we hold is the postmaster's own)."""

    def __init__(self):
        initdb = PG_BIN / "initdb"
        postgres = PG_BIN / "postgres"
        if not (initdb.exists() and postgres.exists() and os.access(PSQL, os.X_OK)):
            pytest.skip("PostgreSQL 15 not installed (Debian packages postgresql-15, "
                        "postgresql-client-15)")
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="moat-stream-pg-"))
        self.data = self.base / "data"
        self.sock_dir = self.base / "sock"
        self.log_path = self.base / "postgres.log"
        self.proc = None
        self.as_user = {}
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("no postgres system user (made by Debian's postgresql-common)")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            self.as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self.sock_dir.mkdir()
        if self.as_user:
            os.chown(self.sock_dir, self.as_user["user"], self.as_user["group"])
        env = clean_env({"LC_ALL": "C", "LANG": "C"})
        init = subprocess.run(
            [str(initdb), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--no-sync", "--no-instructions"],
            capture_output=True, text=True, timeout=120, cwd=self.base, env=env,
            stdin=subprocess.DEVNULL, **self.as_user)
        if init.returncode != 0:
            self.cleanup()
            raise AssertionError("initdb failed:\n" + init.stdout + init.stderr)
        # trust for 127.0.0.1 only (initdb -A trust writes the same; said again to be sure).
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# moat stream tests\nlisten_addresses = '127.0.0.1'\nport = %d\n"
                    "unix_socket_directories = '%s'\nssl = off\nfsync = off\n"
                    "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 20\n"
                    "shared_buffers = 16MB\n" % (self.port, self.sock_dir))
        log = open(self.log_path, "ab")
        if self.as_user:
            os.chown(self.log_path, self.as_user["user"], self.as_user["group"])
        try:
            self.proc = subprocess.Popen([str(postgres), "-D", str(self.data)], cwd=self.base,
                                         env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True, **self.as_user)
        finally:
            log.close()
        ok = wait_for(lambda: self.proc.poll() is None and self.direct("select 1").stdout
                      .strip() == "1", 30, 0.2)
        if not ok:
            self.stop()
            raise AssertionError("postgres did not start:\n" + self.log_path.read_text()[-3000:])

    def direct(self, sql):
        """psql straight to the server over TCP (not through moat)."""
        return psql("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable"
                    % self.port, sql)

    def stop(self):
        # SIGINT: fast shutdown (SIGTERM would wait for clients).
        stop_process(self.proc, sig=signal.SIGINT, timeout=15)
        self.cleanup()

    def cleanup(self):
        shutil.rmtree(self.base, ignore_errors=True)


def psql(conninfo, sql, timeout=20):
    env = clean_env({"PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "moat-stream-test",
                     "PSQLRC": "/dev/null", "LC_ALL": "C"})
    env.pop("PGPASSWORD", None)
    return subprocess.run([PSQL, "-X", "-tA", conninfo, "-c", sql], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


# -- TCP / TLS line servers ------------------------------------------------------------------------

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def _recv_exact(conn, n):
    data = b""
    while len(data) < n:
        piece = conn.recv(n - len(data))
        if not piece:
            raise ConnectionError("closed after %d of %d bytes" % (len(data), n))
        data += piece
    return data


def parse_pp2(conn):
    """Read a PROXY protocol v2 header from `conn`: a dict with command, family, src, dst
    (ADDR:PORT strings for TCP over IPv4/IPv6), or {"error": ..., "head": bytes} when the first
    bytes are not one."""
    head = b""
    while len(head) < 16:
        piece = conn.recv(16 - len(head))
        if not piece:
            break
        head += piece
        if not PP2_SIG.startswith(head[:12]):
            return {"error": "no PROXY v2 signature", "head": head}
    if len(head) < 16 or head[:12] != PP2_SIG:
        return {"error": "no PROXY v2 signature", "head": head}
    ver_cmd, fam, length = head[12], head[13], struct.unpack(">H", head[14:16])[0]
    body = _recv_exact(conn, length)
    out = {"version": ver_cmd >> 4, "command": "PROXY" if ver_cmd & 0xF == 1 else "LOCAL",
           "family": fam, "length": length}
    if out["version"] != 2:
        out["error"] = "version %d" % out["version"]
    elif out["command"] == "PROXY" and fam == 0x11 and length >= 12:
        src, dst = socket.inet_ntop(socket.AF_INET, body[0:4]), socket.inet_ntop(
            socket.AF_INET, body[4:8])
        sport, dport = struct.unpack(">HH", body[8:12])
        out.update(src="%s:%d" % (src, sport), dst="%s:%d" % (dst, dport))
    elif out["command"] == "PROXY" and fam == 0x21 and length >= 36:
        src, dst = socket.inet_ntop(socket.AF_INET6, body[0:16]), socket.inet_ntop(
            socket.AF_INET6, body[16:32])
        sport, dport = struct.unpack(">HH", body[32:36])
        out.update(src="[%s]:%d" % (src, sport), dst="[%s]:%d" % (dst, dport))
    return out


class EchoServer:
    """A line server on 127.0.0.1:port, one thread per connection.

    Each line LINE is answered `NAME: LINE`; `QUIT` closes the connection; `TICK N` sends N
    lines `NAME: tick I` 0.3 s apart without reading. With `tls` (an ssl.SSLContext) it does
    TLS first (and records the SNI it was asked for); with `proxy_v2` it first reads a PROXY v2
    header and answers `PP src=... dst=...` (or `PP LOCAL`, or `PP none: ...`)."""

    def __init__(self, name, tls=None, proxy_v2=False):
        self.name = name
        self.tls = tls
        self.proxy_v2 = proxy_v2
        self.port = free_port()
        self.lines = []  # every line received, over all connections
        self.peers = []  # (peer address, extra) per accepted connection that said something
        self.headers = []  # PROXY headers read
        self.snis = []
        self.accepted = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        if tls is not None:
            tls.sni_callback = self._sni
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._accept, daemon=True, name="echo-" + name)
        self.thread.start()

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def _sni(self, sslobj, server_name, ctx):
        with self.lock:
            self.snis.append(server_name)

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True).start()

    def _serve(self, conn, peer):
        conn.settimeout(30)
        try:
            if self.proxy_v2:
                hdr = parse_pp2(conn)
                with self.lock:
                    self.headers.append(hdr)
                if "error" in hdr:
                    conn.sendall(b"PP none: %s %r\n" % (hdr["error"].encode(), hdr.get("head")))
                    return
                if hdr["command"] == "LOCAL":
                    conn.sendall(b"PP LOCAL\n")
                else:
                    conn.sendall(b"PP src=%s dst=%s\n" % (hdr.get("src", "?").encode(),
                                                            hdr.get("dst", "?").encode()))
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            buf = b""
            while True:
                piece = conn.recv(65536)
                if not piece:
                    return
                buf += piece
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    line = line.rstrip(b"\r")
                    with self.lock:
                        self.lines.append(line.decode("latin-1"))
                    if line == b"QUIT":
                        return
                    if line.startswith(b"TICK "):
                        for i in range(int(line[5:])):
                            conn.sendall(b"%s: tick %d\n" % (self.name.encode(), i))
                            time.sleep(0.3)
                        continue
                    conn.sendall(b"%s: %s\n" % (self.name.encode(), line))
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def saw(self, token):
        with self.lock:
            return any(token in l for l in self.lines)

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def tls_server_context(cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert.chain), str(cert.key))
    return ctx


class LineClient:
    """A plain TCP client to a stream port: send lines, read answer lines."""

    def __init__(self, port, source=None, timeout=5.0, sock=None):
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                            source_address=(source, 0) if source else None)
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def readline(self, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            piece = self.sock.recv(65536)
            if not piece:
                raise ConnectionError("closed; got %r" % self.buf)
            self.buf += piece
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("latin-1")

    def ask(self, line):
        self.send(line)
        return self.readline()

    def closed_within(self, timeout):
        """True when the peer closes (EOF or reset) within `timeout` without sending bytes."""
        self.sock.settimeout(timeout)
        try:
            piece = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return True
        except (socket.timeout, TimeoutError):
            return False
        if piece:
            self.buf += piece
            return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- openssl s_server ------------------------------------------------------------------------------


class SServer:
    """`openssl s_server -www` presenting `cert` (leaf + the suite's intermediate)."""

    def __init__(self, pki, cert, base, name):
        self.name = name
        self.cert = cert
        self.port = free_port()
        self.log_path = Path(base) / ("s_server-%s.log" % name)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [OPENSSL, "s_server", "-accept", "127.0.0.1:%d" % self.port, "-cert",
                 str(cert.leaf), "-key", str(cert.key), "-cert_chain", str(pki.inter), "-www"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        if not wait_for(lambda: self.proc.poll() is None and port_open(self.port), 10):
            self.stop()
            raise AssertionError("s_server %s did not start:\n%s"
                                 % (name, self.log_path.read_text()))

    def stop(self):
        stop_process(self.proc)


# -- TLS by hand ------------------------------------------------------------------------------------


def tls_in_pieces(sock, ctx, sni, piece=40, pause=0.02, timeout=10.0):
    """A TLS handshake over `sock` whose first flight (the ClientHello) goes out in `piece`-byte
    writes `pause` seconds apart, as a slow or fragmenting network would deliver it. Returns
    (SSLObject, incoming MemoryBIO, outgoing MemoryBIO) after the handshake."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    sock.settimeout(timeout)
    first = True
    while True:
        try:
            obj.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        data = out.read()
        if data:
            if first:
                for i in range(0, len(data), piece):
                    sock.sendall(data[i:i + piece])
                    time.sleep(pause)
                first = False
            else:
                sock.sendall(data)
        if done:
            return obj, inc, out
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        inc.write(chunk)
