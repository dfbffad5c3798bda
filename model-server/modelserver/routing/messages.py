"""What the router passes around for one request: the client's request, the reply it gets, and the header names the
router reads or sets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from modelserver.routing.snapshot import Target

BAD_GATEWAY = 502
GATEWAY_TIMEOUT = 504
SERVER_ERROR = 500
# Connection-level headers (RFC 9110 7.6.1) and the ones the client library sets itself for the upstream
# call (host, framing). Request and response alike.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",
    }
)
# The routes a request has passed through, comma-separated: a serving graph whose members call each other in a
# cycle would otherwise multiply each request without end; the router refuses one that passed through it already.
VIA_HEADER = b"x-modelrollout-via"
LOOP_DETECTED = 508
FALLBACK_HEADER = b"x-modelrollout-fallback"
ENSEMBLE_HEADER = b"x-modelrollout-ensemble"
# Not passed back from a backend either: the router sets its own (and its own Content-Length).
OURS = frozenset({b"x-modelrollout-version", b"x-modelrollout-role", FALLBACK_HEADER, ENSEMBLE_HEADER})
DROPPED_FROM_ANSWERS = HOP_BY_HOP | OURS
JSON_HEADERS = ((b"content-type", b"application/json"),)

RawHeaders = Sequence[tuple[bytes, bytes]]


# Request and Reply are made for every request: plain slotted dataclasses, whose __init__ costs a third of a
# frozen one's. Nothing changes them after they are made (except the Content-Length added when sending).
@dataclass(slots=True)
class Request:
    """What the client sent, as the ASGI server gave it (headers already without hop-by-hop ones)."""

    method: bytes
    target: bytes  # raw path + "?" + raw query: forwarded byte for byte
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(slots=True)
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    backend: Target
    answered: bool  # False: the router made this reply because the backend gave none

    @property
    def failed(self) -> bool:
        return not self.answered or self.status >= SERVER_ERROR


def forwardable(
    headers: RawHeaders, route: bytes, dropped: frozenset[bytes] = HOP_BY_HOP
) -> list[tuple[bytes, bytes]] | None:
    """The headers to forward: all but `dropped` (hop-by-hop ones; with API keys on, the key headers too), with
    `route` added to the via header (its lines joined into one); None when the via header names `route` already
    (a loop)."""
    kept: list[tuple[bytes, bytes]] = []
    hops: list[bytes] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == VIA_HEADER:
            if route in (hop.strip() for hop in value.split(b",")):
                return None
            hops.append(value)
        elif lowered not in dropped:
            kept.append((name, value))
    kept.append((VIA_HEADER, b", ".join([*hops, route])))
    return kept


def error_reply(status: int, message: str, backend: Target, *, answered: bool = False) -> Reply:
    body = orjson.dumps({"error": message, "role": backend.role, "version": backend.version})
    return Reply(status, [*JSON_HEADERS, *backend.response_headers], body, backend, answered)
