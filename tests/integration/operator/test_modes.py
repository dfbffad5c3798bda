"""Status tells the truth about every declared mode, on the real API server with the operator running: batch runs
(a CronJob the API server accepts, beside online or alone), and a spec with stream, which this version does not
run yet, is never reported Healthy."""

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
async def test_a_hybrid_spec_serves_online_scores_batch_and_is_degraded_while_stream_is_not_served(
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
    assert said["BatchReady"] == ("True", "Scheduled")
    assert said["StreamReady"] == ("False", "NotSupported")
    assert said["Degraded"] == ("True", "ModesNotServed")
    assert "nothing consumes the topic for spec.stream" in status["message"]
    assert "spec.batch" not in status["message"]
    assert len(await k8s.deployments("propensity")) == 1, "online runs its revision as for an online-only spec"
    # Batch follows the revision online serves: the CronJob scores with it.
    [cronjob] = (await k8s.cronjobs("propensity")).values()
    assert cronjob.metadata.name == "propensity-batch"
    assert cronjob.metadata.labels["modelrollout.dev/revision"] == status["stable"]["revision"]
    assert cronjob.spec.schedule == "@daily"

    # Several resync passes later: the same report, said once.
    await asyncio.sleep(3)
    again = (await k8s.get("propensity"))["status"]
    assert again["phase"] == "Degraded"
    assert conditions(again) == said
    assert (await k8s.event_reasons("propensity")).count("ModeNotServed") == 1

    # Without the modes it cannot serve, the same ModelDeployment is Healthy and Ready; batch's CronJob goes.
    await k8s.patch_spec("propensity", {"batch": None, "stream": None})
    healthy = (await k8s.healthy("propensity", "4"))["status"]
    assert conditions(healthy)["Ready"] == ("True", "Serving")
    assert "BatchReady" not in conditions(healthy)
    assert conditions(healthy)["Degraded"][0] == "False"
    assert await k8s.cronjobs("propensity") == {}


async def test_a_batch_only_spec_gets_its_cronjob_and_is_ready(k8s: K8s, operator: OperatorProcess) -> None:
    await k8s.create("batch.yaml")
    obj = await k8s.wait_for("ltv-nightly", lambda s: "BatchReady" in conditions(s), "a BatchReady condition")
    status = obj["status"]
    assert status["phase"] == "Healthy"
    assert conditions(status)["Ready"] == ("True", "Scheduled")
    assert conditions(status)["BatchReady"] == ("True", "Scheduled")
    assert status["stable"]["version"] == "3"
    [cronjob] = (await k8s.cronjobs("ltv-nightly")).values()
    assert (cronjob.spec.schedule, cronjob.spec.time_zone) == ("0 2 * * *", "Europe/Paris")
    assert cronjob.spec.concurrency_policy == "Forbid"
    assert await k8s.deployments("ltv-nightly", "batch") == [], "batch runs no Deployment"
    # Suspended: no run is scheduled, and status says so.
    await k8s.patch_spec("ltv-nightly", {"batch": {"suspend": True}})
    obj = await k8s.wait_for("ltv-nightly", lambda s: conditions(s).get("BatchReady", ("", ""))[1] == "Suspended",
                             "BatchReady Suspended")  # fmt: skip
    [cronjob] = (await k8s.cronjobs("ltv-nightly")).values()
    assert cronjob.spec.suspend is True


async def test_a_stream_only_spec_is_pending_and_says_why(k8s: K8s, operator: OperatorProcess) -> None:
    await k8s.create("stream.yaml")
    obj = await k8s.wait_for("tx-scoring", lambda s: "StreamReady" in conditions(s), "a StreamReady condition")
    status = obj["status"]
    assert status["phase"] == "Pending"
    assert conditions(status) == {"Ready": ("False", "ModesNotServed"), "StreamReady": ("False", "NotSupported")}
    assert "spec.stream declared" in status["message"]
    assert await k8s.wait_for_events("tx-scoring", "ModeNotServed")
    assert await k8s.deployments("tx-scoring", "stream") == []
