"""Static files: index.html, MIME types, validators (strong ETag, Last-Modified) and 304s,
single ranges (206/416), HEAD, directory listing on/off, the slash redirect, dot-files, and
every path-traversal trick we know, including symlinks that lead out of the root. The secret
file lives just outside the root; its content must never appear in any response."""

import email.utils
import os
import time

import pytest

from helpers import Conn, build_request, curl

SECRET_WORD = b"TOP-SECRET"


def fetch(server, path, method="GET", host="example.test", headers=None):
    with Conn(server.port, verify=False, sni=host) as c:
        return c.request(path, method=method, host=host, headers=headers)


# -- files and MIME ----------------------------------------------------------------------------


@pytest.mark.parametrize("path,marker", [("/", b"INDEX-PAGE"), ("/index.html", b"INDEX-PAGE"),
                                         ("/sub/", b"SUB-INDEX")])
def test_index(server, path, marker):
    r = fetch(server, path)
    assert r.status == 200
    assert marker in r.body
    assert r.header("content-type") == "text/html; charset=utf-8"


@pytest.mark.parametrize("path,types", [
    ("/a.txt", ["text/plain"]),
    ("/style.css", ["text/css"]),
    ("/app.js", ["text/javascript", "application/javascript"]),
    ("/data.json", ["application/json"]),
    ("/pic.png", ["image/png"]),
    ("/pic.jpg", ["image/jpeg"]),
    ("/icon.svg", ["image/svg+xml"]),
    ("/blob.unknownext", ["application/octet-stream"]),
])
def test_mime_types(server, path, types):
    r = fetch(server, path)
    assert r.status == 200
    assert r.header("content-type", "").split(";")[0].strip() in types, r.header("content-type")


@pytest.mark.parametrize("path,body", [
    ("/a.txt?x=1&y=2", b"file A\n"),             # the query is not part of the file name
    ("/with%20space.txt", b"space in the name\n"),
    ("/caf%C3%A9.txt", b"utf-8 name\n"),
    ("/%61.txt", b"file A\n"),                    # any percent-encoded byte is decoded
    ("/sub/file%2etxt", b"sub file\n"),
    ("/sub/./file.txt", b"sub file\n"),
])
def test_encoded_and_query_paths(server, path, body):
    r = fetch(server, path)
    assert r.status == 200, (path, r)
    assert r.body == body


def test_missing_file_404(server):
    r = fetch(server, "/no-such-file.txt")
    assert r.status == 404


def test_big_file_complete(server, www):
    want = (www / "big.bin").read_bytes()
    r = fetch(server, "/big.bin")
    assert r.status == 200
    assert r.header("content-length") == str(len(want))
    assert r.body == want


def test_big_file_with_curl(server, pki, www, tmp_path):
    r = curl(tmp_path, "https://example.test:%d/big.bin" % server.port, port=server.port,
             cacert=pki.root)
    assert r.rc == 0, r.stderr
    assert r.body == (www / "big.bin").read_bytes()


def test_head(server, www):
    r = fetch(server, "/big.bin", method="HEAD")
    assert r.status == 200
    assert r.body == b""
    assert r.header("content-length") == str((www / "big.bin").stat().st_size)
    assert r.has("etag") and r.has("last-modified")


# -- validators --------------------------------------------------------------------------------


def test_etag_strong_and_304(server):
    r = fetch(server, "/a.txt")
    etag = r.header("etag")
    assert etag and etag.startswith('"') and etag.endswith('"'), etag  # strong: no W/
    with Conn(server.port, verify=False) as c:
        r2 = c.request("/a.txt", headers={"If-None-Match": etag})
        assert r2.status == 304
        assert r2.body == b""
        assert r2.header("etag") == etag
        # A 304 carries no body: the next response on the connection parses right.
        assert c.request("/b.txt").body == b"file B, a bit longer\n"


@pytest.mark.parametrize("inm,status", [
    ('"not-the-etag"', 200),
    ("*", 304),
    ('"x", {etag}, "y"', 304),
    ("W/{etag}", 304),  # RFC 9110 §13.1.2: If-None-Match uses the weak comparison
])
def test_if_none_match_variants(server, inm, status):
    etag = fetch(server, "/a.txt").header("etag")
    r = fetch(server, "/a.txt", headers={"If-None-Match": inm.format(etag=etag)})
    assert r.status == status
    if status == 200:
        assert r.body == b"file A\n"


def test_etag_differs_per_file_and_changes(server, www):
    assert fetch(server, "/a.txt").header("etag") != fetch(server, "/c.txt").header("etag")
    f = www / "mutable.txt"
    f.write_text("version one\n")
    os.utime(f, (time.time() - 100, time.time() - 100))
    e1 = fetch(server, "/mutable.txt").header("etag")
    f.write_text("version two, longer\n")
    time.sleep(1.2)  # limits.file_cache_valid (1s): a kept file is checked again after it
    e2_resp = fetch(server, "/mutable.txt")
    assert e2_resp.body == b"version two, longer\n"
    assert e2_resp.header("etag") != e1
    assert fetch(server, "/mutable.txt", headers={"If-None-Match": e1}).status == 200


def test_etag_changes_on_touch_and_on_replace_and_hides_the_inode(server, www):
    """The ETag mixes inode, size and mtime (ns): a touch alone and a same-size, same-mtime
    replacement by rename (a new inode) each change it; the inode number is not in it (the
    disclosure of Apache's CVE-2003-1418)."""
    f = www / "same-size.txt"
    f.write_text("aaaa\n")
    old = time.time() - 100
    os.utime(f, (old, old))
    e1 = fetch(server, "/same-size.txt").header("etag")
    assert e1.startswith('"') and e1.endswith('"') and len(e1) <= 18, e1
    assert format(os.stat(f).st_ino, "x") not in e1, e1
    os.utime(f, (old + 1, old + 1))  # the same bytes, a new modification time
    time.sleep(1.2)  # limits.file_cache_valid (1s)
    e2 = fetch(server, "/same-size.txt").header("etag")
    assert e2 != e1
    st = os.stat(f)
    tmp = www / "same-size.txt.new"
    tmp.write_text("bbbb\n")  # same size
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime to the nanosecond
    assert os.stat(tmp).st_ino != st.st_ino
    os.rename(tmp, f)
    time.sleep(1.2)
    r = fetch(server, "/same-size.txt")
    assert r.body == b"bbbb\n"
    assert r.header("etag") not in (e1, e2), (r.header("etag"), e1, e2)
    assert fetch(server, "/same-size.txt", headers={"If-None-Match": e2}).status == 200


def test_last_modified_and_ims(server, www):
    r = fetch(server, "/a.txt")
    lm = r.header("last-modified")
    assert lm
    lm_ts = email.utils.parsedate_to_datetime(lm).timestamp()
    assert abs(lm_ts - int((www / "a.txt").stat().st_mtime)) <= 1
    assert fetch(server, "/a.txt", headers={"If-Modified-Since": lm}).status == 304
    older = email.utils.formatdate(lm_ts - 86400, usegmt=True)
    r2 = fetch(server, "/a.txt", headers={"If-Modified-Since": older})
    assert r2.status == 200
    assert r2.body == b"file A\n"
    assert fetch(server, "/a.txt", headers={"If-Modified-Since": "garbage"}).status == 200


def test_if_none_match_wins_over_ims(server):
    # RFC 9110 §13.1.3: with If-None-Match present, If-Modified-Since is ignored.
    lm = fetch(server, "/a.txt").header("last-modified")
    r = fetch(server, "/a.txt", headers={"If-None-Match": '"other"', "If-Modified-Since": lm})
    assert r.status == 200


# -- ranges ------------------------------------------------------------------------------------

SIZE = 20  # digits.txt = "0123456789abcdefghij"


@pytest.mark.parametrize("rng,body,crange", [
    ("bytes=0-9", b"0123456789", "bytes 0-9/20"),
    ("bytes=10-", b"abcdefghij", "bytes 10-19/20"),
    ("bytes=-5", b"fghij", "bytes 15-19/20"),
    ("bytes=5-5", b"5", "bytes 5-5/20"),
    ("bytes=15-100", b"fghij", "bytes 15-19/20"),
    ("bytes=0-", b"0123456789abcdefghij", "bytes 0-19/20"),
])
def test_single_range(server, rng, body, crange):
    r = fetch(server, "/digits.txt", headers={"Range": rng})
    assert r.status == 206
    assert r.body == body
    assert r.header("content-range") == crange
    assert r.header("content-length") == str(len(body))


@pytest.mark.parametrize("rng", ["bytes=20-", "bytes=25-30", "bytes=20-20"])
def test_unsatisfiable_range(server, rng):
    with Conn(server.port, verify=False) as c:
        r = c.request("/digits.txt", headers={"Range": rng})
        assert r.status == 416
        assert r.header("content-range") == "bytes */%d" % SIZE
        assert b"0123" not in r.body
        assert c.request("/a.txt").status == 200  # the connection goes on


def test_range_ignored_when_invalid(server):
    for rng in ["items=0-1", "bytes=abc", "bytes=5-2"]:
        r = fetch(server, "/digits.txt", headers={"Range": rng})
        assert r.status in (200, 416), (rng, r)
        if r.status == 200:
            assert r.body == b"0123456789abcdefghij"


def test_multiple_ranges_not_misanswered(server):
    r = fetch(server, "/digits.txt", headers={"Range": "bytes=0-1,5-6"})
    assert r.status in (200, 206, 416)
    if r.status == 200:
        assert r.body == b"0123456789abcdefghij"
    if r.status == 206:
        assert r.header("content-type", "").startswith("multipart/byteranges")


def test_accept_ranges_advertised(server):
    assert fetch(server, "/digits.txt").header("accept-ranges") == "bytes"


def test_range_in_big_file(server, www):
    want = (www / "big.bin").read_bytes()[1000000:1000100]
    r = fetch(server, "/big.bin", headers={"Range": "bytes=1000000-1000099"})
    assert r.status == 206
    assert r.body == want


def test_if_range(server):
    etag = fetch(server, "/digits.txt").header("etag")
    r = fetch(server, "/digits.txt", headers={"Range": "bytes=0-1", "If-Range": etag})
    assert r.status == 206 and r.body == b"01"
    r = fetch(server, "/digits.txt", headers={"Range": "bytes=0-1", "If-Range": '"stale"'})
    assert r.status == 200 and r.body == b"0123456789abcdefghij"


# -- directories -------------------------------------------------------------------------------


def test_listing_off_by_default(server):
    r = fetch(server, "/nolist/")
    assert r.status == 403
    assert b"two-entry.txt" not in r.body


def test_listing_on(server):
    r = fetch(server, "/nolist/", host="listing.test")
    assert r.status == 200
    assert b"one.txt" in r.body and b"two-entry.txt" in r.body
    assert b".dotfile" not in r.body
    # Names are escaped in the HTML.
    assert b"x<b>&.txt" not in r.body
    assert b"&lt;b&gt;" in r.body
    assert r.header("content-type", "").startswith("text/html")


def test_listing_of_a_large_folder(server, www):
    # A folder of thousands of entries once overflowed the listing buffer and answered 500.
    big = www / "biglist"
    big.mkdir(exist_ok=True)
    for i in range(3000):
        (big / ("entry-%04d.txt" % i)).touch()
    r = fetch(server, "/biglist/", host="listing.test")
    assert r.status == 200, r.status
    assert b"entry-0000.txt" in r.body and b"entry-2999.txt" in r.body


def test_listing_on_index_wins(server):
    r = fetch(server, "/", host="listing.test")
    assert r.status == 200
    assert b"INDEX-PAGE" in r.body


@pytest.mark.parametrize("path,location", [("/sub", "/sub/"), ("/nolist", "/nolist/"),
                                           ("/sub?x=1", "/sub/?x=1")])
def test_directory_without_slash_redirects(server, path, location):
    r = fetch(server, path)
    assert r.status == 301
    loc = r.header("location", "")
    assert loc == location or loc.endswith("example.test" + location) or \
        loc.endswith(":%d%s" % (server.port, location)), loc


# -- dot-files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/.hidden", "/.git/config", "/.git/", "/.git",
                                  "/sub/.secret", "/%2ehidden", "/nolist/.dotfile"])
def test_dot_files_hidden(server, path):
    r = fetch(server, path)
    assert r.status == 404
    assert b"HIDDEN" not in r.body and b"DOT" not in r.body


def test_well_known_served(server):
    r = fetch(server, "/.well-known/acme-challenge/token123")
    assert r.status == 200
    assert r.body == b"WELL-KNOWN-TOKEN\n"


# -- traversal ---------------------------------------------------------------------------------

TRAVERSAL = [
    "/../secret.txt",
    "/../../secret.txt",
    "/sub/../../secret.txt",
    "/./../secret.txt",
    "//../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/.%2e/secret.txt",
    "/%2e./secret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "/..%2fsecret.txt",
    "/%2f..%2fsecret.txt",
    "/sub%2f..%2f..%2fsecret.txt",
    "/sub/..%2f..%2fsecret.txt",
    "/..%5csecret.txt",
    "/sub%5c..%5c..%5csecret.txt",
    "/..\\secret.txt",
    "/%252e%252e/secret.txt",
    "/%c0%ae%c0%ae/secret.txt",
    "/..;/secret.txt",
    "/a.txt%00.html",
    "/%00",
    "/secret.txt%00",
    "/..%00/secret.txt",
    "/link-out.txt",
    "/rel-link-out.txt",
    "/linkdir/secret.txt",
    "/linkdir/www/a.txt",
    "http://example.test/../secret.txt",
    "https://example.test/%2e%2e/secret.txt",
]


@pytest.mark.parametrize("target", TRAVERSAL)
def test_traversal_refused(server, target):
    with Conn(server.port, verify=False) as c:
        c.send(("GET %s HTTP/1.1\r\nHost: example.test\r\n\r\n" % target).encode("latin-1"))
        r = c.read_response()
        assert r.status in (400, 403, 404), r
        assert SECRET_WORD not in r.body
        if target == "/linkdir/www/a.txt":
            assert b"file A" not in r.body


@pytest.mark.parametrize("target", ["/../secret.txt", "/%2e%2e/secret.txt", "/link-out.txt",
                                    "/linkdir/secret.txt"])
def test_traversal_with_curl_path_as_is(server, pki, tmp_path, target):
    r = curl(tmp_path, "https://example.test:%d%s" % (server.port, target), "--path-as-is",
             port=server.port, cacert=pki.root)
    assert r.rc == 0, r.stderr
    assert r.status in (400, 403, 404)
    assert SECRET_WORD not in r.body


def test_secret_never_in_any_response_pipelined(server):
    # All traversal targets on one connection (until the server closes it after an error).
    with Conn(server.port, verify=False) as c:
        data = b"".join(build_request(t) for t in TRAVERSAL if " " not in t)
        try:
            c.send(data)
        except OSError:
            pass
        try:
            while c._fill(timeout=1.5):
                pass
        except (TimeoutError, OSError):
            pass
        assert SECRET_WORD not in c.buf


# -- the open-file cache (limits { file_cache, file_cache_valid }) -----------------------------


def _cache_server(moat, pki, www, limits):
    from helpers import standard_config
    m = moat("fcache")
    m.write_config(standard_config(m, pki, www, workers=1, limits=limits))
    m.start()
    return m


def test_a_changed_or_replaced_file_is_fresh_after_file_cache_valid(moat, pki, www):
    m = _cache_server(moat, pki, www, "file_cache 100; file_cache_valid 300ms")
    f = www / "cached.txt"
    f.write_text("one\n")
    assert fetch(m, "/cached.txt").body == b"one\n"
    f.write_text("two, in place\n")
    time.sleep(0.4)
    r = fetch(m, "/cached.txt")
    assert r.body == b"two, in place\n" and r.header("content-length") == "14", r
    tmp = www / "cached.new"
    tmp.write_text("three, renamed over\n")
    os.rename(tmp, f)
    time.sleep(0.4)
    assert fetch(m, "/cached.txt").body == b"three, renamed over\n"
    f.unlink()
    time.sleep(0.4)
    assert fetch(m, "/cached.txt").status == 404


def test_a_kept_file_swapped_for_a_symlink_out_of_the_root_is_refused(moat, pki, www, secret):
    # The cache must not become a way around the secure open: once the window passes, the
    # path is checked again and a symbolic link in the file's place is opened (and refused)
    # the normal way.
    m = _cache_server(moat, pki, www, "file_cache 100; file_cache_valid 200ms")
    f = www / "swapped.txt"
    f.write_text("harmless\n")
    try:
        assert fetch(m, "/swapped.txt").body == b"harmless\n"
        f.unlink()
        os.symlink(secret, f)
        time.sleep(0.3)
        r = fetch(m, "/swapped.txt")
        assert r.status in (403, 404), r
        assert SECRET_WORD not in r.body
    finally:
        if f.is_symlink() or f.exists():
            f.unlink()


def test_a_directory_index_is_kept_and_stays_fresh(moat, pki, www, secret):
    # "/dir/" is answered from the cached "dir/index.html" (no open of the directory or the
    # index), under the same freshness rule: a changed, removed or swapped index shows once
    # the window passes, and a directory replaced by a file is a 404 again.
    m = _cache_server(moat, pki, www, "file_cache 100; file_cache_valid 200ms")
    d = www / "kept"
    d.mkdir()
    idx = d / "index.html"
    try:
        idx.write_text("<p>one</p>\n")
        for _ in range(3):
            r = fetch(m, "/kept/")
            assert r.status == 200 and r.body == b"<p>one</p>\n", r
            assert r.header("content-type").startswith("text/html"), r
        etag = r.header("etag")
        assert fetch(m, "/kept/", headers={"If-None-Match": etag}).status == 304
        assert fetch(m, "/kept").status == 301  # the slash-less name still redirects
        idx.write_text("<p>two, longer</p>\n")
        time.sleep(0.3)
        r = fetch(m, "/kept/")
        assert r.body == b"<p>two, longer</p>\n" and r.header("etag") != etag, r
        idx.unlink()
        time.sleep(0.3)
        assert fetch(m, "/kept/").status == 403  # no index, listings off
        os.symlink(secret, idx)
        time.sleep(0.3)
        r = fetch(m, "/kept/")
        assert r.status in (403, 404) and SECRET_WORD not in r.body, r
        idx.unlink()
        idx.write_text("<p>three</p>\n")
        assert fetch(m, "/kept/").body == b"<p>three</p>\n"
        idx.unlink()
        d.rmdir()
        d.write_text("now a file\n")
        time.sleep(0.3)
        assert fetch(m, "/kept/").status == 404
    finally:
        if d.is_dir():
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
        elif d.exists():
            d.unlink()


def test_file_cache_0_serves_every_change_at_once(moat, pki, www):
    m = _cache_server(moat, pki, www, "file_cache 0")
    f = www / "uncached.txt"
    for i in range(3):
        f.write_text("version %d\n" % i)
        assert fetch(m, "/uncached.txt").body == b"version %d\n" % i
    f.unlink()
