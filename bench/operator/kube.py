"""The bench's own API I/O: creating and patching ModelDeployments, reading the API server's /metrics, listing
children, and the watches the measurements read (each a LIST, then a WATCH resumed from the last resourceVersion
seen; the events are parsed here, not by kubernetes_asyncio's models, to keep the bench's own CPU small)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from bench.operator.mix import GROUP, PLURAL, VERSION, Item
from bench.operator.ticks import RouteSeen, StatusSeen
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from testkit.crds import apply_crd

log = logging.getLogger("bench.operator")
MERGE: dict[str, Any] = {"_content_type": "application/merge-patch+json", "field_manager": "bench-operator"}
WATCH_TIMEOUT_S = 1800  # the API server's longest; a watch resumes from its last resourceVersion when it ends
LABEL_NAME = f"{GROUP}/name"
LABEL_MODE = f"{GROUP}/mode"
LABEL_REVISION = f"{GROUP}/revision"
ROUTER_DOCUMENT = "router.json"

Handler = Callable[[str, dict[str, Any], float], None]  # (event type or SYNC, object, arrival wall time)


async def connect(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = 64
    return client.ApiClient(configuration)


def read_crds(directory: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(directory.glob("*.yaml"))]


async def install_crds(api: client.ApiClient, crds: list[dict[str, Any]]) -> list[str]:
    """The CRDs of the version measured (its own crds/), server-side applied, established and served."""
    return [await apply_crd(api, crd) for crd in crds]


async def create_namespaces(api: client.ApiClient, names: Iterable[str]) -> None:
    core = client.CoreV1Api(api)
    for name in names:
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))


async def create_all(api: client.ApiClient, manifests: list[dict[str, Any]], *, concurrency: int = 32) -> float:
    """Create every ModelDeployment, `concurrency` at a time; the seconds it took."""
    custom = client.CustomObjectsApi(api)
    gate = asyncio.Semaphore(concurrency)

    async def create(body: dict[str, Any]) -> None:
        async with gate:
            await custom.create_namespaced_custom_object(GROUP, VERSION, body["metadata"]["namespace"], PLURAL, body)

    began = time.monotonic()
    await asyncio.gather(*(create(m) for m in manifests))
    return time.monotonic() - began


async def patch(api: client.ApiClient, item: Item, body: dict[str, Any]) -> tuple[float, float]:
    """Merge-patch one ModelDeployment; (when it was sent, when it returned), wall clock."""
    custom = client.CustomObjectsApi(api)
    sent = time.time()
    await custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        item.namespace,
        PLURAL,
        item.name,
        body,
        **MERGE,
    )
    return sent, time.time()


async def scrape_metrics(api: client.ApiClient) -> str:
    """The API server's /metrics text."""
    response = await api.call_api("/metrics", "GET", _preload_content=False, auth_settings=["BearerToken"])
    try:
        return str(await response.text())
    finally:
        response.release()


async def list_raw(call: Callable[..., Awaitable[Any]], **kwargs: Any) -> dict[str, Any]:
    response = await call(**kwargs, _preload_content=False)
    try:
        body: dict[str, Any] = json.loads(await response.read())
    finally:
        response.release()
    return body


async def children(api: client.ApiClient) -> dict[str, list[dict[str, Any]]]:
    """Every labelled child of a ModelDeployment, by kind (metadata only, as the verification needs)."""
    selector = {"label_selector": LABEL_NAME}
    calls: dict[str, Callable[..., Awaitable[Any]]] = {
        "Deployment": client.AppsV1Api(api).list_deployment_for_all_namespaces,
        "Service": client.CoreV1Api(api).list_service_for_all_namespaces,
        "ConfigMap": client.CoreV1Api(api).list_config_map_for_all_namespaces,
        "HorizontalPodAutoscaler": client.AutoscalingV2Api(api).list_horizontal_pod_autoscaler_for_all_namespaces,
    }
    found = {}
    for kind, call in calls.items():
        body = await list_raw(call, **selector)
        found[kind] = [{"metadata": item["metadata"]} for item in body.get("items") or []]
    return found


class Watch:
    """A LIST and then a WATCH of one collection, each event handed to `handler` with its arrival time; runs as a
    task until `stop()`. `synced` is set once the LIST was handed over."""

    def __init__(self, call: Callable[..., Awaitable[Any]], handler: Handler, *, what: str, **kwargs: Any) -> None:
        self._call = call
        self._handler = handler
        self._kwargs = kwargs
        self.what = what
        self.synced = asyncio.Event()
        self.events = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, within: float = 120.0) -> Watch:
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.what}")
        synced = asyncio.create_task(self.synced.wait())
        done, _ = await asyncio.wait({self._task, synced}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        if synced not in done:
            synced.cancel()
            if self._task in done:
                self._task.result()  # its exception
            raise TimeoutError(f"the watch of {self.what} did not list within {within:g}s")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        version: str | None = None
        while True:
            try:
                if version is None:
                    body = await list_raw(self._call, **self._kwargs)
                    at = time.time()
                    version = body["metadata"]["resourceVersion"]
                    for item in body.get("items") or []:
                        self._handler("SYNC", item, at)
                    self.synced.set()
                version = await self._watch(version)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("watch of %s failed; resuming", self.what, exc_info=True)
                await asyncio.sleep(1)

    async def _watch(self, version: str) -> str | None:
        response = await self._call(
            **self._kwargs,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT_S,
            _preload_content=False,
        )
        try:
            while line := await response.content.readline():
                at = time.time()
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:  # our resourceVersion is too old: list again
                        return None
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = obj["metadata"]["resourceVersion"]
                if kind != "BOOKMARK":
                    self.events += 1
                    self._handler(kind, obj, at)
        finally:
            response.release()
        return version


def wall(timestamp: str | None) -> float | None:
    """An RFC 3339 time of a status (`2026-12-04T05:27:40.936262Z`) as epoch seconds."""
    if not timestamp:
        return None
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def converged(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    return status.get("phase") == "Healthy" and status.get("observedGeneration") == generation


class ModelDeployments:
    """Every ModelDeployment's convergence from a watch, and the status timelines of those followed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.converged: set[tuple[str, str]] = set()
        self.first_converged: dict[tuple[str, str], float] = {}  # wall clock of each one's first convergence
        self.changed = asyncio.Event()
        self.timelines: dict[tuple[str, str], list[StatusSeen]] = {}

    def watch(self, api: client.ApiClient) -> Watch:
        custom = client.CustomObjectsApi(api)

        async def call(**kwargs: Any) -> Any:
            return await custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)

        return Watch(call, self.handle, what="modeldeployments")

    def follow(self, item: Item) -> list[StatusSeen]:
        self.timelines[item.key] = []
        return self.timelines[item.key]

    def handle(self, kind: str, obj: dict[str, Any], at: float) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if kind != "DELETED" and converged(obj):
            self.converged.add(key)
            self.first_converged.setdefault(key, at)
        else:
            self.converged.discard(key)
        timeline = self.timelines.get(key)
        if timeline is not None and kind != "DELETED":
            status = obj.get("status") or {}
            timeline.append(
                StatusSeen(
                    at=at,
                    step=status.get("currentStep"),
                    step_started_at=wall(status.get("stepStartedAt")),
                    phase=status.get("phase"),
                )
            )
        self.changed.set()

    async def wait_changed(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), seconds)
        self.changed.clear()

    def is_converged(self, item: Item) -> bool:
        return item.key in self.converged


class Revisions:
    """When each (namespace, ModelDeployment, revision) was first seen as a Deployment (online mode)."""

    def __init__(self) -> None:
        self.first_seen: dict[tuple[str, str, str], float] = {}
        self._waiting: dict[tuple[str, str], tuple[set[str], asyncio.Future[float]]] = {}

    def watch(self, api: client.ApiClient) -> Watch:
        call = client.AppsV1Api(api).list_deployment_for_all_namespaces
        return Watch(call, self.handle, what="deployments", label_selector=f"{LABEL_MODE}=online")

    def known(self, item: Item) -> set[str]:
        return {rev for (ns, name, rev) in self.first_seen if (ns, name) == item.key}

    def expect(self, item: Item) -> asyncio.Future[float]:
        """A future of when a revision not known now first appears for `item`."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[item.key] = (self.known(item), future)
        return future

    def handle(self, kind: str, obj: dict[str, Any], at: float) -> None:
        labels = obj["metadata"].get("labels") or {}
        name, revision = labels.get(LABEL_NAME), labels.get(LABEL_REVISION)
        if kind == "DELETED" or name is None or revision is None:
            return
        key = (obj["metadata"]["namespace"], name, revision)
        if key in self.first_seen:
            return
        self.first_seen[key] = at
        waiting = self._waiting.get(key[:2])
        if waiting is not None and revision not in waiting[0] and not waiting[1].done():
            waiting[1].set_result(at)
            del self._waiting[key[:2]]


class Routes:
    """The canary weight of one router ConfigMap over time."""

    def __init__(self) -> None:
        self.seen: list[RouteSeen] = []

    def watch(self, api: client.ApiClient, item: Item) -> Watch:
        call = client.CoreV1Api(api).list_namespaced_config_map
        return Watch(
            call,
            self.handle,
            what=f"configmap {item.namespace}/{item.name}-router",
            namespace=item.namespace,
            field_selector=f"metadata.name={item.name}-router",
        )

    def handle(self, kind: str, obj: dict[str, Any], at: float) -> None:
        if kind == "DELETED":
            return
        self.seen.append(RouteSeen(at=at, canary_weight=canary_weight(obj)))


def canary_weight(configmap: dict[str, Any]) -> int | None:
    """The canary's weight in our router's routing document (contract: modelrollout_contract.router)."""
    try:
        document = json.loads((configmap.get("data") or {})[ROUTER_DOCUMENT])
        return int(document["weights"]["canary"])
    except (KeyError, ValueError, TypeError):
        return None
