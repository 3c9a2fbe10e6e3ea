"""ALPN (RFC 7301): moat speaks h2, http/1.1 and http/1.0, picks h2 over http/1.1 and http/1.1
over http/1.0, and refuses a client that offers only other protocols with
no_application_protocol, logging what it offered. Checked with curl and openssl s_client.
"""

import re

from helpers import curl, log_after, s_client, s_client_text, wait_for


def alpn_of(text):
    m = re.search(r"ALPN protocol: (\S+)", text)
    return m.group(1) if m else None


def test_curl_http10_is_served(server, pki, tmp_path):
    # curl -0 offers only "http/1.0" in its ALPN list.
    r = curl(tmp_path, "https://example.test:%d/a.txt" % server.port, "-0", port=server.port,
             cacert=pki.root)
    assert r.rc == 0, r.stderr
    assert r.status == 200 and r.body == b"file A\n"
    assert "ALPN: server accepted http/1.0" in r.stderr or "ALPN, server accepted to use http/1.0" \
        in r.stderr, r.stderr


def test_s_client_http10_alpn(server):
    p = s_client(server.port, "-alpn", "http/1.0",
                 send=b"GET /a.txt HTTP/1.0\r\nHost: example.test\r\n\r\n")
    text = s_client_text(p)
    assert alpn_of(text) == "http/1.0", text[-2000:]
    assert "file A" in text


def test_http11_preferred_when_both_offered(server):
    p = s_client(server.port, "-alpn", "http/1.0,http/1.1",
                 send=b"GET /a.txt HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
    assert alpn_of(s_client_text(p)) == "http/1.1"


def test_h2_preferred_when_offered(server):
    p = s_client(server.port, "-alpn", "http/1.1,h2", send=b"")
    assert alpn_of(s_client_text(p)) == "h2"


def test_only_unknown_protocols_get_the_alert_and_a_log_line(server):
    mark = len(server.stderr())
    p = s_client(server.port, "-alpn", "h2c,spdy/3.1", send=b"")
    text = s_client_text(p)
    assert re.search(r"alert no application protocol|SSL alert number 120", text), text[-2000:]
    assert "file A" not in text
    assert log_after(server, mark, r"no common application protocol: the client offered h2c, "
                                   r"spdy/3\.1; moat speaks h2 \(where it is on\), "
                                   r"http/1\.1 and http/1\.0")
