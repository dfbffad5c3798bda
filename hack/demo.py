"""`make demo`: a progressive rollout on a local cluster, printed as it happens.

Everything is real except that kwok's pods run no containers: the local control plane (hack/cluster-up.sh,
cluster `mr-demo`), the CRD, the operator process, models trained on the spot from scikit-learn's breast cancer
dataset, one model server process per model version, our router (`modelserver route`, which follows the
ConfigMap the operator writes) and a Prometheus scraping all of them every second (DESIGN.md section 5).

  act 1  version 1 is applied and becomes Healthy; steady load goes through the router
  act 2  version 2 (a good model) goes canary 20% -> 50% -> 80% under Prometheus analysis and is promoted
  act 3  version 3 (version 2 failing 30% of its calls, or 300 ms slower) is rolled back by the analysis;
         retryOnStable answers the canary's failures from stable, so clients see none

The data path is composed from the e2e test support (testkit: models, model servers, router, Prometheus,
load, operator), so the demo and the e2e tests run the same processes. Run it from the repository root:
`hack/demo.sh` (or `.venv/bin/python -m hack.demo --kubeconfig PATH` on a running cluster). Everything started
is stopped on exit, Ctrl-C included; with KEEP=1 it keeps running until Ctrl-C and the cluster stays up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.text import Text
from testkit.crds import install_crds
from testkit.load import Load, LoadSummary
from testkit.models import ModelArtifact, train_classifiers
from testkit.modelservers import ModelServer, Router, router_configmap_name
from testkit.operator import OperatorProcess
from testkit.ports import free_port
from testkit.processes import ManagedProcess, read_log
from testkit.prometheus import SCRAPE_INTERVAL_S, PrometheusServer

from modelrollout.api.resource import GROUP, PLURAL, VERSION, ModelDeployment
from modelrollout.api.status import AnalysisRun, ModelDeploymentStatus
from modelrollout.cli.kube import Api, connect
from modelrollout.cli.render import EventInfo, phase_text, render_status, verdict_text, weights_bar
from modelrollout.rollout.plan import Plan, build_plan
from modelrollout.traffic.router import CONFIG_KEY, RouterConfig, RouterConfigError, parse_configmap_data

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "examples" / "online-canary-router.yaml"
HACK = REPO_ROOT / "hack"
NAME = "churn"  # the ModelDeployment, spec.model.name and the router's route
NAMESPACE = "modelrollout-demo"
CLUSTER_NAME = "mr-demo"
FAILING_SHARE = 0.3
SLOW_MS = 300.0
# SlowModel sleeps on the server's event loop (testkit/faulty.py): one worker answers at most 1000/SLOW_MS calls a
# second. A saturated server cannot even be scraped, and no data is not a failure (noData: inconclusive pauses the
# rollout), so the slow version gets enough workers for its share of the load: then it is measured, and is slow.
SLOW_WORKERS = 6
RATE = 40.0  # requests per second through the router
RECONCILE_INTERVAL_S = 5.0
POLL_S = 0.5
TRAFFIC_EVERY_S = 5.0
BAD_POLL_S = 0.1
# The path of the fault env through to the server that the demo starts; kept out of the spec (an image would
# have the class installed).
LOCAL_ONLY_ENV = ("PYTHONPATH",)
Bad = Literal["failing", "slow"]
MODEL_KEYS = ("name", "version", "uri", "format", "className", "env")  # what model_spec sets
MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json", "field_manager": "modelrollout-demo"}

STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": "6s"}},
    {"setWeight": 50},
    {"pause": {"duration": "6s"}},
    {"setWeight": 80},
    {"pause": {"duration": "6s"}},
]
METRICS: list[dict[str, Any]] = [
    {"name": "error-rate", "builtin": "errorRate", "max": 0.02},
    {"name": "latency-p99", "builtin": "latencyP99", "max": 0.25},
]


class DemoFailed(RuntimeError):
    """The rollout did not go the way the demo shows it; the message says how."""


# --- the ModelDeployment (pure) ------------------------------------------------------------------------------------


def model_spec(*, name: str, version: str, artifact: ModelArtifact) -> dict[str, Any]:
    """spec.model for one trained artifact: what the local model server of that version really serves."""
    spec: dict[str, Any] = {
        "name": name,
        "version": version,
        "uri": artifact.path.resolve().as_uri(),
        "format": artifact.model_format,
    }
    if artifact.model_class is not None:
        spec["className"] = artifact.model_class
    env = [{"name": k, "value": v} for k, v in sorted(artifact.env.items()) if k not in LOCAL_ONLY_ENV]
    if env:
        spec["env"] = env
    return spec


def build_manifest(
    *, name: str, version: str, artifact: ModelArtifact, prometheus_url: str, example: Path = EXAMPLE
) -> dict[str, Any]:
    """examples/online-canary-router.yaml with the demo's model, short steps, a 3 s analysis against the local
    Prometheus, and the router answering the canary's failures from stable."""
    manifest: dict[str, Any] = yaml.safe_load(example.read_text())
    manifest["metadata"] = {"name": name}
    manifest["spec"]["model"] = {**model_spec(name=name, version=version, artifact=artifact)}
    resources = yaml.safe_load(example.read_text())["spec"]["model"].get("resources")
    if resources:
        manifest["spec"]["model"]["resources"] = resources
    rollout = manifest["spec"]["rollout"]
    rollout["canary"] = {"steps": copy.deepcopy(STEPS)}
    rollout["analysis"] = {
        "interval": "3s",
        "failureLimit": 0,
        "noData": "inconclusive",
        "prometheus": {"address": prometheus_url},
        "metrics": copy.deepcopy(METRICS),
    }
    rollout["trafficRouting"] = {"provider": "router", "router": {"retryOnStable": True, "timeout": "5s"}}
    return manifest


def model_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns spec.model `old` into `new` (null removes what `new` leaves out)."""
    model: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    model.update({k: None for k in old if k not in new})
    return {"spec": {"model": model}}


# --- what the demo prints (pure) -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeenEvent:
    key: tuple[str, int]  # (event name, count): a repeated event shows again
    info: EventInfo


@dataclass(frozen=True)
class Observation:
    """One look at the ModelDeployment, the router's ConfigMap and the events, `at` seconds into the act."""

    at: float
    md: ModelDeployment
    router: RouterConfig | None = None
    events: tuple[SeenEvent, ...] = ()

    @property
    def status(self) -> ModelDeploymentStatus:
        return self.md.status or ModelDeploymentStatus()


TAG_STYLES: Mapping[str, str] = {
    "phase": "bold",
    "step": "bold cyan",
    "weights": "cyan",
    "router": "cyan",
    "analysis": "bold",
    "event": "dim",
    "history": "bold",
    "traffic": "blue",
    "demo": "bold green",
}
METRIC_WORDS: Mapping[str, tuple[str, str]] = {
    "Successful": ("ok", "green"),
    "Failed": ("FAILED", "bold red"),
    "Inconclusive": ("undecided", "yellow"),
    "Error": ("ERROR", "red"),
}


def line(at: float, tag: str, *body: Text | str, one_line: bool = False) -> Text:
    """`   12.5s  tag      body`: one line of the demo's log (`one_line`: cut at the terminal's edge)."""
    text = Text(f"{at:7.1f}s  ", style="dim")
    text.append(f"{tag:<9}", style=TAG_STYLES.get(tag, ""))
    for part in body:
        text.append_text(part if isinstance(part, Text) else Text(part))
    if one_line:
        text.no_wrap, text.overflow = True, "ellipsis"
    return text


def _bound(metric: Mapping[str, Any]) -> str:
    parts = []
    if metric.get("max") is not None:
        parts.append(f"max {metric['max']:g}")
    if metric.get("min") is not None:
        parts.append(f"min {metric['min']:g}")
    return ", ".join(parts)


def run_text(run: AnalysisRun, bounds: Mapping[str, str]) -> Text:
    """`Background run, step 2: Successful  error-rate 0 (max 0.02) ok, latency-p99 0.0049 (max 0.25) ok`; the
    reason of a metric that did not pass follows, once when all of them share it."""
    where = f"{run.kind or 'analysis'} run" + (f", step {run.step}" if run.step is not None else "")
    text = Text(f"{where}: ")
    text.append_text(verdict_text(run.verdict))
    reasons: list[str] = []
    for i, metric in enumerate(run.metrics):
        text.append("  " if i == 0 else ", ")
        value = "no data" if metric.value is None else f"{metric.value:.3g}"
        bound = f" ({bounds[metric.name]})" if bounds.get(metric.name) else ""
        word, style = METRIC_WORDS.get(metric.verdict, (metric.verdict, ""))
        text.append(f"{metric.name} {value}{bound} ")
        text.append(word, style=style)
        if metric.verdict not in ("Successful", "Failed") and metric.message and metric.message not in reasons:
            reasons.append(metric.message)
    for reason in reasons:
        text.append(f"  ({reason})", style="dim")
    return text


def _run_key(run: AnalysisRun) -> tuple[str, str | None, int | None]:
    return (run.at.isoformat(), run.kind, run.step)


def router_text(config: RouterConfig) -> Text:
    """`ConfigMap churn-router: v1 80% / v2 20%, retryOnStable`: the document the router follows."""
    split = f"v{config.versions.stable} {config.weights.stable}%"
    if config.versions.canary is not None and config.versions.canary != config.versions.stable:
        split += f" / v{config.versions.canary} {config.weights.canary}%"
    return Text(f"ConfigMap {config.route}-router: {split}" + (", retryOnStable" if config.retry_on_stable else ""))


def step_text(plan: Plan | None, index: int) -> str:
    """`step 1: pause 6s` (indexed as status.currentStep and `kubectl modelrollout status` index them)."""
    if plan is None or index >= len(plan.steps):
        return f"step {index}"
    return f"step {index}: {plan.steps[index].describe()}"


def steps_text(plan: Plan) -> str:
    """`steps 0 setWeight 20 | 1 pause 6s | ... then promotion`."""
    return " | ".join(f"{i} {step.describe()}" for i, step in enumerate(plan.steps)) + " | then promotion"


def plan_of(md: ModelDeployment) -> Plan | None:
    try:
        return build_plan(md.spec.rollout)
    except ValueError:
        return None


def describe_changes(before: Observation | None, after: Observation) -> list[Text]:
    """What changed between two looks, one line each, in the order a reader wants: phase, revisions, step,
    weights (status, then the router's ConfigMap), analysis verdicts, finished rollouts, then events."""
    return [*_state_changes(before, after), *_record_changes(before, after)]


def _state_changes(before: Observation | None, after: Observation) -> list[Text]:
    at, old, new = after.at, before.status if before else None, after.status
    lines: list[Text] = []
    if old is None or old.phase != new.phase:
        phase = phase_text(new.phase)
        if new.paused and new.pause_reason:
            phase.append(f" ({new.pause_reason})", style="yellow")
        lines.append(line(at, "phase", phase, Text(f"  {new.message}" if new.message else "", style="dim")))
    for role in ("stable", "canary"):
        ref = getattr(new, role)
        if old is not None and getattr(old, role) == ref:
            continue
        if ref is not None:
            lines.append(line(at, "phase", f"{role}: version {ref.version} (revision {ref.revision})"))
        elif old is not None:
            lines.append(line(at, "phase", f"{role}: none"))
    in_rollout = new.canary is not None and new.phase in ("Progressing", "Paused")
    moved = old is None or (old.current_step, old.step_started_at) != (new.current_step, new.step_started_at)
    if in_rollout and moved and new.current_step is not None:
        lines.append(line(at, "step", step_text(plan_of(after.md), new.current_step)))
    if old is None or old.weights != new.weights:
        lines.append(line(at, "weights", Text("status: "), weights_bar(new.weights, width=24)))
    if after.router is not None and (before is None or before.router != after.router):
        lines.append(line(at, "router", router_text(after.router)))
    return lines


def _record_changes(before: Observation | None, after: Observation) -> list[Text]:
    at, old, new = after.at, before.status if before else None, after.status
    lines: list[Text] = []
    seen_runs = {_run_key(r) for r in old.analysis.runs} if old else set()
    analysis = after.md.spec.rollout.analysis
    bounds = {m.name: _bound(m.model_dump(by_alias=True)) for m in analysis.metrics} if analysis else {}
    for run in new.analysis.runs:
        if _run_key(run) not in seen_runs:
            lines.append(line(at, "analysis", run_text(run, bounds)))
    seen_history = {(h.revision, h.finished_at) for h in old.history} if old else set()
    for entry in new.history:
        if (entry.revision, entry.finished_at) not in seen_history:
            outcome = Text(entry.outcome, style="green" if entry.outcome == "Promoted" else "magenta")
            lines.append(line(at, "history", f"version {entry.version} (revision {entry.revision}): ", outcome))
    seen_events = {e.key for e in before.events} if before else set()
    for event in sorted(after.events, key=lambda e: e.info.at or datetime.min.replace(tzinfo=UTC)):
        if event.key not in seen_events:
            style = "yellow" if event.info.type == "Warning" else "dim"
            body = Text(f"{event.info.type} {event.info.reason}: {event.info.message}", style=style)
            lines.append(line(at, "event", body, one_line=True))
    return lines


def traffic_text(at: float, summary: LoadSummary, seconds: float) -> Text:
    """What the clients saw over the last `seconds`: requests, the answering versions, failures."""
    answered = sum(summary.by_version.values())
    shares = ", ".join(
        f"v{version} {count / answered:.0%}" for version, count in sorted(summary.by_version.items(), key=_version_key)
    )
    failed = len(summary.failures)
    body = Text(f"clients, last {seconds:g}s: {summary.total} requests, answered by {shares or 'nobody'}, ")
    body.append(f"{failed} failed", style="bold red" if failed else "green")
    return line(at, "traffic", body)


def _version_key(item: tuple[str | None, int]) -> str:
    return item[0] or ""


# --- watching the bad version from the router's own metrics --------------------------------------------------------


def router_samples(exposition: str, *, route: str, version: str, bad: Bad) -> tuple[float, float | None]:
    """From the router's /metrics: (bad calls to `version` as canary, canary weight). A bad call is a 5xx for a
    failing version, any call for a slow one."""
    bad_calls, weight = 0.0, None
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("route") != route:
                continue
            if sample.name == "modelrouter_requests_total" and labels.get("version") == version:
                if labels.get("role") == "canary" and (bad == "slow" or labels.get("code", "").startswith("5")):
                    bad_calls += sample.value
            elif sample.name == "modelrouter_weight" and labels.get("role") == "canary":
                weight = sample.value
    return bad_calls, weight


@dataclass
class BadWatch:
    """When the router first called the bad version (`first_bad`) and when it then dropped the canary to weight 0
    (`weight_zero`), both time.monotonic(), read from the router's /metrics every BAD_POLL_S."""

    metrics_url: str
    route: str
    version: str
    bad: Bad
    first_bad: float | None = None
    weight_zero: float | None = None
    bad_calls: float = 0.0

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            while self.weight_zero is None:
                with contextlib.suppress(httpx.HTTPError):
                    body = (await http.get(self.metrics_url)).text
                    now = time.monotonic()
                    self.bad_calls, weight = router_samples(body, route=self.route, version=self.version, bad=self.bad)
                    if self.first_bad is None and self.bad_calls > 0:
                        self.first_bad = now
                    elif self.first_bad is not None and weight == 0:
                        self.weight_zero = now
                await asyncio.sleep(BAD_POLL_S)

    @property
    def seconds(self) -> float | None:
        if self.first_bad is None or self.weight_zero is None:
            return None
        return self.weight_zero - self.first_bad


# --- the processes ---------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """What the demo runs locally, as the tests' launch_stack (tests/e2e/conftest.py) composes it, plus the
    operator. Every port is fixed before anything starts, so Prometheus knows all its targets up front."""

    servers: dict[str, ModelServer]
    router: Router
    prometheus: PrometheusServer
    operator: OperatorProcess
    load: Load | None = None

    @classmethod
    def plan(
        cls,
        artifacts: Mapping[str, ModelArtifact],
        *,
        namespace: str,
        name: str,
        kubeconfig: Path,
        work_dir: Path,
        workers: Mapping[str, int] | None = None,
    ) -> Stack:
        servers = {
            version: ModelServer(
                artifact, model=name, version=version, work_dir=work_dir, workers=(workers or {}).get(version, 1)
            )
            for version, artifact in artifacts.items()
        }
        router = Router(
            namespace=namespace,
            configmap=router_configmap_name(name),
            kubeconfig=kubeconfig,
            upstreams={version: server.url for version, server in servers.items()},
            work_dir=work_dir,
        )
        targets = [server.target(namespace) for server in servers.values()] + [router.target(namespace)]
        operator = OperatorProcess(
            kubeconfig=kubeconfig,
            namespace=namespace,
            log_dir=work_dir,
            extra_env={
                "MODELROLLOUT_PROMETHEUS_SCRAPE_INTERVAL_S": f"{SCRAPE_INTERVAL_S:g}",
                "MODELROLLOUT_RECONCILE_INTERVAL_S": f"{RECONCILE_INTERVAL_S:g}",
                "MODELROLLOUT_LIVENESS_PORT": str(free_port()),
            },
        )
        prometheus = PrometheusServer(work_dir=work_dir / "prometheus", targets=targets)
        return cls(servers=servers, router=router, prometheus=prometheus, operator=operator)

    def start(self) -> None:
        """Model servers, the operator and Prometheus (the router starts once the operator has written its
        ConfigMap: it is ready only with a routing document)."""
        for server in self.servers.values():
            server.start(wait=False)
        self.operator.start()
        for server in self.servers.values():  # loading in parallel meanwhile (~2 s each)
            server.wait_ready()
        self.prometheus.start()
        wait_for_operator(self.operator, within=60)

    @property
    def processes(self) -> list[ManagedProcess]:
        return [self.router, *self.servers.values(), self.prometheus.process]

    def stop(self) -> None:
        if self.load is not None:
            with contextlib.suppress(RuntimeError):
                self.load.stop()
            self.load = None
        self.operator.stop()
        for process in self.processes:
            process.stop(timeout=10)
        self.prometheus.close()


def wait_for_operator(operator: OperatorProcess, *, within: float) -> None:
    """Until the operator's liveness endpoint answers (it serves it from its start, as a standby; alone, it leads
    within milliseconds and Kopf handles what exists when it starts)."""
    url = operator.liveness_url
    deadline = time.monotonic() + within
    while url is not None:
        if not operator.alive():
            raise DemoFailed(f"the operator exited:\n{read_log(operator.log_path, tail=3000)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise DemoFailed(f"the operator did not answer {url} within {within:g}s (log {operator.log_path})")
        time.sleep(0.2)


# --- the demo --------------------------------------------------------------------------------------------------------


@dataclass
class Demo:
    console: Console
    kube: client.ApiClient
    api: Api
    namespace: str
    name: str
    stack: Stack
    artifacts: dict[str, ModelArtifact]
    bad: Bad
    rate: float
    facts: dict[str, str] = field(default_factory=dict)
    last: Observation | None = None

    def say(self, title: str) -> None:
        self.console.print()
        self.console.rule(Text(title, style="bold green"), align="left")

    async def observe(self, at: float) -> Observation:
        md = ModelDeployment.model_validate(await self.api.get(self.name))
        router = None
        with contextlib.suppress(ApiException):
            found = await client.CoreV1Api(self.kube).read_namespaced_config_map(
                router_configmap_name(self.name), self.namespace
            )
            if found.data and CONFIG_KEY in found.data:
                with contextlib.suppress(RouterConfigError):
                    router = parse_configmap_data(found.data)
        events = tuple(
            SeenEvent(key=(e.name, e.info.count), info=e.info)
            for e in await self.api.events(self.name, uid=md.metadata.uid)
        )
        return Observation(at=at, md=md, router=router, events=events)

    async def follow(
        self,
        what: str,
        done: Callable[[Observation], bool],
        *,
        within: float,
        fail: Callable[[Observation], str | None],
    ) -> Observation:
        """Print every change since the last look until `done`; DemoFailed when `fail` says so or after `within`
        seconds (with the whole `kubectl modelrollout status` view)."""
        begin = time.monotonic()
        next_traffic = begin + TRAFFIC_EVERY_S
        while True:
            now = time.monotonic()
            current = await self.observe(now - begin)
            for text in describe_changes(self.last, current):
                self.console.print(text, no_wrap=bool(text.no_wrap), overflow=text.overflow)
            self.last = current
            if self.stack.load is not None and now >= next_traffic:
                recent = self.stack.load.summary().since(time.time() - TRAFFIC_EVERY_S)
                self.console.print(traffic_text(now - begin, recent, TRAFFIC_EVERY_S))
                next_traffic = now + TRAFFIC_EVERY_S
            if done(current):
                return current
            problem = fail(current)
            if problem is not None or now - begin > within:
                self.console.print(render_status(current.md, [e.info for e in current.events]))
                raise DemoFailed(problem or f"{what} did not happen within {within:g}s")
            await asyncio.sleep(POLL_S)

    async def apply_first(self, prometheus_url: str) -> None:
        artifact = self.artifacts["1"]
        manifest = build_manifest(name=self.name, version="1", artifact=artifact, prometheus_url=prometheus_url)
        self.say(f"act 1: ModelDeployment {self.name}, version 1 ({artifact.label} model)")
        shown = {"spec": {"rollout": manifest["spec"]["rollout"]}}
        self.console.print(Text(yaml.safe_dump(shown, sort_keys=False, default_flow_style=None).rstrip(), style="dim"))
        plan = plan_of(ModelDeployment.model_validate(manifest))
        if plan is not None:
            self.console.print(Text(f"steps: {steps_text(plan)}", style="dim"))
        self.console.print(
            Text(f"$ kubectl apply -n {self.namespace} -f -   # the ModelDeployment above", style="bold")
        )
        await client.CustomObjectsApi(self.kube).create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, manifest
        )
        await self.follow(
            "version 1 to become Healthy",
            lambda o: o.status.phase == "Healthy" and o.status.stable is not None and o.router is not None,
            within=90,
            fail=lambda o: (
                f"version 1 is {o.status.phase}: {o.status.message}"
                if o.status.phase in ("Degraded", "Failed")
                else None
            ),
        )

    async def patch_version(self, version: str) -> float:
        current = ModelDeployment.model_validate(await self.api.get(self.name))
        old = current.spec.model.model_dump(by_alias=True, exclude_none=True, mode="json")
        old = {k: v for k, v in old.items() if k in MODEL_KEYS}
        patch = model_patch(old, model_spec(name=self.name, version=version, artifact=self.artifacts[version]))
        command = f"$ kubectl patch mdep {self.name} -n {self.namespace} --type merge -p '{_json(patch)}'"
        self.console.print(Text(command, style="bold"), soft_wrap=True)
        await client.CustomObjectsApi(self.kube).patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, patch, **MERGE_PATCH
        )
        return time.time()

    async def rollout_good(self) -> None:
        self.say(f"act 2: version 2 ({self.artifacts['2'].label} model): canary 20% -> 50% -> 80%, analysed every 3s")
        sent = await self.patch_version("2")
        final = await self.follow(
            "version 2 to be promoted",
            lambda o: o.status.phase == "Healthy" and o.status.stable is not None and o.status.stable.version == "2",
            within=180,
            fail=_ended_without("2"),
        )
        failed = self._failures_since(sent)
        self.facts["version 2"] = f"promoted {final.at:.0f}s after the patch; {failed} client request(s) failed"

    async def rollout_bad(self) -> None:
        what = (
            f"version 2 failing {FAILING_SHARE:.0%} of its calls"
            if self.bad == "failing"
            else f"version 2, {SLOW_MS:g} ms slower"
        )
        self.say(f"act 3: version 3 ({what}): rolled back by the analysis")
        watch = BadWatch(metrics_url=f"{self.stack.router.url}/metrics", route=self.name, version="3", bad=self.bad)
        watcher = asyncio.create_task(watch.run())
        try:
            sent = await self.patch_version("3")
            final = await self.follow(
                "version 3 to be rolled back",
                lambda o: (
                    o.status.phase == "RolledBack"
                    and o.status.weights.canary == 0
                    and o.router is not None
                    and o.router.weights.canary == 0
                ),
                within=120,
                fail=lambda o: (
                    "version 3 was promoted: the analysis did not catch it"
                    if o.status.stable is not None and o.status.stable.version == "3"
                    else None
                ),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(watcher), timeout=5)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await asyncio.sleep(2)  # the requests in flight at the switch finish
        failed = self._failures_since(sent)
        kind = "failed" if self.bad == "failing" else "slow"
        if watch.seconds is not None:
            self.facts["version 3"] = (
                f"weight 0 {watch.seconds:.1f}s after the router's first {kind} call to it "
                f"({watch.bad_calls:.0f} {kind} calls in all); {failed} client request(s) failed"
            )
        else:
            self.facts["version 3"] = f"rolled back; {failed} client request(s) failed (no {kind} call was timed)"
        self.console.print(line(final.at, "demo", Text(self.facts["version 3"], style="bold")))

    def _failures_since(self, sent_at: float) -> int:
        if self.stack.load is None:
            return 0
        return len(self.stack.load.summary().since(sent_at).failures)


def _ended_without(version: str) -> Callable[[Observation], str | None]:
    def check(o: Observation) -> str | None:
        status = o.status
        if status.phase in ("RolledBack", "Degraded", "Failed"):
            return f"the rollout of version {version} ended {status.phase}: {status.message}"
        if status.paused and status.pause_reason not in (None, "PauseStep"):
            return f"the rollout of version {version} paused ({status.pause_reason}): {status.message}"
        return None

    return check


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# --- cluster and namespace -------------------------------------------------------------------------------------------


def cluster_up(cluster: str, log: Path) -> Path:
    """hack/cluster-up.sh (its chatter into `log`); the kubeconfig path."""
    with log.open("ab") as out:
        done = subprocess.run(
            [str(HACK / "cluster-up.sh")],
            env={**os.environ, "CLUSTER_NAME": cluster},
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise DemoFailed(f"hack/cluster-up.sh failed ({done.returncode}):\n{read_log(log, tail=3000)}")
    return Path(done.stdout.strip().splitlines()[-1])


def cluster_down(cluster: str, log: Path) -> None:
    with log.open("ab") as out:
        subprocess.run(
            [str(HACK / "cluster-down.sh")], env={**os.environ, "CLUSTER_NAME": cluster}, stderr=out, check=False
        )


async def server_version(api: client.ApiClient) -> str:
    info = await client.VersionApi(api).get_code()
    return str(info.git_version)


async def fresh_namespace(api: client.ApiClient, namespace: str) -> None:
    """The namespace, empty (a kept cluster's old demo namespace is deleted first), with its default
    ServiceAccount: until that exists, the ReplicaSet controller cannot create pods there and backs off."""
    core = client.CoreV1Api(api)
    with contextlib.suppress(ApiException):
        await core.delete_namespace(namespace)
    await _until(lambda: _missing(core.read_namespace(namespace)), within=120, what=f"namespace {namespace} to go")
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    await _until(
        lambda: _present(core.read_namespaced_service_account("default", namespace)),
        within=60,
        what=f"the default ServiceAccount of {namespace}",
    )


async def _missing(read: Any) -> bool:
    try:
        await read
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


async def _present(read: Any) -> bool:
    return not await _missing(read)


async def _until(probe: Callable[[], Any], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(0.5)


# --- main ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    namespace: str
    cluster: str
    kubeconfig: Path | None
    bad: Bad
    rate: float
    keep: bool
    work_dir: Path


def parse_args(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Options:
    env = os.environ if env is None else env
    cache = Path(env.get("MODELROLLOUT_CACHE") or Path.home() / ".cache" / "modelrollout")
    parser = argparse.ArgumentParser(prog="hack/demo.sh", description="`make demo`: canary rollouts, printed live")
    parser.add_argument("--namespace", default=NAMESPACE)
    parser.add_argument("--cluster", default=env.get("CLUSTER_NAME") or CLUSTER_NAME, help="hack/cluster-up.sh name")
    parser.add_argument("--kubeconfig", type=Path, help="use this running cluster instead of starting one")
    parser.add_argument("--bad", choices=["failing", "slow"], default=env.get("BAD") or "failing", help="version 3")
    parser.add_argument("--rate", type=float, default=RATE, help="requests per second through the router")
    parser.add_argument(
        "--keep",
        action="store_true",
        default=env.get("KEEP", "") not in ("", "0"),
        help="(KEEP=1) keep everything running until Ctrl-C, and the cluster afterwards",
    )
    parser.add_argument("--work-dir", type=Path, default=cache / "demo", help="models, logs, Prometheus data")
    args = parser.parse_args(argv)
    return Options(
        namespace=args.namespace,
        cluster=args.cluster,
        kubeconfig=args.kubeconfig,
        bad=args.bad,
        rate=args.rate,
        keep=args.keep,
        work_dir=args.work_dir,
    )


def look_around(options: Options, kubeconfig: Path) -> Text:
    ns = options.namespace
    text = Text("How to look around", style="bold underline")
    if not options.keep:
        text.append("  (KEEP=1 make demo keeps it all running)", style="dim")
    commands = [
        f"export KUBECONFIG={kubeconfig} PATH=$PWD/.venv/bin:$PATH",
        f"kubectl modelrollout status {NAME} -n {ns}   # steps, weights, analysis runs, history, events",
        f"kubectl get mdep,deployments,hpa,services,configmaps -n {ns}",
        f"kubectl get configmap {NAME}-router -n {ns} -o jsonpath='{{.data.router\\.json}}'",
    ]
    if options.keep:
        commands += [
            f"kubectl modelrollout undo {NAME} -n {ns}      # back to version 1, through the same canary steps",
            f"kubectl modelrollout retry {NAME} -n {ns}     # version 3 again: rolled back again",
        ]
    for command in commands:
        text.append(f"\n  {command}")
    text.append(f"\n  logs of every process: {options.work_dir}", style="dim")
    return text


async def run_demo(console: Console, options: Options, kubeconfig: Path, stacks: list[Stack]) -> Demo:
    work = options.work_dir
    connection = await connect(kubeconfig=str(kubeconfig), context=None)
    api = connection.api
    try:
        console.print(f"kubernetes {await server_version(api)} (kubeconfig {kubeconfig})")
        crds = await install_crds(api)
        console.print(f"CRD installed: {', '.join(crds)}")
        await fresh_namespace(api, options.namespace)
        console.print(f"namespace {options.namespace}: created")

        console.rule(Text("models, model servers, router, Prometheus, operator", style="bold green"), align="left")
        started = time.monotonic()
        models = train_classifiers(work / "models")
        bad = (
            models.failing(FAILING_SHARE, base=models.healthy)
            if options.bad == "failing"
            else models.slow(SLOW_MS, base=models.healthy)
        )
        artifacts = {"1": models.stable, "2": models.healthy, "3": bad}
        console.print(
            f"trained in {time.monotonic() - started:.2f}s on scikit-learn's breast cancer data "
            f"({len(models.dataset)} rows): v1 {models.stable.label} (logistic regression), "
            f"v2 {models.healthy.label} (more regularised, agrees on 99%), v3 {bad.label} ({bad.model_class})"
        )
        stack = Stack.plan(
            artifacts,
            namespace=options.namespace,
            name=NAME,
            kubeconfig=kubeconfig,
            work_dir=work,
            workers={"3": SLOW_WORKERS} if options.bad == "slow" else None,
        )
        stacks.append(stack)
        stack.start()
        for version, server in stack.servers.items():
            console.print(f"model server v{version}: {server.url} ({server.artifact.label})")
        console.print(f"router:         {stack.router.url} (follows ConfigMap {options.namespace}/{NAME}-router)")
        console.print(f"prometheus:     {stack.prometheus.url} (scrapes all of the above every {SCRAPE_INTERVAL_S:g}s)")
        console.print(f"operator:       modelrollout run --namespace {options.namespace} (ready)")
        demo = Demo(
            console=console,
            kube=api,
            api=Api(connection, options.namespace),
            namespace=options.namespace,
            name=NAME,
            stack=stack,
            artifacts=artifacts,
            bad=options.bad,
            rate=options.rate,
        )
        await demo.apply_first(stack.prometheus.url)
        stack.router.start()
        stack.load = Load(f"{stack.router.url}/v2/models/{NAME}/infer", models.dataset, rate=options.rate).start()
        console.print(Text(f"load: {options.rate:g} requests/s through the router from now on", style="blue"))
        await asyncio.sleep(4)  # a few scrapes of stable under load before the first rollout
        await demo.rollout_good()
        await demo.rollout_bad()
        return demo
    finally:
        await api.close()


def summary(demo: Demo, elapsed: float) -> Text:
    load = demo.stack.load.stop() if demo.stack.load is not None else LoadSummary(())
    demo.stack.load = None
    text = Text("")
    for key, value in demo.facts.items():
        text.append(f"  {key}: {value}\n")
    versions = ", ".join(f"v{v} {n}" for v, n in sorted(load.by_version.items(), key=_version_key))
    failed = len(load.failures)
    text.append(f"  clients: {load.total} requests at {demo.rate:g}/s, answered by {versions}; ")
    text.append(f"{failed} failed\n", style="bold red" if failed else "bold green")
    text.append(f"  {elapsed:.0f}s from start to here")
    return text


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    # Ctrl-C, kill and a closed terminal all tear down; SIGINT even when a non-interactive shell ignored it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    console = Console(highlight=False)
    begin = time.monotonic()
    shutil.rmtree(options.work_dir, ignore_errors=True)
    options.work_dir.mkdir(parents=True)
    cluster_log = options.work_dir / "cluster.log"
    stacks: list[Stack] = []
    code = 0
    kubeconfig = options.kubeconfig
    try:
        console.rule(Text("local control plane, CRD, namespace", style="bold green"), align="left")
        if kubeconfig is None:
            kubeconfig = cluster_up(options.cluster, cluster_log)
            console.print(f"cluster {options.cluster}: up ({time.monotonic() - begin:.0f}s, log {cluster_log})")
        demo = asyncio.run(run_demo(console, options, kubeconfig, stacks))
        console.print()
        console.rule(Text("summary", style="bold green"), align="left")
        console.print(summary(demo, time.monotonic() - begin))
        console.print()
        console.print(look_around(options, kubeconfig))
        if options.keep:
            console.print(Text("\nKEEP=1: all of it keeps running; Ctrl-C stops the processes (the cluster stays)"))
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    except KeyboardInterrupt:
        console.print(Text("\ninterrupted: tearing down", style="yellow"))
        code = 130
    except (DemoFailed, AssertionError) as exc:  # AssertionError: a process of testkit did not start
        console.print(Text(f"\nthe demo failed: {exc}\nlogs of every process: {options.work_dir}", style="bold red"))
        code = 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not leave processes behind
        teardown(console, options, stacks, started_cluster=options.kubeconfig is None)
    return code


def teardown(console: Console, options: Options, stacks: list[Stack], *, started_cluster: bool) -> None:
    begin = time.monotonic()
    for stack in stacks:
        stack.stop()
    if started_cluster and not options.keep:
        cluster_down(options.cluster, options.work_dir / "cluster.log")
        console.print(
            f"torn down: processes stopped, cluster {options.cluster} deleted ({time.monotonic() - begin:.0f}s)"
        )
    elif started_cluster:
        console.print(
            f"processes stopped; cluster {options.cluster} kept (make cluster-down CLUSTER_NAME={options.cluster})"
        )


if __name__ == "__main__":
    sys.exit(main())
