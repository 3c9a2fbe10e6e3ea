"""Local certificates are renewed in place (issue 11: certificate sources and run-time swap).

A site without `cert` serves a certificate from moat's local CA, renewed when two thirds of its
validity have passed. The renewal goes through the certificate source and swaps the site's TLS
context: no reload, the connections already open keep working, new handshakes get the new
certificate. The test plants a leaf the local CA signed (with python3-cryptography) that is due
a few seconds after the start, then watches moat replace it."""

import datetime
import ipaddress
import socket
import ssl
import time

import pytest

from helpers import log_after, wait_for

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def plant_short_leaf(state, valid_s, age_s):
    """Replace certs/localhost.pem/.key with a leaf of the local CA valid `valid_s` seconds,
    issued `age_s` seconds ago. Returns its serial."""
    ca_cert = x509.load_pem_x509_certificate((state / "ca" / "intermediate.pem").read_bytes())
    ca_key = serialization.load_pem_private_key(
        (state / "ca" / "intermediate.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    nb = now - datetime.timedelta(seconds=age_s)
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(nb)
            .not_valid_after(nb + datetime.timedelta(seconds=valid_s))
            # A site named localhost names its loopback addresses too (cert/source_local.c).
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1"))]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           False)
            .sign(ca_key, hashes.SHA256()))
    (state / "certs" / "localhost.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (state / "certs" / "localhost.key").chmod(0o600)
    (state / "certs" / "localhost.pem").write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) +
        ca_cert.public_bytes(serialization.Encoding.PEM))
    return leaf.serial_number


def tls_connect(m):
    ctx = ssl.create_default_context(cafile=str(m.state / "ca" / "root.pem"))
    sock = socket.create_connection(("127.0.0.1", m.port), timeout=5)
    return ctx.wrap_socket(sock, server_hostname="localhost")


def served_serial(m):
    with tls_connect(m) as s:
        der = s.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def get(s):
    s.sendall(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0]


def test_a_due_local_certificate_is_renewed_without_a_reload(moat, www):
    m = moat()
    m.write_config("listen 127.0.0.1:%d\nsite localhost {\n    root %s\n}\n" % (m.port, www))
    m.start()  # makes the local CA and a first leaf
    m.stop()
    # Valid 15 s, issued 2 s ago: moat loads it (a third of its life is left) and must renew
    # it 10 s after its start, while serving.
    planted = plant_short_leaf(m.state, valid_s=15, age_s=2)
    m.start()
    assert served_serial(m) == planted
    early = tls_connect(m)  # a connection from before the renewal
    assert get(early) == b"HTTP/1.1 200 OK"
    mark = len(m.stderr())
    assert log_after(m, mark, r"site localhost: renewed its local certificate without a reload",
                     timeout=20.0), m.stderr()[mark:]
    renewed = served_serial(m)
    assert renewed != planted
    # The new one is the local CA's usual long-lived leaf, and it is on disk for the next start.
    on_disk = x509.load_pem_x509_certificate((m.state / "certs" / "localhost.pem").read_bytes())
    assert on_disk.serial_number == renewed
    assert on_disk.not_valid_after - on_disk.not_valid_before > datetime.timedelta(days=7)
    # No reload happened, and the connection from before still works.
    assert "now serving configuration generation" not in m.stderr()[mark:]
    assert get(early) == b"HTTP/1.1 200 OK"
    early.close()
    # It is not renewed again (the next renewal is weeks away).
    time.sleep(2.5)
    assert m.stderr()[mark:].count("renewed its local certificate") == 1
    assert wait_for(lambda: served_serial(m) == renewed, 2.0)


def test_a_due_local_certificate_of_a_stream_is_renewed_by_a_reload(moat, www):
    """A stream's certificates live in its own SNI table; a due one is renewed by a reload,
    which keeps running connections."""
    from helpers import free_port
    from stream_peers import EchoServer
    echo = EchoServer("S")
    try:
        m = moat()
        q = free_port()
        m.write_config("listen 127.0.0.1:%d\nerror_log stderr info\n"
                       "site localhost {\n    root %s\n}\n"
                       "stream s {\n    listen 127.0.0.1:%d\n    name localhost\n"
                       "    proxy 127.0.0.1:%d\n}\n" % (m.port, www, q, echo.port))
        m.start(ports=[m.port, q])
        m.stop()
        planted = plant_short_leaf(m.state, valid_s=15, age_s=2)
        m.start(ports=[m.port, q])

        def stream_serial():
            ctx = ssl.create_default_context(cafile=str(m.state / "ca" / "root.pem"))
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", q), timeout=5),
                                 server_hostname="localhost") as s:
                s.sendall(b"ping\n")
                assert s.recv(100).startswith(b"S: ping")
                return x509.load_der_x509_certificate(s.getpeercert(True)).serial_number
        assert stream_serial() == planted
        mark = len(m.stderr())
        assert log_after(m, mark, r"renewing a stream's local certificate: now serving "
                         r"configuration generation 2", timeout=20.0), m.stderr()[mark:]
        assert wait_for(lambda: stream_serial() != planted, 3.0)
        assert served_serial(m) != planted  # the site's, loaded anew by the reload
        time.sleep(2.5)
        assert "generation 3" not in m.stderr()[mark:]  # once, not every minute
    finally:
        echo.stop()
