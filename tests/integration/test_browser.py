"""Headless Chromium trusts moat's certificates once `moat trust install` put the CA into the
NSS database of its (temporary) HOME, and refuses the same page without that.

Chromium (Debian's `chromium` package) runs with a new empty --user-data-dir and HOME set to a
temporary folder whose ~/.pki/nssdb is the only place the CA can come from. The page is opened
through the DevTools HTTP endpoint (/json/new, /json/list) in a browser that is already up,
rather than as the command-line URL: Chromium opens the NSS database while it starts, and a
URL given on the command line can be verified before that has finished (seen here: about one
run in two failing with ERR_CERT_AUTHORITY_INVALID although the CA was in the database). The
tab's title is the check: the page's own title when it loaded, Chromium's "Privacy error"
interstitial when the certificate was refused. Every wait is bounded, and the browser's whole
process group is killed by its id at the end.
"""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from helpers import free_port
from pki_cli_helpers import MoatCli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
START_TIMEOUT = 30.0
LOAD_TIMEOUT = 20.0

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install-deps)"),
    pytest.mark.skipif(shutil.which("certutil") is None, reason="certutil (libnss3-tools) missing"),
]


class Browser:
    """One headless Chromium with a DevTools port, in its own process group."""

    def __init__(self, home, profile):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--user-data-dir=%s" % profile,
                "--host-resolver-rules=MAP browser.test 127.0.0.1",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=%d" % self.port, "about:blank"]
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env["HOME"] = str(home)
        self.log = open(str(profile) + ".log", "wb")
        self.proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, start_new_session=True)

    def _get(self, path, method="GET"):
        req = urllib.request.Request(self.base + path, method=method)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)

    def wait_up(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("chromium exited with %d" % self.proc.returncode)
            try:
                return self._get("/json/version")
            except OSError:
                time.sleep(0.1)
        raise AssertionError("chromium's DevTools port did not open within %.0fs" % START_TIMEOUT)

    def open_title(self, url):
        """Open url in a new tab; the title once the page (or the error page) is there."""
        tab = self._get("/json/new?" + url, method="PUT")
        deadline = time.monotonic() + LOAD_TIMEOUT
        title = None
        while time.monotonic() < deadline:
            time.sleep(0.1)
            for t in self._get("/json/list"):
                if t["id"] == tab["id"]:
                    title = t.get("title", "")
            # While loading, the title is empty or the URL itself.
            if title and "browser.test:" not in title:
                return title
        return title

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
def site(moat_bin, moat, tmp_path):
    """A CA, a certificate for browser.test, and moat serving a page with a unique title."""
    cli = MoatCli(moat_bin, tmp_path / "work")
    cli("ca", "init", "--dir", "ca", "--name", "Browser Test CA")
    cli("cert", "issue", "browser.test", "--ca", "ca", "--out", "site")
    token = "BROWSER-OK-%s" % os.urandom(4).hex()
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text(
        "<!doctype html><title>%s</title><p>served by moat with a certificate from its CA</p>"
        % token)
    m = moat("browser")
    m.start(["serve", "--root", www, "--listen", "127.0.0.1:%d" % m.port,
             "--cert", cli.dir / "site.fullchain.pem", "--key", cli.dir / "site.key"])
    return cli, m, token


def _visit(home, profile, url):
    b = Browser(home, profile)
    try:
        b.wait_up()
        return b.open_title(url)
    finally:
        b.close()


def test_chromium_trusts_the_ca_after_moat_trust_install(site, tmp_path):
    cli, m, token = site
    home = tmp_path / "home"
    home.mkdir()
    p = cli("trust", "install", "--ca", "ca", "--no-system", "--home", home)
    assert "nss: trusted in %s/.pki/nssdb" % home in p.stdout
    url = "https://browser.test:%d/" % m.port
    t0 = time.monotonic()
    title = _visit(home, tmp_path / "profile-trusted", url)
    took = time.monotonic() - t0
    assert title == token, "page not loaded (title %r)" % title
    assert took < START_TIMEOUT + LOAD_TIMEOUT
    print("chromium loaded the page in %.1fs" % took)


def test_chromium_refuses_without_the_import(site, tmp_path):
    cli, m, token = site
    home = tmp_path / "home-empty"
    home.mkdir()
    url = "https://browser.test:%d/" % m.port
    title = _visit(home, tmp_path / "profile-untrusted", url)
    assert title != token
    assert title == "Privacy error", "expected Chromium's certificate error page, got %r" % title


def test_chromium_refuses_again_after_uninstall(site, tmp_path):
    cli, m, token = site
    home = tmp_path / "home-undo"
    home.mkdir()
    cli("trust", "install", "--ca", "ca", "--no-system", "--home", home)
    p = cli("trust", "uninstall", "--ca", "ca", "--no-system", "--home", home)
    assert "nss: removed" in p.stdout
    title = _visit(home, tmp_path / "profile-undone", "https://browser.test:%d/" % m.port)
    assert title == "Privacy error", title
