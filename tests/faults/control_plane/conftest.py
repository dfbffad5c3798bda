"""Fixtures of the control-plane faults: this worker's kube-apiserver as a process a test may kill and start again
(`testkit.apiserver`), the operator started by the test with the settings and credentials it needs, and a
ModelDeployment driven through the real API.

The pods are kwok's (the fake nodes mark them Ready): these tests are about the operator's conversation with the
API server and Prometheus, not about what the pods serve, which the e2e suite covers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client
from testkit.apiserver import APISERVER, KwokApiServer, NotOurProcess
from testkit.crds import install_crds
from testkit.operator import OperatorProcess, stop_and_report
from testkit.ports import free_port

from tests.conftest import TEST_CLUSTER_NAME, Cluster
from tests.faults.control_plane.support import Mdep

StartOperator = Callable[..., OperatorProcess]


@pytest.fixture
def apiserver(cluster: Cluster, namespace: str) -> Iterator[KwokApiServer]:
    """The kube-apiserver process of this worker's own cluster (`mr-test-<worker>`), to kill and start again.
    Set up after `namespace` so that it is torn down first: the API server is back, as kwokctl started it (and any
    component that died meanwhile with it), before the namespace is deleted and the next test of this worker runs."""
    if cluster.kubeconfig.parent.name != TEST_CLUSTER_NAME:
        # Never another worker's (or another session's) API server: only the cluster named after this worker.
        pytest.skip(f"{cluster.kubeconfig} is not this worker's own kwok cluster {TEST_CLUSTER_NAME}")
    try:
        server = KwokApiServer.of_kubeconfig(cluster.kubeconfig)
        original = server.commands()
        kwokctl_started = original[APISERVER]
    except (NotOurProcess, KeyError) as exc:
        pytest.skip(f"no kube-apiserver process of our own to stop: {exc}")
    server.thaw_clients()
    try:
        yield server
    finally:
        try:
            try:
                if server.command().argv != kwokctl_started.argv:
                    server.restart(kwokctl_started)  # started with other flags (API Priority and Fairness)
            except NotOurProcess:
                server.start(kwokctl_started)  # the test failed while the server was down
            revived = server.revive(original)
            if revived:
                print(f"revived {revived} of {cluster.kubeconfig.parent.name} after the test")
        finally:
            server.close()


@pytest.fixture
async def start_operator(
    cluster: Cluster, kube_api: client.ApiClient, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[StartOperator]:
    """`start_operator(kubeconfig=None, **env)`: the operator watching the test's namespace (as admin unless
    `kubeconfig` says otherwise), with its probes and /metrics on ports of their own; `env` adds MODELROLLOUT_*
    settings. Stopped afterwards, its log printed when the test failed."""
    await install_crds(kube_api)
    started: list[OperatorProcess] = []

    def start(*, kubeconfig: Path | None = None, **env: str) -> OperatorProcess:
        process = OperatorProcess(
            kubeconfig=kubeconfig or cluster.kubeconfig,
            namespace=namespace,
            log_dir=tmp_path,
            extra_env={
                "MODELROLLOUT_LIVENESS_PORT": str(free_port()),
                "MODELROLLOUT_METRICS_PORT": str(free_port()),
                **env,
            },
        )
        process.start()
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            stop_and_report(process, request)


@pytest.fixture
def mdep(kube_api: client.ApiClient, namespace: str) -> Mdep:
    return Mdep(kube_api, namespace)
