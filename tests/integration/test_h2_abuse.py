"""HTTP/2 peers that break the rules or try to wear the server down, at the frame level
(h2_helpers.H2Conn over TLS with ALPN h2).

Protocol errors (RFC 9113 §5.4, §6, §8.1.1, §8.2, §8.3; RFC 7541 for HPACK): each case sends
one bad thing after a good handshake and expects what the RFC requires: a connection error
(GOAWAY with the code, then the close) or a stream error (RST_STREAM on that stream, after
which the same connection still serves a request on a new stream).

Abuse (limits { h2_frames 50; h2_resets 20 }, timeouts { write 1s }): rapid reset
(CVE-2023-44487), SETTINGS / PING / PRIORITY / PRIORITY_UPDATE / empty-DATA floods, a
CONTINUATION flood (CVE-2024-27316 style), and a peer that shrinks the flow-control window to
zero and never opens it while the server has a large file to send. Each offender gets GOAWAY
ENHANCE_YOUR_CALM (0xb) and the close, the error log says why in a line with "http2:", and a
bystander connected before the attack still gets its file afterwards.

Setting MOAT_H2_REFERENCE=nghttpd runs the protocol-error cases against Debian's nghttpd
instead of moat: a check of the tests themselves against a reference implementation.
"""

import base64
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

from conftest import _finish
from h2_helpers import (COMPRESSION_ERROR, CONTINUATION, DATA, ENABLE_PUSH, END_HEADERS,
                        END_STREAM, ENHANCE_YOUR_CALM, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR,
                        GOAWAY, HEADERS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, NO_ERROR, PING,
                        PROTOCOL_ERROR, PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE,
                        H2Conn, expect_connection_error, expect_stream_error, frame, ping,
                        priority, priority_update, rst_stream, settings_frame, window_update)
from helpers import Moat, free_port, log_after, make_www, wait_for
from origin import Origin

REFERENCE = os.environ.get("MOAT_H2_REFERENCE")


@pytest.fixture(scope="module")
def origin():
    with Origin() as o:
        yield o


@pytest.fixture(scope="module")
def docroot(tmp_path_factory):
    www, _ = make_www(tmp_path_factory.mktemp("h2-abuse-www"))
    with open(www / "huge.bin", "wb") as f:
        f.truncate(8 * 1024 * 1024)
    return www


def abuse_config(m, pki, www, origin):
    return f"""\
listen 127.0.0.1:{m.port}
workers 2
state {m.state}
access_log {m.access_log} json
error_log stderr info
trust {pki.root}
timeouts {{ head 3s; idle 5s; body 3s; write 1s; drain 3s; handshake 3s }}
limits {{ body 64k; header_bytes 16k; header_fields 100; h2_frames 50; h2_resets 20 }}
site example.test www.example.test {{
    cert {pki.ec.chain} {pki.ec.key}
    root {www}
}}
site proxy.test {{
    cert {pki.ec.chain} {pki.ec.key}
    proxy {origin.url}
}}
"""


class Nghttpd:
    """Debian's nghttpd on the same docroot, as a reference h2 server (MOAT_H2_REFERENCE)."""

    def __init__(self, pki, www, workdir):
        exe = shutil.which("nghttpd")
        if exe is None:
            pytest.skip("nghttpd not installed (Debian package nghttp2-server)")
        self.port = free_port()
        self.log = open(workdir / "nghttpd.log", "wb")
        self.proc = subprocess.Popen(
            [exe, "--address=127.0.0.1", "--htdocs", str(www), str(self.port), str(pki.ec.key),
             str(pki.ec.chain)], stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        assert wait_for(up, 10), "nghttpd did not start"

    def alive(self):
        return self.proc.poll() is None

    def stderr(self):
        return ""

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def _abuse_server(moat_bin, pki, docroot, origin, tmp_path_factory):
    if REFERENCE == "nghttpd":
        n = Nghttpd(pki, docroot, tmp_path_factory.mktemp("nghttpd"))
        yield n
        n.stop()
        return
    m = Moat(moat_bin, tmp_path_factory.mktemp("h2-abuse"), name="h2-abuse")
    m.write_config(abuse_config(m, pki, docroot, origin))
    m.start()
    yield m
    _finish(m)


@pytest.fixture
def srv(_abuse_server):
    m = _abuse_server
    if not m.alive():
        if isinstance(m, Nghttpd):
            pytest.fail("nghttpd died")
        m.stop()
        m.start()
    return m


def h2(m, sni="example.test", **kw):
    return H2Conn(m.port, sni=sni, **kw)


def assert_usable(c, path="/a.txt", body=b"file A\n"):
    """The connection still serves a request on a new stream."""
    st = c.get(path)
    assert st.status == 200, st
    assert bytes(st.body) == body
    assert c.goaway is None or c.goaway.code == NO_ERROR, c.goaway


# -- protocol errors: connection errors ----------------------------------------------------------


def _open_stream(c, path="/a.txt", end_stream=False, authority=None, method="GET"):
    sid = c.new_sid()
    c.headers(sid, c.request_fields(path, method, authority), end_stream=end_stream)
    return sid


# Field values that HPACK's Huffman code cannot shrink below 16 KiB.
RANDOM_30K = base64.b64encode(random.Random(7).randbytes(22500)).decode()

CONNECTION_ERRORS = {
    # RFC 9113 §6.1: DATA frames MUST be associated with a stream.
    "data-on-stream-0": (lambda c: c.send(frame(DATA, 0, 0, b"x")), PROTOCOL_ERROR),
    # §5.1.1: streams initiated by a client MUST use odd-numbered identifiers.
    "headers-on-even-stream": (lambda c: c.headers(2, c.request_fields("/a.txt")),
                               PROTOCOL_ERROR),
    # §6.2: HEADERS on stream 0.
    "headers-on-stream-0": (lambda c: c.headers(0, c.request_fields("/a.txt")),
                            PROTOCOL_ERROR),
    # §6.5: a length that is not a multiple of 6 is FRAME_SIZE_ERROR.
    "settings-length-7": (lambda c: c.send(frame(SETTINGS, 0, 0, b"\0" * 7)),
                          FRAME_SIZE_ERROR),
    # §6.5: an ACK with a payload is FRAME_SIZE_ERROR.
    "settings-ack-with-payload": (lambda c: c.send(frame(SETTINGS, 1, 0, b"\0" * 6)),
                                  FRAME_SIZE_ERROR),
    # §6.5: SETTINGS on a stream is PROTOCOL_ERROR.
    "settings-on-stream-1": (lambda c: c.send(frame(SETTINGS, 0, 1, b"")), PROTOCOL_ERROR),
    # §6.5.2: ENABLE_PUSH other than 0 or 1.
    "settings-enable-push-2": (lambda c: c.send(settings_frame([(ENABLE_PUSH, 2)])),
                               PROTOCOL_ERROR),
    # §6.5.2: INITIAL_WINDOW_SIZE above 2^31-1 is FLOW_CONTROL_ERROR.
    "settings-initial-window-2^31": (
        lambda c: c.send(settings_frame([(INITIAL_WINDOW_SIZE, 1 << 31)])),
        FLOW_CONTROL_ERROR),
    # §6.5.2: MAX_FRAME_SIZE below 2^14 is PROTOCOL_ERROR.
    "settings-max-frame-size-16383": (
        lambda c: c.send(settings_frame([(MAX_FRAME_SIZE, 16383)])), PROTOCOL_ERROR),
    # §6.7: PING with a length other than 8 is FRAME_SIZE_ERROR; on a stream, PROTOCOL_ERROR.
    "ping-length-7": (lambda c: c.send(frame(PING, 0, 0, b"1234567")), FRAME_SIZE_ERROR),
    "ping-on-stream-1": (lambda c: c.send(frame(PING, 0, 1, b"12345678")), PROTOCOL_ERROR),
    # §6.8: GOAWAY on a stream.
    "goaway-on-stream-1": (lambda c: c.send(frame(GOAWAY, 0, 1, b"\0" * 8)), PROTOCOL_ERROR),
    # §6.9: a WINDOW_UPDATE of 0 on the connection is PROTOCOL_ERROR.
    "window-update-0-on-connection": (lambda c: c.send(window_update(0, 0)), PROTOCOL_ERROR),
    # §6.9.1: a connection window above 2^31-1 is FLOW_CONTROL_ERROR.
    "connection-window-overflow": (lambda c: c.send(window_update(0, 0x7FFFFFFF)),
                                   FLOW_CONTROL_ERROR),
    # §6.9: WINDOW_UPDATE of a wrong length.
    "window-update-length-3": (lambda c: c.send(frame(WINDOW_UPDATE, 0, 0, b"\0\0\1")),
                               FRAME_SIZE_ERROR),
    # §5.1: frames other than HEADERS/PRIORITY on an idle stream are PROTOCOL_ERROR.
    "data-on-idle-stream": (lambda c: c.send(frame(DATA, END_STREAM, 1, b"x")),
                            PROTOCOL_ERROR),
    "rst-stream-on-idle-stream": (lambda c: c.send(rst_stream(7)), PROTOCOL_ERROR),
    "window-update-on-idle-stream": (lambda c: c.send(window_update(9, 100)), PROTOCOL_ERROR),
    # §8.4: a client cannot push.
    "push-promise-from-client": (
        lambda c: (_open_stream(c), c.send(frame(PUSH_PROMISE, END_HEADERS, 1,
                                                 struct.pack(">I", 2) +
                                                 c.encode(c.request_fields("/b.txt"))))),
        PROTOCOL_ERROR),
    # §6.10: CONTINUATION with no HEADERS before it.
    "continuation-without-headers": (
        lambda c: c.send(frame(CONTINUATION, END_HEADERS, 1, c.encode([("x-a", "b")]))),
        PROTOCOL_ERROR),
    # §6.2/§6.10: a header block must be followed only by its CONTINUATION frames.
    "headers-interrupted-by-ping": (
        lambda c: c.send(frame(HEADERS, END_STREAM, 1, c.encode(c.request_fields("/a.txt")))
                         + ping()),
        PROTOCOL_ERROR),
    # §4.2: a frame above SETTINGS_MAX_FRAME_SIZE (16384 by default) is FRAME_SIZE_ERROR,
    # always a connection error for a HEADERS frame.
    "headers-frame-too-large": (
        lambda c: c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1,
                               c.encode(c.request_fields("/a.txt", headers=[
                                   ("x-pad", RANDOM_30K)])))),
        FRAME_SIZE_ERROR),
    # RFC 7541 §2.3.3/§6.1: index 0 and an index past the tables are decoding errors, which
    # RFC 9113 §4.3 makes COMPRESSION_ERROR.
    "hpack-index-0": (lambda c: c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x80")),
                      COMPRESSION_ERROR),
    "hpack-index-out-of-range": (
        lambda c: c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\xff\x80\x01")),
        COMPRESSION_ERROR),
    # RFC 7541 §5.2: a Huffman string with an EOS symbol / bad padding.
    "hpack-bad-huffman": (
        lambda c: c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1,
                               b"\x82\x84\x87\x40\x83\xff\xff\xff\x01a")),
        COMPRESSION_ERROR),
    # RFC 7541 §4.2/§6.3: a table size update above the SETTINGS_HEADER_TABLE_SIZE.
    "hpack-table-size-too-big": (
        lambda c: c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1,
                               b"\x3f\xe1\xff\x03" + c.encode(c.request_fields("/a.txt")))),
        COMPRESSION_ERROR),
}


@pytest.mark.parametrize("case", sorted(CONNECTION_ERRORS))
def test_connection_error(srv, case):
    send, code = CONNECTION_ERRORS[case]
    with h2(srv) as c:
        send(c)
        g = expect_connection_error(c, code)
        assert g.last_sid % 2 == 1 or g.last_sid == 0, g


def test_bad_preface_is_closed(srv):
    with h2(srv, preface=False) as c:
        c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings_frame())
        c.wait_goaway(5)
        assert c.wait_closed(5), "still open after a bad preface; frames %r" % c.frames


def test_http1_request_over_h2_alpn_is_closed(srv):
    # ALPN said h2, the client speaks HTTP/1.1: not a preface (RFC 9113 §3.4).
    with h2(srv, preface=False) as c:
        c.send(b"GET /a.txt HTTP/1.1\r\nHost: example.test\r\n\r\n")
        c.wait_goaway(5)
        assert c.wait_closed(5)
        assert not any(f.type == HEADERS for f in c.frames)


def test_unknown_frame_type_and_setting_are_ignored(srv):
    # §4.1, §5.5: unknown frame types are ignored; §6.5.2: unknown settings are ignored.
    with h2(srv) as c:
        c.send(frame(0xEE, 0xFF, 0, b"whatever") + frame(0xEE, 0, 1, b"x" * 100))
        c.send(settings_frame([(0x4242, 7)]))
        assert_usable(c)


# -- protocol errors: stream errors -------------------------------------------------------------

PSEUDO = [(":method", "GET"), (":scheme", "https"), (":authority", "example.test"),
          (":path", "/a.txt")]


def _without(name):
    return [f for f in PSEUDO if f[0] != name]


STREAM_ERRORS = {
    # RFC 9113 §8.2.1: field names MUST be lower case; a request with upper case is malformed.
    "uppercase-field-name": PSEUDO + [("X-Upper", "1")],
    # §8.2.2: connection-specific fields.
    "connection-keep-alive": PSEUDO + [("connection", "keep-alive")],
    "keep-alive-field": PSEUDO + [("keep-alive", "timeout=5")],
    "transfer-encoding-chunked": PSEUDO + [("transfer-encoding", "chunked")],
    "upgrade-field": PSEUDO + [("upgrade", "h2c")],
    "proxy-connection-field": PSEUDO + [("proxy-connection", "keep-alive")],
    # §8.2.2: TE other than "trailers".
    "te-gzip": PSEUDO + [("te", "gzip")],
    # §8.3.1: :method, :scheme, :path are required (non-CONNECT), exactly once.
    "missing-path": _without(":path"),
    "missing-method": _without(":method"),
    "missing-scheme": _without(":scheme"),
    "duplicate-path": PSEUDO + [(":path", "/b.txt")],
    "empty-path": _without(":path") + [(":path", "")],
    # §8.3: pseudo-fields after regular fields, and unknown pseudo-fields.
    "pseudo-after-regular": [f for f in PSEUDO if f[0] != ":path"] + [("x-a", "1"),
                                                                      (":path", "/a.txt")],
    "unknown-pseudo": PSEUDO + [(":foo", "bar")],
    "response-pseudo-in-request": PSEUDO + [(":status", "200")],
    # §8.2.1: a field value with CR, LF or NUL.
    "cr-lf-in-value": PSEUDO + [("x-a", "b\r\nx-injected: 1")],
    "nul-in-value": PSEUDO + [("x-a", "b\0c")],
    # §8.2.1: a space or colon in a field name.
    "space-in-name": PSEUDO + [("x a", "1")],
    "colon-in-name": PSEUDO + [("x:a", "1")],
    "nul-in-name": PSEUDO + [("x\0a", "1")],
    # §8.2.1: whitespace around a field value.
    "value-leading-space": PSEUDO + [("x-a", " b")],
    "value-trailing-tab": PSEUDO + [("x-a", "b\t")],
    # §8.3.1: each pseudo-field once, none empty, each of its own syntax.
    "duplicate-method": PSEUDO + [(":method", "GET")],
    "duplicate-scheme": PSEUDO + [(":scheme", "https")],
    "duplicate-authority": PSEUDO + [(":authority", "example.test")],
    "empty-method": _without(":method") + [(":method", "")],
    "method-not-a-token": _without(":method") + [(":method", "G(T")],
    "scheme-not-a-scheme": _without(":scheme") + [(":scheme", "1https")],
    "authority-with-space": _without(":authority") + [(":authority", "example .test")],
    "path-with-space": _without(":path") + [(":path", "/a b")],
    # §8.3.1: an https :path is absolute, or "*" for OPTIONS only.
    "path-not-absolute": _without(":path") + [(":path", "a.txt")],
    "asterisk-path-for-get": _without(":path") + [(":path", "*")],
    # §8.3.1: the target's authority comes as :authority or host.
    "no-authority-nor-host": _without(":authority"),
    "host-twice": _without(":authority") + [("host", "example.test"), ("host", "example.test")],
    "empty-host": _without(":authority") + [("host", "")],
    # §8.1.1 and RFC 9110 §8.6: one content-length, of digits.
    "content-length-twice": PSEUDO + [("content-length", "0"), ("content-length", "0")],
    "content-length-not-digits": PSEUDO + [("content-length", "1a")],
    "content-length-negative": PSEUDO + [("content-length", "-1")],
    "content-length-empty": PSEUDO + [("content-length", "")],
    # §8.1.1: END_STREAM on the HEADERS, and content-length said there would be content.
    "content-length-without-content": PSEUDO + [("content-length", "3")],
    # RFC 8441 §4: :protocol only on a CONNECT; §8.5: a plain CONNECT has :authority alone.
    "protocol-without-connect": PSEUDO + [(":protocol", "websocket")],
    "connect-with-path": [(":method", "CONNECT"), (":authority", "example.test:443"),
                          (":path", "/")],
    "connect-without-authority": [(":method", "CONNECT")],
    "extended-connect-without-path": [(":method", "CONNECT"), (":protocol", "websocket"),
                                      (":scheme", "https"), (":authority", "example.test")],
}


@pytest.mark.parametrize("case", sorted(STREAM_ERRORS))
def test_stream_error(srv, case):
    with h2(srv) as c:
        sid = c.new_sid()
        c.headers(sid, STREAM_ERRORS[case])
        expect_stream_error(c, sid, PROTOCOL_ERROR)
        assert_usable(c)


@pytest.mark.parametrize("fields", [
    # OPTIONS * (§8.3.1), a host field instead of :authority, and a priority field (RFC 9218)
    # with members and parameters of other keys, which are ignored.
    [(":method", "OPTIONS"), (":scheme", "https"), (":authority", "example.test"), (":path", "*")],
    _without(":authority") + [("host", "example.test")],
    PSEUDO + [("priority", 'u=0;x=1, i, ext="a, b", l=(a 1.5 :YQ==:);p')],
    PSEUDO + [("priority", "u=9, oops((")],
    PSEUDO + [("te", "Trailers"), ("content-length", "0")],
], ids=["options-asterisk", "host-only", "priority-with-extensions", "priority-invalid",
        "te-and-content-length-0"])
def test_well_formed_requests_are_answered(srv, fields):
    # The rules above refuse only what breaks them: these are answered, not reset.
    with h2(srv) as c:
        sid = c.new_sid()
        c.headers(sid, fields)
        st = c.stream(sid)
        c.pump_until(lambda: st.done or c.goaways, 5, what="the answer on stream %d" % sid)
        assert st.reset is None and st.status is not None, st
        assert c.goaway is None, c.goaway
        if fields[-1][0] != "content-length" and ":path" in dict(fields) and \
                dict(fields)[":path"] == "/a.txt":
            assert st.status == 200 and bytes(st.body) == b"file A\n", st


def test_trailers_with_content_length(srv):
    # RFC 9110 §6.5.1: content-length describes the framing, which the trailers come too late
    # for; moat refuses it there (nghttp2's reference answers likewise when the head had one).
    sni = "example.test" if REFERENCE else "proxy.test"
    with h2(srv, sni=sni) as c:
        sid = c.new_sid()
        c.headers(sid, c.request_fields("/echo?t=trailer-cl", "POST",
                                        headers=[("content-length", "3")]), end_stream=False)
        c.send(frame(DATA, 0, sid, b"abc"))
        c.headers(sid, [("content-length", "3")], end_stream=True)
        expect_stream_error(c, sid, PROTOCOL_ERROR)


def test_malformed_head_and_its_trailers_in_one_write_get_one_reset(srv):
    # The head breaks §8.2.1 and its trailers follow before the server has written anything:
    # one RST_STREAM PROTOCOL_ERROR for the stream, and the connection goes on.
    with h2(srv) as c:
        sid = c.new_sid()
        head = frame(HEADERS, END_HEADERS, sid, c.encode(PSEUDO + [("X-Upper", "1")]))
        trailers = frame(HEADERS, END_HEADERS | END_STREAM, sid, c.encode([("x-t", "1")]))
        c.send(head + frame(DATA, 0, sid, b"abc") + trailers)
        expect_stream_error(c, sid, PROTOCOL_ERROR)
        assert_usable(c)
        resets = [f for f in c.frames if f.type == RST_STREAM and f.sid == sid]
        assert len(resets) == 1, resets


def test_te_trailers_is_allowed(srv):
    with h2(srv) as c:
        st = c.get("/a.txt", headers=[("te", "trailers")])
        assert st.status == 200 and bytes(st.body) == b"file A\n"


@pytest.mark.parametrize("declared,sent", [(10, 5), (3, 5)], ids=["short", "long"])
def test_content_length_not_matching_data(srv, declared, sent):
    # §8.1.1: a content-length that does not match the DATA is malformed: stream error
    # PROTOCOL_ERROR. The proxy site waits for the body, so the stream is open throughout.
    sni = "example.test" if REFERENCE else "proxy.test"
    with h2(srv, sni=sni) as c:
        sid = c.new_sid()
        c.headers(sid, c.request_fields("/echo?t=cl-%d-%d" % (declared, sent), "POST",
                                        headers=[("content-length", str(declared))]),
                  end_stream=False)
        c.send(frame(DATA, END_STREAM, sid, b"x" * sent))
        st = c.stream(sid)
        c.pump_until(lambda: st.done or c.goaways, 5, what="the reset of stream %d" % sid)
        assert st.reset == PROTOCOL_ERROR, st
        assert st.status is None or st.status >= 400, st
        assert c.goaway is None, c.goaway
        if not REFERENCE:
            st2 = c.get("/status/204?t=after-cl")
            assert st2.status == 204, st2


def test_trailers_with_pseudo_field(srv):
    # §8.1: trailers MUST NOT include pseudo-fields.
    sni = "example.test" if REFERENCE else "proxy.test"
    with h2(srv, sni=sni) as c:
        sid = c.new_sid()
        c.headers(sid, c.request_fields("/echo?t=trailer-pseudo", "POST"), end_stream=False)
        c.send(frame(DATA, 0, sid, b"abc"))
        c.headers(sid, [(":path", "/x")], end_stream=True)
        expect_stream_error(c, sid, PROTOCOL_ERROR)


def test_trailers_without_end_stream(srv):
    # §8.1: a HEADERS frame after the first that does not carry END_STREAM is malformed.
    sni = "example.test" if REFERENCE else "proxy.test"
    with h2(srv, sni=sni) as c:
        sid = c.new_sid()
        c.headers(sid, c.request_fields("/echo?t=trailer-noend", "POST"), end_stream=False)
        c.send(frame(DATA, 0, sid, b"abc"))
        c.headers(sid, [("x-trailer", "1")], end_stream=False)
        st = c.stream(sid)
        c.pump_until(lambda: st.done or c.goaways, 5, what="an error for stream %d" % sid)
        assert st.reset == PROTOCOL_ERROR or (c.goaway and c.goaway.code == PROTOCOL_ERROR), \
            (st, c.goaway)


def test_stream_window_overflow(srv):
    # §6.9.1: a stream window above 2^31-1 is a stream error FLOW_CONTROL_ERROR.
    with h2(srv, settings=[(INITIAL_WINDOW_SIZE, 0)]) as c:
        sid = _open_stream(c, "/big.bin", end_stream=True)
        c.send(window_update(sid, 0x7FFFFFFF) + window_update(sid, 0x7FFFFFFF))
        st = c.stream(sid)
        c.pump_until(lambda: st.done or c.goaways, 5, what="the reset of stream %d" % sid)
        assert st.reset == FLOW_CONTROL_ERROR, (st, c.goaway)
        assert c.goaway is None, c.goaway


def test_window_update_0_on_stream(srv):
    # §6.9: WINDOW_UPDATE of 0 on a stream is a stream error PROTOCOL_ERROR, which §5.4.1
    # lets an endpoint treat as a connection error (libnghttp2 does).
    with h2(srv, settings=[(INITIAL_WINDOW_SIZE, 0)]) as c:
        sid = _open_stream(c, "/big.bin", end_stream=True)
        c.send(window_update(sid, 0))
        st = c.stream(sid)
        c.pump_until(lambda: st.done or c.goaways, 5, what="an error for stream %d" % sid)
        if c.goaway is not None:
            assert c.goaway.code == PROTOCOL_ERROR, c.goaway
            assert c.wait_closed(5)
        else:
            assert st.reset == PROTOCOL_ERROR, st
            c.send(settings_frame([(INITIAL_WINDOW_SIZE, 65535)]))
            assert_usable(c)


def test_stream_id_going_down_is_not_served(srv):
    # §5.1.1: a HEADERS on stream 3 after stream 5 was opened is an unexpected identifier
    # (PROTOCOL_ERROR); stream 3 was implicitly closed when 5 was opened (§5.1.1), and a server
    # may not be able to tell it from a late frame on a stream it forgot (libnghttp2 ignores
    # such a block). Either way stream 3 is never answered.
    with h2(srv) as c:
        c.headers(5, c.request_fields("/a.txt"))
        c.response(5)
        c.headers(3, c.request_fields("/b.txt"))
        c.pump(0.5)
        st3 = c.stream(3)
        assert st3.headers is None, "stream 3 was served after stream 5: %r" % st3
        if c.goaway is not None:
            assert c.goaway.code == PROTOCOL_ERROR, c.goaway
            assert c.wait_closed(5)
        else:
            c.next_sid = 7
            assert_usable(c)


# -- abuse ---------------------------------------------------------------------------------------


class Bystander:
    """A client connected before the attack that must still be served after it."""

    def __init__(self, m):
        self.m = m
        self.c = H2Conn(m.port)
        st = self.c.get("/a.txt")
        assert st.status == 200, st

    def check(self):
        st = self.c.get("/b.txt")
        assert st.status == 200, st
        assert bytes(st.body) == b"file B, a bit longer\n"
        self.c.close()
        # And a newcomer too.
        with H2Conn(self.m.port) as c2:
            st = c2.get("/big.bin", timeout=20)
            assert st.status == 200 and len(st.body) == 3 * 1024 * 1024 + 17, st


def flood(c, one, total, batch=100):
    """Send `one` (bytes) up to `total` times, in batches, reading between them; stops when
    the server says GOAWAY or closes."""
    sent = 0
    while sent < total and not c.goaways and not c.eof:
        if not c.send(one * batch):
            break
        sent += batch
        c.pump(0.01)
    return sent


def expect_calm(c, m, mark, why, timeout=5.0):
    g = expect_connection_error(c, ENHANCE_YOUR_CALM, timeout)
    if not REFERENCE:
        line = log_after(m, mark, r"http2:[^\n]*(%s)" % why)
        assert line, "no 'http2: ...%s' line in the error log:\n%s" % (
            why, m.stderr()[mark:][-3000:])
    return g


def _moat_only():
    if REFERENCE:
        pytest.skip("moat's own limits: not a reference-server check")


FLOODS = {
    "settings": lambda c: settings_frame(),
    "ping": lambda c: ping(),
    "priority": lambda c: priority(1, 0, 15),
    "priority-update": lambda c: priority_update(1, "u=3"),
}


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_control_frame_flood(srv, kind):
    _moat_only()
    by = Bystander(srv)
    mark = len(srv.stderr())
    with h2(srv) as c:
        c.auto_ack = False  # a flooder does not read its ACKs either
        t0 = time.monotonic()
        sent = flood(c, FLOODS[kind](c), 20000)
        expect_calm(c, srv, mark, "flood")
        # h2_frames 50 lets a burst of ~50 through; 20000 must never all be taken.
        assert sent < 20000, "the server took %d %s frames" % (sent, kind)
        assert time.monotonic() - t0 < 10
    by.check()


def test_empty_data_flood(srv):
    _moat_only()
    by = Bystander(srv)
    mark = len(srv.stderr())
    with h2(srv, sni="proxy.test") as c:
        sid = c.new_sid()
        c.headers(sid, c.request_fields("/echo?t=empty-data-flood", "POST"), end_stream=False)
        sent = flood(c, frame(DATA, 0, sid, b""), 20000)
        expect_calm(c, srv, mark, "flood|empty")
        assert sent < 20000
    by.check()


def test_rapid_reset(srv):
    # CVE-2023-44487: open a stream and cancel it at once, thousands of times.
    _moat_only()
    by = Bystander(srv)
    mark = len(srv.stderr())
    with h2(srv) as c:
        sent = 0
        while sent < 10000 and not c.goaways and not c.eof:
            out = b""
            for _ in range(50):
                sid = c.new_sid()
                out += frame(HEADERS, END_STREAM | END_HEADERS, sid,
                             c.encode(c.request_fields("/big.bin"))) + rst_stream(sid)
            if not c.send(out):
                break
            sent += 50
            c.pump(0.01)
        expect_calm(c, srv, mark, "rapid reset|reset")
        assert sent < 10000, "the server took %d reset streams" % sent
    by.check()


def test_cancelling_within_the_limit_is_fine(srv):
    # Ten cancelled downloads in a row are what a browser does when a page changes: no GOAWAY.
    with h2(srv) as c:
        for _ in range(10):
            sid = _open_stream(c, "/big.bin", end_stream=True)
            c.send(rst_stream(sid))
        c.pump(0.3)
        assert_usable(c)


@pytest.mark.parametrize("payload", ["empty", "fields"])
def test_continuation_flood(srv, payload):
    # A header block that never ends: HEADERS without END_HEADERS, then CONTINUATION after
    # CONTINUATION. The server must stop it (GOAWAY, any of the codes below, then the close)
    # rather than buffer it for ever; if it let the block end, the answer must be 431.
    _moat_only()
    by = Bystander(srv)
    mark = len(srv.stderr())
    with h2(srv) as c:
        sid = c.new_sid()
        c.send(frame(HEADERS, END_STREAM, sid, c.encode(c.request_fields("/a.txt"))))
        piece = b"" if payload == "empty" else c.encode([("x-c", "v" * 40)])
        sent = 0
        while sent < 20000 and not c.goaways and not c.eof:
            if not c.send(frame(CONTINUATION, 0, sid, piece) * 100):
                break
            sent += 100
            c.pump(0.01)
        if not c.goaways and not c.eof:
            c.send(frame(CONTINUATION, END_HEADERS, sid, b""))
            st = c.stream(sid)
            c.pump_until(lambda: st.done or c.goaways or c.eof, 5, what="an answer")
            if st.status is not None:
                assert st.status == 431, st
                by.check()
                return
        g = c.wait_goaway(5)
        assert g is not None, "closed without GOAWAY; frames %r" % c.frames[-10:]
        assert g.code in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR, COMPRESSION_ERROR), g
        assert c.wait_closed(5)
        assert sent < 20000, "the server took %d CONTINUATION frames" % sent
        assert log_after(srv, mark, r"http2:"), srv.stderr()[mark:][-2000:]
    by.check()


def test_zero_window_stall(srv):
    # The client shrinks its window to 0, asks for a large file and never opens the window:
    # after timeouts.write (1s) the server gives up with GOAWAY ENHANCE_YOUR_CALM.
    _moat_only()
    by = Bystander(srv)
    mark = len(srv.stderr())
    with h2(srv, settings=[(INITIAL_WINDOW_SIZE, 0)], auto_window=False) as c:
        t0 = time.monotonic()
        sid = _open_stream(c, "/huge.bin", end_stream=True)
        st = c.stream(sid)
        c.pump_until(lambda: st.headers is not None or c.goaways, 5, what="the answer's head")
        expect_calm(c, srv, mark, "stall|window", timeout=10)
        took = time.monotonic() - t0
        assert 0.8 < took < 8, "cut after %.1f s with timeouts.write 1s" % took
        assert len(st.body) == 0
    by.check()


def test_connection_window_stall(srv):
    # The same with the stream windows open and the connection window used up: the client
    # reads the first 65535 bytes and never sends WINDOW_UPDATE for the connection.
    _moat_only()
    mark = len(srv.stderr())
    with h2(srv, settings=[(INITIAL_WINDOW_SIZE, 0x7FFFFFFF)], auto_window=False) as c:
        t0 = time.monotonic()
        sid = _open_stream(c, "/huge.bin", end_stream=True)
        st = c.stream(sid)
        expect_calm(c, srv, mark, "stall|window", timeout=10)
        assert len(st.body) <= 65535
        assert time.monotonic() - t0 < 8


def test_slow_but_moving_window_is_not_cut(srv):
    # A client that opens its window bit by bit, every 0.3 s (less than write 1s), for 3 s,
    # is reading: no GOAWAY. (Its rate is far above limits.min_rate's 1k default.)
    with h2(srv, auto_window=False) as c:
        sid = _open_stream(c, "/huge.bin", end_stream=True)
        st = c.stream(sid)
        t0 = time.monotonic()
        last = 0
        while time.monotonic() - t0 < 3:
            c.pump(0.3)
            got = len(st.body) - last
            last = len(st.body)
            if got:
                c.send(window_update(0, got) + window_update(sid, got))
            assert not c.goaways, (c.goaway, len(st.body))
        assert len(st.body) > 65535 * 3, len(st.body)


def test_file_shrinking_under_a_download_cuts_only_that_connection(srv, docroot):
    # The length is promised in content-length and DATA frames are queued ahead of their bytes:
    # a file cut short under a download cannot be finished honestly, so the connection ends (as
    # HTTP/1 ends it), moat says why, and it goes on serving others.
    _moat_only()
    by = Bystander(srv)
    mark = len(srv.stderr())
    path = docroot / "shrinks.bin"
    with open(path, "wb") as f:
        f.truncate(4 * 1024 * 1024)
    try:
        with h2(srv, auto_window=False) as c:
            sid = _open_stream(c, "/shrinks.bin", end_stream=True)
            st = c.stream(sid)
            c.pump_until(lambda: len(st.body) >= 65535 or c.eof, 5, what="the first window")
            os.truncate(path, 100000)
            c.send(window_update(0, 0x7FFF0000) + window_update(sid, 0x7FFF0000))
            c.pump_until(lambda: c.eof or st.reset is not None, 10, what="the cut")
            assert len(st.body) < 4 * 1024 * 1024
            assert not st.ended, "a short body must not end as if it were complete"
        assert log_after(srv, mark, r"http2: .*file shrank or failed", timeout=5)
    finally:
        path.unlink()
    by.check()
