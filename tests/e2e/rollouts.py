"""Driving a ModelDeployment through the real API in e2e tests: create it, change its version, send verbs,
wait on status, and record what status, the router's ConfigMap and the router itself say over time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from kubernetes_asyncio import client
from prometheus_client.parser import text_string_to_metric_families
from testkit.kubelet.handle import NODE_SELECTOR
from testkit.load import Load, LoadSummary
from testkit.models import Classifiers
from testkit.waiting import eventually

from modelrollout.api import GROUP, PLURAL, VERSION
from modelrollout.planning.names import router_configmap_name
from modelrollout.traffic.router import RouterConfig, parse_configmap_data

if TYPE_CHECKING:  # the conftest imports this module for its fixtures
    from tests.e2e.conftest import Stack

INTERVAL_S = 2  # analysis interval
MERGE_PATCH = "application/merge-patch+json"
RATE = 40  # client requests per second through the router


def analysis(stack: Stack, **settings: Any) -> dict[str, Any]:
    return {
        "interval": f"{INTERVAL_S}s",
        "minRequests": 5,
        "prometheus": {"address": stack.prometheus.url, "timeout": "2s"},
        "metrics": [
            {"name": "errors", "builtin": "errorRate", "max": 0.02},
            {"name": "p99", "builtin": "latencyP99", "max": 0.2},
        ],
        **settings,
    }


def routed(rollout: dict[str, Any], *, retry_on_stable: bool = True) -> dict[str, Any]:
    return {**rollout, "trafficRouting": {"provider": "router", "router": {"retryOnStable": retry_on_stable}}}


@dataclass(frozen=True)
class RouterView:
    """What the router's /readyz said it serves, and between which two instants: the snapshot it described was
    in force at some moment between `asked_at` and `answered_at`."""

    asked_at: float
    answered_at: float
    canary: int
    sticky: bool  # requests were assigned by their user's key (stickyBy), not split by chance


@dataclass
class Sample:
    at: float
    step: int | None
    phase: str | None
    status: tuple[int, int, int]  # stable, canary, mirror
    configmap: tuple[int, int, int] | None
    router: tuple[int, int, int] | None
    stable_version: str | None = None  # the version behind the router's stable role, per the ConfigMap
    router_view: RouterView | None = None


@dataclass
class Rollout:
    """One ModelDeployment driven through the real API, with a recorder of status, ConfigMap and router weights."""

    api: client.ApiClient
    stack: Stack
    samples: list[Sample] = field(default_factory=list)
    _recorder: asyncio.Task[None] | None = None

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    async def create(
        self,
        rollout: dict[str, Any],
        *,
        replicas: int = 1,
        notifications: dict[str, Any] | None = None,
        online: dict[str, Any] | None = None,
    ) -> None:
        """Version 1, its pods on the local kubelet's node (one replica per revision: every pod is a process);
        `online`: more of spec.online (a fallback)."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": self.stack.name},
            "spec": {
                "model": self.stack.model_spec("1"),
                "online": {"replicas": replicas, **(online or {})},
                "rollout": rollout,
                "pod": {"nodeSelector": NODE_SELECTOR},
                **({"notifications": notifications} if notifications is not None else {}),
            },
        }
        await self.custom.create_namespaced_custom_object(GROUP, VERSION, self.stack.namespace, PLURAL, body)
        await self.wait(lambda s: s.get("phase") == "Healthy", "version 1 Healthy")

    async def to_version(self, version: str) -> None:
        # A merge patch keeps keys it does not name: name the ones the new version goes without as null.
        model: dict[str, Any] = {"className": None, "env": None, **self.stack.model_spec(version)}
        await self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.stack.namespace,
            PLURAL,
            self.stack.name,
            {"spec": {"model": model}},
            _content_type=MERGE_PATCH,
        )

    async def get(self) -> dict[str, Any]:
        found: dict[str, Any] = await self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.stack.namespace, PLURAL, self.stack.name
        )
        return found

    async def status(self) -> dict[str, Any]:
        return (await self.get()).get("status") or {}

    async def wait(self, check: Callable[[dict[str, Any]], bool], what: str, within: float = 90) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            status = await self.status()
            return status if check(status) else None

        return await eventually(probe, within=within, what=what)

    async def delete_and_wait(self, within: float = 60) -> None:
        """Delete the ModelDeployment; return once its pods are gone (the kubelet removes a pod after its
        processes ended), so the next test never shares the machine with this one's servers."""
        with contextlib.suppress(client.ApiException):
            await self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.stack.namespace, PLURAL, self.stack.name, propagation_policy="Foreground"
            )
        core = client.CoreV1Api(self.api)

        async def no_pods() -> bool | None:
            return True if not (await core.list_namespaced_pod(self.stack.namespace)).items else None

        await eventually(no_pods, within=within, what=f"the pods of {self.stack.namespace} to stop")

    async def verb(self, name: str) -> None:
        body = {"metadata": {"annotations": {"modelrollout.dev/verb": f'{{"name": "{name}", "id": "{time.time()}"}}'}}}
        await self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.stack.namespace, PLURAL, self.stack.name, body, _content_type=MERGE_PATCH
        )

    async def event_names(self) -> list[str]:
        selector = f"involvedObject.kind=ModelDeployment,involvedObject.name={self.stack.name}"
        listed = await client.CoreV1Api(self.api).list_namespaced_event(self.stack.namespace, field_selector=selector)
        return sorted(e.metadata.name for e in listed.items)

    async def events(self) -> list[tuple[str, str]]:
        selector = f"involvedObject.kind=ModelDeployment,involvedObject.name={self.stack.name}"
        listed = await client.CoreV1Api(self.api).list_namespaced_event(self.stack.namespace, field_selector=selector)
        ordered = sorted(listed.items, key=lambda e: e.metadata.name)  # <object>.<hex ns>: time order
        return [(e.reason, e.message) for e in ordered]

    # --- routing as the three parties see it ------------------------------------------------------------------

    async def configmap(self) -> RouterConfig | None:
        try:
            found = await client.CoreV1Api(self.api).read_namespaced_config_map(
                router_configmap_name(self.stack.name), self.stack.namespace
            )
        except client.ApiException:
            return None
        return parse_configmap_data(found.data or {})

    async def router_weights(self, http: httpx.AsyncClient) -> tuple[int, int, int] | None:
        router = self.stack.router_url
        if router is None:
            return None
        try:
            text = (await http.get(f"{router}/metrics", timeout=1)).text
        except httpx.HTTPError:
            return None
        gauge = {
            sample.labels.get("role"): int(sample.value)
            for family in text_string_to_metric_families(text)
            if family.name == "modelrouter_weight"
            for sample in family.samples
        }
        if "stable" not in gauge:
            return None
        return (gauge["stable"], gauge.get("canary", 0), gauge.get("shadow", 0))

    async def router_view(self, http: httpx.AsyncClient) -> RouterView | None:
        router = self.stack.router_url
        if router is None:
            return None
        asked_at = time.time()
        try:
            answer = await http.get(f"{router}/readyz", timeout=1)
        except httpx.HTTPError:
            return None
        answered_at = time.time()
        if answer.status_code != 200:
            return None
        ready = answer.json()
        return RouterView(asked_at, answered_at, int(ready["weights"]["canary"]), ready.get("stickyBy") is not None)

    async def _record(self) -> None:
        async with httpx.AsyncClient() as http:
            while True:
                status = await self.status()
                w = status.get("weights") or {}
                config = await self.configmap()
                self.samples.append(
                    Sample(
                        at=time.time(),
                        step=status.get("currentStep"),
                        phase=status.get("phase"),
                        status=(w.get("stable", 100), w.get("canary", 0), w.get("mirror", 0)),
                        configmap=(config.weights.stable, config.weights.canary, config.mirror_percent)
                        if config
                        else None,
                        router=await self.router_weights(http),
                        stable_version=config.versions.stable if config else None,
                        router_view=await self.router_view(http),
                    )
                )
                await asyncio.sleep(0.1)

    def start_recording(self) -> None:
        self._recorder = asyncio.create_task(self._record())

    async def stop_recording(self) -> None:
        if self._recorder is not None:
            self._recorder.cancel()
            await asyncio.gather(self._recorder, return_exceptions=True)

    def configmap_canary_history(self) -> list[int]:
        """The canary weights the ConfigMap went through, without repeats."""
        seen: list[int] = []
        for s in self.samples:
            if s.configmap is not None and (not seen or seen[-1] != s.configmap[1]):
                seen.append(s.configmap[1])
        return seen

    def first_time(self, check: Callable[[Sample], bool]) -> float | None:
        return next((s.at for s in self.samples if check(s)), None)

    def router_split(self, canary: int) -> tuple[float, float] | None:
        """The longest run of samples in which the router itself said it assigned `canary`% of users by their
        key: from the first such answer's arrival to the last such question's sending. A request that reached the
        router in between was assigned by that split (the router takes its snapshot when a request arrives, and
        the split was in force at both ends)."""
        best: tuple[float, float] | None = None
        start: RouterView | None = None
        last: RouterView | None = None
        for view in (s.router_view for s in self.samples):
            if view is None:
                continue  # the router did not answer this sample: says nothing either way
            if view.sticky and view.canary == canary:
                start, last = start or view, view
                continue
            best = _longer(best, start, last)
            start = last = None
        return _longer(best, start, last)


def _longer(
    best: tuple[float, float] | None, start: RouterView | None, last: RouterView | None
) -> tuple[float, float] | None:
    if start is None or last is None or last.asked_at <= start.answered_at:
        return best
    run = (start.answered_at, last.asked_at)
    return run if best is None or run[1] - run[0] > best[1] - best[0] else best


@dataclass
class World:
    """A test's namespace on the real cluster, the operator watching it, and how to start a data path there."""

    classifiers: Classifiers
    namespace: str
    launch: Callable[..., Stack]  # (servers by version, extra scrape targets=())
    rollout_of: Callable[[Stack], Rollout]


async def serve_through_router(rollout: Rollout, dataset: Any, *, rate: float = RATE, **options: Any) -> Load:
    """Once a router pod behind the main Service is ready (it is, once it loaded the operator's document), steady
    load goes through it (`options`: more of Load's, e.g. headers)."""
    stack = rollout.stack
    router = await ready_endpoint(stack, stack.name)
    load = Load(f"{router}{stack.infer_path()}", dataset, rate=rate, **options).start()
    load.wait_for(int(rate))  # a second of traffic before anything changes
    return load


async def ready_endpoint(stack: Stack, service: str, *, unlike: str | None = None, within: float = 90) -> str:
    """The base URL of a ready pod behind Service `service`, once there is one (and, with `unlike`, once no pod
    behind it is also behind that other Service: `<name>-preview` selects stable's pods until the candidate's
    are ready)."""

    async def ready() -> str | None:
        found = stack.endpoints(service)
        if not found or (unlike is not None and set(found) & set(stack.endpoints(unlike))):
            return None
        return found[0]

    return await eventually(ready, within=within, what=f"a ready pod behind Service {service}")


def first_bad_scrape(stack: Stack, promql: str) -> float:
    """Timestamp of the first scraped sample of `promql` (a range selector) with a value above zero."""
    answer = httpx.get(f"{stack.prometheus.url}/api/v1/query", params={"query": promql}, timeout=5).json()
    samples = [(float(t), float(v)) for series in answer["data"]["result"] for t, v in series["values"]]
    bad = sorted(t for t, v in samples if v > 0)
    assert bad, f"no bad sample in {promql}: {answer}"
    return bad[0]


def scrapes_behind(stack: Stack, version: str, run: dict[str, Any], window_s: int) -> str:
    """What Prometheus had stored of `version`'s pods in the `window_s` before analysis `run` (status.analysis
    runs[i]): each scrape's time, `up` and duration. Says whether a run that found no data really had none."""
    at = datetime.fromisoformat(run["at"].replace("Z", "+00:00")).timestamp()
    selector = f'modelserver_requests_total{{namespace="{stack.namespace}",version="{version}"}}'
    instances = sorted({series["instance"] for series in stack.prometheus.series(selector)})
    lines = []
    for metric in ("up", "scrape_duration_seconds"):
        promql = f'{metric}{{instance=~"{"|".join(instances)}"}}[{window_s + 2}s]'
        answer = httpx.get(
            f"{stack.prometheus.url}/api/v1/query", params={"query": promql, "time": at}, timeout=5
        ).json()
        values = [(float(t) - at, v) for series in answer["data"]["result"] for t, v in series["values"]]
        lines.append(f"{metric}: " + ", ".join(f"{t:+.2f}s={v}" for t, v in values))
    return f"run at {run['at']} ({run['verdict']}), instances {instances}: " + "; ".join(lines)


def assert_all_answered_by(summary: LoadSummary, versions: set[str]) -> None:
    assert not summary.failures, summary.describe()
    assert set(summary.by_version) <= versions, summary.describe()
