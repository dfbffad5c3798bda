"""Editing a serving ModelDeployment's spec outside the revision (size, autoscaling, rollout strategy, traffic
routing) on the real API server: no new revision starts, and the children change within a pass or two — the
same revision keeps serving throughout."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client
from testkit.operator import OperatorProcess
from testkit.waiting import eventually

from modelrollout.planning.names import router_configmap_name, router_name, service_name, workload_name
from modelrollout.traffic.router import RouterConfig, parse_configmap_data
from tests.integration.operator.k8s import CONVERGE_S, K8s

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "iris"


async def serving(k8s: K8s, **spec: Any) -> str:
    """online-direct.yaml with `spec` merged in, Healthy; its revision."""
    await k8s.create("online-direct.yaml")
    if spec:
        await k8s.patch_spec(NAME, spec)
    generation = 2 if spec else 1
    obj = await k8s.wait_for(
        NAME, lambda s: s.get("phase") == "Healthy" and s.get("observedGeneration") == generation, "Healthy"
    )
    revision: str = obj["status"]["stable"]["revision"]
    return revision


async def until(probe: Callable[[], Awaitable[Any]], what: str) -> Any:
    async def check() -> Any:
        try:
            return await probe()
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    return await eventually(check, within=CONVERGE_S, what=what)


async def gone(read: Callable[[], Awaitable[Any]], what: str) -> None:
    async def probe() -> bool | None:
        try:
            await read()
        except client.ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return None

    await eventually(probe, within=CONVERGE_S, what=f"{what} to be deleted")


async def same_revision_healthy(k8s: K8s, revision: str, generation: int) -> dict[str, Any]:
    obj = await k8s.wait_for(
        NAME,
        lambda s: s.get("observedGeneration") == generation and s.get("phase") == "Healthy",
        f"generation {generation} reconciled, Healthy",
    )
    status = obj["status"]
    assert status["stable"]["revision"] == revision, "a size or routing change is not a new revision"
    assert status.get("canary") is None
    assert [d.metadata.name for d in await k8s.deployments(NAME)] == [workload_name(NAME, revision)]
    return status


async def test_online_replicas_resize_the_deployment_and_the_pdb_appears_and_goes(
    k8s: K8s, operator: OperatorProcess
) -> None:
    revision = await serving(k8s)
    deployment = workload_name(NAME, revision)
    pdb = lambda: k8s.policy.read_namespaced_pod_disruption_budget(NAME, k8s.ns)  # noqa: E731

    await k8s.patch_spec(NAME, {"online": {"replicas": 3}})

    async def three() -> bool | None:
        found = await k8s.apps.read_namespaced_deployment(deployment, k8s.ns)
        return True if found.spec.replicas == 3 and found.status.ready_replicas == 3 else None

    await until(three, "the Deployment at 3 ready replicas")
    budget = await until(pdb, "a PodDisruptionBudget once there are 3 replicas")
    assert budget.spec.selector.match_labels["modelrollout.dev/name"] == NAME
    await same_revision_healthy(k8s, revision, 2)
    # The pass that resized wrote status before the new pods were ready; the pass their readiness triggers
    # counts them.
    await k8s.wait_for(NAME, lambda s: s["replicas"]["stable"]["ready"] == 3, "status counting 3 ready pods")
    await k8s.wait_for_events(NAME, "Scaled")

    await k8s.patch_spec(NAME, {"online": {"replicas": 1}})

    async def one() -> bool | None:
        found = await k8s.apps.read_namespaced_deployment(deployment, k8s.ns)
        return True if found.spec.replicas == 1 else None

    await until(one, "the Deployment back at 1 replica")
    await gone(pdb, "the PodDisruptionBudget of a single pod")
    await same_revision_healthy(k8s, revision, 3)


async def test_autoscaling_bounds_and_target_change_the_hpa_and_removing_it_restores_replicas(
    k8s: K8s, operator: OperatorProcess
) -> None:
    autoscaling = {"minReplicas": 2, "maxReplicas": 4, "targetCPUUtilizationPercentage": 70}
    revision = await serving(k8s, online={"autoscaling": autoscaling})
    hpa_name = workload_name(NAME, revision)
    hpa = lambda: k8s.autoscaling.read_namespaced_horizontal_pod_autoscaler(hpa_name, k8s.ns)  # noqa: E731

    async def says(low: int, high: int, target: int) -> Callable[[], Awaitable[bool | None]]:
        async def probe() -> bool | None:
            found = await hpa()
            cpu = found.spec.metrics[0].resource.target.average_utilization
            return True if (found.spec.min_replicas, found.spec.max_replicas, cpu) == (low, high, target) else None

        return probe

    await until(await says(2, 4, 70), "the HPA as first asked")
    await k8s.patch_spec(NAME, {"online": {"autoscaling": {"minReplicas": 3}}})
    await until(await says(3, 4, 70), "the HPA's floor raised to 3")
    await k8s.patch_spec(NAME, {"online": {"autoscaling": {"maxReplicas": 8}}})
    await until(await says(3, 8, 70), "the HPA's ceiling raised to 8")
    await k8s.patch_spec(NAME, {"online": {"autoscaling": {"targetCPUUtilizationPercentage": 50}}})
    await until(await says(3, 8, 50), "the HPA's CPU target at 50%")
    await same_revision_healthy(k8s, revision, 5)

    await k8s.patch_spec(NAME, {"online": {"autoscaling": None, "replicas": 1}})
    await gone(hpa, "the HPA after autoscaling was turned off")

    async def one() -> bool | None:
        found = await k8s.apps.read_namespaced_deployment(workload_name(NAME, revision), k8s.ns)
        return True if found.spec.replicas == 1 else None

    await until(one, "the Deployment at spec.online.replicas again")
    await same_revision_healthy(k8s, revision, 6)


async def test_switching_the_strategy_to_blue_green_adds_the_preview_service_and_back_removes_it(
    k8s: K8s, operator: OperatorProcess
) -> None:
    revision = await serving(k8s)
    preview = lambda: k8s.core.read_namespaced_service(service_name(NAME, "preview"), k8s.ns)  # noqa: E731

    await k8s.patch_spec(NAME, {"rollout": {"strategy": "blueGreen", "blueGreen": {"autoPromote": True}}})
    found = await until(preview, "the preview Service of blue-green")
    assert found.spec.selector["modelrollout.dev/revision"] == revision, "without a candidate it shows stable"
    await same_revision_healthy(k8s, revision, 2)

    await k8s.patch_spec(NAME, {"rollout": {"strategy": "direct", "blueGreen": None}})
    await gone(preview, "the preview Service after leaving blue-green")
    await same_revision_healthy(k8s, revision, 3)


async def test_traffic_routing_provider_and_router_settings_change_the_router(
    k8s: K8s, operator: OperatorProcess
) -> None:
    canary = {"strategy": "canary", "canary": {"steps": [{"setWeight": 50}]}}
    revision = await serving(k8s, rollout={**canary, "trafficRouting": {"provider": "service"}})
    router = lambda: k8s.apps.read_namespaced_deployment(router_name(NAME), k8s.ns)  # noqa: E731
    configmap = lambda: k8s.core.read_namespaced_config_map(router_configmap_name(NAME), k8s.ns)  # noqa: E731

    async def document(check: Callable[[RouterConfig], bool]) -> Callable[[], Awaitable[RouterConfig | None]]:
        async def probe() -> RouterConfig | None:
            config = parse_configmap_data((await configmap()).data or {})
            return config if check(config) else None

        return probe

    with pytest.raises(client.ApiException):
        await router()
    settings = {"timeout": "3s", "retryOnStable": True}
    await k8s.patch_spec(NAME, {"rollout": {"trafficRouting": {"provider": "router", "router": settings}}})
    await until(router, "the router's Deployment")
    config = await until(
        await document(lambda c: (c.timeout_seconds, c.retry_on_stable) == (3, True)), "the router's settings"
    )
    assert (config.weights.stable, config.weights.canary) == (100, 0)
    await same_revision_healthy(k8s, revision, 3)

    await k8s.patch_spec(NAME, {"rollout": {"trafficRouting": {"router": {"timeout": "5s", "retryOnStable": False}}}})
    await until(
        await document(lambda c: (c.timeout_seconds, c.retry_on_stable) == (5, False)), "the edited router settings"
    )
    await same_revision_healthy(k8s, revision, 4)

    await k8s.patch_spec(NAME, {"rollout": {"trafficRouting": {"provider": "service", "router": None}}})
    await gone(router, "the router's Deployment once provider service routes")
    await gone(configmap, "the router's ConfigMap")
    await same_revision_healthy(k8s, revision, 5)


async def test_pod_placement_reaches_the_pods_the_replicaset_controller_creates_and_moves_them_in_place(
    k8s: K8s, operator: OperatorProcess
) -> None:
    # Placement the kwok nodes satisfy (they carry type=kwok and taint nothing), so the pods become ready; the API
    # server's own Pod validation sees every field, free-form affinity and spread constraints included.
    pod = {
        "nodeSelector": {"type": "kwok"},
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "type", "operator": "In", "values": ["kwok"]}]}}
        ]}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": {"team": "ml"}}}],
        "imagePullSecrets": ["registry-creds"],
        "labels": {"team": "ml"},
        "annotations": {"example.com/owner": "ml-platform"},
    }  # fmt: skip
    revision = await serving(k8s, pod=pod)
    pods = (await k8s.core.list_namespaced_pod(k8s.ns, label_selector="team=ml")).items
    assert pods, "no pod carries the extra label"
    for found in pods:
        assert found.spec.node_selector == {"type": "kwok"}
        assert found.spec.tolerations[0].key == "kwok.x-k8s.io/node"
        assert found.spec.affinity.node_affinity is not None
        assert found.spec.topology_spread_constraints[0].topology_key == "kubernetes.io/hostname"
        assert found.spec.image_pull_secrets[0].name == "registry-creds"
        assert found.metadata.annotations["example.com/owner"] == "ml-platform"

    await k8s.patch_spec(NAME, {"pod": {"labels": {"team": "ml", "tier": "gold"}}})

    async def moved() -> bool | None:
        deployment = await k8s.apps.read_namespaced_deployment(workload_name(NAME, revision), k8s.ns)
        return True if deployment.spec.template.metadata.labels.get("tier") == "gold" else None

    await until(moved, "the serving Deployment's pods to carry the new label")
    status = (await k8s.get(NAME))["status"]
    assert status["stable"]["revision"] == revision, "placement is not a new revision"
    assert "canary" not in status
