"""Response headers: the `header` directive (set, add, remove; per site and per path prefix; on
moat's own answers and on proxied ones) and the security header moat sends by default
(`X-Content-Type-Options: nosniff` on its own answers), checked with curl and raw requests.
"""

import re
import subprocess

import pytest

from conftest import _finish
from helpers import Conn, Moat, clean_env, curl, make_www
from origin import Origin


@pytest.fixture(scope="module")
def origin():
    with Origin() as o:
        yield o


@pytest.fixture(scope="module")
def docroot(tmp_path_factory):
    www = make_www(tmp_path_factory.mktemp("headers-docroot"))[0]
    (www / "static").mkdir()
    (www / "static" / "app.css").write_text("css\n")
    (www / "static" / "deep").mkdir()
    (www / "static" / "deep" / "x.txt").write_text("deep\n")
    (www / "staticfoo.txt").write_text("not under static\n")
    return www


@pytest.fixture(scope="module")
def hsrv(moat_bin, pki, docroot, origin, tmp_path_factory):
    m = Moat(moat_bin, tmp_path_factory.mktemp("headers"), name="headers")
    c = pki.issue(["rules.test", "plain.test", "nosniff-off.test", "proxy.test"], stem="hdr")
    m.write_config(f"""\
listen 127.0.0.1:{m.port}
workers 1
state {m.state}
trust {pki.root}
site rules.test {{
    cert {c.chain} {c.key}
    root {docroot}
    header set X-Frame-Options DENY
    header add Link "</a.css>; rel=preload"
    header add Link "</b.js>; rel=preload"
    header set Referrer-Policy no-referrer
    header remove Server
    header /static set Cache-Control max-age=3600, public
    header /static/ remove X-Frame-Options
    header /static/deep add X-Deep yes
    header /sub set Content-Type "text/x-moat"
}}
site plain.test {{
    cert {c.chain} {c.key}
    root {docroot}
}}
site nosniff-off.test {{
    cert {c.chain} {c.key}
    root {docroot}
    header remove X-Content-Type-Options
}}
site proxy.test {{
    cert {c.chain} {c.key}
    proxy {origin.url}
    header set X-Frame-Options DENY
    header remove Server
    header add X-Added by-moat
    header /api set Cache-Control private
}}
""")
    m.start()
    yield m
    _finish(m)


def ask(m, host, path="/", method="GET"):
    with Conn(m.port, sni=host, verify=False) as c:
        return c.request(path, method=method, host=host)


def test_nosniff_on_static_answers_by_default(hsrv):
    for path, status in [("/a.txt", 200), ("/missing", 404), ("/sub", 301)]:
        r = ask(hsrv, "plain.test", path)
        assert r.status == status
        assert r.header_all("x-content-type-options") == ["nosniff"], (path, r)
    assert ask(hsrv, "plain.test", "/a.txt", "HEAD").header("x-content-type-options") == "nosniff"
    # A server-wide refusal (method) too.
    assert ask(hsrv, "plain.test", "/a.txt", "POST").header("x-content-type-options") == "nosniff"


def test_nosniff_can_be_removed(hsrv):
    r = ask(hsrv, "nosniff-off.test", "/a.txt")
    assert r.status == 200 and not r.has("x-content-type-options")


def test_site_rules_set_add_remove(hsrv):
    r = ask(hsrv, "rules.test", "/a.txt")
    assert r.status == 200 and r.body == b"file A\n"
    assert r.header_all("x-frame-options") == ["DENY"]
    assert r.header_all("link") == ["</a.css>; rel=preload", "</b.js>; rel=preload"]
    assert r.header("referrer-policy") == "no-referrer"
    assert not r.has("server")
    assert r.header("x-content-type-options") == "nosniff"
    # Framing fields are untouched.
    assert r.header("content-length") == "7"


def test_prefix_rules(hsrv):
    r = ask(hsrv, "rules.test", "/static/app.css")
    assert r.header("cache-control") == "max-age=3600, public"
    assert not r.has("x-frame-options")  # removed under /static
    assert r.header("referrer-policy") == "no-referrer"  # site-wide still applies
    assert not r.has("x-deep")
    d = ask(hsrv, "rules.test", "/static/deep/x.txt")
    assert d.header("x-deep") == "yes" and d.header("cache-control") == "max-age=3600, public"
    # A segment boundary: /staticfoo.txt is not under /static.
    f = ask(hsrv, "rules.test", "/staticfoo.txt")
    assert not f.has("cache-control") and f.header("x-frame-options") == "DENY"
    # Encoded paths are matched after decoding and normalising.
    e = ask(hsrv, "rules.test", "/st%61tic/./app.css")
    assert e.status == 200 and e.header("cache-control") == "max-age=3600, public"


def test_set_replaces_the_handlers_field(hsrv):
    r = ask(hsrv, "rules.test", "/sub/file.txt")
    assert r.status == 200
    assert r.header_all("content-type") == ["text/x-moat"]


def test_rules_on_proxied_answers(hsrv, origin):
    r = ask(hsrv, "proxy.test", "/setheaders?t=hdr1")
    assert r.status == 200 and r.body == b"ok"
    assert r.header_all("x-frame-options") == ["DENY"]  # the origin's ALLOW is replaced
    assert not r.has("server")  # neither moat's nor the origin's
    assert r.header("x-added") == "by-moat"
    assert r.header("cache-control") == "no-store"  # the origin's, no rule for this path
    assert r.header("x-kept") == "yes"
    # The nosniff default is for moat's own answers; the origin speaks for its own.
    assert not r.has("x-content-type-options")
    a = ask(hsrv, "proxy.test", "/api/setheaders?t=hdr2")
    assert a.header_all("cache-control") == ["private"]


def test_curl_sees_the_headers(hsrv, pki, tmp_path):
    r = curl(tmp_path, "https://rules.test:%d/static/app.css" % hsrv.port, port=hsrv.port,
             host="rules.test", cacert=pki.root)
    assert r.rc == 0, r.stderr
    assert re.search(r"(?mi)^cache-control: max-age=3600, public\r?$", r.head)
    assert re.search(r"(?mi)^x-content-type-options: nosniff\r?$", r.head)


BAD_RULES = [
    ("header set Content-Length 5", "Content-Length cannot be set by a header rule"),
    ("header set Strict-Transport-Security max-age=1", "use the hsts directive"),
    ("header remove Date", "Date cannot be set by a header rule"),
    ("header set Bad:Name x", "is not a header name"),
    ("header set X-Empty", "X-Empty needs a value"),
    ("header remove X-A value", "remove takes only the name"),
    ("header replace X-A v", "is not set, add or remove"),
    ("header /a/../b set X-A v", "plain path prefix"),
    ("header /static", "usage: header"),
]


@pytest.mark.parametrize("rule,words", BAD_RULES, ids=[r[0] for r in BAD_RULES])
def test_bad_rules_are_refused_with_position(moat_bin, tmp_path, docroot, rule, words):
    conf = tmp_path / "moat.conf"
    conf.write_text("listen 127.0.0.1:1\nsite * {\n    root %s\n    %s\n}\n" % (docroot, rule))
    p = subprocess.run([str(moat_bin), "serve", "--check", "--config", str(conf)],
                       capture_output=True, text=True, timeout=30, cwd=tmp_path,
                       env=clean_env({"MOAT_STATE": str(tmp_path / "state")}),
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert re.search(r"moat\.conf:4:\d+: .*%s" % re.escape(words), p.stderr), p.stderr
