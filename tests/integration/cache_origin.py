"""A recording origin for the cache's tests (test_cache_revalidate.py, test_cache_disk.py): routes
set by the test, conditional requests answered with 304, failures and delays on demand, every
request counted and kept, and how many ran at once."""

import email.utils
import http.server
import threading
import time

import pytest


def httpdate(t):
    return email.utils.formatdate(t, usegmt=True)


LAST_MODIFIED = httpdate(time.time() - 3600)


class Origin(http.server.ThreadingHTTPServer):
    """Routes by path: {"cc": Cache-Control, "etag": ..., "lm": bool, "fail": status or None,
    "body": bytes with {n}}; answers If-None-Match / If-Modified-Since with 304 when they
    match; records every request."""

    daemon_threads = True

    def __init__(self, close=False):
        super().__init__(("127.0.0.1", 0), Handler)
        self.close = close  # every answer ends its connection: nothing pooled outlives it
        self.lock = threading.Lock()
        self.counts = {}
        self.seen = []
        self.routes = {}
        self.inflight = {}
        self.most = {}  # path -> the most requests for it in flight at once

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)

    def requests_for(self, path):
        with self.lock:
            return [h for p, h in self.seen if p == path]

    def route(self, path, **kw):
        with self.lock:
            r = self.routes.setdefault(path, {"cc": "max-age=60", "etag": None, "lm": False,
                                              "fail": None, "body": path.encode() + b" {n}",
                                              "delay": 0})
            r.update(kw)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?")[0]
        o = self.server
        with o.lock:
            o.counts[path] = n = o.counts.get(path, 0) + 1
            o.seen.append((path, {k.lower(): v for k, v in self.headers.items()}))
            r = dict(o.routes.get(path) or {})
            o.inflight[path] = o.inflight.get(path, 0) + 1
            o.most[path] = max(o.most.get(path, 0), o.inflight[path])
        try:
            if r.get("delay"):
                time.sleep(r["delay"])
            self.answer(path, n, r)
        finally:
            with o.lock:
                o.inflight[path] -= 1

    def answer(self, path, n, r):
        if self.server.close:
            self.close_connection = True
        if not r:
            self.send_error(404)
            return
        if r["fail"]:
            body = b"origin trouble"
            self.send_response(r["fail"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        fields = [("Cache-Control", r["cc"])] if r["cc"] else []
        if r["etag"]:
            fields.append(("ETag", r["etag"]))
        if r["lm"]:
            fields.append(("Last-Modified", LAST_MODIFIED))
        fields.append(("X-Gen", str(n)))
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        if (inm is not None and r["etag"] and r["etag"].strip('W/') in
                [t.strip().removeprefix("W/") for t in inm.split(",")]) or \
                (inm is None and ims is not None and r["lm"] and ims == LAST_MODIFIED):
            self.send_response(304)
            for k, v in fields:
                self.send_header(k, v)
            self.end_headers()
            return
        body = r["body"].replace(b"{n}", str(n).encode())
        self.send_response(200)
        for k, v in fields:
            self.send_header(k, v)
        if self.server.close:
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def start_origin(close=False):
    o = Origin(close)
    threading.Thread(target=o.serve_forever, daemon=True).start()
    return o


@pytest.fixture(scope="module")
def origin():
    """One origin for a test module."""
    o = start_origin()
    yield o
    o.shutdown()
    o.server_close()
