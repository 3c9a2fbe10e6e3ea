"""The status page (GET / on the admin listener, docs/admin.md): rendered by the server, so it
reads without JavaScript (curl), and live with it (headless Chromium: the page fetches itself
again every 5 s; virtual time lets that run). A screenshot is kept in the test's folder and in
build/test-artifacts/ for a person to look at.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import CURL, clean_env, free_port, standard_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def page_server(moat, pki, www):
    m = moat("page")
    token = "pg-" + os.urandom(12).hex()
    tf = m.dir / "admin.token"
    tf.write_text(token + "\n")
    os.chmod(tf, 0o600)
    port = free_port()
    m.write_config(standard_config(m, pki, www, extra_top="admin 127.0.0.1:%d token %s"
                                   % (port, tf)))
    m.start(ports=[m.port, port])
    return m, port, token


def test_page_reads_without_javascript(page_server):
    m, port, token = page_server
    proc = subprocess.run([CURL, "-sS", "-D", "-", "-u", "op:" + token,
                           "http://127.0.0.1:%d/" % port], capture_output=True, text=True,
                          timeout=15, env=clean_env())
    head, _, body = proc.stdout.partition("\n\n")  # text mode: CRLF reads as LF
    assert head.startswith("HTTP/1.1 200")
    assert "Content-Type: text/html; charset=utf-8" in head
    assert re.search(r"Content-Security-Policy: default-src 'none';", head)
    assert "X-Frame-Options: DENY" in head
    # No external assets: nothing is loaded from anywhere.
    assert not re.search(r"(src|href)=\"(https?:)?//", body)
    for name in ["example.test", "*.wild.test", "listing.test"]:
        assert "<h3>%s <small>files</small></h3>" % name in body
    assert re.search(r'<span class="ok">\d+ days left</span>', body)
    assert '<ol class="chain"' in body
    assert "Recent warnings and errors" in body and "<svg" in body
    # Without the token: the browser is asked for it.
    proc = subprocess.run([CURL, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                           "http://127.0.0.1:%d/" % port], capture_output=True, text=True,
                          timeout=15, env=clean_env())
    assert proc.stdout == "401"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install-deps)")
def test_chromium_shows_sites_expiry_and_refreshes(page_server, tmp_path):
    m, port, token = page_server
    url = "http://op:%s@127.0.0.1:%d/" % (token, port)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HOME"] = str(tmp_path)
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--user-data-dir=%s" % (tmp_path / "profile")]
    shot = tmp_path / "status-page.png"
    subprocess.run(base + ["--window-size=1280,1800", "--screenshot=%s" % shot, url],
                   capture_output=True, timeout=90, env=env)
    assert shot.exists() and shot.stat().st_size > 10000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = ROOT / "build" / "test-artifacts"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "status-page.png")
    # The DOM after the script's refresh has run once (7 s of virtual time).
    dom = subprocess.run(base + ["--virtual-time-budget=7000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=90, env=env).stdout
    assert "<h1>moat " in dom
    assert "example.test" in dom and re.search(r"\d+ days left", dom)
    # A failed refresh would have said so in the footer.
    assert "id=\"live\">Refreshes every 5 s" in dom
    assert m.alive()
