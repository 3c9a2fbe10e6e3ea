"""Upstream pools: `upstream NAME { server ...; balance ...; keepalive ...; health_check ...;
retries ...; timeouts { } }` blocks, `proxy NAME` / `proxy /PREFIX/ NAME strip|rewrite /NEW/`
in sites, `trusted_proxies`, and the `moat proxy --to` quick start; driven against real
gunicorn instances of tests/integration/wsgi_app.py (each tells its name, the path it got, the
fields and the source port of moat's connection, so a test sees which server answered and
over which upstream connection).

Pieces:
  apps      module-scoped gunicorns: a and b (the two servers of most upstreams), stale (its
            keep-alive is 1 s, so it closes moat's pooled connection while idle) and slowfb
            (for the first-byte timeout; its own, so that timing it out cannot mark a or b down)
  front     one moat (workers 1: balancing is deterministic within one worker) with one site
            per situation, listening on 127.0.0.1 and [::1]
  cluster   per test: fresh gunicorns c and d and a moat of their own, for the tests that kill
            servers or make them fail (health state never leaks from one test to the next)

Servers are killed by the process group the test started (os.killpg), never by name.

The log wording for health changes is not fixed by the spec: LOG_* below hold the patterns,
and every check is "a line that names the server's HOST:PORT and says why".
"""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import (NET_TIMEOUT, Conn, Moat, build_request, clean_env, client_context, curl,
                     free_port, log_after, wait_for)
from wsgi_app import pattern_sha256

GUNICORN = "/usr/bin/gunicorn"
HERE = Path(__file__).resolve().parent
MIB20 = 20 << 20

FRONT_SITES = ["app.test", "rr.test", "weighted.test", "pooled.test", "nopool.test",
               "stale.test", "lc.test", "r2.test", "hcookie.test", "hheader.test", "hip.test",
               "mixed.test", "inline.test", "down.test", "slowfb.test"]

# Why a server was taken out, as the error log may say it (case-insensitive regex parts).
LOG_DEAD = r"refused|reset|closed|cannot connect|connect|unreachable|health"
LOG_HEALTH = r"health"
LOG_STATUS_503 = r"503"
# That a server taken out is back.
LOG_BACK = r"\bback\b|\bup\b|(?<!un)healthy|recover|restor|again|alive|rejoin"


# -- gunicorn instances ------------------------------------------------------------------------


def need_gunicorn():
    if not os.access(GUNICORN, os.X_OK):
        pytest.skip("%s not installed (Debian package gunicorn)" % GUNICORN)


class App:
    """One gunicorn serving wsgi_app:app as APP_NAME=name on its own port, in its own process
    group. start() after kill() reuses the port."""

    def __init__(self, name, base, keep_alive=30):
        self.name = name
        self.port = free_port()
        self.dir = Path(base) / ("app-" + name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.health_file = self.dir / "health.down"  # exists: /health answers 503
        self.fail_file = self.dir / "fail"  # exists: every route answers 503
        self.log = self.dir / "gunicorn.log"
        self.keep_alive = keep_alive
        self.proc = None

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def __repr__(self):
        return "App(%s, %s)" % (self.name, self.addr)

    def start(self, wait=True):
        env = clean_env({"APP_NAME": self.name, "HEALTH_FILE": str(self.health_file),
                         "FAIL_FILE": str(self.fail_file), "PYTHONDONTWRITEBYTECODE": "1"})
        cmd = [GUNICORN, "--worker-class", "gthread", "--threads", "8", "--workers", "1",
               "--keep-alive", str(self.keep_alive), "--graceful-timeout", "2",
               "--bind", self.addr, "--chdir", str(HERE), "wsgi_app:app"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=15.0):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError("gunicorn %s exited with %d:\n%s" % (
                    self.name, self.proc.returncode, self.log.read_text()[-3000:]))
            try:
                return self.stats()["instance"] == self.name
            except OSError:
                return False

        assert wait_for(up, timeout), "gunicorn %s not ready on %s:\n%s" % (
            self.name, self.addr, self.log.read_text()[-3000:])

    def direct(self, path):
        """GET path from this instance itself (not through moat): (status, body)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: direct\r\nConnection: close\r\n\r\n"
                      % path.encode())
            data = b""
            while True:
                piece = s.recv(65536)
                if not piece:
                    break
                data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    def stats(self):
        status, body = self.direct("/_stats")
        assert status == 200, body
        return json.loads(body)

    def seen(self, prefix):
        return [t for t in self.stats()["seen"] if t.startswith(prefix)]

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        """SIGKILL the whole group (master and worker) and wait until the port refuses."""
        self._signal_group(signal.SIGKILL)
        self.proc.wait(timeout=10)

        def refused():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return False
            except OSError:
                return True

        assert wait_for(refused, 5), "%s still accepts after SIGKILL" % self

    def stop(self):
        """The end of a test: SIGKILL the group (a test app keeps nothing worth a graceful
        exit, and a /slow request may still be sleeping in it)."""
        if self.proc is not None:
            self._signal_group(signal.SIGKILL)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def start_apps(apps):
    for a in apps:
        a.start(wait=False)
    for a in apps:
        a.wait_ready()
    return apps


def established_to(port):
    """Established TCP connections whose local port is `port` (an app's side of moat's upstream
    connections), from /proc/net/tcp."""
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port:
            n += 1
    return n


# -- clients -----------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _ctx(cafile):
    return client_context(cafile=cafile)


class Client(Conn):
    """A TLS connection to moat for site `sni`, optionally from a chosen source address (any
    127.0.0.0/8 address is local on Linux), or to [::1]."""

    def __init__(self, port, sni, cafile, source=None, host="127.0.0.1", timeout=NET_TIMEOUT):
        self.timeout = timeout
        raw = socket.create_connection((host, port), timeout=timeout,
                                       source_address=(source, 0) if source else None)
        try:
            self.sock = _ctx(str(cafile)).wrap_socket(raw, server_hostname=sni)
        except Exception:
            raw.close()
            raise
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False
        self.host = sni

    def get(self, path, **kw):
        return self.request(path, host=self.host, **kw)


def echo(resp):
    assert resp.status == 200, resp
    return json.loads(resp.body)


def ask(m, pki, site, path, source=None, host="127.0.0.1", **kw):
    """One request on a fresh connection."""
    with Client(m.port, site, pki.root, source=source, host=host) as c:
        return c.get(path, **kw)


def instances(m, pki, site, n, tag, fresh=False, headers=None):
    """The instance names that answered n GETs (one connection, or one each with fresh)."""
    got = []
    c = None
    try:
        for i in range(n):
            if fresh or c is None:
                if c is not None:
                    c.close()
                c = Client(m.port, site, pki.root)
            got.append(echo(c.get("/?t=%s-%d" % (tag, i), headers=headers))["instance"])
    finally:
        if c is not None:
            c.close()
    return got


def split_list(value):
    """A comma-separated field value as a list (gunicorn joins repeated fields with ",")."""
    return [p.strip() for p in value.split(",")] if value else []


def forwarded_elements(value):
    """RFC 7239 Forwarded: a list of {param: value} (quoted strings unquoted), in order."""
    parts, cur, quoted, i = [], "", False, 0  # parts: (text, the separator after it)
    while i < len(value):
        ch = value[i]
        if quoted and ch == "\\" and i + 1 < len(value):
            cur += value[i: i + 2]
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
            cur += ch
        elif ch in ",;" and not quoted:
            parts.append((cur, ch))
            cur = ""
        else:
            cur += ch
        i += 1
    parts.append((cur, ","))
    elements, pairs = [], {}
    for text, sep in parts:
        text = text.strip()
        if text:
            k, _, v = text.partition("=")
            v = v.strip()
            if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
                v = re.sub(r"\\(.)", r"\1", v[1:-1])
            pairs[k.strip().lower()] = v
        if sep == "," and pairs:
            elements.append(pairs)
            pairs = {}
    return elements


def log_line(m, mark, addr, reason, timeout=5.0):
    """A line of m's stderr after `mark` that names addr (HOST:PORT, not a longer port) and
    matches `reason` (case-insensitive)."""
    pat = r"(?im)^(?=.*%s(?!\d))(?=.*(?:%s)).*$" % (re.escape(addr), reason)
    return log_after(m, mark, pat, timeout)


def _finish(m):
    m.stop()
    report = m.sanitizer_report()
    if report and not m.sanitizer_reported:
        m.sanitizer_reported = True
        pytest.fail("sanitizer report in moat's stderr (%s):\n%s" % (m.dir, report),
                    pytrace=False)


def sha(b):
    return hashlib.sha256(b).hexdigest()


# -- configuration -----------------------------------------------------------------------------


def globals_block(m, pki, workers=1, extra=""):
    return (
        "# written by tests/integration/test_upstream.py\n"
        "listen 127.0.0.1:%d [::1]:%d\nworkers %d\nstate %s\naccess_log %s json\n"
        "error_log stderr info\ntrust %s\nlimits { body 64m }\n"
        "timeouts { head 5s; idle 10s; body 10s; write 10s; drain 2s; handshake 5s }\n%s"
        % (m.port, m.port, workers, m.state, m.access_log, pki.root, extra))


def site(cert, names, body):
    return "site %s {\n    cert %s %s\n%s}\n" % (names, cert.chain, cert.key, body)


def front_config(m, pki, cert, www, apps, dead_port):
    a, b = apps.a.addr, apps.b.addr
    two = "    server %s;\n    server %s;\n" % (a, b)
    return (
        globals_block(m, pki, extra="trusted_proxies 127.0.0.2/32 10.0.0.0/8\n")
        + "upstream two {\n%s}\n" % two
        + "upstream weighted {\n    server %s weight 3;\n    server %s;\n"
          "    balance round_robin;\n}\n" % (a, b)
        + "upstream pooled {\n%s    keepalive 16;\n    keepalive_timeout 20s;\n}\n" % two
        + "upstream nopool {\n%s    keepalive 0;\n}\n" % two
        + "upstream lc {\n%s    balance least_conn;\n}\n" % two
        + "upstream r2 {\n%s    balance random_two;\n}\n" % two
        + "upstream hcookie {\n%s    balance hash cookie session;\n}\n" % two
        + "upstream hheader {\n%s    balance hash header X-User;\n}\n" % two
        + "upstream hip {\n%s    balance hash ip;\n}\n" % two
        + "upstream stale {\n    server %s;\n    keepalive 4;\n    keepalive_timeout 20s;\n}\n"
          % apps.stale.addr
        + "upstream slowfb {\n    server %s;\n    retries 0;\n"
          "    timeouts { connect 2s; first_byte 1s; read 5s; write 5s; }\n}\n"
          % apps.slow.addr
        + site(cert, "app.test rr.test", "    proxy two\n")
        + site(cert, "weighted.test", "    proxy weighted\n")
        + site(cert, "pooled.test", "    proxy pooled\n")
        + site(cert, "nopool.test", "    proxy nopool\n")
        + site(cert, "stale.test", "    proxy stale\n")
        + site(cert, "lc.test", "    proxy lc\n")
        + site(cert, "r2.test", "    proxy r2\n")
        + site(cert, "hcookie.test", "    proxy hcookie\n")
        + site(cert, "hheader.test", "    proxy hheader\n")
        + site(cert, "hip.test", "    proxy hip\n")
        + site(cert, "slowfb.test", "    proxy slowfb\n")
        + site(cert, "mixed.test", "    root %s\n    proxy /api/ two strip\n"
                                   "    proxy /v1/ two rewrite /v2/\n" % www)
        + site(cert, "inline.test", "    proxy http://%s\n" % a)
        + site(cert, "down.test", "    proxy http://127.0.0.1:%d\n" % dead_port)
        + "site * {\n    cert %s %s\n    root %s\n}\n" % (pki.default.chain, pki.default.key, www)
    )


def cluster_config(m, pki, cert, upstream_body, workers=1):
    return (globals_block(m, pki, workers) + "upstream pool {\n%s}\n" % upstream_body
            + site(cert, "app.test", "    proxy pool\n"))


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(pki):
    return pki.issue(FRONT_SITES, "ec", stem="upstream-front")


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    need_gunicorn()
    base = tmp_path_factory.mktemp("upstream-apps")
    ns = SimpleNamespace(a=App("a", base), b=App("b", base),
                         stale=App("stale", base, keep_alive=1), slow=App("slowfb", base))
    every = [ns.a, ns.b, ns.stale, ns.slow]
    try:
        start_apps(every)
        yield ns
    finally:
        for x in every:
            x.stop()


@pytest.fixture(scope="module")
def _front(moat_bin, pki, cert, www, apps, tmp_path_factory):
    m = Moat(moat_bin, tmp_path_factory.mktemp("upstream-front"), name="front")
    m.dead_port = free_port()  # nothing listens there
    m.write_config(front_config(m, pki, cert, www, apps, m.dead_port))
    m.start()
    yield m
    _finish(m)


@pytest.fixture
def front(_front, apps):
    for x in (apps.a, apps.b, apps.stale, apps.slow):
        assert x.alive(), "%s died:\n%s" % (x, x.log.read_text()[-2000:])
    if not _front.alive():
        # An earlier test crashed it (and was failed for that): start it again, same ports.
        _front.stop()
        _front.start()
    return _front


@pytest.fixture
def cluster(moat, pki, cert, tmp_path):
    """Factory: cluster(UPSTREAM_BODY) -> gunicorns c and d, and a moat of their own whose site
    app.test proxies to `upstream pool { UPSTREAM_BODY }` ({C} and {D} are the servers'
    addresses)."""
    need_gunicorn()
    made = []

    def make(body, workers=1):
        c, d = App("c", tmp_path), App("d", tmp_path)
        made.extend([c, d])
        start_apps([c, d])
        m = moat("cluster")
        m.write_config(cluster_config(m, pki, cert, body.format(C=c.addr, D=d.addr), workers))
        m.start()
        return SimpleNamespace(m=m, c=c, d=d, by_name={"c": c, "d": d})

    yield make
    for x in made:
        x.stop()


# -- balancing ---------------------------------------------------------------------------------


def test_round_robin_alternates_over_two_servers(front, pki, apps):
    seq = instances(front, pki, "rr.test", 20, "rr")
    assert sorted(set(seq)) == ["a", "b"], seq
    assert seq.count("a") == seq.count("b") == 10, seq
    assert all(x != y for x, y in zip(seq, seq[1:])), "not alternating: %s" % seq
    # The turn belongs to the upstream, not to the client connection.
    seq = instances(front, pki, "rr.test", 10, "rr-fresh", fresh=True)
    assert all(x != y for x, y in zip(seq, seq[1:])), "fresh connections: %s" % seq


def test_weighted_round_robin_3_to_1_and_smooth(front, pki, apps):
    seq = instances(front, pki, "weighted.test", 40, "w")
    assert 29 <= seq.count("a") <= 31, "a has weight 3, b 1: %s" % seq
    text = "".join(seq)
    # Smooth weighted round robin (nginx's): a a b a a a b a ..., never b twice in a row and
    # never more than three a's, so the light server is not starved for long stretches.
    assert "bb" not in text and "aaaa" not in text, text


def test_pool_reuses_upstream_connections(front, pki, apps):
    got = []
    with Client(front.port, "pooled.test", pki.root) as c:
        for i in range(20):
            got.append(echo(c.get("/?t=pool-%d" % i)))
    # Fresh client connections that each end with Connection: close: the upstream connections
    # are the worker's, not the client's, and the client's close is not passed on.
    for i in range(10):
        with Client(front.port, "pooled.test", pki.root) as c:
            got.append(echo(c.get("/?t=pool-fresh-%d" % i, headers={"Connection": "close"})))
    for name in ("a", "b"):
        mine = [e for e in got if e["instance"] == name]
        ports = {e["remote_port"] for e in mine}
        assert len(mine) >= 10, [e["instance"] for e in got]
        assert len(ports) <= 2, "%d requests to %s over %d connections: %s" % (
            len(mine), name, len(ports), sorted(ports))
    for e in got:
        assert e["headers"].get("connection", "").lower() != "close", e["headers"]
        assert e["remote_addr"] == "127.0.0.1"


def test_keepalive_0_opens_one_connection_per_request(front, pki, apps):
    with Client(front.port, "nopool.test", pki.root) as c:
        got = [echo(c.get("/?t=nopool-%d" % i)) for i in range(10)]
    conns = {(e["instance"], e["remote_port"]) for e in got}
    assert len(conns) == 10, sorted(conns)
    assert {e["instance"] for e in got} == {"a", "b"}


def test_pooled_connection_closed_by_the_server_is_not_an_error(front, pki, apps):
    # stale has a 1 s keep-alive, the upstream a 20 s keepalive_timeout: moat's pooled
    # connection is closed under it. The next request must still get its answer (a new
    # connection, or a retry of a request that no server byte answered), never a 502.
    first = echo(ask(front, pki, "stale.test", "/?t=stale-1"))
    assert first["instance"] == "stale"
    assert wait_for(lambda: established_to(apps.stale.port) == 0, 6, 0.1), \
        "gunicorn kept the idle connection open"
    second = echo(ask(front, pki, "stale.test", "/?t=stale-2"))
    assert second["instance"] == "stale"
    assert second["remote_port"] != first["remote_port"]
    assert apps.stale.seen("stale-") == ["stale-1", "stale-2"]  # each exactly once


def test_least_conn_avoids_the_busy_server(front, pki, apps):
    slow = Client(front.port, "lc.test", pki.root)
    try:
        slow.send(build_request("/slow/1?t=lc-slow", host="lc.test"))

        def busy_one():
            return next((x for x in (apps.a, apps.b) if "lc-slow" in x.stats()["inflight"]),
                        None)

        busy = wait_for(busy_one, 3)
        assert busy is not None, "the slow request reached neither server"
        idle = apps.b if busy is apps.a else apps.a
        # One request in flight on `busy`, none on `idle`: every next one goes to idle.
        assert instances(front, pki, "lc.test", 4, "lc-next") == [idle.name] * 4
        assert "lc-slow" in busy.stats()["inflight"], "the slow request ended too soon"
        assert echo(slow.read_response())["instance"] == busy.name
    finally:
        slow.close()


def test_random_two_uses_both_servers(front, pki, apps):
    seq = instances(front, pki, "r2.test", 40, "r2")
    assert seq.count("a") >= 5 and seq.count("b") >= 5, seq


# -- stickiness --------------------------------------------------------------------------------


def test_hash_cookie_same_value_same_server(front, pki, apps):
    placed = {}
    with Client(front.port, "hcookie.test", pki.root) as c:
        for k in range(24):
            v = "user%02d-%s" % (k, "x" * k)
            got = set()
            # Only the session cookie counts: other cookies around it and their order do not.
            for i, cookie in enumerate(["session=%s" % v, "a=1; session=%s" % v,
                                        "session=%s; other=%d" % (v, k * 7 + 1),
                                        "theme=dark; session=%s; z=%d" % (v, k)]):
                got.add(echo(c.get("/?t=hc-%d-%d" % (k, i),
                                   headers={"Cookie": cookie}))["instance"])
            assert len(got) == 1, (v, got)
            placed[v] = got.pop()
        # Requests without the cookie are still answered.
        for i in range(4):
            assert echo(c.get("/?t=hc-none-%d" % i))["instance"] in ("a", "b")
    assert set(placed.values()) == {"a", "b"}, placed


def test_hash_header_same_value_same_server(front, pki, apps):
    placed = {}
    with Client(front.port, "hheader.test", pki.root) as c:
        for k in range(24):
            v = "u-%d@example.test" % (k * 131)
            got = {echo(c.get("/?t=hh-%d-%d" % (k, i), headers=[(name, v)]))["instance"]
                   for i, name in enumerate(["X-User", "x-user", "X-USER"])}
            assert len(got) == 1, (v, got)
            placed[v] = got.pop()
    assert set(placed.values()) == {"a", "b"}, placed


def test_hash_ip_same_address_same_server(front, pki, apps):
    seq = instances(front, pki, "hip.test", 6, "hip-lo", fresh=True)
    assert len(set(seq)) == 1, seq  # all from 127.0.0.1
    placed = {}
    for k in range(10, 34):
        src = "127.0.0.%d" % k
        got = {echo(ask(front, pki, "hip.test", "/?t=hip-%d-%d" % (k, i), source=src))
               ["instance"] for i in range(2)}
        assert len(got) == 1, (src, got)
        placed[src] = got.pop()
    assert set(placed.values()) == {"a", "b"}, placed


# -- requests and answers through a pool -------------------------------------------------------


def test_set_cookie_fields_relayed_one_by_one(front, pki, apps):
    r = ask(front, pki, "app.test", "/cookie?value=xyz&t=cookie")
    assert r.status == 200
    # Never folded into one line (RFC 6265 §3): a browser would read one cookie.
    assert r.header_all("set-cookie") == ["session=xyz; Path=/; HttpOnly", "theme=dark; Path=/"]


def curl_site(m, pki, tmp_path, site_name, path, *args):
    return curl(tmp_path, "https://%s:%d%s" % (site_name, m.port, path), *args, port=m.port,
                host=site_name, cacert=pki.root, timeout=60)


def test_upload_20mib_chunked_with_curl(front, pki, apps, tmp_path):
    data = os.urandom(MIB20)
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    r = curl_site(front, pki, tmp_path, "app.test", "/upload?t=up-chunked", "--http1.1",
                  "--data-binary", "@%s" % f, "-H", "Transfer-Encoding: chunked",
                  "-H", "Content-Type: application/octet-stream")
    assert r.rc == 0 and r.status == 200, r.stderr[-2000:]
    e = json.loads(r.body)
    assert (e["len"], e["sha256"]) == (MIB20, sha(data))
    assert e["method"] == "POST" and e["path"] == "/upload"


def test_upload_20mib_content_length_with_curl(front, pki, apps, tmp_path):
    data = os.urandom(MIB20 + 5)
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    r = curl_site(front, pki, tmp_path, "app.test", "/upload?t=up-cl", "-X", "PUT",
                  "--data-binary", "@%s" % f, "-H", "Content-Type: application/octet-stream")
    assert r.rc == 0 and r.status == 200, r.stderr[-2000:]
    e = json.loads(r.body)
    assert (e["len"], e["sha256"], e["method"]) == (MIB20 + 5, sha(data), "PUT")
    assert e["headers"].get("content-length") in (None, str(MIB20 + 5))


def test_upload_20mib_chunked_uneven_chunks_from_python(front, pki, apps):
    data = os.urandom(MIB20 + 3)
    sizes = [1, 4093, 65536, 1000003, 17, 300000]
    with Client(front.port, "app.test", pki.root, timeout=30) as c:
        c.send(b"POST /upload?t=up-py HTTP/1.1\r\nHost: app.test\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        off, i = 0, 0
        while off < len(data):
            n = min(sizes[i % len(sizes)], len(data) - off)
            c.send(b"%x\r\n" % n + data[off: off + n] + b"\r\n")
            off += n
            i += 1
        c.send(b"0\r\n\r\n")
        e = echo(c.read_response("POST"))
        assert (e["len"], e["sha256"]) == (len(data), sha(data))
        # The client connection carries the next request (the body was consumed exactly).
        assert echo(c.get("/?t=up-py-after"))["query"] == "t=up-py-after"


def test_download_20mib_chunked_with_curl(front, pki, apps, tmp_path):
    r = curl_site(front, pki, tmp_path, "app.test", "/download/%d?t=dl" % MIB20, "--http1.1")
    assert r.rc == 0 and r.status == 200, r.stderr[-2000:]
    assert len(r.body) == MIB20
    assert sha(r.body) == pattern_sha256(MIB20)
    assert (r.header("transfer-encoding") or "").lower() == "chunked"
    assert r.header("x-instance") in ("a", "b")


# -- forwarded fields --------------------------------------------------------------------------

FORGED = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "http"),
          ("X-Forwarded-Host", "evil.test"), ("Forwarded", "for=6.6.6.6;proto=http;host=evil")]


def test_forwarded_fields_set_and_untrusted_client_values_replaced(front, pki, apps):
    e = echo(ask(front, pki, "app.test", "/?t=fwd", headers=FORGED))
    h = e["headers"]
    assert split_list(h.get("x-forwarded-for")) == ["127.0.0.1"], h
    assert h.get("x-forwarded-proto") == "https"
    assert h.get("x-forwarded-host") == "app.test"
    assert forwarded_elements(h.get("forwarded", "")) == [
        {"for": "127.0.0.1", "proto": "https", "host": "app.test"}], h.get("forwarded")
    assert "6.6.6.6" not in json.dumps(h) and "evil" not in json.dumps(h)
    assert h.get("host") == "app.test"


def test_forwarded_from_untrusted_neighbour_address_replaced(front, pki, apps):
    # trusted_proxies 127.0.0.2/32: 127.0.0.3 is one address too far.
    e = echo(ask(front, pki, "app.test", "/?t=fwd-3", source="127.0.0.3", headers=FORGED))
    h = e["headers"]
    assert e["remote_addr"] == "127.0.0.1"  # moat's own connection to the app
    assert split_list(h.get("x-forwarded-for")) == ["127.0.0.3"], h
    assert forwarded_elements(h.get("forwarded", "")) == [
        {"for": "127.0.0.3", "proto": "https", "host": "app.test"}]


def test_forwarded_from_trusted_proxy_kept_and_appended(front, pki, apps):
    e = echo(ask(front, pki, "app.test", "/?t=fwd-trusted", source="127.0.0.2",
                 headers=[("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=6.6.6.6")]))
    h = e["headers"]
    assert split_list(h.get("x-forwarded-for")) == ["6.6.6.6", "127.0.0.2"], h
    els = forwarded_elements(h.get("forwarded", ""))
    assert els[0] == {"for": "6.6.6.6"}, els
    assert els[-1] == {"for": "127.0.0.2", "proto": "https", "host": "app.test"}, els
    assert len(els) == 2, els
    # Nothing to keep: the trusted peer is the first hop.
    e = echo(ask(front, pki, "app.test", "/?t=fwd-trusted-bare", source="127.0.0.2"))
    assert split_list(e["headers"].get("x-forwarded-for")) == ["127.0.0.2"]
    assert forwarded_elements(e["headers"].get("forwarded", "")) == [
        {"for": "127.0.0.2", "proto": "https", "host": "app.test"}]


def test_forwarded_for_ipv6_client_quoted(front, pki, apps):
    e = echo(ask(front, pki, "app.test", "/?t=fwd-v6", host="::1", headers=FORGED))
    h = e["headers"]
    assert split_list(h.get("x-forwarded-for")) == ["::1"], h
    # RFC 7239 §6: an IPv6 node is "[v6]" and, holding ':', must be a quoted-string.
    assert 'for="[::1]"' in h.get("forwarded", ""), h.get("forwarded")
    assert forwarded_elements(h["forwarded"]) == [
        {"for": "[::1]", "proto": "https", "host": "app.test"}]


# -- prefix rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("path,upstream_uri", [
    ("/api/x?q=1", "/x?q=1"),
    ("/api/", "/"),
    ("/api/deep/er/p%20q?a=b&c=d", "/deep/er/p%20q?a=b&c=d"),
    ("/v1/x?y=2", "/v2/x?y=2"),
    ("/v1/", "/v2/"),
    ("/v1/a/b", "/v2/a/b"),
])
def test_prefix_strip_and_rewrite(front, pki, apps, path, upstream_uri):
    e = echo(ask(front, pki, "mixed.test", path))
    assert e["raw_uri"] == upstream_uri, e
    assert e["headers"].get("host") == "mixed.test"
    assert e["headers"].get("x-forwarded-host") == "mixed.test"


def test_prefix_sites_serve_other_paths_from_root(front, pki, apps):
    r = ask(front, pki, "mixed.test", "/")
    assert r.status == 200 and b"INDEX-PAGE" in r.body
    r = ask(front, pki, "mixed.test", "/a.txt")
    assert (r.status, r.body) == (200, b"file A\n")
    # A prefix is a path segment boundary: /apix and /v1x are not under /api/ or /v1/.
    for p in ("/apix", "/v1x", "/x/api/y"):
        r = ask(front, pki, "mixed.test", p)
        assert r.status == 404, (p, r)
        assert b'"instance"' not in r.body


def test_prefix_strip_with_request_body(front, pki, apps):
    body = os.urandom(70001)
    with Client(front.port, "mixed.test", pki.root) as c:
        e = echo(c.get("/api/upload?t=prefix-post", method="POST", body=body))
    assert (e["raw_uri"], e["len"], e["sha256"]) == ("/upload?t=prefix-post", 70001, sha(body))


# -- failures on the shared front --------------------------------------------------------------


def test_inline_upstream_refused_502(front, pki, apps):
    mark = len(front.stderr())
    t0 = time.monotonic()
    r = ask(front, pki, "down.test", "/?t=down")
    assert r.status == 502, r
    assert time.monotonic() - t0 < 3
    assert log_line(front, mark, "127.0.0.1:%d" % front.dead_port, r"refused"), \
        front.stderr()[-2000:]


def test_inline_upstream_still_works(front, pki, apps):
    e = echo(ask(front, pki, "inline.test", "/?t=inline"))
    assert e["instance"] == "a" and e["headers"]["x-forwarded-proto"] == "https"


def test_first_byte_timeout_504(front, pki, apps):
    mark = len(front.stderr())
    t0 = time.monotonic()
    r = ask(front, pki, "slowfb.test", "/slow/4?t=fb504")
    took = time.monotonic() - t0
    assert r.status == 504, r
    assert 0.8 < took < 3.0, took  # first_byte 1s, not the app's 4 s (retries 0)
    assert apps.slow.seen("fb504") == ["fb504"]  # sent once
    assert log_line(front, mark, apps.slow.addr, r"time"), front.stderr()[-2000:]


# -- health: clusters of their own -------------------------------------------------------------

FULL_POOL = """\
    server {C};
    server {D};
    balance round_robin;
    keepalive 16;
    keepalive_timeout 20s;
    max_fails 2; fail_timeout 5s;
    health_check /health interval 300ms timeout 1s rise 1 fall 1 status 200;
    retries 2;
    timeouts {{ connect 2s; first_byte 5s; read 5s; write 5s; }}
"""


def app_instance(resp):
    """The instance that wrote this answer, or None (an answer of moat's own)."""
    try:
        return json.loads(resp.body).get("instance")
    except ValueError:
        return None


def reaches(cl, pki, name, n=1, tag="probe"):
    """True when each of n requests in a row was answered by instance `name`."""
    for i in range(n):
        r = ask(cl.m, pki, "app.test", "/?t=%s-%d" % (tag, i))
        if r.status != 200 or app_instance(r) != name:
            return False
    return True


def test_failover_when_a_server_is_killed(cluster, pki):
    cl = cluster(FULL_POOL)
    assert {x for x in instances(cl.m, pki, "app.test", 4, "fo-warm")} == {"c", "d"}
    results = []  # (time sent, status or exception, instance)
    lock = threading.Lock()

    def loop(k):
        c = None
        for i in range(20):
            t = time.monotonic()
            try:
                if c is None:
                    c = Client(cl.m.port, "app.test", pki.root)
                r = c.get("/slow/0.03?t=fo-%d-%d" % (k, i))
                rec = (t, r.status, app_instance(r))
                if (r.header("connection") or "").lower() == "close":
                    c.close()
                    c = None
            except Exception as ex:  # noqa: BLE001 (a failed request, reported below)
                rec = (t, repr(ex), None)
                if c is not None:
                    c.close()
                c = None
            with lock:
                results.append(rec)
        if c is not None:
            c.close()

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    assert wait_for(lambda: len(results) >= 15, 10)
    mark = len(cl.m.stderr())
    cl.c.kill()  # SIGKILL: in-flight requests and pooled connections die with it
    killed = time.monotonic()
    for t in threads:
        t.join(30)
    assert len(results) == 60
    failed = [(s, inst) for _, s, inst in results if s != 200]
    assert failed == [], "%d of 60 requests failed (not retried?): %s" % (len(failed), failed)
    after = [inst for t, _, inst in results if t > killed]
    assert len(after) >= 15 and set(after) == {"d"}, after
    assert log_line(cl.m, mark, cl.c.addr, LOG_DEAD), cl.m.stderr()[-3000:]
    # Back: the active check sees it again, and it gets requests within a few seconds.
    mark = len(cl.m.stderr())
    cl.c.start()
    assert wait_for(lambda: reaches(cl, pki, "c"), 8, 0.1), cl.m.stderr()[-3000:]
    assert log_line(cl.m, mark, cl.c.addr, LOG_BACK), \
        "no log line says c is back:\n" + cl.m.stderr()[mark:][-3000:]


def test_health_check_flag_file_takes_server_out_and_back(cluster, pki):
    cl = cluster("    server {C};\n    server {D};\n"
                 "    health_check /health interval 300ms timeout 1s rise 1 fall 1 status 200;\n")
    # The checks run, on the path given.
    assert wait_for(lambda: cl.c.stats()["health_hits"] >= 2 and
                    cl.d.stats()["health_hits"] >= 2, 3)
    assert {x for x in instances(cl.m, pki, "app.test", 4, "hc-before")} == {"c", "d"}
    mark = len(cl.m.stderr())
    cl.c.health_file.touch()
    assert wait_for(lambda: reaches(cl, pki, "d", 4, "hc-going"), 3), \
        "c still gets requests while its /health says 503"
    got = instances(cl.m, pki, "app.test", 20, "hc-out")
    assert got == ["d"] * 20
    assert cl.c.alive()
    assert cl.c.seen("hc-out") == []
    hits = cl.c.stats()["health_hits"]
    assert wait_for(lambda: cl.c.stats()["health_hits"] > hits, 2), \
        "moat stopped checking the server it took out"
    assert log_line(cl.m, mark, cl.c.addr, LOG_HEALTH), cl.m.stderr()[-3000:]
    mark = len(cl.m.stderr())
    cl.c.health_file.unlink()
    assert wait_for(lambda: reaches(cl, pki, "c"), 3, 0.1), "c did not come back"
    assert log_line(cl.m, mark, cl.c.addr, LOG_BACK), cl.m.stderr()[mark:][-3000:]


def test_passive_health_server_answering_503_taken_out(cluster, pki):
    cl = cluster("    server {C};\n    server {D};\n    max_fails 2;\n    fail_timeout 2s;\n")
    assert {x for x in instances(cl.m, pki, "app.test", 4, "pf-before")} == {"c", "d"}
    mark = len(cl.m.stderr())
    cl.c.fail_file.touch()
    statuses = []
    c = None
    try:
        for i in range(12):  # on one connection: well within fail_timeout
            if c is None:
                c = Client(cl.m.port, "app.test", pki.root)
            r = c.get("/?t=pfx-%d" % i)
            statuses.append((r.status, app_instance(r)))
            if (r.header("connection") or "").lower() == "close":
                c.close()
                c = None
    finally:
        if c is not None:
            c.close()
    # Two consecutive 503s from c take it out for 2 s: c saw at most two of the twelve.
    assert len(cl.c.seen("pfx-")) <= 2, cl.c.seen("pfx-")
    bad = [s for s in statuses if s[0] != 200]
    assert len(bad) <= 2 and all(s == (503, "c") for s in bad), statuses  # relayed as it came
    assert statuses[-8:] == [(200, "d")] * 8, statuses
    assert log_line(cl.m, mark, cl.c.addr, LOG_STATUS_503), cl.m.stderr()[-3000:]
    cl.c.fail_file.unlink()
    # After fail_timeout it is tried again, and answers.
    assert wait_for(lambda: reaches(cl, pki, "c"), 5, 0.1), "c did not come back"


def test_reload_keeps_a_server_that_is_out_out(cluster, pki):
    cl = cluster("    server {C};\n    server {D};\n    max_fails 1;\n    fail_timeout 30s;\n")
    assert {x for x in instances(cl.m, pki, "app.test", 4, "rl-before")} == {"c", "d"}
    cl.c.fail_file.touch()
    got = [app_instance(ask(cl.m, pki, "app.test", "/?t=rl-out-%d" % i)) for i in range(6)]
    assert got[-4:] == ["d"] * 4, got
    mark = len(cl.m.stderr())
    cl.m.signal(signal.SIGHUP)
    assert wait_for(lambda: "now serving configuration generation 2" in cl.m.stderr()[mark:], 10)
    # The new configuration's group knows what the old one learnt: c stays out for its
    # fail_timeout, instead of getting (and failing) requests again.
    seen = len(cl.c.seen("rl-"))
    got = [app_instance(ask(cl.m, pki, "app.test", "/?t=rl-after-%d" % i)) for i in range(6)]
    assert got == ["d"] * 6, got
    assert len(cl.c.seen("rl-")) == seen


def test_all_servers_down_503_with_retry_after(cluster, pki):
    cl = cluster("    server {C};\n    server {D};\n    max_fails 1;\n    fail_timeout 5s;\n"
                 "    health_check /health interval 300ms timeout 1s rise 1 fall 1;\n")
    assert echo(ask(cl.m, pki, "app.test", "/?t=ad-before"))["instance"] in ("c", "d")
    mark = len(cl.m.stderr())
    cl.c.kill()
    cl.d.kill()
    seen = []

    def down():
        r = ask(cl.m, pki, "app.test", "/?t=ad")
        seen.append(r.status)
        return r if r.status == 503 else None

    r = wait_for(down, 5, 0.1)
    assert r is not None, seen
    assert set(seen) <= {502, 503}, seen
    retry = r.header("retry-after")
    assert retry is not None and (re.fullmatch(r"[1-9]\d*", retry) or
                                  re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT", retry)), \
        r.headers
    t0 = time.monotonic()
    again = ask(cl.m, pki, "app.test", "/?t=ad-again")
    assert again.status == 503 and time.monotonic() - t0 < 1.0  # answered at once
    for x in (cl.c, cl.d):
        assert log_line(cl.m, mark, x.addr, LOG_DEAD), cl.m.stderr()[-3000:]


def _parallel(fn, n):
    out = [None] * n

    def run(i):
        out[i] = fn(i)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_max_conns_without_queue_answers_503_at_once(cluster, pki):
    cl = cluster("    server {C};\n    max_conns 1;\n    max_fails 0;\n")
    mark = len(cl.m.stderr())
    slow = threading.Thread(target=lambda: ask(cl.m, pki, "app.test", "/slow/1.5?t=mc-slow"))
    slow.start()
    assert wait_for(lambda: "mc-slow" in cl.c.stats()["inflight"], 5, 0.05)
    t0 = time.monotonic()
    r = ask(cl.m, pki, "app.test", "/?t=mc-second")
    assert r.status == 503 and r.header("retry-after") == "1", (r.status, r.headers)
    assert time.monotonic() - t0 < 1.0
    assert "mc-second" not in cl.c.seen("mc-")  # never reached the server
    slow.join(10)
    assert log_after(cl.m, mark, r"every server is at max_conns 1")
    assert echo(ask(cl.m, pki, "app.test", "/?t=mc-after"))["instance"] == "c"


def test_max_conns_with_queue_waits_for_a_place(cluster, pki):
    cl = cluster("    server {C};\n    max_conns 1;\n    queue 10 5s;\n    max_fails 0;\n")
    # Three at once through one place: each waits for the one before; none is refused.
    rs = _parallel(lambda i: ask(cl.m, pki, "app.test", "/slow/0.4?t=q-%d" % i), 3)
    assert [r.status for r in rs] == [200, 200, 200], [(r.status, r.body[:80]) for r in rs]
    assert sorted(cl.c.seen("q-")) == ["q-0", "q-1", "q-2"]
    # A queue that times out: 503 after the queue's timeout, not at once.
    cl2 = cluster("    server {C};\n    max_conns 1;\n    queue 10 300ms;\n    max_fails 0;\n")
    slow = threading.Thread(target=lambda: ask(cl2.m, pki, "app.test", "/slow/2?t=qt-slow"))
    slow.start()
    assert wait_for(lambda: "qt-slow" in cl2.c.stats()["inflight"], 5, 0.05)
    t0 = time.monotonic()
    r = ask(cl2.m, pki, "app.test", "/?t=qt-late")
    took = time.monotonic() - t0
    assert r.status == 503 and 0.25 < took < 1.5, (r.status, took)
    slow.join(10)


def test_queue_is_first_come_first_served(cluster, pki):
    cl = cluster("    server {C};\n    max_conns 1;\n    queue 10 10s;\n    max_fails 0;\n")
    slow = threading.Thread(target=lambda: ask(cl.m, pki, "app.test", "/slow/1?t=ff-0"))
    slow.start()
    assert wait_for(lambda: "ff-0" in cl.c.stats()["inflight"], 5, 0.05)
    # Three more, each sent after the one before is queued: they reach the server in that
    # order, each taking the place the one before it left.
    out = {}
    threads = []
    for i in (1, 2, 3):
        def run(i=i):
            out[i] = ask(cl.m, pki, "app.test", "/slow/0.2?t=ff-%d" % i)
        t = threading.Thread(target=run)
        t.start()
        threads.append(t)
        time.sleep(0.15)  # arrival order only; nothing is timed
    slow.join(10)
    for t in threads:
        t.join(15)
    assert [out[i].status for i in (1, 2, 3)] == [200, 200, 200]
    assert cl.c.seen("ff-") == ["ff-0", "ff-1", "ff-2", "ff-3"]


def test_full_queue_answers_503_at_once(cluster, pki):
    cl = cluster("    server {C};\n    max_conns 1;\n    queue 1 10s;\n    max_fails 0;\n")
    mark = len(cl.m.stderr())
    held = threading.Thread(target=lambda: ask(cl.m, pki, "app.test", "/slow/1.5?t=qf-0"))
    held.start()
    assert wait_for(lambda: "qf-0" in cl.c.stats()["inflight"], 5, 0.05)
    queued = {}
    waiter = threading.Thread(target=lambda: queued.setdefault(
        "r", ask(cl.m, pki, "app.test", "/?t=qf-1")))
    waiter.start()
    time.sleep(0.2)  # let it take the queue's one place
    r = ask(cl.m, pki, "app.test", "/?t=qf-2")
    assert r.status == 503 and r.header("retry-after") == "1", (r.status, r.headers)
    assert log_after(cl.m, mark, r"at max_conns 1 and its queue is full")
    held.join(10)
    waiter.join(10)
    assert queued["r"].status == 200  # the queued one got the place when it came free
    assert cl.c.seen("qf-") == ["qf-0", "qf-1"]


def test_queue_across_workers(cluster, pki):
    """With two workers a place freed on one goes to a request queued on the other."""
    cl = cluster("    server {C};\n    max_conns 1;\n    queue 20 20s;\n    max_fails 0;\n",
                 workers=2)
    # Eight clients, each on its own connection (the kernel spreads them over the workers):
    # one place, so seven wait, and every place freed must reach a waiter wherever it waits.
    rs = _parallel(lambda i: ask(cl.m, pki, "app.test", "/slow/0.2?t=qw-%d" % i), 8)
    assert [r.status for r in rs] == [200] * 8, [(r.status, r.body[:80]) for r in rs]
    assert sorted(cl.c.seen("qw-")) == sorted("qw-%d" % i for i in range(8))
    assert cl.c.stats()["inflight"] == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_server_dies_mid_request_get_retried_post_not(cluster, pki, method):
    cl = cluster("    server {C};\n    server {D};\n    retries 2;\n    max_fails 2;\n"
                 "    fail_timeout 5s;\n")
    tag = "mid-" + method
    body = os.urandom(1000) if method == "POST" else b""
    c = Client(cl.m.port, "app.test", pki.root)
    try:
        c.send(build_request("/slow/%s?t=%s" % ("1.5" if method == "GET" else "5", tag),
                             method, "app.test", body=body))
        victim = wait_for(lambda: next((x for x in (cl.c, cl.d)
                                        if tag in x.stats()["inflight"]), None), 3)
        assert victim is not None, "the request reached neither server"
        survivor = cl.d if victim is cl.c else cl.c
        mark = len(cl.m.stderr())
        victim.kill()
        r = c.read_response(method)
    finally:
        c.close()
    if method == "GET":
        # Nothing of the answer had come: an idempotent request goes to the other server.
        assert echo(r)["instance"] == survivor.name
        assert survivor.seen(tag) == [tag]
    else:
        # The server may have acted on the POST: never sent twice.
        assert r.status == 502, r
        assert survivor.seen(tag) == []
    assert log_line(cl.m, mark, victim.addr, LOG_DEAD), cl.m.stderr()[-3000:]


# -- moat proxy: the quick start ---------------------------------------------------------------


def test_quick_proxy_to_one_app(moat, apps, tmp_path):
    m = moat("quick")
    m.start(["proxy", "--to", apps.a.addr, "--listen", "127.0.0.1:%d" % m.port,
             "--state", m.state])
    root = m.state / "ca" / "root.pem"
    assert root.is_file(), "no local CA in %s" % m.state
    r = curl(tmp_path, "https://localhost:%d/hello?t=quick" % m.port, port=m.port,
             host="localhost", cacert=root)
    assert r.rc == 0 and r.status == 200, r.stderr[-2000:]
    e = json.loads(r.body)
    assert (e["instance"], e["raw_uri"]) == ("a", "/hello?t=quick")
    assert e["headers"].get("x-forwarded-proto") == "https"
    assert split_list(e["headers"].get("x-forwarded-for")) == ["127.0.0.1"]
    assert e["headers"].get("x-forwarded-host") == "localhost:%d" % m.port


def test_quick_proxy_to_two_apps_uses_both(moat, apps):
    m = moat("quick2")
    m.start(["proxy", "--to", apps.a.addr, "--to", apps.b.addr,
             "--listen", "127.0.0.1:%d" % m.port, "--state", m.state])
    with Client(m.port, "localhost", m.state / "ca" / "root.pem") as c:
        got = [echo(c.get("/?t=quick2-%d" % i))["instance"] for i in range(6)]
    assert set(got) == {"a", "b"}, got


# -- configuration -----------------------------------------------------------------------------


def _check(moat_bin, path):
    return subprocess.run([str(moat_bin), "serve", "--check", "--config", str(path)],
                          capture_output=True, text=True, timeout=30, env=clean_env(),
                          stdin=subprocess.DEVNULL)


def test_config_with_every_upstream_directive_checks(moat_bin, pki, cert, www, tmp_path):
    m = SimpleNamespace(port=free_port(), state=tmp_path / "state",
                        access_log=tmp_path / "access.log")
    body = FULL_POOL.format(C="127.0.0.1:8001 weight 3", D="127.0.0.1:8002")
    ups = "".join("upstream u%d {\n%s    balance %s;\n}\n" % (
        i, "    server 127.0.0.1:8001;\n    server 127.0.0.1:8002;\n", b)
        for i, b in enumerate(["round_robin", "least_conn", "random_two", "hash ip",
                               "hash header X-User", "hash cookie session"]))
    conf = tmp_path / "moat.conf"
    conf.write_text(
        globals_block(m, pki, extra="trusted_proxies 127.0.0.2/32 10.0.0.0/8\n")
        + "upstream app {\n%s}\n" % body + ups
        + site(cert, "app.test", "    proxy app\n")
        + site(cert, "mixed.test", "    root %s\n    proxy /api/ app strip\n"
                                   "    proxy /v1/ u1 rewrite /v2/\n" % www)
        + site(cert, "inline.test", "    proxy http://127.0.0.1:8001\n"))
    p = _check(moat_bin, conf)
    assert p.returncode == 0, p.stderr[-3000:]


@pytest.mark.parametrize("upstream,site_body,word", [
    ("server 127.0.0.1:8001;", "proxy nosuch", "nosuch"),
    ("server 127.0.0.1:8001;\n    balance fastest;", "proxy app", "fastest"),
    ("server 127.0.0.1:8001;\n    balance hash;", "proxy app", "hash"),
    ("keepalive 4;", "proxy app", "server"),
], ids=["unknown-upstream", "unknown-balance", "hash-without-key", "no-server"])
def test_config_mistakes_refused(moat_bin, pki, cert, tmp_path, upstream, site_body, word):
    m = SimpleNamespace(port=free_port(), state=tmp_path / "state",
                        access_log=tmp_path / "access.log")
    conf = tmp_path / "moat.conf"
    conf.write_text(globals_block(m, pki) + "upstream app {\n    %s\n}\n" % upstream
                    + site(cert, "app.test", "    %s\n" % site_body))
    p = _check(moat_bin, conf)
    assert p.returncode != 0, "accepted:\n" + conf.read_text()
    assert word in p.stderr and re.search(r"moat\.conf:\d+", p.stderr), p.stderr[-2000:]


def test_request_header_rules_change_what_the_server_gets(moat, pki, cert, tmp_path):
    need_gunicorn()
    a = App("rh", tmp_path)
    start_apps([a])
    try:
        m = moat("rh")
        body = ("    proxy pool\n"
                "    request_header set X-Env prod\n"
                "    request_header remove X-Secret\n"
                "    request_header /admin/ add X-Admin yes\n")
        m.write_config(globals_block(m, pki) + "upstream pool {\n    server %s\n}\n" % a.addr
                       + site(cert, "app.test", body))
        m.start()
        h = echo(ask(m, pki, "app.test", "/x?t=rh-1",
                     headers=[("X-Env", "dev"), ("X-Secret", "s3"), ("X-Kept", "1")]))["headers"]
        assert h.get("x-env") == "prod", h         # set replaces the client's
        assert "x-secret" not in h, h              # remove drops it
        assert h.get("x-kept") == "1" and "x-admin" not in h, h
        h = echo(ask(m, pki, "app.test", "/admin/y?t=rh-2"))["headers"]
        assert h.get("x-admin") == "yes" and h.get("x-env") == "prod", h  # the prefix's set adds
        # moat's own fields cannot be touched by a rule
        m2 = moat("rh-bad")
        m2.write_config(globals_block(m2, pki) + site(cert, "app.test",
                        "    proxy http://%s\n    request_header set Host evil\n" % a.addr))
        r = subprocess.run([m2.bin, "serve", "--check", "--config", str(m2.config)],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "request_header may not touch Host" in r.stderr, r.stderr
    finally:
        a.stop()
