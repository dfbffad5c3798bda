"""Smoke tests of the local control plane every other integration test relies on.

They prove the cluster is a real one: workloads converge through the real controllers and scheduler onto kwok
nodes, CRDs are served with their status subresource, and watches deliver events.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from testkit.crds import apply_crd
from testkit.waiting import eventually

from tests.conftest import REPO_ROOT, Cluster

pytestmark = pytest.mark.integration

LABELS = {"app": "smoke"}
MERGE = {"_content_type": "application/merge-patch+json"}


def _versions() -> dict[str, str]:
    lines = (REPO_ROOT / "hack/versions.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _pod_template(*, restart_policy: str = "Always") -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=LABELS),
        spec=client.V1PodSpec(
            restart_policy=restart_policy,
            containers=[client.V1Container(name="main", image="registry.invalid/smoke:1")],
        ),
    )


async def test_server_is_the_kubernetes_we_built(kube_api: client.ApiClient) -> None:
    info = await client.VersionApi(kube_api).get_code()
    assert info.git_version == _versions()["K8S_VERSION"]
    nodes = (await client.CoreV1Api(kube_api).list_node()).items
    ready = [
        n.metadata.name
        for n in nodes
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
    ]
    assert ready, f"no Ready node among {[n.metadata.name for n in nodes]}"


async def test_deployment_reaches_its_ready_replica_count(kube_api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(kube_api)
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="smoke"),
        spec=client.V1DeploymentSpec(
            replicas=3, selector=client.V1LabelSelector(match_labels=LABELS), template=_pod_template()
        ),
    )
    await apps.create_namespaced_deployment(namespace, deployment)

    async def ready() -> int | None:
        status = (await apps.read_namespaced_deployment_status("smoke", namespace)).status
        return status.ready_replicas if status.ready_replicas == 3 else None

    assert await eventually(ready, within=60, what="3 ready replicas") == 3
    pods = (await client.CoreV1Api(kube_api).list_namespaced_pod(namespace, label_selector="app=smoke")).items
    assert len(pods) == 3
    assert all(p.spec.node_name for p in pods), "the scheduler bound every pod to a (fake) node"


async def test_job_created_from_a_cronjob_template_completes(kube_api: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(kube_api)
    cron = await batch.create_namespaced_cron_job(
        namespace,
        client.V1CronJob(
            metadata=client.V1ObjectMeta(name="nightly"),
            spec=client.V1CronJobSpec(
                schedule="0 2 * * *",
                job_template=client.V1JobTemplateSpec(
                    spec=client.V1JobSpec(backoff_limit=0, template=_pod_template(restart_policy="Never"))
                ),
            ),
        ),
    )
    # What `kubectl create job --from=cronjob/nightly` does: the CronJob's template, owned by the CronJob.
    owner = client.V1OwnerReference(
        api_version="batch/v1",
        kind="CronJob",
        name=cron.metadata.name,
        uid=cron.metadata.uid,
        controller=True,
    )
    await batch.create_namespaced_job(
        namespace,
        client.V1Job(
            metadata=client.V1ObjectMeta(name="nightly-manual", owner_references=[owner]),
            spec=cron.spec.job_template.spec,
        ),
    )

    async def complete() -> bool | None:
        status = (await batch.read_namespaced_job_status("nightly-manual", namespace)).status
        done = any(c.type == "Complete" and c.status == "True" for c in status.conditions or [])
        return True if done else None

    assert await eventually(complete, within=60, what="the Job to complete")
    job = await batch.read_namespaced_job_status("nightly-manual", namespace)
    assert job.status.succeeded == 1


WIDGET_GROUP, WIDGET_VERSION, WIDGET_PLURAL = "smoke.modelrollout.dev", "v1", "widgets"


def _widget_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{WIDGET_PLURAL}.{WIDGET_GROUP}"},
        "spec": {
            "group": WIDGET_GROUP,
            "scope": "Namespaced",
            "names": {"plural": WIDGET_PLURAL, "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": WIDGET_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"phase": {"type": "string"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


async def test_custom_resource_lifecycle_is_seen_by_a_watch(kube_api: client.ApiClient, namespace: str) -> None:
    await apply_crd(kube_api, _widget_crd())
    custom = client.CustomObjectsApi(kube_api)
    args = (WIDGET_GROUP, WIDGET_VERSION, namespace, WIDGET_PLURAL)
    seen: list[tuple[str, str | None]] = []
    # List-then-watch from that resourceVersion, as informers do: the watch sees every later event no
    # matter when its connection is established, so the test needs no sleep.
    start = (await custom.list_namespaced_custom_object(*args))["metadata"]["resourceVersion"]

    async def record() -> None:
        while True:
            try:
                async with watch.Watch().stream(
                    custom.list_namespaced_custom_object, *args, resource_version=start, timeout_seconds=30
                ) as stream:
                    async for event in stream:
                        seen.append((event["type"], event["object"].get("status", {}).get("phase")))
                        if event["type"] == "DELETED":
                            return
            except client.ApiException as exc:
                # The watch cache of a new CRD can lag behind its first successful list.
                if exc.status != 429:
                    raise
                await asyncio.sleep(0.2)

    watcher = asyncio.create_task(record())

    body = {"apiVersion": f"{WIDGET_GROUP}/{WIDGET_VERSION}", "kind": "Widget", "metadata": {"name": "w1"}}
    await custom.create_namespaced_custom_object(*args, {**body, "spec": {"size": 2}})
    listed = await custom.list_namespaced_custom_object(*args)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["w1"]

    # Status is written only through the status subresource: the main endpoint ignores it.
    await custom.patch_namespaced_custom_object(*args, "w1", {"status": {"phase": "Ignored"}}, **MERGE)
    assert "status" not in await custom.get_namespaced_custom_object(*args, "w1")
    await custom.patch_namespaced_custom_object_status(*args, "w1", {"status": {"phase": "Ready"}}, **MERGE)
    stored = await custom.get_namespaced_custom_object(*args, "w1")
    assert stored["status"] == {"phase": "Ready"}

    with pytest.raises(client.ApiException) as rejected:
        await custom.create_namespaced_custom_object(*args, {**body, "metadata": {"name": "w2"}, "spec": {"size": 0}})
    assert rejected.value.status == 422
    assert "spec.size" in rejected.value.body

    await custom.delete_namespaced_custom_object(*args, "w1")
    await asyncio.wait_for(watcher, timeout=30)
    assert ("ADDED", None) in seen
    assert ("MODIFIED", "Ready") in seen
    assert seen[-1][0] == "DELETED"


def test_integration_tests_fail_when_no_api_server_answers(tmp_path: Path) -> None:
    """The fixture must not skip or pass silently: with a dead API server, the suite errors."""
    dead = tmp_path / "kubeconfig"
    dead.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\n"
        "clusters: [{name: dead, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: dead, user: {token: none}}]\n"
        "contexts: [{name: dead, context: {cluster: dead, user: dead}}]\n"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"{Path(__file__)}::test_server_is_the_kubernetes_we_built",
        ],
        check=False,
        cwd=REPO_ROOT,
        env={**os.environ, "KUBECONFIG": str(dead)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "no Kubernetes API server answers" in run.stdout
    assert "1 error" in run.stdout


def test_kubectl_reports_the_server_version_we_built(cluster: Cluster) -> None:
    reported = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert reported["serverVersion"]["gitVersion"] == _versions()["K8S_VERSION"]
    assert reported["serverVersion"]["gitTreeState"] == "clean"
