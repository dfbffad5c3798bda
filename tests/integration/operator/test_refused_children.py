"""A child object the real API server refuses (here: a ResourceQuota on Deployments) is reported where users
look, in status and as an event, naming the object and the API server's words; the operator waits a growing
delay between attempts instead of failing every pass, and a change of the spec is tried at once. Nothing the
refusal stopped takes traffic: the stable revision keeps serving."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from testkit.operator import OperatorProcess
from testkit.waiting import eventually

from tests.integration.operator.k8s import K8s

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUOTA = "deployments"


async def limit_deployments(k8s: K8s, count: int) -> None:
    """A quota of `count` Deployments, once the quota controller has counted what exists (admission checks
    against the counted usage)."""
    body = {"metadata": {"name": QUOTA}, "spec": {"hard": {"count/deployments.apps": str(count)}}}
    await k8s.core.create_namespaced_resource_quota(k8s.ns, body)

    async def counted() -> bool | None:
        quota = await k8s.core.read_namespaced_resource_quota(QUOTA, k8s.ns)
        return True if quota.status and quota.status.used is not None and quota.status.hard else None

    await eventually(counted, within=30, what="the quota controller to count the namespace's Deployments")


async def lift_limit(k8s: K8s) -> None:
    await k8s.core.delete_namespaced_resource_quota(QUOTA, k8s.ns)


async def refusals(k8s: K8s, name: str) -> list[tuple[str, str]]:
    selector = f"involvedObject.kind=ModelDeployment,involvedObject.name={name},reason=ApplyFailed"
    events = await k8s.core.list_namespaced_event(k8s.ns, field_selector=selector)
    ordered = sorted(events.items, key=lambda e: e.metadata.name)  # <object>.<hex ns>: time order
    return [(e.type, e.message) for e in ordered]


def refused_condition(status: dict[str, Any]) -> dict[str, Any] | None:
    return next(
        (c for c in status.get("conditions", []) if c["type"] == "Degraded" and c["reason"] == "ApplyFailed"), None
    )


def assert_no_stack_trace(operator: OperatorProcess) -> None:
    assert "Traceback" not in operator.log(), operator.log()[-4000:]


@pytest.mark.operator_env(MODELROLLOUT_APPLY_RETRY_INITIAL_S="1", MODELROLLOUT_APPLY_RETRY_MAX_S="60")
async def test_a_refused_candidate_is_reported_retried_with_growing_delays_and_never_serves(
    k8s: K8s, operator: OperatorProcess
) -> None:
    await k8s.create("online-direct.yaml")
    stable = (await k8s.healthy("iris"))["status"]["stable"]
    await limit_deployments(k8s, 1)  # the stable revision's Deployment is the one

    await k8s.patch_model("iris", version="2")
    obj = await k8s.wait_for("iris", lambda s: refused_condition(s) is not None, "the refusal in status")
    status = obj["status"]
    condition = refused_condition(status)
    assert condition is not None
    assert re.search(r"refused Deployment iris-\w+ \(HTTP 403\): .*exceeded quota: deployments", status["message"])
    assert condition["message"] == status["message"]
    assert condition["observedGeneration"] == 2, "the generation that was tried"
    assert status["observedGeneration"] == 1, "the refused generation is not reconciled"
    assert (status["phase"], status["stable"]) == ("Healthy", stable), "stable keeps serving, status as it was"
    assert status.get("canary") is None

    # Attempts 1, 2, 3 follow 1 s, 2 s, 4 s apart: the resync (every 5 s) and child events do not add any.
    async def three_attempts() -> list[tuple[str, str]] | None:
        seen = await refusals(k8s, "iris")
        return seen if len(seen) >= 3 else None

    seen = await eventually(three_attempts, within=20, what="three attempts")
    assert all(type_ == "Warning" for type_, _ in seen)
    delays = [re.search(r"retrying in (\d+)s \(attempt (\d+)\)", message) for _, message in seen]
    assert [(m.group(1), m.group(2)) for m in delays if m][:3] == [("1", "1"), ("2", "2"), ("4", "3")], seen
    assert [d.metadata.name for d in await k8s.deployments("iris")] == [f"iris-{stable['revision']}"]
    assert_no_stack_trace(operator)

    await lift_limit(k8s)  # no spec change: the next scheduled attempt (at most 8 s away) goes through
    obj = await k8s.healthy("iris", version="2")
    assert refused_condition(obj["status"]) is None
    assert "refused" not in (obj["status"].get("message") or "")
    assert obj["status"]["observedGeneration"] == 2
    assert_no_stack_trace(operator)


@pytest.mark.operator_env(MODELROLLOUT_APPLY_RETRY_INITIAL_S="600", MODELROLLOUT_APPLY_RETRY_MAX_S="600")
async def test_a_first_revision_refused_is_reported_and_a_spec_change_is_tried_at_once(
    k8s: K8s, operator: OperatorProcess
) -> None:
    await limit_deployments(k8s, 0)
    await k8s.create("online-direct.yaml")
    obj = await k8s.wait_for("iris", lambda s: refused_condition(s) is not None, "the refusal in status")
    status = obj["status"]
    assert status["phase"] == "Pending"
    assert "refused Deployment iris-" in status["message"]
    assert "retrying in 600s" in status["message"]

    await asyncio.sleep(operator.interval_s + 1)  # a resync came and went: it waited for the scheduled retry
    assert len(await refusals(k8s, "iris")) == 1
    await lift_limit(k8s)
    await asyncio.sleep(operator.interval_s + 1)
    assert refused_condition((await k8s.get("iris"))["status"]) is not None, "still waiting: 600 s"

    await k8s.patch_spec("iris", {"online": {"replicas": 2}})  # the user's next spec: tried at once
    await k8s.wait_for(
        "iris",
        lambda s: s.get("phase") == "Healthy" and s.get("replicas", {}).get("stable", {}).get("ready") == 2,
        "Healthy with 2 ready replicas",
    )
    assert_no_stack_trace(operator)
