"""moat check --config on an HAProxy file, judged offline, compared with Debian's HAProxy
running that same file on loopback and checked live: versions, suites, order, DHE, resumption,
ALPN, 0-RTT, verification, header fields, the plain-HTTP redirect, the findings and the grade
must agree, listener by listener and name by name (crt folders, crt-list lines with their own
options, ECDSA and RSA certificates for one name, global ssl-default-bind-* settings)."""

import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from helpers import free_port, tcp_accepts, wait_for
from page_helpers import CHROMIUM, chromium, screenshot

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy"
                                      if Path("/usr/sbin/haproxy").exists() else None)


def conf(d, p):
    return f"""\
# moat check's HAProxy test file: global defaults, then one frontend per case
global
    maxconn 200
    crt-base "{d}"
    ssl-default-bind-ciphers ECDHE+AESGCM:DHE+AESGCM:ECDHE+CHACHA20
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
    tune.ssl.default-dh-param 2048

defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
    compression algo gzip

frontend weak
    bind 127.0.0.1:{p['weak']} ssl crt rsa.pem ssl-min-ver TLSv1.0 ciphers 'ALL:@SECLEVEL=0' prefer-client-ciphers
    http-request return status 200 content-type text/html string "<p>weak</p>"

frontend good
    bind 127.0.0.1:{p['good']} ssl crt certs alpn h2,http/1.1 allow-0rtt
    default_backend origin

frontend list
    bind 127.0.0.1:{p['list']} ssl crt-list {d}/list.txt
    http-request return status 200 content-type text/html string "<p>list</p>"
    http-after-response set-header Strict-Transport-Security "max-age=300"

frontend passthrough
    mode tcp
    bind 127.0.0.1:{p['tcp']} ssl crt rsa.pem no-tlsv13  # ignored: ssl-min-ver is set
    default_backend raw

frontend plain
    bind 127.0.0.1:{p['http']}
    http-request redirect scheme https code 301

backend origin
    http-response set-header Strict-Transport-Security "max-age=63072000; includeSubDomains"
    http-response set-header X-Content-Type-Options nosniff
    http-response set-header X-Frame-Options DENY
    http-response set-header Referrer-Policy no-referrer
    http-response set-header Content-Security-Policy "default-src 'self'"
    server o1 127.0.0.1:{p['origin']}

backend raw
    mode tcp
    server o1 127.0.0.1:{p['origin']}
"""


def cert(d, stem, name, kind):
    key = ["-newkey", "rsa:2048"] if kind == "rsa" else [
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    subprocess.run(["openssl", "req", "-x509", *key, "-nodes", "-keyout", str(d / (stem + ".key")),
                    "-out", str(d / (stem + ".crt")), "-days", "60", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=DNS:" + name, "-addext",
                    "basicConstraints=critical,CA:FALSE"],
                   check=True, capture_output=True, timeout=60)
    return (d / (stem + ".crt")).read_text() + (d / (stem + ".key")).read_text()


class Origin(http.server.BaseHTTPRequestHandler):
    """An HTTP/1.1 origin (HAProxy compresses only HTTP/1.1 answers)."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"<html><body>" + b"origin " * 100 + b"</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if HAPROXY is None:
        pytest.skip("haproxy not installed")
    d = tmp_path_factory.mktemp("haproxy")
    rsa = cert(d, "rsa-src", "ha.test", "rsa")
    (d / "rsa.pem").write_text(rsa)
    (d / "certs").mkdir()
    # One name, two keys: HAProxy hands the ECDSA one to a client that can verify it.
    (d / "certs" / "a-ec.pem").write_text(cert(d, "ec-src", "ha.test", "ec"))
    (d / "certs" / "b-rsa.pem").write_text(rsa)
    (d / "other.pem").write_text(cert(d, "other-src", "other.test", "rsa"))
    (d / "list.txt").write_text("# crt-list: a name of its own, TLS 1.3 and h2 only\n"
                                "other.pem [alpn h2 ssl-min-ver TLSv1.3]\n\n"
                                "rsa.pem [ciphers ECDHE-RSA-AES256-GCM-SHA384]\n")
    ca = d / "ca.pem"
    ca.write_text("".join((d / f).read_text() for f in ("rsa-src.crt", "ec-src.crt",
                                                        "other-src.crt")))
    ports = {k: free_port() for k in ("weak", "good", "list", "tcp", "http", "origin")}
    f = d / "haproxy.cfg"
    f.write_text(conf(d, ports))
    t = subprocess.run([HAPROXY, "-c", "-f", str(f)], capture_output=True, text=True,
                       timeout=30)
    assert t.returncode == 0, t.stdout + t.stderr  # a file HAProxy itself takes
    return d, f, ca, ports


def offline(moat_bin, f, ca, *extra):
    r = subprocess.run([moat_bin, "check", "--json", "--config", str(f), "--cafile", str(ca),
                        *extra], capture_output=True, text=True, timeout=60)
    assert r.returncode not in (1, 2), r.stderr
    return json.loads(r.stdout), r.returncode


def by_source(docs):
    """The checks keyed by (frontend, host)."""
    out = {}
    for doc in docs:
        fe = doc["source"].split("(frontend ")[1].split(",")[0].rstrip(")")
        out[(fe, doc["host"])] = doc
    return out


def ids(doc):
    return {x["id"] for x in doc["findings"]}


def test_offline_judgement_of_the_listeners(moat_bin, setup):
    d, f, ca, ports = setup
    docs, code = offline(moat_bin, f, ca)
    got = by_source(docs)
    # One check per name of each TLS bind line: the folder's two certificates for ha.test make
    # one (the ECDSA one), the crt-list two; the plain frontend is the redirect.
    assert sorted(got) == [("good", "ha.test"), ("list", "ha.test"), ("list", "other.test"),
                           ("passthrough", "ha.test"), ("weak", "ha.test")], sorted(got)
    for doc in docs:
        assert doc["address"] == "offline" and "haproxy.cfg:" in doc["source"]
        assert doc["https"]["verified"] is True
        assert doc["plain_http"]["redirects"] is True
    weak = got[("weak", "ha.test")]
    assert {"protocol.tls10_11", "suites.anonymous", "suites.client_order"} <= ids(weak)
    assert weak["grade"] == "F" and code == 6
    assert weak["resumption"]["tls12_tickets"] is False  # no-tls-tickets from the global
    assert weak["dh_bits"] == 2048  # tune.ssl.default-dh-param, sized to the RSA key
    good = got[("good", "ha.test")]
    assert "a-ec.pem" in good["source"]
    assert all("ECDSA" in s for s in good["suites"]["TLS 1.2"]), good["suites"]
    assert good["alpn"] == {"h2": True, "http/1.1": True}
    assert good["options"]["early_data_bytes"] > 0 and "tls.early_data" in ids(good)
    assert good["https"]["hsts_max_age"] == 63072000  # from the default backend
    assert good["https"]["x_content_type_options"] is True
    assert "http.breach" in ids(good)  # compression from the defaults section
    other = got[("list", "other.test")]
    assert [v for v, on in other["versions"].items() if on] == ["TLS 1.3"]
    assert other["alpn"]["h2"] is True
    assert other["https"]["hsts_max_age"] == 300  # http-after-response: on HAProxy's answers
    lst = got[("list", "ha.test")]
    assert lst["suites"]["TLS 1.2"] == ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]
    tcp = got[("passthrough", "ha.test")]
    assert tcp["versions"]["TLS 1.3"] is True  # no-tlsv13 is ignored beside ssl-min-ver
    assert tcp["https"]["status"] == 0  # the origin answers, which a file cannot tell
    assert not any(i.startswith("http.") and i != "http.no_h2" for i in ids(tcp)), ids(tcp)


def test_offline_agrees_with_the_running_haproxy(moat_bin, setup):
    d, f, ca, ports = setup
    docs, _ = offline(moat_bin, f, ca)
    origin = http.server.ThreadingHTTPServer(("127.0.0.1", ports["origin"]), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    p = subprocess.Popen([HAPROXY, "-db", "-f", str(f)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: all(tcp_accepts(ports[k]) for k in ("weak", "good", "list",
                                                                       "tcp", "http")), 10)
        for doc in docs:
            target = "%s:%d" % (doc["host"], doc["port"])
            r = subprocess.run([moat_bin, "check", "--json", "--connect", "127.0.0.1",
                                "--http-port", str(ports["http"]), "--cafile", str(ca),
                                target], capture_output=True, text=True, timeout=180)
            live = json.loads(r.stdout)
            where = doc["source"]
            assert live["versions"] == doc["versions"], (where, live["versions"])
            for v in set(live["suites"]) | set(doc["suites"]):
                named = {x for x in doc["suites"].get(v, []) if not x.startswith("0x")}
                assert set(live["suites"].get(v, [])) == named, (where, v)
            assert live["server_order"] == doc["server_order"], where
            assert live["groups_tls13"] == doc["groups_tls13"], where
            for k in ("signatures_tls12", "signatures_tls13"):
                # in the server's order when it enforces one, else in the probe's
                ordered = live["server_order"].get("TLS 1.2") is True
                assert (live[k] == doc[k]) if ordered else (set(live[k]) == set(doc[k])), \
                    (where, k, live[k], doc[k])
            assert live["dh_bits"] == doc["dh_bits"], where
            assert live["resumption"] == doc["resumption"], where
            assert live["alpn"] == doc["alpn"], where
            assert live["options"] == doc["options"], where
            assert live["plain_http"]["redirects"] == doc["plain_http"]["redirects"], where
            assert live["https"]["verified"] == doc["https"]["verified"], where
            if doc["https"]["status"] == 0:
                # TCP passthrough: the origin's answer is judged live only.
                offline_ids = ids(doc)
                live_ids = {i for i in ids(live) if not i.startswith("http.") or
                            i == "http.no_h2"}
            else:
                for k in ("hsts_max_age", "hsts_include_subdomains", "x_content_type_options",
                          "frame_protection", "content_security_policy", "referrer_policy"):
                    assert live["https"][k] == doc["https"][k], (where, k)
                offline_ids, live_ids = ids(doc), ids(live)
            assert live_ids == offline_ids, (where, live_ids ^ offline_ids)
            assert live["grade"] == doc["grade"], (where, live["grade_rule"], doc["grade_rule"])
    finally:
        p.terminate()
        p.wait(timeout=10)
        origin.shutdown()
        origin.server_close()


def test_the_page_of_a_haproxy_file(moat_bin, setup, tmp_path):
    _, f, ca, _ = setup
    page = tmp_path / "haproxy.html"
    docs, _ = offline(moat_bin, f, ca, "--html", str(page))
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html.lower()
    assert "<h2>Summary</h2>" in html
    for i, doc in enumerate(docs):  # a row and a section per check, in order
        assert 'href="#check-%d"' % i in html and 'id="check-%d"' % i in html
        assert 'class="grade g-%s"' % doc["grade"].replace("+", "p") in html
    assert html.count("judged offline from ") == len(docs)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install-deps)")
def test_chromium_renders_the_page_of_a_haproxy_file(moat_bin, setup, tmp_path):
    _, f, ca, _ = setup
    page = tmp_path / "haproxy.html"
    docs, _ = offline(moat_bin, f, ca, "--html", str(page))
    screenshot(tmp_path, page, "check-config-haproxy.png", size="1100,1800")
    dom = chromium(tmp_path, ["--dump-dom"], page).stdout
    assert "Summary" in dom and dom.count("<section") == len(docs)
    assert "frontend weak" in dom and "protocol.tls10_11" in dom


def write(tmp_path, text, name="haproxy.cfg"):
    f = tmp_path / name
    f.write_text(text)
    return f


def test_broken_files_say_where(moat_bin, tmp_path):
    cases = [
        ("global\n    maxconn 10\nfrontend x\n    bind :443 ssl crt \"x.pem\n",
         "haproxy.cfg:4: a quoted string that does not end"),
        ("    bind :443 ssl crt x.pem\nfrontend x\n",
         "haproxy.cfg:1: \"bind\" before any section"),
        ("global\nfrontend x\n    mode http\n    bind :80\nbackend y\n    server a 1.2.3.4:80\n",
         "no bind line with ssl"),
    ]
    for text, want in cases:
        f = write(tmp_path, text)
        r = subprocess.run([moat_bin, "check", "--config", str(f)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 1 and want in r.stderr, (text, r.stderr)


def test_a_missing_certificate_is_a_finding(moat_bin, tmp_path):
    (tmp_path / "ok.pem").write_text(cert(tmp_path, "ok-src", "ok.test", "ec"))
    f = write(tmp_path, "frontend x\n    mode http\n    bind 127.0.0.1:8443 ssl crt nope.pem\n"
                        "frontend y\n    bind 127.0.0.1:8444 ssl\n"
                        "frontend z\n    bind 127.0.0.1:8445 ssl crt ok.pem crt gone/\n")
    r = subprocess.run([moat_bin, "check", "--json", "--config", str(f)], capture_output=True,
                       text=True, timeout=30)
    docs = json.loads(r.stdout)
    assert len(docs) == 4 and r.returncode >= 5, r.stderr
    text = json.dumps(docs)
    assert "nope.pem is neither a certificate file nor a folder" in text
    assert "bind ... ssl with no crt or crt-list" in text
    assert "gone/ is neither" in text  # beside a certificate that is there: HAProxy refuses
    assert [d["host"] for d in docs] == ["localhost", "localhost", "ok.test", "localhost"]
    bad = [d for d in docs if d["host"] == "localhost"]
    assert all(d["grade"] in ("F", "T") for d in bad), [d["grade"] for d in bad]
