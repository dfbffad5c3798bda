from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client
from testkit.crds import install_crds
from testkit.operator import OperatorProcess, operator_running
from testkit.ports import free_port

from tests.conftest import Cluster
from tests.integration.operator.k8s import K8s


@pytest.fixture
async def operator(
    cluster: Cluster, kube_api: client.ApiClient, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[OperatorProcess]:
    """The operator, watching this test's namespace; `@pytest.mark.operator_env(NAME=value, ...)` adds settings."""
    await install_crds(kube_api)
    marker = request.node.get_closest_marker("operator_env")
    process = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        namespace=namespace,
        log_dir=tmp_path,
        extra_env={"MODELROLLOUT_LIVENESS_PORT": str(free_port()), **(marker.kwargs if marker else {})},
    )
    with operator_running(process, request):
        yield process


@pytest.fixture
def k8s(kube_api: client.ApiClient, namespace: str) -> K8s:
    return K8s(kube_api, namespace)
