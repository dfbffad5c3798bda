"""End-to-end fixtures: the real API server with the CRDs (tests/conftest.py `cluster`), a namespace per test,
the local kubelet (testkit/kubelet) running the pods the operator's Deployments ask for as real processes
(model servers, our router), a real Prometheus finding them through the API server, and the operator process.

A test describes its versions once, `stack = world.launch({"1": models.stable, "2": models.failing(0.2)})`: each
version is a model artifact, and `stack.model_spec(version)` is the spec.model the ModelDeployment gets for it
(a file:// URI, format, custom class, env), so what serves is exactly what the operator's pod template says.
Everything is torn down after the test (the ModelDeployment is deleted and the test waits until its pods'
processes are gone), and when the test fails the logs of every process are printed.

`launch_processes` is the older harness that starts model servers and the router as local processes directly
(no operator, no pods): the harness tests and the benchmarks use it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from testkit.crds import install_crds
from testkit.kubelet.handle import KubeletProcess
from testkit.models import Classifiers, ModelArtifact, Regressors, train_classifiers, train_regressors
from testkit.modelservers import ModelServer, Router, router_configmap_name, start_all
from testkit.operator import OperatorProcess, call_failed, stop_and_report
from testkit.ports import free_port
from testkit.processes import ManagedProcess
from testkit.prometheus import SCRAPE_INTERVAL_S, PodAddresses, PrometheusServer, ScrapeTarget

from modelrollout.analysis.queries import QueryContext, builtin_query, rate_window
from modelrollout.api.analysis import Builtin
from tests.conftest import Cluster
from tests.e2e.dashboards import operator_targets
from tests.e2e.rollouts import Rollout, World

POD_ADDRESSES = 12  # a test runs at most two model revisions and the router (more while pods are replaced)
MODEL = "churn"  # spec.model.name, and the ModelDeployment's name (the router's `route`)


@pytest.fixture(scope="session")
def classifiers(tmp_path_factory: pytest.TempPathFactory) -> Classifiers:
    return train_classifiers(tmp_path_factory.mktemp("classifiers"))


@pytest.fixture(scope="session")
def regressors(tmp_path_factory: pytest.TempPathFactory) -> Regressors:
    return train_regressors(tmp_path_factory.mktemp("regressors"))


@pytest.fixture
async def crds(kube_api: client.ApiClient) -> list[str]:
    """The project's CRDs, installed and served (a no-op apply when they already are)."""
    return await install_crds(kube_api)


class _Queries:
    """The operator's builtin queries, evaluated by a stack's Prometheus for one version of its model."""

    namespace: str
    name: str
    model: str
    prometheus: PrometheusServer

    def builtin(self, builtin: Builtin, version: str, *, window_s: float = 10) -> float | None:
        window = rate_window(requested_seconds=window_s, scrape_interval_seconds=self.prometheus.scrape_interval_s)
        context = QueryContext(
            namespace=self.namespace,
            name=self.name,
            model=self.model,
            version=version,
            revision=f"rev-{version}",
            window_seconds=window,
        )
        return self.prometheus.query(builtin_query(builtin, context))


@dataclass
class ProcessStack(_Queries):
    """Model servers (by version) and our router started here as local processes, and Prometheus scraping them:
    the harness tests' data path, with no operator and no pods."""

    namespace: str
    name: str
    model: str
    work_dir: Path
    servers: dict[str, ModelServer]
    prometheus: PrometheusServer
    router: Router | None = None

    @property
    def processes(self) -> list[ManagedProcess]:
        found: list[ManagedProcess] = [*self.servers.values(), self.prometheus.process]
        return found + ([self.router] if self.router else [])

    def describe(self) -> str:
        return "\n".join(process.describe() for process in self.processes)


LaunchProcesses = Callable[..., ProcessStack]


@pytest.fixture
def launch_processes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LaunchProcesses]:
    """`launch_processes(servers, *, namespace, name=MODEL, model=MODEL, router=None)`: start model servers
    (version -> artifact) and Prometheus, and with `router=(kubeconfig)` a router handle reading ConfigMap
    `<name>-router`, registered with Prometheus but not started: it becomes ready only once a routing document
    exists, so the test starts it (`stack.router.start()`) after a ConfigMapRouter wrote one."""
    stacks: list[ProcessStack] = []

    def launch(
        servers: Mapping[str, ModelArtifact],
        *,
        namespace: str,
        name: str = MODEL,
        model: str = MODEL,
        router: Path | None = None,
    ) -> ProcessStack:
        work = tmp_path / f"stack-{len(stacks)}"
        work.mkdir()
        handles = {
            version: ModelServer(artifact, model=model, version=version, work_dir=work)
            for version, artifact in servers.items()
        }
        router_handle = (
            Router(
                namespace=namespace,
                configmap=router_configmap_name(name),
                kubeconfig=router,
                upstreams={version: server.url for version, server in handles.items()},
                work_dir=work,
            )
            if router is not None
            else None
        )
        targets = [server.target(namespace) for server in handles.values()]
        if router_handle is not None:
            targets.append(router_handle.target(namespace))
        prometheus = PrometheusServer(work_dir=work / "prometheus", targets=targets)
        stack = ProcessStack(namespace, name, model, work, handles, prometheus, router_handle)
        stacks.append(stack)
        start_all(handles.values())
        prometheus.start()
        return stack

    yield launch
    failed = call_failed(request)
    for stack in stacks:
        if failed:
            print(stack.describe())
        for process in stack.processes:
            process.stop()
        stack.prometheus.close()


# --- the operator's data path, run by the local kubelet -------------------------------------------------------


@pytest.fixture(scope="session")
def kubelet(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeletProcess]:
    """The local kubelet of this worker's cluster: pods that select it (NODE_SELECTOR) run as processes here."""
    process = KubeletProcess(kubeconfig=cluster.kubeconfig, work_dir=tmp_path_factory.mktemp("kubelet"))
    process.start()
    yield process
    process.stop()


@dataclass
class Stack(_Queries):
    """One test's model versions, the Prometheus that scrapes the pods serving them, and the kubelet running
    those pods. The ModelDeployment's name is `name`; its model is `model`."""

    namespace: str
    name: str
    model: str
    artifacts: dict[str, ModelArtifact]
    prometheus: PrometheusServer
    kubelet: KubeletProcess
    extra: list[ManagedProcess] = field(default_factory=list)

    def model_spec(self, version: str) -> dict[str, Any]:
        """spec.model for `version`: the artifact's file, format, custom class and env, as a user would write it."""
        artifact = self.artifacts[version]
        spec: dict[str, Any] = {
            "name": self.model,
            "version": version,
            "uri": artifact.path.as_uri(),
            "format": artifact.model_format,
        }
        if artifact.model_class is not None:
            spec["className"] = artifact.model_class
        # The artifact's PYTHONPATH is for local processes; in a pod the image has the test classes (the kubelet
        # puts this checkout on every pod's path), and a host path under /tmp would be the pod's own /tmp there.
        env = {key: value for key, value in artifact.env.items() if key != "PYTHONPATH"}
        if env:
            spec["env"] = [{"name": key, "value": value} for key, value in env.items()]
        return spec

    def endpoints(self, service: str) -> list[str]:
        """Base URLs of the ready endpoints of Service `service`, as the kubelet's Service table has them."""
        path = self.kubelet.config.services_file
        found = json.loads(path.read_text()).get("services", {}).get(f"{self.namespace}/{service}")
        if not found:
            return []
        ports = list(found["ports"].values())
        port = ports[0] if ports else None
        return [f"http://{e['ip']}:{e['ports'][port]}" for e in found["endpoints"] if port in e["ports"]]

    def service_url(self, service: str) -> str | None:
        urls = self.endpoints(service)
        return urls[0] if urls else None

    @property
    def router_url(self) -> str | None:
        """A router pod behind the main Service (with trafficRouting provider `router`), once one is ready."""
        return self.service_url(self.name)

    def infer_path(self) -> str:
        return f"/v2/models/{self.model}/infer"

    def describe(self) -> str:
        parts = [self.prometheus.process.describe(), *(p.describe() for p in self.extra)]
        if self.prometheus.alive:
            parts.append("--- Prometheus targets ---\n" + "\n".join(self.prometheus.target_health()))
        parts.append(self.kubelet.describe_namespace(self.namespace))
        parts.append(self.kubelet.describe())
        return "\n".join(parts)


StartOperator = Callable[..., OperatorProcess]


@pytest.fixture
async def start_operator(
    cluster: Cluster, crds: list[str], namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[StartOperator]:
    """`start_operator(**env)`: the operator process watching the test's namespace, told that Prometheus scrapes
    every SCRAPE_INTERVAL_S (so its rate windows are seconds, not minutes); `env` adds MODELROLLOUT_* settings,
    e.g. MODELROLLOUT_PROMETHEUS_URL=stack.prometheus.url. Stopped (and its log printed on failure) afterwards."""
    started: list[OperatorProcess] = []

    def start(**env: str) -> OperatorProcess:
        settings = {
            "MODELROLLOUT_PROMETHEUS_SCRAPE_INTERVAL_S": f"{SCRAPE_INTERVAL_S:g}",
            # Its own /metrics, which a stack's Prometheus scrapes (the dashboards' operator series).
            "MODELROLLOUT_METRICS_PORT": str(free_port()),
            **env,
        }
        process = OperatorProcess(
            kubeconfig=cluster.kubeconfig, namespace=namespace, log_dir=tmp_path, extra_env=settings
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
def operator(start_operator: StartOperator) -> OperatorProcess:
    """The operator with the default e2e settings (see start_operator)."""
    return start_operator()


@pytest.fixture
async def world(  # noqa: PLR0917 - pytest passes fixtures by name
    cluster: Cluster,
    namespace: str,
    classifiers: Classifiers,
    kubelet: KubeletProcess,
    kube_api: client.ApiClient,
    operator: OperatorProcess,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[World]:
    made: list[Rollout] = []
    stacks: list[Stack] = []

    def launch(versions: dict[str, ModelArtifact], extra_targets: Sequence[ScrapeTarget] = ()) -> Stack:
        work = tmp_path / f"stack-{len(stacks)}"
        pods = PodAddresses(kubelet.config.pod_addresses(POD_ADDRESSES), namespace)
        targets = [*extra_targets, *operator_targets(operator, namespace)]
        prometheus = PrometheusServer(work_dir=work / "prometheus", targets=targets, pods=pods)
        stacks.append(Stack(namespace, MODEL, MODEL, dict(versions), prometheus, kubelet))
        prometheus.start()
        return stacks[-1]

    def rollout_of(stack: Stack) -> Rollout:
        made.append(Rollout(kube_api, stack))
        return made[-1]

    try:
        yield World(classifiers=classifiers, namespace=namespace, launch=launch, rollout_of=rollout_of)
    finally:
        for rollout in made:
            await rollout.stop_recording()
        if call_failed(request):
            for stack in stacks:
                print(stack.describe())
        for rollout in made:
            await rollout.delete_and_wait()  # its pods' processes stop before the next test starts
        for stack in stacks:
            stack.prometheus.close()
