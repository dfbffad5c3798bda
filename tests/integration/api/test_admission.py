"""The generated CRD on the real API server: examples are admitted, invalid manifests are rejected at admission
with a message naming the field and the fix, `kubectl explain` is useful, and status round-trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from testkit.crds import install_crds
from testkit.manifests import EDGE_VALID, EXAMPLES, INVALID, Invalid, load_example

from modelrollout.api import GROUP, PLURAL, VERSION, ModelDeployment, ModelDeploymentStatus
from tests.conftest import Cluster
from tests.unit.modelrollout.api.test_status import full_status

pytestmark = pytest.mark.integration


@pytest.fixture
async def mdeps(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    await install_crds(kube_api)
    return client.CustomObjectsApi(kube_api)


async def _create(api: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    # Strict field validation, as `kubectl apply` does by default: unknown fields are errors, not dropped.
    created: dict[str, Any] = await api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, field_validation="Strict"
    )
    return created


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
async def test_example_is_admitted_and_reads_back(mdeps: client.CustomObjectsApi, namespace: str, path: Path) -> None:
    manifest = load_example(path.name)
    stored = await _create(mdeps, namespace, manifest)
    # What the server stored (with its defaults filled in) is still a valid ModelDeployment.
    parsed = ModelDeployment.model_validate({**stored, "metadata": stored["metadata"]})
    assert parsed.spec == ModelDeployment.model_validate(manifest).spec


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
async def test_invalid_manifest_is_rejected_at_admission(
    mdeps: client.CustomObjectsApi, namespace: str, case: Invalid
) -> None:
    with pytest.raises(client.ApiException) as rejected:
        await _create(mdeps, namespace, case.manifest())
    assert rejected.value.status in (400, 422), rejected.value.body  # 400: strict decoding of unknown fields
    message = json.loads(rejected.value.body)["message"]
    for expected in case.expect:
        assert expected.lower() in message.lower(), f"{expected!r} missing from: {message}"


@pytest.mark.parametrize("case", EDGE_VALID, ids=lambda c: c.id)
async def test_values_at_the_edge_of_a_rule_are_admitted(
    mdeps: client.CustomObjectsApi, namespace: str, case: Invalid
) -> None:
    await _create(mdeps, namespace, case.manifest())


async def test_an_analysis_block_without_metrics_is_admitted(mdeps: client.CustomObjectsApi, namespace: str) -> None:
    # Every CEL rule must hold when an optional list is left out, not only when it is empty.
    manifest = load_example("online-ab-test.yaml")
    manifest["spec"]["rollout"]["analysis"] = {"interval": "2s"}
    stored = await _create(mdeps, namespace, manifest)
    assert "metrics" not in stored["spec"]["rollout"]["analysis"]


async def test_server_fills_the_defaults_the_models_declare(mdeps: client.CustomObjectsApi, namespace: str) -> None:
    stored = await _create(mdeps, namespace, load_example("online-direct.yaml"))
    assert stored["spec"]["rollout"] == {"strategy": "direct"}
    assert stored["spec"]["online"] == {"replicas": 1}


async def test_status_written_through_the_subresource_reads_back_into_the_model(
    mdeps: client.CustomObjectsApi, namespace: str
) -> None:
    await _create(mdeps, namespace, load_example("online-canary-router.yaml"))
    status = full_status()
    await mdeps.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "churn",
        {"status": status.to_wire()},
        _content_type="application/merge-patch+json",
    )
    stored = await mdeps.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "churn")
    assert ModelDeploymentStatus.model_validate(stored["status"]) == status
    assert ModelDeployment.model_validate(stored).status == status


async def test_status_is_validated_too(mdeps: client.CustomObjectsApi, namespace: str) -> None:
    await _create(mdeps, namespace, load_example("online-direct.yaml"))
    bad = {"status": {"phase": "Exploded", "weights": {"canary": 120}}}
    with pytest.raises(client.ApiException) as rejected:
        await mdeps.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "iris", bad, _content_type="application/merge-patch+json"
        )
    message = json.loads(rejected.value.body)["message"]
    assert "status.phase" in message
    assert "Healthy" in message
    assert "status.weights.canary" in message


async def test_printer_columns_show_the_rollout(
    mdeps: client.CustomObjectsApi, namespace: str, cluster: Cluster
) -> None:
    await _create(mdeps, namespace, load_example("online-canary-router.yaml"))
    status = full_status().to_wire()
    await mdeps.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "churn",
        {"status": status},
        _content_type="application/merge-patch+json",
    )
    table = cluster.kubectl("get", "mdep", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "MODES", "STRATEGY", "STABLE", "CANARY", "WEIGHT", "PHASE", "AGE"]
    assert table[1].split()[:7] == ["churn", "online", "canary", "6", "7", "10", "Progressing"]
    listed = cluster.kubectl("get", "ml", "-n", namespace, "-o", "name").stdout
    assert "modeldeployment.modelrollout.dev/churn" in listed


async def test_kubectl_explain_prints_descriptions(mdeps: client.CustomObjectsApi, cluster: Cluster) -> None:
    explained = cluster.kubectl("explain", "modeldeployment.spec.rollout.analysis").stdout
    assert "Metric analysis that decides promotion and rollback." in explained
    assert "noData" in explained
    assert "Verdict for an empty or NaN result" in explained
    assert "Default: inconclusive." in explained
    short = cluster.kubectl("explain", "mdep.spec.rollout.canary.steps.setWeight").stdout
    assert "Percent of traffic to the canary." in short


def test_timestamps_are_utc_on_the_wire() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert full_status().model_copy(update={"step_started_at": at}).to_wire()["stepStartedAt"] == (
        "2026-01-02T03:04:05Z"
    )
