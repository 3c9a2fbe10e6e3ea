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
