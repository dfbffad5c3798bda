"""The router's ASGI application: its own three endpoints, everything else proxied.

- GET /healthz  200 while the process serves (liveness);
- GET /readyz   200 once a valid routing document is loaded (with its route, the weight of every backend and
  ensemble, mirrorPercent, stickyBy, the fallback chains and the ensembles), else 503 (readiness);
- GET /metrics  Prometheus text of the modelrouter_* series;
- with API keys on (routing.auth), any other request first needs a valid key (401 without one) within its key's
  rate limit (429 with Retry-After over it);
- any other method and path: forwarded to the backend the routing picks, with the body, the query and the
  headers (less hop-by-hop ones); the reply comes back with its status, headers and body unchanged, plus
  `x-modelrollout-version` and `x-modelrollout-role` naming who answered (`x-modelrollout-fallback` the
  backends that failed before, when a fallback answered; and, in stickyBy cookie mode, the Set-Cookie giving a new
  user its id).

A plain ASGI callable rather than a framework app: the proxy path does no routing, parsing or middleware, so
each request costs one dict lookup of the path on top of the upstream call.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import orjson

from modelserver.asgi import ClientGone, Receive, Scope, Send, receive_body, send_whole
from modelserver.routing.auth import KEY_HEADERS, TOO_MANY_REQUESTS, Gate, Refusal
from modelserver.routing.limits import retry_after
from modelserver.routing.messages import (
    BAD_GATEWAY,
    HOP_BY_HOP,
    JSON_HEADERS,
    LOOP_DETECTED,
    Reply,
    Request,
    error_reply,
    forwardable,
)
from modelserver.routing.metrics import (
    ADMITTED,
    CONTENT_TYPE,
    LOOP,
    RATE_LIMITED,
    UNAUTHORIZED_REASON,
    RouterMetrics,
)
from modelserver.routing.proxy import Proxy
from modelserver.routing.reload import Routing
from modelserver.routing.snapshot import Snapshot, uniform
from modelserver.routing.sources import Source
from modelserver.routing.upstream import UpstreamClient

log = logging.getLogger(__name__)

SERVICE_UNAVAILABLE = 503
PAYLOAD_TOO_LARGE = 413
SHADOW_DRAIN_S = 5.0


class RouterApp:
    def __init__(
        self,
        *,
        source: Source,
        upstreams: dict[str, str] | None = None,
        metrics: RouterMetrics | None = None,
        max_shadow_inflight: int = 64,
        max_body_bytes: int = 16 * 1024 * 1024,
        seed: int | None = None,
        gate: Gate | None = None,
        keys_source: Source | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else RouterMetrics()
        self.routing = Routing(metrics=self.metrics, upstreams=upstreams)
        self.source = source
        self.max_shadow_inflight = max_shadow_inflight
        self.max_body_bytes = max_body_bytes
        self.proxy: Proxy | None = None
        self._client: UpstreamClient | None = None
        self._source_task: asyncio.Task[None] | None = None
        self._draw = uniform(seed)
        self.gate = gate
        self._keys_source = keys_source
        self._keys_task: asyncio.Task[None] | None = None
        # With API keys on, the key headers stop at the router: backends never see the keys.
        self._dropped = HOP_BY_HOP if gate is None else HOP_BY_HOP | KEY_HEADERS
        self._own = {b"/healthz": self._live, b"/readyz": self._ready, b"/metrics": self._metrics}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # --- the proxy path -------------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        own = self._own.get(raw_path)
        if own is not None:
            await own(send)
            return
        snapshot = self.routing.snapshot
        proxy = self.proxy
        if snapshot is None or proxy is None:
            self.metrics.rejected.labels("", "no_config").inc()
            await _json(send, SERVICE_UNAVAILABLE, {"error": "the router has no routing document yet"})
            return
        if self.gate is not None and not await self._admitted(self.gate, snapshot.route, scope["headers"], send):
            return
        try:
            body = await _read_body(scope, receive, self.max_body_bytes)
        except ClientGone:
            return
        request = await self._request(scope, raw_path, body, snapshot, send)
        if request is None:
            return
        headers = scope["headers"]
        sticky = snapshot.sticky
        set_cookie = None
        if sticky is None:
            backend = snapshot.choose(headers, self._draw(), request.body)
        else:
            assignment = snapshot.assign(sticky, headers, request.body)
            backend, set_cookie = assignment.backend, assignment.set_cookie
            if assignment.source is not None:
                self.metrics.assigned(snapshot.route, backend.version, assignment.source)
        try:
            reply = await proxy.forward(snapshot, backend, request)
        except Exception as exc:  # a bug of ours must still give the client a JSON 502
            log.exception("forwarding failed")
            reply = error_reply(BAD_GATEWAY, f"the router failed: {type(exc).__name__}", backend)
        if set_cookie is not None:  # a new user's id, whoever answered: the next request carries it
            reply.headers.append((b"set-cookie", set_cookie))
        await _send(send, reply, head=request.method == b"HEAD")
        # Mirrored: POST requests (inference) sent to the mirror's source and answered 2xx by it; a request that
        # went elsewhere first (and perhaps fell back on the source) is not copied again.
        if (
            snapshot.mirror is not None
            and reply.backend is backend
            and request.method == b"POST"
            and 200 <= reply.status < 300
        ):
            shadow = snapshot.mirrors(backend, self._draw())
            if shadow is not None:
                proxy.mirror(snapshot, shadow, request, reply)

    async def _request(
        self, scope: Scope, raw_path: bytes, body: bytes | None, snapshot: Snapshot, send: Send
    ) -> Request | None:
        """The request to forward; None when it is refused here (too large, or a loop), with the refusal sent."""
        route = snapshot.route
        if body is None:
            self.metrics.rejected.labels(route, "too_large").inc()
            message = f"the body exceeds the router's limit of {self.max_body_bytes} bytes"
            await _json(send, PAYLOAD_TOO_LARGE, {"error": message})
            return None
        forwarded = forwardable(scope["headers"], snapshot.route_tag, self._dropped)
        if forwarded is None:
            self.metrics.rejected.labels(route, LOOP).inc()
            message = (f"the request has passed through route {route!r} already: the backends of a serving graph "
                       "call each other in a cycle; take the cycle out of the graph's members")  # fmt: skip
            await _json(send, LOOP_DETECTED, {"error": message})
            return None
        query: bytes = scope["query_string"]
        target = raw_path + b"?" + query if query else raw_path
        return Request(scope["method"].encode(), target, forwarded, body)

    async def _admitted(self, gate: Gate, route: str, headers: list[tuple[bytes, bytes]], send: Send) -> bool:
        """Whether the request's API key admits it; if not, the 401 or 429 is sent."""
        admitted = gate.admit(headers)
        if not isinstance(admitted, Refusal):
            self.metrics.keyed(route, admitted.name, ADMITTED)
            return True
        extra: list[tuple[bytes, bytes]] = []
        if admitted.status == TOO_MANY_REQUESTS:
            assert admitted.key is not None
            self.metrics.keyed(route, admitted.key, RATE_LIMITED)
            self.metrics.rejected.labels(route, RATE_LIMITED).inc()
            extra.append((b"retry-after", str(retry_after(admitted.retry_after_s)).encode()))
        else:
            self.metrics.rejected.labels(route, UNAUTHORIZED_REASON).inc()
            extra.append((b"www-authenticate", b'Bearer realm="modelrollout"'))
        await _json(send, admitted.status, {"error": admitted.message}, extra)
        return False

    # --- the router's own endpoints -------------------------------------------------------------------------

    async def _live(self, send: Send) -> None:
        await _json(send, 200, {"live": True})

    async def _ready(self, send: Send) -> None:
        snapshot = self.routing.snapshot
        if snapshot is None:
            await _json(send, SERVICE_UNAVAILABLE, {"ready": False, "reason": "no valid routing document yet"})
            return
        config = snapshot.config
        sticky_by, mirror = config.sticky_by, config.mirror
        body = {
            "ready": True,
            "route": snapshot.route,
            "weights": {name: config.weight_of(name) for name in config.targets()},
            "mirrorPercent": 0 if mirror is None else mirror.percent,
            "stickyBy": None if sticky_by is None else sticky_by.model_dump(exclude_none=True),
            "fallbacks": {name: chain.to for name, chain in config.fallbacks.items()},
            "ensembles": {
                name: {"members": e.members, "combine": e.combine, "quorum": e.needed}
                for name, e in config.ensembles.items()
            },
        }
        await _json(send, 200, body)

    async def _metrics(self, send: Send) -> None:
        content = self.metrics.render()
        headers = [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    # --- life cycle ---------------------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        self._client = UpstreamClient()
        self.proxy = Proxy(client=self._client, metrics=self.metrics, max_shadows=self.max_shadow_inflight)
        self._source_task = asyncio.get_running_loop().create_task(self.source.run(self.routing))
        self._source_task.add_done_callback(_report_source_end)
        if self._keys_source is not None and self.gate is not None:
            self._keys_task = asyncio.get_running_loop().create_task(self._keys_source.run(self.gate))
            self._keys_task.add_done_callback(_report_source_end)
        # What is allocated so far lives until exit; freezing it keeps full collections short.
        gc.collect()
        gc.freeze()

    async def stop(self) -> None:
        for task in (self._source_task, self._keys_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.proxy is not None:
            await self.proxy.drain(SHADOW_DRAIN_S)
        if self._client is not None:
            self._client.close()


def _report_source_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the routing source stopped: %r; the last routing keeps serving", task.exception())


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it exceeds `limit` (refused on its Content-Length before reading)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                return None
            break
    return await receive_body(receive, limit)


async def _send(send: Send, reply: Reply, *, head: bool = False) -> None:
    # A HEAD answer carries the backend's Content-Length already.
    await send_whole(send, reply.status, reply.headers, reply.body, length=not head)


async def _json(send: Send, status: int, content: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_whole(send, status, [*JSON_HEADERS, *(extra or ())], orjson.dumps(content))
