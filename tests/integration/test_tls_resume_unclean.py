"""A TLS 1.2 session stays resumable when the client leaves without a close_notify (browsers
and most libraries just close the socket): RFC 5246 §7.2.1 dropped the rule that such a
session must not be resumed, and OpenSSL would otherwise drop it from moat's cache."""

import os
import socket
import ssl
import subprocess

from helpers import clean_env, free_port, tcp_accepts, wait_for


def test_session_id_resumes_after_a_client_closed_without_close_notify(moat_bin, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hi\n")
    port = free_port()
    env = clean_env({"MOAT_STATE": str(tmp_path / "state"), "MOAT_ALLOW_ROOT": "1"})
    p = subprocess.Popen([moat_bin, "serve", "--root", str(www), "--listen",
                          "127.0.0.1:%d" % port, "--name", "localhost"] +
                         (["--allow-root"] if os.geteuid() == 0 else []),
                         env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: tcp_accepts(port), 15)
        ctx = ssl.create_default_context(cafile=str(tmp_path / "state" / "ca" / "root.pem"))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_TICKET  # a session id, kept by the server

        def connect(session=None):
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            return s

        first = connect()
        sess = first.session
        # Leave without a close_notify: close the socket under the TLS layer.
        os.close(first.detach())
        again = [connect(sess) for _ in range(3)]
        assert all(s.session_reused for s in again), [s.session_reused for s in again]
        for s in again:
            s.close()
    finally:
        p.terminate()
        p.wait(timeout=20)
