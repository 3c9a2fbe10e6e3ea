"""HTTP/2 (RFC 9113) on moat's TLS listeners: ALPN, every handler over h2, the fields of an h2
answer, connection reuse and 421, the limits and the SETTINGS that advertise them, the access
log, priorities (RFC 9218), graceful shutdown and reload, idle and head timeouts, the
configuration (`http2 on|off`, per address, per site), and real clients (curl --http2,
nghttp, h2load, openssl s_client).

One module server (`h2srv`) has the suite's standard sites plus:
  proxy.test   proxy to origin.py (HTTP/1.1)
  crl.test     crl_publish /crl/local.crl local
  opt.test     client_auth optional, client_path /admin
  lax.test     no client auth, same certificate as opt.test, proxy.test, crl.test, c.test, d.test
  c.test, d.test  two sites sharing that certificate
  a.test       a site with a certificate of its own
with limits { header_bytes 8k; header_fields 50; body 256k } and the h2_* defaults.
Tests that need other settings start servers of their own (small, one worker).
"""

import email.utils
import json
import os
import re
import shutil
import signal
import socket
import time
from types import SimpleNamespace

import pytest

from conftest import _finish
from h2_helpers import (CONNECTION_SPECIFIC, DATA, HEADER_TABLE_SIZE, HEADERS,
                        INITIAL_WINDOW_SIZE, MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE,
                        NO_ERROR, NO_RFC7540_PRIORITIES, PROTOCOL_ERROR, REFUSED_STREAM, H2Conn,
                        frame, settings_frame, window_update)
from helpers import (Conn, Moat, client_context, curl, free_port, make_www, run, s_client,
                     s_client_text, standard_config, wait_for)
from mtls_helpers import ClientCa
from origin import Origin, body_bytes

NGHTTP = shutil.which("nghttp")
H2LOAD = shutil.which("h2load")
SHARED = ["lax.test", "opt.test", "proxy.test", "crl.test", "c.test", "d.test"]
BIG = 3 * 1024 * 1024 + 17


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def origin():
    with Origin() as o:
        yield o


@pytest.fixture(scope="module")
def xpki(pki, tmp_path_factory):
    ns = SimpleNamespace()
    ns.shared = pki.issue(SHARED, "ec", stem="h2-shared")
    ns.a = pki.issue(["a.test"], "ec", stem="h2-a")
    ns.clients = ClientCa(tmp_path_factory.mktemp("h2-clients"), "moat h2 clients CA")
    ns.alice = ns.clients.issue("alice", "alice")
    return ns


@pytest.fixture(scope="module")
def docroot(tmp_path_factory):
    www, _ = make_www(tmp_path_factory.mktemp("h2-www"))
    (www / "admin").mkdir()
    (www / "admin" / "index.html").write_text("ADMIN-PAGE\n")
    (www / "proto.html").write_text("<!doctype html><title>x</title>\n")
    return www


def h2_sites(x, www, origin):
    def site(name, body):
        return "site %s {\n    cert %s %s\n%s}\n" % (name, x.shared.chain, x.shared.key, body)
    return (
        site("lax.test", "    root %s\n" % www)
        + site("opt.test", "    root %s\n    client_auth optional\n    client_ca %s\n"
               "    client_path /admin\n" % (www, x.clients.pem))
        + site("proxy.test", "    proxy %s\n" % origin.url)
        + site("crl.test", "    root %s\n    crl_publish /crl/local.crl local\n" % www)
        + site("c.test", "    root %s\n" % www)
        + site("d.test", "    root %s/sub\n" % www)
        + "site a.test {\n    cert %s %s\n    root %s\n}\n" % (x.a.chain, x.a.key, www))


@pytest.fixture(scope="module")
def _h2srv(moat_bin, pki, xpki, docroot, origin, tmp_path_factory):
    m = Moat(moat_bin, tmp_path_factory.mktemp("h2srv"), name="h2srv")
    # The local CA whose CRL crl.test publishes.
    run([moat_bin, "ca", "init"], env=m.env(), cwd=m.dir, timeout=60)
    m.write_config(standard_config(
        m, pki, docroot,
        limits="request_line 8k; header_bytes 8k; header_fields 50; body 256k; "
               "connections 1000",
        extra_sites=h2_sites(xpki, docroot, origin)))
    m.start()
    yield m
    _finish(m)


@pytest.fixture
def srv(_h2srv):
    m = _h2srv
    if not m.alive():
        m.stop()
        m.start()
    return m


def h2(m, sni="example.test", **kw):
    return H2Conn(m.port, sni=sni, **kw)


def one_server(moat, text_fn, name="moat", ports=None):
    """A server of a test's own; text_fn(m) gives its config."""
    m = moat(name)
    m.write_config(text_fn(m))
    m.start(ports=ports)
    return m


def alpn_of(text):
    mm = re.search(r"ALPN protocol: (\S+)", text)
    return mm.group(1) if mm else None


def negotiated(port, sni="example.test", offer=("h2", "http/1.1")):
    ctx = client_context(verify=False, alpn=list(offer))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            return s.selected_alpn_protocol()


# -- ALPN --------------------------------------------------------------------------------------


def test_s_client_alpn_shows_h2(srv):
    p = s_client(srv.port, "-alpn", "h2,http/1.1")
    assert alpn_of(s_client_text(p)) == "h2", s_client_text(p)[-2000:]


@pytest.mark.parametrize("offer,want", [
    (("h2", "http/1.1"), "h2"),
    (("http/1.1", "h2"), "h2"),          # the server's preference wins
    (("http/1.0", "h2"), "h2"),
    (("h2",), "h2"),
    (("http/1.1",), "http/1.1"),
    (("http/1.0",), "http/1.0"),
])
def test_alpn_choice(srv, offer, want):
    assert negotiated(srv.port, offer=offer) == want


def test_no_alpn_is_http1(srv):
    with Conn(srv.port, verify=False) as c:
        r = c.request("/a.txt")
        assert r.version == "HTTP/1.1" and r.body == b"file A\n"


# -- curl ---------------------------------------------------------------------------------------


def curl_h2(tmp_path, m, pki, path, *args, host="example.test"):
    return curl(tmp_path, "https://%s:%d%s" % (host, m.port, path), "--http2",
                "-w", "%{http_version}", *args, port=m.port, host=host, cacert=pki.root)


def test_curl_http2_static(srv, pki, tmp_path):
    r = curl_h2(tmp_path, srv, pki, "/a.txt")
    assert r.rc == 0, r.stderr
    assert r.stdout.strip() == "2", (r.stdout, r.stderr[-2000:])
    assert r.status == 200 and r.body == b"file A\n"
    assert r.head.startswith("HTTP/2 200")


def test_curl_http2_head(srv, pki, tmp_path):
    r = curl_h2(tmp_path, srv, pki, "/b.txt", "-I")
    assert r.rc == 0, r.stderr
    assert r.stdout.strip() == "2"
    assert r.status == 200
    # With -I, curl writes the head where the body would go: there was none.
    assert r.body.startswith(b"HTTP/2 200") and r.body.endswith(b"\r\n\r\n"), r.body
    assert r.header("content-length") == str(len(b"file B, a bit longer\n"))


def test_curl_http2_proxy(srv, pki, tmp_path):
    r = curl_h2(tmp_path, srv, pki, "/echo?t=curl-h2", host="proxy.test")
    assert r.rc == 0, r.stderr
    assert r.stdout.strip() == "2"
    assert r.status == 200
    assert json.loads(r.body)["target"] == "/echo?t=curl-h2"


def test_curl_http2_big_file(srv, pki, tmp_path, docroot):
    r = curl_h2(tmp_path, srv, pki, "/big.bin")
    assert r.rc == 0, r.stderr
    assert r.stdout.strip() == "2"
    assert r.body == (docroot / "big.bin").read_bytes()


def test_curl_http11_same_listener(srv, pki, tmp_path):
    r = curl(tmp_path, "https://example.test:%d/a.txt" % srv.port, "--http1.1",
             "-w", "%{http_version}", port=srv.port, cacert=pki.root)
    assert r.rc == 0, r.stderr
    assert r.stdout.strip() == "1.1"
    assert r.status == 200 and r.body == b"file A\n"


# -- what an h2 answer looks like ----------------------------------------------------------------


IMF = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
                 r"Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


def check_fields(st, body_known=True):
    names = [k for k, _ in st.headers]
    assert names[0] == ":status", names
    assert names.count(":status") == 1
    assert not [n for n in names[1:] if n.startswith(":")], names
    assert all(n == n.lower() for n in names), names
    bad = [n for n in names if n in CONNECTION_SPECIFIC]
    assert not bad, "connection-specific fields in an h2 answer: %s" % bad
    assert IMF.match(st.header("date", "")), st
    assert abs(email.utils.parsedate_to_datetime(st.header("date")).timestamp()
               - time.time()) < 60
    assert (st.header("server") or "").split("/")[0] == "moat", st
    if body_known:
        assert st.header("content-length") == str(len(st.body)), st


@pytest.mark.parametrize("path,status", [("/a.txt", 200), ("/missing.txt", 404),
                                         ("/sub/", 200), ("/", 200)])
def test_answer_fields(srv, path, status):
    with h2(srv) as c:
        st = c.get(path)
        assert st.status == status, st
        check_fields(st)
        assert st.header("strict-transport-security", "").startswith("max-age=")


def test_static_file(srv):
    with h2(srv) as c:
        st = c.get("/a.txt")
        assert bytes(st.body) == b"file A\n"
        assert st.header("content-type", "").startswith("text/plain")
        assert st.header("etag") and st.header("last-modified")


def test_big_file(srv, docroot):
    with h2(srv) as c:
        st = c.get("/big.bin", timeout=30)
        assert st.status == 200
        assert bytes(st.body) == (docroot / "big.bin").read_bytes()
        assert st.header("content-length") == str(BIG)


def test_error_page(srv):
    with h2(srv) as c:
        st = c.get("/missing.txt")
        assert st.status == 404
        assert len(st.body) > 0
        assert st.header("content-type", "").startswith("text/html")


def test_head_has_the_get_fields_and_no_data(srv):
    with h2(srv) as c:
        g = c.get("/b.txt")
        h = c.get("/b.txt", method="HEAD")
        assert h.status == 200
        assert h.header("content-length") == str(len(b"file B, a bit longer\n"))
        for name in ("content-type", "etag", "last-modified", "content-length"):
            assert h.header(name) == g.header(name), name
        assert h.data_frames == 0 and len(h.body) == 0, h
        # Its HEADERS frame ended the stream.
        assert any(f.type == HEADERS and f.sid == h.sid and f.flags & 0x1 for f in c.frames)


def test_answers_alike_and_unlike_on_two_connections(moat, pki, www):
    """One worker remembers the last answer head it turned into HTTP/2 fields and reuses the
    conversion for a head equal byte for byte: every answer, remembered or not, still has its
    own file's fields, in lower case (a rule's mixed-case name too), and no other's."""
    m = one_server(moat, lambda m: standard_config(
        m, pki, www, workers=1,
        extra_sites="site hdr.wild.test {\n    cert %s %s\n    root %s\n"
                    "    header add X-Memo-Check yes\n    header /b.txt set X-Only-B two\n}\n"
                    % (pki.wild.chain, pki.wild.key, www)))
    want = {"/a.txt": b"file A\n", "/b.txt": b"file B, a bit longer\n"}
    seen = {}
    with h2(m, sni="hdr.wild.test") as c1, h2(m, sni="hdr.wild.test") as c2:
        plan = [(c1, "/a.txt", "GET"), (c1, "/a.txt", "GET"), (c2, "/a.txt", "GET"),
                (c1, "/b.txt", "GET"), (c2, "/a.txt", "HEAD"), (c2, "/b.txt", "GET"),
                (c1, "/missing.txt", "GET"), (c1, "/a.txt", "GET"), (c2, "/b.txt", "GET")]
        for c, path, method in plan:
            st = c.get(path, method=method, authority="hdr.wild.test")
            check_fields(st, body_known=method == "GET")
            assert st.header("x-memo-check") == "yes", st
            if path == "/missing.txt":
                assert st.status == 404 and st.header("etag") is None, st
                continue
            assert st.status == 200, st
            assert (st.header("x-only-b") == "two") == (path == "/b.txt"), st
            assert st.header("content-length") == str(len(want[path])), st
            if method == "GET":
                assert bytes(st.body) == want[path], st
            fields = (st.header("etag"), st.header("last-modified"), st.header("content-type"))
            assert seen.setdefault(path, fields) == fields, (path, st)
    assert seen["/a.txt"][0] != seen["/b.txt"][0]


def test_a_cached_file_replaced_under_a_stalled_answer_is_sent_whole_as_it_was(moat, pki, www):
    """A small file's bytes go from the file cache straight into the frames, the cache entry
    held by the answer until they are sent: an answer stalled by the client's window, while
    the file is replaced and the cache takes the new one, still ends with the bytes (and the
    length) it began with; the next request gets the new file."""
    m = one_server(moat, lambda m: standard_config(
        m, pki, www, workers=1, limits="file_cache 4; file_cache_valid 100ms"))
    f = www / "stalled.txt"
    old, new = b"A" * 40 + b"\n", b"the new content, longer than before\n"
    f.write_bytes(old)
    try:
        with h2(m) as warm:
            assert bytes(warm.get("/stalled.txt").body) == old  # now in the cache
        with h2(m, settings=[(INITIAL_WINDOW_SIZE, 5)], auto_window=False) as c:
            sid = c.request("/stalled.txt")
            st = c.stream(sid)
            c.pump_until(lambda: len(st.body) >= 5, 5, what="the first 5 bytes")
            assert st.header("content-length") == str(len(old)) and not st.done, st
            tmp = www / "stalled.new"
            tmp.write_bytes(new)
            os.rename(tmp, f)
            time.sleep(0.3)
            with h2(m) as other:
                for _ in range(3):  # the cache sees the change and holds the new file
                    assert bytes(other.get("/stalled.txt").body) == new
                for name in ("a.txt", "b.txt", "c.txt", "digits.txt", "style.css"):
                    assert other.get("/" + name).status == 200  # and evicts the old entry
            c.send(window_update(sid, 1000) + window_update(0, 1000))
            c.response(sid, timeout=5)
            assert bytes(st.body) == old, st
        with h2(m) as after:
            assert bytes(after.get("/stalled.txt").body) == new
    finally:
        f.unlink()


def test_range_206(srv):
    with h2(srv) as c:
        st = c.get("/digits.txt", headers=[("range", "bytes=2-5")])
        assert st.status == 206, st
        assert bytes(st.body) == b"2345"
        assert st.header("content-range") == "bytes 2-5/20"
        assert st.header("content-length") == "4"
        st = c.get("/digits.txt", headers=[("range", "bytes=50-60")])
        assert st.status == 416, st


def test_conditional_304(srv):
    with h2(srv) as c:
        st = c.get("/a.txt")
        etag, lm = st.header("etag"), st.header("last-modified")
        r1 = c.get("/a.txt", headers=[("if-none-match", etag)])
        assert r1.status == 304 and len(r1.body) == 0, r1
        assert r1.header("etag") == etag
        r2 = c.get("/a.txt", headers=[("if-modified-since", lm)])
        assert r2.status == 304 and len(r2.body) == 0, r2
        r3 = c.get("/a.txt", headers=[("if-none-match", '"other"')])
        assert r3.status == 200 and bytes(r3.body) == b"file A\n"


def test_directory_index_redirect_and_listing(srv):
    with h2(srv) as c:
        st = c.get("/sub/")
        assert st.status == 200 and b"SUB-INDEX" in st.body
        st = c.get("/sub")
        assert st.status in (301, 308), st
        assert st.header("location", "").endswith("/sub/"), st
    with h2(srv, sni="listing.test") as c:
        st = c.get("/nolist/")
        assert st.status == 200, st
        assert b"one.txt" in st.body and b"two-entry.txt" in st.body
        assert b".dotfile" not in st.body


def test_published_crl(srv):
    with h2(srv, sni="crl.test") as c:
        st = c.get("/crl/local.crl")
        assert st.status == 200, st
        assert st.header("content-type") == "application/pkix-crl"
        assert bytes(st.body[:1]) == b"\x30"  # DER SEQUENCE
        check_fields(st)
        again = c.get("/crl/local.crl", headers=[("if-none-match", st.header("etag"))])
        assert again.status == 304


def test_many_streams_at_once(srv, docroot):
    # 60 requests in flight on one connection (h2_streams default 100), mixed sizes.
    files = ["a.txt", "b.txt", "c.txt", "digits.txt", "style.css", "sub/file.txt"]
    with h2(srv) as c:
        sids = {}
        for i in range(60):
            name = files[i % len(files)] if i % 10 else "big.bin"
            sids[c.request("/" + name)] = name
        etags = {}
        for sid, name in sids.items():
            st = c.response(sid, timeout=30)
            assert st.status == 200, st
            assert bytes(st.body) == (docroot / name).read_bytes(), name
            # Each answer's own fields: nghttp2 points into the stream's head (no copy) until
            # its HEADERS goes, while the next streams' answers are being made.
            assert st.header("content-length") == str((docroot / name).stat().st_size), name
            etags.setdefault(name, set()).add(st.header("etag"))
        assert all(len(v) == 1 for v in etags.values()), etags
        assert len({next(iter(v)) for v in etags.values()}) == len(etags), etags


def test_host_field_instead_of_authority(srv):
    # RFC 9113 §8.3.1: a request may carry Host instead of :authority.
    with h2(srv) as c:
        st = c.response(c.request(fields=[(":method", "GET"), (":scheme", "https"),
                                          (":path", "/a.txt"), ("host", "example.test")]))
        assert st.status == 200 and bytes(st.body) == b"file A\n", st


# -- the reverse proxy -------------------------------------------------------------------------


def test_proxy_get(srv, origin):
    with h2(srv, sni="proxy.test") as c:
        st = c.get("/echo?t=h2-get", headers=[("x-test", "1")])
        assert st.status == 200, st
        e = json.loads(bytes(st.body))
        assert e["method"] == "GET" and e["target"] == "/echo?t=h2-get"
    req = origin.one("t=h2-get")
    assert req.version == "HTTP/1.1"
    assert req.header("host") == "proxy.test"
    assert req.header("x-test") == "1"
    # No h2 pseudo-field leaks into the HTTP/1.1 request.
    assert not [k for k in req.names() if k.startswith(":")], req.headers


def test_proxy_upload(srv, origin):
    body = os.urandom(200000)  # below limits.body 256k, above the 64k initial windows
    with h2(srv, sni="proxy.test") as c:
        st = c.get("/echo?t=h2-upload", method="POST", body=body, timeout=20)
        assert st.status == 200, st
        e = json.loads(bytes(st.body))
        assert e["body_len"] == len(body)
    req = origin.one("t=h2-upload")
    assert req.body == body


def test_proxy_upload_with_content_length(srv, origin):
    body = os.urandom(100000)
    with h2(srv, sni="proxy.test") as c:
        st = c.get("/echo?t=h2-upload-cl", method="POST", body=body,
                   headers=[("content-length", str(len(body)))], timeout=20)
        assert st.status == 200, st
    req = origin.one("t=h2-upload-cl")
    assert req.body == body and req.header("content-length") == str(len(body))


def test_proxy_expect_100_continue(srv, origin):
    body = os.urandom(50000)
    with h2(srv, sni="proxy.test") as c:
        sid = c.new_sid()
        c.headers(sid, c.request_fields("/echo?t=h2-expect", "POST", headers=[
            ("expect", "100-continue"), ("content-length", str(len(body)))]), end_stream=False)
        st = c.stream(sid)
        c.pump_until(lambda: st.informational or st.done, 5, what="100 Continue")
        assert [f for f in st.informational[0] if f[0] == ":status"] == [(":status", "100")], st
        c.send_data(sid, body)
        c.response(sid)
        assert st.status == 200, st
    assert origin.one("t=h2-expect").body == body


@pytest.mark.parametrize("kind", ["length", "chunked", "close"])
def test_proxy_streams_the_answer(srv, kind):
    n = 5 * 1024 * 1024 if kind != "close" else 1024 * 1024
    with h2(srv, sni="proxy.test") as c:
        st = c.get("/%s/%d?t=h2-stream-%s" % (kind, n, kind), timeout=30)
        assert st.status == 200, st
        assert bytes(st.body) == body_bytes(n)
        check_fields(st, body_known=(kind == "length"))


def test_proxy_hop_by_hop_fields_dropped(srv):
    with h2(srv, sni="proxy.test") as c:
        st = c.get("/hop?t=h2-hop")
        assert st.status == 200, st
        names = [k for k, _ in st.headers]
        assert not [n for n in names if n in CONNECTION_SPECIFIC + ("te", "trailer")], names
        assert st.header("x-kept") is not None


def test_proxy_cookies_become_one_line(srv, origin):
    # RFC 9113 §8.2.3: several cookie fields are joined with "; " for HTTP/1.1.
    with h2(srv, sni="proxy.test") as c:
        st = c.get("/echo?t=h2-cookies", headers=[("cookie", "a=1"), ("cookie", "b=2"),
                                                  ("cookie", "c=3")])
        assert st.status == 200, st
    req = origin.one("t=h2-cookies")
    assert req.header_all("cookie") == ["a=1; b=2; c=3"], req.headers


def test_proxy_origin_status_and_204(srv):
    with h2(srv, sni="proxy.test") as c:
        st = c.get("/status/204?t=h2-204")
        assert st.status == 204 and len(st.body) == 0, st
        st = c.get("/status/304?t=h2-304")
        assert st.status == 304 and len(st.body) == 0, st


# -- mutual TLS ----------------------------------------------------------------------------------


def test_client_path_403_over_h2(srv, xpki):
    with h2(srv, sni="opt.test") as c:
        st = c.get("/admin/")
        assert st.status == 403, st
        body = bytes(st.body).decode()
        assert "/admin needs a client certificate" in body
        assert "no client certificate was presented" in body
        assert b"ADMIN-PAGE" not in st.body
        # The connection goes on.
        assert c.get("/a.txt").status == 200


def test_client_path_with_certificate_over_h2(srv, xpki):
    with h2(srv, sni="opt.test", cert=xpki.alice) as c:
        st = c.get("/admin/")
        assert st.status == 200, st
        assert bytes(st.body) == b"ADMIN-PAGE\n"


# -- connection reuse: 421 (RFC 9113 §9.1.1) ------------------------------------------------------


def test_reuse_for_a_name_the_certificate_covers(srv):
    with h2(srv, sni="example.test") as c:
        assert c.get("/a.txt").status == 200
        st = c.get("/a.txt", authority="www.example.test")
        assert st.status == 200 and bytes(st.body) == b"file A\n", st


def test_reuse_across_sites_sharing_a_certificate(srv):
    with h2(srv, sni="c.test") as c:
        assert bytes(c.get("/sub/file.txt").body) == b"sub file\n"
        # d.test's root is the docroot's sub/.
        st = c.get("/file.txt", authority="d.test")
        assert st.status == 200 and bytes(st.body) == b"sub file\n", st


def test_421_for_a_name_the_certificate_does_not_cover(srv):
    with h2(srv, sni="example.test") as c:
        st = c.get("/a.txt", authority="a.test")
        assert st.status == 421, st
        st = c.get("/a.txt", authority="listing.test")
        assert st.status == 421, st
        # (A name no site claims goes to `site *`, as over HTTP/1: docs/config.md.)
        # A 421 is a stream's answer: the connection goes on.
        assert c.get("/a.txt").status == 200


def test_421_for_a_site_with_other_client_auth_rules(srv):
    # lax.test's certificate covers opt.test, but opt.test asks for client certificates.
    with h2(srv, sni="lax.test") as c:
        assert c.get("/a.txt").status == 200
        st = c.get("/admin/", authority="opt.test")
        assert st.status == 421, st
        assert b"ADMIN-PAGE" not in st.body
        st = c.get("/a.txt", authority="c.test")
        assert st.status == 200, st
    with h2(srv, sni="opt.test") as c:
        assert c.get("/a.txt", authority="lax.test").status == 421


def test_authority_with_port(srv):
    with h2(srv) as c:
        st = c.get("/a.txt", authority="example.test:%d" % srv.port)
        assert st.status == 200, st


# -- limits and SETTINGS ---------------------------------------------------------------------------


def test_settings_defaults(srv):
    with h2(srv) as c:
        s = c.server_settings
        assert s.get(MAX_CONCURRENT_STREAMS) == 100, s
        assert s.get(HEADER_TABLE_SIZE, 4096) == 4096, s
        assert s.get(INITIAL_WINDOW_SIZE) == 256 * 1024, s
        assert s.get(MAX_HEADER_LIST_SIZE) == 8 * 1024, s


def test_settings_follow_the_limits(moat, pki, www):
    m = one_server(moat, lambda m: standard_config(
        m, pki, www, workers=1,
        limits="header_bytes 12k; header_fields 30; h2_streams 7; h2_hpack 2k; "
               "h2_window 128k"))
    with h2(m) as c:
        s = c.server_settings
        assert s.get(MAX_CONCURRENT_STREAMS) == 7, s
        assert s.get(HEADER_TABLE_SIZE) == 2048, s
        assert s.get(INITIAL_WINDOW_SIZE) == 128 * 1024, s
        assert s.get(MAX_HEADER_LIST_SIZE) == 12 * 1024, s
        assert c.get("/a.txt").status == 200


def _fields_of_size(total, authority="example.test", path="/a.txt"):
    """Request fields whose RFC 9113 §6.5.2 size (name + value + 32 each) is `total`."""
    base = [(":method", "GET"), (":scheme", "https"), (":authority", authority),
            (":path", path)]
    used = sum(len(k) + len(v) + 32 for k, v in base)
    pad = total - used - (len("x-pad") + 32)
    assert pad > 0
    return base + [("x-pad", "p" * pad)]


def test_header_bytes_431_and_the_connection_goes_on(srv):
    with h2(srv) as c:
        ok = c.response(c.request(fields=_fields_of_size(8 * 1024 - 64)))
        assert ok.status == 200, ok
        sid = c.request(fields=_fields_of_size(8 * 1024 + 64))
        st = c.response(sid)
        assert st.status == 431, st
        assert c.goaway is None
        assert c.get("/a.txt").status == 200


def test_header_bytes_431_by_a_huge_field(srv):
    with h2(srv) as c:
        st = c.get("/a.txt", headers=[("x-big", "v" * 20000)])
        assert st.status == 431, st
        assert c.get("/a.txt").status == 200


def test_header_fields_431(srv):
    with h2(srv) as c:
        st = c.get("/a.txt", headers=[("x-f%d" % i, "1") for i in range(40)])
        assert st.status == 200, st
        st = c.get("/a.txt", headers=[("x-f%d" % i, "1") for i in range(60)])
        assert st.status == 431, st
        assert c.get("/a.txt").status == 200


def test_body_413_by_content_length(srv, origin):
    with h2(srv, sni="proxy.test") as c:
        sid = c.new_sid()
        c.headers(sid, c.request_fields("/echo?t=h2-413-cl", "POST",
                                        headers=[("content-length", str(300000))]),
                  end_stream=False)
        st = c.response(sid)  # answered before any DATA
        assert st.status == 413, st
        st2 = c.get("/status/204?t=h2-after-413-cl")
        assert st2.status == 204, st2
        assert c.goaway is None
    assert origin.find("t=h2-413-cl", timeout=0.5) == []


def test_body_413_by_data(srv, origin):
    with h2(srv, sni="proxy.test") as c:
        sid = c.new_sid()
        c.headers(sid, c.request_fields("/echo?t=h2-413-data", "POST"), end_stream=False)
        c.send_data(sid, os.urandom(300000), end_stream=True, timeout=15)
        st = c.response(sid)
        assert st.status == 413, st
        st2 = c.get("/status/204?t=h2-after-413")
        assert st2.status == 204, st2


def test_body_413_static(srv):
    with h2(srv) as c:
        st = c.get("/a.txt", method="PUT", body=os.urandom(300000),
                   headers=[("content-length", "300000")])
        assert st.status in (405, 413), st
        assert c.get("/a.txt").status == 200


def test_too_many_streams_are_refused(moat, pki, www):
    m = one_server(moat, lambda m: standard_config(m, pki, www, workers=1,
                                                   limits="h2_streams 5"))
    # Window 0: the server cannot send the DATA, so the first streams stay open.
    with h2(m, settings=[(INITIAL_WINDOW_SIZE, 0)]) as c:
        assert c.server_settings.get(MAX_CONCURRENT_STREAMS) == 5
        c.pump(0.2)  # let the server see our SETTINGS ACK
        sids = [c.request("/a.txt") for _ in range(10)]
        c.pump_until(lambda: all(c.stream(s).reset is not None for s in sids[5:]) or c.goaways,
                     5, what="resets of the extra streams")
        # RFC 9113 §5.1.2 calls it a stream error (PROTOCOL_ERROR or REFUSED_STREAM), and
        # §5.4.1 lets an endpoint treat any stream error as a connection error: nghttp2 does
        # that once our SETTINGS are acknowledged (a client that ignores the limit it was told
        # is broken or hostile). Either is right; silence or a hang is not.
        if c.goaway is not None:
            assert c.goaway.code == PROTOCOL_ERROR, c.goaway
            assert c.goaway.last_sid <= sids[5], c.goaway
            return
        for s in sids[5:]:
            assert c.stream(s).reset in (REFUSED_STREAM, PROTOCOL_ERROR), c.stream(s)
        for s in sids[:5]:
            assert c.stream(s).reset is None, c.stream(s)
        # Open the window: the five admitted streams complete.
        c.send(settings_frame([(INITIAL_WINDOW_SIZE, 65535)]))
        for s in sids[:5]:
            st = c.response(s)
            assert st.status == 200 and bytes(st.body) == b"file A\n", st
        assert c.get("/a.txt").status == 200


# -- access log ---------------------------------------------------------------------------------


def test_access_log_json_proto(srv):
    with h2(srv) as c:
        assert c.get("/a.txt?t=h2-json-log").status == 200
    entry = wait_for(lambda: next((json.loads(l) for l in srv.access_lines(1, 0.2)
                                   if "h2-json-log" in l), None), 5)
    assert entry, srv.access_lines()[-5:]
    assert entry["proto"] == "HTTP/2", entry
    assert int(entry["status"]) == 200 and entry["method"] == "GET"


def test_access_log_combined_proto(moat, pki, www):
    m = one_server(moat, lambda m: standard_config(m, pki, www, workers=1,
                                                   access_log="%s combined" % m.access_log))
    with h2(m) as c:
        assert c.get("/a.txt").status == 200
    with Conn(m.port, verify=False) as c:
        c.send(b"GET /b.txt HTTP/1.0\r\nHost: example.test\r\n\r\n")
        assert c.read_response().status == 200
    with Conn(m.port, verify=False) as c:
        assert c.request("/c.txt").status == 200
    lines = m.access_lines(3)
    text = "\n".join(lines)
    assert re.search(r'"GET /a\.txt HTTP/2" 200 7 ', text), text
    assert re.search(r'"GET /b\.txt HTTP/1\.0" 200 ', text), text
    assert re.search(r'"GET /c\.txt HTTP/1\.1" 200 ', text), text


# -- real clients ------------------------------------------------------------------------------


def test_nghttp_100_streams(srv, tmp_path):
    if NGHTTP is None:
        pytest.skip("nghttp not installed (Debian package nghttp2-client)")
    p = run([NGHTTP, "-n", "-s", "-m", "100", "https://127.0.0.1:%d/a.txt" % srv.port],
            timeout=60, check=False)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    # -s prints one line per stream: id, times, status, size, path.
    rows = re.findall(r"^\s*\d+\s+\S+\s+\S+\s+\S+\s+(\d{3})\s+(\d+) /a\.txt$", p.stdout, re.M)
    assert len(rows) == 100, p.stdout[-3000:]
    assert all(r == ("200", "7") for r in rows), rows[:5]


def test_h2load(srv):
    if H2LOAD is None:
        pytest.skip("h2load not installed (Debian package nghttp2-client)")
    p = run([H2LOAD, "-n", "2000", "-c", "4", "-m", "20",
             "https://127.0.0.1:%d/a.txt" % srv.port], timeout=120, check=False)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert "Application protocol: h2" in out, out[-3000:]
    mm = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                   r"(\d+) failed, (\d+) errored", out)
    assert mm, out[-3000:]
    assert mm.group(4) == "2000" and mm.group(5) == "0" and mm.group(6) == "0", mm.group(0)
    assert re.search(r"status codes: 2000 2xx", out), out[-3000:]


# -- priorities (RFC 9218) ----------------------------------------------------------------------


@pytest.mark.parametrize("signal_setting", [True, False], ids=["no-rfc7540", "plain"])
def test_priority_urgency_schedules_data(srv, signal_setting):
    """A u=0 stream gets the connection's flow-control credit before a u=7 one.

    Made deterministic by flow control: the client opens both streams in one write with
    stream windows of 2^31-1 but leaves the connection window at its 65535. The server spends
    that on whatever it sends first, then both streams are blocked with their data ready and
    both priorities known. Only then does the client give 1 MiB of connection credit: a server
    that schedules by urgency spends it on the u=0 stream (its file is 3 MiB, so it alone can
    use it all). A server that ignores priorities sends round robin or first-come (u=7 was
    opened first), so the u=7 stream gets at least about half. Asserted: the first DATA after
    the credit is u=0's, and u=0 got more than four times u=7's share of that credit.
    ("plain": the client does not send SETTINGS_NO_RFC7540_PRIORITIES; the priority field
    is an end-to-end signal either way, RFC 9218 §5.)"""
    settings = [(INITIAL_WINDOW_SIZE, 0x7FFFFFFF)]
    if signal_setting:
        settings.append((NO_RFC7540_PRIORITIES, 1))
    with h2(srv, settings=settings, auto_window=False) as c:
        low = c.new_sid()
        high = c.new_sid()
        c.send(frame(HEADERS, 0x5, low, c.encode(c.request_fields(
            "/big.bin", headers=[("priority", "u=7")]))) +
            frame(HEADERS, 0x5, high, c.encode(c.request_fields(
                "/big.bin", headers=[("priority", "u=0")]))))
        lo, hi = c.stream(low), c.stream(high)

        def received():
            return len(lo.body) + len(hi.body)

        c.pump_until(lambda: received() >= 65535, 10, what="the first 65535 bytes")
        c.pump(0.3)
        assert received() == 65535, received()
        before = len(c.frames)
        lo0, hi0 = len(lo.body), len(hi.body)
        credit = 1024 * 1024
        c.send(window_update(0, credit))
        c.pump_until(lambda: received() >= 65535 + credit, 10, what="the credit's data")
        datas = [f for f in c.frames[before:] if f.type == DATA and f.length]
        assert datas, c.frames[before:]
        got_lo, got_hi = len(lo.body) - lo0, len(hi.body) - hi0
        assert datas[0].sid == high, "first DATA after the credit was for u=7 (%r)" % datas[:5]
        assert got_hi > 4 * got_lo, "u=0 got %d bytes, u=7 %d" % (got_hi, got_lo)


# -- timeouts ----------------------------------------------------------------------------------


def test_idle_connection_gets_goaway_no_error(srv):
    # timeouts { idle 3s }: no stream open, nothing sent.
    with h2(srv) as c:
        assert c.get("/a.txt").status == 200
        t0 = time.monotonic()
        g = c.wait_goaway(8)
        took = time.monotonic() - t0
        assert g is not None, "no GOAWAY after %.1f s idle" % took
        assert g.code == NO_ERROR, g
        assert g.last_sid >= 1
        assert 2.0 < took < 6.0, took
        assert c.wait_closed(3)


def test_silent_client_after_handshake_is_closed(srv):
    # TLS done, ALPN h2, no preface: closed after timeouts { head 2s }.
    # The server may send its own SETTINGS (and a GOAWAY) first: only the close is checked.
    with Conn(srv.port, verify=False, context=client_context(verify=False, alpn=["h2"])) as c:
        assert c.sock.selected_alpn_protocol() == "h2"
        t0 = time.monotonic()
        while not c.eof and time.monotonic() - t0 < 8:
            try:
                c._fill(timeout=0.5)
            except (socket.timeout, TimeoutError):
                pass
        took = time.monotonic() - t0
        assert c.eof, "still open after %.1f s; got %r" % (took, c.buf[:60])
        assert 1.5 < took < 6.0, took


def test_open_stream_is_not_idle(srv):
    # A proxied answer that takes 4 s, longer than timeouts { idle 3s }: the idle timer runs
    # only while no stream is open, so the connection is not cut.
    with h2(srv, sni="proxy.test") as c:
        st = c.get("/slow/4?t=h2-slow-idle", timeout=10)
        assert st.status == 200, st
        assert c.goaway is None


# -- graceful shutdown and reload -------------------------------------------------------------


def _slow_download_then(m, sig, size):
    """Start a download that reads slowly (credit by hand), send `sig`, and check GOAWAY,
    the refusal of a new stream and the full body. Returns the connection."""
    c = H2Conn(m.port, auto_window=False)
    sid = c.request("/huge.bin")
    st = c.stream(sid)
    c.pump_until(lambda: len(st.body) >= 65535, 10, what="the first window of data")
    m.signal(sig)
    t0 = time.monotonic()

    def credit(n=32768):
        c.send(window_update(0, n) + window_update(sid, n))

    # Read slowly until a final GOAWAY (a first one may be the 2^31-1 notice).
    def final_goaway():
        return any(g.last_sid < 0x7FFFFFFF for g in c.goaways)
    deadline = time.monotonic() + 5
    while not final_goaway() and time.monotonic() < deadline and not c.eof:
        credit()
        c.pump(0.1)
    assert c.goaways, "no GOAWAY within 5 s of the signal"
    for g in c.goaways:
        assert g.code == NO_ERROR, g
    g = c.goaway
    assert g.last_sid >= sid, g
    assert not st.done or len(st.body) < size, "the download finished before the test was done"
    # A new stream after GOAWAY is not served.
    late = c.new_sid()
    c.headers(late, c.request_fields("/a.txt"))
    # Now read at full speed: the in-flight stream completes.
    c.auto_window = True
    credit(size)
    c.response(sid, timeout=10)
    assert st.status == 200 and len(st.body) == size, st
    assert time.monotonic() - t0 < 5 + 1, "longer than timeouts.drain"
    lst = c.stream(late)
    if final_goaway():
        assert lst.status is None, "a stream opened after GOAWAY was served: %r" % lst
    assert c.wait_closed(5), "the connection stays open after the drained stream"
    return c


@pytest.fixture
def drainer(moat, pki, tmp_path):
    www, _ = make_www(tmp_path / "drain-www")
    size = 8 * 1024 * 1024
    with open(www / "huge.bin", "wb") as f:
        f.truncate(size)
    m = one_server(moat, lambda m: standard_config(
        m, pki, www, workers=1,
        timeouts="head 2s; idle 3s; body 3s; write 10s; drain 5s; handshake 3s"))
    return m, size


def test_sigterm_drains_an_h2_download(drainer):
    m, size = drainer
    c = _slow_download_then(m, signal.SIGTERM, size)
    c.close()
    assert m.wait_exit(10) == 0, m.stderr()[-2000:]


def test_sighup_drains_an_h2_download(drainer):
    m, size = drainer
    c = _slow_download_then(m, signal.SIGHUP, size)
    c.close()
    assert m.alive()
    # The reloaded server speaks h2 to new connections.
    with h2(m) as c2:
        assert c2.get("/a.txt").status == 200


# -- configuration -----------------------------------------------------------------------------


def _cfg(m, pki, www, top="", site_extra="", listen=None):
    listen = listen or "127.0.0.1:%d" % m.port
    return f"""\
listen {listen}
redirect_http 127.0.0.1:{m.http_port}
workers 1
state {m.state}
error_log stderr info
trust {pki.root}
{top}
site example.test {{
    cert {pki.ec.chain} {pki.ec.key}
    root {www}
}}
site listing.test {{
    cert {pki.listing.chain} {pki.listing.key}
    root {www}
{site_extra}}}
"""


def test_http2_on_is_the_default_and_explicit(moat, pki, www):
    m = one_server(moat, lambda m: _cfg(m, pki, www, top="http2 on"),
                   ports=None)
    assert negotiated(m.port) == "h2"
    assert negotiated(m.port, "listing.test") == "h2"


def test_http2_off_everywhere(moat, pki, www, tmp_path):
    m = one_server(moat, lambda m: _cfg(m, pki, www, top="http2 off"))
    assert negotiated(m.port) == "http/1.1"
    assert negotiated(m.port, "listing.test") == "http/1.1"
    r = curl(tmp_path, "https://example.test:%d/a.txt" % m.port, "--http2",
             "-w", "%{http_version}", port=m.port, cacert=pki.root)
    assert r.rc == 0 and r.stdout.strip() == "1.1", (r.stdout, r.stderr[-1000:])


def test_http2_off_on_one_address(moat, pki, www):
    other = free_port()

    def cfg(m):
        m.wait_ports = [m.port, other]
        return _cfg(m, pki, www, listen="127.0.0.1:%d 127.0.0.1:%d" % (m.port, other),
                    top="http2 off 127.0.0.1:%d" % other)
    m = moat()
    m.write_config(cfg(m))
    m.start(ports=[m.port, other])
    assert negotiated(m.port) == "h2"
    assert negotiated(other) == "http/1.1"
    with H2Conn(m.port) as c:
        assert c.get("/a.txt").status == 200


def test_http2_off_for_one_site(moat, pki, www):
    m = one_server(moat, lambda m: _cfg(m, pki, www, site_extra="    http2 off\n"))
    assert negotiated(m.port, "example.test") == "h2"
    assert negotiated(m.port, "listing.test") == "http/1.1"
    with Conn(m.port, sni="listing.test", verify=False,
              context=client_context(verify=False, alpn=["h2", "http/1.1"])) as c:
        r = c.request("/a.txt", host="listing.test")
        assert r.status == 200 and r.version == "HTTP/1.1"


def test_redirect_listener_stays_http1(moat, pki, www):
    m = one_server(moat, lambda m: _cfg(m, pki, www))
    with Conn(m.http_port, tls=False) as c:
        r = c.request("/a.txt")
        assert r.status == 308 and r.version == "HTTP/1.1", r
    # An h2 preface with prior knowledge (h2c) gets no HTTP/2 frames back.
    with Conn(m.http_port, tls=False) as c:
        c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings_frame())
        c.is_closed(timeout=3)
        assert not c.buf or c.buf.startswith(b"HTTP/1."), c.buf[:100]


def test_http2_directive_errors(moat, pki, www):
    for i, (top, words) in enumerate([("http2 maybe", "http2"),
                                      ("http2 off 127.0.0.1:1", "listen")]):
        m = moat("bad-%d" % i)
        m.write_config(_cfg(m, pki, www, top=top))
        p = run([m.bin, "serve", "--check", "--config", m.config], check=False,
                env=m.env())
        assert p.returncode != 0, (top, p.stdout, p.stderr)
        assert words in p.stderr, (top, p.stderr)
