"""A ModelDeployment's fallback model (`online.fallback`) end to end: the operator runs it beside the revision and
writes the router's fallback chain; a primary failing 30% of its calls then gives clients no error, every failure
answered by the fallback model and counted by reason."""

from __future__ import annotations

import httpx
import pytest
from kubernetes_asyncio import client
from prometheus_client.parser import text_string_to_metric_families
from testkit.waiting import eventually

from modelrollout.planning.names import router_configmap_name
from modelrollout_contract.router import CONFIG_KEY
from modelrollout_contract.router_v2 import Fallback, parse_any
from tests.e2e.rollouts import World, ready_endpoint, routed, serve_through_router

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAIL_SHARE = 0.3


async def test_a_primary_failing_30_percent_behind_a_fallback_model_gives_no_client_errors(
    world: World, kube_api: client.ApiClient
) -> None:
    classifiers = world.classifiers
    stack = world.launch({"1": classifiers.failing(FAIL_SHARE), "rules": classifiers.healthy})
    rollout = world.rollout_of(stack)
    fallback = {"model": stack.model_spec("rules"), "latencyBudget": "2s"}
    await rollout.create(routed({"strategy": "direct"}, retry_on_stable=False), online={"fallback": fallback})

    stored = await client.CoreV1Api(kube_api).read_namespaced_config_map(
        router_configmap_name(stack.name), stack.namespace
    )
    document = parse_any(stored.data[CONFIG_KEY])
    assert document.backends["fallback"].version == "rules"
    chain = Fallback(to=["fallback"], latency_budget_seconds=2.0)
    assert document.fallbacks == {"stable": chain, "canary": chain}  # canary: stable's pods until a rollout
    await ready_endpoint(stack, f"{stack.name}-fallback")

    async def fallback_ready() -> bool | None:
        replicas = (await rollout.get()).get("status", {}).get("replicas", {})
        return True if replicas.get("fallback") == {"desired": 1, "ready": 1} else None

    await eventually(fallback_ready, within=30, what="status.replicas.fallback to say 1 of 1 ready")

    load = await serve_through_router(rollout, classifiers.dataset)
    load.wait_for(300)
    summary = load.stop()

    assert not summary.failures, summary.describe()  # not one client error
    assert set(summary.by_role) == {"stable", "fallback"}, summary.describe()
    answered_by_fallback = summary.by_role["fallback"]
    assert abs(answered_by_fallback / summary.total - FAIL_SHARE) <= 0.08, summary.describe()
    expected = {"1": classifiers.stable.predictions, "rules": classifiers.healthy.predictions}
    assert not summary.mismatches(expected), summary.describe()
    # Every fallback counted by the router, by reason: the primary's 500s, each answered by the fallback model.
    router = await ready_endpoint(stack, stack.name)
    text = httpx_get(f"{router}/metrics")
    counted = {
        (s.labels["from"], s.labels["to"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "modelrouter_fallbacks_total"
    }
    assert counted == {("stable", "fallback", "error"): answered_by_fallback}


def httpx_get(url: str) -> str:
    return httpx.get(url, timeout=10).text
