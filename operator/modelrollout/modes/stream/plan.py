"""A stream pass's plan (pure): from the engine's roles and what the consumers report, the next share document
(share.next_share), the objects of every revision whose consumers run, what to delete, status.stream and the
StreamReady condition."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import RevisionProgress, RevisionRef, StreamStatus
from modelrollout.modes.report import Readiness
from modelrollout.modes.stream.objects import (
    build_access,
    build_consumer,
    build_pdb,
    build_scaled_object,
    build_share_configmap,
    consumer_name,
    document_of,
    group_for,
    rebuild_consumer,
    shadow_group_of,
)
from modelrollout.modes.stream.share import Reached, next_share
from modelrollout.planning.observe import RevisionHealth
from modelrollout.planning.online import Owner
from modelrollout.planning.reconcile import EventType


@dataclass(frozen=True)
class StreamObserved:
    """The stream objects found (by kind and name), each revision's consumer Deployment and its health, and what
    the consumers report through Prometheus (None: Prometheus did not answer)."""

    existing: frozenset[tuple[str, str]] = frozenset()
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    health: dict[str, RevisionHealth] = field(default_factory=dict)
    progress: dict[str, RevisionProgress] = field(default_factory=dict)
    partitions: int | None = None


@dataclass
class StreamPlan:
    objects: list[dict[str, Any]]
    delete: list[tuple[str, str]]
    status: StreamStatus
    readiness: Readiness
    events: list[tuple[EventType, str, str]]
    waiting: bool


def _readiness(leader: RevisionRef, observed: StreamObserved, progress: RevisionProgress | None) -> Readiness:
    health = observed.health.get(leader.revision)
    if health is not None and health.available:
        lag = f"; {progress.lag} records behind" if progress and progress.lag is not None else ""
        return Readiness("True", "Consuming", f"revision {leader.revision} (version {leader.version}) consumes{lag}")
    why = (health.failure if health else None) or "its consumers are not ready"
    return Readiness("False", "NotConsuming", f"revision {leader.revision} does not consume: {why}")


def plan_stream(
    md: ModelDeployment,
    *,
    stable: RevisionRef,
    canary: RevisionRef | None,
    percent: int,
    target: RevisionRef,
    observed: StreamObserved,
    image: str,
    shadow: RevisionRef | None = None,
) -> StreamPlan:
    """`shadow`: a candidate shadowing (its own group and topic, no share: see objects), beside the share's
    revisions; it holds no share, so it leaves at once, and its promotion is a hand-over like any other."""
    spec, meta = md.spec, md.metadata
    stream = spec.stream
    if stream is None or meta.name is None or meta.namespace is None or meta.uid is None:
        raise ValueError("plan_stream needs spec.stream and a stored object")
    owner = Owner(name=meta.name, namespace=meta.namespace, uid=meta.uid)
    prev = (md.status.stream if md.status else None) or StreamStatus()
    reached = Reached(
        epochs={r: (p.epoch, p.partitions) for r, p in observed.progress.items() if p.epoch is not None},
        partitions=observed.partitions,
    )
    decision = next_share(prev.share, stable=stable, canary=canary, percent=percent, reached=reached)
    share = decision.share
    # The very first revision consumes as the spec's group; every later one in a group of its own.
    first = share.leader.revision if not prev.groups else ""
    groups = dict(prev.groups)
    for revision in sorted(decision.running | {share.leader.revision}):
        groups.setdefault(revision, group_for(stream, owner, revision, first=first))
    shadowing = shadow.revision if shadow is not None and shadow.revision not in decision.running else None
    running = decision.running | ({shadowing} if shadowing else set())
    shadow_group = shadow_group_of(group_for(stream, owner, shadowing, first="")) if shadowing else None
    events: list[tuple[EventType, str, str]] = []
    objects: list[dict[str, Any]] = [build_share_configmap(owner, document_of(share, groups)), *build_access(owner)]
    for revision in sorted(running):
        group = shadow_group if revision == shadowing and shadow_group else groups[revision]
        if revision == target.revision:
            replicas = stream.replicas
            if stream.autoscaling is not None:
                found = observed.deployments.get(revision, {}).get("spec", {}).get("replicas") or 0
                replicas = max(stream.autoscaling.min_replicas, int(found))
            objects.append(build_consumer(spec, owner, revision=revision, group=group, replicas=replicas,
                                          image=image, shadow=revision == shadowing))  # fmt: skip
        elif revision in observed.deployments:
            objects.append(rebuild_consumer(observed.deployments[revision], owner, revision=revision))
        else:
            message = (f"Deployment {consumer_name(owner.name, revision)} was deleted and cannot be recreated: the "
                       "spec that described it has changed since")  # fmt: skip
            events.append(("Warning", "RevisionLost", message))
            continue
        objects += [o for o in (build_scaled_object(stream, owner, revision=revision, group=group),
                                build_pdb(stream, owner, revision=revision)) if o is not None]  # fmt: skip
    wanted = {(o["kind"], o["metadata"]["name"]) for o in objects}
    delete = sorted(observed.existing - wanted)
    if decision.event is not None:
        events.append(("Normal", *decision.event))
    for kind, name in delete:
        events.append(("Normal", "ObjectRemoved", f"{kind} {name} is no longer needed; deleted"))
    status = StreamStatus(
        share=share,
        group=groups.get(share.leader.revision),
        groups={r: g for r, g in groups.items() if r in decision.running or r == share.leader.revision},
        shadow=shadowing,
        shadow_group=shadow_group,
        partitions=observed.partitions,
        progress=[observed.progress[r] for r in sorted(running) if r in observed.progress],
        waiting=decision.waiting,
    )
    readiness = _readiness(share.leader, observed, observed.progress.get(share.leader.revision))
    return StreamPlan(objects, delete, status, readiness, events, waiting=decision.waiting is not None)
