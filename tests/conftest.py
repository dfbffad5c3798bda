"""Session-wide fixtures: the real local Kubernetes control plane and API clients for it.

The cluster is the one `hack/cluster-up.sh` starts (kube-apiserver, etcd, controller-manager, scheduler and
kwok fake nodes, built from source), or, when KUBECONFIG is set, the cluster it names. Nothing here is faked:
a test that asks for `kube_api` fails when no API server answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client, config

REPO_ROOT = Path(__file__).resolve().parent.parent
HACK = REPO_ROOT / "hack"
# One cluster per pytest-xdist worker (`make test-integration` runs two): workers never share an API server.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
TEST_CLUSTER_NAME = f"mr-test-{_WORKER}" if _WORKER else "mr-test"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    started_here: bool

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            check=check,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def service_account_kubeconfig(self, namespace: str, account: str, path: Path) -> Path:
        """A kubeconfig at `path` that acts as ServiceAccount `account` (a 30-minute token), for tests that run
        a process with nothing but that account's permissions."""
        admin = json.loads(self.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
        token = self.kubectl("create", "token", account, "-n", namespace, "--duration", "30m").stdout.strip()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "c", "user": account, "namespace": namespace}}],
            "current-context": "sa",
        }
        path.write_text(yaml.safe_dump(config))
        return path


def _hack_env() -> dict[str, str]:
    return {**os.environ, "CLUSTER_NAME": TEST_CLUSTER_NAME}


def _check_reachable(cluster: Cluster) -> None:
    probe = cluster.kubectl("get", "--raw", "/readyz", check=False)
    if probe.returncode != 0:
        raise RuntimeError(
            f"no Kubernetes API server answers for kubeconfig {cluster.kubeconfig}: {probe.stderr.strip()}\n"
            "Unset KUBECONFIG to let the tests start the local control plane (hack/cluster-up.sh)."
        )


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The API server under test; started here unless KUBECONFIG names one (which is then reused)."""
    named = os.environ.get("KUBECONFIG")
    if named:
        found = Cluster(kubeconfig=Path(named.split(os.pathsep)[0]), started_here=False)
        _check_reachable(found)
        yield found
        return
    up = subprocess.run([str(HACK / "cluster-up.sh")], env=_hack_env(), check=True, capture_output=True, text=True)
    started = Cluster(kubeconfig=Path(up.stdout.strip().splitlines()[-1]), started_here=True)
    _check_reachable(started)
    yield started
    if not os.environ.get("MODELROLLOUT_KEEP_CLUSTER"):
        subprocess.run([str(HACK / "cluster-down.sh")], env=_hack_env(), check=False, capture_output=True)


@pytest.fixture(scope="session")
def keda_crds(cluster: Cluster) -> Path:
    """KEDA's CRDs (keda.sh/v1alpha1 ScaledObject, ScaledJob, TriggerAuthentication, ClusterTriggerAuthentication;
    eventing.keda.sh CloudEventSource, ClusterCloudEventSource) in the cluster, established and served, so the API
    server validates them against KEDA's own schemas. Installed by hack/keda-crds.sh (KEDA_VERSION in
    hack/versions.env, fetched once from its Go module, `make keda-crds`), as the traffic tests' `mesh_crds` installs
    the Gateway API and Istio CRDs; returns the directory holding the YAML files."""
    done = subprocess.run(
        [str(HACK / "keda-crds.sh"), "install"],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"hack/keda-crds.sh install failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    for plural in ("scaledobjects.keda.sh", "scaledjobs.keda.sh", "triggerauthentications.keda.sh"):
        # A just-established CRD may still answer 429 while its storage initialises.
        for _ in range(60):
            if cluster.kubectl("get", plural, "-A", check=False).returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{plural} is established but not served after 30 s")
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture
async def kube_api(cluster: Cluster) -> AsyncIterator[client.ApiClient]:
    """An async API client for the cluster (function-scoped: each test owns its event loop)."""
    api = await config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def namespace(kube_api: client.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace per test, deleted afterwards so tests never see each other's objects."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        await core.delete_namespace(name, propagation_policy="Background")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Keep each phase's report on the item (`rep_setup`, `rep_call`, ...), so fixtures can tell in teardown
    whether the test failed and print the logs of the processes it ran."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
