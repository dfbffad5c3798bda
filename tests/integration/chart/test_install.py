"""The README's install commands, run as written against a real API server (kwok nodes run the operator pods):
`helm install` creates the CRD, the operator Deployment (available), its RBAC and Services; the operator then runs
as a local process with the chart's ServiceAccount token and the chart's settings (so the chart's RBAC and values
are what is tested) and completes a canary rollout in a namespace enforcing Pod Security `restricted`; `helm
upgrade` with changed values reaches the operator; `helm uninstall` leaves the CRD and the ModelDeployments.
`kubectl apply --server-side -f deploy/` installs the same operator."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from testkit.chart import helm, tools
from testkit.operator import OperatorProcess
from testkit.ports import free_port
from testkit.waiting import eventually

from modelrollout.api import API_VERSION, GROUP, KIND, PLURAL, VERSION
from tests.conftest import REPO_ROOT, Cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYSTEM = "modelrollout-system"
# The README's release name; it contains the chart's name, so its objects are named `modelrollout`.
RELEASE = "modelrollout"
CRD = f"{PLURAL}.{GROUP}"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
STEPS = [{"setWeight": 50}, {"pause": {"duration": "2s"}}]


def readme_commands(kind: str) -> list[str]:
    """The shell lines of the README's block marked `<!-- install: KIND ... -->`."""
    text = (REPO_ROOT / "README.md").read_text()
    found = re.search(rf"<!-- install: {kind}\b[^>]*-->\n```sh\n(.*?)```", text, re.DOTALL)
    assert found, f"README.md has no install block for {kind}"
    return [line for line in found.group(1).splitlines() if line.strip() and not line.startswith("#")]


def run_as_written(cluster: Cluster, line: str) -> None:
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{Path(tools()['HELM']).parent}{os.pathsep}{os.environ['PATH']}",
        "HELM_CACHE_HOME": "/tmp/modelrollout-helm/cache",
        "HELM_CONFIG_HOME": "/tmp/modelrollout-helm/config",
        "HELM_DATA_HOME": "/tmp/modelrollout-helm/data",
    }
    done = subprocess.run(
        ["bash", "-c", line], check=False, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"`{line}` failed ({done.returncode}):\n{done.stdout}{done.stderr}"


async def _unless_gone(call: Callable[[], Awaitable[object]]) -> None:
    try:
        await call()
    except ApiException as exc:
        if exc.status != 404:
            raise


async def _deleted(
    delete: Callable[[], Awaitable[object]], read: Callable[[], Awaitable[object]], *, within: float, what: str
) -> None:
    """Delete an object (if it exists) and wait until reading it answers 404."""
    await _unless_gone(delete)

    async def gone() -> bool | None:
        try:
            await read()
        except ApiException as exc:
            return True if exc.status == 404 else None
        return None

    await eventually(gone, within=within, what=f"{what} deleted")


async def _delete_crd(kube_api: client.ApiClient) -> None:
    """Other tests of this worker's cluster installed the CRD with kubectl-like applies; Helm refuses to adopt an
    object it did not create, and the test is that Helm creates it."""
    ext = client.ApiextensionsV1Api(kube_api)
    await _deleted(
        lambda: ext.delete_custom_resource_definition(CRD),
        lambda: ext.read_custom_resource_definition(CRD),
        within=60,
        what="the CRD",
    )


async def _delete_namespace(kube_api: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(kube_api)
    await _deleted(
        lambda: core.delete_namespace(name), lambda: core.read_namespace(name), within=90, what=f"namespace {name}"
    )


@pytest.fixture
async def clean(cluster: Cluster, kube_api: client.ApiClient) -> AsyncIterator[None]:
    """No release, CRD or operator namespace before and after (both tests install the same cluster-wide names)."""
    helm("uninstall", RELEASE, "-n", SYSTEM, "--wait", kubeconfig=cluster.kubeconfig, check=False)
    await _delete_namespace(kube_api, SYSTEM)
    await _delete_crd(kube_api)
    yield
    helm("uninstall", RELEASE, "-n", SYSTEM, "--wait", kubeconfig=cluster.kubeconfig, check=False)
    rbac = client.RbacAuthorizationV1Api(kube_api)
    for name in (RELEASE, f"{RELEASE}-cluster"):  # what `kubectl apply -f deploy/` created cluster-wide
        for delete in (rbac.delete_cluster_role, rbac.delete_cluster_role_binding):
            await _unless_gone(lambda: delete(name))  # noqa: B023 - awaited within the iteration
    await _delete_namespace(kube_api, SYSTEM)


@pytest.fixture
async def restricted(kube_api: client.ApiClient) -> AsyncIterator[str]:
    """The users' namespace, enforcing Pod Security `restricted`."""
    name = f"t-psa-{os.urandom(4).hex()}"
    core = client.CoreV1Api(kube_api)
    await core.create_namespace({"metadata": {"name": name, "labels": RESTRICTED}})
    try:
        yield name
    finally:
        await core.delete_namespace(name, propagation_policy="Background")


async def _operator_deployment(kube_api: client.ApiClient) -> dict[str, Any]:
    apps = client.AppsV1Api(kube_api)
    found = await apps.read_namespaced_deployment(RELEASE, SYSTEM)
    return kube_api.sanitize_for_serialization(found)  # type: ignore[no-any-return]


async def _available(kube_api: client.ApiClient) -> dict[str, Any] | None:
    found = await _operator_deployment(kube_api)
    wanted = found["spec"]["replicas"]
    return found if (found.get("status") or {}).get("availableReplicas") == wanted else None


def chart_env(deployment: dict[str, Any]) -> dict[str, str]:
    """The operator container's environment as the chart wrote it, as a pod would see it (field refs resolved)."""
    env: dict[str, str] = {}
    fields = {"metadata.name": "local-operator", "metadata.namespace": SYSTEM}
    for var in deployment["spec"]["template"]["spec"]["containers"][0].get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "fieldRef" in (var.get("valueFrom") or {}):
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
    # As in a pod: no lease namespace set, so POD_NAMESPACE puts the Lease where the chart's leader Role is
    # (testkit's OperatorProcess otherwise names the watched namespace).
    env["MODELROLLOUT_LEASE_NAMESPACE"] = ""
    # Ports of this machine, not of a pod: two test workers may run at once.
    env["MODELROLLOUT_LIVENESS_PORT"] = str(free_port())
    env["MODELROLLOUT_METRICS_PORT"] = "0"
    return env


@contextmanager
def operator_as_chart(cluster: Cluster, deployment: dict[str, Any], namespace: str, tmp: Path) -> Iterator[None]:
    """`modelrollout run` with the chart's ServiceAccount token and the chart's settings."""
    tmp.mkdir(parents=True, exist_ok=True)
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    kubeconfig = cluster.service_account_kubeconfig(SYSTEM, account, tmp / f"{account}.kubeconfig")
    process = OperatorProcess(kubeconfig=kubeconfig, namespace=namespace, log_dir=tmp, extra_env=chart_env(deployment))
    process.start()
    try:
        yield
    except BaseException:
        print(process.log()[-6000:])
        raise
    finally:
        process.stop()


def _manifest(version: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "pricing"},
        "spec": {
            "model": {
                "name": "pricing",
                "version": version,
                "uri": f"s3://models/pricing/{version}/model.joblib",
                "format": "sklearn",
            },
            "online": {"replicas": 2},
            "rollout": {"strategy": "canary", "canary": {"steps": STEPS}},
        },
    }


async def _rolled_out(kube_api: client.ApiClient, namespace: str, version: str) -> dict[str, Any]:
    """Apply `version` and wait until it serves alone; every Deployment of the namespace then has all its pods
    (the ReplicaSet controller could create them under Pod Security `restricted`)."""
    custom = client.CustomObjectsApi(kube_api)
    body = _manifest(version)
    try:
        current = await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "pricing")
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "pricing", body)
    except ApiException as exc:
        if exc.status != 404:
            raise
        await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    async def serving() -> dict[str, Any] | None:
        obj: dict[str, Any] = await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "pricing")
        status = obj.get("status") or {}
        alone = status.get("phase") == "Healthy" and (status.get("stable") or {}).get("version") == version
        return status if alone and "canary" not in status else None

    status = await eventually(serving, within=90, what=f"version {version} serving alone")
    deployments = (await client.AppsV1Api(kube_api).list_namespaced_deployment(namespace)).items
    assert {d.metadata.name for d in deployments} >= {f"pricing-{status['stable']['revision']}", "pricing-router"}
    for deployment in deployments:
        assert deployment.status.available_replicas == deployment.spec.replicas, deployment.status
    events = (await client.CoreV1Api(kube_api).list_namespaced_event(namespace)).items
    refused = [e.message for e in events if e.reason == "FailedCreate"]
    assert not refused, f"the ReplicaSet controller could not create pods: {refused}"
    return status


async def test_helm_install_upgrade_and_uninstall_as_the_readme_says(
    cluster: Cluster, kube_api: client.ApiClient, clean: None, restricted: str, tmp_path: Path
) -> None:
    for line in readme_commands("helm"):
        run_as_written(cluster, line)

    ext = client.ApiextensionsV1Api(kube_api)
    crd = await ext.read_custom_resource_definition(CRD)
    assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
    deployment = await eventually(lambda: _available(kube_api), within=60, what="the operator Deployment available")
    assert deployment["spec"]["replicas"] == 2
    pods = (await client.CoreV1Api(kube_api).list_namespaced_pod(SYSTEM)).items
    assert len(pods) == 2
    assert all(p.spec.node_name and p.spec.node_name.startswith("node-") for p in pods), "on the kwok nodes"
    services = (await client.CoreV1Api(kube_api).list_namespaced_service(SYSTEM)).items
    assert [s.metadata.name for s in services] == [f"{RELEASE}-metrics"]
    roles = await client.RbacAuthorizationV1Api(kube_api).list_cluster_role(
        label_selector="app.kubernetes.io/part-of=modelrollout"
    )
    assert {r.metadata.name for r in roles.items} == {RELEASE, f"{RELEASE}-cluster"}

    with operator_as_chart(cluster, deployment, restricted, tmp_path / "1"):
        await _rolled_out(kube_api, restricted, "1")
        first = await _rolled_out(kube_api, restricted, "2")
        lease = await client.CoordinationV1Api(kube_api).read_namespaced_lease("modelrollout-operator", SYSTEM)
        assert lease.spec.holder_identity, "the operator leads through the Lease the chart's Role lets it write"
    assert [h["version"] for h in first["history"]] == ["1", "2"]

    run_as_written(
        cluster,
        f"helm upgrade {RELEASE} charts/modelrollout --namespace {SYSTEM} --reuse-values --wait --timeout 3m "
        "--set replicaCount=3 --set config.planning.historyLimit=1",
    )
    deployment = await eventually(lambda: _available(kube_api), within=60, what="the upgraded Deployment available")
    assert deployment["spec"]["replicas"] == 3
    assert chart_env(deployment)["MODELROLLOUT_HISTORY_LIMIT"] == "1"
    with operator_as_chart(cluster, deployment, restricted, tmp_path / "2"):
        second = await _rolled_out(kube_api, restricted, "3")
    assert [h["version"] for h in second["history"]] == ["3"], "the upgraded historyLimit (1) reached the operator"

    run_as_written(cluster, f"helm uninstall {RELEASE} --namespace {SYSTEM} --wait")
    assert (await ext.read_custom_resource_definition(CRD)).metadata.name == CRD, "the CRD is kept"
    kept = await client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, restricted, PLURAL, "pricing"
    )
    assert kept["status"]["stable"]["version"] == "3", "the ModelDeployment is kept, and so what it serves"
    with pytest.raises(ApiException) as gone:
        await client.AppsV1Api(kube_api).read_namespaced_deployment(RELEASE, SYSTEM)
    assert gone.value.status == 404


async def test_kubectl_apply_of_deploy_installs_a_working_operator(
    cluster: Cluster, kube_api: client.ApiClient, clean: None, restricted: str, tmp_path: Path
) -> None:
    for line in readme_commands("kubectl"):
        run_as_written(cluster, line)
    namespace = await client.CoreV1Api(kube_api).read_namespace(SYSTEM)
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    deployment = await eventually(lambda: _available(kube_api), within=60, what="the operator Deployment available")
    with operator_as_chart(cluster, deployment, restricted, tmp_path):
        await _rolled_out(kube_api, restricted, "1")
        status = await _rolled_out(kube_api, restricted, "2")
    assert [h["version"] for h in status["history"]] == ["1", "2"]
