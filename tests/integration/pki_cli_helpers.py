"""Helpers for the certificate-toolkit tests (test_pki_cli.py, test_browser.py).

- `MoatCli`: runs `moat key/csr/ca/cert/verify/trust` with a private MOAT_STATE and fails the
  test when a sanitizer spoke.
- `Forge`: makes the certificates `moat verify` must refuse, one defect each, with the openssl
  command only (`openssl ca` because it is the one OpenSSL 3.0 command that sets any start and
  end date and any digest).
"""

import os
import subprocess
from pathlib import Path

from helpers import OPENSSL, SANITIZER_MARKERS, clean_env, run


class MoatCli:
    def __init__(self, binary, workdir):
        self.bin = str(binary)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state = self.dir / "state"
        self.home = self.dir / "home"
        self.home.mkdir(exist_ok=True)

    def env(self, extra=None):
        env = clean_env({"MOAT_STATE": str(self.state), "HOME": str(self.home)})
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.update(extra or {})
        return env

    def __call__(self, *args, expect=0, env=None, timeout=60):
        """Run `moat ARGS` in the work folder; check the exit code when `expect` is not None."""
        proc = subprocess.run(
            [self.bin] + [str(a) for a in args], cwd=self.dir, env=self.env(env),
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
        for marker in SANITIZER_MARKERS:
            assert marker not in proc.stderr, "sanitizer report:\n" + proc.stderr
        if expect is not None:
            assert proc.returncode == expect, "moat %s exited %d, expected %d\n--- out\n%s\n--- err\n%s" % (
                " ".join(map(str, args)), proc.returncode, expect, proc.stdout, proc.stderr)
        proc.text = proc.stdout + proc.stderr
        return proc


def openssl_verify(cafile, cert, untrusted=None, purpose="sslserver", host=None, extra=()):
    """`openssl verify` strictly (-x509_strict); returns the CompletedProcess."""
    cmd = [OPENSSL, "verify", "-x509_strict", "-purpose", purpose, "-CAfile", cafile]
    if untrusted:
        cmd += ["-untrusted", untrusted]
    if host:
        cmd += ["-verify_hostname", host]
    cmd += list(extra) + [cert]
    return run(cmd, check=False)


_CA_CNF = """\
[ca]
default_ca = d
[d]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/new
serial = {dir}/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
email_in_dn = no
[any]
commonName = supplied
[req]
distinguished_name = dn
prompt = no
[dn]
CN = x
"""

INTER_EXT = ("basicConstraints = critical,CA:TRUE{pathlen}\n"
             "keyUsage = critical,keyCertSign,cRLSign\n"
             "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n")
LEAF_EXT = ("basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = {eku}\nsubjectAltName = {san}\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n")


class Forge:
    """A root and an intermediate made with openssl, and leaves with one defect each."""

    def __init__(self, base, tag="forge", root_pathlen=None):
        self.dir = Path(base)
        (self.dir / "new").mkdir(parents=True, exist_ok=True)
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text(os.urandom(8).hex() + "\n")
        self.cnf = self.dir / "ca.cnf"
        self.cnf.write_text(_CA_CNF.format(dir=self.dir))
        self.n = 0
        self.root_key = self.key("root")
        self.root = self.dir / "root.pem"
        pl = "" if root_pathlen is None else ",pathlen:%d" % root_pathlen
        run([OPENSSL, "req", "-config", self.cnf, "-x509", "-new", "-key", self.root_key,
             "-subj", "/CN=%s root" % tag, "-days", "3650",
             "-addext", "basicConstraints=critical,CA:TRUE" + pl,
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", self.root])
        self.inter, self.inter_key = self.issue("%s intermediate" % tag, kind="inter")

    def key(self, stem, algo="ec"):
        path = self.dir / (stem + ".key")
        if algo == "ec":
            args = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        else:
            args = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % algo]
        run([OPENSSL, "genpkey"] + args + ["-out", path])
        os.chmod(path, 0o600)
        return path

    def issue(self, cn, kind="leaf", issuer=None, issuer_key=None, san=None, eku="serverAuth",
              start=None, end=None, md="sha256", key_algo="ec", ext_text=None, pathlen=None):
        """Sign a new certificate; returns (cert path, key path)."""
        self.n += 1
        stem = "c%d" % self.n
        key = self.key(stem, key_algo)
        csr = self.dir / (stem + ".csr")
        run([OPENSSL, "req", "-config", self.cnf, "-new", "-key", key, "-subj", "/CN=" + cn,
             "-out", csr])
        if ext_text is None:
            if kind == "inter":
                pl = "" if pathlen is None else ",pathlen:%d" % pathlen
                ext_text = INTER_EXT.format(pathlen=pl)
            else:
                ext_text = LEAF_EXT.format(eku=eku, san=san or "DNS:" + cn)
        ext = self.dir / (stem + ".ext")
        ext.write_text("[v]\n" + ext_text)
        out = self.dir / (stem + ".pem")
        issuer = issuer or (self.root if kind == "inter" else self.inter)
        issuer_key = issuer_key or (self.root_key if kind == "inter" else self.inter_key)
        cmd = [OPENSSL, "ca", "-batch", "-config", self.cnf, "-notext", "-cert", issuer,
               "-keyfile", issuer_key, "-in", csr, "-extfile", ext, "-extensions", "v",
               "-md", md, "-out", out]
        if start or end:
            cmd += ["-startdate", start or "20200101000000Z", "-enddate", end or "20991231000000Z"]
        else:
            cmd += ["-days", "30"]
        run(cmd)
        return out, key

    def chain(self, *certs, name=None):
        """Concatenate certificate files into one (leaf first)."""
        self.n += 1
        path = self.dir / (name or "chain%d.pem" % self.n)
        path.write_text("".join(Path(c).read_text() for c in certs))
        return path
