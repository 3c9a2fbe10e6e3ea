"""Compression (docs/encode.md): static files and proxied answers in gzip, br and zstd as the
client's Accept-Encoding (with q-values) asks, decoded by Python's zlib, brotli (Debian's
python3-brotli) and zstandard (python3-zstandard) and by curl --compressed to the original
bytes; precompressed siblings (file.br, file.gz) served byte for byte when fresh; Vary and
per-coding ETags; never for ranges, small answers, types that do not compress, or what the
origin encoded or marked no-transform; a relayed body compressed piece by piece as it arrives.
"""

import gzip
import http.server
import os
import random
import re
import socket
import ssl
import subprocess
import threading
import time
import zlib

import brotli
import pytest
import zstandard

from conftest import _finish
from h2_helpers import H2Conn, rst_stream
from helpers import Conn, Moat, build_request, check_refuses, clean_env

WORDS = ("moat serves static files and proxies answers over TLS with certificates from its own "
         "local CA or any ACME CA while it keeps clients from abusing it").split()


def text(n, seed=1):
    r = random.Random(seed)
    out = []
    size = 0
    while size < n:
        w = r.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return (" ".join(out)[:n]).encode()


def decode(coding, data):
    if coding == "gzip":
        return gzip.decompress(data)
    if coding == "br":
        return brotli.decompress(data)
    if coding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    assert coding in (None, "identity"), coding
    return data


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("encode-www")
    f = {
        "big.html": text(300_000, 1),
        "small.css": text(3000, 2),
        "tiny.txt": b"too small to be worth it\n",
        "data.json": b'{"k": "' + text(5000, 3) + b'"}',
        "pic.png": b"\x89PNG\r\n\x1a\n" + os.urandom(4000),
        "app.js": text(20000, 4),
        "old.js": text(20000, 5),
        "huge.txt": text(8_000_000, 6),
    }
    for name, data in f.items():
        (d / name).write_bytes(data)
    (d / "app.js.br").write_bytes(brotli.compress(f["app.js"], quality=11))
    (d / "app.js.gz").write_bytes(gzip.compress(f["app.js"], 9))
    # A sibling older than its file (the file changed, the sibling was not made again).
    (d / "old.js.br").write_bytes(brotli.compress(b"stale " + f["old.js"]))
    past = time.time() - 3600
    os.utime(d / "old.js.br", (past, past))
    return d, f


# The origin's /stream sends its second piece only once the test has seen the first (or
# after 8 s): an answer held back until the end shows as a read that times out, not as a
# clock reading.
GATE = threading.Event()
GATE.set()  # open unless a test closes it


class Origin(http.server.ThreadingHTTPServer):
    daemon_threads = True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = text(200_000, 9)

    def log_message(self, *a):
        pass

    def send(self, status, fields, body):
        self.send_response(status)
        for k, v in fields:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        p = self.path.split("?")[0]
        if p == "/page":
            if self.headers.get("If-None-Match") in ('"v1"', 'W/"v1"'):
                self.send_response(304)
                self.send_header("ETag", '"v1"')
                self.end_headers()
                return
            self.send(200, [("Content-Type", "text/html; charset=utf-8"), ("ETag", '"v1"')],
                      self.body)
        elif p == "/gzipped":
            self.send(200, [("Content-Type", "text/plain"), ("Content-Encoding", "gzip")],
                      gzip.compress(self.body))
        elif p == "/notransform":
            self.send(200, [("Content-Type", "text/plain"),
                            ("Cache-Control", "public, no-transform")], self.body)
        elif p == "/png":
            self.send(200, [("Content-Type", "image/png")], self.body)
        elif p == "/stream":
            # Two pieces, chunked; the second waits for the GATE.
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"first piece of the stream\n" * 20, b"second piece\n" * 20):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                GATE.wait(8)
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send(404, [("Content-Type", "text/plain")], b"no\n")


@pytest.fixture(scope="module")
def origin():
    srv = Origin(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def srv(moat_bin, pki, files, origin, tmp_path_factory):
    d, _ = files
    m = Moat(moat_bin, tmp_path_factory.mktemp("encode"), name="encode")
    m.write_config(f"""\
listen 127.0.0.1:{m.port}
workers 2
state {m.state}
error_log stderr info
trust {pki.root}
site example.test {{
    cert {pki.ec.chain} {pki.ec.key}
    root {d}
    encode br zstd gzip
    encode_min 1k
}}
site plain.test {{
    cert {pki.ec.chain} {pki.ec.key}
    root {d}
    encode gzip
    encode_precompressed off
    encode_types text/*
}}
site proxy.test {{
    cert {pki.ec.chain} {pki.ec.key}
    proxy http://127.0.0.1:{origin.server_address[1]}
    encode zstd br gzip
}}
site off.test {{
    cert {pki.ec.chain} {pki.ec.key}
    root {d}
}}
""")
    m.start()
    yield m
    _finish(m)


def get(m, path, ae=None, host="example.test", method="GET", headers=()):
    h = [("Accept-Encoding", ae)] if ae is not None else []
    h += list(headers)
    with Conn(m.port, sni=host, verify=False) as c:
        c.send(build_request(path, method=method, host=host, headers=h))
        return c.read_response(method)


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("name", ["big.html", "small.css", "data.json"])
def test_static_each_coding_decodes(srv, files, coding, name):
    _, f = files
    r = get(srv, "/" + name, coding)
    assert r.status == 200
    assert r.header("content-encoding") == coding, r.headers
    assert "accept-encoding" in r.header("vary", "").lower()
    assert int(r.header("content-length", "0")) == len(r.body) or r.header("content-length") is None
    assert decode(coding, r.body) == f[name]
    assert len(r.body) < len(f[name]) / 2


@pytest.mark.parametrize("ae,want", [
    ("gzip;q=0.5, br;q=0.9", "br"),
    ("br;q=0, gzip", "gzip"),
    ("gzip, zstd", "zstd"),             # equal q: the site's order (br zstd gzip)
    ("*", "br"),
    ("*;q=0.1, gzip;q=0", "br"),
    ("x-gzip", "gzip"),
    ("GZIP;Q=1.0", "gzip"),
    ("identity", None),
    ("gzip;q=0, br;q=0, zstd;q=0", None),
    ("compress, deflate", None),
    ("", None),
    ("gzip;q=2", None),                 # not a qvalue: the element is ignored
    ("identity;q=1, gzip;q=0.5", None),  # the client prefers it plain
])
def test_accept_encoding_negotiation(srv, files, ae, want):
    r = get(srv, "/big.html", ae)
    assert r.status == 200
    assert r.header("content-encoding") == want, (ae, r.headers)
    assert decode(want, r.body) == files[1]["big.html"]
    assert "accept-encoding" in r.header("vary", "").lower()


def test_no_accept_encoding_gets_identity_with_vary(srv, files):
    r = get(srv, "/big.html")
    assert r.header("content-encoding") is None
    assert r.body == files[1]["big.html"]
    assert "accept-encoding" in r.header("vary", "").lower()


@pytest.mark.parametrize("path", ["/tiny.txt", "/pic.png"])
def test_small_and_incompressible_are_sent_as_they_are(srv, files, path):
    r = get(srv, path, "br, gzip")
    assert r.header("content-encoding") is None
    assert r.body == files[1][path[1:]]
    assert r.header("vary") is None


def test_site_without_encode_never_compresses(srv, files):
    r = get(srv, "/big.html", "gzip, br", host="off.test")
    assert r.header("content-encoding") is None and r.header("vary") is None
    assert r.body == files[1]["big.html"]


def test_range_is_never_compressed(srv, files):
    r = get(srv, "/big.html", "br, gzip", headers=[("Range", "bytes=100-199")])
    assert r.status == 206
    assert r.header("content-encoding") is None
    assert r.body == files[1]["big.html"][100:200]


def test_etag_per_coding_and_conditionals(srv):
    plain = get(srv, "/small.css").header("etag")
    br = get(srv, "/small.css", "br").header("etag")
    gz = get(srv, "/small.css", "gzip").header("etag")
    assert len({plain, br, gz}) == 3, (plain, br, gz)
    r = get(srv, "/small.css", "br", headers=[("If-None-Match", br)])
    assert r.status == 304 and r.header("etag") == br
    assert "accept-encoding" in r.header("vary", "").lower()
    # The identity ETag does not validate the br representation.
    assert get(srv, "/small.css", "br", headers=[("If-None-Match", plain)]).status == 200
    assert get(srv, "/small.css", headers=[("If-None-Match", plain)]).status == 304


def test_head_says_what_get_would(srv):
    for path in ("/big.html", "/small.css"):
        r = get(srv, path, "br", method="HEAD")
        assert r.status == 200 and r.header("content-encoding") == "br"
        assert r.body == b""


def test_precompressed_siblings_byte_for_byte(srv, files):
    d, f = files
    r = get(srv, "/app.js", "br")
    assert r.header("content-encoding") == "br"
    assert r.body == (d / "app.js.br").read_bytes(), "the .br sibling itself"
    assert int(r.header("content-length")) == len(r.body)
    r = get(srv, "/app.js", "gzip")
    assert r.body == (d / "app.js.gz").read_bytes()
    # No .zst sibling: compressed on the fly.
    r = get(srv, "/app.js", "zstd")
    assert r.header("content-encoding") == "zstd" and decode("zstd", r.body) == f["app.js"]
    # The sibling's ETag is its own, not the file's.
    assert get(srv, "/app.js", "br").header("etag") != get(srv, "/app.js").header("etag")


def test_stale_sibling_is_not_served(srv, files):
    d, f = files
    r = get(srv, "/old.js", "br")
    assert r.header("content-encoding") == "br"
    assert r.body != (d / "old.js.br").read_bytes()
    assert decode("br", r.body) == f["old.js"]


def test_precompressed_off_and_types(srv, files):
    d, f = files
    r = get(srv, "/data.json", "gzip", host="plain.test")
    # encode_types text/*: application/json is not in it.
    assert r.header("content-encoding") is None and r.body == f["data.json"]
    # encode_precompressed off: the .gz sibling is not used (compressed on the fly instead).
    r = get(srv, "/app.js", "gzip", host="plain.test")
    assert r.header("content-encoding") == "gzip"
    assert r.body != (d / "app.js.gz").read_bytes() and decode("gzip", r.body) == f["app.js"]
    r = get(srv, "/big.html", "gzip, br", host="plain.test")
    assert r.header("content-encoding") == "gzip"  # the only coding of this site
    assert decode("gzip", r.body) == f["big.html"]


def curl(args):
    return subprocess.run(["curl", "-sk", "--max-time", "20"] + args, capture_output=True,
                          env=clean_env(), timeout=30)


@pytest.mark.parametrize("proto", ["--http1.1", "--http2"])
def test_curl_compressed(srv, files, proto):
    url = "https://example.test:%d/big.html" % srv.port
    res = "example.test:%d:127.0.0.1" % srv.port
    p = curl([proto, "--compressed", "--resolve", res, "-D", "-", "-o", "/dev/stdout", url])
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    assert re.search(rb"(?i)content-encoding: (br|zstd|gzip)", head), head
    assert body == files[1]["big.html"]
    for coding in ("gzip", "br", "zstd"):
        p = curl([proto, "--resolve", res, "-H", "Accept-Encoding: " + coding, url])
        assert p.returncode == 0
        assert decode(coding, p.stdout) == files[1]["big.html"], (proto, coding)


def test_http2_streams_compressed(srv, files):
    with H2Conn(srv.port) as c:
        st = c.get("/big.html", headers=[("accept-encoding", "zstd")])
        assert st.status == 200 and st.header("content-encoding") == "zstd"
        assert decode("zstd", bytes(st.body)) == files[1]["big.html"]


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_proxied_answer_compressed(srv, coding):
    r = get(srv, "/page", coding, host="proxy.test")
    assert r.status == 200 and r.header("content-encoding") == coding, r.headers
    assert decode(coding, r.body) == Handler.body
    assert r.header("etag") == 'W/"v1"', "a strong ETag of the origin's is made weak"
    assert "accept-encoding" in r.header("vary", "").lower()
    # Revalidation with the weak ETag reaches the origin and comes back 304, with Vary.
    r = get(srv, "/page", coding, host="proxy.test", headers=[("If-None-Match", 'W/"v1"')])
    assert r.status == 304 and "accept-encoding" in r.header("vary", "").lower()
    assert r.header("content-encoding") is None


def test_proxied_identity_keeps_the_strong_etag(srv):
    r = get(srv, "/page", None, host="proxy.test")
    assert r.header("content-encoding") is None and r.header("etag") == '"v1"'
    assert r.body == Handler.body


@pytest.mark.parametrize("path,why", [("/gzipped", "already encoded"),
                                      ("/notransform", "no-transform"),
                                      ("/png", "not a compressible type")])
def test_proxied_left_alone(srv, path, why):
    r = get(srv, path, "br, zstd", host="proxy.test")
    assert r.status == 200
    if path == "/gzipped":
        assert r.header("content-encoding") == "gzip", why
        assert gzip.decompress(r.body) == Handler.body
    else:
        assert r.header("content-encoding") is None, why
        assert r.body == Handler.body


def test_proxied_stream_is_compressed_as_it_comes(srv):
    """The origin's first piece reaches the client, decodable, before its second is sent."""
    GATE.clear()
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(raw, server_hostname="proxy.test")
    try:
        s.sendall(build_request("/stream", host="proxy.test",
                                headers=[("Accept-Encoding", "gzip")]))
        s.settimeout(4)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, rest = buf.partition(b"\r\n\r\n")
        assert b"Content-Encoding: gzip" in head, head
        assert b"chunked" in head.lower(), head
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        got = b""
        data = rest
        while b"first piece" not in got:
            # Chunked framing: take the chunk payloads out.
            while True:
                m = re.match(rb"([0-9a-fA-F]+)\r\n", data)
                if not m or len(data) < m.end() + int(m.group(1), 16) + 2:
                    break
                n = int(m.group(1), 16)
                got += d.decompress(data[m.end():m.end() + n])
                data = data[m.end() + n + 2:]
            if b"first piece" in got:
                break
            try:
                data += s.recv(65536)
            except socket.timeout:
                pytest.fail("the first piece was held back until the origin's second")
        assert b"second" not in got
    finally:
        GATE.set()
        s.close()


@pytest.mark.parametrize("host,path", [("example.test", "/huge.txt"),
                                       ("proxy.test", "/stream")])
def test_client_leaving_mid_answer(srv, files, host, path):
    """A client that goes away while a compressed answer streams (HTTP/1.1: the close; HTTP/2:
    RST_STREAM) ends it cleanly: the encoder and the file or origin are let go, and the
    server answers the next request."""
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(raw, server_hostname=host)
    s.sendall(build_request(path, host=host, headers=[("Accept-Encoding", "br")]))
    got = s.recv(4096)
    assert b"Content-Encoding: br" in got, got[:300]
    s.close()
    with H2Conn(srv.port, sni=host) as c:
        sid = c.request(path, authority=host, headers=[("accept-encoding", "zstd")])
        c.pump_until(lambda: c.stream(sid).status is not None, 5, what="the head")
        c.send(rst_stream(sid))
        assert c.get("/small.css" if host == "example.test" else "/page",
                     authority=host).status == 200
    r = get(srv, "/small.css", "gzip")
    assert r.status == 200 and decode("gzip", r.body) == files[1]["small.css"]


@pytest.mark.parametrize("line,want", [
    ("encode lzma", r"encode \"lzma\": moat compresses with gzip, br and zstd"),
    ("encode gzip gzip", r"encode: gzip is named twice"),
    ("encode_level br 12", r"encode_level br \"12\": write a level from 0 to 11"),
    ("encode_level lz 3", r"usage: encode_level gzip\|br\|zstd N"),
    ("encode_types html", r"encode_types \"html\": write media types"),
    ("encode_min lots", r"encode_min \"lots\""),
    ("encode_precompressed maybe", r"encode_precompressed"),
])
def test_config_errors(moat_bin, tmp_path, line, want):
    said = check_refuses(moat_bin, tmp_path,
                         "listen 127.0.0.1:1\nsite x.test {\n    root /tmp\n    %s\n}\n" % line)
    assert re.search(r"moat\.conf:4:\d+: .*" + want, said), said
