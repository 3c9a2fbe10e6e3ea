"""`moat get`: the request options (-o, -I, -X, -H, -d, --data-binary, -L), default trust
(system store + moat's local CA), --insecure's warning and the command line's refusals.
The request-echo server is Python's ssl with the test certificate.
"""

import json

import pytest

from client_helpers import ClientPki, EchoServer, moat_client, resolve


@pytest.fixture(scope="module")
def cpki(tmp_path_factory):
    return ClientPki(tmp_path_factory.mktemp("cpki")).make_client_set()


@pytest.fixture(scope="module")
def echo(cpki):
    e = EchoServer(cpki.good.chain, cpki.good.key)
    yield e
    e.stop()


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "client-state"
    d.mkdir()
    return d


def get(moat_bin, state, cpki, echo, path, *args):
    return moat_client(moat_bin, state, "get", "https://example.test:%d%s" % (echo.port, path),
                       resolve("example.test", echo.port), "--cafile", cpki.root, *args)


def test_body_goes_to_stdout(moat_bin, state, cpki, moat, www):
    m = moat("serve")
    m.start(["serve", "--root", www, "--listen", "127.0.0.1:%d" % m.port, "--cert",
             cpki.good.chain, "--key", cpki.good.key])
    g = moat_client(moat_bin, state, "get", "https://example.test:%d/big.bin" % m.port,
                    resolve("example.test", m.port), "--cafile", cpki.root)
    assert g.rc == 0, g
    assert g.stdout == (www / "big.bin").read_bytes()
    assert g.stderr == ""


def test_output_file_and_no_file_on_failure(moat_bin, state, cpki, echo, tmp_path):
    out = tmp_path / "out.json"
    g = get(moat_bin, state, cpki, echo, "/x", "-o", out)
    assert g.rc == 0, g
    assert g.stdout == b""
    assert json.loads(out.read_text())["path"] == "/x"
    missing = tmp_path / "never.json"
    g = moat_client(moat_bin, state, "get", "https://example.test:%d/" % echo.port,
                    resolve("example.test", echo.port), "-o", missing)  # not trusted
    assert g.rc == 5, g
    assert not missing.exists()


def test_head_prints_the_response_head(moat_bin, state, cpki, echo):
    g = get(moat_bin, state, cpki, echo, "/h", "-I")
    assert g.rc == 0, g
    assert g.text.startswith("HTTP/1.0 200 ") or g.text.startswith("HTTP/1.1 200 "), g
    assert "Content-Type: application/json" in g.text
    assert '"method"' not in g.text


def test_method_headers_and_form_data(moat_bin, state, cpki, echo):
    g = get(moat_bin, state, cpki, echo, "/form?q=1", "-X", "PUT", "-H", "X-Moat-Test: yes",
            "-d", "a=1&b=2")
    assert g.rc == 0, g
    doc = json.loads(g.text)
    assert doc["method"] == "PUT"
    assert doc["path"] == "/form?q=1"
    h = {k.lower(): v for k, v in doc["headers"]}
    assert h["x-moat-test"] == "yes"
    assert h["content-type"] == "application/x-www-form-urlencoded"
    assert h["content-length"] == "7"
    assert h["host"] == "example.test:%d" % echo.port
    assert h["user-agent"].startswith("moat/")
    assert doc["body"] == "a=1&b=2"


def test_data_binary_from_a_file_and_removed_default(moat_bin, state, cpki, echo, tmp_path):
    body = tmp_path / "body.bin"
    body.write_bytes(b"line one\nline\x00two\n")
    g = get(moat_bin, state, cpki, echo, "/bin", "--data-binary", "@%s" % body, "-H", "Accept:")
    assert g.rc == 0, g
    doc = json.loads(g.text)
    assert doc["method"] == "POST"
    assert doc["body"] == "line one\nline\x00two\n"
    h = {k.lower(): v for k, v in doc["headers"]}
    assert "content-type" not in h
    assert "accept" not in h


def test_header_injection_refused(moat_bin, state, cpki, echo):
    g = get(moat_bin, state, cpki, echo, "/", "-H", "X-A: 1\r\nX-Injected: 2")
    assert g.rc == 2, g
    assert "control character" in g.stderr
    g = get(moat_bin, state, cpki, echo, "/", "-H", "NoColon")
    assert g.rc == 2, g
    g = get(moat_bin, state, cpki, echo, "/", "-H", "Content-Length: 5")
    assert g.rc == 2, g


def test_redirects_are_not_followed_by_default(moat_bin, state, cpki, echo):
    g = get(moat_bin, state, cpki, echo, "/redirect/1/302")
    assert g.rc == 0, g
    assert g.text == "<p>REDIRECT-PAGE moved</p>\n"  # not followed: this is the answer
    assert "note: redirect (302) to /final not followed (use -L)" in g.stderr


def test_follow_redirects(moat_bin, state, cpki, echo):
    g = get(moat_bin, state, cpki, echo, "/redirect/3/301", "-L")
    assert g.rc == 0, g
    # Only the last answer's body is written, not the redirect pages before it.
    assert "REDIRECT-PAGE" not in g.text
    assert json.loads(g.text)["path"] == "/final"
    j = moat_client(moat_bin, state, "trace", "--json", "-L",
                    "https://example.test:%d/redirect/2/307" % echo.port,
                    resolve("example.test", echo.port), "--cafile", cpki.root)
    assert j.rc == 0, j
    hops = j.json["hops"]
    assert [h["http"]["status"] for h in hops] == [307, 307, 200]
    assert hops[2]["url"].endswith("/final")
    t = moat_client(moat_bin, state, "trace", "-L",
                    "https://example.test:%d/redirect/2/307" % echo.port,
                    resolve("example.test", echo.port), "--cafile", cpki.root)
    assert t.rc == 0, t
    assert "Redirect 1: following 307 to https://example.test:%d/redirect/1/307" % echo.port \
        in t.text
    # Later hops to the same server resume the first session (as browsers do), or else show
    # the same chain: either way the certificates are not printed three times.
    assert t.text.count("Certificates: the same chain as above") + t.text.count(
        "Certificates: none crossed: the session was resumed") == 2, t
    assert [h["tls"]["resume_offered_from"] for h in hops] == [None, 1, 2]
    assert "(3 connections," in t.text


def test_303_after_post_turns_into_get(moat_bin, state, cpki, echo):
    g = get(moat_bin, state, cpki, echo, "/redirect/1/303", "-L", "-d", "x=1")
    assert g.rc == 0, g
    doc = json.loads(g.text)
    assert doc["method"] == "GET" and doc["body"] == ""


def test_307_keeps_the_method_and_body(moat_bin, state, cpki, echo):
    g = get(moat_bin, state, cpki, echo, "/redirect/1/307", "-L", "-d", "x=1")
    assert g.rc == 0, g
    doc = json.loads(g.text)
    assert doc["method"] == "POST" and doc["body"] == "x=1"


def test_too_many_redirects(moat_bin, state, cpki, echo):
    g = get(moat_bin, state, cpki, echo, "/redirect/5/302", "-L", "--max-redirs", "2")
    assert g.rc == 6, g
    assert "moat get: too_many_redirects: more than 2 redirects" in g.stderr


def test_chunked_body_is_decoded(moat_bin, state, cpki, echo):
    g = get(moat_bin, state, cpki, echo, "/chunked")
    assert g.rc == 0, g
    assert g.text == "hello chunked world"


def test_insecure_warns_every_time(moat_bin, state, cpki, echo):
    for _ in range(2):
        g = moat_client(moat_bin, state, "get", "--insecure",
                        "https://example.test:%d/i" % echo.port, resolve("example.test", echo.port))
        assert g.rc == 0, g
        assert "WARNING: --insecure" in g.stderr
        assert "hid a certificate failure: certificate unknown_issuer" in g.stderr
        assert json.loads(g.text)["path"] == "/i"


def test_local_ca_is_trusted_by_default(moat_bin, moat, www, tmp_path):
    # A zero-config server: its certificate comes from the local CA in its state folder.
    m = moat("serve")
    m.start(["serve", "--root", www, "--listen", "127.0.0.1:%d" % m.port])
    g = moat_client(moat_bin, m.state, "get", "https://localhost:%d/a.txt" % m.port)
    assert g.rc == 0, g
    assert g.text == "file A\n"
    # The same through the address: its certificate has an IP SAN, and no SNI is sent.
    j = moat_client(moat_bin, m.state, "trace", "--json", "https://127.0.0.1:%d/" % m.port)
    assert j.rc == 0, j
    tls = j.json["hops"][0]["tls"]
    assert tls["sni"] is None
    assert tls["root_source"].startswith("moat's local CA")
    # Another state folder has no local CA: the same server is not trusted.
    other = tmp_path / "other-state"
    other.mkdir()
    g = moat_client(moat_bin, other, "get", "https://localhost:%d/a.txt" % m.port)
    assert g.rc == 5, g
    g = moat_client(moat_bin, other, "get", "--state", m.state,
                    "https://localhost:%d/a.txt" % m.port)
    assert g.rc == 0, g


@pytest.mark.parametrize("args,words", [
    ([], "give a URL"),
    (["ftp://example.test/"], "https:// and http:// only"),
    (["https://user:pw@example.test/"], "passwords in URLs"),
    (["https://example.test:0/"], "port 0"),
    (["https://example.test/a b"], "%20"),
    (["--tls-min", "1.1", "https://example.test/"], "RFC 8996"),
    (["--tls-max", "1.4", "https://example.test/"], "1.2 or 1.3"),
    (["--tls-min", "1.3", "--tls-max", "1.2", "https://example.test/"], "above"),
    (["--timeout", "soon", "https://example.test/"], "seconds"),
    (["--resolve", "example.test:443", "https://example.test/"], "HOST:PORT:ADDR"),
    (["--nope", "https://example.test/"], "unknown option"),
    (["--json", "https://example.test/"], "unknown option"),
    (["--key", "k.pem", "https://example.test/"], "--key goes with --cert"),
    (["-I", "-d", "x", "https://example.test/"], "cannot send a body"),
    (["https://a.test/", "https://b.test/"], "one URL only"),
])
def test_usage_errors(args, words, moat_bin, state):
    g = moat_client(moat_bin, state, "get", *args)
    assert g.rc == 2, g
    assert words in g.stderr, g


def test_help(moat_bin, state):
    for cmd in ("get", "trace"):
        g = moat_client(moat_bin, state, cmd, "--help")
        assert g.rc == 0
        assert "Exit codes: 0 ok" in g.text
    assert "--json" in moat_client(moat_bin, state, "trace", "--help").text
    top = moat_client(moat_bin, state, "--help").text
    assert "  get " in top and "  trace " in top
