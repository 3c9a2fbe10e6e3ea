"""Helpers for the `moat get` / `moat trace` tests: the servers they talk to (openssl s_server,
nginx, a Python TLS echo server, a silent listener), the extra certificates the failure cases
need, and a runner for the client that returns exit code, output and the parsed JSON trace.

Every server here listens on 127.0.0.1 only, on a free port, and is stopped by its own PID.
"""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import OPENSSL, Pki, clean_env, free_port, run

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


# ----------------------------------------------------------------------------------------------
# Certificates
# ----------------------------------------------------------------------------------------------


class ClientPki(Pki):
    """The suite's PKI (root -> intermediate -> leaves) plus what the client's failure cases
    need: a self-signed leaf, a leaf only for clientAuth, a revoked leaf with its CRL, a leaf
    valid only in the future, a client certificate, and a second, unrelated root."""

    def _plain_ext(self, stem, text):
        path = self.dir / (stem + ".ext")
        path.write_text(text)
        return path

    def make_client_set(self):
        self.good = self.issue(["example.test", "www.example.test"], "ec", stem="c-good")
        self.expired = self.issue(["example.test"], "ec", stem="c-expired",
                                  startdate="20200101000000Z", enddate="20200201000000Z")
        self.future = self.issue(["example.test"], "ec", stem="c-future",
                                 startdate="20400101000000Z", enddate="20410101000000Z")
        # Revoked: issued through `openssl ca` so the CA database knows it, then revoked.
        self.revoked = self.issue(["example.test"], "ec", stem="c-revoked",
                                  startdate="20240101000000Z", enddate="20390101000000Z")
        self.crl_dir_setup()
        run([OPENSSL, "ca", "-batch", "-config", self.ca_cnf, "-cert", self.inter,
             "-keyfile", self.inter_key, "-revoke", self.revoked.leaf])
        self.crl = self.dir / "inter.crl.pem"
        run([OPENSSL, "ca", "-batch", "-config", self.ca_cnf, "-cert", self.inter,
             "-keyfile", self.inter_key, "-gencrl", "-crldays", "30", "-out", self.crl])
        # A CRL from the root: valid, but not from the leaves' issuer.
        self.root_crl = self.dir / "root.crl.pem"
        run([OPENSSL, "ca", "-batch", "-config", self.ca_cnf, "-cert", self.root,
             "-keyfile", self.root_key, "-gencrl", "-crldays", "30", "-out", self.root_crl])
        self.client_only = self._leaf_with_ext(
            "c-clientonly", ["example.test"],
            "basicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = clientAuth\n"
            "subjectAltName = DNS:example.test\n")
        self.client = self._leaf_with_ext(
            "c-client", ["moat test client"],
            "basicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = clientAuth\n")
        # A self-signed leaf for example.test.
        self.self_key = self._key("c-self", "ec")
        self.self_signed = self.dir / "c-self.pem"
        run([OPENSSL, "req", "-config", self.cnf, "-x509", "-new", "-key", self.self_key,
             "-subj", "/CN=example.test", "-days", "30",
             "-addext", "basicConstraints=critical,CA:FALSE",
             "-addext", "subjectAltName=DNS:example.test",
             "-addext", "extendedKeyUsage=serverAuth", "-out", self.self_signed])
        # An unrelated root, to refuse our client certificate with.
        self.other_root_key = self._key("c-other-root", "ec")
        self.other_root = self.dir / "c-other-root.pem"
        run([OPENSSL, "req", "-config", self.cnf, "-x509", "-new", "-key", self.other_root_key,
             "-subj", "/CN=unrelated root", "-days", "30", "-extensions", "v3_root",
             "-out", self.other_root])
        # Root + intermediate in one file: what a server trusts for client certificates.
        self.ca_bundle = self.dir / "c-ca-bundle.pem"
        self.ca_bundle.write_text(self.inter.read_text() + self.root.read_text())
        return self

    def crl_dir_setup(self):
        """`openssl ca -gencrl` needs a crlnumber file named in the CA's section."""
        crlnumber = self.ca_dir / "crlnumber"
        if crlnumber.exists():
            return
        crlnumber.write_text("1000\n")
        text = self.ca_cnf.read_text()
        text = text.replace("[policy_any]", "crlnumber = %s\ndefault_crl_days = 30\n\n"
                            "[policy_any]" % crlnumber, 1)
        self.ca_cnf.write_text(text)

    def _leaf_with_ext(self, stem, names, ext_text):
        key = self._key(stem, "ec")
        csr = self.dir / (stem + ".csr")
        run([OPENSSL, "req", "-config", self.cnf, "-new", "-key", key,
             "-subj", "/CN=" + names[0], "-out", csr])
        ext = self._plain_ext(stem, ext_text)
        leaf = self.dir / (stem + ".pem")
        run([OPENSSL, "x509", "-req", "-in", csr, "-CA", self.inter, "-CAkey", self.inter_key,
             "-set_serial", "0x" + os.urandom(8).hex(), "-days", "30", "-extfile", ext,
             "-out", leaf])
        chain = self.dir / (stem + ".chain.pem")
        chain.write_text(leaf.read_text() + self.inter.read_text())

        class C:
            pass

        c = C()
        c.key, c.leaf, c.chain = key, leaf, chain
        return c


_AIA_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""


class AiaPki:
    """A CA whose certificates say where their issuer can be downloaded (AIA caIssuers, RFC 5280
    4.2.2.1), as public CAs' do: root -> intermediate (naming the root's URL) -> leaves (each
    naming the URLs it is given). Made with the openssl CLI; the files a CA's web server would
    serve are in `served` (path -> bytes): /inter.der, /inter.pem, /inter.p7c (PKCS#7 with the
    intermediate and the root), /root.der."""

    def __init__(self, base, url_of):
        self.dir = Path(base)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cnf = self.dir / "aia.cnf"
        self.cnf.write_text(_AIA_CNF)
        self.root_key = self._key("aia-root")
        self.root = self.dir / "aia-root.pem"
        run([OPENSSL, "req", "-config", self.cnf, "-x509", "-new", "-key", self.root_key,
             "-subj", "/CN=aia test root", "-days", "30", "-extensions", "v3_root",
             "-out", self.root])
        self.inter_key = self._key("aia-inter")
        self.inter = self._sign("aia-inter", "/CN=aia test intermediate", self.inter_key,
                                self.root, self.root_key,
                                "basicConstraints = critical,CA:TRUE,pathlen:0\n"
                                "keyUsage = critical,keyCertSign,cRLSign\n"
                                "subjectKeyIdentifier = hash\n"
                                "authorityKeyIdentifier = keyid:always\n"
                                "authorityInfoAccess = caIssuers;URI:%s\n" % url_of("/root.der"))
        self.served = {
            "/inter.der": self._der(self.inter),
            "/inter.pem": self.inter.read_bytes(),
            "/root.der": self._der(self.root),
        }
        p7 = self.dir / "aia-inter.p7c"
        run([OPENSSL, "crl2pkcs7", "-nocrl", "-certfile", self.inter, "-certfile", self.root,
             "-outform", "DER", "-out", p7])
        self.served["/inter.p7c"] = p7.read_bytes()
        # What a server that also sends its root has after the leaf.
        self.inter_and_root = self.dir / "aia-inter-root.pem"
        self.inter_and_root.write_text(self.inter.read_text() + self.root.read_text())

    def _key(self, stem):
        path = self.dir / (stem + ".key")
        run([OPENSSL, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path])
        os.chmod(path, 0o600)
        return path

    def _der(self, pem):
        out = pem.with_suffix(".der")
        run([OPENSSL, "x509", "-in", pem, "-outform", "DER", "-out", out])
        return out.read_bytes()

    def _sign(self, stem, subj, key, ca, ca_key, ext_text):
        csr = self.dir / (stem + ".csr")
        run([OPENSSL, "req", "-config", self.cnf, "-new", "-key", key, "-subj", subj,
             "-out", csr])
        ext = self.dir / (stem + ".ext")
        ext.write_text(ext_text)
        out = self.dir / (stem + ".pem")
        run([OPENSSL, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
             "-set_serial", "0x" + os.urandom(8).hex(), "-days", "30", "-extfile", ext,
             "-out", out])
        return out

    def leaf(self, stem, aia_urls=(), name="example.test"):
        """A leaf for `name` issued by the intermediate, naming `aia_urls` as caIssuers (none:
        no AIA extension). Returns (certificate, key)."""
        key = self._key(stem)
        ext = ("basicConstraints = critical,CA:FALSE\n"
               "keyUsage = critical,digitalSignature\n"
               "extendedKeyUsage = serverAuth\n"
               "subjectAltName = DNS:%s\n"
               "subjectKeyIdentifier = hash\n"
               "authorityKeyIdentifier = keyid:always\n" % name)
        if aia_urls:
            ext += "authorityInfoAccess = %s\n" % ",".join("caIssuers;URI:" + u
                                                            for u in aia_urls)
        return self._sign(stem, "/CN=" + name, key, self.inter, self.inter_key, ext), key


class _AiaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        srv = self.server.owner
        srv.asked.append(self.path)
        if self.path == "/hang":
            # Took the request, never answers (until the test ends; bounded all the same).
            srv.release.wait(30)
            return
        if self.path == "/huge":
            chunk = b"\x30" * 65536
            self.send_response(200)
            self.send_header("Content-Type", "application/pkix-cert")
            self.send_header("Content-Length", str(160 * len(chunk)))  # 10 MiB
            self.end_headers()
            try:
                for _ in range(160):
                    self.wfile.write(chunk)
            except OSError:
                pass  # the client stopped reading at its limit and closed
            return
        if self.path in srv.redirects:
            self.send_response(302)
            self.send_header("Location", srv.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = srv.files.get(self.path)
        if body is None:
            body = b"not here\n"
            self.send_response(404)
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/pkix-cert")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class AiaServer:
    """A CA's plain-HTTP web server for AIA URLs, in threads of this process, on 127.0.0.1:
    `files` (path -> bytes), `redirects` (path -> Location), /hang (reads the request, never
    answers), /huge (10 MiB). `asked` lists the paths requested."""

    def __init__(self):
        self.files = {}
        self.redirects = {}
        self.asked = []
        self.release = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _AiaHandler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# ----------------------------------------------------------------------------------------------
# Servers
# ----------------------------------------------------------------------------------------------


def wait_port(port, proc=None, timeout=10.0, what="server"):
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise AssertionError("%s exited with %d before listening on %d"
                                 % (what, proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError("%s did not listen on %d" % (what, port))
            time.sleep(0.05)


class Proc:
    """A server process with output in files, stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, argv, workdir, name):
        self.argv = [str(a) for a in argv]
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.out = self.dir / (name + ".out")
        self.err = self.dir / (name + ".err")
        self.proc = None

    def start(self, port, wait=True):
        self.port = port
        with open(self.out, "ab") as o, open(self.err, "ab") as e:
            self.proc = subprocess.Popen(self.argv, cwd=self.dir, stdin=subprocess.PIPE,
                                         stdout=o, stderr=e, env=clean_env())
        if wait:
            wait_port(port, self.proc, what=self.name)
        return self

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stderr(self):
        return self.err.read_text(errors="replace") if self.err.exists() else ""


def s_server(workdir, cert, key, *args, chain=None, www=True):
    """`openssl s_server` on a free loopback port. With www (the default) it answers HTTP
    requests (`-www`), so a whole get succeeds when the handshake does."""
    port = free_port()
    argv = [OPENSSL, "s_server", "-accept", "127.0.0.1:%d" % port, "-cert", cert, "-key", key,
            "-naccept", "50"]
    if chain is not None:
        argv += ["-cert_chain", chain]
    if www:
        argv.append("-www")
    argv += [str(a) for a in args]
    p = Proc(argv, workdir, "s_server-%d" % port)
    return p.start(port)


NGINX_CONF = """\
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
    server {{
        listen 127.0.0.1:{port}{ssl};
        server_name example.test;
{extra}
        # No files: workers may run as an unprivileged user that cannot read test folders.
        location / {{ default_type text/plain; return 200 "nginx says hello\n"; }}
    }}
}}
"""


def nginx(workdir, root, port=None, cert=None, key=None, extra="", http2=False):
    """nginx in the foreground (`-g 'daemon off;'`) with its own prefix folder; TLS when cert
    is given, with HTTP/2 too (ALPN h2 and http/1.1) when http2. `extra` goes into the server
    block (ssl_protocols, ssl_verify_client...)."""
    if not os.path.exists(NGINX):
        pytest.skip("nginx not installed")
    port = port or free_port()
    d = Path(workdir) / ("nginx-%d" % port)
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    lines = extra
    if cert is not None:
        lines = "        ssl_certificate %s;\n        ssl_certificate_key %s;\n%s" % (
            cert, key, extra)
    conf = d / "nginx.conf"
    listen = (" ssl http2" if http2 else " ssl") if cert else ""
    conf.write_text(NGINX_CONF.format(dir=d, port=port, ssl=listen,
                                      extra=lines, root=root))
    p = Proc([NGINX, "-c", conf, "-p", d, "-g", "daemon off;"], d, "nginx")
    return p.start(port)


class Silent:
    """A listener that completes TCP handshakes (the kernel's backlog does) and never answers:
    the client's ClientHello waits forever."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def stop(self):
        self.sock.close()


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        doc = {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
        }
        out = json.dumps(doc).encode()
        status = 200
        if self.path.startswith("/status/"):
            status = int(self.path.split("/")[2])
        if self.path.startswith("/redirect/"):
            # /redirect/N/CODE -> /redirect/N-1/CODE ... -> /final
            parts = self.path.split("/")
            left, code = int(parts[2]), int(parts[3])
            page = b"<p>REDIRECT-PAGE moved</p>\n"
            self.send_response(code)
            self.send_header("Location", "/final" if left <= 1 else
                             "/redirect/%d/%d" % (left - 1, code))
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        if self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

    def log_message(self, *a):
        pass


class EchoServer:
    """An HTTPS server (Python's ssl) that answers each request with a JSON echo of it, plus
    /status/N, /redirect/N/CODE and /chunked, in a thread."""

    def __init__(self, cert_chain, key):
        self.httpd = HTTPServer(("127.0.0.1", 0), _Echo)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert_chain), str(key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ----------------------------------------------------------------------------------------------
# The client
# ----------------------------------------------------------------------------------------------


class ClientRun:
    def __init__(self, proc, argv):
        self.argv = argv
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr.decode("utf-8", "replace")
        self.text = proc.stdout.decode("utf-8", "replace")
        self._json = None

    @property
    def json(self):
        if self._json is None:
            self._json = json.loads(self.text)
        return self._json

    def __repr__(self):
        return "ClientRun(rc=%d, argv=%s)\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            self.rc, " ".join(self.argv), self.text[-3000:], self.stderr[-3000:])


def moat_client(moat_bin, state, *args, timeout=60):
    """Run `moat ARGS` as a client with its own (empty unless filled) state folder, so the
    machine's own local CA never changes what is trusted. Fails the test on a sanitizer
    report."""
    argv = [str(moat_bin)] + [str(a) for a in args]
    env = clean_env({"MOAT_STATE": str(state)})
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    proc = subprocess.run(argv, capture_output=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)
    r = ClientRun(proc, argv)
    for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert marker not in r.stderr, "sanitizer report:\n%r" % r
    return r


def resolve(host, port):
    return "--resolve=%s:%d:127.0.0.1" % (host, port)


def tls_messages(doc, hop=-1, handshake_only=True, with_header_only=True):
    """[(direction '>' or '<', type)] of a --json trace. handshake_only drops what came after
    both Finished; with_header_only=False drops what OpenSSL reported only as a record header
    (a received ChangeCipherSpec), which `s_client -msg` does not list either."""
    out = []
    for m in doc["hops"][hop]["tls"]["messages"]:
        if handshake_only and m["post_handshake"]:
            continue
        if not with_header_only and m["from_record_header"]:
            continue
        d = ">" if m["direction"] == "client->server" else "<"
        out.append((d, m["type"]))
    return out


_SCLIENT_TYPES = {
    "ClientHello": "ClientHello", "ServerHello": "ServerHello",
    "EncryptedExtensions": "EncryptedExtensions", "Certificate": "Certificate",
    "CertificateVerify": "CertificateVerify", "Finished": "Finished",
    "ServerKeyExchange": "ServerKeyExchange", "ServerHelloDone": "ServerHelloDone",
    "ClientKeyExchange": "ClientKeyExchange", "NewSessionTicket": "NewSessionTicket",
    "CertificateRequest": "CertificateRequest", "HelloRetryRequest": "HelloRetryRequest",
}


def s_client_resumed_messages(port, sni, workdir, *args):
    """The handshake messages of a second `s_client -msg` connection that offers the session
    of a first one (-sess_out / -sess_in); each sends a request so TLS 1.3 tickets arrive."""
    sess = Path(workdir) / ("sess-%d.pem" % port)
    req = b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % sni.encode()
    base = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", sni,
            "-groups", "X25519:P-256:P-384:P-521", "-cipher", "ECDHE+AESGCM:ECDHE+CHACHA20",
            "-alpn", "http/1.1", "-ign_eof"] + [str(a) for a in args]
    subprocess.run(base + ["-sess_out", sess], input=req, capture_output=True, timeout=20,
                   env=clean_env())
    return s_client_messages(port, sni, "-sess_in", sess, "-ign_eof", *args, send=req)


def s_client_messages(port, sni, *args, send=b""):
    """[(direction, type, length)] of the handshake messages `openssl s_client -msg` saw, up
    to and including the second Finished (what follows is post-handshake)."""
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", sni, "-msg",
           "-groups", "X25519:P-256:P-384:P-521", "-cipher", "ECDHE+AESGCM:ECDHE+CHACHA20",
           "-alpn", "http/1.1"] + [str(a) for a in args]
    proc = subprocess.run(cmd, input=send, capture_output=True, timeout=20, env=clean_env())
    text = proc.stdout.decode("latin-1")
    out = []
    finished = set()
    for line in text.splitlines():
        m = re.match(r"^(>>>|<<<) (?:TLS|SSL) [\d.]+, (Handshake|ChangeCipherSpec|Alert)"
                     r" \[length ([0-9a-f]+)\](?:, (\w+))?", line)
        if not m:
            continue
        d = ">" if m.group(1) == ">>>" else "<"
        kind = m.group(2)
        t = {"Handshake": _SCLIENT_TYPES.get(m.group(4) or "", m.group(4)),
             "ChangeCipherSpec": "ChangeCipherSpec", "Alert": "Alert"}[kind]
        out.append((d, t, int(m.group(3), 16)))
        if t == "Finished":
            finished.add(d)
            if len(finished) == 2:
                break
    return out
