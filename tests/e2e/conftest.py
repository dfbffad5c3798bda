"""End-to-end fixtures: the real API server with the CRDs (tests/conftest.py `cluster`), a namespace per test,
real model servers and our router on loopback, a real Prometheus scraping them, and the operator process.

A test describes its data path once, `stack = launch_stack({"1": models.stable, "2": models.failing(0.2)})`:
every port is fixed before anything starts, so Prometheus is configured with all targets up front (each
labelled with the test's namespace, as Kubernetes discovery would). Everything started is stopped after the
test, and when the test fails the logs of every process are printed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from modelrollout.analysis.queries import QueryContext, builtin_query, rate_window
from modelrollout.api.analysis import Builtin
from tests.conftest import Cluster
from tests.e2e.rollouts import Rollout, World
from tests.support.crds import install_crds
from tests.support.models import Classifiers, ModelArtifact, Regressors, train_classifiers, train_regressors
from tests.support.modelservers import ModelServer, Router, router_configmap_name, start_all
from tests.support.operator import OperatorProcess, call_failed, stop_and_report
from tests.support.processes import ManagedProcess
from tests.support.prometheus import SCRAPE_INTERVAL_S, PrometheusServer, ScrapeTarget

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


@dataclass
class Stack:
    """The processes of one test's data path. `servers` by model version."""

    namespace: str
    name: str
    model: str
    work_dir: Path
    servers: dict[str, ModelServer]
    prometheus: PrometheusServer
    router: Router | None = None
    extra: list[ManagedProcess] = field(default_factory=list)

    @property
    def processes(self) -> list[ManagedProcess]:
        found: list[ManagedProcess] = [*self.servers.values(), self.prometheus.process]
        return found + ([self.router] if self.router else []) + self.extra

    def context(self, version: str, *, window_s: float = 10, revision: str = "") -> QueryContext:
        """What the operator's builtin queries are built from, for one version of this stack's model."""
        window = rate_window(requested_seconds=window_s, scrape_interval_seconds=self.prometheus.scrape_interval_s)
        return QueryContext(
            namespace=self.namespace,
            name=self.name,
            model=self.model,
            version=version,
            revision=revision or f"rev-{version}",
            window_seconds=window,
        )

    def builtin(self, builtin: Builtin, version: str, *, window_s: float = 10) -> float | None:
        """The value of the operator's builtin query for `version`, as Prometheus computes it now."""
        return self.prometheus.query(builtin_query(builtin, self.context(version, window_s=window_s)))

    def describe(self) -> str:
        return "\n".join(process.describe() for process in self.processes)


LaunchStack = Callable[..., Stack]


@pytest.fixture
def launch_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LaunchStack]:
    """`launch_stack(servers, *, namespace, name=MODEL, model=MODEL, router=None, extra_targets=())`: start model
    servers (version
    -> artifact) and Prometheus, and with `router=(kubeconfig)` a router handle reading ConfigMap
    `<name>-router`, registered with Prometheus but not started: it becomes ready only once a routing document
    exists, so the test starts it (`stack.router.start()`) after the operator or a ConfigMapRouter wrote one."""
    stacks: list[Stack] = []

    def launch(
        servers: Mapping[str, ModelArtifact],
        *,
        namespace: str,
        name: str = MODEL,
        model: str = MODEL,
        router: Path | None = None,
        extra_targets: Sequence[ScrapeTarget] = (),
    ) -> Stack:
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
        targets.extend(extra_targets)
        prometheus = PrometheusServer(work_dir=work / "prometheus", targets=targets)
        stack = Stack(
            namespace=namespace,
            name=name,
            model=model,
            work_dir=work,
            servers=handles,
            prometheus=prometheus,
            router=router_handle,
        )
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
        settings = {"MODELROLLOUT_PROMETHEUS_SCRAPE_INTERVAL_S": f"{SCRAPE_INTERVAL_S:g}", **env}
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
    launch_stack: LaunchStack,
    kube_api: client.ApiClient,
    operator: OperatorProcess,
) -> AsyncIterator[World]:
    made: list[Rollout] = []

    def launch(servers: dict[str, ModelArtifact], extra_targets: Sequence[ScrapeTarget] = ()) -> Stack:
        return launch_stack(servers, namespace=namespace, router=cluster.kubeconfig, extra_targets=extra_targets)

    def rollout_of(stack: Stack) -> Rollout:
        made.append(Rollout(kube_api, stack))
        return made[-1]

    yield World(classifiers=classifiers, namespace=namespace, launch=launch, rollout_of=rollout_of)
    for rollout in made:
        await rollout.stop_recording()
