"""Certificates whose issuer moat cannot find (issue 10, item 1).

The most common private set-up is a root that signs server certificates directly (`openssl
x509 -req -CA root.pem`, mkcert, a small internal CA). moat cannot tell such a root from an
intermediate missing from the file, so it serves the file and warns, naming both cases and the
fix for each; `cert_ca FILE` (config) or `--ca FILE` (quick flags) names the root, and then moat
checks the chain against it and refuses only a certificate that certainly does not lead there.
What is certainly wrong (key mismatch, wrong order, expired) is still refused, cert_ca or not.
Everything here is made with the openssl command, the way people make it."""

import os
import re
import signal
import subprocess
import types

import pytest

from helpers import OPENSSL, clean_env, curl, run, wait_for

# Words of the warning for a lone leaf whose issuer nobody knows.
LONE_LEAF = "holds only the server certificate"
BOTH_FIXES = ["Served anyway", "(a) if", "is an intermediate CA", "append the intermediate",
              "full-chain file", "(b) if", "is your own root CA", "nothing to do",
              "cert_ca ROOT.pem", "--ca ROOT.pem"]
# Words of the warning for a full chain whose root nobody knows.
FULL_CHAIN = "normally a root, which this machine does not know"


def _key(path):
    run([OPENSSL, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", path])
    os.chmod(path, 0o600)
    return path


def _root(d, stem, cn):
    key = _key(d / (stem + ".key"))
    pem = d / (stem + ".pem")
    run([OPENSSL, "req", "-x509", "-new", "-key", key, "-subj", "/CN=" + cn, "-days", "365",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", pem])
    return types.SimpleNamespace(pem=pem, key=key)


def _sign(d, stem, cn, issuer, ext):
    """A certificate for `cn` signed by `issuer` with `openssl x509 -req -CA`."""
    key = _key(d / (stem + ".key"))
    csr = d / (stem + ".csr")
    run([OPENSSL, "req", "-new", "-key", key, "-subj", "/CN=" + cn, "-out", csr])
    extf = d / (stem + ".ext")
    extf.write_text(ext)
    pem = d / (stem + ".pem")
    run([OPENSSL, "x509", "-req", "-in", csr, "-CA", issuer.pem, "-CAkey", issuer.key,
         "-set_serial", "0x" + os.urandom(8).hex(), "-days", "30", "-extfile", extf,
         "-out", pem])
    return types.SimpleNamespace(pem=pem, key=key)


SERVER_EXT = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
CA_EXT = "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"


@pytest.fixture(scope="module")
def priv(tmp_path_factory):
    """A private root that signs the leaf directly; another CA; a root with the same name as
    the first but another key; and a root -> intermediate -> leaf chain."""
    d = tmp_path_factory.mktemp("private-ca")
    root = _root(d, "root", "Private Test Root")
    leaf = _sign(d, "leaf", "localhost", root, SERVER_EXT)
    other = _root(d, "other", "Some Other CA")
    twin = _root(d, "twin", "Private Test Root")
    root2 = _root(d, "root2", "Two-Level Root")
    inter2 = _sign(d, "inter2", "Two-Level Intermediate", root2, CA_EXT)
    leaf2 = _sign(d, "leaf2", "localhost", inter2, SERVER_EXT)
    full2 = d / "leaf2-and-inter2.pem"
    full2.write_text(leaf2.pem.read_text() + inter2.pem.read_text())
    return types.SimpleNamespace(dir=d, root=root, leaf=leaf, other=other, twin=twin,
                                 root2=root2, inter2=inter2, leaf2=leaf2, full2=full2)


def _quick(m, www, cert, key, *extra):
    return ["serve", "--listen", "127.0.0.1:%d" % m.port, "--root", www, "--cert", cert,
            "--key", key, "--workers", "1"] + [str(a) for a in extra]


def _conf(m, www, cert, key, site_extra="", top_extra=""):
    return ("listen 127.0.0.1:%d\nworkers 1\nstate %s\nerror_log stderr info\n%s"
            "site localhost {\n    cert %s %s\n%s    root %s\n}\n"
            % (m.port, m.state, top_extra, cert, key, site_extra, www))


def _get(m, tmp_path, cacert):
    r = curl(tmp_path, "https://localhost:%d/" % m.port, port=m.port, host="localhost",
             cacert=cacert)
    assert r.rc == 0, r.stderr
    return r


def _warning_lines(text, needle):
    return [ln for ln in text.splitlines() if needle in ln]


def _check(moat_bin, tmp_path, *args):
    state = tmp_path / "check-state"
    state.mkdir(exist_ok=True)
    return subprocess.run([str(moat_bin), "serve", "--check"] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                          env=clean_env({"MOAT_STATE": str(state)}), cwd=tmp_path)


def _refused(m, words):
    rc = m.wait_exit(20)
    err = m.stderr()
    assert rc is not None, "moat did not refuse to start; stderr:\n" + err
    assert rc in (1, 2), (rc, err)
    for w in words:
        assert w in err, (w, err)
    return err


# -- a leaf issued directly by a private root --------------------------------------------------


def test_private_root_leaf_is_served_with_both_fixes(moat, www, priv, tmp_path):
    m = moat()
    m.start(_quick(m, www, priv.leaf.pem, priv.leaf.key))
    r = _get(m, tmp_path, priv.root.pem)
    assert r.status == 200 and b"INDEX-PAGE" in r.body
    lines = _warning_lines(m.stderr(), LONE_LEAF)
    assert len(lines) == 1, m.stderr()
    line = lines[0]
    assert " warn " in line and str(priv.leaf.pem) in line, line
    assert "CN = Private Test Root" in line, line
    for w in BOTH_FIXES:
        assert w in line, (w, line)
    assert "missing intermediate:" not in m.stderr()


def test_private_root_leaf_in_a_config_file(moat, www, priv, tmp_path):
    m = moat()
    m.write_config(_conf(m, www, priv.leaf.pem, priv.leaf.key))
    m.start()
    assert _get(m, tmp_path, priv.root.pem).status == 200
    lines = _warning_lines(m.stderr(), LONE_LEAF)
    assert len(lines) == 1, m.stderr()
    # The warning names the cert directive's place in the file.
    assert re.search(r"moat\.conf:6:\d+: ", lines[0]), lines[0]


@pytest.mark.parametrize("how", ["cert_ca", "--ca", "trust"])
def test_named_root_checks_the_chain_without_warning(moat, www, priv, tmp_path, how):
    m = moat()
    if how == "--ca":
        m.start(_quick(m, www, priv.leaf.pem, priv.leaf.key, "--ca", priv.root.pem))
    elif how == "cert_ca":
        m.write_config(_conf(m, www, priv.leaf.pem, priv.leaf.key,
                             site_extra="    cert_ca %s\n" % priv.root.pem))
        m.start()
    else:
        m.write_config(_conf(m, www, priv.leaf.pem, priv.leaf.key,
                             top_extra="trust %s\n" % priv.root.pem))
        m.start()
    assert _get(m, tmp_path, priv.root.pem).status == 200
    err = m.stderr()
    assert LONE_LEAF not in err and FULL_CHAIN not in err, err
    assert "[missing_intermediate]" not in err and "[unknown_issuer]" not in err, err


def test_cert_ca_of_another_ca_is_refused(moat, www, priv):
    m = moat()
    m.write_config(_conf(m, www, priv.leaf.pem, priv.leaf.key,
                         site_extra="    cert_ca %s\n" % priv.other.pem))
    m.start(wait=False)
    err = _refused(m, ["wrong CA", str(priv.leaf.pem), str(priv.other.pem),
                       "issued by CN = Private Test Root", "CN = Some Other CA"])
    assert LONE_LEAF not in err


def test_ca_flag_of_another_ca_is_refused(moat, www, priv):
    m = moat()
    m.start(_quick(m, www, priv.leaf.pem, priv.leaf.key, "--ca", priv.other.pem), wait=False)
    _refused(m, ["wrong CA", str(priv.other.pem)])


def test_cert_ca_with_the_same_name_but_another_key_is_refused(moat, www, priv):
    m = moat()
    m.write_config(_conf(m, www, priv.leaf.pem, priv.leaf.key,
                         site_extra="    cert_ca %s\n" % priv.twin.pem))
    m.start(wait=False)
    _refused(m, ["bad signature", "holds a CA named CN = Private Test Root",
                 "did not sign it"])


def test_cert_ca_naming_a_server_certificate_is_refused(moat, www, priv):
    m = moat()
    m.write_config(_conf(m, www, priv.leaf.pem, priv.leaf.key,
                         site_extra="    cert_ca %s\n" % priv.leaf.pem))
    m.start(wait=False)
    _refused(m, ["holds no CA certificate"])


def test_cert_ca_without_cert_is_a_config_error(moat, www, priv, moat_bin, tmp_path):
    m = moat()
    conf = m.write_config("listen 127.0.0.1:%d\nstate %s\nsite localhost {\n    cert_ca %s\n"
                          "    root %s\n}\n" % (m.port, m.state, priv.root.pem, www))
    p = _check(moat_bin, tmp_path, "--config", conf)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert re.search(r"moat\.conf:3:\d+: .*cert_ca but no cert", p.stderr), p.stderr
    p = subprocess.run([str(moat_bin), "serve", "--root", www, "--ca", priv.root.pem],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "--ca names the CA of --cert" in p.stderr, p.stderr


# -- a full chain (leaf + intermediate) whose root is not known here ---------------------------


def test_full_chain_with_unknown_root_is_served_with_its_own_words(moat, www, priv, tmp_path):
    m = moat()
    m.start(_quick(m, www, priv.full2, priv.leaf2.key))
    assert _get(m, tmp_path, priv.root2.pem).status == 200
    lines = _warning_lines(m.stderr(), FULL_CHAIN)
    assert len(lines) == 1, m.stderr()
    line = lines[0]
    assert "CN = Two-Level Root" in line and "fine if your clients trust" in line, line
    assert "cert_ca ROOT.pem" in line and "--ca ROOT.pem" in line, line
    # The file already is the full chain: no "use the fullchain file" here.
    for w in ("fullchain", "full-chain", "append"):
        assert w not in line, (w, line)
    assert LONE_LEAF not in m.stderr()


def test_full_chain_with_cert_ca_root(moat, www, priv, tmp_path):
    m = moat()
    m.start(_quick(m, www, priv.full2, priv.leaf2.key, "--ca", priv.root2.pem))
    assert _get(m, tmp_path, priv.root2.pem).status == 200
    assert FULL_CHAIN not in m.stderr() and LONE_LEAF not in m.stderr()


def test_cert_ca_root_but_intermediate_missing_is_refused(moat, www, priv):
    # The root is named, but the file lacks the intermediate between it and the leaf: clients
    # that trust that root cannot build the chain.
    m = moat()
    m.start(_quick(m, www, priv.leaf2.pem, priv.leaf2.key, "--ca", priv.root2.pem), wait=False)
    _refused(m, ["wrong CA", "an intermediate between them is missing", "full-chain file"])


def test_cert_ca_with_intermediate_warns_when_the_file_lacks_it(moat, www, priv, tmp_path):
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_text(priv.inter2.pem.read_text() + priv.root2.pem.read_text())
    m = moat()
    m.start(_quick(m, www, priv.leaf2.pem, priv.leaf2.key, "--ca", bundle))
    lines = _warning_lines(m.stderr(), "clients that trust only the root will refuse it")
    assert len(lines) == 1, m.stderr()
    assert "CN = Two-Level Intermediate" in lines[0], lines[0]


# -- the warning at start, on reload and in --check --------------------------------------------


def test_warning_on_reload(moat, www, priv, tmp_path):
    m = moat()
    m.write_config(_conf(m, www, priv.leaf.pem, priv.leaf.key))
    m.start()
    assert len(_warning_lines(m.stderr(), LONE_LEAF)) == 1
    m.signal(signal.SIGHUP)
    assert wait_for(lambda: "now serving configuration generation 2" in m.stderr(), 10), \
        m.stderr()
    assert len(_warning_lines(m.stderr(), LONE_LEAF)) == 2, m.stderr()
    # Naming the root and reloading makes it go away.
    m.write_config(_conf(m, www, priv.leaf.pem, priv.leaf.key,
                         site_extra="    cert_ca %s\n" % priv.root.pem))
    m.signal(signal.SIGHUP)
    assert wait_for(lambda: "now serving configuration generation 3" in m.stderr(), 10), \
        m.stderr()
    assert len(_warning_lines(m.stderr(), LONE_LEAF)) == 2, m.stderr()
    assert _get(m, tmp_path, priv.root.pem).status == 200


def test_check_prints_the_warning(moat_bin, www, priv, tmp_path):
    p = _check(moat_bin, tmp_path, "--root", www, "--cert", priv.leaf.pem, "--key",
               priv.leaf.key)
    assert p.returncode == 0, p.stderr
    assert "command line: ok" in p.stdout
    lines = _warning_lines(p.stderr, LONE_LEAF)
    assert len(lines) == 1, p.stderr
    for w in BOTH_FIXES:
        assert w in lines[0], (w, lines[0])
    p = _check(moat_bin, tmp_path, "--root", www, "--cert", priv.full2, "--key", priv.leaf2.key)
    assert p.returncode == 0 and len(_warning_lines(p.stderr, FULL_CHAIN)) == 1, p.stderr
    p = _check(moat_bin, tmp_path, "--root", www, "--cert", priv.leaf.pem, "--key",
               priv.leaf.key, "--ca", priv.root.pem)
    assert p.returncode == 0 and LONE_LEAF not in p.stderr, p.stderr
    p = _check(moat_bin, tmp_path, "--root", www, "--cert", priv.leaf.pem, "--key",
               priv.leaf.key, "--ca", priv.other.pem)
    assert p.returncode == 1 and "wrong CA" in p.stderr, p.stderr
    assert ": ok" not in p.stdout


# -- what is certainly wrong is still refused, cert_ca or not -----------------------------------


@pytest.mark.parametrize("with_ca", [False, True], ids=["no-cert_ca", "cert_ca"])
def test_key_mismatch_still_refused(moat, www, priv, with_ca):
    m = moat()
    extra = ["--ca", priv.root.pem] if with_ca else []
    m.start(_quick(m, www, priv.leaf.pem, priv.other.key, *extra), wait=False)
    _refused(m, ["does not match the private key", str(priv.leaf.pem)])


@pytest.mark.parametrize("with_ca", [False, True], ids=["no-cert_ca", "cert_ca"])
def test_wrong_order_still_refused(moat, www, priv, tmp_path, with_ca):
    bad = tmp_path / "inter-first.pem"
    bad.write_text(priv.inter2.pem.read_text() + priv.leaf2.pem.read_text())
    m = moat()
    extra = ["--ca", priv.root2.pem] if with_ca else []
    m.start(_quick(m, www, bad, priv.leaf2.key, *extra), wait=False)
    _refused(m, ["wrong order", str(bad)])


@pytest.mark.parametrize("with_ca", [False, True], ids=["no-cert_ca", "cert_ca"])
def test_expired_still_refused(moat, www, pki, with_ca):
    m = moat()
    extra = ["--ca", pki.root] if with_ca else []
    m.start(_quick(m, www, pki.expired.chain, pki.expired.key, *extra), wait=False)
    _refused(m, ["expired", str(pki.expired.chain)])
