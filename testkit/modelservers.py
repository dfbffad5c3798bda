"""Real model servers and our router as local processes on loopback, started directly (no pods): what the demo,
the benchmarks and the harness tests run. The e2e rollouts run the operator's own pods on the local kubelet
(testkit/kubelet) instead.

Ports are fixed when a handle is made, before anything starts, so Prometheus can be configured with every
target up front. A model server's `version` must equal the ModelDeployment's spec.model.version and its `model`
spec.model.name: those labels are what the operator's builtin queries select on.

The router (`python -m modelserver route`) reads its routing document from the ConfigMap `<name>-router` (key
`router.json`) that the operator writes, and sends each role to the local upstream registered for the role's
model version (`--upstream VERSION=URL`), since the Service URLs in the document do not resolve here.
`configmap_io` gives ConfigMapRouter (the operator's writer) its read and write against the real API server,
for tests that drive the router without the operator.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from modelrollout.traffic.router import ConfigMapData, ReadConfigMap, WriteConfigMap
from testkit.models import ModelArtifact
from testkit.ports import free_port
from testkit.processes import ManagedProcess
from testkit.prometheus import ScrapeTarget

MODELSERVER_JOB = "modelserver"
ROUTER_JOB = "modelrouter"
FIELD_MANAGER = "modelrollout-tests"
APPLY: dict[str, Any] = {"_content_type": "application/apply-patch+yaml", "field_manager": FIELD_MANAGER, "force": True}


class ModelServer(ManagedProcess):
    """`modelserver serve` for one artifact, as model `model` version `version`, on 127.0.0.1:`port`."""

    def __init__(
        self,
        artifact: ModelArtifact,
        *,
        model: str,
        version: str,
        work_dir: Path,
        port: int | None = None,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.artifact = artifact
        self.model = model
        self.version = version
        self.port = port or free_port()
        self.grpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = {
            **artifact.server_env(),
            "MODELSERVER_MODEL_NAME": model,
            "MODELSERVER_MODEL_VERSION": version,
            "MODELSERVER_HOST": "127.0.0.1",
            "MODELSERVER_PORT": str(self.port),
            "MODELSERVER_GRPC_PORT": str(self.grpc_port),
            "MODELSERVER_WORKERS": str(workers),
            "MODELSERVER_LOG_JSON": "false",
            **(env or {}),
        }
        super().__init__(
            [sys.executable, "-m", "modelserver", "serve"],
            name=f"modelserver {model} v{version} ({artifact.label}) :{self.port}",
            log_path=work_dir / f"modelserver-{model}-v{version}-{self.port}.log",
            ready_url=f"{self.url}/v2/health/ready",
            env=settings,
            cwd=work_dir,
        )

    @property
    def infer_url(self) -> str:
        """Open Inference Protocol v2 infer endpoint of the served model."""
        return f"{self.url}/v2/models/{self.model}/infer"

    def target(self, namespace: str, *, job: str = MODELSERVER_JOB) -> ScrapeTarget:
        return ScrapeTarget.local(self.port, namespace=namespace, job=job)


class Router(ManagedProcess):
    """`modelserver route` on 127.0.0.1:`port`, reading ConfigMap `namespace`/`configmap`; `upstreams` maps a
    model version to the local URL serving it. Ready (/readyz 200) once it has loaded a routing document, so
    start it with `wait=False` when the ConfigMap is written only later, and call `wait_ready()` then."""

    def __init__(
        self,
        *,
        namespace: str,
        configmap: str,
        kubeconfig: Path,
        upstreams: Mapping[str, str],
        work_dir: Path,
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.namespace = namespace
        self.configmap = configmap
        self.upstreams = dict(upstreams)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            sys.executable,
            "-m",
            "modelserver",
            "route",
            "--port",
            str(self.port),
            "--configmap",
            f"{namespace}/{configmap}",
            "--kubeconfig",
            str(kubeconfig),
        ]
        for version, url in self.upstreams.items():
            args += ["--upstream", f"{version}={url}"]
        super().__init__(
            [*args, *extra_args],
            name=f"router {namespace}/{configmap} :{self.port}",
            log_path=work_dir / f"router-{configmap}-{self.port}.log",
            ready_url=f"{self.url}/readyz",
            cwd=work_dir,
        )

    def target(self, namespace: str | None = None, *, job: str = ROUTER_JOB) -> ScrapeTarget:
        return ScrapeTarget.local(self.port, namespace=namespace or self.namespace, job=job)


def start_all(processes: Iterable[ManagedProcess]) -> None:
    """Start every process at once and then wait for each: model servers load in parallel (~2 s each)."""
    started = list(processes)
    try:
        for process in started:
            process.start(wait=False)
        for process in started:
            process.wait_ready()
    except BaseException:
        stop_all(started)
        raise


def stop_all(processes: Iterable[ManagedProcess]) -> None:
    for process in processes:
        process.stop()


def router_configmap_name(name: str) -> str:
    """The ConfigMap the operator writes for ModelDeployment `name` (and the router reads)."""
    return f"{name}-router"


def configmap_io(api: client.ApiClient, *, namespace: str, name: str) -> tuple[WriteConfigMap, ReadConfigMap]:
    """Write (server-side apply, field manager FIELD_MANAGER) and read the data of one ConfigMap: the callables
    ConfigMapRouter takes. Read gives None while the ConfigMap does not exist."""
    core = client.CoreV1Api(api)

    async def write(data: ConfigMapData) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}}
        await core.patch_namespaced_config_map(name, namespace, {**body, "data": dict(data)}, **APPLY)

    async def read() -> Mapping[str, str] | None:
        try:
            found = await core.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data: dict[str, str] = found.data or {}
        return data

    return write, read
