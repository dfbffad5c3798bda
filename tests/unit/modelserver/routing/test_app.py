"""The router's own endpoints and refusals, called as an ASGI app in-process (no sockets). Proxying itself is
tested against real model servers in tests/integration/router."""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from testkit.vectors import FULL as SHARED_VECTOR

from modelserver.routing.app import RouterApp
from modelserver.routing.messages import VIA_HEADER as VIA
from modelserver.routing.messages import Reply
from modelserver.routing.metrics import RouterMetrics
from modelserver.routing.reload import Routing


class Idle:
    async def run(self, routing: Routing) -> None:
        return None


def app(max_body_bytes: int = 1024) -> RouterApp:
    return RouterApp(source=Idle(), metrics=RouterMetrics(CollectorRegistry()), max_body_bytes=max_body_bytes)


async def call(
    router: RouterApp,
    path: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    chunks: int = 1,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *(headers or ())],
    }
    size = max(1, len(body) // chunks)
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1} for i, part in enumerate(parts)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await router(scope, receive, send)
    start, content = sent
    return start["status"], dict(start["headers"]), content["body"]


async def test_live_always_ready_only_with_a_document() -> None:
    router = app()
    assert (await call(router, "/healthz"))[0] == 200
    status, _, body = await call(router, "/readyz")
    assert status == 503
    assert orjson.loads(body)["ready"] is False
    router.routing.apply(SHARED_VECTOR.read_bytes(), origin="test")
    status, _, body = await call(router, "/readyz")
    assert status == 200
    assert orjson.loads(body) == {
        "ready": True,
        "route": "churn",
        "weights": {"stable": 90, "canary": 10},
        "mirrorPercent": 5,
        "stickyBy": {"header": "x-user-id"},
        "fallbacks": {"canary": ["stable"]},  # retryOnStable
        "ensembles": {},
    }


async def test_without_a_document_requests_get_a_json_503() -> None:
    status, headers, body = await call(app(), "/v2/models/m/infer", method="POST", body=b"{}")
    assert status == 503
    assert headers[b"content-type"] == b"application/json"
    assert "no routing document" in orjson.loads(body)["error"]


async def test_a_body_over_the_limit_gets_a_json_413() -> None:
    router = app(max_body_bytes=100)
    router.routing.apply(SHARED_VECTOR.read_bytes(), origin="test")
    router.proxy = object()  # type: ignore[assignment]  # never reached: the body is refused first
    status, _, body = await call(router, "/predict", method="POST", body=b"x" * 101, chunks=4)
    assert status == 413
    assert "limit of 100 bytes" in orjson.loads(body)["error"]


async def test_a_request_that_passed_through_this_route_already_is_refused_as_a_loop() -> None:
    router = app()
    router.routing.apply(SHARED_VECTOR.read_bytes(), origin="test")
    forwarded: list[list[tuple[bytes, bytes]]] = []

    class Recorder:
        async def forward(self, snapshot: Any, backend: Any, request: Any) -> Reply:
            forwarded.append(request.headers)
            return Reply(200, [(b"content-type", b"application/json")], b"{}", backend, answered=True)

        def mirror(self, *_: Any) -> None:  # the shared vector mirrors 5% of stable's answers
            pass

    router.proxy = Recorder()  # type: ignore[assignment]
    # Through another route first: this one is added to the via header it forwards.
    status, _, _ = await call(router, "/predict", method="POST", body=b"{}", headers=[(VIA, b"graph-a")])
    assert status == 200
    assert forwarded[-1][-1] == (VIA, b"graph-a, churn")
    assert (await call(router, "/predict", method="POST", body=b"{}"))[0] == 200
    assert forwarded[-1][-1] == (VIA, b"churn")
    # Back at this route (a graph whose members call each other in a cycle): refused, not forwarded again.
    status, headers, body = await call(router, "/predict", method="POST", body=b"{}", headers=[(VIA, b"churn, b")])
    assert status == 508
    assert headers[b"content-type"] == b"application/json"
    assert "passed through route 'churn' already" in orjson.loads(body)["error"]
    assert len(forwarded) == 2
    assert (
        router.metrics.registry.get_sample_value("modelrouter_rejected_total", {"route": "churn", "reason": "loop"})
        == 1
    )


async def test_metrics_are_prometheus_text() -> None:
    router = app()
    router.routing.apply(SHARED_VECTOR.read_bytes(), origin="test")
    status, headers, body = await call(router, "/metrics")
    assert status == 200
    assert headers[b"content-type"].startswith(b"text/plain")
    assert b'modelrouter_weight{role="canary",route="churn"} 10.0' in body
