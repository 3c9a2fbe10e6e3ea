"""Helpers for the `moat check` tests (test_check.py): the peers it grades (openssl s_server,
nginx, HAProxy, each on a free loopback port and stopped by its own PID), the weak key
material they serve, a runner for the check, and the shape every finding must have.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers import OPENSSL, SANITIZER_MARKERS, clean_env, free_port, run

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")

SEVERITIES = ("info", "low", "medium", "high", "critical")


# ----------------------------------------------------------------------------------------------
# The check
# ----------------------------------------------------------------------------------------------


class Check:
    """One `moat check` run: exit code, stdout, stderr, and the JSON document (--json)."""

    def __init__(self, proc, doc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.doc = doc

    @property
    def ids(self):
        return {f["id"] for f in self.doc["findings"]}

    def finding(self, fid):
        for f in self.doc["findings"]:
            if f["id"] == fid:
                return f
        return None

    def above(self, sev):
        """The ids of findings more severe than `sev`."""
        k = SEVERITIES.index(sev)
        return {f["id"] for f in self.doc["findings"] if SEVERITIES.index(f["severity"]) > k}

    def __repr__(self):
        if self.doc is None:
            return "Check(rc=%d, stderr=%r)" % (self.rc, self.stderr[-2000:])
        return "Check(rc=%d, grade=%s, findings=%s)" % (
            self.rc, self.doc["grade"],
            ["%s:%s" % (f["id"], f["severity"]) for f in self.doc["findings"]])


def check(moat_bin, target, *args, connect="127.0.0.1", http_port="off", as_json=True,
          timeout=120, state=None):
    """Run `moat check [--json] --connect CONNECT --http-port HTTP_PORT ARGS TARGET`."""
    argv = [str(moat_bin), "check"]
    if as_json:
        argv.append("--json")
    if connect is not None:
        argv += ["--connect", connect]
    if http_port is not None:
        argv += ["--http-port", str(http_port)]
    if state is not None:
        argv += ["--state", str(state)]
    argv += [str(a) for a in args] + [target]
    env = clean_env()
    # A check with no --state would find the state folder of whoever runs the tests.
    if state is None:
        env.pop("MOAT_STATE", None)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                       stdin=subprocess.DEVNULL)
    for marker in SANITIZER_MARKERS:
        assert marker not in p.stderr, "sanitizer report from moat check:\n" + p.stderr[-6000:]
    doc = None
    if as_json and p.stdout.strip():
        doc = json.loads(p.stdout)
    return Check(p, doc)


def assert_well_formed(c):
    """The contract every report keeps: the exit code is the worst finding's; every finding
    above info says why (evidence) and how to fix it (at least one server's fix)."""
    d = c.doc
    assert d is not None, c
    assert d["exit_code"] == c.rc, c
    worst = max((SEVERITIES.index(f["severity"]) for f in d["findings"]), default=0)
    assert c.rc == (0 if worst == 0 else 2 + worst), c
    for f in d["findings"]:
        assert f["severity"] in SEVERITIES, f
        assert f["id"] and f["title"], f
        if f["severity"] != "info":
            assert f["evidence"].strip(), f
            assert any((v or "").strip() for v in f["fix"].values()), f
            assert set(f["fix"]) == {"moat", "nginx", "haproxy", "caddy"}, f
        if f["caps_grade"] is not None:
            assert f["caps_grade"] in ("B", "C", "F", "T"), f
    assert d["grade"] in ("A+", "A", "B", "C", "F", "T"), d["grade"]
    assert d["grade_rule"], d


# ----------------------------------------------------------------------------------------------
# Peers
# ----------------------------------------------------------------------------------------------


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Peer:
    """A server process with its output in files, stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, argv, workdir, name, port, env=None):
        self.argv = [str(a) for a in argv]
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = port
        self.log = self.dir / (name + ".log")
        self.env = env
        self.proc = None

    def start(self, timeout=15.0):
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         env=self.env or clean_env())
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("%s did not listen on %d:\n%s"
                                     % (self.name, self.port, self.output()[-3000:]))
            time.sleep(0.05)
        return self

    def output(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def s_server(workdir, cert, key, *args, chain=None):
    """`openssl s_server -www` on a free loopback port, for as many connections as a check
    makes (no -naccept)."""
    port = free_port()
    argv = [OPENSSL, "s_server", "-accept", "127.0.0.1:%d" % port, "-cert", cert, "-key", key,
            "-www", "-quiet"]
    if chain is not None:
        argv += ["-cert_chain", chain]
    argv += list(args)
    return Peer(argv, workdir, "s_server-%d" % port, port).start()


# Good TLS for s_server: 1.2 and 1.3, AEAD suites with forward secrecy in the server's order,
# ALPN with h2 (http/1.1 first, so the check's strict HTTP/1.1 client gets an answer).
S_SERVER_GOOD = ["-min_protocol", "TLSv1.2",
                 "-cipher", "ECDHE+AESGCM:ECDHE+CHACHA20", "-serverpref",
                 "-alpn", "http/1.1,h2"]


class WeakKeys:
    """An RSA-1024 self-signed certificate for weak.test and a 1024-bit DH group."""

    def __init__(self, base):
        self.dir = Path(base)
        self.key = self.dir / "weak.key"
        self.cert = self.dir / "weak.pem"
        self.dh = self.dir / "dh1024.pem"
        run([OPENSSL, "req", "-x509", "-newkey", "rsa:1024", "-nodes", "-keyout", self.key,
             "-out", self.cert, "-days", "30", "-subj", "/CN=weak.test",
             "-addext", "subjectAltName=DNS:weak.test"], timeout=60)
        os.chmod(self.key, 0o600)
        run([OPENSSL, "dhparam", "-out", self.dh, "1024"], timeout=120)


def weak_s_server(workdir, keys, reneg=True):
    """The weakest s_server OpenSSL 3 still makes: TLS 1.0 to 1.2 (no 1.3), every suite at
    security level 0 (NULL, anonymous, export-free since 1.1.0), DHE with 1024 bits, and
    client-initiated renegotiation when reneg."""
    args = ["-cipher", "ALL:COMPLEMENTOFALL:@SECLEVEL=0", "-min_protocol", "TLSv1",
            "-no_tls1_3", "-dhparam", keys.dh]
    if reneg:
        args.append("-client_renegotiation")
    return s_server(workdir, keys.cert, keys.key, *args)


NGINX_CONF = """\
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        server_name {name};
        ssl_certificate {cert};
        ssl_certificate_key {key};
{extra}
        # No files: the worker may run as a user that cannot read the test's folders.
        location / {{ default_type text/html; return 200 "<p>nginx</p>\\n"; }}
    }}
}}
"""


def need_nginx():
    if not os.path.exists(NGINX):
        pytest.skip("nginx not installed (Debian package nginx)")


def nginx(workdir, name, cert, key, extra):
    """nginx in the foreground (`daemon off;`) with its own prefix, on a free port."""
    need_nginx()
    port = free_port()
    d = Path(workdir) / ("nginx-%d" % port)
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=d, port=port, name=name, cert=cert, key=key,
                                      extra=extra))
    return Peer([NGINX, "-c", conf, "-p", d, "-g", "daemon off;"], d, "nginx", port).start()


HAPROXY_CONF = """\
global
    maxconn 500
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend tls
    bind 127.0.0.1:{port} {bind}
    http-request return status 200 content-type text/html string "<p>haproxy</p>"
"""


def need_haproxy():
    if not os.path.exists(HAPROXY):
        pytest.skip("haproxy not installed (Debian package haproxy)")


def haproxy(workdir, bind):
    """HAProxy in the foreground (-db) with one TLS frontend on a free port; `bind` is the
    rest of the bind line (ssl crt FILE ...)."""
    need_haproxy()
    port = free_port()
    d = Path(workdir) / ("haproxy-%d" % port)
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "haproxy.cfg"
    cfg.write_text(HAPROXY_CONF.format(port=port, bind=bind))
    ok = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True,
                        timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    return Peer([HAPROXY, "-db", "-f", cfg], d, "haproxy", port).start()


def pem_bundle(path, *parts):
    """Concatenate PEM files (certificates, keys) into one file."""
    path = Path(path)
    path.write_text("".join(Path(p).read_text() for p in parts))
    os.chmod(path, 0o600)
    return path
