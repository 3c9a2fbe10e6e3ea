"""scripts/check-layers: the include-direction check of `make test`, run on small made-up
source trees so that each rule is seen to fail (and the real tree to pass)."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check-layers"


def run(root=None):
    args = [sys.executable, str(SCRIPT)] + (["--root", str(root)] if root else [])
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def tree(tmp_path, files):
    for name, text in files.items():
        f = tmp_path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return tmp_path


def test_repository_follows_the_layers():
    rc, out = run()
    assert rc == 0, out


def test_allowed_arrows_pass(tmp_path):
    root = tree(tmp_path, {
        "src/core/err.h": "",
        "src/pki/key.h": '#include "core/err.h"\n',
        "src/tls/ctx.c": '#include "tls/ctx.h"\n#include "pki/key.h"\n#include "core/err.h"\n',
        "src/tls/ctx.h": "#include <openssl/ssl.h>\n",
        "src/cli/main.c": '#include "serve/server.h"\n#include "client/get.h"\n',
        # tests may include anything: not read
        "tests/unit/core/test_err.c": '#include "serve/conn.h"\n',
    })
    rc, out = run(root)
    assert rc == 0, out
    assert out == ""


def test_upward_include_fails_with_position_and_rule(tmp_path):
    root = tree(tmp_path, {
        "src/serve/conn.h": "",
        "src/tls/x.c": '/* x */\n#include "tls/x.h"\n#include "serve/conn.h"\n',
    })
    rc, out = run(root)
    assert rc == 1
    assert ('src/tls/x.c:3: src/tls/x.c includes serve/conn.h, but tls/ may only use core/, '
            'pki/ (layers: see README "Design")') in out


def test_core_may_use_nothing(tmp_path):
    root = tree(tmp_path, {"src/core/loop.c": '#include "http1/parse.h"\n'})
    rc, out = run(root)
    assert rc == 1
    assert "src/core/loop.c:1: src/core/loop.c includes http1/parse.h, but core/ may only " \
           "use nothing but itself" in out


def test_unknown_folder_must_be_placed(tmp_path):
    root = tree(tmp_path, {"src/quic/session.c": '#include "core/err.h"\n'})
    rc, out = run(root)
    assert rc == 1
    assert "src/quic/session.c:1: src/quic/ is not in the layer table" in out


def test_include_of_unknown_folder_fails(tmp_path):
    root = tree(tmp_path, {"src/serve/conn.c": '#include "quic/session.h"\n'})
    rc, out = run(root)
    assert rc == 1
    assert "quic/ is not a folder of the layer table" in out


def test_cycle_in_serve_fails(tmp_path):
    root = tree(tmp_path, {
        "src/serve/conn.h": "",
        "src/serve/conn.c": '#include "serve/conn.h"\n#include "serve/proxy.h"\n',
        "src/serve/proxy.h": "",
        "src/serve/proxy.c": '#include "serve/proxy.h"\n#include "serve/conn.h"\n',
        "src/serve/static.c": '#include "serve/conn.h"\n',
    })
    rc, out = run(root)
    assert rc == 1, out
    assert "include cycle between files of serve/: serve/conn -> serve/proxy" in out
    assert "warning" not in out
    assert "static" not in out


def test_internal_header_belongs_to_its_module(tmp_path):
    root = tree(tmp_path, {
        "src/serve/conf.h": "",
        "src/serve/conf_internal.h": '#include "serve/conf.h"\n',
        "src/serve/conf.c": '#include "serve/conf.h"\n#include "serve/conf_internal.h"\n',
        "src/serve/conf_site.c": '#include "serve/conf_internal.h"\n',
    })
    rc, out = run(root)
    assert rc == 0, out
    assert "cycle" not in out


def test_cycle_in_client_is_still_a_warning(tmp_path):
    root = tree(tmp_path, {
        "src/client/a.c": '#include "client/b.h"\n',
        "src/client/b.c": '#include "client/a.h"\n',
    })
    rc, out = run(root)
    assert rc == 0, out
    assert "warning: include cycle between files of client/: client/a -> client/b" in out


def test_bad_usage():
    rc, out = run(Path("/nonexistent-moat-tree"))
    assert rc == 2
