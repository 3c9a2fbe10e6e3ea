"""`moat serve --check` writes nothing (issue 10, item 10).

For a site without `cert`, `serve` creates moat's local CA and issues a certificate into the
state folder; a check must only say what serve would create, and still check everything else
(the other certificates, the roots, the configuration). Every test compares the whole state
folder, recursively, before and after."""

import hashlib
import os
import subprocess

from helpers import clean_env, curl


def tree(base):
    """Everything under `base` (None when it does not exist): path -> (mode, size, mtime, hash)."""
    if not os.path.exists(base):
        return None
    out = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = None
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(p, base)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def check(moat_bin, cwd, state, *args):
    env = clean_env({"MOAT_STATE": str(state)})
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    p = subprocess.run([str(moat_bin), "serve", "--check"] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                       env=env, cwd=cwd)
    for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert marker not in p.stderr, p.stderr
    return p


def test_check_writes_nothing_in_an_empty_state_folder(moat_bin, www, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    p = check(moat_bin, tmp_path, state, "--root", www)
    assert p.returncode == 0, p.stderr
    assert "command line: ok" in p.stdout
    assert tree(state) == {}, tree(state)
    assert "would create a local CA in %s/ca" % state in p.stderr, p.stderr
    assert ("issue a certificate for localhost, 127.0.0.1, ::1 into %s/certs/localhost.pem"
            % state) in p.stderr, p.stderr


def test_check_does_not_create_the_state_folder(moat_bin, www, tmp_path):
    state = tmp_path / "not-yet" / "state"
    p = check(moat_bin, tmp_path, state, "--root", www, "--name", "app.localhost")
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "not-yet").exists()
    assert "would create a local CA in %s/ca" % state in p.stderr, p.stderr
    assert "issue a certificate for app.localhost" in p.stderr, p.stderr


def _conf(tmp_path, state, body):
    conf = tmp_path / "moat.conf"
    conf.write_text("listen 127.0.0.1:1\nstate %s\n%s" % (state, body))
    return conf


def test_check_still_checks_everything_else(moat_bin, www, pki, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    local = "site localhost {\n    root %s\n}\n" % www
    # Two local sites and a good certificate: ok, each local site planned, nothing written.
    good = local + ("site dev.localhost {\n    root %s\n}\n"
                    "site example.test {\n    cert %s %s\n    root %s\n}\n"
                    "trust %s\n" % (www, pki.ec.chain, pki.ec.key, www, pki.root))
    p = check(moat_bin, tmp_path, state, "--config", _conf(tmp_path, state, good))
    assert p.returncode == 0, p.stderr
    assert "would create a local CA" in p.stderr, p.stderr
    # A site named localhost also names its loopback addresses (RFC 6761 §6.3).
    assert "issue a certificate for localhost, 127.0.0.1, ::1 into" in p.stderr, p.stderr
    assert "issue a certificate for dev.localhost from that new local CA into" in p.stderr, \
        p.stderr
    assert tree(state) == {}
    # An expired certificate in another site is still refused.
    bad = local + "site example.test {\n    cert %s %s\n    root %s\n}\n" % (
        pki.expired.chain, pki.expired.key, www)
    p = check(moat_bin, tmp_path, state, "--config", _conf(tmp_path, state, bad))
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "expired" in p.stderr and pki.expired.chain.name in p.stderr, p.stderr
    assert ": ok" not in p.stdout
    assert tree(state) == {}
    # The local site's own root folder is still checked.
    p = check(moat_bin, tmp_path, state, "--config", _conf(
        tmp_path, state, "site localhost {\n    root %s/nope\n}\n" % www))
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "cannot be opened" in p.stderr, p.stderr
    assert tree(state) == {}
    # And the configuration itself.
    p = check(moat_bin, tmp_path, state, "--config", _conf(
        tmp_path, state, "site localhost {\n    root %s\n    colour blue\n}\n" % www))
    assert p.returncode == 2 and "moat.conf:5:5" in p.stderr, p.stderr
    assert tree(state) == {}


def test_check_with_an_existing_local_ca(moat, moat_bin, www, tmp_path, pki):
    # A real start creates the CA and the certificate, and clients get it.
    m = moat()
    m.start(["serve", "--listen", "127.0.0.1:%d" % m.port, "--root", www, "--workers", "1"])
    r = curl(tmp_path, "https://localhost:%d/" % m.port, port=m.port, host="localhost",
             cacert=m.state / "ca" / "root.pem")
    assert r.rc == 0 and r.status == 200, r.stderr
    assert m.stop() == 0
    state = m.state
    before = tree(state)
    assert "ca/root.pem" in before and "certs/localhost.pem" in before, before

    # Everything reusable: the check loads the existing files and says nothing would change.
    p = check(moat_bin, tmp_path, state, "--root", www)
    assert p.returncode == 0, p.stderr
    assert "would" not in p.stderr, p.stderr
    assert tree(state) == before

    # More names for the same site: serve would renew the certificate.
    conf = _conf(tmp_path, state, "site localhost other.localhost {\n    root %s\n}\n" % www)
    p = check(moat_bin, tmp_path, state, "--config", conf)
    assert p.returncode == 0, p.stderr
    assert ("would renew (it is due, or no longer fits) a certificate for localhost, "
            "other.localhost, 127.0.0.1, ::1 from the local CA in %s/ca" % state) in p.stderr, \
        p.stderr
    assert "would create a local CA" not in p.stderr
    assert tree(state) == before

    # The certificate gone: serve would issue one from the existing CA.
    for f in ("localhost.pem", "localhost.key"):
        (state / "certs" / f).unlink()
    before = tree(state)
    p = check(moat_bin, tmp_path, state, "--root", www)
    assert p.returncode == 0, p.stderr
    assert ("would issue a certificate for localhost, 127.0.0.1, ::1 from the local CA in %s/ca"
            % state) in p.stderr, p.stderr
    assert tree(state) == before

    # A local CA whose files do not belong together is refused, as serve would, and left alone.
    (state / "ca" / "intermediate.key").write_bytes(pki.other_key.read_bytes())
    before = tree(state)
    p = check(moat_bin, tmp_path, state, "--root", www)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "intermediate.key does not match" in p.stderr, p.stderr
    assert ": ok" not in p.stdout
    assert tree(state) == before


def test_check_refuses_a_broken_local_ca_without_touching_it(moat_bin, www, tmp_path, pki):
    state = tmp_path / "state"
    (state / "ca").mkdir(parents=True)
    (state / "ca" / "root.pem").write_text(pki.root.read_text())
    before = tree(state)
    p = check(moat_bin, tmp_path, state, "--root", www)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "incomplete" in p.stderr and "intermediate.pem" in p.stderr, p.stderr
    assert tree(state) == before


def test_check_with_demo_is_refused_and_writes_nothing(moat_bin, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    p = check(moat_bin, tmp_path, state, "--demo")
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "--demo has none to check" in p.stderr
    assert tree(state) == {}


def test_check_with_crl_publish_of_the_local_ca_writes_nothing(moat_bin, www, tmp_path):
    # crl_publish `local` makes the server sign the local CA's CRL; a check must not, neither
    # before the CA exists nor when its CRL is missing.
    state = tmp_path / "state"
    state.mkdir()
    conf = tmp_path / "moat.conf"
    conf.write_text("listen 127.0.0.1:1\nstate %s\nsite localhost {\n    root %s\n"
                    "    crl_publish /crl/ca.crl local\n}\n" % (state, www))
    p = check(moat_bin, tmp_path, state, "--config", conf)
    assert p.returncode == 0, p.stderr
    assert tree(state) == {}, tree(state)
    assert "serve would publish the CRL of the local CA it creates" in p.stderr, p.stderr
    # Once the CA exists (a real start made it), a check still writes no CRL.
    env = clean_env({"MOAT_STATE": str(state)})
    made = subprocess.run([str(moat_bin), "ca", "init", "--dir", str(state / "ca")],
                          capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    (state / "ca" / "crl.pem").unlink(missing_ok=True)
    before = tree(state)
    p = check(moat_bin, tmp_path, state, "--config", conf)
    assert p.returncode == 0, p.stderr
    assert tree(state) == before
    assert "serve would write a new CRL" in p.stderr, p.stderr
