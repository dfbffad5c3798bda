"""The reconciler's one way into analysis: the provider the spec names (or why there is none), and every
failure to measure turned into an Error outcome. Prometheus is answered by httpx's in-process transport here;
the operator's integration and e2e tests ask a real one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from modelrollout.analysis.entry import Backend, Subject, analyse, provider_for
from modelrollout.analysis.prometheus import PrometheusProvider
from modelrollout.api.analysis import AnalysisSettings
from modelrollout.api.rollout import AbTestSettings
from tests.unit.modelrollout.analysis.test_run import m, request

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
SUBJECT = Subject(namespace="prod", name="churn", model="churn")
ERRORS = m(name="errors", builtin="errorRate", max=0.01)


def settings(**fields: Any) -> AnalysisSettings:
    return AnalysisSettings.model_validate({"metrics": [{"name": "errors", "builtin": "errorRate", "max": 0.01}],
                                            **fields})  # fmt: skip


def prometheus(seen: list[httpx.Request], value: str = "0.001") -> httpx.AsyncClient:
    def answer(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        body = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, value]}]}}
        return httpx.Response(200, json=body)

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


async def no_secret(name: str, key: str) -> str | None:
    return None


async def test_without_any_prometheus_every_metric_is_an_error_saying_where_to_set_one() -> None:
    backend = Backend(default_url=None, scrape_interval_s=15, client=httpx.AsyncClient())
    outcome = await analyse(request(ERRORS), settings=settings(), subject=SUBJECT, backend=backend,
                            read_secret=no_secret, previous=[], now=T0)  # fmt: skip
    assert outcome.run.verdict == "Error"
    assert outcome.run.kind == "Step"
    [metric] = outcome.run.metrics
    assert metric.verdict == "Error"
    assert "spec.rollout.analysis.prometheus.address, or MODELROLLOUT_PROMETHEUS_URL" in (metric.message or "")


async def test_a_missing_bearer_token_secret_is_named() -> None:
    backend = Backend(default_url="http://prom:9090", scrape_interval_s=15, client=httpx.AsyncClient())
    spec = settings(prometheus={"address": "http://prom:9090", "bearerTokenSecret": {"name": "prom", "key": "t"}})
    said = await provider_for(spec, backend, no_secret, "prod")
    assert said == "bearerTokenSecret prom/t does not exist in namespace prod"
    ab = AbTestSettings.model_validate(
        {"routeBy": {"header": "x-user"}, "successMetric": {"successes": "s", "trials": "t"}}
    )
    experiment = request(kind="Experiment", metrics=(), ab_test=ab)
    outcome = await analyse(experiment, settings=spec, subject=SUBJECT, backend=backend, read_secret=no_secret,
                            previous=[], now=T0)  # fmt: skip
    assert outcome.run.verdict == "Error"
    assert "bearerTokenSecret prom/t" in (outcome.run.metrics[0].message or "")


async def test_the_operators_prometheus_is_asked_with_the_token_of_the_spec_secret() -> None:
    seen: list[httpx.Request] = []
    async with prometheus(seen) as client:
        backend = Backend(default_url="http://operator-default:9090", scrape_interval_s=1, client=client)
        spec = settings(prometheus={"address": "http://team:9090", "bearerTokenSecret": {"name": "prom", "key": "t"}})

        async def secret(name: str, key: str) -> str | None:
            return "s3cret" if (name, key) == ("prom", "t") else None

        provider = await provider_for(spec, backend, secret, "prod")
        assert isinstance(provider, PrometheusProvider)
        outcome = await analyse(request(ERRORS, min_requests=0), settings=spec, subject=SUBJECT, backend=backend,
                                read_secret=secret, previous=[], now=T0)  # fmt: skip
    assert outcome.run.verdict == "Successful", outcome.run
    assert seen, "Prometheus was never asked"
    assert {r.url.host for r in seen} == {"team"}
    assert {r.headers["authorization"] for r in seen} == {"Bearer s3cret"}
    queries = [json.dumps(dict(httpx.QueryParams(r.content.decode()))) for r in seen]
    assert any('namespace=\\"prod\\"' in q for q in queries), queries
