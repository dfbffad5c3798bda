"""A stream pass's plan (modes.stream.plan.plan_stream): the objects of every revision whose consumers run, an old
revision rebuilt from what is stored, what is deleted, status.stream and StreamReady from the leader's health."""

from __future__ import annotations

from typing import Any

import pytest

from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import (
    ModelDeploymentStatus,
    RevisionProgress,
    RevisionRef,
    StreamShare,
    StreamStatus,
)
from modelrollout.modes.stream.objects import build_consumer, consumer_name, group_for, shadow_group_of
from modelrollout.modes.stream.plan import StreamObserved, StreamPlan, plan_stream
from modelrollout.planning.observe import RevisionHealth
from modelrollout_contract.stream import CONFIG_KEY, parse_document
from tests.unit.modelrollout.modes.stream.support import IMAGE, NAME, OWNER, STREAM, md, ref

V5, V6, V7 = ref("5"), ref("6"), ref("7")
GROUP = "tx-scoring"  # examples/stream.yaml's kafka.consumerGroup


def healthy(r: RevisionRef, *, available: bool = True, failure: str | None = None) -> RevisionHealth:
    return RevisionHealth(r.revision, desired=2, ready=2 if available else 0, available=available, failure=failure)


def stored(r: RevisionRef, version: str, replicas: int | None = 3) -> dict[str, Any]:
    """A consumer Deployment as the API server returns it, built from the spec of `version` back then."""
    body = build_consumer(md(version).spec, OWNER, revision=r.revision, group=GROUP, replicas=2, image=IMAGE)
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    body["metadata"]["resourceVersion"] = "41"
    body["status"] = {"readyReplicas": replicas}
    return body


def of_kind(p: StreamPlan, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in p.objects if o["kind"] == kind}


def with_stream(resource: ModelDeployment, stream: StreamStatus, *, stable: RevisionRef) -> ModelDeployment:
    status = ModelDeploymentStatus(phase="Healthy", stable=stable, stream=stream)
    return md(resource.spec.model.version, status=status)


def run(
    resource: ModelDeployment,
    *,
    stable: RevisionRef,
    canary: RevisionRef | None = None,
    percent: int = 0,
    observed: StreamObserved | None = None,
) -> StreamPlan:
    target = ref(resource.spec.model.version)
    return plan_stream(resource, stable=stable, canary=canary, percent=percent, target=target,
                       observed=observed or StreamObserved(), image=IMAGE)  # fmt: skip


def document(p: StreamPlan) -> Any:
    return parse_document(of_kind(p, "ConfigMap")[f"{NAME}-stream"]["data"][CONFIG_KEY])


def test_the_first_pass_runs_the_first_revision_in_the_specs_group() -> None:
    p = run(md("5"), stable=V5)
    name = consumer_name(NAME, V5.revision)
    assert {(o["kind"], o["metadata"]["name"]) for o in p.objects} == {
        ("ConfigMap", f"{NAME}-stream"),
        ("ServiceAccount", f"{NAME}-stream"),
        ("Role", f"{NAME}-stream"),
        ("RoleBinding", f"{NAME}-stream"),
        ("Deployment", name),
        ("ScaledObject", name),  # examples/stream.yaml autoscales 2..8
        ("PodDisruptionBudget", name),
    }
    assert p.delete == []
    assert p.events == []
    assert not p.waiting
    assert p.status.share == StreamShare(epoch=0, leader=V5)
    assert p.status.group == GROUP
    assert p.status.groups == {V5.revision: GROUP}
    assert p.status.waiting is None
    assert (document(p).leader.revision, document(p).leader.group) == (V5.revision, GROUP)
    consumer = of_kind(p, "Deployment")[name]
    env = {e["name"]: e.get("value") for e in consumer["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELSERVER_CONSUMER_GROUP"] == GROUP
    assert of_kind(p, "ScaledObject")[name]["spec"]["triggers"][0]["metadata"]["consumerGroup"] == GROUP


def test_a_canary_runs_the_candidate_from_the_spec_and_the_leader_rebuilt_from_its_deployment() -> None:
    before = StreamStatus(share=StreamShare(epoch=2, leader=V5), group=GROUP, groups={V5.revision: GROUP})
    resource = with_stream(md("6"), before, stable=V5)
    old = stored(V5, "5")
    seen = StreamObserved(deployments={V5.revision: old}, health={V5.revision: healthy(V5)})
    p = run(resource, stable=V5, canary=V6, percent=20, observed=seen)
    deployments = of_kind(p, "Deployment")
    assert set(deployments) == {consumer_name(NAME, V5.revision), consumer_name(NAME, V6.revision)}
    leader = deployments[consumer_name(NAME, V5.revision)]
    assert leader["spec"]["template"] == old["spec"]["template"], "the spec that described it has moved on"
    assert leader["spec"]["replicas"] == 3
    assert "resourceVersion" not in leader["metadata"]
    candidate = deployments[consumer_name(NAME, V6.revision)]
    container = candidate["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELSERVER_MODEL_VERSION"] == "6"
    assert env["MODELSERVER_CONSUMER_GROUP"] == f"{GROUP}-{V6.revision}", "a group of its own"
    assert env["MODELSERVER_REVISION"] == V6.revision
    assert set(of_kind(p, "ScaledObject")) == set(deployments)
    assert p.status.share == StreamShare(epoch=3, leader=V5, follower=V6, percent=20)
    assert p.status.group == GROUP
    assert p.status.groups == {V5.revision: GROUP, V6.revision: f"{GROUP}-{V6.revision}"}
    doc = document(p)
    assert doc.follower is not None
    assert (doc.epoch, doc.follower.group, doc.percent) == (3, f"{GROUP}-{V6.revision}", 20)
    assert p.events == []


def test_the_first_share_with_a_candidate_gives_the_specs_group_to_the_leader() -> None:
    p = run(
        md("6"), stable=V5, canary=V6, percent=10, observed=StreamObserved(deployments={V5.revision: stored(V5, "5")})
    )
    assert p.status.groups == {V5.revision: GROUP, V6.revision: f"{GROUP}-{V6.revision}"}


def test_a_running_revision_whose_deployment_is_gone_is_reported_lost() -> None:
    before = StreamStatus(share=StreamShare(epoch=2, leader=V5), group=GROUP, groups={V5.revision: GROUP})
    p = run(with_stream(md("6"), before, stable=V5), stable=V5, canary=V6, percent=20)
    lost = consumer_name(NAME, V5.revision)
    assert set(of_kind(p, "Deployment")) == {consumer_name(NAME, V6.revision)}
    assert lost not in of_kind(p, "ScaledObject")
    assert lost not in of_kind(p, "PodDisruptionBudget")
    [event] = p.events
    assert event[:2] == ("Warning", "RevisionLost")
    assert f"Deployment {lost} was deleted and cannot be recreated" in event[2]
    assert p.status.share == StreamShare(epoch=3, leader=V5, follower=V6, percent=20), "the share still stands"


def test_what_no_longer_runs_is_deleted() -> None:
    before = StreamStatus(share=StreamShare(epoch=2, leader=V5), group=GROUP, groups={V5.revision: GROUP})
    gone = consumer_name(NAME, V7.revision)
    existing = {
        ("Deployment", consumer_name(NAME, V5.revision)),
        ("Deployment", gone),
        ("ScaledObject", gone),
        ("PodDisruptionBudget", gone),
        ("ConfigMap", f"{NAME}-stream"),
        ("ServiceAccount", f"{NAME}-stream"),
    }
    seen = StreamObserved(existing=frozenset(existing), deployments={V5.revision: stored(V5, "5")})
    p = run(with_stream(md("5"), before, stable=V5), stable=V5, observed=seen)
    wanted = {(o["kind"], o["metadata"]["name"]) for o in p.objects}
    assert p.delete == sorted(existing - wanted)
    assert p.delete == [("Deployment", gone), ("PodDisruptionBudget", gone), ("ScaledObject", gone)]
    removed = [e for e in p.events if e[1] == "ObjectRemoved"]
    assert [e[2] for e in removed] == [f"{kind} {name} is no longer needed; deleted" for kind, name in p.delete]


def test_a_completed_hand_over_stops_the_old_leader_and_moves_status_to_the_new_one() -> None:
    handing = StreamShare(epoch=5, leader=V5, follower=V6, percent=100, final=True)
    groups = {V5.revision: GROUP, V6.revision: f"{GROUP}-{V6.revision}"}
    before = StreamStatus(share=handing, group=GROUP, groups=groups, waiting="...")
    existing = frozenset(
        {("Deployment", consumer_name(NAME, V5.revision)), ("ScaledObject", consumer_name(NAME, V5.revision))}
    )
    progress = {
        V5.revision: RevisionProgress(revision=V5.revision, epoch=5, partitions=3, lag=0),
        V6.revision: RevisionProgress(revision=V6.revision, epoch=5, partitions=3, lag=12),
    }
    seen = StreamObserved(
        existing=existing,
        deployments={V5.revision: stored(V5, "5"), V6.revision: stored(V6, "6")},
        health={V5.revision: healthy(V5), V6.revision: healthy(V6)},
        progress=progress,
        partitions=3,
    )
    p = run(with_stream(md("6"), before, stable=V6), stable=V6, observed=seen)
    assert p.status.share == StreamShare(epoch=6, leader=V6)
    assert set(of_kind(p, "Deployment")) == {consumer_name(NAME, V6.revision)}
    assert ("Deployment", consumer_name(NAME, V5.revision)) in p.delete
    assert ("ScaledObject", consumer_name(NAME, V5.revision)) in p.delete
    assert ("Normal", "StreamHandedOver") in [e[:2] for e in p.events]
    assert p.status.group == f"{GROUP}-{V6.revision}", "a promoted revision keeps its group"
    assert p.status.groups == {V6.revision: f"{GROUP}-{V6.revision}"}
    assert [r.revision for r in p.status.progress] == [V6.revision]
    assert p.status.waiting is None
    assert not p.waiting
    assert p.readiness.status == "True"
    assert "12 records behind" in p.readiness.message


def test_a_hand_over_that_waits_says_so_and_reports_every_running_revisions_progress() -> None:
    before = StreamStatus(share=StreamShare(epoch=4, leader=V5, follower=V6, percent=50), group=GROUP,
                          groups={V5.revision: GROUP, V6.revision: f"{GROUP}-{V6.revision}"})  # fmt: skip
    progress = {
        V6.revision: RevisionProgress(revision=V6.revision, epoch=4, partitions=3, lag=7),
        V5.revision: RevisionProgress(revision=V5.revision, epoch=4, partitions=2, lag=3),
        V7.revision: RevisionProgress(revision=V7.revision, epoch=1, partitions=3, lag=0),  # not ours to run
    }
    seen = StreamObserved(deployments={V5.revision: stored(V5, "5")}, progress=progress, partitions=3)
    p = run(with_stream(md("6"), before, stable=V6), stable=V6, observed=seen)
    assert p.status.share == StreamShare(epoch=5, leader=V5, follower=V6, percent=100, final=True)
    assert p.waiting
    assert p.status.waiting == f"revision {V6.revision} takes every record over from {V5.revision}"
    assert p.status.partitions == 3
    assert p.status.progress == [progress[r] for r in sorted((V5.revision, V6.revision))]
    assert p.status.group == GROUP, "the old leader serves until the hand-over completes"
    assert set(of_kind(p, "Deployment")) == {consumer_name(NAME, V5.revision), consumer_name(NAME, V6.revision)}
    assert document(p).final


@pytest.mark.parametrize(
    ("health", "status", "reason", "says"),
    [
        (healthy(V5), "True", "Consuming", f"revision {V5.revision} (version 5) consumes; 9 records behind"),
        (healthy(V5, available=False, failure="pod x is CrashLoopBackOff"), "False", "NotConsuming",
         f"revision {V5.revision} does not consume: pod x is CrashLoopBackOff"),
        (healthy(V5, available=False), "False", "NotConsuming",
         f"revision {V5.revision} does not consume: its consumers are not ready"),
        (None, "False", "NotConsuming", f"revision {V5.revision} does not consume: its consumers are not ready"),
    ],
    ids=["available", "failing", "not-ready", "no-deployment-yet"],
)  # fmt: skip
def test_stream_ready_is_the_leaders_health(health: RevisionHealth | None, status: str, reason: str, says: str) -> None:
    seen = StreamObserved(
        health={V5.revision: health} if health else {},
        progress={V5.revision: RevisionProgress(revision=V5.revision, epoch=0, partitions=3, lag=9)},
    )
    p = run(md("5"), stable=V5, observed=seen)
    assert (p.readiness.status, p.readiness.reason, p.readiness.message) == (status, reason, says)


def test_the_candidates_health_does_not_make_stream_ready() -> None:
    seen = StreamObserved(
        deployments={V5.revision: stored(V5, "5")},
        health={V5.revision: healthy(V5, available=False), V6.revision: healthy(V6)},
    )
    p = run(md("6"), stable=V5, canary=V6, percent=10, observed=seen)
    assert p.readiness.status == "False"


def test_a_plan_needs_a_stored_stream_spec() -> None:
    resource = md("5")
    bare = resource.model_copy(update={"metadata": resource.metadata.model_copy(update={"uid": None})})
    with pytest.raises(ValueError, match=r"plan_stream needs spec\.stream and a stored object"):
        run(bare, stable=V5)


# --- a shadow: the candidate scores beside the leader into the shadow topic, holding no share ------------------

SHADOW_TOPIC = "transaction-scores-shadow"


def shadowing(version: str, *, status: ModelDeploymentStatus | None = None) -> ModelDeployment:
    """examples/stream.yaml rolled out with strategy shadow (25% of the keys mirrored), which needs a shadowTopic."""
    body = md(
        version, kafka={**STREAM["spec"]["stream"]["kafka"], "shadowTopic": SHADOW_TOPIC}, status=status
    ).to_wire()
    body["spec"]["rollout"] = {"strategy": "shadow", "shadow": {"mirrorPercent": 25, "duration": "5m"}}
    return ModelDeployment.model_validate(body)


def env(p: StreamPlan, r: RevisionRef) -> dict[str, Any]:
    deployment = of_kind(p, "Deployment")[consumer_name(NAME, r.revision)]
    return {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


BEFORE_SHADOW = StreamStatus(share=StreamShare(epoch=2, leader=V5), group=GROUP, groups={V5.revision: GROUP})


def shadow_pass() -> StreamPlan:
    """The engine's candidate V6 shadows V5 (the reconciler passes it as `shadow`, no canary)."""
    resource = shadowing("6", status=ModelDeploymentStatus(phase="Progressing", stable=V5, stream=BEFORE_SHADOW))
    seen = StreamObserved(deployments={V5.revision: stored(V5, "5")}, health={V5.revision: healthy(V5)})
    return plan_stream(resource, stable=V5, canary=None, percent=0, target=V6, observed=seen, image=IMAGE,
                       shadow=V6)  # fmt: skip


def test_a_shadow_runs_beside_the_leader_in_a_shadow_group_of_its_own_without_a_share() -> None:
    p = shadow_pass()
    resource = shadowing("6")
    assert resource.spec.stream is not None
    group = shadow_group_of(group_for(resource.spec.stream, OWNER, V6.revision, first=""))
    assert group == f"{GROUP}-{V6.revision}-shadow"
    assert set(of_kind(p, "Deployment")) == {consumer_name(NAME, V5.revision), consumer_name(NAME, V6.revision)}
    candidate = env(p, V6)
    assert candidate["MODELSERVER_CONSUMER_GROUP"] == group
    assert candidate["MODELSERVER_OUTPUT_TOPIC"] == SHADOW_TOPIC
    assert candidate["MODELSERVER_COMPARE_TOPIC"] == "transaction-scores"
    assert candidate["MODELSERVER_KEY_TO"] == "2500"
    assert candidate["MODELSERVER_OFFSET_RESET"] == "latest"
    assert "MODELSERVER_SHARE_CONFIGMAP" not in candidate
    leader = of_kind(p, "Deployment")[consumer_name(NAME, V5.revision)]
    assert leader["spec"]["template"] == stored(V5, "5")["spec"]["template"], "the leader runs on as it was"
    doc = document(p)
    assert (doc.epoch, doc.leader.revision, doc.follower) == (2, V5.revision, None), "the shadow holds no share"
    assert p.status.share == StreamShare(epoch=2, leader=V5)
    assert (p.status.shadow, p.status.shadow_group) == (V6.revision, group)
    assert p.status.groups == {V5.revision: GROUP}, "a shadow group is never a share's"
    assert p.status.group == GROUP
    assert not p.waiting
    scaled = of_kind(p, "ScaledObject")
    assert scaled[consumer_name(NAME, V6.revision)]["spec"]["triggers"][0]["metadata"]["consumerGroup"] == group
    assert scaled[consumer_name(NAME, V5.revision)]["spec"]["triggers"][0]["metadata"]["consumerGroup"] == GROUP
    assert p.readiness.status == "True", "StreamReady is the leader's"


def test_a_promoted_shadow_becomes_the_follower_of_a_hand_over_in_its_own_group() -> None:
    shadowed = shadow_pass()
    previous = {o["metadata"]["name"]: o for o in shadowed.objects if o["kind"] == "Deployment"}
    resource = shadowing("6", status=ModelDeploymentStatus(phase="Progressing", stable=V6, stream=shadowed.status))
    seen = StreamObserved(
        existing=frozenset((o["kind"], o["metadata"]["name"]) for o in shadowed.objects),
        deployments={V5.revision: stored(V5, "5"), V6.revision: previous[consumer_name(NAME, V6.revision)]},
        health={V5.revision: healthy(V5), V6.revision: healthy(V6)},
    )
    p = plan_stream(resource, stable=V6, canary=None, percent=0, target=V6, observed=seen, image=IMAGE, shadow=None)
    assert set(of_kind(p, "Deployment")) == {consumer_name(NAME, V5.revision), consumer_name(NAME, V6.revision)}
    assert p.delete == [], "the old leader runs until the hand-over completes"
    follower = env(p, V6)
    assert follower["MODELSERVER_CONSUMER_GROUP"] == f"{GROUP}-{V6.revision}"
    assert follower["MODELSERVER_SHARE_CONFIGMAP"] == f"shop/{NAME}-stream"
    assert follower["MODELSERVER_OUTPUT_TOPIC"] == "transaction-scores"
    assert not any(
        n in follower for n in ("MODELSERVER_COMPARE_TOPIC", "MODELSERVER_KEY_TO", "MODELSERVER_OFFSET_RESET")
    )
    assert p.status.share == StreamShare(epoch=3, leader=V5, follower=V6, percent=100, final=True)
    doc = document(p)
    assert doc.follower is not None
    assert (doc.leader.revision, doc.follower.revision, doc.follower.group) == (
        V5.revision, V6.revision, f"{GROUP}-{V6.revision}"
    )  # fmt: skip
    assert (doc.percent, doc.final) == (100, True)
    assert (p.status.shadow, p.status.shadow_group) == (None, None)
    assert p.status.groups == {V5.revision: GROUP, V6.revision: f"{GROUP}-{V6.revision}"}
    assert p.waiting
    scaled = of_kind(p, "ScaledObject")[consumer_name(NAME, V6.revision)]
    assert scaled["spec"]["triggers"][0]["metadata"]["consumerGroup"] == f"{GROUP}-{V6.revision}"


def test_a_rolled_back_shadow_leaves_at_once_and_the_share_stands() -> None:
    shadowed = shadow_pass()
    resource = shadowing("6", status=ModelDeploymentStatus(phase="Degraded", stable=V5, stream=shadowed.status))
    seen = StreamObserved(
        existing=frozenset((o["kind"], o["metadata"]["name"]) for o in shadowed.objects),
        deployments={V5.revision: stored(V5, "5")},
        health={V5.revision: healthy(V5)},
    )
    p = plan_stream(resource, stable=V5, canary=None, percent=0, target=V6, observed=seen, image=IMAGE, shadow=None)
    gone = consumer_name(NAME, V6.revision)
    assert set(of_kind(p, "Deployment")) == {consumer_name(NAME, V5.revision)}
    assert ("Deployment", gone) in p.delete
    assert ("ScaledObject", gone) in p.delete
    assert ("PodDisruptionBudget", gone) in p.delete
    assert p.status.share == StreamShare(epoch=2, leader=V5), "the same epoch: the shadow never held a share"
    assert document(p).epoch == 2
    assert document(p).follower is None
    assert not p.waiting
    assert p.status.waiting is None
    assert (p.status.shadow, p.status.shadow_group) == (None, None)
    assert p.status.groups == {V5.revision: GROUP}
