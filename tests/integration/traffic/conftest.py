"""Fixtures for the mesh routers: the Gateway API and Istio CRDs (installed by hack/mesh-crds.sh, which fetches
them from their Go modules once and caches them by version), the operator's own KubeClient, and users' routing
objects to edit."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from testkit.chart import deployed_rules
from testkit.crds import install_crds
from testkit.operator import OperatorProcess, operator_running
from testkit.ports import free_port
from testkit.rbac import bind_leader_role

from modelrollout.kube.client import KubeClient
from tests.conftest import HACK, Cluster

GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")
VIRTUAL_SERVICE = ("networking.istio.io", "v1", "virtualservices")
DESTINATION_RULE = ("networking.istio.io", "v1", "destinationrules")
JSON_PATCH = {"_content_type": "application/json-patch+json"}


@pytest.fixture(scope="session")
def mesh_crds(cluster: Cluster) -> Path:
    """Gateway API (standard channel) and Istio CRDs in the cluster, established and served."""
    done = subprocess.run(
        [str(HACK / "mesh-crds.sh"), "install"],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    for plural in ("httproutes.gateway.networking.k8s.io", "virtualservices.networking.istio.io"):
        # A just-established CRD may still answer 429 while its storage initialises.
        for _ in range(60):
            if cluster.kubectl("get", plural, "-A", check=False).returncode == 0:
                break
            time.sleep(0.5)
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture
async def kube(cluster: Cluster, mesh_crds: Path) -> AsyncIterator[KubeClient]:
    """The operator's own client (field manager `modelrollout`), as the reconciler holds it."""
    kube = await KubeClient.connect(field_manager="modelrollout", kubeconfig=str(cluster.kubeconfig))
    try:
        yield kube
    finally:
        await kube.close()


class Objects:
    """The user's routing objects in one namespace, created, read and edited as a platform team would."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)

    async def create(self, resource: tuple[str, str, str], body: dict[str, Any]) -> dict[str, Any]:
        group, version, plural = resource
        created: dict[str, Any] = await self.custom.create_namespaced_custom_object(
            group, version, self.ns, plural, body, field_manager="platform-team"
        )
        return created

    async def get(self, resource: tuple[str, str, str], name: str) -> dict[str, Any]:
        group, version, plural = resource
        found: dict[str, Any] = await self.custom.get_namespaced_custom_object(group, version, self.ns, plural, name)
        return found

    async def json_patch(self, resource: tuple[str, str, str], name: str, ops: list[dict[str, Any]]) -> None:
        group, version, plural = resource
        await self.custom.patch_namespaced_custom_object(
            group, version, self.ns, plural, name, ops, field_manager="platform-team", **JSON_PATCH
        )


@pytest.fixture
async def objects(kube_api: client.ApiClient, namespace: str, mesh_crds: Path) -> Objects:
    return Objects(kube_api, namespace)


@pytest.fixture
async def restricted_kubeconfig(
    cluster: Cluster, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> AsyncIterator[Path]:
    """A kubeconfig with nothing but the ClusterRole rules deploy/ installs (bound cluster-wide, as deployed) and
    leader election's Role in the namespace (testkit.rbac)."""
    account = "modelrollout"
    role_name = f"modelrollout-{namespace}"
    rbac_api = client.RbacAuthorizationV1Api(kube_api)
    await client.CoreV1Api(kube_api).create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    await rbac_api.create_cluster_role({"metadata": {"name": role_name}, "rules": deployed_rules()})
    subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name}
    await rbac_api.create_cluster_role_binding(
        {"metadata": {"name": role_name}, "roleRef": role_ref, "subjects": [subject]}
    )
    await bind_leader_role(kube_api, namespace=namespace, account=account)
    try:
        yield cluster.service_account_kubeconfig(namespace, account, tmp_path / "sa.kubeconfig")
    finally:
        await rbac_api.delete_cluster_role_binding(role_name)
        await rbac_api.delete_cluster_role(role_name)


@pytest.fixture
async def operator(
    kube_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    restricted_kubeconfig: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[OperatorProcess]:
    """The real operator process, running with only the permissions deploy/ grants."""
    await install_crds(kube_api)
    process = OperatorProcess(
        kubeconfig=restricted_kubeconfig,
        namespace=namespace,
        log_dir=tmp_path,
        extra_env={"MODELROLLOUT_LIVENESS_PORT": str(free_port()), "MODELROLLOUT_RECONCILE_INTERVAL_S": "2"},
    )
    with operator_running(process, request):
        yield process
