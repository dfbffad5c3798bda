"""Two operator processes on one namespace: only the holder of the Lease writes; killed (kill -9) in the middle of
a canary, the other takes over within the documented bound and finishes the rollout with no step applied twice
and one promotion; stopped gracefully, the leader hands the lease over at once. Probes answer on both. A leader
that stalls (SIGSTOP) past its lease finds, when it resumes, that it lost it: it exits, having written nothing."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client
from prometheus_client.parser import text_string_to_metric_families
from testkit.crds import install_crds
from testkit.operator import OperatorProcess, stop_and_report
from testkit.ports import free_port
from testkit.waiting import eventually

from modelrollout.api import API_VERSION, GROUP, KIND, PLURAL, VERSION
from modelrollout.leader.election import Timing
from modelrollout.main import EXIT_LOST_LEASE
from tests.conftest import Cluster
from tests.integration.operator.k8s import K8s

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Short durations (the defaults are 15 / 10 / 2) so that a takeover fits in a test; same rules.
TIMING = Timing(lease_duration_s=4, renew_deadline_s=3, retry_period_s=0.5)
LEASE = "modelrollout-operator"
# API latency and Kopf's own start on a loaded 2-core machine: on top of the bound, never part of it.
MARGIN_S = 2.0
STEPS = [
    {"setWeight": 20},
    {"pause": {"duration": "3s"}},
    {"setWeight": 50},
    {"pause": {"duration": "3s"}},
    {"setWeight": 80},
    {"pause": {"duration": "3s"}},
]


def _manifest(version: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "churn"},
        "spec": {
            "model": _model(version),
            "online": {"replicas": 2},
            "rollout": {"strategy": "canary", "canary": {"steps": STEPS}, "trafficRouting": {"provider": "router"}},
        },
    }


def _model(version: str) -> dict[str, Any]:
    return {
        "name": "churn",
        "version": version,
        "uri": f"s3://models/churn/{version}/model.joblib",
        "format": "sklearn",
    }


@dataclass
class Pair:
    a: OperatorProcess
    b: OperatorProcess
    ns: str
    api: client.ApiClient

    async def holder(self) -> str | None:
        try:
            lease = await client.CoordinationV1Api(self.api).read_namespaced_lease(LEASE, self.ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return str(lease.spec.holder_identity or "")

    async def held_by(self, name: str, *, within: float) -> float:
        """Seconds until `name` holds the lease, polled every 50 ms."""
        started = time.monotonic()

        async def held() -> bool | None:
            return True if await self.holder() == name else None

        await eventually(held, within=within, interval=0.05, what=f"{name} to hold the lease")
        return time.monotonic() - started

    async def status(self) -> dict[str, Any]:
        obj = await client.CustomObjectsApi(self.api).get_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, "churn"
        )
        return dict(obj.get("status") or {})

    async def events(self) -> list[Any]:
        selector = f"involvedObject.kind={KIND},involvedObject.name=churn"
        listed = await client.CoreV1Api(self.api).list_namespaced_event(self.ns, field_selector=selector)
        return sorted(listed.items, key=lambda e: e.metadata.name)  # `<object>.<hex ns>`: in order of writing


async def _probe(process: OperatorProcess, which: str) -> tuple[int, dict[str, Any]]:
    url = process.liveness_url if which == "healthz" else process.readiness_url
    async with httpx.AsyncClient() as http:
        answer = await http.get(url or "", timeout=5)
    return answer.status_code, answer.json()


async def _ready_as(process: OperatorProcess, role: str) -> dict[str, Any]:
    async def ready() -> dict[str, Any] | None:
        code, body = await _probe(process, "readyz")
        return body if code == 200 and body["role"] == role else None

    return await eventually(ready, within=30, interval=0.1, what=f"{process.name} Ready as {role}")


def _metrics(process: OperatorProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(process.metrics_url or "", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _verbs(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> set[str]:
    return {
        dict(labels)["verb"] for (name, labels), v in samples.items() if name == "modelrollout_api_requests_total" and v
    }


@pytest.fixture
async def pair(
    cluster: Cluster, kube_api: client.ApiClient, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Pair]:
    await install_crds(kube_api)

    def replica(name: str, **env: str) -> OperatorProcess:
        return OperatorProcess(
            kubeconfig=cluster.kubeconfig,
            namespace=namespace,
            log_dir=tmp_path,
            name=name,
            extra_env={
                "MODELROLLOUT_LIVENESS_PORT": str(free_port()),
                "MODELROLLOUT_METRICS_PORT": str(free_port()),
                "MODELROLLOUT_LEASE_DURATION_S": str(TIMING.lease_duration_s),
                "MODELROLLOUT_RENEW_DEADLINE_S": str(TIMING.renew_deadline_s),
                "MODELROLLOUT_RETRY_PERIOD_S": str(TIMING.retry_period_s),
                **env,
            },
        )

    pair = Pair(replica("operator-a"), replica("operator-b", MODELROLLOUT_LOG_FORMAT="json"), namespace, kube_api)
    try:
        yield pair
    finally:
        stop_and_report(pair.a, request)
        stop_and_report(pair.b, request)


async def test_only_the_leader_writes_and_a_standby_takes_over_a_canary_killed_mid_way(pair: Pair) -> None:
    await _only_the_leader_writes(pair)
    done = await _killed_mid_canary(pair)
    revision = done["stable"]["revision"]

    async def promoted() -> list[Any] | None:
        # The leader posts an Event after the status write it describes: the status read above can come first.
        found = [e for e in await pair.events() if revision in (e.message or "")]
        return found if any(e.reason == "Promoted" for e in found) else None

    events = await eventually(promoted, within=10, what="the promotion's Event")
    steps = [(e.reason, _percent(e.message), e.reporting_instance) for e in events if e.reason == "WeightSet"]
    assert steps == [
        ("WeightSet", "20", "operator-a"),
        ("WeightSet", "50", "operator-a"),
        ("WeightSet", "80", "operator-b"),
    ], "each step applied once, in order, across the takeover"
    assert [(e.reason, e.reporting_instance) for e in events if e.reason in ("RolloutStarted", "Promoted")] == [
        ("RolloutStarted", "operator-a"),
        ("Promoted", "operator-b"),
    ], "one rollout, one promotion"
    assert [h["outcome"] for h in done["history"] if h["revision"] == revision] == ["Promoted"]
    samples = _metrics(pair.b)
    assert samples[("modelrollout_leader", ())] == 1
    assert samples[("modelrollout_leader_transitions_total", ())] == 1
    await _graceful_handover(pair)
    _json_logs(pair.b)


def _percent(message: str) -> str | None:
    found = re.search(r"gets (\d+)%", message)
    return found.group(1) if found else None


async def _healthy_on(pair: Pair, version: str) -> dict[str, Any] | None:
    found = await pair.status()
    ok = found.get("phase") == "Healthy" and (found.get("stable") or {}).get("version") == version
    return found if ok and "canary" not in found else None


async def _only_the_leader_writes(pair: Pair) -> None:
    a, b = pair.a, pair.b
    a.start()
    await pair.held_by("operator-a", within=30)
    b.start()
    standby = await _ready_as(b, "standby")
    assert standby["holder"] == "operator-a"
    assert (await _probe(b, "healthz"))[0] == 200
    assert (await _ready_as(a, "leader"))["identity"] == "operator-a"

    await client.CustomObjectsApi(pair.api).create_namespaced_custom_object(
        GROUP, VERSION, pair.ns, PLURAL, _manifest("1")
    )
    await eventually(lambda: _healthy_on(pair, "1"), within=60, what="version 1 Healthy")
    b_samples, a_samples = _metrics(b), _metrics(a)
    assert _verbs(b_samples) == {"get"}, "the standby only reads its lease"
    assert not b_samples.get(("modelrollout_reconcile_passes_total", (("result", "ok"),)))
    assert "apply" in _verbs(a_samples)
    assert (a_samples[("modelrollout_leader", ())], b_samples[("modelrollout_leader", ())]) == (1, 0)
    assert "kopf" not in b.log(), "nothing but the lease loop runs on a standby"
    assert "reconciler" not in b.log()
    assert {e.reporting_instance for e in await pair.events()} == {"operator-a"}


async def _killed_mid_canary(pair: Pair) -> dict[str, Any]:
    """kill -9 the leader once the canary is at 50% (in the pause after it); the status once promoted."""
    await K8s(pair.api, pair.ns).patch_spec("churn", {"model": _model("2")})

    async def at_half() -> bool | None:
        # The step's Event is posted right after its status: once it is there, nothing of the step is pending.
        return True if "50" in [_percent(e.message) for e in await pair.events()] else None

    await eventually(at_half, within=60, interval=0.1, what="the canary at 50%")
    pair.a.stop(graceful=False)
    killed = time.monotonic()
    takeover_s = await pair.held_by("operator-b", within=TIMING.takeover_bound_s() + 30)

    async def b_wrote() -> bool | None:
        return True if any(e.reporting_instance == "operator-b" for e in await pair.events()) else None

    await eventually(b_wrote, within=30, interval=0.1, what="operator-b's first Event")
    first_write_s = time.monotonic() - killed
    done = await eventually(lambda: _healthy_on(pair, "2"), within=60, what="version 2 promoted by operator-b")
    print(
        f"\ntakeover after kill -9: lease held by operator-b after {takeover_s:.2f}s (bound "
        f"{TIMING.takeover_bound_s():.2f}s = leaseDuration {TIMING.lease_duration_s}s + 2 x 1.2 x retryPeriod "
        f"{TIMING.retry_period_s}s), its first Event after {first_write_s:.2f}s"
    )
    assert pair.a.exit_code == -9
    assert takeover_s <= TIMING.takeover_bound_s() + MARGIN_S
    return done


async def _graceful_handover(pair: Pair) -> None:
    """SIGTERM to the leader: Kopf stops, the lease is released, the standby holds it within a retry period."""
    pair.a.start()
    await _ready_as(pair.a, "standby")
    stopping = time.monotonic()
    pair.b.stop()  # returns once it exited
    exited_s = time.monotonic() - stopping
    handover_s = await pair.held_by("operator-a", within=30)
    print(f"graceful hand-over: operator-b exited {exited_s:.2f}s after SIGTERM, operator-a held the lease "
          f"{handover_s:.2f}s later")  # fmt: skip
    assert pair.b.exit_code == 0
    assert "released the lease" in pair.b.log()
    assert handover_s <= (1 + 0.2) * TIMING.retry_period_s + MARGIN_S
    await _ready_as(pair.a, "leader")

    async def resumed() -> bool | None:
        return True if "resuming 1 ModelDeployments" in pair.a.log().rsplit("===== operator start", 1)[-1] else None

    await eventually(resumed, within=30, what="operator-a to resume the ModelDeployment")


def _json_logs(process: OperatorProcess) -> None:
    """MODELROLLOUT_LOG_FORMAT=json: one object per line, Kopf's records included; ours about a ModelDeployment
    name it."""
    lines = [line for line in process.log().splitlines() if line.strip() and not line.startswith("=====")]
    records = [json.loads(line) for line in lines]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r["logger"].startswith("kopf") for r in records)
    assert any(r["logger"] == "modelrollout.reconciler" and r.get("name") == "churn" for r in records)
    # Every line a pass writes says where the rollout stands, whichever library wrote it.
    about_churn = [r for r in records if r.get("name") == "churn" and r["logger"] == "modelrollout.reconciler"]
    assert about_churn
    assert all(r.get("revision") and r.get("phase") for r in about_churn), about_churn


async def test_a_leader_that_stalled_past_its_lease_exits_when_it_resumes_and_writes_nothing(pair: Pair) -> None:
    a, b = pair.a, pair.b
    a.start()
    await pair.held_by("operator-a", within=30)
    b.start()
    await _ready_as(b, "standby")
    await client.CustomObjectsApi(pair.api).create_namespaced_custom_object(
        GROUP, VERSION, pair.ns, PLURAL, _manifest("1")
    )
    await eventually(lambda: _healthy_on(pair, "1"), within=60, what="version 1 Healthy")

    a.send(signal.SIGSTOP)  # a GC pause, a frozen VM: it cannot renew, and does not know it
    await pair.held_by("operator-b", within=TIMING.takeover_bound_s() + 30)
    await K8s(pair.api, pair.ns).patch_spec("churn", {"model": _model("2")})

    async def b_started_it() -> bool | None:
        return True if "20" in [_percent(e.message) for e in await pair.events()] else None

    await eventually(b_started_it, within=30, interval=0.1, what="operator-b at the canary's first step")
    resumed = time.monotonic()
    a.send(signal.SIGCONT)  # a's Kopf has the spec change queued: its first call must not go out

    async def a_exited() -> bool | None:
        return True if not a.alive() else None

    await eventually(a_exited, within=10, interval=0.05, what="operator-a to exit")
    print(f"\nstalled leader exited {time.monotonic() - resumed:.2f}s after it resumed")
    a.stop()
    assert a.exit_code == EXIT_LOST_LEASE
    assert "lost the lease" in a.log()
    assert await pair.holder() == "operator-b"
    started = next(e for e in await pair.events() if e.reason == "RolloutStarted" and "version 2" in e.message)
    later = [e for e in await pair.events() if e.metadata.name >= started.metadata.name]
    assert {e.reporting_instance for e in later} == {"operator-b"}, "nothing from operator-a once it lost the lease"
