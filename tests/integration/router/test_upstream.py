"""The router's HTTP/1.1 client against hand-written backends on loopback: every framing an answer may use,
interim answers, HEAD, stale keep-alive connections, timeouts and garbage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from modelserver.routing.upstream import Origin, UpstreamClient, UpstreamError

pytestmark = pytest.mark.integration

# Gets the request head and body, returns the raw answer and whether to close the connection after it.
Handler = Callable[[bytes, bytes], tuple[bytes, bool]]


class Backend:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                answer, close = self.handler(head, body)
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def backend(handler: Handler) -> AsyncIterator[tuple[Backend, Origin]]:
    served = Backend(handler)
    server = await asyncio.start_server(served.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield served, Origin.parse(f"http://127.0.0.1:{port}/base/")
    finally:
        server.close()
        await server.wait_closed()


def fixed(answer: bytes, *, close: bool = False) -> Handler:
    return lambda head, body: (answer, close)


async def call(
    client: UpstreamClient, origin: Origin, method: bytes = b"POST", body: bytes = b'{"x": 1}', timeout_s: float = 5
) -> tuple[int, dict[bytes, bytes], bytes]:
    headers = [(b"content-type", b"application/json"), (b"x-trace", b"abc")]
    response = await client.request(origin, method, b"/v2/models/m/infer?a=1", headers, body, timeout_s=timeout_s)
    return response.status, {k.lower(): v for k, v in response.headers}, response.body


async def test_the_request_goes_out_as_the_client_sent_it() -> None:
    client = UpstreamClient()
    async with backend(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as (served, origin):
        assert await call(client, origin) == (200, {b"content-length": b"2"}, b"ok")
        head, body = served.requests[0]
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /base/v2/models/m/infer?a=1 HTTP/1.1"
        assert f"host: 127.0.0.1:{origin.port}".encode() in lines
        assert b"content-type: application/json" in lines
        assert b"x-trace: abc" in lines
        assert b"content-length: 8" in lines
        assert body == b'{"x": 1}'
        # Keep-alive: the second call reuses the connection.
        await call(client, origin)
        assert served.connections == 1
    client.close()


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b""),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew", b"new"),
    ],
)
async def test_answers_of_every_framing(answer: bytes, body: bytes) -> None:
    client = UpstreamClient()
    async with backend(fixed(answer)) as (served, origin):
        for _ in range(3):
            status, _, got = await call(client, origin)
            assert (status >= 200, got) == (True, body)
        assert served.connections == 1
    client.close()


async def test_an_answer_delimited_by_the_end_of_the_connection() -> None:
    client = UpstreamClient()
    async with backend(fixed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", close=True)) as (
        served,
        origin,
    ):
        assert (await call(client, origin))[2] == b"until the end"
        assert (await call(client, origin))[2] == b"until the end"
        assert served.connections == 2
    client.close()


async def test_head_answers_have_no_body() -> None:
    client = UpstreamClient()
    async with backend(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")) as (_, origin):
        assert await call(client, origin, b"HEAD", b"") == (200, {b"content-length": b"42"}, b"")
        assert await call(client, origin, b"HEAD", b"") == (200, {b"content-length": b"42"}, b"")
    client.close()


async def test_get_without_a_body_sends_no_content_length() -> None:
    client = UpstreamClient()
    async with backend(fixed(b"HTTP/1.1 204 No Content\r\n\r\n")) as (served, origin):
        assert (await call(client, origin, b"GET", b""))[0] == 204
        assert b"content-length" not in served.requests[0][0]
    client.close()


@pytest.mark.parametrize("pause", [0.0, 0.05])
async def test_a_keep_alive_connection_closed_by_the_backend_is_replaced(pause: float) -> None:
    # The backend closes after each answer although it said keep-alive: the idle connection the client kept is
    # dead by the next call (known already after a pause; found out on sending without one), which must go out
    # again on a new connection, not fail.
    client = UpstreamClient()
    async with backend(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close=True)) as (served, origin):
        for _ in range(5):
            assert (await call(client, origin))[2] == b"ok"
            await asyncio.sleep(pause)
        assert len(served.requests) == 5
    client.close()


async def test_failures() -> None:
    client = UpstreamClient()
    async with backend(fixed(b"this is not http\r\n\r\n")) as (_, origin):
        with pytest.raises(UpstreamError, match="not valid HTTP"):
            await call(client, origin)
    async with backend(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", close=True)) as (_, origin):
        with pytest.raises(UpstreamError, match="closed the connection"):
            await call(client, origin)
    async with backend(lambda head, body: (b"", False)) as (_, origin):  # never answers
        with pytest.raises(TimeoutError):
            await call(client, origin, timeout_s=0.2)
    with pytest.raises(UpstreamError, match="cannot connect"):
        await call(client, origin)  # the backend is gone
    client.close()


async def test_a_new_version_at_the_same_url_gets_new_connections_and_none_outlives_its_maximum_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Service picks a pod per connection: the operator re-points `<name>-canary` to the next candidate and writes
    # its version into the document, so kept-alive connections must not carry the new version's calls.
    client = UpstreamClient()
    async with backend(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as (served, origin):
        as_v2 = Origin.parse(origin.url, "2")
        for _ in range(3):
            await call(client, as_v2)
        assert served.connections == 1
        as_v3 = Origin.parse(origin.url, "3")
        await call(client, as_v3)
        await call(client, as_v3)
        assert served.connections == 2
        # A connection is replaced once older than MAX_AGE_S, however recently it was used.
        monkeypatch.setattr("modelserver.routing.upstream.MAX_AGE_S", 1.0)
        await call(client, as_v3)
        assert served.connections == 2
        await asyncio.sleep(1.1)  # idle far less than IDLE_S, but older than the maximum age
        await call(client, as_v3)
        assert served.connections == 3
    client.close()
