"""Which site answers a request, and when none may (RFC 9110 §7.4, §15.5.20; RFC 9112 §3.2.2).

Over HTTPS a request is answered only by a site the connection may speak for: the site whose
certificate the handshake chose, a site whose name that certificate covers, or a `site *`
catch-all. A host no site serves gets 421 Misdirected Request instead of the default site's
content, and the absolute-form target's authority counts, not the Host field.
"""

import re

import pytest

from conftest import _finish
from helpers import Conn, Moat, curl, log_after, wait_for


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """One docroot per site, each with a page that names it."""
    base = tmp_path_factory.mktemp("roots")
    out = {}
    for name in ["a", "b", "c", "d", "w", "local", "any"]:
        d = base / name
        d.mkdir()
        (d / "index.html").write_text("SITE-%s\n" % name.upper())
        out[name] = d
    return out


@pytest.fixture(scope="module")
def certs(pki):
    return {
        "a": pki.issue(["a.test"], stem="route-a"),
        "b": pki.issue(["b.test"], stem="route-b"),
        # One certificate for two sites: a request for either may use a connection made for
        # the other (what browsers do when they coalesce connections).
        "cd": pki.issue(["c.test", "d.test"], stem="route-cd"),
        "w": pki.issue(["*.w.test"], stem="route-w"),
    }


@pytest.fixture(scope="module")
def strict(moat_bin, tmp_path_factory, pki, roots, certs):
    m = Moat(moat_bin, tmp_path_factory.mktemp("strict"), name="strict")
    m.write_config(f"""\
listen 127.0.0.1:{m.port}
workers 1
state {m.state}
error_log stderr info
trust {pki.root}
site localhost 127.0.0.1 ::1 {{
    root {roots['local']}
}}
site a.test {{
    cert {certs['a'].chain} {certs['a'].key}
    root {roots['a']}
}}
site b.test {{
    cert {certs['b'].chain} {certs['b'].key}
    root {roots['b']}
}}
site c.test {{
    cert {certs['cd'].chain} {certs['cd'].key}
    root {roots['c']}
}}
site d.test {{
    cert {certs['cd'].chain} {certs['cd'].key}
    root {roots['d']}
}}
site *.w.test {{
    cert {certs['w'].chain} {certs['w'].key}
    root {roots['w']}
}}
""")
    m.start()
    yield m
    _finish(m)


def ask(m, sni, host, target="/", version="1.1"):
    with Conn(m.port, sni=sni, verify=False) as c:
        head = "GET %s HTTP/%s\r\n" % (target, version)
        if host is not None:
            head += "Host: %s\r\n" % host
        c.send(head + "\r\n")
        return c.read_response()


def test_unknown_host_is_421_not_the_default_site(strict):
    mark = len(strict.stderr())
    r = ask(strict, "a.test", "evil.example")
    assert r.status == 421
    assert b"SITE-" not in r.body
    assert log_after(strict, mark, r'421: Host "evil.example" is not a name of any site')


def test_unknown_sni_and_host_is_421(strict):
    r = ask(strict, "evil.example", "evil.example")
    assert r.status == 421 and b"SITE-" not in r.body


def test_absolute_form_authority_wins_over_host(strict):
    # RFC 9112 §3.2.2: the target's authority replaces Host.
    r = ask(strict, "a.test", "a.test", target="http://evil.example/")
    assert r.status == 421 and b"SITE-" not in r.body
    r = ask(strict, "a.test", "evil.example", target="https://a.test/")
    assert r.status == 200 and r.body == b"SITE-A\n"


def test_other_site_with_another_certificate_is_421(strict):
    mark = len(strict.stderr())
    r = ask(strict, "a.test", "b.test")
    assert r.status == 421 and b"SITE-B" not in r.body
    assert log_after(strict, mark, r'421: Host "b.test" is not covered by the certificate')


def test_other_site_sharing_the_certificate_is_served(strict):
    assert ask(strict, "c.test", "d.test").body == b"SITE-D\n"
    assert ask(strict, "d.test", "c.test").body == b"SITE-C\n"


def test_wildcard_site_serves_its_names(strict):
    assert ask(strict, "x.w.test", "y.w.test").body == b"SITE-W\n"
    assert ask(strict, "x.w.test", "y.w.test:443").body == b"SITE-W\n"
    assert ask(strict, "x.w.test", "deep.y.w.test").status == 421


def test_hosts_change_on_one_connection(strict):
    # Each request on a keep-alive connection is routed by its own Host: the connection
    # remembers the last name's site (serve/route.c), and must not answer another name with it.
    seq = [("c.test", 200, b"SITE-C\n"), ("d.test", 200, b"SITE-D\n"),
           ("C.Test", 200, b"SITE-C\n"), ("d.test:443", 200, b"SITE-D\n"),
           ("b.test", 421, None), ("d.test", 200, b"SITE-D\n"), ("c.test", 200, b"SITE-C\n"),
           ("evil.example", 421, None)]
    with Conn(strict.port, sni="c.test", verify=False) as c:
        for host, status, body in seq:
            c.send("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
            r = c.read_response()
            assert r.status == status, host
            if body is not None:
                assert r.body == body, host
            else:
                assert b"SITE-" not in r.body, host


def test_address_names_route_in_any_spelling(strict):
    # No SNI (clients send none for an address): the first site, which lists the addresses.
    for host in ["127.0.0.1", "127.0.0.1:%d" % strict.port, "[::1]", "[0:0::1]:8443",
                 "localhost"]:
        r = ask(strict, None, host)
        assert r.status == 200 and r.body == b"SITE-LOCAL\n", host
    assert ask(strict, None, "[::2]").status == 421


def test_http10_without_host_gets_the_handshake_site(strict):
    r = ask(strict, "a.test", None, version="1.0")
    assert r.status == 200 and r.body == b"SITE-A\n"


def test_curl_for_a_foreign_name_gets_421(strict, tmp_path):
    r = curl(tmp_path, "https://evil.example:%d/" % strict.port, "-k", port=strict.port,
             host="evil.example")
    assert r.status == 421, r.stderr
    assert b"SITE-" not in r.body
    r = curl(tmp_path, "https://a.test:%d/" % strict.port, "-k", port=strict.port, host="a.test")
    assert r.status == 200 and r.body == b"SITE-A\n", r.stderr


def test_catch_all_keeps_catching_all(moat, pki, roots, certs):
    m = moat("catchall")
    m.write_config(f"""\
listen 127.0.0.1:{m.port}
workers 1
state {m.state}
trust {pki.root}
site a.test {{
    cert {certs['a'].chain} {certs['a'].key}
    root {roots['a']}
}}
site * {{
    root {roots['any']}
}}
""")
    m.start()
    assert ask(m, "a.test", "evil.example").body == b"SITE-ANY\n"
    assert ask(m, "evil.example", "other.example").body == b"SITE-ANY\n"
    assert ask(m, "a.test", "a.test").body == b"SITE-A\n"


def test_quick_mode_answers_any_name_unless_named(moat, roots, certs):
    m = moat("quick-any")
    m.start(["serve", "--root", roots["any"], "--listen", "127.0.0.1:%d" % m.port,
             "--workers", "1"])
    assert ask(m, "evil.example", "evil.example").body == b"SITE-ANY\n"
    m.stop()
    n = moat("quick-named")
    n.start(["serve", "--root", roots["a"], "--listen", "127.0.0.1:%d" % n.port, "--workers", "1",
             "--name", "a.test", "--cert", certs["a"].chain, "--key", certs["a"].key])
    assert ask(n, "a.test", "a.test").body == b"SITE-A\n"
    assert ask(n, "a.test", "evil.example").status == 421


def test_client_path_cannot_be_dodged_through_the_proxy(moat, pki, roots, certs):
    # A path that does not normalise ("/../admin") must not reach the origin unchecked: the
    # origin could resolve it to the protected prefix.
    from origin import Origin

    with Origin() as o:
        m = moat("guarded-proxy")
        m.write_config(f"""\
listen 127.0.0.1:{m.port}
workers 1
state {m.state}
trust {pki.root}
site a.test {{
    cert {certs['a'].chain} {certs['a'].key}
    proxy {o.url}
    client_auth optional
    client_ca {pki.root}
    client_path /admin
}}
""")
        m.start()
        for target, status in [("/../admin/x?t=dodge1", 400), ("/%2e%2e/admin/x?t=dodge2", 400),
                               ("/x/../admin/y?t=dodge3", 403), ("/admin?t=dodge4", 403)]:
            r = ask(m, "a.test", "a.test", target=target)
            assert r.status == status, (target, r)
        assert o.find("t=dodge", timeout=0.5) == []
        r = ask(m, "a.test", "a.test", target="/open?t=fine")
        assert r.status == 200
        assert o.one("t=fine").method == "GET"
