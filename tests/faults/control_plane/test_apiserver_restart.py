"""The kube-apiserver killed (SIGKILL) and started again in the middle of a canary, while the operator keeps
running: it must reconnect by itself, finish the rollout with every step once, and its watches must all be live
again afterwards (Kopf issue #585: a watch that stops delivering events without an error is the failure nobody
sees until the resync, if any, papers over it).

The operator runs with a resync interval longer than the test (`RESYNC_S`), so nothing the test sees after the
restart can come from the resync loop: a restored child, a rollout started by a spec change, are a watch's doing,
and the rollout's steps the engine's own wake-ups. Leader election keeps running, with a renew deadline longer than
any restart here: a leader that cannot renew for its deadline exits by design (as client-go's do), and that is
not what this test is about (with the default 10 s, an API server outage longer than that restarts the operator).

What it found, under Kopf's handlers (before the operator's own watches): the watches all came back, but a
ModelDeployment whose change handler was cut short by the outage handled no further spec change for up to a minute
(Kopf's retry of a failed handler). Our informers have no per-object retry state: a spec change after the restart
starts its rollout at once, through the ModelDeployment's own watch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from testkit.apiserver import KwokApiServer
from testkit.operator import OperatorProcess
from testkit.waiting import eventually

from tests.faults.control_plane.conftest import StartOperator
from tests.faults.control_plane.support import (
    NAME,
    Mdep,
    percent,
    retrying,
    spec_change_starts_rollout,
    triggers,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

RESYNC_S = 600
ELECTION = {
    "MODELROLLOUT_LEASE_DURATION_S": "40",
    "MODELROLLOUT_RENEW_DEADLINE_S": "30",
    "MODELROLLOUT_RETRY_PERIOD_S": "2",
}
DOWN_S = 1.0  # the API server stays dead this long before it is started again
PAUSE_S = 12  # the API server dies at the start of this pause and is back well before its end
STEPS = [{"setWeight": 30}, {"pause": {"duration": f"{PAUSE_S}s"}}, {"setWeight": 60}, {"pause": {"duration": "2s"}}]
ROLLOUT = {"strategy": "canary", "canary": {"steps": STEPS}, "trafficRouting": {"provider": "router"}}
# How soon after the API server answers /readyz again a watch must have delivered a change. The operator's informers
# retry a failed list or watch after 0.5, 1, 2, 4 s (each +-20 %, kube.informer): for an outage under 7 s (measured:
# 2.6-5.0 s from the kill to /readyz) the next attempt comes at most ~5 s after the server is back; then the
# event, and one pass (under a second). The resync (RESYNC_S) is far beyond it.
RECONNECT_BOUND_S = 8.0
# Later, once the watches are back: an event and one pass (0.1-0.5 s measured), with room for a loaded machine.
DELIVERY_BOUND_S = 3.0
QUIET_S = 1.5  # after the last child's change, before the spec change: their events' passes are over


async def test_api_server_killed_and_restarted_mid_rollout_operator_reconnects_and_no_watch_stalls(
    apiserver: KwokApiServer, start_operator: StartOperator, mdep: Mdep
) -> None:
    # Which watch delivered what: the operator's modelrollout_pass_triggers_total{by=<kind>} (support.triggers).
    operator = start_operator(
        MODELROLLOUT_RECONCILE_INTERVAL_S=str(RESYNC_S), MODELROLLOUT_LOG_FORMAT="json", **ELECTION
    )
    await mdep.create(ROLLOUT)
    await mdep.healthy_on("1", within=60)
    await mdep.to_version("2")
    paused = await mdep.wait(lambda s: s.get("currentStep") == 1, "the canary's pause", within=30)
    assert (paused.get("weights") or {}).get("canary") == 30

    outage_s = await asyncio.to_thread(apiserver.restart, down_s=DOWN_S)
    assert operator.alive(), f"the operator died with the API server:\n{operator.log()[-3000:]}"

    # A child deleted right after the restart: the watch of Services must deliver it (or its re-list the new one).
    service = f"{NAME}-canary"
    service_s = await _deleted_and_restored(
        operator,
        within=RECONNECT_BOUND_S,
        kind="Service",
        name=service,
        read=lambda: mdep.core.read_namespaced_service(service, mdep.ns),
        delete=lambda: mdep.core.delete_namespaced_service(service, mdep.ns),
    )

    # The rollout goes on from where it was: the pause's end (a wake-up), the next step, the promotion.
    await mdep.healthy_on("2", within=PAUSE_S + 30)
    events = await mdep.events_until(
        lambda found: sum(e.reason == "Promoted" for e in found) == 2, "the Promoted Event of version 2"
    )
    assert [percent(e.message) for e in events if e.reason == "WeightSet"] == [30, 60], "each step once"
    assert [e.reason for e in events].count("RolloutStarted") == 2, "version 1, then version 2"

    # Long after the restart, the watches of Deployments and of ModelDeployments still deliver: a Deployment
    # deleted by hand comes back, and a spec change starts a rollout at once.
    deployment = f"{NAME}-{(await mdep.status())['stable']['revision']}"
    deployment_s = await _deleted_and_restored(
        operator,
        within=DELIVERY_BOUND_S,
        kind="Deployment",
        name=deployment,
        read=lambda: mdep.apps.read_namespaced_deployment(deployment, mdep.ns),
        delete=lambda: mdep.apps.delete_namespaced_deployment(deployment, mdep.ns),
    )
    await mdep.healthy_on("2", within=30)
    assert operator.alive()
    assert operator.log().count("===== operator start") == 1, "the same process throughout"
    assert "lost the lease" not in operator.log()
    print(
        f"\nAPI server down and back (SIGKILL to /readyz) in {outage_s:.2f}s; then a Service deleted at once came "
        f"back {service_s:.2f}s after its deletion, later a deleted Deployment {deployment_s:.2f}s after "
        f"(bounds {RECONNECT_BOUND_S:g}s right after the restart, {DELIVERY_BOUND_S:g}s later)"
    )
    await asyncio.sleep(QUIET_S)  # the restored Deployment's own events handled: the ModelDeployment is quiet
    spec_s = await spec_change_starts_rollout(operator, mdep, "3", within=DELIVERY_BOUND_S)
    print(f"a spec change started its rollout through the ModelDeployment's watch in {spec_s:.2f}s")


async def _deleted_and_restored(
    operator: OperatorProcess,
    *,
    within: float,
    kind: str,
    name: str,
    read: Callable[[], Awaitable[Any]],
    delete: Callable[[], Awaitable[Any]],
) -> float:
    """Delete a child; the seconds until the operator re-created it (`within` bounds them), checking that the
    child's own watch delivered an event about it meanwhile: the restoration is not another watch's pass."""
    before = await retrying(read, what=f"read {name}")  # the first call after the restart may hit a dead connection
    heard = await asyncio.to_thread(triggers, operator, kind)
    deleted = time.monotonic()
    await retrying(delete, what=f"delete {name}")

    async def restored() -> bool | None:
        found = await read()
        return True if found.metadata.uid != before.metadata.uid else None

    await eventually(restored, within=within, interval=0.1, what=f"{name}, deleted, restored")
    seconds = time.monotonic() - deleted
    assert await asyncio.to_thread(triggers, operator, kind) > heard, f"the {kind} watch delivered the deletion"
    return seconds
