"""`moat trace` lists the TLS messages that really crossed, for TLS 1.2 and 1.3, against moat
serve, nginx and openssl s_server, checked against `openssl s_client -msg` on the same setup;
`--json` is valid JSON and holds the same facts as the text diagram.
"""

import re

import pytest

from client_helpers import (ClientPki, moat_client, nginx, resolve, s_client_messages,
                            s_client_resumed_messages, s_server, tls_messages)

FLOW13 = [(">", "ClientHello"), ("<", "ServerHello"), ("<", "ChangeCipherSpec"),
          ("<", "EncryptedExtensions"), ("<", "Certificate"), ("<", "CertificateVerify"),
          ("<", "Finished"), (">", "ChangeCipherSpec"), (">", "Finished")]
FLOW12 = [(">", "ClientHello"), ("<", "ServerHello"), ("<", "Certificate"),
          ("<", "ServerKeyExchange"), ("<", "ServerHelloDone"), (">", "ClientKeyExchange"),
          (">", "ChangeCipherSpec"), (">", "Finished"), ("<", "NewSessionTicket"),
          ("<", "ChangeCipherSpec"), ("<", "Finished")]


@pytest.fixture(scope="module")
def cpki(tmp_path_factory):
    return ClientPki(tmp_path_factory.mktemp("cpki")).make_client_set()


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "client-state"
    d.mkdir()
    return d


@pytest.fixture(params=["moat", "nginx", "s_server"])
def server(request, cpki, tmp_path, moat, www):
    """One server of each kind with the same certificate chain; yields its port."""
    kind = request.param
    if kind == "moat":
        m = moat("serve")
        m.start(["serve", "--root", www, "--listen", "127.0.0.1:%d" % m.port, "--cert",
                 cpki.good.chain, "--key", cpki.good.key])
        yield kind, m.port
        return
    if kind == "nginx":
        # nginx 1.22 leaves TLS 1.3 off unless asked (on by default from 1.23.4).
        s = nginx(tmp_path, www, cert=cpki.good.chain, key=cpki.good.key,
                  extra="        ssl_protocols TLSv1.2 TLSv1.3;\n")
    else:
        s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, chain=cpki.inter)
    try:
        yield kind, s.port
    finally:
        s.stop()


def version_args(v):
    return (["--tls-min", "1.3"], ["-tls1_3"]) if v == "1.3" else (["--tls-max", "1.2"],
                                                                   ["-tls1_2"])


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_trace_lists_the_messages_that_crossed(version, server, cpki, state, moat_bin):
    kind, port = server
    ours_args, sc_args = version_args(version)
    j = moat_client(moat_bin, state, "trace", "--json", "https://example.test:%d/" % port,
                    resolve("example.test", port), "--cafile", cpki.root, *ours_args)
    assert j.rc == 0, j
    doc = j.json
    tls = doc["hops"][0]["tls"]
    assert tls["version"] == "TLSv%s" % version
    ours = tls_messages(doc)
    if version == "1.3":
        assert ours == FLOW13, (kind, ours)
    else:
        # nginx and moat send session tickets in TLS 1.2; OpenSSL's s_server does too.
        assert ours == FLOW12, (kind, ours)
    theirs = s_client_messages(port, "example.test", *sc_args)
    assert [(d, t) for d, t, _ in theirs] == tls_messages(doc, with_header_only=False), (
        kind, theirs)
    # Same server, same chain: the Certificate message has the same size for both clients.
    size = {(m["direction"], m["type"]): m["size"] for m in tls["messages"]}
    their_size = {(d, t): n for d, t, n in theirs}
    assert size[("server->client", "Certificate")] == their_size[("<", "Certificate")]


RESUMED13 = [(">", "ClientHello"), ("<", "ServerHello"), ("<", "ChangeCipherSpec"),
             ("<", "EncryptedExtensions"), ("<", "Finished"), (">", "ChangeCipherSpec"),
             (">", "Finished")]
RESUMED12 = [(">", "ClientHello"), ("<", "ServerHello"), ("<", "ChangeCipherSpec"),
             ("<", "Finished"), (">", "ChangeCipherSpec"), (">", "Finished")]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_resumed_session_is_shown(version, server, cpki, state, moat_bin, tmp_path):
    kind, port = server
    ours_args, sc_args = version_args(version)
    j = moat_client(moat_bin, state, "trace", "--json", "--resume",
                    "https://example.test:%d/" % port, resolve("example.test", port),
                    "--cafile", cpki.root, *ours_args)
    assert j.rc == 0, j
    first, second = j.json["hops"]
    assert first["tls"]["resumed"] is False and first["repeat"] is False
    assert second["repeat"] is True
    assert second["tls"]["resume_offered_from"] == 1
    assert second["tls"]["resumed"] is True, (kind, second["tls"])
    assert second["tls"]["certificates_sent"] == []
    ours = tls_messages(j.json, hop=1)
    # A server may renew the ticket during a TLS 1.2 resumption (NewSessionTicket after
    # ServerHello); the rest is fixed by the protocol.
    assert [m for m in ours if m[1] != "NewSessionTicket"] == (
        RESUMED13 if version == "1.3" else RESUMED12), (kind, ours)
    theirs = s_client_resumed_messages(port, "example.test", tmp_path, *sc_args)
    assert [(d, t) for d, t, _ in theirs] == tls_messages(j.json, hop=1, with_header_only=False), (
        kind, theirs)
    t = moat_client(moat_bin, state, "trace", "--resume", "https://example.test:%d/" % port,
                    resolve("example.test", port), "--cafile", cpki.root, *ours_args)
    assert "Connection 2: the same request again, offering connection 1's session" in t.text
    assert "session     resumed from connection 1" in t.text
    assert "Certificates: none crossed: the session was resumed" in t.text
    assert "resumption: the server took the offered" in t.text


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_encryption_starts_where_the_version_says(version, cpki, state, moat_bin, tmp_path,
                                                  www):
    s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, chain=cpki.inter)
    try:
        ours_args, _ = version_args(version)
        j = moat_client(moat_bin, state, "trace", "--json", "https://example.test:%d/" % s.port,
                        resolve("example.test", s.port), "--cafile", cpki.root, *ours_args)
        assert j.rc == 0, j
        enc = {(m["direction"][0], m["type"]): m["encrypted"]
               for m in j.json["hops"][0]["tls"]["messages"] if not m["post_handshake"]}
        assert enc[("c", "ClientHello")] is False
        assert enc[("s", "ServerHello")] is False
        if version == "1.3":
            assert enc[("s", "EncryptedExtensions")] is True
            assert enc[("s", "Certificate")] is True
            assert enc[("s", "CertificateVerify")] is True
        else:
            assert enc[("s", "Certificate")] is False
            assert enc[("s", "ServerKeyExchange")] is False
            assert enc[("c", "ClientKeyExchange")] is False
        assert enc[("c", "Finished")] is True
        assert enc[("s", "Finished")] is True
        t = moat_client(moat_bin, state, "trace", "https://example.test:%d/" % s.port,
                        resolve("example.test", s.port), "--cafile", cpki.root, *ours_args)
        if version == "1.3":
            assert "TLS 1.3 only: the server's extensions, already encrypted" in t.text
            assert "TLS 1.3: a no-op, only for middleboxes" in t.text
            assert re.search(r"\|<=+ Certificate", t.text), t
        else:
            assert "TLS 1.2 only: the server's ECDHE share" in t.text
            assert "TLS 1.2: the client encrypts from here on" in t.text
            assert re.search(r"\|<-+ Certificate", t.text), t
    finally:
        s.stop()


def test_json_holds_the_same_facts_as_the_text(server, cpki, state, moat_bin):
    kind, port = server
    args = ["https://example.test:%d/" % port, resolve("example.test", port), "--cafile",
            cpki.root]
    j = moat_client(moat_bin, state, "trace", "--json", *args)
    t = moat_client(moat_bin, state, "trace", *args)
    assert j.rc == 0 and t.rc == 0, (j, t)
    doc = j.json
    assert doc["moat_trace"] == 1
    assert doc["result"]["ok"] is True and doc["result"]["cause"] == "ok"
    hop = doc["hops"][0]
    tls = hop["tls"]
    text = t.text
    # Negotiated parameters.
    v = {"TLSv1.3": "TLS 1.3", "TLSv1.2": "TLS 1.2"}[tls["version"]]
    # openssl s_server picks no ALPN protocol unless told to.
    alpn = tls["alpn"] or "none (the server did not pick a protocol)"
    for label, value in (("version", v), ("cipher", tls["cipher"]), ("key group", tls["group"]),
                         ("signature", tls["signature_scheme"]), ("ALPN", alpn),
                         ("SNI", tls["sni"])):
        assert value, (label, tls)
        assert re.search(r"^  %s\s+%s$" % (re.escape(label), re.escape(value)), text, re.M), (
            label, value, text)
    assert tls["alpn"] == ("http/1.1" if kind != "s_server" else None)
    assert tls["sni"] == "example.test"
    assert tls["resumed"] is False
    # Every message, in the same order, with its size.
    lines = [l for l in text.splitlines() if re.match(r"^\s+\d+\.\d+ ms \|", l)]
    tls_lines = [l for l in lines if "TCP connect" not in l and not re.search(
        r"\| ?[<=-]*[= -](GET|\d{3} |body )", l)]
    msgs = tls["messages"]
    assert len(tls_lines) == len(msgs), (tls_lines, msgs)
    for line, m in zip(tls_lines, msgs):
        name = m["type"] if m["record"] != "alert" else "ALERT " + m["alert"]["description"]
        assert name in line, (line, m)
        # Sizes of messages that do not change between two runs (signatures and tickets do).
        if m["type"] in ("Certificate", "Finished", "EncryptedExtensions", "ServerHelloDone"):
            assert "%d B" % m["size"] in line, (line, m)
        arrow = "<" if m["direction"] == "server->client" else ">"
        assert arrow in line
        assert ("=" * 3 in line) == m["encrypted"], (line, m)
    # Certificates as sent and the verified path.
    sent = tls["certificates_sent"]
    assert [c["subject"] for c in sent] == ["CN=example.test", "CN=moat test intermediate"]
    assert sent[0]["names"] == ["DNS:example.test", "DNS:www.example.test"]
    assert sent[0]["issuer"] == "CN=moat test intermediate"
    for c in sent:
        assert c["subject"] in text and c["not_after"] in text
    assert "DNS:example.test, DNS:www.example.test" in text
    path = tls["verified_path"]
    assert [c["subject"] for c in path] == ["CN=example.test", "CN=moat test intermediate",
                                            "CN=moat test root"]
    assert tls["path_complete"] is True
    assert tls["root_source"] == "--cafile %s" % cpki.root
    assert "<- CN=moat test root [trusted root, from this machine]" in text
    assert tls["verify"]["ok"] is True and tls["verify"]["kind"] == "ok"
    # HTTP heads and timings.
    http = hop["http"]
    assert http["status"] == 200
    assert http["request_line"] == "GET / HTTP/1.1"
    assert "  > GET / HTTP/1.1" in text
    assert "  < " + http["status_line"] in text
    assert ["Host", "example.test:%d" % port] in http["request_headers"]
    assert "body: %d bytes" % http["body_bytes"] in text
    tm = hop["timings_ms"]
    assert 0 <= tm["dns"] <= tm["total"]
    assert tm["tcp_connect"] > 0 and tm["tls_handshake"] > 0
    assert tm["request_sent"] <= tm["first_byte"] <= tm["head"] <= tm["done"] <= tm["total"]
    assert hop["dns"]["from_resolve"] is True
    assert hop["tcp"]["peer"] == "127.0.0.1:%d" % port
    assert "Result: OK, 200" in text


def test_trace_prints_no_body_and_dns_of_localhost(cpki, state, moat, moat_bin, www):
    m = moat("serve")
    m.start(["serve", "--root", www, "--listen", "127.0.0.1:%d" % m.port, "--cert",
             cpki.good.chain, "--key", cpki.good.key])
    t = moat_client(moat_bin, state, "trace", "--insecure", "https://localhost:%d/a.txt" % m.port,
                    "--cafile", cpki.root)
    assert t.rc == 0, t
    assert "file A" not in t.text
    assert re.search(r"DNS\s+localhost -> 127\.0\.0\.1", t.text), t
    assert "WARNING" in t.stderr and "--insecure" in t.stderr
    assert "the certificate failed: name_mismatch" in t.text


def test_hello_retry_request_is_named(cpki, state, moat_bin, tmp_path):
    # The server accepts only P-384: moat's first key share is X25519, so the server asks again.
    s = s_server(tmp_path, cpki.good.leaf, cpki.good.key, "-tls1_3", "-groups", "P-384",
                 chain=cpki.inter)
    try:
        j = moat_client(moat_bin, state, "trace", "--json", "https://example.test:%d/" % s.port,
                        resolve("example.test", s.port), "--cafile", cpki.root)
        assert j.rc == 0, j
        types = [t for _, t in tls_messages(j.json)]
        assert types[:3] == ["ClientHello", "HelloRetryRequest", "ClientHello"] or \
            types[:4] == ["ClientHello", "HelloRetryRequest", "ChangeCipherSpec", "ClientHello"], \
            types
        assert j.json["hops"][0]["tls"]["group"] == "P-384"
        t = moat_client(moat_bin, state, "trace", "https://example.test:%d/" % s.port,
                        resolve("example.test", s.port), "--cafile", cpki.root)
        assert "HelloRetryRequest" in t.text and "one more round trip" in t.text
    finally:
        s.stop()


def test_failed_trace_shows_how_far_it_got(cpki, state, moat_bin, tmp_path):
    s = s_server(tmp_path, cpki.expired.leaf, cpki.expired.key, chain=cpki.inter)
    try:
        t = moat_client(moat_bin, state, "trace", "https://example.test:%d/" % s.port,
                        resolve("example.test", s.port), "--cafile", cpki.root)
        assert t.rc == 5, t
        # The server's flight arrived, the client refused it with an alert, no request went out.
        assert re.search(r"\|<=+ Certificate", t.text)
        assert re.search(r"\|== ALERT certificate_expired \(fatal\)", t.text), t
        assert "GET / HTTP/1.1" not in t.text
        assert "X  stopped here: certificate expired" in t.text
        assert "EXPIRED" in t.text
        j = moat_client(moat_bin, state, "trace", "--json", "https://example.test:%d/" % s.port,
                        resolve("example.test", s.port), "--cafile", cpki.root)
        assert j.json["hops"][0]["http"] is None
        alerts = [m for m in j.json["hops"][0]["tls"]["messages"] if m["record"] == "alert"]
        assert alerts[0]["direction"] == "client->server"
        assert alerts[0]["alert"]["description"] == "certificate_expired"
    finally:
        s.stop()
