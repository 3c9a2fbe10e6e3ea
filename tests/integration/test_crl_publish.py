"""CRL distribution points and CRL publication, against real clients.

- `moat ca init --crl-url/--root-crl-url`, `moat ca set`, `moat ca intermediate`: what
  `openssl x509 -ext crlDistributionPoints` finds in leaves and intermediates (each points at
  the CRL of the CA that signed it; the root points nowhere), refusals of bad URLs.
- `crl_publish PATH CA_DIR` in moat serve: the CRL fetched with curl over the plain
  redirect_http listener and over HTTPS, parsed with `openssl crl -inform DER`, checked with
  `openssl verify -crl_check -CRLfile`; SIGHUP after a new revocation; validators and HEAD;
  a missing CRL (404 and a warning); bad CA folders as config errors at file:line:col; moat's
  local CA, whose CRL the server signs itself.
"""

import re
import signal
import subprocess

import pytest

from helpers import CURL, OPENSSL, clean_env, run, wait_for
from pki_cli_helpers import MoatCli


@pytest.fixture
def cli(moat_bin, tmp_path):
    return MoatCli(moat_bin, tmp_path / "work")


def cdp(cert):
    """The crlDistributionPoints URIs of a certificate, as openssl prints them."""
    out = run([OPENSSL, "x509", "-in", cert, "-noout", "-ext", "crlDistributionPoints"],
              check=False)
    return re.findall(r"URI:(\S+)", out.stdout)


def serial_of(cert):
    out = run([OPENSSL, "x509", "-in", cert, "-noout", "-serial"]).stdout
    return out.strip().split("=", 1)[1].upper()


def fetch(url, out, *args, port=None, host=None, cacert=None):
    """curl URL into `out`; returns (status, headers dict lower-cased, rc, stderr)."""
    cmd = [CURL, "-sS", "--noproxy", "*", "--max-time", "15", "-o", out, "-D", "-"]
    if host is not None:
        cmd += ["--resolve", "%s:%d:127.0.0.1" % (host, port)]
    if cacert is not None:
        cmd += ["--cacert", cacert]
    cmd += list(args) + [url]
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=20,
                       env=clean_env(), stdin=subprocess.DEVNULL)
    # text=True has already turned CRLF into LF.
    heads = [b for b in p.stdout.replace("\r\n", "\n").split("\n\n") if b.strip()]
    status, headers = None, {}
    if heads:
        lines = heads[-1].split("\n")
        status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return status, headers, p.returncode, p.stderr


def crl_serials(der_file):
    """Serials listed by a DER CRL, as `openssl crl -inform DER` reads it (fails if it cannot)."""
    out = run([OPENSSL, "crl", "-inform", "DER", "-in", der_file, "-noout", "-text"]).stdout
    return [s.upper() for s in re.findall(r"Serial Number: ([0-9A-Fa-f]+)", out)]


def verify_with_crl(ca_dir, cert, der_file, tmp):
    """`openssl verify -crl_check` with the fetched CRL (converted to PEM for -CRLfile)."""
    pem = tmp / (der_file.name + ".pem")
    run([OPENSSL, "crl", "-inform", "DER", "-in", der_file, "-out", pem])
    return run([OPENSSL, "verify", "-crl_check", "-CAfile", ca_dir / "root.pem",
                "-untrusted", ca_dir / "intermediate.pem", "-CRLfile", pem, cert], check=False)


def reloaded(m, generation):
    return wait_for(lambda: "configuration generation %d" % generation in m.stderr(), 15, 0.1)


# -- distribution points in certificates -------------------------------------------------------


def test_ca_init_crl_urls_go_into_leaves_and_intermediates(cli):
    leaf_url = "http://127.0.0.1:8080/crl/intermediate.crl"
    root_url = "http://127.0.0.1:8080/crl/root.crl"
    r = cli("ca", "init", "--dir", "ca", "--crl-url", leaf_url, "--root-crl-url", root_url)
    assert "crl_publish /crl/intermediate.crl" in r.stdout
    cli("cert", "issue", "a.test", "--ca", "ca")
    ca = cli.dir / "ca"
    # A leaf points at its issuer's (the intermediate's) CRL, the intermediate at the root's.
    assert cdp(cli.dir / "a.test.cert.pem") == [leaf_url]
    assert cdp(ca / "intermediate.pem") == [root_url]
    assert cdp(ca / "root.pem") == []
    # moat ca sign and client certificates too.
    cli("csr", "new", "b.test", "--key", "b.key", "--out", "b.csr")
    cli("ca", "sign", "b.csr", "--ca", "ca", "--out", "b.pem")
    assert cdp(cli.dir / "b.pem") == [leaf_url]
    cli("cert", "issue", "ada@a.test", "--client", "--ca", "ca", "--out", "ada")
    assert cdp(cli.dir / "ada.cert.pem") == [leaf_url]
    # The chain still verifies strictly.
    v = run([OPENSSL, "verify", "-x509_strict", "-CAfile", ca / "root.pem", "-untrusted",
             ca / "intermediate.pem", cli.dir / "a.test.cert.pem"], check=False)
    assert v.returncode == 0, v.stdout + v.stderr
    assert leaf_url in cli("cert", "show", "a.test.cert.pem").stdout
    show = cli("ca", "show", "--ca", "ca").stdout
    assert leaf_url in show and root_url in show


def test_without_crl_url_no_distribution_point(cli):
    cli("ca", "init", "--dir", "ca")
    cli("cert", "issue", "a.test", "--ca", "ca")
    assert cdp(cli.dir / "a.test.cert.pem") == []
    assert cdp(cli.dir / "ca/intermediate.pem") == []
    assert "carry no CRL URL" in cli("ca", "crl", "--ca", "ca").stdout


@pytest.mark.parametrize("url, words", [
    ("https://127.0.0.1/crl/ca.crl", "use http://, not https://"),
    ("http://127.0.0.1", "needs the path"),
    ("ldap://ca.test/cn=crl", "only http://"),
    ("http://127.0.0.1/crl ca.crl", "percent-encode"),
    ("http://127.0.0.1/crl?x", "no query"),
    ("http://127.0.0.1:99999/crl", "port must be"),
])
def test_bad_crl_urls_are_refused(cli, url, words):
    r = cli("ca", "init", "--dir", "ca", "--crl-url", url, expect=2)
    assert words in r.stderr
    assert not (cli.dir / "ca").exists()  # refused before anything was made
    r = cli("ca", "init", "--dir", "ca2", "--root-crl-url", url, expect=2)
    assert words in r.stderr


def test_init_on_existing_ca_fails_and_ca_set_changes_the_url(cli):
    cli("ca", "init", "--dir", "ca")
    r = cli("ca", "init", "--dir", "ca", "--crl-url", "http://h.test/crl/ca.crl", expect=2)
    assert "moat ca set" in r.stderr
    cli("cert", "issue", "old.test", "--ca", "ca")
    r = cli("ca", "set", "--ca", "ca", "--crl-url", "http://h.test/crl/ca.crl")
    assert "issued before keep" in r.stdout
    assert "crl_url http://h.test/crl/ca.crl" in (cli.dir / "ca/settings").read_text()
    cli("cert", "issue", "new.test", "--ca", "ca")
    assert cdp(cli.dir / "new.test.cert.pem") == ["http://h.test/crl/ca.crl"]
    assert cdp(cli.dir / "old.test.cert.pem") == []  # a certificate cannot change
    cli("ca", "set", "--ca", "ca", "--crl-url", "none")
    cli("cert", "issue", "none.test", "--ca", "ca")
    assert cdp(cli.dir / "none.test.cert.pem") == []
    r = cli("ca", "set", "--ca", "ca", expect=2)
    assert "--crl-url" in r.stderr
    r = cli("ca", "sign", "x.csr", "--ca", "ca", "--crl-url", "http://h.test/x", expect=2)
    assert "does not apply" in r.stderr
    # A damaged settings file names its line.
    (cli.dir / "ca/settings").write_text("crl_url http://h.test/a\ncrl_uri http://h.test/b\n")
    r = cli("cert", "issue", "x.test", "--ca", "ca", expect=2)
    assert "settings:2" in r.stderr and "unknown setting" in r.stderr


def test_root_crl_url_reaches_the_next_intermediate(cli):
    cli("ca", "init", "--dir", "ca", "--crl-url", "http://h.test/int.crl")
    assert cdp(cli.dir / "ca/intermediate.pem") == []
    cli("ca", "set", "--ca", "ca", "--root-crl-url", "http://h.test/root.crl")
    cli("ca", "intermediate", "--ca", "ca")
    assert cdp(cli.dir / "ca/intermediate.pem") == ["http://h.test/root.crl"]
    # A separate issuing CA gets its own CRL address, never the root folder's.
    r = cli("ca", "intermediate", "--ca", "ca", "--out", "issuing")
    assert "carry no CRL URL" in r.stdout
    cli("cert", "issue", "i.test", "--ca", "issuing")
    assert cdp(cli.dir / "i.test.cert.pem") == []
    cli("ca", "intermediate", "--ca", "ca", "--out", "issuing2",
        "--crl-url", "http://h.test/issuing2.crl")
    cli("cert", "issue", "j.test", "--ca", "issuing2")
    assert cdp(cli.dir / "j.test.cert.pem") == ["http://h.test/issuing2.crl"]
    assert cdp(cli.dir / "issuing2/intermediate.pem") == ["http://h.test/root.crl"]
    # The root's address lives with root.key.
    r = cli("ca", "set", "--ca", "issuing2", "--root-crl-url", "http://h.test/r.crl", expect=2)
    assert "root.key" in r.stderr


# -- publishing with moat serve ----------------------------------------------------------------


def _site_config(m, ca, extra_sites="", publish=None):
    if publish is None:
        publish = ("    crl_publish /crl/intermediate.crl %s\n"
                   "    crl_publish /crl/root.crl %s root\n" % (ca, ca))
    return f"""\
listen 127.0.0.1:{m.port}
redirect_http 127.0.0.1:{m.http_port}
state {m.state}
error_log stderr info
site a.test 127.0.0.1 {{
    cert {ca.parent}/a.test.fullchain.pem {ca.parent}/a.test.key
    root {ca.parent}/www
{publish}}}
{extra_sites}"""


def _ca_with_revoked_leaf(cli, m):
    base = "http://127.0.0.1:%d/crl/" % m.http_port
    cli("ca", "init", "--dir", "ca", "--crl-url", base + "intermediate.crl",
        "--root-crl-url", base + "root.crl")
    cli("cert", "issue", "a.test", "127.0.0.1", "--ca", "ca")
    cli("cert", "issue", "revoked.test", "--ca", "ca")
    cli("cert", "issue", "later.test", "--ca", "ca")
    (cli.dir / "www").mkdir()
    (cli.dir / "www/index.html").write_text("INDEX\n")
    cli("ca", "revoke", "revoked.test.cert.pem", "--ca", "ca", "--reason", "key-compromise")
    r = cli("ca", "crl", "--ca", "ca")
    assert "crl_publish /crl/intermediate.crl" in r.stdout
    return cli.dir / "ca"


def test_crl_served_over_http_and_https_and_checked_by_openssl(cli, moat, tmp_path):
    m = moat()
    ca = _ca_with_revoked_leaf(cli, m)
    m.write_config(_site_config(m, ca))
    m.start(ports=[m.port, m.http_port])

    # The URL in the certificate is exactly where the CRL is.
    [url] = cdp(cli.dir / "revoked.test.cert.pem")
    got = tmp_path / "plain.der"
    status, h, rc, err = fetch(url, got)
    assert (rc, status) == (0, 200), err
    assert h["content-type"] == "application/pkix-crl"
    assert h["content-length"] == str(got.stat().st_size)
    assert re.fullmatch(r'"[0-9a-f]{32}"', h["etag"])
    assert h["last-modified"].endswith(" GMT") and h["expires"].endswith(" GMT")
    assert re.fullmatch(r"public, max-age=\d+", h["cache-control"])
    assert "strict-transport-security" not in h
    serial = serial_of(cli.dir / "revoked.test.cert.pem")
    assert crl_serials(got) == [serial]
    v = verify_with_crl(ca, cli.dir / "revoked.test.cert.pem", got, tmp_path)
    assert v.returncode != 0 and "certificate revoked" in v.stdout + v.stderr
    v = verify_with_crl(ca, cli.dir / "later.test.cert.pem", got, tmp_path)
    assert v.returncode == 0, v.stdout + v.stderr

    # Over HTTPS from the site: the same bytes.
    tls = tmp_path / "tls.der"
    status, h2, rc, err = fetch("https://a.test:%d/crl/intermediate.crl" % m.port, tls,
                                port=m.port, host="a.test", cacert=ca / "root.pem")
    assert (rc, status) == (0, 200), err
    assert tls.read_bytes() == got.read_bytes()
    assert h2["etag"] == h["etag"]

    # The root's CRL at the intermediate's pointer, signed by the root.
    [root_url] = cdp(ca / "intermediate.pem")
    rootder = tmp_path / "root.der"
    assert fetch(root_url, rootder)[0] == 200
    out = run([OPENSSL, "crl", "-inform", "DER", "-in", rootder, "-noout", "-issuer",
               "-CAfile", ca / "root.pem"])
    assert "verify OK" in out.stdout + out.stderr

    # Validators and HEAD.
    assert fetch(url, tmp_path / "c1", "-H", "If-None-Match: %s" % h["etag"])[0] == 304
    assert fetch(url, tmp_path / "c2", "-H", "If-Modified-Since: %s" % h["last-modified"])[0] \
        == 304
    status, hh, rc, _ = fetch(url, tmp_path / "c3", "-I")
    assert status == 200 and hh["content-length"] == h["content-length"]
    assert fetch(url, tmp_path / "c4", "-X", "POST")[0] == 405
    # Everything else on the plain listener still redirects; other paths on HTTPS are files.
    status, hr, _, _ = fetch("http://127.0.0.1:%d/index.html" % m.http_port, tmp_path / "c5")
    assert status == 308 and hr["location"].startswith("https://")
    assert fetch("http://127.0.0.1:%d/crl/other.crl" % m.http_port, tmp_path / "c6")[0] == 308
    status, _, _, _ = fetch("https://a.test:%d/index.html" % m.port, tmp_path / "c7",
                            port=m.port, host="a.test", cacert=ca / "root.pem")
    assert status == 200

    # A new revocation: `moat ca crl`, SIGHUP, and the server publishes the new list.
    cli("ca", "revoke", "later.test.cert.pem", "--ca", "ca")
    cli("ca", "crl", "--ca", "ca")
    m.signal(signal.SIGHUP)
    assert reloaded(m, 2), m.stderr()[-2000:]
    fresh = tmp_path / "fresh.der"
    status, h3, _, _ = fetch(url, fresh)
    assert status == 200
    assert sorted(crl_serials(fresh)) == sorted([serial,
                                                 serial_of(cli.dir / "later.test.cert.pem")])
    assert h3["etag"] != h["etag"]
    v = verify_with_crl(ca, cli.dir / "later.test.cert.pem", fresh, tmp_path)
    assert "certificate revoked" in v.stdout + v.stderr
    # The old ETag no longer short-cuts.
    assert fetch(url, tmp_path / "c8", "-H", "If-None-Match: %s" % h["etag"])[0] == 200


def test_revocation_without_moat_ca_crl_is_reported(cli, moat, tmp_path):
    m = moat()
    ca = _ca_with_revoked_leaf(cli, m)
    m.write_config(_site_config(m, ca))
    m.start(ports=[m.port, m.http_port])
    cli("ca", "revoke", "later.test.cert.pem", "--ca", "ca")
    m.signal(signal.SIGHUP)
    assert reloaded(m, 2), m.stderr()[-2000:]
    assert re.search(r"crl_publish /crl/intermediate\.crl \(\S*moat\.conf:\d+:\d+\): .*crl\.pem "
                     r"lacks 1 revocation .*moat ca crl --ca ", m.stderr()), m.stderr()[-2000:]
    # Still served as it is (the server never signs for a CA it does not own).
    got = tmp_path / "c.der"
    assert fetch("http://127.0.0.1:%d/crl/intermediate.crl" % m.http_port, got)[0] == 200
    assert crl_serials(got) == [serial_of(cli.dir / "revoked.test.cert.pem")]


def test_missing_crl_answers_404_and_says_how_to_make_it(cli, moat, tmp_path):
    m = moat()
    cli("ca", "init", "--dir", "ca")
    cli("cert", "issue", "a.test", "127.0.0.1", "--ca", "ca")
    (cli.dir / "www").mkdir()
    ca = cli.dir / "ca"
    m.write_config(_site_config(m, ca))
    m.start(ports=[m.port, m.http_port])
    assert fetch("http://127.0.0.1:%d/crl/intermediate.crl" % m.http_port,
                 tmp_path / "x")[0] == 404
    assert "crl.pem is not there; make a new one with `moat ca crl --ca %s`" % ca in m.stderr()
    cli("ca", "crl", "--ca", "ca")
    m.signal(signal.SIGHUP)
    assert reloaded(m, 2), m.stderr()[-2000:]
    got = tmp_path / "c.der"
    assert fetch("http://127.0.0.1:%d/crl/intermediate.crl" % m.http_port, got)[0] == 200
    assert crl_serials(got) == []


def test_plain_listener_finds_the_crl_of_another_site(cli, moat, tmp_path):
    """The CRL URL's host (127.0.0.1 here) need not be the publishing site's name."""
    m = moat()
    ca = _ca_with_revoked_leaf(cli, m)
    publish = "    crl_publish /crl/b.crl %s\n" % ca
    m.write_config(_site_config(m, ca, publish="") + f"""
site b.test {{
    cert {cli.dir}/a.test.fullchain.pem {cli.dir}/a.test.key
    root {cli.dir}/www
{publish}}}
""")
    m.start(ports=[m.port, m.http_port])
    got = tmp_path / "b.der"
    assert fetch("http://127.0.0.1:%d/crl/b.crl" % m.http_port, got)[0] == 200
    assert crl_serials(got) == [serial_of(cli.dir / "revoked.test.cert.pem")]
    # Over HTTPS only the site that publishes it answers with the CRL.
    status, h, _, _ = fetch("https://a.test:%d/crl/b.crl" % m.port, tmp_path / "a",
                            port=m.port, host="a.test", cacert=ca / "root.pem")
    assert status == 404


@pytest.mark.parametrize("word, says", [
    ("{d}/nosuch", "there is no CA folder"),
    ("{d}/www", "is not a moat CA folder: it has no intermediate.pem"),
    ("{d}/a.test.key", "is not a folder"),
    ("~/ca", "does not expand ~"),
])
def test_bad_ca_dir_is_a_config_error_at_its_position(cli, moat, word, says):
    m = moat()
    cli("ca", "init", "--dir", "ca")
    cli("cert", "issue", "a.test", "127.0.0.1", "--ca", "ca")
    (cli.dir / "www").mkdir()
    word = word.format(d=cli.dir)
    m.write_config(_site_config(m, cli.dir / "ca",
                                publish="    crl_publish /crl/ca.crl %s\n" % word))
    line = [i for i, l in enumerate(m.config.read_text().splitlines(), 1) if "crl_publish" in l][0]
    for args in (["serve", "--check", "--config", m.config], ["serve", "--config", m.config]):
        p = run([m.bin] + args, check=False, env=m.env(), timeout=30)
        assert p.returncode == 2, p.stderr
        assert re.search(r"moat\.conf:%d:29: .*%s" % (line, re.escape(says)), p.stderr), p.stderr
        assert "AddressSanitizer" not in p.stderr and "LeakSanitizer" not in p.stderr


def test_reload_with_a_bad_ca_dir_keeps_serving_the_old_crl(cli, moat, tmp_path):
    m = moat()
    ca = _ca_with_revoked_leaf(cli, m)
    m.write_config(_site_config(m, ca))
    m.start(ports=[m.port, m.http_port])
    good = m.config.read_text()
    m.write_config(good.replace("crl_publish /crl/intermediate.crl %s" % ca,
                                "crl_publish /crl/intermediate.crl %s/gone" % ca))
    m.signal(signal.SIGHUP)
    assert wait_for(lambda: "refused, still serving" in m.stderr(), 15), m.stderr()[-2000:]
    assert re.search(r"moat\.conf:\d+:\d+: there is no CA folder", m.stderr())
    got = tmp_path / "c.der"
    assert fetch("http://127.0.0.1:%d/crl/intermediate.crl" % m.http_port, got)[0] == 200
    assert crl_serials(got) == [serial_of(cli.dir / "revoked.test.cert.pem")]


# -- moat's local CA ---------------------------------------------------------------------------


def test_local_ca_crl_is_made_and_refreshed_by_the_server(cli, moat, tmp_path):
    m = moat()
    state_env = {"MOAT_STATE": str(m.state)}
    url = "http://127.0.0.1:%d/crl/local.crl" % m.http_port
    # No --dir: moat's local CA, the one moat serve uses.
    cli("ca", "init", "--crl-url", url, env=state_env)
    www = tmp_path / "www"
    www.mkdir()
    m.write_config(f"""\
listen 127.0.0.1:{m.port}
redirect_http 127.0.0.1:{m.http_port}
state {m.state}
site localhost 127.0.0.1 {{
    root {www}
    crl_publish /crl/local.crl local
}}
""")
    m.start(ports=[m.port, m.http_port])
    leaf = m.state / "certs/localhost.pem"
    assert cdp(leaf) == [url]
    assert "wrote a new CRL" in m.stderr()
    got = tmp_path / "l0.der"
    assert fetch(url, got)[0] == 200
    assert crl_serials(got) == []

    # Revoke the server's own certificate; no `moat ca crl`: the server signs the new list.
    cli("ca", "revoke", leaf, env=state_env)
    m.signal(signal.SIGHUP)
    assert reloaded(m, 2), m.stderr()[-2000:]
    got = tmp_path / "l1.der"
    assert fetch(url, got)[0] == 200
    assert crl_serials(got) == [serial_of(leaf)]
    ca = m.state / "ca"
    v = verify_with_crl(ca, leaf, got, tmp_path)
    assert "certificate revoked" in v.stdout + v.stderr

    # A new CRL URL reaches the server's certificate at the next reload.
    url2 = "http://127.0.0.1:%d/crl/local2.crl" % m.http_port
    cli("ca", "set", "--crl-url", url2, env=state_env)
    m.write_config(m.config.read_text().replace("/crl/local.crl", "/crl/local2.crl"))
    m.signal(signal.SIGHUP)
    assert reloaded(m, 3), m.stderr()[-2000:]
    assert cdp(leaf) == [url2]
    assert fetch(url2, tmp_path / "l2.der")[0] == 200
