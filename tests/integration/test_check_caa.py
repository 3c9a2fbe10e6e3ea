"""moat check's CAA lookup (RFC 8659) against Knot DNS on loopback: the set at the name, the
set inherited from a parent, none at all (the info finding with its fix), and a resolver that
does not answer (the fact stays unknown, the check still ends)."""

import json
import socket
import subprocess

import pytest

from acme_helpers import Knot, have_knot
from helpers import free_port, start_s_server

pytestmark = pytest.mark.skipif(not have_knot(), reason="knot not installed")

RECORDS = """www.example.test. CAA 0 issue "letsencrypt.org"
www.example.test. CAA 0 iodef "mailto:sec@example.test"
shop.example.test. CAA 0 issue ";"
deep.shop.example.test. A 127.0.0.1
"""


@pytest.fixture(scope="module")
def knot(tmp_path_factory):
    k = Knot(tmp_path_factory.mktemp("knot"), records=RECORDS).start()
    yield k
    k.stop()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("srv")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "k.pem"), "-out",
                    str(d / "c.pem"), "-days", "30", "-subj", "/CN=www.example.test"],
                   check=True, capture_output=True, timeout=30)
    port = free_port()
    p = start_s_server(port, ["-cert", str(d / "c.pem"), "-key", str(d / "k.pem"), "-www"])
    yield port
    p.terminate()
    p.wait(timeout=10)


def check(moat_bin, name, port, resolver):
    r = subprocess.run([moat_bin, "check", "--json", "--connect", "127.0.0.1",
                        "--http-port", "off", "--resolver", resolver, "%s:%d" % (name, port)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode not in (1, 2), r.stderr
    return json.loads(r.stdout)


def ids(doc):
    return {f["id"] for f in doc["findings"]}


def test_a_caa_set_at_the_name(moat_bin, knot, tls_server):
    d = check(moat_bin, "www.example.test", tls_server, knot.addr)
    assert d["caa"]["present"] is True
    assert d["caa"]["owner"] == "www.example.test"
    assert 'issue "letsencrypt.org"' in d["caa"]["records"]
    assert "iodef" in d["caa"]["records"]
    assert "dns.no_caa" not in ids(d)


def test_a_caa_set_from_a_parent(moat_bin, knot, tls_server):
    d = check(moat_bin, "deep.shop.example.test", tls_server, knot.addr)
    assert d["caa"]["present"] is True
    assert d["caa"]["owner"] == "shop.example.test"
    assert 'issue ";"' in d["caa"]["records"]


def test_no_caa_anywhere_is_an_info_finding_with_the_record_to_add(moat_bin, knot, tls_server):
    d = check(moat_bin, "other.example.test", tls_server, knot.addr)
    assert d["caa"]["present"] is False
    f = [f for f in d["findings"] if f["id"] == "dns.no_caa"]
    assert len(f) == 1 and f[0]["severity"] == "info"
    assert "CAA 0 issue" in f[0]["fix"]["nginx"]


def test_a_silent_resolver_leaves_caa_unknown(moat_bin, tls_server):
    # A UDP port nobody answers on: the lookup times out (ldns: 5 s, 2 tries) and the check
    # reports the rest.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        d = check(moat_bin, "www.example.test", tls_server, "127.0.0.1:%d" % s.getsockname()[1])
    finally:
        s.close()
    assert d["caa"]["present"] is None
    assert "dns.no_caa" not in ids(d)
    assert d["versions"]["TLS 1.3"] is True
