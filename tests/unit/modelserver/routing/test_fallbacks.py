"""Fallback chains in the proxy, against an in-memory upstream (the real client and real model servers:
tests/integration/router/test_fallbacks.py): which failures are fallen back on and why, what the client gets, what is
counted, and what a latency budget cuts short."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from testkit.vectors import full_v2_document

from modelrollout_contract.router_v2 import parse_any
from modelserver.routing.messages import FALLBACK_HEADER, Request
from modelserver.routing.metrics import RouterMetrics
from modelserver.routing.proxy import Proxy
from modelserver.routing.snapshot import Snapshot, build_snapshot
from modelserver.routing.upstream import Origin, Response, UpstreamError

Behaviour = Callable[[float], Response]  # given the timeout it was called with


def ok(body: bytes = b'{"ok":1}') -> Behaviour:
    return lambda _: Response(200, [(b"content-type", b"application/json")], body)


def status(code: int) -> Behaviour:
    return lambda _: Response(code, [], b'{"error":"x"}')


def refused(_: float) -> Response:
    raise UpstreamError("cannot connect")


def late(_: float) -> Response:
    raise TimeoutError


class Upstream:
    """Answers each backend's calls as told, by host, and records (host, timeout) per call."""

    def __init__(self, **behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.calls: list[tuple[str, float]] = []

    async def request(self, origin: Origin, method: bytes, target: bytes, headers: Any, body: bytes, *,
                      timeout_s: float) -> Response:  # fmt: skip
        self.calls.append((origin.host, timeout_s))
        return self.behaviour[origin.host](timeout_s)


def snapshot(**fallbacks: Any) -> Snapshot:
    document = full_v2_document() | {"fallbacks": fallbacks, "timeoutSeconds": 3, "mirror": None}
    names = ("stable", "b", "c", "rules")
    document["backends"] = {name: {"url": f"http://{name}", "version": f"v-{name}"} for name in names}
    return build_snapshot(parse_any(json.dumps({k: v for k, v in document.items() if v is not None})))


async def forward(upstream: Upstream, routing: Snapshot, backend: str) -> tuple[Any, RouterMetrics]:
    metrics = RouterMetrics(CollectorRegistry())
    proxy = Proxy(client=upstream, metrics=metrics, max_shadows=1)  # type: ignore[arg-type]
    reply = await proxy.forward(routing, routing.backends[backend], Request(b"POST", b"/infer", [], b"{}"))
    return reply, metrics


def header(reply: Any, name: bytes) -> bytes | None:
    return next((v for k, v in reply.headers if k == name), None)


def fallbacks(metrics: RouterMetrics) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["from"], s.labels["to"], s.labels["reason"]): s.value
        for family in metrics.fallbacks.collect()
        for s in family.samples
        if s.name.endswith("_total")
    }


def calls(metrics: RouterMetrics, role: str, code: str) -> float | None:
    return metrics.registry.get_sample_value(
        "modelrouter_requests_total", {"route": "churn", "version": f"v-{role}", "role": role, "code": code}
    )


@pytest.mark.parametrize(
    ("failing", "reason", "code"),
    [(status(503), "error", "503"), (status(500), "error", "500"), (refused, "unreachable", "502"),
     (late, "timeout", "504")],
)  # fmt: skip
async def test_a_failed_backend_is_answered_by_the_next_and_counted_by_reason(
    failing: Behaviour, reason: str, code: str
) -> None:
    upstream = Upstream(b=failing, stable=ok(b'{"from":"stable"}'), rules=ok())
    reply, metrics = await forward(upstream, snapshot(b={"to": ["stable", "rules"]}), "b")
    assert (reply.status, reply.body, reply.backend.role) == (200, b'{"from":"stable"}', "stable")
    assert header(reply, b"x-modelrollout-role") == b"stable"
    assert header(reply, FALLBACK_HEADER) == f"b={reason}".encode()
    assert fallbacks(metrics) == {("b", "stable", reason): 1}
    assert calls(metrics, "b", code) == 1  # the failed call stays the failing backend's, for its analysis
    assert calls(metrics, "stable", "200") == 1
    assert [host for host, _ in upstream.calls] == ["b", "stable"]  # rules was not needed
    assert [timeout for _, timeout in upstream.calls] == [3, 3]  # no budget: the whole timeout each


async def test_the_chain_goes_on_until_one_answers_and_a_client_error_is_passed_on() -> None:
    upstream = Upstream(b=status(503), stable=refused, rules=status(422))
    reply, metrics = await forward(upstream, snapshot(b={"to": ["stable", "rules"]}), "b")
    assert (reply.status, reply.backend.role) == (422, "rules")  # a 4xx is an answer: any backend would refuse it
    assert header(reply, FALLBACK_HEADER) == b"b=error, stable=unreachable"
    assert fallbacks(metrics) == {("b", "stable", "error"): 1, ("stable", "rules", "unreachable"): 1}


async def test_when_every_backend_fails_the_client_gets_the_last_failure_once() -> None:
    upstream = Upstream(b=status(503), stable=late)
    reply, metrics = await forward(upstream, snapshot(b={"to": ["stable"]}), "b")
    assert (reply.status, reply.backend.role, reply.answered) == (504, "stable", False)
    assert json.loads(reply.body)["role"] == "stable"
    assert header(reply, FALLBACK_HEADER) == b"b=error, stable=timeout"
    assert fallbacks(metrics) == {("b", "stable", "error"): 1}  # the last failure has nowhere to go


async def test_a_latency_budget_cuts_every_backend_but_the_last_short() -> None:
    upstream = Upstream(stable=late, b=late, rules=ok())
    reply, metrics = await forward(upstream, snapshot(stable={"to": ["b", "rules"], "latencyBudgetSeconds": 0.05}),
                                   "stable")  # fmt: skip
    assert (reply.status, reply.backend.role) == (200, "rules")
    assert upstream.calls == [("stable", 0.05), ("b", 0.05), ("rules", 3)]
    assert fallbacks(metrics) == {("stable", "b", "latency_budget"): 1, ("b", "rules", "latency_budget"): 1}
    assert header(reply, FALLBACK_HEADER) == b"stable=latency_budget, b=latency_budget"


async def test_a_success_or_a_backend_without_a_chain_is_one_call() -> None:
    upstream = Upstream(stable=ok(), c=status(503))
    reply, metrics = await forward(upstream, snapshot(stable={"to": ["rules"]}), "stable")
    assert (reply.status, header(reply, FALLBACK_HEADER), fallbacks(metrics)) == (200, None, {})
    reply, metrics = await forward(upstream, snapshot(stable={"to": ["rules"]}), "c")
    assert (reply.status, reply.backend.role, fallbacks(metrics)) == (503, "c", {})
    assert [host for host, _ in upstream.calls] == ["stable", "c"]


async def test_a_backends_own_fallback_header_is_not_passed_on() -> None:
    upstream = Upstream(stable=lambda _: Response(200, [(FALLBACK_HEADER, b"forged")], b"{}"))
    reply, _ = await forward(upstream, snapshot(), "stable")
    assert header(reply, FALLBACK_HEADER) is None
