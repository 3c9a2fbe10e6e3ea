"""PROXY protocol both ways, against Debian's HAProxy:

  in:  client (from 127.0.0.5) -> HAProxy (TCP, send-proxy-v2 / send-proxy) -> moat listener with
       `proxy_protocol` -> gunicorn: the app must see the client's address, not HAProxy's, in
       X-Forwarded-For and Forwarded; a peer not in trusted_proxies, or one that sends no
       header, is refused on that listener.
  out: client -> moat -> `upstream { proxy_protocol v2 }` -> HAProxy (`accept-proxy`, HTTP
       mode, writing the address it was told into X-PP-Src) -> gunicorn: HAProxy must read the
       client's address from moat's header; health checks send LOCAL headers it accepts.
"""

import shutil
import socket
import ssl
import subprocess
import time

import pytest

from helpers import free_port, log_after, wait_for
from test_upstream import App, Client, ask, echo, globals_block, need_gunicorn, site, start_apps

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def need_haproxy():
    if not shutil.which("haproxy") and not shutil.which("/usr/sbin/haproxy"):
        pytest.skip("haproxy is not installed (Debian package haproxy)")


class Haproxy:
    def __init__(self, tmp_path, config):
        self.cfg = tmp_path / "haproxy.cfg"
        self.cfg.write_text(config)
        self.log = open(tmp_path / "haproxy.log", "w")
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.cfg)], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_port(self, port):
        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False
        assert wait_for(up, 10), (self.cfg.parent / "haproxy.log").read_text()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


HAPROXY_GLOBAL = """global
    maxconn 200
defaults
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""


@pytest.fixture
def app(tmp_path):
    need_gunicorn()
    a = App("a", tmp_path)
    start_apps([a])
    yield a
    a.stop()


def pp_front(moat, pki, cert, app, trusted="127.0.0.1/32"):
    """A moat whose second listener expects PROXY headers; site app.test -> the app."""
    m = moat("front")
    m.pp_port = free_port()
    extra = ("listen 127.0.0.1:%d 127.0.0.1:%d\nproxy_protocol 127.0.0.1:%d\n"
             "trusted_proxies %s\n" % (m.port, m.pp_port, m.pp_port, trusted))
    conf = globals_block(m, pki, extra=extra).replace(
        "listen 127.0.0.1:%d [::1]:%d\n" % (m.port, m.port), "")
    m.write_config(conf + site(cert, "app.test", "    proxy http://%s\n" % app.addr))
    m.start()
    return m


@pytest.fixture
def cert(pki):
    return pki.issue(["app.test"], "ec", stem="pp-front")


@pytest.mark.parametrize("send", ["send-proxy-v2", "send-proxy"])
def test_haproxy_in_front_passes_the_client_address(moat, pki, cert, app, tmp_path, send):
    need_haproxy()
    m = pp_front(moat, pki, cert, app)
    lb_port = free_port()
    hp = Haproxy(tmp_path, HAPROXY_GLOBAL + """
frontend lb
    mode tcp
    bind 127.0.0.1:%d
    default_backend moat
backend moat
    mode tcp
    server m1 127.0.0.1:%d %s
""" % (lb_port, m.pp_port, send))
    try:
        hp.wait_port(lb_port)
        # The client connects to HAProxy from 127.0.0.5; moat's peer is HAProxy (127.0.0.1).
        with Client(lb_port, "app.test", pki.root, source="127.0.0.5") as c:
            e = echo(c.get("/?t=pp-in"))
            e2 = echo(c.get("/?t=pp-in-2"))  # the same connection: the header came once
        h = e["headers"]
        assert h["x-forwarded-for"] == "127.0.0.5", h
        assert h["forwarded"].startswith("for=127.0.0.5;"), h
        assert e2["headers"]["x-forwarded-for"] == "127.0.0.5"
        # The access log has the client, not the balancer.
        lines = wait_for(lambda: [l for l in m.access_lines() if "t=pp-in" in l], 5)
        assert lines and all('"127.0.0.5"' in l for l in lines), lines
    finally:
        hp.stop()


def _refused(port, source=None, send=b""):
    """Whether moat closes a TLS attempt on the PROXY listener (no answer, just the close)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                 source_address=(source, 0) if source else None)
    try:
        if send:
            s.sendall(send)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            t = ctx.wrap_socket(s, server_hostname="app.test")
            t.close()
            return False
        except (ssl.SSLError, ConnectionError, OSError):
            return True
    finally:
        s.close()


def test_proxy_listener_refuses_untrusted_peers_and_missing_headers(moat, pki, cert, app):
    m = pp_front(moat, pki, cert, app, trusted="127.0.0.1/32")
    mark = len(m.stderr())
    # 127.0.0.9 is not trusted: closed before anything is read, whatever it would send.
    hdr = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n"
    assert _refused(m.pp_port, source="127.0.0.9", send=hdr)
    assert log_after(m, mark, r"PROXY protocol: 127\.0\.0\.9 is not in trusted_proxies")
    # Trusted, but a TLS ClientHello instead of a header: refused, never guessed.
    mark = len(m.stderr())
    assert _refused(m.pp_port)
    assert log_after(m, mark, r"PROXY protocol: expected a header from 127\.0\.0\.1")
    # A malformed header.
    mark = len(m.stderr())
    assert _refused(m.pp_port, send=b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 443\r\n")
    assert log_after(m, mark, r"PROXY protocol: expected a header .*got")
    # A hand-made v1 header from a trusted peer works, and names the client.
    s = socket.create_connection(("127.0.0.1", m.pp_port), timeout=5)
    s.sendall(b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 443\r\n")
    ctx = ssl.create_default_context(cafile=str(pki.root))
    with ctx.wrap_socket(s, server_hostname="app.test") as t:
        t.sendall(b"GET /?t=pp-hand HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            piece = t.recv(65536)
            if not piece:
                break
            data += piece
    assert b" 200 " in data.split(b"\r\n", 1)[0], data[:200]
    assert b'"x-forwarded-for": "198.51.100.7"' in data, data[-600:]
    # The ordinary listener is unaffected.
    assert echo(ask(m, pki, "app.test", "/?t=pp-plain"))["headers"]["x-forwarded-for"] == "127.0.0.1"


def test_proxy_protocol_v2_sent_to_haproxy_upstream(moat, pki, cert, app, tmp_path):
    need_haproxy()
    hp_port = free_port()
    hp = Haproxy(tmp_path, HAPROXY_GLOBAL + """
frontend in
    mode http
    bind 127.0.0.1:%d accept-proxy
    http-request set-header X-PP-Src %%[src]
    http-request set-header X-PP-Dst %%[dst]
    default_backend app
backend app
    mode http
    server a %s
""" % (hp_port, app.addr))
    try:
        hp.wait_port(hp_port)
        m = moat("front")
        m.write_config(globals_block(m, pki)
                       + "upstream hp {\n    server 127.0.0.1:%d\n    proxy_protocol v2\n"
                         "    health_check /health interval 200ms rise 1 fall 1\n}\n" % hp_port
                       + site(cert, "app.test", "    proxy hp\n"))
        m.start()
        e = echo(ask(m, pki, "app.test", "/?t=pp-out", source="127.0.0.6"))
        h = e["headers"]
        # HAProxy believed moat's header: the client's address and the one it dialled.
        assert h["x-pp-src"] == "127.0.0.6", h
        assert h["x-pp-dst"] == "127.0.0.1", h
        assert h["x-forwarded-for"] == "127.0.0.6"
        # The health checks (LOCAL headers) pass through HAProxy: the server stays in.
        time.sleep(0.8)
        assert "taken out" not in m.stderr()
        assert echo(ask(m, pki, "app.test", "/?t=pp-out-2"))["instance"] == "a"
    finally:
        hp.stop()
