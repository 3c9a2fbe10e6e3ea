"""moat nodes sharing TLS session ticket keys through one Redis (docs/cluster.md): Debian's
redis-server on loopback (plain, then TLS with an ACL user), three moat nodes serving the same
certificate, and `openssl s_client -sess_out/-sess_in` carrying one TLS 1.3 session from node to
node. Redis stopped under the nodes, and restarted empty, must not stop them serving or resuming.
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import OPENSSL, clean_env, curl, free_port, wait_for

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


class Redis:
    """redis-server on 127.0.0.1: plain, or TLS only (with `tls` = (cert, key, ca)) and an ACL
    user moat whose keys are limited to moat:*. stop() and start() again on the same port."""

    def __init__(self, base, tls=None, password=None):
        if not os.access(REDIS_SERVER, os.X_OK) or not os.access(REDIS_CLI, os.X_OK):
            pytest.skip("redis-server / redis-cli not installed (redis-server, redis-tools)")
        self.dir = Path(base)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        self.password = password
        self.proc = None
        conf = ["bind 127.0.0.1", "save \"\"", "appendonly no", "dir %s" % self.dir]
        if tls:
            conf += ["port 0", "tls-port %d" % self.port, "tls-cert-file %s" % tls[0],
                     "tls-key-file %s" % tls[1], "tls-ca-cert-file %s" % tls[2],
                     "tls-auth-clients no"]
        else:
            conf += ["port %d" % self.port]
        if password:
            conf += ["user default off", "user admin on >adminpw ~* &* +@all",
                     "user moat on >%s ~moat:* &moat:* -@all +get +set +del +mget +scan +eval "
                     "+incrby +pexpire +hset +hgetall +hdel +time +ping +auth +publish +subscribe"
                     % password]
        self.conf = self.dir / "redis.conf"
        self.conf.write_text("\n".join(conf) + "\n")
        self.start()

    def start(self):
        self.log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen([REDIS_SERVER, str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        ok = wait_for(lambda: self.proc.poll() is None and self.cli("PING").stdout.strip()
                      == "PONG", 10, 0.1)
        assert ok, "redis-server did not start:\n" + (self.dir / "redis.log").read_text()

    def cli(self, *args):
        cmd = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port)]
        if self.tls:
            cmd += ["--tls", "--cacert", str(self.tls[2])]
        if self.password:
            cmd += ["--user", "admin", "--pass", "adminpw", "--no-auth-warning"]
        return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                              timeout=10, env=clean_env())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path / "redis")
    yield r
    r.stop()


def secret_file(path, text=None):
    path.write_text((text or os.urandom(32).hex()) + "\n")
    os.chmod(path, 0o600)
    return path


def start_nodes(moat, pki, www, cluster_lines, n=3, secrets=None):
    nodes = []
    for i in range(n):
        m = moat("node%d" % (i + 1))
        sec = secrets[i] if secrets else cluster_lines["secret"]
        m.write_config(
            "listen 127.0.0.1:%d\nstate %s\n"
            "site example.test {\n    cert %s %s\n    cert_ca %s\n    root %s\n}\n"
            "cluster {\n%s    secret_file %s\n}\n"
            % (m.port, m.state, pki.ec.chain, pki.ec.key, pki.root, www, cluster_lines["body"],
               sec))
        m.start()
        nodes.append(m)
    return nodes


def shared(m, timeout=10):
    """Wait until the node says its ticket keys are the cluster's."""
    return wait_for(lambda: "ticket keys of period" in m.stderr(), timeout, 0.1)


def s_client(port, pki, tmp_path, sess_in=None, sess_out=None):
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "example.test",
           "-CAfile", str(pki.root), "-tls1_3", "-verify_return_error", "-ign_eof"]
    if sess_out:
        cmd += ["-sess_out", str(sess_out)]
    if sess_in:
        cmd += ["-sess_in", str(sess_in)]
    # A request, so that the TLS 1.3 ticket (sent after the handshake) is read before the end.
    r = subprocess.run(cmd, input="GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close"
                       "\r\n\r\n", capture_output=True, text=True, timeout=20, env=clean_env())
    m = re.search(r"^(New|Reused), (TLSv1\.3)", r.stdout, re.M)
    assert m, r.stdout + r.stderr
    return m.group(1)


def three_nodes_and_a_session(moat, pki, www, redis, tmp_path):
    """Three nodes on `redis`, all sharing keys, and a session from the first (a file)."""
    sec = secret_file(tmp_path / "secret")
    nodes = start_nodes(moat, pki, www, {"body": "    redis 127.0.0.1:%d\n" % redis.port,
                                         "secret": sec})
    for m in nodes:
        assert shared(m), m.stderr()
    sess = tmp_path / "sess.pem"
    assert s_client(nodes[0].port, pki, tmp_path, sess_out=sess) == "New"
    return nodes, sess


def test_a_session_from_one_node_resumes_on_the_others(moat, pki, www, redis, tmp_path):
    nodes, sess = three_nodes_and_a_session(moat, pki, www, redis, tmp_path)
    for m in nodes[1:] + nodes[:1]:
        assert s_client(m.port, pki, tmp_path, sess_in=sess) == "Reused", m.name
    # One key per period in Redis, sealed: not the 80 bytes of key material in the clear.
    keys = redis.cli("--raw", "KEYS", "moat:tickets:*").stdout.split()
    assert len(keys) == 1, keys
    raw = subprocess.run([REDIS_CLI, "-p", str(redis.port), "--no-raw", "STRLEN", keys[0]],
                         capture_output=True, text=True, timeout=10).stdout
    assert raw.strip().endswith("110"), raw  # "m1" + nonce + 80 + tag
    ttl = int(redis.cli("TTL", keys[0]).stdout)
    assert 3600 * 3 <= ttl <= 3600 * 3 + 60, ttl
    st = subprocess.run([nodes[1].bin, "metrics", "--admin", "unix:%s" % (nodes[1].state /
                         "admin.sock")], capture_output=True, text=True, timeout=10,
                        env=nodes[1].env()).stdout
    assert "moat_cluster_redis_up 1" in st and "moat_cluster_shared_ticket_keys 1" in st, st


def test_redis_away_and_back_empty_changes_nothing_for_clients(moat, pki, www, redis, tmp_path):
    nodes, sess = three_nodes_and_a_session(moat, pki, www, redis, tmp_path)
    marks = [len(m.stderr()) for m in nodes]
    redis.stop()
    for m, mark in zip(nodes, marks):
        assert wait_for(lambda: "serving on with the ticket keys this node has" in
                        m.stderr()[mark:], 10, 0.1), m.stderr()
    # Serving and resuming go on with the keys each node has.
    for m in nodes:
        assert curl(tmp_path, "https://example.test:%d/" % m.port, port=m.port,
                    cacert=pki.root).status == 200
        assert s_client(m.port, pki, tmp_path, sess_in=sess) == "Reused", m.name
    # Back, with nothing in it: the nodes put back the key they use, so the session still
    # resumes everywhere and no node moved to a key of its own.
    marks = [len(m.stderr()) for m in nodes]
    redis.start()
    for m, mark in zip(nodes, marks):
        assert wait_for(lambda: "answers; ticket keys are the cluster's" in m.stderr()[mark:],
                        10, 0.1), m.stderr()
    assert len(redis.cli("--raw", "KEYS", "moat:tickets:*").stdout.split()) == 1
    for m in nodes:
        assert s_client(m.port, pki, tmp_path, sess_in=sess) == "Reused", m.name


def test_redis_over_tls_with_an_acl_user(moat, pki, www, tmp_path):
    cert = pki.issue(["redis.test"], "ec", stem="redis")
    os.chmod(cert.key, 0o600)
    r = Redis(tmp_path / "redis-tls", tls=(cert.chain, cert.key, pki.root), password="s3cret-pw")
    try:
        sec = secret_file(tmp_path / "secret")
        pw = secret_file(tmp_path / "redis.pass", "s3cret-pw")
        body = ("    redis rediss://127.0.0.1:%d\n    server_name redis.test\n    ca %s\n"
                "    user moat\n    password_file %s\n    prefix moat:\n" % (r.port, pki.root, pw))
        nodes = start_nodes(moat, pki, www, {"body": body, "secret": sec}, n=2)
        for m in nodes:
            assert shared(m), m.stderr()
        sess = tmp_path / "sess.pem"
        assert s_client(nodes[0].port, pki, tmp_path, sess_out=sess) == "New"
        assert s_client(nodes[1].port, pki, tmp_path, sess_in=sess) == "Reused"
        assert "cannot subscribe" not in nodes[0].stderr()  # the ACL allows what moat needs

        # The wrong name on the certificate, and a wrong password: said, and serving goes on.
        def node_with(name, server_name, passfile):
            m = moat(name)
            m.write_config(
                "listen 127.0.0.1:%d\nstate %s\nsite example.test {\n    cert %s %s\n"
                "    root %s\n}\ncluster {\n    redis rediss://127.0.0.1:%d\n"
                "    server_name %s\n    ca %s\n    user moat\n    password_file %s\n"
                "    secret_file %s\n}\n" % (m.port, m.state, pki.ec.chain, pki.ec.key, www,
                                            r.port, server_name, pki.root, passfile, sec))
            m.start()
            return m

        bad = node_with("badname", "other.test", pw)
        assert wait_for(lambda: "certificate was refused" in bad.stderr(), 10, 0.1), bad.stderr()
        assert "other.test" in bad.stderr()
        assert curl(tmp_path, "https://example.test:%d/" % bad.port, port=bad.port,
                    cacert=pki.root).status == 200
        badpw = node_with("badpw", "redis.test",
                          secret_file(tmp_path / "wrong.pass", "not-the-password"))
        assert wait_for(lambda: "refused AUTH as moat" in badpw.stderr(), 10, 0.1), \
            badpw.stderr()
        assert "not-the-password" not in badpw.stderr()
        # A plain client cannot talk to the TLS-only port at all.
        plain = subprocess.run([REDIS_CLI, "-p", str(r.port), "PING"], capture_output=True,
                               text=True, timeout=10)
        assert "PONG" not in plain.stdout
    finally:
        r.stop()


def test_a_node_with_another_secret_keeps_its_own_keys(moat, pki, www, redis, tmp_path):
    sec = secret_file(tmp_path / "secret")
    other = secret_file(tmp_path / "other")
    nodes = start_nodes(moat, pki, www, {"body": "    redis 127.0.0.1:%d\n" % redis.port,
                                         "secret": sec}, n=2, secrets=[sec, other])
    assert shared(nodes[0]), nodes[0].stderr()
    assert wait_for(lambda: "does not open with this node's secret" in nodes[1].stderr(), 10,
                    0.1), nodes[1].stderr()
    sess = tmp_path / "sess.pem"
    assert s_client(nodes[0].port, pki, tmp_path, sess_out=sess) == "New"
    assert s_client(nodes[1].port, pki, tmp_path, sess_in=sess) == "New"  # cannot open it
    assert curl(tmp_path, "https://example.test:%d/" % nodes[1].port, port=nodes[1].port,
                cacert=pki.root).status == 200


@pytest.mark.parametrize("body,msg", [
    ("    redis 127.0.0.1:6379\n", r"moat\.conf:\d+:\d+: the cluster block needs secret_file"),
    ("    secret_file SECRET\n", r"moat\.conf:\d+:\d+: the cluster block names no Redis"),
    ("    redis http://h:1\n    secret_file SECRET\n", r"moat\.conf:3:\d+: bad Redis address"),
    ("    redis 127.0.0.1:6379\n    secret_file OPEN\n",
     r"moat\.conf:4:\d+: the cluster secret file .* can be read by every user"),
    ("    redis 127.0.0.1:6379\n    secret_file SHORT\n",
     r"moat\.conf:4:\d+: the cluster secret in .* must be one line of 32 to 256"),
    ("    redis 127.0.0.1:6379\n    ca /x.pem\n    secret_file SECRET\n",
     r"moat\.conf:\d+:\d+: ca and server_name are for TLS"),
    ("    redis 127.0.0.1:6379\n    user moat\n    secret_file SECRET\n",
     r"an ACL user needs its password"),
    ("    redis 127.0.0.1:6379\n    timeout 5ms\n    secret_file SECRET\n",
     r"\"timeout\" must be a duration between 10ms and 1m"),
    ("    redis 127.0.0.1:6379\n    tickets on\n    secret_file SECRET\n",
     r"\"tickets\" is not allowed inside cluster"),
])
def test_config_errors_say_where_and_how(moat, pki, www, tmp_path, body, msg):
    sec = secret_file(tmp_path / "secret")
    opened = tmp_path / "open"
    opened.write_text(os.urandom(32).hex() + "\n")
    os.chmod(opened, 0o644)
    short = secret_file(tmp_path / "short", "tooshort")
    body = body.replace("SECRET", str(sec)).replace("OPEN", str(opened)).replace("SHORT",
                                                                                  str(short))
    m = moat("bad")
    m.write_config("listen 127.0.0.1:%d\ncluster {\n%s}\nsite example.test {\n    cert %s %s\n"
                   "    root %s\n}\n" % (m.port, body, pki.ec.chain, pki.ec.key, www))
    r = subprocess.run([m.bin, "serve", "--check", "--config", str(m.config)],
                       capture_output=True, text=True, timeout=20, env=m.env())
    assert r.returncode != 0
    assert re.search(msg, r.stderr), r.stderr


def site_nodes(moat, pki, redis, sec, site_body, top="", n=3, stem="snode"):
    """n nodes on `redis` serving example.test with `site_body`, all sharing keys."""
    nodes = []
    for i in range(n):
        m = moat("%s%d" % (stem, i + 1))
        m.write_config(
            "listen 127.0.0.1:%d\nstate %s\n%s"
            "site example.test {\n    cert %s %s\n%s}\n"
            "cluster {\n    redis 127.0.0.1:%d\n    secret_file %s\n}\n"
            % (m.port, m.state, top, pki.ec.chain, pki.ec.key, site_body, redis.port, sec))
        m.start()
        nodes.append(m)
    for m in nodes:
        assert shared(m), m.stderr()
    return nodes


def cache_nodes(moat, pki, origin_port, redis, sec):
    return site_nodes(moat, pki, redis, sec,
                      "    proxy http://127.0.0.1:%d\n    cache on\n    cache_purge 127.0.0.1\n"
                      % origin_port, top="cache_memory 1m\n", stem="cnode")


def test_a_purge_on_one_node_purges_every_node(moat, pki, redis, tmp_path):
    import threading
    from test_cache import Origin, ask, status_of
    o = Origin()
    threading.Thread(target=o.serve_forever, daemon=True).start()
    try:
        nodes = cache_nodes(moat, pki, o.server_address[1], redis,
                            secret_file(tmp_path / "secret"))
        for m in nodes:
            for p in ("/p/a", "/p/b"):
                ask(m, p)
                assert "hit" in status_of(ask(m, p)), (m.name, p)
        # Node 1 takes the PURGE; the others drop the answer within moments, and keep /p/b.
        r = ask(nodes[0], "/p/a", method="PURGE")
        assert r.status == 200 and r.body == b'{"purged": 1}\n', r.body
        for m in nodes[1:]:
            assert wait_for(lambda: "a PURGE on node" in m.stderr(), 10, 0.05), m.stderr()
            assert "hit" not in status_of(ask(m, "/p/a")), m.name
            assert "hit" in status_of(ask(m, "/p/b")), m.name
        # A prefix too.
        r = ask(nodes[2], "/p/*", method="PURGE")
        assert r.status == 200
        for m in nodes[:2]:
            assert wait_for(lambda: "hit" not in status_of(ask(m, "/p/b")), 10, 0.1), m.name
    finally:
        o.shutdown()
        o.server_close()


def test_reload_cluster_reloads_every_node(moat, pki, www, redis, tmp_path):
    sec = secret_file(tmp_path / "secret")
    nodes = start_nodes(moat, pki, www, {"body": "    redis 127.0.0.1:%d\n" % redis.port,
                                         "secret": sec})

    def status(m):
        import json
        r = subprocess.run([m.bin, "status", "--json", "--admin",
                            "unix:%s" % (m.state / "admin.sock")], capture_output=True,
                           text=True, timeout=20, env=m.env())
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    gens = [status(m)["generation"] for m in nodes]
    r = subprocess.run([nodes[0].bin, "reload", "--cluster", "--admin",
                        "unix:%s" % (nodes[0].state / "admin.sock")], capture_output=True,
                       text=True, timeout=30, env=nodes[0].env())
    assert r.returncode == 0, r.stderr
    assert "the other nodes of the cluster were asked to reload" in r.stdout
    for m, g in zip(nodes, gens):
        assert wait_for(lambda: status(m)["generation"] == g + 1, 10, 0.2), (m.name, m.stderr())
    assert "asked by another node" not in nodes[0].stderr()  # its own event, not twice
    for m in nodes[1:]:
        assert "reload (asked by another node of the cluster)" in m.stderr()
    # A plain reload stays on its node; --cluster on a node in no cluster is refused.
    r = subprocess.run([nodes[1].bin, "reload", "--admin",
                        "unix:%s" % (nodes[1].state / "admin.sock")], capture_output=True,
                       text=True, timeout=30, env=nodes[1].env())
    assert r.returncode == 0
    time.sleep(1.5)
    assert status(nodes[2])["generation"] == gens[2] + 1
    lone = moat("lone")
    lone.write_config("listen 127.0.0.1:%d\nstate %s\nsite example.test {\n    cert %s %s\n"
                      "    root %s\n}\n" % (lone.port, lone.state, pki.ec.chain, pki.ec.key, www))
    lone.start()
    r = subprocess.run([lone.bin, "reload", "--cluster", "--admin",
                        "unix:%s" % (lone.state / "admin.sock")], capture_output=True, text=True,
                       timeout=30, env=lone.env())
    assert r.returncode == 1 and "in no cluster" in r.stderr, r.stderr


def test_a_limit_holds_across_the_nodes(moat, pki, www, redis, tmp_path):
    """`limit 6/m` on three nodes: the seventh request of one client is refused on whichever
    node it lands, as the counts are traded every 100 ms. With Redis away each node counts alone
    (and serves)."""
    nodes = site_nodes(moat, pki, redis, secret_file(tmp_path / "secret"),
                       "    root %s\n    limit 6/m by header X-Key\n" % www, stem="lnode")

    def get(m, key):
        return curl(tmp_path, "https://example.test:%d/" % m.port, "-H", "X-Key: %s" % key,
                    port=m.port, cacert=pki.root).status

    def traded():
        keys = redis.cli("--raw", "KEYS", "moat:rl:*").stdout.split()
        return sum(int(redis.cli("--raw", "GET", k).stdout.strip() or 0) for k in keys)

    codes = []
    for i in range(9):
        codes.append(get(nodes[i % 3], "alice"))
        # Once Redis holds every admitted request so far, one more exchange (100 ms) brings the total
        # to each node; waiting on Redis rather than on a fixed time keeps a slow run honest.
        assert wait_for(lambda: traded() >= min(i + 1, 6), 10, 0.02), (i, traded())
        time.sleep(0.35)
    assert codes == [200] * 6 + [429] * 3, codes
    # Another key has its own count.
    assert get(nodes[1], "bob") == 200
    assert wait_for(lambda: len(redis.cli("--raw", "KEYS", "moat:rl:*").stdout.split()) == 2,
                    5, 0.05)
    keys = redis.cli("--raw", "KEYS", "moat:rl:*").stdout.split()  # hashed, not in the clear
    assert not any("alice" in k or "bob" in k for k in keys)
    # Redis away: the nodes judge alone, and still answer.
    redis.stop()
    time.sleep(0.5)
    alone = [get(nodes[0], "carol") for _ in range(7)]
    assert alone == [200] * 6 + [429], alone
    assert get(nodes[1], "carol") == 200  # node 2 never heard of node 1's six


def test_redis_stopped_and_started_under_load_fails_no_request(moat, pki, www, redis, tmp_path):
    """Requests keep going to all three nodes (with a rate limit that counts across them, and
    fresh connections that resume their sessions) while Redis stops and comes back: not one
    fails."""
    import ssl
    import threading
    nodes = site_nodes(moat, pki, redis, secret_file(tmp_path / "secret"),
                       "    root %s\n    limit 100000/s by header X-Key\n" % www, stem="ldn")
    ctx = ssl.create_default_context(cafile=str(pki.root))
    stats = {"ok": 0, "bad": [], "resumed": 0}
    stop = threading.Event()
    sessions = {}

    def one(m):
        import socket
        with socket.create_connection(("127.0.0.1", m.port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="example.test",
                                 session=sessions.get("s")) as t:
                t.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Key: k\r\n"
                          b"Connection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = t.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if t.session_reused:
                    stats["resumed"] += 1
                sessions["s"] = t.session
        return data.split(b"\r\n", 1)[0]

    def load():
        i = 0
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline and i < 3000:
            m = nodes[i % 3]
            i += 1
            try:
                line = one(m)
                if line.startswith(b"HTTP/1.1 200"):
                    stats["ok"] += 1
                else:
                    stats["bad"].append((m.name, line))
            except Exception as e:  # noqa: BLE001 (a failure is what this test counts)
                stats["bad"].append((m.name, repr(e)))

    th = threading.Thread(target=load)
    th.start()
    try:
        time.sleep(1.0)
        redis.stop()
        time.sleep(2.0)
        redis.start()
        assert wait_for(lambda: all(m.stderr().count("answers; ticket keys are the cluster's")
                                    >= 2 for m in nodes), 10, 0.1)
        time.sleep(1.0)
    finally:
        stop.set()
        th.join(timeout=60)
    assert stats["ok"] > 50, stats
    assert stats["bad"] == [], stats["bad"][:5]
    assert stats["resumed"] > stats["ok"] // 2, stats  # sessions resume from node to node


def test_events_not_sealed_by_a_node_are_dropped(moat, pki, www, redis, tmp_path):
    """Whoever can publish to Redis but has no secret_file cannot make a node answer an ACME
    challenge (the way to get a certificate for someone's name), purge or reload."""
    plain = free_port()
    (m,) = site_nodes(moat, pki, redis, secret_file(tmp_path / "secret"), "    root %s\n" % www,
                      top="redirect_http 127.0.0.1:%d\n" % plain, n=1, stem="evnode")
    for ev in ["0123456789abcdef challenge + 0 example.test TOKEN123 TOKEN123.thumb",
               "0123456789abcdef %d challenge + 0 example.test TOKEN123 TOKEN123.thumb"
               % int(time.time()),
               "0123456789abcdef reload ", "0123456789abcdef purge https://example.test/x"]:
        assert redis.cli("PUBLISH", "moat:events", ev).stdout.strip() == "1"
    assert wait_for(lambda: "4 event(s) on moat:events that this node's secret does not open"
                    in m.stderr() or "1 event(s) on moat:events that" in m.stderr(), 10, 0.05), \
        m.stderr()
    time.sleep(0.5)
    r = subprocess.run(["curl", "-s", "-w", "\n%{http_code}",
                        "http://127.0.0.1:%d/.well-known/acme-challenge/TOKEN123" % plain],
                       capture_output=True, text=True, timeout=10, env=clean_env())
    # Not answered (a token moat answers is a 200 with its key authorization): redirected.
    assert r.stdout.endswith("\n308") and "TOKEN123.thumb" not in r.stdout, r.stdout
    assert "answering the http-01" not in m.stderr() and "asks every node" not in m.stderr()


def test_address_connections_count_across_the_nodes(moat, pki, www, redis, tmp_path):
    """`address_connections 4` with three nodes: an address's open connections on every node
    count. A node that has not seen the address yet may let its first one in (it learns the
    others' counts within 100 ms of it), so the bound is 4 plus at most one per such node."""
    import socket
    import ssl
    nodes = site_nodes(moat, pki, redis, secret_file(tmp_path / "secret"), "    root %s\n" % www,
                       top="limits { address_connections 4 }\n", stem="acn")
    ctx = ssl.create_default_context(cafile=str(pki.root))
    held = []

    def connect(m):
        s = socket.create_connection(("127.0.0.1", m.port), timeout=5)
        try:
            t = ctx.wrap_socket(s, server_hostname="example.test")
        except (ssl.SSLError, OSError):
            s.close()
            return False
        held.append(t)
        return True

    try:
        assert connect(nodes[0]) and connect(nodes[0])
        assert connect(nodes[1]) and connect(nodes[1])
        time.sleep(0.6)
        third = [connect(nodes[2]) for _ in range(2)]
        assert third in ([False, False], [True, False]), third  # see the docstring
        time.sleep(0.6)
        assert not connect(nodes[2])
        assert not connect(nodes[0])
        assert not connect(nodes[1])
        assert "address_connections" in nodes[0].stderr()
        # Closing some frees room everywhere once the counts have gone round.
        for t in held[:3]:
            t.close()
        del held[:3]
        assert wait_for(lambda: connect(nodes[0]), 5, 0.2)
    finally:
        for t in held:
            t.close()
