"""`moat get --http2` and `moat trace --http2` against real HTTP/2 servers on loopback: nghttpd
(h2 only), nginx with `http2` on its listen line, and, for what a well-behaved server never
sends (GOAWAY, RST_STREAM, garbage, a cut body, bad fields, silence), small HTTP/2 servers
written here on Python's ssl and the python3-h2 protocol library. Without --http2, or
against a server that only speaks HTTP/1.1, the client stays on HTTP/1.1.
"""

import os
import shutil
import socket
import ssl
import threading
import time

import pytest

from client_helpers import ClientPki, Proc, moat_client, nginx, resolve
from helpers import free_port

NGHTTPD = shutil.which("nghttpd") or "/usr/sbin/nghttpd"


@pytest.fixture(scope="module")
def cpki(tmp_path_factory):
    p = ClientPki(tmp_path_factory.mktemp("cpki-h2"))
    p.good = p.issue(["example.test"], "ec", stem="h2-good")
    return p


@pytest.fixture(scope="module")
def docroot(tmp_path_factory):
    d = tmp_path_factory.mktemp("h2-www")
    (d / "small.txt").write_bytes(b"hello over HTTP/2\n")
    # A few MiB, more than the 1 MiB window moat opens: WINDOW_UPDATE has to flow.
    (d / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    return d


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "client-state"
    d.mkdir()
    return d


@pytest.fixture(scope="module")
def nghttpd(cpki, docroot, tmp_path_factory):
    if not os.path.exists(NGHTTPD):
        pytest.skip("nghttpd (nghttp2-server) not installed")
    port = free_port()
    p = Proc([NGHTTPD, "--address=127.0.0.1", "--htdocs", docroot, port, cpki.good.key,
              cpki.good.chain], tmp_path_factory.mktemp("nghttpd"), "nghttpd")
    p.start(port)
    yield port
    p.stop()


def h2get(moat_bin, state, cpki, port, path, *args, cmd="get"):
    return moat_client(moat_bin, state, cmd, "--http2", "https://example.test:%d%s" % (port, path),
                       resolve("example.test", port), "--cafile", cpki.root, *args, timeout=60)


def frames(doc, hop=-1):
    """[(direction '>' or '<', type)] of the HTTP/2 frames of a --json trace."""
    out = []
    for f in doc["hops"][hop]["http"]["http2"]["frames"]:
        out.append((">" if f["direction"] == "client->server" else "<", f["type"]))
    return out


# ----------------------------------------------------------------------------------------------
# nghttpd and nginx: bodies, heads, the protocol reported
# ----------------------------------------------------------------------------------------------


def test_get_small_body_over_h2(moat_bin, state, cpki, nghttpd, docroot):
    g = h2get(moat_bin, state, cpki, nghttpd, "/small.txt")
    assert g.rc == 0, g
    assert g.stdout == (docroot / "small.txt").read_bytes()
    assert g.stderr == ""


def test_get_big_body_over_h2_is_byte_exact(moat_bin, state, cpki, nghttpd, docroot, tmp_path):
    out = tmp_path / "big.out"
    g = h2get(moat_bin, state, cpki, nghttpd, "/big.bin", "-o", out)
    assert g.rc == 0, g
    assert out.read_bytes() == (docroot / "big.bin").read_bytes()
    g = h2get(moat_bin, state, cpki, nghttpd, "/big.bin")
    assert g.rc == 0, g
    assert g.stdout == (docroot / "big.bin").read_bytes()


def test_head_shows_http2_status_line_and_fields(moat_bin, state, cpki, nghttpd, docroot):
    g = h2get(moat_bin, state, cpki, nghttpd, "/small.txt", "-I")
    assert g.rc == 0, g
    lines = g.text.split("\r\n")
    assert lines[0] == "HTTP/2 200", g
    assert "content-length: %d" % (docroot / "small.txt").stat().st_size in lines, g
    assert any(line.startswith("server: nghttpd") for line in lines), g
    assert "hello over HTTP/2" not in g.text


def test_json_reports_http2_and_alpn(moat_bin, state, cpki, nghttpd):
    j = h2get(moat_bin, state, cpki, nghttpd, "/small.txt", "--json", cmd="trace")
    assert j.rc == 0, j
    hop = j.json["hops"][0]
    assert hop["tls"]["alpn"] == "h2"
    assert hop["http"]["protocol"] == "HTTP/2"
    assert hop["http"]["status_line"] == "HTTP/2 200"
    assert hop["http"]["request_line"] == "GET /small.txt HTTP/2"
    req = dict(hop["http"]["request_headers"])
    assert req[":method"] == "GET" and req[":path"] == "/small.txt"
    assert req[":authority"] == "example.test:%d" % nghttpd
    assert "connection" not in {k.lower() for k in req}  # RFC 9113 8.2.2
    assert hop["http"]["framing"] == "http2"
    assert hop["http"]["body_bytes"] == len(b"hello over HTTP/2\n")


def test_error_status_over_h2(moat_bin, state, cpki, nghttpd):
    g = h2get(moat_bin, state, cpki, nghttpd, "/missing.txt")
    assert g.rc == 22, g
    assert "the server answered 404 Not Found" in g.stderr


def test_nginx_http2(moat_bin, state, cpki, tmp_path, docroot):
    s = nginx(tmp_path, docroot, cert=cpki.good.chain, key=cpki.good.key, http2=True,
              extra="        ssl_protocols TLSv1.2 TLSv1.3;\n")
    try:
        g = h2get(moat_bin, state, cpki, s.port, "/", "-I")
        assert g.rc == 0, g
        assert g.text.startswith("HTTP/2 200\r\n"), g
        assert "server: nginx" in g.text
        g = h2get(moat_bin, state, cpki, s.port, "/")
        assert g.rc == 0, g
        assert g.stdout == b"nginx says hello\n"
        # TLS 1.2 too: RFC 9113 9.2 asks for ECDHE and AEAD, which is all moat offers.
        j = h2get(moat_bin, state, cpki, s.port, "/", "--tls-max", "1.2", "--json", cmd="trace")
        assert j.rc == 0, j
        assert j.json["hops"][0]["tls"]["version"] == "TLSv1.2"
        assert j.json["hops"][0]["http"]["protocol"] == "HTTP/2"
        # Without --http2 the same server is spoken to in HTTP/1.1: h2 was not offered.
        j = moat_client(moat_bin, state, "trace", "--json", "https://example.test:%d/" % s.port,
                        resolve("example.test", s.port), "--cafile", cpki.root)
        assert j.rc == 0, j
        assert j.json["hops"][0]["tls"]["alpn"] == "http/1.1"
        assert j.json["hops"][0]["http"]["protocol"] == "HTTP/1.1"
        assert j.json["hops"][0]["http"]["http2"] is None
    finally:
        s.stop()


# ----------------------------------------------------------------------------------------------
# Fallback to HTTP/1.1
# ----------------------------------------------------------------------------------------------


def test_http11_only_servers_fall_back(moat_bin, state, cpki, tmp_path, moat, docroot):
    m = moat("serve")
    conf = tmp_path / "h1only.conf"
    conf.write_text("listen 127.0.0.1:%d\nhttp2 off\nsite * {\n  root %s\n"
                    "  cert %s %s\n}\n" % (m.port, docroot, cpki.good.chain, cpki.good.key))
    m.start(["serve", "--config", conf])
    n = nginx(tmp_path, docroot, cert=cpki.good.chain, key=cpki.good.key)
    try:
        g = h2get(moat_bin, state, cpki, m.port, "/small.txt")
        assert g.rc == 0, g
        assert g.stdout == (docroot / "small.txt").read_bytes()
        g = h2get(moat_bin, state, cpki, m.port, "/small.txt", "-I")
        assert g.rc == 0, g
        assert g.text.startswith("HTTP/1.1 200 OK\r\n"), g
        for port in (m.port, n.port):
            j = h2get(moat_bin, state, cpki, port, "/small.txt", "--json", cmd="trace")
            assert j.rc == 0, j
            assert j.json["hops"][0]["tls"]["alpn"] == "http/1.1"
            assert j.json["hops"][0]["http"]["protocol"] == "HTTP/1.1"
            assert j.json["hops"][0]["http"]["status_line"].startswith("HTTP/1.1 200")
    finally:
        n.stop()


def test_http2_on_plain_http_says_it_used_http11(moat_bin, state, docroot):
    # A plain-HTTP peer: Python's http.server in a thread.
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(docroot), **k)

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        g = moat_client(moat_bin, state, "get", "--http2",
                        "http://127.0.0.1:%d/small.txt" % httpd.server_address[1])
        assert g.rc == 0, g
        assert g.stdout == (docroot / "small.txt").read_bytes()
        assert "--http2 needs https://" in g.stderr
    finally:
        httpd.shutdown()
        httpd.server_close()


# ----------------------------------------------------------------------------------------------
# The trace
# ----------------------------------------------------------------------------------------------


def test_trace_lists_the_frames_in_order(moat_bin, state, cpki, nghttpd):
    j = h2get(moat_bin, state, cpki, nghttpd, "/small.txt", "--json", cmd="trace")
    assert j.rc == 0, j
    fr = frames(j.json)
    ours = [t for d, t in fr if d == ">"]
    theirs = [t for d, t in fr if d == "<"]
    # The client: preface, SETTINGS, the connection window, the request, then the ACK of the
    # server's SETTINGS, and GOAWAY when done.
    assert ours == ["preface", "SETTINGS", "WINDOW_UPDATE", "HEADERS", "SETTINGS", "GOAWAY"], fr
    # nghttpd: its SETTINGS first (RFC 9113 3.4), the ACK of ours, the head, the body.
    assert theirs[:4] == ["SETTINGS", "SETTINGS", "HEADERS", "DATA"], fr
    assert fr.index(("<", "SETTINGS")) < fr.index((">", "SETTINGS"), 2)  # ACK after theirs
    assert fr[-1] == (">", "GOAWAY"), fr
    doc = j.json["hops"][0]["http"]["http2"]["frames"]
    settings = [f for f in doc if f["type"] == "SETTINGS" and f["direction"] == "client->server"]
    assert settings[0]["settings"] == {"ENABLE_PUSH": 0, "INITIAL_WINDOW_SIZE": 1048576,
                                       "MAX_HEADER_LIST_SIZE": 65536}
    assert settings[1]["flags"] == "ACK"
    heads = [f for f in doc if f["type"] == "HEADERS"]
    assert heads[0]["block"] == "request" and heads[0]["flags"] == "END_STREAM|END_HEADERS"
    assert [":path", "/small.txt"] in heads[0]["fields"]
    assert heads[1]["block"] == "response" and [":status", "200"] in heads[1]["fields"]
    data = [f for f in doc if f["type"] == "DATA"]
    assert data[-1]["flags"] == "END_STREAM"
    assert sum(f["length"] for f in data) == len(b"hello over HTTP/2\n")
    goaway = doc[-1]
    assert goaway["error"] == "NO_ERROR" and goaway["error_code"] == 0


def test_trace_text_shows_frames_and_stays_bounded(moat_bin, state, cpki, nghttpd, docroot):
    t = h2get(moat_bin, state, cpki, nghttpd, "/big.bin", cmd="trace")
    assert t.rc == 0, t
    text = t.text
    for want in ("preface PRI * HTTP/2.0  24 B", "== SETTINGS  18 B", "ENABLE_PUSH=0",
                 "SETTINGS ACK", "HEADERS stream 1 END_STREAM", ":method: GET",
                 ":status: 200", "DATA stream 1", "END_STREAM", "WINDOW_UPDATE stream 0",
                 "GOAWAY NO_ERROR", "< HTTP/2 200", "> GET /big.bin HTTP/2",
                 "body: %d bytes (HTTP/2 DATA frames)" % (docroot / "big.bin").stat().st_size):
        assert want in text, (want, t)
    # 5 MiB is 300+ DATA frames: the first few are listed, the rest folded into one row.
    assert "DATA x" in text, t
    assert len(text.splitlines()) < 200, t
    j = h2get(moat_bin, state, cpki, nghttpd, "/big.bin", "--json", cmd="trace")
    doc = j.json["hops"][0]["http"]["http2"]
    data = [f for f in doc["frames"] if f["type"] == "DATA"]
    assert len(data) <= 5
    assert sum(f.get("bytes", f["length"]) for f in data) == (docroot / "big.bin").stat().st_size
    # Flow control: the client opened more window as it took the body.
    assert sum(f.get("count", 1) for f in doc["frames"]
               if f["type"] == "WINDOW_UPDATE" and f["direction"] == "client->server") > 2


# ----------------------------------------------------------------------------------------------
# Servers that misbehave: written here, on Python's ssl and python3-h2
# ----------------------------------------------------------------------------------------------


class H2Misbehaves:
    """A TLS server on 127.0.0.1 that negotiates ALPN h2 and then does `mode` to each
    connection, in a thread: raw garbage, GOAWAY, RST_STREAM, a cut body, a field name in upper
    case, silence, or an echo of the request (method, fields, body) as JSON."""

    def __init__(self, cpki, mode):
        self.h2 = pytest.importorskip("h2.connection")
        import h2.config
        import h2.errors
        import h2.events

        self.config, self.errors, self.events = h2.config, h2.errors, h2.events
        self.mode = mode
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cpki.good.chain), str(cpki.good.key))
        self.ctx.set_alpn_protocols(["h2"])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)  # accept() is not woken by close() from another thread
        self.port = self.sock.getsockname()[1]
        self.stop_event = threading.Event()
        self.errors_seen = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop_event.is_set():
            try:
                raw, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            raw.settimeout(20)
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as c:
                    self._one(c)
            except (OSError, ssl.SSLError):
                pass
            except Exception as e:  # noqa: BLE001 - kept for the test's message
                self.errors_seen.append(repr(e))

    def _one(self, c):
        if self.mode == "garbage":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            self.stop_event.wait(10)
            return
        if self.mode == "silent":
            self.stop_event.wait(10)
            return
        cfg = self.config.H2Configuration(client_side=False, validate_outbound_headers=False,
                                          normalize_outbound_headers=False)
        conn = self.h2.H2Connection(cfg)
        conn.initiate_connection()
        c.sendall(conn.data_to_send())
        body, fields = b"", None
        while True:
            data = c.recv(65536)
            if not data:
                return
            for ev in conn.receive_data(data):
                if isinstance(ev, self.events.RequestReceived):
                    fields = ev.headers
                    if self._answer_head(conn, ev.stream_id, c):
                        return
                elif isinstance(ev, self.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, self.events.StreamEnded) and self.mode == "echo":
                    import json
                    import hashlib
                    doc = json.dumps({"fields": [[k.decode(), v.decode()] for k, v in fields],
                                      "body_bytes": len(body),
                                      "body_sha256": hashlib.sha256(body).hexdigest()}).encode()
                    conn.send_headers(ev.stream_id, [(":status", "200"),
                                                     ("content-length", str(len(doc)))])
                    conn.send_data(ev.stream_id, doc, end_stream=True)
            out = conn.data_to_send()
            if out:
                c.sendall(out)

    def _answer_head(self, conn, sid, c):
        """The answer to a request head; True when the connection is done."""
        codes = self.errors.ErrorCodes
        if self.mode == "goaway":
            conn.close_connection(error_code=codes.ENHANCE_YOUR_CALM, additional_data=b"slow down",
                                  last_stream_id=0)
            c.sendall(conn.data_to_send())
            return True  # h2 takes nothing more after its GOAWAY, not even a SETTINGS ACK
        if self.mode == "rst":
            conn.reset_stream(sid, codes.REFUSED_STREAM)
        elif self.mode == "upper":
            conn.send_headers(sid, [(":status", "200"), ("X-Upper", "v")], end_stream=True)
        elif self.mode == "cut":
            conn.send_headers(sid, [(":status", "200"), ("content-length", "100")])
            conn.send_data(sid, b"0123456789")
            c.sendall(conn.data_to_send())
            return True  # closes with 90 bytes missing
        return False

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=30)
        self.sock.close()
        assert not self.errors_seen, self.errors_seen


@pytest.fixture
def misbehaving(cpki):
    made = []

    def new(mode):
        s = H2Misbehaves(cpki, mode)
        made.append(s)
        return s

    yield new
    for s in made:
        s.stop()


def timed_get(moat_bin, state, cpki, port, *args, cmd="get"):
    t0 = time.monotonic()
    g = h2get(moat_bin, state, cpki, port, "/x", "--timeout", "5", *args, cmd=cmd)
    return g, time.monotonic() - t0


def test_goaway_is_named_with_its_error_code(moat_bin, state, cpki, misbehaving):
    s = misbehaving("goaway")
    g, took = timed_get(moat_bin, state, cpki, s.port)
    assert g.rc == 6, g
    assert "GOAWAY: ENHANCE_YOUR_CALM (0xb)" in g.stderr, g
    assert "the request was not processed" in g.stderr
    assert 'debug data "slow down"' in g.stderr
    assert took < 5, took  # no waiting for the timeout
    t, _ = timed_get(moat_bin, state, cpki, s.port, cmd="trace")
    assert t.rc == 6, t
    assert "GOAWAY ENHANCE_YOUR_CALM last stream 0" in t.text, t
    assert "FAILED at HTTP: http_protocol (exit code 6)" in t.text


def test_rst_stream_is_named_with_its_error_code(moat_bin, state, cpki, misbehaving):
    s = misbehaving("rst")
    g, took = timed_get(moat_bin, state, cpki, s.port)
    assert g.rc == 6, g
    assert "the server reset the stream: REFUSED_STREAM (0x7)" in g.stderr, g
    assert took < 5, took
    j, _ = timed_get(moat_bin, state, cpki, s.port, "--json", cmd="trace")
    assert j.rc == 6, j
    rst = [f for f in j.json["hops"][0]["http"]["http2"]["frames"] if f["type"] == "RST_STREAM"]
    assert rst and rst[0]["direction"] == "server->client", j
    assert rst[0]["error"] == "REFUSED_STREAM" and rst[0]["error_code"] == 7
    assert j.json["result"]["cause"] == "http_protocol"


def test_garbage_instead_of_frames(moat_bin, state, cpki, misbehaving):
    s = misbehaving("garbage")
    g, took = timed_get(moat_bin, state, cpki, s.port)
    assert g.rc == 6, g
    assert "the server's HTTP/2 is malformed" in g.stderr, g
    assert "SETTINGS" in g.stderr  # nghttp2's words: it expected the server's SETTINGS
    assert "GOAWAY PROTOCOL_ERROR" in g.stderr
    assert took < 5, took  # the session ends at once, the server's open socket does not matter


def test_bad_field_name_is_refused(moat_bin, state, cpki, misbehaving):
    s = misbehaving("upper")
    g, took = timed_get(moat_bin, state, cpki, s.port)
    assert g.rc == 6, g
    assert "Invalid HTTP header field" in g.stderr and "X-Upper" in g.stderr, g
    assert "moat reset the stream with PROTOCOL_ERROR" in g.stderr
    assert took < 5, took  # the reset ends the exchange: no wait for the timeout


def test_cut_body(moat_bin, state, cpki, misbehaving):
    s = misbehaving("cut")
    g, _ = timed_get(moat_bin, state, cpki, s.port)
    assert g.rc == 6, g
    assert "the body was cut short: 10 bytes arrived" in g.stderr, g


def test_silent_server_times_out(moat_bin, state, cpki, misbehaving):
    s = misbehaving("silent")
    t0 = time.monotonic()
    g = h2get(moat_bin, state, cpki, s.port, "/x", "--timeout", "1.5")
    took = time.monotonic() - t0
    assert g.rc == 7, g
    assert "sent no HTTP/2 frame within the timeout" in g.stderr, g
    assert took < 10, took


def test_request_fields_and_body_over_h2(moat_bin, state, cpki, misbehaving, tmp_path):
    import hashlib
    import json


    s = misbehaving("echo")
    body = b"x" * 200000  # more than the server's 64 KiB window: flow control on our side
    (tmp_path / "body").write_bytes(body)
    g = h2get(moat_bin, state, cpki, s.port, "/form?q=1", "-X", "PUT", "-H", "X-Moat-Test: yes",
              "-H", "Connection: keep-alive", "-H", "Host: other.test", "--data-binary",
              "@%s" % (tmp_path / "body"))
    assert g.rc == 0, g
    doc = json.loads(g.text)
    fields = doc["fields"]
    names = [k for k, _ in fields]
    assert names[:4] == [":method", ":scheme", ":authority", ":path"]
    f = dict(fields)
    assert f[":method"] == "PUT" and f[":path"] == "/form?q=1"
    assert f[":authority"] == "other.test"  # -H Host becomes :authority (RFC 9113 8.3.1)
    assert f["x-moat-test"] == "yes"  # lower-cased (RFC 9113 8.2.1)
    assert "connection" not in f and "host" not in f
    assert f["content-length"] == str(len(body))
    assert doc["body_bytes"] == len(body)
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_moat_serve_speaks_h2_to_moat_get(moat_bin, state, cpki, moat, docroot):
    # The server's HTTP/2 (on by default) against the client's.
    m = moat("serve-h2")
    m.start(["serve", "--root", docroot, "--listen", "127.0.0.1:%d" % m.port, "--cert",
             cpki.good.chain, "--key", cpki.good.key])
    g = h2get(moat_bin, state, cpki, m.port, "/small.txt")
    assert g.rc == 0, g
    assert g.stdout == (docroot / "small.txt").read_bytes()
    j = h2get(moat_bin, state, cpki, m.port, "/small.txt", "--json", cmd="trace")
    assert j.rc == 0, j
    assert j.json["hops"][0]["tls"]["alpn"] == "h2"
    assert j.json["hops"][0]["http"]["protocol"] == "HTTP/2"
    kinds = [f.get("type") for f in j.json["hops"][0]["http"]["http2"]["frames"]]
    assert "SETTINGS" in kinds and "HEADERS" in kinds and "DATA" in kinds, kinds
