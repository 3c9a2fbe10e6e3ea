"""The HTTP cache (docs/cache.md, RFC 9111 as a shared cache) in front of a recording origin
that counts the requests it gets: freshness from s-maxage, max-age, Expires and heuristics;
Age; no-store, private, no-cache, Set-Cookie and Authorization; Vary variants; request
directives (no-cache, max-age, max-stale, only-if-cached); HEAD and conditional requests from a
stored GET; invalidation by unsafe methods; PURGE of a URI and of a prefix; the byte bound and
the object bound; an answer stored while it is relayed; Cache-Status on every answer; HTTP/2.
"""

import email.utils
import http.server
import json
import re
import threading
import time

import pytest

from conftest import _finish
from h2_helpers import H2Conn
from helpers import Conn, Moat, build_request


def ago(seconds):
    return email.utils.formatdate(time.time() - seconds, usegmt=True)


# path -> (status, [(field, value)], body); "{n}" in a body becomes the request's number, so
# a test can tell a stored answer (same n) from a fresh one.
ROUTES = {
    "/max-age": (200, [("Cache-Control", "max-age=60")], b"max-age {n}"),
    "/s-maxage": (200, [("Cache-Control", "max-age=0, s-maxage=60")], b"s-maxage {n}"),
    "/expires": (200, [("Expires", ago(-3600))], b"expires {n}"),
    "/expired": (200, [("Expires", ago(60))], b"expired {n}"),
    "/expires-0": (200, [("Expires", "0")], b"expires-0 {n}"),
    "/heuristic": (200, [("Last-Modified", ago(10 * 86400))], b"heuristic {n}"),
    "/no-freshness": (200, [], b"plain {n}"),
    "/no-store": (200, [("Cache-Control", "max-age=60, no-store")], b"no-store {n}"),
    "/private": (200, [("Cache-Control", "max-age=60, private")], b"private {n}"),
    "/no-cache": (200, [("Cache-Control", "max-age=60, no-cache")], b"no-cache {n}"),
    "/must-understand": (200, [("Cache-Control", "max-age=60, no-store, must-understand")],
                         b"mu {n}"),
    "/cookie": (200, [("Cache-Control", "max-age=60"), ("Set-Cookie", "s=1")], b"cookie {n}"),
    "/cookie-public": (200, [("Cache-Control", "public, max-age=60"), ("Set-Cookie", "s=2")],
                       b"cookie-public {n}"),
    "/auth": (200, [("Cache-Control", "max-age=60")], b"auth {n}"),
    "/auth-public": (200, [("Cache-Control", "public, max-age=60")], b"auth-public {n}"),
    "/vary": (200, [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")],
              b"vary {n} {lang}"),
    "/vary-star": (200, [("Cache-Control", "max-age=60"), ("Vary", "*")], b"star {n}"),
    "/etag": (200, [("Cache-Control", "max-age=60"), ("ETag", '"e1"'),
                    ("Last-Modified", ago(3600))], b"etag {n}"),
    "/short": (200, [("Cache-Control", "max-age=1")], b"short {n}"),
    "/short-mr": (200, [("Cache-Control", "max-age=1, must-revalidate")], b"short-mr {n}"),
    "/aged": (200, [("Cache-Control", "max-age=60"), ("Age", "30")], b"aged {n}"),
    "/status404": (404, [("Cache-Control", "max-age=60")], b"not here {n}"),
    "/status500": (500, [("Cache-Control", "max-age=60")], b"broken {n}"),
    "/p/a": (200, [("Cache-Control", "max-age=60")], b"p-a {n}"),
    "/p/b": (200, [("Cache-Control", "max-age=60")], b"p-b {n}"),
    "/q/a": (200, [("Cache-Control", "max-age=60")], b"q-a {n}"),
    "/text": (200, [("Cache-Control", "max-age=60"), ("Content-Type", "text/plain")],
              b"compressible text {n} " * 200),
}


# /slow-big sends its second half only once the test has seen the first (or after 8 s).
GATE = threading.Event()
GATE.set()  # open unless a test closes it


class Origin(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.counts = {}
        self.lock = threading.Lock()
        self.seen = []

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _n(self, path):
        with self.server.lock:
            self.server.counts[path] = self.server.counts.get(path, 0) + 1
            self.server.seen.append((self.command, self.path, dict(self.headers)))
            return self.server.counts[path]

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        path = self.path.split("?")[0]
        self._n("POST " + path)
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def do_GET(self):
        path = self.path.split("?")[0]
        n = self._n(path)
        if path.startswith("/big/"):
            size = int(path.split("/")[2])
            body = bytes([65 + (n % 26)]) * size
            self.send_response(200)
            self.send_header("Cache-Control", "max-age=60")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        if path == "/slow-big":
            half = b"x" * 250_000
            self.send_response(200)
            self.send_header("Cache-Control", "max-age=60")
            self.send_header("Content-Length", str(2 * len(half)))
            self.end_headers()
            self.wfile.write(half)
            self.wfile.flush()
            GATE.wait(8)
            self.wfile.write(half)
            return
        status, fields, body = ROUTES.get(path, (404, [], b"unknown"))
        lang = self.headers.get("Accept-Language", "-")
        body = body.replace(b"{n}", str(n).encode()).replace(b"{lang}", lang.encode())
        self.send_response(status)
        for k, v in fields:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@pytest.fixture(scope="module")
def origin():
    o = Origin()
    t = threading.Thread(target=o.serve_forever, daemon=True)
    t.start()
    yield o
    o.shutdown()
    o.server_close()


@pytest.fixture(scope="module")
def srv(moat_bin, pki, origin, tmp_path_factory):
    m = Moat(moat_bin, tmp_path_factory.mktemp("cache"), name="cache")
    port = origin.server_address[1]
    m.write_config(f"""\
listen 127.0.0.1:{m.port}
workers 2
state {m.state}
error_log stderr info
cache_memory 1m
cache_max_object 600k
site example.test {{
    cert {pki.ec.chain} {pki.ec.key}
    proxy http://127.0.0.1:{port}
    cache on
    cache_purge 127.0.0.1
}}
site enc.test {{
    cert {pki.ec.chain} {pki.ec.key}
    proxy http://127.0.0.1:{port}
    cache on
    encode br gzip
}}
site part.test {{
    cert {pki.ec.chain} {pki.ec.key}
    proxy http://127.0.0.1:{port}
    cache /p
}}
""")
    m.start()
    yield m
    _finish(m)


def ask(m, path, method="GET", headers=(), host="example.test", body=b"", source=None):
    with Conn(m.port, sni=host, verify=False, source=source) as c:
        c.send(build_request(path, method=method, host=host, headers=list(headers), body=body))
        return c.read_response(method)


def status_of(r):
    return r.header("cache-status") or ""


def test_max_age_hit_with_age_and_cache_status(srv, origin):
    a = ask(srv, "/max-age")
    assert a.status == 200 and a.body == b"max-age 1"
    assert re.match(r"moat; fwd=uri-miss; stored", status_of(a)), a.headers
    b = ask(srv, "/max-age")
    assert b.body == b"max-age 1", "a hit is the stored answer"
    assert re.match(r"moat; hit; ttl=\d+", status_of(b)), b.headers
    assert int(b.header("age")) >= 0
    assert origin.count("/max-age") == 1


@pytest.mark.parametrize("path,stored", [
    ("/s-maxage", True), ("/expires", True), ("/expired", False), ("/expires-0", False),
    ("/heuristic", True), ("/no-freshness", False), ("/no-store", False), ("/private", False),
    ("/no-cache", False), ("/must-understand", True), ("/cookie", False),
    ("/vary-star", False), ("/status404", True), ("/status500", True),
])
def test_freshness_and_storability(srv, origin, path, stored):
    a = ask(srv, path)
    b = ask(srv, path)
    want = 1 if stored else 2
    assert origin.count(path) == want, (path, status_of(a), status_of(b))
    if stored:
        assert "hit" in status_of(b) and a.body == b.body
    else:
        assert "hit" not in status_of(b) and a.body != b.body


def test_set_cookie_stored_only_when_public_and_never_replayed(srv, origin):
    a = ask(srv, "/cookie-public")
    assert a.header("set-cookie") == "s=2", "the client that caused the store gets its cookie"
    b = ask(srv, "/cookie-public")
    assert "hit" in status_of(b)
    assert b.header("set-cookie") is None, "one client's cookie is never served to another"


def test_authorization(srv, origin):
    auth = [("Authorization", "Bearer x")]
    ask(srv, "/auth", headers=auth)
    ask(srv, "/auth", headers=auth)
    assert origin.count("/auth") == 2, "not stored for a request with Authorization"
    ask(srv, "/auth-public", headers=auth)
    b = ask(srv, "/auth-public", headers=auth)
    assert "hit" in status_of(b) and origin.count("/auth-public") == 1


def test_vary_keeps_variants_apart(srv, origin):
    en = [("Accept-Language", "en")]
    fr = [("Accept-Language", "fr")]
    a = ask(srv, "/vary", headers=en)
    b = ask(srv, "/vary", headers=fr)
    assert "vary-miss" in status_of(b), b.headers
    c = ask(srv, "/vary", headers=en)
    d = ask(srv, "/vary", headers=fr)
    assert c.body == a.body and b"en" in c.body and "hit" in status_of(c)
    assert d.body == b.body and b"fr" in d.body and "hit" in status_of(d)
    assert origin.count("/vary") == 2


def test_request_directives(srv, origin):
    ask(srv, "/etag")
    r = ask(srv, "/etag", headers=[("Cache-Control", "no-cache")])
    assert "fwd=request" in status_of(r) and origin.count("/etag") == 2
    r = ask(srv, "/etag", headers=[("Pragma", "no-cache")])
    assert "fwd=request" in status_of(r) and origin.count("/etag") == 3
    time.sleep(1.1)  # max-age=0 takes an answer of age 0: let the stored one age
    r = ask(srv, "/etag", headers=[("Cache-Control", "max-age=0")])
    assert origin.count("/etag") == 4
    r = ask(srv, "/etag")
    assert "hit" in status_of(r)
    r = ask(srv, "/never-asked", headers=[("Cache-Control", "only-if-cached")])
    assert r.status == 504 and origin.count("/never-asked") == 0


def test_head_and_conditionals_from_a_stored_get(srv, origin):
    g = ask(srv, "/etag")
    n = origin.count("/etag")
    h = ask(srv, "/etag", method="HEAD")
    assert h.status == 200 and h.body == b"" and "hit" in status_of(h)
    assert h.header("content-length") == str(len(g.body))
    r = ask(srv, "/etag", headers=[("If-None-Match", '"e1"')])
    assert r.status == 304 and r.header("etag") == '"e1"' and "hit" in status_of(r)
    r = ask(srv, "/etag", headers=[("If-None-Match", 'W/"e1", "other"')])
    assert r.status == 304
    r = ask(srv, "/etag", headers=[("If-None-Match", '"e2"')])
    assert r.status == 200 and r.body == g.body
    r = ask(srv, "/etag", headers=[("If-Modified-Since", ago(0))])
    assert r.status == 304
    assert origin.count("/etag") == n, "all from the store"


def test_stale_answers(srv, origin):
    ask(srv, "/short")
    ask(srv, "/short-mr")
    time.sleep(2.2)
    r = ask(srv, "/short")
    assert "fwd=stale" in status_of(r) and origin.count("/short") == 2
    time.sleep(2.2)
    r = ask(srv, "/short", headers=[("Cache-Control", "max-stale=30")])
    assert "hit" in status_of(r), "max-stale accepts a stale answer"
    r = ask(srv, "/short-mr", headers=[("Cache-Control", "max-stale=30")])
    assert "hit" not in status_of(r), "must-revalidate: never served stale"


def test_age_of_the_origin_counts(srv, origin):
    ask(srv, "/aged")
    r = ask(srv, "/aged")
    assert "hit" in status_of(r) and int(r.header("age")) >= 30


def test_unsafe_method_invalidates(srv, origin):
    ask(srv, "/max-age?inv=1")
    assert "hit" in status_of(ask(srv, "/max-age?inv=1"))
    p = ask(srv, "/max-age?inv=1", method="POST", body=b"x")
    assert p.status == 200
    assert "hit" not in status_of(ask(srv, "/max-age?inv=1"))


def test_purge_uri_and_prefix(srv, origin):
    for p in ("/p/a", "/p/b", "/q/a"):
        ask(srv, p)
        assert "hit" in status_of(ask(srv, p))
    r = ask(srv, "/p/a", method="PURGE")
    assert r.status == 200 and json.loads(r.body) == {"purged": 1}
    assert "hit" not in status_of(ask(srv, "/p/a"))
    r = ask(srv, "/p/*", method="PURGE")
    assert r.status == 200 and json.loads(r.body)["purged"] == 2
    assert "hit" not in status_of(ask(srv, "/p/b"))
    assert "hit" in status_of(ask(srv, "/q/a")), "outside the prefix: kept"
    r = ask(srv, "/q/a", method="PURGE", source="127.0.0.2")
    assert r.status == 403
    assert "hit" in status_of(ask(srv, "/q/a"))


def test_byte_bound_evicts_least_recently_used(srv, origin):
    # cache_memory 1m: five 300 KB answers cannot all stay.
    for i in range(5):
        ask(srv, "/big/300000?i=%d" % i)
    r = ask(srv, "/big/300000?i=4")
    assert "hit" in status_of(r)
    r = ask(srv, "/big/300000?i=0")
    assert "hit" not in status_of(r), "the oldest went first"


def test_object_bound(srv, origin):
    a = ask(srv, "/big/700000?o=1")
    assert len(a.body) == 700000 and "stored" not in status_of(a)
    b = ask(srv, "/big/700000?o=1")
    assert "hit" not in status_of(b)


def test_stored_while_relayed(srv, origin):
    """The first half reaches the client before the origin sends the second; the whole is
    stored all the same."""
    GATE.clear()
    try:
        with Conn(srv.port, verify=False, timeout=4) as c:
            c.send(build_request("/slow-big"))
            c._read_until(b"\r\n\r\n")
            while len(c.buf) < 100_000:
                try:
                    got = c._fill()
                except TimeoutError:
                    got = False
                assert got, "the first half was held back to be stored whole"
    finally:
        GATE.set()
    r = ask(srv, "/slow-big")
    assert len(r.body) == 500_000
    # The first client left after half: a cut answer is not stored, so a second full relay
    # is what stores it.
    r = ask(srv, "/slow-big")
    assert "hit" in status_of(r) and len(r.body) == 500_000


def test_cache_prefixes(srv, origin):
    ask(srv, "/max-age?part=1", host="part.test")
    r = ask(srv, "/max-age?part=1", host="part.test")
    assert r.header("cache-status") is None, "outside `cache /p`: no cache at all"
    ask(srv, "/p/a?part=1", host="part.test")
    assert "hit" in status_of(ask(srv, "/p/a?part=1", host="part.test"))


def test_compressed_variants(srv, origin):
    br = [("Accept-Encoding", "br")]
    gz = [("Accept-Encoding", "gzip")]
    a = ask(srv, "/text", headers=br, host="enc.test")
    assert a.header("content-encoding") == "br" and "stored" in status_of(a)
    b = ask(srv, "/text", headers=gz, host="enc.test")
    assert b.header("content-encoding") == "gzip" and "vary-miss" in status_of(b)
    c = ask(srv, "/text", headers=br, host="enc.test")
    assert c.header("content-encoding") == "br" and "hit" in status_of(c) and c.body == a.body
    d = ask(srv, "/text", headers=[("Accept-Encoding", "br;q=1")], host="enc.test")
    assert "hit" in status_of(d), "the same codings accepted, spelt otherwise"
    assert origin.count("/text") == 2


def test_http2_hit(srv, origin):
    ask(srv, "/max-age?h2=1")
    with H2Conn(srv.port) as c:
        st = c.get("/max-age?h2=1")
        assert st.status == 200 and "hit" in (st.header("cache-status") or "")
