"""moat check --html: one self-contained page (no external asset, no script), every finding of
the check in it with its id, severity and fixes, the server's words escaped; rendered by
headless Chromium into a screenshot (kept in build/screenshots/) that is not blank, and whose
DOM has the findings table."""

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from helpers import free_port, start_s_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parents[2]


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


def png_is_not_blank(path):
    """Decode the PNG's first rows (8-bit RGB/RGBA, as Chromium writes) and count colours."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h, ctype = 8, b"", 0, 0, 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, _, ctype = struct.unpack(">IIBB", chunk[:10])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    raw = zlib.decompress(idat)
    bpp = 4 if ctype == 6 else 3
    stride = 1 + w * bpp
    colours = set()
    for row in range(0, min(h, 400), 7):
        line = raw[row * stride + 1:(row + 1) * stride]  # filter bytes aside, good enough
        for x in range(0, len(line) - bpp, bpp * 5):
            colours.add(line[x:x + 3])
    return len(colours) > 20


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
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HOME"] = str(tmp_path)
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--user-data-dir=%s" % (tmp_path / "profile")]
    shot = tmp_path / "check.png"
    subprocess.run(base + ["--screenshot=%s" % shot, "--window-size=1100,1600",
                           page.as_uri()], env=env, capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20000
    assert png_is_not_blank(shot)
    keep = ROOT / "build" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "check-weak.png")
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], env=env, capture_output=True,
                         text=True, timeout=120).stdout
    assert "Findings (" in dom and "protocol.tls10_11" in dom
    assert "<details>" in dom  # the fixes fold, without script
