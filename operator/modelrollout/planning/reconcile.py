"""One reconcile pass for online serving, as a pure function: (resource, observations, now) -> plan.

The plan says which objects to apply (server-side), which to delete, which events to emit and what the status
becomes. Handlers only execute it, so every decision here is unit-tested without a cluster.

Revisions: `status.stable` is the revision users are served. A spec whose pod inputs hash to another revision
brings that revision up beside stable; with `rollout.strategy: direct` traffic switches to it once it is
Available and the old revision is removed. A revision that cannot become available (bad image, model that does
not load, progress deadline) is reported as Degraded and never replaces stable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import (
    Condition,
    ConditionStatus,
    HistoryEntry,
    ModelDeploymentStatus,
    Outcome,
    Phase,
    ReplicaCounts,
    RevisionRef,
)
from modelrollout.planning.observe import RevisionHealth
from modelrollout.planning.online import Owner, build_deployment, build_hpa, build_pdb, build_services
from modelrollout.planning.revision import revision_of

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class PlanSettings:
    default_image: str
    progress_deadline_s: int
    history_limit: int


@dataclass(frozen=True)
class Observed:
    """Online Deployments found for this ModelDeployment (by revision) and every owned object that exists
    (kind, name); owned objects missing from a plan are pruned."""

    revisions: dict[str, RevisionHealth] = field(default_factory=dict)
    existing: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    apply: list[dict[str, Any]]
    delete: list[tuple[str, str]]
    status: ModelDeploymentStatus
    events: list[Event]


@dataclass
class _Decision:
    """What the revision logic settles before objects and conditions are derived from it."""

    phase: Phase
    message: str
    serving: RevisionRef
    stable: RevisionRef | None
    canary: RevisionRef | None
    keep: list[RevisionRef]
    failure: str | None = None
    promoted_from: RevisionRef | None = None
    events: list[Event] = field(default_factory=list)
    superseded: list[HistoryEntry] = field(default_factory=list)


def _label(ref: RevisionRef) -> str:
    return f"revision {ref.revision} (version {ref.version})"


def _finished(
    ref: RevisionRef, outcome: Outcome, started: datetime | None, now: datetime, message: str
) -> HistoryEntry:
    return HistoryEntry(
        revision=ref.revision,
        version=ref.version,
        outcome=outcome,
        started_at=started or now,
        finished_at=now,
        message=message,
    )


def _decide(
    md: ModelDeployment, target: RevisionRef, prev: ModelDeploymentStatus, observed: Observed, now: datetime
) -> _Decision:
    stable = prev.stable
    health = observed.revisions.get(target.revision)
    decision: _Decision

    if stable is None:  # first revision: nothing to protect yet
        decision = _Decision("Progressing", f"bringing up {_label(target)}", target, None, target, [target])
        if health and health.available:
            decision = _Decision("Healthy", f"serving {_label(target)}", target, target, None, [target])
            decision.events.append(Event("Normal", "RevisionAvailable", f"{_label(target)} is available and serving"))
        elif health and health.failure:
            decision.phase, decision.failure = "Degraded", health.failure
            decision.message = f"{_label(target)} cannot become available: {health.failure}"
    elif stable.revision == target.revision:
        decision = _Decision("Healthy", f"serving {_label(stable)}", stable, stable, None, [stable])
        if health is None or not health.available:
            decision.phase, decision.message = "Progressing", f"waiting for {_label(stable)} to be available"
            if health and health.failure:
                decision.phase, decision.failure = "Degraded", health.failure
                decision.message = f"{_label(stable)} is not available: {health.failure}"
    elif md.spec.rollout.strategy != "direct":
        # Progressive strategies are driven by the rollout engine; until it runs, stable keeps serving untouched.
        decision = _Decision(
            "Paused",
            f"{_label(target)} waits: strategy {md.spec.rollout.strategy} needs the rollout engine, which this "
            f"operator version does not run yet; {_label(stable)} keeps serving",
            stable,
            stable,
            None,
            [stable],
        )
    else:
        decision = _replace_directly(stable, target, health)

    # A candidate that is no longer the target (the spec moved on, or back) is over.
    if prev.canary and prev.canary.revision not in (target.revision, decision.serving.revision):
        message = f"{_label(prev.canary)} was superseded by {_label(target)} before it was promoted"
        decision.superseded.append(_finished(prev.canary, "Superseded", prev.rollout_started_at, now, message))
        decision.events.append(Event("Normal", "RevisionSuperseded", message))
    return decision


def _replace_directly(stable: RevisionRef, target: RevisionRef, health: RevisionHealth | None) -> _Decision:
    if health and health.available:
        decision = _Decision("Healthy", f"serving {_label(target)}", target, target, None, [target])
        decision.promoted_from = stable
        message = f"{_label(target)} replaced {_label(stable)} (strategy direct)"
        decision.events.append(Event("Normal", "RevisionPromoted", message))
        return decision
    decision = _Decision(
        "Progressing",
        f"bringing up {_label(target)}; {_label(stable)} keeps serving until it is available",
        stable,
        stable,
        target,
        [stable, target],
    )
    if health and health.failure:
        decision.phase, decision.failure = "Degraded", health.failure
        decision.message = f"{_label(target)} cannot become available: {health.failure}; {_label(stable)} keeps serving"
    return decision


def _conditions(
    prev: list[Condition], decision: _Decision, *, serving_ready: bool, generation: int | None, now: datetime
) -> list[Condition]:
    progressing = decision.canary is not None and decision.failure is None
    wanted: list[tuple[str, ConditionStatus, str, str]] = [
        (
            "Ready",
            "True" if serving_ready else "False",
            "Serving" if serving_ready else "NotAvailable",
            f"serving {_label(decision.serving)}" if serving_ready else f"{_label(decision.serving)} is not available",
        ),
        (
            "Progressing",
            "True" if progressing else "False",
            "NewRevisionProgressing" if progressing else ("RevisionFailed" if decision.failure else "Stable"),
            decision.message,
        ),
        (
            "Degraded",
            "True" if decision.failure else "False",
            "RevisionFailed" if decision.failure else "AsExpected",
            decision.failure or "",
        ),
    ]
    by_type = {c.type: c for c in prev}
    out = []
    for kind, state, reason, message in wanted:
        old = by_type.get(kind)
        since = old.last_transition_time if old and old.status == state else now
        out.append(
            Condition(
                type=kind,
                status=state,
                reason=reason,
                message=message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    return out


def _counts(health: RevisionHealth | None) -> ReplicaCounts:
    return ReplicaCounts(desired=health.desired, ready=health.ready) if health else ReplicaCounts()


def plan_online(md: ModelDeployment, *, observed: Observed, settings: PlanSettings, now: datetime) -> Plan:
    """The whole reconcile decision for a ModelDeployment with `spec.online`."""
    spec, meta = md.spec, md.metadata
    if spec.online is None or meta.name is None or meta.namespace is None or meta.uid is None:
        raise ValueError("plan_online needs spec.online and a stored object (name, namespace, uid)")
    prev = md.status or ModelDeploymentStatus()
    target = RevisionRef(revision=revision_of(spec, default_image=settings.default_image), version=spec.model.version)
    decision = _decide(md, target, prev, observed, now)
    owner = Owner(name=meta.name, namespace=meta.namespace, uid=meta.uid)

    apply = [
        build_deployment(
            spec,
            owner,
            revision=ref.revision,
            image_default=settings.default_image,
            progress_deadline_s=settings.progress_deadline_s,
        )
        for ref in decision.keep
    ]
    stable_rev = (decision.stable or decision.serving).revision
    canary_rev = (decision.canary or decision.stable or decision.serving).revision
    apply += build_services(owner, serving=decision.serving.revision, stable=stable_rev, canary=canary_rev)
    apply += [hpa for ref in decision.keep if (hpa := build_hpa(spec, owner, revision=ref.revision))]
    apply += [pdb] if (pdb := build_pdb(spec, owner)) else []

    # Prune: whatever we own that this plan no longer wants goes (old revisions, an HPA after autoscaling was
    # turned off, a PDB after scaling to one pod), exactly as `kubectl apply --prune` would.
    wanted = {(obj["kind"], obj["metadata"]["name"]) for obj in apply}
    delete = sorted(observed.existing - wanted)

    events = list(decision.events)
    # Same generation as our last pass: the spec did not change, so anything missing was removed behind our back
    # (after a spec change, a missing object is simply new).
    if prev.observed_generation is not None and prev.observed_generation == meta.generation:
        for obj in apply:
            if (obj["kind"], obj["metadata"]["name"]) not in observed.existing:
                events.append(
                    Event("Warning", "ChildRestored", f"{obj['kind']} {obj['metadata']['name']} was missing; recreated")
                )
    for kind, name in delete:
        reason = "RevisionRemoved" if kind == "Deployment" else "ObjectRemoved"
        events.append(Event("Normal", reason, f"{kind} {name} is no longer needed; deleted"))
    if decision.failure and not any(c.type == "Degraded" and c.status == "True" for c in prev.conditions):
        events.append(Event("Warning", "RevisionFailed", decision.message))

    started = prev.rollout_started_at if prev.canary and prev.canary.revision == target.revision else None
    history = [*prev.history, *decision.superseded]
    if decision.promoted_from:
        message = f"{_label(target)} replaced {_label(decision.promoted_from)}"
        history.append(_finished(target, "Promoted", started, now, message))
    serving_health = observed.revisions.get(decision.serving.revision)
    serving_ready = bool(serving_health and serving_health.available and decision.stable is not None)
    roles = {"stable": decision.stable or decision.serving}
    if decision.canary and decision.canary != roles["stable"]:
        roles["canary"] = decision.canary

    status = prev.model_copy(
        update={
            "phase": decision.phase,
            "observed_generation": meta.generation,
            "modes": ",".join(spec.modes),
            "message": decision.message,
            "stable": decision.stable,
            "canary": decision.canary,
            "rollout_started_at": (started or now) if decision.canary else None,
            "replicas": {role: _counts(observed.revisions.get(ref.revision)) for role, ref in roles.items()},
            "conditions": _conditions(
                prev.conditions, decision, serving_ready=serving_ready, generation=meta.generation, now=now
            ),
            "history": history[-settings.history_limit :],
        }
    )
    return Plan(apply=apply, delete=delete, status=status, events=events)
