"""HTTP/1.1 over TLS at the byte level: keep-alive, pipelining, request bodies (Content-Length
and chunked, read and discarded), Expect: 100-continue, HEAD and OPTIONS, the headers every
response carries, and every malformed request the parser must refuse (status, then
`Connection: close`, then the connection really closed).

The module's server (conftest `server`) has limits { body 64k; request_line 8k;
header_bytes 32k; header_fields 100 } and a 2 s head timeout.
"""

import email.utils
import re
import socket
import struct
import threading
import time

import pytest

from helpers import Closed, Conn, build_request, curl

H = "Host: example.test\r\n"


def conn(server, **kw):
    return Conn(server.port, verify=False, **kw)


def assert_closed_after(c, resp):
    """An error response must say `Connection: close` and then the server must close."""
    assert "close" in (resp.header("connection") or "").lower(), resp
    assert c.is_closed(timeout=3.0), "connection still open after %d" % resp.status


def send_tolerant(c, data):
    """Send, tolerating the server closing early (it may answer before reading everything)."""
    try:
        c.send(data)
    except (BrokenPipeError, ConnectionResetError, OSError):
        pass


# -- keep-alive and pipelining ------------------------------------------------------------------


def test_keepalive_sequential_requests(server):
    with conn(server) as c:
        for path, body in [("/a.txt", b"file A\n"), ("/b.txt", b"file B, a bit longer\n"),
                           ("/c.txt", b"file C\n")]:
            r = c.request(path)
            assert r.status == 200
            assert r.body == body
            assert "close" not in (r.header("connection") or "").lower()
        assert not c.is_closed(timeout=0.3)


def test_pipelining_in_order(server):
    with conn(server) as c:
        c.send(build_request("/a.txt") + build_request("/b.txt") + build_request("/c.txt"))
        bodies = [c.read_response().body for _ in range(3)]
        assert bodies == [b"file A\n", b"file B, a bit longer\n", b"file C\n"]
        # And the connection is still usable afterwards.
        assert c.request("/a.txt").status == 200


def test_pipelining_many_mixed(server):
    paths = ["/a.txt", "/missing", "/b.txt", "/sub/", "/c.txt"] * 6
    with conn(server) as c:
        c.send(b"".join(build_request(p, method="HEAD" if i % 4 == 3 else "GET")
                        for i, p in enumerate(paths)))
        for i, p in enumerate(paths):
            method = "HEAD" if i % 4 == 3 else "GET"
            r = c.read_response(method)
            assert r.status == (404 if p == "/missing" else 200), (i, p, r)
            if method == "HEAD":
                assert r.body == b""


def test_many_pipelined_requests(server):
    # 500 requests in one write; moat must answer all of them in order while the client reads
    # only after sending everything (back-pressure on the response side).
    n = 500
    with conn(server) as c:
        c.send(b"".join(build_request("/a.txt" if i % 2 else "/c.txt") for i in range(n)))
        for i in range(n):
            assert c.read_response().body == (b"file A\n" if i % 2 else b"file C\n"), i


def test_concurrent_clients(server):
    # 20 clients x 10 keep-alive requests at once over both workers.
    errors = []

    def client(k):
        try:
            with conn(server) as c:
                for i in range(10):
                    r = c.request("/b.txt" if (i + k) % 2 else "/digits.txt")
                    want = b"file B, a bit longer\n" if (i + k) % 2 else b"0123456789abcdefghij"
                    if r.status != 200 or r.body != want:
                        errors.append((k, i, r))
        except Exception as e:  # noqa: BLE001 - every failure is a finding
            errors.append((k, e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]


def test_client_reset_mid_download(server):
    # A client that vanishes (RST) in the middle of a large response must not hurt the server.
    for _ in range(3):
        c = conn(server)
        c.send(build_request("/big.bin"))
        c._fill()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    time.sleep(0.3)
    assert server.alive()
    with conn(server) as c:
        assert c.request("/a.txt").body == b"file A\n"


def test_client_closes_before_response(server):
    for _ in range(5):
        c = conn(server)
        c.send(build_request("/big.bin") * 3)
        c.close()
    time.sleep(0.3)
    assert server.alive()
    with conn(server) as c:
        assert c.request("/a.txt").status == 200


def test_connection_close_honoured(server):
    with conn(server) as c:
        r = c.request("/a.txt", headers={"Connection": "close"})
        assert r.status == 200
        assert_closed_after(c, r)


def test_http10_closes_by_default(server):
    with conn(server) as c:
        c.send("GET /a.txt HTTP/1.0\r\nHost: example.test\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"file A\n"
        assert c.is_closed(timeout=3.0)


def test_bad_request_ends_pipeline(server):
    # After an error nothing more is read from the connection: no answer to the third request.
    with conn(server) as c:
        c.send(build_request("/a.txt") + b"GET / HTTP/1.1\r\nX-A : b\r\n" + H.encode() +
               b"\r\n" + build_request("/b.txt"))
        assert c.read_response().status == 200
        r = c.read_response()
        assert r.status == 400
        assert_closed_after(c, r)


def test_http10_with_transfer_encoding_closes(server):
    # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request means faulty framing; the
    # server must close the connection after answering.
    with conn(server) as c:
        c.send("GET /a.txt HTTP/1.0\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
               build_request("/b.txt").decode())
        r = c.read_response()
        assert r.status in (200, 400)
        assert c.is_closed(timeout=3.0)


def test_head_of_error_has_no_body(server):
    with conn(server) as c:
        c.send(build_request("/missing.txt", method="HEAD") + build_request("/a.txt"))
        h = c.read_response("HEAD")
        assert h.status == 404
        assert c.read_response().body == b"file A\n"


def test_absolute_form_target(server):
    # RFC 9112 §3.2.2: a server MUST accept the absolute form.
    with conn(server) as c:
        c.send("GET https://example.test/a.txt HTTP/1.1\r\n" + H + "\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"file A\n"


def test_unknown_method(server):
    with conn(server) as c:
        c.send("BREW /a.txt HTTP/1.1\r\n" + H + "\r\n")
        r = c.read_response()
        assert r.status in (405, 501)


# -- headers on every response -----------------------------------------------------------------


@pytest.mark.parametrize("raw,status", [
    (build_request("/a.txt"), 200),
    (build_request("/missing.txt"), 404),
    (build_request("/", method="POST", body=b"x"), 405),
    (b"GET / HTTP/1.1\r\nX-A : b\r\n" + H.encode() + b"\r\n", 400),
])
def test_common_headers(server, raw, status):
    with conn(server) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == status
        # RFC 9110 §5.6.7: IMF-fixdate only.
        assert re.match(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|"
                        r"Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$", r.header("date", "")), r
        date = email.utils.parsedate_to_datetime(r.header("date"))
        assert abs(date.timestamp() - time.time()) < 60
        assert (r.header("server") or "").split("/")[0] == "moat"
        assert r.header("content-length") == str(len(r.body))
        assert r.header("strict-transport-security", "").startswith("max-age=31536000")
        assert len(r.header_all("date")) == 1


def test_hsts_off_for_site_with_hsts_off(server):
    with conn(server, sni="nohsts.test") as c:
        r = c.request("/a.txt", host="nohsts.test")
        assert r.status == 200
        assert not r.has("strict-transport-security")


# -- methods -----------------------------------------------------------------------------------


def test_head_matches_get(server):
    with conn(server) as c:
        c.send(build_request("/b.txt", method="HEAD") + build_request("/a.txt"))
        h = c.read_response("HEAD")
        g = c.read_response()
        assert h.status == 200
        assert h.body == b""
        assert h.header("content-length") == str(len(b"file B, a bit longer\n"))
        # The GET that followed is parsed right only if HEAD sent no body bytes.
        assert g.body == b"file A\n"


@pytest.mark.parametrize("target", ["/a.txt", "*", "/"])
def test_options(server, target):
    with conn(server) as c:
        c.send("OPTIONS %s HTTP/1.1\r\n%s\r\n" % (target, H) + build_request("/a.txt").decode())
        r = c.read_response()
        assert r.status == 204
        allow = {m.strip() for m in (r.header("allow") or "").split(",")}
        assert {"GET", "HEAD", "OPTIONS"} <= allow
        assert c.read_response().body == b"file A\n"


# -- request bodies ----------------------------------------------------------------------------


def test_post_content_length_405_keeps_connection(server):
    with conn(server) as c:
        r = c.request("/a.txt", method="POST", body=b"x" * 5000)
        assert r.status == 405
        allow = {m.strip() for m in (r.header("allow") or "").split(",")}
        assert {"GET", "HEAD"} <= allow
        assert "POST" not in allow
        # The body was read and discarded: the next request is parsed from the right place.
        assert c.request("/a.txt").body == b"file A\n"


def test_post_chunked_405_keeps_connection(server):
    body = b"5\r\nhello\r\n1a;ext=1\r\n" + b"z" * 26 + b"\r\n0\r\nX-Trailer: t\r\n\r\n"
    with conn(server) as c:
        c.send(b"POST /a.txt HTTP/1.1\r\n" + H.encode() + b"Transfer-Encoding: chunked\r\n\r\n"
               + body + build_request("/b.txt"))
        r = c.read_response()
        assert r.status == 405
        assert c.read_response().body == b"file B, a bit longer\n"


def test_get_with_body_then_pipelined(server):
    # The body looks like a request: if moat did not skip it, it would answer it.
    fake = b"GET /c.txt HTTP/1.1\r\nHost: example.test\r\n\r\n"
    with conn(server) as c:
        c.send(build_request("/a.txt", body=fake) + build_request("/b.txt"))
        assert c.read_response().body == b"file A\n"
        assert c.read_response().body == b"file B, a bit longer\n"
        assert not c.is_closed(timeout=0.3)


def test_chunked_body_split_across_writes(server):
    # A GET's answer waits for its body (which is read and dropped), so the chunked decoder
    # sees every split and the connection stays in sync.
    with conn(server) as c:
        c.send(b"GET /a.txt HTTP/1.1\r\n" + H.encode() + b"Transfer-Encoding: chunked\r\n\r\n")
        for piece in [b"4\r", b"\nwiki\r\n", b"5\r\npe", b"dia\r\n0", b"\r\n\r\n"]:
            c.send(piece)
            time.sleep(0.05)
        r = c.read_response()
        assert r.status == 200 and r.body == b"file A\n"
        assert c.request("/b.txt").status == 200


def test_refusal_does_not_wait_for_the_body(server):
    # The 405 does not depend on the body: it comes before the body is sent, says close, and
    # what the client sends afterwards is dropped (lingering close) instead of being parsed.
    with conn(server) as c:
        c.send(b"POST /a.txt HTTP/1.1\r\n" + H.encode() + b"Content-Length: 60000\r\n\r\n"
               + b"x" * 10)
        t0 = time.monotonic()
        r = c.read_response()
        assert time.monotonic() - t0 < 2.0
        assert r.status == 405
        assert "close" in (r.header("connection") or "").lower()
        send_tolerant(c, build_request("/c.txt"))
        assert c.is_closed(timeout=5.0)
        assert b"file C" not in c.buf


def test_body_over_limit_content_length(server):
    with conn(server) as c:
        c.send(b"POST /a.txt HTTP/1.1\r\n" + H.encode() + b"Content-Length: 100000\r\n\r\n")
        r = c.read_response()
        assert r.status == 413
        assert_closed_after(c, r)


def test_body_over_limit_chunked(server):
    # GET: its answer waits for the body, so the body's size decides (a POST is refused 405
    # before its body is read).
    with conn(server) as c:
        c.send(b"GET /a.txt HTTP/1.1\r\n" + H.encode() + b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"2000\r\n" + b"y" * 0x2000 + b"\r\n"
        for _ in range(10):  # 80 KiB > 64 KiB
            send_tolerant(c, chunk)
        r = c.read_response()
        assert r.status == 413
        assert_closed_after(c, r)


def test_body_at_limit_accepted(server):
    with conn(server) as c:
        r = c.request("/a.txt", body=b"k" * (64 * 1024))
        assert r.status == 200
        assert c.request("/b.txt").status == 200


def test_expect_100_continue(server):
    # A request whose body moat will accept: 100 Continue must come before the body is sent.
    with conn(server) as c:
        c.send(b"GET /a.txt HTTP/1.1\r\n" + H.encode() +
               b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = c.read_response()
        assert interim.status == 100
        assert interim.raw_head.startswith(b"HTTP/1.1 100 Continue\r\n")
        c.send(b"hello")
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"file A\n"
        assert c.request("/b.txt").status == 200


def test_expect_100_continue_post_refused(server):
    # POST to a static site: 100 then 405, or 405 at once (RFC 9110 §10.1.1 allows skipping the
    # 100 when answering with a final status). Either way the connection stays in sync.
    with conn(server) as c:
        c.send(b"POST /upload HTTP/1.1\r\n" + H.encode() +
               b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response()
        if r.status == 100:
            c.send(b"hello")
            r = c.read_response()
        assert r.status == 405
        if "close" in (r.header("connection") or "").lower():
            assert c.is_closed(timeout=3.0)
        else:
            c.send(b"hello")
            assert c.request("/a.txt").body == b"file A\n"


def test_expect_100_continue_over_limit(server):
    # A body that will be refused: 413 (RFC 9110 §10.1.1 lets the server skip the 100).
    with conn(server) as c:
        c.send(b"POST /upload HTTP/1.1\r\n" + H.encode() +
               b"Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response()
        if r.status == 100:
            r = c.read_response()
        assert r.status == 413
        assert_closed_after(c, r)


def test_expect_100_continue_with_curl(server, pki, tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"d" * 3000)
    r = curl(tmp_path, "https://example.test:%d/a.txt" % server.port, "-X", "GET",
             "-H", "Expect: 100-continue", "--data-binary", "@%s" % data, "--http1.1",
             port=server.port, cacert=pki.root)
    assert r.rc == 0, r.stderr
    assert "HTTP/1.1 100 Continue" in r.head
    assert r.status == 200
    assert r.body == b"file A\n"


# -- malformed requests ------------------------------------------------------------------------

BAD = [
    # RFC 9112 §6.3: CL together with TE is a smuggling attempt.
    ("cl_and_te", "POST /a.txt HTTP/1.1\r\n" + H + "Content-Length: 5\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    ("te_and_cl", "POST /a.txt HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n"
     "Content-Length: 5\r\n\r\n0\r\n\r\n", {400}),
    ("differing_cl", "POST /a.txt HTTP/1.1\r\n" + H + "Content-Length: 5\r\n"
     "Content-Length: 6\r\n\r\nhello!", {400}),
    ("differing_cl_list", "POST /a.txt HTTP/1.1\r\n" + H + "Content-Length: 5, 6\r\n\r\nhello!",
     {400}),
    ("cl_not_number", "POST /a.txt HTTP/1.1\r\n" + H + "Content-Length: abc\r\n\r\n", {400}),
    ("cl_negative", "POST /a.txt HTTP/1.1\r\n" + H + "Content-Length: -1\r\n\r\n", {400}),
    ("cl_plus_sign", "POST /a.txt HTTP/1.1\r\n" + H + "Content-Length: +5\r\n\r\nhello", {400}),
    ("cl_hex", "POST /a.txt HTTP/1.1\r\n" + H + "Content-Length: 0x5\r\n\r\nhello", {400}),
    ("cl_overflow", "POST /a.txt HTTP/1.1\r\n" + H +
     "Content-Length: 99999999999999999999999999\r\n\r\n", {400, 413}),
    ("bad_chunk_size", "POST /a.txt HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
     "zz\r\nhello\r\n0\r\n\r\n", {400}),
    ("chunk_size_17_hex_digits", "POST /a.txt HTTP/1.1\r\n" + H +
     "Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n", {400, 413}),
    ("chunk_size_negative", "POST /a.txt HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
     "-5\r\nhello\r\n0\r\n\r\n", {400}),
    ("chunk_data_too_long", "POST /a.txt HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
     "3\r\nhelloXX\r\n0\r\n\r\n", {400}),
    ("te_chunked_not_last", "POST /a.txt HTTP/1.1\r\n" + H +
     "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", {400, 501}),
    ("te_chunked_twice", "POST /a.txt HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400, 501}),
    ("te_unknown", "POST /a.txt HTTP/1.1\r\n" + H + "Transfer-Encoding: gzip\r\n\r\n", {400, 501}),
    ("obs_fold", "GET /a.txt HTTP/1.1\r\n" + H + "X-A: b\r\n  c\r\n\r\n", {400}),
    ("obs_fold_tab", "GET /a.txt HTTP/1.1\r\n" + H + "X-A: b\r\n\tc\r\n\r\n", {400}),
    ("space_before_colon", "GET /a.txt HTTP/1.1\r\n" + H + "X-Foo : bar\r\n\r\n", {400}),
    ("space_in_name", "GET /a.txt HTTP/1.1\r\n" + H + "X Foo: bar\r\n\r\n", {400}),
    ("no_colon", "GET /a.txt HTTP/1.1\r\n" + H + "XFoo\r\n\r\n", {400}),
    ("empty_name", "GET /a.txt HTTP/1.1\r\n" + H + ": value\r\n\r\n", {400}),
    ("leading_whitespace_header", "GET /a.txt HTTP/1.1\r\n X-A: b\r\n" + H + "\r\n", {400}),
    ("nul_in_value", "GET /a.txt HTTP/1.1\r\n" + H + "X-A: a\x00b\r\n\r\n", {400}),
    ("ctl_in_value", "GET /a.txt HTTP/1.1\r\n" + H + "X-A: a\x01b\r\n\r\n", {400}),
    ("del_in_value", "GET /a.txt HTTP/1.1\r\n" + H + "X-A: a\x7fb\r\n\r\n", {400}),
    ("nul_in_name", "GET /a.txt HTTP/1.1\r\n" + H + "X-\x00A: b\r\n\r\n", {400}),
    ("nul_in_target", "GET /a\x00.txt HTTP/1.1\r\n" + H + "\r\n", {400}),
    ("ctl_in_target", "GET /a\x01.txt HTTP/1.1\r\n" + H + "\r\n", {400}),
    ("invalid_method", "G(T /a.txt HTTP/1.1\r\n" + H + "\r\n", {400}),
    ("empty_method", " /a.txt HTTP/1.1\r\n" + H + "\r\n", {400}),
    ("target_relative", "GET a.txt HTTP/1.1\r\n" + H + "\r\n", {400}),
    ("target_with_space", "GET /a .txt HTTP/1.1\r\n" + H + "\r\n", {400}),
    ("double_space", "GET  /a.txt HTTP/1.1\r\n" + H + "\r\n", {400}),
    ("lowercase_version", "GET /a.txt http/1.1\r\n" + H + "\r\n", {400}),
    ("garbage_version", "GET /a.txt HTTX/1.1\r\n" + H + "\r\n", {400}),
    ("missing_host", "GET /a.txt HTTP/1.1\r\nX-A: b\r\n\r\n", {400}),
    ("two_hosts", "GET /a.txt HTTP/1.1\r\n" + H + "Host: other.test\r\n\r\n", {400}),
    ("bad_host_value", "GET /a.txt HTTP/1.1\r\nHost: exa mple.test\r\n\r\n", {400}),
    ("bare_lf", "GET /a.txt HTTP/1.1\nHost: example.test\n\n", {400}),
    ("bare_lf_in_headers", "GET /a.txt HTTP/1.1\r\n" + H + "X-A: b\nX-B: c\r\n\r\n", {400}),
    ("bare_cr", "GET /a.txt HTTP/1.1\r" + H + "\r\n", {400}),
    ("http_2_0", "GET /a.txt HTTP/2.0\r\n" + H + "\r\n", {505}),
    ("http_0_9_version", "GET /a.txt HTTP/0.9\r\n" + H + "\r\n", {505}),
    ("http_3_0", "GET /a.txt HTTP/3.0\r\n" + H + "\r\n", {505}),
    ("http_0_9_style", "GET /a.txt\r\n\r\n", {400, 505}),
]


@pytest.mark.parametrize("name,raw,statuses", BAD, ids=[b[0] for b in BAD])
def test_malformed_request(server, name, raw, statuses):
    with conn(server) as c:
        c.send(raw.encode("latin-1"))
        try:
            r = c.read_response()
        except Closed:
            pytest.fail("%s: connection closed without a response" % name)
        assert r.status in statuses, r
        assert b"file A" not in r.body
        assert_closed_after(c, r)


def test_request_line_too_long(server):
    with conn(server) as c:
        send_tolerant(c, ("GET /" + "a" * 9000 + " HTTP/1.1\r\n" + H + "\r\n").encode())
        r = c.read_response()
        assert r.status == 414
        assert_closed_after(c, r)


def test_request_line_just_under_limit(server):
    with conn(server) as c:
        r = c.request("/" + "a" * 7900)
        assert r.status == 404
        assert not c.is_closed(timeout=0.3)


def test_head_too_large(server):
    with conn(server) as c:
        fields = "".join("X-Pad-%d: %s\r\n" % (i, "p" * 1000) for i in range(34))  # ~34 KiB
        send_tolerant(c, ("GET /a.txt HTTP/1.1\r\n" + H + fields + "\r\n").encode())
        r = c.read_response()
        assert r.status == 431
        assert_closed_after(c, r)


def test_single_huge_header(server):
    with conn(server) as c:
        send_tolerant(c, ("GET /a.txt HTTP/1.1\r\n" + H + "X-Big: " + "b" * 40000 +
                          "\r\n\r\n").encode())
        r = c.read_response()
        assert r.status == 431
        assert_closed_after(c, r)


def test_head_just_under_limit(server):
    with conn(server) as c:
        fields = "".join("X-Pad-%d: %s\r\n" % (i, "p" * 1000) for i in range(28))  # ~28 KiB
        c.send(("GET /a.txt HTTP/1.1\r\n" + H + fields + "\r\n").encode())
        r = c.read_response()
        assert r.status == 200
        assert not c.is_closed(timeout=0.3)


def test_too_many_fields(server):
    with conn(server) as c:
        fields = "".join("X-F%d: v\r\n" % i for i in range(100))  # + Host = 101
        c.send(("GET /a.txt HTTP/1.1\r\n" + H + fields + "\r\n").encode())
        r = c.read_response()
        assert r.status == 431
        assert_closed_after(c, r)


def test_hundred_fields_accepted(server):
    with conn(server) as c:
        fields = "".join("X-F%d: v\r\n" % i for i in range(99))  # + Host = 100
        c.send(("GET /a.txt HTTP/1.1\r\n" + H + fields + "\r\n").encode())
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"file A\n"
