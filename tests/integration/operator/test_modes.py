"""Status tells the truth about every declared mode, on the real API server with the operator running: a spec
with batch or stream, which this version does not run yet, is never reported Healthy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from testkit.operator import OperatorProcess

from tests.integration.operator.k8s import K8s

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


@pytest.mark.operator_env(MODELROLLOUT_RECONCILE_INTERVAL_S="1")
async def test_a_hybrid_spec_serves_online_and_is_degraded_while_batch_and_stream_are_not_served(
    k8s: K8s, operator: OperatorProcess
) -> None:
    await k8s.create("hybrid.yaml")
    obj = await k8s.wait_for(
        "propensity",
        lambda s: (
            conditions(s).get("OnlineReady") == ("True", "Serving")
            and s.get("replicas", {}).get("stable", {}).get("ready") == 2
        ),
        "online serving its 2 replicas",
    )
    status = obj["status"]
    assert status["phase"] == "Degraded"
    assert status["modes"] == "online,batch,stream"
    said = conditions(status)
    assert said["Ready"] == ("False", "ModesNotServed")
    assert said["BatchReady"] == ("False", "NotSupported")
    assert said["StreamReady"] == ("False", "NotSupported")
    assert said["Degraded"] == ("True", "ModesNotServed")
    assert "nothing scores files for spec.batch" in status["message"]
    assert len(await k8s.deployments("propensity")) == 1, "online runs its revision as for an online-only spec"

    # Several resync passes later: the same report, said once.
    await asyncio.sleep(3)
    again = (await k8s.get("propensity"))["status"]
    assert again["phase"] == "Degraded"
    assert conditions(again) == said
    assert (await k8s.event_reasons("propensity")).count("ModeNotServed") == 1

    # Without the modes it cannot serve, the same ModelDeployment is Healthy and Ready.
    await k8s.patch_spec("propensity", {"batch": None, "stream": None})
    healthy = (await k8s.healthy("propensity", "4"))["status"]
    assert conditions(healthy)["Ready"] == ("True", "Serving")
    assert "BatchReady" not in conditions(healthy)
    assert conditions(healthy)["Degraded"][0] == "False"


@pytest.mark.parametrize(("example", "name", "mode"), [("batch.yaml", "ltv-nightly", "Batch"),
                                                       ("stream.yaml", "tx-scoring", "Stream")])  # fmt: skip
async def test_a_spec_without_online_is_pending_and_says_why(
    k8s: K8s, operator: OperatorProcess, example: str, name: str, mode: str
) -> None:
    await k8s.create(example)
    obj = await k8s.wait_for(name, lambda s: f"{mode}Ready" in conditions(s), f"a {mode}Ready condition")
    status = obj["status"]
    assert status["phase"] == "Pending"
    assert conditions(status) == {"Ready": ("False", "ModesNotServed"), f"{mode}Ready": ("False", "NotSupported")}
    assert f"spec.{mode.lower()} declared" in status["message"]
    assert await k8s.wait_for_events(name, "ModeNotServed")
    assert await k8s.deployments(name, mode.lower()) == []
