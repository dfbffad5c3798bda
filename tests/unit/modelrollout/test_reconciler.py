"""The reconciler shell on an in-memory API (testkit/fake_kube.py): the order of a pass (pods first, then the
decision's events and status, then traffic, then pods taken away), drift and restoration reports, verbs consumed
once, and a refused child reported without touching traffic. The same behaviour against the real API server is in
tests/integration/operator; these run in milliseconds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from testkit.fake_kube import FakeKube
from testkit.manifests import load_example

from modelrollout.api.resource import KIND
from modelrollout.reconciler import Reconciler
from modelrollout.rollout.verbs import VERB_ANNOTATION
from modelrollout.settings import OperatorSettings, PlanningSettings

NS, NAME = "ml", "churn"
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
STEPS = [{"setWeight": 20}, {"pause": {}}]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def reconciler(kube: FakeKube, clock: Clock) -> AsyncIterator[Reconciler]:
    settings = OperatorSettings(planning=PlanningSettings(default_image="registry.example/model-server:1"))
    reconciler = Reconciler(kube, settings, clock=clock)  # type: ignore[arg-type]  # the fake's surface
    yield reconciler
    await reconciler.close()


def churn(kube: FakeKube, **online: Any) -> None:
    body = load_example("online-canary-router.yaml")
    body["metadata"] = {"name": NAME, "namespace": NS}
    body["spec"]["online"] = online or {"replicas": 2}
    body["spec"]["rollout"] = {
        "strategy": "canary",
        "canary": {"steps": STEPS},
        "trafficRouting": {"provider": "router"},
    }
    kube.create(body)


async def pass_(reconciler: Reconciler, kube: FakeKube) -> None:
    kube.journal.clear()
    await reconciler.reconcile({"metadata": {"namespace": NS, "name": NAME}})


def stored(kube: FakeKube) -> dict[str, Any]:
    return kube.objects[(KIND, NS, NAME)]


def status(kube: FakeKube) -> dict[str, Any]:
    return stored(kube).get("status") or {}


def position(kube: FakeKube, *entry: str) -> int:
    return kube.journal.index(entry)


def router_document(kube: FakeKube) -> dict[str, Any]:
    data = kube.objects[("ConfigMap", NS, f"{NAME}-router")]["data"]
    return json.loads(next(iter(data.values())))


def set_model(kube: FakeKube, version: str) -> None:
    obj = stored(kube)
    obj["spec"]["model"] = {**obj["spec"]["model"], "version": version, "uri": f"s3://models/churn/{version}/m.joblib"}
    obj["metadata"]["generation"] += 1


def verb(kube: FakeKube, name: str, id_: str) -> None:
    stored(kube)["metadata"].setdefault("annotations", {})[VERB_ANNOTATION] = json.dumps({"name": name, "id": id_})


async def serving_version_7(reconciler: Reconciler, kube: FakeKube) -> str:
    churn(kube)
    await pass_(reconciler, kube)
    await pass_(reconciler, kube)  # the first revision's pods became ready: it serves
    assert status(kube)["phase"] == "Healthy"
    revision: str = status(kube)["stable"]["revision"]
    return revision


async def test_a_first_pass_applies_the_pods_then_tells_and_records_the_decision_then_routes(
    reconciler: Reconciler, kube: FakeKube
) -> None:
    churn(kube)
    await pass_(reconciler, kube)
    applied = [e for e in kube.journal if e[0] == "apply"]
    revision = status(kube)["canary"]["revision"]
    assert ("apply", "Deployment", f"{NAME}-{revision}") in applied
    routing = position(kube, "apply", "ConfigMap", f"{NAME}-router")
    assert all(kube.journal.index(e) < routing for e in applied if e[1] != "ConfigMap"), kube.journal
    # Told (events), then recorded (status), then acted on (routing): a crash never leaves routing ahead of status.
    assert position(kube, "event", "RolloutStarted") < position(kube, "status", KIND, NAME) < routing
    assert kube.names("Service") == {NAME, f"{NAME}-stable", f"{NAME}-canary"}
    assert kube.names("PodDisruptionBudget") == {NAME}

    await pass_(reconciler, kube)
    assert status(kube)["phase"] == "Healthy"
    assert [e[1] for e in kube.calls("event")] == ["Promoted"]


async def test_a_canary_gets_its_pods_before_its_weight_and_an_abort_takes_the_weight_before_the_pods(
    reconciler: Reconciler, kube: FakeKube, clock: Clock
) -> None:
    stable = await serving_version_7(reconciler, kube)
    set_model(kube, "8")
    clock.now += timedelta(seconds=5)
    await pass_(reconciler, kube)
    candidate = status(kube)["canary"]["revision"]
    assert status(kube)["weights"]["canary"] == 0, "no weight before the candidate's pods are ready"
    clock.now += timedelta(seconds=5)
    await pass_(reconciler, kube)
    assert status(kube)["weights"]["canary"] == 20
    assert router_document(kube)["weights"]["canary"] == 20

    verb(kube, "abort", "v-1")
    clock.now += timedelta(seconds=5)
    await pass_(reconciler, kube)
    routing = position(kube, "apply", "ConfigMap", f"{NAME}-router")
    shrink = position(kube, "apply", "Deployment", f"{NAME}-{candidate}")
    assert position(kube, "status", KIND, NAME) < routing < shrink, kube.journal
    assert kube.objects[("Deployment", NS, f"{NAME}-{candidate}")]["spec"]["replicas"] == 0
    assert router_document(kube)["weights"]["canary"] == 0
    assert status(kube)["stable"]["revision"] == stable
    assert status(kube)["lastVerbId"] == "v-1"
    # The verb is consumed after status says it was applied, and only once.
    assert position(kube, "status", KIND, NAME) < position(kube, "unannotate", KIND, NAME, VERB_ANNOTATION)
    assert VERB_ANNOTATION not in (stored(kube)["metadata"].get("annotations") or {})
    assert "Aborted" in [e[1] for e in kube.calls("event")]


async def test_hand_edits_and_deletions_are_undone_and_reported(reconciler: Reconciler, kube: FakeKube) -> None:
    revision = await serving_version_7(reconciler, kube)
    kube.edit("Deployment", NS, f"{NAME}-{revision}", replicas=5)
    kube.remove("Service", NS, f"{NAME}-stable")
    await pass_(reconciler, kube)
    assert kube.objects[("Deployment", NS, f"{NAME}-{revision}")]["spec"]["replicas"] == 2
    assert ("Service", NS, f"{NAME}-stable") in kube.objects
    reasons = [e[1] for e in kube.calls("event")]
    assert "DriftCorrected" in reasons
    assert "ChildRestored" in reasons

    await pass_(reconciler, kube)
    assert kube.calls("event") == [], "a converged pass reports nothing"


async def test_a_refused_child_stops_the_pass_before_the_routing_and_is_reported(
    reconciler: Reconciler, kube: FakeKube
) -> None:
    kube.refuse["PodDisruptionBudget"] = (403, "poddisruptionbudgets is forbidden by policy")
    churn(kube)
    await pass_(reconciler, kube)
    assert ("ConfigMap", NS, f"{NAME}-router") not in kube.objects, "no traffic moved after a refusal"
    said = status(kube)
    degraded = next(c for c in said["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "ApplyFailed"
    assert "PodDisruptionBudget churn (HTTP 403): poddisruptionbudgets is forbidden by policy" in said["message"]
    assert [e[1] for e in kube.calls("event")] == ["ApplyFailed"]

    kube.refuse.clear()
    await pass_(reconciler, kube)  # a resync before the retry is due: waits
    assert kube.calls("apply") == []
    await reconciler.reconcile({"metadata": {"namespace": NS, "name": NAME}}, scheduled=True)  # the retry
    assert ("ConfigMap", NS, f"{NAME}-router") in kube.objects
    assert next(c for c in status(kube)["conditions"] if c["type"] == "Degraded")["reason"] != "ApplyFailed"


async def test_no_lock_or_wake_up_outlives_a_deleted_model_deployment(reconciler: Reconciler, kube: FakeKube) -> None:
    await serving_version_7(reconciler, kube)
    assert len(reconciler._locks) == 0, "a lock kept after its passes"
    stored(kube)["spec"]["rollout"]["canary"]["steps"] = [{"setWeight": 20}, {"pause": {"duration": "1h"}}]
    set_model(kube, "8")
    await pass_(reconciler, kube)
    await pass_(reconciler, kube)  # at 20%, paused for an hour: the engine asks to be woken then
    assert list(reconciler._wakeups) == [(NS, NAME)]
    kube.remove(KIND, NS, NAME)
    await pass_(reconciler, kube)
    assert reconciler._wakeups == {}
    assert len(reconciler._locks) == 0


async def test_a_converged_pass_sends_nothing(reconciler: Reconciler, kube: FakeKube) -> None:
    await serving_version_7(reconciler, kube)
    await pass_(reconciler, kube)
    await pass_(reconciler, kube)
    assert kube.calls("apply", "status", "delete", "event") == [], "nothing changed, so nothing is written"


async def test_a_pass_asked_for_while_one_waits_is_folded_into_it(
    reconciler: Reconciler, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    churn(kube)
    started, release, runs = asyncio.Event(), asyncio.Event(), []

    async def slow(raw: dict[str, Any]) -> str:
        runs.append(raw["metadata"]["name"])
        started.set()
        await release.wait()
        return "ok"

    monkeypatch.setattr(reconciler, "_reconcile", slow)
    key = {"metadata": {"namespace": NS, "name": NAME}}
    first = asyncio.create_task(reconciler.reconcile(key))
    await started.wait()
    others = [asyncio.create_task(reconciler.reconcile(key)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *others)
    assert runs == [NAME, NAME], "one running, one waiting; the other four added nothing"


async def test_a_failed_pass_is_retried_soon_not_at_the_next_resync(
    reconciler: Reconciler, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    churn(kube)

    async def broken(_raw: dict[str, Any]) -> str:
        raise ConnectionResetError("the API server went away")

    monkeypatch.setattr(reconciler, "_reconcile", broken)
    await reconciler.reconcile({"metadata": {"namespace": NS, "name": NAME}})  # logged, not raised
    assert (NS, NAME) in reconciler._wakeups  # the retry is scheduled
    reconciler.forget((NS, NAME))
    assert (NS, NAME) not in reconciler._wakeups


async def test_a_pass_cut_short_before_its_record_posts_its_events_once_when_done_again(
    reconciler: Reconciler, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    churn(kube)
    kube.ready = False  # its pods stay unready: the pass done again decides the same
    record = kube.apply_status

    async def lost(*_: Any, **__: Any) -> dict[str, Any]:
        raise ConnectionResetError("the process died here")  # after the events, before the status

    monkeypatch.setattr(kube, "apply_status", lost)
    await pass_(reconciler, kube)
    assert [e[1] for e in kube.events] == ["RolloutStarted"]
    assert "status" not in stored(kube)
    monkeypatch.setattr(kube, "apply_status", record)
    await pass_(reconciler, kube)  # the same decision, from the same stored object
    assert [e[1] for e in kube.events] == ["RolloutStarted"], "told once"
    assert status(kube)["phase"] == "Promoting", "recorded: the first revision is brought up"


def member(kube: FakeKube, name: str, *, version: str, model: str = "churn") -> None:
    """A ModelDeployment `name` serving `version` of `model`, as its own passes would have left it."""
    body = load_example("online-canary-router.yaml")
    body["metadata"] = {"name": name, "namespace": NS}
    body["spec"]["model"] = {**body["spec"]["model"], "name": model, "version": version}
    body["status"] = {"phase": "Healthy", "stable": {"revision": f"r-{version}", "version": version}}
    kube.create(body)


GRAPH = {
    "members": [{"name": "b", "modelDeployment": "churn-b"}, {"name": "c", "modelDeployment": "churn-c"},
                {"name": "fr", "modelDeployment": "churn-fr"}],
    "ensemble": {"members": ["self", "b", "c"], "quorum": 2, "memberTimeout": "500ms"},
    "routes": [{"to": "fr", "feature": "country", "equals": "FR"}],
}  # fmt: skip


async def test_a_serving_graph_routes_to_its_members_and_says_where_each_stands(
    reconciler: Reconciler, kube: FakeKube
) -> None:
    member(kube, "churn-b", version="b1")
    member(kube, "churn-fr", version="fr1", model="churn-fr")  # another model name: its requests would not find it
    churn(kube, replicas=2, graph=GRAPH)
    await pass_(reconciler, kube)
    await pass_(reconciler, kube)
    assert status(kube)["phase"] == "Healthy"

    document = router_document(kube)
    assert document["schemaVersion"] == 2
    assert document["backends"]["b"] == {"url": "http://churn-b.ml.svc:80", "version": "b1"}
    assert document["backends"]["c"]["version"] == "unknown"  # no such ModelDeployment (yet)
    assert document["ensembles"]["ensemble"]["members"] == ["stable", "b", "c"]
    assert document["ensembles"]["ensemble"]["memberTimeoutSeconds"] == 0.5
    assert document["control"] == "ensemble"
    assert document["routes"][-1] == {"feature": "country", "equals": "FR", "to": "fr"}
    members = {m["name"]: m for m in status(kube)["graph"]["members"]}
    assert members["self"]["phase"] == "Healthy"
    assert members["self"]["modelDeployment"] == NAME
    assert members["b"]["phase"] == "Healthy"
    assert members["b"]["stable"]["version"] == "b1"
    assert members["c"]["phase"] == "Missing"
    assert members["fr"]["phase"] == "OtherModel"

    # A new version of the graph's own model rolls out inside the ensemble: the canary's ensemble gets the weight.
    set_model(kube, "8")
    await pass_(reconciler, kube)
    await pass_(reconciler, kube)
    document = router_document(kube)
    assert document["ensembles"]["ensemble-canary"]["members"] == ["canary", "b", "c"]
    assert {s["backend"]: s["weight"] for s in document["split"]} == {"ensemble-canary": 20, "ensemble": 80}
    canary = next(m for m in status(kube)["graph"]["members"] if m["name"] == "self")
    assert canary["canary"]["version"] == "8"
    assert canary["canaryWeight"] == 20


async def test_a_changed_status_is_told_so_that_the_graphs_naming_it_pass_again(kube: FakeKube, clock: Clock) -> None:
    told: list[tuple[str, str]] = []
    settings = OperatorSettings(planning=PlanningSettings(default_image="registry.example/model-server:1"))
    reconciler = Reconciler(kube, settings, clock=clock, status_changed=lambda ns, name: told.append((ns, name)))  # type: ignore[arg-type]
    try:
        churn(kube)
        await pass_(reconciler, kube)
        assert told == [(NS, NAME)]
        await pass_(reconciler, kube)  # its pods ready: Healthy
        await pass_(reconciler, kube)  # nothing changed: nothing told
        assert told == [(NS, NAME), (NS, NAME)]
    finally:
        await reconciler.close()
