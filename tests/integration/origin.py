"""A small HTTP/1.1 origin server for the reverse-proxy tests (test_proxy.py).

It is written on plain sockets (Python's socketserver threads, optionally wrapped in ssl) rather
than on http.server, because the tests need answers that http.server will not write: bodies
framed by the close, heads cut in the middle, interim 1xx answers, malformed status lines, heads
larger than any proxy should take. Every request it receives is recorded (head bytes, fields in
order and as spelt, body length and SHA-256, how the body was framed), so a test can check what
moat forwarded, not only what came back.

What it answers is chosen by the path (the query string is ignored, so tests add `?t=NAME` to
find their request among the recorded ones):

    /length/N          200, Content-Length: N, N bytes of body_bytes(N) (HEAD: the head only)
    /chunked/N         200, chunked, the same N bytes in uneven chunks; /chunked-trailer/N adds
                       a trailer field after the last chunk
    /trickle-chunked/N chunked like /chunked/N, but each chunk's size line and its data in
                       separate writes 30 ms apart (a proxy sees them in separate reads)
    /close/N           200 with neither Content-Length nor Transfer-Encoding: N bytes, then close
    /status/CODE       CODE with no body (204, 304: RFC 9110 §15.3.5, §15.4.5); 304 carries ETag
                       and the Content-Length the full answer would have
    /interim           100 Continue and 103 Early Hints first, then the echo
    /slow/SECONDS      wait, then the echo
    /stall/N           head with Content-Length: N, half the body, then silence for 5 s, close
    /cut/N             head with Content-Length: N, half the body, then close
    /cut-chunked/N     chunked head, one chunk of N bytes, then close with no last chunk
    /nothing           close without answering
    /garbage           bytes that are no HTTP head (no line end), then close
    /setheaders        200 with Server, X-Frame-Options, Cache-Control and X-Kept fields
    /malformed         a status line and a field line that are not HTTP/1.1
    /huge-head/KB      200 whose head holds KB KiB of fields (in 2 KiB fields)
    /many-fields/N     200 with N small fields
    /hop               200 with hop-by-hop fields (Connection naming X-Internal, Keep-Alive,
                       Upgrade, Proxy-Connection, TE, Trailer) next to an end-to-end X-Kept
    anything else      the echo: 200, Content-Type: application/json, Content-Length, body
                       {"method", "target", "version", "headers": [[name, value]...],
                        "body_len", "body_sha256", "body_chunked", "trailers",
                        "peer_subject"}
"""

import hashlib
import json
import random
import socketserver
import ssl
import threading
import time


def body_bytes(n):
    """The n bytes every sized answer carries: the same for the same n, on both sides."""
    return random.Random(n).randbytes(n)


def chunk_sizes(n):
    """Uneven chunk sizes adding up to n (a 1-byte chunk, odd sizes, one above 16 KiB)."""
    sizes, left = [], n
    pattern = [1, 7, 4096, 70000, 333, 16384]
    i = 0
    while left > 0:
        s = min(pattern[i % len(pattern)], left)
        sizes.append(s)
        left -= s
        i += 1
    return sizes


class Request:
    """One request as the origin received it."""

    def __init__(self, method, target, version, headers, raw_head):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # [(name as sent, value)], in order
        self.raw_head = raw_head
        self.body = b""
        self.chunked = False
        self.trailers = []  # [(name, value)] after a chunked body
        self.peer_subject = None

    @property
    def path(self):
        return self.target.split("?", 1)[0]

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def header(self, name, default=None):
        got = self.header_all(name)
        return got[0] if got else default

    def names(self):
        return [k for k, _ in self.headers]

    def echo(self):
        return {
            "method": self.method,
            "target": self.target,
            "version": self.version,
            "headers": [[k, v] for k, v in self.headers],
            "body_len": len(self.body),
            "body_sha256": hashlib.sha256(self.body).hexdigest(),
            "body_chunked": self.chunked,
            "trailers": [[k, v] for k, v in self.trailers],
            "peer_subject": self.peer_subject,
        }


class BadRequest(Exception):
    pass


class _Reader:
    """Buffered reads from a socket, for heads, exact lengths and chunked bodies."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def until(self, marker, limit=1 << 20):
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise BadRequest("no %r within %d bytes" % (marker, limit))
            if not self._fill():
                return None
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise BadRequest("closed after %d of %d body bytes" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _read_request(rd):
    """The next request on the connection, or None at a clean end."""
    head = rd.until(b"\r\n\r\n")
    if head is None:
        if rd.buf:
            raise BadRequest("closed inside a head: %r" % rd.buf[:200])
        return None
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("bad request line %r" % lines[0])
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise BadRequest("bad field line %r" % line)
        headers.append((name, value.strip(" \t")))
    req = Request(parts[0], parts[1], parts[2], headers, head)
    te = req.header_all("transfer-encoding")
    cl = req.header_all("content-length")
    if te and cl:
        raise BadRequest("both Transfer-Encoding and Content-Length (RFC 9112 §6.1)")
    if te:
        if [v.lower() for v in te] != ["chunked"]:
            raise BadRequest("transfer-coding %r" % te)
        req.chunked = True
        parts = []
        while True:
            line = rd.until(b"\r\n")
            if line is None:
                raise BadRequest("closed inside a chunked body")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    line = rd.until(b"\r\n")
                    if line in (b"\r\n", None):
                        break
                    name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
                    req.trailers.append((name, value.strip()))
                break
            parts.append(rd.exact(size))
            if rd.exact(2) != b"\r\n":
                raise BadRequest("chunk not followed by CRLF")
        req.body = b"".join(parts)
    elif cl:
        if len(set(cl)) != 1 or not cl[0].isdigit():
            raise BadRequest("Content-Length %r" % cl)
        req.body = rd.exact(int(cl[0]))
    return req


def _head(status, reason, fields):
    lines = ["HTTP/1.1 %d %s" % (status, reason)] + ["%s: %s" % kv for kv in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Origin:
    """An origin on 127.0.0.1 (TLS when `context` is a server SSLContext). start() / stop()."""

    def __init__(self, context=None, host="127.0.0.1"):
        self.context = context
        self.requests = []
        self.errors = []
        self.connections = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        origin = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                origin._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

        self._server = Server((host, 0), Handler)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = None

    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.context else "http", self.host, self.port)

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- what the tests look at ----------------------------------------------------------------

    def find(self, tag, timeout=5.0):
        """The requests whose target contains `tag`, waiting up to `timeout` for at least one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self.requests if tag in r.target]
                left = deadline - time.monotonic()
                if got or left <= 0:
                    return got
                self._cond.wait(left)

    def one(self, tag, timeout=5.0):
        got = self.find(tag, timeout)
        assert len(got) == 1, "want one request with %r at the origin, got %d" % (tag, len(got))
        return got[0]

    # -- serving --------------------------------------------------------------------------------

    def _record(self, req):
        with self._cond:
            self.requests.append(req)
            self._cond.notify_all()

    def _error(self, what):
        with self._lock:
            self.errors.append(what)

    def _serve(self, raw):
        with self._lock:
            self.connections += 1
        raw.settimeout(10)
        sock = raw
        try:
            if self.context is not None:
                sock = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self._error("handshake: %r" % e)
            raw.close()
            return
        peer = None
        if self.context is not None:
            cert = sock.getpeercert()
            if cert:
                peer = ",".join("%s=%s" % kv for rdn in cert["subject"] for kv in rdn)
        rd = _Reader(sock)
        try:
            while True:
                req = _read_request(rd)
                if req is None:
                    break
                req.peer_subject = peer
                self._record(req)
                if not self._answer(sock, req):
                    break
                if (req.header("connection") or "").lower() == "close":
                    break
        except (BadRequest, ValueError) as e:
            self._error("request: %s" % e)
        except (OSError, ssl.SSLError) as e:
            self._error("io: %r" % e)
        finally:
            self._close(sock)

    def _close(self, sock):
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.settimeout(1)
                sock.unwrap()  # close_notify: a close-delimited body ends properly
        except (OSError, ssl.SSLError, ValueError):
            pass
        try:
            sock.close()
        except OSError:
            pass

    def _answer(self, s, req):
        """Write the answer for `req`; False when the connection must close after it."""
        parts = req.path.strip("/").split("/")
        kind = parts[0]
        arg = parts[1] if len(parts) > 1 else ""
        head_only = req.method == "HEAD"
        if kind == "length":
            n = int(arg)
            s.sendall(_head(200, "OK", [("Content-Type", "application/octet-stream"),
                                        ("Content-Length", n)]))
            if not head_only:
                s.sendall(body_bytes(n))
            return True
        if kind in ("chunked", "chunked-trailer"):
            n = int(arg)
            s.sendall(_head(200, "OK", [("Content-Type", "application/octet-stream"),
                                        ("Transfer-Encoding", "chunked")]))
            if head_only:
                return True
            data, off, out = body_bytes(n), 0, []
            for size in chunk_sizes(n):
                out.append(b"%x;ext=1\r\n" % size if size == 7 else b"%x\r\n" % size)
                out.append(data[off:off + size] + b"\r\n")
                off += size
            out.append(b"0\r\nX-Trailer: t\r\n\r\n" if kind == "chunked-trailer" else b"0\r\n\r\n")
            s.sendall(b"".join(out))
            return True
        if kind == "trickle-chunked":
            n = int(arg)
            s.sendall(_head(200, "OK", [("Transfer-Encoding", "chunked")]))
            data, off = body_bytes(n), 0
            for size in chunk_sizes(n):
                s.sendall(b"%x\r\n" % size)
                time.sleep(0.03)
                s.sendall(data[off:off + size] + b"\r\n")
                time.sleep(0.03)
                off += size
            s.sendall(b"0\r\n\r\n")
            return True
        if kind == "close":
            n = int(arg)
            s.sendall(_head(200, "OK", [("Content-Type", "application/octet-stream")]))
            if not head_only:
                s.sendall(body_bytes(n))
            return False
        if kind == "status":
            code = int(arg)
            fields = [("X-Status", code)]
            if code == 304:
                fields += [("ETag", '"v1"'), ("Content-Length", 1234)]
            s.sendall(_head(code, "No Content" if code == 204 else "Not Modified", fields))
            return True
        if kind == "interim":
            s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            s.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            return self._echo(s, req)
        if kind == "slow":
            time.sleep(float(arg))
            return self._echo(s, req)
        if kind == "stall":
            n = int(arg)
            s.sendall(_head(200, "OK", [("Content-Length", n)]) + body_bytes(n)[: n // 2])
            time.sleep(5)
            return False
        if kind == "cut":
            n = int(arg)
            s.sendall(_head(200, "OK", [("Content-Length", n)]) + body_bytes(n)[: n // 2])
            return False
        if kind == "cut-chunked":
            n = int(arg)
            s.sendall(_head(200, "OK", [("Transfer-Encoding", "chunked")])
                      + b"%x\r\n" % n + body_bytes(n) + b"\r\n")
            return False
        if kind == "nothing":
            return False
        if kind == "garbage":
            s.sendall(b"SSH-2.0-OpenSSH_9.2 not http at all")
            return False
        if kind == "setheaders":
            s.sendall(_head(200, "OK", [("Server", "origin/1.0"), ("X-Frame-Options", "ALLOW"),
                                        ("Cache-Control", "no-store"), ("X-Kept", "yes"),
                                        ("Content-Length", 2)]) + b"ok")
            return True
        if kind == "malformed":
            s.sendall(b"HTTP/1.1 200 OK\r\nThis is not a field\r\nContent-Length: 2\r\n\r\nhi")
            return False
        if kind == "huge-head":
            kb = int(arg)
            fields = [("X-Fill-%d" % i, "f" * 2040) for i in range(kb // 2)]
            s.sendall(_head(200, "OK", fields + [("Content-Length", 2)]) + b"ok")
            return True
        if kind == "many-fields":
            fields = [("X-F-%d" % i, "v") for i in range(int(arg))]
            s.sendall(_head(200, "OK", fields + [("Content-Length", 2)]) + b"ok")
            return True
        if kind == "hop":
            s.sendall(_head(200, "OK", [
                ("Connection", "X-Internal, keep-alive"),
                ("Keep-Alive", "timeout=5, max=100"),
                ("X-Internal", "origin-only"),
                ("Upgrade", "h2c"),
                ("Proxy-Connection", "keep-alive"),
                ("TE", "trailers"),
                ("Trailer", "X-Checksum"),
                ("X-Kept", "yes"),
                ("Content-Length", 2),
            ]) + b"ok")
            return True
        return self._echo(s, req)

    def _echo(self, s, req):
        body = json.dumps(req.echo()).encode()
        fields = [("Content-Type", "application/json"), ("X-Origin", "echo")]
        if req.method != "HEAD":
            s.sendall(_head(200, "OK", fields + [("Content-Length", len(body))]) + body)
        else:
            s.sendall(_head(200, "OK", fields + [("Content-Length", len(body))]))
        return True


def server_context(cert, key, client_ca=None):
    """A TLS server context for an https origin; asks for client certificates with client_ca."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
