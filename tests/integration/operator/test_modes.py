"""Status tells the truth about every declared mode, on the real API server with the operator running: batch runs
(a CronJob the API server accepts, beside online or alone); stream runs its consumers (a Deployment per revision,
the share document, a KEDA ScaledObject the real API server validates), beside online or alone, and a hand-over
waits for the consumers' metrics rather than guess."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from testkit.operator import OperatorProcess

from tests.integration.operator.k8s import K8s

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


@pytest.mark.operator_env(MODELROLLOUT_RECONCILE_INTERVAL_S="1")
async def test_a_hybrid_spec_serves_online_scores_batch_and_consumes_the_stream(
    k8s: K8s, operator: OperatorProcess
) -> None:
    await k8s.create("hybrid.yaml")
    obj = await k8s.wait_for(
        "propensity",
        lambda s: (
            conditions(s).get("OnlineReady") == ("True", "Serving")
            and conditions(s).get("StreamReady", ("", ""))[0] == "True"
            and s.get("replicas", {}).get("stable", {}).get("ready") == 2
        ),
        "online serving its 2 replicas and stream consuming",
    )
    status = obj["status"]
    assert status["phase"] == "Healthy"
    assert status["modes"] == "online,batch,stream"
    said = conditions(status)
    assert said["Ready"][0] == "True"
    assert said["BatchReady"] == ("True", "Scheduled")
    assert said["StreamReady"] == ("True", "Consuming")
    assert len(await k8s.deployments("propensity")) == 1, "online runs its revision as for an online-only spec"
    # Batch and stream follow the revision online serves.
    [cronjob] = (await k8s.cronjobs("propensity")).values()
    assert cronjob.metadata.name == "propensity-batch"
    assert cronjob.metadata.labels["modelrollout.dev/revision"] == status["stable"]["revision"]
    [consumers] = await k8s.deployments("propensity", "stream")
    assert consumers.metadata.name == f"propensity-stream-{status['stable']['revision']}"
    share = status["stream"]["share"]
    assert share["leader"]["revision"] == status["stable"]["revision"]
    assert share.get("follower") is None
    assert status["stream"]["group"] == f"{k8s.ns}.propensity"

    # Without batch and stream, the same ModelDeployment is Healthy and Ready; their objects go.
    await k8s.patch_spec("propensity", {"batch": None, "stream": None})
    healthy = (await k8s.wait_for("propensity", lambda s: "StreamReady" not in conditions(s),
                                  "the stream mode gone from status"))["status"]  # fmt: skip
    assert healthy["phase"] == "Healthy"
    assert conditions(healthy)["Ready"] == ("True", "Serving")
    assert "BatchReady" not in conditions(healthy)
    assert await k8s.cronjobs("propensity") == {}
    assert await k8s.deployments("propensity", "stream") == []


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


async def test_a_stream_only_spec_runs_its_consumers_and_a_hand_over_waits_for_their_metrics(
    k8s: K8s, operator: OperatorProcess, keda_crds: Any
) -> None:
    await k8s.create("stream.yaml")
    obj = await k8s.wait_for("tx-scoring", lambda s: s.get("phase") == "Healthy", "the stream consuming")
    status = obj["status"]
    first = status["stable"]["revision"]
    assert conditions(status)["StreamReady"] == ("True", "Consuming")
    assert status["stream"]["share"] == {"epoch": 0, "leader": status["stable"], "percent": 0, "final": False}
    [consumers] = await k8s.deployments("tx-scoring", "stream")
    env = {e.name: e.value for e in consumers.spec.template.spec.containers[0].env}
    assert env["MODELSERVER_CONSUMER_GROUP"] == "tx-scoring"  # the spec's group: the first revision's
    assert env["MODELSERVER_SHARE_CONFIGMAP"] == f"{k8s.ns}/tx-scoring-stream"
    assert consumers.spec.replicas == 2  # autoscaling's floor until KEDA's HPA sets more
    scaled = await k8s.custom.get_namespaced_custom_object(
        "keda.sh", "v1alpha1", k8s.ns, "scaledobjects", consumers.metadata.name
    )
    assert scaled["spec"]["maxReplicaCount"] == 8
    assert scaled["spec"]["triggers"][0]["metadata"]["consumerGroup"] == "tx-scoring"
    document = await k8s.core.read_namespaced_config_map("tx-scoring-stream", k8s.ns)
    assert json.loads(document.data["stream.json"])["leader"] == {"revision": first, "group": "tx-scoring"}

    # A new version (strategy direct): the candidate gets every record at one cutover, and the old consumers stay
    # until both revisions report the cutover committed on every partition, which nothing reports here (no
    # Prometheus): the hand-over waits, with both revisions consuming, and says so.
    await k8s.patch_model("tx-scoring", version="6")

    def waiting(status: dict[str, Any]) -> bool:
        return "every partition" in ((status.get("stream") or {}).get("waiting") or "")

    obj = await k8s.wait_for("tx-scoring", waiting, "the promotion's cutover, waiting for the consumers' epochs")
    stream = obj["status"]["stream"]
    assert stream["share"]["leader"]["revision"] == first
    assert stream["share"]["percent"] == 100
    assert "every partition" in stream["waiting"]
    second = stream["share"]["follower"]["revision"]
    assert stream["groups"] == {first: "tx-scoring", second: f"tx-scoring-{second}"}
    await asyncio.sleep(3)
    names = sorted(d.metadata.name for d in await k8s.deployments("tx-scoring", "stream"))
    assert names == sorted([f"tx-scoring-stream-{first}", f"tx-scoring-stream-{second}"])
    assert (await k8s.get("tx-scoring"))["status"]["stream"]["share"]["leader"]["revision"] == first
