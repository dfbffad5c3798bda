"""The pure half of a reconcile pass: what the engine is given, and the objects that make its decision real."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from testkit.manifests import load_example

from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import (
    HistoryEntry,
    ModelDeploymentStatus,
    ReplicaCounts,
    RevisionRef,
    ScheduledScaleDown,
    Weights,
)
from modelrollout.planning.names import ANNOTATION_REPLICAS, LABEL_REVISION
from modelrollout.planning.observe import RevisionHealth
from modelrollout.planning.reconcile import (
    Beside,
    Event,
    Observed,
    Plan,
    PlanSettings,
    RevisionState,
    candidate_failure,
    engine_input,
    plan_objects,
    starting_status,
    target_of,
    wanted_replicas,
)
from modelrollout.rollout import Action, EnsureRevision, RecordEvent, ScaleDown, tick

SETTINGS = PlanSettings(default_image="registry.example/model-server:1", progress_deadline_s=600, history_limit=3)
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CANARY = {"strategy": "canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}


def md(
    version: str = "1",
    *,
    status: ModelDeploymentStatus | None = None,
    rollout: dict[str, Any] | None = None,
    generation: int = 5,
    **online: Any,
) -> ModelDeployment:
    body = load_example("online-direct.yaml")
    body["metadata"] = {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": generation}
    body["spec"]["model"]["version"] = version
    body["spec"]["online"] = online or {"replicas": 4}
    body["spec"]["rollout"] = rollout or CANARY
    if status is not None:
        body["status"] = status.to_wire()
    return ModelDeployment.model_validate(body)


def rev(version: str) -> RevisionRef:
    return target_of(md(version).spec, SETTINGS)


V1, V2, V3 = rev("1"), rev("2"), rev("3")


def state(
    ref: RevisionRef, *, replicas: int = 4, ready: int | None = None, failure: str | None = None
) -> RevisionState:
    ready = replicas if ready is None else ready
    available = failure is None and ready >= replicas
    health = RevisionHealth(ref.revision, desired=replicas, ready=ready, available=available, failure=failure)
    stored = {
        "metadata": {"annotations": {ANNOTATION_REPLICAS: str(replicas)}},
        "spec": {"template": {"v": ref.version}},
    }
    return RevisionState(health=health, replicas=replicas, deployment=stored)


def observed(*states: RevisionState, extra: set[tuple[str, str]] | None = None) -> Observed:
    existing = {("Deployment", f"iris-{s.health.revision}") for s in states}
    existing |= {("Service", "iris"), ("Service", "iris-stable"), ("Service", "iris-canary")}
    existing |= {("PodDisruptionBudget", "iris"), ("ConfigMap", "iris-router")} | (extra or set())
    existing |= {(kind, "iris-router") for kind in ("Deployment", "ServiceAccount", "Role", "RoleBinding")}
    return Observed(revisions={s.health.revision: s for s in states}, existing=frozenset(existing))


def serving(ref: RevisionRef = V1, **update: Any) -> ModelDeploymentStatus:
    return ModelDeploymentStatus.model_validate({"phase": "Healthy", "stable": ref, "observed_generation": 4, **update})


def plan(
    resource: ModelDeployment, seen: Observed, *, decided: ModelDeploymentStatus | None = None, actions: Any = ()
) -> Plan:
    decided = decided or resource.status or ModelDeploymentStatus()
    return plan_objects(resource, decided=decided, actions=list(actions), observed=seen, settings=SETTINGS, now=T0)


def one_pass(
    resource: ModelDeployment, seen: Observed, *, now: datetime = T0, beside: Beside | None = None
) -> tuple[Plan, list[Action]]:
    """The reconciler's pass without I/O: tick on what was observed, then plan the objects."""
    status = starting_status(resource.status)
    decision = tick(
        engine_input(status, seen),
        resource.spec,
        target=target_of(resource.spec, SETTINGS),
        metrics=None,
        now=now,
        failure=candidate_failure(status, seen),
    )
    actions = list(decision.actions)
    return plan_objects(
        resource, decided=decision.status, actions=actions, observed=seen, settings=SETTINGS, now=now, beside=beside
    ), actions


def by_name(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Objects of `kind` by name; for Deployments, only the model's revisions (not the router)."""
    return {
        o["metadata"]["name"]: o
        for o in objects
        if o["kind"] == kind and o["metadata"]["labels"].get("modelrollout.dev/mode") != "router"
    }


def selects(p: Plan, service: str) -> str | None:
    selector: dict[str, str] = by_name(p.grow, "Service")[service]["spec"]["selector"]
    return selector.get(LABEL_REVISION)


# --- what the engine is given -------------------------------------------------------------------------------


def test_engine_input_describes_each_role_by_its_revisions_pods() -> None:
    status = serving(canary=V2)
    given = engine_input(status, observed(state(V1), state(V2, replicas=1, ready=0)))
    assert given.replicas["stable"].model_dump() == {"desired": 4, "ready": 4}
    assert given.replicas["canary"].model_dump() == {"desired": 1, "ready": 0}
    assert engine_input(serving(canary=V2), observed(state(V1))).replicas["canary"].ready == 0


def test_only_a_candidate_asked_to_run_pods_can_fail() -> None:
    bad = "pod iris-x container model-server is ErrImagePull"
    assert candidate_failure(serving(canary=V2), observed(state(V1), state(V2, ready=0, failure=bad))) == bad
    assert candidate_failure(serving(canary=V2), observed(state(V1), state(V2, replicas=0, failure=bad))) is None
    assert candidate_failure(serving(), observed(state(V1, failure=bad))) is None, "stable is not a candidate"


def test_wanted_replicas_start_from_the_last_ask_and_follow_the_actions_in_order() -> None:
    seen = observed(state(V1), state(V2, replicas=1))
    actions = [
        EnsureRevision(revision=V2, role="canary", replicas=2),
        ScaleDown(revision=V1.revision, reason="test"),
        EnsureRevision(revision=V3, role="canary", replicas=1),
    ]
    spec = md().spec
    assert wanted_replicas(spec, serving(canary=V2), seen, actions) == {V1.revision: 0, V2.revision: 2, V3.revision: 1}
    # A stable revision whose Deployment was deleted, and nobody asked anything of it: back at full size.
    assert wanted_replicas(spec, serving(), observed(), []) == {V1.revision: 4}


# --- the objects ---------------------------------------------------------------------------------------------


def test_a_first_revision_is_brought_up_at_full_size_behind_every_service() -> None:
    p, _ = one_pass(md(), Observed())
    (deployment,) = by_name(p.grow, "Deployment").values()
    assert deployment["metadata"]["name"] == f"iris-{V1.revision}"
    assert deployment["spec"]["replicas"] == 4
    assert {selects(p, s) for s in ("iris-stable", "iris-canary")} == {V1.revision}
    main = by_name(p.grow, "Service")["iris"]["spec"]["selector"]
    assert main == {"modelrollout.dev/name": "iris", "modelrollout.dev/mode": "router"}, "clients go to the router"
    assert p.status.canary == V1
    assert p.status.phase == "Promoting"
    assert not p.shrink
    assert not p.delete


def test_a_canary_step_gets_pods_before_traffic_and_its_own_service() -> None:
    resource = md("2", status=serving())
    p, actions = one_pass(resource, observed(state(V1)))
    deployments = by_name(p.grow, "Deployment")
    assert deployments[f"iris-{V2.revision}"]["spec"]["replicas"] == 1  # 20% of 4 pods, at least one
    assert deployments[f"iris-{V1.revision}"]["spec"]["template"] == {"v": "1"}, "stable keeps its stored pods"
    assert (selects(p, "iris-stable"), selects(p, "iris-canary")) == (V1.revision, V2.revision)
    assert p.status.canary == V2
    assert ("ConfigMap", "iris-router") not in p.delete, "the router's document stays while provider is router"
    assert any(isinstance(a, RecordEvent) and a.reason == "RolloutStarted" for a in actions)
    assert "RolloutStarted" in [e.reason for e in p.events]


@pytest.mark.parametrize(("weight", "main"), [(0, "stable"), (30, None), (100, "canary")])
def test_the_service_provider_splits_by_pods_behind_the_main_service(weight: int, main: str | None) -> None:
    rollout = {**CANARY, "trafficRouting": {"provider": "service"}}
    decided = serving(canary=V2, weights=Weights(stable=100 - weight, canary=weight))
    resource = md("2", status=decided, rollout=rollout)
    p = plan(resource, observed(state(V1), state(V2)))
    expected = {"stable": V1.revision, "canary": V2.revision, None: None}[main]
    assert selects(p, "iris") == expected
    assert ("ConfigMap", "iris-router") in p.delete, "no router document without the router provider"
    assert ("Deployment", "iris-router") in p.delete, "nor a router"


def test_a_rollback_moves_traffic_before_it_takes_the_candidates_pods() -> None:
    seen = observed(state(V1), state(V2, replicas=1, ready=0, failure="pod x is CrashLoopBackOff"))
    resource = md("2", status=serving(canary=V2, current_step=0, weights=Weights(stable=80, canary=20)))
    p, _ = one_pass(resource, seen)
    assert p.status.phase == "Degraded"
    assert p.status.held == V2
    (shrunk,) = by_name(p.shrink, "Deployment").values()
    assert shrunk["metadata"]["name"] == f"iris-{V2.revision}"
    assert shrunk["spec"]["replicas"] == 0
    assert selects(p, "iris-canary") == V1.revision, "the canary Service falls back to stable"
    assert f"iris-{V2.revision}" not in by_name(p.grow, "Deployment")


def test_the_previous_promoted_revision_is_kept_at_zero_for_undo_and_older_ones_pruned() -> None:
    history = [
        HistoryEntry(revision=r.revision, version=r.version, outcome="Promoted", started_at=T0, finished_at=T0)
        for r in (V1, V2, V3)
    ]
    resource = md("3", status=serving(V3, history=history))
    p = plan(resource, observed(state(V1, replicas=0), state(V2, replicas=0), state(V3)))
    assert by_name(p.grow, "Deployment")[f"iris-{V2.revision}"]["spec"]["replicas"] == 0
    assert ("Deployment", f"iris-{V1.revision}") in p.delete
    assert ("Deployment", "iris-router") not in p.delete
    assert "RevisionRemoved" in [e.reason for e in p.events]


def test_a_revision_waiting_for_its_scale_down_keeps_its_pods() -> None:
    later = ScheduledScaleDown(revision=V1.revision, at=T0 + timedelta(seconds=30))
    resource = md("2", status=serving(V2, scale_downs=[later]))
    p = plan(resource, observed(state(V1), state(V2)))
    assert by_name(p.grow, "Deployment")[f"iris-{V1.revision}"]["spec"]["replicas"] == 4


def test_a_deleted_revision_the_spec_no_longer_describes_is_reported_not_invented() -> None:
    resource = md("2", status=serving(canary=V2))
    p = plan(resource, observed(state(V2, replicas=1)))
    assert f"iris-{V1.revision}" not in by_name(p.grow, "Deployment")
    (lost,) = [e for e in p.events if e.reason == "RevisionLost"]
    assert lost.type == "Warning"
    assert f"iris-{V1.revision}" in lost.message


def test_autoscaled_revisions_get_an_hpa_only_while_they_run() -> None:
    scaling = {"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}
    resource = md("2", status=serving(canary=V2), **scaling)
    actions = [EnsureRevision(revision=V2, role="canary", replicas=1), ScaleDown(revision=V1.revision, reason="t")]
    p = plan(resource, observed(state(V1, replicas=2), state(V2, replicas=0)), actions=actions)
    hpas = by_name(p.grow + p.shrink, "HorizontalPodAutoscaler")
    assert set(hpas) == {f"iris-{V2.revision}"}
    assert hpas[f"iris-{V2.revision}"]["spec"]["minReplicas"] == 1
    assert "replicas" not in by_name(p.grow, "Deployment")[f"iris-{V2.revision}"]["spec"]
    assert by_name(p.shrink, "Deployment")[f"iris-{V1.revision}"]["spec"]["replicas"] == 0


def test_steady_state_is_a_fixed_point() -> None:
    resource = md(status=serving(observed_generation=5))
    p, actions = one_pass(resource, observed(state(V1)))
    assert not actions
    assert not p.events
    assert not p.delete
    assert p.status.phase == "Healthy"


def test_missing_children_are_restored_and_said_so_when_the_spec_did_not_change() -> None:
    resource = md(status=serving(observed_generation=5))
    seen = Observed(revisions={V1.revision: state(V1)}, existing=frozenset({("Service", "iris")}))
    p, _ = one_pass(resource, seen)
    restored = sorted(e.message for e in p.events if e.reason == "ChildRestored")
    assert restored == [
        f"Deployment iris-{V1.revision} was missing; recreated",
        "Deployment iris-router was missing; recreated",
        "PodDisruptionBudget iris was missing; recreated",
        "Role iris-router was missing; recreated",
        "RoleBinding iris-router was missing; recreated",
        "Service iris-canary was missing; recreated",
        "Service iris-stable was missing; recreated",
        "ServiceAccount iris-router was missing; recreated",
    ]
    after_spec_change = md(status=serving(observed_generation=4))
    assert not [e for e in one_pass(after_spec_change, seen)[0].events if e.reason == "ChildRestored"]


def test_status_reports_modes_generation_roles_and_readiness() -> None:
    resource = md(status=serving(observed_generation=2))
    p = plan(resource, observed(state(V1, replicas=4, ready=3)))
    assert (p.status.observed_generation, p.status.modes) == (5, "online")
    assert p.status.replicas["stable"].model_dump() == {"desired": 4, "ready": 3}
    ready = next(c for c in p.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "NotAvailable")
    healthy = plan(md(status=serving()), observed(state(V1)))
    ready = next(c for c in healthy.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("True", "Serving")
    # The transition time moves only when the condition flips.
    again = plan(md(status=healthy.status), observed(state(V1)))
    later = plan_objects(
        md(status=healthy.status),
        decided=healthy.status,
        actions=[],
        observed=observed(state(V1)),
        settings=SETTINGS,
        now=T0 + timedelta(hours=1),
    )
    assert next(c for c in later.status.conditions if c.type == "Ready").last_transition_time == T0
    assert again.status.conditions == healthy.status.conditions


def test_history_is_bounded_by_the_operator_setting() -> None:
    entries = [
        HistoryEntry(revision=f"r{i}", version=str(i), outcome="Superseded", started_at=T0, finished_at=T0)
        for i in range(6)
    ]
    p = plan(md(status=serving(history=entries)), observed(state(V1)))
    assert [h.revision for h in p.status.history] == ["r3", "r4", "r5"]


def test_the_router_provider_runs_our_router_with_only_configmap_read_access() -> None:
    p = plan(md(status=serving()), observed(state(V1)))
    routers = {(o["kind"], o["metadata"]["name"]): o for o in p.grow if o["metadata"]["name"] == "iris-router"}
    assert set(routers) == {(k, "iris-router") for k in ("ServiceAccount", "Role", "RoleBinding", "Deployment")}
    assert routers["Role", "iris-router"]["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}
    ]
    pod = routers["Deployment", "iris-router"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "iris-router"
    (container,) = pod["containers"]
    assert container["args"][:3] == ["route", "--configmap", "ml/iris-router"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert routers["Deployment", "iris-router"]["spec"]["replicas"] == 2, "never a single point of failure"


FALLBACK_MODEL = {"name": "iris", "version": "rules-1", "uri": "s3://models/iris/rules.joblib", "format": "sklearn"}
ROUTED = {**CANARY, "trafficRouting": {"provider": "router"}}


def test_a_fallback_model_runs_beside_the_revisions_and_is_pruned_when_removed() -> None:
    fallback = {"model": FALLBACK_MODEL, "replicas": 2, "latencyBudget": "200ms"}
    with_fallback = md(status=serving(), rollout=ROUTED, replicas=4, fallback=fallback)
    p = plan(with_fallback, observed(state(V1)))
    deployment = by_name(p.grow, "Deployment")["iris-fallback"]
    assert deployment["metadata"]["labels"]["modelrollout.dev/mode"] == "fallback"
    assert deployment["spec"]["replicas"] == 2
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["MODELSERVER_MODEL_VERSION"], env["MODELSERVER_MODEL_URI"]) == ("rules-1", FALLBACK_MODEL["uri"])
    service = by_name(p.grow, "Service")["iris-fallback"]
    assert service["spec"]["selector"] == {"modelrollout.dev/name": "iris", "modelrollout.dev/mode": "fallback"}
    assert selects(p, "iris-stable") == V1.revision  # the revisions' Services are not the fallback's
    # Not a revision: the fallback changes neither the revision hash nor the revisions the engine sees.
    assert target_of(with_fallback.spec, SETTINGS) == V1
    gone = plan(md(status=serving(), rollout=ROUTED, replicas=4),
                observed(state(V1), extra={("Deployment", "iris-fallback"), ("Service", "iris-fallback")}))  # fmt: skip
    assert {("Deployment", "iris-fallback"), ("Service", "iris-fallback")} <= set(gone.delete)


def test_planning_needs_a_stored_online_resource() -> None:
    body = load_example("batch.yaml")
    body["metadata"] = {"name": "b", "namespace": "ml", "uid": "u", "generation": 1}
    with pytest.raises(ValueError, match=r"spec\.online"):
        plan(ModelDeployment.model_validate(body), Observed())


def test_strategy_direct_runs_no_router_unless_asked() -> None:
    direct = md(status=serving(), rollout={"strategy": "direct"})
    p = plan(direct, observed(state(V1)))
    assert ("Deployment", "iris-router") in p.delete
    assert selects(p, "iris") == V1.revision
    asked = md(status=serving(), rollout={"strategy": "direct", "trafficRouting": {"provider": "router"}})
    assert ("Deployment", "iris-router") not in plan(asked, observed(state(V1))).delete


def test_what_a_mode_beside_online_no_longer_wants_of_its_own_kinds_is_deleted_and_its_events_kept() -> None:
    """Online's prune lists its own kinds; a ScaledObject of a stream revision handed over is only the stream
    plan's to know of, so it reaches the pass through Beside.delete, and the stream's events through Beside.events."""
    handed = Event("Normal", "StreamHandedOver", "revision b scores every record from epoch 4's cutover on")
    beside = Beside(delete=[("ScaledObject", "iris-stream-a")], events=[handed])
    p, _ = one_pass(md(), Observed(), beside=beside)
    assert ("ScaledObject", "iris-stream-a") in p.delete
    assert handed in p.events
    assert Event("Normal", "ObjectRemoved", "ScaledObject iris-stream-a is no longer needed; deleted") in p.events


def test_the_fallback_models_pods_are_reported_beside_the_roles() -> None:
    resource = md(status=serving(), rollout=ROUTED, replicas=4, fallback={"model": FALLBACK_MODEL})
    seen = observed(state(V1))
    counts = ReplicaCounts(desired=1, ready=0)
    with_fallback = Observed(revisions=seen.revisions, existing=seen.existing, fallback=counts)
    p = plan(resource, with_fallback)
    assert p.status.replicas["fallback"] == counts
    assert set(p.status.replicas) == {"stable", "fallback"}
    without = plan(md(status=serving(), rollout=ROUTED, replicas=4), with_fallback)  # removed: its pods are going
    assert "fallback" not in without.status.replicas


def test_api_keys_in_a_secret_reach_the_router_as_a_mounted_file() -> None:
    keys = {"name": "churn-api-keys", "key": "keys.json"}
    rollout = {**CANARY, "trafficRouting": {"provider": "router", "router": {"apiKeys": keys}}}
    p = plan(md(status=serving(), rollout=rollout), observed(state(V1)))
    router = next(o for o in p.grow if o["kind"] == "Deployment" and o["metadata"]["name"] == "iris-router")
    pod = router["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][-2:] == ["--api-keys-file", "/etc/modelrollout/api-keys/api-keys.json"]
    mount = {"name": "api-keys", "mountPath": "/etc/modelrollout/api-keys", "readOnly": True}
    assert mount in container["volumeMounts"]
    secret = {"secretName": "churn-api-keys", "items": [{"key": "keys.json", "path": "api-keys.json"}]}
    assert {"name": "api-keys", "secret": secret} in pod["volumes"]
    plain = plan(md(status=serving(), rollout=ROUTED), observed(state(V1)))
    plain_router = next(o for o in plain.grow if o["kind"] == "Deployment" and o["metadata"]["name"] == "iris-router")
    assert "--api-keys-file" not in plain_router["spec"]["template"]["spec"]["containers"][0]["args"]
