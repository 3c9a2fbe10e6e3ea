"""`moat get` and `moat trace` tell a missing intermediate from an untrusted CA.

The server (openssl s_server, nginx) sends only its leaf; the leaf's AIA caIssuers URL points at
a CA web server in this process (Python's http.server on 127.0.0.1) that serves the
intermediate. moat fetches it and says "missing intermediate" with the proof when it chains to
a trusted root, "untrusted CA" naming the root when it does not, and names both causes when it
cannot tell (no AIA, a fetch that fails, hangs, or returns 10 MB or garbage), always within its
limits. get, trace and trace --json must agree, and the trace's note under the client's alert
must say what the alert meant here.
"""

import time

import pytest

from client_helpers import AiaPki, AiaServer, moat_client, nginx, resolve, s_server
from helpers import OPENSSL, free_port, run

ROOT = "CN=aia test root"
INTER = "CN=aia test intermediate"


@pytest.fixture(scope="module")
def aia():
    srv = AiaServer()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def apki(aia, tmp_path_factory):
    p = AiaPki(tmp_path_factory.mktemp("aia-pki"), aia.url)
    aia.files.update(p.served)
    aia.files["/garbage"] = b"\x30\x82\x01\x00" + b"this is not DER at all " * 40
    aia.redirects.update({
        "/redirect": "/inter.der",
        "/to-https": "https://127.0.0.1:%d/inter.der" % aia.port,
        "/to-ldap": "ldap://ldap.example.test/cn=aia%20test%20intermediate",
        "/loop": "/loop",
    })
    return p


@pytest.fixture
def servers():
    made = []
    yield made
    for s in made:
        s.stop()


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "client-state"
    d.mkdir()
    return d


def url(port):
    return ["https://example.test:%d/" % port, resolve("example.test", port)]


def flat(text):
    return " ".join(text.split())


def start(peer, tmp_path, www, cert, key, chain=None):
    if peer == "s_server":
        return s_server(tmp_path, cert, key, chain=chain)
    assert chain is None
    return nginx(tmp_path, www, cert=cert, key=key)


def run3(moat_bin, state, args, kind):
    """get, trace, trace --json: each fails with exit 5 and the same certificate kind."""
    g = moat_client(moat_bin, state, "get", *args)
    assert g.rc == 5, g
    assert ("moat get: certificate %s: " % kind) in g.stderr, g
    assert "\n  fix: " in g.stderr, g
    t = moat_client(moat_bin, state, "trace", *args)
    assert t.rc == 5, t
    assert ("FAILED at TLS: certificate %s (exit code 5)" % kind) in t.text, t
    j = moat_client(moat_bin, state, "trace", "--json", *args)
    assert j.rc == 5, j
    res = j.json["result"]
    assert res["cause"] == "certificate" and res["certificate_kind"] == kind, j
    # One diagnosis everywhere: the one-line cause is the trace's detail.
    assert flat(res["detail"]) in flat(g.stderr), (res["detail"], g)
    assert flat(res["detail"]) in flat(t.text), (res["detail"], t)
    assert flat(res["fix"]) in flat(g.stderr) and flat(res["fix"]) in flat(t.text)
    return g, t, j


def get_line(g):
    return flat(g.stderr.split("\n  fix: ")[0])


def fix_line(g):
    return flat(g.stderr.split("\n  fix: ")[1])


def text_alert_note(text):
    """The note under the client's fatal alert in the diagram (the client's arrows start at its
    bar with the label: "|-- ALERT" in clear, "|== ALERT" encrypted)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if ("|== ALERT " in line or "|-- ALERT " in line) and "(fatal)" in line:
            note = []
            for nxt in lines[i + 1:]:
                if not nxt.startswith(" " * 12 + "|    "):
                    break
                note.append(nxt[17:])
            return flat(" ".join(note))
    raise AssertionError("no client alert in:\n" + text)


def json_alert_note(j):
    for m in j.json["hops"][0]["tls"]["messages"]:
        if m["record"] == "alert" and m["direction"] == "client->server":
            return m["note"]
    raise AssertionError("no client alert in the JSON")


def check_notes(t, j, want, unwanted=()):
    note = text_alert_note(t.text)
    assert want in note, note
    for u in unwanted:
        assert u not in note, note
    assert flat(json_alert_note(j)) == note


# -- (a) the intermediate is missing, and the AIA fetch proves it --------------------------------


@pytest.mark.parametrize("peer", ["s_server", "nginx"])
def test_missing_intermediate_proven_by_aia(peer, apki, aia, servers, state, tmp_path, moat_bin,
                                            www):
    leaf, key = apki.leaf("a-der-" + peer, [aia.url("/inter.der")])
    s = start(peer, tmp_path, www, leaf, key)
    servers.append(s)
    before = aia.asked.count("/inter.der")
    g, t, j = run3(moat_bin, state, url(s.port) + ["--cafile", apki.root],
                   "missing_intermediate")
    line = get_line(g)
    for w in ['sent only its own certificate, without the intermediate "%s"' % INTER,
              "AIA caIssuers URL %s provides it" % aia.url("/inter.der"),
              'chains to the trusted root "%s" (--cafile %s)' % (ROOT, apki.root)]:
        assert w in line, (w, g)
    assert "configure the server with the full chain" in fix_line(g), g
    assert "--cafile" not in fix_line(g), g
    text = flat(t.text)
    assert "Issuer lookup (the certificate's AIA caIssuers URL" in t.text, t
    assert "was fetched from %s" % aia.url("/inter.der") in text, t
    assert "got it: HTTP 200, %d bytes, DER: %s (issued by %s)" % (
        len(apki.served["/inter.der"]), INTER, ROOT) in text, t
    assert ('result missing intermediate: the server did not send "%s", which chains to the '
            'trusted root "%s"' % (INTER, ROOT)) in text, t
    # The client's unknown_ca alert is not glossed as "the CA is not trusted".
    check_notes(t, j, 'the server did not send the intermediate "%s"' % INTER,
                unwanted=["not trusted"])
    ic = j.json["hops"][0]["tls"]["issuer_check"]
    assert ic["diagnosis"] == "missing_intermediate", ic
    assert ic["root"] == ROOT and ic["root_source"] == "--cafile %s" % apki.root, ic
    assert len(ic["fetches"]) == 1, ic
    f = ic["fetches"][0]
    assert f["url"] == aia.url("/inter.der") and f["ok"] is True and f["status"] == 200, f
    assert f["form"] == "DER" and f["certificate"]["subject"] == INTER and f["error"] is None, f
    assert f["for"] == "CN=example.test"
    assert aia.asked.count("/inter.der") == before + 3  # one fetch per run, no more


def test_insecure_warning_carries_the_diagnosis(apki, aia, servers, state, tmp_path, moat_bin):
    leaf, key = apki.leaf("a-insecure", [aia.url("/inter.der")])
    s = s_server(tmp_path, leaf, key)
    servers.append(s)
    g = moat_client(moat_bin, state, "get", "--insecure", *url(s.port), "--cafile", apki.root)
    assert g.rc == 0, g
    assert ("--insecure hid a certificate failure: certificate missing_intermediate: the server "
            'sent only its own certificate, without the intermediate "%s"' % INTER) in g.stderr, g


@pytest.mark.parametrize("path,form", [("/inter.pem", "PEM"), ("/inter.p7c", "PKCS#7"),
                                       ("/redirect", "DER")])
def test_issuer_forms_and_redirect(path, form, apki, aia, servers, state, tmp_path, moat_bin):
    leaf, key = apki.leaf("a-form" + path.replace("/", "-"), [aia.url(path)])
    s = s_server(tmp_path, leaf, key)
    servers.append(s)
    args = url(s.port) + ["--cafile", apki.root]
    g = moat_client(moat_bin, state, "get", *args)
    assert g.rc == 5 and "certificate missing_intermediate: " in g.stderr, g
    j = moat_client(moat_bin, state, "trace", "--json", *args)
    f = j.json["hops"][0]["tls"]["issuer_check"]["fetches"][0]
    assert f["ok"] is True and f["form"] == form and f["certificate"]["subject"] == INTER, f
    if path == "/redirect":
        assert f["final_url"] == aia.url("/inter.der"), f


def test_only_the_first_http_url_is_fetched(apki, aia, servers, state, tmp_path, moat_bin):
    # ldap:// first (skipped: moat fetches over http:// only), then the http:// one.
    leaf, key = apki.leaf("a-ldap-then-http", ["ldap://ldap.example.test/cn=x",
                                                aia.url("/inter.der")])
    s = s_server(tmp_path, leaf, key)
    servers.append(s)
    j = moat_client(moat_bin, state, "trace", "--json", *url(s.port), "--cafile", apki.root)
    assert j.json["result"]["certificate_kind"] == "missing_intermediate", j
    assert [f["url"] for f in j.json["hops"][0]["tls"]["issuer_check"]["fetches"]] == [
        aia.url("/inter.der")]


# -- (b) the fetched issuer does not chain to a trusted root: an untrusted CA ---------------------


@pytest.mark.parametrize("path,fetches", [("/inter.der", 2), ("/inter.p7c", 1)])
def test_untrusted_ca_named_after_aia(path, fetches, apki, aia, servers, state, tmp_path,
                                      moat_bin):
    # No --cafile: the root is in neither the system store nor the (empty) local CA. With
    # /inter.der the intermediate's own AIA gives the root; the PKCS#7 bundle holds both.
    leaf, key = apki.leaf("b" + path.replace("/", "-").replace(".", "-"), [aia.url(path)])
    s = s_server(tmp_path, leaf, key)
    servers.append(s)
    g, t, j = run3(moat_bin, state, url(s.port), "unknown_issuer")
    line = get_line(g)
    for w in ['the issuer "%s", fetched from the AIA caIssuers URL %s' % (INTER, aia.url(path)),
              'chains to the root "%s", which is not trusted here' % ROOT,
              "the server did not send it either"]:
        assert w in line, (w, g)
    fix = fix_line(g)
    for w in ['if you trust "%s", pass its certificate with --cafile FILE' % ROOT,
              "sudo moat trust install --ca FILE", 'should also send "%s"' % INTER]:
        assert w in fix, (w, g)
    assert "missing_intermediate" not in g.stderr + t.text
    assert "cause the certificate was issued by a certificate authority this machine does not " \
           "trust" in flat(t.text), t
    assert 'result untrusted CA: the chain ends at the root "%s"' % ROOT in flat(t.text), t
    check_notes(t, j, 'it chains to "%s", a root not trusted here' % ROOT)
    ic = j.json["hops"][0]["tls"]["issuer_check"]
    assert ic["diagnosis"] == "untrusted_ca" and ic["root"] == ROOT, ic
    assert ic["root_source"] is None
    assert len(ic["fetches"]) == fetches and all(f["ok"] for f in ic["fetches"]), ic
    if fetches == 2:
        assert ic["fetches"][1]["url"] == aia.url("/root.der")
        assert ic["fetches"][1]["for"] == INTER
        assert ic["fetches"][1]["certificate"]["self_signed"] is True


# -- (c) the server sends a self-signed root nobody here trusts ----------------------------------


@pytest.fixture(scope="module")
def self_signed(apki):
    key = apki._key("c-self")
    cert = apki.dir / "c-self.pem"
    run([OPENSSL, "req", "-config", apki.cnf, "-x509", "-new", "-key", key,
         "-subj", "/CN=example.test", "-days", "30",
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-addext", "subjectAltName=DNS:example.test",
         "-addext", "extendedKeyUsage=serverAuth", "-out", cert])
    return cert, key


@pytest.mark.parametrize("peer", ["s_server", "nginx"])
def test_lone_self_signed_is_not_trusted_and_says_how(peer, self_signed, apki, servers, state,
                                                      tmp_path, moat_bin, www):
    s = start(peer, tmp_path, www, *self_signed)
    servers.append(s)
    g, t, j = run3(moat_bin, state, url(s.port) + ["--cafile", apki.root], "self_signed")
    assert "self-signed certificate (CN=example.test), which is not trusted here" in get_line(g)
    fix = fix_line(g)
    for w in ["pass it with --cafile FILE", "sudo moat trust install --ca FILE",
              "`sudo moat trust install`"]:
        assert w in fix, (w, g)
    check_notes(t, j, "it is self-signed and not trusted here")
    ic = j.json["hops"][0]["tls"]["issuer_check"]
    assert ic["diagnosis"] == "untrusted_ca" and ic["fetches"] == [], ic
    assert "Issuer lookup" not in t.text


def test_chain_ending_in_untrusted_root_is_not_trusted(apki, aia, servers, state, tmp_path,
                                                       moat_bin):
    # The leaf names an AIA URL, but the server sends its whole chain: nothing to fetch.
    leaf, key = apki.leaf("c-full", [aia.url("/inter.der")])
    s = s_server(tmp_path, leaf, key, chain=apki.inter_and_root)
    servers.append(s)
    before = len(aia.asked)
    g, t, j = run3(moat_bin, state, url(s.port), "unknown_issuer")
    assert ('the server sent a chain that ends at the self-signed root "%s", which is not '
            'trusted here' % ROOT) in get_line(g), g
    assert 'if you trust "%s", pass its certificate with --cafile FILE' % ROOT in fix_line(g)
    assert "moat trust install" in fix_line(g)
    check_notes(t, j, 'it chains to "%s", a root not trusted here' % ROOT)
    assert j.json["hops"][0]["tls"]["issuer_check"]["fetches"] == []
    assert len(aia.asked) == before
    # Trusted, the same server verifies.
    assert moat_client(moat_bin, state, "get", *url(s.port), "--cafile", apki.root).rc == 0


# -- (d) nothing to fetch: both causes are named --------------------------------------------------


@pytest.mark.parametrize("aia_urls,why", [
    ((), '"CN=example.test" names no caIssuers URL (AIA) where its issuer could be fetched'),
    (("ldap://ldap.example.test/cn=aia",),
     "names its issuer only at ldap://ldap.example.test/cn=aia, and moat fetches issuers over "
     "http:// only"),
    (("https://127.0.0.1:9/inter.der",), "only at https://127.0.0.1:9/inter.der"),
], ids=["no-aia", "ldap-only", "https-only"])
def test_no_usable_aia_names_both_causes(aia_urls, why, apki, servers, state, tmp_path, moat_bin):
    leaf, key = apki.leaf("d-%d-%s" % (len(aia_urls), aia_urls[0][:5] if aia_urls else "none"),
                          list(aia_urls))
    s = s_server(tmp_path, leaf, key)
    servers.append(s)
    g, t, j = run3(moat_bin, state, url(s.port) + ["--cafile", apki.root], "unknown_issuer")
    line = get_line(g)
    assert ('the issuer "%s" is not trusted or an intermediate is missing: the server sent only '
            'its own certificate' % INTER) in line, g
    assert why in line and "so moat cannot tell which" in line, g
    fix = fix_line(g)
    assert "configure the server with the full chain" in fix and "--cafile FILE" in fix, g
    assert "moat cannot tell which" in flat(t.text.split("  cause  ")[1]), t
    assert "result undetermined" in flat(t.text), t
    check_notes(t, j, 'its issuer "%s" is not trusted here or was not sent' % INTER)
    ic = j.json["hops"][0]["tls"]["issuer_check"]
    assert ic["diagnosis"] == "undetermined" and ic["fetches"] == [], ic
    assert why in ic["note"], ic


# -- (e) fetches that fail: bounded, with a clear fallback ----------------------------------------


BAD = [
    ("/hang", "no complete answer in the time the issuer lookup has"),
    ("/huge", "the answer is larger than 64 KiB (moat stopped reading there)"),
    ("/garbage", "the answer is not a certificate"),
    ("/missing", "the server answered 404"),
    ("/to-https", "which is not an http:// URL: not followed"),
    ("/to-ldap", "which is not an http:// URL: not followed"),
    ("/loop", "more than 2 redirects: not followed"),
    ("/root.der", 'none of which issued "CN=example.test"'),
]


@pytest.mark.parametrize("path,words", BAD, ids=[b[0].strip("/") for b in BAD])
def test_failed_fetch_falls_back_to_both_causes(path, words, apki, aia, servers, state, tmp_path,
                                                moat_bin):
    leaf, key = apki.leaf("e" + path.replace("/", "-").replace(".", "-"), [aia.url(path)])
    s = s_server(tmp_path, leaf, key)
    servers.append(s)
    args = url(s.port) + ["--cafile", apki.root, "--timeout", "3"]
    t0 = time.monotonic()
    g, t, j = run3(moat_bin, state, args, "unknown_issuer")
    elapsed = time.monotonic() - t0
    assert elapsed < 3 * 5, elapsed  # three runs, each within its --timeout (3 s) and slack
    line = get_line(g)
    assert 'the issuer "%s" is not trusted or an intermediate is missing' % INTER in line, g
    assert "fetching its issuer from %s failed (" % aia.url(path) in line, g
    assert words in line, (words, g)
    ic = j.json["hops"][0]["tls"]["issuer_check"]
    assert ic["diagnosis"] == "undetermined", ic
    assert len(ic["fetches"]) == 1 and ic["fetches"][0]["ok"] is False, ic
    assert words in ic["fetches"][0]["error"], ic
    assert ic["fetches"][0]["certificate"] is None
    assert "failed after" in t.text and words in flat(t.text), t
    check_notes(t, j, 'its issuer "%s" is not trusted here or was not sent' % INTER)


def test_hanging_fetch_is_cut_by_the_lookup_limit(apki, aia, servers, state, tmp_path, moat_bin):
    # With the default --timeout (30 s) the lookup still gives up after its own 5 s.
    leaf, key = apki.leaf("e-hang-default", [aia.url("/hang")])
    s = s_server(tmp_path, leaf, key)
    servers.append(s)
    t0 = time.monotonic()
    g = moat_client(moat_bin, state, "get", *url(s.port), "--cafile", apki.root, timeout=20)
    elapsed = time.monotonic() - t0
    assert g.rc == 5 and "no complete answer in the time the issuer lookup has" in g.stderr, g
    assert 4.5 < elapsed < 10, elapsed


def test_unreachable_aia_host(apki, servers, state, tmp_path, moat_bin):
    dead = "http://127.0.0.1:%d/inter.der" % free_port()
    leaf, key = apki.leaf("e-refused", [dead])
    s = s_server(tmp_path, leaf, key)
    servers.append(s)
    g = moat_client(moat_bin, state, "get", *url(s.port), "--cafile", apki.root)
    assert g.rc == 5, g
    assert "fetching its issuer from %s failed (connection refused" % dead in g.stderr, g
