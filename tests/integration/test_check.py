"""moat check against real servers on loopback, each finding shown present in a bad setup and
absent in its control:

- moat itself, configured as the docs advise (HSTS, security header fields, the plain-HTTP
  redirect): grade A+, exit 0, nothing above info;
- openssl s_server at its weakest (TLS 1.0, NULL and anonymous suites, DHE-1024, an RSA-1024
  key, client renegotiation), and the same without client renegotiation;
- certificate chains served by s_server from a test CA: complete, missing its intermediate
  (proven through the leaf's AIA URL), expired, for another name, out of order, with the root;
- nginx and HAProxy, weak and good;
- the ways a check cannot run (nothing listening, no name, bad options) and a check cut short
  by its connection budget;
- testssl.sh, once, against the weak s_server: every problem it reports, moat check reports.

Every report is checked for its contract too (check_servers.assert_well_formed): the exit
code is the worst finding's, and each finding above info carries evidence and a fix.
"""

import json
import subprocess

import pytest

from check_servers import (TESTSSL, S_SERVER_GOOD, WeakKeys, assert_well_formed, check,
                           haproxy, nginx, pem_bundle, s_server, weak_s_server)
from client_helpers import AiaPki, AiaServer
from helpers import Moat, clean_env, free_port
from conftest import _finish

# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------

CONTROL_SITE = "check.test"


def control_config(m, www):
    return f"""\
# written by tests/integration/test_check.py
listen 127.0.0.1:{m.port}
redirect_http 127.0.0.1:{m.http_port}
state {m.state}
workers 2
error_log stderr info
tls {{ tickets on; session_cache 1024 }}
site {CONTROL_SITE} {{
    root {www}
    hsts 1y include_subdomains
    header set X-Frame-Options DENY
    header set Referrer-Policy no-referrer
    header set Content-Security-Policy "default-src 'self'"
}}
"""


@pytest.fixture(scope="module")
def control_server(moat_bin, www, tmp_path_factory):
    """moat as the docs advise, its certificate from its own local CA (in its state folder)."""
    m = Moat(moat_bin, tmp_path_factory.mktemp("control"), name="control")
    m.write_config(control_config(m, www))
    m.wait_ports = [m.port, m.http_port]
    m.start()
    yield m
    _finish(m)


def check_control(moat_bin, m, *args, as_json=True):
    return check(moat_bin, "%s:%d" % (CONTROL_SITE, m.port), *args, state=m.state,
                 http_port=m.http_port, as_json=as_json, timeout=60)


@pytest.fixture(scope="module")
def control(moat_bin, control_server):
    """The control's report, made once for every test that needs a finding to be absent."""
    c = check_control(moat_bin, control_server)
    assert_well_formed(c)
    return c


@pytest.fixture(scope="module")
def weak_keys(tmp_path_factory):
    return WeakKeys(tmp_path_factory.mktemp("weak"))


@pytest.fixture
def peers():
    """Servers a test starts; each is stopped by its PID at the end."""
    made = []
    yield made
    for p in made:
        p.stop()


# ----------------------------------------------------------------------------------------------
# 1. The control: moat as the docs advise
# ----------------------------------------------------------------------------------------------


def test_moat_as_advised_gets_a_plus(moat_bin, control_server, control):
    d = control.doc
    assert control.rc == 0, control
    assert d["grade"] == "A+", control
    assert control.above("info") == set(), control
    assert d["host"] == CONTROL_SITE and d["port"] == control_server.port
    assert d["address"] == "127.0.0.1:%d" % control_server.port
    assert d["truncated"] is False
    assert {v for v, on in d["versions"].items() if on} == {"TLS 1.2", "TLS 1.3"}, d["versions"]
    assert all(d["versions"][v] is False for v in ("SSLv2", "SSLv3", "TLS 1.0", "TLS 1.1"))
    assert d["plain_http"]["redirects"] is True, d["plain_http"]
    assert d["plain_http"]["status"] == 308
    assert d["plain_http"]["location"].startswith("https://%s:%d/" % (CONTROL_SITE,
                                                                     control_server.port))
    r = d["resumption"]
    assert r["tls13_tickets"] is True and r["tls12_tickets"] is True, r
    assert r["tls12_session_ids"] is True, r  # moat's session cache (tls { session_cache })
    assert d["alpn"]["h2"] is True and d["alpn"]["http/1.1"] is True
    h = d["https"]
    assert h["verified"] is True and h["status"] == 200, h
    assert h["hsts_max_age"] == 31536000 and h["hsts_include_subdomains"] is True, h
    assert h["x_content_type_options"] and h["frame_protection"], h
    assert h["content_security_policy"] and h["referrer_policy"], h
    o = d["options"]
    assert o["compression"] is False and o["secure_renegotiation"] is True
    assert o["client_renegotiation"] is False and o["fallback_scsv"] is True
    assert o["heartbeat"] is False and o["extended_master_secret"] is True
    assert o["early_data_bytes"] == 0
    cert = d["certificate"]
    assert cert["names_match"] is True and cert["eku_server_auth"] is True
    assert cert["leaf_is_ca"] is False and cert["order_ok"] is True
    assert cert["root_sent"] is False and cert["sent"] == 2
    assert all(s.startswith("TLS_") for s in d["suites"]["TLS 1.3"])
    assert all("_ECDHE_" in s for s in d["suites"]["TLS 1.2"]), d["suites"]
    assert d["dh_bits"] == 0
    # The text report says the same.
    t = check_control(moat_bin, control_server, as_json=False)
    assert t.rc == 0, t.stderr
    assert t.stdout.startswith("moat check"), t.stdout[:300]
    assert "Grade A+" in t.stdout, t.stdout[:1000]


# ----------------------------------------------------------------------------------------------
# 2. openssl s_server at its weakest
# ----------------------------------------------------------------------------------------------

WEAK_FINDINGS = {
    "protocol.tls10_11": "medium",
    "suites.null": "critical",
    "suites.anonymous": "critical",
    "kex.dh_small": "medium",
    "cert.key_small": "high",
    "cert.untrusted": "critical",
    "tls.client_renegotiation": "medium",
    "protocol.no_tls13": "low",
    "http.no_h2": "low",
}


def test_weak_s_server(moat_bin, weak_keys, control, peers, tmp_path):
    s = weak_s_server(tmp_path, weak_keys)
    peers.append(s)
    c = check(moat_bin, "weak.test:%d" % s.port)
    assert_well_formed(c)
    d = c.doc
    for fid, sev in WEAK_FINDINGS.items():
        f = c.finding(fid)
        assert f is not None, (fid, c)
        assert f["severity"] == sev, f
        assert fid not in control.ids, (fid, control)
    assert d["grade"] == "T", c
    assert c.rc == 6, c
    assert d["versions"] == {"SSLv2": False, "SSLv3": False, "TLS 1.0": True, "TLS 1.1": True,
                             "TLS 1.2": True, "TLS 1.3": False}, d["versions"]
    assert d["dh_bits"] == 1024
    assert d["certificate"]["key"] == "RSA 1024" and d["certificate"]["key_bits"] == 1024
    assert d["options"]["client_renegotiation"] is True
    assert "TLS_RSA_WITH_NULL_SHA" in d["suites"]["TLS 1.2"]
    assert any("_anon_" in x for x in d["suites"]["TLS 1.2"])
    assert "1024" in c.finding("kex.dh_small")["evidence"]
    assert "TLS 1.0 and 1.1" in c.finding("protocol.tls10_11")["title"]
    assert d["truncated"] is False

    # OpenSSL 3 refuses client-initiated renegotiation unless told otherwise.
    s.stop()
    s2 = weak_s_server(tmp_path, weak_keys, reneg=False)
    peers.append(s2)
    c2 = check(moat_bin, "weak.test:%d" % s2.port)
    assert_well_formed(c2)
    assert c2.doc["options"]["client_renegotiation"] is False, c2.doc["options"]
    assert "tls.client_renegotiation" not in c2.ids, c2
    assert "protocol.tls10_11" in c2.ids  # the rest is as weak as before


def test_the_renegotiation_probe_does_not_depend_on_parallelism(moat_bin, weak_keys, peers,
                                                                tmp_path):
    """One connection at a time runs the jobs in order: the renegotiation probe must still
    know TLS 1.2 is offered (it waits for the version probes)."""
    s = weak_s_server(tmp_path, weak_keys)
    peers.append(s)
    c = check(moat_bin, "weak.test:%d" % s.port, "--parallel", "1")
    assert_well_formed(c)
    assert c.doc["options"]["client_renegotiation"] is True, c.doc["options"]
    assert "tls.client_renegotiation" in c.ids


# ----------------------------------------------------------------------------------------------
# 3. Certificate chains
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chains(pki, tmp_path_factory):
    """The suite's test CA (root -> intermediate -> leaves) and the chain files of each case."""
    d = tmp_path_factory.mktemp("chains")

    class C:
        pass

    c = C()
    c.pki = pki
    c.leaf = pki.issue(["chain.test"], "ec", stem="check-chain")
    # Out of order: the leaf, then the root, then the intermediate.
    c.out_of_order = pem_bundle(d / "root-inter.pem", pki.root, pki.inter)
    # The intermediate, then the root: in order, with the root.
    c.with_root = pem_bundle(d / "inter-root.pem", pki.inter, pki.root)
    return c


def cert_ids(chk, above="info"):
    return {i for i in chk.above(above) if i.startswith("cert.")}


def serve_chain(tmp_path, peers, cert, key, chain=None):
    s = s_server(tmp_path, cert, key, *S_SERVER_GOOD, chain=chain)
    peers.append(s)
    return s


def test_a_complete_chain(moat_bin, chains, peers, tmp_path):
    s = serve_chain(tmp_path, peers, chains.leaf.leaf, chains.leaf.key, chains.pki.inter)
    c = check(moat_bin, "chain.test:%d" % s.port, "--cafile", chains.pki.root)
    assert_well_formed(c)
    assert cert_ids(c) == set(), c
    assert not {i for i in c.ids if i.startswith("cert.")}, c  # not even cert.root_sent
    cert = c.doc["certificate"]
    assert cert["sent"] == 2 and cert["order_ok"] is True and cert["root_sent"] is False
    assert cert["names_match"] is True and cert["eku_server_auth"] is True
    assert cert["key"] == "EC prime256v1"
    assert c.doc["https"]["verified"] is True
    # s_server sends no HSTS and no security header fields: A, not A+.
    assert c.doc["grade"] == "A", c
    assert c.finding("http.no_hsts")["severity"] == "info"  # a local name (.test)
    assert "http.security_headers" in c.ids
    assert c.rc == 3  # the worst: http.security_headers (low)
    assert c.doc["versions"]["TLS 1.3"] is True and c.doc["alpn"]["h2"] is True


def test_an_intermediate_not_sent(moat_bin, peers, tmp_path):
    """The leaf alone; its AIA caIssuers URL serves the intermediate, which proves it is a
    missing intermediate and not an unknown CA. The same leaf with its intermediate is the
    control."""
    aia = AiaServer()
    try:
        p = AiaPki(tmp_path / "aia", aia.url)
        aia.files.update(p.served)
        leaf, key = p.leaf("aia-leaf", [aia.url("/inter.der")], name="chain.test")
        s = serve_chain(tmp_path, peers, leaf, key)
        c = check(moat_bin, "chain.test:%d" % s.port, "--cafile", p.root)
        assert_well_formed(c)
        f = c.finding("cert.chain_incomplete")
        assert f is not None, c
        assert f["severity"] == "high" and f["caps_grade"] == "B", f
        assert aia.url("/inter.der") in f["evidence"], f
        assert "cert.untrusted" not in c.ids
        assert c.doc["grade"] == "B" and c.rc == 5, c
        assert c.doc["certificate"]["sent"] == 1
        # Control: the full chain.
        s2 = serve_chain(tmp_path, peers, leaf, key, chain=p.inter)
        c2 = check(moat_bin, "chain.test:%d" % s2.port, "--cafile", p.root)
        assert_well_formed(c2)
        assert cert_ids(c2) == set(), c2
        assert c2.doc["https"]["verified"] is True
    finally:
        aia.stop()


def test_an_intermediate_not_sent_without_aia(moat_bin, chains, peers, tmp_path):
    """Without AIA, a missing intermediate cannot be told from an unknown CA: the finding is
    cert.untrusted, and its evidence names both causes."""
    s = serve_chain(tmp_path, peers, chains.leaf.leaf, chains.leaf.key)
    c = check(moat_bin, "chain.test:%d" % s.port, "--cafile", chains.pki.root)
    assert_well_formed(c)
    f = c.finding("cert.untrusted")
    assert f is not None, c
    assert "intermediate is missing" in f["evidence"], f
    assert c.doc["grade"] == "T" and c.rc == 6


def test_an_expired_leaf(moat_bin, chains, peers, tmp_path):
    exp = chains.pki.expired  # example.test, 2020-01-01 to 2020-02-01
    s = serve_chain(tmp_path, peers, exp.leaf, exp.key, chains.pki.inter)
    c = check(moat_bin, "example.test:%d" % s.port, "--cafile", chains.pki.root)
    assert_well_formed(c)
    assert {"cert.untrusted", "cert.expired"} <= c.ids, c
    assert c.finding("cert.expired")["severity"] == "critical"
    assert c.doc["certificate"]["days_left"] < 0
    assert c.doc["grade"] == "T" and c.rc == 6, c


def test_a_name_the_certificate_does_not_cover(moat_bin, chains, peers, tmp_path):
    s = serve_chain(tmp_path, peers, chains.leaf.leaf, chains.leaf.key, chains.pki.inter)
    c = check(moat_bin, "other.test:%d" % s.port, "--cafile", chains.pki.root)
    assert_well_formed(c)
    assert cert_ids(c), c
    f = c.finding("cert.untrusted") or c.finding("cert.name_mismatch")
    assert f is not None and f["caps_grade"] == "T", c
    assert "other.test" in f["evidence"] and "chain.test" in f["evidence"], f
    assert c.doc["certificate"]["names_match"] is False
    assert c.doc["grade"] == "T" and c.rc == 6, c


def test_a_chain_out_of_order(moat_bin, chains, peers, tmp_path):
    s = serve_chain(tmp_path, peers, chains.leaf.leaf, chains.leaf.key, chains.out_of_order)
    c = check(moat_bin, "chain.test:%d" % s.port, "--cafile", chains.pki.root)
    assert_well_formed(c)
    f = c.finding("cert.chain_order")
    assert f is not None and f["severity"] == "low", c
    assert c.doc["certificate"]["order_ok"] is False and c.doc["certificate"]["sent"] == 3
    # Clients sort it out: it still verifies, and the grade is not capped.
    assert c.doc["https"]["verified"] is True
    assert c.doc["grade"] == "A", c


def test_a_chain_with_its_root(moat_bin, chains, peers, tmp_path):
    s = serve_chain(tmp_path, peers, chains.leaf.leaf, chains.leaf.key, chains.with_root)
    c = check(moat_bin, "chain.test:%d" % s.port, "--cafile", chains.pki.root)
    assert_well_formed(c)
    f = c.finding("cert.root_sent")
    assert f is not None and f["severity"] == "info", c
    assert "cert.chain_order" not in c.ids, c
    assert cert_ids(c) == set(), c
    assert c.doc["certificate"]["root_sent"] is True and c.doc["certificate"]["order_ok"]
    assert c.doc["grade"] == "A", c


# ----------------------------------------------------------------------------------------------
# 4. nginx
# ----------------------------------------------------------------------------------------------

NGINX_WEAK = """\
        ssl_protocols TLSv1 TLSv1.1 TLSv1.2;
        ssl_ciphers 'ALL:@SECLEVEL=0';
        ssl_prefer_server_ciphers off;
"""

NGINX_GOOD = """\
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
        ssl_prefer_server_ciphers off;
        ssl_session_cache shared:CHECK:1m;
        add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
        add_header X-Content-Type-Options nosniff always;
        add_header X-Frame-Options DENY always;
        add_header Referrer-Policy no-referrer always;
        add_header Content-Security-Policy "default-src 'self'" always;
"""


def test_nginx_weak_and_good(moat_bin, pki, peers, tmp_path):
    rsa = pki.issue(["nginx.test"], "rsa", stem="check-nginx-rsa")
    weak = nginx(tmp_path, "nginx.test", rsa.chain, rsa.key, NGINX_WEAK)
    peers.append(weak)
    c = check(moat_bin, "nginx.test:%d" % weak.port, "--cafile", pki.root)
    assert_well_formed(c)
    assert "protocol.tls10_11" in c.ids, c
    # The client's order wins (ssl_prefer_server_ciphers off) and RSA key transport is on the
    # list (an RSA key, ALL).
    assert "suites.client_order" in c.ids, c
    assert "suites.some_without_forward_secrecy" in c.ids, c
    assert c.doc["server_order"]["TLS 1.2"] is False
    assert c.finding("http.no_hsts")["severity"] == "info", c  # a local name (.test)
    assert "suites.anonymous" in c.ids  # ALL has aNULL
    assert c.doc["grade"] == "F" and c.rc == 6, c
    weak.stop()

    ec = pki.issue(["nginx.test"], "ec", stem="check-nginx-ec")
    good = nginx(tmp_path, "nginx.test", ec.chain, ec.key, NGINX_GOOD)
    peers.append(good)
    g = check(moat_bin, "nginx.test:%d" % good.port, "--cafile", pki.root)
    assert_well_formed(g)
    assert g.above("low") == set(), g
    for fid in ("protocol.tls10_11", "suites.client_order", "suites.some_without_forward_secrecy",
                "http.no_hsts", "suites.anonymous", "http.no_h2", "http.security_headers"):
        assert fid not in g.ids, (fid, g)
    assert g.doc["grade"] in ("A", "A+"), g
    assert g.doc["https"]["hsts_max_age"] == 31536000
    assert g.doc["alpn"]["h2"] is True
    assert g.doc["resumption"]["tls12_session_ids"] is True  # ssl_session_cache


# ----------------------------------------------------------------------------------------------
# 5. HAProxy
# ----------------------------------------------------------------------------------------------


def test_haproxy_weak_and_good(moat_bin, pki, peers, tmp_path):
    rsa = pki.issue(["haproxy.test"], "rsa", stem="check-haproxy-rsa")
    crt = pem_bundle(tmp_path / "haproxy-rsa.pem", rsa.chain, rsa.key)
    weak = haproxy(tmp_path, "ssl crt %s ssl-min-ver TLSv1.0 ciphers ALL:@SECLEVEL=0" % crt)
    peers.append(weak)
    c = check(moat_bin, "haproxy.test:%d" % weak.port, "--cafile", pki.root)
    assert_well_formed(c)
    assert "protocol.tls10_11" in c.ids, c
    assert c.doc["versions"]["TLS 1.0"] is True and c.doc["versions"]["TLS 1.1"] is True
    weak.stop()

    ec = pki.issue(["haproxy.test"], "ec", stem="check-haproxy-ec")
    crt = pem_bundle(tmp_path / "haproxy-ec.pem", ec.chain, ec.key)
    good = haproxy(tmp_path, "ssl crt %s ssl-min-ver TLSv1.2 alpn h2,http/1.1" % crt)
    peers.append(good)
    g = check(moat_bin, "haproxy.test:%d" % good.port, "--cafile", pki.root)
    assert_well_formed(g)
    assert "protocol.tls10_11" not in g.ids, g
    assert g.doc["versions"]["TLS 1.0"] is False and g.doc["versions"]["TLS 1.1"] is False
    assert g.doc["versions"]["TLS 1.2"] is True and g.doc["versions"]["TLS 1.3"] is True
    assert "suites.anonymous" not in g.ids and "http.no_h2" not in g.ids, g
    assert {i for i in g.ids if i.startswith("cert.")} == set(), g
    assert g.doc["grade"] == "A", g


# ----------------------------------------------------------------------------------------------
# 6. When the check cannot run, and when it is cut short
# ----------------------------------------------------------------------------------------------


def test_nothing_listening(moat_bin):
    port = free_port()  # claimed for this process, and nothing listens on it
    c = check(moat_bin, "closed.test:%d" % port, as_json=True, timeout=60)
    assert c.rc == 1, c
    assert "127.0.0.1:%d" % port in c.stderr, c.stderr
    assert c.stdout.strip() == ""


def test_a_name_that_does_not_resolve(moat_bin):
    c = check(moat_bin, "no-such-host.invalid:443", connect=None, timeout=60)
    assert c.rc == 1, c
    assert "no-such-host.invalid" in c.stderr, c.stderr


@pytest.mark.parametrize("args", [[], ["--rate", "0"], ["--max-connections", "0"],
                                  ["--parallel", "abc"], ["--timeout"], ["--bogus"]])
def test_usage_errors(moat_bin, args):
    argv = [str(moat_bin), "check"] + args
    if args:
        argv.append("x.test:443")
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=clean_env(),
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 2, (args, p.returncode, p.stderr)
    assert p.stderr.strip(), args
    assert p.stdout.strip() == "" or p.stdout.startswith("usage"), p.stdout


def test_the_connection_budget_cuts_the_check_short(moat_bin, control_server):
    c = check_control(moat_bin, control_server, "--max-connections", "5")
    assert c.doc is not None, c
    assert c.doc["truncated"] is True, c.doc
    assert c.doc["connections"] <= 5 + 2, c.doc["connections"]
    assert c.rc == c.doc["exit_code"] == 1, c  # not judged: no grade, exit 1
    assert c.doc["grade"] == "?" and "stopped at its bounds" in c.doc["grade_rule"]
    t = check_control(moat_bin, control_server, "--max-connections", "5", as_json=False)
    assert "stopped by its bounds" in t.stdout.splitlines()[0], t.stdout[:300]


# ----------------------------------------------------------------------------------------------
# 7. testssl.sh: what it calls a problem on the weak s_server, moat check reports too
# ----------------------------------------------------------------------------------------------

# testssl's id -> the moat check findings that name the same problem (any of them will do).
TESTSSL_TO_MOAT = {
    "SSLv2": {"protocol.sslv2"},
    "SSLv3": {"protocol.sslv3"},
    "TLS1": {"protocol.tls10_11"},
    "TLS1_1": {"protocol.tls10_11"},
    "cipherlist_NULL": {"suites.null"},
    "cipherlist_aNULL": {"suites.anonymous"},
    "cipherlist_EXPORT": {"suites.export"},
    "cipherlist_LOW": {"suites.des", "suites.export", "suites.rc4"},
    "cipherlist_3DES_IDEA": {"suites.3des"},
    "FS": {"suites.no_forward_secrecy"},   # testssl 3.1's name
    "PFS": {"suites.no_forward_secrecy"},  # testssl 3.0's name
    "DH_groups": {"kex.dh_weak", "kex.dh_small"},
    "LOGJAM": {"kex.dh_weak", "kex.dh_small", "suites.export"},
    "LOGJAM-common_primes": {"kex.dh_weak", "kex.dh_small"},
    "FREAK": {"suites.export"},
    "secure_renego": {"vuln.insecure_renegotiation"},
    "secure_client_renego": {"tls.client_renegotiation"},
    "BREACH": {"http.breach"},
    "CRIME_TLS": {"vuln.crime"},
    "heartbleed": {"vuln.heartbleed"},
    "SWEET32": {"suites.3des"},
    "POODLE_SSL": {"protocol.sslv3"},
    "fallback_SCSV": {"tls.no_fallback_scsv"},
    "DROWN": {"protocol.sslv2"},
    "RC4": {"suites.rc4"},
    "cipherlist_AVERAGE": {"suites.cbc"},  # its "average" class: SEED and 128/256-bit CBC
    "LUCKY13": {"suites.cbc"},
    "BEAST": {"vuln.beast"},
    "BEAST_CBC_TLS1": {"vuln.beast"},
    "BEAST_CBC_SSL3": {"vuln.beast"},
}

NOT_OK = {"LOW", "MEDIUM", "HIGH", "CRITICAL"}


@pytest.mark.skipif(TESTSSL is None, reason="testssl.sh not installed (scripts/install-deps)")
def test_testssl_finds_nothing_that_moat_check_misses(moat_bin, weak_keys, peers, tmp_path):
    """One testssl.sh run (about a minute: it is slow), protocols, cipher categories, forward
    secrecy and vulnerabilities, against the weak s_server; then moat check against the same."""
    s = weak_s_server(tmp_path, weak_keys)
    peers.append(s)
    out = tmp_path / "testssl.json"
    env = clean_env({"HOME": str(tmp_path), "TERM": "dumb"})
    p = subprocess.run([TESTSSL, "--quiet", "--color", "0", "--warnings", "off",
                        "--nodns", "none", "--connect-timeout", "5", "--openssl-timeout", "5",
                        "--jsonfile", str(out), "--ip", "127.0.0.1", "-p", "-s", "-f", "-U",
                        "weak.test:%d" % s.port],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
                       stdin=subprocess.DEVNULL)
    assert out.exists(), (p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    entries = json.loads(out.read_text())
    bad = {}
    for e in entries:
        if e.get("severity") in NOT_OK:
            bad.setdefault(e["id"], []).append("%s: %s" % (e["severity"], e.get("finding", "")))
    # testssl saw the weak server for what it is (else this test would compare nothing).
    assert {"TLS1", "cipherlist_NULL", "cipherlist_aNULL", "secure_client_renego"} <= set(bad), bad

    # Every problem testssl names has its counterpart here: a new one fails until it is mapped.
    unmapped = {tid: words for tid, words in bad.items() if tid not in TESTSSL_TO_MOAT}
    assert not unmapped, ("testssl names problems this test does not map", unmapped)

    c = check(moat_bin, "weak.test:%d" % s.port)
    assert_well_formed(c)
    missed = {tid: words for tid, words in bad.items() if not TESTSSL_TO_MOAT[tid] & c.ids}
    assert not missed, ("testssl reports problems moat check does not", missed, sorted(c.ids))
