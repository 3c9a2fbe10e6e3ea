"""moat acme account (show, key rollover, deactivation) against a real ACME CA: Debian's Pebble
on loopback, as in test_acme.py.

Each test makes its account with a real `moat acme issue` (HTTP-01 on moat's own listener),
then works on it. What the CA thinks is checked through the CA itself: the account URL a later
issue logs, and whether a key still finds the account (newAccount with onlyReturnExisting,
which `moat acme account --show` sends).
"""

import base64
import hashlib
import json
import os
import re
import shutil
import ssl
import stat
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from acme_helpers import Pebble, have_pebble, pebble_factory  # noqa: F401 (a fixture)
from helpers import free_port, run

pytestmark = pytest.mark.skipif(not have_pebble(), reason="pebble not installed")


def acme(moat_bin, state, *args, timeout=120):
    e = dict(os.environ)
    e.pop("MOAT_STATE", None)
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    r = subprocess.run([str(moat_bin), "acme"] + [str(a) for a in args] + ["--state", str(state)],
                       capture_output=True, text=True, timeout=timeout, env=e,
                       stdin=subprocess.DEVNULL)
    no_sanitizer(r)
    return r


def no_sanitizer(r):
    assert "ERROR: AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    assert "LeakSanitizer" not in r.stderr, r.stderr


def ca_args(p, directory=None):
    return ["--server", directory or p.directory, "--ca-bundle", p.ca_bundle]


def account(moat_bin, state, p, *args, directory=None):
    return acme(moat_bin, state, "account", *args, *ca_args(p, directory))


def issue(moat_bin, state, p, name):
    """Order a certificate for name; returns the account URL the order used."""
    r = acme(moat_bin, state, "issue", name, "--agree-tos", "--resolver", p.dns_addr,
             "--email", "ops@example.test",
             "--http", "127.0.0.1:%d" % p.http_port, *ca_args(p))
    assert r.returncode == 0, r.stderr + p.log()
    return re.search(r"account (https://\S+)", r.stderr).group(1)


def account_dir(state):
    """The one account folder of the state folder (acme/accounts/<CA>)."""
    (d,) = (state / "acme" / "accounts").iterdir()
    return d


def key_part(s):
    """store.h's moat_store_key_part: the folder name moat gives a directory URL."""
    out = []
    for i, c in enumerate(s):
        if (c.isascii() and c.isalnum()) or c in "-_" or (c == "." and i > 0):
            out.append(c)
        else:
            out.append("=%02x" % ord(c))
    return "".join(out)


def pubkey(path):
    return run(["openssl", "pkey", "-in", path, "-pubout"]).stdout


def thumbprint(path):
    """RFC 7638 thumbprint of a P-256 key file, computed here (not by moat)."""
    der = subprocess.run(["openssl", "pkey", "-in", str(path), "-pubout", "-outform", "DER"],
                         capture_output=True, check=True).stdout
    point = der[-65:]  # SubjectPublicKeyInfo of P-256 ends with the point 04 || x || y
    assert len(der) == 91 and point[0] == 4

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    jwk = '{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}' % (b64(point[1:33]), b64(point[33:]))
    return b64(hashlib.sha256(jwk.encode()).digest())


def new_p256(path):
    key = subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                          "ec_paramgen_curve:P-256"], capture_output=True, check=True).stdout
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)


def shown(r):
    """The fields `moat acme account --show` printed, by name."""
    assert r.returncode == 0, r.stderr
    m = re.match(r"account (\S+)\n", r.stdout)
    assert m, r.stdout
    fields = dict(re.findall(r"^  (\w+):\s+(.*)$", r.stdout, re.M))
    fields["url"] = m.group(1)
    return fields


def test_show_prints_the_account_as_the_ca_has_it(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    state = tmp_path / "state"
    url = issue(moat_bin, state, p, "show.example.test")
    f = shown(account(moat_bin, state, p))
    assert f["url"] == url
    assert f["status"] == "valid"
    assert f["CA"] == p.directory
    assert f["contact"] == "mailto:ops@example.test"
    # the thumbprint is the stored key's, computed here independently
    assert f["key"] == "ECDSA P-256, thumbprint %s" % thumbprint(account_dir(state) / "key.pem")
    assert f["orders"].startswith("https://127.0.0.1:%d/" % p.port)
    # --show is the default, and says the same
    assert shown(account(moat_bin, state, p, "--show")) == f


def test_show_without_an_account_makes_none(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    state = tmp_path / "state"
    r = account(moat_bin, state, p)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no ACME account" in r.stderr and "moat acme issue" in r.stderr, r.stderr
    # no key was made: showing must not create an account key as a side effect
    assert not list(state.rglob("key.pem"))


def test_rollover_replaces_the_key_and_keeps_the_account(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    state = tmp_path / "state"
    url = issue(moat_bin, state, p, "roll.example.test")
    d = account_dir(state)
    old_key = tmp_path / "old-key.pem"
    shutil.copy(d / "key.pem", old_key)
    r = account(moat_bin, state, p, "--rollover")
    assert r.returncode == 0, r.stderr + p.log()
    assert "replaced the key of the account %s" % url in r.stdout, r.stdout
    # the store holds a new key, secret, and nothing of the rollover is left behind
    assert pubkey(d / "key.pem") != pubkey(old_key)
    assert stat.S_IMODE(os.stat(d / "key.pem").st_mode) == 0o600
    assert not (d / "key.next.pem").exists()
    assert "NIST CURVE: P-256" in run(["openssl", "pkey", "-in", d / "key.pem", "-noout",
                                       "-text"]).stdout
    assert thumbprint(old_key) in r.stdout and thumbprint(d / "key.pem") in r.stdout
    # no private key on the terminal
    assert "PRIVATE KEY" not in r.stdout + r.stderr
    # the CA took the new key: the same account signs with it
    f = shown(account(moat_bin, state, p))
    assert f["url"] == url and f["status"] == "valid"
    assert thumbprint(d / "key.pem") in f["key"]
    assert issue(moat_bin, state, p, "roll2.example.test") == url
    # and the old key no longer finds the account at the CA
    old_state = tmp_path / "old-state"
    (old_state / d.relative_to(state)).mkdir(parents=True)
    shutil.copy(old_key, old_state / d.relative_to(state) / "key.pem")
    r = account(moat_bin, old_state, p)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the CA has no account for this key" in r.stderr, r.stderr
    # a second rollover works from the first one's key
    r = account(moat_bin, state, p, "--rollover")
    assert r.returncode == 0, r.stderr
    assert issue(moat_bin, state, p, "roll3.example.test") == url


def test_interrupted_rollover_is_settled_by_asking_the_ca(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    state = tmp_path / "state"
    url = issue(moat_bin, state, p, "crash.example.test")
    d = account_dir(state)
    before = pubkey(d / "key.pem")

    # 1. a crash before the CA heard of the new key: it is dropped, the old key stays
    new_p256(d / "key.next.pem")
    r = account(moat_bin, state, p)
    assert shown(r)["url"] == url
    assert "never reached the CA" in r.stderr, r.stderr
    assert pubkey(d / "key.pem") == before and not (d / "key.next.pem").exists()

    # 2. a crash after the CA took the new key, before key.pem was replaced: made by hand from
    #    a copy of the state folder taken before a real rollover
    stale = tmp_path / "stale"
    shutil.copytree(state, stale)
    r = account(moat_bin, state, p, "--rollover")
    assert r.returncode == 0, r.stderr
    sd = stale / d.relative_to(state)
    shutil.copy(d / "key.pem", sd / "key.next.pem")
    assert pubkey(sd / "key.pem") == before
    r = account(moat_bin, stale, p)
    assert shown(r)["url"] == url
    assert "had reached the CA" in r.stderr, r.stderr
    assert pubkey(sd / "key.pem") == pubkey(d / "key.pem") != before
    assert stat.S_IMODE(os.stat(sd / "key.pem").st_mode) == 0o600
    assert not (sd / "key.next.pem").exists()
    assert issue(moat_bin, stale, p, "crash2.example.test") == url

    # 3. a crash after key.pem was replaced, before key.next.pem went: only the leftover goes
    shutil.copy(d / "key.pem", d / "key.next.pem")
    r = account(moat_bin, state, p)
    assert shown(r)["url"] == url
    assert "rollover" not in r.stderr, r.stderr
    assert not (d / "key.next.pem").exists()


class DirectoryWithout:
    """A CA whose directory lacks some members: an HTTPS server (with Pebble's front
    certificate, so the same --ca-bundle works) serving Pebble's directory without them. Every
    other URL in it is still Pebble's own."""

    def __init__(self, pebble, *drop):
        ctx = ssl.create_default_context(cafile=str(pebble.ca_bundle))
        with urllib.request.urlopen(pebble.directory, context=ctx, timeout=10) as r:
            directory = json.loads(r.read())
        for k in drop:
            del directory[k]
        body = json.dumps(directory).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(pebble.dir / "front.fullchain.pem", pebble.dir / "front.key")
        self.server.socket = sctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def directory(self):
        return "https://127.0.0.1:%d/dir" % self.port

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_rollover_is_refused_by_a_ca_without_key_change(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    state = tmp_path / "state"
    url = issue(moat_bin, state, p, "nokc.example.test")
    ca = DirectoryWithout(p, "keyChange")
    try:
        # the same account, reached through the other directory URL
        d = account_dir(state)
        other = d.parent / key_part(ca.directory.split("://", 1)[1])
        shutil.copytree(d, other)
        assert shown(account(moat_bin, state, p, directory=ca.directory))["url"] == url
        r = account(moat_bin, state, p, "--rollover", directory=ca.directory)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "offers no key change" in r.stderr and "keyChange" in r.stderr, r.stderr
        assert pubkey(other / "key.pem") == pubkey(d / "key.pem")
        assert not (other / "key.next.pem").exists()
    finally:
        ca.stop()
    # the account is untouched at the CA
    assert issue(moat_bin, state, p, "nokc2.example.test") == url


def test_deactivate_needs_yes_and_is_final(moat_bin, pebble_factory, tmp_path):
    p = pebble_factory()
    state = tmp_path / "state"
    url = issue(moat_bin, state, p, "deact.example.test")
    d = account_dir(state)
    # refused before anything is sent: the account is still valid at the CA afterwards
    r = account(moat_bin, state, p, "--deactivate")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot be undone" in r.stderr and "--yes" in r.stderr, r.stderr
    for bad in (["--yes"], ["--rollover", "--deactivate", "--yes"], ["--show", "--rollover"]):
        r = account(moat_bin, state, p, *bad)
        assert r.returncode == 2, (bad, r.stderr)
    assert shown(account(moat_bin, state, p))["status"] == "valid"

    r = account(moat_bin, state, p, "--deactivate", "--yes")
    assert r.returncode == 0, r.stderr + p.log()
    assert "deactivated the account %s" % url in r.stdout, r.stdout
    assert "remove %s/" % d.relative_to(state) in r.stdout, r.stdout
    rec = json.loads((d / "account.json").read_text())
    assert rec["status"] == "deactivated" and rec["url"] == url
    # show still works, from the state folder
    f = shown(account(moat_bin, state, p))
    assert f["url"] == url and f["status"].startswith("deactivated (as recorded in the state")
    # moat refuses the account itself, with the way out, without asking the CA
    r = acme(moat_bin, state, "issue", "deact2.example.test", "--agree-tos", "--resolver", p.dns_addr,
             "--http", "127.0.0.1:%d" % p.http_port, *ca_args(p))
    assert r.returncode == 2, r.stderr
    msg = r.stderr.strip().splitlines()[-1]
    assert "is deactivated" in msg and url in msg, msg
    assert "remove %s/ from the state folder" % d.relative_to(state) in msg, msg
    assert "new state folder" in msg, msg
    r = account(moat_bin, state, p, "--rollover")
    assert r.returncode == 2 and "is deactivated" in r.stderr, r.stderr

    # and the CA refuses it too: with moat's record gone, the CA says no to the key
    (d / "account.json").unlink()
    r = acme(moat_bin, state, "issue", "deact3.example.test", "--agree-tos", "--resolver", p.dns_addr,
             "--http", "127.0.0.1:%d" % p.http_port, *ca_args(p))
    assert r.returncode == 1, r.stderr
    assert "deactivated" in r.stderr and "may not do that" in r.stderr, r.stderr

    # the way out works: without the account folder, moat makes a new account
    shutil.rmtree(d)
    assert issue(moat_bin, state, p, "deact4.example.test") != url
