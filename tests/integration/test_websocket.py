"""WebSocket through moat's `proxy` rules, to a plain ws:// origin (tests/integration/
ws_origin.py, python3-websockets 10.4 in a thread):

- over HTTP/1.1 (RFC 6455 Upgrade), with python3-websockets as the client: echo of text and
  binary, 4 MiB and 1 MiB messages byte exact, fragments, pings both ways, close codes both
  ways, subprotocol negotiation, the fields the origin sees (Host, X-Forwarded-*), 20
  connections at once, an origin that refuses the upgrade (its 403 relayed as an answer), the
  `timeouts { tunnel }` idle limit, and back-pressure (32 MiB to an origin that pauses and then
  reads slowly: nothing lost, the client held back, moat's resident memory flat);
- over HTTP/2 (RFC 8441 extended CONNECT), with python3-h2 4.1.0 as the client and WebSocket
  frames coded by hand: SETTINGS_ENABLE_CONNECT_PROTOCOL, :status 200, echo in DATA frames
  (small and 1 MiB, so flow control turns over both ways; fragments), what moat's own
  handshake to the origin carries (its key, Host from :authority), subprotocol, the close
  handshake from either side, END_STREAM, several tunnels on one connection, the origin's
  refusal (403) and a wrong Sec-WebSocket-Accept (no tunnel), and a plain CONNECT (no
  :protocol), which moat refuses;
- from headless Chromium (--dump-dom, the leaf trusted by its key as in test_h2_browser.py): a
  page served by moat opens `wss://HOST/ws/echo` on its own site through `proxy /ws/` and
  writes the echo into the DOM; over h2 (so by RFC 8441: Chromium's net log shows the
  extended CONNECT) and on a site with `http2 off` (by Upgrade). The page also loads an image
  that the origin answers only after it echoed: the document's load event, and the dump, wait
  for it (a WebSocket delays neither, and --virtual-time-budget stalls WebSocket events).

One origin and one front moat for the module (sites below); the back-pressure test has a moat
of its own, whose sanitizer allocator keeps no quarantine of freed memory, so that its resident
size measures what moat holds and not what ASan keeps for use-after-free checks.

  app.test     proxy ws              (upstream ws { server ORIGIN })
  idle.test    proxy wsidle          (the same server, timeouts { tunnel 1s })
  inline.test  proxy http://ORIGIN
  page.test    root PAGES, proxy /ws/ ws
  page11.test  root PAGES, proxy /ws/ ws, http2 off
"""

import asyncio
import base64
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import ssl
import string
import struct
import subprocess
import threading
import time
from functools import lru_cache
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatusCode

from conftest import _finish
from helpers import NET_TIMEOUT, OPENSSL, Conn, Moat, build_request, client_context, run
from ws_origin import WsOrigin

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MIB = 1 << 20
SITES = ["app.test", "idle.test", "inline.test", "page.test", "page11.test"]
ENABLE_CONNECT_PROTOCOL = 0x8

# WebSocket opcodes (RFC 6455 §5.2).
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def token():
    return "t" + os.urandom(5).hex()


def sha(b):
    return hashlib.sha256(b).hexdigest()


# -- configuration -----------------------------------------------------------------------------


def globals_block(m, pki, workers):
    return (
        "# written by tests/integration/test_websocket.py\n"
        "listen 127.0.0.1:%d\nworkers %d\nstate %s\naccess_log %s json\n"
        "error_log stderr info\ntrust %s\n"
        "timeouts { head 5s; idle 10s; body 10s; write 10s; drain 2s; handshake 5s }\n"
        % (m.port, workers, m.state, m.access_log, pki.root))


def site(cert, names, body):
    return "site %s {\n    cert %s %s\n%s}\n" % (names, cert.chain, cert.key, body)


def front_config(m, pki, cert, pages, origin):
    return (
        globals_block(m, pki, workers=2)
        + "upstream ws {\n    server %s\n}\n" % origin.addr
        + "upstream wsidle {\n    server %s\n    timeouts { tunnel 1s }\n}\n" % origin.addr
        + site(cert, "app.test", "    proxy ws\n")
        + site(cert, "idle.test", "    proxy wsidle\n")
        + site(cert, "inline.test", "    proxy http://%s\n" % origin.addr)
        + site(cert, "page.test", "    root %s\n    proxy /ws/ ws\n" % pages)
        + site(cert, "page11.test", "    root %s\n    proxy /ws/ ws\n    http2 off\n" % pages)
    )


# The page Chromium opens: a WebSocket to the same host, one message, the echo into the DOM.
PAGE = """<!doctype html><html><head><title>WAIT</title></head><body>
<p id="out">WAIT</p>
<p id="hold">HOLD</p>
<script>
function put(s) { document.getElementById('out').textContent = s; document.title = s; }
try {
  var ws = new WebSocket('wss://' + location.host + '/ws/echo' + location.search);
  ws.onopen = function () { ws.send('hello-from-chromium'); };
  ws.onmessage = function (e) { put('WS-ECHO=' + e.data + '='); ws.close(1000, 'done'); };
  ws.onerror = function () { put('WS-ERROR'); };
  ws.onclose = function (e) {
    if (document.title.indexOf('WS-ECHO') < 0) put('WS-CLOSED=' + e.code + '=');
  };
} catch (e) { put('WS-EXCEPTION=' + e + '='); }
// An image the origin answers only once it has echoed on the WebSocket: until then the
// document's load event waits, and --dump-dom with it (a WebSocket alone holds neither).
var hold = new Image();
hold.onload = hold.onerror = function () {
  document.getElementById('hold').textContent = 'HOLD-DONE';
};
hold.src = '/ws/hold' + location.search;
document.body.appendChild(hold);
</script>
</body></html>
"""


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(pki):
    return pki.issue(SITES, "ec", stem="websocket-front")


@pytest.fixture(scope="module")
def origin():
    # A small receive buffer on the origin's sockets: a handler that does not read pushes back
    # on moat after a few hundred KiB instead of after the kernel's autotuned megabytes.
    o = WsOrigin(rcvbuf=256 << 10).start()
    yield o
    o.stop()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    www = tmp_path_factory.mktemp("ws-pages")
    (www / "ws.html").write_text(PAGE)
    (www / "index.html").write_text("<!doctype html><title>ws</title><p>PAGES</p>\n")
    return www


@pytest.fixture(scope="module")
def _front(moat_bin, pki, cert, pages, origin, tmp_path_factory):
    m = Moat(moat_bin, tmp_path_factory.mktemp("ws-front"), name="ws-front")
    m.write_config(front_config(m, pki, cert, pages, origin))
    m.start()
    yield m
    _finish(m)


@pytest.fixture
def front(_front, origin):
    assert origin._thread.is_alive(), "the ws origin's thread died"
    if not _front.alive():
        # An earlier test crashed it (and was failed for that): start it again, same ports.
        _front.stop()
        _front.start()
    return _front


# -- HTTP/1.1 clients (python3-websockets) -----------------------------------------------------


@lru_cache(maxsize=None)
def ws_ctx(cafile):
    return client_context(cafile=cafile, alpn=["http/1.1"])


def ws_connect(m, pki, host, path, **kw):
    """websockets.connect to wss://HOST:PORT/PATH, the TCP connection to 127.0.0.1 (or the
    given `sock`), SNI HOST, trusting the suite's CA. Keepalive pings are off so an idle test
    is idle; messages up to 16 MiB."""
    kw.setdefault("ssl", ws_ctx(str(pki.root)))
    kw.setdefault("server_hostname", host)
    kw.setdefault("max_size", 16 * MIB)
    kw.setdefault("ping_interval", None)
    kw.setdefault("open_timeout", NET_TIMEOUT)
    kw.setdefault("close_timeout", 5)
    if "sock" not in kw:
        kw.setdefault("host", "127.0.0.1")
        kw.setdefault("port", m.port)
    return websockets.connect("wss://%s:%d%s" % (host, m.port, path), **kw)


def arun(coro, timeout=40):
    """Run one test's coroutine on a fresh event loop, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def echo_once(ws, msg, timeout=10):
    await ws.send(msg)
    got = await asyncio.wait_for(ws.recv(), timeout)
    return got


# -- HTTP/2 client (python3-h2) and hand-made WebSocket frames ---------------------------------


def mask_bytes(data, key):
    """XOR with the 4-byte masking key, repeated (RFC 6455 §5.3)."""
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def ws_frame(opcode, payload=b"", fin=True, mask=True):
    """One WebSocket frame as a client sends it: masked with a random key."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


def close_payload(code, reason=""):
    return struct.pack(">H", code) + reason.encode()


class WsFrame:
    def __init__(self, fin, opcode, masked, payload):
        self.fin = fin
        self.opcode = opcode
        self.masked = masked
        self.payload = payload

    @property
    def close_code(self):
        return struct.unpack(">H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self):
        return self.payload[2:].decode("utf-8", "replace")

    def __repr__(self):
        return "WsFrame(fin=%s, op=%d, masked=%s, %d bytes %r)" % (
            self.fin, self.opcode, self.masked, len(self.payload), self.payload[:40])


def parse_ws_frame(buf):
    """(WsFrame, bytes used) from the front of `buf`, or None when it is not all there yet."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n = b1 & 0x7F
    i = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = struct.unpack(">H", bytes(buf[2:4]))[0]
        i = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = struct.unpack(">Q", bytes(buf[2:10]))[0]
        i = 10
    masked = bool(b1 & 0x80)
    key = None
    if masked:
        if len(buf) < i + 4:
            return None
        key = bytes(buf[i:i + 4])
        i += 4
    if len(buf) < i + n:
        return None
    payload = bytes(buf[i:i + n])
    if masked:
        payload = mask_bytes(payload, key)
    return WsFrame(bool(b0 & 0x80), b0 & 0x0F, masked, payload), i + n


class H2Stream:
    def __init__(self, sid):
        self.sid = sid
        self.headers = None
        self.data = bytearray()   # DATA payloads not yet parsed as WebSocket frames
        self.body = bytearray()   # every DATA payload, for ordinary (refused) answers
        self.ended = False        # the server's END_STREAM
        self.reset = None         # the server's RST_STREAM code

    @property
    def status(self):
        for k, v in self.headers or []:
            if k == ":status":
                return int(v)
        return None

    def header(self, name, default=None):
        for k, v in self.headers or []:
            if k == name:
                return v
        return default

    @property
    def done(self):
        return self.ended or self.reset is not None

    def __repr__(self):
        return "H2Stream(%d, status=%s, headers=%r, %d bytes pending, ended=%s, reset=%s)" % (
            self.sid, self.status, self.headers, len(self.data), self.ended, self.reset)


class H2Client:
    """One HTTP/2 connection (python3-h2 4.1.0) over TLS with ALPN h2 to 127.0.0.1, with
    RFC 8441 WebSocket streams on it. h2 4.1.0 accepts `:protocol` on a CONNECT as it is
    (its outbound validation allows it with :method CONNECT and wants :scheme and :path, which
    an extended CONNECT has); a plain CONNECT, which has neither, needs validation off."""

    def __init__(self, port, sni, cafile, timeout=NET_TIMEOUT):
        self.timeout = timeout
        self.authority = "%s:%d" % (sni, port)
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            self.sock = client_context(cafile=cafile, alpn=["h2"]).wrap_socket(
                raw, server_hostname=sni)
        except Exception:
            raw.close()
            raise
        self.alpn = self.sock.selected_alpn_protocol()
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        # Room for a few MiB in flight towards us on the connection as a whole.
        self.conn.increment_flow_control_window(16 * MIB)
        self.flush()
        self.streams = {}
        self.server_settings = {}  # what the server's SETTINGS frames carried
        self.settings_frames = 0
        self.terminated = None     # the server's GOAWAY (h2 ConnectionTerminated)
        self.eof = False
        self.pump_until(lambda: self.settings_frames > 0, what="the server's SETTINGS")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def stream(self, sid):
        if sid not in self.streams:
            self.streams[sid] = H2Stream(sid)
        return self.streams[sid]

    def read_once(self, timeout):
        """Read what the server sent (up to `timeout`) and handle its events."""
        if self.eof:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 18)
        except (socket.timeout, TimeoutError):
            return None
        except (ConnectionError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.eof = True
            return False
        for ev in self.conn.receive_data(data):
            self._event(ev)
        self.flush()
        return True

    def _event(self, ev):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            self.settings_frames += 1
            for code, change in ev.changed_settings.items():
                self.server_settings[int(code)] = change.new_value
        elif isinstance(ev, h2.events.ResponseReceived):
            self.stream(ev.stream_id).headers = list(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            st = self.stream(ev.stream_id)
            st.data += ev.data
            st.body += ev.data
            if ev.flow_controlled_length:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.stream(ev.stream_id).ended = True
        elif isinstance(ev, h2.events.StreamReset):
            self.stream(ev.stream_id).reset = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.terminated = ev

    def pump_until(self, pred, timeout=None, what="a condition"):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for %s; streams %r; goaway %r" % (
                    what, list(self.streams.values())[-5:], self.terminated))
            if self.read_once(left) is False and not pred():
                raise AssertionError("the connection closed while waiting for %s; streams %r; "
                                     "goaway %r" % (what, list(self.streams.values())[-5:],
                                                    self.terminated))
        return True

    # -- streams ------------------------------------------------------------------------------

    def open_ws(self, path, protocols=(), extra=()):
        """Send an extended CONNECT for a WebSocket (RFC 8441 §4); returns the stream id."""
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                  (":path", path), (":authority", self.authority),
                  ("sec-websocket-version", "13")]
        if protocols:
            fields.append(("sec-websocket-protocol", ", ".join(protocols)))
        fields += list(extra)
        self.conn.send_headers(sid, fields, end_stream=False)
        self.flush()
        self.stream(sid)
        return sid

    def response(self, sid, timeout=None):
        st = self.stream(sid)
        self.pump_until(lambda: st.headers is not None or st.done, timeout,
                        what="the answer on stream %d" % sid)
        return st

    def ws(self, path, protocols=(), extra=()):
        """An open WebSocket stream: extended CONNECT answered with :status 200."""
        sid = self.open_ws(path, protocols, extra)
        st = self.response(sid)
        assert st.status == 200, "extended CONNECT %s: %r" % (path, st)
        return sid

    def send(self, sid, data, end_stream=False, timeout=None):
        """DATA on `sid` within the flow-control windows, waiting for credit as needed."""
        view = memoryview(data)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            win = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if win > 0 or not view:
                n = min(win, len(view))
                last = n == len(view)
                self.conn.send_data(sid, bytes(view[:n]), end_stream=end_stream and last)
                self.flush()
                view = view[n:]
                if last:
                    return
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no flow-control credit to send on stream %d" % sid)
            if self.read_once(min(left, 0.5)) is False:
                raise AssertionError("connection closed while sending on stream %d" % sid)

    def end(self, sid):
        self.conn.end_stream(sid)
        self.flush()

    def send_ws(self, sid, opcode, payload=b"", fin=True):
        self.send(sid, ws_frame(opcode, payload, fin=fin))

    def read_frame(self, sid, timeout=None):
        """The next WebSocket frame from the server on `sid`."""
        st = self.stream(sid)
        got = []

        def have():
            r = parse_ws_frame(st.data)
            if r is not None:
                got.append(r)
                return True
            return st.done

        self.pump_until(have, timeout, what="a WebSocket frame on stream %d" % sid)
        if not got:
            raise AssertionError("stream %d ended before a whole WebSocket frame: %r" % (sid, st))
        fr, used = got[0]
        del st.data[:used]
        assert not fr.masked, "a server frame must not be masked (RFC 6455 §5.1): %r" % fr
        return fr

    def read_message(self, sid, timeout=None):
        """(opcode, payload) of the next message, fragments joined; a close frame is returned
        as is."""
        opcode, parts = None, []
        while True:
            fr = self.read_frame(sid, timeout)
            if fr.opcode == CLOSE:
                return CLOSE, fr
            if fr.opcode in (PING, PONG):
                continue
            if opcode is None:
                assert fr.opcode in (TEXT, BINARY), fr
                opcode = fr.opcode
            else:
                assert fr.opcode == CONT, fr
            parts.append(fr.payload)
            if fr.fin:
                return opcode, b"".join(parts)

    def echo(self, sid, opcode, payload):
        self.send_ws(sid, opcode, payload)
        got_op, got = self.read_message(sid)
        assert got_op == opcode, (got_op, got)
        return got

    def wait_done(self, sid, timeout=5.0):
        st = self.stream(sid)
        self.pump_until(lambda: st.done, timeout, what="the end of stream %d" % sid)
        return st


def h2c(m, pki, host="app.test"):
    c = H2Client(m.port, host, str(pki.root))
    assert c.alpn == "h2", "ALPN chose %r" % c.alpn
    return c


# ==============================================================================================
# HTTP/1.1 Upgrade
# ==============================================================================================


def test_h1_text_and_binary_echo(front, pki, origin):
    t = token()

    async def go():
        async with ws_connect(front, pki, "app.test", "/echo?t=" + t) as ws:
            assert ws.subprotocol is None
            assert await echo_once(ws, "hello through moat") == "hello through moat"
            uni = "h\u00e9llo \u2713 \U0001f600"
            assert await echo_once(ws, uni) == uni
            got = await echo_once(ws, b"\x00\x01\xfe\xffbinary")
            assert isinstance(got, bytes) and got == b"\x00\x01\xfe\xffbinary"
            assert await echo_once(ws, b"") == b""
            assert await echo_once(ws, "") == ""
            return ws.response_headers

    resp = arun(go())
    assert resp.get("Sec-WebSocket-Accept"), resp  # websockets checked its value
    conn = origin.wait_conn(t)
    assert conn.messages == 5 and conn.path == "/echo?t=" + t, conn


def test_h1_inline_proxy_url_echo(front, pki, origin):
    t = token()

    async def go():
        async with ws_connect(front, pki, "inline.test", "/inline?t=" + t) as ws:
            return [await echo_once(ws, "inline-%d" % i) for i in range(3)]

    assert arun(go()) == ["inline-0", "inline-1", "inline-2"]
    assert origin.wait_conn(t).header("Host") == "inline.test:%d" % front.port


def test_h1_large_messages_round_trip_byte_exact(front, pki, origin):
    t = token()
    big = os.urandom(4 * MIB)
    alphabet = string.ascii_letters + string.digits + " \u00e9\u2713"
    rnd = random.Random(7)
    text = "".join(rnd.choice(alphabet) for _ in range(MIB // 2))
    text = (text * 3)[:MIB]  # 1 Mi characters, some of them several bytes in UTF-8

    async def go():
        # No compression: the 4 MiB cross moat as they are, one frame each way.
        async with ws_connect(front, pki, "app.test", "/echo?t=" + t,
                              compression=None) as ws:
            got_big = await echo_once(ws, big, timeout=30)
            got_text = await echo_once(ws, text, timeout=30)
            got_big2 = await echo_once(ws, big[::-1], timeout=30)
            return got_big, got_text, got_big2

    got_big, got_text, got_big2 = arun(go())
    assert isinstance(got_big, bytes) and len(got_big) == len(big) and sha(got_big) == sha(big)
    assert isinstance(got_text, str) and len(got_text) == MIB and got_text == text
    assert sha(got_big2) == sha(big[::-1])
    assert origin.wait_conn(t).bytes == 2 * len(big) + len(text)


def test_h1_fragmented_messages_reassembled(front, pki, origin):
    t = token()

    async def slow_fragments():
        for i in range(5):
            yield b"frag-%d|" % i + os.urandom(1000 * i)
            await asyncio.sleep(0.03)  # each fragment its own TLS record through moat

    async def go():
        async with ws_connect(front, pki, "app.test", "/echo?t=" + t) as ws:
            await ws.send(["one ", "two ", "three"])
            text = await asyncio.wait_for(ws.recv(), 10)
            parts = []

            async def recorded():
                async for p in slow_fragments():
                    parts.append(p)
                    yield p

            await ws.send(recorded())
            binary = await asyncio.wait_for(ws.recv(), 10)
            return text, binary, b"".join(parts)

    text, binary, sent = arun(go())
    assert text == "one two three"
    assert binary == sent and len(sent) > 10000
    assert origin.wait_conn(t).messages == 2


def test_h1_ping_pong_both_ways(front, pki, origin):
    t = token()

    async def go():
        async with ws_connect(front, pki, "app.test", "/echo?t=" + t) as ws:
            waiter = await ws.ping(b"client-ping")
            latency = await asyncio.wait_for(waiter, 5)
            # The origin pings us and answers once our (automatic) pong reached it.
            answer = await echo_once(ws, "ping?")
            return latency, answer

    latency, answer = arun(go())
    assert 0 <= latency < 5
    assert answer == "pong:OK"


def test_h1_close_codes_relayed_both_ways(front, pki, origin):
    t1, t2 = token(), token()

    async def client_closes():
        async with ws_connect(front, pki, "app.test", "/echo?t=" + t1) as ws:
            assert await echo_once(ws, "before close") == "before close"
            await ws.close(4001, "bye")
            return ws.close_code, ws.close_reason

    async def origin_closes():
        async with ws_connect(front, pki, "app.test", "/echo?t=" + t2) as ws:
            await ws.send("close:4002:done")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            await ws.wait_closed()
            return ws.close_code, ws.close_reason

    # The client's close frame reached the origin, which answered with the same code.
    assert arun(client_closes()) == (4001, "bye")
    conn = origin.wait_conn(t1)
    assert conn.closed.wait(5), conn
    assert (conn.close_code, conn.close_reason) == (4001, "bye"), conn
    # The origin's close frame reached the client (and the client's answer the origin).
    assert arun(origin_closes()) == (4002, "done")
    conn = origin.wait_conn(t2)
    assert conn.closed.wait(5), conn
    assert conn.close_code == 4002, conn


def test_h1_subprotocol_negotiated_end_to_end(front, pki, origin):
    t1, t2, t3 = token(), token(), token()

    async def go():
        out = []
        async with ws_connect(front, pki, "app.test", "/echo?t=" + t1,
                              subprotocols=["superchat", "chat"]) as ws:
            out.append((ws.subprotocol, ws.response_headers.get("Sec-WebSocket-Protocol"),
                        await echo_once(ws, "in chat")))
        async with ws_connect(front, pki, "app.test", "/echo?t=" + t2,
                              subprotocols=["other"]) as ws:
            out.append((ws.subprotocol, ws.response_headers.get("Sec-WebSocket-Protocol"),
                        await echo_once(ws, "no sub")))
        async with ws_connect(front, pki, "app.test", "/echo?t=" + t3) as ws:
            out.append((ws.subprotocol, ws.response_headers.get("Sec-WebSocket-Protocol"),
                        await echo_once(ws, "none offered")))
        return out

    chat, other, none = arun(go())
    assert chat == ("chat", "chat", "in chat")
    assert other == (None, None, "no sub")
    assert none == (None, None, "none offered")
    c1 = origin.wait_conn(t1)
    assert c1.subprotocol == "chat"
    assert [p.strip() for p in c1.header("Sec-WebSocket-Protocol").split(",")] == \
        ["superchat", "chat"], c1.headers
    assert origin.wait_conn(t2).subprotocol is None
    assert origin.wait_conn(t3).header("Sec-WebSocket-Protocol") is None


def test_h1_origin_sees_host_and_forwarding_fields(front, pki, origin):
    t = token()

    async def go():
        async with ws_connect(front, pki, "app.test", "/echo/deep/path?t=%s&x=1" % t,
                              extra_headers={"X-Forwarded-For": "203.0.113.9",
                                             "X-Test-Field": "kept-as-sent"}) as ws:
            return await echo_once(ws, "fields")

    assert arun(go()) == "fields"
    conn = origin.wait_conn(t)
    assert conn.path == "/echo/deep/path?t=%s&x=1" % t
    assert conn.header("Host") == "app.test:%d" % front.port, conn.headers
    # The client is not a trusted proxy: its X-Forwarded-For is replaced by moat's hop.
    assert conn.header_all("X-Forwarded-For") == ["127.0.0.1"], conn.headers
    assert conn.header("X-Forwarded-Proto") == "https", conn.headers
    assert conn.header("X-Test-Field") == "kept-as-sent", conn.headers
    # The handshake itself reached the origin (it accepted it, so these are right).
    assert conn.header("Upgrade", "").lower() == "websocket", conn.headers
    assert "upgrade" in conn.header("Connection", "").lower(), conn.headers
    assert conn.header("Sec-WebSocket-Version") == "13", conn.headers
    assert conn.peer[0] == "127.0.0.1"


def test_h1_twenty_concurrent_connections(front, pki, origin):
    tag = token()
    n_conns, n_msgs = 20, 50

    async def one(i):
        got = []
        async with ws_connect(front, pki, "app.test", "/echo?t=%s-%02d" % (tag, i)) as ws:
            for j in range(n_msgs):
                msg = "c%02d-m%02d-%s" % (i, j, "x" * (j * 37 % 500))
                if j % 5 == 4:
                    msg = msg.encode() + os.urandom(j)
                back = await echo_once(ws, msg)
                got.append(back == msg)
        return all(got), len(got)

    async def go():
        return await asyncio.gather(*(one(i) for i in range(n_conns)))

    results = arun(go(), timeout=60)
    assert results == [(True, n_msgs)] * n_conns, results
    for i in range(n_conns):
        conn = origin.wait_conn("%s-%02d" % (tag, i))
        assert conn.messages == n_msgs, conn
    peers = {origin.wait_conn("%s-%02d" % (tag, i)).peer for i in range(n_conns)}
    assert len(peers) == n_conns, "20 tunnels over fewer origin connections: %r" % peers


def test_h1_origin_refusal_is_relayed(front, pki, origin):
    t1, t2 = token(), token()

    async def go():
        with pytest.raises(InvalidStatusCode) as e:
            async with ws_connect(front, pki, "app.test", "/ws/refuse?t=" + t1):
                pass
        return e.value.status_code

    assert arun(go()) == 403
    origin.wait_refused(t1)
    # Byte level: the origin's 403, its body and its own field, as an ordinary answer.
    with Conn(front.port, sni="app.test", cafile=pki.root) as c:
        c.send(build_request("/ws/refuse?t=" + t2, host="app.test", headers=[
            ("Connection", "Upgrade"), ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()),
            ("Sec-WebSocket-Version", "13")]))
        resp = c.read_response()
    assert resp.status == 403, resp
    assert resp.body == b"refused by origin\n", resp
    assert resp.header("x-origin") == "refused", resp
    assert resp.header("sec-websocket-accept") is None, resp
    assert "upgrade" not in (resp.header("connection") or "").lower(), resp
    origin.wait_refused(t2)
    assert not origin.find(t1) and not origin.find(t2)


def test_h1_idle_tunnel_closed_after_tunnel_timeout(front, pki, origin):
    t = token()

    async def go():
        async with ws_connect(front, pki, "idle.test", "/echo?t=%s-idle" % t) as idle, \
                ws_connect(front, pki, "idle.test", "/echo?t=%s-busy" % t) as busy:
            assert await echo_once(idle, "only once") == "only once"
            last = time.monotonic()

            async def watch():
                await idle.wait_closed()
                return time.monotonic()

            watcher = asyncio.ensure_future(watch())
            n = 0
            # The busy one talks every 0.25 s, well within its 1 s, and lasts past the idle
            # one's end and beyond twice the timeout.
            while True:
                now = time.monotonic()
                if now - last > 6:
                    break
                if watcher.done() and now - last > 2.5:
                    break
                assert await echo_once(busy, "busy-%d" % n) == "busy-%d" % n, n
                n += 1
                await asyncio.sleep(0.25)
            closed_at = await asyncio.wait_for(watcher, 1)
            busy_open = busy.open
            final = await echo_once(busy, "still here")
            return closed_at - last, busy_open, final, n, time.monotonic() - last

    idle_for, busy_open, final, n, busy_for = arun(go())
    assert 0.8 <= idle_for <= 3.5, "the idle tunnel closed after %.2fs (tunnel 1s)" % idle_for
    assert busy_open and final == "still here" and busy_for > 2.4, (busy_for, n)
    # moat closed the origin's side of the idle tunnel too.
    conn = origin.wait_conn(t + "-idle")
    assert conn.closed.wait(5), "the origin's side of the idle tunnel is still open"
    assert origin.wait_conn(t + "-busy").messages == n + 1


# -- back-pressure -----------------------------------------------------------------------------


def rss_kb(pid):
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


class RssPeak:
    """The highest VmRSS of a process, sampled every 10 ms in a thread."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = rss_kb(pid)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(0.01):
            try:
                self.peak = max(self.peak, rss_kb(self.pid))
            except (OSError, AssertionError):
                return

    def stop(self):
        self._stop.set()
        self._t.join(5)
        return self.peak


def test_h1_back_pressure_no_loss_and_flat_memory(moat, pki, cert, origin):
    m = moat("ws-backpressure")
    base_env = m.env

    def env():
        # ASan's quarantine keeps freed memory resident on purpose (test_memory.py measures
        # the release build for that reason); without it the resident size is what moat holds.
        e = base_env()
        e["ASAN_OPTIONS"] = (e.get("ASAN_OPTIONS", "") +
                             ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0").lstrip(":")
        return e

    m.env = env
    m.write_config(globals_block(m, pki, workers=1)
                   + "upstream ws {\n    server %s\n}\n" % origin.addr
                   + site(cert, "app.test", "    proxy ws\n"))
    m.start()
    t = token()
    count = 32
    chunks = [os.urandom(MIB) for _ in range(count)]
    want = hashlib.sha256(b"".join(chunks)).hexdigest()
    pause = 1.5

    async def go():
        # Warm up: a tunnel that carries 1 MiB each way, so what moat allocates for one is in
        # the baseline.
        async with ws_connect(m, pki, "app.test", "/echo?t=%s-warm" % t,
                              compression=None) as w:
            assert await echo_once(w, chunks[0], timeout=20) == chunks[0]
        await asyncio.sleep(0.5)
        base = rss_kb(m.pid)
        # A small send buffer on the client too: what is in flight sits in moat or is held
        # back, not in our kernel buffer.
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 << 10)
        raw.settimeout(NET_TIMEOUT)
        raw.connect(("127.0.0.1", m.port))
        raw.setblocking(False)
        sampler = RssPeak(m.pid)
        done_at = []
        try:
            path = "/sink?t=%s-sink&count=%d&pause=%s&delay=0.02" % (t, count, pause)
            async with ws_connect(m, pki, "app.test", path, sock=raw, compression=None,
                                  max_size=None) as ws:
                for c in chunks:
                    await ws.send(c)  # never reads meanwhile
                    done_at.append(time.monotonic())
                summary = json.loads(await asyncio.wait_for(ws.recv(), 30))
                # The tunnel still works both ways after the flood.
                assert await echo_once(ws, b"after") == b"after"
        finally:
            peak = sampler.stop()
        return base, peak, done_at, summary

    base, peak, done_at, summary = arun(go(), timeout=60)
    conn = origin.wait_conn(t + "-sink")
    assert summary == {"count": count, "bytes": count * MIB, "sha256": want}, summary
    before = sum(1 for d in done_at if d < conn.first_read_at)
    grew = (peak - base) / 1024.0
    assert grew < 16, "moat's RSS grew by %.1f MiB (from %.1f to %.1f MiB) while it relayed " \
                      "32 MiB to a reader that paused; %d MiB were sent before it read" % (
                          grew, base / 1024.0, peak / 1024.0, before)
    # The origin read nothing for `pause` seconds: the client's sends must have been held back
    # (TCP flow control through moat), not all taken in by moat.
    assert before < count, "all %d MiB were taken before the origin read a byte" % count


# ==============================================================================================
# HTTP/2 extended CONNECT (RFC 8441)
# ==============================================================================================


def test_h2_settings_enable_connect_protocol(front, pki):
    with h2c(front, pki) as c:
        assert c.server_settings.get(ENABLE_CONNECT_PROTOCOL) == 1, c.server_settings


def test_h2_extended_connect_echo(front, pki, origin):
    t = token()
    with h2c(front, pki) as c:
        sid = c.open_ws("/echo?t=" + t)
        st = c.response(sid)
        assert st.status == 200, st
        assert not st.done, st
        # No subprotocol was offered, so none is chosen; and no connection-specific field
        # (Upgrade, Connection: python3-h2 refuses an answer with one, RFC 9113 §8.2.2).
        assert st.header("sec-websocket-protocol") is None, st
        assert c.echo(sid, TEXT, b"hello over h2") == b"hello over h2"
        payload = "h\u00e9llo \u2713".encode()
        assert c.echo(sid, TEXT, payload) == payload
        small = os.urandom(300)
        assert c.echo(sid, BINARY, small) == small
        # 1 MiB: many DATA frames each way, so both sides' flow-control windows turn over.
        big = os.urandom(MIB)
        got = c.echo(sid, BINARY, big)
        assert len(got) == len(big) and sha(got) == sha(big)
        # A message in three fragments.
        c.send_ws(sid, TEXT, b"frag-a ", fin=False)
        c.send_ws(sid, CONT, b"frag-b ", fin=False)
        c.send_ws(sid, CONT, b"frag-c", fin=True)
        assert c.read_message(sid) == (TEXT, b"frag-a frag-b frag-c")
        assert not c.stream(sid).done
    conn = origin.wait_conn(t)
    assert conn.messages == 5, conn
    # moat's own HTTP/1.1 handshake to the origin.
    assert conn.path == "/echo?t=" + t
    assert conn.header("Host") == "app.test:%d" % front.port, conn.headers
    assert conn.header("Upgrade", "").lower() == "websocket", conn.headers
    assert "upgrade" in conn.header("Connection", "").lower(), conn.headers
    assert conn.header("Sec-WebSocket-Version") == "13", conn.headers
    key = conn.header("Sec-WebSocket-Key")
    assert key and len(base64.b64decode(key, validate=True)) == 16, conn.headers
    assert conn.header_all("X-Forwarded-For") == ["127.0.0.1"], conn.headers
    assert conn.header("X-Forwarded-Proto") == "https", conn.headers


def test_h2_subprotocol_negotiated(front, pki, origin):
    t1, t2 = token(), token()
    with h2c(front, pki) as c:
        sid = c.ws("/echo?t=" + t1, protocols=["superchat", "chat"])
        assert c.stream(sid).header("sec-websocket-protocol") == "chat", c.stream(sid)
        assert c.echo(sid, TEXT, b"chat msg") == b"chat msg"
        sid2 = c.ws("/echo?t=" + t2, protocols=["other"])
        assert c.stream(sid2).header("sec-websocket-protocol") is None, c.stream(sid2)
        assert c.echo(sid2, TEXT, b"plain msg") == b"plain msg"
    assert origin.wait_conn(t1).subprotocol == "chat"
    assert origin.wait_conn(t2).subprotocol is None


def test_h2_close_handshake_client_first(front, pki, origin):
    t, t2 = token(), token()
    with h2c(front, pki) as c:
        sid = c.ws("/echo?t=" + t)
        assert c.echo(sid, TEXT, b"x") == b"x"
        c.send_ws(sid, CLOSE, close_payload(1000, "client done"))
        op, fr = c.read_message(sid)
        assert op == CLOSE and fr.close_code == 1000, fr
        # The origin closes its TCP connection after the close handshake: moat ends the
        # stream (it does not hang open), and the connection stays up for other streams.
        st = c.wait_done(sid)
        assert c.terminated is None, c.terminated
        if not st.reset:
            c.end(sid)
        sid2 = c.ws("/echo?t=" + t2)
        assert c.echo(sid2, TEXT, b"next stream") == b"next stream"
    conn = origin.wait_conn(t)
    assert conn.closed.wait(5), conn
    assert (conn.close_code, conn.close_reason) == (1000, "client done"), conn


def test_h2_close_handshake_origin_first(front, pki, origin):
    t = token()
    with h2c(front, pki) as c:
        sid = c.ws("/echo?t=" + t)
        c.send_ws(sid, TEXT, b"close:4002:done")
        op, fr = c.read_message(sid)
        assert op == CLOSE, fr
        assert (fr.close_code, fr.close_reason) == (4002, "done"), fr
        c.send_ws(sid, CLOSE, close_payload(4002, "done"))
        st = c.wait_done(sid)
        assert st.reset in (None, 0, 8), st  # ended, or at most NO_ERROR / CANCEL
        assert c.terminated is None, c.terminated
    conn = origin.wait_conn(t)
    assert conn.closed.wait(5), conn
    assert conn.close_code == 4002, conn  # our close frame reached the origin


def test_h2_end_stream_from_client_closes_the_origin_side(front, pki, origin):
    t = token()
    with h2c(front, pki) as c:
        sid = c.ws("/echo?t=%s-a" % t)
        assert c.echo(sid, BINARY, b"one") == b"one"
        # END_STREAM without a close frame: the client has closed its side.
        c.end(sid)
        conn = origin.wait_conn(t + "-a")
        assert conn.closed.wait(5), "the origin's connection stayed open after END_STREAM"
        assert conn.close_code != 1000, conn  # it got no close frame from anyone
        st = c.wait_done(sid)
        assert c.terminated is None, c.terminated
        # The connection carries on.
        sid2 = c.ws("/echo?t=%s-b" % t)
        assert c.echo(sid2, TEXT, b"still fine") == b"still fine"
        assert not st.reset or st.reset in (0, 8), st


def test_h2_several_tunnels_on_one_connection(front, pki, origin):
    t = token()
    with h2c(front, pki) as c:
        sids = [c.ws("/echo?t=%s-%d" % (t, i)) for i in range(5)]
        for round_ in range(10):
            for i, sid in enumerate(sids):
                c.send_ws(sid, TEXT, b"s%d-r%d" % (i, round_))
            for i, sid in enumerate(reversed(sids)):
                j = len(sids) - 1 - i
                assert c.read_message(sid) == (TEXT, b"s%d-r%d" % (j, round_))
        assert not any(c.stream(s).done for s in sids)
    peers = {origin.wait_conn("%s-%d" % (t, i)).peer for i in range(5)}
    assert len(peers) == 5
    for i in range(5):
        assert origin.wait_conn("%s-%d" % (t, i)).messages == 10


def test_h2_origin_refusal_is_relayed(front, pki, origin):
    t = token()
    with h2c(front, pki) as c:
        sid = c.open_ws("/refuse?t=" + t)
        st = c.wait_done(sid)
        assert st.status == 403, st
        assert bytes(st.body) == b"refused by origin\n", st
        assert st.header("x-origin") == "refused", st
        # The connection is fine afterwards.
        sid2 = c.ws("/echo?t=%s-ok" % t)
        assert c.echo(sid2, TEXT, b"ok") == b"ok"
    origin.wait_refused(t)


def test_h2_origin_with_a_wrong_accept_gets_no_tunnel(front, pki, origin):
    # moat checks the origin's Sec-WebSocket-Accept against the key it sent: a 101 with a
    # wrong one is a failed origin (502), not a :status 200.
    t = token()
    with h2c(front, pki) as c:
        sid = c.open_ws("/badaccept?t=" + t)
        st = c.response(sid)
        assert st.reset is not None or st.status >= 500, st
        if st.reset is None:
            c.wait_done(sid)
        assert c.terminated is None, c.terminated
        sid2 = c.ws("/echo?t=%s-ok" % t)
        assert c.echo(sid2, TEXT, b"ok") == b"ok"
    origin.wait_refused(t)


def test_h2_plain_connect_is_refused(front, pki, origin):
    before = len(origin.conns)
    with h2c(front, pki) as c:
        c.conn.config.validate_outbound_headers = False
        sid = c.conn.get_next_available_stream_id()
        # The site's own name as the authority, so that only the method can be refused
        # (not a misdirected request, 421).
        c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", c.authority)],
                            end_stream=False)
        c.flush()
        c.conn.config.validate_outbound_headers = True
        st = c.stream(sid)
        c.pump_until(lambda: st.headers is not None or st.done, 5,
                     what="an answer to a plain CONNECT")
        assert st.reset is not None or (st.status >= 400 and st.status != 421), st
        assert c.terminated is None, c.terminated
        # The stream does not stay open as a tunnel, and the connection is still usable.
        if st.reset is None:
            c.wait_done(sid)
        sid2 = c.ws("/echo?t=%s" % token())
        assert c.echo(sid2, TEXT, b"after CONNECT") == b"after CONNECT"
    assert len(origin.conns) == before + 1  # the echo only


# ==============================================================================================
# Headless Chromium
# ==============================================================================================


def spki_hash(cert_pem):
    """base64(SHA-256(SubjectPublicKeyInfo)), as --ignore-certificate-errors-spki-list wants."""
    pub = run([OPENSSL, "x509", "-in", cert_pem, "-noout", "-pubkey"]).stdout
    der = subprocess.run([OPENSSL, "pkey", "-pubin", "-outform", "DER"], input=pub.encode(),
                         capture_output=True, check=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def chromium_dom(tmp_path, url, spki, name):
    """`chromium --headless --dump-dom URL` with a clean profile, trusting the leaf by its key,
    page.test and page11.test mapped to 127.0.0.1; returns (dom, stderr, net log text)."""
    home = tmp_path / ("home-" + name)
    home.mkdir()
    netlog = tmp_path / ("netlog-%s.json" % name)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HOME"] = str(home)
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--user-data-dir=%s" % (tmp_path / ("profile-" + name)),
            "--host-resolver-rules=MAP page.test 127.0.0.1, MAP page11.test 127.0.0.1",
            "--ignore-certificate-errors-spki-list=%s" % spki,
            "--log-net-log=%s" % netlog, "--net-log-capture-mode=Everything",
            "--dump-dom", url]
    p = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=10)
        raise AssertionError("chromium --dump-dom did not finish in 60 s: %s" % err[-2000:])
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # helpers it left behind
        except ProcessLookupError:
            pass
    log = netlog.read_text(errors="replace") if netlog.exists() else ""
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), log


chromium_only = pytest.mark.skipif(CHROMIUM is None,
                                   reason="chromium not installed (Debian package chromium)")


def chromium_echo(front, cert, origin, tmp_path, host, name):
    """Chromium opens https://HOST/ws.html, whose script does a WebSocket echo through
    `proxy /ws/`; returns Chromium's net log once the echo is asserted."""
    t = token()
    url = "https://%s:%d/ws.html?t=%s" % (host, front.port, t)
    dom, err, log = chromium_dom(tmp_path, url, spki_hash(cert.leaf), name)
    assert "WS-ECHO=hello-from-chromium=" in dom, "page says %r\n--- stderr ---\n%s" % (
        dom[-1500:], err[-2000:])
    assert "HOLD-DONE" in dom, dom[-1500:]  # the dump came after the held image
    conn = origin.wait_conn(t)
    assert conn.path == "/ws/echo?t=" + t, conn
    assert conn.header("Host") == "%s:%d" % (host, front.port), conn.headers
    assert conn.messages == 1, conn
    return log


@chromium_only
def test_chromium_websocket_over_h2(front, cert, origin, tmp_path):
    log = chromium_echo(front, cert, origin, tmp_path, "page.test", "h2")
    # Chromium's net log: the WebSocket went as an extended CONNECT on the h2 connection,
    # which it does only when the server's SETTINGS allow it (RFC 8441 §3).
    assert ":protocol: websocket" in log, "no extended CONNECT in Chromium's net log"


@chromium_only
def test_chromium_websocket_over_http11_on_a_site_with_http2_off(front, cert, origin, tmp_path):
    log = chromium_echo(front, cert, origin, tmp_path, "page11.test", "h1")
    assert "Upgrade: websocket" in log, "no HTTP/1.1 Upgrade in Chromium's net log"
    assert ":protocol: websocket" not in log, "an extended CONNECT on a site with http2 off"
