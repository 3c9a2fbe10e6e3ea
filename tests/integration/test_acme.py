"""moat acme issue / revoke / status against a real ACME CA: Debian's Pebble on loopback.

Each test starts its own Pebble (and challtestsrv for DNS) with the config it needs; moat
answers HTTP-01 on the port Pebble's validator connects to (standalone listener, or files
under a webroot served by a real web server), and the certificates it gets are verified with
`openssl verify` against the root Pebble hands out.
"""

import json
import os
import re
import stat
import subprocess
import sys

import pytest

from acme_helpers import (  # noqa: F401 (fixtures)
    Pebble, ari_cert_id, front_factory, have_pebble, kill_hook, pebble_factory, stuck_hook)
from helpers import free_port, run, wait_for

pytestmark = pytest.mark.skipif(not have_pebble(), reason="pebble not installed")


def acme(moat_bin, state, *args, timeout=120, env=None):
    e = dict(os.environ)
    e.pop("MOAT_STATE", None)
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    if env:
        e.update(env)
    return subprocess.run([str(moat_bin), "acme"] + [str(a) for a in args] + ["--state", str(state)],
                          capture_output=True, text=True, timeout=timeout, env=e,
                          stdin=subprocess.DEVNULL)


def ca_args(p):
    return ["--server", p.directory, "--ca-bundle", p.ca_bundle]


def issue(moat_bin, state, p, *names_and_args, **kw):
    return acme(moat_bin, state, "issue", *names_and_args, *ca_args(p), "--resolver", p.dns_addr,
                **kw)


def verify_chain(p, chain_path, tmp_path, root_n=0):
    root = p.write_root(tmp_path / ("pebble-root-%d.pem" % root_n), root_n)
    r = run(["openssl", "verify", "-CAfile", root, "-untrusted", chain_path, chain_path],
            check=False)
    return r.returncode == 0, r.stdout + r.stderr


def sans(cert_path):
    r = run(["openssl", "x509", "-in", cert_path, "-noout", "-ext", "subjectAltName"])
    return sorted(re.findall(r"(?:DNS|IP Address):([^,\s]+)", r.stdout))


def serial(cert_path):
    r = run(["openssl", "x509", "-in", cert_path, "-noout", "-serial"])
    return r.stdout.strip().split("=", 1)[1]


def no_sanitizer(r):
    assert "ERROR: AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    assert "LeakSanitizer" not in r.stderr, r.stderr


def test_issue_by_http01_standalone(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    state = tmp_path / "state"
    crt, key = tmp_path / "site.crt", tmp_path / "site.key"
    r = issue(moat_bin, state, p, "example.test", "www.example.test", "--agree-tos",
              "--email", "ops@example.test", "--http", "127.0.0.1:%d" % p.http_port,
              "--cert-out", crt, "--key-out", key)
    no_sanitizer(r)
    assert r.returncode == 0, r.stderr + p.log()
    # progress, step by step
    for step in ("answering HTTP-01 on", "account https://", "order https://",
                 "example.test: http-01 accepted by the CA",
                 "www.example.test: http-01 accepted by the CA", "finalizing the order",
                 "downloading the certificate"):
        assert step in r.stderr, (step, r.stderr)
    ok, out = verify_chain(p, crt, tmp_path)
    assert ok, out
    assert sans(crt) == ["example.test", "www.example.test"]
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    # the key written is the certificate's key
    pub1 = run(["openssl", "pkey", "-in", key, "-pubout"]).stdout
    pub2 = run(["openssl", "x509", "-in", crt, "-noout", "-pubkey"]).stdout
    assert pub1 == pub2
    assert "NIST CURVE: P-256" in run(["openssl", "pkey", "-in", key, "-noout", "-text"]).stdout
    # the state folder: secrets 0600, nothing of them readable by others
    secrets = [f for f in state.rglob("*") if f.is_file() and f.name.endswith((".pem", ".key"))]
    assert any(f.name == "key.pem" for f in secrets)  # the account key
    assert any(f.name == "ecdsa.pem" for f in secrets)  # the installed chain + key
    for f in secrets:
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
    assert not list(state.rglob("*.next.key")) and not list(state.rglob("*.order.json"))
    st = acme(moat_bin, state, "status")
    assert st.returncode == 0, st.stdout + st.stderr
    assert "example.test (ecdsa)" in st.stdout and "www.example.test" in st.stdout
    assert "state:     ok" in st.stdout and "Pebble Intermediate CA" in st.stdout
    js = json.loads(acme(moat_bin, state, "status", "--json").stdout)
    assert js["exit"] == 0
    (c,) = js["certificates"]
    assert c["names"] == ["example.test", "www.example.test"] and c["state"] == "ok"
    # Pebble's certificates live 5 years: renewal is due with a third of that left
    assert c["not_after"] - c["renew_at"] >= (c["not_after"] - c["not_before"]) // 3 - 1


def test_second_order_reuses_the_account_and_replaces_the_certificate(moat_bin, pebble_factory,
                                                                       tmp_path):
    p = pebble_factory()
    state = tmp_path / "state"
    args = ["--agree-tos", "--http", "127.0.0.1:%d" % p.http_port]
    r1 = issue(moat_bin, state, p, "a.example.test", *args, "--cert-out", tmp_path / "1.crt")
    assert r1.returncode == 0, r1.stderr
    acct1 = re.search(r"account (https://\S+)", r1.stderr).group(1)
    r2 = issue(moat_bin, state, p, "a.example.test", *args, "--cert-out", tmp_path / "2.crt",
               "--key-type", "rsa", "--key-out", tmp_path / "2.key")
    assert r2.returncode == 0, r2.stderr
    assert re.search(r"account (https://\S+)", r2.stderr).group(1) == acct1
    text = run(["openssl", "pkey", "-in", tmp_path / "2.key", "-noout", "-text"]).stdout
    assert "2048 bit" in text
    assert serial(tmp_path / "1.crt") != serial(tmp_path / "2.crt")
    js = json.loads(acme(moat_bin, state, "status", "--json").stdout)
    assert sorted(c["kind"] for c in js["certificates"]) == ["ecdsa", "rsa"]


def test_issue_by_webroot_served_by_another_server(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    root = tmp_path / "webroot"
    root.mkdir()
    web = subprocess.Popen([sys.executable, "-m", "http.server", str(p.http_port), "--bind",
                            "127.0.0.1", "--directory", str(root)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import socket

        def up():
            try:
                socket.create_connection(("127.0.0.1", p.http_port), timeout=0.2).close()
                return True
            except OSError:
                return False

        assert wait_for(up, 10)
        state = tmp_path / "state"
        r = issue(moat_bin, state, p, "web.example.test", "--agree-tos", "--webroot", root,
                  "--cert-out", tmp_path / "w.crt")
        no_sanitizer(r)
        assert r.returncode == 0, r.stderr + p.log()
        ok, out = verify_chain(p, tmp_path / "w.crt", tmp_path)
        assert ok, out
        # the answer file is gone again, the folder stays
        chal = root / ".well-known" / "acme-challenge"
        assert chal.is_dir() and list(chal.iterdir()) == []
    finally:
        web.terminate()
        web.wait(timeout=5)


def test_rejected_nonces_are_retried(moat_bin, pebble_factory, tmp_path):
    """Pebble rejects 30% of good nonces: every order still succeeds. Up to three orders, so
    that at least one rejection happens (one order of ~15 requests has none 0.5% of the time)."""
    p = pebble_factory(env={"PEBBLE_WFE_NONCEREJECT": "30"})
    seen = ""
    for i in range(3):
        crt = tmp_path / ("n%d.crt" % i)
        r = issue(moat_bin, tmp_path / "state", p, "nonce%d.example.test" % i,
                  "www.nonce%d.example.test" % i, "--agree-tos",
                  "--http", "127.0.0.1:%d" % p.http_port, "--cert-out", crt)
        assert r.returncode == 0, r.stderr
        assert verify_chain(p, crt, tmp_path)[0]
        seen += r.stderr
        if "badNonce" in seen:
            break
    assert "the CA rejected a nonce (badNonce); retrying with a fresh one" in seen


def test_failed_validation_is_reported_with_the_cas_words(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    root = tmp_path / "webroot-nobody-serves"
    root.mkdir()
    state = tmp_path / "state"
    r = issue(moat_bin, state, p, "down.example.test", "--agree-tos", "--webroot", root)
    no_sanitizer(r)
    assert r.returncode == 1, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "did not validate down.example.test by http-01" in line, line
    assert "connect" in line.lower(), line  # Pebble's detail: the connection was refused
    assert "port 80" in line  # the fix
    st = acme(moat_bin, state, "status")
    assert st.returncode == 1, st.stdout
    assert "never issued (failing)" in st.stdout and "did not validate" in st.stdout
    js = json.loads(acme(moat_bin, state, "status", "--json").stdout)
    assert js["exit"] == 1 and js["certificates"][0]["failures"] == 1
    # a second failure counts up
    issue(moat_bin, state, p, "down.example.test", "--agree-tos", "--webroot", root)
    js = json.loads(acme(moat_bin, state, "status", "--json").stdout)
    assert js["certificates"][0]["failures"] == 2


def test_terms_of_service_must_be_agreed(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    r = issue(moat_bin, tmp_path / "state", p, "tos.example.test",
              "--http", "127.0.0.1:%d" % p.http_port)
    assert r.returncode == 2, r.stderr
    assert "terms of service" in r.stderr and "--agree-tos" in r.stderr


EAB_KEYS = {"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}


def test_external_account_binding(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory(eab=EAB_KEYS)
    args = ["--agree-tos", "--http", "127.0.0.1:%d" % p.http_port]
    r = issue(moat_bin, tmp_path / "s1", p, "eab.example.test", *args)
    assert r.returncode == 2, r.stderr
    assert "External Account Binding" in r.stderr and "--eab-kid" in r.stderr
    r = issue(moat_bin, tmp_path / "s2", p, "eab.example.test", *args, "--eab-kid", "kid-1",
              "--eab-hmac", "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH")
    assert r.returncode != 0, r.stderr  # the wrong MAC key: the CA refuses
    r = issue(moat_bin, tmp_path / "s3", p, "eab.example.test", *args, "--eab-kid", "kid-1",
              "--eab-hmac", EAB_KEYS["kid-1"], "--cert-out", tmp_path / "e.crt")
    no_sanitizer(r)
    assert r.returncode == 0, r.stderr + p.log()
    assert verify_chain(p, tmp_path / "e.crt", tmp_path)[0]


def root_cn(pem):
    r = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "multiline"],
                       input=pem, capture_output=True, text=True)
    return re.search(r"commonName\s*=\s*(.+)", r.stdout).group(1).strip()


def issuer_cn_of_last(chain_path):
    text = open(chain_path).read()
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    r = subprocess.run(["openssl", "x509", "-noout", "-issuer", "-nameopt", "multiline"],
                       input=blocks[-1], capture_output=True, text=True)
    return re.search(r"commonName\s*=\s*(.+)", r.stdout).group(1).strip()


def test_preferred_chain_picks_the_alternate_by_issuer(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory(env={"PEBBLE_ALTERNATE_ROOTS": "1"})
    alt_cn = root_cn(p.root(1))
    default_cn = root_cn(p.root(0))
    assert alt_cn != default_cn
    args = ["--agree-tos", "--http", "127.0.0.1:%d" % p.http_port]
    r = issue(moat_bin, tmp_path / "s", p, "chain.example.test", *args,
              "--cert-out", tmp_path / "d.crt")
    assert r.returncode == 0, r.stderr
    assert issuer_cn_of_last(tmp_path / "d.crt") == default_cn
    r = issue(moat_bin, tmp_path / "s", p, "chain.example.test", *args,
              "--preferred-chain", alt_cn, "--cert-out", tmp_path / "a.crt")
    no_sanitizer(r)
    assert r.returncode == 0, r.stderr
    assert "alternate chain" in r.stderr
    assert issuer_cn_of_last(tmp_path / "a.crt") == alt_cn
    assert verify_chain(p, tmp_path / "a.crt", tmp_path, root_n=1)[0]
    # a name no chain has: the default chain, and a warning
    r = issue(moat_bin, tmp_path / "s", p, "chain.example.test", *args,
              "--preferred-chain", "No Such Root", "--cert-out", tmp_path / "n.crt")
    assert r.returncode == 0 and "No Such Root" in r.stderr, r.stderr
    assert issuer_cn_of_last(tmp_path / "n.crt") == default_cn


def test_revoke_is_seen_by_the_ca(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    state = tmp_path / "state"
    r = issue(moat_bin, state, p, "rev.example.test", "--agree-tos",
              "--http", "127.0.0.1:%d" % p.http_port, "--cert-out", tmp_path / "r.crt")
    assert r.returncode == 0, r.stderr
    sn = serial(tmp_path / "r.crt")
    assert p.cert_status(sn)["Status"] == "Valid"
    r = acme(moat_bin, state, "revoke", tmp_path / "r.crt", "--reason", "superseded", *ca_args(p))
    no_sanitizer(r)
    assert r.returncode == 0, r.stderr
    assert p.cert_status(sn)["Status"] == "Revoked"
    r = acme(moat_bin, state, "revoke", tmp_path / "r.crt", *ca_args(p))
    assert r.returncode == 1 and "already revoked" in r.stderr, r.stderr


def test_unreachable_or_wrong_directory_is_explained(moat_bin, pebble_factory, tmp_path):
    port = free_port()
    r = acme(moat_bin, tmp_path / "s", "issue", "x.example.test", "--agree-tos", "--server",
             "https://127.0.0.1:%d/dir" % port, "--http", "127.0.0.1:%d" % free_port())
    assert r.returncode == 1, r.stderr
    assert "cannot reach the ACME CA at https://127.0.0.1:%d/dir" % port in r.stderr
    p = pebble_factory()
    # Pebble's HTTPS without its CA: verification fails, and says so
    r = acme(moat_bin, tmp_path / "s", "issue", "x.example.test", "--agree-tos", "--server",
             p.directory, "--http", "127.0.0.1:%d" % free_port())
    assert r.returncode == 1 and "certificate" in r.stderr, r.stderr
    # not a directory: Pebble's management root answers 404 JSON-less
    r = acme(moat_bin, tmp_path / "s", "issue", "x.example.test", "--agree-tos", "--server",
             "https://127.0.0.1:%d/nothing" % p.port, "--ca-bundle", p.ca_bundle,
             "--http", "127.0.0.1:%d" % free_port())
    assert r.returncode == 1 and "check the URL" in r.stderr, r.stderr
    # plain http is refused before any connection
    r = acme(moat_bin, tmp_path / "s", "issue", "x.example.test", "--agree-tos", "--server",
             "http://127.0.0.1:%d/dir" % p.port, "--http", "127.0.0.1:%d" % free_port())
    assert r.returncode != 0 and "https" in r.stderr, r.stderr


def test_ip_address_identifier(moat_bin, pebble_factory, tmp_path):
    """RFC 8738: an IP address is ordered as an "ip" identifier and validated at that address."""
    p = pebble_factory()
    r = issue(moat_bin, tmp_path / "state", p, "127.0.0.1", "--agree-tos",
              "--http", "127.0.0.1:%d" % p.http_port, "--cert-out", tmp_path / "ip.crt")
    assert r.returncode == 0, r.stderr + p.log()[-2000:]
    assert sans(tmp_path / "ip.crt") == ["127.0.0.1"]
    assert verify_chain(p, tmp_path / "ip.crt", tmp_path)[0]


def test_two_processes_never_order_the_same_name_twice(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    state = tmp_path / "state"
    hook, marker = stuck_hook(tmp_path)
    e = dict(os.environ)
    e.pop("MOAT_STATE", None)
    first = subprocess.Popen([str(moat_bin), "acme", "issue", "both.example.test", *map(str, ca_args(p)),
                              "--resolver", p.dns_addr, "--agree-tos", "--dns-hook", str(hook),
                              "--state", str(state)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e)
    try:
        assert wait_for(marker.exists, 60)
        r = issue(moat_bin, state, p, "both.example.test", "--agree-tos",
                  "--http", "127.0.0.1:%d" % p.http_port)
        assert r.returncode == 1, r.stderr
        assert "another moat is ordering the certificate for both.example.test" in r.stderr
        assert "order https://" not in r.stderr
    finally:
        first.kill()
        first.wait(timeout=10)
        kill_hook(marker)
    # the lock went with the process that held it
    r = issue(moat_bin, state, p, "both.example.test", "--agree-tos",
              "--http", "127.0.0.1:%d" % p.http_port)
    assert r.returncode == 0, r.stderr


def test_profile_the_ca_does_not_offer(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    r = issue(moat_bin, tmp_path / "state", p, "prof.example.test", "--agree-tos",
              "--http", "127.0.0.1:%d" % p.http_port, "--profile", "shortlived")
    assert r.returncode == 0, r.stderr
    assert 'offers no certificate profiles; ordering without profile "shortlived"' in r.stderr


def test_renew_orders_what_is_due_at_its_own_ca(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    state = tmp_path / "state"
    http = ["--http", "127.0.0.1:%d" % p.http_port]
    r = issue(moat_bin, state, p, "ren.example.test", "--agree-tos", *http,
              "--cert-out", tmp_path / "1.crt")
    assert r.returncode == 0, r.stderr
    # Pebble's certificates live five years: nothing is due
    r = acme(moat_bin, state, "renew", "--ca-bundle", p.ca_bundle, "--resolver", p.dns_addr, *http)
    assert r.returncode == 0, r.stderr
    assert "ren.example.test (ecdsa): not due yet" in r.stdout and "nothing to renew" in r.stdout
    # --force: ordered again, at the CA the status names (no --server given)
    r = acme(moat_bin, state, "renew", "--force", "--ca-bundle", p.ca_bundle, "--resolver",
             p.dns_addr, *http)
    assert r.returncode == 0, r.stderr
    assert "ren.example.test (ecdsa): renewed" in r.stdout
    assert p.directory in r.stderr
    pem = (state / "acme" / "certs" / "ren.example.test" / "ecdsa.pem").read_text()
    (tmp_path / "2.crt").write_text(pem.split("-----BEGIN PRIVATE KEY-----")[0])
    assert serial(tmp_path / "1.crt") != serial(tmp_path / "2.crt")
    # a name that is not in the state folder: nothing done
    r = acme(moat_bin, state, "renew", "other.example.test", "--force", "--ca-bundle",
             p.ca_bundle, *http)
    assert r.returncode == 0 and "nothing to renew" in r.stdout, r.stdout + r.stderr


def test_issue_by_tls_alpn01_standalone(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    r = issue(moat_bin, tmp_path / "state", p, "alpn.example.test", "--agree-tos",
              "--tls-alpn", "127.0.0.1:%d" % p.tls_port, "--cert-out", tmp_path / "a.crt")
    no_sanitizer(r)
    assert r.returncode == 0, r.stderr + p.log()[-2000:]
    assert "answering TLS-ALPN-01 on 127.0.0.1:%d" % p.tls_port in r.stderr
    assert "alpn.example.test: tls-alpn-01 accepted by the CA" in r.stderr
    assert sans(tmp_path / "a.crt") == ["alpn.example.test"]
    assert verify_chain(p, tmp_path / "a.crt", tmp_path)[0]


def front_issue(moat_bin, state, f, p, name, out):
    return acme(moat_bin, state, "issue", name, "--agree-tos", "--http",
                "127.0.0.1:%d" % p.http_port, "--server", f.directory, "--ca-bundle", p.ca_bundle,
                "--resolver", p.dns_addr, "--cert-out", out)


def test_without_renewal_info_orders_carry_no_replaces(moat_bin, pebble_factory, front_factory,
                                                       tmp_path):
    # Debian's Pebble 2.4 has no renewalInfo: a renewal is ordered exactly as a first order.
    # Pebble does not log request bodies, so a recording front shows what moat sent.
    p = pebble_factory()
    f = front_factory(p)
    state = tmp_path / "state"
    for out in ("1.crt", "2.crt"):
        r = front_issue(moat_bin, state, f, p, "plain.example.test", tmp_path / out)
        no_sanitizer(r)
        assert r.returncode == 0, r.stderr + p.log()
    orders = f.new_orders()
    assert len(orders) == 2, f.posts
    for o in orders:
        assert o == {"identifiers": [{"type": "dns", "value": "plain.example.test"}]}, o
    assert f.ari_gets == []
    assert "replac" not in r.stderr and "ARI" not in r.stderr, r.stderr
    js = json.loads(acme(moat_bin, state, "status", "--json").stdout)
    (c,) = js["certificates"]
    assert "ari_window_end" not in c
    st = acme(moat_bin, state, "status")
    assert "ARI" not in st.stdout, st.stdout


def test_renewal_order_names_the_certificate_it_replaces(moat_bin, pebble_factory, front_factory,
                                                         tmp_path):
    # With renewalInfo in the directory (played by the front: Pebble 2.4 has none), the second
    # order for a lineage says which certificate it replaces, by RFC 9773's identifier as
    # worked out here from the first certificate; Pebble ignores the member and issues.
    p = pebble_factory()
    f = front_factory(p, ari=lambda cid: (404, {}, None))
    state = tmp_path / "state"
    r1 = front_issue(moat_bin, state, f, p, "ari.example.test", tmp_path / "1.crt")
    no_sanitizer(r1)
    assert r1.returncode == 0, r1.stderr + p.log()
    r2 = front_issue(moat_bin, state, f, p, "ari.example.test", tmp_path / "2.crt")
    no_sanitizer(r2)
    assert r2.returncode == 0, r2.stderr + p.log()
    first, second = f.new_orders()
    assert "replaces" not in first, first  # nothing installed yet: nothing replaced
    assert second["replaces"] == ari_cert_id((tmp_path / "1.crt").read_text()), second
    assert second["identifiers"] == first["identifiers"]
    assert serial(tmp_path / "1.crt") != serial(tmp_path / "2.crt")
    ok, out = verify_chain(p, tmp_path / "2.crt", tmp_path)
    assert ok, out


def test_replacement_refused_by_the_ca_is_ordered_as_new(moat_bin, pebble_factory, front_factory,
                                                         tmp_path):
    # RFC 9773 §5: a CA may refuse `replaces` (alreadyReplaced); the certificate is still due,
    # so moat says so and orders it without the member.
    p = pebble_factory()
    f = front_factory(p, ari=lambda cid: (404, {}, None), refuse_replaces=True)
    state = tmp_path / "state"
    r1 = front_issue(moat_bin, state, f, p, "again.example.test", tmp_path / "1.crt")
    assert r1.returncode == 0, r1.stderr
    r2 = front_issue(moat_bin, state, f, p, "again.example.test", tmp_path / "2.crt")
    no_sanitizer(r2)
    assert r2.returncode == 0, r2.stderr + p.log()
    orders = f.new_orders()
    assert len(orders) == 3, orders
    assert "replaces" not in orders[0] and "replaces" in orders[1] and "replaces" not in orders[2]
    assert "refused the order as the replacement of %s (alreadyReplaced)" % orders[1]["replaces"] \
        in r2.stderr, r2.stderr
    assert serial(tmp_path / "1.crt") != serial(tmp_path / "2.crt")
