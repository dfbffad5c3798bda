"""spec.pod on every pod the operator makes: the model's pods get all of it, the router's the node placement,
pull Secrets, labels and annotations (it keeps its own ServiceAccount); the operator's own labels stay, and a
change moves the serving revision's pods without a new revision."""

from __future__ import annotations

from typing import Any

from modelrollout.api.resource import ModelDeployment
from modelrollout.planning.names import LABEL_REVISION, MANAGED_BY
from modelrollout.planning.reconcile import target_of
from tests.unit.modelrollout.planning.test_reconcile import SETTINGS, V1, md, observed, plan, serving, state

POD: dict[str, Any] = {
    "nodeSelector": {"pool": "gpu"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}],
    "serviceAccountName": "churn-models",
    "imagePullSecrets": ["registry-creds"],
    "priorityClassName": "ml-serving",
    "labels": {"team": "ml"},
    "annotations": {"example.com/owner": "ml-platform"},
}


def with_pod(pod: dict[str, Any] | None, **online: Any) -> ModelDeployment:
    resource = md(status=serving(), **(online or {"replicas": 2}))
    wire = resource.model_dump(by_alias=True, exclude_none=True, mode="json")
    if pod is not None:
        wire["spec"]["pod"] = pod
    return ModelDeployment.model_validate(wire)


def templates(resource: ModelDeployment) -> dict[str, dict[str, Any]]:
    p = plan(resource, observed(state(V1, replicas=2)))
    return {o["metadata"]["name"]: o["spec"]["template"] for o in p.grow + p.shrink if o["kind"] == "Deployment"}


def test_the_model_pods_get_every_setting_and_keep_the_operator_labels() -> None:
    template = templates(with_pod(POD))[f"iris-{V1.revision}"]
    spec, meta = template["spec"], template["metadata"]
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["affinity"] == POD["affinity"]
    assert spec["topologySpreadConstraints"] == POD["topologySpreadConstraints"]
    assert spec["serviceAccountName"] == "churn-models"
    assert spec["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert spec["priorityClassName"] == "ml-serving"
    assert meta["labels"]["team"] == "ml"
    assert meta["labels"][LABEL_REVISION] == V1.revision
    assert MANAGED_BY.items() <= meta["labels"].items()
    assert meta["annotations"]["example.com/owner"] == "ml-platform"
    assert "prometheus.io/scrape" in meta["annotations"]


def test_the_router_gets_the_placement_but_keeps_its_own_service_account() -> None:
    template = templates(with_pod(POD))["iris-router"]
    spec = template["spec"]
    assert spec["serviceAccountName"] == "iris-router"
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert spec["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert "topologySpreadConstraints" not in spec
    assert template["metadata"]["labels"]["team"] == "ml"


def test_placement_is_not_part_of_the_revision_and_a_change_moves_the_serving_pods() -> None:
    plain, placed = with_pod(None), with_pod(POD)
    assert target_of(plain.spec, SETTINGS) == target_of(placed.spec, SETTINGS)
    before = templates(plain)[f"iris-{V1.revision}"]["spec"]
    after = templates(placed)[f"iris-{V1.revision}"]["spec"]
    assert "nodeSelector" not in before
    assert after["nodeSelector"] == {"pool": "gpu"}
