"""The server's life: SIGHUP reload (new certificate for new connections while an established
keep-alive connection goes on; a broken config refused with the old one still serving; no
request lost while reloading), SIGTERM drain (a slow download completes, then exit 0 within the
drain timeout), timeouts (slow head, idle keep-alive, handshake, body), the plain-HTTP redirect
listener, and the access log in JSON and combined formats."""

import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from helpers import (CURL, Closed, Conn, build_request, clean_env, curl, make_www,
                     peer_cert_der, standard_config, wait_for)

FAST = "head 2s; idle 2s; body 2s; write 10s; drain 10s; handshake 2s"


def start(moat, pki, www, name="moat", **kw):
    m = moat(name)
    m.write_config(standard_config(m, pki, www, **kw))
    m.start()
    return m


class CertFiles:
    """Certificate files at fixed paths inside the server's folder, so a test can swap them."""

    def __init__(self, folder, cert):
        self.chain = folder / "site.chain.pem"
        self.key = folder / "site.key"
        self.put(cert)

    def put(self, cert):
        shutil.copy(cert.chain, self.chain)
        shutil.copy(cert.key, self.key)
        self.key.chmod(0o600)


# -- SIGHUP ------------------------------------------------------------------------------------


def test_sighup_swaps_certificate(moat, pki, www):
    m = moat()
    files = CertFiles(m.dir, pki.ec)
    m.write_config(standard_config(m, pki, www, example_certs=[files]))
    m.start()
    pid = m.pid
    old = Conn(m.port, cafile=pki.root)
    try:
        assert old.request("/a.txt").status == 200
        assert old.sock.getpeercert(binary_form=True) == pki.ec.der

        fresh = pki.issue(["example.test"], "ec")
        files.put(fresh)
        m.signal(signal.SIGHUP)
        got = wait_for(lambda: peer_cert_der(m.port, "example.test")[0] == fresh.der, 10, 0.2)
        assert got, "new connections still get the old certificate after SIGHUP"
        assert m.alive() and m.pid == pid

        # The connection accepted before the reload keeps working, on its own certificate.
        r = old.request("/b.txt")
        assert r.status == 200
        assert r.body == b"file B, a bit longer\n"
        assert old.sock.getpeercert(binary_form=True) == pki.ec.der
        # And the new certificate verifies end to end.
        with Conn(m.port, cafile=pki.root) as c:
            assert c.request("/a.txt").status == 200
    finally:
        old.close()


def test_sighup_reloads_sites(moat, pki, www, tmp_path):
    other_www, _ = make_www(tmp_path / "other")
    (other_www / "only-here.txt").write_text("NEW SITE ROOT\n")
    m = start(moat, pki, www)
    with Conn(m.port, verify=False) as c:
        assert c.request("/only-here.txt").status == 404
    m.write_config(standard_config(m, pki, other_www))
    m.signal(signal.SIGHUP)

    def served():
        with Conn(m.port, verify=False) as c:
            return c.request("/only-here.txt").status == 200
    assert wait_for(served, 10, 0.2), m.stderr()[-2000:]


def test_sighup_bad_config_keeps_old(moat, pki, www):
    m = start(moat, pki, www)
    good = m.config.read_text()
    with Conn(m.port, cafile=pki.root) as c:
        assert c.request("/a.txt").status == 200
    m.write_config(good + "\nfrobnicate 12\n")
    bad_line = len(good.splitlines()) + 2
    m.signal(signal.SIGHUP)
    pattern = r"moat\.conf:%d:\d+: " % bad_line
    assert wait_for(lambda: re.search(pattern, m.stderr()), 10), m.stderr()[-2000:]
    assert m.alive()
    # Still serving with the old snapshot, certificate and all.
    with Conn(m.port, cafile=pki.root) as c:
        assert c.request("/a.txt").body == b"file A\n"
    # A fixed config is then taken.
    m.write_config(good)
    m.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert m.alive()
    with Conn(m.port, cafile=pki.root) as c:
        assert c.request("/a.txt").status == 200


def test_sighup_bad_certificate_keeps_old(moat, pki, www):
    m = moat()
    files = CertFiles(m.dir, pki.ec)
    m.write_config(standard_config(m, pki, www, example_certs=[files]))
    m.start()
    files.put(pki.expired)
    m.signal(signal.SIGHUP)
    assert wait_for(lambda: files.chain.name in m.stderr(), 10), m.stderr()[-2000:]
    assert m.alive()
    assert peer_cert_der(m.port, "example.test")[0] == pki.ec.der


def test_no_request_lost_during_reloads(moat, pki, www):
    m = start(moat, pki, www)
    failures, done = [], []
    stop = threading.Event()

    def client():
        while not stop.is_set() and len(done) < 300:
            try:
                with Conn(m.port, cafile=pki.root, timeout=5) as c:
                    r = c.request("/a.txt")
                    if r.status != 200 or r.body != b"file A\n":
                        failures.append(r)
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                failures.append(e)
            done.append(1)

    t = threading.Thread(target=client)
    t.start()
    try:
        for _ in range(4):
            time.sleep(0.4)
            m.signal(signal.SIGHUP)
        time.sleep(0.4)
    finally:
        stop.set()
        t.join(30)
    assert m.alive()
    assert len(done) >= 5
    assert not failures, failures[:3]


# -- SIGTERM -----------------------------------------------------------------------------------


def _big_site(tmp_path, size):
    www, _ = make_www(tmp_path / "bigsite")
    with open(www / "huge.bin", "wb") as f:
        f.truncate(size)
    return www


def test_sigterm_drains_slow_download(moat, pki, tmp_path):
    size = 50 * 1024 * 1024
    www = _big_site(tmp_path, size)
    m = start(moat, pki, www, timeouts=FAST)
    out = tmp_path / "download.bin"
    cmd = [CURL, "-sS", "--noproxy", "*", "--max-time", "30", "--limit-rate", "20M",
           "--resolve", "example.test:%d:127.0.0.1" % m.port, "--cacert", str(pki.root),
           "-o", str(out), "https://example.test:%d/huge.bin" % m.port]
    dl = subprocess.Popen(cmd, env=clean_env(), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: out.exists() and out.stat().st_size > 2 * 1024 * 1024, 10), \
            "download did not start"
        t0 = time.monotonic()
        m.signal(signal.SIGTERM)

        def refused():
            try:
                socket.create_connection(("127.0.0.1", m.port), timeout=1).close()
                return False
            except OSError:
                return True
        assert wait_for(refused, 3), "still accepting connections after SIGTERM"
        _, err = dl.communicate(timeout=30)
        assert dl.returncode == 0, err
        assert out.stat().st_size == size
        rc = m.wait_exit(12)
        assert rc == 0, (rc, m.stderr()[-2000:])
        assert time.monotonic() - t0 < 12
    finally:
        if dl.poll() is None:
            dl.kill()
            dl.wait()


def test_sigterm_drain_timeout_enforced(moat, pki, tmp_path):
    size = 50 * 1024 * 1024
    www = _big_site(tmp_path, size)
    m = start(moat, pki, www, timeouts=FAST.replace("drain 10s", "drain 2s"))
    out = tmp_path / "download.bin"
    cmd = [CURL, "-sS", "--noproxy", "*", "--max-time", "60", "--limit-rate", "1M",
           "--resolve", "example.test:%d:127.0.0.1" % m.port, "--cacert", str(pki.root),
           "-o", str(out), "https://example.test:%d/huge.bin" % m.port]
    dl = subprocess.Popen(cmd, env=clean_env(), stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: out.exists() and out.stat().st_size > 0, 10)
        t0 = time.monotonic()
        m.signal(signal.SIGTERM)
        rc = m.wait_exit(8)
        assert rc is not None, "moat still running 8 s after SIGTERM with drain 2s"
        assert rc == 0, (rc, m.stderr()[-2000:])
        assert time.monotonic() - t0 < 6
        # The download was cut, not completed.
        dl.wait(10)
        assert out.stat().st_size < size
    finally:
        if dl.poll() is None:
            dl.kill()
            dl.wait()


def test_sigterm_idle_server_exits_quickly(moat, pki, www):
    m = start(moat, pki, www)
    idle = Conn(m.port, verify=False)  # an idle keep-alive connection must not hold the exit
    try:
        assert idle.request("/a.txt").status == 200
        t0 = time.monotonic()
        m.signal(signal.SIGTERM)
        assert m.wait_exit(10) == 0, m.stderr()[-2000:]
        assert time.monotonic() - t0 < 5
    finally:
        idle.close()


# -- timeouts ----------------------------------------------------------------------------------


def test_slow_head_cut(moat, pki, www):
    m = start(moat, pki, www, timeouts=FAST)
    with Conn(m.port, verify=False) as c:
        c.send(b"GET /a.txt HTTP/1.1\r\nHost: example.test\r\nX-Slow: ")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 10:
            try:
                c.send(b"a")
            except OSError:
                closed = True
                break
            if c.is_closed(timeout=0.5):
                closed = True
                break
            if c.buf:
                r = c.read_response()
                assert r.status == 408, r
                closed = c.is_closed(timeout=3)
                break
        elapsed = time.monotonic() - t0
    assert closed, "a head trickling in byte by byte was never cut"
    assert 1.0 <= elapsed <= 5.0, elapsed


def test_idle_keepalive_closed(moat, pki, www):
    m = start(moat, pki, www, timeouts=FAST)
    with Conn(m.port, verify=False) as c:
        assert c.request("/a.txt").status == 200
        t0 = time.monotonic()
        assert c.is_closed(timeout=8), "idle connection not closed"
        elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed <= 5.0, elapsed


def test_keepalive_survives_below_idle(moat, pki, www):
    m = start(moat, pki, www, timeouts=FAST)
    with Conn(m.port, verify=False) as c:
        for _ in range(3):
            assert c.request("/a.txt").status == 200
            time.sleep(1.0)  # below the 2 s idle timeout, re-armed by each request
        assert c.request("/a.txt").status == 200


def test_handshake_timeout(moat, pki, www):
    m = start(moat, pki, www, timeouts=FAST)
    with socket.create_connection(("127.0.0.1", m.port), timeout=10) as s:
        t0 = time.monotonic()
        s.settimeout(8)
        try:
            data = s.recv(1)
        except ConnectionResetError:
            data = b""
        elapsed = time.monotonic() - t0
    assert data == b""
    assert 1.0 <= elapsed <= 5.0, elapsed


def test_body_timeout(moat, pki, www):
    m = start(moat, pki, www, timeouts=FAST)
    with Conn(m.port, verify=False) as c:
        c.send(b"POST /a.txt HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100\r\n\r\n0123")
        t0 = time.monotonic()
        if not c.is_closed(timeout=8):
            r = c.read_response()
            assert r.status in (408, 405), r
            assert c.is_closed(timeout=4)
        elapsed = time.monotonic() - t0
    assert elapsed <= 6.0, elapsed


def test_write_timeout_cuts_non_reading_client(moat, pki, tmp_path):
    size = 50 * 1024 * 1024
    www = _big_site(tmp_path, size)
    m = start(moat, pki, www, timeouts=FAST.replace("write 10s", "write 2s"))
    with Conn(m.port, verify=False, rcvbuf=16384) as c:
        c.send(build_request("/huge.bin"))
        time.sleep(5)  # read nothing for longer than the write timeout
        got = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20:
            try:
                more = c._fill(timeout=3)
            except (TimeoutError, socket.timeout):
                pytest.fail("connection neither closed nor finished (%d bytes)" % got)
            got += len(c.buf)
            c.buf = b""
            if not more:
                break
    assert c.eof, "no end of stream"
    assert got < size, "the whole file arrived: nothing was cut"


def test_connection_limit(moat, pki, www):
    m = start(moat, pki, www, workers=1,
              limits="request_line 8k; header_bytes 32k; header_fields 100; body 64k; "
                     "connections 2")
    c1 = Conn(m.port, verify=False)
    c2 = Conn(m.port, verify=False)
    try:
        assert c1.request("/a.txt").status == 200
        assert c2.request("/a.txt").status == 200
        served = False
        try:
            with Conn(m.port, verify=False, timeout=2) as c3:
                served = c3.request("/a.txt").status == 200
        except (OSError, ssl.SSLError, Closed, AssertionError):
            pass
        assert not served, "a third connection was served with connections 2"
        c1.close()

        def fresh_ok():
            try:
                with Conn(m.port, verify=False, timeout=2) as c4:
                    return c4.request("/a.txt").status == 200
            except (OSError, ssl.SSLError, Closed):
                return False
        assert wait_for(fresh_ok, 8, 0.2), "no room made when a connection closed"
    finally:
        c1.close()
        c2.close()


# -- plain-HTTP redirect -----------------------------------------------------------------------


def _redirect_server(moat, pki, www):
    m = moat()
    m.write_config(standard_config(m, pki, www,
                                   extra_top="redirect_http 127.0.0.1:%d" % m.http_port))
    m.start(ports=[m.port, m.http_port])
    return m


def _location_ok(loc, path, m):
    mm = re.match(r"^https://example\.test(?::(\d+))?(/.*)$", loc or "")
    assert mm, loc
    assert mm.group(1) in (None, "443", str(m.port)), loc
    assert mm.group(2) == path, loc


@pytest.mark.parametrize("host", ["example.test", "example.test:{http_port}"])
def test_redirect_http_308(moat, pki, www, host):
    m = _redirect_server(moat, pki, www)
    with Conn(m.http_port, tls=False) as c:
        r = c.request("/a/b?x=1&y=2", host=host.format(http_port=m.http_port))
        assert r.status == 308
        _location_ok(r.header("location"), "/a/b?x=1&y=2", m)
        assert not r.has("strict-transport-security")  # RFC 6797 §7.2: not over plain HTTP


def test_redirect_http_with_curl(moat, pki, www, tmp_path):
    m = _redirect_server(moat, pki, www)
    r = curl(tmp_path, "http://example.test:%d/dir/page.html?q=moat" % m.http_port,
             port=m.http_port)
    assert r.rc == 0, r.stderr
    assert r.status == 308
    _location_ok(r.header("location"), "/dir/page.html?q=moat", m)


def test_redirect_http_no_header_injection(moat, pki, www):
    m = _redirect_server(moat, pki, www)
    with Conn(m.http_port, tls=False) as c:
        c.send(b"GET /a%0d%0aSet-Cookie:%20evil=1 HTTP/1.1\r\nHost: example.test\r\n\r\n")
        r = c.read_response()
        assert r.status in (308, 400)
        assert not r.has("set-cookie"), r


def test_redirect_http_rejects_malformed(moat, pki, www):
    m = _redirect_server(moat, pki, www)
    with Conn(m.http_port, tls=False) as c:
        c.send(b"GET /x HTTP/1.1\r\n\r\n")  # no Host: nowhere to redirect to
        r = c.read_response()
        assert r.status == 400
        assert c.is_closed(timeout=3)
    with Conn(m.http_port, tls=False) as c:
        c.send(b"GET /x HTTP/1.1\r\nHost: example.test\r\nX-A : b\r\n\r\n")
        assert c.read_response().status == 400


# -- access log --------------------------------------------------------------------------------


def _traffic(m):
    with Conn(m.port, verify=False) as c:
        assert c.request("/a.txt").status == 200
        assert c.request("/missing.txt").status == 404
        assert c.request("/b.txt", method="HEAD").status == 200
        assert c.request("/a.txt", method="POST", body=b"xyz").status == 405


def _lines(m, n):
    lines = m.access_lines(n, timeout=5)
    if len(lines) < n:
        m.stop()  # the log is flushed at exit at the latest
        lines = m.access_lines(n, timeout=1)
    return lines


def test_access_log_json(moat, pki, www):
    m = start(moat, pki, www)
    _traffic(m)
    lines = _lines(m, 4)
    assert len(lines) >= 4, lines
    entries = [json.loads(l) for l in lines]  # every line is one JSON object
    for e in entries:
        assert {"status", "method", "path", "bytes"} <= set(e), e

    def find(method, path):
        for e in entries:
            if e["method"] == method and e["path"] == path:
                return e
        raise AssertionError("no entry for %s %s in %r" % (method, path, entries))

    a = find("GET", "/a.txt")
    assert int(a["status"]) == 200 and int(a["bytes"]) >= len(b"file A\n")
    assert int(find("GET", "/missing.txt")["status"]) == 404
    assert int(find("HEAD", "/b.txt")["status"]) == 200
    assert int(find("POST", "/a.txt")["status"]) == 405


@pytest.mark.parametrize("fmt", [" combined", ""], ids=["combined", "default"])
def test_access_log_combined(moat, pki, www, fmt):
    m = moat()
    m.write_config(standard_config(m, pki, www, access_log="%s%s" % (m.access_log, fmt)))
    m.start()
    _traffic(m)
    lines = _lines(m, 4)
    assert len(lines) >= 4, lines
    combined = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "(\S+) (\S+) HTTP/1\.[01]" (\d{3}) (\d+|-) '
                          r'"[^"]*" "[^"]*"')
    parsed = []
    for l in lines:
        mm = combined.match(l)
        assert mm, "not combined format: %r" % l
        parsed.append((mm.group(1), mm.group(2), int(mm.group(3))))
    assert ("GET", "/a.txt", 200) in parsed
    assert ("GET", "/missing.txt", 404) in parsed
    assert ("POST", "/a.txt", 405) in parsed


def test_access_log_stdout_json(moat, pki, www):
    m = moat()
    m.write_config(standard_config(m, pki, www, access_log="stdout json"))
    m.start()
    _traffic(m)
    m.stop()
    lines = [l for l in m.stdout().splitlines() if l.strip()]
    assert len(lines) >= 4, m.stdout()
    # Nothing but access-log lines on stdout, so it can be piped to a log collector.
    entries = [json.loads(l) for l in lines]
    assert any(e["path"] == "/a.txt" and int(e["status"]) == 200 for e in entries)


def test_access_log_records_bad_requests(moat, pki, www):
    m = start(moat, pki, www)
    with Conn(m.port, verify=False) as c:
        c.send(b"GET /x HTTP/1.1\r\nHost: example.test\r\nX-A : b\r\n\r\n")
        assert c.read_response().status == 400
    lines = _lines(m, 1)
    assert any(int(json.loads(l)["status"]) == 400 for l in lines), lines


def test_access_log_json_escapes(moat, pki, www):
    m = start(moat, pki, www)
    with Conn(m.port, verify=False) as c:
        r = c.request('/quote"back\\slash%22.txt', headers={"User-Agent": 'ua "with" quotes\\'})
        assert r.status in (400, 404)
    lines = _lines(m, 1)
    for l in lines:
        json.loads(l)  # still valid JSON with quotes and backslashes in the fields


def test_sanitizer_clean_after_traffic(moat, pki, www):
    # Traffic of every kind, then a clean exit: the fixture fails the test if ASan/UBSan/LSan
    # printed anything, and SIGTERM must end the process with 0.
    m = start(moat, pki, www)
    _traffic(m)
    for tls, raw in [(True, b"GET / HTTP/1.1\r\n\r\n"), (False, b"\x16\x03\x01\x00\x05hello"),
                     (False, b"GET / HTTP/1.1\r\n\r\n"), (True, b"GET /" + b"a" * 9000)]:
        try:
            with Conn(m.port, tls=tls, verify=False) as c:
                c.send(raw)
                try:
                    c.read_response()
                except (Closed, AssertionError, OSError):
                    pass
        except OSError:
            pass
    assert m.stop() == 0, m.stderr()[-2000:]
    assert m.sanitizer_report() is None
