"""Fixtures for moat's integration tests.

- `moat_bin`: the server binary ($MOAT_BIN, default build/san/moat, the sanitizer build).
- `pki`: a session-wide test PKI made with the openssl CLI (root, intermediate, leaves).
- `www`, `secret`: a docroot with known files and a secret file just outside it.
- `moat`: a factory for servers owned by one test; each is stopped (SIGTERM, then SIGKILL) at
  the end of the test, and the test fails when the server's stderr holds a sanitizer report.
- `server`: one server per test module on the standard config (helpers.standard_config),
  restarted if a test crashed it, so one crash fails one test and not the rest of the module.

Run with Debian's interpreter: `/usr/bin/python3 -m pytest tests/integration`.
"""

import os
import shutil
from pathlib import Path

import pytest

from helpers import Moat, Pki, live_servers, make_www, standard_config

REPO = Path(__file__).resolve().parents[2]

# The tests run as root (CI machines have no other user set up): every moat they start is
# told it may serve as root; test_privileges.py takes this away to test the refusal and the drop.
os.environ.setdefault("MOAT_ALLOW_ROOT", "1")


def _finish(m):
    """Stop a server and fail if a sanitizer spoke (LeakSanitizer speaks at exit)."""
    m.stop()
    report = m.sanitizer_report()
    if report and not m.sanitizer_reported:
        m.sanitizer_reported = True
        pytest.fail("sanitizer report in moat's stderr (%s):\n%s" % (m.dir, report),
                    pytrace=False)


@pytest.fixture(scope="session")
def moat_bin():
    path = Path(os.environ.get("MOAT_BIN", REPO / "build" / "san" / "moat"))
    if not path.is_absolute():
        path = REPO / path
    if not (path.is_file() and os.access(path, os.X_OK)):
        msg = "moat binary %s not found (make build/san/moat, or set MOAT_BIN)" % path
        if os.environ.get("MOAT_REQUIRE_BIN"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not installed")
    return Pki(tmp_path_factory.mktemp("pki")).make_all()


@pytest.fixture(scope="session")
def _www(tmp_path_factory):
    return make_www(tmp_path_factory.mktemp("docroot"))


@pytest.fixture(scope="session")
def www(_www):
    return _www[0]


@pytest.fixture(scope="session")
def secret(_www):
    return _www[1]


@pytest.fixture
def moat(moat_bin, tmp_path):
    """Factory: moat(name="x") -> a Moat (not started) in its own folder under tmp_path."""
    made = []

    def new(name="moat"):
        m = Moat(moat_bin, tmp_path / name, name=name)
        made.append(m)
        return m

    yield new
    failures = []
    for m in made:
        try:
            _finish(m)
        except pytest.fail.Exception as e:
            failures.append(str(e))
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


@pytest.fixture(scope="module")
def _module_server(moat_bin, pki, www, tmp_path_factory):
    m = Moat(moat_bin, tmp_path_factory.mktemp("server"), name="server")
    m.write_config(standard_config(m, pki, www))
    m.start()
    yield m
    _finish(m)


@pytest.fixture
def server(_module_server):
    m = _module_server
    if not m.alive():
        # An earlier test crashed it (and was failed for that): start it again, same ports.
        m.stop()
        m.start()
    return m


@pytest.fixture(autouse=True)
def _sanitizer_watch():
    """After each test, fail it if any server it talked to printed a sanitizer report."""
    yield
    for m in live_servers():
        report = m.sanitizer_report()
        if report and not m.sanitizer_reported:
            m.sanitizer_reported = True
            pytest.fail("sanitizer report in moat's stderr (%s):\n%s" % (m.dir, report),
                        pytrace=False)
