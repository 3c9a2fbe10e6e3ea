"""The command line and start-up: --version/--help, `serve --check` (ok, and file:line:col
errors with exit 2), every start-up refusal naming the file at fault (key not matching,
expired, encrypted key, unreadable key), the warnings for a key readable by others and for a
missing intermediate, and the zero-config path where the local CA issues a certificate."""

import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import types

import pytest

from helpers import OPENSSL, Conn, clean_env, curl, run, standard_config, wait_for


def run_moat(moat_bin, tmp_path, *args, timeout=20):
    state = tmp_path / "state-oneshot"
    state.mkdir(exist_ok=True)
    env = clean_env({"MOAT_STATE": str(state)})
    return subprocess.run([str(moat_bin)] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL,
                          cwd=tmp_path)


def pair(chain, key):
    return types.SimpleNamespace(chain=chain, key=key)


# -- command line ------------------------------------------------------------------------------


def test_version(moat_bin, tmp_path):
    p = run_moat(moat_bin, tmp_path, "--version")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("moat 0.1.0"), p.stdout


def test_help(moat_bin, tmp_path):
    p = run_moat(moat_bin, tmp_path, "--help")
    assert p.returncode == 0, p.stderr
    assert "serve" in p.stdout


def test_serve_help(moat_bin, tmp_path):
    p = run_moat(moat_bin, tmp_path, "serve", "--help")
    assert p.returncode == 0, p.stderr
    for flag in ("--config", "--listen", "--root", "--check"):
        assert flag in p.stdout, flag


@pytest.mark.parametrize("args", [
    ["serve", "--no-such-flag"],
    ["no-such-command"],
    ["serve", "--listen", "not-an-address", "--root", "."],
    ["serve", "--listen", "127.0.0.1:99999", "--root", "."],
    ["serve", "--listen", "127.0.0.1:8443", "--root", ".", "--workers", "many"],
    ["serve", "--listen", "127.0.0.1:8443", "--root", ".", "--log-level", "chatty"],
    ["serve", "--config"],
])
def test_usage_errors_exit_2(moat_bin, tmp_path, args):
    p = run_moat(moat_bin, tmp_path, *args)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.strip(), "no message on stderr"


def test_missing_config_file(moat_bin, tmp_path):
    p = run_moat(moat_bin, tmp_path, "serve", "--check", "--config", tmp_path / "nope.conf")
    assert p.returncode in (1, 2)
    assert "nope.conf" in p.stderr


# -- serve --check -----------------------------------------------------------------------------


def test_check_ok(moat, pki, www, moat_bin, tmp_path):
    m = moat()
    conf = m.write_config(standard_config(m, pki, www))
    p = run_moat(moat_bin, tmp_path, "serve", "--check", "--config", conf)
    assert p.returncode == 0, p.stderr
    assert "%s: ok" % conf in p.stdout
    # --check does not start serving.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", m.port), timeout=1).close()


def _base(m, www):
    return "listen 127.0.0.1:%d\nworkers 1\nstate %s\n" % (m.port, m.state)


# (name, text after the 3 base lines, line number of the error or None for "some line")
CHECK_ERRORS = [
    ("unknown_directive", "frobnicate 12\nsite * {{ root {www} }}\n", 4),
    ("bad_size", "limits {{ body 1q }}\nsite * {{ root {www} }}\n", 4),
    ("bad_duration", "timeouts {{ head forever }}\nsite * {{ root {www} }}\n", 4),
    ("bad_workers", "site * {{ root {www} }}\nworkers zero\n", 5),
    ("unknown_in_site", "site * {{\n    root {www}\n    colour blue\n}}\n", 6),
    ("unknown_in_tls", "tls {{ tickets maybe }}\nsite * {{ root {www} }}\n", 4),
    ("missing_brace", "site * {{\n    root {www}\n", None),
    ("extra_brace", "site * {{ root {www} }}\n}}\n", 5),
    ("site_without_name", "site {{ root {www} }}\n", 4),
    ("bad_hsts", "site * {{\n    root {www}\n    hsts forever\n}}\n", 6),
    ("bad_access_log_format", "access_log stdout yaml\nsite * {{ root {www} }}\n", 4),
]


@pytest.mark.parametrize("name,body,line", CHECK_ERRORS, ids=[c[0] for c in CHECK_ERRORS])
def test_check_error_position(moat, www, moat_bin, tmp_path, name, body, line):
    m = moat()
    conf = m.write_config(_base(m, www) + body.format(www=www))
    p = run_moat(moat_bin, tmp_path, "serve", "--check", "--config", conf)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert ": ok" not in p.stdout
    want = r"moat\.conf:%s:\d+: \S" % (line if line is not None else r"\d+")
    assert re.search(want, p.stderr), p.stderr


def test_serve_refuses_bad_config_exit_2(moat, www):
    m = moat()
    m.write_config(_base(m, www) + "frobnicate 12\nsite * { root %s }\n" % www)
    m.start(wait=False)
    assert m.wait_exit(20) == 2
    assert re.search(r"moat\.conf:4:\d+: ", m.stderr()), m.stderr()


# -- start-up refusals -------------------------------------------------------------------------


def _refusal(moat, pki, www, certs, words=()):
    m = moat()
    m.write_config(standard_config(m, pki, www, example_certs=certs))
    m.start(wait=False)
    rc = m.wait_exit(20)
    err = m.stderr()
    assert rc is not None, "moat did not refuse to start; stderr:\n" + err
    assert rc in (1, 2), (rc, err)
    for w in words:
        assert w.lower() in err.lower(), (w, err)
    return err


def test_refuse_key_not_matching_cert(moat, pki, www):
    err = _refusal(moat, pki, www, [pair(pki.ec.chain, pki.other_key)])
    assert pki.ec.chain.name in err or pki.other_key.name in err, err


def test_refuse_chain_in_wrong_order_says_so(moat, pki, www, tmp_path):
    # The intermediate before the leaf: not a "wrong key" but a wrong order, and the message
    # must say which, with the fix.
    bad = tmp_path / "wrong-order.pem"
    bad.write_text(pki.inter.read_text() + pki.ec.chain.read_text().split(pki.inter.read_text())[0])
    err = _refusal(moat, pki, www, [pair(bad, pki.ec.key)], ["wrong order", "first"])
    assert bad.name in err, err


def test_refuse_expired_cert(moat, pki, www):
    err = _refusal(moat, pki, www, [pair(pki.expired.chain, pki.expired.key)], ["expired"])
    assert pki.expired.chain.name in err, err


def test_missing_intermediate_warns_but_starts(moat, pki, www):
    # The file has only the leaf; the intermediate that issued it is nowhere, the root is in
    # `trust`. moat cannot tell an intermediate the file should carry from a private root its
    # clients trust (issue 10, item 1), so it serves the file and says, at start, what to do
    # in either case. Clients that trust only the root do fail, which is what the warning says.
    m = moat()
    m.write_config(standard_config(m, pki, www, example_certs=[pair(pki.leaf_only, pki.ec.key)]))
    m.start()
    lines = [ln for ln in m.stderr().splitlines() if "holds only the server certificate" in ln]
    assert len(lines) == 1, m.stderr()
    assert pki.leaf_only.name in lines[0] and "CN = moat test intermediate" in lines[0], lines[0]
    for w in ("is an intermediate CA", "append the intermediate", "your own root CA",
              "cert_ca ROOT.pem"):
        assert w in lines[0], (w, lines[0])
    with pytest.raises(ssl.SSLCertVerificationError):
        Conn(m.port, cafile=pki.root, sni="example.test").close()


def test_refuse_encrypted_key(moat, pki, www):
    err = _refusal(moat, pki, www, [pair(pki.ec.chain, pki.encrypted_key)])
    assert pki.encrypted_key.name in err, err


def test_refuse_missing_key(moat, pki, www, tmp_path):
    missing = tmp_path / "no-such.key"
    err = _refusal(moat, pki, www, [pair(pki.ec.chain, missing)])
    assert missing.name in err, err


def test_refuse_garbage_key(moat, pki, www, tmp_path):
    bad = tmp_path / "garbage.key"
    bad.write_text("this is not a key\n")
    os.chmod(bad, 0o600)
    err = _refusal(moat, pki, www, [pair(pki.ec.chain, bad)])
    assert bad.name in err, err


def test_refuse_missing_cert(moat, pki, www, tmp_path):
    missing = tmp_path / "no-such-cert.pem"
    err = _refusal(moat, pki, www, [pair(missing, pki.ec.key)])
    assert missing.name in err, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode 000 files anyway")
def test_refuse_unreadable_key(moat, pki, www, tmp_path):
    key = tmp_path / "unreadable.key"
    shutil.copy(pki.ec.key, key)
    os.chmod(key, 0)
    err = _refusal(moat, pki, www, [pair(pki.ec.chain, key)])
    assert key.name in err, err


def test_refuse_port_in_use_exit_1(moat, www):
    m = moat()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        m.start(["serve", "--listen", "127.0.0.1:%d" % port, "--root", www], wait=False)
        rc = m.wait_exit(20)
    assert rc == 1, (rc, m.stderr())
    assert str(port) in m.stderr()


def test_key_world_readable_warns_but_starts(moat, pki, www, tmp_path):
    key = tmp_path / "loose.key"
    shutil.copy(pki.ec.key, key)
    os.chmod(key, 0o644)
    m = moat()
    m.write_config(standard_config(m, pki, www, example_certs=[pair(pki.ec.chain, key)]))
    m.start()
    assert wait_for(lambda: key.name in m.stderr(), 5), m.stderr()
    with Conn(m.port, cafile=pki.root) as c:
        assert c.request("/a.txt").status == 200


# -- zero-config: the local CA -----------------------------------------------------------------


def _zero(moat, www, *extra):
    m = moat()
    m.start(["serve", "--listen", "127.0.0.1:%d" % m.port, "--root", www,
             "--access-log", "off"] + list(extra))
    return m


def test_zero_config_local_ca(moat, www, tmp_path):
    m = _zero(moat, www)
    root = m.state / "ca" / "root.pem"
    assert root.is_file()
    r = curl(tmp_path, "https://localhost:%d/" % m.port, port=m.port, host="localhost",
             cacert=root)
    assert r.rc == 0, r.stderr
    assert r.status == 200
    assert b"INDEX-PAGE" in r.body
    # RFC 6797 §8.1 aside, HSTS on localhost would pin a developer's browser: not by default.
    assert r.header("strict-transport-security") is None


def test_local_ca_localhost_site_covers_the_loopback_addresses(moat, www, tmp_path):
    # A site named localhost with no certificate of its own gets the local CA's, naming the
    # loopback addresses too (RFC 6761 §6.3): https://127.0.0.1/ verifies as https://localhost/
    # does. A site of other names gets only its names.
    m = moat()
    m.write_config(f"""listen 127.0.0.1:{m.port} [::1]:{m.port}
workers 1
state {m.state}
access_log off
site localhost {{
    root {www}
}}
site other.test {{
    root {www}
}}
""")
    m.start()
    root = m.state / "ca" / "root.pem"
    for url, host in (("https://127.0.0.1:%d/a.txt", None), ("https://[::1]:%d/a.txt", None),
                      ("https://localhost:%d/a.txt", "localhost")):
        r = curl(tmp_path, url % m.port, port=m.port, host=host, cacert=root)
        assert r.rc == 0, r.stderr
        assert r.status == 200 and r.body == b"file A\n"
    sans = {}
    for name in ("localhost", "other.test"):
        p = run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % m.port, "-servername", name,
                 "-showcerts"], input="", stdin=None, timeout=15)
        pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", p.stdout,
                        re.S).group(0)
        x = run([OPENSSL, "x509", "-noout", "-ext", "subjectAltName"], input=pem, stdin=None, timeout=15)
        sans[name] = x.stdout
    assert "DNS:localhost" in sans["localhost"], sans
    assert "IP Address:127.0.0.1" in sans["localhost"], sans
    assert "IP Address:0:0:0:0:0:0:0:1" in sans["localhost"], sans
    assert "DNS:other.test" in sans["other.test"], sans
    assert "IP Address" not in sans["other.test"], sans


def test_zero_config_python_verifies(moat, www):
    m = _zero(moat, www)
    with Conn(m.port, cafile=m.state / "ca" / "root.pem", sni="localhost") as c:
        r = c.request("/a.txt", host="localhost")
        assert r.status == 200
        assert r.body == b"file A\n"


def test_state_keys_are_private(moat, www):
    m = _zero(moat, www)
    keys = [p for p in m.state.rglob("*") if p.is_file() and
            b"PRIVATE KEY" in p.read_bytes()[:4096]]
    assert keys, "no private key found under %s" % m.state
    for p in keys:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == 0o600, "%s has mode %o" % (p, mode)


def test_zero_config_ca_reused_on_restart(moat, www, tmp_path):
    m = _zero(moat, www)
    root = m.state / "ca" / "root.pem"
    first = root.read_bytes()
    assert m.stop() == 0
    m.start()
    assert root.read_bytes() == first
    r = curl(tmp_path, "https://localhost:%d/a.txt" % m.port, port=m.port, host="localhost",
             cacert=root)
    assert r.rc == 0 and r.body == b"file A\n", r.stderr


def test_quick_flags_with_cert(moat, pki, www, tmp_path):
    # Quick mode has no `trust`: the chain file carries the private root so that moat's
    # start-up chain check can end at an anchor.
    full = tmp_path / "full.pem"
    full.write_text(pki.ec.chain.read_text() + pki.root.read_text())
    m = moat()
    m.start(["serve", "--listen", "127.0.0.1:%d" % m.port, "--root", www,
             "--cert", full, "--key", pki.ec.key, "--workers", "1",
             "--log-level", "debug", "--access-log", "stdout"])
    with Conn(m.port, cafile=pki.root, sni="example.test") as c:
        assert c.sock.getpeercert(binary_form=True) == pki.ec.der
        assert c.request("/a.txt").body == b"file A\n"
    # --access-log stdout: the request shows up on stdout.
    assert wait_for(lambda: "/a.txt" in m.stdout(), 5), m.stdout()


def test_quick_flags_bad_key_refused(moat, pki, www):
    m = moat()
    m.start(["serve", "--listen", "127.0.0.1:%d" % m.port, "--root", www,
             "--cert", pki.ec.chain, "--key", pki.other_key], wait=False)
    rc = m.wait_exit(20)
    assert rc in (1, 2), (rc, m.stderr())
    assert pki.ec.chain.name in m.stderr() or pki.other_key.name in m.stderr()


def test_check_refuses_expired_cert(moat, pki, www, moat_bin, tmp_path):
    # --check validates certificates and keys too, not only the syntax.
    m = moat()
    conf = m.write_config(standard_config(m, pki, www, example_certs=[
        pair(pki.expired.chain, pki.expired.key)]))
    p = run_moat(moat_bin, tmp_path, "serve", "--check", "--config", conf)
    assert p.returncode in (1, 2), (p.returncode, p.stdout, p.stderr)
    assert ": ok" not in p.stdout
    assert pki.expired.chain.name in p.stderr


# -- HSTS per site -----------------------------------------------------------------------------


def _hsts_server(moat, www, site_lines):
    m = moat()
    m.write_config("listen 127.0.0.1:%d\nworkers 1\nstate %s\n"
                   "site localhost {\n    root %s\n%s}\n" % (m.port, m.state, www, site_lines))
    m.start()
    return m


@pytest.mark.parametrize("lines,want", [
    ("", None),                                            # localhost: off unless asked
    ("    hsts 1y\n", "max-age=31536000"),
    ("    hsts 1y include_subdomains\n", "max-age=31536000; includeSubDomains"),
    ("    hsts off\n", None),
])
def test_hsts_for_localhost_site(moat, www, lines, want):
    m = _hsts_server(moat, www, lines)
    with Conn(m.port, cafile=m.state / "ca" / "root.pem", sni="localhost") as c:
        r = c.request("/a.txt", host="localhost")
        assert r.status == 200
        got = r.header("strict-transport-security")
        if want is None:
            assert got is None, got
        else:
            assert got is not None and got.replace(" ", "").lower() == \
                want.replace(" ", "").lower(), got
