from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import Condition, HistoryEntry, ModelDeploymentStatus, RevisionRef
from modelrollout.planning.observe import RevisionHealth
from modelrollout.planning.reconcile import Observed, Plan, PlanSettings, plan_online
from modelrollout.planning.revision import revision_of
from tests.support.manifests import load_example

SETTINGS = PlanSettings(default_image="registry.example/model-server:1", progress_deadline_s=600, history_limit=3)
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def md(
    version: str = "1", *, status: ModelDeploymentStatus | None = None, strategy: str = "direct", replicas: int = 2
) -> ModelDeployment:
    body = load_example("online-direct.yaml")
    # Every spec change bumps metadata.generation, as the API server does.
    generation = 3 + int(version) + (replicas != 2) + (strategy != "direct")
    body["metadata"] = {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": generation}
    body["spec"]["model"]["version"] = version
    body["spec"]["online"] = {"replicas": replicas}
    if strategy == "canary":
        body["spec"]["rollout"] = {"strategy": "canary", "canary": {"steps": [{"setWeight": 10}]}}
    if status is not None:
        body["status"] = status.to_wire()
    return ModelDeployment.model_validate(body)


def rev(version: str) -> RevisionRef:
    return RevisionRef(revision=revision_of(md(version).spec, default_image=SETTINGS.default_image), version=version)


V1, V2, V3 = rev("1"), rev("2"), rev("3")


def up(ref: RevisionRef, *, ready: int = 2, failure: str | None = None) -> RevisionHealth:
    return RevisionHealth(
        ref.revision, desired=2, ready=ready, available=failure is None and ready == 2, failure=failure
    )


def observed(*healths: RevisionHealth, hpas: bool = False) -> Observed:
    existing = {("Deployment", f"iris-{h.revision}") for h in healths}
    existing |= {("Service", "iris"), ("Service", "iris-stable"), ("Service", "iris-canary")}
    existing |= {("PodDisruptionBudget", "iris")}
    if hpas:
        existing |= {("HorizontalPodAutoscaler", f"iris-{h.revision}") for h in healths}
    return Observed(revisions={h.revision: h for h in healths}, existing=frozenset(existing))


def plan(resource: ModelDeployment, seen: Observed, *, now: datetime = T0) -> Plan:
    return plan_online(resource, observed=seen, settings=SETTINGS, now=now)


def applied(p: Plan, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in p.apply if o["kind"] == kind}


def selected(p: Plan) -> dict[str, str]:
    return {name: svc["spec"]["selector"]["modelrollout.dev/revision"] for name, svc in applied(p, "Service").items()}


def condition(p: Plan, kind: str) -> Condition:
    return next(c for c in p.status.conditions if c.type == kind)


def reasons(p: Plan) -> list[str]:
    return [e.reason for e in p.events]


def healthy_on(ref: RevisionRef) -> ModelDeploymentStatus:
    return plan(md(ref.version), observed(up(ref))).status.model_copy(update={"stable": ref, "phase": "Healthy"})


# --- the first revision ------------------------------------------------------------------------------------


def test_first_revision_is_brought_up_and_served_before_it_is_stable() -> None:
    p = plan(md("1"), Observed())
    assert p.status.phase == "Progressing"
    assert p.status.stable is None
    assert p.status.canary == V1
    assert set(applied(p, "Deployment")) == {f"iris-{V1.revision}"}
    assert selected(p) == {"iris": V1.revision, "iris-stable": V1.revision, "iris-canary": V1.revision}
    assert condition(p, "Ready").status == "False"
    assert condition(p, "Progressing").status == "True"
    assert p.delete == []
    assert reasons(p) == [], "nothing was applied before, so nothing counts as restored"


def test_first_revision_becomes_stable_once_available() -> None:
    first = plan(md("1"), Observed())
    p = plan(md("1", status=first.status), observed(up(V1)), now=T0 + timedelta(seconds=5))
    assert p.status.phase == "Healthy"
    assert p.status.stable == V1
    assert p.status.canary is None
    assert p.status.replicas["stable"].ready == 2
    assert condition(p, "Ready").status == "True"
    assert reasons(p) == ["RevisionAvailable"]


def test_first_revision_that_cannot_start_is_degraded_and_said_once() -> None:
    failing = observed(up(V1, ready=0, failure="pod p container model-server is ErrImagePull: not found"))
    p = plan(md("1", status=plan(md("1"), Observed()).status), failing)
    assert p.status.phase == "Degraded"
    assert "ErrImagePull" in (p.status.message or "")
    assert condition(p, "Degraded").status == "True"
    assert condition(p, "Degraded").reason == "RevisionFailed"
    assert reasons(p) == ["RevisionFailed"]
    again = plan(md("1", status=p.status), failing)
    assert "RevisionFailed" not in reasons(again), "an event per decision, not per pass"


# --- steady state -------------------------------------------------------------------------------------------


def test_steady_state_is_a_fixed_point() -> None:
    status = healthy_on(V1)
    first = plan(md("1", status=status), observed(up(V1)))
    second = plan(md("1", status=first.status), observed(up(V1)), now=T0 + timedelta(minutes=5))
    assert second.status == first.status, "nothing changes, not even transition times"
    assert second.apply == first.apply
    assert (first.delete, second.events) == ([], [])
    assert first.status.phase == "Healthy"


def test_drift_is_corrected() -> None:
    """The plan restores what differs and reports what it saw missing; an edited object is reported by the
    reconciler, which sees whether its apply actually changed it (no race with the edit)."""
    status = healthy_on(V1)
    edited = RevisionHealth(V1.revision, desired=5, ready=5, available=True)
    missing_service = observed(edited).existing - {("Service", "iris-canary")}
    p = plan(md("1", status=status), Observed(revisions={V1.revision: edited}, existing=missing_service))
    assert applied(p, "Deployment")[f"iris-{V1.revision}"]["spec"]["replicas"] == 2
    assert "iris-canary" in applied(p, "Service")
    assert reasons(p) == ["ChildRestored"]


def test_a_new_revision_is_not_reported_as_restored() -> None:
    rolling = plan(md("2", status=healthy_on(V1)), observed(up(V1)))
    assert "ChildRestored" not in reasons(rolling)
    assert f"iris-{V2.revision}" in applied(rolling, "Deployment")


def test_stray_revisions_are_removed() -> None:
    p = plan(md("1", status=healthy_on(V1)), observed(up(V1), up(V3)))
    assert p.delete == [("Deployment", f"iris-{V3.revision}")]
    assert "RevisionRemoved" in reasons(p)


def test_status_reports_modes_generation_and_replicas() -> None:
    p = plan(md("1", status=healthy_on(V1)), observed(up(V1, ready=1)))
    assert (p.status.modes, p.status.observed_generation) == ("online", 4)
    assert p.status.replicas["stable"].model_dump() == {"desired": 2, "ready": 1}
    assert p.status.phase == "Progressing"
    assert condition(p, "Ready").status == "False"


# --- direct replacement ------------------------------------------------------------------------------------


def test_direct_brings_the_new_revision_up_beside_stable() -> None:
    p = plan(md("2", status=healthy_on(V1)), observed(up(V1)))
    assert p.status.phase == "Progressing"
    assert (p.status.stable, p.status.canary) == (V1, V2)
    assert p.status.rollout_started_at == T0
    assert set(applied(p, "Deployment")) == {f"iris-{V1.revision}", f"iris-{V2.revision}"}
    assert selected(p) == {"iris": V1.revision, "iris-stable": V1.revision, "iris-canary": V2.revision}
    assert condition(p, "Ready").status == "True", "stable still serves"
    assert p.delete == []


def test_direct_switches_once_available_then_removes_the_old_revision() -> None:
    waiting = plan(md("2", status=healthy_on(V1)), observed(up(V1), up(V2, ready=1)))
    assert waiting.status.canary == V2
    p = plan(md("2", status=waiting.status), observed(up(V1), up(V2)), now=T0 + timedelta(seconds=30))
    assert p.status.phase == "Healthy"
    assert (p.status.stable, p.status.canary) == (V2, None)
    assert selected(p) == {"iris": V2.revision, "iris-stable": V2.revision, "iris-canary": V2.revision}
    assert p.delete == [("Deployment", f"iris-{V1.revision}")]
    assert reasons(p) == ["RevisionPromoted", "RevisionRemoved"]
    entry = p.status.history[-1]
    assert (entry.revision, entry.outcome, entry.started_at, entry.finished_at) == (
        V2.revision,
        "Promoted",
        T0,
        T0 + timedelta(seconds=30),
    )
    assert p.status.rollout_started_at is None


def test_direct_failure_keeps_stable_serving_and_never_removes_it() -> None:
    status = plan(md("2", status=healthy_on(V1)), observed(up(V1))).status
    p = plan(md("2", status=status), observed(up(V1), up(V2, ready=0, failure="pod p is CrashLoopBackOff")))
    assert p.status.phase == "Degraded"
    assert (p.status.stable, p.status.canary) == (V1, V2)
    assert selected(p)["iris"] == V1.revision
    assert p.delete == []
    assert f"iris-{V1.revision}" in applied(p, "Deployment")
    assert condition(p, "Ready").status == "True"
    assert condition(p, "Degraded").message == "pod p is CrashLoopBackOff"
    assert "keeps serving" in (p.status.message or "")


def test_a_newer_target_supersedes_the_candidate() -> None:
    rolling = plan(md("2", status=healthy_on(V1)), observed(up(V1))).status
    p = plan(md("3", status=rolling), observed(up(V1), up(V2, ready=1)), now=T0 + timedelta(minutes=1))
    assert p.status.canary == V3
    assert p.delete == [("Deployment", f"iris-{V2.revision}")]
    entry = p.status.history[-1]
    assert (entry.revision, entry.outcome) == (V2.revision, "Superseded")
    assert "RevisionSuperseded" in reasons(p)
    assert p.status.rollout_started_at == T0 + timedelta(minutes=1)


def test_going_back_to_stable_abandons_the_candidate() -> None:
    rolling = plan(md("2", status=healthy_on(V1)), observed(up(V1))).status
    p = plan(md("1", status=rolling), observed(up(V1), up(V2, ready=0, failure="bad")))
    assert (p.status.phase, p.status.stable, p.status.canary) == ("Healthy", V1, None)
    assert p.delete == [("Deployment", f"iris-{V2.revision}")]
    assert p.status.history[-1].outcome == "Superseded"
    assert condition(p, "Degraded").status == "False"


def test_progressive_strategies_wait_for_the_rollout_engine_without_touching_stable() -> None:
    p = plan(md("2", status=healthy_on(V1), strategy="canary"), observed(up(V1)))
    assert p.status.phase == "Paused"
    assert p.status.stable == V1
    assert set(applied(p, "Deployment")) == {f"iris-{V1.revision}"}
    assert "rollout engine" in (p.status.message or "")


def test_autoscaled_revisions_get_their_own_hpa_which_goes_with_them() -> None:
    def scaled(version: str, status: ModelDeploymentStatus | None = None) -> ModelDeployment:
        resource = md(version, status=status)
        online = {"autoscaling": {"minReplicas": 3, "maxReplicas": 6}}
        return ModelDeployment.model_validate(
            {**resource.to_wire(), "spec": {**resource.to_wire()["spec"], "online": online}}
        )

    a, b = (
        RevisionRef(revision=revision_of(scaled(v).spec, default_image=SETTINGS.default_image), version=v)
        for v in ("1", "2")
    )
    rolling = plan(scaled("2", healthy_on(a)), observed(up(a)))
    assert set(applied(rolling, "HorizontalPodAutoscaler")) == {f"iris-{a.revision}", f"iris-{b.revision}"}
    assert all("replicas" not in d["spec"] for d in applied(rolling, "Deployment").values())
    done = plan(scaled("2", rolling.status), observed(up(a), up(b), hpas=True))
    assert set(applied(done, "HorizontalPodAutoscaler")) == {f"iris-{b.revision}"}
    assert done.delete == [("Deployment", f"iris-{a.revision}"), ("HorizontalPodAutoscaler", f"iris-{a.revision}")]
    assert reasons(done).count("RevisionRemoved") == 1


def test_objects_the_spec_no_longer_needs_are_pruned() -> None:
    # replicas 2 -> 1: the PodDisruptionBudget goes; a leftover HPA from autoscaling that was turned off goes too
    seen = observed(up(V1), hpas=True)
    p = plan(md("1", status=healthy_on(V1), replicas=1), seen)
    assert p.delete == [("HorizontalPodAutoscaler", f"iris-{V1.revision}"), ("PodDisruptionBudget", "iris")]
    assert reasons(p).count("ObjectRemoved") == 2
    assert "replicas" in applied(p, "Deployment")[f"iris-{V1.revision}"]["spec"], "replicas are ours again"


def test_history_is_bounded() -> None:
    old = [
        HistoryEntry(revision=f"r{i}", version=str(i), outcome="Promoted", started_at=T0, finished_at=T0)
        for i in range(3)
    ]
    status = healthy_on(V1).model_copy(update={"history": old})
    waiting = plan(md("2", status=status), observed(up(V1))).status
    p = plan(md("2", status=waiting), observed(up(V1), up(V2)))
    assert [h.revision for h in p.status.history] == ["r1", "r2", V2.revision]


def test_conditions_keep_their_transition_time_until_they_change() -> None:
    status = healthy_on(V1)
    later = plan(md("1", status=status), observed(up(V1)), now=T0 + timedelta(hours=1))
    assert condition(later, "Ready").last_transition_time == T0
    broken = plan(md("1", status=later.status), observed(up(V1, ready=0, failure="x")), now=T0 + timedelta(hours=2))
    assert condition(broken, "Ready").last_transition_time == T0 + timedelta(hours=2)


def test_plan_needs_a_stored_online_resource() -> None:
    body = load_example("batch.yaml")
    with pytest.raises(ValueError, match=r"spec\.online"):
        plan(ModelDeployment.model_validate(body), Observed())
