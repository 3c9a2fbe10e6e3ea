"""Helpers for the mutual-TLS tests (test_mtls.py): client-certificate authorities made with the
openssl CLI, and thin wrappers that run curl and `openssl s_client` with a client certificate.

A ClientCa is a self-signed root that issues client certificates through `openssl ca`, so it
keeps the index that `openssl ca -revoke` and `openssl ca -gencrl` need: revoking a certificate
and publishing a new CRL is then two commands, as an operator would do it.
"""

import os
import re
import subprocess
from pathlib import Path

from helpers import OPENSSL, clean_env, client_context, run

_CA_CNF = """\
[ca]
default_ca = ca_default
[ca_default]
dir = {dir}
certificate = {dir}/ca.pem
private_key = {dir}/ca.key
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
crlnumber = {dir}/crlnumber
default_md = sha256
default_days = 30
default_crl_days = 7
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[policy_any]
organizationName = optional
commonName = supplied
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""


class ClientCert:
    """A client certificate: key, leaf (PEM) and the subject it was issued for."""

    def __init__(self, name, key, pem):
        self.name = name
        self.key = Path(key)
        self.pem = Path(pem)
        # RFC 2253 form, as moat logs it: "CN=alice,O=Example".
        out = run([OPENSSL, "x509", "-in", self.pem, "-noout", "-subject",
                   "-nameopt", "RFC2253"]).stdout
        self.subject = out.strip().split("=", 1)[1]

    @property
    def serial(self):
        out = run([OPENSSL, "x509", "-in", self.pem, "-noout", "-serial"]).stdout
        return out.strip().split("=", 1)[1].upper()

    def __repr__(self):
        return "ClientCert(%s)" % self.name


class ClientCa:
    """A root CA for client certificates, with `openssl ca` state for issuing and revoking."""

    def __init__(self, base, cn):
        self.dir = Path(base)
        (self.dir / "newcerts").mkdir(parents=True, exist_ok=True)
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text(os.urandom(8).hex() + "\n")
        (self.dir / "crlnumber").write_text("1000\n")
        self.cnf = self.dir / "ca.cnf"
        self.cnf.write_text(_CA_CNF.format(dir=self.dir))
        self.key = self._key("ca")
        self.pem = self.dir / "ca.pem"
        run([OPENSSL, "req", "-config", self.cnf, "-x509", "-new", "-key", self.key,
             "-subj", "/CN=" + cn, "-days", "3650", "-extensions", "v3_ca", "-out", self.pem])
        self.cn = cn

    def _key(self, stem):
        path = self.dir / (stem + ".key")
        run([OPENSSL, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path])
        os.chmod(path, 0o600)
        return path

    def issue(self, stem, cn, org=None, sans=(), eku="clientAuth", startdate=None,
              enddate=None):
        """A leaf for `cn` (subject /O=org/CN=cn), with SANs like "DNS:x", "email:y", "URI:z".

        eku: extendedKeyUsage ("clientAuth", "serverAuth", ...). startdate/enddate
        (YYYYMMDDHHMMSSZ) backdate it, e.g. to make an expired certificate."""
        key = self._key(stem)
        subj = ("/O=%s" % org if org else "") + "/CN=" + cn
        csr = self.dir / (stem + ".csr")
        run([OPENSSL, "req", "-config", self.cnf, "-new", "-key", key, "-subj", subj,
             "-out", csr])
        ext = self.dir / (stem + ".ext")
        lines = ["basicConstraints = critical,CA:FALSE",
                 "keyUsage = critical,digitalSignature",
                 "extendedKeyUsage = " + eku,
                 "subjectKeyIdentifier = hash",
                 "authorityKeyIdentifier = keyid"]
        if sans:
            lines.append("subjectAltName = " + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        pem = self.dir / (stem + ".pem")
        cmd = [OPENSSL, "ca", "-batch", "-config", self.cnf, "-notext", "-in", csr,
               "-extfile", ext, "-out", pem]
        if startdate or enddate:
            cmd += ["-startdate", startdate, "-enddate", enddate]
        run(cmd)
        return ClientCert(stem, key, pem)

    def revoke(self, cert):
        run([OPENSSL, "ca", "-batch", "-config", self.cnf, "-revoke", cert.pem,
             "-crl_reason", "keyCompromise"])

    def gencrl(self, out, der=False):
        """Write the CA's current CRL (every certificate revoked so far) to `out`."""
        out = Path(out)
        pem = out.with_suffix(".tmp.pem")
        run([OPENSSL, "ca", "-batch", "-config", self.cnf, "-gencrl", "-out", pem])
        if der:
            run([OPENSSL, "crl", "-in", pem, "-outform", "DER", "-out", out])
            pem.unlink()
        else:
            # Written then renamed: a reload never reads half a file.
            os.replace(pem, out)
        return out


def curl_args(cert):
    """curl's arguments to present `cert` (none for None)."""
    return [] if cert is None else ["--cert", cert.pem, "--key", cert.key]


def tls_context(cafile, cert=None, maxv=None):
    """A Python client context that verifies the server and presents `cert` when given."""
    ctx = client_context(cafile=cafile, maxv=maxv)
    if cert is not None:
        ctx.load_cert_chain(str(cert.pem), str(cert.key))
    return ctx


def s_client_mtls(port, sni, cert=None, tls="-tls1_3", host=None, path="/", cafile=None,
                  extra=(), timeout=15):
    """`openssl s_client` with an optional client certificate, sending one GET and reading
    until the server closes. Returns (CompletedProcess, combined text)."""
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", sni,
           "-ign_eof", tls]
    if cafile is not None:
        cmd += ["-CAfile", cafile, "-verify_return_error"]
    if cert is not None:
        cmd += ["-cert", cert.pem, "-key", cert.key]
    cmd += [str(a) for a in extra]
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
           % (path, host or sni)).encode()
    proc = subprocess.run([str(c) for c in cmd], input=req, capture_output=True,
                          timeout=timeout, env=clean_env())
    text = proc.stdout.decode("latin-1") + proc.stderr.decode("latin-1")
    return proc, text


def http_status(text):
    """The status code of the first HTTP response in s_client's output, or None."""
    m = re.search(r"^HTTP/1\.[01] (\d{3})", text, re.M)
    return int(m.group(1)) if m else None


def alert_in(text):
    """The TLS alert s_client reported ("certificate required", "unknown ca", ...) or None."""
    m = re.search(r"(?:tlsv1[0-9]? |ssl\S* |sslv3 )?alert ([a-z ]+?)(?::|\n|$)", text)
    return m.group(1).strip() if m else None
