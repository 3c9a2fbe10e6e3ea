"""The cache's disk tier (cache_disk, docs/cache.md) against a recording origin: answers are
written to the folder (0700, files 0600, named by key), survive a restart and answer from disk
without the origin; a damaged file, a stray temporary file and a file under the wrong name are
removed at start, and other files are left alone; an answer evicted from memory comes back from
disk; the folder stays within its bound; PURGE removes the files; a config with cache_disk
passes `serve --check` without making the folder.
"""

import os
import re
import stat
import subprocess
import time

import pytest

from cache_origin import origin, start_origin  # noqa: F401 (origin: a fixture)
from conftest import _finish
from helpers import Conn, Moat, build_request


def config(m, pki, origin, disk, disk_size="4m", memory="1m"):
    return f"""\
listen 127.0.0.1:{m.port}
workers 2
state {m.state}
error_log stderr info
cache_memory {memory}
cache_max_object 1m
cache_disk {disk} {disk_size}
site example.test {{
    cert {pki.ec.chain} {pki.ec.key}
    proxy http://127.0.0.1:{origin.server_address[1]}
    cache on
    cache_purge 127.0.0.1
}}
"""


@pytest.fixture
def srv(moat_bin, pki, origin, tmp_path):
    m = Moat(moat_bin, tmp_path / "m", name="cache-disk")
    disk = tmp_path / "disk"
    m.write_config(config(m, pki, origin, disk))
    m.disk = disk
    m.start()
    yield m
    _finish(m)


def ask(m, path, headers=(), method="GET"):
    with Conn(m.port, sni="example.test", verify=False) as c:
        c.send(build_request(path, method=method, host="example.test", headers=list(headers)))
        return c.read_response(method)


def cs(r):
    return r.header("cache-status") or ""


def cache_files(disk):
    return sorted(p for p in os.listdir(disk) if re.fullmatch(r"[0-9a-f]{64}", p))


def wait_files(disk, n, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if len(cache_files(disk)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError("%d files in %s, want %d" % (len(cache_files(disk)), disk, n))


def restart(m):
    m.stop()
    assert m.sanitizer_report() is None or not m.sanitizer_report()
    m.start()


def test_answers_survive_a_restart(srv, origin):
    big = bytes(range(256)) * 800  # 200 KiB: a memory file, then a disk file
    origin.route("/small", cc="max-age=600", etag='"s"')
    origin.route("/bigd", cc="max-age=600", body=big)
    a = ask(srv, "/small")
    b = ask(srv, "/bigd")
    assert a.status == 200 and b.body == big
    wait_files(srv.disk, 2)
    assert stat.S_IMODE(os.stat(srv.disk).st_mode) == 0o700
    for f in cache_files(srv.disk):
        assert stat.S_IMODE(os.stat(srv.disk / f).st_mode) == 0o600
    restart(srv)
    assert "2 answer(s)" in srv.stderr(), srv.stderr()[-2000:]
    c = ask(srv, "/small")
    d = ask(srv, "/bigd")
    assert c.status == 200 and c.body == a.body and "hit" in cs(c), c.headers
    assert c.header("etag") == '"s"'
    assert d.status == 200 and d.body == big and "hit" in cs(d)
    assert int(d.header("age")) >= 0
    r = ask(srv, "/bigd", headers=[("Range", "bytes=1000-1099")])
    assert r.status == 206 and r.body == big[1000:1100]
    assert origin.count("/small") == 1 and origin.count("/bigd") == 1


def test_damaged_and_stray_files_at_start(srv, origin):
    origin.route("/dmg", cc="max-age=600")
    origin.route("/ok", cc="max-age=600")
    ask(srv, "/dmg")
    ask(srv, "/ok")
    wait_files(srv.disk, 2)
    srv.stop()
    files = cache_files(srv.disk)
    sizes = {f: os.path.getsize(srv.disk / f) for f in files}
    # The file of /dmg is the one whose key bytes say so; cut it short.
    dmg = next(f for f in files if b"/dmg" in (srv.disk / f).read_bytes())
    with open(srv.disk / dmg, "r+b") as fh:
        fh.truncate(sizes[dmg] - 2)
    (srv.disk / ".tmp-0123456789abcdef-aabbccddeeff").write_bytes(b"half a write")
    (srv.disk / ("f" * 64)).write_bytes(b"MOATC\0\0\1 not really")
    (srv.disk / "notes.txt").write_text("mine")
    srv.start()
    err = srv.stderr()
    assert "not a whole cache file" in err and "removed" in err
    assert not (srv.disk / dmg).exists()
    assert not (srv.disk / ".tmp-0123456789abcdef-aabbccddeeff").exists()
    assert not (srv.disk / ("f" * 64)).exists()
    assert (srv.disk / "notes.txt").read_text() == "mine", "not moat's: left alone"
    a = ask(srv, "/dmg")
    assert a.status == 200 and origin.count("/dmg") == 2, "the damaged answer is fetched again"
    b = ask(srv, "/ok")
    assert "hit" in cs(b) and origin.count("/ok") == 1


def test_evicted_from_memory_comes_back_from_disk(srv, origin):
    body = b"m" * 300_000
    for i in range(6):
        origin.route("/ev%d" % i, cc="max-age=600", body=body)
        ask(srv, "/ev%d" % i)
    wait_files(srv.disk, 6)
    r = ask(srv, "/ev0")  # 1m of memory holds three: the first went
    assert r.status == 200 and r.body == body and "hit" in cs(r), cs(r)
    assert origin.count("/ev0") == 1


def test_the_folder_stays_in_its_bound(srv, origin):
    body = b"b" * 700_000
    for i in range(8):
        origin.route("/bound%d" % i, cc="max-age=600", body=body)
        ask(srv, "/bound%d" % i)
    time.sleep(1.0)
    wait_files(srv.disk, 1)
    total = sum(os.path.getsize(srv.disk / f) for f in cache_files(srv.disk))
    assert total <= 4 * 1024 * 1024, total
    assert len(cache_files(srv.disk)) >= 4


def test_purge_removes_the_file(srv, origin):
    origin.route("/gone-file", cc="max-age=600")
    ask(srv, "/gone-file")
    wait_files(srv.disk, 1)
    n = len(cache_files(srv.disk))
    p = ask(srv, "/gone-file", method="PURGE")
    assert p.status == 200
    assert len(cache_files(srv.disk)) == n - 1
    restart(srv)
    r = ask(srv, "/gone-file")
    assert "hit" not in cs(r) and origin.count("/gone-file") == 2


def test_check_makes_no_folder(moat_bin, pki, origin, tmp_path):
    m = Moat(moat_bin, tmp_path / "c", name="cache-disk-check")
    disk = tmp_path / "never"
    m.write_config(config(m, pki, origin, disk))
    out = subprocess.run([moat_bin, "serve", "--check", "--config", str(m.config)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert not disk.exists()


def test_a_bad_size_is_a_config_error(moat_bin, pki, origin, tmp_path):
    m = Moat(moat_bin, tmp_path / "b", name="cache-disk-bad")
    m.write_config(config(m, pki, origin, tmp_path / "d", disk_size="10k"))
    out = subprocess.run([moat_bin, "serve", "--check", "--config", str(m.config)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert re.search(r"moat\.conf:7:\d+: cache_disk's size \"10k\" is not a size of at least 1m",
                     out.stderr), out.stderr
