"""The router's HTTP/1.1 client: keep-alive connection pools per backend, responses parsed by httptools.

Why not a client library: on loopback against our model server a round trip through aiohttp took 0.46-0.50 ms
at p50 and one through this client 0.19-0.23 ms (the server's own work included), and httpx was slower than
aiohttp; the difference is per-request Python overhead, which is exactly what a proxy adds to every call. The
router needs little of what a library offers: no redirects, cookies, proxies, compression or streaming, one
request per connection at a time. What it does need is here:

- pools: one per backend URL and model version, last-in-first-out (the warmest connection first), unbounded in
  size (the clients' concurrency bounds them), idle connections kept for IDLE_S, which is below uvicorn's default
  keep-alive of 5 s, so the server rarely closes one just as it is reused;
- no connection outlives MAX_AGE_S. A Kubernetes Service picks a pod per connection, not per request, and the
  operator re-points a role's Service (`<name>-stable`, `<name>-canary`) to another revision at each promotion and
  each new candidate. A kept-alive connection would go on reaching the old pods for as long as requests keep it
  busy: measured, a candidate got none of its share (all of it went to the previous candidate, now stable) and
  stable's share went on to the revision it replaced until that was scaled down. The routing document names the
  new version at the same time, so the pool of the new (URL, version) starts with new connections, and the
  maximum age bounds what a connection opened before the Service's endpoints changed can still send there;
- a request whose reused connection turns out to be closed before any byte of the answer arrived is sent
  again once on a new connection (the server never saw it: it had closed the idle connection);
- responses framed by Content-Length, chunked, or (legal but rare) the end of the connection; 1xx interim
  responses are skipped; HEAD responses have no body;
- a deadline over the whole call (connect, send, answer): the connection of a call that missed it is closed,
  since its answer may still arrive.
The request is written as the client sent it (method, raw path and query, headers less hop-by-hop ones) with
the backend's Host and a Content-Length; the response comes back with its status, raw headers and body.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpResponseParser

IDLE_S = 4.0
MAX_AGE_S = 10.0
MAX_IDLE_PER_BACKEND = 512
BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
# Bodies up to this size are joined with the head into one write (one syscall, one TCP segment); larger
# ones are written after it, uncopied.
JOIN_BELOW = 64 * 1024

RawHeaders = list[tuple[bytes, bytes]]


class UpstreamError(Exception):
    """The backend gave no complete answer: refused, reset, closed early, or spoke no HTTP."""


@dataclass(slots=True)  # one per call: not frozen, whose __init__ costs three times as much
class Response:
    status: int
    headers: RawHeaders
    body: bytes


@dataclass(frozen=True, slots=True)
class Origin:
    """A backend base URL taken apart once: where to connect and what to put in front of every path."""

    url: str
    host: str
    port: int
    tls: bool
    host_header: bytes
    prefix: bytes  # the base URL's path, without its trailing slash
    version: str = ""  # the model version answering there: connections are pooled per (url, version)

    @classmethod
    def parse(cls, url: str, version: str = "") -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s)://host[:port][/path] URL")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        return cls(
            url=url,
            host=parts.hostname,
            port=port,
            tls=tls,
            host_header=parts.netloc.rpartition("@")[2].encode("idna"),
            prefix=parts.path.rstrip("/").encode(),
            version=version,
        )


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request on it at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.received = False  # some byte of the current answer arrived
        self.idle_since = 0.0
        self.opened_at = asyncio.get_running_loop().time()
        self._parser = HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._head = False
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: RawHeaders = []
        self._body: list[bytes] = []
        self._framed = False
        self._headers_done = False

    # --- use ----------------------------------------------------------------------------------------------

    def send(self, head: bytes, body: bytes, *, is_head: bool) -> asyncio.Future[Response]:
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            raise UpstreamError("the connection is closed")
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._head = is_head
        self.reusable = False
        self.received = False
        if len(body) < JOIN_BELOW:
            transport.write(head + body if body else head)
        else:
            transport.write(head)
            transport.write(body)
        return waiter

    async def exchange(self, head: bytes, body: bytes, *, is_head: bool, deadline: float) -> Response:
        """Send a request and await its answer until `deadline` (loop time)."""
        # A timer on the answer's future rather than asyncio.timeout(): the same deadline for a fraction of the
        # cost on the path every request takes. A connection whose answer is late stays busy, and is closed
        # when released.
        waiter = self.send(head, body, is_head=is_head)
        timer = asyncio.get_running_loop().call_at(deadline, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    @property
    def busy(self) -> bool:
        return self._waiter is not None

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    # --- asyncio.Protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport for TCP connections

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self._waiter is None:  # an answer to nothing: this connection cannot be trusted any more
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except HttpParserError as exc:
            self._fail(UpstreamError(f"the backend's answer is not valid HTTP: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._waiter is None:
            return
        if self._headers_done and not self._framed:  # a body delimited by the end of the connection
            self._complete(keep_alive=False)
            return
        reason = f": {exc}" if exc else ""
        self._fail(UpstreamError(f"the backend closed the connection before answering{reason}"))

    # --- httptools callbacks ----------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        lower = name.lower()
        if lower in {b"content-length", b"transfer-encoding"}:
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._status = self._parser.get_status_code()
        if self._head and self._status >= 200:
            # No body follows a HEAD answer whatever its Content-Length says; llhttp cannot be told so, so
            # answer now and retire the connection rather than let the parser wait for that body.
            self._complete(keep_alive=False)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._waiter is None:
            return
        if 100 <= self._status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self._reset()
            return
        self._complete(keep_alive=self._parser.should_keep_alive())

    def _complete(self, *, keep_alive: bool) -> None:
        waiter = self._waiter
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        response = Response(self._status, self._headers, body)
        self._waiter = None
        self._reset()
        self.reusable = keep_alive and not self.closed
        self.received = False  # bytes arriving from now on belong to no request
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, error: UpstreamError) -> None:
        waiter = self._waiter
        self._waiter = None
        self._reset()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class _Pool:
    def __init__(self, origin: Origin, tls: ssl.SSLContext | None) -> None:
        self.origin = origin
        self._tls = tls
        self._idle: list[_Connection] = []

    def take(self, now: float) -> _Connection | None:
        """The most recently used idle connection that is still open, fresh and young enough, if any."""
        oldest, born_after = now - IDLE_S, now - MAX_AGE_S
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and connection.idle_since > oldest and connection.opened_at > born_after:
                return connection
            connection.close()
        return None

    async def connect(self) -> _Connection:
        origin = self.origin
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                _Connection,
                origin.host,
                origin.port,
                ssl=self._tls,
                server_hostname=origin.host if self._tls else None,
            )
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {origin.host}:{origin.port}: {exc}") from None
        return connection

    def release(self, connection: _Connection) -> None:
        if connection.reusable and not connection.busy and len(self._idle) < MAX_IDLE_PER_BACKEND:
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


class UpstreamClient:
    """Calls to any number of backends, each with its own pool."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str], _Pool] = {}
        self._tls: ssl.SSLContext | None = None

    def _pool(self, origin: Origin) -> _Pool:
        key = (origin.url, origin.version)
        pool = self._pools.get(key)
        if pool is None:
            if origin.tls and self._tls is None:
                self._tls = ssl.create_default_context()
            # Another version at this URL: its connections may reach the pods the Service no longer selects.
            for old in [k for k in self._pools if k[0] == origin.url]:
                self._pools.pop(old).close()
            pool = self._pools[key] = _Pool(origin, self._tls if origin.tls else None)
        return pool

    async def request(
        self, origin: Origin, method: bytes, target: bytes, headers: RawHeaders, body: bytes, *, timeout_s: float
    ) -> Response:
        """One call; TimeoutError past `timeout_s`, UpstreamError when no complete answer came."""
        head = _head(origin, method, target, headers, body)
        pool = self._pool(origin)
        is_head = method == b"HEAD"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        connection = pool.take(loop.time())
        reused = connection is not None
        if connection is None:
            connection = await _connect(pool, deadline)
        try:
            try:
                return await connection.exchange(head, body, is_head=is_head, deadline=deadline)
            except UpstreamError:
                if not reused or connection.received:
                    raise
            # The idle connection had been closed by the backend: the request never reached it.
            connection.close()
            connection = await _connect(pool, deadline)
            return await connection.exchange(head, body, is_head=is_head, deadline=deadline)
        finally:
            pool.release(connection)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


async def _connect(pool: _Pool, deadline: float) -> _Connection:
    async with asyncio.timeout_at(deadline):
        return await pool.connect()


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _head(origin: Origin, method: bytes, target: bytes, headers: RawHeaders, body: bytes) -> bytes:
    parts = [method, b" ", origin.prefix, target, b" HTTP/1.1\r\nhost: ", origin.host_header, b"\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if body or method in BODY_METHODS:
        parts.append(b"content-length: %d\r\n" % len(body))
    parts.append(b"\r\n")
    return b"".join(parts)
