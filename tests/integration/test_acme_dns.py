"""DNS-01 against real servers: Knot DNS (authoritative for example.test, RFC 2136 updates
with TSIG) and Pebble, whose validator asks Knot for the TXT records. Wildcard certificates,
by moat acme issue and by moat serve, through the RFC 2136 client and through a hook.
"""

import json
import os
import re
import socket
import ssl
import stat
import subprocess
import time

import pytest

from acme_helpers import Knot, Pebble, have_knot, have_pebble, kill_hook, stuck_hook
from helpers import run, wait_for

pytestmark = pytest.mark.skipif(not (have_pebble() and have_knot()),
                                reason="pebble or knot not installed")


# Records for the pre-flight tests: CAA that forbids every CA, CAA with a critical property no
# CA knows, and a name that exists without an address.
RECORDS = """closed.example.test. CAA 0 issue ";"
crit.example.test. CAA 128 futuretag "x"
noaddr.example.test. TXT "no address here"
"""


@pytest.fixture
def knot(tmp_path):
    k = Knot(tmp_path / "knot", records=RECORDS).start()
    yield k
    k.stop()


@pytest.fixture
def pebble(moat_bin, tmp_path, knot):
    p = Pebble(moat_bin, tmp_path / "pebble", dns_server=knot.addr).start()
    yield p
    p.stop()


def acme(moat_bin, state, *args, timeout=180):
    e = dict(os.environ)
    e.pop("MOAT_STATE", None)
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    return subprocess.run([str(moat_bin), "acme"] + [str(a) for a in args] + ["--state", str(state)],
                          capture_output=True, text=True, timeout=timeout, env=e,
                          stdin=subprocess.DEVNULL)


def sans(path):
    r = run(["openssl", "x509", "-in", path, "-noout", "-ext", "subjectAltName"])
    return sorted(re.findall(r"DNS:([^,\s]+)", r.stdout))


def verify(p, chain, tmp_path):
    root = p.write_root(tmp_path / "root.pem")
    r = run(["openssl", "verify", "-CAfile", root, "-untrusted", chain, chain], check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_wildcard_by_rfc2136_with_tsig(moat_bin, knot, pebble, tmp_path):
    r = acme(moat_bin, tmp_path / "state", "issue", "*.example.test", "example.test",
             "--server", pebble.directory, "--ca-bundle", pebble.ca_bundle, "--agree-tos",
             "--resolver", knot.addr,
             "--dns-server", knot.addr, "--dns-check", knot.addr,
             "--tsig-key", "%s:%s:%s" % (knot.key_name, knot.key_alg, knot.secret),
             "--cert-out", tmp_path / "w.crt", "--key-out", tmp_path / "w.key")
    assert r.returncode == 0, r.stderr + knot.log()[-2000:]
    assert "*.example.test: dns-01 accepted by the CA" in r.stderr
    assert "example.test: dns-01 accepted by the CA" in r.stderr
    assert sans(tmp_path / "w.crt") == ["*.example.test", "example.test"]
    verify(pebble, tmp_path / "w.crt", tmp_path)
    # the updates reached Knot, signed, and the records are gone again
    assert knot.log().count("DDNS, finished") >= 4, knot.log()
    assert knot.txt("_acme-challenge.example.test") == []
    # the TSIG secret never reaches the output
    assert knot.secret not in r.stderr and knot.secret not in r.stdout


def test_wrong_tsig_key_is_refused_with_words(moat_bin, knot, pebble, tmp_path):
    bad = "%s:%s:%s" % (knot.key_name, knot.key_alg, "AAAA" + knot.secret[4:])
    r = acme(moat_bin, tmp_path / "state", "issue", "*.example.test", "--server",
             pebble.directory, "--ca-bundle", pebble.ca_bundle, "--agree-tos", "--resolver", knot.addr,
             "--dns-server", knot.addr, "--dns-check", knot.addr, "--tsig-key", bad)
    assert r.returncode != 0
    line = r.stderr.strip().splitlines()[-1]
    assert "TSIG" in line, line
    # found before any order was made: no failed validation counts against the account
    assert "pre-flight check of dns-01 for *.example.test" in line, line
    assert "order https://" not in r.stderr


def test_wildcard_needs_dns01(moat_bin, tmp_path):
    r = acme(moat_bin, tmp_path / "state", "issue", "*.example.test", "--agree-tos")
    assert r.returncode == 2 and "needs DNS-01" in r.stderr, r.stderr


def test_wildcard_by_hook(moat_bin, knot, pebble, tmp_path):
    """A hook script of the kind operators write: it calls knsupdate (Knot's nsupdate)."""
    calls = tmp_path / "calls.log"
    key = tmp_path / "tsig.key"
    key.write_text("%s:%s:%s\n" % (knot.key_alg, knot.key_name, knot.secret))
    key.chmod(0o600)
    hook = tmp_path / "hook.sh"
    hook.write_text("""#!/bin/sh
set -e
echo "$1 $2 $3" >> %s
if [ "$1" = set ]; then op=add; ttl=60; else op=delete; ttl=0; fi
knsupdate -y "$(cat %s)" <<EOF
server 127.0.0.1 %d
zone example.test.
update $op $2. $ttl TXT "$3"
send
EOF
""" % (calls, key, knot.port))
    hook.chmod(0o755)
    r = acme(moat_bin, tmp_path / "state", "issue", "*.example.test", "--server",
             pebble.directory, "--ca-bundle", pebble.ca_bundle, "--agree-tos", "--resolver", knot.addr,
             "--dns-hook", hook, "--dns-check", knot.addr, "--cert-out", tmp_path / "h.crt")
    assert r.returncode == 0, r.stderr + knot.log()[-2000:]
    assert sans(tmp_path / "h.crt") == ["*.example.test"]
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("set _acme-challenge.example.test ")
    assert lines[-1].startswith("clear _acme-challenge.example.test ")
    assert knot.txt("_acme-challenge.example.test") == []


def test_failing_hook_is_reported(moat_bin, knot, pebble, tmp_path):
    hook = tmp_path / "fail.sh"
    hook.write_text("#!/bin/sh\nexit 3\n")
    hook.chmod(0o755)
    r = acme(moat_bin, tmp_path / "state", "issue", "*.example.test", "--server",
             pebble.directory, "--ca-bundle", pebble.ca_bundle, "--agree-tos", "--resolver", knot.addr,
             "--dns-hook", hook)
    assert r.returncode != 0
    assert "exit status 3" in r.stderr, r.stderr


def test_serve_wildcard_site_by_rfc2136(moat, www, knot, pebble, tmp_path):
    m = moat()
    m.write_config("""listen 127.0.0.1:%d
acme {
    ca %s
    ca_bundle %s
    agree_tos on
    dns_server %s
    dns_key %s %s %s
    resolver %s
    dns_check %s
}
site *.example.test { tls acme; root %s }
""" % (pebble.tls_port, pebble.directory, pebble.ca_bundle, knot.addr, knot.key_name,
       knot.key_alg, knot.secret, knot.addr, knot.addr, www))
    m.port = pebble.tls_port
    m.start(ports=[pebble.tls_port])
    found = wait_for(lambda: "serving its ACME certificate" in m.stderr(), 90, 0.2)
    assert found, m.stderr()[-3000:]
    assert "dns-01 accepted by the CA" in m.stderr()
    assert knot.secret not in m.stderr()
    root = pebble.write_root(tmp_path / "root.pem")
    ctx = ssl.create_default_context(cafile=str(root))
    for name in ("a.example.test", "anything.example.test"):
        with socket.create_connection(("127.0.0.1", pebble.tls_port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname=name) as t:
                t.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                           % name).encode())
                assert t.recv(100).startswith(b"HTTP/1.1 200")


def test_order_interrupted_by_a_crash_is_resumed(moat_bin, knot, pebble, tmp_path):
    """moat dies (SIGKILL) while publishing a challenge answer; the next run finds the order
    in the state folder and finishes it instead of making a new one."""
    state = tmp_path / "state"
    hook, marker = stuck_hook(tmp_path)
    e = dict(os.environ)
    e.pop("MOAT_STATE", None)
    first = subprocess.Popen([str(moat_bin), "acme", "issue", "*.crash.example.test",
                              "--server", pebble.directory, "--ca-bundle", str(pebble.ca_bundle),
                              "--agree-tos", "--resolver", knot.addr, "--dns-hook", str(hook), "--state", str(state)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    try:
        assert wait_for(marker.exists, 60), first.stderr.read() if first.poll() else "no hook"
        orders = list(state.rglob("*.order.json"))
        assert len(orders) == 1, list(state.rglob("*"))
        url = json.loads(orders[0].read_text())["url"]
        assert list(state.rglob("*.next.key")), "the key must be stored before the order"
    finally:
        first.kill()
        first.wait(timeout=10)
        kill_hook(marker)
    r = acme(moat_bin, state, "issue", "*.crash.example.test", "--server", pebble.directory,
             "--ca-bundle", pebble.ca_bundle, "--agree-tos", "--resolver", knot.addr, "--dns-server", knot.addr, "--dns-check", knot.addr,
             "--tsig-key", "%s:%s:%s" % (knot.key_name, knot.key_alg, knot.secret),
             "--cert-out", tmp_path / "c.crt")
    assert r.returncode == 0, r.stderr
    assert "resuming the order %s" % url in r.stderr, r.stderr
    assert "created for" not in r.stderr  # no second order
    assert sans(tmp_path / "c.crt") == ["*.crash.example.test"]
    assert not list(state.rglob("*.order.json")) and not list(state.rglob("*.next.key"))


@pytest.mark.parametrize("name,words", [
    ("closed.example.test", "CAA records forbid every CA"),
    ("sub.closed.example.test", "CAA records forbid every CA"),  # found at the parent
    ("crit.example.test", 'critical CAA property "futuretag"'),
])
def test_preflight_refuses_what_caa_forbids(moat_bin, knot, pebble, tmp_path, name, words):
    r = acme(moat_bin, tmp_path / "state", "issue", name, "--server", pebble.directory,
             "--ca-bundle", pebble.ca_bundle, "--agree-tos", "--resolver", knot.addr,
             "--dns-server", knot.addr, "--dns-check", knot.addr,
             "--tsig-key", "%s:%s:%s" % (knot.key_name, knot.key_alg, knot.secret))
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "pre-flight: %s may not be issued by this CA" % name in line, line
    assert words in line and "CAA 0 issue" in line, line
    assert "order https://" not in r.stderr


def test_preflight_refuses_a_name_without_address(moat_bin, knot, pebble, tmp_path):
    r = acme(moat_bin, tmp_path / "state", "issue", "noaddr.example.test", "--server",
             pebble.directory, "--ca-bundle", pebble.ca_bundle, "--agree-tos",
             "--resolver", knot.addr, "--http", "127.0.0.1:%d" % pebble.http_port)
    assert r.returncode == 2, r.stderr
    assert "noaddr.example.test has no A or AAAA record" in r.stderr, r.stderr
    assert "order https://" not in r.stderr
    # DNS-01 does not need the name to reach this server
    r = acme(moat_bin, tmp_path / "state", "issue", "noaddr.example.test", "--server",
             pebble.directory, "--ca-bundle", pebble.ca_bundle, "--agree-tos",
             "--resolver", knot.addr, "--dns-server", knot.addr, "--dns-check", knot.addr,
             "--tsig-key", "%s:%s:%s" % (knot.key_name, knot.key_alg, knot.secret))
    assert r.returncode == 0, r.stderr
    assert "pre-flight checks passed" in r.stderr
