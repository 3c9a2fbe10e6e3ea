"""A small frame-level HTTP/2 client for the h2 tests (test_h2*.py).

Frames are written by hand (struct, so a test can send any malformed frame it likes: a wrong
length, a reserved stream id, a bad setting) and read back with a parser of our own, so what
the server sent is seen exactly, frame by frame, in order, with the time it arrived. Header
blocks are coded with python3-h2's `hpack` module, which leaves names as given (upper case
included). An H2Conn keeps per-stream state (status, fields, body, trailers, RST_STREAM code),
the server's SETTINGS and its GOAWAY, answers PING and SETTINGS, and by default gives back
flow-control credit for every DATA frame it receives (auto_window=False leaves that to the
test). It is not thread-safe: one connection per thread.

Every read has a timeout, so a server that hangs fails a test instead of the run.
"""

import socket
import ssl
import struct
import time

import hpack

from helpers import NET_TIMEOUT, client_context

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 §6, RFC 9218 §7.1).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
PRIORITY_UPDATE = 0x10

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Error codes (RFC 9113 §7).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
SETTINGS_TIMEOUT = 0x4
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

ERROR_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR",
               3: "FLOW_CONTROL_ERROR", 4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED",
               6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL",
               9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM",
               12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}

# Settings (RFC 9113 §6.5.2).
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6
NO_RFC7540_PRIORITIES = 0x9

TYPE_NAMES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS",
              5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE",
              9: "CONTINUATION", 0x10: "PRIORITY_UPDATE"}


def ename(code):
    return ERROR_NAMES.get(code, "0x%x" % code) if code is not None else None


# -- building frames -----------------------------------------------------------------------------


def frame(ftype, flags, sid, payload=b"", length=None):
    """One frame's bytes. `length` overrides the length field (to lie about it)."""
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def settings_frame(settings=(), ack=False):
    payload = b"".join(struct.pack(">HI", k, v) for k, v in settings)
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def window_update(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))


def rst_stream(sid, code=CANCEL):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def ping(data=b"12345678", ack=False):
    return frame(PING, ACK if ack else 0, 0, data)


def priority(sid, dep=0, weight=15, exclusive=False):
    return frame(PRIORITY, 0, sid, struct.pack(">IB", dep | (0x80000000 if exclusive else 0),
                                               weight))


def priority_update(prioritized_sid, value):
    return frame(PRIORITY_UPDATE, 0, 0, struct.pack(">I", prioritized_sid) + value.encode())


def goaway(last_sid=0, code=NO_ERROR, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_sid, code) + debug)


# -- what came back ------------------------------------------------------------------------------


class Frame:
    def __init__(self, ftype, flags, sid, payload, at):
        self.type = ftype
        self.flags = flags
        self.sid = sid
        self.payload = payload
        self.at = at

    @property
    def length(self):
        return len(self.payload)

    def __repr__(self):
        return "<%s flags=0x%x sid=%d len=%d>" % (TYPE_NAMES.get(self.type, self.type),
                                                  self.flags, self.sid, len(self.payload))


class GoAway:
    def __init__(self, last_sid, code, debug):
        self.last_sid = last_sid
        self.code = code
        self.debug = debug

    def __repr__(self):
        return "GOAWAY(last=%d, %s, %r)" % (self.last_sid, ename(self.code), self.debug[:200])


class Stream:
    def __init__(self, sid):
        self.sid = sid
        self.headers = None      # the final response's fields [(name, value)] as str, in order
        self.informational = []  # 1xx field lists
        self.trailers = None
        self.body = bytearray()
        self.data_frames = 0
        self.ended = False       # END_STREAM seen
        self.reset = None        # RST_STREAM error code from the server
        self.first_data_at = None
        self.ended_at = None

    @property
    def status(self):
        if self.headers is None:
            return None
        for k, v in self.headers:
            if k == ":status":
                return int(v)
        return None

    def header(self, name, default=None):
        for k, v in self.headers or []:
            if k == name:
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers or [] if k == name]

    @property
    def done(self):
        return self.ended or self.reset is not None

    def __repr__(self):
        return "Stream(%d, status=%s, %d body bytes, ended=%s, reset=%s, headers=%r)" % (
            self.sid, self.status, len(self.body), self.ended, ename(self.reset),
            (self.headers or [])[:12])


class Closed(Exception):
    """The connection ended before what was waited for."""


_EOF_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
               ssl.SSLEOFError, ssl.SSLZeroReturnError)


def h2_context(cafile=None, verify=True, alpn=("h2",), cert=None):
    ctx = client_context(cafile=cafile, verify=verify, alpn=list(alpn) if alpn else None)
    if cert is not None:
        ctx.load_cert_chain(str(cert.pem), str(cert.key))
    return ctx


class H2Conn:
    """One HTTP/2 connection over TLS (ALPN h2) to 127.0.0.1:port.

    settings: the client's SETTINGS [(id, value)]; preface=False sends nothing at all (the
    test writes the preface itself); conn_window: extra connection-level credit given at the
    start (WINDOW_UPDATE on stream 0); auto_window: give back credit for every DATA frame.
    """

    def __init__(self, port, sni="example.test", *, host="127.0.0.1", alpn=("h2",),
                 cafile=None, verify=False, context=None, cert=None, settings=None,
                 preface=True, auto_window=True, conn_window=0, timeout=NET_TIMEOUT,
                 wait_settings=True):
        self.timeout = timeout
        self.authority = sni or "example.test"
        raw = socket.create_connection((host, port), timeout=timeout)
        if context is None:
            context = h2_context(cafile=cafile, verify=verify and cafile is not None,
                                 alpn=alpn, cert=cert)
        try:
            self.sock = context.wrap_socket(raw, server_hostname=sni)
        except Exception:
            raw.close()
            raise
        self.alpn = self.sock.selected_alpn_protocol()
        self.buf = bytearray()
        self.eof = False
        self.eof_at = None
        self.frames = []           # every frame received, in order
        self.streams = {}
        self.server_settings = {}
        self.settings_received = 0
        self.settings_acks = 0
        self.ping_acks = []
        self.goaways = []
        self.auto_window = auto_window
        self.auto_ack = True
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.decoder.max_allowed_table_size = 1 << 16
        self._hblock = None        # (sid, bytearray, end_stream) while CONTINUATION follows
        self.next_sid = 1
        # Our send windows (for request bodies).
        self.conn_send_window = 65535
        self.stream_send_window = {}
        self.peer_initial_window = 65535
        self.peer_max_frame = 16384
        if preface:
            self.send(PREFACE + settings_frame(settings or []))
            if conn_window:
                self.send(window_update(0, conn_window))
            if wait_settings:
                self.pump_until(lambda: self.settings_received > 0, what="the server's SETTINGS")

    # -- plumbing ---------------------------------------------------------------------------

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        """Write bytes; False (not an exception) when the server has already gone."""
        try:
            self.sock.sendall(data)
            return True
        except (OSError, ssl.SSLError):
            return False

    def _fill(self, timeout):
        if self.eof:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(1 << 18)
        except (socket.timeout, TimeoutError):
            return None
        except _EOF_ERRORS:
            chunk = b""
        except ssl.SSLError:
            chunk = b""
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
            self.eof_at = time.monotonic()
            return False
        self.buf += chunk
        return True

    def _take_frame(self):
        if len(self.buf) < 9:
            return None
        n = int.from_bytes(self.buf[0:3], "big")
        if len(self.buf) < 9 + n:
            return None
        ftype, flags = self.buf[3], self.buf[4]
        sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
        payload = bytes(self.buf[9:9 + n])
        del self.buf[:9 + n]
        return Frame(ftype, flags, sid, payload, time.monotonic())

    def read_frame(self, timeout=None):
        """The next frame (handled), or None at EOF or when `timeout` passes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            f = self._take_frame()
            if f is not None:
                self.frames.append(f)
                self._handle(f)
                return f
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            got = self._fill(left)
            if got is False:
                return None

    def pump(self, seconds):
        """Read and handle frames for `seconds` (or until EOF)."""
        deadline = time.monotonic() + seconds
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.read_frame(left)

    def pump_until(self, pred, timeout=None, what="a condition"):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for %s; frames: %r" % (
                    what, self.frames[-20:]))
            f = self.read_frame(left)
            if f is None and self.eof and not pred():
                raise Closed("connection closed while waiting for %s; goaway %r; frames %r"
                             % (what, self.goaway, self.frames[-20:]))
        return True

    def stream(self, sid):
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = Stream(sid)
        return st

    def _handle(self, f):
        if f.type == SETTINGS:
            if f.flags & ACK:
                self.settings_acks += 1
                return
            self.settings_received += 1
            for i in range(0, len(f.payload) - len(f.payload) % 6, 6):
                k, v = struct.unpack(">HI", f.payload[i:i + 6])
                self.server_settings[k] = v
                if k == INITIAL_WINDOW_SIZE:
                    delta = v - self.peer_initial_window
                    self.peer_initial_window = v
                    for s in self.stream_send_window:
                        self.stream_send_window[s] += delta
                elif k == MAX_FRAME_SIZE:
                    self.peer_max_frame = v
                elif k == HEADER_TABLE_SIZE:
                    # RFC 7541 §4.2: our encoder's table may not be larger than the server's
                    # decoder allows; hpack signals the change in the next header block.
                    self.encoder.header_table_size = min(v, 4096)
            if self.auto_ack:
                self.send(settings_frame(ack=True))
        elif f.type == PING:
            if f.flags & ACK:
                self.ping_acks.append(f.payload)
            elif self.auto_ack:
                self.send(ping(f.payload, ack=True))
        elif f.type == GOAWAY:
            last, code = struct.unpack(">II", f.payload[:8])
            self.goaways.append(GoAway(last & 0x7FFFFFFF, code, f.payload[8:]))
        elif f.type == RST_STREAM:
            self.stream(f.sid).reset = struct.unpack(">I", f.payload[:4])[0]
        elif f.type == WINDOW_UPDATE:
            inc = struct.unpack(">I", f.payload[:4])[0] & 0x7FFFFFFF
            if f.sid == 0:
                self.conn_send_window += inc
            else:
                self.stream_send_window[f.sid] = self.stream_send_window.get(
                    f.sid, self.peer_initial_window) + inc
        elif f.type in (HEADERS, PUSH_PROMISE):
            p = f.payload
            pad = 0
            if f.flags & PADDED:
                pad = p[0]
                p = p[1:]
            if f.type == HEADERS and f.flags & PRIORITY_FLAG:
                p = p[5:]
            if f.type == PUSH_PROMISE:
                p = p[4:]
            if pad:
                p = p[:-pad]
            self._hblock = (f.sid, bytearray(p), bool(f.flags & END_STREAM), f.type)
            if f.flags & END_HEADERS:
                self._end_headers()
        elif f.type == CONTINUATION:
            if self._hblock is not None:
                self._hblock[1].extend(f.payload)
                if f.flags & END_HEADERS:
                    self._end_headers()
        elif f.type == DATA:
            st = self.stream(f.sid)
            p = f.payload
            if f.flags & PADDED:
                p = p[1:len(p) - p[0]]
            st.body += p
            st.data_frames += 1
            if st.first_data_at is None and p:
                st.first_data_at = f.at
            if f.flags & END_STREAM:
                st.ended = True
                st.ended_at = f.at
            if self.auto_window and f.length:
                self.send(window_update(0, f.length) +
                          (window_update(f.sid, f.length) if not st.ended else b""))

    def _end_headers(self):
        sid, block, end_stream, ftype = self._hblock
        self._hblock = None
        fields = [(k.decode("latin-1"), v.decode("latin-1"))
                  for k, v in self.decoder.decode(bytes(block), raw=True)]
        if ftype == PUSH_PROMISE:
            self.stream(sid).push_promise = fields
            return
        st = self.stream(sid)
        status = next((v for k, v in fields if k == ":status"), None)
        if st.headers is None and status is not None and 100 <= int(status) < 200:
            st.informational.append(fields)
        elif st.headers is None:
            st.headers = fields
        else:
            st.trailers = fields
        if end_stream:
            st.ended = True
            st.ended_at = time.monotonic()

    # -- the connection's end ---------------------------------------------------------------

    @property
    def goaway(self):
        return self.goaways[-1] if self.goaways else None

    def wait_goaway(self, timeout=5.0):
        """The server's (last) GOAWAY, reading frames for up to `timeout`; None if none."""
        deadline = time.monotonic() + timeout
        while not self.goaways and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.read_frame(left)
        # Keep reading what came before the close, in case there was more than one.
        return self.goaway

    def wait_closed(self, timeout=5.0):
        """True when the server closes the connection within `timeout` (frames are handled)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.read_frame(left)
        return True

    # -- requests ---------------------------------------------------------------------------

    def encode(self, fields):
        return self.encoder.encode([(k.encode("latin-1") if isinstance(k, str) else k,
                                     v.encode("latin-1") if isinstance(v, str) else v)
                                    for k, v in fields], huffman=True)

    def request_fields(self, path="/", method="GET", authority=None, scheme="https",
                       headers=()):
        fields = [(":method", method), (":scheme", scheme),
                  (":authority", authority or self.authority), (":path", path)]
        return fields + list(headers)

    def headers(self, sid, fields, end_stream=True, end_headers=True):
        """Send a HEADERS frame with `fields` exactly as given (pseudo-fields included); a
        block larger than the server's SETTINGS_MAX_FRAME_SIZE goes on in CONTINUATION
        frames."""
        self.stream(sid)
        self.stream_send_window.setdefault(sid, self.peer_initial_window)
        block = self.encode(fields)
        size = self.peer_max_frame
        pieces = [block[i:i + size] for i in range(0, len(block), size)] or [b""]
        out = b""
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            flags = END_HEADERS if (last and end_headers) else 0
            if i == 0:
                out += frame(HEADERS, flags | (END_STREAM if end_stream else 0), sid, piece)
            else:
                out += frame(CONTINUATION, flags, sid, piece)
        self.send(out)
        if sid % 2 == 1 and sid >= self.next_sid:
            self.next_sid = sid + 2

    def new_sid(self):
        sid = self.next_sid
        self.next_sid += 2
        return sid

    def request(self, path="/", method="GET", authority=None, headers=(), body=None,
                fields=None, end_stream=None):
        """Open a stream with a request; returns its id. With `body`, sends it (in frames
        that fit the server's windows and frame size) and ends the stream."""
        sid = self.new_sid()
        if fields is None:
            fields = self.request_fields(path, method, authority, headers=headers)
        if end_stream is None:
            end_stream = body is None
        self.headers(sid, fields, end_stream=end_stream)
        if body is not None:
            self.send_data(sid, body, end_stream=True)
        return sid

    def send_data(self, sid, data, end_stream=True, timeout=None):
        """Send DATA within the flow-control windows, waiting for credit as needed. Stops
        early (returns False) when the stream is reset or the connection ends."""
        view = memoryview(data)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            st = self.stream(sid)
            if st.reset is not None or self.eof or (st.ended and st.headers is not None):
                return False
            win = min(self.conn_send_window, self.stream_send_window.get(
                sid, self.peer_initial_window), self.peer_max_frame)
            if len(view) == 0 or win > 0:
                n = min(win, len(view))
                last = n == len(view)
                if not self.send(frame(DATA, END_STREAM if (last and end_stream) else 0, sid,
                                       bytes(view[:n]))):
                    return False
                self.conn_send_window -= n
                self.stream_send_window[sid] = self.stream_send_window.get(
                    sid, self.peer_initial_window) - n
                view = view[n:]
                if last:
                    return True
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no flow-control credit to send the body of stream %d"
                                     % sid)
            self.read_frame(min(left, 0.5))

    def response(self, sid, timeout=None):
        """Wait until stream `sid` ends (END_STREAM or RST_STREAM); returns its Stream."""
        st = self.stream(sid)
        self.pump_until(lambda: st.done, timeout, what="the end of stream %d" % sid)
        return st

    def get(self, path="/", method="GET", timeout=None, **kw):
        return self.response(self.request(path, method, **kw), timeout)

    def ping_roundtrip(self, timeout=5.0):
        """True when the connection still answers a PING."""
        data = struct.pack(">d", time.time())
        n = len(self.ping_acks)
        self.send(ping(data))
        try:
            self.pump_until(lambda: len(self.ping_acks) > n, timeout, what="PING ACK")
        except (AssertionError, Closed):
            return False
        return True


# -- connection-level checks ---------------------------------------------------------------------


def expect_connection_error(c, codes, timeout=5.0):
    """The server sent GOAWAY with one of `codes` and closed the connection."""
    if isinstance(codes, int):
        codes = (codes,)
    g = c.wait_goaway(timeout)
    assert g is not None, "no GOAWAY (closed=%s); frames: %r" % (c.eof, c.frames[-10:])
    assert g.code in codes, "GOAWAY %r, want %s" % (g, [ename(x) for x in codes])
    assert c.wait_closed(timeout), "connection still open after %r" % g
    return g


def expect_stream_error(c, sid, codes=(PROTOCOL_ERROR,), timeout=5.0):
    """Stream `sid` was reset with one of `codes`, and no GOAWAY with an error came."""
    if isinstance(codes, int):
        codes = (codes,)
    st = c.stream(sid)
    c.pump_until(lambda: st.done or c.goaways, timeout, what="RST_STREAM on %d" % sid)
    assert not (c.goaway and c.goaway.code != NO_ERROR), \
        "a connection error %r where a stream error was due" % c.goaway
    assert st.reset in codes, "stream %d: %r, want RST_STREAM %s" % (
        sid, st, [ename(x) for x in codes])
    return st


CONNECTION_SPECIFIC = ("connection", "keep-alive", "transfer-encoding", "upgrade",
                       "proxy-connection")
