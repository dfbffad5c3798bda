"""The kube-apiserver killed (SIGKILL) and started again in the middle of a canary, while the operator keeps
running: it must reconnect by itself, finish the rollout with every step once, and its watches must all be live
again afterwards (Kopf issue #585: a watch that stops delivering events without an error is the failure nobody
sees until the resync, if any, papers over it).

The operator runs with a resync interval longer than the test (`RESYNC_S`), so nothing the test sees after the
restart can come from the resync loop: a restored child, a rollout started by a spec change, are a watch's doing,
and the rollout's steps the engine's own wake-ups. Leader election keeps running, with a renew deadline longer than
any restart here: a leader that cannot renew for its deadline exits by design (as client-go's do), and that is
not what this test is about (with the default 10 s, an API server outage longer than that restarts the operator).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from testkit.apiserver import KwokApiServer
from testkit.waiting import eventually

from tests.faults.control_plane.conftest import StartOperator
from tests.faults.control_plane.support import NAME, Mdep, percent, retrying

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
# How soon after the API server answers /readyz again a watch must have delivered a change. Kopf retries a failed
# request (a watch's too) after 1, 1, 2, 3, 5, 8 ... s (settings.networking.error_backoffs): for an outage under
# 7 s (measured: 2.6-3.9 s from the kill to /readyz) its next attempt comes at most 5 s after the server is back;
# then the event, and one pass (under a second). The resync (RESYNC_S) is far beyond it.
WATCH_BOUND_S = 8.0


async def test_api_server_killed_and_restarted_mid_rollout_operator_reconnects_and_no_watch_stalls(
    apiserver: KwokApiServer, start_operator: StartOperator, mdep: Mdep
) -> None:
    operator = start_operator(MODELROLLOUT_RECONCILE_INTERVAL_S=str(RESYNC_S), **ELECTION)
    await mdep.create(ROLLOUT)
    await mdep.healthy_on("1", within=60)
    await mdep.to_version("2")
    paused = await mdep.wait(lambda s: s.get("currentStep") == 1, "the canary's pause", within=30)
    assert (paused.get("weights") or {}).get("canary") == 30

    outage_s = await asyncio.to_thread(apiserver.restart, down_s=DOWN_S)
    back = time.monotonic()
    assert operator.alive(), f"the operator died with the API server:\n{operator.log()[-3000:]}"

    # A child deleted right after the restart: Kopf's watch of Services (or its re-list) must see it.
    canary_service = f"{NAME}-canary"
    before = await retrying(lambda: mdep.core.read_namespaced_service(canary_service, mdep.ns), what="the Service")
    await retrying(lambda: mdep.core.delete_namespaced_service(canary_service, mdep.ns), what="delete the Service")
    deleted = time.monotonic()

    async def service_restored() -> bool | None:
        found = await mdep.core.read_namespaced_service(canary_service, mdep.ns)
        return True if found.metadata.uid != before.metadata.uid else None

    await eventually(
        service_restored,
        within=WATCH_BOUND_S,
        interval=0.1,
        what=f"Service {canary_service} deleted after the restart, restored",
    )
    service_s = time.monotonic() - deleted

    # The rollout goes on from where it was: the pause's end (a wake-up), the next step, the promotion.
    await mdep.healthy_on("2", within=PAUSE_S + 30)
    events = await mdep.events_until(
        lambda found: sum(e.reason == "Promoted" for e in found) == 2, "the Promoted Event of version 2"
    )
    assert [percent(e.message) for e in events if e.reason == "WeightSet"] == [30, 60], "each step once"
    assert [e.reason for e in events].count("RolloutStarted") == 2, "version 1, then version 2"

    # Long after the restart, a watch of each kind the test can reach still delivers: a Deployment deleted by hand
    # comes back, and a spec change starts a rollout at once.
    status = await mdep.status()
    stable = f"{NAME}-{status['stable']['revision']}"
    old = await mdep.apps.read_namespaced_deployment(stable, mdep.ns)
    await mdep.apps.delete_namespaced_deployment(stable, mdep.ns)
    deleted = time.monotonic()

    async def deployment_restored() -> bool | None:
        found = await mdep.apps.read_namespaced_deployment(stable, mdep.ns)
        return True if found.metadata.uid != old.metadata.uid else None

    await eventually(
        deployment_restored, within=WATCH_BOUND_S, interval=0.1, what=f"Deployment {stable} deleted, restored"
    )
    deployment_s = time.monotonic() - deleted

    await mdep.to_version("3")
    changed = time.monotonic()
    await mdep.wait(lambda s: (s.get("canary") or {}).get("version") == "3", "version 3's rollout", within=30)
    spec_s = time.monotonic() - changed

    print(
        f"\nAPI server down and back (SIGKILL to /readyz) in {outage_s:.2f}s; after it: a deleted Service restored "
        f"{service_s:.2f}s after the delete ({deleted - back:.1f}s after /readyz), later a deleted Deployment in "
        f"{deployment_s:.2f}s, a spec change started its rollout in {spec_s:.2f}s (bound {WATCH_BOUND_S:g}s)"
    )
    assert spec_s <= WATCH_BOUND_S, f"a spec change took {spec_s:.1f}s to start a rollout"
    assert operator.alive()
    assert operator.log().count("===== operator start") == 1, "the same process throughout"
    assert "lost the lease" not in operator.log()
