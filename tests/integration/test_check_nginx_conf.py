"""moat check --config on an nginx file, judged offline, compared with Debian's nginx running
that same file on loopback and checked live: the versions, the suites per version and the
verification must agree, and the weak server block gets the findings a live check gives."""

import json
import shutil
import subprocess
import time

import pytest

from helpers import free_port, tcp_accepts, wait_for

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if shutil.which("/usr/sbin/nginx") else None)


def conf(d, weak_port, good_port, http_port):
    return f"""\
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2;
    ssl_ciphers 'ALL:@SECLEVEL=0';
    server {{
        listen 127.0.0.1:{http_port};
        server_name weak.test;
        return 301 https://$host$request_uri;
    }}
    server {{
        listen 127.0.0.1:{weak_port} ssl;
        server_name weak.test;
        ssl_certificate cert.pem;
        ssl_certificate_key key.pem;
        location / {{ return 200 "weak\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{good_port} ssl http2;
        server_name weak.test;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305;
        ssl_prefer_server_ciphers on;
        ssl_certificate cert.pem;
        ssl_certificate_key key.pem;
        add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;
        add_header X-Frame-Options DENY always;
        add_header X-Content-Type-Options nosniff always;
        add_header Referrer-Policy no-referrer always;
        add_header Content-Security-Policy "default-src 'self'" always;
        location / {{ return 200 "good\\n"; }}
    }}
}}
"""


@pytest.fixture(scope="module")
def nginx_file(tmp_path_factory):
    if NGINX is None:
        pytest.skip("nginx not installed")
    d = tmp_path_factory.mktemp("nginx")
    (d / "tmp").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "key.pem"), "-out",
                    str(d / "cert.pem"), "-days", "60", "-subj", "/CN=weak.test", "-addext",
                    "subjectAltName=DNS:weak.test", "-addext", "basicConstraints=CA:FALSE"],
                   check=True, capture_output=True, timeout=60)
    ports = (free_port(), free_port(), free_port())
    f = d / "nginx.conf"
    f.write_text(conf(d, *ports))
    t = subprocess.run([NGINX, "-t", "-c", str(f), "-p", str(d)], capture_output=True,
                       text=True, timeout=30)
    assert t.returncode == 0, t.stderr  # a file nginx itself takes
    return d, f, ports


def offline(moat_bin, f, d):
    r = subprocess.run([moat_bin, "check", "--json", "--config", str(f), "--cafile",
                        str(d / "cert.pem")], capture_output=True, text=True, timeout=60)
    assert r.returncode not in (1, 2), r.stderr
    return json.loads(r.stdout), r.returncode


def test_offline_judgement_of_the_blocks(moat_bin, nginx_file):
    d, f, _ = nginx_file
    docs, code = offline(moat_bin, f, d)
    assert len(docs) == 2  # the two ssl server blocks; the port-80 one is the redirect
    weak, good = docs
    ids = {x["id"] for x in weak["findings"]}
    # ALL leaves out NULL suites; with an ECDSA key and no dhparam, the anonymous ECDH ones are
    # what makes it F.
    assert {"protocol.tls10_11", "suites.anonymous", "suites.client_order",
            "protocol.no_tls13"} <= ids, ids
    assert "suites.null" not in ids
    assert weak["grade"] == "F"
    assert weak["plain_http"]["redirects"] is True
    assert weak["https"]["verified"] is True
    assert good["grade"] == "A+", good["findings"]
    assert good["alpn"]["h2"] is True
    assert good["versions"]["TLS 1.3"] is True and good["versions"]["TLS 1.1"] is False
    assert code == 6  # the weak block's worst


def test_offline_agrees_with_the_running_nginx(moat_bin, nginx_file):
    d, f, (weak_port, good_port, http_port) = nginx_file
    docs, _ = offline(moat_bin, f, d)
    p = subprocess.Popen([NGINX, "-c", str(f), "-p", str(d)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: tcp_accepts(good_port) and tcp_accepts(weak_port), 10)
        for doc, port in zip(docs, (weak_port, good_port)):
            r = subprocess.run([moat_bin, "check", "--json", "--connect", "127.0.0.1",
                                "--http-port", str(http_port), "--cafile", str(d / "cert.pem"),
                                "weak.test:%d" % port], capture_output=True, text=True,
                               timeout=180)
            live = json.loads(r.stdout)
            assert live["versions"] == doc["versions"], (port, live["versions"], doc["versions"])
            # The live check offers the suites moat names (about 100); the file's list through
            # OpenSSL has a few more it cannot name (shown as 0x....): compare the named ones.
            for v in set(live["suites"]) | set(doc["suites"]):
                named = {x for x in doc["suites"].get(v, []) if not x.startswith("0x")}
                assert set(live["suites"].get(v, [])) == named, (port, v)
            assert live["https"]["verified"] == doc["https"]["verified"]
            assert live["https"]["hsts_max_age"] == doc["https"]["hsts_max_age"]
            assert live["alpn"]["h2"] == doc["alpn"]["h2"]
            assert live["grade"] == doc["grade"], (port, live["grade_rule"], doc["grade_rule"])
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_a_broken_nginx_file_says_where(moat_bin, tmp_path):
    f = tmp_path / "nginx.conf"
    f.write_text("events { }\nhttp {\n    server {\n        listen 443 ssl;\n"
                 "        ssl_certificate \"unterminated;\n")
    r = subprocess.run([moat_bin, "check", "--config", str(f)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "nginx.conf:" in r.stderr, r.stderr
