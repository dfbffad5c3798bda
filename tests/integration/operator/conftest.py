from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from tests.conftest import Cluster
from tests.support.crds import install_crds
from tests.support.operator import OperatorProcess, free_port, operator_running


@pytest.fixture
async def operator(
    cluster: Cluster, kube_api: client.ApiClient, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[OperatorProcess]:
    await install_crds(kube_api)
    process = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        namespace=namespace,
        log_dir=tmp_path,
        extra_env={"MODELROLLOUT_LIVENESS_PORT": str(free_port())},
    )
    with operator_running(process, request):
        yield process
