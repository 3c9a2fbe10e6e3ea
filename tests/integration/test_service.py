"""Running moat as a service: the readiness protocol of a Type=notify unit (a datagram socket
standing in for systemd's), SIGUSR1 reopening the log files after a rotation, the unit file
as systemd-analyze reads it, and `make install` into a staging folder with its man pages.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers import clean_env, curl, standard_config, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_notify_ready_reloading_stopping(moat, pki, www, tmp_path):
    path = str(tmp_path / "notify.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(20)
    m = moat("notify")
    m.write_config(standard_config(m, pki, www))
    orig_env = m.env
    m.env = lambda: dict(orig_env(), NOTIFY_SOCKET=path)
    m.start()
    ready = rx.recv(4096).decode()
    assert "READY=1" in ready and "MAINPID=%d" % m.pid in ready
    assert re.search(r"STATUS=serving \d+ site\(s\), configuration generation 1", ready)
    m.signal(signal.SIGHUP)
    reloading = rx.recv(4096).decode()
    assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert "READY=1" in rx.recv(4096).decode()  # and serving again
    m.signal(signal.SIGTERM)
    assert rx.recv(4096).decode().startswith("STOPPING=1")
    assert m.wait_exit(15) == 0
    rx.close()


def test_sigusr1_reopens_the_logs(moat, pki, www, tmp_path):
    m = moat("rotate")
    elog = m.dir / "error.log"
    text = standard_config(m, pki, www).replace("error_log stderr info",
                                                "error_log %s info" % elog)
    m.write_config(text)
    m.start()
    url = "https://example.test:%d/" % m.port
    assert curl(tmp_path, url, port=m.port, cacert=pki.root).status == 200
    assert wait_for(lambda: m.access_log.exists() and m.access_log.stat().st_size > 0, 5)
    os.rename(m.access_log, str(m.access_log) + ".1")  # what logrotate does
    os.rename(elog, str(elog) + ".1")
    m.signal(signal.SIGUSR1)
    assert wait_for(lambda: elog.exists() and "log files reopened" in elog.read_text(), 5)
    assert curl(tmp_path, url, port=m.port, cacert=pki.root).status == 200
    assert wait_for(lambda: m.access_log.exists() and m.access_log.stat().st_size > 0, 5)
    old = Path(str(m.access_log) + ".1").read_text()
    assert old.count("\n") == 1  # the first request only: the second went to the new file
    assert m.alive()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_file_and_install(tmp_path):
    stage = tmp_path / "stage"
    r = subprocess.run(["make", "-s", "install", "PREFIX=/usr", "DESTDIR=%s" % stage],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for f in ["usr/bin/moat", "usr/share/man/man1/moat.1", "usr/share/man/man5/moat.conf.5",
              "lib/systemd/system/moat.service", "etc/logrotate.d/moat",
              "etc/moat/moat.conf", "usr/share/doc/moat/admin.md"]:
        assert (stage / f).is_file(), f
    assert os.access(stage / "usr/bin/moat", os.X_OK)
    # The unit as systemd reads it: no unknown key, no bad value. What remains is this
    # machine's (no sysinit.target in the staging root, no man pages installed for real).
    r = subprocess.run(["systemd-analyze", "--root=%s" % stage, "verify",
                        str(stage / "lib/systemd/system/moat.service")],
                       capture_output=True, text=True, timeout=60)
    for line in (r.stdout + r.stderr).splitlines():
        assert not re.search(r"Unknown|Failed to parse|Invalid|not executable|"
                             r"Missing|deprecated", line, re.I), line
    # The man pages render without a warning.
    for page in ["usr/share/man/man1/moat.1", "usr/share/man/man5/moat.conf.5"]:
        r = subprocess.run(["groff", "-man", "-ww", "-z", str(stage / page)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stderr == "", r.stderr
    text = (stage / "usr/share/man/man5/moat.conf.5").read_text()
    assert ".SH" in text and "admin" in text
    # The packaged example configuration is one `serve --check` accepts.
    r = subprocess.run([str(stage / "usr/bin/moat"), "serve", "--check", "--config",
                        str(stage / "etc/moat/moat.conf")], capture_output=True, text=True,
                       timeout=60, env=clean_env({"MOAT_STATE": str(tmp_path / "state")}))
    assert r.returncode == 0, r.stderr  # /var/www/html: made by nginx (install-deps)
