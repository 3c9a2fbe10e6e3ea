"""The certificate toolkit end to end: `moat key/csr/ca/cert/verify/trust` against openssl,
curl and `moat serve`.

Every certificate moat issues must verify with `openssl verify -x509_strict` (with its chain),
be accepted by curl against `moat serve`, and CSRs must cross over both ways between moat and
openssl. For each failure kind of `moat verify`, a certificate with exactly that defect is made
with openssl and the message and exit code are checked. `moat trust` runs against a temporary
HOME (NSS database) and a temporary system folder, with a stand-in update command.
"""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from helpers import CURL, OPENSSL, clean_env, run
from pki_cli_helpers import Forge, MoatCli, openssl_verify

KEY_TYPES = ["p256", "p384", "rsa2048", "ed25519"]


@pytest.fixture
def cli(moat_bin, tmp_path):
    return MoatCli(moat_bin, tmp_path / "work")


@pytest.fixture(scope="module")
def forge(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not installed")
    return Forge(tmp_path_factory.mktemp("forge"), "forge")


def curl_get(port, cafile, host="example.test", path="/", extra=()):
    cmd = [CURL, "-sS", "--max-time", "10", "--cacert", str(cafile), "--resolve",
           "%s:%d:127.0.0.1" % (host, port), "https://%s:%d%s" % (host, port, path)]
    return subprocess.run(cmd + list(extra), capture_output=True, text=True, timeout=30,
                          env=clean_env())


# ---------------------------------------------------------------------------------------------
# Help, and refusals that protect keys
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["key", "--help"], ["key", "new", "--help"], ["csr", "--help"], ["csr", "new", "--help"],
    ["ca", "--help"], ["ca", "init", "--help"], ["ca", "sign", "--help"], ["cert", "--help"],
    ["cert", "issue", "--help"], ["cert", "self-signed", "--help"], ["verify", "--help"],
    ["trust", "--help"], ["trust", "install", "--help"],
])
def test_every_command_has_help_with_an_example(cli, args):
    p = cli(*args)
    assert "usage: moat" in p.stdout and "Example" in p.stdout, p.stdout


def test_top_level_help_lists_the_commands(cli):
    p = cli("--help")
    for c in ("cert", "ca", "csr", "key", "verify", "trust"):
        assert "\n  %s " % c in p.stdout


@pytest.mark.parametrize("args,needle", [
    (["cert", "issue"], "give the names"),
    (["cert", "issue", "bad name"], "not a valid name"),
    (["cert", "issue", "ada@example.test"], "use --client"),
    (["cert", "issue", "a.test", "--days", "826"], "1 to 825"),
    (["cert", "issue", "a.test", "--days", "x"], "number of days"),
    (["cert", "issue", "a.test", "--key-type", "dsa"], "unknown key type"),
    (["cert", "issue", "a.test", "--bogus"], "unknown option"),
    (["ca", "sign"], "give one CSR"),
    (["ca", "init", "--days", "3"], "does not apply"),
    (["verify"], "give one certificate"),
    (["trust", "install", "--no-system", "--no-nss"], "nothing to do"),
    (["key", "new"], "give the key file"),
    (["ca", "frobnicate"], "unknown subcommand"),
])
def test_usage_errors_exit_2(cli, args, needle):
    p = cli(*args, expect=2)
    assert needle in p.stderr, p.stderr


def test_keys_are_never_overwritten_without_force(cli):
    cli("key", "new", "k.key")
    key = cli.dir / "k.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    p = cli("key", "new", "k.key", expect=2)
    assert "k.key already exists" in p.stderr and "--force" in p.stderr
    assert key.read_bytes() == before
    cli("key", "new", "k.key", "--force", "--type", "rsa2048")
    assert key.read_bytes() != before
    assert "RSA 2048" in cli("key", "show", "k.key").stdout

    cli("ca", "init", "--dir", "ca")
    cli("cert", "issue", "a.test", "--ca", "ca", "--out", "a")
    first = (cli.dir / "a.key").read_bytes()
    p = cli("cert", "issue", "a.test", "--ca", "ca", "--out", "a", expect=2)
    assert "a.key already exists" in p.stderr
    assert (cli.dir / "a.key").read_bytes() == first
    cli("cert", "issue", "a.test", "--ca", "ca", "--out", "a", "--force")
    assert (cli.dir / "a.key").read_bytes() != first
    assert stat.S_IMODE((cli.dir / "a.key").stat().st_mode) == 0o600
    # ca init never replaces a CA
    root = (cli.dir / "ca" / "root.pem").read_bytes()
    p = cli("ca", "init", "--dir", "ca", expect=2)
    assert "already holds a CA" in p.stderr
    assert (cli.dir / "ca" / "root.pem").read_bytes() == root
    assert not list((cli.dir / "ca").glob("*.tmp"))


def test_errors_name_the_file(cli, forge):
    p = cli("cert", "show", "missing.pem", expect=1)
    assert "missing.pem" in p.stderr
    p = cli("ca", "sign", str(forge.root), "--ca", "nowhere", expect=1)
    assert str(forge.root) in p.stderr and "holds a certificate, not a signing request" in p.stderr
    p = cli("verify", str(forge.root_key), expect=1)
    assert str(forge.root_key) in p.stderr and "private key" in p.stderr
    p = cli("cert", "issue", "a.test", "--ca", "nowhere", expect=1)
    assert "nowhere" in p.stderr and "moat ca init" in p.stderr
    assert not (cli.dir / "nowhere").exists()


# ---------------------------------------------------------------------------------------------
# Issued certificates against openssl and curl
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_issued_server_certificates_verify_with_openssl(cli, key_type):
    cli("ca", "init", "--dir", "ca", "--name", "Test %s CA" % key_type, "--key-type", key_type)
    ca = cli.dir / "ca"
    for f, mode in (("root.key", 0o600), ("intermediate.key", 0o600), ("root.pem", 0o644)):
        assert stat.S_IMODE((ca / f).stat().st_mode) == mode
    p = cli("cert", "issue", "example.test", "*.example.test", "127.0.0.1", "::1",
            "--ca", "ca", "--key-type", key_type, "--out", "srv")
    assert "srv.fullchain.pem" in p.stdout
    assert stat.S_IMODE((cli.dir / "srv.key").stat().st_mode) == 0o600
    full = cli.dir / "srv.fullchain.pem"
    for host in ("example.test", "a.example.test"):
        v = openssl_verify(ca / "root.pem", cli.dir / "srv.cert.pem", untrusted=full, host=host)
        assert v.returncode == 0, v.stdout + v.stderr
    v = openssl_verify(ca / "root.pem", cli.dir / "srv.cert.pem", untrusted=full,
                       extra=["-verify_ip", "127.0.0.1"])
    assert v.returncode == 0, v.stderr
    # and moat's own verifier agrees
    p = cli("verify", "srv.fullchain.pem", "--cafile", "ca/root.pem", "--host", "example.test")
    assert "valid as a TLS server certificate" in p.stdout
    # 90 days by default
    end = run([OPENSSL, "x509", "-in", cli.dir / "srv.cert.pem", "-noout", "-checkend",
               str(89 * 86400)], check=False)
    assert end.returncode == 0
    end = run([OPENSSL, "x509", "-in", cli.dir / "srv.cert.pem", "-noout", "-checkend",
               str(91 * 86400)], check=False)
    assert end.returncode != 0


def test_issued_client_certificates_verify_with_openssl(cli):
    cli("ca", "init", "--dir", "ca")
    cli("cert", "issue", "ada@example.test", "spiffe://example.test/ada", "--client",
        "--ca", "ca", "--out", "ada")
    full = cli.dir / "ada.fullchain.pem"
    v = openssl_verify(cli.dir / "ca/root.pem", cli.dir / "ada.cert.pem", untrusted=full,
                       purpose="sslclient")
    assert v.returncode == 0, v.stderr
    v = openssl_verify(cli.dir / "ca/root.pem", cli.dir / "ada.cert.pem", untrusted=full,
                       purpose="sslserver")
    assert v.returncode != 0
    text = run([OPENSSL, "x509", "-in", cli.dir / "ada.cert.pem", "-noout", "-text"]).stdout
    assert "email:ada@example.test" in text and "URI:spiffe://example.test/ada" in text
    assert "TLS Web Client Authentication" in text


def test_default_is_moats_local_ca(cli):
    p = cli("cert", "issue", "localhost", "127.0.0.1")
    assert "created moat's local CA" in p.stderr
    root = cli.state / "ca" / "root.pem"
    assert root.is_file()
    v = openssl_verify(root, cli.dir / "localhost.cert.pem",
                       untrusted=cli.dir / "localhost.fullchain.pem", host="localhost")
    assert v.returncode == 0, v.stderr
    p = cli("cert", "issue", "second.test")
    assert "created" not in p.stderr  # the same CA again


def test_leaf_never_outlives_the_intermediate(cli):
    cli("ca", "init", "--dir", "ca")
    cli("cert", "issue", "ada@example.test", "--client", "--days", "3650", "--ca", "ca",
        "--out", "long")
    leaf_end = run([OPENSSL, "x509", "-in", cli.dir / "long.cert.pem", "-noout",
                    "-enddate"]).stdout
    inter_end = run([OPENSSL, "x509", "-in", cli.dir / "ca/intermediate.pem", "-noout",
                     "-enddate"]).stdout
    assert leaf_end == inter_end


@pytest.mark.parametrize("key_type", ["p256", "p384", "rsa2048"])
def test_curl_accepts_moat_serve_with_an_issued_certificate(cli, moat, www, key_type):
    cli("ca", "init", "--dir", "ca", "--key-type", key_type)
    cli("cert", "issue", "example.test", "--ca", "ca", "--key-type", key_type, "--out", "site")
    m = moat("serve-" + key_type)
    m.start(["serve", "--root", www, "--listen", "127.0.0.1:%d" % m.port,
             "--cert", cli.dir / "site.fullchain.pem", "--key", cli.dir / "site.key"])
    r = curl_get(m.port, cli.dir / "ca/root.pem")
    assert r.returncode == 0, r.stderr
    assert "INDEX-PAGE" in r.stdout
    # another CA's root does not work: curl refuses
    cli("ca", "init", "--dir", "other")
    r = curl_get(m.port, cli.dir / "other/root.pem")
    assert r.returncode == 60, r.stderr


def test_client_certificate_for_mutual_tls(cli, moat, www):
    cli("ca", "init", "--dir", "ca")
    cli("cert", "issue", "example.test", "--ca", "ca", "--out", "site")
    cli("cert", "issue", "ada@example.test", "--client", "--ca", "ca", "--out", "ada")
    m = moat("mtls")
    m.start(["serve", "--root", www, "--listen", "127.0.0.1:%d" % m.port,
             "--cert", cli.dir / "site.fullchain.pem", "--key", cli.dir / "site.key",
             "--client-ca", cli.dir / "ca/root.pem"])
    ca = cli.dir / "ca/root.pem"
    r = curl_get(m.port, ca, extra=["--cert", str(cli.dir / "ada.fullchain.pem"),
                                    "--key", str(cli.dir / "ada.key")])
    assert r.returncode == 0 and "INDEX-PAGE" in r.stdout, r.stderr
    r = curl_get(m.port, ca)
    assert r.returncode != 0 or "INDEX-PAGE" not in r.stdout


def test_intermediate_renewal_and_offline_root(cli):
    cli("ca", "init", "--dir", "root")
    old = (cli.dir / "root/intermediate.pem").read_text()
    cli("ca", "intermediate", "--ca", "root")
    assert (cli.dir / "root/intermediate.pem").read_text() != old
    assert len(list((cli.dir / "root").glob("intermediate-*.pem"))) == 1
    p = cli("ca", "intermediate", "--ca", "root", "--out", "issuing", "--name", "Issuing CA")
    assert "no root key" in p.stdout
    assert not (cli.dir / "issuing/root.key").exists()
    cli("cert", "issue", "svc.test", "--ca", "issuing", "--out", "svc")
    v = openssl_verify(cli.dir / "root/root.pem", cli.dir / "svc.cert.pem",
                       untrusted=cli.dir / "svc.fullchain.pem", host="svc.test")
    assert v.returncode == 0, v.stderr
    p = cli("ca", "intermediate", "--ca", "issuing", expect=1)
    assert "root.key" in p.stderr


# ---------------------------------------------------------------------------------------------
# CSRs across moat and openssl
# ---------------------------------------------------------------------------------------------

def test_openssl_csr_signed_by_moat(cli):
    cli("ca", "init", "--dir", "ca")
    key, csr = cli.dir / "o.key", cli.dir / "o.csr"
    run([OPENSSL, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-subj",
         "/CN=o.example.test", "-addext", "subjectAltName=DNS:o.example.test,IP:10.1.2.3",
         "-out", csr])
    p = cli("csr", "show", "o.csr")
    assert "DNS:o.example.test, IP:10.1.2.3" in p.stdout and "RSA 2048" in p.stdout
    cli("ca", "sign", "o.csr", "--ca", "ca", "--out", "o.pem", "--days", "30")
    v = openssl_verify(cli.dir / "ca/root.pem", cli.dir / "o.pem", untrusted=cli.dir / "o.pem",
                       host="o.example.test")
    assert v.returncode == 0, v.stderr
    v = openssl_verify(cli.dir / "ca/root.pem", cli.dir / "o.pem", untrusted=cli.dir / "o.pem",
                       extra=["-verify_ip", "10.1.2.3"])
    assert v.returncode == 0, v.stderr
    # the key in the certificate is the CSR's
    a = run([OPENSSL, "x509", "-in", cli.dir / "o.pem", "-noout", "-pubkey"]).stdout
    b = run([OPENSSL, "pkey", "-in", key, "-pubout"]).stdout
    assert a == b
    # to stdout without --out
    p = cli("ca", "sign", "o.csr", "--ca", "ca")
    assert p.stdout.count("BEGIN CERTIFICATE") == 2
    # recorded in the index
    assert "o.example.test" in (cli.dir / "ca/index.txt").read_text()


def test_moat_csr_signed_by_openssl(cli, forge):
    p = cli("csr", "new", "m.example.test", "www.m.example.test", "--key", "m.key",
            "--out", "m.csr")
    assert "wrote a new ECDSA P-256 private key" in p.stdout
    assert stat.S_IMODE((cli.dir / "m.key").stat().st_mode) == 0o600
    run([OPENSSL, "req", "-in", cli.dir / "m.csr", "-noout", "-verify"])
    out = cli.dir / "m.pem"
    ext = cli.dir / "m.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\n")
    run([OPENSSL, "x509", "-req", "-in", cli.dir / "m.csr", "-CA", forge.inter, "-CAkey",
         forge.inter_key, "-days", "10", "-copy_extensions", "copyall", "-extfile", ext,
         "-out", out])
    v = openssl_verify(forge.root, out, untrusted=forge.inter, host="www.m.example.test")
    assert v.returncode == 0, v.stderr
    chain = forge.chain(out, forge.inter)
    p = cli("verify", chain, "--cafile", forge.root, "--host", "m.example.test")
    assert "valid as a TLS server certificate" in p.stdout
    # reusing the existing key: a second CSR, same public key
    cli("csr", "new", "other.test", "--key", "m.key", "--out", "m2.csr")
    k1 = run([OPENSSL, "req", "-in", cli.dir / "m.csr", "-noout", "-pubkey"]).stdout
    k2 = run([OPENSSL, "req", "-in", cli.dir / "m2.csr", "-noout", "-pubkey"]).stdout
    assert k1 == k2


def test_altered_csr_is_refused(cli):
    cli("ca", "init", "--dir", "ca")
    cli("csr", "new", "a.test", "--key", "a.key", "--out", "a.csr")
    raw = subprocess.run([OPENSSL, "req", "-in", str(cli.dir / "a.csr"), "-outform", "DER"],
                         capture_output=True).stdout
    i = raw.find(b"a.test")
    assert i > 0
    (cli.dir / "bad.csr").write_bytes(raw[:i] + b"b.test" + raw[i + 6:])
    p = cli("ca", "sign", "bad.csr", "--ca", "ca", expect=1)
    assert "does not verify" in p.stderr and "bad.csr" in p.stderr


def test_signing_policy_and_name_constraints(cli):
    cli("ca", "init", "--dir", "ca", "--permit", "corp.test", "--exclude", "secret.corp.test")
    (cli.dir / "ca/policy").write_text("allow *.corp.test\ndeny admin.corp.test\nmax_days 30\n")
    cli("csr", "new", "www.corp.test", "--key", "k.key", "--out", "ok.csr")
    cli("ca", "sign", "ok.csr", "--ca", "ca", "--days", "30", "--out", "ok.pem")
    p = cli("ca", "sign", "ok.csr", "--ca", "ca", "--days", "31", expect=2)
    assert "at most 30 days" in p.stderr
    cli("csr", "new", "admin.corp.test", "--key", "k.key", "--out", "admin.csr")
    p = cli("ca", "sign", "admin.csr", "--ca", "ca", "--days", "30", expect=2)
    assert "refuses \"admin.corp.test\"" in p.stderr and "policy:2" in p.stderr
    cli("csr", "new", "*.corp.test", "--key", "k.key", "--out", "wild.csr")
    p = cli("ca", "sign", "wild.csr", "--ca", "ca", "--days", "30", expect=2)
    assert "admin.corp.test" in p.stderr  # the wildcard would cover the denied name
    (cli.dir / "ca/policy").unlink()
    cli("csr", "new", "www.other.test", "--key", "k.key", "--out", "out.csr")
    p = cli("ca", "sign", "out.csr", "--ca", "ca", expect=2)
    assert "outside the names" in p.stderr
    cli("csr", "new", "x.secret.corp.test", "--key", "k.key", "--out", "ex.csr")
    p = cli("ca", "sign", "ex.csr", "--ca", "ca", expect=2)
    assert "excluded" in p.stderr
    text = run([OPENSSL, "x509", "-in", cli.dir / "ca/root.pem", "-noout", "-text"]).stdout
    assert "Name Constraints: critical" in text


# ---------------------------------------------------------------------------------------------
# moat verify: one broken certificate per failure kind
# ---------------------------------------------------------------------------------------------

def test_verify_valid_exits_0(cli, forge):
    leaf, _ = forge.issue("ok.test")
    chain = forge.chain(leaf, forge.inter)
    p = cli("verify", chain, "--cafile", forge.root, "--host", "ok.test")
    assert "valid as a TLS server certificate for ok.test" in p.stdout
    assert "forge intermediate" in p.stdout  # the path is shown


def _kind_case(forge, tmp, kind):
    """(cert file, extra args) with exactly the defect `kind`."""
    root = ["--cafile", str(forge.root)]
    if kind == "expired":
        leaf, _ = forge.issue("exp.test", start="20200101000000Z", end="20200201000000Z")
        return forge.chain(leaf, forge.inter), root
    if kind == "not_yet_valid":
        leaf, _ = forge.issue("nyv.test", start="20990101000000Z", end="20991231000000Z")
        return forge.chain(leaf, forge.inter), root
    if kind == "unknown_issuer":
        other = Forge(tmp / "other", "stranger")
        leaf, _ = other.issue("u.test")
        return other.chain(leaf, other.inter), root
    if kind == "missing_intermediate":
        leaf, _ = forge.issue("mi.test")
        return leaf, root
    if kind == "self_signed":
        key = tmp / "ss.key"
        out = tmp / "ss.pem"
        run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-subj", "/CN=ss.test", "-days", "5",
             "-addext", "subjectAltName=DNS:ss.test", "-out", out])
        return out, root
    if kind == "name_mismatch":
        leaf, _ = forge.issue("nm.test")
        return forge.chain(leaf, forge.inter), root + ["--host", "other.test"]
    if kind == "bad_key_usage":
        leaf, _ = forge.issue("cl.test", eku="clientAuth")
        return forge.chain(leaf, forge.inter), root
    if kind == "not_ca":
        notca, notca_key = forge.issue(
            "not a ca", kind="inter", ext_text="basicConstraints = critical,CA:FALSE\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n")
        leaf, _ = forge.issue("nc.test", issuer=notca, issuer_key=notca_key)
        return forge.chain(leaf, notca), root
    if kind == "path_length":
        strict = Forge(tmp / "strict", "pathlen0", root_pathlen=0)
        leaf, _ = strict.issue("pl.test")
        return strict.chain(leaf, strict.inter), ["--cafile", str(strict.root)]
    if kind == "weak_key":
        leaf, _ = forge.issue("wk.test", key_algo=1024)
        return forge.chain(leaf, forge.inter), root
    if kind == "weak_signature":
        leaf, _ = forge.issue("ws.test", md="sha1")
        return forge.chain(leaf, forge.inter), root
    raise ValueError(kind)


@pytest.mark.parametrize("kind,words", [
    ("expired", "expired on 2020-02-01"),
    ("not_yet_valid", "valid only from 2099-01-01"),
    ("unknown_issuer", "not a trusted root"),
    ("missing_intermediate", "add the intermediate"),
    ("self_signed", "is self-signed"),
    ("name_mismatch", "\"other.test\" is not among the names"),
    ("bad_key_usage", "not for TLS servers"),
    ("not_ca", "is not a CA"),
    ("path_length", "pathLenConstraint"),
    ("weak_key", "RSA 1024"),
    ("weak_signature", "ecdsa-with-SHA1, which is broken"),
])
def test_verify_names_each_failure(cli, forge, tmp_path, kind, words):
    cert, args = _kind_case(forge, tmp_path, kind)
    p = cli("verify", cert, *args, expect=1)
    first = p.stdout.splitlines()[0]
    assert "NOT valid" in first and "[%s]" % kind in first, p.stdout
    assert words in p.stdout, p.stdout
    assert "fix:" in p.stdout


def test_verify_revoked_with_moats_crl(cli):
    cli("ca", "init", "--dir", "ca")
    cli("cert", "issue", "r.test", "--ca", "ca", "--out", "r")
    cli("cert", "issue", "k.test", "--ca", "ca", "--out", "k")
    p = cli("ca", "revoke", "r.fullchain.pem", "--ca", "ca", "--reason", "key-compromise")
    assert "revoked" in p.stdout
    p = cli("ca", "revoke", "r.fullchain.pem", "--ca", "ca", expect=2)
    assert "revoked already" in p.stderr
    cli("ca", "crl", "--ca", "ca")
    crl = cli.dir / "ca/crl.pem"
    assert crl.read_text().count("BEGIN X509 CRL") == 1  # the intermediate's
    assert (cli.dir / "ca/root-crl.pem").read_text().count("BEGIN X509 CRL") == 1
    p = cli("verify", "r.fullchain.pem", "--cafile", "ca/root.pem", "--crl", crl, expect=1)
    assert "[revoked]" in p.stdout and "key compromise" in p.stdout
    p = cli("verify", "k.fullchain.pem", "--cafile", "ca/root.pem", "--crl", crl,
            "--crl", "ca/root-crl.pem")
    assert "checked: not revoked" in p.stdout
    # revoking the intermediate shows in the root's CRL
    cli("ca", "revoke", "ca/intermediate.pem", "--ca", "ca", "--reason", "ca-compromise")
    cli("ca", "crl", "--ca", "ca")
    p = cli("verify", "k.fullchain.pem", "--cafile", "ca/root.pem", "--crl", crl,
            "--crl", "ca/root-crl.pem", expect=1)
    assert "[revoked]" in p.stdout and "intermediate" in p.stdout
    v = openssl_verify(cli.dir / "ca/root.pem", cli.dir / "r.cert.pem",
                       untrusted=cli.dir / "r.fullchain.pem",
                       extra=["-crl_check", "-CRLfile", str(crl)])
    assert v.returncode != 0 and "revoked" in v.stdout + v.stderr
    text = run([OPENSSL, "crl", "-in", crl, "-noout", "-text"]).stdout
    assert "Key Compromise" in text and "X509v3 CRL Number" in text
    # a CRL from another CA cannot speak for this one
    cli("ca", "init", "--dir", "other")
    cli("ca", "crl", "--ca", "other")
    p = cli("verify", "k.fullchain.pem", "--cafile", "ca/root.pem", "--crl",
            "other/crl.pem", expect=1)
    assert "none of the CRLs" in p.stdout


def test_verify_client_purpose(cli):
    cli("ca", "init", "--dir", "ca")
    cli("cert", "issue", "ada@example.test", "--client", "--ca", "ca", "--out", "ada")
    cli("verify", "ada.fullchain.pem", "--client", "--cafile", "ca/root.pem")
    p = cli("verify", "ada.fullchain.pem", "--cafile", "ca/root.pem", expect=1)
    assert "[bad_key_usage]" in p.stdout


# ---------------------------------------------------------------------------------------------
# self-signed, show
# ---------------------------------------------------------------------------------------------

def test_self_signed_comes_with_a_note(cli):
    p = cli("cert", "self-signed", "ss.test", "127.0.0.1")
    assert "vouches for itself" in p.stdout and "NOT good" in p.stdout
    assert not (cli.dir / "ss.test.fullchain.pem").exists()
    text = run([OPENSSL, "x509", "-in", cli.dir / "ss.test.cert.pem", "-noout", "-text"]).stdout
    assert "CA:FALSE" in text and "DNS:ss.test" in text
    p = cli("verify", "ss.test.cert.pem", expect=1)
    assert "[self_signed]" in p.stdout
    cli("verify", "ss.test.cert.pem", "--cafile", "ss.test.cert.pem", "--no-system",
        "--host", "ss.test")


def test_cert_show_in_plain_words(cli):
    cli("ca", "init", "--dir", "ca", "--name", "Show CA")
    cli("cert", "issue", "show.test", "10.0.0.9", "--ca", "ca", "--days", "10", "--out", "s")
    p = cli("cert", "show", "s.fullchain.pem")
    out = p.stdout
    for words in ("2 certificates", "Certificate #1 (leaf)", "Certificate #2 (intermediate CA)",
                  "DNS:show.test, IP:10.0.0.9", "Issuer:       CN = Show CA intermediate",
                  "(in 10 days)", "ECDSA P-256", "digitalSignature",
                  "serverAuth (TLS server)", "SHA-256:", "SHA-1:", "signed by certificate #2",
                  "pathlen 0"):
        assert words in out, words
    fp = run([OPENSSL, "x509", "-in", cli.dir / "s.cert.pem", "-noout", "-fingerprint",
              "-sha256"]).stdout.strip().split("=", 1)[1]
    assert fp in out
    p = cli("cert", "show", "ca/root.pem")
    assert "root CA" in p.stdout and "self-signed: the chain ends here" in p.stdout


# ---------------------------------------------------------------------------------------------
# moat trust, in a temporary HOME and system folder
# ---------------------------------------------------------------------------------------------

def _nss_nicknames(db):
    out = run(["certutil", "-L", "-d", "sql:%s" % db]).stdout
    return out


@pytest.mark.skipif(not shutil.which("certutil"), reason="certutil (libnss3-tools) missing")
def test_trust_install_list_uninstall(cli):
    cli("ca", "init", "--dir", "ca", "--name", "Trust Me CA")
    sysdir = cli.dir / "sys"
    marker = cli.dir / "updates.log"
    update = cli.dir / "fake-update"
    update.write_text("#!/bin/sh\necho ran >> %s\n" % marker)
    update.chmod(0o755)
    # a Firefox profile too
    ff = cli.home / ".mozilla/firefox/abc.default-release"
    ff.mkdir(parents=True)
    run(["certutil", "-N", "-d", "sql:%s" % ff, "--empty-password"])
    env = {"MOAT_TRUST_SYSTEM_DIR": str(sysdir), "MOAT_TRUST_UPDATE_CMD": str(update)}

    p = cli("trust", "install", "--ca", "ca", env=env)
    assert "system: installed" in p.stdout and "nss: trusted in" in p.stdout
    files = list(sysdir.glob("*.crt"))
    assert len(files) == 1 and files[0].name.startswith("moat-trust-me-ca-")
    assert files[0].read_text() == (cli.dir / "ca/root.pem").read_text()
    assert marker.read_text().count("ran") == 1
    chromium_db = cli.home / ".pki/nssdb"
    for db in (chromium_db, ff):
        out = _nss_nicknames(db)
        assert "Trust Me CA (moat " in out and "C,," in out, out

    p = cli("trust", "list", "--ca", "ca", env=env)
    assert p.stdout.count("* ") == 3, p.stdout  # system file + two NSS databases

    p = cli("trust", "install", "--ca", "ca/root.pem", env=env)  # again: nothing changes
    assert "already in" in p.stdout and "already trusted" in p.stdout
    assert marker.read_text().count("ran") == 1

    p = cli("trust", "uninstall", "--ca", "ca", env=env)
    assert "system: removed" in p.stdout and p.stdout.count("nss: removed") == 2
    assert list(sysdir.iterdir()) == []
    assert marker.read_text().count("ran") == 2
    for db in (chromium_db, ff):
        assert "Trust Me CA" not in _nss_nicknames(db)
    p = cli("trust", "list", "--ca", "ca", env=env)
    assert "* " not in p.stdout
    p = cli("trust", "uninstall", "--ca", "ca", env=env)  # absent: fine, said so
    assert "not in" in p.stdout


def test_trust_refuses_a_leaf_and_reports_a_failing_update(cli):
    cli("ca", "init", "--dir", "ca")
    cli("cert", "issue", "a.test", "--ca", "ca", "--out", "a")
    p = cli("trust", "install", "--ca", "a.cert.pem", "--no-nss", "--system-dir", "sys",
            expect=2)
    assert "not a CA certificate" in p.stderr
    p = cli("trust", "install", "--ca", "ca", "--no-nss", "--system-dir", "sys",
            "--update-cmd", "false", expect=1)
    assert "false failed" in p.stderr
    p = cli("trust", "install", "--ca", "ca", "--no-nss", "--system-dir", "sys2",
            "--update-cmd", "/nonexistent/update-ca", expect=1)
    assert "not installed" in p.stderr
    p = cli("trust", "install", "--ca", "ca", "--no-system", "--certutil", "/nonexistent/cu",
            expect=1)
    assert "libnss3-tools" in p.stderr


def test_moat_serve_loads_moats_crls_for_client_certificates(cli, moat, www):
    """The CRLs of `moat ca crl` work as a site's client_crl: a revoked client is refused."""
    cli("ca", "init", "--dir", "ca")
    cli("cert", "issue", "example.test", "--ca", "ca", "--out", "site")
    cli("cert", "issue", "good@example.test", "--client", "--ca", "ca", "--out", "good")
    cli("cert", "issue", "gone@example.test", "--client", "--ca", "ca", "--out", "gone")
    cli("ca", "revoke", "gone.cert.pem", "--ca", "ca", "--reason", "superseded")
    cli("ca", "crl", "--ca", "ca")
    ca = cli.dir / "ca"
    m = moat("mtls-crl")
    m.write_config(
        "listen 127.0.0.1:%d\nstate %s\nsite example.test {\n"
        "    cert %s %s\n    root %s\n    client_auth require\n"
        "    client_ca %s/root.pem %s/intermediate.pem\n"
        "    client_crl %s/crl.pem %s/root-crl.pem\n}\n"
        % (m.port, m.state, cli.dir / "site.fullchain.pem", cli.dir / "site.key", www,
           ca, ca, ca, ca))
    m.start()
    root = ca / "root.pem"
    r = curl_get(m.port, root, extra=["--cert", str(cli.dir / "good.fullchain.pem"),
                                      "--key", str(cli.dir / "good.key")])
    assert r.returncode == 0 and "INDEX-PAGE" in r.stdout, r.stderr + m.stderr()[-2000:]
    r = curl_get(m.port, root, extra=["--cert", str(cli.dir / "gone.fullchain.pem"),
                                      "--key", str(cli.dir / "gone.key")])
    assert "INDEX-PAGE" not in r.stdout
