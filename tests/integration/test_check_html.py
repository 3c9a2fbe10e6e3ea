"""moat check --html: one self-contained page (no external asset, no script), every finding of
the check in it with its id, severity and fixes, the server's words escaped; rendered by
headless Chromium into a screenshot (kept in build/screenshots/) that is not blank, and whose
DOM has the findings table."""

import json
import re
import subprocess

import pytest

from helpers import free_port, start_s_server
from page_helpers import CHROMIUM, chromium, screenshot



@pytest.fixture(scope="module")
def weak_server(tmp_path_factory):
    """An s_server whose certificate's subject carries markup, with TLS 1.0 and NULL suites."""
    d = tmp_path_factory.mktemp("weak")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(d / "k.pem"), "-out", str(d / "c.pem"), "-days", "30", "-subj",
                    "/CN=weak.test/O=<img src=x onerror=alert(1)>",
                    "-addext", "subjectAltName=DNS:weak.test"],
                   check=True, capture_output=True, timeout=60)
    port = free_port()
    p = start_s_server(port, ["-cert", str(d / "c.pem"), "-key", str(d / "k.pem"), "-www",
                              "-cipher", "ALL:COMPLEMENTOFALL:@SECLEVEL=0",
                              "-min_protocol", "TLSv1"])
    yield port
    p.terminate()
    p.wait(timeout=10)


def test_the_page_holds_every_finding_escaped_and_self_contained(moat_bin, weak_server,
                                                                  tmp_path):
    page = tmp_path / "check.html"
    r = subprocess.run([moat_bin, "check", "--json", "--html", str(page), "--connect",
                        "127.0.0.1", "--http-port", "off", "weak.test:%d" % weak_server],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 6, r.stderr
    doc = json.loads(r.stdout)
    html = page.read_text()
    assert oct(page.stat().st_mode & 0o777) == "0o644"
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html.lower() and "<img" not in html  # nothing runs
    assert "&lt;img src=x onerror=alert(1)" in html  # the subject, escaped
    assert not re.search(r'(src|href)\s*=\s*"?(https?:)?//', html)
    assert 'class="grade g-%s"' % doc["grade"] in html
    for f in doc["findings"]:
        assert 'id="%s"' % f["id"] in html
        assert "s-%s" % f["severity"] in html
    assert "protocol.tls10_11" in html and "suites.null" in html
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in html  # the nginx fix
    assert "_WITH_NULL_" in html  # the suites that prove it
    # No page is left half-written when the folder is not writable.
    bad = subprocess.run([moat_bin, "check", "--html", str(tmp_path / "no" / "such" / "x.html"),
                          "--connect", "127.0.0.1", "--http-port", "off",
                          "weak.test:%d" % weak_server], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1 and "cannot write" in bad.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install-deps)")
def test_chromium_renders_the_page(moat_bin, weak_server, tmp_path):
    page = tmp_path / "check.html"
    subprocess.run([moat_bin, "check", "--html", str(page), "--connect", "127.0.0.1",
                    "--http-port", "off", "weak.test:%d" % weak_server], capture_output=True,
                   timeout=120)
    screenshot(tmp_path, page, "check-weak.png")
    dom = chromium(tmp_path, ["--dump-dom"], page).stdout
    assert "Findings (" in dom and "protocol.tls10_11" in dom
    assert "<details>" in dom  # the fixes fold, without script
