"""A small WSGI application behind moat's upstream pools (test_upstream.py), served by Debian's
gunicorn, one instance per upstream server:

    APP_NAME=a HEALTH_FILE=/tmp/a.down FAIL_FILE=/tmp/a.fail \
    /usr/bin/gunicorn --worker-class gthread --threads 8 --workers 1 --keep-alive 30 \
        --bind 127.0.0.1:PORT --chdir tests/integration wsgi_app:app

One worker process, so the counters below are the instance's (threads share them).

Routes (the query string is free; `t=NAME` tags a request so a test can find it in /_stats):

    /upload          POST/PUT: reads wsgi.input to its end (chunked bodies too: gunicorn sets
                     wsgi.input_terminated) and answers {"instance", "len", "sha256", ...}
    /download/N      N bytes of pattern() in uneven chunks from a generator: no Content-Length,
                     so gunicorn sends it chunked
    /status/CODE     CODE with the echo as body (no body for 1xx, 204 and 304)
    /slow/SECONDS    waits, then the echo; in /_stats "inflight" while it waits
    /health          200 "ok", or 503 while the file $HEALTH_FILE exists (flip it with no kill)
    /cookie          the echo, with two Set-Cookie fields: session=VALUE (?value=VALUE, default
                     the instance's name) and theme=dark
    /_stats          {"instance", "health_hits", "inflight": [tags], "seen": [tags], "requests"}:
                     what this instance has received (never itself counted); ask it directly,
                     not through moat
    anything else    the echo: 200 JSON {"instance", "method", "path", "query", "raw_uri",
                     "headers": {lower-case name: value}, "remote_addr", "remote_port"}

While the file $FAIL_FILE exists, every route but /_stats and /health answers 503 (an
overloaded application that still says it is healthy: passive health checks must notice).

gunicorn joins repeated request fields with "," (no space) in the environ; `headers` shows
that joined value.
"""

import hashlib
import json
import os
import threading
import time
from array import array
from urllib.parse import parse_qs

NAME = os.environ.get("APP_NAME", "app")
HEALTH_FILE = os.environ.get("HEALTH_FILE", "")
FAIL_FILE = os.environ.get("FAIL_FILE", "")

_lock = threading.Lock()
_stats = {"health_hits": 0, "requests": 0, "inflight": [], "seen": []}
_SEEN_MAX = 100000

# Uneven chunk sizes for /download: a 1-byte chunk, odd sizes, one above 64 KiB.
_CHUNKS = [1, 7, 4096, 70001, 333, 16384, 65536]


def pattern(start, end):
    """Bytes [start, end) of an endless stream of 8-byte big-endian word numbers: word k sits
    at offset 8k. Every position differs from its neighbours, so a lost, doubled or moved chunk
    changes the SHA-256. Shared with the tests (import wsgi_app)."""
    if end <= start:
        return b""
    first, last = start // 8, (end + 7) // 8
    words = array("Q", range(first, last))
    if words.itemsize != 8:  # pragma: no cover (every Debian architecture has 8-byte Q)
        raise RuntimeError("array 'Q' is not 8 bytes here")
    if array("H", [1]).tobytes()[0] == 1:  # little-endian host: make the words big-endian
        words.byteswap()
    raw = words.tobytes()
    return raw[start - first * 8: end - first * 8]


def pattern_sha256(n):
    """SHA-256 of the first n bytes of pattern(), computed in pieces."""
    h = hashlib.sha256()
    step = 1 << 20
    for off in range(0, n, step):
        h.update(pattern(off, min(n, off + step)))
    return h.hexdigest()


def _headers(environ):
    out = {}
    for k, v in environ.items():
        if k.startswith("HTTP_"):
            out[k[5:].replace("_", "-").lower()] = v
    if "CONTENT_TYPE" in environ:
        out["content-type"] = environ["CONTENT_TYPE"]
    if "CONTENT_LENGTH" in environ:
        out["content-length"] = environ["CONTENT_LENGTH"]
    return out


def _echo(environ, **extra):
    port = environ.get("REMOTE_PORT")
    doc = {
        "instance": NAME,
        "method": environ.get("REQUEST_METHOD"),
        "path": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "raw_uri": environ.get("RAW_URI", ""),
        "headers": _headers(environ),
        "remote_addr": environ.get("REMOTE_ADDR"),
        "remote_port": int(port) if port and port.isdigit() else port,
    }
    doc.update(extra)
    return doc


def _json(start_response, status, doc, extra_headers=()):
    body = json.dumps(doc).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))] + list(extra_headers))
    return [body]


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
            302: "Found", 304: "Not Modified", 400: "Bad Request", 404: "Not Found",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout"}


def _status(code):
    return "%d %s" % (code, _REASONS.get(code, "Status"))


def _tag(environ):
    q = parse_qs(environ.get("QUERY_STRING", ""))
    return q.get("t", [None])[0]


def _download(n):
    off, i = 0, 0
    while off < n:
        size = min(_CHUNKS[i % len(_CHUNKS)], n - off)
        yield pattern(off, off + size)
        off += size
        i += 1


def _drain(environ):
    """Read the whole request body (Content-Length or chunked) in pieces."""
    h = hashlib.sha256()
    total = 0
    stream = environ["wsgi.input"]
    while True:
        piece = stream.read(65536)
        if not piece:
            break
        total += len(piece)
        h.update(piece)
    return total, h.hexdigest()


def app(environ, start_response):
    path = environ.get("PATH_INFO", "") or "/"
    method = environ.get("REQUEST_METHOD", "GET")

    if path == "/_stats":
        with _lock:
            doc = {"instance": NAME, "health_hits": _stats["health_hits"],
                   "requests": _stats["requests"], "inflight": list(_stats["inflight"]),
                   "seen": list(_stats["seen"])}
        return _json(start_response, "200 OK", doc)

    if path == "/health":
        with _lock:
            _stats["health_hits"] += 1
        if HEALTH_FILE and os.path.exists(HEALTH_FILE):
            body = b"down\n"
            start_response("503 Service Unavailable",
                           [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        body = b"ok\n"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    tag = _tag(environ)
    with _lock:
        _stats["requests"] += 1
        if tag is not None and len(_stats["seen"]) < _SEEN_MAX:
            _stats["seen"].append(tag)

    if FAIL_FILE and os.path.exists(FAIL_FILE):
        _drain(environ)
        return _json(start_response, _status(503), _echo(environ, broken=True),
                     [("Retry-After", "1")])

    if path == "/upload":
        n, digest = _drain(environ)
        return _json(start_response, "200 OK", _echo(environ, len=n, sha256=digest))

    if path.startswith("/download/"):
        n = int(path[len("/download/"):])
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("X-Instance", NAME)])
        return _download(n)

    if path.startswith("/status/"):
        code = int(path[len("/status/"):])
        if code in (204, 304):
            start_response(_status(code), [("X-Instance", NAME)])
            return [b""]
        return _json(start_response, _status(code), _echo(environ, status=code))

    if path.startswith("/slow/"):
        seconds = float(path[len("/slow/"):])
        _drain(environ)  # a POST's body is read first: the server has the whole request
        key = tag if tag is not None else "-"
        with _lock:
            _stats["inflight"].append(key)
        try:
            time.sleep(seconds)
        finally:
            with _lock:
                _stats["inflight"].remove(key)
        return _json(start_response, "200 OK", _echo(environ, slept=seconds))

    if path == "/cookie":
        q = parse_qs(environ.get("QUERY_STRING", ""))
        value = q.get("value", [NAME])[0]
        return _json(start_response, "200 OK", _echo(environ), [
            ("Set-Cookie", "session=%s; Path=/; HttpOnly" % value),
            ("Set-Cookie", "theme=dark; Path=/"),
        ])

    if method in ("POST", "PUT", "PATCH"):
        n, digest = _drain(environ)
        return _json(start_response, "200 OK", _echo(environ, len=n, sha256=digest))
    return _json(start_response, "200 OK", _echo(environ))
