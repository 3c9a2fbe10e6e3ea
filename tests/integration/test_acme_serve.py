"""`moat serve` with `tls acme`: sites get their certificates from a real ACME CA (Debian's
Pebble on loopback) by themselves, off the serving path, and swap them in without a reload.

Pebble's validator connects to the ports its config names: moat's HTTPS listener is Pebble's
tlsPort (TLS-ALPN-01) and moat's plain `redirect_http` listener its httpPort (HTTP-01). Clients
verify the sites against the root Pebble hands out, as a browser would verify Let's Encrypt's.
"""

import json
import os
import re
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time

import pytest

from acme_helpers import (  # noqa: F401 (a fixture)
    AcmeFront, Pebble, ari_cert_id, have_pebble, pebble_factory)
from helpers import free_port, run, wait_for

pytestmark = pytest.mark.skipif(not have_pebble(), reason="pebble not installed")


def acme_conf(p, sites, challenge=None, extra="", redirect=True):
    lines = ["listen 127.0.0.1:%d" % p.tls_port]
    if redirect:
        lines.append("redirect_http 127.0.0.1:%d" % p.http_port)
    lines.append("acme {")
    lines.append("    ca %s" % p.directory)
    lines.append("    ca_bundle %s" % p.ca_bundle)
    lines.append("    email ops@example.test")
    lines.append("    agree_tos on")
    lines.append("    resolver %s" % p.dns_addr)
    if challenge:
        lines.append("    challenge %s" % challenge)
    if extra:
        lines.append(extra)
    lines.append("}")
    lines.extend(sites)
    return "\n".join(lines) + "\n"


def start_moat(moat, p, text):
    m = moat()
    m.write_config(text)
    m.port = p.tls_port
    m.start(ports=[p.tls_port])
    return m


def wait_log(m, pattern, timeout=60):
    found = wait_for(lambda: re.search(pattern, m.stderr()), timeout, 0.1)
    assert found, "no %r in moat's log within %ds:\n%s" % (pattern, timeout, m.stderr()[-4000:])
    return found


def peer_cert(port, name, root=None, alpn=None):
    """(DER of the leaf, issuer CN) as a client that verifies against root sees them."""
    ctx = ssl.create_default_context(cafile=str(root)) if root else ssl._create_unverified_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=name) as t:
            der = t.getpeercert(binary_form=True)
    r = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-issuer", "-serial",
                        "-nameopt", "multiline"], input=der, capture_output=True)
    out = r.stdout.decode()
    cn = re.search(r"commonName\s*=\s*(.+)", out).group(1).strip()
    serial = re.search(r"serial=(\w+)", out).group(1)
    return der, cn, serial


def https_get(port, name, root, path="/"):
    ctx = ssl.create_default_context(cafile=str(root))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=name) as t:
            t.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                       % (path, name)).encode())
            data = b""
            while True:
                chunk = t.recv(65536)
                if not chunk:
                    break
                data += chunk
    return data


def test_site_gets_its_certificate_by_http01(moat, www, pebble_factory, tmp_path):
    p = pebble_factory()
    m = start_moat(moat, p, acme_conf(p, ["site a.example.test b.example.test { tls acme; root %s }"
                                          % www], challenge="http-01"))
    # serving never waits: the local CA's certificate answers before the CA's arrives
    wait_log(m, r"site a\.example\.test: no ACME certificate yet")
    wait_log(m, r"site a\.example\.test: serving its ACME certificate")
    root = p.write_root(tmp_path / "root.pem")
    for name in ("a.example.test", "b.example.test"):
        _, issuer, _ = peer_cert(p.tls_port, name, root=root)
        assert issuer.startswith("Pebble Intermediate CA")
        assert b"200 OK" in https_get(p.tls_port, name, root).split(b"\r\n")[0]
    r = run(["curl", "-sS", "--cacert", root, "--resolve", "a.example.test:%d:127.0.0.1" % p.tls_port,
             "https://a.example.test:%d/index.html" % p.tls_port])
    assert r.stdout == (www / "index.html").read_text()
    assert "http-01 accepted by the CA" in m.stderr()
    assert "configuration generation" not in m.stderr()  # swapped in, not reloaded
    stored = m.state / "acme" / "certs" / "a.example.test" / "ecdsa.pem"
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    # the key never reaches the log
    assert "PRIVATE KEY" not in m.stderr()
    # moat acme status reads the same state folder
    st = subprocess.run([str(m.bin), "acme", "status", "--state", str(m.state), "--json"],
                        capture_output=True, text=True)
    assert st.returncode == 0, st.stdout + st.stderr
    (c,) = json.loads(st.stdout)["certificates"]
    assert c["names"] == ["a.example.test", "b.example.test"] and c["state"] == "ok"


def test_site_gets_its_certificate_by_tls_alpn01(moat, www, pebble_factory, tmp_path):
    p = pebble_factory()
    m = start_moat(moat, p, acme_conf(p, ["site alpn.example.test { tls acme; root %s }" % www],
                                      challenge="tls-alpn-01", redirect=False))
    wait_log(m, r"serving its ACME certificate")
    assert "answered a TLS-ALPN-01 validation" in m.stderr()
    root = p.write_root(tmp_path / "root.pem")
    _, issuer, _ = peer_cert(p.tls_port, "alpn.example.test", root=root)
    assert issuer.startswith("Pebble Intermediate CA")
    # with no validation running, acme-tls/1 alone is refused like any unknown protocol
    with pytest.raises(ssl.SSLError):
        peer_cert(p.tls_port, "alpn.example.test", alpn=["acme-tls/1"])
    # an ordinary client that also lists acme-tls/1 gets the site as usual
    _, issuer, _ = peer_cert(p.tls_port, "alpn.example.test", root=root,
                             alpn=["acme-tls/1", "http/1.1"])
    assert issuer.startswith("Pebble Intermediate CA")


def test_both_key_types_side_by_side(moat, www, pebble_factory, tmp_path):
    p = pebble_factory()
    m = start_moat(moat, p, acme_conf(p, ["site kt.example.test { tls acme; root %s }" % www],
                                      extra="    key_type both"))
    wait_for(lambda: m.stderr().count("certificate installed") >= 2, 90, 0.2)
    assert m.stderr().count("certificate installed") >= 2, m.stderr()
    wait_log(m, r"serving its ACME certificate")
    time.sleep(1.5)  # both swaps done
    root = p.write_root(tmp_path / "root.pem")

    def key_of(*args):
        r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % p.tls_port,
                            "-servername", "kt.example.test", "-CAfile", str(root),
                            "-verify_return_error"] + list(args),
                           input="", capture_output=True, text=True, timeout=20)
        assert "Verify return code: 0 (ok)" in r.stdout, r.stdout + r.stderr
        return re.search(r"Server public key is (\d+) bit", r.stdout).group(1), r.stdout

    bits, out = key_of("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert bits == "256"
    bits, out = key_of("-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    assert bits == "2048"


def test_restart_serves_the_stored_certificate_at_once(moat, www, pebble_factory, tmp_path):
    p = pebble_factory()
    conf = acme_conf(p, ["site re.example.test { tls acme; root %s }" % www])
    m = start_moat(moat, p, conf)
    wait_log(m, r"serving its ACME certificate")
    root = p.write_root(tmp_path / "root.pem")
    _, _, serial1 = peer_cert(p.tls_port, "re.example.test", root=root)
    m.stop()
    mark = len(m.stderr())
    m.start(ports=[p.tls_port])
    _, issuer, serial2 = peer_cert(p.tls_port, "re.example.test", root=root)
    assert serial2 == serial1 and issuer.startswith("Pebble")
    time.sleep(1.0)
    after = m.stderr()[mark:]
    assert "no ACME certificate yet" not in after and "ordering" not in after, after


def test_renewal_under_load_drops_no_request(moat, www, pebble_factory, tmp_path):
    """Pebble issues 30-second certificates: moat renews each after 20 s, while clients
    connect and fetch all along; every request must succeed and verify."""
    p = pebble_factory(validity_s=30)
    m = start_moat(moat, p, acme_conf(p, ["site load.example.test { tls acme; root %s }" % www]))
    wait_log(m, r"serving its ACME certificate")
    root = p.write_root(tmp_path / "root.pem")
    serials, failures, done = set(), [], []
    stop_at = time.monotonic() + 50

    def client():
        while time.monotonic() < stop_at:
            try:
                _, _, sn = peer_cert(p.tls_port, "load.example.test", root=root)
                serials.add(sn)
                body = https_get(p.tls_port, "load.example.test", root)
                if not body.startswith(b"HTTP/1.1 200"):
                    failures.append(body[:100])
                done.append(1)
            except Exception as e:  # noqa: BLE001 - every failure counts
                failures.append(repr(e))
            time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures[:5]
    assert len(done) > 50
    # renewals happened under the load (at 20 s and 40 s: two when the machine keeps up, one
    # at the least), each swapped in without a reload
    assert len(serials) >= 2, (serials, m.stderr()[-3000:])
    assert m.stderr().count("renewing a certificate") >= len(serials) - 1
    assert "configuration generation" not in m.stderr()


def test_unreachable_ca_keeps_serving_and_reports(moat, www, pebble_factory, tmp_path):
    p = pebble_factory()
    dead = free_port()
    text = acme_conf(p, ["site down.example.test { tls acme; root %s }" % www]).replace(
        p.directory, "https://127.0.0.1:%d/dir" % dead)
    m = start_moat(moat, p, text.replace("    agree_tos on\n", "    agree_tos on\n    retry 2s\n"))
    wait_log(m, r"attempt 1 failed, next in \d+ s: .*cannot reach the ACME CA")
    wait_log(m, r"attempt 2 failed", timeout=30)
    # the site answers all the while, with the local CA's certificate
    _, issuer, _ = peer_cert(p.tls_port, "down.example.test")
    assert "moat" in issuer.lower() or "local" in issuer.lower(), issuer
    st = subprocess.run([str(m.bin), "acme", "status", "--state", str(m.state)],
                        capture_output=True, text=True)
    assert st.returncode == 1, st.stdout
    assert "never issued (failing)" in st.stdout and "cannot reach the ACME CA" in st.stdout


def test_fallback_ca_after_repeated_failures(moat, www, pebble_factory, tmp_path):
    p = pebble_factory()
    dead = free_port()
    text = acme_conf(p, ["site fb.example.test { tls acme; root %s }" % www]).replace(
        "    ca %s" % p.directory, "    ca https://127.0.0.1:%d/dir %s" % (dead, p.directory))
    m = start_moat(moat, p, text.replace("    agree_tos on\n", "    agree_tos on\n    retry 1s\n"))
    wait_log(m, r"trying the next CA, %s" % re.escape(p.directory), timeout=60)
    wait_log(m, r"serving its ACME certificate", timeout=60)
    root = p.write_root(tmp_path / "root.pem")
    _, issuer, _ = peer_cert(p.tls_port, "fb.example.test", root=root)
    assert issuer.startswith("Pebble")


def test_reload_adds_an_acme_site(moat, www, pebble_factory, tmp_path):
    p = pebble_factory()
    first = acme_conf(p, ["site one.example.test { tls acme; root %s }" % www])
    m = start_moat(moat, p, first)
    wait_log(m, r"site one\.example\.test: serving its ACME certificate")
    m.write_config(first + "site two.example.test { tls acme; root %s }\n" % www)
    import signal as sig

    m.signal(sig.SIGHUP)
    wait_log(m, r"site two\.example\.test: serving its ACME certificate")
    root = p.write_root(tmp_path / "root.pem")
    _, issuer, _ = peer_cert(p.tls_port, "two.example.test", root=root)
    assert issuer.startswith("Pebble")


def test_http01_is_answered_by_moat_on_a_proxy_site(moat, pebble_factory, tmp_path):
    """The origin behind the proxy knows nothing of the challenge: moat answers it itself."""
    p = pebble_factory()
    origin_root = tmp_path / "origin"
    origin_root.mkdir()
    (origin_root / "hello.txt").write_text("from the origin\n")
    oport = free_port()
    origin = subprocess.Popen([sys.executable, "-m", "http.server", str(oport), "--bind",
                               "127.0.0.1", "--directory", str(origin_root)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        m = start_moat(moat, p, acme_conf(p, ["site px.example.test { tls acme; proxy "
                                              "http://127.0.0.1:%d }" % oport],
                                          challenge="http-01"))
        wait_log(m, r"serving its ACME certificate")
        root = p.write_root(tmp_path / "root.pem")
        body = https_get(p.tls_port, "px.example.test", root, "/hello.txt")
        assert body.endswith(b"from the origin\n")
        assert "http-01 accepted by the CA" in m.stderr()
    finally:
        origin.terminate()
        origin.wait(timeout=5)


def test_config_refuses_what_acme_cannot_do(moat_bin, tmp_path):
    def check(text):
        f = tmp_path / "c.conf"
        f.write_text(text)
        return subprocess.run([str(moat_bin), "serve", "--config", str(f), "--check"],
                              capture_output=True, text=True)

    r = check("site * { tls acme; root /tmp }\n")
    assert r.returncode == 2 and 'site "*" cannot have tls acme' in r.stderr
    r = check("site *.example.com { tls acme; root /tmp }\n")
    assert r.returncode == 2 and "dns-01" in r.stderr
    r = check("site localhost { tls acme; root /tmp }\n")
    assert r.returncode == 2 and "localhost" in r.stderr
    r = check("site a.example { tls acme; cert a.pem a.key; root /tmp }\n")
    assert r.returncode == 2 and "both tls acme and cert" in r.stderr
    r = check("acme { challenge http-01 }\nsite a.example { tls acme; root /tmp }\n")
    assert r.returncode == 2 and "redirect_http" in r.stderr
    r = check("acme { ca http://insecure.example/dir }\nsite a.example { tls acme; root /tmp }\n")
    assert r.returncode == 2 and "https://" in r.stderr
    r = check("acme { email not-an-address }\nsite a.example { tls acme; root /tmp }\n")
    assert r.returncode == 2 and "e-mail" in r.stderr
    r = check("site a.example { tls files; root /tmp }\n")
    assert r.returncode == 2 and "tls acme" in r.stderr
    r = check("acme { }\nacme { }\nsite a.example { tls acme; root /tmp }\n")
    assert r.returncode == 2


def test_quick_mode_acme(moat, www, pebble_factory, tmp_path):
    """moat serve --acme EMAIL --name NAME --root DIR: one command, a CA's certificate."""
    p = pebble_factory()
    m = moat()
    m.port = p.tls_port
    m.start(args=["serve", "--acme", "ops@example.test", "--name", "quick.example.test",
                  "--root", www, "--listen", "127.0.0.1:%d" % p.tls_port,
                  "--redirect-http", "127.0.0.1:%d" % p.http_port, "--acme-ca", p.directory,
                  "--acme-ca-bundle", p.ca_bundle, "--acme-resolver", p.dns_addr],
            ports=[p.tls_port])
    wait_log(m, r"serving its ACME certificate")
    assert "agreeing to the CA's terms of service" in m.stderr()
    root = p.write_root(tmp_path / "root.pem")
    _, issuer, _ = peer_cert(p.tls_port, "quick.example.test", root=root)
    assert issuer.startswith("Pebble")
    bad = subprocess.run([str(m.bin), "serve", "--acme", "ops@example.test", "--root", str(www)],
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "--name" in bad.stderr
    bad = subprocess.run([str(m.bin), "serve", "--acme", "nobody", "--name", "x.example",
                          "--root", str(www)], capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "e-mail" in bad.stderr


def test_preflight_probe_finds_a_name_that_does_not_reach_moat(moat, www, pebble_factory,
                                                                tmp_path):
    """The name resolves to an address moat does not listen on: the HTTP-01 probe says so
    before an order is made, and `moat acme status` shows why."""
    import urllib.request

    p = pebble_factory()
    req = urllib.request.Request(
        "http://127.0.0.1:%d/add-a" % p.cts_mgmt_port, method="POST",
        data=json.dumps({"host": "away.example.test", "addresses": ["127.0.0.2"]}).encode())
    urllib.request.urlopen(req, timeout=10).read()
    m = start_moat(moat, p, acme_conf(p, ["site away.example.test { tls acme; root %s }" % www],
                                      challenge="http-01"))
    found = wait_log(m, r"attempt 1 failed.*pre-flight: http://away\.example\.test:\d+/ does "
                        r"not reach this server")
    assert found
    assert "order https://" not in m.stderr()
    st = subprocess.run([str(m.bin), "acme", "status", "--state", str(m.state)],
                        capture_output=True, text=True)
    assert st.returncode == 1 and "does not reach this server" in st.stdout, st.stdout


def test_a_challenge_the_ca_refused_goes_last_next_time(moat, www, pebble_factory, tmp_path):
    """HTTP-01 fails at the CA (moat's port 80 is not the one the CA reaches; pre-flight off so
    the CA itself finds out): the next attempt tries TLS-ALPN-01 first and succeeds."""
    p = pebble_factory()
    text = acme_conf(p, ["site turn.example.test { tls acme; root %s }" % www],
                     challenge="http-01 tls-alpn-01", extra="    preflight off")
    text = text.replace("redirect_http 127.0.0.1:%d" % p.http_port,
                        "redirect_http 127.0.0.1:%d" % free_port())
    m = start_moat(moat, p, text.replace("    agree_tos on\n", "    agree_tos on\n    retry 1s\n"))
    wait_log(m, r"did not validate turn\.example\.test by http-01")
    wait_log(m, r"the CA refused http-01 last time; trying tls-alpn-01 first")
    wait_log(m, r"serving its ACME certificate")
    assert "tls-alpn-01 accepted by the CA" in m.stderr()


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def test_ari_window_in_the_past_renews_at_once(moat, www, pebble_factory, tmp_path):
    """The CA's ARI (played by a front before Pebble 2.4, which has none) asks for the first
    certificate to be renewed now (a window in the past, as for a revocation); moat renews at
    once, names the old certificate in `replaces`, and for the new one takes the CA's future
    window as its renewal time."""
    import types

    p = pebble_factory()
    now = int(time.time())
    past = {"start": rfc3339(now - 2 * 86400), "end": rfc3339(now - 86400)}
    # Pebble's certificates live 5 years: a window after 4 years is later than the one-third
    # rule (3 1/3 years), which moat follows too: the CA knows best when it wants them back
    later = (now + 4 * 365 * 86400, now + 4 * 365 * 86400 + 86400)
    future = {"start": rfc3339(later[0]), "end": rfc3339(later[1])}
    seen = []

    def ari(cid):
        if cid not in seen:
            seen.append(cid)
        window = past if cid == seen[0] else future
        return 200, {"suggestedWindow": window, "explanationURL": "https://ca.example/why"}, 7200

    f = AcmeFront(p, ari=ari).start()
    try:
        ca = types.SimpleNamespace(tls_port=p.tls_port, http_port=p.http_port,
                                   directory=f.directory, ca_bundle=p.ca_bundle,
                                   dns_addr=p.dns_addr)
        m = start_moat(moat, p, acme_conf(ca, ["site ari.example.test { tls acme; root %s }"
                                               % www]))
        wait_log(m, r"the CA asks for renewal by \S+ \S+ UTC .*earlier than the one-third rule")
        wait_log(m, r"renewal at [^\n]*in the CA's window \(ARI\)", timeout=90)
        # the renewed certificate is swapped in
        assert wait_for(lambda: m.stderr().count("serving its ACME certificate") == 2, 30, 0.1)
        log = m.stderr()
        assert log.count("certificate installed") == 2, log[-4000:]
        assert "the CA explains its renewal window for this certificate at https://ca.example/why" \
            in log
        first, second = f.new_orders()
        assert "replaces" not in first
        assert second["replaces"] == seen[0], (second, seen)
        # ARI is read with plain GETs of <renewalInfo>/<certID>, never signed POSTs
        assert [(meth, path, n) for meth, path, n in f.ari_gets[:2]] == \
            [("GET", "/renewal-info/" + seen[0], 0), ("GET", "/renewal-info/" + seen[1], 0)]
        assert not any(path.startswith("/renewal-info") for path, _ in f.posts)
        # the certificate served now is the second one, and seen[1] is its identifier
        root = p.write_root(tmp_path / "root.pem")
        der, issuer, _ = peer_cert(p.tls_port, "ari.example.test", root=root)
        pem = ssl.DER_cert_to_PEM_cert(der)
        assert ari_cert_id(pem) == seen[1] and seen[1] != seen[0]
        # asked once per certificate so far: Retry-After (2 h) has not passed
        time.sleep(2)
        assert len(f.ari_gets) == 2, f.ari_gets
        st = subprocess.run([str(m.bin), "acme", "status", "--state", str(m.state), "--json"],
                            capture_output=True, text=True)
        (c,) = json.loads(st.stdout)["certificates"]
        assert (c["ari_window_start"], c["ari_window_end"]) == later, c
        assert later[0] <= c["renew_at"] <= later[1], c
        text = subprocess.run([str(m.bin), "acme", "status", "--state", str(m.state)],
                              capture_output=True, text=True).stdout
        assert "(in the CA's ARI window" in text, text
    finally:
        f.stop()
