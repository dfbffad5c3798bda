"""Fault-suite fixtures: the e2e harness (tests/e2e/conftest.py) made available to every fault test.

The faults are injected into the real thing: the operator process (kill -9), the router pods the local kubelet
runs (kill -9 of the container's process; the kubelet restarts it), users' writes to the objects the operator
also writes. So the fixtures are the e2e ones, imported here by name: `cluster` and `kube_api` (tests/conftest.py),
the model artifacts, the local kubelet, Prometheus per stack (`world.launch`), and the operator process
(`operator`, `start_operator`). Subpackages (`rollouts/`, `control_plane/`) add their own conftest on top.

One thing differs from e2e: the local kubelet's pod network. e2e derives it from the xdist worker (gw0 -> 10.201,
gw1 -> 10.202, anything else 10.200), so two sessions run under other worker names (`PYTEST_XDIST_WORKER=faultsA`,
`faultsB`, as developers do beside each other) would hand out the same pod addresses on one machine. Here a
worker name other than gwN gets a network of its own, from a hash of the name.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator

import pytest
from testkit.kubelet.handle import KubeletProcess
from testkit.operator import OperatorProcess

from tests.conftest import Cluster

# Re-exported fixtures: pytest registers a fixture wherever its function is bound in a conftest's namespace.
from tests.e2e.conftest import (  # noqa: F401
    StartOperator,
    classifiers,
    crds,
    regressors,
    start_operator,
    world,
)
from tests.integration.traffic.conftest import mesh_crds  # noqa: F401

__all__ = ["StartOperator", "faults_pod_network"]

# 10.201.. and up are e2e's gwN networks; other names land in 10.203-10.252.
_OTHER_NETWORKS = range(203, 253)


def faults_pod_network(worker: str | None = None) -> int:
    """The local kubelet's pod network (10.<n>.0.0/16) for this session: e2e's for gwN and for no worker name,
    a hash of the name otherwise, so that sessions with different names never share pod addresses."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "") if worker is None else worker
    if not worker:
        return 200
    if worker.startswith("gw") and worker[2:].isdigit():
        return 201 + int(worker[2:])
    return _OTHER_NETWORKS[zlib.crc32(worker.encode()) % len(_OTHER_NETWORKS)]


@pytest.fixture(scope="session")
def kubelet(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeletProcess]:
    """The local kubelet of this worker's cluster (as e2e's), on this session's own pod network."""
    process = KubeletProcess(
        kubeconfig=cluster.kubeconfig, work_dir=tmp_path_factory.mktemp("kubelet"), pod_network=faults_pod_network()
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def operator(start_operator: StartOperator, request: pytest.FixtureRequest) -> OperatorProcess:  # noqa: F811
    """The operator with e2e's settings (`world` starts it), plus those of the test's
    `@pytest.mark.operator_env(NAME=value, ...)`: a fault test may want passes more often than e2e's."""
    marker = request.node.get_closest_marker("operator_env")
    return start_operator(**(marker.kwargs if marker else {}))
