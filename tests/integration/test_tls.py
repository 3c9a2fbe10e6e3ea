"""TLS policy as seen by real clients: versions (1.2 and 1.3 only), AEAD-ECDHE cipher suites,
groups, ALPN, certificate selection by SNI (exact, wildcard, default), ECDSA and RSA side by
side, the chain sent with the leaf, session resumption with tickets, and a KeyUpdate between
keep-alive requests."""

import re
import select
import socket
import ssl
import subprocess
import time

import pytest

from helpers import (OPENSSL, Conn, clean_env, client_context, curl, log_after, peer_cert_der,
                     s_client, s_client_handshake_ok, s_client_leaf_der, s_client_text,
                     standard_config)

HTTP_CLOSE = b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"


def url(server, path="/", host="example.test"):
    return "https://%s:%d%s" % (host, server.port, path)


# -- versions ----------------------------------------------------------------------------------


def test_tls12_with_curl(server, pki, tmp_path):
    r = curl(tmp_path, url(server), "--tlsv1.2", "--tls-max", "1.2", port=server.port,
             cacert=pki.root)
    assert r.rc == 0, r.stderr
    assert r.status == 200
    assert "SSL connection using TLSv1.2" in r.stderr


def test_tls13_with_curl(server, pki, tmp_path):
    r = curl(tmp_path, url(server), "--tlsv1.3", port=server.port, cacert=pki.root)
    assert r.rc == 0, r.stderr
    assert r.status == 200
    assert "SSL connection using TLSv1.3" in r.stderr


def test_tls11_refused_with_curl(server, pki, tmp_path):
    # SECLEVEL=0 so that it is the server, not curl's own OpenSSL policy, that says no.
    r = curl(tmp_path, url(server), "--tlsv1.1", "--tls-max", "1.1",
             "--ciphers", "DEFAULT@SECLEVEL=0", port=server.port, cacert=pki.root)
    assert r.rc != 0
    assert r.status is None
    assert "SSL connection using" not in r.stderr


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1],
                         ids=["TLSv1.0", "TLSv1.1"])
def test_old_versions_refused_by_server(server, version):
    ctx = client_context(verify=False, minv=version, maxv=version,
                         ciphers="DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)) as ei:
        Conn(server.port, context=ctx).close()
    msg = str(ei.value)
    # The ClientHello must have left: a client-side refusal would prove nothing.
    assert "NO_PROTOCOLS_AVAILABLE" not in msg and "no protocols available" not in msg, msg


@pytest.mark.parametrize("version,name", [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                                          (ssl.TLSVersion.TLSv1_3, "TLSv1.3")])
def test_versions_with_python(server, pki, version, name):
    ctx = client_context(cafile=pki.root, minv=version, maxv=version)
    with Conn(server.port, context=ctx) as c:
        assert c.sock.version() == name
        r = c.request("/a.txt")
        assert r.status == 200
        assert r.body == b"file A\n"


# -- cipher suites -----------------------------------------------------------------------------


@pytest.mark.parametrize("cipher", [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
])
def test_tls12_aead_ecdhe_accepted(server, cipher):
    ctx = client_context(verify=False, minv=ssl.TLSVersion.TLSv1_2,
                         maxv=ssl.TLSVersion.TLSv1_2, ciphers=cipher)
    with Conn(server.port, context=ctx) as c:
        assert c.sock.cipher()[0] == cipher
        assert c.request("/").status == 200


@pytest.mark.parametrize("cipher", [
    "ECDHE-ECDSA-AES128-SHA",        # CBC, not AEAD
    "ECDHE-ECDSA-AES256-SHA384",     # CBC, not AEAD
    "ECDHE-RSA-AES128-SHA256",       # CBC, not AEAD
    "AES128-GCM-SHA256",             # static RSA key exchange, no forward secrecy
    "AES256-GCM-SHA384",             # static RSA key exchange
    "DHE-RSA-AES128-GCM-SHA256",     # finite-field DHE, not ECDHE
    "DHE-RSA-CHACHA20-POLY1305",     # finite-field DHE
])
def test_tls12_other_suites_refused(server, cipher):
    try:
        ctx = client_context(verify=False, minv=ssl.TLSVersion.TLSv1_2,
                             maxv=ssl.TLSVersion.TLSv1_2, ciphers=cipher + ":@SECLEVEL=0")
    except ssl.SSLError:
        pytest.skip("this OpenSSL build has no %s" % cipher)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with Conn(server.port, context=ctx) as c:
            # If the handshake went through, show which suite was picked.
            pytest.fail("handshake succeeded with %s" % (c.sock.cipher(),))


@pytest.mark.parametrize("suite", ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                   "TLS_CHACHA20_POLY1305_SHA256"])
def test_tls13_suites(server, suite):
    p = s_client(server.port, "-tls1_3", "-ciphersuites", suite)
    text = s_client_text(p)
    assert s_client_handshake_ok(p), text
    assert re.search(r"Cipher is %s\b" % suite, text), text


# -- groups ------------------------------------------------------------------------------------


@pytest.mark.parametrize("proto", ["-tls1_3", "-tls1_2"])
@pytest.mark.parametrize("group,shown", [("X25519", "X25519"), ("P-256", "prime256v1"),
                                         ("P-384", "secp384r1")])
def test_groups_accepted(server, proto, group, shown):
    p = s_client(server.port, proto, "-groups", group)
    text = s_client_text(p)
    assert s_client_handshake_ok(p), text
    m = re.search(r"Server Temp Key: (.*)", text)
    assert m and shown in m.group(1), text


@pytest.mark.parametrize("proto", ["-tls1_3", "-tls1_2"])
@pytest.mark.parametrize("group", ["P-521", "ffdhe2048"])
def test_groups_refused(server, proto, group):
    p = s_client(server.port, proto, "-groups", group)
    assert not s_client_handshake_ok(p), s_client_text(p)


# -- ALPN --------------------------------------------------------------------------------------


def test_alpn_http11(server):
    p = s_client(server.port, "-alpn", "http/1.1")
    text = s_client_text(p)
    assert s_client_handshake_ok(p), text
    assert "ALPN protocol: http/1.1" in text


def test_alpn_prefers_h2_over_http11(server):
    p = s_client(server.port, "-alpn", "http/1.1,h2")
    text = s_client_text(p)
    assert "ALPN protocol: h2" in text, text


def test_alpn_h2_only_selected(server):
    p = s_client(server.port, "-alpn", "h2")
    text = s_client_text(p)
    assert s_client_handshake_ok(p), text
    assert "ALPN protocol: h2" in text


def test_alpn_with_python(server, pki):
    ctx = client_context(cafile=pki.root, alpn=["h2", "http/1.1"])
    with Conn(server.port, context=ctx) as c:
        assert c.sock.selected_alpn_protocol() == "h2"
    ctx = client_context(cafile=pki.root, alpn=["http/1.1"])
    with Conn(server.port, context=ctx) as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"


def test_alpn_with_curl(server, pki, tmp_path):
    r = curl(tmp_path, url(server), port=server.port, cacert=pki.root)
    assert r.rc == 0, r.stderr
    assert re.search(r"ALPN.*accepted.*h2", r.stderr), r.stderr
    r = curl(tmp_path, url(server), "--http1.1", port=server.port, cacert=pki.root)
    assert re.search(r"ALPN.*accepted.*http/1\.1", r.stderr), r.stderr
    assert r.status == 200


# -- certificate selection ---------------------------------------------------------------------


def test_chain_includes_intermediate(server, pki):
    # The client trusts only the root: verification succeeds only if moat sends the
    # intermediate after the leaf.
    with Conn(server.port, cafile=pki.root, sni="example.test") as c:
        assert c.request("/").status == 200


@pytest.mark.parametrize("sni,which", [
    ("example.test", "example"),
    ("www.example.test", "example"),
    ("EXAMPLE.TEST", "example"),      # RFC 6066 §3: host names compare case-insensitively
    ("a.wild.test", "wild"),
    ("other-name.wild.test", "wild"),
    ("deep.a.wild.test", "default"),  # a wildcard covers one label only (RFC 6125 §6.4.3)
    ("wild.test", "default"),
    ("listing.test", "listing"),
    ("unknown.test", "default"),
    (None, "default"),                # no SNI at all
])
def test_sni_picks_certificate(server, pki, sni, which):
    der, _ = peer_cert_der(server.port, sni)
    expected = {
        "example": {pki.ec.der, pki.rsa.der},
        "wild": {pki.wild.der},
        "listing": {pki.listing.der},
        "default": {pki.default.der},
    }[which]
    assert der in expected


def test_wildcard_verifies(server, pki):
    with Conn(server.port, cafile=pki.root, sni="foo.wild.test") as c:
        r = c.request("/a.txt", host="foo.wild.test")
        assert r.status == 200
        assert r.body == b"file A\n"


@pytest.mark.parametrize("args,kind", [
    (["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384"], "rsa"),
    (["-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256"], "ec"),
    (["-tls1_2", "-sigalgs", "RSA+SHA256:RSA-PSS+SHA256"], "rsa"),
    (["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"], "rsa"),
    (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], "ec"),
])
def test_ecdsa_and_rsa_side_by_side(server, pki, args, kind):
    p = s_client(server.port, *args)
    text = s_client_text(p)
    assert s_client_handshake_ok(p), text
    leaf = s_client_leaf_der(p)
    assert leaf == (pki.rsa.der if kind == "rsa" else pki.ec.der), text


def test_rsa_only_client_verifies(server, pki):
    ctx = client_context(cafile=pki.root, minv=ssl.TLSVersion.TLSv1_2,
                         maxv=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    with Conn(server.port, context=ctx) as c:
        assert c.sock.getpeercert(binary_form=True) == pki.rsa.der
        assert c.request("/").status == 200


# -- resumption --------------------------------------------------------------------------------


@pytest.mark.parametrize("proto,name", [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")])
def test_session_resumption(server, tmp_path, proto, name):
    sess = tmp_path / "session.pem"
    first = s_client(server.port, proto, "-sess_out", sess, send=HTTP_CLOSE)
    text1 = s_client_text(first)
    assert "New, %s" % name in text1, text1
    assert "HTTP/1.1 200" in text1
    assert sess.exists() and sess.stat().st_size > 0, "no session was saved (no ticket?)"
    second = s_client(server.port, proto, "-sess_in", sess, send=HTTP_CLOSE)
    text2 = s_client_text(second)
    assert "Reused, %s" % name in text2, text2
    assert "HTTP/1.1 200" in text2


def test_resumption_several_times(server, pki):
    # Several resumptions in a row, so that with two workers some land on a worker other than
    # the one that issued the ticket: ticket keys must be shared by the whole process.
    ctx = client_context(cafile=pki.root, maxv=ssl.TLSVersion.TLSv1_2)
    with Conn(server.port, context=ctx) as c:
        assert c.request("/").status == 200
        session = c.sock.session
    reused = 0
    for _ in range(6):
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="example.test", session=session) as s:
            reused += int(s.session_reused)
    assert reused == 6


def _kernel_has_ktls():
    """Asked as moat asks: TCP_ULP "tls" on an established loopback connection."""
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        with socket.create_connection(lst.getsockname()) as c:
            a, _ = lst.accept()
            with a:
                try:
                    c.setsockopt(socket.IPPROTO_TCP, 31, b"tls")  # TCP_ULP
                    return True
                except OSError:
                    return False


def test_ktls_choice_is_logged_and_files_still_go(moat, pki, www):
    """The start-up line says whether kernel TLS is used and why, the same answer as the
    kernel gives us; a file goes out whole either way (kTLS: SSL_sendfile; else our BIO)."""
    m = moat()
    m.write_config(standard_config(m, pki, www).replace(
        "tls { tickets on;", "tls { ktls on; tickets on;"))
    m.start()
    line = log_after(m, 0, r"kTLS: (on for sending|not used) \(([^)]*)\)")
    assert line, m.stderr()
    assert (line.group(1) == "on for sending") == _kernel_has_ktls(), line.group(0)
    big = (www / "a.txt").read_bytes()
    with Conn(m.port, cafile=pki.root) as c:
        r = c.request("/a.txt")
    assert r.status == 200 and r.body == big


def test_ktls_is_off_unless_asked(moat, pki, www):
    m = moat()
    m.write_config(standard_config(m, pki, www))
    m.start()
    line = log_after(m, 0, r"kTLS: not used \(tls \{ ktls on \} would ask the kernel\)")
    assert line, m.stderr()


# -- post-handshake ----------------------------------------------------------------------------


def test_key_update_between_keep_alive_requests(server):
    """A KeyUpdate (update_requested) between two requests on one TLS 1.3 connection: the
    server sends its own KeyUpdate before the second answer, which comes under the new keys. The server's read after the first answer finds the socket drained and skips OpenSSL
    (tls/transport.c): the KeyUpdate must still be read when its bytes come."""
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % server.port, "-servername",
           "example.test", "-tls1_3", "-crlf", "-msg"]  # no -ign_eof: it turns the command letters off
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=clean_env())
    seen = b""

    def wait_for(needle, count):
        # s_client takes a command letter only as the first byte of one read of its stdin,
        # so each step waits for the previous one's answer before the next is written.
        nonlocal seen
        end = time.monotonic() + 15
        while seen.count(needle) < count and time.monotonic() < end:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r:
                chunk = p.stdout.read1(65536)
                if not chunk:
                    break
                seen += chunk
        return seen.count(needle) >= count

    try:
        req = b"GET / HTTP/1.1\nHost: example.test\n\n"
        p.stdin.write(req)
        p.stdin.flush()
        assert wait_for(b"HTTP/1.1 200", 1), seen.decode("latin-1")[-2000:]
        p.stdin.write(b"K\n")
        p.stdin.flush()
        assert wait_for(b">>> TLS 1.3, Handshake [length 0005], KeyUpdate", 1), \
            seen.decode("latin-1")[-2000:]
        p.stdin.write(req)
        p.stdin.flush()
        assert wait_for(b"HTTP/1.1 200", 2), seen.decode("latin-1")[-2000:]
        # RFC 8446 §4.6.3: the server's own KeyUpdate comes before its next application data.
        theirs = seen.find(b"<<< TLS 1.3, Handshake [length 0005], KeyUpdate")
        second = seen.find(b"HTTP/1.1 200", seen.find(b"HTTP/1.1 200") + 1)
        assert 0 <= theirs < second, seen.decode("latin-1")[-3000:]
    finally:
        p.kill()
        p.wait(timeout=10)
    assert server.alive()
