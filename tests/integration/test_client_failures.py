"""`moat get` and `moat trace` name the cause of every broken HTTPS setup the issue lists.

Each test builds the broken setup with a real server (moat serve, openssl s_server, nginx),
then checks that `moat get` prints the one-line cause with the right exit code, and that
`moat trace` (text and --json) names the same cause, with the specifics (names, dates, alerts).
"""

import http.server
import threading

import pytest

from client_helpers import (ClientPki, EchoServer, Silent, moat_client, nginx, resolve,
                            s_server)
from helpers import free_port

EXIT = {"dns": 3, "refused": 3, "closed": 3, "timeout": 7, "certificate": 5,
        "no_common_version": 4, "no_common_cipher": 4, "client_cert_required": 4,
        "client_cert_rejected": 4, "server_speaks_http": 4, "server_speaks_tls": 4,
        "http_status": 22, "ok": 0}


@pytest.fixture(scope="module")
def cpki(tmp_path_factory):
    return ClientPki(tmp_path_factory.mktemp("cpki")).make_client_set()


@pytest.fixture
def servers():
    """Collects the servers a test starts and stops them all at the end, by PID."""
    made = []
    yield made
    for s in made:
        s.stop()


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "client-state"
    d.mkdir()
    return d


def expect(moat_bin, state, args, cause, kind=None, words=()):
    """get, trace and trace --json all name `cause` (and the certificate `kind`)."""
    code = EXIT[cause]
    g = moat_client(moat_bin, state, "get", *args)
    assert g.rc == code, g
    head = "certificate %s" % kind if kind else cause
    assert ("moat get: %s: " % head) in g.stderr, g
    assert g.stderr.count("\n") <= 3, g  # one line of cause, one of fix (+ warnings)
    assert "  fix: " in g.stderr, g
    j = moat_client(moat_bin, state, "trace", "--json", *args)
    assert j.rc == code, j
    res = j.json["result"]
    assert res["cause"] == cause, j
    assert res["ok"] is False
    assert res["exit_code"] == code
    if kind:
        assert res["certificate_kind"] == kind, j
    t = moat_client(moat_bin, state, "trace", *args)
    assert t.rc == code, t
    assert "FAILED at " in t.text and head in t.text, t
    assert "  fix    " in t.text, t
    for w in words:
        assert w in g.stderr, (w, g)
        assert w in t.text.replace("\n", " ").replace("  ", " ") or w in res["detail"], (w, t)
    return g, j, t


def url(port, host="example.test", scheme="https"):
    return ["%s://%s:%d/" % (scheme, host, port), resolve(host, port)]


def moat_server(moat, cert, key, www, extra=()):
    m = moat("serve")
    m.start(["serve", "--root", www, "--listen", "127.0.0.1:%d" % m.port, "--cert", cert,
             "--key", key] + list(extra))
    return m


# -- certificates ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["s_server", "nginx"])
def test_expired(kind, cpki, servers, state, tmp_path, moat_bin, www):
    if kind == "s_server":
        s = s_server(tmp_path, cpki.expired.leaf, cpki.expired.key, chain=cpki.inter)
    else:
        s = nginx(tmp_path, www, cert=cpki.expired.chain, key=cpki.expired.key)
    servers.append(s)
    expect(moat_bin, state, url(s.port) + ["--cafile", cpki.root], "certificate", "expired",
           words=["expired on 2020-02-01", "days ago"])


def test_not_yet_valid(cpki, servers, state, tmp_path, moat_bin):
    s = s_server(tmp_path, cpki.future.leaf, cpki.future.key, chain=cpki.inter)
    servers.append(s)
    expect(moat_bin, state, url(s.port) + ["--cafile", cpki.root], "certificate",
           "not_yet_valid", words=["valid only from 2040-01-01"])


@pytest.mark.parametrize("kind", ["moat", "nginx"])
def test_name_mismatch_lists_the_names(kind, cpki, servers, state, tmp_path, moat, moat_bin,
                                       www):
    if kind == "moat":
        s = moat_server(moat, cpki.good.chain, cpki.good.key, www)
    else:
        s = nginx(tmp_path, www, cert=cpki.good.chain, key=cpki.good.key)
        servers.append(s)
    expect(moat_bin, state, url(s.port, host="other.test") + ["--cafile", cpki.root],
           "certificate", "name_mismatch",
           words=['asked for "other.test"', "DNS:example.test, DNS:www.example.test"])


def test_ip_address_checked_against_ip_sans(cpki, servers, state, tmp_path, moat_bin):
    # The certificate has DNS names only: an IP URL is a mismatch, and no SNI is sent.
    s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, chain=cpki.inter)
    servers.append(s)
    _, j, _ = expect(moat_bin, state, ["https://127.0.0.1:%d/" % s.port, "--cafile", cpki.root],
                     "certificate", "name_mismatch", words=['asked for "127.0.0.1"'])
    assert j.json["hops"][0]["tls"]["sni"] is None


@pytest.mark.parametrize("kind", ["moat", "s_server"])
def test_unknown_issuer(kind, cpki, servers, state, tmp_path, moat, moat_bin, www):
    if kind == "moat":
        s = moat_server(moat, cpki.good.chain, cpki.good.key, www)
    else:
        s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, chain=cpki.inter)
        servers.append(s)
    # No --cafile: the test root is in neither the system store nor the (empty) local CA.
    _, j, t = expect(moat_bin, state, url(s.port), "certificate", "unknown_issuer",
                     words=['"CN=moat test root"'])
    sent = j.json["hops"][0]["tls"]["certificates_sent"]
    assert [c["subject"] for c in sent] == ["CN=example.test", "CN=moat test intermediate"]
    assert "Path built before verification stopped" in t.text


@pytest.mark.parametrize("kind", ["s_server", "nginx"])
def test_self_signed(kind, cpki, servers, state, tmp_path, moat_bin, www):
    if kind == "s_server":
        s = s_server(tmp_path, cpki.self_signed, cpki.self_key)
    else:
        s = nginx(tmp_path, www, cert=cpki.self_signed, key=cpki.self_key)
    servers.append(s)
    expect(moat_bin, state, url(s.port) + ["--cafile", cpki.root], "certificate", "self_signed",
           words=["self-signed certificate (CN=example.test)"])


def test_self_signed_trusted_explicitly_works(cpki, servers, state, tmp_path, moat_bin):
    s = s_server(tmp_path, cpki.self_signed, cpki.self_key)
    servers.append(s)
    g = moat_client(moat_bin, state, "get", *url(s.port), "--cafile", cpki.self_signed)
    assert g.rc == 0, g


@pytest.mark.parametrize("kind", ["s_server", "nginx"])
def test_leaf_alone_without_aia_names_both_causes(kind, cpki, servers, state, tmp_path, moat_bin,
                                                  www):
    # The server sends the leaf alone, although the intermediate issued it. The leaf names no
    # AIA URL to fetch its issuer from, so moat cannot tell a missing intermediate from an
    # untrusted CA and names both (test_client_issuer.py has the cases it can tell apart).
    if kind == "s_server":
        s = s_server(tmp_path, cpki.good.leaf, cpki.good.key)
    else:
        s = nginx(tmp_path, www, cert=cpki.good.leaf, key=cpki.good.key)
    servers.append(s)
    g, j, _ = expect(moat_bin, state, url(s.port) + ["--cafile", cpki.root], "certificate",
                     "unknown_issuer",
                     words=['the issuer "CN=moat test intermediate" is not trusted or an '
                            "intermediate is missing", "sent only its own certificate",
                            "names no caIssuers URL"])
    assert "full chain" in g.stderr and "--cafile FILE" in g.stderr, g
    tls = j.json["hops"][0]["tls"]
    assert len(tls["certificates_sent"]) == 1
    assert tls["issuer_check"]["diagnosis"] == "undetermined"


def test_wrong_key_usage(cpki, servers, state, tmp_path, moat_bin):
    s = s_server(tmp_path, cpki.client_only.leaf, cpki.client_only.key, chain=cpki.inter)
    servers.append(s)
    expect(moat_bin, state, url(s.port) + ["--cafile", cpki.root], "certificate",
           "bad_key_usage", words=["extendedKeyUsage is clientAuth"])


def test_revoked_with_crl(cpki, servers, state, tmp_path, moat_bin):
    s = s_server(tmp_path, cpki.revoked.leaf, cpki.revoked.key, chain=cpki.inter)
    servers.append(s)
    args = url(s.port) + ["--cafile", cpki.root]
    # Without --crl nothing is checked (and the leaf is otherwise fine).
    assert moat_client(moat_bin, state, "get", *args).rc == 0
    expect(moat_bin, state, args + ["--crl", cpki.crl], "certificate", "revoked",
           words=["listed as revoked", cpki.revoked.serial])


def test_crl_passes_a_good_certificate(cpki, servers, state, tmp_path, moat_bin):
    s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, chain=cpki.inter)
    servers.append(s)
    g = moat_client(moat_bin, state, "get", *url(s.port), "--cafile", cpki.root, "--crl",
                    cpki.crl)
    assert g.rc == 0, g


def test_crl_from_another_issuer_is_named(cpki, servers, state, tmp_path, moat_bin):
    s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, chain=cpki.inter)
    servers.append(s)
    expect(moat_bin, state, url(s.port) + ["--cafile", cpki.root, "--crl", cpki.root_crl],
           "certificate", "other",
           words=['--crl holds no CRL from "CN=moat test intermediate"'])


def test_crl_file_that_is_not_a_crl(cpki, state, moat_bin):
    g = moat_client(moat_bin, state, "get", "https://example.test/", "--crl", cpki.root)
    assert g.rc == 1, g
    assert "holds no PEM CRL" in g.stderr


# -- TLS parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["s_server-1.3-only", "s_server-1.2-only", "nginx-1.2-only"])
def test_no_common_version(case, cpki, servers, state, tmp_path, moat_bin, www):
    if case == "s_server-1.3-only":
        s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, "-tls1_3", chain=cpki.inter)
        extra = ["--tls-max", "1.2"]
    elif case == "s_server-1.2-only":
        s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, "-tls1_2", chain=cpki.inter)
        extra = ["--tls-min", "1.3"]
    else:
        s = nginx(tmp_path, www, cert=cpki.good.chain, key=cpki.good.key,
                  extra="        ssl_protocols TLSv1.2;\n")
        extra = ["--tls-min", "1.3"]
    servers.append(s)
    expect(moat_bin, state, url(s.port) + ["--cafile", cpki.root] + extra, "no_common_version",
           words=["protocol_version"])


@pytest.mark.parametrize("case", ["s_server-cipher", "s_server-group", "nginx-cipher"])
def test_no_common_cipher_or_group(case, cpki, servers, state, tmp_path, moat_bin, www):
    if case == "s_server-cipher":
        # RSA key exchange with CBC: nothing moat's strict client offers.
        s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, "-tls1_2", "-cipher",
                     "AES256-SHA256", chain=cpki.inter)
    elif case == "s_server-group":
        s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, "-tls1_3", "-groups", "ffdhe2048",
                     chain=cpki.inter)
    else:
        s = nginx(tmp_path, www, cert=cpki.good.chain, key=cpki.good.key,
                  extra="        ssl_protocols TLSv1.2;\n        ssl_ciphers AES128-SHA;\n")
    servers.append(s)
    _, j, _ = expect(moat_bin, state, url(s.port) + ["--cafile", cpki.root], "no_common_cipher",
                     words=["handshake_failure"])
    msgs = j.json["hops"][0]["tls"]["messages"]
    assert [m["type"] for m in msgs] == ["ClientHello", "Alert"]
    assert msgs[1]["alert"]["description"] == "handshake_failure"


# -- client certificates -----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["s_server-1.3", "s_server-1.2", "nginx"])
def test_server_requires_a_client_certificate(case, cpki, servers, state, tmp_path, moat_bin,
                                              www):
    if case.startswith("s_server"):
        extra = ["-tls1_2"] if case.endswith("1.2") else []
        s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, "-Verify", "1", "-CAfile",
                     cpki.ca_bundle, *extra, chain=cpki.inter)
    else:
        s = nginx(tmp_path, www, cert=cpki.good.chain, key=cpki.good.key,
                  extra="        ssl_verify_client on;\n"
                        "        ssl_client_certificate %s;\n" % cpki.ca_bundle)
    servers.append(s)
    want = {"s_server-1.3": "certificate_required", "s_server-1.2": "handshake_failure",
            "nginx": "answered 400"}[case]
    _, j, t = expect(moat_bin, state, url(s.port) + ["--cafile", cpki.root],
                     "client_cert_required", words=["CertificateRequest", want])
    tls = j.json["hops"][0]["tls"]
    assert tls["certificate_requested"] is True
    assert tls["client_certificate_sent"] is False
    assert "CertificateRequest" in t.text


@pytest.mark.parametrize("case", ["s_server-1.3", "s_server-1.2", "nginx"])
def test_client_certificate_rejected(case, cpki, servers, state, tmp_path, moat_bin, www):
    if case.startswith("s_server"):
        extra = ["-tls1_2"] if case.endswith("1.2") else []
        s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, "-Verify", "1",
                     "-verify_return_error", "-CAfile", cpki.other_root, *extra,
                     chain=cpki.inter)
        words = ["unknown_ca"]
    else:
        s = nginx(tmp_path, www, cert=cpki.good.chain, key=cpki.good.key,
                  extra="        ssl_verify_client on;\n"
                        "        ssl_client_certificate %s;\n" % cpki.other_root)
        words = ["answered 400"]
    servers.append(s)
    _, j, t = expect(moat_bin, state, url(s.port) + ["--cafile", cpki.root, "--cert",
                                                      cpki.client.chain, "--key", cpki.client.key],
                     "client_cert_rejected", words=words)
    assert j.json["hops"][0]["tls"]["client_certificate_sent"] is True
    if case.startswith("s_server"):
        # The note under the server's alert says what it meant here: about our certificate.
        want = "the server refuses the client certificate: it does not trust the CA that issued"
        notes = [m["note"] for m in j.json["hops"][0]["tls"]["messages"]
                 if m["record"] == "alert" and m["direction"] == "server->client"]
        assert notes and want in notes[0], notes
        assert want in " ".join(t.text.replace("|", " ").split()), t


@pytest.mark.parametrize("case", ["s_server", "nginx"])
def test_client_certificate_accepted(case, cpki, servers, state, tmp_path, moat_bin, www):
    if case == "s_server":
        s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, "-Verify", "1",
                     "-verify_return_error", "-CAfile", cpki.ca_bundle, chain=cpki.inter)
    else:
        s = nginx(tmp_path, www, cert=cpki.good.chain, key=cpki.good.key,
                  extra="        ssl_verify_client on;\n"
                        "        ssl_client_certificate %s;\n" % cpki.ca_bundle)
    servers.append(s)
    g = moat_client(moat_bin, state, "get", *url(s.port), "--cafile", cpki.root, "--cert",
                    cpki.client.chain, "--key", cpki.client.key)
    assert g.rc == 0, g


def test_client_key_that_does_not_match(cpki, state, moat_bin):
    g = moat_client(moat_bin, state, "get", "https://example.test/", "--cert", cpki.client.chain,
                    "--key", cpki.good.key)
    assert g.rc == 1, g
    assert "does not belong to the certificate" in g.stderr


# -- connection level --------------------------------------------------------------------------


def test_connection_refused(state, moat_bin):
    port = free_port()
    expect(moat_bin, state, ["https://127.0.0.1:%d/" % port], "refused",
           words=["127.0.0.1:%d" % port])


def test_timeout_names_the_step(state, moat_bin):
    s = Silent()
    try:
        _, j, t = expect(moat_bin, state, ["https://127.0.0.1:%d/" % s.port, "--timeout", "1"],
                         "timeout", words=["did not answer the ClientHello"])
        assert j.json["hops"][0]["tcp"]["connected"] is True
        assert "ClientHello" in t.text
    finally:
        s.stop()


def test_timeout_waiting_for_the_response(cpki, servers, state, tmp_path, moat_bin):
    # s_server without -www completes the handshake and never answers the request.
    s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, chain=cpki.inter, www=False)
    servers.append(s)
    _, j, _ = expect(moat_bin, state, url(s.port) + ["--cafile", cpki.root, "--timeout", "1"],
                     "timeout", words=["accepted the request but sent no answer"])
    hop = j.json["hops"][0]
    assert hop["tls"]["handshake_done"] is True
    assert hop["http"]["request_line"] == "GET / HTTP/1.1"
    assert hop["stage"] == "HTTP"


def test_server_closes_at_once(state, moat_bin):
    # A listener that accepts and closes: no TLS answer at all.
    import socket

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    stop = threading.Event()

    def loop():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
                c.close()
            except OSError:
                pass

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    try:
        expect(moat_bin, state, ["https://127.0.0.1:%d/" % port], "closed",
               words=["closed the connection right after the ClientHello"])
    finally:
        stop.set()
        th.join()
        lsock.close()


def test_dns_failure(state, moat_bin):
    expect(moat_bin, state, ["https://no-such-host.invalid/"], "dns",
           words=['"no-such-host.invalid" could not be resolved'])


class _PlainHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@pytest.mark.parametrize("kind", ["nginx", "moat-redirect", "python"])
def test_plain_http_on_the_tls_port(kind, cpki, servers, state, tmp_path, moat, moat_bin, www):
    if kind == "nginx":
        s = nginx(tmp_path, www)  # `listen PORT;` without ssl
        servers.append(s)
        port = s.port
    elif kind == "moat-redirect":
        # moat's plain listener that redirects to HTTPS: it answers a ClientHello in HTTP.
        m2 = moat("serve-redirect")
        m2.start(["serve", "--root", www, "--listen", "127.0.0.1:%d" % m2.port, "--cert",
                  cpki.good.chain, "--key", cpki.good.key, "--redirect-http",
                  "127.0.0.1:%d" % m2.http_port], ports=[m2.port, m2.http_port])
        port = m2.http_port
    else:
        httpd = http.server.HTTPServer(("127.0.0.1", 0), _PlainHandler)
        port = httpd.server_address[1]
        th = threading.Thread(target=httpd.serve_forever, daemon=True)
        th.start()

        class Stop:
            def stop(self):
                httpd.shutdown()
                httpd.server_close()

        servers.append(Stop())
    expect(moat_bin, state, url(port) + ["--cafile", cpki.root], "server_speaks_http",
           words=["port %d speaks plain HTTP" % port])


@pytest.mark.parametrize("kind", ["moat", "nginx", "s_server"])
def test_tls_on_the_plain_port(kind, cpki, servers, state, tmp_path, moat, moat_bin, www):
    if kind == "moat":
        s = moat_server(moat, cpki.good.chain, cpki.good.key, www)
    elif kind == "nginx":
        s = nginx(tmp_path, www, cert=cpki.good.chain, key=cpki.good.key)
        servers.append(s)
    else:
        s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, chain=cpki.inter)
        servers.append(s)
    expect(moat_bin, state, url(s.port, scheme="http"), "server_speaks_tls",
           words=["port %d speaks TLS" % s.port])


def test_http_error_status_is_exit_22(cpki, state, moat_bin):
    e = EchoServer(cpki.good.chain, cpki.good.key)
    try:
        g = moat_client(moat_bin, state, "get", "https://example.test:%d/status/404" % e.port,
                        resolve("example.test", e.port), "--cafile", cpki.root)
        assert g.rc == 22, g
        assert "the server answered 404" in g.stderr
        j = moat_client(moat_bin, state, "trace", "--json",
                        "https://example.test:%d/status/503" % e.port,
                        resolve("example.test", e.port), "--cafile", cpki.root)
        assert j.rc == 22
        assert j.json["result"]["cause"] == "http_status"
        assert j.json["result"]["status"] == 503
    finally:
        e.stop()
