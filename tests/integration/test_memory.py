"""Memory goes back to the system after connections close, whatever the traffic does next:
after 1,000 keep-alive connections close, and after 1,000 clients that never finish their head
are cut, the server's resident memory returns to near where it started (the housekeeping tick
frees unused pool blocks and trims the heap).

Measured on the release build (the sanitizer build's allocator keeps freed memory on purpose).
"""

import os
import resource
import socket
import ssl
import time
from pathlib import Path

import pytest

from helpers import Moat, wait_for

REPO = Path(__file__).resolve().parents[2]
N = 1000


@pytest.fixture
def release_bin():
    path = REPO / "build" / "moat"
    if not path.is_file():
        msg = "release binary build/moat not built (make build/moat)"
        if os.environ.get("MOAT_REQUIRE_BIN"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 3 * N:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * N), hard))
    return path


def rss_kb(pid):
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def start(release_bin, tmp_path, pki, www):
    m = Moat(release_bin, tmp_path / "mem", name="mem")
    m.write_config(f"""\
listen 127.0.0.1:{m.port}
workers 1
state {m.state}
trust {pki.root}
error_log stderr warn
timeouts {{ head 1s; idle 60s }}
limits {{ connections 5000 }}
site example.test {{
    cert {pki.ec.chain} {pki.ec.key}
    root {www}
}}
""")
    return m.start()


def keep_alive_conn(ctx, port, requests):
    """A TLS connection that has had `requests` keep-alive answers for /a.txt, left open."""
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                        server_hostname="example.test")
    for _ in range(requests):
        s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: example.test\r\n\r\n")
        got = b""
        while not got.endswith(b"file A\n"):
            chunk = s.recv(4096)
            assert chunk, got
            got += chunk
        assert got.startswith(b"HTTP/1.1 200 OK"), got
    return s


def idle_cost(m, one, n, most_kib):
    """Open `n` connections with one() and leave them idle: the server's memory must settle
    at no more than `most_kib` KiB per connection (and measurably above nothing). Returns them."""
    for _ in range(10):
        one().close()
    time.sleep(1.0)
    base = rss_kb(m.pid)
    conns = [one() for _ in range(n)]
    after = settle(m, base, n * most_kib)
    assert after - base <= n * most_kib, "base %d KB, with %d idle connections %d KB (%.1f each)" % (
        base, n, after, (after - base) / n)
    assert after - base > n * 4, (base, after)  # the test measures something
    return conns


def settle(m, base, slack_kb, timeout=6.0):
    """RSS once it is within `slack_kb` of `base` (or the last value after `timeout`)."""
    last = [0]

    def near():
        last[0] = rss_kb(m.pid)
        return last[0] <= base + slack_kb

    wait_for(near, timeout, 0.25)
    return last[0]


def test_memory_returns_after_connections_close(release_bin, tmp_path, pki, www):
    m = start(release_bin, tmp_path, pki, www)
    ctx = ssl.create_default_context(cafile=str(pki.root))
    try:
        def one():
            return keep_alive_conn(ctx, m.port, 1)

        for _ in range(20):
            one().close()
        time.sleep(1.0)
        base = rss_kb(m.pid)

        # 1. keep-alive connections, all closed by the clients at once.
        conns = [one() for _ in range(N)]
        peak = rss_kb(m.pid)
        assert peak - base > 6 * 1024, (base, peak)  # the test measures something
        for s in conns:
            s.close()
        after = settle(m, base, 3 * 1024)
        assert after <= base + 3 * 1024, "keep-alive: base %d KB, peak %d KB, after %d KB" % (
            base, peak, after)

        # 2. clients that start a head and never finish it: cut by the head timeout.
        raws = []
        for _ in range(N):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", m.port), timeout=10),
                                server_hostname="example.test")
            s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: exa")
            raws.append(s)
        peak2 = rss_kb(m.pid)
        time.sleep(1.5)  # head timeout 1s: moat answers 408 and closes
        after2 = settle(m, base, 3 * 1024)
        for s in raws:
            s.close()
        assert after2 <= base + 3 * 1024, "slow heads: base %d KB, peak %d KB, after %d KB" % (
            base, peak2, after2)
    finally:
        m.stop()


def test_idle_keep_alive_connections_give_their_tls_buffers_back(release_bin, tmp_path, pki, www):
    # Between close requests a keep-alive connection keeps OpenSSL's record buffers (~34 KiB:
    # no malloc and free for each read and write); once it has been idle for a moment they go
    # back, so connections that stay open and idle cost about what an idle connection costs.
    m = start(release_bin, tmp_path, pki, www)
    ctx = ssl.create_default_context(cafile=str(pki.root))
    n = 400
    conns = []
    try:
        def one():
            return keep_alive_conn(ctx, m.port, 3)  # the buffers are kept between requests

        # Held: the server's part of each idle connection (the SSL, our records) stays well
        # below what the two record buffers alone would be (2 x ~17 KiB).
        conns = idle_cost(m, one, n, 24)
        # And they still serve.
        for s in conns[:5]:
            s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: example.test\r\n\r\n")
            assert b"200 OK" in s.recv(4096)
    finally:
        for s in conns:
            s.close()
        m.stop()


def test_idle_http2_connections_hold_no_tls_buffers(release_bin, tmp_path, pki, www):
    # An HTTP/2 connection whose streams are done gives the TLS record buffers back at once
    # (~39 KiB each is nghttp2's session, its HPACK tables and ours; the buffers would add 34).
    from h2_helpers import H2Conn
    m = start(release_bin, tmp_path, pki, www)
    n = 300
    conns = []
    try:
        def one():
            c = H2Conn(m.port, sni="example.test")
            for _ in range(2):
                st = c.get("/a.txt")
                assert st.status == 200 and bytes(st.body) == b"file A\n", st
            return c

        conns = idle_cost(m, one, n, 56)
        assert conns[0].get("/a.txt").status == 200  # and they still serve
    finally:
        for c in conns:
            c.close()
        m.stop()
