"""Headless Chromium speaks HTTP/2 to moat: a page whose inline script writes
performance.getEntriesByType('navigation')[0].nextHopProtocol into the DOM says "h2", and
"http/1.1" for a site with `http2 off`.

Two ways in, each with its own clean profile:
- `chromium --headless --dump-dom URL`, trusting the server's leaf by its key
  (--ignore-certificate-errors-spki-list with the leaf's SPKI hash). That flag is checked when
  the certificate is, so there is no race with the NSS database opening (test_browser.py
  explains the race that a command-line URL has with a CA imported into NSS);
- the DevTools endpoint of a browser that is up, with the suite's CA imported into the NSS
  database of its HOME (certutil), the way test_browser.py does it; the tab's title is read.
Every wait is bounded and the browser's process group is killed by its id at the end.
"""

import base64
import hashlib
import os
import shutil
import signal
import subprocess

import pytest

from helpers import OPENSSL, run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CERTUTIL = shutil.which("certutil")

pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="chromium not installed (Debian package chromium)")

PAGE = """<!doctype html><html><head></head><body>
<p id="proto">none</p>
<script>
function show() {
  var e = performance.getEntriesByType('navigation')[0];
  var p = e ? e.nextHopProtocol : 'no-entry';
  document.getElementById('proto').textContent = 'PROTO=' + p + '=';
  document.title = 'PROTO=' + p + '=';
}
show();
window.addEventListener('load', show);
</script>
</body></html>
"""


def spki_hash(cert_pem):
    """base64(SHA-256(SubjectPublicKeyInfo)), as --ignore-certificate-errors-spki-list wants."""
    pub = run([OPENSSL, "x509", "-in", cert_pem, "-noout", "-pubkey"]).stdout
    der = subprocess.run([OPENSSL, "pkey", "-pubin", "-outform", "DER"], input=pub.encode(),
                         capture_output=True, check=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture
def site(moat, pki, tmp_path):
    cert = pki.issue(["browser.test", "plain.test"], "ec", stem="h2-browser-%s" %
                     os.urandom(3).hex())
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text(PAGE)
    m = moat("browser")
    m.write_config(f"""\
listen 127.0.0.1:{m.port}
workers 1
state {m.state}
error_log stderr info
access_log {m.access_log} json
trust {pki.root}
site browser.test {{
    cert {cert.chain} {cert.key}
    root {www}
}}
site plain.test {{
    cert {cert.chain} {cert.key}
    root {www}
    http2 off
}}
""")
    m.start()
    return m, cert


def _env(home):
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HOME"] = str(home)
    return env


def _base_args(profile):
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--user-data-dir=%s" % profile,
            "--host-resolver-rules=MAP browser.test 127.0.0.1, MAP plain.test 127.0.0.1"]


def dump_dom(tmp_path, url, spki, name):
    home = tmp_path / ("home-" + name)
    home.mkdir()
    args = _base_args(tmp_path / ("profile-" + name)) + [
        "--ignore-certificate-errors-spki-list=%s" % spki, "--virtual-time-budget=3000",
        "--dump-dom", url]
    p = subprocess.Popen(args, env=_env(home), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=10)
        raise AssertionError("chromium --dump-dom did not finish in 60 s: %s" % err[-2000:])
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # helpers it left behind
        except ProcessLookupError:
            pass
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def test_chromium_dump_dom_says_h2(site, tmp_path):
    m, cert = site
    dom, err = dump_dom(tmp_path, "https://browser.test:%d/" % m.port, spki_hash(cert.leaf),
                        "h2")
    assert "PROTO=h2=" in dom, "page says %r\n--- chromium stderr ---\n%s" % (
        dom[-1500:], err[-2000:])
    # And moat logged it as HTTP/2.
    lines = m.access_lines(1)
    assert any('"proto": "HTTP/2"' in l or '"proto":"HTTP/2"' in l for l in lines), lines


def test_chromium_gets_http11_from_a_site_with_http2_off(site, tmp_path):
    m, cert = site
    dom, err = dump_dom(tmp_path, "https://plain.test:%d/" % m.port, spki_hash(cert.leaf),
                        "plain")
    assert "PROTO=http/1.1=" in dom, "page says %r\n%s" % (dom[-1500:], err[-2000:])


@pytest.mark.skipif(CERTUTIL is None, reason="certutil missing (Debian package libnss3-tools)")
def test_chromium_with_the_ca_in_nss_says_h2(site, pki, tmp_path):
    from test_browser import Browser  # the DevTools driver of the TLS browser test
    m, cert = site
    home = tmp_path / "home-nss"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    run([CERTUTIL, "-N", "-d", "sql:%s" % nssdb, "--empty-password"])
    run([CERTUTIL, "-A", "-d", "sql:%s" % nssdb, "-n", "moat test root", "-t", "C,,",
         "-i", pki.root])
    b = Browser(home, tmp_path / "profile-nss")
    try:
        b.wait_up()
        title = b.open_title("https://browser.test:%d/" % m.port)
    finally:
        b.close()
    assert title == "PROTO=h2=", "title %r" % title
