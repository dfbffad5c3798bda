"""Ensembles in the proxy, against an in-memory upstream (the real router and model servers:
tests/integration/router/test_ensembles.py): members asked at once, the quorum, what the client gets and what is
counted, members that refuse, time out or answer binary data, and an ensemble inside a fallback chain."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from modelrollout_contract.router_v2 import parse_any
from modelserver.routing.messages import ENSEMBLE_HEADER, FALLBACK_HEADER, Request
from modelserver.routing.metrics import RouterMetrics
from modelserver.routing.proxy import Proxy
from modelserver.routing.snapshot import Snapshot, build_snapshot
from modelserver.routing.upstream import Origin, Response
from tests.unit.modelserver.routing.test_fallbacks import Behaviour, header, late, ok, refused, status

OUTPUT = b'{"model_name":"clf","outputs":[{"name":"predict","datatype":"FP64","shape":[1],"data":[%d]}]}'


def answers(value: int) -> Behaviour:
    return ok(OUTPUT % value)


class Upstream:
    """Answers by host as told; records the hosts called and how many calls were in flight at once at most."""

    def __init__(self, delay_s: float = 0.0, **behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.delay_s = delay_s
        self.calls: list[tuple[str, float]] = []
        self.in_flight = self.most = 0

    async def request(self, origin: Origin, method: bytes, target: bytes, headers: Any, body: bytes, *,
                      timeout_s: float) -> Response:  # fmt: skip
        self.calls.append((origin.host, timeout_s))
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            return self.behaviour[origin.host](timeout_s)
        finally:
            self.in_flight -= 1


def routing(quorum: int | None = 2, member_timeout: float | None = 0.5, **extra: Any) -> Snapshot:
    names = ("a", "b", "c", "rules")
    ensemble: dict[str, Any] = {"members": ["a", "b", "c"], "combine": "mean"}
    if quorum is not None:
        ensemble["quorum"] = quorum
    if member_timeout is not None:
        ensemble["memberTimeoutSeconds"] = member_timeout
    document = {
        "schemaVersion": 2,
        "route": "clf",
        "control": "trio",
        "backends": {name: {"url": f"http://{name}", "version": f"v-{name}"} for name in names},
        "split": [{"backend": "trio", "weight": 100}],
        "ensembles": {"trio": ensemble},
        "timeoutSeconds": 3,
    } | extra
    return build_snapshot(parse_any(json.dumps(document)))


async def ask(upstream: Upstream, snapshot: Snapshot, method: bytes = b"POST") -> tuple[Any, RouterMetrics]:
    metrics = RouterMetrics(CollectorRegistry())
    proxy = Proxy(client=upstream, metrics=metrics, max_shadows=1)  # type: ignore[arg-type]
    reply = await proxy.forward(snapshot, snapshot.control, Request(method, b"/v2/models/clf/infer", [], b"{}"))
    return reply, metrics


def sample(metrics: RouterMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"route": "clf", **labels})


def data(reply: Any) -> list[Any]:
    return orjson.loads(reply.body)["outputs"][0]["data"]  # type: ignore[no-any-return]


async def test_every_member_is_asked_at_once_and_the_answers_are_combined() -> None:
    upstream = Upstream(delay_s=0.05, a=answers(1), b=answers(2), c=answers(6))
    reply, metrics = await ask(upstream, routing())
    assert reply.status == 200
    assert data(reply) == [3.0]
    assert upstream.most == 3  # concurrently, not one after another
    assert sorted(host for host, _ in upstream.calls) == ["a", "b", "c"]
    assert all(timeout == 0.5 for _, timeout in upstream.calls)  # memberTimeoutSeconds
    assert header(reply, ENSEMBLE_HEADER) == b"a, b, c"
    assert (header(reply, b"x-modelrollout-role"), header(reply, b"x-modelrollout-version")) == (
        b"trio",
        b"v-a+v-b+v-c",
    )
    assert orjson.loads(reply.body)["model_version"] == "v-a+v-b+v-c"
    assert sample(metrics, "modelrouter_ensemble_answers_total", ensemble="trio", outcome="complete") == 1
    for role in ("a", "b", "c"):
        assert sample(metrics, "modelrouter_requests_total", version=f"v-{role}", role=role, code="200") == 1
    assert sample(metrics, "modelrouter_requests_total", version="v-a+v-b+v-c", role="trio", code="200") == 1


@pytest.mark.parametrize(
    ("failing", "reason"),
    [(late, "timeout"), (refused, "unreachable"), (status(500), "error"), (status(422), "rejected"),
     (ok(b"not json"), "unreadable")],
)  # fmt: skip
async def test_with_one_member_out_the_quorum_answers_and_says_who_was_missing(failing: Behaviour, reason: str) -> None:
    reply, metrics = await ask(Upstream(a=answers(1), b=failing, c=answers(3)), routing())
    assert reply.status == 200
    assert data(reply) == [2.0]
    assert header(reply, ENSEMBLE_HEADER) == f"a, c, b={reason}".encode()
    assert sample(metrics, "modelrouter_ensemble_answers_total", ensemble="trio", outcome="quorum") == 1
    failures = sample(metrics, "modelrouter_ensemble_member_failures_total", ensemble="trio", member="b", reason=reason)
    assert failures == 1


async def test_below_the_quorum_the_ensemble_fails_naming_each_member() -> None:
    reply, metrics = await ask(Upstream(a=answers(1), b=refused, c=status(503)), routing())
    assert reply.status == 502
    body = orjson.loads(reply.body)
    assert body["error"] == "ensemble trio: 1 of 3 members answered, 2 needed (b=unreachable, c=error)"
    assert body["role"] == "trio"
    assert sample(metrics, "modelrouter_ensemble_answers_total", ensemble="trio", outcome="failed") == 1
    timed_out, _ = await ask(Upstream(a=late, b=late, c=answers(1)), routing())
    assert timed_out.status == 504


async def test_without_a_quorum_every_member_is_needed() -> None:
    reply, _ = await ask(Upstream(a=answers(1), b=answers(1), c=late), routing(quorum=None))
    assert reply.status == 504  # the one member failing is a timeout


async def test_a_request_every_member_refuses_gets_the_refusal() -> None:
    refusal = status(400)
    reply, _ = await ask(Upstream(a=refusal, b=refusal, c=refusal), routing())
    assert reply.status == 400
    assert orjson.loads(reply.body) == {"error": "x"}
    assert header(reply, ENSEMBLE_HEADER) == b"a=rejected, b=rejected, c=rejected"


async def test_binary_answers_are_refused_with_what_to_ask_instead() -> None:
    binary = Upstream(**{name: (lambda _: Response(200, [(b"inference-header-content-length", b"10")], b"{}" * 8))
                         for name in "abc"})  # fmt: skip
    reply, _ = await ask(binary, routing())
    assert reply.status == 400
    assert "without binary_data" in orjson.loads(reply.body)["error"]


async def test_answers_that_cannot_be_combined_fail_the_ensemble() -> None:
    other = ok(b'{"outputs":[{"name":"other","datatype":"FP64","shape":[1],"data":[1]}]}')
    reply, metrics = await ask(Upstream(a=answers(1), b=other, c=answers(1)), routing())
    assert reply.status == 502
    assert "b answered output 'predict' as no such output" in orjson.loads(reply.body)["error"]
    assert sample(metrics, "modelrouter_ensemble_answers_total", ensemble="trio", outcome="failed") == 1


async def test_a_failed_ensemble_falls_back_and_a_budget_caps_its_members() -> None:
    snapshot = routing(fallbacks={"trio": {"to": ["rules"], "latencyBudgetSeconds": 0.2}})
    upstream = Upstream(a=refused, b=refused, c=answers(1), rules=answers(9))
    reply, metrics = await ask(upstream, snapshot)
    assert (reply.status, data(reply)) == (200, [9])
    assert header(reply, FALLBACK_HEADER) == b"trio=error"
    assert {timeout for host, timeout in upstream.calls if host != "rules"} == {0.2}  # the budget, not 0.5
    labels = {"from": "trio", "to": "rules", "reason": "error"}
    assert sample(metrics, "modelrouter_fallbacks_total", **labels) == 1


async def test_other_requests_are_answered_by_the_first_member_that_answers() -> None:
    upstream = Upstream(a=refused, b=ok(b'{"name":"clf"}'), c=ok(b"{}"))
    reply, _ = await ask(upstream, routing(), method=b"GET")
    assert (reply.status, reply.body, header(reply, b"x-modelrollout-role")) == (200, b'{"name":"clf"}', b"b")
    assert [host for host, _ in upstream.calls] == ["a", "b"]


def test_an_ensemble_is_a_target_of_the_split_routes_and_chains() -> None:
    snapshot = routing(
        split=[{"backend": "trio", "weight": 50}, {"backend": "a", "weight": 50}],
        routes=[{"header": "x-ensemble", "to": "trio"}],
        fallbacks={"b": {"to": ["trio"]}},
        ensembles={"trio": {"members": ["a", "b", "c"], "combine": "weighted", "weights": {"a": 2, "b": 1, "c": 1}}},
    )
    trio = snapshot.targets["trio"]
    assert snapshot.choose([], 0.2) is trio
    assert snapshot.choose([], 0.7) is snapshot.backends["a"]
    assert snapshot.choose([(b"x-ensemble", b"1")], 0.7) is trio
    assert snapshot.fallbacks["b"].then == (trio,)
    assert trio.weights == (2.0, 1.0, 1.0)  # type: ignore[union-attr]
