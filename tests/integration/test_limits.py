"""Abuse protection (docs/limits.md): request rate limits per client and per key that answer
429 with Retry-After and recover on time; open connections, new connections and TLS
handshakes per address refused at accept (another address is still answered); allow/deny
lists at accept and per site; the total connection cap; requests per HTTP/2 connection; the
client address from a PROXY protocol header and from X-Forwarded-For of a trusted proxy; and
the configuration's errors.

Clients pose as other machines by connecting from 127.0.0.2, 127.0.0.3, ... (all loopback,
so every test writes the limits it tests: written limits apply to loopback too).
"""

import socket
import ssl
import threading
import time

import pytest

from conftest import _finish
from h2_helpers import ENHANCE_YOUR_CALM, H2Conn, expect_connection_error
from helpers import Conn, Moat, build_request, check_refuses, log_after, wait_for


def start(moat_bin, pki, www, tmp_path, body, top="", name="limits"):
    m = Moat(moat_bin, tmp_path, name=name)
    m.write_config(f"""\
listen 127.0.0.1:{m.port}
workers 2
state {m.state}
error_log stderr info
{top}
site example.test {{
    cert {pki.ec.chain} {pki.ec.key}
    root {www}
{body}
}}
""")
    m.start()
    return m


def get(c, path="/a.txt", headers=None):
    c.send(build_request(path, headers=headers))
    return c.read_response()


def tls_conn(m, source, timeout=5):
    return Conn(m.port, verify=False, source=source, timeout=timeout)


def refused_at_accept(m, source, tls=True):
    """True when a connection from `source` is closed before the server says anything."""
    try:
        c = tls_conn(m, source, timeout=3) if tls else Conn(m.port, tls=False, source=source)
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    try:
        r = get(c)
        return r.status != 200
    except Exception:
        return True
    finally:
        c.close()


def test_rate_limit_trips_with_retry_after_and_recovers(moat_bin, pki, www, tmp_path):
    m = start(moat_bin, pki, www, tmp_path, "    limit 4/s burst 4")
    try:
        with tls_conn(m, "127.0.0.2") as c:
            got = [get(c).status for _ in range(4)]
            assert got == [200] * 4
            r = get(c)
            assert r.status == 429, r
            retry = int(r.header("retry-after"))
            assert 1 <= retry <= 2, r.headers
            # Another client has its own budget.
            with tls_conn(m, "127.0.0.3") as other:
                assert get(other).status == 200
            time.sleep(retry + 0.1)
            assert get(c).status == 200, "the budget did not come back after Retry-After"
        assert log_after(m, 0, r"refused by limit: more than 4 requests per second at [^\n]*"
                               r"moat\.conf:\d+"), m.stderr()[-2000:]
    finally:
        _finish(m)


def test_limit_by_header_and_prefix(moat_bin, pki, www, tmp_path):
    m = start(moat_bin, pki, www, tmp_path, "    limit /api 2/m by header X-Api-Key")
    try:
        with tls_conn(m, "127.0.0.2") as c:
            a = {"X-Api-Key": "alpha"}
            b = {"X-Api-Key": "beta"}
            assert get(c, "/api/x", a).status == 404  # under the rule, counted, then answered
            assert get(c, "/api/y", a).status == 404
            r = get(c, "/api/z", a)
            assert r.status == 429 and int(r.header("retry-after")) >= 25, r.headers
            assert get(c, "/api/x", b).status == 404, "another key has its own budget"
            assert get(c, "/a.txt", a).status == 200, "outside /api: no limit"
            assert get(c, "/apix", a).status == 404, "/apix is not under /api"
    finally:
        _finish(m)


def test_limit_uses_forwarded_client_of_trusted_proxy(moat_bin, pki, www, tmp_path):
    m = start(moat_bin, pki, www, tmp_path, "    limit 1/m",
              top="trusted_proxies 127.0.0.2")
    try:
        with tls_conn(m, "127.0.0.2") as proxy:
            one = {"X-Forwarded-For": "198.51.100.1"}
            two = {"X-Forwarded-For": "203.0.113.9, 198.51.100.2"}
            assert get(proxy, "/a.txt", one).status == 200
            assert get(proxy, "/a.txt", one).status == 429
            assert get(proxy, "/a.txt", two).status == 200, "a second client behind the proxy"
        # An untrusted peer's X-Forwarded-For is not believed: its own address is the key.
        with tls_conn(m, "127.0.0.3") as c:
            assert get(c, "/a.txt", {"X-Forwarded-For": "192.0.2.50"}).status == 200
            assert get(c, "/a.txt", {"X-Forwarded-For": "192.0.2.51"}).status == 429
    finally:
        _finish(m)


def test_connections_per_address(moat_bin, pki, www, tmp_path):
    m = start(moat_bin, pki, www, tmp_path, "",
              top="limits { address_connections 3 }")
    held = []
    try:
        for _ in range(3):
            c = tls_conn(m, "127.0.0.2")
            assert get(c).status == 200
            held.append(c)
        assert refused_at_accept(m, "127.0.0.2"), "a fourth connection from one address"
        with tls_conn(m, "127.0.0.3") as other:
            assert get(other).status == 200, "another address is not affected"
        held.pop().close()
        assert wait_for(lambda: not refused_at_accept(m, "127.0.0.2"), 5), \
            "a closed connection did not give its place back"
        assert log_after(m, 0, r"refused by address_connections: 3 connections from this "
                               r"address are open already \(peer 127\.0\.0\.2\)")
    finally:
        for c in held:
            c.close()
        _finish(m)


def test_handshake_flood_leaves_others_answered(moat_bin, pki, www, tmp_path):
    m = start(moat_bin, pki, www, tmp_path, "",
              top="limits { address_handshakes 20/s burst 20; address_new_connections off }")
    stop = threading.Event()
    counts = {"ok": 0, "refused": 0}

    def flood():
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + 4
        for _ in range(3000):  # bounded in count and in time
            if stop.is_set() or time.monotonic() > deadline:
                break
            try:
                raw = socket.create_connection(("127.0.0.1", m.port), timeout=2,
                                               source_address=("127.0.0.2", 0))
                with ctx.wrap_socket(raw, server_hostname="example.test"):
                    counts["ok"] += 1
            except (ssl.SSLError, OSError):
                counts["refused"] += 1

    t = threading.Thread(target=flood)
    try:
        t.start()
        time.sleep(0.5)
        latencies = []
        for _ in range(10):
            t0 = time.monotonic()
            with tls_conn(m, "127.0.0.3") as c:
                assert get(c).status == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.1)
        print("bystander latencies during the flood (ms):",
              ", ".join("%.1f" % (x * 1000) for x in latencies))
        stop.set()
        t.join(10)
        print("flood: %d handshakes completed, %d refused" % (counts["ok"], counts["refused"]))
        assert counts["refused"] > 0, counts
        # 20/s with a burst of 20 over at most ~4.5 s: no more than about 110 got through.
        assert counts["ok"] <= 20 + 20 * 5 + 10, counts
        assert log_after(m, 0, r"refused by address_handshakes: TLS handshakes from this "
                               r"address faster than 20/s burst 20")
    finally:
        stop.set()
        t.join(10)
        _finish(m)


def test_new_connections_per_address_on_the_plain_listener(moat_bin, pki, www, tmp_path):
    m = start(moat_bin, pki, www, tmp_path, "",
              top="limits { address_new_connections 5/s burst 5 }")
    try:
        # Over TLS: five in a row, then refused; another address goes on.
        results = [refused_at_accept(m, "127.0.0.2") for _ in range(8)]
        assert results[:5] == [False] * 5 and any(results[5:]), results
        assert not refused_at_accept(m, "127.0.0.3")
        time.sleep(1.1)
        assert not refused_at_accept(m, "127.0.0.2"), "did not recover after a second"
    finally:
        _finish(m)


def test_deny_refuses_at_accept(moat_bin, pki, www, tmp_path):
    m = start(moat_bin, pki, www, tmp_path, "", top="deny 127.0.0.2 127.0.0.16/28")
    try:
        for src in ("127.0.0.2", "127.0.0.17"):
            raw = socket.create_connection(("127.0.0.1", m.port), timeout=3,
                                           source_address=(src, 0))
            # Closed before a byte is read: no TLS alert, no handshake, just the end.
            raw.settimeout(3)
            try:
                assert raw.recv(100) == b""
            except ConnectionResetError:
                pass
            raw.close()
        with tls_conn(m, "127.0.0.3") as c:
            assert get(c).status == 200
        assert log_after(m, 0, r"refused by deny: [^\n]*\(peer 127\.0\.0\.2\)")
    finally:
        _finish(m)


def test_allow_list_lets_in_only_its_ranges(moat_bin, pki, www, tmp_path):
    m = start(moat_bin, pki, www, tmp_path, "", top="allow 127.0.0.3 127.0.0.1")
    try:
        assert refused_at_accept(m, "127.0.0.2")
        assert not refused_at_accept(m, "127.0.0.3")
    finally:
        _finish(m)


def test_site_allow_deny_answers_403(moat_bin, pki, www, tmp_path):
    m = start(moat_bin, pki, www, tmp_path, "    deny 127.0.0.2\n    allow all")
    try:
        with tls_conn(m, "127.0.0.2") as c:
            r = get(c)
            assert r.status == 403 and b"your address" in r.body, r
        with tls_conn(m, "127.0.0.3") as c:
            assert get(c).status == 200
    finally:
        _finish(m)


def test_total_connections_sheds_the_newest(moat_bin, pki, www, tmp_path):
    m = start(moat_bin, pki, www, tmp_path, "", top="limits { total_connections 3 }")
    held = []
    try:
        for src in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            c = tls_conn(m, src)
            assert get(c).status == 200
            held.append(c)
        assert refused_at_accept(m, "127.0.0.5"), "a fourth connection in all"
        for c in held:  # the old ones are kept
            assert get(c).status == 200
        held.pop().close()
        assert wait_for(lambda: not refused_at_accept(m, "127.0.0.5"), 5)
        assert log_after(m, 0, r"refused by total_connections")
    finally:
        for c in held:
            c.close()
        _finish(m)


def test_http2_requests_per_connection(moat_bin, pki, www, tmp_path):
    m = start(moat_bin, pki, www, tmp_path, "", top="limits { http2_requests 10/s burst 10 }")
    try:
        with H2Conn(m.port) as c:
            for _ in range(10):
                st = c.get("/a.txt")
                assert st.status == 200
            mark = len(m.stderr())
            for _ in range(5):
                sid = c.new_sid()
                c.headers(sid, c.request_fields("/a.txt"))
            expect_connection_error(c, ENHANCE_YOUR_CALM)
            assert log_after(m, mark, r"refused by http2_requests: requests on one HTTP/2 "
                                      r"connection faster than limits\.http2_requests")
        with H2Conn(m.port) as c:  # a new connection has a new budget
            assert c.get("/a.txt").status == 200
    finally:
        _finish(m)


def test_exempt_skips_written_limits(moat_bin, pki, www, tmp_path):
    m = start(moat_bin, pki, www, tmp_path, "",
              top="limits { address_connections 1; exempt 127.0.0.3 }")
    held = []
    try:
        held.append(tls_conn(m, "127.0.0.2"))
        assert get(held[0]).status == 200
        assert refused_at_accept(m, "127.0.0.2")
        for _ in range(3):
            c = tls_conn(m, "127.0.0.3")
            assert get(c).status == 200
            held.append(c)
    finally:
        for c in held:
            c.close()
        _finish(m)


def proxy_v1(src):
    return ("PROXY TCP4 %s 127.0.0.1 40000 443\r\n" % src).encode()


def test_proxy_protocol_address_is_the_client(moat_bin, pki, www, tmp_path):
    m = Moat(moat_bin, tmp_path, name="limits-pp")
    m.write_config(f"""\
listen 127.0.0.1:{m.port}
proxy_protocol 127.0.0.1:{m.port}
trusted_proxies 127.0.0.1
workers 1
state {m.state}
error_log stderr info
limits {{ address_connections 1 }}
site example.test {{
    cert {pki.ec.chain} {pki.ec.key}
    root {www}
}}
""")
    m.start()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    held = []

    def through_proxy(src):
        raw = socket.create_connection(("127.0.0.1", m.port), timeout=3)
        raw.sendall(proxy_v1(src))
        try:
            s = ctx.wrap_socket(raw, server_hostname="example.test")
            s.sendall(build_request("/a.txt"))
            data = s.recv(100)
        except (ssl.SSLError, OSError):
            raw.close()
            return None
        held.append(s)
        return data

    try:
        first = through_proxy("192.0.2.7")
        assert first and first.startswith(b"HTTP/1.1 200"), first
        assert through_proxy("192.0.2.7") is None, "the same client twice, through the proxy"
        other = through_proxy("192.0.2.8")
        assert other and other.startswith(b"HTTP/1.1 200"), "another client behind the proxy"
        assert log_after(m, 0, r"refused by address_connections: [^\n]*\(peer 192\.0\.2\.7\)")
    finally:
        for s in held:
            s.close()
        _finish(m)


@pytest.mark.parametrize("conf,want", [
    ("limits { address_handshakes 5/x }", r"moat\.conf:\d+:\d+: .*address_handshakes: \"5/x\" "
                                          r"is not a rate"),
    ("limits { address_new_connections 10/s burst 0 }", r"burst \"0\" is not a number"),
    ("limits { total_connections lots }", r"total_connections \"lots\": write auto"),
    ("limits { exempt 10.0.0.1/8 }", r"exempt \"10\.0\.0\.1/8\""),
    ("deny 300.1.1.1", r"deny \"300\.1\.1\.1\""),
    ("site x.test {\n  root /tmp\n  limit 5/s by fingerprint\n}", r"limit by \"fingerprint\""),
    ("site x.test {\n  root /tmp\n  limit /a/../b 5/s\n}", r"plain path prefix"),
    ("site x.test {\n  root /tmp\n  limit 5/s by header\n}", r"limit by header needs a name"),
    ("site x.test {\n  root /tmp\n  limit off\n}", r"limit off: leave the line out"),
])
def test_config_errors(moat_bin, tmp_path, conf, want):
    import re
    said = check_refuses(moat_bin, tmp_path, "listen 127.0.0.1:1\n" + conf + "\n")
    assert re.search(want, said), said


def test_stream_listener_takes_the_limits(moat_bin, pki, www, tmp_path):
    """A `stream` listener (plain TCP to an echo server here) is under the same checks at
    accept: open connections per address, and the top-level deny list."""
    from stream_peers import EchoServer, LineClient
    echo = EchoServer("E")
    m = Moat(moat_bin, tmp_path, name="limits-stream")
    q = m.http_port
    m.write_config(f"""\
listen 127.0.0.1:{m.port}
workers 1
state {m.state}
error_log stderr info
deny 127.0.0.9
limits {{ address_connections 2 }}
site example.test {{
    cert {pki.ec.chain} {pki.ec.key}
    root {www}
}}
stream echo {{
    listen 127.0.0.1:{q}
    tls off
    proxy {echo.addr}
}}
""")
    m.start(ports=[m.port, q])
    held = []
    try:
        for i in range(2):
            c = LineClient(q, source="127.0.0.2")
            assert c.ask("hi-%d" % i) == "E: hi-%d" % i
            held.append(c)
        third = LineClient(q, source="127.0.0.2")
        assert third.closed_within(3), "a third stream connection from one address"
        third.close()
        with LineClient(q, source="127.0.0.3") as other:
            assert other.ask("x") == "E: x"
        denied = LineClient(q, source="127.0.0.9")
        assert denied.closed_within(3)
        denied.close()
        held.pop().close()
        def again():
            try:
                with LineClient(q, source="127.0.0.2", timeout=2) as c:
                    return c.ask("back") == "E: back"
            except Exception:
                return False
        assert wait_for(again, 5), "a closed stream connection did not give its place back"
    finally:
        for c in held:
            c.close()
        _finish(m)
        echo.stop()
