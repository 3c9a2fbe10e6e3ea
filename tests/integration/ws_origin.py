"""A WebSocket origin for tests/integration/test_websocket.py: plain ws:// (HTTP/1.1) on
127.0.0.1, made with python3-websockets 10.4 and run by `websockets.serve` on an asyncio loop of
its own in a thread, so a synchronous test can start it, look at what it saw and stop it.

What it does, by the path of the handshake (the query is free, so a test tags its connection
with a token and finds it again with `wait_conn(token)`):
- `.../hold?t=TOKEN`: a plain HTTP 200 (`held:echoed`), sent 0.3 s after the WebSocket
  connection tagged TOKEN echoed its first message (at most 10 s later: `held:timeout`);
- `.../refuse`: HTTP 403 (text/plain body `refused by origin`) instead of a 101;
- `.../badaccept`: a 101 whose Sec-WebSocket-Accept is wrong for the key, then a close;
- `.../sink?count=N&pause=S&delay=D`: a slow reader: waits S seconds before reading anything,
  then reads N messages, sleeping D seconds after each, and answers one JSON text message
  {"count", "bytes", "sha256"} over everything it read (binary as is, text as UTF-8);
- anything else: echo. Text and binary messages come back as they came, except:
  `close:CODE:REASON` closes the connection with that code and reason, and `ping?` makes the
  origin ping the client and answer `pong:OK` once the pong came back.

Subprotocol `chat` is accepted when the client offers it. Messages up to 16 MiB. The server's
own keepalive pings are off (ping_interval None), so an idle tunnel stays silent; max_queue is
1, so a handler that does not read makes websockets stop reading the socket (real TCP
back-pressure towards whoever sends), and the listening socket's SO_RCVBUF can be set small
for the same reason.

Each accepted handshake is recorded as a WsConn (path, headers as sent, subprotocol, peer,
messages and bytes received, the close code and reason it received, when it started reading),
each refused one (refuse, badaccept) as a (path, headers) pair in `refused`.
"""

import asyncio
import base64
import hashlib
import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.exceptions import ConnectionClosed

MAX_SIZE = 16 << 20
SUBPROTOCOLS = ["chat"]

logging.getLogger("websockets").setLevel(logging.CRITICAL)


class WsConn:
    """What the origin saw of one accepted WebSocket connection."""

    def __init__(self, path, headers, subprotocol, peer):
        self.path = path
        self.headers = headers          # [(name, value)] as received, in order
        self.subprotocol = subprotocol
        self.peer = peer
        self.started = time.monotonic()
        self.messages = 0
        self.bytes = 0
        self.first_read_at = None       # sink: when it began to read (after the pause)
        self.close_code = None
        self.close_reason = None
        self.closed_at = None
        self.closed = threading.Event()

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return "WsConn(%s, sub=%s, %d msgs, close=%s %r)" % (
            self.path, self.subprotocol, self.messages, self.close_code, self.close_reason)


class WsOrigin:
    def __init__(self, host="127.0.0.1", rcvbuf=None):
        self.host = host
        self.rcvbuf = rcvbuf
        self.port = None
        self.conns = []
        self.refused = []
        self._lock = threading.Lock()
        self._loop = None
        self._server = None
        self._thread = None
        self._ready = threading.Event()
        self._error = None

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    # -- life ---------------------------------------------------------------------------------

    def start(self, timeout=10.0):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf:
            # Inherited by accepted sockets; also turns off receive-buffer autotuning, so
            # what the kernel holds for a handler that does not read stays small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.bind((self.host, 0))  # the kernel picks a free port for the listener itself
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(sock,), name="ws-origin",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise AssertionError("ws origin did not start in %.0fs" % timeout)
        if self._error is not None:
            raise AssertionError("ws origin failed to start: %r" % self._error)
        return self

    def _run(self, sock):
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(websockets.serve(
                self._handler, sock=sock, subprotocols=SUBPROTOCOLS,
                process_request=self._process_request, max_size=MAX_SIZE, max_queue=1,
                ping_interval=None, close_timeout=2, compression="deflate"))
        except Exception as e:  # noqa: BLE001 - reported to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self):
        if self._loop is None or self._server is None:
            return

        async def down():
            self._server.close()
            await self._server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(down(), self._loop).result(10)
        except Exception:  # noqa: BLE001 - stopping anyway
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- what it saw --------------------------------------------------------------------------

    def find(self, token):
        with self._lock:
            return [c for c in self.conns if token in c.path]

    def wait_conn(self, token, timeout=5.0):
        """The one connection whose path holds `token`, waiting for it to be accepted."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.find(token)
            if got:
                assert len(got) == 1, "several origin connections for %r: %r" % (token, got)
                return got[0]
            if time.monotonic() >= deadline:
                raise AssertionError("the origin saw no WebSocket handshake for %r; it saw %r"
                                     % (token, [c.path for c in self.conns][-20:]))
            time.sleep(0.02)

    def wait_refused(self, token, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = [r for r in self.refused if token in r[0]]
            if got:
                return got[0]
            if time.monotonic() >= deadline:
                raise AssertionError("the origin refused nothing for %r" % token)
            time.sleep(0.02)

    # -- serving ------------------------------------------------------------------------------

    async def _process_request(self, path, headers):
        if urlsplit(path).path.endswith("/hold"):
            return await self._hold(path)
        if urlsplit(path).path.endswith("/badaccept"):
            with self._lock:
                self.refused.append((path, list(headers.raw_items())))
            # A 101 whose Sec-WebSocket-Accept does not answer the key (then a close).
            return (HTTPStatus.SWITCHING_PROTOCOLS,
                    [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                     ("Sec-WebSocket-Accept", base64.b64encode(bytes(20)).decode())], b"")
        if urlsplit(path).path.endswith("/refuse"):
            with self._lock:
                self.refused.append((path, list(headers.raw_items())))
            return (HTTPStatus.FORBIDDEN,
                    [("Content-Type", "text/plain"), ("X-Origin", "refused")],
                    b"refused by origin\n")
        return None

    async def _hold(self, path):
        """A plain HTTP GET (no upgrade) answered only once the WebSocket connection of the
        same token has echoed a message, and 0.3 s more for the echo to reach the client (at
        most 10 s: `held:timeout`). A page that fetches it keeps headless Chromium's virtual
        time (--virtual-time-budget), which a WebSocket does not hold, from running out
        before its echo came."""
        tok = parse_qs(urlsplit(path).query).get("t", [""])[0]
        deadline = time.monotonic() + 10
        state = "timeout"
        while tok and time.monotonic() < deadline:
            got = self.find(tok)
            if got and got[0].messages >= 1:
                state = "echoed"
                await asyncio.sleep(0.3)
                break
            await asyncio.sleep(0.02)
        return (HTTPStatus.OK, [("Content-Type", "text/plain"), ("Cache-Control", "no-store")],
                ("held:%s\n" % state).encode())

    async def _handler(self, ws):
        conn = WsConn(ws.path, list(ws.request_headers.raw_items()), ws.subprotocol,
                      ws.remote_address)
        with self._lock:
            self.conns.append(conn)
        try:
            if urlsplit(ws.path).path.endswith("/sink"):
                await self._sink(ws, conn)
            else:
                await self._echo(ws, conn)
        except ConnectionClosed:
            pass
        finally:
            try:
                await asyncio.wait_for(ws.wait_closed(), 5)
            except asyncio.TimeoutError:
                pass
            conn.close_code = ws.close_code
            conn.close_reason = ws.close_reason
            conn.closed_at = time.monotonic()
            conn.closed.set()

    async def _echo(self, ws, conn):
        while True:
            msg = await ws.recv()
            conn.messages += 1
            conn.bytes += len(msg)
            if isinstance(msg, str) and msg.startswith("close:"):
                _, code, reason = msg.split(":", 2)
                await ws.close(int(code), reason)
                return
            if msg == "ping?":
                waiter = await ws.ping(b"origin-ping")
                await asyncio.wait_for(waiter, 5)
                await ws.send("pong:OK")
                continue
            await ws.send(msg)

    async def _sink(self, ws, conn):
        q = parse_qs(urlsplit(ws.path).query)
        count = int(q.get("count", ["1"])[0])
        pause = float(q.get("pause", ["0"])[0])
        delay = float(q.get("delay", ["0"])[0])
        await asyncio.sleep(pause)
        conn.first_read_at = time.monotonic()
        h = hashlib.sha256()
        total = 0
        for _ in range(count):
            msg = await ws.recv()
            data = msg.encode() if isinstance(msg, str) else msg
            h.update(data)
            total += len(data)
            conn.messages += 1
            conn.bytes += len(data)
            if delay:
                await asyncio.sleep(delay)
        await ws.send(json.dumps({"count": conn.messages, "bytes": total,
                                  "sha256": h.hexdigest()}))
        # Then echo, until the client closes.
        await self._echo(ws, conn)
