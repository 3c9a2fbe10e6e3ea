"""Clients that trickle: a request body or a reader that keeps a connection alive by moving a
few bytes at a time is cut by limits.min_rate (after one body/write timeout of grace), however
steadily it trickles; honest transfers and idle timeouts are unaffected. Also the number of
requests one connection may carry (limits.keepalive_requests).
"""

import re
import select
import time

import pytest

from conftest import _finish
from helpers import Conn, Moat, build_request, log_after, wait_for
from origin import Origin

H = b"Host: example.test\r\n"


@pytest.fixture(scope="module")
def origin():
    with Origin() as o:
        yield o


@pytest.fixture(scope="module")
def slowroot(tmp_path_factory):
    d = tmp_path_factory.mktemp("slowroot")
    (d / "a.txt").write_text("file A\n")
    # Larger than what the kernel's send buffer takes at once (up to 4 MiB): the reader must
    # read for the server to get on.
    with open(d / "huge.bin", "wb") as f:
        f.truncate(16 * 1024 * 1024)
    return d


@pytest.fixture(scope="module")
def slow(moat_bin, pki, slowroot, origin, tmp_path_factory):
    m = Moat(moat_bin, tmp_path_factory.mktemp("slow"), name="slow")
    m.write_config(f"""\
listen 127.0.0.1:{m.port}
workers 1
state {m.state}
trust {pki.root}
error_log stderr info
timeouts {{ head 3s; body 1s; write 1s; idle 5s }}
limits {{ body 1m; min_rate 32k; keepalive_requests 3 }}
site example.test {{
    cert {pki.ec.chain} {pki.ec.key}
    root {slowroot}
}}
site proxy.test {{
    cert {pki.ec.chain} {pki.ec.key}
    proxy {origin.url}
}}
""")
    m.start()
    yield m
    _finish(m)


def trickle(c, data, every, limit_s):
    """Send `data` one byte per `every` seconds until the server answers or closes, or
    `limit_s` passes. Returns how long the server let it go on."""
    t0 = time.monotonic()
    for b in data:
        if time.monotonic() - t0 > limit_s:
            break
        try:
            c.send(bytes([b]))
        except OSError:
            break
        readable, _, _ = select.select([c.sock], [], [], every)
        if readable:
            break
    return time.monotonic() - t0


def test_trickled_body_is_cut(slow):
    # One byte every 0.2 s resets an inactivity timer forever; the rate floor does not.
    mark = len(slow.stderr())
    with Conn(slow.port, verify=False) as c:
        c.send(b"GET /a.txt HTTP/1.1\r\n" + H + b"Content-Length: 100000\r\n\r\n")
        took = trickle(c, b"x" * 100000, 0.2, 12.0)
        assert took < 6.0, "the trickle went on for %.1f s" % took
        r = c.read_response()
        assert r.status == 408
        assert c.is_closed(timeout=5.0)
    assert log_after(slow, mark, r"the client.s body was slower than limits\.min_rate")


def test_steady_body_within_the_rate_is_taken(slow):
    # 256 KiB in 16 pieces over ~1.6 s: well above 32 KiB/s, and no pause reaches body 1s.
    with Conn(slow.port, verify=False) as c:
        c.send(b"GET /a.txt HTTP/1.1\r\n" + H + b"Content-Length: 262144\r\n\r\n")
        for _ in range(16):
            c.send(b"y" * 16384)
            time.sleep(0.1)
        r = c.read_response()
        assert r.status == 200 and r.body == b"file A\n"


def test_trickled_proxy_body_is_cut(slow, origin):
    mark = len(slow.stderr())
    with Conn(slow.port, sni="proxy.test", verify=False) as c:
        c.send(b"POST /echo?t=slow-up HTTP/1.1\r\nHost: proxy.test\r\n"
               b"Content-Length: 100000\r\n\r\n")
        took = trickle(c, b"x" * 100000, 0.2, 12.0)
        assert took < 6.0, "the trickle went on for %.1f s" % took
        r = c.read_response()
        assert r.status == 408
    assert log_after(slow, mark, r"the client's body was slower than limits\.min_rate")


def test_trickling_reader_is_cut(slow):
    # A reader that takes 512 bytes every 0.25 s (2 KiB/s, far below the floor) of a 16 MiB
    # file: each read lets the server write a little, which an inactivity timer would count as
    # progress for ever. Cut, the connection is reset, so the kernel's buffered megabytes go too.
    mark = len(slow.stderr())
    with Conn(slow.port, verify=False, rcvbuf=4096) as c:
        c.send(build_request("/huge.bin"))
        t0 = time.monotonic()
        got = 0
        closed = False
        while time.monotonic() - t0 < 40:
            try:
                chunk = c.sock.recv(512)
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += len(chunk)
            time.sleep(0.25)
        took = time.monotonic() - t0
        assert closed, "still reading after %.0f s (%d bytes)" % (took, got)
        assert got < 16 * 1024 * 1024
        assert took < 15, took
    # With Linux's send buffers a trickling reader lets the writer wake so rarely that it
    # usually counts as stalled; with small buffers the rate floor is what cuts it.
    assert log_after(slow, mark, r"client (slower than limits\.min_rate|stalled \(timeouts\.write\)) "
                                 r"taking the answer")


def test_keepalive_requests_limit(slow):
    with Conn(slow.port, verify=False) as c:
        for i in range(3):
            r = c.request("/a.txt")
            assert r.status == 200
            closing = "close" in (r.header("connection") or "").lower()
            assert closing == (i == 2), (i, r)
        assert c.is_closed(timeout=3.0)
