"""Key type names (issue 10, item 12): every command that takes a key type accepts the spellings
people type (`rsa:2048`, `RSA-3072`, `ecdsa-p256`, `P-256`, `prime256v1`, `secp384r1`, ...,
any case), and the key or certificate it makes really is of that type, as `openssl pkey -text`
and `openssl x509 -text` read it. An unknown name is a usage error that lists the names."""

import re
import shutil

import pytest

from helpers import OPENSSL, run
from pki_cli_helpers import MoatCli

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl CLI not installed")


@pytest.fixture
def cli(moat_bin, tmp_path):
    return MoatCli(moat_bin, tmp_path / "work")


# What `openssl pkey -text -noout` / `x509 -text -noout` print for each type.
P256 = [r"ASN1 OID: prime256v1", r"NIST CURVE: P-256"]
P384 = [r"ASN1 OID: secp384r1", r"NIST CURVE: P-384"]
ED25519 = [r"ED25519"]


def rsa(bits):
    return [r"-Key: \(%d bit" % bits, r"(?i)exponent"]


def check_text(text, patterns):
    for pat in patterns:
        assert re.search(pat, text), "%r not in:\n%s" % (pat, text[:1500])


SPELLINGS = [
    ("rsa:2048", rsa(2048)),
    ("rsa-2048", rsa(2048)),
    ("RSA2048", rsa(2048)),
    ("rsa-3072", rsa(3072)),
    ("rsa:4096", rsa(4096)),
    ("ecdsa-p256", P256),
    ("ec-p256", P256),
    ("P-256", P256),
    ("prime256v1", P256),
    ("secp256r1", P256),
    ("SECP384R1", P384),
    ("ecdsa-p384", P384),
    ("Ed25519", ED25519),
]


@pytest.mark.parametrize("spelling,patterns", SPELLINGS, ids=[s for s, _ in SPELLINGS])
def test_key_new_type_spellings(cli, spelling, patterns):
    cli("key", "new", "k.key", "--type", spelling)
    text = run([OPENSSL, "pkey", "-in", cli.dir / "k.key", "-text", "-noout"]).stdout
    check_text(text, patterns)
    # The other flag name and the --flag=value form go through the same table.
    cli("key", "new", "k2.key", "--key-type=%s" % spelling)
    text = run([OPENSSL, "pkey", "-in", cli.dir / "k2.key", "-text", "-noout"]).stdout
    check_text(text, patterns)


def test_csr_new_key_type_spelling(cli):
    cli("csr", "new", "a.test", "--key", "a.key", "--key-type", "rsa:2048", "--out", "a.csr")
    check_text(run([OPENSSL, "pkey", "-in", cli.dir / "a.key", "-text", "-noout"]).stdout,
               rsa(2048))
    text = run([OPENSSL, "req", "-in", cli.dir / "a.csr", "-text", "-noout"]).stdout
    check_text(text, rsa(2048))


def test_ca_and_cert_key_type_spellings(cli):
    cli("ca", "init", "--dir", "ca", "--key-type", "secp384r1")
    text = run([OPENSSL, "x509", "-in", cli.dir / "ca" / "root.pem", "-text", "-noout"]).stdout
    check_text(text, P384)
    check_text(run([OPENSSL, "pkey", "-in", cli.dir / "ca" / "intermediate.key", "-text",
                    "-noout"]).stdout, P384)
    cli("ca", "intermediate", "--ca", "ca", "--out", "issuing", "--key-type", "RSA:2048")
    check_text(run([OPENSSL, "x509", "-in", cli.dir / "issuing" / "intermediate.pem", "-text",
                    "-noout"]).stdout, rsa(2048))
    cli("cert", "issue", "b.test", "--ca", "ca", "--key-type", "rsa-2048", "--out", "b")
    check_text(run([OPENSSL, "x509", "-in", cli.dir / "b.cert.pem", "-text", "-noout"]).stdout,
               rsa(2048))
    check_text(run([OPENSSL, "pkey", "-in", cli.dir / "b.key", "-text", "-noout"]).stdout,
               rsa(2048))
    cli("cert", "self-signed", "c.test", "--key-type", "P-256", "--out", "c")
    check_text(run([OPENSSL, "pkey", "-in", cli.dir / "c.key", "-text", "-noout"]).stdout, P256)


@pytest.mark.parametrize("args", [
    ["key", "new", "k.key", "--type", "rsa:1024"],
    ["key", "new", "k.key", "--type", "dsa"],
    ["csr", "new", "a.test", "--key", "k.key", "--key-type", "p521", "--out", "a.csr"],
    ["ca", "init", "--dir", "ca", "--key-type", "rsa:"],
    ["cert", "issue", "a.test", "--key-type", "ecdsa-p999"],
])
def test_unknown_key_type_lists_the_names(cli, args):
    p = cli(*args, expect=2)
    assert "unknown key type" in p.stderr, p.stderr
    for name in ("p256", "p384", "rsa2048", "rsa:2048", "P-256", "secp384r1", "rsa4096",
                 "ed25519"):
        assert name in p.stderr, (name, p.stderr)
    assert not (cli.dir / "k.key").exists()
    assert not (cli.dir / "ca" / "root.key").exists()


def test_help_mentions_the_spellings(cli):
    assert "rsa:2048" in cli("key", "new", "--help").stdout
    for cmd in (["csr", "new"], ["ca", "init"], ["cert", "issue"]):
        out = cli(*cmd, "--help").stdout
        assert "rsa:2048" in out and "p256" in out, (cmd, out)
