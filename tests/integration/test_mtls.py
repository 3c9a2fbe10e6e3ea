"""Mutual TLS on the server side (issue 6), with real clients: curl, `openssl s_client` and
Python's ssl.

One server (module scope) carries five sites on one port:
  req.test       client_auth require, a DER CRL that revokes `revoked`
  allow.test     require + client_allow cn:alice dns:*.ops.test
  opt.test       optional, client_path /admin (any verified client), /ops (cn:bob, dns:*.ops.test)
  optallow.test  optional + client_allow cn:alice, client_path /admin
  lax.test, *    no client authentication
Session resumption is checked not to carry a client across sites with other rules. The CRL
reload and the quick flags (--client-ca, --client-auth) get servers of their own.

Client certificates come from a ClientCa (mtls_helpers.py) made per module: alice, bob, carol
(good ones with different names), `stranger` (alice's very subject, from another CA), `expired`,
`server_only` (extendedKeyUsage serverAuth only) and `revoked`.
"""

import json
import re
import signal
import subprocess
import time
from types import SimpleNamespace

import pytest

from helpers import Conn, Moat, curl, log_after, make_www, run, wait_for
from mtls_helpers import (ClientCa, alert_in, curl_args, http_status, s_client_mtls,
                          tls_context)

SITES = ["req.test", "allow.test", "opt.test", "optallow.test", "lax.test"]


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpki(pki, tmp_path_factory):
    base = tmp_path_factory.mktemp("client-pki")
    ns = SimpleNamespace()
    ns.ca = ClientCa(base / "clients", "moat clients CA")
    ns.other = ClientCa(base / "other", "moat other CA")
    ns.alice = ns.ca.issue("alice", "alice", org="Example",
                           sans=["DNS:alice.svc.test", "email:alice@example.test"])
    ns.bob = ns.ca.issue("bob", "bob", sans=["DNS:bob.svc.test"])
    ns.carol = ns.ca.issue("carol", "carol", sans=["DNS:carol.ops.test"])
    # The same subject as alice: only the issuer tells them apart.
    ns.stranger = ns.other.issue("stranger", "alice", org="Example")
    ns.expired = ns.ca.issue("expired", "old-client", startdate="20200101000000Z",
                             enddate="20200201000000Z")
    ns.server_only = ns.ca.issue("server-only", "svc", eku="serverAuth")
    ns.revoked = ns.ca.issue("revoked", "mallory")
    ns.ca.revoke(ns.revoked)
    ns.crl_der = ns.ca.gencrl(base / "clients.crl.der", der=True)
    ns.srv = pki.issue(SITES, "ec", stem="mtls-server")
    return ns


@pytest.fixture(scope="module")
def docroot(tmp_path_factory):
    www, _ = make_www(tmp_path_factory.mktemp("mtls-docroot"))
    for d in ("admin", "ops"):
        (www / d).mkdir()
        (www / d / "index.html").write_text("%s-PAGE\n" % d.upper())
    (www / "administrators.txt").write_text("NOT-UNDER-ADMIN\n")
    return www


def site(name, srv, www, body=""):
    return "site %s {\n    cert %s %s\n    root %s\n%s}\n" % (name, srv.chain, srv.key, www, body)


def main_config(m, pki, cp, www):
    ca = cp.ca.pem
    return (
        "listen 127.0.0.1:%d\nworkers 2\nstate %s\naccess_log %s json\nerror_log stderr info\n"
        "timeouts { head 3s; idle 3s; handshake 3s }\n" % (m.port, m.state, m.access_log)
        + site("req.test", cp.srv, www, "    client_auth require\n    client_ca %s\n"
               "    client_crl %s\n" % (ca, cp.crl_der))
        + site("allow.test", cp.srv, www, "    client_auth require\n    client_ca %s\n"
               "    client_allow cn:alice dns:*.ops.test\n" % ca)
        + site("opt.test", cp.srv, www, "    client_auth optional\n    client_ca %s\n"
               "    client_crl %s\n    client_path /admin\n"
               "    client_path /ops cn:bob dns:*.ops.test\n" % (ca, cp.crl_der))
        + site("optallow.test", cp.srv, www, "    client_auth optional\n    client_ca %s\n"
               "    client_allow cn:alice\n    client_path /admin\n" % ca)
        + site("lax.test", cp.srv, www)
        + "site * {\n    cert %s %s\n    root %s\n}\n" % (pki.default.chain, pki.default.key, www)
    )


def _finish(m):
    m.stop()
    report = m.sanitizer_report()
    if report and not m.sanitizer_reported:
        m.sanitizer_reported = True
        pytest.fail("sanitizer report in moat's stderr (%s):\n%s" % (m.dir, report),
                    pytrace=False)


@pytest.fixture(scope="module")
def _mtls_server(moat_bin, pki, cpki, docroot, tmp_path_factory):
    m = Moat(moat_bin, tmp_path_factory.mktemp("mtls-server"), name="mtls")
    m.write_config(main_config(m, pki, cpki, docroot))
    m.start()
    yield m
    _finish(m)


@pytest.fixture
def srv(_mtls_server):
    m = _mtls_server
    if not m.alive():
        m.stop()
        m.start()
    return m


def sc(m, pki, sni, cert=None, **kw):
    """s_client against `m` (verifying the server against the suite's root)."""
    return s_client_mtls(m.port, sni, cert=cert, cafile=pki.root, **kw)


def get(m, pki, sni, cert=None, path="/", host=None, maxv=None):
    """One request over Python's ssl with an optional client certificate."""
    with Conn(m.port, sni=sni, context=tls_context(pki.root, cert, maxv)) as c:
        return c.request(path, host=host or sni)


def refused_at_handshake(text):
    """s_client saw a TLS alert and no HTTP answer."""
    return alert_in(text) is not None and http_status(text) is None


# -- accepted ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["-tls1_2", "-tls1_3"])
def test_right_certificate_accepted_require(srv, pki, cpki, tls):
    p, text = sc(srv, pki, "req.test", cpki.alice, tls=tls)
    assert http_status(text) == 200, text[-2000:]
    assert "INDEX-PAGE" in text
    assert alert_in(text) is None


def test_right_certificate_accepted_require_curl(srv, pki, cpki, tmp_path):
    r = curl(tmp_path, "https://req.test:%d/a.txt" % srv.port, *curl_args(cpki.alice),
             port=srv.port, host="req.test", cacert=pki.root)
    assert r.rc == 0, r.stderr
    assert r.status == 200
    assert r.body == b"file A\n"
    # The server asked for a certificate, naming the client CA.
    assert "moat clients CA" in r.stderr or "Request CERT" in r.stderr


def test_right_certificate_accepted_optional(srv, pki, cpki, tmp_path):
    r = curl(tmp_path, "https://opt.test:%d/admin/" % srv.port, *curl_args(cpki.alice),
             port=srv.port, host="opt.test", cacert=pki.root)
    assert r.rc == 0, r.stderr
    assert (r.status, r.body) == (200, b"ADMIN-PAGE\n")
    # optional: no certificate is fine outside the protected paths.
    r = curl(tmp_path, "https://opt.test:%d/a.txt" % srv.port, port=srv.port, host="opt.test",
             cacert=pki.root)
    assert r.rc == 0, r.stderr
    assert (r.status, r.body) == (200, b"file A\n")


def test_certificate_request_names_the_client_ca(srv, pki):
    p, text = sc(srv, pki, "req.test")
    # "Acceptable client certificate CA names" lists client_ca subjects, not the server's CAs.
    assert "Acceptable client certificate CA names" in text, text[-3000:]
    names = re.split(r"\n(?:Requested|---)", text.split("Acceptable client certificate CA names")[1])[0]
    assert "moat clients CA" in names
    assert "moat other CA" not in names
    assert "moat test root" not in names


# -- refused at the handshake ------------------------------------------------------------------


def test_no_certificate_refused_tls13(srv, pki):
    mark = len(srv.stderr())
    p, text = sc(srv, pki, "req.test", tls="-tls1_3")
    assert refused_at_handshake(text), text[-2000:]
    assert alert_in(text) == "certificate required"  # RFC 8446 §4.4.2.4
    assert "INDEX-PAGE" not in text
    assert log_after(srv, mark, r"client refused at handshake: no client certificate"), \
        srv.stderr()[-2000:]


def test_no_certificate_refused_tls12(srv, pki):
    mark = len(srv.stderr())
    p, text = sc(srv, pki, "req.test", tls="-tls1_2")
    assert refused_at_handshake(text), text[-2000:]
    assert alert_in(text) == "handshake failure"  # RFC 5246 §7.4.6
    assert log_after(srv, mark, r"client refused at handshake: no client certificate")


def test_no_certificate_refused_curl(srv, pki, tmp_path):
    url = "https://req.test:%d/" % srv.port
    r = curl(tmp_path, url, "--tls-max", "1.2", port=srv.port, host="req.test", cacert=pki.root)
    assert r.rc != 0 and r.status is None and r.body == b"", r.stderr
    # Over TLS 1.2 the refusal ends the handshake, and curl shows the alert.
    assert "alert handshake failure" in r.stderr, r.stderr
    # Over TLS 1.3 the client's handshake is over before the server reads its (empty)
    # Certificate; curl only sees the connection end, but gets no answer either.
    r = curl(tmp_path, url, "--tlsv1.3", port=srv.port, host="req.test", cacert=pki.root)
    assert r.rc != 0 and r.status is None and r.body == b"", r.stderr


@pytest.mark.parametrize("who,alert", [
    ("stranger", "unknown ca"),
    ("expired", "certificate expired"),
    ("revoked", "certificate revoked"),
    ("server_only", "unsupported certificate"),
])
@pytest.mark.parametrize("tls", ["-tls1_2", "-tls1_3"])
def test_bad_certificate_refused(srv, pki, cpki, who, alert, tls):
    p, text = sc(srv, pki, "req.test", getattr(cpki, who), tls=tls)
    assert refused_at_handshake(text), text[-2000:]
    assert alert_in(text) == alert, text[-2000:]
    assert "INDEX-PAGE" not in text


def test_bad_certificates_refused_curl(srv, pki, cpki, tmp_path):
    for who, words in (("stranger", "unknown ca"), ("expired", "certificate expired"),
                       ("revoked", "certificate revoked")):
        args = curl_args(getattr(cpki, who))
        # TLS 1.2: the alert ends curl's handshake and curl prints it.
        r = curl(tmp_path, "https://req.test:%d/" % srv.port, "--tls-max", "1.2", *args,
                 port=srv.port, host="req.test", cacert=pki.root)
        assert r.rc != 0 and r.status is None, (who, r.stderr)
        assert words in r.stderr, (who, r.stderr)
        # TLS 1.3: the alert may come after curl's side of the handshake; no answer either way.
        r = curl(tmp_path, "https://req.test:%d/" % srv.port, "--tlsv1.3", *args,
                 port=srv.port, host="req.test", cacert=pki.root)
        assert r.rc != 0 and r.status is None and r.body == b"", (who, r.stderr)


def test_crl_revokes_only_the_revoked(srv, pki, cpki):
    # The same site, the same CRL: a certificate that is not on it still gets in.
    for cert in (cpki.alice, cpki.bob):
        assert get(srv, pki, "req.test", cert, "/a.txt").status == 200


# The log line must say who was refused and why (issue 6).
@pytest.mark.parametrize("sni,who,words", [
    ("req.test", "stranger", r"CN=alice.*(not trust|unknown)"),
    ("req.test", "expired", r"CN=old-client.*expired"),
    ("req.test", "revoked", r"CN=mallory.*revoked"),
    ("allow.test", "bob", r"CN=bob.*not allowed"),
])
def test_handshake_refusal_log_says_who_and_why(srv, pki, cpki, sni, who, words):
    mark = len(srv.stderr())
    p, text = sc(srv, pki, sni, getattr(cpki, who))
    assert refused_at_handshake(text)
    line = log_after(srv, mark, r"[^\n]*(client refused at handshake|handshake failed)[^\n]*")
    assert line, srv.stderr()[mark:]
    assert re.search(r"client refused at handshake: [^\n]*" + words, line.group(0)), \
        line.group(0)


# -- allow-lists -------------------------------------------------------------------------------


def test_site_allow_list_match(srv, pki, cpki):
    r = get(srv, pki, "allow.test", cpki.alice, "/a.txt")
    assert (r.status, r.body) == (200, b"file A\n")
    # dns:*.ops.test: a glob on a DNS SAN.
    r = get(srv, pki, "allow.test", cpki.carol, "/a.txt")
    assert r.status == 200


@pytest.mark.parametrize("tls", ["-tls1_2", "-tls1_3"])
def test_site_allow_list_mismatch_refused_at_handshake(srv, pki, cpki, tls):
    # bob chains to the right CA but is not on the site's list.
    p, text = sc(srv, pki, "allow.test", cpki.bob, tls=tls)
    assert refused_at_handshake(text), text[-2000:]
    assert "INDEX-PAGE" not in text
    # alice's subject from another CA is not alice.
    p, text = sc(srv, pki, "allow.test", cpki.stranger, tls=tls)
    assert refused_at_handshake(text)
    assert alert_in(text) == "unknown ca"


def test_path_allow_list_match(srv, pki, cpki):
    for cert in (cpki.bob, cpki.carol):  # cn:bob, dns:*.ops.test
        r = get(srv, pki, "opt.test", cert, "/ops/")
        assert (r.status, r.body) == (200, b"OPS-PAGE\n"), cert


def test_path_allow_list_mismatch_403_names_the_reason(srv, pki, cpki):
    mark = len(srv.stderr())
    r = get(srv, pki, "opt.test", cpki.alice, "/ops/")
    assert r.status == 403
    body = r.body.decode()
    assert "OPS-PAGE" not in body
    assert "/ops needs a client certificate" in body
    assert "CN=alice,O=Example is not allowed" in body, body
    assert log_after(srv, mark, r"client refused: /ops needs a client certificate: "
                                r"the client certificate CN=alice,O=Example is not allowed")
    # The same connection goes on: a 403 is an answer, not a reason to hang up.
    with Conn(srv.port, sni="opt.test", context=tls_context(pki.root, cpki.alice)) as c:
        assert c.request("/ops/", host="opt.test").status == 403
        assert c.request("/a.txt", host="opt.test").status == 200


@pytest.mark.parametrize("who,words", [
    (None, "no client certificate was presented"),
    ("stranger", "does not trust"),
    ("expired", "has expired"),
    ("revoked", "revoked"),
    ("server_only", "key usage"),
])
def test_path_refusal_403_says_what_was_missing(srv, pki, cpki, who, words):
    cert = getattr(cpki, who) if who else None
    r = get(srv, pki, "opt.test", cert, "/admin/")
    assert r.status == 403
    body = r.body.decode()
    assert "ADMIN-PAGE" not in body
    assert "/admin needs a client certificate" in body
    assert words in body, body
    if cert is not None:
        assert cert.subject in body  # who was refused
    # Outside the protected path the same client is served: optional lets it in.
    assert get(srv, pki, "opt.test", cert, "/a.txt").status == 200


def test_optional_site_allow_list_applies_to_paths(srv, pki, cpki):
    assert get(srv, pki, "optallow.test", cpki.alice, "/admin/").status == 200
    r = get(srv, pki, "optallow.test", cpki.bob, "/admin/")
    assert r.status == 403
    assert b"ADMIN-PAGE" not in r.body
    assert get(srv, pki, "optallow.test", cpki.bob, "/a.txt").status == 200


def test_optional_site_allow_list_403_says_not_allowed(srv, pki, cpki):
    r = get(srv, pki, "optallow.test", cpki.bob, "/admin/")
    assert r.status == 403
    assert "CN=bob is not allowed" in r.body.decode(), r.body


# -- per-path requirement ----------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/admin", "/admin/", "/admin/index.html", "/%61dmin/", "/%61%64min/index.html",
    "/./admin/", "/sub/../admin/", "//admin/", "/admin/../admin/index.html",
    "/admin/?x=1",
])
def test_path_needs_certificate(srv, pki, path):
    with Conn(srv.port, sni="opt.test", context=tls_context(pki.root)) as c:
        r = c.request(path, host="opt.test")
    assert r.status == 403, (path, r)
    assert b"ADMIN-PAGE" not in r.body
    assert b"/admin needs a client certificate" in r.body


@pytest.mark.parametrize("path,body", [
    ("/", b"INDEX-PAGE"), ("/a.txt", b"file A"), ("/administrators.txt", b"NOT-UNDER-ADMIN"),
    ("/sub/", b"SUB-INDEX"),
])
def test_rest_of_site_needs_no_certificate(srv, pki, path, body):
    # /administrators.txt shares the prefix's letters but not its segment.
    with Conn(srv.port, sni="opt.test", context=tls_context(pki.root)) as c:
        r = c.request(path, host="opt.test")
    assert r.status == 200, (path, r)
    assert body in r.body


def test_encoded_path_served_with_certificate(srv, pki, cpki):
    for path in ("/%61dmin/", "/admin/index.html"):
        r = get(srv, pki, "opt.test", cpki.alice, path)
        assert (r.status, r.body) == (200, b"ADMIN-PAGE\n"), path


def test_path_requirement_with_curl(srv, pki, cpki, tmp_path):
    url = "https://opt.test:%d/admin/" % srv.port
    r = curl(tmp_path, url, port=srv.port, host="opt.test", cacert=pki.root)
    assert r.rc == 0 and r.status == 403, r.stderr
    assert b"no client certificate was presented" in r.body
    r = curl(tmp_path, url, *curl_args(cpki.alice), port=srv.port, host="opt.test",
             cacert=pki.root)
    assert (r.status, r.body) == (200, b"ADMIN-PAGE\n")


# -- SNI and Host ------------------------------------------------------------------------------


def test_lax_handshake_cannot_reach_strict_site(srv, pki):
    # No certificate, SNI of the lax site, Host of the strict one.
    mark = len(srv.stderr())
    r = get(srv, pki, "lax.test", None, "/index.html", host="req.test")
    assert r.status == 421
    assert b"INDEX-PAGE" not in r.body
    assert log_after(srv, mark, r'421: Host "req.test" is not the site of the TLS handshake')
    # With s_client too.
    p, text = sc(srv, pki, "lax.test", host="req.test", path="/index.html")
    assert http_status(text) == 421, text[-2000:]
    assert "INDEX-PAGE" not in text


def test_strict_handshake_cannot_be_used_for_lax_site(srv, pki, cpki):
    r = get(srv, pki, "req.test", cpki.alice, "/a.txt", host="lax.test")
    assert r.status == 421
    assert b"file A" not in r.body


def test_differing_client_auth_is_421_both_ways(srv, pki, cpki):
    # optional and require differ too; a client without SNI lands on the default site.
    assert get(srv, pki, "opt.test", cpki.alice, "/", host="req.test").status == 421
    assert get(srv, pki, "req.test", cpki.alice, "/", host="opt.test").status == 421
    with Conn(srv.port, sni=None, verify=False) as c:
        assert c.request("/", host="req.test").status == 421


def test_matching_host_and_sni_are_served(srv, pki, cpki):
    assert get(srv, pki, "lax.test", None, "/a.txt").status == 200
    assert get(srv, pki, "req.test", cpki.alice, "/a.txt").status == 200
    # Host with a port is the same site; two sites without client auth may share a handshake.
    assert get(srv, pki, "req.test", cpki.alice, "/a.txt",
               host="req.test:%d" % srv.port).status == 200
    assert get(srv, pki, "lax.test", None, "/a.txt", host="other.test").status == 200


# -- resumption --------------------------------------------------------------------------------


def resume(m, pki, tmp_path, sni_first, cert_first, sni_then, cert_then, tls="-tls1_3",
           path="/"):
    """Make a session on `sni_first`, then offer it on `sni_then` and GET `path`; returns the
    second s_client's text."""
    sess = tmp_path / ("%s-%s.sess" % (sni_first, cert_first.name if cert_first else "none"))
    p, text = s_client_mtls(m.port, sni_first, cert=cert_first, cafile=pki.root, tls=tls,
                            extra=["-sess_out", sess])
    assert http_status(text) == 200, text[-2000:]
    p, text = s_client_mtls(m.port, sni_then, cert=cert_then, cafile=pki.root, tls=tls,
                            path=path, extra=["-sess_in", sess])
    return text


@pytest.mark.parametrize("tls", ["-tls1_2", "-tls1_3"])
def test_resumed_session_keeps_client_identity(srv, pki, cpki, tmp_path, tls):
    text = resume(srv, pki, tmp_path, "req.test", cpki.alice, "req.test", cpki.alice, tls)
    assert re.search(r"^Reused, ", text, re.M), text[-3000:]
    assert http_status(text) == 200
    # The verified identity comes back with the session (RFC 8446 §2.2): /admin on opt.test
    # is served on a resumed connection that sends no certificate this time...
    text = resume(srv, pki, tmp_path, "opt.test", cpki.alice, "opt.test", None, tls, "/admin/")
    assert re.search(r"^Reused, ", text, re.M), text[-3000:]
    assert http_status(text) == 200 and "ADMIN-PAGE" in text
    # ...and a session made without a certificate stays without one.
    text = resume(srv, pki, tmp_path, "opt.test", None, "opt.test", None, tls, "/admin/")
    assert re.search(r"^Reused, ", text, re.M), text[-3000:]
    assert http_status(text) == 403 and "ADMIN-PAGE" not in text


@pytest.mark.parametrize("tls", ["-tls1_2", "-tls1_3"])
def test_lax_session_cannot_be_resumed_on_strict_site(srv, pki, cpki, tmp_path, tls):
    # A session from a site without client auth, offered to one that requires it, with no
    # certificate: a full handshake, and a refusal.
    text = resume(srv, pki, tmp_path, "lax.test", None, "req.test", None, tls)
    assert not re.search(r"^Reused, ", text, re.M), text[-3000:]
    assert refused_at_handshake(text), text[-3000:]
    assert "INDEX-PAGE" not in text
    # Nor a session of another CA's client that an optional site let in.
    text = resume(srv, pki, tmp_path, "opt.test", cpki.stranger, "req.test", None, tls)
    assert not re.search(r"^Reused, ", text, re.M), text[-3000:]
    assert refused_at_handshake(text)


# -- access log --------------------------------------------------------------------------------


def access_entries(m, *tokens):
    """The JSON access-log entries whose line holds each token (waits for all of them)."""
    def find():
        got = {}
        for line in m.access_lines(1, 0.1):
            for t in tokens:
                if t in line:
                    got[t] = json.loads(line)
        return got if len(got) == len(tokens) else None
    found = wait_for(find, 5, 0.1)
    assert found, m.access_lines()[-5:]
    return [found[t] for t in tokens]


def test_access_log_carries_client_identity(srv, pki, cpki):
    get(srv, pki, "req.test", cpki.alice, "/a.txt?who=alice-ok")
    get(srv, pki, "opt.test", cpki.stranger, "/admin/?who=stranger-403")
    get(srv, pki, "opt.test", None, "/a.txt?who=nobody")
    ok, stranger, nobody = access_entries(srv, "alice-ok", "stranger-403", "nobody")

    assert ok["status"] == 200
    assert ok["client_subject"] == "CN=alice,O=Example"
    assert ok["client_verified"] is True
    assert ok["client_serial"] == cpki.alice.serial

    # The same subject from another CA: logged as sent, and marked unverified.
    assert stranger["status"] == 403
    assert stranger["client_subject"] == "CN=alice,O=Example"
    assert stranger["client_verified"] is False
    assert stranger["client_serial"] == cpki.stranger.serial

    assert nobody["status"] == 200
    assert "client_subject" not in nobody and "client_verified" not in nobody


# -- CRL reload on SIGHUP ----------------------------------------------------------------------


def test_crl_reload_on_sighup(moat, pki, cpki, docroot, tmp_path):
    ca = ClientCa(tmp_path / "reload-ca", "moat reload CA")
    dave = ca.issue("dave", "dave")
    erin = ca.issue("erin", "erin")
    crl = ca.gencrl(tmp_path / "clients.crl")  # PEM, revokes nothing yet
    m = moat("crl-reload")
    m.write_config(
        "listen 127.0.0.1:%d\nworkers 2\nstate %s\nerror_log stderr info\n"
        "timeouts { handshake 3s }\n" % (m.port, m.state)
        + site("req.test", cpki.srv, docroot, "    client_auth require\n    client_ca %s\n"
               "    client_crl %s\n" % (ca.pem, crl)))
    m.start()
    pid = m.pid
    # A connection made before the reload, kept open.
    old = Conn(m.port, sni="req.test", context=tls_context(pki.root, dave))
    try:
        assert old.request("/a.txt", host="req.test").status == 200
        assert get(m, pki, "req.test", dave, "/a.txt").status == 200

        ca.revoke(dave)
        ca.gencrl(crl)
        # Not before the reload: the CRL is read with the configuration.
        assert get(m, pki, "req.test", dave, "/a.txt").status == 200
        mark = len(m.stderr())
        m.signal(signal.SIGHUP)
        assert log_after(m, mark, r"reload \(SIGHUP\): now serving configuration generation",
                         10), m.stderr()[-2000:]
        assert m.alive() and m.pid == pid

        p, text = s_client_mtls(m.port, "req.test", cert=dave, cafile=pki.root)
        assert refused_at_handshake(text), text[-2000:]
        assert alert_in(text) == "certificate revoked"
        with pytest.raises(Exception):
            get(m, pki, "req.test", dave, "/a.txt")
        # Others from the same CA still get in.
        assert get(m, pki, "req.test", erin, "/a.txt").status == 200
        # The connection from before keeps the verdict it had (no renegotiation).
        assert old.request("/b.txt", host="req.test").status == 200
    finally:
        old.close()


@pytest.mark.parametrize("tls", ["-tls1_2", "-tls1_3"])
def test_revoked_client_cannot_resume_after_reload(moat, pki, cpki, docroot, tmp_path, tls):
    ca = ClientCa(tmp_path / "reload-ca", "moat reload CA")
    dave = ca.issue("dave", "dave")
    crl = ca.gencrl(tmp_path / "clients.crl")
    m = moat("crl-resume")
    m.write_config(
        "listen 127.0.0.1:%d\nworkers 1\nstate %s\nerror_log stderr info\n" % (m.port, m.state)
        + site("req.test", cpki.srv, docroot, "    client_auth require\n    client_ca %s\n"
               "    client_crl %s\n" % (ca.pem, crl)))
    m.start()
    sess = tmp_path / "dave.sess"
    p, text = s_client_mtls(m.port, "req.test", cert=dave, cafile=pki.root, tls=tls,
                            extra=["-sess_out", sess])
    assert http_status(text) == 200, text[-2000:]
    ca.revoke(dave)
    ca.gencrl(crl)
    mark = len(m.stderr())
    m.signal(signal.SIGHUP)
    assert log_after(m, mark, r"reload \(SIGHUP\): now serving", 10), m.stderr()[-2000:]
    # A session (ticket) from before the revocation must not let dave back in.
    p, text = s_client_mtls(m.port, "req.test", cert=dave, cafile=pki.root, tls=tls,
                            extra=["-sess_in", sess])
    assert "INDEX-PAGE" not in text, "revoked client resumed its session and was served"
    assert not re.search(r"^Reused, ", text, re.M), "revoked client resumed its session"
    assert refused_at_handshake(text), text[-2000:]


def test_crl_reload_keeps_old_crl_on_bad_file(moat, pki, cpki, docroot, tmp_path):
    ca = ClientCa(tmp_path / "reload-ca", "moat reload CA")
    dave = ca.issue("dave", "dave")
    ca.revoke(dave)
    crl = ca.gencrl(tmp_path / "clients.crl")
    m = moat("crl-bad")
    m.write_config(
        "listen 127.0.0.1:%d\nworkers 1\nstate %s\nerror_log stderr info\n" % (m.port, m.state)
        + site("req.test", cpki.srv, docroot, "    client_auth require\n    client_ca %s\n"
               "    client_crl %s\n" % (ca.pem, crl)))
    m.start()
    # A CRL from a CA this site does not trust would revoke nothing: the reload is refused.
    cpki.other.gencrl(crl)
    mark = len(m.stderr())
    m.signal(signal.SIGHUP)
    assert log_after(m, mark, r"refused, still serving the previous configuration: .*"
                              r"clients\.crl.*not signed by any client_ca", 10), \
        m.stderr()[-2000:]
    p, text = s_client_mtls(m.port, "req.test", cert=dave, cafile=pki.root)
    assert alert_in(text) == "certificate revoked", text[-2000:]


# -- quick flags -------------------------------------------------------------------------------


def quick(moat, cpki, docroot, name, *flags):
    m = moat(name)
    m.start(["serve", "--root", docroot, "--listen", "127.0.0.1:%d" % m.port,
             "--cert", cpki.srv.chain, "--key", cpki.srv.key, "--workers", "1",
             "--log-level", "info"] + list(flags))
    return m


def test_quick_flag_client_ca_requires_by_default(moat, pki, cpki, docroot):
    m = quick(moat, cpki, docroot, "quick-require", "--client-ca", cpki.ca.pem)
    p, text = s_client_mtls(m.port, "req.test", cafile=pki.root)
    assert refused_at_handshake(text), text[-2000:]
    assert alert_in(text) == "certificate required"
    p, text = s_client_mtls(m.port, "req.test", cert=cpki.stranger, cafile=pki.root)
    assert alert_in(text) == "unknown ca"
    assert get(m, pki, "req.test", cpki.alice, "/a.txt").body == b"file A\n"
    assert log_after(m, 0, r"client refused at handshake: no client certificate")


def test_quick_flag_client_auth_optional(moat, pki, cpki, docroot, tmp_path):
    m = quick(moat, cpki, docroot, "quick-optional", "--client-ca", cpki.ca.pem,
              "--client-auth", "optional", "--access-log", tmp_path / "quick-access.log")
    assert get(m, pki, "req.test", None, "/a.txt?q=anon").status == 200
    assert get(m, pki, "req.test", cpki.stranger, "/a.txt").status == 200
    r = curl(tmp_path, "https://req.test:%d/a.txt?q=alice" % m.port, *curl_args(cpki.alice),
             port=m.port, host="req.test", cacert=pki.root)
    assert r.status == 200, r.stderr
    # combined format: the verified client's CN is the authenticated user.
    lines = wait_for(lambda: [l for l in (tmp_path / "quick-access.log").read_text()
                              .splitlines() if "q=alice" in l]
                     if (tmp_path / "quick-access.log").exists() else None, 5)
    assert lines and " - alice [" in lines[0], lines


@pytest.mark.parametrize("flags,words", [
    (["--client-auth", "optional"], "--client-auth needs --client-ca"),
    (["--client-ca", "x.pem", "--client-auth", "sometimes"], "takes require or optional"),
    (["--client-ca", "/nonexistent/ca.pem", "--check"], "/nonexistent/ca.pem"),
])
def test_quick_flag_errors(moat_bin, docroot, tmp_path, flags, words):
    p = run([moat_bin, "serve", "--root", docroot, "--state", tmp_path / "state"] + flags,
            check=False, timeout=20)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert words in p.stderr, p.stderr


def test_config_flag_cannot_mix_with_client_flags(moat_bin, tmp_path):
    p = run([moat_bin, "serve", "--config", tmp_path / "x.conf", "--client-ca", "ca.pem"],
            check=False)
    assert p.returncode == 2
    assert "--client-ca" in p.stderr


def test_check_refuses_crl_of_another_ca(moat_bin, pki, cpki, docroot, tmp_path):
    crl = cpki.other.gencrl(tmp_path / "foreign.crl")
    conf = tmp_path / "moat.conf"
    conf.write_text("state %s\n" % (tmp_path / "state") + site(
        "req.test", cpki.srv, docroot,
        "    client_auth require\n    client_ca %s\n    client_crl %s\n" % (cpki.ca.pem, crl)))
    p = run([moat_bin, "serve", "--config", conf, "--check"], check=False, timeout=20)
    assert p.returncode == 2, p.stderr
    assert "foreign.crl" in p.stderr and "not signed by any client_ca" in p.stderr, p.stderr
