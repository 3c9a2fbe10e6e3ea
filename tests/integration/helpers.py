"""Helpers for moat's integration tests: a test PKI made with the openssl CLI, a handle on a
running moat process, and small byte-level HTTP/1.1 and TLS clients.

The clients are deliberately thin: tests need to send malformed bytes and to see exactly what
came back (status, headers, whether the connection was closed), which high-level libraries
hide. Every network operation has a timeout so a hung server fails a test instead of the run.
"""

import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
CURL = shutil.which("curl") or "/usr/bin/curl"

# Words that mean a sanitizer caught something in the server (ASan, UBSan, LSan).
SANITIZER_MARKERS = ("AddressSanitizer", "runtime error:", "LeakSanitizer")

# Default timeouts for clients (seconds).
NET_TIMEOUT = 10.0


def run(cmd, timeout=30, check=True, **kw):
    """Run a command, capture its output as text, fail loudly with its stderr."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            "command failed (%d): %s\n%s" % (proc.returncode, " ".join(map(str, cmd)), proc.stderr)
        )
    return proc


_HANDED_OUT = {}  # port -> the open lock file that claims it for this process
_PORT_LOCKS = Path(os.environ.get("TMPDIR", "/tmp")) / "moat-test-ports"


def _claim(port):
    """Claim a port for this process, across processes: `make test` runs two pytest processes
    side by side, and moat binds with SO_REUSEPORT, so two servers given one number by two
    processes would both start and share its connections (seen: a handshake answered by the
    other run's server). The claim is an flock the kernel drops when this process ends."""
    if port in _HANDED_OUT:
        return False
    _PORT_LOCKS.mkdir(mode=0o1777, exist_ok=True)
    f = open(_PORT_LOCKS / str(port), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    _HANDED_OUT[port] = f
    return True


def _ephemeral_low():
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago, and not handed out before in this
    or any other test process (see _claim): the kernel may offer a just-closed port again, and
    two servers (or a server's HTTPS and redirect ports) given the same number fail to start. Taken below the kernel's
    ephemeral range, so that no client connection of another test can take it as its source
    port between now and the server's bind (seen: pebble's management port, "address already
    in use")."""
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(10000, max(10001, low - 1))
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if _claim(port):
            return port
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if _claim(port):
            return port
    raise AssertionError("no fresh free port in 300 tries")


def wait_for(pred, timeout, interval=0.05):
    """Poll pred() until it returns something truthy or timeout passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def log_after(m, mark, pattern, timeout=5.0):
    """The first match of `pattern` in a server's stderr written after offset `mark` (a length
    of m.stderr() taken before the action), waiting up to `timeout` for it."""
    return wait_for(lambda: re.search(pattern, m.stderr()[mark:]), timeout)


def clean_env(extra=None):
    """The environment for clients: no proxies (curl must talk to loopback directly)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env.update(extra or {})
    return env


# ----------------------------------------------------------------------------------------------
# Test PKI
# ----------------------------------------------------------------------------------------------

_REQ_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_inter]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

# `openssl ca` is the only OpenSSL 3.0 command that can backdate a certificate (-startdate).
_CA_CNF = """\
[ca]
default_ca = ca_default
[ca_default]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[policy_any]
commonName = supplied
"""


class Cert:
    """One issued certificate: its key, the leaf alone, and the leaf + intermediate chain."""

    def __init__(self, name, key, leaf, chain, kind):
        self.name = name
        self.key = Path(key)
        self.leaf = Path(leaf)
        self.chain = Path(chain)
        self.kind = kind  # "ec" or "rsa"

    @property
    def der(self):
        """The leaf in DER, to compare with what a TLS peer presented."""
        return ssl.PEM_cert_to_DER_cert(self.leaf.read_text())

    @property
    def serial(self):
        out = run([OPENSSL, "x509", "-in", self.leaf, "-noout", "-serial"]).stdout
        return out.strip().split("=", 1)[1].upper()

    def __repr__(self):
        return "Cert(%s, %s)" % (self.name, self.kind)


class Pki:
    """A root CA, an intermediate CA under it, and leaf certificates issued by the intermediate.

    Keys are written mode 0600 (moat warns about group/world-readable keys, which a test checks
    separately). Nothing here is committed: the whole thing is made per test session.
    """

    def __init__(self, base):
        self.dir = Path(base)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cnf = self.dir / "req.cnf"
        self.cnf.write_text(_REQ_CNF)
        self._n = 0
        self.root_key = self._key("root", "ec")
        self.root = self.dir / "root.pem"
        run([OPENSSL, "req", "-config", self.cnf, "-x509", "-new", "-key", self.root_key,
             "-subj", "/CN=moat test root", "-days", "3650", "-extensions", "v3_root",
             "-out", self.root])
        self.inter_key = self._key("inter", "ec")
        csr = self.dir / "inter.csr"
        run([OPENSSL, "req", "-config", self.cnf, "-new", "-key", self.inter_key,
             "-subj", "/CN=moat test intermediate", "-out", csr])
        self.inter = self.dir / "inter.pem"
        run([OPENSSL, "x509", "-req", "-in", csr, "-CA", self.root, "-CAkey", self.root_key,
             "-set_serial", "0x" + os.urandom(8).hex(), "-days", "3650",
             "-extfile", self.cnf, "-extensions", "v3_inter", "-out", self.inter])
        # `openssl ca` state for backdated certificates.
        self.ca_dir = self.dir / "ca"
        (self.ca_dir / "newcerts").mkdir(parents=True)
        (self.ca_dir / "index.txt").write_text("")
        (self.ca_dir / "serial").write_text(os.urandom(8).hex() + "\n")
        self.ca_cnf = self.dir / "ca.cnf"
        self.ca_cnf.write_text(_CA_CNF.format(dir=self.ca_dir))

    def _key(self, stem, kind):
        path = self.dir / (stem + ".key")
        if kind == "ec":
            args = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        elif kind == "rsa":
            args = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
        else:
            raise ValueError(kind)
        run([OPENSSL, "genpkey"] + args + ["-out", path])
        os.chmod(path, 0o600)
        return path

    def _ext(self, stem, names, kind):
        usage = "digitalSignature" if kind == "ec" else "digitalSignature,keyEncipherment"
        sans = ",".join("DNS:" + n for n in names)
        path = self.dir / (stem + ".ext")
        path.write_text(
            "basicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,%s\n"
            "extendedKeyUsage = serverAuth\n"
            "subjectAltName = %s\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid\n" % (usage, sans)
        )
        return path

    def issue(self, names, kind="ec", stem=None, days=30, startdate=None, enddate=None, key=None):
        """Issue a leaf for `names` (first one is the CN) signed by the intermediate.

        startdate/enddate (YYYYMMDDHHMMSSZ) make a backdated certificate through `openssl ca`.
        key: reuse an existing key file instead of making a new one.
        """
        if isinstance(names, str):
            names = [names]
        self._n += 1
        stem = stem or "%s-%s-%d" % (re.sub(r"[^a-z0-9.]", "_", names[0]), kind, self._n)
        if key is None:
            key = self._key(stem, kind)
        csr = self.dir / (stem + ".csr")
        run([OPENSSL, "req", "-config", self.cnf, "-new", "-key", key,
             "-subj", "/CN=" + names[0], "-out", csr])
        ext = self._ext(stem, names, kind)
        leaf = self.dir / (stem + ".pem")
        if startdate or enddate:
            run([OPENSSL, "ca", "-batch", "-config", self.ca_cnf, "-notext",
                 "-cert", self.inter, "-keyfile", self.inter_key, "-in", csr,
                 "-startdate", startdate, "-enddate", enddate, "-extfile", ext, "-out", leaf])
        else:
            run([OPENSSL, "x509", "-req", "-in", csr, "-CA", self.inter,
                 "-CAkey", self.inter_key, "-set_serial", "0x" + os.urandom(8).hex(),
                 "-days", str(days), "-extfile", ext, "-out", leaf])
        chain = self.dir / (stem + ".chain.pem")
        chain.write_text(leaf.read_text() + self.inter.read_text())
        return Cert(names[0], key, leaf, chain, kind)

    def make_all(self):
        """The certificates the suite uses, as attributes."""
        self.ec = self.issue(["example.test", "www.example.test"], "ec", stem="example-ec")
        self.rsa = self.issue(["example.test", "www.example.test"], "rsa", stem="example-rsa")
        self.wild = self.issue(["*.wild.test"], "ec", stem="wild")
        self.default = self.issue(["default.test"], "ec", stem="default")
        self.listing = self.issue(["listing.test"], "ec", stem="listing")
        self.nohsts = self.issue(["nohsts.test"], "ec", stem="nohsts")
        self.expired = self.issue(["example.test"], "ec", stem="expired",
                                  startdate="20200101000000Z", enddate="20200201000000Z")
        # A key that matches none of the certificates.
        self.other_key = self._key("other", "ec")
        # The EC leaf's key under a passphrase.
        self.encrypted_key = self.dir / "encrypted.key"
        run([OPENSSL, "pkey", "-in", self.ec.key, "-aes256", "-passout", "pass:secret",
             "-out", self.encrypted_key])
        os.chmod(self.encrypted_key, 0o600)
        # A chain file with only the leaf, although the intermediate issued it.
        self.leaf_only = self.dir / "leaf-only.pem"
        self.leaf_only.write_text(self.ec.leaf.read_text())
        return self


# ----------------------------------------------------------------------------------------------
# The server process
# ----------------------------------------------------------------------------------------------

_LIVE = []  # every Moat started and not yet reaped, for the per-test sanitizer check


class Moat:
    """One moat process: its working folder, config, ports, output files and PID.

    Output goes to files (never pipes, which a chatty server could fill and block on), so a
    test can read stderr while the server runs. stop() always reaps the process.
    """

    def __init__(self, binary, workdir, name="moat"):
        self.bin = str(binary)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.state = self.dir / "state"
        self.state.mkdir(mode=0o700, exist_ok=True)  # moat refuses a state folder others enter
        self.config = self.dir / "moat.conf"
        self.port = free_port()
        self.http_port = free_port()
        self.access_log = self.dir / "access.log"
        self.stdout_path = self.dir / "stdout.txt"
        self.stderr_path = self.dir / "stderr.txt"
        self.proc = None
        self.args = None
        self.returncode = None
        self.sanitizer_reported = False
        self.wait_ports = [self.port]

    # -- configuration ------------------------------------------------------------------------

    def write_config(self, text):
        self.config.write_text(text)
        return self.config

    # -- process ------------------------------------------------------------------------------

    def env(self):
        env = clean_env({"MOAT_STATE": str(self.state)})
        # Sanitizer reports must reach stderr and end the process where it happened.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        return env

    def start(self, args=None, wait=True, ports=None, timeout=20.0):
        """Start `moat ARGS` (default: `moat serve --config CONFIG`, or the previous ARGS on a
        restart) and wait until the ports accept TCP."""
        if args is None:
            # A restart repeats the previous command line; the first start reads the config.
            args = self.args if self.args is not None else ["serve", "--config", self.config]
        self.args = [str(a) for a in args]
        self.argv = [self.bin] + self.args
        self.returncode = None
        # Append so a restart keeps the earlier output for diagnosis.
        out = open(self.stdout_path, "ab")
        err = open(self.stderr_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.dir, env=self.env(), stdin=subprocess.DEVNULL,
                stdout=out, stderr=err,
            )
        finally:
            out.close()
            err.close()
        _LIVE.append(self)
        if ports is not None:
            self.wait_ports = list(ports)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        for port in self.wait_ports:
            while True:
                if self.proc.poll() is not None:
                    self.returncode = self.proc.returncode
                    raise AssertionError(
                        "moat exited with %d before listening on %d\n--- stderr ---\n%s"
                        % (self.returncode, port, self.stderr()[-4000:])
                    )
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                        break
                except OSError:
                    pass
                if time.monotonic() >= deadline:
                    raise AssertionError(
                        "moat did not listen on 127.0.0.1:%d within %.0fs\n--- stderr ---\n%s"
                        % (port, timeout, self.stderr()[-4000:])
                    )
                time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout):
        """Wait for the process to end; returns its exit code or None if it is still running."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=15.0):
        """SIGTERM, then SIGKILL after `timeout`; always reaps. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.returncode = self.proc.returncode
        if self in _LIVE:
            _LIVE.remove(self)
        return self.returncode

    # -- output -------------------------------------------------------------------------------

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def sanitizer_report(self):
        """The sanitizer output in stderr, or None."""
        text = self.stderr()
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                return text[max(0, i - 200): i + 3000]
        return None

    def access_lines(self, min_lines=1, timeout=5.0):
        """The access log's lines, waiting up to `timeout` for at least `min_lines`."""
        def lines():
            try:
                got = [l for l in self.access_log.read_text().splitlines() if l.strip()]
            except FileNotFoundError:
                got = []
            return got if len(got) >= min_lines else None

        return wait_for(lines, timeout, 0.1) or lines_or_empty(self.access_log)


def lines_or_empty(path):
    try:
        return [l for l in Path(path).read_text().splitlines() if l.strip()]
    except FileNotFoundError:
        return []


def live_servers():
    return list(_LIVE)


# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------


def standard_config(moat, pki, www, *, workers=2, timeouts=None, limits=None, access_log=None,
                    extra_sites="", extra_top="", example_certs=None):
    """The suite's usual config: example.test (ECDSA + RSA), *.wild.test, listing.test with
    `listing on`, nohsts.test with `hsts off`, and a default site, all over one docroot."""
    timeouts = timeouts or "head 2s; idle 3s; body 3s; write 10s; drain 10s; handshake 3s"
    limits = limits or ("request_line 8k; header_bytes 32k; header_fields 100; body 64k; "
                        "connections 1000")
    access_log = access_log or "%s json" % moat.access_log
    if example_certs is None:
        example_certs = [pki.ec, pki.rsa]
    certs = "".join("    cert %s %s\n" % (c.chain, c.key) for c in example_certs)
    return f"""\
# written by tests/integration
listen 127.0.0.1:{moat.port}
workers {workers}
state {moat.state}
access_log {access_log}
error_log stderr info
timeouts {{ {timeouts} }}
limits {{ {limits} }}
tls {{ tickets on; ticket_rotate 1h; session_cache 1024 }}
trust {pki.root}
{extra_top}
site example.test www.example.test {{
{certs}    root {www}
}}
site *.wild.test {{
    cert {pki.wild.chain} {pki.wild.key}
    root {www}
}}
site listing.test {{
    cert {pki.listing.chain} {pki.listing.key}
    root {www}
    listing on
}}
site nohsts.test {{
    cert {pki.nohsts.chain} {pki.nohsts.key}
    root {www}
    hsts off
}}
{extra_sites}
site * {{
    cert {pki.default.chain} {pki.default.key}
    root {www}
}}
"""


def make_www(base):
    """A docroot with known files, and a secret file just outside it that must never leak."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    secret = base / "secret.txt"
    secret.write_text("TOP-SECRET-5f1d3c0e outside the root\n")
    www = base / "www"
    www.mkdir()
    (www / "index.html").write_text("<!doctype html><title>moat</title><p>INDEX-PAGE</p>\n")
    (www / "a.txt").write_text("file A\n")
    (www / "b.txt").write_text("file B, a bit longer\n")
    (www / "c.txt").write_text("file C\n")
    (www / "digits.txt").write_text("0123456789abcdefghij")  # 20 bytes, for ranges
    (www / "style.css").write_text("body { color: black }\n")
    (www / "app.js").write_text("console.log('moat');\n")
    (www / "data.json").write_text('{"moat": true}\n')
    (www / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    (www / "pic.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 32)
    (www / "icon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>\n')
    (www / "blob.unknownext").write_bytes(b"\x00\x01\x02")
    (www / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (www / "with space.txt").write_text("space in the name\n")
    (www / "caf\u00e9.txt").write_text("utf-8 name\n")
    (www / ".hidden").write_text("HIDDEN-DOTFILE\n")
    (www / ".git").mkdir()
    (www / ".git" / "config").write_text("HIDDEN-GIT-CONFIG\n")
    (www / ".well-known" / "acme-challenge").mkdir(parents=True)
    (www / ".well-known" / "acme-challenge" / "token123").write_text("WELL-KNOWN-TOKEN\n")
    sub = www / "sub"
    sub.mkdir()
    (sub / "index.html").write_text("<p>SUB-INDEX</p>\n")
    (sub / "file.txt").write_text("sub file\n")
    (sub / ".secret").write_text("HIDDEN-IN-SUB\n")
    nolist = www / "nolist"
    nolist.mkdir()
    (nolist / "one.txt").write_text("one\n")
    (nolist / "two-entry.txt").write_text("two\n")
    (nolist / ".dotfile").write_text("DOT\n")
    (nolist / "x<b>&.txt").write_text("markup in the name\n")
    # Symlinks that lead out of the root.
    os.symlink(secret, www / "link-out.txt")
    os.symlink("../secret.txt", www / "rel-link-out.txt")
    os.symlink(base, www / "linkdir")
    return www, secret


# ----------------------------------------------------------------------------------------------
# Byte-level HTTP/1.1 over TLS or TCP
# ----------------------------------------------------------------------------------------------


class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (lower-case name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def has(self, name):
        return self.header(name) is not None

    def __repr__(self):
        return "Response(%d %s, %r, %d body bytes)" % (
            self.status, self.reason, self.headers, len(self.body))


class Closed(Exception):
    """The peer closed the connection before a full response arrived."""


_CLOSED_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
                  ssl.SSLEOFError, ssl.SSLZeroReturnError)


class Conn:
    """One client connection with a read buffer. TLS when `sni`/`tls` is given."""

    def __init__(self, port, *, tls=True, sni="example.test", cafile=None, verify=True,
                 host="127.0.0.1", timeout=NET_TIMEOUT, context=None, rcvbuf=None, source=None):
        self.timeout = timeout
        if rcvbuf is None:
            # source: the local address to connect from (127.0.0.2, ... pose as other clients)
            raw = socket.create_connection((host, port), timeout=timeout,
                                           source_address=(source, 0) if source else None)
        else:
            # A small receive window, set before connecting, makes a non-reading client stall
            # the server's writes quickly (write-timeout tests).
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            raw.settimeout(timeout)
            try:
                raw.connect((host, port))
            except OSError:
                raw.close()
                raise
        if tls:
            if context is None:
                context = client_context(cafile=cafile, verify=verify)
            try:
                self.sock = context.wrap_socket(raw, server_hostname=sni)
            except Exception:
                raw.close()
                raise
        else:
            self.sock = raw
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, timeout=None):
        """Read more bytes into the buffer; False at EOF."""
        if self.eof:
            return False
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        try:
            chunk = self.sock.recv(65536)
        except _CLOSED_ERRORS:
            chunk = b""
        except ssl.SSLError as e:
            # A TLS alert or a truncated record from a closing server is a close for us.
            chunk = b""
            self.last_ssl_error = e
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _read_until(self, marker, limit=1 << 20):
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise AssertionError("no %r within %d bytes" % (marker, limit))
            if not self._fill():
                raise Closed("connection closed; got %r" % self.buf[:200])
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise Closed("connection closed after %d of %d body bytes" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, method="GET"):
        """Read one response; HEAD, 1xx, 204 and 304 have no body (RFC 9112 §6.3)."""
        head = self._read_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        version, status = m.group(1).decode(), int(m.group(2))
        reason = (m.group(3) or b"").decode("latin-1")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise AssertionError("bad header line %r" % line)
            headers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
        resp = Response(version, status, reason, headers, b"", head)
        resp.trailers = []
        if method == "HEAD" or status < 200 or status in (204, 304):
            return resp
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if te and "chunked" in te.lower():
            body = b""
            while True:
                size_line = self._read_until(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    trailers = []
                    while True:  # trailer fields, then the empty line
                        line = self._read_until(b"\r\n")
                        if line == b"\r\n":
                            break
                        name, _, value = line[:-2].partition(b":")
                        trailers.append((name.decode("latin-1").lower(),
                                         value.strip().decode("latin-1")))
                    resp.trailers = trailers
                    break
                body += self._read_exact(size)
                self._read_exact(2)
            resp.body = body
        elif cl is not None:
            resp.body = self._read_exact(int(cl))
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def request(self, path="/", method="GET", host="example.test", headers=None, body=b""):
        """Send a well-formed request and read its response."""
        self.send(build_request(path, method, host, headers, body))
        return self.read_response(method)

    def is_closed(self, timeout=3.0):
        """True when the peer closes within `timeout` with no further bytes pending.

        Any bytes that arrive are kept in the buffer (and make this return False)."""
        if self.buf:
            return False
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                got = self._fill(timeout=left)
            except (socket.timeout, TimeoutError):
                return False
            if not got:
                return True
            if self.buf:
                return False


def client_context(cafile=None, verify=True, minv=None, maxv=None, ciphers=None, alpn=None):
    if verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(cafile))
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if minv is not None:
        ctx.minimum_version = minv
    if maxv is not None:
        ctx.maximum_version = maxv
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


def build_request(path="/", method="GET", host="example.test", headers=None, body=b""):
    if isinstance(body, str):
        body = body.encode()
    lines = ["%s %s HTTP/1.1" % (method, path)]
    if host is not None:
        lines.append("Host: " + host)
    hdrs = list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs):
        hdrs.append(("Content-Length", str(len(body))))
    for k, v in hdrs:
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def get(port, path="/", sni="example.test", pki=None, method="GET", headers=None, **kw):
    """One request on a fresh connection; returns the response."""
    verify = pki is not None
    with Conn(port, sni=sni, cafile=pki.root if pki else None, verify=verify, **kw) as c:
        return c.request(path, method=method, host=sni or "example.test", headers=headers)


def peer_cert_der(port, sni, **ctx_kw):
    """The DER leaf the server presents for `sni` (no verification), and the TLS version."""
    ctx = client_context(verify=False, **ctx_kw)
    with socket.create_connection(("127.0.0.1", port), timeout=NET_TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            return s.getpeercert(binary_form=True), s.version()


# ----------------------------------------------------------------------------------------------
# Real clients: curl and openssl s_client
# ----------------------------------------------------------------------------------------------


class CurlResult:
    def __init__(self, proc, body_path, head_path):
        self.rc = proc.returncode
        self.stderr = proc.stderr
        self.stdout = proc.stdout
        self.body = body_path.read_bytes() if body_path.exists() else b""
        self.head = head_path.read_bytes().decode("latin-1") if head_path.exists() else ""
        m = re.findall(r"^HTTP/\S+ (\d{3})", self.head, re.M)
        self.status = int(m[-1]) if m else None

    def header(self, name):
        """The value of `name` in the last response's head."""
        blocks = [b for b in self.head.split("\r\n\r\n") if b.strip()]
        if not blocks:
            return None
        for line in blocks[-1].split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == name.lower():
                return v.strip()
        return None


def curl(tmpdir, url, *args, port=None, host="example.test", cacert=None, timeout=20):
    """Run Debian's curl against 127.0.0.1 with --resolve for `host`; captures head and body."""
    tmpdir = Path(tmpdir)
    tmpdir.mkdir(parents=True, exist_ok=True)
    n = len(list(tmpdir.glob("curl-body-*")))
    body_path = tmpdir / ("curl-body-%d" % n)
    head_path = tmpdir / ("curl-head-%d" % n)
    cmd = [CURL, "-sS", "-v", "--noproxy", "*", "--max-time", str(timeout - 2),
           "-o", body_path, "-D", head_path]
    if port is not None and host:
        cmd += ["--resolve", "%s:%d:127.0.0.1" % (host, port)]
    if cacert is not None:
        cmd += ["--cacert", cacert]
    cmd += list(args) + [url]
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, env=clean_env(), stdin=subprocess.DEVNULL)
    return CurlResult(proc, body_path, head_path)


def s_client(port, *args, sni="example.test", send=None, timeout=15):
    """Run `openssl s_client` against 127.0.0.1:port. With `send`, the bytes are written and
    s_client keeps reading until the server closes (-ign_eof), so session tickets sent after
    the handshake are received. Returns the CompletedProcess (stdout has the handshake report)."""
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port]
    if sni is None:
        cmd.append("-noservername")
    else:
        cmd += ["-servername", sni]
    if send is not None:
        cmd.append("-ign_eof")
    cmd += [str(a) for a in args]
    return subprocess.run(cmd, input=(send or b""), capture_output=True, timeout=timeout,
                          env=clean_env())


def s_client_text(proc):
    return proc.stdout.decode("latin-1") + proc.stderr.decode("latin-1")


def s_client_leaf_der(proc):
    """The first certificate s_client printed, in DER (None when the handshake failed)."""
    text = proc.stdout.decode("latin-1")
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    return ssl.PEM_cert_to_DER_cert(m.group(0)) if m else None


def s_client_handshake_ok(proc):
    """True when s_client completed a handshake (it prints the negotiated cipher)."""
    text = proc.stdout.decode("latin-1")
    m = re.search(r"^\s*Cipher\s*:\s*(\S+)", text, re.M)
    if m and m.group(1) not in ("0000", "(NONE)"):
        return True
    m = re.search(r"Cipher is (\S+)", text)
    return bool(m and m.group(1) != "(NONE)")


def parse_json_lines(lines):
    out = []
    for l in lines:
        out.append(json.loads(l))
    return out


def check_refuses(moat_bin, tmp_path, text):
    """`moat serve --check` on a config of `text`: asserts that it is refused and returns
    what it said (stderr)."""
    cfg = Path(tmp_path) / "moat.conf"
    cfg.write_text(text)
    r = run([str(moat_bin), "serve", "--check", "--config", str(cfg)], check=False)
    assert r.returncode != 0, "accepted:\n" + text
    return r.stderr


def tcp_accepts(port, host="127.0.0.1"):
    """True when something accepts a TCP connection on host:port now."""
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def start_s_server(port, args):
    """`openssl s_server -accept 127.0.0.1:PORT ARGS...`, quiet, once it accepts connections.
    The caller ends it (terminate + wait)."""
    p = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-quiet"]
                         + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    if not wait_for(lambda: tcp_accepts(port), 10):
        p.kill()
        p.wait()
        raise AssertionError("openssl s_server did not start on port %d" % port)
    return p
