"""The operator process against the real local cluster: online serving converges, stays converged, survives
restarts, cleans up after itself, and never gives up a healthy revision for one that cannot start."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from testkit.operator import OperatorProcess
from testkit.waiting import eventually

from modelrollout.api import GROUP, PLURAL, VERSION, ModelDeployment
from modelrollout.planning.names import LABEL_MODE, LABEL_NAME, LABEL_REVISION
from tests.integration.operator.k8s import CONVERGE_S, K8s

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ONLINE_EXAMPLES = [
    "online-direct.yaml",
    "online-canary-router.yaml",
    "online-blue-green.yaml",
    "online-shadow.yaml",
    "online-ab-test.yaml",
    "gateway-api.yaml",
    "istio.yaml",
]


@pytest.mark.parametrize("example", ONLINE_EXAMPLES, ids=lambda e: e.removesuffix(".yaml"))
async def test_online_example_converges_to_healthy_with_real_replica_counts(
    k8s: K8s, operator: OperatorProcess, example: str
) -> None:
    created = await k8s.create(example)
    name = created["metadata"]["name"]
    spec = ModelDeployment.model_validate(created).spec
    assert spec.online is not None
    want = spec.online.autoscaling.min_replicas if spec.online.autoscaling else spec.online.replicas

    obj = await k8s.wait_for(
        name,
        lambda s: s.get("phase") == "Healthy" and s.get("replicas", {}).get("stable", {}).get("ready") == want,
        f"Healthy with {want} ready replicas",
    )
    status = obj["status"]
    revision = status["stable"]["revision"]
    assert status["stable"]["version"] == spec.model.version
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["modes"] == ",".join(spec.modes)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "OnlineReady": "True",
        "Progressing": "False",
        "Degraded": "False",
    }

    [deployment] = await k8s.deployments(name)
    assert deployment.metadata.name == f"{name}-{revision}"
    assert deployment.status.ready_replicas == status["replicas"]["stable"]["ready"] == want
    assert deployment.metadata.owner_references[0].uid == obj["metadata"]["uid"]
    services = await k8s.services(name)
    preview = {f"{name}-preview"} if spec.rollout.strategy == "blueGreen" else set()
    assert set(services) == {name, f"{name}-stable", f"{name}-canary", *preview}
    main = services.pop(name)
    assert {s.spec.selector[LABEL_REVISION] for s in services.values()} == {revision}
    if spec.rollout.provider == "router":
        # Clients call <name>, which is our router; it reads the routing the operator writes.
        assert main.spec.selector == {LABEL_NAME: name, LABEL_MODE: "router"}
        [router] = await k8s.deployments(name, mode="router")
        assert router.status.ready_replicas == router.spec.replicas
        routing = await k8s.core.read_namespaced_config_map(f"{name}-router", k8s.ns)
        assert '"weights":{"canary":0,"stable":100}' in routing.data["router.json"]
    else:
        assert main.spec.selector[LABEL_REVISION] == revision
    kinds = {kind for kind, _ in await k8s.children(name)}
    assert ("HorizontalPodAutoscaler" in kinds) == (spec.online.autoscaling is not None)
    assert ("PodDisruptionBudget" in kinds) == (want > 1)
    await k8s.wait_for_events(name, "RolloutStarted", "Promoted")
    # Our watches drive the passes: nothing of Kopf's on the object (no bookkeeping annotation, no finalizer, nothing
    # in status), and the ModelDeployment carries only what its user wrote.
    assert not obj["metadata"].get("annotations")
    assert not obj["metadata"].get("finalizers")
    assert "kopf" not in status


async def test_operator_reports_liveness(operator: OperatorProcess) -> None:
    assert operator.liveness_url

    async def live() -> int | None:
        async with httpx.AsyncClient() as http:
            answer = await http.get(operator.liveness_url or "")
        return answer.status_code if answer.status_code == 200 else None

    assert await eventually(live, within=30, what="/healthz to answer 200") == 200


async def _restored_within_one_interval(operator: OperatorProcess, probe: Callable[[], Awaitable[Any]]) -> None:
    await eventually(probe, within=operator.interval_s, what="the operator to undo the change within one interval")


async def test_deleted_or_edited_children_are_restored_within_one_interval(k8s: K8s, operator: OperatorProcess) -> None:
    await k8s.create("online-blue-green.yaml")  # 3 replicas, so a PDB too
    status = (await k8s.healthy("fraud"))["status"]
    deployment_name = f"fraud-{status['stable']['revision']}"
    before = await k8s.children("fraud")

    await k8s.apps.delete_namespaced_deployment(deployment_name, k8s.ns)

    async def deployment_back() -> bool | None:
        found = await k8s.apps.read_namespaced_deployment(deployment_name, k8s.ns)
        return True if found.metadata.uid != before[("Deployment", deployment_name)][0] else None

    await _restored_within_one_interval(operator, deployment_back)

    await k8s.core.delete_namespaced_service("fraud-stable", k8s.ns)

    async def service_back() -> bool | None:
        found = await k8s.core.read_namespaced_service("fraud-stable", k8s.ns)
        return True if found.metadata.uid != before[("Service", "fraud-stable")][0] else None

    await _restored_within_one_interval(operator, service_back)

    await k8s.apps.patch_namespaced_deployment_scale(deployment_name, k8s.ns, {"spec": {"replicas": 7}})

    async def replicas_back() -> bool | None:
        found = await k8s.apps.read_namespaced_deployment(deployment_name, k8s.ns)
        return True if found.spec.replicas == 3 else None

    await _restored_within_one_interval(operator, replicas_back)
    await k8s.wait_for_events("fraud", "ChildRestored", "DriftCorrected")


async def test_deleting_the_model_deployment_removes_every_child(k8s: K8s, operator: OperatorProcess) -> None:
    await k8s.create("online-canary-router.yaml")  # revision and router Deployments, 3 Services, HPA, PDB
    obj = await k8s.healthy("churn")
    assert len(await k8s.children("churn")) == 7
    # No finalizer: deleting never depends on the operator running (an uninstalled operator must not wedge
    # namespace deletion); owner references let the garbage collector do the cleanup.
    assert not obj["metadata"].get("finalizers")
    operator.stop()

    await k8s.custom.delete_namespaced_custom_object(GROUP, VERSION, k8s.ns, PLURAL, "churn")

    async def all_gone() -> bool | None:
        listed = await k8s.custom.list_namespaced_custom_object(GROUP, VERSION, k8s.ns, PLURAL)
        return True if not listed["items"] and not await k8s.children("churn") else None

    await eventually(all_gone, within=CONVERGE_S, what="the resource and, by garbage collection, every child to go")


async def test_a_restarted_operator_changes_nothing_that_was_correct(k8s: K8s, operator: OperatorProcess) -> None:
    await k8s.create("online-direct.yaml")
    await k8s.healthy("iris")
    # mid-way: a second revision that cannot start, so a replacement is in progress (and failing) at the restart
    await k8s.patch_model("iris", version="8", image="invalid.modelrollout.dev/model-server:8")
    await k8s.wait_for("iris", lambda s: s.get("phase") == "Degraded", "the bad revision to be rolled back")
    await asyncio.sleep(operator.interval_s)  # let in-flight passes settle
    children, status = await k8s.children("iris"), (await k8s.get("iris"))["status"]
    assert len([kind for kind, _ in children if kind == "Deployment"]) == 2

    operator.restart()
    await asyncio.sleep(3 * operator.interval_s)  # the resume handler, then at least two timer passes

    assert operator.alive()
    assert await k8s.children("iris") == children, "same objects, same uids, not even rewritten"
    assert (await k8s.get("iris"))["status"] == status
    assert operator.log().count("===== operator start") == 2


async def test_an_image_that_cannot_be_pulled_never_replaces_the_healthy_revision(
    k8s: K8s, operator: OperatorProcess
) -> None:
    await k8s.create("online-direct.yaml")
    stable = (await k8s.healthy("iris", "1"))["status"]["stable"]
    await k8s.patch_model("iris", version="2", image="invalid.modelrollout.dev/model-server:2")

    obj = await k8s.wait_for("iris", lambda s: s.get("phase") == "Degraded", "Degraded")
    status = obj["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"
    assert "ErrImagePull" in degraded["message"]
    assert "invalid.modelrollout.dev/model-server:2" in degraded["message"]
    # Rolled back at once (no waiting for the progress deadline) and held: not retried until the spec changes.
    assert status["stable"] == stable
    assert "canary" not in status
    assert status["held"]["version"] == "2"
    assert status["history"][-1]["outcome"] == "Failed"
    assert status["weights"] == {"stable": 100, "canary": 0, "mirror": 0}
    await _assert_stable_still_serves(k8s, "iris", stable["revision"])
    await k8s.wait_for_events("iris", "RevisionFailed")


async def test_a_model_that_cannot_be_loaded_never_replaces_the_healthy_revision(
    k8s: K8s, operator: OperatorProcess
) -> None:
    await k8s.create("online-direct.yaml")
    stable = (await k8s.healthy("iris", "1"))["status"]["stable"]
    await k8s.patch_model("iris", version="2", uri="s3://models/does-not-exist/iris/model.joblib")

    status = (await k8s.wait_for("iris", lambda s: s.get("phase") == "Degraded", "Degraded"))["status"]
    assert "CrashLoopBackOff" in status["message"]
    assert "model could not be loaded" in status["message"]
    assert status["stable"] == stable
    await _assert_stable_still_serves(k8s, "iris", stable["revision"])


async def test_a_first_revision_that_cannot_start_is_degraded(k8s: K8s, operator: OperatorProcess) -> None:
    await k8s.create("online-direct.yaml", image="invalid.modelrollout.dev/model-server:1")
    status = (await k8s.wait_for("iris", lambda s: s.get("phase") == "Degraded", "Degraded"))["status"]
    assert "stable" not in status
    assert "ErrImagePull" in status["message"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "False"


async def test_direct_strategy_replaces_the_revision_once_available_then_scales_the_old_down(
    k8s: K8s, operator: OperatorProcess
) -> None:
    await k8s.create("online-direct.yaml")
    old = (await k8s.healthy("iris", "1"))["status"]["stable"]["revision"]
    await k8s.patch_model("iris", version="2", uri="file:///models/iris/2/model.joblib")

    status = (await k8s.healthy("iris", "2"))["status"]
    new = status["stable"]["revision"]
    assert new != old
    assert "canary" not in status
    assert status["history"][-1]["outcome"] == "Promoted"
    assert status["history"][-1]["revision"] == new

    assert [d["revision"] for d in status["scaleDowns"]] == [old]
    services = await k8s.services("iris")
    assert {s.spec.selector[LABEL_REVISION] for s in services.values()} == {new}

    # The old revision keeps its pods for scaleDownDelay (a fast undo), then goes to zero but stays, for undo.
    async def old_at_zero() -> bool | None:
        replicas = {d.metadata.name: d.spec.replicas for d in await k8s.deployments("iris")}
        return True if replicas == {f"iris-{new}": 1, f"iris-{old}": 0} else None

    await eventually(old_at_zero, within=CONVERGE_S, what="the old revision to be scaled to zero after the delay")

    # A pass writes the children before the status that records them, so the scale-down can be seen first.
    async def scale_down_done() -> bool | None:
        return True if not (await k8s.get("iris"))["status"].get("scaleDowns") else None

    await eventually(scale_down_done, within=CONVERGE_S, what="status to drop the finished scale-down")
    await k8s.wait_for_events("iris", "Promoted")


async def _assert_stable_still_serves(k8s: K8s, name: str, revision: str) -> None:
    deployment = await k8s.apps.read_namespaced_deployment(f"{name}-{revision}", k8s.ns)
    assert deployment.status.ready_replicas == deployment.spec.replicas
    stable = (await k8s.services(name))[f"{name}-stable"]
    assert stable.spec.selector[LABEL_REVISION] == revision
