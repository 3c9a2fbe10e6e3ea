"""`stream NAME { }` listeners: moat as a TCP/TLS proxy for protocols other than HTTP, against
real peers started here (stream_peers.py):

  terminate   redis-cli --tls -> moat -> plain redis-server; smtplib.SMTP_SSL -> moat -> plain
              SMTP (aiosmtpd); s_client with SNI a.test / b.test / none -> the route's echo server
  starttls    SMTP submission (RFC 3207: moat greets, offers STARTTLS, refuses MAIL before it,
              then hands the session to the MTA with the MTA's greeting swallowed); PostgreSQL
              (SSLRequest answered 'S', then TLS, then the plain server: psql verify-full)
  passthrough the SNI read from the raw ClientHello (also when it arrives in pieces) picks an
              `openssl s_server`; the TLS is end to end (the client sees the server's own
              certificate); unknown SNI, no SNI and non-TLS bytes are closed
  tls off     plain clients -> moat -> tls:// backends (verified against the stream's `ca`, and
              its name); upstream blocks (balancing, a dead server, PROXY protocol v2)
  mTLS        client_auth require + client_ca on a stream
  idle        `timeouts { idle 1s }` closes a pipe silent both ways, not a busy one (either way)

Each connection's end is logged at info as `stream NAME: CLIENT -> TARGET: closed after ...`;
the checks only look for the stream name and the target on one line.
"""

import json
import os
import re
import smtplib
import socket
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest

from helpers import (NET_TIMEOUT, clean_env, client_context, free_port, s_client,
                     s_client_handshake_ok, s_client_leaf_der, s_client_text, wait_for)
from mtls_helpers import ClientCa, alert_in
from stream_peers import (REDIS_CLI, EchoServer, LineClient, Mta, Postgres, Redis, SServer,
                          issue_with_sans, psql, start_moat, stream_block, stream_config,
                          stream_logged, tls_in_pieces, tls_server_context)


# -- fixtures: long-lived peers, one per module ---------------------------------------------------


@pytest.fixture(scope="module")
def docroot(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream-www")
    (d / "index.html").write_text("<p>stream tests</p>\n")
    return d


@pytest.fixture(scope="module")
def certs(pki):
    ns = SimpleNamespace()
    ns.redis = pki.issue(["redis.test"], "ec", stem="stream-redis")
    ns.smtps = pki.issue(["smtps.test"], "ec", stem="stream-smtps")
    ns.mail = pki.issue(["mail.test"], "ec", stem="stream-mail")
    ns.db = pki.issue(["db.test"], "ec", stem="stream-db")
    ns.ab = pki.issue(["a.test", "b.test"], "ec", stem="stream-ab")
    ns.a = pki.issue(["a.test"], "ec", stem="stream-a")
    ns.b = pki.issue(["b.test"], "ec", stem="stream-b")
    ns.m = pki.issue(["m.test"], "ec", stem="stream-m")
    ns.pp = pki.issue(["pp.test"], "ec", stem="stream-pp")
    # A backend reached as tls://127.0.0.1:PORT is checked against an IP SAN.
    ns.ip = issue_with_sans(pki, "stream-ip", "127.0.0.1", ["IP:127.0.0.1"])
    # Same CA, wrong name: a tls://127.0.0.1 target presenting it must be refused.
    ns.other = pki.issue(["other.test"], "ec", stem="stream-other")
    return ns


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    r = Redis(tmp_path_factory.mktemp("redis"))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def mta():
    m = Mta()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def pg():
    p = Postgres()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def echoes(certs):
    ns = SimpleNamespace(
        a=EchoServer("A"), b=EchoServer("B"), default=EchoServer("DEFAULT"), m=EchoServer("M"),
        idle=EchoServer("IDLE"), u1=EchoServer("U1"), u2=EchoServer("U2"),
        pp=EchoServer("PP", proxy_v2=True),
        tls=EchoServer("TLSECHO", tls=tls_server_context(certs.ip)),
        tls_wrong_name=EchoServer("WRONGNAME", tls=tls_server_context(certs.other)),
    )
    yield ns
    for e in vars(ns).values():
        e.stop()


@pytest.fixture(scope="module")
def s_servers(pki, certs, tmp_path_factory):
    base = tmp_path_factory.mktemp("s_server")
    ns = SimpleNamespace()
    ns.a = SServer(pki, certs.a, base, "a")
    try:
        ns.b = SServer(pki, certs.b, base, "b")
    except Exception:
        ns.a.stop()
        raise
    yield ns
    ns.a.stop()
    ns.b.stop()


def cert_line(c):
    return "cert %s %s" % (c.chain, c.key)


def target(port):
    return r"127\.0\.0\.1:%d\b" % port


# -- 1. TLS termination in front of Redis -------------------------------------------------------


def redis_tls(port, pki, *args, stdin=None, tls=True):
    cmd = [REDIS_CLI]
    if tls:
        cmd += ["--tls", "--cacert", str(pki.root), "--sni", "redis.test"]
    cmd += ["-h", "127.0.0.1", "-p", str(port)] + [str(a) for a in args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=20,
                          env=clean_env())


def test_redis_through_tls_termination(moat, pki, docroot, certs, redis):
    m = moat("redis")
    q = free_port()
    start_moat(m, stream_config(m, pki, docroot, stream_block(
        "redis", q, cert_line(certs.redis), "proxy 127.0.0.1:%d" % redis.port)), [q])

    mark = len(m.stderr())
    r = redis_tls(q, pki, "SET", "k", "v")
    assert r.returncode == 0 and r.stdout.strip() == "OK", (r.stdout, r.stderr)
    r = redis_tls(q, pki, "GET", "k")
    assert r.returncode == 0 and r.stdout.strip() == "v", (r.stdout, r.stderr)
    # It is the real server behind moat that holds it.
    assert redis.cli("GET", "k").stdout.strip() == "v"
    assert stream_logged(m, mark, "redis", target(redis.port)), m.stderr()[-3000:]

    # 1 MiB each way: SET from stdin (-x: the last argument), then GET it back.
    big = os.urandom(512 * 1024).hex()
    mark = len(m.stderr())
    r = redis_tls(q, pki, "-x", "SET", "big", stdin=big)
    assert r.returncode == 0 and r.stdout.strip() == "OK", (r.stdout[:200], r.stderr)
    assert redis.cli("STRLEN", "big").stdout.strip() == str(len(big))
    r = redis_tls(q, pki, "GET", "big")
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip("\n") == big, "GET big: %d bytes back" % len(r.stdout)
    # The end-of-connection lines count the bytes: one of them says more than 1 MiB.
    def big_line():
        lines = re.findall(r"stream redis\b[^\n]*%s[^\n]*" % target(redis.port),
                           m.stderr()[mark:])
        return [l for l in lines if max(int(n) for n in re.findall(r"\d+", l)) >= 1 << 20
                or re.search(r"\b1(?:\.\d+)? ?Mi?B\b", l)]
    assert wait_for(big_line, 5), m.stderr()[mark:][-2000:]

    # A plain client on the TLS port gets nothing from Redis.
    r = redis_tls(q, pki, "PING", tls=False)
    assert "PONG" not in r.stdout, r.stdout
    assert r.returncode != 0 or "rror" in r.stdout + r.stderr, (r.returncode, r.stdout, r.stderr)


# -- 2 and 3. SMTP ------------------------------------------------------------------------------


class SMTPS(smtplib.SMTP_SSL):
    """SMTP_SSL to 127.0.0.1 that sends (and verifies) `sni` instead of the address."""

    def __init__(self, sni, context):
        self._sni = sni
        super().__init__(context=context, timeout=NET_TIMEOUT)

    def _get_socket(self, host, port, timeout):
        raw = socket.create_connection((host, port), timeout)
        return self.context.wrap_socket(raw, server_hostname=self._sni)


def mail_text(token, payload=""):
    return ("From: alice@client.test\r\nTo: bob@mta.test\r\nSubject: stream %s\r\n\r\n"
            "hello %s\r\n%s" % (token, token, payload))


def test_smtps_implicit_tls_to_plain_mta(moat, pki, docroot, certs, mta):
    m = moat("smtps")
    q = free_port()
    start_moat(m, stream_config(m, pki, docroot, stream_block(
        "smtps", q, "name smtps.test", cert_line(certs.smtps),
        "proxy 127.0.0.1:%d" % mta.port)), [q])
    token = "smtps-" + os.urandom(6).hex()
    # A body of ~200 KiB in 76-character lines, so the pipe carries more than one read's worth.
    payload = "".join(os.urandom(38).hex() + "\r\n" for _ in range(2800))
    mark = len(m.stderr())
    s = SMTPS("smtps.test", client_context(cafile=pki.root))
    try:
        code, greeting = s.connect("127.0.0.1", q)
        # Not STARTTLS mode: the greeting is the MTA's own, carried inside moat's TLS.
        assert code == 220 and Mta.HOSTNAME in greeting.decode(), greeting
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        code, _ = s.ehlo("client.test")
        assert code == 250
        refused = s.sendmail("alice@client.test", ["bob@mta.test"], mail_text(token, payload))
        assert refused == {}
        s.quit()
    finally:
        s.close()
    got = mta.wait_message(token)
    assert got, "the MTA received no message with %s: %r" % (token, mta.messages[-3:])
    assert got["from"] == "alice@client.test" and got["to"] == ["bob@mta.test"]
    data = got["data"].decode() if isinstance(got["data"], bytes) else got["data"]
    assert "Subject: stream %s" % token in data
    assert payload.replace("\r\n", "\n").strip() in data.replace("\r\n", "\n")
    assert stream_logged(m, mark, "smtps", target(mta.port)), m.stderr()[-3000:]


def test_smtp_starttls_submission(moat, pki, docroot, certs, mta):
    m = moat("submission")
    q = free_port()
    start_moat(m, stream_config(m, pki, docroot, stream_block(
        "submission", q, "name mail.test", cert_line(certs.mail), "starttls smtp",
        "proxy 127.0.0.1:%d" % mta.port)), [q])
    token = "starttls-" + os.urandom(6).hex()
    s = smtplib.SMTP(timeout=NET_TIMEOUT)
    try:
        code, greeting = s.connect("127.0.0.1", q)
        # moat's own greeting, in the clear; the MTA's is not shown to the client.
        assert code == 220, greeting
        assert Mta.HOSTNAME not in greeting.decode(), greeting
        code, resp = s.ehlo("client.test")
        assert code == 250 and s.has_extn("starttls"), resp
        # smtplib checks the certificate against the host it connected to: the name instead.
        s._host = "mail.test"
        code, resp = s.starttls(context=client_context(cafile=pki.root))
        assert code == 220, resp
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        san = dict(x for x in s.sock.getpeercert()["subjectAltName"])
        assert san.get("DNS") == "mail.test"
        # From the second EHLO on it is the MTA speaking (had its greeting not been swallowed,
        # this EHLO would read that 220 as its answer).
        code, resp = s.ehlo("client.test")
        assert code == 250, resp
        assert resp.decode().splitlines()[0].startswith(Mta.HOSTNAME), resp
        assert not s.has_extn("starttls"), resp  # the MTA has no TLS of its own
        refused = s.sendmail("alice@client.test", ["bob@mta.test"], mail_text(token))
        assert refused == {}
        code, _ = s.noop()
        assert code == 250
        s.quit()
    finally:
        s.close()
    got = mta.wait_message(token)
    assert got, "the MTA received no message with %s" % token
    assert got["from"] == "alice@client.test" and got["to"] == ["bob@mta.test"]

    # Mail before STARTTLS is refused with 530 (RFC 3207 §4), and nothing reaches the MTA.
    token2 = "cleartext-" + os.urandom(6).hex()
    s = smtplib.SMTP(timeout=NET_TIMEOUT)
    try:
        code, _ = s.connect("127.0.0.1", q)
        assert code == 220
        s.ehlo("client.test")
        code, resp = s.mail("mallory-%s@client.test" % token2)
        assert code == 530, (code, resp)
        try:
            s.quit()
        except smtplib.SMTPException:
            pass
    finally:
        s.close()
    time.sleep(0.3)
    assert not any(token2 in (msg["from"] or "") for msg in mta.messages)


# -- 4. PostgreSQL STARTTLS ---------------------------------------------------------------------


def test_postgres_sslrequest_then_plain_server(moat, pki, docroot, certs, pg):
    m = moat("pg")
    q = free_port()
    start_moat(m, stream_config(m, pki, docroot, stream_block(
        "pg", q, "name db.test", cert_line(certs.db), "starttls postgres",
        "proxy 127.0.0.1:%d" % pg.port)), [q])
    conn = ("host=db.test hostaddr=127.0.0.1 port=%d user=postgres dbname=postgres "
            "sslmode=verify-full sslrootcert=%s gssencmode=disable" % (q, pki.root))
    mark = len(m.stderr())
    r = psql(conn, "select 41+1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "42", r.stdout
    assert stream_logged(m, mark, "pg", target(pg.port)), m.stderr()[-3000:]
    # The client's connection is TLS (to moat) ...
    r = psql(conn, "\\conninfo")
    assert r.returncode == 0 and "SSL connection" in r.stdout, r.stdout + r.stderr
    # ... while the server, which has ssl off, got it in the clear from moat.
    r = psql(conn, "select ssl from pg_stat_ssl where pid = pg_backend_pid()")
    assert r.returncode == 0 and r.stdout.strip() == "f", r.stdout + r.stderr
    # A result of 1 MiB comes back whole.
    r = psql(conn, "select repeat('x', 1048576)")
    assert r.returncode == 0 and r.stdout.strip() == "x" * 1048576, (len(r.stdout), r.stderr)
    # verify-full for another name fails: the certificate is db.test's.
    r = psql(conn.replace("host=db.test", "host=wrong.test"), "select 1")
    assert r.returncode != 0 and "wrong.test" in r.stderr, r.stdout + r.stderr
    # Without TLS (a StartupMessage instead of the SSLRequest) moat does not let it through.
    r = psql(conn.replace("sslmode=verify-full", "sslmode=disable"), "select 41+1")
    assert r.returncode != 0, r.stdout
    assert "42" not in r.stdout


# -- 5. SNI routes with termination -------------------------------------------------------------


def sclient_line(port, pki, sni, line, *extra, verify_name=None):
    """s_client (verifying against the suite's root) sending `line` then QUIT; the combined
    output (handshake report, what came back, errors)."""
    args = ["-CAfile", str(pki.root), "-verify_return_error"]
    if verify_name:
        args += ["-verify_hostname", verify_name]
    p = s_client(port, *(args + list(extra)), sni=sni, send=(line + "\nQUIT\n").encode())
    return p, s_client_text(p)


def test_sni_routes_with_termination(moat, pki, docroot, certs, echoes):
    m = moat("sni")
    q = free_port()
    start_moat(m, stream_config(m, pki, docroot, stream_block(
        "sni", q, "name a.test b.test", cert_line(certs.ab),
        "route a.test 127.0.0.1:%d" % echoes.a.port, "route b.test 127.0.0.1:%d" % echoes.b.port,
        "proxy 127.0.0.1:%d" % echoes.default.port)), [q])
    mark = len(m.stderr())
    p, text = sclient_line(q, pki, "a.test", "hello-sni-a", verify_name="a.test")
    assert "A: hello-sni-a" in text, text[-2000:]
    p, text = sclient_line(q, pki, "b.test", "hello-sni-b", verify_name="b.test")
    assert "B: hello-sni-b" in text, text[-2000:]
    p, text = sclient_line(q, pki, None, "hello-sni-none", verify_name="a.test")
    assert "DEFAULT: hello-sni-none" in text, text[-2000:]
    # Each line went to one server only.
    assert not echoes.b.saw("hello-sni-a") and not echoes.default.saw("hello-sni-a")
    assert not echoes.a.saw("hello-sni-b") and not echoes.default.saw("hello-sni-b")
    assert not echoes.a.saw("hello-sni-none") and not echoes.b.saw("hello-sni-none")
    assert stream_logged(m, mark, "sni", target(echoes.a.port)), m.stderr()[-3000:]
    assert stream_logged(m, mark, "sni", target(echoes.b.port))
    assert stream_logged(m, mark, "sni", target(echoes.default.port))
    # One access-log line per connection, as for HTTP answers.
    def stream_lines():
        return [j for j in (json.loads(l) for l in m.access_lines(3))
                if j.get("type") == "stream"]
    assert wait_for(lambda: len(stream_lines()) >= 3, 5), m.access_lines()
    by_sni = {j["sni"]: j for j in stream_lines()}
    a = by_sni["a.test"]
    assert a["stream"] == "sni" and a["mode"] == "terminate" and a["remote"] == "127.0.0.1"
    assert a["target"] == "127.0.0.1:%d" % echoes.a.port
    assert a["bytes_in"] >= len("hello-sni-a") and a["bytes_out"] >= len("A: hello-sni-a")
    assert by_sni[""]["target"] == "127.0.0.1:%d" % echoes.default.port


def test_stream_certificates_by_sni_and_from_the_local_ca(moat, pki, docroot, certs, echoes):
    """`cert` is repeatable (the one for the client's SNI is presented); a stream without
    `cert` gets one from moat's local CA (STATE/ca/root.pem) for its names, or localhost."""
    m = moat("certs")
    q_two, q_local, q_bare = free_port(), free_port(), free_port()
    start_moat(m, stream_config(
        m, pki, docroot,
        stream_block("twocerts", q_two, "name a.test b.test", cert_line(certs.a),
                     cert_line(certs.b), "proxy 127.0.0.1:%d" % echoes.default.port),
        stream_block("localca", q_local, "name local.test",
                     "proxy 127.0.0.1:%d" % echoes.default.port),
        stream_block("bare", q_bare, "proxy 127.0.0.1:%d" % echoes.default.port)),
        [q_two, q_local, q_bare])
    for sni, cert in (("a.test", certs.a), ("b.test", certs.b)):
        p, text = sclient_line(q_two, pki, sni, "hello-two-" + sni, verify_name=sni)
        assert s_client_leaf_der(p) == cert.der, (sni, text[-2000:])
        assert "DEFAULT: hello-two-" + sni in text, text[-2000:]
    local_root = m.state / "ca" / "root.pem"
    assert wait_for(local_root.exists, 5), "no local CA root at %s" % local_root
    local = SimpleNamespace(root=local_root)
    for port, name in ((q_local, "local.test"), (q_bare, "localhost")):
        p, text = sclient_line(port, local, name, "hello-local-" + name, verify_name=name)
        assert "Verify return code: 0 (ok)" in text, text[-2000:]
        assert "DEFAULT: hello-local-" + name in text, text[-2000:]


# -- 6. SNI passthrough --------------------------------------------------------------------------


def https_get_text(port, pki, sni):
    p = s_client(port, "-CAfile", str(pki.root), "-verify_return_error", sni=sni,
                 send=b"GET / HTTP/1.0\r\n\r\n")
    return p, s_client_text(p)


def test_sni_passthrough(moat, pki, docroot, certs, s_servers):
    m = moat("pt")
    q = free_port()
    a, b = s_servers.a, s_servers.b
    start_moat(m, stream_config(m, pki, docroot, stream_block(
        "pt", q, "tls passthrough", "route a.test 127.0.0.1:%d" % a.port,
        "route b.test 127.0.0.1:%d" % b.port, "route *.wild.test 127.0.0.1:%d" % b.port,
        "timeouts { handshake 3s }")), [q])
    mark = len(m.stderr())
    # End to end: each client sees the backend's own certificate (moat has no key for them),
    # and the backend's answer.
    for sni, srv in (("a.test", a), ("b.test", b), ("x.wild.test", b)):
        p, text = https_get_text(q, pki, sni)
        assert s_client_handshake_ok(p), (sni, text[-2000:])
        assert s_client_leaf_der(p) == srv.cert.der, "%s: not %s's certificate" % (sni, srv.name)
        assert re.search(r"HTTP/1\.0 200 ok", text, re.I), text[-1500:]
    assert stream_logged(m, mark, "pt", target(a.port)), m.stderr()[-3000:]
    assert stream_logged(m, mark, "pt", target(b.port))

    # The ClientHello in 40-byte pieces (SNI split across reads): still routed by it.
    sock = socket.create_connection(("127.0.0.1", q), timeout=NET_TIMEOUT)
    try:
        obj, _, _ = tls_in_pieces(sock, client_context(cafile=pki.root), "a.test")
        assert obj.getpeercert(binary_form=True) == a.cert.der
    finally:
        sock.close()

    # An SNI no route names, and no SNI at all, with no default `proxy`: closed.
    for sni in ("c.test", None):
        p, text = https_get_text(q, pki, sni)
        assert not s_client_handshake_ok(p), (sni, text[-2000:])
        assert s_client_leaf_der(p) is None, sni
        assert "200 ok" not in text.lower()

    # Plain bytes, not a ClientHello: closed, nothing comes back.
    with LineClient(q) as c:
        c.sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert c.closed_within(5), "a non-TLS client was not closed"
        assert c.buf == b""


# -- 7. moat originates TLS ----------------------------------------------------------------------


def test_tls_origination_to_verified_backend(moat, pki, docroot, certs, echoes, tmp_path):
    unrelated = ClientCa(tmp_path / "unrelated-ca", "unrelated CA")
    m = moat("orig")
    q_ok, q_bad_ca, q_bad_name = free_port(), free_port(), free_port()
    start_moat(m, stream_config(
        m, pki, docroot,
        stream_block("orig", q_ok, "tls off", "proxy tls://127.0.0.1:%d" % echoes.tls.port,
                     "ca %s" % pki.root),
        stream_block("origbadca", q_bad_ca, "tls off",
                     "proxy tls://127.0.0.1:%d" % echoes.tls.port, "ca %s" % unrelated.pem),
        stream_block("origbadname", q_bad_name, "tls off",
                     "proxy tls://127.0.0.1:%d" % echoes.tls_wrong_name.port,
                     "ca %s" % pki.root)),
        [q_ok, q_bad_ca, q_bad_name])
    mark = len(m.stderr())
    with LineClient(q_ok) as c:
        assert c.ask("hello-orig-1") == "TLSECHO: hello-orig-1"
        assert c.ask("hello-orig-2") == "TLSECHO: hello-orig-2"
        c.send("QUIT")
        assert c.closed_within(5)
    assert stream_logged(m, mark, "orig", target(echoes.tls.port)), m.stderr()[-3000:]
    # A certificate from a CA the stream does not name: no pipe.
    with LineClient(q_bad_ca) as c:
        try:
            c.send("hello-bad-ca")
        except OSError:
            pass
        assert c.closed_within(8), "moat kept a pipe to an unverified backend"
        assert c.buf == b""
    assert not echoes.tls.saw("hello-bad-ca")
    # The right CA, but the certificate is other.test's, not 127.0.0.1's: no pipe either.
    with LineClient(q_bad_name) as c:
        try:
            c.send("hello-bad-name")
        except OSError:
            pass
        assert c.closed_within(8), "moat kept a pipe to a backend with the wrong name"
        assert c.buf == b""
    assert not echoes.tls_wrong_name.saw("hello-bad-name")


# -- 8. mutual TLS on a stream -------------------------------------------------------------------


def test_stream_client_auth_require(moat, pki, docroot, certs, echoes, tmp_path):
    cca = ClientCa(tmp_path / "clients", "stream clients CA")
    alice = cca.issue("alice", "alice")
    other = ClientCa(tmp_path / "other", "other CA")
    mallory = other.issue("mallory", "mallory")
    m = moat("mtls")
    q = free_port()
    start_moat(m, stream_config(m, pki, docroot, stream_block(
        "mtls", q, "name m.test", cert_line(certs.m), "client_auth require",
        "client_ca %s" % cca.pem, "proxy 127.0.0.1:%d" % echoes.m.port)), [q])
    p, text = sclient_line(q, pki, "m.test", "hello-alice", "-cert", alice.pem, "-key",
                           alice.key)
    assert "M: hello-alice" in text, text[-2000:]
    for tag, cert, tls in (("nocert13", None, "-tls1_3"), ("nocert12", None, "-tls1_2"),
                           ("mallory", mallory, "-tls1_3")):
        extra = [tls] + (["-cert", cert.pem, "-key", cert.key] if cert else [])
        p, text = sclient_line(q, pki, "m.test", "hello-" + tag, *extra)
        assert "M: hello-" + tag not in text, text[-2000:]
        # Refused with a TLS alert (certificate required / handshake failure / unknown ca).
        assert alert_in(text) is not None, text[-2000:]
        assert not echoes.m.saw("hello-" + tag), "%s's bytes reached the backend" % tag


# -- 9. idle timeout -----------------------------------------------------------------------------


def test_idle_timeout_closes_only_silent_pipes(moat, pki, docroot, echoes):
    m = moat("idle")
    q = free_port()
    start_moat(m, stream_config(m, pki, docroot, stream_block(
        "idle", q, "tls off", "proxy 127.0.0.1:%d" % echoes.idle.port,
        "timeouts { idle 1s }")), [q])
    quiet, busy, ticker = LineClient(q), LineClient(q), LineClient(q)
    try:
        assert quiet.ask("quiet-1") == "IDLE: quiet-1"
        t0 = time.monotonic()
        closed_at = []

        def watch():
            if quiet.closed_within(8):
                closed_at.append(time.monotonic())

        th = threading.Thread(target=watch, daemon=True)
        th.start()
        # The ticker's client says nothing more: only the server talks, every 0.3 s.
        ticker.send("TICK 8")
        # The busy one talks both ways every 0.3 s for 2.5 s.
        i = 0
        while time.monotonic() - t0 < 2.5:
            assert busy.ask("busy-%d" % i) == "IDLE: busy-%d" % i, "busy pipe closed at %.1fs" % (
                time.monotonic() - t0)
            i += 1
            time.sleep(0.3)
        th.join(8)
        assert closed_at, "a pipe silent both ways stayed open past 1s idle (%.1fs)" % (
            time.monotonic() - t0)
        waited = closed_at[0] - t0
        assert 0.8 <= waited <= 3.5, "closed after %.2fs of silence, idle is 1s" % waited
        assert busy.ask("busy-last") == "IDLE: busy-last"  # open after 2.5 s > idle
        ticks = [ticker.readline(timeout=3) for _ in range(8)]
        assert ticks == ["IDLE: tick %d" % n for n in range(8)], ticks
        # Once the server stops ticking, that pipe is silent both ways: closed too.
        assert ticker.closed_within(4)
    finally:
        for c in (quiet, busy, ticker):
            c.close()


# -- 10. upstream blocks: PROXY protocol v2, balancing, a dead server ---------------------------


def test_upstream_target_sends_proxy_protocol_v2(moat, pki, docroot, certs, echoes):
    m = moat("ppv2")
    q_off, q_off2, q_tls = free_port(), free_port(), free_port()
    start_moat(m, stream_config(
        m, pki, docroot,
        stream_block("ppoff", [q_off, q_off2], "tls off", "proxy u"),
        stream_block("ppterm", q_tls, "name pp.test", cert_line(certs.pp), "proxy u"),
        extra="upstream u {\n    server 127.0.0.1:%d\n    proxy_protocol v2\n}\n"
              % echoes.pp.port),
        [q_off, q_off2, q_tls])
    mark = len(m.stderr())
    # The header first, once: its source is the client (127.0.0.7, its port), its destination
    # the stream listener the client dialled.
    with LineClient(q_off, source="127.0.0.7") as c:
        c.send("pp-1")
        want = "PP src=127.0.0.7:%d dst=127.0.0.1:%d" % (c.sock.getsockname()[1], q_off)
        assert c.readline() == want
        assert c.readline() == "PP: pp-1"
        assert c.ask("pp-2") == "PP: pp-2"
    # The stream's second listen address: the header names that one.
    with LineClient(q_off2, source="127.0.0.9") as c:
        c.send("pp-3")
        want = "PP src=127.0.0.9:%d dst=127.0.0.1:%d" % (c.sock.getsockname()[1], q_off2)
        assert c.readline() == want
        assert c.readline() == "PP: pp-3"
    raw = socket.create_connection(("127.0.0.1", q_tls), timeout=NET_TIMEOUT,
                                   source_address=("127.0.0.8", 0))
    sport = raw.getsockname()[1]
    tls = client_context(cafile=pki.root).wrap_socket(raw, server_hostname="pp.test")
    with LineClient(q_tls, sock=tls) as c:
        c.send("pp-tls")
        assert c.readline() == "PP src=127.0.0.8:%d dst=127.0.0.1:%d" % (sport, q_tls)
        assert c.readline() == "PP: pp-tls"
    proxied = [h for h in echoes.pp.headers if h.get("command") == "PROXY"]
    assert len(proxied) >= 3 and all(h.get("family") == 0x11 for h in proxied), proxied
    assert not [h for h in echoes.pp.headers if "error" in h], echoes.pp.headers
    assert stream_logged(m, mark, "ppoff", target(echoes.pp.port) + r"|\bu\b"), \
        m.stderr()[-3000:]


def test_upstream_target_balances_and_skips_a_dead_server(moat, pki, docroot, echoes):
    m = moat("bal")
    q_two, q_dead = free_port(), free_port()
    dead = free_port()  # nothing listens there
    start_moat(m, stream_config(
        m, pki, docroot,
        stream_block("bal", q_two, "tls off", "proxy two"),
        stream_block("withdead", q_dead, "tls off", "proxy withdead", "timeouts { connect 2s }"),
        extra="upstream two {\n    server 127.0.0.1:%d\n    server 127.0.0.1:%d\n"
              "    balance round_robin\n}\n"
              "upstream withdead {\n    server 127.0.0.1:%d\n    server 127.0.0.1:%d\n}\n"
              % (echoes.u1.port, echoes.u2.port, dead, echoes.u1.port)),
        [q_two, q_dead])
    seen = []
    for i in range(4):
        with LineClient(q_two) as c:
            seen.append(c.ask("bal-%d" % i).split(":")[0])
    assert sorted(set(seen)) == ["U1", "U2"], seen
    # A server that refuses: at most the first connection that met it fails, the rest reach
    # the live one (taken out by max_fails 1, or retried).
    answers = []
    for i in range(5):
        try:
            with LineClient(q_dead) as c:
                answers.append(c.ask("dead-%d" % i))
        except (OSError, ConnectionError):
            answers.append(None)
    ok = [a for a in answers if a is not None]
    assert len(ok) >= 4 and all(a.startswith("U1: dead-") for a in ok), answers
    assert answers[-1] == "U1: dead-4", answers
