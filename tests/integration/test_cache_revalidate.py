"""The HTTP cache past freshness (docs/cache.md), against an origin that answers conditional
requests and can be made to fail: revalidation with If-None-Match / If-Modified-Since and a 304
that refreshes the stored fields (RFC 9111 §4.3); the client's own conditionals answered by
moat while the origin sends the full answer to store; stale-if-error on an origin error and on
an origin that is gone, and its limits (RFC 5861 §4, must-revalidate); stale-while-revalidate
with one background revalidation (RFC 5861 §3); ranges served from a stored answer (RFC 9110
§14), on the small-body and the memory-file paths, over HTTP/1.1 and HTTP/2.
"""

import re
import threading
import time

import pytest

from cache_origin import LAST_MODIFIED, origin, start_origin  # noqa: F401 (a fixture)
from conftest import _finish
from h2_helpers import H2Conn
from helpers import Conn, Moat, build_request


@pytest.fixture(scope="module")
def gone():
    """An origin the test takes away: what stale-if-error stands in for."""
    o = start_origin(close=True)
    yield o
    try:
        o.shutdown()
        o.server_close()
    except OSError:
        pass


@pytest.fixture(scope="module")
def srv(moat_bin, pki, origin, gone, tmp_path_factory):
    m = Moat(moat_bin, tmp_path_factory.mktemp("cache-rv"), name="cache-rv")
    m.write_config(f"""\
listen 127.0.0.1:{m.port}
workers 2
state {m.state}
error_log stderr info
cache_memory 4m
cache_max_object 1m
cache_lock_timeout 2s
site example.test {{
    cert {pki.ec.chain} {pki.ec.key}
    proxy http://127.0.0.1:{origin.server_address[1]}
    cache on
}}
site key.test {{
    cert {pki.ec.chain} {pki.ec.key}
    proxy http://127.0.0.1:{origin.server_address[1]}
    cache on
    cache_key host header:X-Tenant cookie:lang
    cache_purge 127.0.0.1
}}
site gone.test {{
    cert {pki.ec.chain} {pki.ec.key}
    proxy http://127.0.0.1:{gone.server_address[1]}
    cache on
}}
""")
    m.start()
    yield m
    _finish(m)


def ask(m, path, headers=(), host="example.test", method="GET"):
    with Conn(m.port, sni=host, verify=False) as c:
        c.send(build_request(path, method=method, host=host, headers=list(headers)))
        return c.read_response(method)


def cs(r):
    return r.header("cache-status") or ""


def wait_for(pred, what, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def test_304_refreshes_the_stored_answer(srv, origin):
    origin.route("/rv", cc="max-age=1", etag='"v1"')
    a = ask(srv, "/rv")
    assert a.status == 200 and a.body == b"/rv 1" and "stored" in cs(a)
    # the 304 brings a longer lifetime: with max-age=1 and whole-second clocks the refreshed
    # answer could be stale again by the next request
    origin.route("/rv", cc="max-age=60")
    time.sleep(2.1)
    b = ask(srv, "/rv")
    seen = origin.requests_for("/rv")
    assert seen[-1].get("if-none-match") == '"v1"', "the revalidation carries the stored ETag"
    assert b.status == 200 and b.body == b"/rv 1", "the stored body answers after a 304"
    assert re.search(r"fwd=stale; fwd-status=304", cs(b)), b.headers
    assert b.header("x-gen") == "2", "the 304's fields replace the stored ones"
    c = ask(srv, "/rv")
    assert "hit" in cs(c) and c.header("x-gen") == "2" and c.body == b"/rv 1"
    assert origin.count("/rv") == 2


def test_last_modified_revalidation(srv, origin):
    origin.route("/rv-lm", cc="max-age=1", lm=True)
    ask(srv, "/rv-lm")
    time.sleep(2.1)
    b = ask(srv, "/rv-lm")
    assert origin.requests_for("/rv-lm")[-1].get("if-modified-since") == LAST_MODIFIED
    assert b.status == 200 and b.body == b"/rv-lm 1" and "fwd-status=304" in cs(b)


def test_changed_answer_replaces_the_stored_one(srv, origin):
    origin.route("/rv-new", cc="max-age=1", etag='"a"')
    ask(srv, "/rv-new")
    time.sleep(2.1)
    origin.route("/rv-new", cc="max-age=60", etag='"b"')
    b = ask(srv, "/rv-new")
    assert b.status == 200 and b.body == b"/rv-new 2" and b.header("etag") == '"b"'
    assert "stored" in cs(b)
    c = ask(srv, "/rv-new")
    assert "hit" in cs(c) and c.body == b"/rv-new 2"


def test_no_cache_answer_is_revalidated_every_time(srv, origin):
    origin.route("/nc", cc="no-cache", etag='"nc"')
    a = ask(srv, "/nc")
    assert a.body == b"/nc 1"
    for i in range(2, 4):
        r = ask(srv, "/nc")
        assert r.status == 200 and r.body == b"/nc 1", "the body comes from the store"
        assert "fwd-status=304" in cs(r)
        assert origin.count("/nc") == i, "every use asks the origin"


def test_stale_on_arrival_with_a_validator_is_kept(srv, origin):
    origin.route("/ma0", cc="max-age=0", etag='"z"')
    a = ask(srv, "/ma0")
    assert "stored" in cs(a)
    b = ask(srv, "/ma0")
    assert b.body == b"/ma0 1" and "fwd-status=304" in cs(b)


def test_client_conditionals_on_a_miss_are_answered_by_moat(srv, origin):
    origin.route("/cond", etag='"c1"')
    a = ask(srv, "/cond", headers=[("If-None-Match", '"c1"')])
    assert a.status == 304 and a.body == b"" and a.header("etag") == '"c1"'
    assert "if-none-match" not in origin.requests_for("/cond")[-1], \
        "the origin is asked for the whole answer, to store"
    time.sleep(0.3)  # the 304 went out at once; the body is stored as it comes
    b = ask(srv, "/cond")
    assert b.status == 200 and b.body == b"/cond 1" and "hit" in cs(b)
    c = ask(srv, "/cond", headers=[("If-None-Match", '"other"')])
    assert c.status == 200 and c.body == b"/cond 1"
    assert origin.count("/cond") == 1


def test_client_conditional_through_a_revalidation(srv, origin):
    origin.route("/cond-rv", cc="max-age=1", etag='"r1"')
    ask(srv, "/cond-rv")
    time.sleep(2.1)
    r = ask(srv, "/cond-rv", headers=[("If-None-Match", '"r1"')])
    assert r.status == 304 and "fwd-status=304" in cs(r)


def test_stale_if_error_on_an_origin_error(srv, origin):
    origin.route("/sie", cc="max-age=1, stale-if-error=60")
    ask(srv, "/sie")
    time.sleep(2.1)
    origin.route("/sie", fail=503)
    b = ask(srv, "/sie")
    assert b.status == 200 and b.body == b"/sie 1", (b.status, b.body)
    assert "stale-if-error" in cs(b) and "fwd-status=503" in cs(b)
    origin.route("/sie", fail=None)
    c = ask(srv, "/sie")
    assert c.status == 200 and c.body == b"/sie 3", "the origin back: a fresh answer"


def test_stale_if_error_limits(srv, origin):
    origin.route("/sie-mr", cc="max-age=1, stale-if-error=60, must-revalidate")
    origin.route("/sie-short", cc="max-age=1, stale-if-error=1")
    origin.route("/no-sie", cc="max-age=1")
    for p in ("/sie-mr", "/sie-short", "/no-sie"):
        ask(srv, p)
    time.sleep(3.1)
    for p in ("/sie-mr", "/sie-short", "/no-sie"):
        origin.route(p, fail=502)
        r = ask(srv, p)
        assert r.status == 502 and r.body == b"origin trouble", (p, r.status, cs(r))


def test_stale_if_error_from_the_request(srv, origin):
    origin.route("/sie-req", cc="max-age=1")
    ask(srv, "/sie-req")
    time.sleep(2.1)
    origin.route("/sie-req", fail=500)
    r = ask(srv, "/sie-req", headers=[("Cache-Control", "stale-if-error=600")])
    assert r.status == 200 and r.body == b"/sie-req 1" and "stale-if-error" in cs(r)


def test_stale_if_error_when_the_origin_is_gone(srv, gone):
    gone.route("/down", cc="max-age=1, stale-if-error=60", etag='"d"')
    a = ask(srv, "/down", host="gone.test")
    assert a.status == 200
    gone.shutdown()
    gone.server_close()
    time.sleep(2.1)
    b = ask(srv, "/down", host="gone.test")
    assert b.status == 200 and b.body == b"/down 1", (b.status, b.headers)
    assert "stale-if-error" in cs(b)
    c = ask(srv, "/down", host="gone.test", headers=[("Range", "bytes=1-3")])
    assert c.status == 206 and c.body == b"dow"


def test_an_origin_that_is_gone_is_named_in_cache_status(srv, gone):
    gone.shutdown()  # again, when the test before did it: a no-op
    gone.server_close()
    r = ask(srv, "/nothing-stored", host="gone.test")
    assert r.status == 502 and 'detail="no origin answer"' in cs(r), (r.status, r.headers)


def test_stale_while_revalidate(srv, origin):
    origin.route("/swr", cc="max-age=1, stale-while-revalidate=30")
    ask(srv, "/swr")
    origin.route("/swr", cc="max-age=60")  # what the revalidation brings stays fresh
    time.sleep(2.1)
    t0 = time.time()
    answers = [ask(srv, "/swr") for _ in range(4)]
    for r in answers:
        assert r.status == 200 and r.body in (b"/swr 1", b"/swr 2")
    assert answers[0].body == b"/swr 1", "the stale answer goes out at once"
    assert "stale-while-revalidate" in cs(answers[0]) and "hit" in cs(answers[0])
    assert re.search(r"ttl=-\d+", cs(answers[0]))
    wait_for(lambda: origin.count("/swr") >= 2, "the background revalidation")
    time.sleep(0.3)
    assert origin.count("/swr") == 2, "one background revalidation, however many stale hits"
    r = ask(srv, "/swr")
    assert r.body == b"/swr 2" and "hit" in cs(r) and "stale" not in cs(r)
    assert time.time() - t0 < 30


def test_stale_while_revalidate_not_when_the_client_wants_fresh(srv, origin):
    origin.route("/swr-nc", cc="max-age=1, stale-while-revalidate=30")
    ask(srv, "/swr-nc")
    time.sleep(2.1)
    r = ask(srv, "/swr-nc", headers=[("Cache-Control", "no-cache")])
    assert r.body == b"/swr-nc 2" and "hit" not in cs(r)


@pytest.mark.parametrize("size", [1000, 100_000])
def test_ranges_from_a_stored_answer(srv, origin, size):
    path = "/range-%d" % size
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    origin.route(path, etag='"r%d"' % size, body=body)
    full = ask(srv, path)
    assert full.status == 200 and full.body == body
    r = ask(srv, path, headers=[("Range", "bytes=10-19")])
    assert r.status == 206 and r.body == body[10:20] and "hit" in cs(r)
    assert r.header("content-range") == "bytes 10-19/%d" % size
    r = ask(srv, path, headers=[("Range", "bytes=-5")])
    assert r.status == 206 and r.body == body[-5:]
    r = ask(srv, path, headers=[("Range", "bytes=%d-" % (size - 3))])
    assert r.status == 206 and r.body == body[-3:]
    r = ask(srv, path, headers=[("Range", "bytes=%d-" % (size + 10))])
    assert r.status == 416 and r.header("content-range") == "bytes */%d" % size
    r = ask(srv, path, headers=[("Range", "bytes=0-1"), ("If-Range", '"other"')])
    assert r.status == 200 and r.body == body, "If-Range that does not match: the whole"
    r = ask(srv, path, headers=[("Range", "bytes=0-1"), ("If-Range", '"r%d"' % size)])
    assert r.status == 206 and r.body == body[:2]
    r = ask(srv, path, headers=[("Range", "bytes=0-1,5-6")])
    assert r.status == 200 and r.body == body, "several ranges: the whole answer"
    assert origin.count(path) == 1


def test_range_over_http2_and_a_revalidation_over_http2(srv, origin):
    body = b"0123456789" * 3000
    origin.route("/h2r", cc="max-age=1", etag='"h"', body=body)
    ask(srv, "/h2r")
    with H2Conn(srv.port) as c:
        st = c.get("/h2r", headers=[("range", "bytes=100-199")])
        assert st.status == 206 and bytes(st.body) == body[100:200]
    time.sleep(2.1)
    with H2Conn(srv.port) as c:
        st = c.get("/h2r")
        assert st.status == 200 and bytes(st.body) == body
        assert "fwd-status=304" in (st.header("cache-status") or "")


def side_by_side(fn, n):
    out = [None] * n

    def run(i):
        out[i] = fn()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert all(r is not None for r in out)
    return out


def test_concurrent_misses_make_one_origin_request(srv, origin):
    origin.route("/slow", delay=1.0)
    rs = side_by_side(lambda: ask(srv, "/slow"), 8)
    assert origin.count("/slow") == 1, [cs(r) for r in rs]
    assert all(r.status == 200 and r.body == b"/slow 1" for r in rs)
    statuses = [cs(r) for r in rs]
    assert sum("stored" in x for x in statuses) == 1, statuses
    assert sum("collapsed" in x for x in statuses) == 7, statuses


def test_collapsing_over_http2_streams(srv, origin):
    origin.route("/slow-h2", delay=1.0)
    with H2Conn(srv.port) as c:
        sids = [c.request("/slow-h2") for _ in range(5)]
        sts = [c.response(sid, 15) for sid in sids]
    assert origin.count("/slow-h2") == 1
    assert all(st.status == 200 and bytes(st.body) == b"/slow-h2 1" for st in sts)


def test_an_answer_that_is_not_stored_lets_the_waiters_go(srv, origin):
    origin.route("/slow-private", cc="private", delay=0.7)
    rs = side_by_side(lambda: ask(srv, "/slow-private"), 4)
    assert origin.count("/slow-private") == 4, "each gets its own answer"
    assert len({r.body for r in rs}) == 4
    # The pass mark: the next concurrent misses go side by side, not one after another.
    side_by_side(lambda: ask(srv, "/slow-private"), 4)
    assert origin.count("/slow-private") == 8
    assert origin.most["/slow-private"] == 4, origin.most


def test_the_wait_is_bounded(srv, origin):
    origin.route("/slower", delay=3.0)
    rs = side_by_side(lambda: ask(srv, "/slower"), 3)
    assert origin.count("/slower") == 3, "past cache_lock_timeout each asks the origin itself"
    assert all(r.status == 200 for r in rs)
    assert not any("collapsed" in cs(r) for r in rs)


def test_a_waiter_that_leaves(srv, origin):
    origin.route("/slow-gone", delay=1.0)
    lead = threading.Thread(target=lambda: ask(srv, "/slow-gone"))
    lead.start()
    time.sleep(0.2)
    for _ in range(3):
        c = Conn(srv.port, sni="example.test", verify=False)
        c.send(build_request("/slow-gone", host="example.test"))
        c.close()
    lead.join(10)
    r = ask(srv, "/slow-gone")
    assert r.status == 200 and r.body == b"/slow-gone 1" and "hit" in cs(r)
    assert origin.count("/slow-gone") == 1


def test_the_configured_key(srv, origin):
    origin.route("/k")
    h = "key.test"
    a = ask(srv, "/k", host=h, headers=[("X-Tenant", "a")])
    b = ask(srv, "/k", host=h, headers=[("X-Tenant", "b")])
    assert a.body == b"/k 1" and b.body == b"/k 2", "header:X-Tenant keeps tenants apart"
    c = ask(srv, "/k?utm=1", host=h, headers=[("x-tenant", "a")])
    assert c.body == b"/k 1" and "hit" in cs(c), "the query is not in this key"
    d = ask(srv, "/k", host=h, headers=[("X-Tenant", "a"), ("Cookie", "x=1; lang=de")])
    e = ask(srv, "/k", host=h, headers=[("X-Tenant", "a"), ("Cookie", "lang=de")])
    assert d.body == b"/k 3" and e.body == b"/k 3" and "hit" in cs(e), "cookie:lang"
    assert origin.count("/k") == 3
    p = ask(srv, "/k", host=h, method="PURGE")
    assert p.status == 200 and b'"purged": 3' in p.body, p.body
    f = ask(srv, "/k", host=h, headers=[("X-Tenant", "a")])
    assert f.body == b"/k 4"
