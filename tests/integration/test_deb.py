"""The Debian package: `make deb` builds it, and it installs on this machine and purges
cleanly (docs/packaging.md). It installs for real, as root, so it is guarded: it skips when not
root, without dpkg-buildpackage/debhelper (unless MOAT_REQUIRE_BIN is set), or when a
/usr/bin/moat that is not the package's is there. It purges in a finally, and first too, so a
package left installed by an earlier run does not matter.
"""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSION = (ROOT / "VERSION").read_text().strip()


def sh(cmd, timeout=60, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if check:
        assert r.returncode == 0, "%s: %s\n%s" % (" ".join(cmd), r.stdout, r.stderr)
    return r


def installed():
    r = sh(["dpkg-query", "-W", "-f=${Status}", "moat"], check=False)
    return r.returncode == 0 and "installed" in r.stdout and "not-installed" not in r.stdout


def purge():
    sh(["dpkg", "--purge", "moat"], timeout=120, check=False)


@pytest.fixture
def guarded():
    if os.geteuid() != 0:
        pytest.skip("installs a package: needs root")
    missing = [t for t in ("dpkg-buildpackage", "dh") if shutil.which(t) is None]
    if missing:
        msg = "no %s (scripts/install-deps installs debhelper and dpkg-dev)" % ", ".join(missing)
        if os.environ.get("MOAT_REQUIRE_BIN"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    if os.path.exists("/usr/bin/moat"):
        r = sh(["dpkg", "-S", "/usr/bin/moat"], check=False)
        if r.returncode != 0 or not r.stdout.startswith("moat:"):
            pytest.skip("/usr/bin/moat is there and not from the moat package: not clobbering it")
    # User state from an earlier run's purge (kept by design) would make the checks below
    # about a fresh install meaningless; it is only ever this test's when we got here.
    had_state = os.path.isdir("/var/lib/moat") and not installed()
    if had_state and any(Path("/var/lib/moat").iterdir()):
        pytest.skip("/var/lib/moat holds state and moat is not installed: not touching it")
    purge()
    try:
        yield
    finally:
        purge()
        p = Path("/var/lib/moat/user-state.txt")
        if p.exists():
            p.unlink()
        if os.path.isdir("/var/lib/moat") and not os.listdir("/var/lib/moat"):
            os.rmdir("/var/lib/moat")


def test_deb_installs_and_purges(guarded):
    r = sh(["make", "-s", "deb"], cwd=ROOT, timeout=1500)
    arch = sh(["dpkg", "--print-architecture"]).stdout.strip()
    deb = ROOT / "build" / "deb" / ("moat_%s-1_%s.deb" % (VERSION, arch))
    assert deb.is_file(), r.stdout
    assert str(deb.relative_to(ROOT)) in r.stdout  # `make deb` says where it is
    # Nothing written outside build/ (dpkg-buildpackage writes to the tree's parent).
    assert not list(ROOT.parent.glob("moat_*")), list(ROOT.parent.glob("moat_*"))

    info = sh(["dpkg-deb", "--field", str(deb), "Depends"]).stdout
    assert "libssl3" in info and "adduser" in info, info

    sh(["dpkg", "-i", str(deb)], timeout=120)  # no systemd as PID 1 here: must not matter
    assert installed()
    files = [f for f in sh(["dpkg", "-L", "moat"]).stdout.splitlines() if f.strip()]

    r = sh(["/usr/bin/moat", "--version"])
    assert VERSION in r.stdout + r.stderr
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MOAT_STATE": "/var/lib/moat"}
    check = ["/usr/bin/moat", "serve", "--check", "--config", "/etc/moat/moat.conf"]
    sh(check, env=env)
    sh(["runuser", "-u", "moat", "--"] + check, env=env)  # as the service runs it

    pw = sh(["getent", "passwd", "moat"]).stdout.strip().split(":")
    assert pw[5] == "/var/lib/moat" and pw[6] == "/usr/sbin/nologin", pw
    sh(["getent", "group", "moat"])
    st = os.stat("/var/lib/moat")
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == int(pw[2]), oct(st.st_mode)
    st = os.stat("/var/log/moat")
    assert stat.S_IMODE(st.st_mode) == 0o750 and st.st_uid == int(pw[2]), oct(st.st_mode)
    for f in ["/lib/systemd/system/moat.service", "/usr/share/man/man1/moat.1.gz",
              "/usr/share/man/man5/moat.conf.5.gz", "/etc/logrotate.d/moat",
              "/usr/share/doc/moat/copyright"]:
        assert os.path.isfile(f), f
    conffiles = sh(["dpkg-query", "-W", "-f=${Conffiles}", "moat"]).stdout
    assert "/etc/moat/moat.conf" in conffiles and "/etc/logrotate.d/moat" in conffiles

    # Installing again over itself (dpkg -i twice) works: the postinst is idempotent.
    sh(["dpkg", "-i", str(deb)], timeout=120)

    # The state the user made, and a log the server wrote.
    Path("/var/lib/moat/user-state.txt").write_text("mine\n")
    Path("/var/log/moat/error.log").write_text("a log line\n")

    sh(["dpkg", "--purge", "moat"], timeout=120)
    assert not installed()
    left = [f for f in files if os.path.lexists(f) and not os.path.isdir(f)]
    assert not left, left
    for d in ["/etc/moat", "/var/log/moat", "/usr/share/doc/moat"]:
        assert not os.path.lexists(d), d
    # Policy (docs/packaging.md): purge keeps /var/lib/moat when it holds anything, and the
    # system user moat; an empty state folder goes.
    assert Path("/var/lib/moat/user-state.txt").read_text() == "mine\n"
    assert sorted(os.listdir("/var/lib/moat")) == ["user-state.txt"]
    sh(["getent", "passwd", "moat"])

    # Purged with nothing made in the state folder: it goes too.
    os.unlink("/var/lib/moat/user-state.txt")
    sh(["dpkg", "-i", str(deb)], timeout=120)
    sh(["dpkg", "--purge", "moat"], timeout=120)
    assert not os.path.lexists("/var/lib/moat")
