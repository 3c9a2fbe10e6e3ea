"""Pebble (Let's Encrypt's test ACME server, Debian's `pebble`) and pebble-challtestsrv (its
DNS) for the ACME tests, started on loopback with a config the test writes.

Pebble serves its ACME directory over HTTPS with a certificate the test issues from a CA of
its own (made with `moat ca`), so moat trusts exactly that CA for the directory (--ca-bundle)
and verifies issued certificates against the root Pebble hands out on its management port.
Pebble's validator resolves every name through challtestsrv, which answers A queries with
127.0.0.1, and connects to the HTTP-01 and TLS-ALPN-01 ports the config names.
"""

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import free_port, run, wait_for


def have_pebble():
    return shutil.which("pebble") is not None and shutil.which("pebble-challtestsrv") is not None


def _port_open(port):
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def pebble_factory(moat_bin, tmp_path):
    """Factory: pebble_factory(name, **Pebble options) -> a started Pebble, stopped at the end
    of the test. Import it into a test module to use it."""
    made = []

    def new(name="pebble", **kw):
        p = Pebble(moat_bin, tmp_path / name, **kw).start()
        made.append(p)
        return p

    yield new
    for p in made:
        p.stop()


class Pebble:
    """One pebble + challtestsrv pair. http_port / tls_port: where Pebble's validator connects
    for HTTP-01 and TLS-ALPN-01 (moat listens there)."""

    def __init__(self, moat_bin, workdir, env=None, eab=None, dns_server=None, validity_s=None,
                 http_port=None, tls_port=None):
        self.moat_bin = str(moat_bin)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.mgmt_port = free_port()
        self.http_port = http_port or free_port()
        self.tls_port = tls_port or free_port()
        self.validity_s = validity_s
        self.dns_port = free_port()
        self.cts_mgmt_port = free_port()
        self.env = dict(env or {})
        self.eab = eab
        self.dns_server = dns_server  # "127.0.0.1:PORT" of a real DNS server instead of cts
        self.procs = []
        self.ca_bundle = self.dir / "ca" / "root.pem"

    @property
    def dns_addr(self):
        """The DNS server Pebble resolves names with: moat's pre-flight checks ask it too."""
        return self.dns_server or "127.0.0.1:%d" % self.dns_port

    @property
    def directory(self):
        return "https://127.0.0.1:%d/dir" % self.port

    def start(self):
        ca = self.dir / "ca"
        run([self.moat_bin, "ca", "init", "--dir", ca, "--name", "pebble front CA"])
        run([self.moat_bin, "cert", "issue", "localhost", "127.0.0.1", "--ca", ca,
             "--out", self.dir / "front"])
        conf = {
            "pebble": {
                "listenAddress": "127.0.0.1:%d" % self.port,
                "managementListenAddress": "127.0.0.1:%d" % self.mgmt_port,
                "certificate": str(self.dir / "front.fullchain.pem"),
                "privateKey": str(self.dir / "front.key"),
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": bool(self.eab),
            }
        }
        if self.eab:
            conf["pebble"]["externalAccountMACKeys"] = self.eab
        if self.validity_s:
            conf["pebble"]["certificateValidityPeriod"] = self.validity_s
        (self.dir / "pebble.json").write_text(json.dumps(conf))
        env = dict(os.environ)
        env.update({"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"})
        env.update(self.env)
        dns = self.dns_server
        if dns is None:
            cts_log = open(self.dir / "challtestsrv.log", "ab")
            self.procs.append(subprocess.Popen(
                ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                 "-dns01", "127.0.0.1:%d" % self.dns_port, "-http01", "", "-https01", "",
                 "-tlsalpn01", "", "-management", "127.0.0.1:%d" % self.cts_mgmt_port],
                stdin=subprocess.DEVNULL, stdout=cts_log, stderr=cts_log))
            cts_log.close()
            dns = "127.0.0.1:%d" % self.dns_port
            assert wait_for(lambda: _port_open(self.cts_mgmt_port), 10), "challtestsrv did not start"
        log = open(self.dir / "pebble.log", "ab")
        self.procs.append(subprocess.Popen(
            ["pebble", "-config", str(self.dir / "pebble.json"), "-dnsserver", dns],
            cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log))
        log.close()
        assert wait_for(lambda: _port_open(self.port) and _port_open(self.mgmt_port), 15), \
            "pebble did not start:\n" + self.log()
        return self

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []

    def log(self):
        try:
            return (self.dir / "pebble.log").read_text(errors="replace")
        except OSError:
            return ""

    def _mgmt(self, path):
        ctx = ssl.create_default_context(cafile=str(self.ca_bundle))
        with urllib.request.urlopen("https://127.0.0.1:%d%s" % (self.mgmt_port, path),
                                    context=ctx, timeout=10) as r:
            return r.read().decode()

    def root(self, n=0):
        """The PEM of Pebble's issuing root number n (alternate chains have more)."""
        return self._mgmt("/roots/%d" % n)

    def write_root(self, path, n=0):
        Path(path).write_text(self.root(n))
        return path

    def cert_status(self, serial_hex):
        """Pebble's record of a certificate by serial: {"Status": "Valid"|"Revoked", ...}."""
        return json.loads(self._mgmt("/cert-status-by-serial/%s" % serial_hex))


def stuck_hook(tmp_path):
    """A DNS hook that never returns (it records its PID and sleeps): moat stays inside the
    order, holding its lock, with the order and key already in the state folder. Returns the
    hook's path and the PID file; kill_hook(pid_file) ends it."""
    marker = tmp_path / "hook.pid"
    hook = tmp_path / "stuck.sh"
    hook.write_text("#!/bin/sh\necho $$ > %s\nexec sleep 300\n" % marker)
    hook.chmod(0o755)
    return hook, marker


def kill_hook(marker):
    try:
        os.kill(int(marker.read_text().strip()), 9)
    except (OSError, ValueError):
        pass


def have_knot():
    return shutil.which("knotd") is not None and shutil.which("knsupdate") is not None


class Knot:
    """Knot DNS, authoritative for one zone on loopback, taking RFC 2136 updates signed with a
    TSIG key the test makes. Every name in the zone resolves to 127.0.0.1."""

    def __init__(self, workdir, zone="example.test", records=""):
        import base64

        self.records = records
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.zone = zone
        self.port = free_port()
        self.key_name = "moat-key"
        self.key_alg = "hmac-sha256"
        self.secret = base64.b64encode(os.urandom(32)).decode()
        self.proc = None

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        d = self.dir
        (d / ("%s.zone" % self.zone)).write_text(
            "$ORIGIN %s.\n$TTL 60\n"
            "@ SOA ns.%s. hostmaster.%s. 1 3600 600 86400 60\n"
            "@ NS ns.%s.\nns A 127.0.0.1\n@ A 127.0.0.1\n* A 127.0.0.1\n%s\n"
            % (self.zone, self.zone, self.zone, self.zone, self.records))
        (d / "knot.conf").write_text(
            "server:\n    listen: 127.0.0.1@%d\n    rundir: %s\n"
            "database:\n    storage: %s\n"
            "key:\n  - id: %s\n    algorithm: %s\n    secret: %s\n"
            "acl:\n  - id: update\n    key: %s\n    action: update\n"
            "zone:\n  - domain: %s\n    file: %s/%s.zone\n    acl: update\n"
            "    zonefile-sync: -1\n"
            "log:\n  - target: stderr\n    any: info\n"
            % (self.port, d, d, self.key_name, self.key_alg, self.secret, self.key_name,
               self.zone, d, self.zone))
        log = open(d / "knot.log", "ab")
        self.proc = subprocess.Popen(["knotd", "-c", str(d / "knot.conf")], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log)
        log.close()
        assert wait_for(lambda: _port_open(self.port), 10), "knotd did not start:\n" + self.log()
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self):
        try:
            return (self.dir / "knot.log").read_text(errors="replace")
        except OSError:
            return ""

    def txt(self, name):
        """The TXT values the server holds for name (asked directly, no recursion)."""
        r = subprocess.run(["kdig", "@127.0.0.1", "-p", str(self.port), "+short", "+norecurse",
                            name, "TXT"], capture_output=True, text=True, timeout=10)
        return [l.strip().strip('"') for l in r.stdout.splitlines() if l.strip()]


def _b64url_decode(s):
    import base64

    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url(b):
    import base64

    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def ari_cert_id(pem):
    """RFC 9773 §4.1's certificate identifier of a PEM certificate, worked out here with
    python3-cryptography: base64url(AKI keyIdentifier) "." base64url(DER content octets of the
    serial), the leading 0x00 of a serial with its high bit set included."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    n = cert.serial_number
    serial = n.to_bytes(n.bit_length() // 8 + 1, "big")  # DER: one more byte at a high bit
    return b64url(aki.key_identifier) + "." + b64url(serial)


class AcmeFront:
    """An HTTPS front for one Pebble that moat talks to instead of Pebble itself: it passes
    every request through (with the front's Host, so Pebble's URLs point at the front and its
    JWS url checks hold), records each signed request's URL and decoded payload, and can play
    the ARI part that Debian's Pebble 2.4 lacks: with `ari` set, the directory gains a
    renewalInfo URL served here, answered by ari(cert_id) -> (status, body dict, Retry-After).
    refuse_replaces: answer a newOrder that carries `replaces` with alreadyReplaced (409)."""

    def __init__(self, pebble, ari=None, refuse_replaces=False):
        self.pebble = pebble
        self.ari = ari
        self.refuse_replaces = refuse_replaces
        self.port = free_port()
        self.posts = []  # (path, payload dict or None for POST-as-GET)
        self.ari_gets = []  # (method, path, body length)
        self.server = None

    @property
    def directory(self):
        return "https://127.0.0.1:%d/dir" % self.port

    def new_orders(self):
        return [p for path, p in self.posts if path == "/order-plz"]

    def start(self):
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        front = self
        host = "127.0.0.1:%d" % self.port
        up_ctx = ssl.create_default_context(cafile=str(self.pebble.ca_bundle))

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def passthrough(self, body):
                c = http.client.HTTPSConnection("127.0.0.1", front.pebble.port, context=up_ctx,
                                                timeout=30)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("host", "connection", "content-length")}
                hdrs["Host"] = host
                c.request(self.command, self.path, body=body, headers=hdrs)
                r = c.getresponse()
                data = r.read()
                keep = [(k, v) for k, v in r.getheaders()
                        if k.lower() not in ("content-length", "connection", "transfer-encoding")]
                c.close()
                return r.status, data, keep

            def do_HEAD(self):
                status, data, keep = self.passthrough(None)
                self.reply(status, b"", keep)

            def do_GET(self):
                if self.path.startswith("/renewal-info/"):
                    n = int(self.headers.get("Content-Length") or 0)
                    front.ari_gets.append((self.command, self.path, n))
                    status, doc, retry = front.ari(self.path[len("/renewal-info/"):])
                    hdrs = [("Content-Type", "application/json")]
                    if retry is not None:
                        hdrs.append(("Retry-After", str(retry)))
                    self.reply(status, json.dumps(doc).encode(), hdrs)
                    return
                status, data, keep = self.passthrough(None)
                if self.path == "/dir" and front.ari is not None and status == 200:
                    d = json.loads(data)
                    d["renewalInfo"] = "https://%s/renewal-info" % host
                    data = json.dumps(d).encode()
                self.reply(status, data, keep)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                payload = None
                try:
                    jws = json.loads(body)
                    if jws.get("payload"):
                        payload = json.loads(_b64url_decode(jws["payload"]))
                except ValueError:
                    pass
                front.posts.append((self.path, payload))
                if (front.refuse_replaces and self.path == "/order-plz"
                        and isinstance(payload, dict) and "replaces" in payload):
                    prob = {"type": "urn:ietf:params:acme:error:alreadyReplaced",
                            "detail": "the certificate was already replaced", "status": 409}
                    self.reply(409, json.dumps(prob).encode(),
                               [("Content-Type", "application/problem+json")])
                    return
                status, data, keep = self.passthrough(body)
                self.reply(status, data, keep)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.pebble.dir / "front.fullchain.pem"),
                            str(self.pebble.dir / "front.key"))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def front_factory():
    """Factory: front_factory(pebble, **AcmeFront options) -> a started AcmeFront before that
    Pebble, stopped at the end of the test. Import it into a test module to use it."""
    made = []

    def new(p, **kw):
        f = AcmeFront(p, **kw).start()
        made.append(f)
        return f

    yield new
    for f in made:
        f.stop()
