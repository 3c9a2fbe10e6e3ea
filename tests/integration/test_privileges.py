"""Privileges: moat refuses to serve as root unless told to; with `user NAME` it binds a port
below 1024 and reads a key only root may read, then serves as NAME with no capability left, in
every thread; the state folder and key files are checked at start.

The server here runs as `nobody`, so what it must reach (the docroot, the state folder's parent)
lives in a folder of its own under /tmp that every user may enter, not in pytest's root-only
tmp_path.
"""

import os
import pwd
import random
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import clean_env, curl, run, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs root")

NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def base():
    d = Path(tempfile.mkdtemp(prefix="moat-priv-"))
    d.chmod(0o755)
    (d / "www").mkdir(mode=0o755)
    (d / "www" / "index.html").write_text("served by nobody\n")
    (d / "www" / "index.html").chmod(0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def low_port():
    """A free port below 1024: binding it takes root (or CAP_NET_BIND_SERVICE)."""
    for _ in range(200):
        p = random.randint(600, 1000)
        with socket.socket() as s:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue
    pytest.skip("no free port below 1024")


def env_without_allow_root(extra=None):
    env = clean_env(extra)
    env.pop("MOAT_ALLOW_ROOT", None)
    env.pop("MOAT_STATE", None)
    return env


def private_pair(base, pki):
    """The example.test certificate and key in a folder only root may enter (as certbot's
    live folder is)."""
    priv = base / "private"
    priv.mkdir(mode=0o700)
    shutil.copy(pki.ec.chain, priv / "cert.pem")
    shutil.copy(pki.ec.key, priv / "key.pem")
    (priv / "key.pem").chmod(0o600)
    return priv / "cert.pem", priv / "key.pem"


def config(base, port, cert, key, user="user nobody"):
    text = (f"listen 127.0.0.1:{port}\n{user}\nstate {base}/state\n"
            f"admin unix:{base}/state/admin.sock\nerror_log stderr info\n"
            f"site example.test {{\n    cert {cert} {key}\n    root {base}/www\n}}\n")
    p = base / "moat.conf"
    p.write_text(text)
    return p


def start(moat_bin, base, cfg, *args):
    err = open(base / "stderr", "wb")
    proc = subprocess.Popen([str(moat_bin), "serve", "--config", str(cfg), *args], cwd=base,
                            env=env_without_allow_root(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    return proc


def stop(proc, base):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    text = (base / "stderr").read_text(errors="replace")
    assert "ERROR: AddressSanitizer" not in text and "LeakSanitizer" not in text, text
    return text


def ids(pid, tid=None):
    path = "/proc/%d/status" % pid if tid is None else "/proc/%d/task/%s/status" % (pid, tid)
    out = {}
    for line in Path(path).read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.split()
    return out


def test_root_without_user_is_refused(moat_bin, base, pki):
    cert, key = private_pair(base, pki)
    cfg = config(base, low_port(), cert, key, user="")
    r = subprocess.run([str(moat_bin), "serve", "--config", str(cfg)], cwd=base,
                       env=env_without_allow_root(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "refusing to serve as root" in r.stderr and "user NAME" in r.stderr, r.stderr
    assert "--allow-root" in r.stderr and "CAP_NET_BIND_SERVICE" in r.stderr
    assert not (base / "state").exists(), "refused before anything was made"


def test_allow_root_serves_as_root_with_a_warning(moat_bin, base, pki, tmp_path):
    cert, key = private_pair(base, pki)
    port = low_port()
    cfg = config(base, port, cert, key, user="")
    proc = start(moat_bin, base, cfg, "--allow-root")
    try:
        assert wait_for(lambda: "listening on" in (base / "stderr").read_text(), 20), \
            (base / "stderr").read_text()
        assert ids(proc.pid)["Uid"] == ["0"] * 4
    finally:
        text = stop(proc, base)
    assert re.search(r"warn serving as root \(--allow-root\)", text), text


def test_user_binds_low_port_reads_root_key_then_drops(moat_bin, base, pki, tmp_path):
    cert, key = private_pair(base, pki)
    port = low_port()
    cfg = config(base, port, cert, key)
    proc = start(moat_bin, base, cfg)
    try:
        assert wait_for(lambda: "listening on" in (base / "stderr").read_text(), 20), \
            (base / "stderr").read_text()
        r = curl(tmp_path, "https://example.test:%d/" % port, port=port, cacert=pki.root)
        assert r.status == 200 and r.body == b"served by nobody\n"
        want_u = [str(NOBODY.pw_uid)] * 4
        want_g = [str(NOBODY.pw_gid)] * 4
        tasks = os.listdir("/proc/%d/task" % proc.pid)
        assert len(tasks) >= 3  # the main thread and the workers
        for t in tasks:
            st = ids(proc.pid, t)
            assert st["Uid"] == want_u and st["Gid"] == want_g, (t, st["Uid"], st["Gid"])
            assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0
        assert "0" not in ids(proc.pid).get("Groups", []), "root's groups are gone too"
        # Everything moat made belongs to nobody: the state folder, its CA, the admin socket.
        state = base / "state"
        for p in [state, *state.rglob("*")]:
            assert p.lstat().st_uid == NOBODY.pw_uid, p
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        # The admin interface answers root (moat status run by the operator).
        s = run([str(moat_bin), "status", "--admin", "unix:%s/state/admin.sock" % base],
                check=False, env=env_without_allow_root())
        assert s.returncode == 0 and "listening on 127.0.0.1:%d" % port in s.stdout, s.stdout
        # A reload reads the key as nobody now: refused, saying why and what to do, and the
        # old configuration keeps serving.
        rl = run([str(moat_bin), "reload", "--admin", "unix:%s/state/admin.sock" % base],
                 check=False, env=env_without_allow_root())
        assert rl.returncode != 0
        assert "runs as user nobody now" in rl.stdout + rl.stderr, rl.stdout + rl.stderr
        r = curl(tmp_path, "https://example.test:%d/" % port, port=port, cacert=pki.root)
        assert r.status == 200
    finally:
        text = stop(proc, base)
    assert "serving as user nobody, group nogroup" in text, text


def test_state_folder_open_to_others_is_refused(moat_bin, base, pki):
    cert, key = private_pair(base, pki)
    cfg = config(base, low_port(), cert, key)
    (base / "state").mkdir(mode=0o755)
    os.chown(base / "state", NOBODY.pw_uid, NOBODY.pw_gid)
    (base / "state").chmod(0o755)
    r = subprocess.run([str(moat_bin), "serve", "--config", str(cfg)], cwd=base,
                       env=env_without_allow_root(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "open to other users (mode 0755)" in r.stderr and "chmod 700" in r.stderr, r.stderr
    # --check warns about it.
    c = subprocess.run([str(moat_bin), "serve", "--check", "--config", str(cfg)], cwd=base,
                       env=env_without_allow_root(), capture_output=True, text=True, timeout=30)
    assert c.returncode == 0 and "chmod 700" in c.stderr and "serve would refuse" in c.stderr, \
        c.stderr


def test_state_folder_of_another_user_is_refused(moat_bin, base, pki):
    cert, key = private_pair(base, pki)
    cfg = config(base, low_port(), cert, key)
    (base / "state").mkdir(mode=0o700)  # root's, as a run before `user` was set left it
    r = subprocess.run([str(moat_bin), "serve", "--config", str(cfg)], cwd=base,
                       env=env_without_allow_root(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "belongs to uid 0, but moat serves as nobody" in r.stderr, r.stderr
    assert "chown -R nobody: %s/state" % base in r.stderr


def test_key_readable_by_everyone_is_refused(moat_bin, base, pki):
    cert, key = private_pair(base, pki)
    key.chmod(0o644)
    cfg = config(base, low_port(), cert, key)
    r = subprocess.run([str(moat_bin), "serve", "--config", str(cfg)], cwd=base,
                       env=env_without_allow_root(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "may be read by every user of this machine (mode 0644)" in r.stderr, r.stderr
    assert "chmod 600 %s" % key in r.stderr
    key.chmod(0o640)  # group access is Debian's ssl-cert way: accepted
    r = subprocess.run([str(moat_bin), "serve", "--check", "--config", str(cfg)], cwd=base,
                       env=env_without_allow_root(), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_unknown_user_is_a_config_error_at_its_line(moat_bin, base, pki):
    cert, key = private_pair(base, pki)
    cfg = config(base, low_port(), cert, key, user="user no-such-moat-user")
    r = subprocess.run([str(moat_bin), "serve", "--check", "--config", str(cfg)], cwd=base,
                       env=env_without_allow_root(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert re.search(r"moat\.conf:2:\d+: no user \"no-such-moat-user\"", r.stderr), r.stderr
    assert "adduser --system" in r.stderr


def test_user_given_when_not_root_is_refused(moat_bin, base, pki):
    """Started as nobody with `user daemon`: moat cannot become another user; it says so."""
    cert, key = private_pair(base, pki)
    os.chown(base / "private", NOBODY.pw_uid, NOBODY.pw_gid)
    for f in (cert, key):
        os.chown(f, NOBODY.pw_uid, NOBODY.pw_gid)
    cfg = config(base, 10000 + random.randint(0, 20000), cert, key, user="user daemon")
    cfg.chmod(0o644)
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        str(moat_bin), "serve", "--config", str(cfg)], cwd=base,
                       env=env_without_allow_root({"HOME": str(base)}), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
    assert "`user daemon` needs moat started as root" in r.stderr, r.stderr
