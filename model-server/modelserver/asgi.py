"""Bare-ASGI pieces shared by the model server's inference routes and the router, both of which skip a framework
on their hot path (see modelserver.inference_http)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# The binary tensor extension's header: the JSON part's length, the raw tensor bytes after it.
HEADER_LENGTH = b"inference-header-content-length"


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def send_whole(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, length: bool = True
) -> None:
    """One whole answer: its head, then its body. `length` appends the body's Content-Length to `headers` (off for a
    HEAD answer, which carries the Content-Length of the answer a GET would get)."""
    if length:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def receive_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it exceeds `limit` bytes; ClientGone on a disconnect."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body if len(body) <= limit else None
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
