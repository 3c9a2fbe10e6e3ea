"""moat check against servers that do not play along: one that accepts and never answers,
one that answers every connection with random bytes, one that speaks plain HTTP, one that
answers a TLS record header promising more than it sends and then closes. The check must end
(bounded by its own limits, not by a test timeout), say what it could not learn, and never
crash."""

import json
import os
import socket
import subprocess
import threading

import pytest

from helpers import free_port


class Hostile:
    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.held = []
        self.accepted = 0
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            try:
                c.settimeout(2)
                if self.behaviour == "silent":
                    self.held.append(c)  # never answered, closed at the end
                    continue
                try:
                    c.recv(65536)
                except OSError:
                    pass
                if self.behaviour == "random":
                    c.sendall(os.urandom(3000))
                elif self.behaviour == "http":
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                elif self.behaviour == "short":
                    c.sendall(b"\x16\x03\x03\x40\x00\x02\x00")  # a 16 KiB record, 2 bytes of it
                c.close()
            except OSError:
                c.close()

    def close(self):
        self.stop = True
        self.t.join(timeout=5)
        for c in self.held:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("behaviour", ["silent", "random", "http", "short"])
def test_a_hostile_server_gets_an_answer_not_a_hang(moat_bin, behaviour):
    h = Hostile(behaviour)
    try:
        r = subprocess.run([moat_bin, "check", "--json", "--connect", "127.0.0.1",
                            "--http-port", "off", "--timeout", "1", "--max-time", "20",
                            "--max-connections", "60", "bad.test:%d" % h.port],
                           capture_output=True, text=True, timeout=120)
    finally:
        h.close()
    assert r.returncode == 6, (r.returncode, r.stderr)
    d = json.loads(r.stdout)
    assert d["connections"] <= 60 + 2
    assert d["versions"]["TLS 1.3"] is not True and d["versions"]["TLS 1.2"] is not True
    ids = {f["id"] for f in d["findings"]}
    # A server that says nothing is told apart from one that refuses TLS.
    assert ("tls.no_answer" if behaviour == "silent" else "protocol.none") in ids, ids
    assert d["grade"] in ("F", "T")
    assert h.accepted >= 1
