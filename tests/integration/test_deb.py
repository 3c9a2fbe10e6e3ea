"""The Debian package: `make deb` builds it, and it installs on this machine and purges
cleanly (docs/packaging.md). It installs for real, as root, so it is guarded: it skips when not
root, without dpkg-buildpackage/debhelper (unless MOAT_REQUIRE_BIN is set), or when a
/usr/bin/moat that is not the package's is there. It purges in a finally, and first too, so a
package left installed by an earlier run does not matter.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import time
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

    # Debian's own package checks find nothing but what only the project's owner can settle:
    # a real maintainer address (the package says moat@localhost) and an upload closing a bug.
    if shutil.which("lintian") is not None:
        r = sh(["lintian", "--tag-display-limit", "0", "--suppress-tags",
                "bogus-mail-host,bogus-mail-host-in-debian-changelog,"
                "initial-upload-closes-no-bugs", str(deb)], timeout=300, check=False)
        tags = [l for l in r.stdout.splitlines() if l[:2] in ("E:", "W:")]
        assert not tags, "lintian:\n" + r.stdout
    elif os.environ.get("MOAT_REQUIRE_BIN"):
        pytest.fail("no lintian (scripts/install-deps installs it)", pytrace=False)

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


# ---- the service under a real systemd ----------------------------------------------------------

# Run as PID 1 of the namespaces before systemd. The namespaces share the host's files, so
# nothing that boots may write to the host: /tmp (systemd-tmpfiles empties it) and the unit
# folder get a tmpfs of their own, and every unit the targets would pull in is masked there
# (sysctl, sysusers, tmpfiles, udev, swap, fsck, the host's enabled services...), journald
# alone kept for the service's log. Mounts made here stay in the new mount namespace.
SYSTEMD_INIT = r"""
set -e
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /etc/systemd/system
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
for d in /lib/systemd/system/*.wants /usr/lib/systemd/system/*.wants; do
  for u in "$d"/*; do
    n=${u##*/}
    case "$n" in systemd-journald*|'*') continue ;; esac
    ln -sf /dev/null "/etc/systemd/system/$n"
  done
done
exec /lib/systemd/systemd --system --unit=sysinit.target
"""


class Systemd:
    """systemd booted as PID 1 of new PID, mount, network, UTS and IPC namespaces (the host's
    files seen through SYSTEMD_INIT's guards, its own processes and loopback), reaching only
    an emptied sysinit.target. Commands run inside it through nsenter."""

    def __init__(self):
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--propagation", "private",
             "--mount-proc", "--net", "--uts", "--ipc", "--", "sh", "-c", SYSTEMD_INIT],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = None

    def boot(self, timeout=60):
        """True once systemd says it is running (or degraded), False when it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.pid is None:
                kids = Path("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid))
                try:
                    found = kids.read_text().split()
                except OSError:
                    found = []
                self.pid = int(found[0]) if found else None
            if self.pid is not None:
                r = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
                if r.stdout.strip() in ("running", "degraded"):
                    return True
            time.sleep(0.5)
        return False

    def run(self, cmd, check=True, timeout=60):
        return sh(["nsenter", "-t", str(self.pid), "-m", "-p", "-n", "-u", "-i", "--"] + cmd,
                  timeout=timeout, check=check)

    def prop(self, unit, name):
        return self.run(["systemctl", "show", "-p", name, "--value", unit]).stdout.strip()

    def journal(self, unit):
        return self.run(["journalctl", "-u", unit, "--no-pager", "-o", "cat"], check=False).stdout

    def close(self):
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)  # the namespace's init: all in it goes too
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def test_deb_service_runs_under_systemd(guarded):
    """What an operator does after installing: start the service, see it serve as moat with
    only CAP_NET_BIND_SERVICE inside its sandbox, reload it (a refused configuration fails the
    reload with the reason and the old one keeps serving), and stop it."""
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip("no %s" % tool)
    sh(["make", "-s", "deb"], cwd=ROOT, timeout=1500)
    arch = sh(["dpkg", "--print-architecture"]).stdout.strip()
    deb = ROOT / "build" / "deb" / ("moat_%s-1_%s.deb" % (VERSION, arch))
    sh(["dpkg", "-i", str(deb)], timeout=120)
    conf = Path("/etc/moat/moat.conf")
    good = conf.read_text()
    page = Path("/var/www/html/moat-systemd-test-%d.txt" % os.getpid())  # the example's root
    page.write_text("served by the packaged service\n")
    sentinel = Path("/tmp/moat-systemd-sentinel-%d" % os.getpid())  # booting must not touch it
    sentinel.write_text("host\n")
    sd = Systemd()
    try:
        if not sd.boot():
            pytest.skip("systemd does not boot as PID 1 in a namespace on this machine")
        assert sentinel.read_text() == "host\n"
        failed = sd.run(["systemctl", "list-units", "--failed", "--plain", "--no-legend"]).stdout
        assert failed.strip() == "", failed
        r = sd.run(["systemctl", "start", "moat.service"], check=False, timeout=90)
        assert r.returncode == 0, r.stderr + sd.journal("moat.service")
        # Type=notify: start returned after READY=1, so it serves now.
        assert sd.prop("moat.service", "ActiveState") == "active"
        assert sd.prop("moat.service", "SubState") == "running"
        pid = int(sd.prop("moat.service", "MainPID"))
        status = sd.run(["cat", "/proc/%d/status" % pid]).stdout
        moat_uid = sh(["id", "-u", "moat"]).stdout.strip()
        uids = [l.split()[1:] for l in status.splitlines() if l.startswith("Uid:")][0]
        assert uids == [moat_uid] * 4, status
        caps = {l.split(":")[0]: int(l.split()[1], 16) for l in status.splitlines()
                if l.startswith("Cap")}
        assert caps["CapEff"] == 1 << 10 and caps["CapBnd"] == 1 << 10, caps  # net_bind_service
        assert "NoNewPrivs:\t1" in status and "Seccomp:\t2" in status, status

        def get():
            # curl verifies the chain from the local CA the service made in its state folder
            return sd.run(["curl", "-sS", "--cacert", "/var/lib/moat/ca/root.pem",
                           "https://localhost/" + page.name], check=False, timeout=30)

        r = get()
        assert r.stdout == "served by the packaged service\n", (r.stdout, r.stderr)
        r = sd.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                    "http://localhost/x"], check=False, timeout=30)
        assert r.stdout == "308 https://localhost/x", r.stdout
        st = sd.run(["/usr/bin/moat", "status", "--json"], check=False)
        assert st.returncode == 0, st.stderr
        assert '"localhost"' in st.stdout

        # A refused reload: systemctl fails and says why; the server keeps the old config.
        conf.write_text(good + "\nsite localhost {\n    root /var/www/html\n}\n")
        r = sd.run(["systemctl", "reload", "moat.service"], check=False, timeout=60)
        assert r.returncode != 0
        log = sd.journal("moat.service")
        assert re.search(r'/etc/moat/moat\.conf:\d+:\d+: site name "localhost" is already used',
                         log), log
        assert sd.prop("moat.service", "ActiveState") == "active"
        assert get().stdout == "served by the packaged service\n"
        conf.write_text(good)
        r = sd.run(["systemctl", "reload", "moat.service"], check=False, timeout=60)
        assert r.returncode == 0, r.stderr + sd.journal("moat.service")
        assert int(sd.prop("moat.service", "MainPID")) == pid  # reloaded, not restarted

        r = sd.run(["systemctl", "stop", "moat.service"], check=False, timeout=90)
        assert r.returncode == 0, r.stderr
        assert sd.prop("moat.service", "ActiveState") == "inactive"
        assert sd.prop("moat.service", "Result") == "success", sd.journal("moat.service")
    finally:
        sd.close()
        if conf.exists():
            conf.write_text(good)
        page.unlink()
        # The state the service made (its local CA and certificates) is this test's: purge
        # keeps a state folder with anything in it, so it goes by hand.
        purge()
        shutil.rmtree("/var/lib/moat", ignore_errors=True)
    assert sentinel.read_text() == "host\n"
    sentinel.unlink()
