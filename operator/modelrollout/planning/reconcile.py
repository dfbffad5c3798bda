"""A reconcile pass around the rollout engine, as pure functions: what the engine is given (the target revision,
pods per role, why the candidate fails) and which objects make its decision real (each revision's Deployment at
the size the engine asked for, the Services on the roles, what to prune), with the status and events around it.

The engine (`modelrollout.rollout.tick`) decides; this module only turns decisions into objects. The reconciler
executes the plan: `grow` first, then the routing actions, then `shrink`, then `delete`, then status, then events.
So a revision gets its pods before it gets traffic, and keeps them until its traffic has gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from modelrollout.api.notifications import NotificationKind
from modelrollout.api.resource import ModelDeployment
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import ModelDeploymentStatus, ReplicaCounts, RevisionRef
from modelrollout.modes.base import ModeName
from modelrollout.modes.report import (
    Readiness,
    mode_conditions,
    readiness_types,
    reported,
    with_mode_report,
    without_mode_report,
)
from modelrollout.planning.graph import graph_status
from modelrollout.planning.hooks import LABEL_HOOK, build_hook_job, hook_job_name
from modelrollout.planning.names import LABEL_REVISION, router_configmap_name, workload_name
from modelrollout.planning.observe import RevisionHealth
from modelrollout.planning.online import (
    Owner,
    build_deployment,
    build_fallback,
    build_hpa,
    build_pdb,
    build_services,
    rebuild_deployment,
)
from modelrollout.planning.revision import revision_of
from modelrollout.planning.router import build_router
from modelrollout.rollout.actions import Action, EnsureRevision, HookRun, RecordEvent, RunHook, ScaleDown
from modelrollout.rollout.conditions import without_apply_failure
from modelrollout.rollout.sizing import full_replicas

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class PlanSettings:
    default_image: str
    progress_deadline_s: int
    history_limit: int


@dataclass(frozen=True)
class RevisionState:
    """One revision's Deployment as found: its health, the replica count we last asked for, and the stored
    object (the only record of the pod template of a revision the spec no longer describes)."""

    health: RevisionHealth
    replicas: int
    deployment: dict[str, Any]


@dataclass(frozen=True)
class Observed:
    """Online Deployments of this ModelDeployment (by revision) and every owned object that exists
    (kind, name); owned objects missing from a plan are pruned."""

    revisions: dict[str, RevisionState] = field(default_factory=dict)
    existing: frozenset[tuple[str, str]] = frozenset()
    hooks: Mapping[str, HookRun] = field(default_factory=dict)  # preRollout hook Jobs, by their RunHook.job
    fallback: ReplicaCounts | None = None  # pods of online.fallback's Deployment, when it exists
    # online.graph's members' ModelDeployments by name, as found (None: there is none)
    graph_members: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """`notify`: the notification kinds the engine named for it (webhooks hear of a decided event only)."""

    type: EventType
    reason: str
    message: str
    notify: frozenset[NotificationKind] = frozenset()

    @classmethod
    def of(cls, recorded: RecordEvent) -> Event:
        return cls(recorded.type, recorded.reason, recorded.message, recorded.notify)


@dataclass(frozen=True)
class Plan:
    grow: list[dict[str, Any]]
    shrink: list[dict[str, Any]]
    delete: list[tuple[str, str]]
    status: ModelDeploymentStatus
    events: list[Event]


def target_of(spec: ModelDeploymentSpec, settings: PlanSettings) -> RevisionRef:
    """The revision the spec asks for."""
    return RevisionRef(revision=revision_of(spec, default_image=settings.default_image), version=spec.model.version)


def starting_status(stored: ModelDeploymentStatus | None) -> ModelDeploymentStatus:
    """What a pass hands the engine: the status it wrote itself, without the reports an earlier pass laid over it
    (a refused child, a declared mode not served), which every pass says afresh."""
    return without_mode_report(without_apply_failure(stored or ModelDeploymentStatus()))


FALLBACK_ROLE = "fallback"  # status.replicas' key for online.fallback's pods


def replicas_by_revision(observed: Observed) -> dict[str, int]:
    return {rev: state.replicas for rev, state in observed.revisions.items()}


def engine_input(status: ModelDeploymentStatus, observed: Observed) -> ModelDeploymentStatus:
    """Status as the engine wants it: status.replicas describes the stable and canary revisions as observed."""
    replicas: dict[str, ReplicaCounts] = {}
    for role, ref in (("stable", status.stable), ("canary", status.canary)):
        state = observed.revisions.get(ref.revision) if ref else None
        if ref is not None:
            replicas[role] = ReplicaCounts(
                desired=state.health.desired if state else 0, ready=state.health.ready if state else 0
            )
    return status.model_copy(update={"replicas": replicas})


def candidate_failure(status: ModelDeploymentStatus, observed: Observed) -> str | None:
    """Why the candidate's pods cannot become ready, when they cannot (pods it was not asked to run cannot fail)."""
    state = observed.revisions.get(status.canary.revision) if status.canary else None
    if state is None or state.replicas == 0:
        return None
    return state.health.failure


def asked_after(observed: Observed, actions: Iterable[Action]) -> dict[str, int]:
    """Pods per revision after the actions: what we asked for before, changed by each EnsureRevision and
    ScaleDown in order."""
    asked = replicas_by_revision(observed)
    for action in actions:
        if isinstance(action, EnsureRevision):
            asked[action.revision.revision] = action.replicas
        elif isinstance(action, ScaleDown):
            asked[action.revision] = 0
    return asked


def wanted_replicas(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, observed: Observed, actions: Iterable[Action]
) -> dict[str, int]:
    """Pods per revision after the actions (asked_after). A stable revision nobody asked anything of (its
    Deployment was deleted) runs at full size."""
    wanted = asked_after(observed, actions)
    if status.stable is not None:
        wanted.setdefault(status.stable.revision, full_replicas(spec))
    return wanted


def _kept_revisions(status: ModelDeploymentStatus, wanted: dict[str, int], target: RevisionRef) -> set[str]:
    """Revisions whose Deployment stays: the roles, anything running, anything due to scale down, the target
    (held at zero after a rollback, for retry) and the last revision promoted before stable (at zero, for undo)."""
    keep = {ref.revision for ref in (status.stable, status.canary, status.held) if ref is not None}
    keep |= {rev for rev, n in wanted.items() if n > 0}
    keep |= {d.revision for d in status.scale_downs}
    if status.canary is not None or (status.stable is not None and status.stable.revision == target.revision):
        keep.add(target.revision)
    stable = status.stable.revision if status.stable else None
    previous = next(
        (h.revision for h in reversed(status.history) if h.outcome == "Promoted" and h.revision != stable), None
    )
    if previous is not None:
        keep.add(previous)
    return keep


def _main_selects(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, stable: str, canary: str) -> str | None:
    """What `<name>` selects. The `service` provider splits by pod counts: every revision's pods while the canary
    has a share, the canary alone once it has everything (a blue-green switch). Other providers leave the split
    to the router: `<name>` is stable."""
    if spec.rollout.provider != "service" or status.canary is None:
        return stable
    weight = status.weights.canary
    if weight >= 100:
        return canary
    return None if weight > 0 else stable


def online_readiness(stable: RevisionRef | None, observed: Observed) -> Readiness:
    """Whether the online mode serves: its stable revision's Deployment is available."""
    state = observed.revisions.get(stable.revision) if stable else None
    if stable is None:
        return Readiness("False", "NoRevision", "no revision has become available yet")
    if state and state.health.available:
        return Readiness("True", "Serving", f"serving revision {stable.revision} (version {stable.version})")
    failure = state.health.failure if state else "its Deployment is missing"
    message = f"revision {stable.revision} (version {stable.version}) is not available" + (
        f": {failure}" if failure else ""
    )
    return Readiness("False", "NotAvailable", message)


@dataclass(frozen=True)
class Beside:
    """What the modes beside online add to its pass (batch and stream following the revision online promoted):
    their objects, which the prune then keeps, their readiness, objects of kinds online does not list that they
    no longer want (a stream revision's ScaledObject), and their own events (a stream hand-over's)."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    ready: Mapping[ModeName, Readiness] = field(default_factory=dict)
    delete: Sequence[tuple[str, str]] = ()
    events: Sequence[Event] = ()


def plan_objects(
    md: ModelDeployment,
    *,
    decided: ModelDeploymentStatus,
    actions: Sequence[Action],
    observed: Observed,
    settings: PlanSettings,
    now: datetime,
    beside: Beside | None = None,
) -> Plan:
    """The objects, status and events that make the engine's decision (`decided`, `actions`) real."""
    beside = beside or Beside()
    spec, meta = md.spec, md.metadata
    if spec.online is None or meta.name is None or meta.namespace is None or meta.uid is None:
        raise ValueError("plan_objects needs spec.online and a stored object (name, namespace, uid)")
    owner = Owner(name=meta.name, namespace=meta.namespace, uid=meta.uid)
    target = target_of(spec, settings)
    wanted = wanted_replicas(spec, decided, observed, actions)
    before = replicas_by_revision(observed)
    autoscaled = spec.online.autoscaling is not None
    events = [Event.of(a) for a in actions if isinstance(a, RecordEvent)]

    grow: list[dict[str, Any]] = []
    shrink: list[dict[str, Any]] = []
    for revision in sorted(_kept_revisions(decided, wanted, target)):
        replicas = wanted.get(revision, 0)
        state = observed.revisions.get(revision)
        if revision == target.revision:
            deployment = build_deployment(
                spec,
                owner,
                revision=revision,
                replicas=replicas,
                image_default=settings.default_image,
                progress_deadline_s=settings.progress_deadline_s,
            )
        elif state is not None:
            deployment = rebuild_deployment(
                state.deployment,
                owner,
                revision=revision,
                replicas=replicas,
                autoscaled=autoscaled,
                progress_deadline_s=settings.progress_deadline_s,
            )
        else:
            message = (
                f"Deployment {workload_name(owner.name, revision)} was deleted and cannot be recreated: the spec "
                "that described it has changed since"
            )
            events.append(Event("Warning", "RevisionLost", message))
            continue
        objects = [deployment]
        if hpa := build_hpa(spec, owner, revision=revision, replicas=replicas):
            objects.append(hpa)
        (shrink if replicas < before.get(revision, 0) else grow).extend(objects)

    serving = decided.stable or decided.canary or target
    stable_rev = serving.revision
    canary_rev = (decided.canary or serving).revision
    routed = spec.rollout.provider == "router"
    grow += _router_objects(spec, owner, settings) if routed else []
    grow += build_services(
        owner,
        stable=stable_rev,
        canary=canary_rev,
        main=_main_selects(spec, decided, stable_rev, canary_rev),
        preview=spec.rollout.strategy == "blueGreen",
        router=routed,
    )
    grow += [pdb] if (pdb := build_pdb(spec, owner)) else []
    grow += [*_hook_jobs(spec, owner, actions, settings), *beside.objects]

    # Prune: whatever we own that this plan no longer wants goes (old revisions, an HPA after autoscaling was
    # turned off or its revision scaled to zero, a PDB after scaling to one pod), as `kubectl apply --prune`
    # would. The router's ConfigMap is written by the router provider, not here, and stays while it is in use.
    # Hook Jobs are kept for their logs (their TTL and the garbage collector remove them).
    hooks = {("Job", hook_job_name(owner.name, key)) for key in observed.hooks}
    wanted_objects = {(obj["kind"], obj["metadata"]["name"]) for obj in grow + shrink} | hooks
    if routed:
        wanted_objects.add(("ConfigMap", router_configmap_name(owner.name)))
    delete = sorted((observed.existing - wanted_objects) | set(beside.delete))

    prev = md.status or ModelDeploymentStatus()
    # Same generation as our last pass: the spec did not change, so anything missing was removed behind our back
    # (after a spec change, a missing object is simply new; a revision brought up by the rollout is new too).
    if prev.observed_generation is not None and prev.observed_generation == meta.generation:
        for obj in grow + shrink:
            key = (obj["kind"], obj["metadata"]["name"])
            if key not in observed.existing and not _newly_started(obj, before, prev):
                events.append(Event("Warning", "ChildRestored", f"{key[0]} {key[1]} was missing; recreated"))
    for kind, name in delete:
        reason = "RevisionRemoved" if kind == "Deployment" else "ObjectRemoved"
        events.append(Event("Normal", reason, f"{kind} {name} is no longer needed; deleted"))
    events += beside.events

    status = _status(md, decided, observed=observed, settings=settings, now=now, events=events, beside=beside.ready)
    return Plan(grow=grow, shrink=shrink, delete=delete, status=status, events=events)


def _has_fallback(spec: ModelDeploymentSpec) -> bool:
    return spec.online is not None and spec.online.fallback is not None


def _router_objects(spec: ModelDeploymentSpec, owner: Owner, settings: PlanSettings) -> list[dict[str, Any]]:
    """Our router (provider `router`), and the fallback model only it calls."""
    image = settings.default_image
    return [*build_router(spec, owner, image_default=image), *build_fallback(spec, owner, image_default=image)]


def _hook_jobs(
    spec: ModelDeploymentSpec, owner: Owner, actions: Sequence[Action], settings: PlanSettings
) -> list[dict[str, Any]]:
    runs = [a for a in actions if isinstance(a, RunHook)]
    return [build_hook_job(spec, owner, run, image_default=settings.default_image) for run in runs]


def _status(
    md: ModelDeployment,
    decided: ModelDeploymentStatus,
    *,
    observed: Observed,
    settings: PlanSettings,
    now: datetime,
    events: list[Event],
    beside: Mapping[ModeName, Readiness],
) -> ModelDeploymentStatus:
    """The engine's status with what the pass observed: replicas, a readiness condition per mode, and a phase that
    says when a declared mode is not served (with an event the first time)."""
    prev = md.status or ModelDeploymentStatus()
    readiness = mode_conditions(
        md.spec,
        ready={"online": online_readiness(decided.stable, observed), **beside},
        prev=prev.conditions,
        generation=md.metadata.generation,
        now=now,
    )
    status = decided.model_copy(
        update={
            "observed_generation": md.metadata.generation,
            "modes": ",".join(md.spec.modes),
            # The fallback model's pods beside the roles': it answers only when they fail, so whether it could is
            # worth seeing (its Deployment is not a revision, and the engine never reads this key).
            "replicas": engine_input(decided, observed).replicas
            | ({FALLBACK_ROLE: observed.fallback} if observed.fallback and _has_fallback(md.spec) else {}),
            "conditions": [*readiness, *(c for c in decided.conditions if c.type not in readiness_types())],
            "history": decided.history[-settings.history_limit :],
        }
    )
    status = with_mode_report(status, md.spec, prev=prev.conditions, now=now)
    status = status.model_copy(
        update={"graph": graph_status(md.spec, md.metadata.name or "", status, observed.graph_members)}
    )
    if reported(status) and not reported(prev):
        events.append(Event("Warning", "ModeNotServed", status.message or ""))
    return status


def _newly_started(obj: dict[str, Any], before: dict[str, int], prev: ModelDeploymentStatus) -> bool:
    """An HPA that did not exist because its revision ran no pods until now (an HPA cannot hold zero pods); a hook
    Job the rollout had not asked for before this pass (the last status named no such Job)."""
    labels = obj["metadata"]["labels"]
    if obj["kind"] == "Job" and LABEL_HOOK in labels:
        return prev.gate is None or prev.gate.job != labels[LABEL_HOOK]
    return obj["kind"] == "HorizontalPodAutoscaler" and before.get(labels.get(LABEL_REVISION, ""), 0) == 0
