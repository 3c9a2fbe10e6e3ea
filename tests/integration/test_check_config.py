"""moat check --config FILE: the file's own server, started on loopback ports for the check
(never on the file's ports, never writing its access log, never joining its cluster), each site
checked by name; a file that does not load or a server that does not start says why."""

import json
import subprocess

from helpers import free_port


def config(tmp_path, pki, www, access_log):
    return f"""\
listen 127.0.0.1:443
redirect_http 127.0.0.1:80
state {tmp_path / "state"}
access_log {access_log}
site example.test {{
    cert {pki.ec.chain} {pki.ec.key}
    root {www}
    hsts 1y include_subdomains
    header set X-Frame-Options DENY
    header set Referrer-Policy no-referrer
    header set Content-Security-Policy "default-src 'self'"
}}
site plain.test {{
    root {www}
}}
"""


def test_each_site_of_the_file_is_checked_on_loopback(moat_bin, pki, www, tmp_path):
    log = tmp_path / "access.log"
    f = tmp_path / "moat.conf"
    f.write_text(config(tmp_path, pki, www, log))
    r = subprocess.run([moat_bin, "check", "--json", "--config", str(f), "--cafile",
                        str(pki.root)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 3, r.stderr  # plain.test lacks security fields: low
    docs = json.loads(r.stdout)
    by = {d["host"]: d for d in docs}
    assert set(by) == {"example.test", "plain.test"}
    good = by["example.test"]
    assert good["grade"] == "A+", good["findings"]
    assert good["https"]["verified"] is True
    assert good["plain_http"]["redirects"] is True
    assert good["address"].startswith("127.0.0.1:") and good["port"] != 443
    plain = by["plain.test"]
    assert plain["https"]["verified"] is True  # the local CA of the file's state folder
    assert "http.security_headers" in {x["id"] for x in plain["findings"]}
    assert not log.exists()
    # The text form names the loopback server and the file's own listener.
    t = subprocess.run([moat_bin, "check", "--config", str(f), "--cafile", str(pki.root)],
                       capture_output=True, text=True, timeout=180)
    assert t.stdout.startswith("moat check --config %s: its server on 127.0.0.1:" % f)
    assert "listen 127.0.0.1:443 in the file" in t.stdout
    assert t.stdout.count("Grade ") == 2


def test_a_file_that_does_not_load_says_where(moat_bin, tmp_path, www):
    f = tmp_path / "bad.conf"
    f.write_text("site x.test {\n    root %s\n    bogus 1\n}\n" % www)
    r = subprocess.run([moat_bin, "check", "--config", str(f)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert "bad.conf:3:5" in r.stderr and "unknown directive" in r.stderr


def test_a_server_that_cannot_start_says_why(moat_bin, tmp_path, www):
    f = tmp_path / "nocert.conf"
    f.write_text("listen 127.0.0.1:%d\nstate %s\nsite x.test {\n    root %s\n"
                 "    cert %s %s\n}\n" % (free_port(), tmp_path / "state", www,
                                         tmp_path / "nope.pem", tmp_path / "nope.key"))
    r = subprocess.run([moat_bin, "check", "--config", str(f)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert "did not start" in r.stderr and "nope.pem" in r.stderr


def test_config_and_a_target_together_is_usage(moat_bin, tmp_path):
    r = subprocess.run([moat_bin, "check", "--config", str(tmp_path / "x.conf"), "x.test"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "not both" in r.stderr
