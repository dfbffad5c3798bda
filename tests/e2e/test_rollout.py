"""The whole loop: the operator drives real traffic through our router by the ConfigMap it writes, real model
servers answer, a real Prometheus scrapes them every second, and the operator's analysis of those metrics
promotes a good candidate or rolls a bad one back (DESIGN.md section 5).

Every test runs a fresh stack: model servers by version, the router (its upstream for each version is the local
server of that version), Prometheus, and the operator with a 1 s scrape interval setting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client
from prometheus_client.parser import text_string_to_metric_families

from modelrollout.api import GROUP, PLURAL, VERSION
from modelrollout.planning.names import router_configmap_name
from modelrollout.traffic.router import RouterConfig, parse_configmap_data
from tests.conftest import Cluster
from tests.e2e.conftest import LaunchStack, Stack
from tests.support.load import Load, LoadSummary
from tests.support.models import Classifiers, ModelArtifact
from tests.support.operator import OperatorProcess
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

INTERVAL_S = 2  # analysis interval
MERGE_PATCH = "application/merge-patch+json"
RATE = 40  # client requests per second through the router
STEPS = [
    {"setWeight": 20},
    {"pause": {"duration": "6s"}},
    {"setWeight": 50},
    {"pause": {"duration": "6s"}},
    {"setWeight": 80},
    {"pause": {"duration": "6s"}},
]


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


@dataclass
class Sample:
    at: float
    step: int | None
    phase: str | None
    status: tuple[int, int, int]  # stable, canary, mirror
    configmap: tuple[int, int, int] | None
    router: tuple[int, int, int] | None
    stable_version: str | None = None  # the version behind the router's stable role, per the ConfigMap


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

    async def create(self, rollout: dict[str, Any], *, replicas: int = 2) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": self.stack.name},
            "spec": {
                "model": {
                    "name": self.stack.model,
                    "version": "1",
                    "uri": "s3://models/churn/1/model.joblib",
                    "format": "sklearn",
                },
                "online": {"replicas": replicas},
                "rollout": rollout,
            },
        }
        await self.custom.create_namespaced_custom_object(GROUP, VERSION, self.stack.namespace, PLURAL, body)
        await self.wait(lambda s: s.get("phase") == "Healthy", "version 1 Healthy")

    async def to_version(self, version: str) -> None:
        model = {"version": version, "uri": f"s3://models/churn/{version}/model.joblib"}
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

    async def verb(self, name: str) -> None:
        body = {"metadata": {"annotations": {"modelrollout.dev/verb": f'{{"name": "{name}", "id": "{time.time()}"}}'}}}
        await self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.stack.namespace, PLURAL, self.stack.name, body, _content_type=MERGE_PATCH
        )

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
        router = self.stack.router
        if router is None or not router.alive:
            return None
        try:
            text = (await http.get(f"{router.url}/metrics", timeout=1)).text
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


@dataclass
class World:
    """A test's namespace on the real cluster, the operator watching it, and how to start a data path there."""

    classifiers: Classifiers
    launch: Callable[[dict[str, ModelArtifact]], Stack]
    rollout_of: Callable[[Stack], Rollout]


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

    def launch(servers: dict[str, ModelArtifact]) -> Stack:
        return launch_stack(servers, namespace=namespace, router=cluster.kubeconfig)

    def rollout_of(stack: Stack) -> Rollout:
        made.append(Rollout(kube_api, stack))
        return made[-1]

    yield World(classifiers=classifiers, launch=launch, rollout_of=rollout_of)
    for rollout in made:
        await rollout.stop_recording()


async def serve_through_router(rollout: Rollout, dataset: Any, *, rate: float = RATE) -> Load:
    """The router starts once the operator has written its ConfigMap; then steady load goes through it."""
    router = rollout.stack.router
    assert router is not None
    router.start()
    load = Load(f"{router.url}/v2/models/{rollout.stack.model}/infer", dataset, rate=rate).start()
    load.wait_for(int(rate))  # a second of traffic before anything changes
    return load


def first_bad_scrape(stack: Stack, promql: str) -> float:
    """Timestamp of the first scraped sample of `promql` (a range selector) with a value above zero."""
    answer = httpx.get(f"{stack.prometheus.url}/api/v1/query", params={"query": promql}, timeout=5).json()
    samples = [(float(t), float(v)) for series in answer["data"]["result"] for t, v in series["values"]]
    bad = sorted(t for t, v in samples if v > 0)
    assert bad, f"no bad sample in {promql}: {answer}"
    return bad[0]


def assert_all_answered_by(summary: LoadSummary, versions: set[str]) -> None:
    assert not summary.failures, summary.describe()
    assert set(summary.by_version) <= versions, summary.describe()


# --- canary --------------------------------------------------------------------------------------------------


async def test_a_healthy_candidate_walks_every_step_and_is_promoted(world: World) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.healthy})
    rollout = world.rollout_of(stack)
    await rollout.create(routed({"strategy": "canary", "canary": {"steps": STEPS}, "analysis": analysis(stack)}))
    load = await serve_through_router(rollout, world.classifiers.dataset)
    rollout.start_recording()
    started = time.time()

    await rollout.to_version("2")
    status = await rollout.wait(
        lambda s: s.get("phase") == "Healthy" and (s.get("stable") or {}).get("version") == "2", "version 2 promoted"
    )
    await asyncio.sleep(1.5)  # the router picks up the last document
    summary = load.stop()
    await rollout.stop_recording()

    assert rollout.configmap_canary_history()[-5:] == [0, 20, 50, 80, 0]
    # At every step the three agree: what status says, what the ConfigMap says, what the router has loaded.
    for weight in (20, 50, 80):
        agreeing = [
            s
            for s in rollout.samples
            if s.status == (100 - weight, weight, 0) and s.configmap == s.status and s.router == s.status
        ]
        assert agreeing, f"status, ConfigMap and router never agreed on {weight}%: {rollout.samples[-40:]}"
    assert rollout.samples[-1].configmap == rollout.samples[-1].router == (100, 0, 0)
    runs = status["analysis"]["runs"]
    assert runs, "promoted without a single analysis run"
    assert all(r["verdict"] == "Successful" for r in runs), runs
    assert status["history"][-1]["outcome"] == "Promoted"

    assert_all_answered_by(summary, {"1", "2"})
    during = summary.since(started)
    assert during.by_version["2"] > 0, during.describe()
    assert summary.last(RATE).by_version.keys() == {"2"}, "after promotion every answer comes from version 2"
    reasons = [reason for reason, _ in await rollout.events()]
    assert reasons.count("WeightSet") == 3
    assert "Promoted" in reasons


@pytest.mark.parametrize("fault", ["errors", "latency"])
async def test_a_bad_candidate_is_rolled_back_within_three_analysis_intervals(
    world: World, fault: str, record_property: Callable[[str, object], None]
) -> None:
    # 250 ms a call, one call at a time: the slow server answers 4 a second, above the 2 it gets at 20%.
    bad = world.classifiers.failing(0.3) if fault == "errors" else world.classifiers.slow(250)
    stack = world.launch({"1": world.classifiers.stable, "2": bad})
    rollout = world.rollout_of(stack)
    await rollout.create(routed({"strategy": "canary", "canary": {"steps": STEPS}, "analysis": analysis(stack)}))
    rate = RATE if fault == "errors" else 10
    load = await serve_through_router(rollout, world.classifiers.dataset, rate=rate)
    rollout.start_recording()

    await rollout.to_version("2")
    status = await rollout.wait(lambda s: s.get("phase") == "RolledBack", "the bad candidate rolled back")
    await asyncio.sleep(1)
    summary = load.stop()
    await rollout.stop_recording()

    selector = f'namespace="{stack.namespace}",model="{stack.model}",version="2"'
    if fault == "errors":
        promql = f'modelserver_requests_total{{{selector},code=~"5.."}}[5m]'
    else:
        promql = f"modelserver_request_duration_seconds_count{{{selector}}}[5m]"
    first_bad = first_bad_scrape(stack, promql)
    weight_zero = rollout.first_time(lambda s: s.configmap is not None and s.configmap[1] == 0 and s.at > first_bad)
    assert weight_zero is not None
    seconds = weight_zero - first_bad
    record_property("seconds_from_first_bad_scrape_to_weight_0", round(seconds, 2))
    print(f"\n[rollback:{fault}] {seconds:.1f} s from the first bad scrape to weight 0 (interval {INTERVAL_S} s)")
    assert seconds <= 3 * INTERVAL_S, f"rollback took {seconds:.1f}s, more than three analysis intervals"

    assert status["stable"]["version"] == "1"
    assert "canary" not in status
    assert status["history"][-1]["outcome"] == "RolledBack"
    assert status["weights"] == {"stable": 100, "canary": 0, "mirror": 0}
    failed_run = status["analysis"]["runs"][-1]
    assert failed_run["verdict"] == "Failed"
    failed_metric = "errors" if fault == "errors" else "p99"
    assert any(m["name"] == failed_metric and m["verdict"] == "Failed" for m in failed_run["metrics"]), failed_run
    # retryOnStable: the canary's failures were answered by stable, so no client saw one.
    assert_all_answered_by(summary, {"1", "2"})
    assert summary.last(rate).by_version.keys() == {"1"}
    assert max(s.configmap[1] for s in rollout.samples if s.configmap) == 20, "never went past the first step"


# --- blue-green ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("healthy", [True, False], ids=["passing", "failing"])
async def test_blue_green_switches_at_once_only_after_a_passing_pre_promotion_analysis(
    world: World, healthy: bool
) -> None:
    candidate = world.classifiers.healthy if healthy else world.classifiers.failing(0.3)
    stack = world.launch({"1": world.classifiers.stable, "2": candidate})
    rollout = world.rollout_of(stack)
    blue_green = {"strategy": "blueGreen", "blueGreen": {"postPromotionWindow": "0s"}, "analysis": analysis(stack)}
    await rollout.create(routed(blue_green))
    load = await serve_through_router(rollout, world.classifiers.dataset)
    # Smoke traffic to the preview (the candidate's own server, as `<name>-preview` would reach it).
    preview = Load(stack.servers["2"].infer_url, world.classifiers.dataset, rate=20).start()
    rollout.start_recording()

    await rollout.to_version("2")
    if healthy:
        await rollout.wait(
            lambda s: s.get("phase") == "Healthy" and (s.get("stable") or {}).get("version") == "2", "switched"
        )
    else:
        await rollout.wait(lambda s: s.get("phase") == "RolledBack", "the failing preview rolled back")
    await asyncio.sleep(1.5)
    summary = load.stop()
    preview.stop()
    await rollout.stop_recording()

    status = await rollout.status()
    step_runs = [r for r in status["analysis"]["runs"] if r["kind"] == "Step"]
    assert step_runs, "no pre-promotion analysis ran"
    # Never a gradual shift: the router's canary share is never between nothing and everything.
    assert all(s.configmap[1] in (0, 100) for s in rollout.samples if s.configmap), rollout.samples
    switched = rollout.first_time(lambda s: s.stable_version == "2")
    if healthy:
        assert step_runs[-1]["verdict"] == "Successful"
        passed_at = datetime.fromisoformat(step_runs[-1]["at"]).timestamp()
        assert switched is not None
        # At once: the switch lands with the pass that saw the verdict (the sample clock is 0.1 s).
        assert switched - passed_at <= INTERVAL_S, (passed_at, switched)
        assert summary.last(RATE).by_version.keys() == {"2"}
    else:
        assert switched is None, "a failing preview must never get traffic"
        assert rollout.configmap_canary_history() == [0]
        assert step_runs[-1]["verdict"] == "Failed"
        assert status["stable"]["version"] == "1"
        assert summary.by_version.keys() == {"1"}, summary.describe()
    assert not summary.failures, summary.describe()


# --- shadow ----------------------------------------------------------------------------------------------------


async def test_a_disagreeing_shadow_is_not_promoted_and_clients_never_see_its_answers(world: World) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.disagreeing})
    rollout = world.rollout_of(stack)
    shadow = {
        "strategy": "shadow",
        "shadow": {"mirrorPercent": 100, "duration": "6s", "minAgreement": 0.95, "minComparisons": 20},
        "analysis": analysis(stack, metrics=[{"name": "errors", "builtin": "errorRate", "max": 0.02}]),
    }
    await rollout.create(routed(shadow))
    load = await serve_through_router(rollout, world.classifiers.dataset)
    rollout.start_recording()

    await rollout.to_version("2")
    status = await rollout.wait(
        lambda s: any(h["version"] == "2" for h in s.get("history", [])), "the shadow rollout to end"
    )
    summary = load.stop()
    await rollout.stop_recording()

    assert status["stable"]["version"] == "1", "a disagreeing candidate was promoted"
    assert status["history"][-1]["outcome"] == "RolledBack"
    runs = status["analysis"]["runs"]
    agreement = [m for r in runs for m in r["metrics"] if m["name"] == "shadow-agreement" and m["verdict"] == "Failed"]
    assert agreement, runs
    assert agreement[-1]["value"] < 0.95
    assert max(s.configmap[2] for s in rollout.samples if s.configmap) == 100, "the mirror was never set"
    assert all(s.configmap[1] == 0 for s in rollout.samples if s.configmap), "the shadow got client traffic"
    # Clients only ever got stable's answers, and they were stable's predictions.
    assert summary.by_version.keys() == {"1"}, summary.describe()
    assert not summary.mismatches({"1": world.classifiers.stable.predictions}), summary.describe()
    assert not summary.failures, summary.describe()


# --- the operator and Prometheus going away ---------------------------------------------------------------------


async def test_an_operator_killed_mid_rollout_continues_from_the_same_step_once(
    world: World, operator: OperatorProcess
) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.healthy})
    rollout = world.rollout_of(stack)
    steps = [{"setWeight": 30}, {"pause": {"duration": "12s"}}, {"setWeight": 60}, {"pause": {"duration": "4s"}}]
    await rollout.create(routed({"strategy": "canary", "canary": {"steps": steps}, "analysis": analysis(stack)}))
    load = await serve_through_router(rollout, world.classifiers.dataset)

    await rollout.to_version("2")
    before = await rollout.wait(lambda s: s.get("currentStep") == 1, "the pause step")
    operator.stop(graceful=False)  # SIGKILL: no clean-up, as a crash or a node loss
    await asyncio.sleep(3)
    assert (await rollout.status())["currentStep"] == 1
    operator.start()
    await asyncio.sleep(2)  # the new process resumes
    resumed = await rollout.status()
    assert resumed["currentStep"] == 1
    # The pause is measured from when it began, not restarted by the new process.
    assert resumed["stepStartedAt"] == before["stepStartedAt"]
    status = await rollout.wait(lambda s: (s.get("stable") or {}).get("version") == "2", "promoted after restart")
    summary = load.stop()

    events = await rollout.events()
    weight_events = [message for reason, message in events if reason == "WeightSet"]
    assert len(weight_events) == 2, f"each weight step once: {weight_events}"
    assert [reason for reason, _ in events].count("RolloutStarted") == 2  # version 1, then version 2
    assert [reason for reason, _ in events].count("Promoted") == 2  # version 1, then version 2
    assert status["history"][-1]["outcome"] == "Promoted"
    assert not summary.failures, summary.describe()
    assert operator.log().count("===== operator start") == 2


async def test_no_promotion_while_prometheus_is_down(world: World) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.healthy})
    rollout = world.rollout_of(stack)
    steps = [{"setWeight": 50}, {"pause": {"duration": "8s"}}]
    settings = analysis(stack, inconclusiveLimit=1000)
    await rollout.create(routed({"strategy": "canary", "canary": {"steps": steps}, "analysis": settings}))
    load = await serve_through_router(rollout, world.classifiers.dataset)

    await rollout.to_version("2")
    await rollout.wait(
        lambda s: any(r["verdict"] == "Successful" for r in (s.get("analysis") or {}).get("runs", [])),
        "a first passing analysis run",
    )
    stack.prometheus.stop()
    # Well past the end of the pause: every run since is an Error (no data), so the promotion waits.
    await asyncio.sleep(8 + 3 * INTERVAL_S)
    status = await rollout.status()
    assert status["stable"]["version"] == "1", "promoted while Prometheus was down"
    assert status["canary"]["version"] == "2"
    assert status["analysis"]["runs"][-1]["verdict"] == "Error"
    assert "promotion waits for a passing analysis run" in status["message"]

    stack.prometheus.start()
    status = await rollout.wait(lambda s: (s.get("stable") or {}).get("version") == "2", "promoted once data is back")
    summary = load.stop()
    assert status["analysis"]["runs"][-1]["verdict"] == "Successful"
    assert not summary.failures, summary.describe()


async def test_the_sequential_judge_rolls_a_failing_candidate_back_with_its_evidence(world: World) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.failing(0.3)})
    rollout = world.rollout_of(stack)
    settings = analysis(
        stack, judge={"type": "sequential"}, metrics=[{"name": "errors", "builtin": "errorRate", "max": 0.02}]
    )
    await rollout.create(routed({"strategy": "canary", "canary": {"steps": STEPS}, "analysis": settings}))
    load = await serve_through_router(rollout, world.classifiers.dataset)

    await rollout.to_version("2")
    status = await rollout.wait(lambda s: s.get("phase") == "RolledBack", "rolled back by the sequential test")
    summary = load.stop()

    failed = status["analysis"]["runs"][-1]
    assert failed["verdict"] == "Failed"
    (errors,) = [m for m in failed["metrics"] if m["name"] == "errors"]
    assert errors["verdict"] == "Failed"
    assert errors["evidence"], "the judge says why: its statistic, bound and counts"
    assert status["stable"]["version"] == "1"
    assert not summary.failures, summary.describe()
