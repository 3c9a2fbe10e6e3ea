"""The reverse proxy (`proxy http[s]://HOST:PORT` sites) and the client identity it forwards,
driven with real clients (curl, Python's ssl) against a front moat and real origins.

Pieces, all module-scoped so the file runs in well under a minute:
  origin      tests/integration/origin.py over plain TCP: records every request it gets and
              answers by path (echo, sized bodies in every framing, 1xx, 204/304, slow, stalled,
              cut, malformed, huge heads, hop-by-hop fields)
  tls_origin  the same over TLS, with a certificate for IP 127.0.0.1 from its own CA
  omoat       a second moat as an https origin: site `*` wants a client certificate
              (client_auth require), site localca.test/localhost has a certificate from the
              local CA of the state folder it shares with the front
  front       the moat under test, one site per situation (see front_config)

Each test tags its request target (`?t=NAME`) to find what the origin received.
"""

import hashlib
import json
import random
import re
import socket
import ssl
import threading
import time
from types import SimpleNamespace

import pytest

from helpers import Closed, Conn, Moat, curl, free_port, log_after, make_www, wait_for
from mtls_helpers import ClientCa, curl_args, tls_context
from origin import Origin, body_bytes, server_context

FRONT_SITES = ["proxy.test", "slow.test", "down.test", "tls.test", "wrongca.test",
               "wrongname.test", "mtls.test", "nocert.test", "localca.test", "id.test",
               "idreq.test", "prefix.test"]
MIB5 = 5 * 1024 * 1024


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xpki(pki, tmp_path_factory):
    base = tmp_path_factory.mktemp("proxy-pki")
    ns = SimpleNamespace()
    ns.origin_ca = ClientCa(base / "origin-ca", "moat origin CA")
    # An origin certificate for the address the front dials (RFC 6125 IP identity).
    ns.origin = ns.origin_ca.issue("origin", "origin", sans=["IP:127.0.0.1"], eku="serverAuth")
    ns.clients = ClientCa(base / "clients", "moat proxy clients CA")
    ns.alice = ns.clients.issue("alice", "alice", org="Example",
                                sans=["DNS:alice.svc.test", "email:alice@example.test"])
    ns.bob = ns.clients.issue("bob", "bob")
    ns.stranger = ClientCa(base / "other", "moat other CA").issue("stranger", "eve")
    ns.front = pki.issue(FRONT_SITES, "ec", stem="proxy-front")
    return ns


@pytest.fixture(scope="module")
def origin():
    with Origin() as o:
        yield o


@pytest.fixture(scope="module")
def tls_origin(xpki):
    with Origin(context=server_context(xpki.origin.pem, xpki.origin.key)) as o:
        yield o


@pytest.fixture(scope="module")
def docroot(tmp_path_factory):
    return make_www(tmp_path_factory.mktemp("proxy-docroot"))[0]


@pytest.fixture(scope="module")
def shared_state(tmp_path_factory):
    return tmp_path_factory.mktemp("proxy-state")


def _finish(m):
    m.stop()
    report = m.sanitizer_report()
    if report and not m.sanitizer_reported:
        m.sanitizer_reported = True
        pytest.fail("sanitizer report in moat's stderr (%s):\n%s" % (m.dir, report),
                    pytrace=False)


@pytest.fixture(scope="module")
def omoat(moat_bin, xpki, docroot, shared_state, tmp_path_factory):
    """A second moat as an https origin that wants a client certificate from xpki.clients."""
    m = Moat(moat_bin, tmp_path_factory.mktemp("proxy-origin-moat"), name="origin-moat")
    m.write_config(
        "listen 127.0.0.1:%d\nworkers 1\nstate %s\naccess_log %s json\nerror_log stderr info\n"
        "trust %s\n"
        "site localca.test localhost {\n    root %s\n}\n"
        "site * {\n    cert %s %s\n    root %s\n    client_auth require\n    client_ca %s\n}\n"
        % (m.port, shared_state, m.access_log, xpki.origin_ca.pem, docroot, xpki.origin.pem,
           xpki.origin.key, docroot, xpki.clients.pem))
    m.start()
    yield m
    _finish(m)


def front_config(m, pki, x, www, origin, tls_origin, omoat, state, dead_port):
    def site(name, body):
        return "site %s {\n    cert %s %s\n%s}\n" % (name, x.front.chain, x.front.key, body)

    o = origin.url
    idsite = "    client_ca %s\n    proxy %s\n" % (x.clients.pem, o)
    return (
        "listen 127.0.0.1:%d\nredirect_http 127.0.0.1:%d\nworkers 2\nstate %s\n"
        "access_log %s json\nerror_log stderr info\ntrust %s\n"
        "timeouts { head 3s; idle 5s; body 3s; write 10s; handshake 3s }\n"
        "limits { body 8m }\n" % (m.port, m.http_port, state, m.access_log, pki.root)
        + site("proxy.test", "    proxy %s\n" % o)
        + site("slow.test", "    proxy %s/\n    proxy_timeout 1s\n" % o)
        + site("down.test", "    proxy http://127.0.0.1:%d\n    proxy_timeout 5s\n" % dead_port)
        + site("tls.test", "    proxy %s\n    proxy_ca %s\n" % (tls_origin.url, x.origin_ca.pem))
        + site("wrongca.test", "    proxy %s\n    proxy_ca %s\n" % (tls_origin.url, pki.root))
        + site("wrongname.test", "    proxy https://localhost:%d\n    proxy_ca %s\n"
               % (tls_origin.port, x.origin_ca.pem))
        + site("mtls.test", "    proxy https://127.0.0.1:%d\n    proxy_ca %s\n"
               "    proxy_cert %s %s\n" % (omoat.port, x.origin_ca.pem, x.alice.pem, x.alice.key))
        + site("nocert.test", "    proxy https://127.0.0.1:%d\n    proxy_ca %s\n"
               % (omoat.port, x.origin_ca.pem))
        + site("localca.test", "    proxy https://localhost:%d\n" % omoat.port)
        + site("id.test", "    client_auth optional\n" + idsite)
        + site("idreq.test", "    client_auth require\n" + idsite)
        + site("prefix.test", "    client_auth optional\n    client_header_prefix X-Id-\n"
               + idsite)
        + "site * {\n    cert %s %s\n    root %s\n}\n" % (pki.default.chain, pki.default.key, www)
    )


@pytest.fixture(scope="module")
def _front(moat_bin, pki, xpki, docroot, origin, tls_origin, omoat, shared_state,
           tmp_path_factory):
    m = Moat(moat_bin, tmp_path_factory.mktemp("proxy-front"), name="front")
    m.dead_port = free_port()  # nothing listens there: connections are refused
    m.write_config(front_config(m, pki, xpki, docroot, origin, tls_origin, omoat, shared_state,
                                m.dead_port))
    m.wait_ports = [m.port, m.http_port]
    m.start()
    yield m
    _finish(m)


@pytest.fixture
def front(_front):
    if not _front.alive():
        _front.stop()
        _front.start()
    return _front


# -- helpers -----------------------------------------------------------------------------------


def conn(front, pki, sni="proxy.test", cert=None, **kw):
    return Conn(front.port, sni=sni, context=tls_context(pki.root, cert), **kw)


def ask(front, pki, path, sni="proxy.test", cert=None, **kw):
    """One request on a fresh connection to site `sni`."""
    with conn(front, pki, sni, cert) as c:
        return c.request(path, host=sni, **kw)


def echo(resp):
    assert resp.status == 200 and resp.header("x-origin") == "echo", resp
    return json.loads(resp.body)


def fields(e, name):
    """Values of field `name` (any case) in an echo, in the order the origin got them."""
    return [v for k, v in e["headers"] if k.lower() == name.lower()]


def names(e):
    return [k.lower() for k, _ in e["headers"]]


def curl_front(front, pki, tmp_path, site, path, *args, cert=None):
    return curl(tmp_path, "https://%s:%d%s" % (site, front.port, path), *curl_args(cert), *args,
                port=front.port, host=site, cacert=pki.root, timeout=30)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def assert_usable(c, tag):
    """The connection still carries a request: nothing was left over from the last answer."""
    r = c.request("/echo?t=" + tag, host=c.host)
    assert echo(r)["target"] == "/echo?t=" + tag


def open_conn(front, pki, sni="proxy.test", cert=None):
    c = conn(front, pki, sni, cert)
    c.host = sni
    return c


# -- requests forwarded ------------------------------------------------------------------------


def test_get_forwards_method_target_and_end_to_end_fields(front, pki, origin):
    r = ask(front, pki, "/echo/a%20b?t=get&x=1", headers=[
        ("Accept", "text/plain"), ("Cookie", "s=1"), ("Authorization", "Bearer abc"),
        ("X-Multi", "one"), ("X-Multi", "two"), ("User-Agent", "proxy-test")])
    e = echo(r)
    assert (e["method"], e["target"], e["version"]) == ("GET", "/echo/a%20b?t=get&x=1", "HTTP/1.1")
    assert fields(e, "host") == ["proxy.test"]
    assert fields(e, "accept") == ["text/plain"]
    assert fields(e, "cookie") == ["s=1"]
    assert fields(e, "authorization") == ["Bearer abc"]
    assert fields(e, "x-multi") == ["one", "two"]  # order kept (RFC 9110 §5.3)
    assert fields(e, "connection") == []  # keep-alive: the connection goes back to the pool
    assert e["body_len"] == 0 and fields(e, "content-length") == []
    # The answer is moat's: its Date and Server, the origin's own fields.
    assert r.header("server") == "moat" and r.has("date")
    assert r.header("content-type") == "application/json"
    assert int(r.header("content-length")) == len(r.body)
    assert r.header("strict-transport-security", "").startswith("max-age=")


def test_absolute_form_target_goes_out_in_origin_form(front, pki, origin):
    with open_conn(front, pki) as c:
        c.send(b"GET https://proxy.test/echo?t=absform HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
        e = echo(c.read_response())
    assert e["target"] == "/echo?t=absform"  # RFC 9112 §3.2.1


@pytest.mark.parametrize("n", [1, 16384, 70001])
def test_post_content_length_body_byte_exact(front, pki, origin, n):
    body = body_bytes(n)
    with open_conn(front, pki) as c:
        r = c.request("/echo?t=post-cl-%d" % n, method="POST", host="proxy.test", body=body)
        e = echo(r)
        assert (e["body_len"], e["body_sha256"], e["body_chunked"]) == (n, sha(body), False)
        assert fields(e, "content-length") == [str(n)]
        assert_usable(c, "post-cl-after-%d" % n)


def test_post_chunked_body_split_across_writes(front, pki, origin):
    with open_conn(front, pki) as c:
        c.send(b"PUT /echo?t=post-chunked HTTP/1.1\r\nHost: proxy.test\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n")
        time.sleep(0.1)
        c.send(b"6\r\n world\r\n0\r\nX-Trailer: dropped\r\n\r\n")
        e = echo(c.read_response())
        assert e["method"] == "PUT" and e["body_chunked"] is True
        assert (e["body_len"], e["body_sha256"]) == (11, sha(b"hello world"))
        assert fields(e, "transfer-encoding") == ["chunked"]
        assert fields(e, "content-length") == [] and fields(e, "x-trailer") == []
        # the trailer went on as a trailer (RFC 9110 §6.5.1), not into the head
        assert e["trailers"] == [["X-Trailer", "dropped"]]
        assert_usable(c, "post-chunked-after")


def test_trailers_are_forwarded_both_ways_but_never_forgeries(front, pki, origin):
    with open_conn(front, pki) as c:
        c.send(b"POST /echo?t=trailers HTTP/1.1\r\nHost: proxy.test\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
               b"X-Checksum: 1234\r\nX-Client-Verify: SUCCESS\r\nX-Forwarded-For: 6.6.6.6\r\n"
               b"Content-Length: 99\r\nHost: evil.test\r\n\r\n")
        e = echo(c.read_response())
        assert e["body_len"] == 3
        assert e["trailers"] == [["X-Checksum", "1234"]]
        assert "6.6.6.6" not in json.dumps(e) and "evil.test" not in json.dumps(e)
    # The origin's trailer reaches the client after the last chunk (read the raw bytes).
    with open_conn(front, pki) as c:
        c.send(b"GET /chunked-trailer/100?t=trailer-down HTTP/1.1\r\nHost: proxy.test\r\n"
               b"Connection: close\r\n\r\n")
        raw = b""
        deadline = time.monotonic() + 5
        while not raw.endswith(b"\r\n\r\n0\r\n\r\n") and b"0\r\nX-Trailer: t\r\n\r\n" not in raw \
                and time.monotonic() < deadline:
            chunk = c.sock.recv(65536)
            if not chunk:
                break
            raw += chunk
        assert raw.startswith(b"HTTP/1.1 200 ")
        assert raw.endswith(b"\r\n0\r\nX-Trailer: t\r\n\r\n"), raw[-80:]


def test_post_5mib_content_length_with_curl(front, pki, origin, tmp_path):
    data = body_bytes(MIB5)
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    r = curl_front(front, pki, tmp_path, "proxy.test", "/echo?t=curl-5m-cl", "--data-binary",
                   "@%s" % f, "-H", "Content-Type: application/octet-stream", "-H", "Expect:")
    assert r.rc == 0 and r.status == 200, r.stderr[-2000:]
    e = json.loads(r.body)
    assert (e["body_len"], e["body_sha256"], e["body_chunked"]) == (MIB5, sha(data), False)


def test_post_5mib_chunked_with_curl(front, pki, origin, tmp_path):
    data = body_bytes(MIB5 + 3)
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    r = curl_front(front, pki, tmp_path, "proxy.test", "/echo?t=curl-5m-chunked",
                   "--data-binary", "@%s" % f, "-H", "Transfer-Encoding: chunked")
    assert r.rc == 0 and r.status == 200, r.stderr[-2000:]
    e = json.loads(r.body)
    assert (e["body_len"], e["body_sha256"], e["body_chunked"]) == (MIB5 + 3, sha(data), True)


def test_expect_100_continue_answered_by_moat(front, pki, origin):
    body = body_bytes(3000)
    with open_conn(front, pki) as c:
        c.send(b"POST /echo?t=expect HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 3000\r\n"
               b"Expect: 100-continue\r\n\r\n")
        interim = c.read_response("POST")  # sent before the body is: RFC 9110 §10.1.1
        assert interim.status == 100
        c.send(body)
        e = echo(c.read_response("POST"))
    assert (e["body_len"], e["body_sha256"]) == (3000, sha(body))
    assert fields(e, "expect") == []  # moat has answered it; the origin must not again


@pytest.mark.parametrize("proto,line", [("--http1.1", "HTTP/1.1 100 Continue"),
                                        ("--http2", "HTTP/2 100")])
def test_expect_100_continue_with_curl(front, pki, origin, tmp_path, proto, line):
    data = body_bytes(300000)
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    t0 = time.monotonic()
    r = curl_front(front, pki, tmp_path, "proxy.test", "/echo?t=curl-expect", "--data-binary",
                   "@%s" % f, "-H", "Expect: 100-continue", "--expect100-timeout", "20", proto)
    assert r.rc == 0 and r.status == 200, r.stderr[-2000:]
    # Without the 100, curl would wait its 20 s before sending the body.
    assert time.monotonic() - t0 < 10
    assert line in r.stderr
    e = json.loads(r.body)
    assert (e["body_len"], e["body_sha256"]) == (300000, sha(data))


def test_content_length_with_transfer_encoding_refused_before_origin(front, pki, origin):
    with open_conn(front, pki) as c:
        c.send(b"POST /echo?t=cl-te HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 5\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert c.read_response("POST").status == 400  # RFC 9112 §6.1: a smuggling attempt
        assert c.is_closed()
    assert origin.find("t=cl-te", timeout=0.3) == []


def test_body_over_limit_refused(front, pki, origin):
    with open_conn(front, pki) as c:  # limits { body 8m }
        c.send(b"POST /echo?t=too-big HTTP/1.1\r\nHost: proxy.test\r\n"
               b"Content-Length: 9437184\r\n\r\n")
        assert c.read_response("POST").status == 413
    assert origin.find("t=too-big", timeout=0.3) == []
    with open_conn(front, pki) as c:
        c.send(b"POST /echo?t=too-big-chunked HTTP/1.1\r\nHost: proxy.test\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n" % (1 << 20) + bytes(1 << 20) + b"\r\n"
        try:
            for _ in range(9):
                c.send(piece)
        except OSError:
            pass  # moat may stop reading once it has said no
        assert c.read_response("POST").status == 413
        assert c.is_closed()


def test_client_body_stalls_408(front, pki, origin):
    mark = len(front.stderr())
    with open_conn(front, pki) as c:  # timeouts { body 3s }
        c.send(b"POST /echo?t=body-stall HTTP/1.1\r\nHost: proxy.test\r\n"
               b"Content-Length: 1000\r\n\r\n0123456789")
        t0 = time.monotonic()
        assert c.read_response("POST").status == 408
        assert 2 < time.monotonic() - t0 < 6
        assert c.is_closed()
    assert log_after(front, mark, r"the client's body stalled")


# -- answers relayed ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind,n", [
    ("length", 0), ("length", 1), ("length", 100000),
    ("chunked", 0), ("chunked", 1), ("chunked", 100000),
    ("chunked-trailer", 5000), ("close", 0), ("close", 1), ("close", 100000),
])
def test_answer_reframed_for_http11(front, pki, origin, kind, n):
    with open_conn(front, pki) as c:
        c.send(b"GET /%s/%d?t=r11-%s-%d HTTP/1.1\r\nHost: proxy.test\r\n\r\n"
               % (kind.encode(), n, kind.encode(), n))
        r = c.read_response()
        assert r.status == 200 and r.body == body_bytes(n)
        if kind == "length":
            assert r.header("content-length") == str(n) and not r.has("transfer-encoding")
        else:
            # chunked in, chunked out; close-delimited in, chunked out (the connection stays)
            assert r.header("transfer-encoding") == "chunked" and not r.has("content-length")
        assert r.header("connection") is None
        assert r.trailers == ([("x-trailer", "t")] if kind == "chunked-trailer" else [])
        assert_usable(c, "r11-after-%s-%d" % (kind, n))


@pytest.mark.parametrize("kind", ["length", "chunked", "close"])
def test_answer_reframed_for_http10(front, pki, origin, kind):
    with open_conn(front, pki) as c:
        c.send(b"GET /%s/5000?t=r10-%s HTTP/1.0\r\nHost: proxy.test\r\n\r\n"
               % (kind.encode(), kind.encode()))
        r = c.read_response()
        assert r.status == 200 and r.body == body_bytes(5000)
        assert not r.has("transfer-encoding")  # HTTP/1.0 has no chunked (RFC 9112 §6.1)
        if kind == "length":
            assert r.header("content-length") == "5000"
        else:
            assert not r.has("content-length")
        assert c.is_closed()  # an HTTP/1.0 client without keep-alive: closed after the answer


def test_chunked_answer_trickled_by_the_origin(front, pki, origin):
    with open_conn(front, pki) as c:
        r = c.request("/trickle-chunked/20000?t=trickle", host="proxy.test")
        assert r.status == 200 and r.body == body_bytes(20000)
        assert_usable(c, "trickle-after")


@pytest.mark.parametrize("kind", ["length", "chunked", "close"])
def test_5mib_download_byte_exact_with_curl(front, pki, origin, tmp_path, kind):
    r = curl_front(front, pki, tmp_path, "proxy.test", "/%s/%d?t=dl5m-%s" % (kind, MIB5, kind))
    assert r.rc == 0 and r.status == 200, r.stderr[-2000:]
    assert len(r.body) == MIB5 and r.body == body_bytes(MIB5)


def test_slow_reader_gets_every_byte(front, pki, origin, tmp_path):
    # moat reads the origin only as fast as the client takes the answer.
    r = curl_front(front, pki, tmp_path, "proxy.test", "/chunked/%d?t=slow-reader" % (4 << 20),
                   "--limit-rate", "4M")
    assert r.rc == 0 and r.body == body_bytes(4 << 20), r.stderr[-1000:]


def test_client_gone_mid_answer_server_unharmed(front, pki, origin):
    c = open_conn(front, pki)
    c.send(b"GET /length/%d?t=gone-1 HTTP/1.1\r\nHost: proxy.test\r\n\r\n" % MIB5)
    c._read_until(b"\r\n\r\n")
    c.sock.recv(1000)
    c.close()  # with most of the answer still to come
    c = open_conn(front, pki)
    c.send(b"GET /slow/0.5?t=gone-2 HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
    time.sleep(0.1)
    c.close()  # before the origin answers at all
    time.sleep(0.7)
    assert front.alive()
    assert echo(ask(front, pki, "/echo?t=gone-after"))["target"] == "/echo?t=gone-after"


def _race_origin_close_with_client_bytes(front, pki, kind, rounds, seed):
    """Rounds of: ask for an answer the origin ends by closing, and send more bytes at about
    the moment the origin closes, so the client's and the origin's events share one
    epoll_wait batch on the worker."""
    rnd = random.Random(seed)
    for i in range(rounds):
        try:
            with open_conn(front, pki) as c:
                c.send(b"GET /%s?t=race-%d HTTP/1.1\r\nHost: proxy.test\r\n\r\n" % (kind, i))
                time.sleep(rnd.random() * 0.004)
                c.send(b"GET /echo?t=race-next HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
                c._fill(timeout=2)
        except OSError:
            if not front.alive():
                return  # the server is gone; the test says why


def test_origin_close_and_client_bytes_in_one_batch(moat, pki, xpki, origin):
    # Was a use-after-free (the origin's watch freed while its event waited in the same batch;
    # ASan: heap-use-after-free in moat_loop_run). A server of its own, so that a crash here
    # does not take the module's server along.
    m = moat("race")
    m.write_config("listen 127.0.0.1:%d\nworkers 1\nstate %s\nerror_log stderr info\n"
                   "site proxy.test {\n    cert %s %s\n    proxy %s\n}\n"
                   % (m.port, m.state, xpki.front.chain, xpki.front.key, origin.url))
    m.start()
    threads = [threading.Thread(target=_race_origin_close_with_client_bytes,
                                args=(m, pki, kind, 40, k))
               for k, kind in enumerate([b"cut/3000", b"close/3000", b"cut-chunked/3000"] * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    time.sleep(0.3)
    assert m.alive() and m.sanitizer_report() is None, m.sanitizer_report()


def test_concurrent_clients(front, pki, origin):
    errors = []

    def client(k):
        try:
            with open_conn(front, pki) as c:
                for i in range(3):
                    n = 1000 * k + i + 1
                    r = c.request("/chunked/%d?t=conc-%d-%d" % (n, k, i), host="proxy.test")
                    assert r.body == body_bytes(n)
                    e = echo(c.request("/echo?t=conc-e-%d-%d" % (k, i), method="POST",
                                       host="proxy.test", body=body_bytes(n)))
                    assert e["body_sha256"] == sha(body_bytes(n))
        except Exception as ex:  # noqa: BLE001 (reported below, with the client's number)
            errors.append((k, repr(ex)))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


def test_head_keeps_origin_content_length(front, pki, origin):
    with open_conn(front, pki) as c:
        r = c.request("/length/12345?t=head-len", method="HEAD", host="proxy.test")
        assert r.status == 200 and r.header("content-length") == "12345"
        assert not r.has("transfer-encoding")
        r = c.request("/chunked/500?t=head-chunked", method="HEAD", host="proxy.test")
        assert r.status == 200 and not r.has("content-length")
        assert_usable(c, "head-after")  # no body bytes were sent after either head
    assert origin.one("t=head-len").method == "HEAD"


@pytest.mark.parametrize("code", [204, 304])
def test_204_and_304_have_no_body(front, pki, origin, code):
    with open_conn(front, pki) as c:
        r = c.request("/status/%d?t=nobody-%d" % (code, code), host="proxy.test")
        assert r.status == code and r.header("x-status") == str(code)
        assert not r.has("transfer-encoding")
        if code == 204:
            assert not r.has("content-length")  # RFC 9110 §8.6
        else:
            assert r.header("etag") == '"v1"'
        assert_usable(c, "nobody-after-%d" % code)


def test_interim_answers_skipped(front, pki, origin):
    with open_conn(front, pki) as c:
        r = c.request("/interim?t=interim", host="proxy.test")
        assert r.status == 200  # not the origin's 100 or 103
        assert echo(r)["target"] == "/interim?t=interim"
        assert not r.has("link")  # the 103's fields stay with the 103
        assert_usable(c, "interim-after")


# -- fields moat owns --------------------------------------------------------------------------


def test_hop_by_hop_request_fields_dropped(front, pki, origin):
    e = echo(ask(front, pki, "/echo?t=hop-req", headers=[
        ("Connection", "keep-alive, X-Hop-A, x-hop-b"), ("Keep-Alive", "timeout=300"),
        ("TE", "trailers"), ("Upgrade", "websocket"), ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="), ("Trailer", "X-Sum"),
        ("X-Hop-A", "1"), ("X-HOP-B", "2"), ("X-End", "kept")]))
    got = names(e)
    for name in ("keep-alive", "te", "upgrade", "proxy-connection", "proxy-authorization",
                 "trailer", "x-hop-a", "x-hop-b"):
        assert name not in got, (name, e["headers"])
    assert fields(e, "connection") == []  # keep-alive: the connection goes back to the pool
    assert fields(e, "x-end") == ["kept"]


def test_hop_by_hop_response_fields_dropped(front, pki, origin):
    with open_conn(front, pki) as c:
        r = c.request("/hop?t=hop-resp", host="proxy.test")
        assert r.status == 200 and r.body == b"ok" and r.header("x-kept") == "yes"
        for name in ("keep-alive", "upgrade", "proxy-connection", "te", "trailer"):
            assert not r.has(name), (name, r.headers)
        # The origin's "Connection: ..., keep-alive" is not passed on: the connection is ours.
        assert r.header("connection") is None
        assert_usable(c, "hop-resp-after")


def test_response_fields_named_in_connection_dropped(front, pki, origin):
    r = ask(front, pki, "/hop?t=hop-resp-named")
    assert r.status == 200
    assert not r.has("x-internal"), r.headers


def test_x_forwarded_set_by_moat_and_client_values_replaced(front, pki, origin):
    e = echo(ask(front, pki, "/echo?t=xff", headers=[
        ("X-Forwarded-For", "203.0.113.66"), ("x-forwarded-proto", "http"),
        ("X-FORWARDED-HOST", "evil.test"), ("Forwarded", "for=203.0.113.66;proto=http")]))
    assert fields(e, "x-forwarded-for") == ["127.0.0.1"]
    assert fields(e, "x-forwarded-proto") == ["https"]
    assert fields(e, "x-forwarded-host") == ["proxy.test"]
    # RFC 7239: the client's claim is replaced (it is not in trusted_proxies)
    assert fields(e, "forwarded") == ["for=127.0.0.1;proto=https;host=proxy.test"]


# -- one client connection, many requests ------------------------------------------------------


def test_keepalive_across_proxied_requests(front, pki, origin):
    with open_conn(front, pki) as c:
        for i in range(3):
            assert echo(c.request("/echo?t=ka-%d" % i, host="proxy.test"))["target"] == \
                "/echo?t=ka-%d" % i
            r = c.request("/echo?t=ka-post-%d" % i, method="POST", host="proxy.test",
                          body=b"x" * (i + 1))
            assert echo(r)["body_len"] == i + 1
            r = c.request("/chunked/%d?t=ka-ch-%d" % (1000 * i + 1, i), host="proxy.test")
            assert r.body == body_bytes(1000 * i + 1)
    # One origin connection per request: nine distinct requests arrived.
    assert len(origin.find("t=ka-")) == 9


def test_pipelined_requests_answered_in_order(front, pki, origin):
    reqs = (b"GET /echo?t=pipe-1 HTTP/1.1\r\nHost: proxy.test\r\n\r\n"
            b"POST /echo?t=pipe-2 HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 5\r\n\r\nhello"
            b"POST /echo?t=pipe-3 HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n"
            b"\r\n3\r\nabc\r\n0\r\n\r\n"
            b"GET /close/777?t=pipe-4 HTTP/1.1\r\nHost: proxy.test\r\n\r\n"
            b"HEAD /length/99?t=pipe-5 HTTP/1.1\r\nHost: proxy.test\r\n\r\n"
            b"GET /echo?t=pipe-6 HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n")
    with open_conn(front, pki) as c:
        c.send(reqs)
        e1 = echo(c.read_response())
        e2 = echo(c.read_response("POST"))
        e3 = echo(c.read_response("POST"))
        r4 = c.read_response()
        r5 = c.read_response("HEAD")
        e6 = echo(c.read_response())
        assert c.is_closed()
    assert e1["target"] == "/echo?t=pipe-1"
    assert (e2["target"], e2["body_len"]) == ("/echo?t=pipe-2", 5)
    assert (e3["target"], e3["body_sha256"]) == ("/echo?t=pipe-3", sha(b"abc"))
    assert r4.body == body_bytes(777)
    assert r5.header("content-length") == "99"
    assert e6["target"] == "/echo?t=pipe-6"


def test_request_sent_while_origin_still_answering(front, pki, origin):
    with open_conn(front, pki) as c:
        c.send(b"GET /slow/0.5?t=late-1 HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
        time.sleep(0.2)  # the next request arrives while moat waits for the origin
        c.send(b"GET /echo?t=late-2 HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
        assert echo(c.read_response())["target"] == "/slow/0.5?t=late-1"
        assert echo(c.read_response())["target"] == "/echo?t=late-2"


# -- the origin fails --------------------------------------------------------------------------


def test_origin_down_502_with_log_line(front, pki):
    mark = len(front.stderr())
    with open_conn(front, pki, "down.test") as c:
        r = c.request("/echo?t=down", host="down.test")
        assert r.status == 502
        assert c.is_closed()
    assert log_after(front, mark, r"proxy to 127\.0\.0\.1:%d: cannot connect: Connection refused"
                     % front.dead_port), front.stderr()[-2000:]
    line = wait_for(lambda: [json.loads(l) for l in front.access_lines()
                             if "t=down" in l], 5)
    assert line and line[-1]["status"] == 502


def test_origin_down_with_body_closes_connection(front, pki):
    with open_conn(front, pki, "down.test") as c:
        # The unread body must never be read as the next request.
        smuggled = b"GET /echo?t=smuggled HTTP/1.1\r\nHost: down.test\r\n\r\n"
        c.send(b"POST /echo HTTP/1.1\r\nHost: down.test\r\nContent-Length: %d\r\n\r\n"
               % len(smuggled) + smuggled)
        assert c.read_response("POST").status == 502
        assert c.is_closed()


def test_origin_too_slow_504(front, pki, origin):
    mark = len(front.stderr())
    t0 = time.monotonic()
    r = ask(front, pki, "/slow/4?t=slow504", sni="slow.test")
    took = time.monotonic() - t0
    assert r.status == 504
    assert 0.8 < took < 3.5, took  # proxy_timeout 1s, not the origin's 4 s
    assert log_after(front, mark, r"proxy to 127\.0\.0\.1:\d+: the origin did not answer in time")


def test_origin_stalls_mid_body_client_closed(front, pki, origin):
    with open_conn(front, pki, "slow.test") as c:
        c.send(b"GET /stall/100000?t=stall HTTP/1.1\r\nHost: slow.test\r\n\r\n")
        t0 = time.monotonic()
        with pytest.raises(Closed):
            c.read_response()  # the head said 100000 bytes; half came, then the close
        assert time.monotonic() - t0 < 4


@pytest.mark.parametrize("kind", ["cut", "cut-chunked"])
def test_origin_cut_answer_closes_client(front, pki, origin, kind):
    mark = len(front.stderr())
    with open_conn(front, pki) as c:
        c.send(b"GET /%s/60000?t=%s HTTP/1.1\r\nHost: proxy.test\r\n\r\n"
               % (kind.encode(), kind.encode()))
        # Never a complete-looking 200: the length or the last chunk is missing, then the close.
        with pytest.raises(Closed):
            c.read_response()
    if kind == "cut":
        assert log_after(front, mark, r"the origin cut its answer short")


def test_origin_cut_answer_curl_sees_error(front, pki, origin, tmp_path):
    # HTTP/1.1: curl exits 18 (partial file): the length was not reached, or the last chunk
    # never came.
    r = curl_front(front, pki, tmp_path, "proxy.test", "/cut/60000?t=curl-cut", "--http1.1")
    assert (r.status, r.rc, len(r.body)) == (200, 18, 30000), r.stderr[-1000:]
    r = curl_front(front, pki, tmp_path, "proxy.test", "/cut-chunked/60000?t=curl-cut-chunked",
                   "--http1.1")
    assert (r.status, r.rc) == (200, 18), r.stderr[-1000:]
    assert r.body == body_bytes(60000)  # what came before the cut is intact
    # HTTP/2: the stream is reset (INTERNAL_ERROR): curl exits 92; the connection lives on.
    for path in ("/cut/60000?t=curl-cut-h2", "/cut-chunked/60000?t=curl-cut-chunked-h2"):
        r = curl_front(front, pki, tmp_path, "proxy.test", path, "--http2")
        assert (r.status, r.rc) == (200, 92), r.stderr[-1000:]
        assert "INTERNAL_ERROR" in r.stderr
    assert r.body == body_bytes(60000)[:len(r.body)]


@pytest.mark.parametrize("path,words", [
    ("/nothing", "the origin closed without answering"),
    ("/malformed", "the origin's answer is not valid HTTP/1.1: .* at byte"),
    # The reason the log gives must be the real one, not a generic "not valid".
    ("/huge-head/100", r"the origin's answer head is too large \(over 64 KiB\)"),
    ("/many-fields/300", r"the origin's answer head is too large \(too many fields\)"),
    ("/garbage", r"the origin sent 35 bytes that are not an HTTP/1.1 answer head "
                 r"\(\"SSH-2.0-OpenSSH_9.2 not http at all\"\), then closed"),
])
def test_bad_origin_answers_502(front, pki, origin, path, words):
    mark = len(front.stderr())
    with open_conn(front, pki) as c:
        r = c.request(path + "?t=bad502", host="proxy.test")
        assert r.status == 502, r
        assert c.is_closed()
    assert log_after(front, mark, words), front.stderr()[-2000:]


def test_big_but_acceptable_origin_head_passes(front, pki, origin):
    r = ask(front, pki, "/huge-head/40?t=big-head")
    assert r.status == 200 and r.body == b"ok"
    assert len(r.header_all("x-fill-0")) == 1 and r.has("x-fill-19")


# -- https origins -----------------------------------------------------------------------------


def test_https_origin_verified_with_proxy_ca(front, pki, tls_origin):
    e = echo(ask(front, pki, "/echo?t=tls-ok", sni="tls.test"))
    assert e["target"] == "/echo?t=tls-ok"
    assert tls_origin.one("t=tls-ok").method == "GET"


def test_https_origin_5mib_both_ways(front, pki, tls_origin, tmp_path):
    r = curl_front(front, pki, tmp_path, "tls.test", "/chunked/%d?t=tls-dl" % MIB5)
    assert r.rc == 0 and r.body == body_bytes(MIB5), r.stderr[-1000:]
    f = tmp_path / "up.bin"
    f.write_bytes(body_bytes(MIB5))
    r = curl_front(front, pki, tmp_path, "tls.test", "/echo?t=tls-up", "--data-binary",
                   "@%s" % f)
    assert r.rc == 0 and json.loads(r.body)["body_sha256"] == sha(body_bytes(MIB5))


@pytest.mark.parametrize("site,why", [
    ("wrongca.test", "origin certificate refused: unable to get local issuer certificate"),
    ("wrongname.test", "origin certificate refused: hostname mismatch"),
])
def test_https_origin_refused_502_with_reason(front, pki, tls_origin, site, why):
    mark = len(front.stderr())
    r = ask(front, pki, "/echo?t=refused-" + site, sni=site)
    assert r.status == 502
    assert log_after(front, mark, re.escape(why)), front.stderr()[-2000:]
    assert tls_origin.find("t=refused-" + site, timeout=0.5) == []  # nothing was sent


def test_mutual_tls_to_origin_moat_with_proxy_cert(front, pki, omoat):
    r = ask(front, pki, "/a.txt?t=mtls", sni="mtls.test")
    assert (r.status, r.body) == (200, b"file A\n")
    # The origin moat logged the front's client certificate.
    line = wait_for(lambda: [json.loads(l) for l in omoat.access_lines() if "t=mtls" in l], 5)
    assert line and line[-1]["client_subject"] == "CN=alice,O=Example"


def test_mutual_tls_to_origin_moat_without_proxy_cert_502(front, pki, omoat):
    mark = len(front.stderr())
    r = ask(front, pki, "/a.txt?t=nocert", sni="nocert.test")
    assert r.status == 502 and b"file A" not in r.body
    assert log_after(front, mark, r"proxy to https://127\.0\.0\.1:%d: " % omoat.port)
    # The origin refused the handshake (TLS 1.3: after the front's side of it was done).
    assert log_after(omoat, 0, r"client refused at handshake: no client certificate")


def test_origin_moat_local_ca_trusted_without_proxy_ca(front, pki, omoat):
    r = ask(front, pki, "/b.txt?t=localca", sni="localca.test")
    assert (r.status, r.body) == (200, b"file B, a bit longer\n")


# -- client identity for mTLS sites ------------------------------------------------------------

FORGED = [("X-Client-Verify", "SUCCESS"), ("x-client-subject", "CN=admin"),
          ("X-CLIENT-SERIAL", "01"), ("X-Client-Fingerprint", "00:11"),
          ("x-CLIENT-san", "DNS:admin.test"), ("X-Client-Issuer", "CN=evil"),
          ("X-Client-Role", "admin")]


def fingerprint(cert):
    der = cert_der(cert)
    return ":".join("%02X" % b for b in hashlib.sha256(der).digest())


def cert_der(cert):
    return ssl.PEM_cert_to_DER_cert(cert.pem.read_text())


def identity(e, prefix="X-Client-"):
    p = prefix.lower()
    return {k[len(p):].lower(): v for k, v in e["headers"] if k.lower().startswith(p)}


@pytest.mark.parametrize("site", ["id.test", "idreq.test"])
def test_identity_of_verified_client(front, pki, origin, xpki, site):
    e = echo(ask(front, pki, "/echo?t=id-" + site, sni=site, cert=xpki.alice))
    ident = identity(e)
    assert set(ident) == {"verify", "subject", "issuer", "serial", "fingerprint", "san"}, ident
    assert ident["verify"] == "SUCCESS"
    assert ident["subject"] == "CN=alice,O=Example" == xpki.alice.subject
    assert ident["issuer"] == "CN=moat proxy clients CA"
    assert int(ident["serial"], 16) == int(xpki.alice.serial, 16)
    assert ident["fingerprint"] == fingerprint(xpki.alice)  # all 32 bytes, upper-case hex
    san = ident["san"].lower()
    assert "dns:alice.svc.test" in san and "email:alice@example.test" in san


def test_identity_without_certificate_is_none(front, pki, origin):
    e = echo(ask(front, pki, "/echo?t=id-none", sni="id.test"))
    assert identity(e) == {"verify": "NONE"}


def test_identity_of_untrusted_certificate_failed(front, pki, origin, xpki):
    e = echo(ask(front, pki, "/echo?t=id-stranger", sni="id.test", cert=xpki.stranger))
    ident = identity(e)
    assert set(ident) == {"verify"} and ident["verify"].startswith("FAILED:"), ident
    assert "(CN=eve) was refused" in ident["verify"]  # who, and that it did not verify


@pytest.mark.parametrize("who", [None, "alice", "bob"])
def test_forged_identity_never_reaches_origin(front, pki, origin, xpki, who):
    cert = getattr(xpki, who) if who else None
    tag = "id-forged-%s" % who
    e = echo(ask(front, pki, "/echo?t=" + tag, sni="id.test", cert=cert, headers=FORGED))
    ident = identity(e)
    # Exactly one of each (moat's own), none of the client's, and no invented X-Client-Role.
    assert len([k for k, _ in e["headers"] if k.lower().startswith("x-client-")]) == len(ident)
    assert "role" not in ident
    if who is None:
        assert ident == {"verify": "NONE"}
    else:
        assert ident["verify"] == "SUCCESS" and ident["subject"] == getattr(xpki, who).subject
        assert ident["serial"] != "01" and ident["fingerprint"] != "00:11"


def test_forged_identity_stripped_on_site_without_client_auth(front, pki, origin):
    e = echo(ask(front, pki, "/echo?t=id-plain-site", headers=FORGED))
    assert identity(e) == {}


def test_custom_prefix_identity_and_forgeries(front, pki, origin, xpki):
    forged = [("X-Id-Verify", "SUCCESS"), ("x-id-subject", "CN=admin"), ("X-ID-ROLE", "admin")]
    e = echo(ask(front, pki, "/echo?t=id-prefix", sni="prefix.test", cert=xpki.alice,
                 headers=forged))
    ident = identity(e, "X-Id-")
    assert ident["verify"] == "SUCCESS" and ident["subject"] == xpki.alice.subject
    assert "role" not in ident
    assert len([k for k, _ in e["headers"] if k.lower().startswith("x-id-")]) == len(ident)
    # moat's identity goes under the configured prefix only.
    assert identity(e) == {}
    e = echo(ask(front, pki, "/echo?t=id-prefix-none", sni="prefix.test", headers=forged))
    assert identity(e, "X-Id-") == {"verify": "NONE"}


def test_access_log_has_client_subject(front, pki, origin, xpki):
    assert echo(ask(front, pki, "/echo?t=id-log", sni="id.test", cert=xpki.alice))
    lines = wait_for(lambda: [json.loads(l) for l in front.access_lines() if "t=id-log" in l], 5)
    assert lines, front.access_lines()
    last = lines[-1]
    assert last["status"] == 200 and last["host"] == "id.test"
    assert last["client_subject"] == "CN=alice,O=Example"
    assert last["client_verified"] is True
    assert int(last["client_serial"], 16) == int(xpki.alice.serial, 16)


def test_identity_with_curl(front, pki, origin, xpki, tmp_path):
    r = curl_front(front, pki, tmp_path, "idreq.test", "/echo?t=id-curl", cert=xpki.alice)
    assert r.rc == 0 and r.status == 200, r.stderr[-1000:]
    assert identity(json.loads(r.body))["subject"] == xpki.alice.subject
    # require: no certificate, no answer at all (and nothing reaches the origin).
    r = curl_front(front, pki, tmp_path, "idreq.test", "/echo?t=id-curl-none", "--tls-max", "1.2")
    assert r.rc != 0 and r.status is None
    assert origin.find("t=id-curl-none", timeout=0.5) == []


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- bugs this file found (each test failed before its fix) ------------------------------------


def test_plain_listener_redirects_instead_of_proxying(front, origin):
    with Conn(front.http_port, tls=False) as c:
        r = c.request("/echo?t=plain-bypass", host="idreq.test")
    assert r.status == 308
    assert origin.find("t=plain-bypass", timeout=0.5) == []


def _start_with_prefix(moat, name, pki, xpki, origin, prefix):
    """A moat whose id.test site forwards identities under `prefix`; waits until it listens or
    exits."""
    m = moat(name)
    m.write_config("listen 127.0.0.1:%d\nstate %s\nerror_log stderr info\n"
                   "site id.test {\n    cert %s %s\n    proxy %s\n    client_auth optional\n"
                   "    client_ca %s\n    client_header_prefix \"%s\"\n}\n"
                   % (m.port, m.state, xpki.front.chain, xpki.front.key, origin.url,
                      xpki.clients.pem, prefix))
    m.start(wait=False)
    wait_for(lambda: not m.alive() or _listening(m.port), 15)
    return m


@pytest.mark.parametrize("prefix", ["", "X-" + "P" * 46 + "-"])
def test_client_header_prefix_empty_or_too_long_refused(moat, pki, xpki, origin, prefix):
    # An empty prefix made every client field look forged (all dropped) and the identity go out
    # as "Verify:"; a long one was cut short at 63 characters, so the origin missed it.
    m = _start_with_prefix(moat, "prefix-%d" % len(prefix), pki, xpki, origin, prefix)
    assert not m.alive() and m.proc.returncode != 0, "moat started with a %d-character prefix" \
        % len(prefix)
    assert "client_header_prefix must be 1 to 48 characters, e.g. X-Client-" in m.stderr()


def test_client_header_prefix_of_48_characters_used_whole(moat, pki, xpki, origin):
    prefix = "X-" + "P" * 45 + "-"
    assert len(prefix) == 48
    m = _start_with_prefix(moat, "prefix-48", pki, xpki, origin, prefix)
    assert m.alive(), m.stderr()[-2000:]
    with Conn(m.port, sni="id.test", context=tls_context(pki.root, xpki.alice)) as c:
        e = echo(c.request("/echo?t=prefix-48", host="id.test",
                           headers=[(prefix + "Subject", "CN=forged")]))
    ident = identity(e, prefix)
    assert ident["verify"] == "SUCCESS" and ident["subject"] == xpki.alice.subject, e["headers"]
