"""The admin interface (docs/admin.md): `moat status`, `reload`, `stop`, `certs`, `upstreams`,
`metrics` against a running server, over its default unix socket and over loopback TCP with a
token; the Prometheus text checked line by line; the listener's refusals (no token, a foreign
Host or Origin, bodies, junk, silence); a stale socket taken over and a busy one left alone.

Clients are moat's own commands, Debian's curl (--unix-socket, Bearer and Basic) and
`openssl s_client` for the handshake counters.
"""

import json
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import time

import pytest

from helpers import (CURL, OPENSSL, clean_env, curl, free_port, run, standard_config, wait_for)
from origin import Origin


def moat_cmd(m, *args, timeout=30):
    """`moat ARGS` with the server's environment (its MOAT_STATE), from its folder."""
    return subprocess.run([m.bin] + [str(a) for a in args], cwd=m.dir, env=m.env(),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def sock_curl(sock, path, *args):
    proc = subprocess.run([CURL, "-sS", "--max-time", "10", "--unix-socket", str(sock),
                           "-w", "\n%{http_code}", *args, "http://localhost" + path],
                          capture_output=True, text=True, timeout=15, env=clean_env())
    body, _, code = proc.stdout.rpartition("\n")
    return int(code or 0), body


def tcp_curl(port, path, *args):
    proc = subprocess.run([CURL, "-sS", "--max-time", "10", "-D", "-", "-w", "\n%{http_code}",
                           *args, "http://127.0.0.1:%d%s" % (port, path)],
                          capture_output=True, text=True, timeout=15, env=clean_env())
    out, _, code = proc.stdout.rpartition("\n")
    return int(code or 0), out


@pytest.fixture
def served(moat, pki, www):
    m = moat("adm")
    m.write_config(standard_config(m, pki, www))
    m.start()
    assert wait_for(lambda: (m.state / "admin.sock").exists(), 5)
    return m


# ---- the default socket ----------------------------------------------------------------------


def test_default_socket_is_private_and_answers_status(served):
    sock = served.state / "admin.sock"
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    r = moat_cmd(served, "status", "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["pid"] == served.pid
    assert j["generation"] >= 1
    names = [s["name"] for s in j["sites"]]
    assert "example.test" in names and "*" in names
    ex = next(s for s in j["sites"] if s["name"] == "example.test")
    assert ex["certificate"] == "files" and ex["kind"] == "static"
    assert 25 <= ex["days_left"] <= 30  # the suite's certificates are made for 30 days
    text = moat_cmd(served, "status")
    assert text.returncode == 0
    assert re.search(r"example\.test\s+static\s+files\s+expires \S+ \S+ UTC \(\d+ days\)",
                     text.stdout), text.stdout
    assert "pid %d" % served.pid in text.stdout


def test_certs_show_each_key_its_expiry_and_chain(served, pki):
    r = moat_cmd(served, "certs", "--json")
    assert r.returncode == 0, r.stderr
    sites = {s["site"]: s for s in json.loads(r.stdout)["sites"]}
    ex = sites["example.test"]
    assert ex["source"] == "files"
    keys = sorted(c["key"].split()[0] for c in ex["certificates"])
    assert keys == ["ECDSA", "RSA"]
    for c in ex["certificates"]:
        leaf = pki.ec if c["key"].startswith("ECDSA") else pki.rsa
        end = run([OPENSSL, "x509", "-in", leaf.leaf, "-noout", "-enddate", "-dateopt",
                   "iso_8601"]).stdout
        # "notAfter=2027-01-03 06:32:21Z" against "2027-01-03T06:32:21Z"
        assert end.split("=", 1)[1].strip().replace(" ", "T") == c["not_after"]
        fp = run([OPENSSL, "x509", "-in", leaf.leaf, "-noout", "-fingerprint",
                  "-sha256"]).stdout
        assert fp.split("=", 1)[1].strip() == c["sha256"]
        assert "example.test" in c["names"]
        assert len(c["chain"]) >= 1 and c["chain"][0]["subject"] == c["issuer"]
        assert c["next_renewal"] is None  # files are renewed by their owner
        assert c["seconds_left"] > 86400 * 25
    human = moat_cmd(served, "certs").stdout
    assert "example.test (files)" in human
    assert re.search(r"valid \S+ \S+ UTC to \S+ \S+ UTC \(\d+ days left\)", human)
    assert "next renewal: never" in human


def test_local_ca_site_shows_its_next_renewal(moat, www):
    m = moat("lca")
    m.write_config("listen 127.0.0.1:%d\nstate %s\nsite localhost {\n  root %s\n}\n"
                   % (m.port, m.state, www))
    m.start()
    r = moat_cmd(m, "certs", "--json")
    assert r.returncode == 0, r.stderr
    site = json.loads(r.stdout)["sites"][0]
    assert site["source"] == "local CA"
    c = site["certificates"][0]
    assert c["next_renewal"] is not None and c["next_renewal"] < c["not_after"]
    assert "moat local CA" in c["issuer"]


def test_reload_says_why_it_was_refused_and_keeps_serving(served, pki, www, tmp_path):
    good = served.config.read_text()
    r = moat_cmd(served, "reload")
    assert r.returncode == 0, r.stderr
    assert "generation 2" in r.stdout
    served.config.write_text(good + "\nsite broken.test {\n    root %s\n    listng on\n}\n" % www)
    r = moat_cmd(served, "reload")
    assert r.returncode == 1
    lines = good.count("\n") + 1
    assert re.search(r"moat\.conf:%d:5: unknown directive \"listng\" \(did you mean "
                     r"\"listing\"\?\)" % (lines + 3), r.stderr), r.stderr
    assert "still serving the previous configuration" in r.stderr
    assert curl(tmp_path, "https://example.test:%d/" % served.port, port=served.port,
                cacert=pki.root).status == 200
    j = json.loads(moat_cmd(served, "status", "--json").stdout)
    assert j["generation"] == 2 and j["reloads"] == 1 and j["reloads_refused"] == 1
    assert "listng" in j["last_reload_error"]
    code, body = sock_curl(served.state / "admin.sock", "/reload", "-X", "POST")
    assert code == 422 and "listng" in json.loads(body)["error"]
    served.config.write_text(good)
    assert moat_cmd(served, "reload").returncode == 0


def test_stop_drains_and_waits_for_the_process(served):
    sock = served.state / "admin.sock"
    r = moat_cmd(served, "stop")
    assert r.returncode == 0, r.stderr
    assert "has stopped" in r.stdout
    assert served.wait_exit(5) == 0
    assert not sock.exists()
    r = moat_cmd(served, "status")
    assert r.returncode == 1 and "cannot reach moat's admin interface" in r.stderr


def test_wrong_paths_and_methods(served):
    sock = served.state / "admin.sock"
    code, body = sock_curl(sock, "/nope")
    assert code == 404 and "/status" in json.loads(body)["error"]
    code, body = sock_curl(sock, "/stop")  # GET
    assert code == 405
    code, _ = sock_curl(sock, "/status", "-X", "POST")
    assert code == 405
    code, body = sock_curl(sock, "/status", "-X", "POST", "--data", "x=1")
    assert code == 413
    assert served.alive()
    # HEAD: the head, no body
    proc = subprocess.run([CURL, "-sS", "-I", "--unix-socket", str(sock),
                           "http://localhost/status"], capture_output=True, text=True,
                          timeout=15, env=clean_env())
    assert proc.stdout.startswith("HTTP/1.1 200")
    assert "application/json" in proc.stdout


def test_junk_and_silence_are_closed(served):
    sock = str(served.state / "admin.sock")
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock)
    s.sendall(b"GET /status HTTP/1.1\nHost: x\n\n")  # bare LF: refused, not guessed
    data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 400")
    s.close()
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock)
    t0 = time.monotonic()
    assert s.recv(1) == b""  # nothing sent: closed after the 5 s request deadline
    assert 3 <= time.monotonic() - t0 < 9
    s.close()
    assert moat_cmd(served, "status").returncode == 0


# ---- metrics ---------------------------------------------------------------------------------

METRIC_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*"'
                         r'(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*")*)?\})? '
                         r'(-?[0-9.e+]+|\+Inf|NaN)$')


def parse_metrics(text):
    """Every line is a comment or a sample of the text format 0.0.4; samples by name+labels."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        assert METRIC_LINE.match(line), "not a Prometheus sample line: %r" % line
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


def test_metrics_count_requests_handshakes_and_failures(served, pki, tmp_path):
    url = "https://example.test:%d/" % served.port
    for _ in range(3):
        assert curl(tmp_path, url, "--http1.1", port=served.port, cacert=pki.root).status == 200
    assert curl(tmp_path, url, "--http2", port=served.port, cacert=pki.root).status == 200
    assert curl(tmp_path, url + "missing", "--http2", port=served.port,
                cacert=pki.root).status == 404
    assert curl(tmp_path, url, "-I", "--http1.1", port=served.port,
                cacert=pki.root).status == 200
    # A client offering only an unknown protocol: refused at the handshake, counted by cause.
    subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % served.port,
                    "-servername", "example.test", "-alpn", "nope/1"],
                   input="", capture_output=True, text=True, timeout=15)
    r = moat_cmd(served, "metrics")
    assert r.returncode == 0, r.stderr
    mx = parse_metrics(r.stdout)
    base = 'moat_requests_total{site="example.test",'
    assert mx[base + 'protocol="HTTP/1.1",code="2xx",method="GET"}'] == 3
    assert mx[base + 'protocol="HTTP/1.1",code="2xx",method="HEAD"}'] == 1
    assert mx[base + 'protocol="HTTP/2",code="2xx",method="GET"}'] == 1
    assert mx[base + 'protocol="HTTP/2",code="4xx",method="GET"}'] == 1
    assert mx['moat_request_duration_seconds_count{site="example.test"}'] == 6
    assert mx['moat_request_duration_seconds_bucket{site="example.test",le="+Inf"}'] == 6
    hs = {k: v for k, v in mx.items() if k.startswith("moat_tls_handshakes_total{")}
    assert sum(hs.values()) >= 6
    assert any('version="TLSv1.3"' in k and 'resumed="false"' in k and 'group="x25519"' in k
               for k in hs), hs
    assert mx['moat_tls_handshake_failures_total{reason="no_common_protocol"}'] == 1
    assert mx["moat_connections_accepted_total"] >= 7
    assert mx["moat_config_generation"] >= 1
    exp = mx['moat_certificate_expiry_seconds{site="example.test",key="ecdsa",source="files"}']
    assert 86400 * 25 < exp <= 86400 * 30
    # Counters survive a reload (their site keeps its slot).
    assert moat_cmd(served, "reload").returncode == 0
    mx2 = parse_metrics(moat_cmd(served, "metrics").stdout)
    assert mx2[base + 'protocol="HTTP/1.1",code="2xx",method="GET"}'] == 3
    assert mx2['moat_reloads_total{result="ok"}'] == 1


def test_a_silent_connection_waits_in_the_kernel_until_it_speaks(served, pki):
    """TLS listeners defer accepting (TCP_DEFER_ACCEPT, 1 s): a connection that has said nothing
    is not moat's yet, and one that speaks is handed over with its ClientHello and served."""
    def accepted():
        r = moat_cmd(served, "metrics")
        assert r.returncode == 0, r.stderr
        return parse_metrics(r.stdout)["moat_connections_accepted_total"]
    before = accepted()
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
        time.sleep(0.5)
        assert accepted() == before  # connected on the client's side, not accepted yet
        ctx = ssl.create_default_context(cafile=str(pki.root))
        with ctx.wrap_socket(s, server_hostname="example.test") as t:
            t.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
            assert t.recv(12) == b"HTTP/1.1 200"
    assert accepted() == before + 1
    # Silent past the deferral: handed over after all, and then closed by timeouts.handshake.
    with socket.create_connection(("127.0.0.1", served.port), timeout=15) as s:
        assert wait_for(lambda: accepted() == before + 2, 6)
        t0 = time.monotonic()
        try:
            assert s.recv(1) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 12


def test_upstreams_report_health(moat, www, tmp_path):
    dead = free_port()
    with Origin() as o:
        m = moat("ups")
        m.write_config(
            "listen 127.0.0.1:%d\nstate %s\n"
            "upstream app {\n    server %s\n    server 127.0.0.1:%d\n    max_fails 1\n"
            "    fail_timeout 30s\n}\n"
            "site localhost {\n    proxy app\n}\n" % (m.port, m.state, o.url[7:], dead))
        m.start()
        cafile = m.state / "ca" / "root.pem"
        for i in range(4):
            curl(tmp_path, "https://localhost:%d/echo?i=%d" % (m.port, i), port=m.port,
                 host="localhost", cacert=cafile)
        r = moat_cmd(m, "upstreams", "--json")
        assert r.returncode == 0, r.stderr
        up = json.loads(r.stdout)["upstreams"][0]
        assert up["name"] == "app" and up["balance"] == "round_robin"
        states = {s["server"]: s for s in up["servers"]}
        assert states[o.url[7:]]["state"] == "up"
        bad = states["127.0.0.1:%d" % dead]
        assert bad["state"] == "down (failures)" and bad["back_in_s"] > 0
        assert bad["last_failure"]
        assert up["up"] == 1
        human = moat_cmd(m, "upstreams").stdout
        assert "app: 1 of 2 up" in human and "down (failures)" in human
        mx = parse_metrics(moat_cmd(m, "metrics").stdout)
        assert mx['moat_upstream_up{upstream="app",server="127.0.0.1:%d"}' % dead] == 0
        assert mx['moat_upstream_up{upstream="app",server="%s"}' % o.url[7:]] == 1
        good = 'upstream="app",server="%s"' % o.url[7:]
        bad_s = 'upstream="app",server="127.0.0.1:%d"' % dead
        # Every request was answered by the good server (the dead one's try went on to it).
        assert mx['moat_upstream_responses_total{%s,code="2xx"}' % good] == 4
        assert mx['moat_upstream_response_duration_seconds_count{%s}' % good] == 4
        assert mx['moat_upstream_response_duration_seconds_bucket{%s,le="+Inf"}' % good] == 4
        assert mx['moat_upstream_response_duration_seconds_sum{%s}' % good] >= 0
        assert mx['moat_upstream_failed_tries_total{%s}' % bad_s] >= 1
        assert mx['moat_upstream_failed_tries_total{%s}' % good] == 0
        assert not any(k.startswith("moat_upstream_responses_total{%s" % bad_s) for k in mx)
        opened = mx['moat_upstream_connections_opened_total{%s}' % good]
        reused = mx['moat_upstream_connection_reuses_total{%s}' % good]
        assert opened >= 1 and opened + reused == 4, (opened, reused)
        idle = mx['moat_upstream_idle_connections{%s}' % good]
        assert 0 <= idle <= mx['moat_upstream_connections{%s}' % good]
        # The counters outlive a reload, which makes new upstream groups.
        assert moat_cmd(m, "reload").returncode == 0
        mx2 = parse_metrics(moat_cmd(m, "metrics").stdout)
        assert mx2['moat_upstream_responses_total{%s,code="2xx"}' % good] == 4
        assert moat_cmd(m, "status", "--json").returncode == 0


def test_rate_limit_refusals_by_site(moat, www, tmp_path):
    m = moat("rl")
    m.write_config(
        "listen 127.0.0.1:%d\nstate %s\n"
        "site localhost {\n    root %s\n    limit 2/m\n}\n"
        "site other.localhost {\n    root %s\n}\n" % (m.port, m.state, www, www))
    m.start()
    cafile = m.state / "ca" / "root.pem"
    codes = [curl(tmp_path, "https://localhost:%d/" % m.port, port=m.port, host="localhost",
                  cacert=cafile).status for _ in range(5)]
    assert codes == [200, 200, 429, 429, 429], codes
    assert curl(tmp_path, "https://other.localhost:%d/" % m.port, port=m.port,
                host="other.localhost", cacert=cafile).status == 200
    mx = parse_metrics(moat_cmd(m, "metrics").stdout)
    assert mx['moat_rate_limit_refusals_total{site="localhost"}'] == 3
    assert mx['moat_rate_limit_refusals_total{site="other.localhost"}'] == 0
    assert mx['moat_limit_refusals_total{limit="limit"}'] == 3


# ---- TCP with a token --------------------------------------------------------------------------


def tcp_admin(moat, pki, www, tmp_path, mode=0o600):
    m = moat("tcp")
    token = "t0ken-" + os.urandom(12).hex()
    tf = m.dir / "admin.token"
    tf.write_text(token + "\n")
    os.chmod(tf, mode)
    port = free_port()
    m.write_config(standard_config(m, pki, www, extra_top="admin 127.0.0.1:%d token %s"
                                   % (port, tf)))
    return m, port, token, tf


def test_tcp_admin_needs_the_token(moat, pki, www, tmp_path):
    m, port, token, tf = tcp_admin(moat, pki, www, tmp_path)
    m.start(ports=[m.port, port])
    assert not (m.state / "admin.sock").exists()
    code, out = tcp_curl(port, "/status")
    assert code == 401
    assert 'WWW-Authenticate: Basic realm="moat admin"' in out
    code, _ = tcp_curl(port, "/status", "-H", "Authorization: Bearer wrong-" + token)
    assert code == 401
    code, out = tcp_curl(port, "/status", "-H", "Authorization: Bearer " + token)
    assert code == 200 and '"pid": %d' % m.pid in out
    code, _ = tcp_curl(port, "/metrics", "-u", "anyone:" + token)  # Basic, as a browser sends
    assert code == 200
    code, _ = tcp_curl(port, "/status", "-u", "anyone:nope")
    assert code == 401
    # DNS rebinding: a name that is not loopback is refused even with the token.
    code, _ = tcp_curl(port, "/status", "-H", "Authorization: Bearer " + token,
                       "-H", "Host: evil.example")
    assert code == 421
    # A page elsewhere making the browser post: refused whatever it carries.
    code, _ = tcp_curl(port, "/stop", "-X", "POST", "-u", "x:" + token,
                       "-H", "Origin: http://evil.example")
    assert code == 403
    code, _ = tcp_curl(port, "/stop", "-X", "POST", "-u", "x:" + token,
                       "-H", "Sec-Fetch-Site: cross-site")
    assert code == 403
    assert m.alive()
    # The commands take the address and the token from the config file.
    r = moat_cmd(m, "status", "--config", m.config)
    assert r.returncode == 0, r.stderr
    r = moat_cmd(m, "status", "--admin", "127.0.0.1:%d" % port, "--token-file", tf)
    assert r.returncode == 0, r.stderr
    r = moat_cmd(m, "status", "--admin", "127.0.0.1:%d" % port)
    assert r.returncode == 1 and "token" in r.stderr
    # A new token is taken by a reload.
    token2 = "n3w-" + os.urandom(12).hex()
    tf.write_text(token2 + "\n")
    assert moat_cmd(m, "reload", "--admin", "127.0.0.1:%d" % port, "--token-file", tf,
                    ).returncode == 1  # the running server still wants the old one
    code, _ = tcp_curl(port, "/reload", "-X", "POST", "-H", "Authorization: Bearer " + token)
    assert code == 200
    code, _ = tcp_curl(port, "/status", "-H", "Authorization: Bearer " + token)
    assert code == 401
    assert moat_cmd(m, "stop", "--config", m.config).returncode == 0
    assert m.wait_exit(5) == 0


def test_token_file_readable_by_others_is_refused(moat, pki, www, tmp_path):
    m, port, token, tf = tcp_admin(moat, pki, www, tmp_path, mode=0o644)
    r = moat_cmd(m, "serve", "--check", "--config", m.config)
    assert r.returncode != 0
    assert re.search(r"moat\.conf:\d+:\d+: the admin token file .* can be read by every user "
                     r"of this machine \(chmod 600 it\)", r.stderr), r.stderr


def test_admin_config_errors(moat, pki, www):
    m = moat("cfg")
    for line, words in [
        ("admin 10.1.2.3:9000 token /x", "takes a loopback address"),
        ("admin 127.0.0.1:9000", "needs a token"),
        ("admin unix:%s/s token /x" % m.dir, "only a TCP admin listener takes a token"),
        ("admin unix:/%s" % ("x" * 120), "longer than the 107 bytes"),
    ]:
        m.write_config(standard_config(m, pki, www, extra_top=line))
        r = moat_cmd(m, "serve", "--check", "--config", m.config)
        assert r.returncode == 2, (line, r.stderr)
        assert re.search(r"moat\.conf:\d+:\d+: .*" + re.escape(words), r.stderr), r.stderr


def test_admin_off(moat, pki, www):
    m = moat("off")
    m.write_config(standard_config(m, pki, www, extra_top="admin off"))
    m.start()
    assert not (m.state / "admin.sock").exists()
    r = moat_cmd(m, "status", "--config", m.config)
    assert r.returncode == 2 and "admin off" in r.stderr


# ---- the socket's life -----------------------------------------------------------------------


def test_stale_socket_is_taken_over_and_a_live_one_left_alone(moat, pki, www):
    m = moat("stale")
    m.write_config(standard_config(m, pki, www))
    m.start()
    sock = m.state / "admin.sock"
    assert wait_for(sock.exists, 5)
    m.signal(signal.SIGKILL)
    m.wait_exit(5)
    assert sock.exists()  # a crash leaves it behind
    m.stop()
    m.start()
    r = moat_cmd(m, "status", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pid"] == m.pid
    # A second server on the same state folder: it serves, without an admin interface, and
    # the first one keeps its socket.
    other = moat("other")
    other.state = m.state
    other.write_config(standard_config(other, pki, www))
    other.start()
    assert "another moat is serving its admin interface on" in other.stderr()
    assert json.loads(moat_cmd(m, "status", "--json").stdout)["pid"] == m.pid
    other.stop()
    assert sock.exists()  # not the second one's to remove
    assert json.loads(moat_cmd(m, "status", "--json").stdout)["pid"] == m.pid
