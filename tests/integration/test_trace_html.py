"""`moat trace --html FILE`: one self-contained page of the trace, written whole (mode 0644)
besides the normal output on stdout.

(a) against moat serve with a leaf -> intermediate -> root chain: one document that fetches
nothing (no http(s):// in src or href, no script, no stylesheet link), an SVG with an arrow for
every TLS message from ClientHello to Finished in the order they crossed, one <details> per
message, and the chain as three linked cards (two sent by the server, the root from the trust
store); (b) against setups that fail (moat serve asked for a name its certificate lacks, and
openssl s_server with a self-signed certificate whose subject carries markup): the failure
marked in the diagram after the client's fatal alert, the cause and fix of the JSON result, the
markup escaped; (c) headless Chromium renders both pages (screenshots in the test's folder and
in build/screenshots/) into images that are not blank, and its DOM holds the arrows' labels.
"""

import os
import re
import subprocess

import pytest

from client_helpers import moat_client, resolve, s_server
from page_helpers import CHROMIUM, chromium, screenshot

DOT = "\u00b7"  # the page draws the text diagram's double space as a middle dot
FLOW13 = ["ClientHello", "ServerHello", "EncryptedExtensions", "Certificate",
          "CertificateVerify", "Finished", "Finished"]
MARKUP = "<script>alert(1)</script>"  # in the subject of markup_server's certificate


@pytest.fixture
def good_server(moat, pki, www):
    """moat serve with the suite's EC leaf for example.test and its intermediate."""
    m = moat("serve")
    m.start(["serve", "--root", www, "--listen", "127.0.0.1:%d" % m.port, "--cert",
             pki.ec.chain, "--key", pki.ec.key])
    return m.port


@pytest.fixture
def markup_server(tmp_path):
    """openssl s_server with a self-signed certificate for example.test whose subject carries
    markup: nobody trusts it, and its words must reach the page escaped."""
    d = tmp_path / "markup"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "k.pem"), "-out",
                    str(d / "c.pem"), "-days", "30", "-subj",
                    "/CN=example.test/O=<script>alert(1)<\\/script>", "-addext",
                    "subjectAltName=DNS:example.test"],
                   check=True, capture_output=True, timeout=60)
    s = s_server(tmp_path, d / "c.pem", d / "k.pem")
    yield s.port
    s.stop()


def escaped(s):
    """The page's escaping of a string (html.escape spells the apostrophe otherwise)."""
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def svg_of(page):
    start = page.index('<svg class="seq"')
    return page[start:page.index("</svg>", start)]


def client_state(tmp_path):
    """An empty state folder, so this machine's local CA does not change what is trusted."""
    d = tmp_path / "client-state"
    d.mkdir(exist_ok=True)
    return d


def trace(moat_bin, tmp_path, port, host, page, *extra):
    return moat_client(moat_bin, client_state(tmp_path), "trace", "--html", page,
                       "https://%s:%d/" % (host, port), resolve(host, port), *extra)


def assert_self_contained(page):
    assert page.startswith("<!DOCTYPE html>\n")
    assert page.count("<html") == 1 and page.rstrip().endswith("</html>")
    assert "<script" not in page.lower()
    assert not re.search(r"<link\b|@import|url\(\s*['\"]?(https?:)?//", page, re.I)
    refs = re.findall(r"""\b(?:src|href|xlink:href)\s*=\s*["']?([^"'\s>]*)""", page, re.I)
    assert all(r.startswith("#") for r in refs), refs  # only links inside the page
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?(https?:)?//""", page, re.I)


def test_good_trace_page(moat_bin, pki, good_server, tmp_path):
    page_path = tmp_path / "out" / "trace.html"
    page_path.parent.mkdir()
    j = trace(moat_bin, tmp_path, good_server, "example.test", page_path, "--json", "--cafile",
              pki.root, "--tls-min", "1.3")
    assert j.rc == 0, j
    doc = j.json  # stdout still holds the normal output: here the JSON document
    assert oct(page_path.stat().st_mode & 0o777) == "0o644"
    assert os.listdir(page_path.parent) == ["trace.html"]  # no temporary file left behind
    page = page_path.read_text()
    assert_self_contained(page)
    url = "https://example.test:%d/" % good_server
    assert "<title>moat trace %s</title>" % url in page
    svg = svg_of(page)
    # Every TLS message is an arrow, labelled with its name and size, in the order it crossed.
    msgs = doc["hops"][0]["tls"]["messages"]
    at = 0
    for m in msgs:
        if m["record"] == "handshake":
            label = "%s %s %d B" % (m["type"], DOT, m["size"])
        elif m["record"] == "change_cipher_spec":
            label = "ChangeCipherSpec %s %d B" % (DOT, m["size"])
        else:
            label = "ALERT " + m["alert"]["description"]
        found = svg.find("<title>" + label, at)
        assert found > at, (label, svg[at:at + 400])
        at = found
    names = [m["type"] for m in msgs if m["record"] == "handshake" and not m["post_handshake"]]
    assert names == FLOW13, names
    assert svg.count('<g class="row k-tls') == len(msgs)
    assert svg.count('<g class="row k-tls enc') == sum(m["encrypted"] for m in msgs)
    assert "TCP connect: SYN, SYN-ACK, ACK" in svg and "GET / HTTP/1.1" in svg
    assert "server \u2192 client: encrypted from here on" in svg
    assert "client \u2192 server: encrypted from here on" in svg
    assert 'class="lock"' in svg and 'class="fail"' not in svg
    # Each row again as a <details>, with render.c's note.
    rows = svg.count('<a href="#c0-r')
    assert page.count('<details class="msg') == rows
    assert "TLS 1.3 only: the server&#39;s extensions, already encrypted" in page
    # Negotiated parameters.
    tls = doc["hops"][0]["tls"]
    for key, value in (("cipher", tls["cipher"]), ("key group", tls["group"]),
                       ("ALPN", tls["alpn"]), ("SNI", "example.test"),
                       ("signature", tls["signature_scheme"])):
        assert "<th>%s</th><td>%s</td>" % (key, escaped(value)) in page, key
    # The chain, leaf to root: the server sent two, the root came from the trust store.
    assert page.count('<li class="card ') == 3
    roles = re.findall(r'<span class="role">(\w+)</span>', page)
    assert roles == ["leaf", "intermediate", "root"], roles
    sources = re.findall(r'<span class="src">([^<]+)</span>', page)
    assert sources == ["sent by the server", "sent by the server", "from the trust store"]
    for c, card in zip(tls["verified_path"], re.findall(r'<li class="card .*?</li>', page)):
        assert escaped(c["subject"]) in card and c["sha256_prefix"] in card
        assert "%d days left" % c["days_left"] in card
    assert page.count('<li class="link">') == 2
    assert "Result: OK</b>, 200" in page


def test_the_text_diagram_still_goes_to_stdout(moat_bin, pki, good_server, tmp_path):
    page_path = tmp_path / "t.html"
    t = trace(moat_bin, tmp_path, good_server, "example.test", page_path, "--cafile", pki.root)
    assert t.rc == 0, t
    assert "moat trace https://example.test:%d/" % good_server in t.text
    assert "|-- ClientHello" in t.text and "Result: OK" in t.text
    assert page_path.read_text().startswith("<!DOCTYPE html>")


def test_unwritable_page_is_an_error(moat_bin, pki, good_server, tmp_path):
    bad = tmp_path / "no" / "such" / "folder" / "trace.html"
    t = trace(moat_bin, tmp_path, good_server, "example.test", bad, "--cafile", pki.root)
    assert t.rc == 1, t
    assert "moat trace: cannot write %s: " % bad in t.stderr
    assert "No such file or directory" in t.stderr
    assert "Result: OK" in t.text  # the trace itself was shown
    assert not bad.parent.exists()
    g = moat_client(moat_bin, client_state(tmp_path), "get", "--html", tmp_path / "x.html",
                    "https://example.test:%d/" % good_server, resolve("example.test", good_server))
    assert g.rc == 2 and 'unknown option "--html"' in g.stderr, g
    assert not (tmp_path / "x.html").exists()


def failing_page(moat_bin, tmp_path, port, host, kind, *extra):
    """Trace a failing setup twice (JSON and the page); returns (JSON doc, page)."""
    page_path = tmp_path / ("fail-%s.html" % kind)
    j = trace(moat_bin, tmp_path, port, host, page_path, "--json", *extra)
    assert j.rc == 5, j
    doc = j.json
    assert doc["result"]["certificate_kind"] == kind, doc["result"]
    return doc, page_path


@pytest.mark.parametrize("kind", ["name_mismatch", "self_signed"])
def test_failure_marked_with_cause_and_fix(kind, moat_bin, pki, tmp_path, request):
    if kind == "name_mismatch":
        port = request.getfixturevalue("good_server")
        doc, page_path = failing_page(moat_bin, tmp_path, port, "other.test", kind,
                                      "--cafile", pki.root)
    else:
        port = request.getfixturevalue("markup_server")
        doc, page_path = failing_page(moat_bin, tmp_path, port, "example.test", kind)
    page = page_path.read_text()
    assert_self_contained(page)
    res = doc["result"]
    svg = svg_of(page)
    # The client's fatal alert is drawn as the failure, and the marker comes right after it.
    alert = re.search(r'<g class="row k-tls[^"]* bad"><title>ALERT (\w+) \(fatal\)', svg)
    assert alert, svg
    sent = [m for m in doc["hops"][0]["tls"]["messages"] if m["record"] == "alert"]
    assert sent and sent[0]["direction"] == "client->server"
    assert alert.group(1) == sent[0]["alert"]["description"]
    mark = svg.find('<g class="fail">')
    assert mark > alert.start()
    assert "stopped here, at TLS: certificate %s</text>" % kind in svg
    # Cause, detail and fix, as the JSON result has them.
    assert "FAILED at TLS: certificate %s</b> (exit code 5)" % kind in page
    assert "<dt>cause</dt><dd>%s</dd>" % escaped(res["message"]) in page
    assert "<dt>fix</dt><dd>%s</dd>" % escaped(res["fix"]) in page
    assert escaped(res["detail"]) in page
    assert 'href="#c0-fail">failed at TLS: certificate %s</a>' % kind in page
    assert re.search(r'<details class="msg k-tls bad" id="c0-r\d+" open>', page)
    # The certificate that failed is marked on its card.
    assert '<li class="card server bad">' in page
    assert "failed here: %s" % kind in page
    if kind == "self_signed":
        # The subject in RFC 2253 form escapes '<' as '\<'; the page escapes what is left.
        assert MARKUP not in page and "<script" not in page
        assert "O=\\&lt;script\\&gt;alert(1)\\&lt;/script\\&gt;" in page
        assert "no trusted root: the chain ends here" in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install-deps)")
def test_chromium_renders_both_pages(moat_bin, pki, good_server, markup_server,
                                     tmp_path):
    good = tmp_path / "good.html"
    t = trace(moat_bin, tmp_path, good_server, "example.test", good, "--cafile", pki.root)
    assert t.rc == 0, t
    _, bad = failing_page(moat_bin, tmp_path, markup_server, "example.test",
                          "self_signed")
    for name, page_path, words in (
            ("good", good, ["ClientHello", "EncryptedExtensions", "Finished",
                            "encrypted from here on", "Result: OK"]),
            ("fail", bad, ["ClientHello", "ALERT", "stopped here, at TLS: certificate "
                           "self_signed", "FAILED at TLS"])):
        # A blank 1200x2000 page compresses to a few kilobytes.
        screenshot(tmp_path, page_path, "trace-%s.png" % name, size="1200,2000",
                   min_bytes=40000)
        dom = chromium(tmp_path, ["--dump-dom"], page_path).stdout
        assert '<svg class="seq"' in dom, dom[:500]
        for w in words:
            assert w in dom, (name, w)
        if name == "fail":
            assert "<script" not in dom and "&lt;script\\&gt;alert(1)" in dom
