"""kill -9 of the operator at every step boundary of a canary, blue-green, shadow and A/B rollout.

Each time the rollout moves (a new status key: phase, step, roles, pending scale-downs; or a new routing document,
which a pass writes just after that status), the operator process is killed with SIGKILL and a new one started at
once; the boundary is crossed by a pass that dies right after it, every time, for every step of the strategy. The
rollout runs against real model servers and our router on the local kubelet, with clients sending requests through
the router the whole time. Afterwards:

- it resumed where it was each time: the status keys are the strategy's own, in order, each once (a rollout that
  went back or started a step over would show a key twice or a second start time of a step);
- no step was applied twice: the routing documents are the strategy's, in order, each once, and no event
  (WeightSet, Switched, ...) was posted twice;
- one promotion: one Promoted entry in history, at most one Promoted event;
- the routing never got ahead of status: no document gave the candidate more than the status written next allowed;
- nothing is left over once the scale-down ran: only the promoted revision's children (and the previous revision's
  Deployment at zero, which the operator keeps for `undo`), no pod of the old revision;
- no client request failed.

It found two product bugs, both fixed since: a pass wrote its routing before the status that recorded the decision
(killed in between, the next process decided again, and a different analysis result routed back: clients went
v2 -> v1 -> v2), and posted its events after that status (killed in between, they were never posted).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes_asyncio import client
from testkit.load import Load, LoadSummary
from testkit.operator import OperatorProcess
from testkit.shop import Shop

from tests.e2e.conftest import Stack
from tests.e2e.rollouts import (
    Rollout,
    World,
    analysis,
    assert_all_answered_by,
    ready_endpoint,
    routed,
    serve_through_router,
)
from tests.faults.rollouts.leftovers import leftovers
from tests.faults.rollouts.witness import STARTUP_S, Killer, Witness, contains_in_order, revisited

pytestmark = [pytest.mark.faults, pytest.mark.slow]

USER_HEADER = "x-user-id"
# The longest a strategy takes here from the new version to its scale-down done, with a restart at every boundary
# (shadow and abTest wait out their fixed 30 s scale-down delay).
WITHIN_S = 150


@dataclass(frozen=True)
class Strategy:
    """One strategy as a fault test runs it, and what its rollout must look like from outside."""

    rollout: Callable[[Stack, Shop | None], dict[str, Any]]
    keys: list[str]  # StepKey.short() of every status key after the new version, in order (Promoting aside)
    documents: list[str]  # Routing.short() of every routing document after the new version, in order
    events: list[str]  # reasons (WeightSet with its percent) of the decision events of the rollout, in order
    shop: bool = False  # an A/B test's success metric needs the shop's visits and conversions
    preview: bool = False  # blue-green's pre-promotion analysis needs traffic to the preview Service


def _canary(stack: Stack, _shop: Shop | None) -> dict[str, Any]:
    # Every kind of canary step and every kind of boundary: weight -> pause -> weight -> analysis -> promotion;
    # background analysis throughout.
    steps = [{"setWeight": 20}, {"pause": {"duration": "2s"}}, {"setWeight": 50}, {"analysis": {}}]
    return {"strategy": "canary", "canary": {"steps": steps, "scaleDownDelay": "2s"}, "analysis": analysis(stack)}


def _blue_green(stack: Stack, _shop: Shop | None) -> dict[str, Any]:
    # Preview -> pre-promotion analysis -> switch -> post-promotion window.
    settings = {"postPromotionWindow": "2s", "scaleDownDelay": "2s"}
    return {"strategy": "blueGreen", "blueGreen": settings, "analysis": analysis(stack)}


def _shadow(stack: Stack, _shop: Shop | None) -> dict[str, Any]:
    # A latency metric of the user's (analysis' p99 bound) replaces shadow's own relative latency check, whose 10%
    # margin over a few dozen mirrored requests fails a healthy candidate on a busy machine now and then.
    shadow = {"mirrorPercent": 100, "duration": "4s", "minAgreement": 0.95, "minComparisons": 20}
    return {"strategy": "shadow", "shadow": shadow, "analysis": analysis(stack)}


def _ab_test(stack: Stack, shop: Shop | None) -> dict[str, Any]:
    assert shop is not None
    # Conversion 10% vs 60%: decided at the first look once both variants have 30 visits.
    ab = {
        "weight": 50,
        "routeBy": {"header": USER_HEADER},
        "successMetric": {
            "successes": shop.query("conversions", stack.namespace),
            "trials": shop.query("visits", stack.namespace),
        },
        "minSamples": 30,
        "maxDuration": "60s",
    }
    return {"strategy": "abTest", "abTest": ab, "analysis": analysis(stack)}


# Product bugs these tests find, and what the test checks instead while they stand (everything else still must
# hold): the test ends as an expected failure naming each, so the output shows them, and passes once they are fixed.
_DONE = ["Healthy[2]+1sd", "Healthy[2]"]  # promoted, the old revision's scale-down pending; then done
STRATEGIES = {
    "canary": Strategy(
        _canary,
        # setWeight steps take no time: status goes from the step before one to the step after it.
        keys=["Progressing@0[1->2]", "Progressing@1[1->2]", "Progressing@3[1->2]", *_DONE],
        documents=["1:100/2:0", "1:80/2:20", "1:50/2:50", "2:100/2:0"],
        events=["RolloutStarted", "WeightSet 20", "WeightSet 50", "AnalysisPassed", "Promoting", "Promoted"],
    ),
    "blueGreen": Strategy(
        _blue_green,
        keys=["Progressing@0[1->2]", "Progressing@1[1->2]", "Progressing@3[1->2]", *_DONE],
        documents=["1:100/2:0", "1:0/2:100", "2:100/2:0"],
        events=["RolloutStarted", "AnalysisPassed", "Switched", "Promoting", "Promoted"],
        preview=True,
    ),
    "shadow": Strategy(
        _shadow,
        keys=["Progressing@0[1->2]", "Progressing@1[1->2]", *_DONE],
        documents=["1:100/2:0", "1:100/2:0 mirror 100", "2:100/2:0"],
        events=["RolloutStarted", "Mirroring", "Promoting", "Promoted"],
    ),
    "abTest": Strategy(
        _ab_test,
        keys=["Progressing@0[1->2]", "Progressing@1[1->2]", *_DONE],
        # The sticky assignment comes before the split and goes after the promotion.
        documents=["1:100/2:0", "1:100/2:0 sticky", "1:50/2:50 sticky", "2:100/2:0 sticky", "2:100/2:0"],
        events=["RolloutStarted", "UsersSplit", "AbTestWon", "Promoting", "Promoted"],
        shop=True,
    ),
}


def _event_name(reason: str, message: str) -> str:
    if reason == "WeightSet":
        return f"WeightSet {message.split(' gets ', 1)[1].split('%', 1)[0]}"
    return reason


@dataclass
class Run:
    """A rollout from version 1 to 2 driven to its end while the operator was killed at every boundary."""

    rollout: Rollout
    witness: Witness
    killer: Killer
    summary: LoadSummary
    since: float  # when version 2 was asked for

    @property
    def story(self) -> str:
        return self.witness.describe(self.since)


async def _roll_out_killing(
    world: World, operator: OperatorProcess, api: client.ApiClient, strategy: str, plan: Strategy
) -> Run:
    shop = Shop({"1": 0.1, "2": 0.6}) if plan.shop else None
    if shop is not None:
        shop.start()
    stack = world.launch(
        {"1": world.classifiers.stable, "2": world.classifiers.healthy},
        [shop.target(world.namespace)] if shop is not None else [],
    )
    rollout = world.rollout_of(stack)
    await rollout.create(routed(plan.rollout(stack, shop)))
    options: dict[str, Any] = {}
    if shop is not None:
        options = {"headers": lambda i: {USER_HEADER: f"user-{i % 400}"}, "on_outcome": shop.visit}
    load = await serve_through_router(rollout, world.classifiers.dataset, **options)
    killer = Killer(operator)
    witness = await Witness.start(api, stack.namespace, stack.name, killer=killer)
    preview: Load | None = None
    since = time.time()
    killer.armed = True
    try:
        await rollout.to_version("2")
        if plan.preview:
            url = await ready_endpoint(stack, f"{stack.name}-preview", unlike=f"{stack.name}-stable")
            preview = Load(url + stack.infer_path(), world.classifiers.dataset, rate=20).start()
        await rollout.wait(
            lambda s: (s.get("stable") or {}).get("version") == "2" and not s.get("canary") and not s.get("scaleDowns"),
            "version 2 promoted and version 1 scaled down",
            within=WITHIN_S,
        )
        await asyncio.sleep(STARTUP_S)  # the last kill (after the scale-down's status) comes a moment later
    finally:
        killer.armed = False
        summary = load.stop()
        if preview is not None:
            preview.stop()  # smoke traffic for the analysis; what clients get is `load`'s
        if shop is not None:
            shop.stop()
        await witness.stop()
        print(f"\n[{strategy}] {len(killer.kills)} kills\n{witness.describe(since)}")
    return Run(rollout, witness, killer, summary, since)


def _killed_at_every_boundary(run: Run, operator: OperatorProcess) -> None:
    """A kill after each new key, before the next one (the kill that follows a routing document comes before the
    status the same pass wrote, by at most STARTUP_S); each killed a live process, and each started a new one."""
    keys, kills = run.witness.keys, run.killer.kills
    first = next(i for i, (at, _) in enumerate(keys) if at >= run.since)
    for (at, key), (until, _) in zip(keys[first:], [*keys[first + 1 :], (float("inf"), None)], strict=True):
        assert any(at - STARTUP_S <= k.at <= until for k in kills), f"no kill at {key.short()}:\n{run.story}"
    assert all(k.exit_code == -9 for k in kills), f"a process was not alive to be killed: {kills}"
    assert operator.log().count("===== operator start") == len(kills) + 1


def _resumed_where_it_was(run: Run, plan: Strategy) -> None:
    """The strategy's status keys, in order, each once: never back, never a step started over."""
    seen = run.witness.keys_since(run.since)
    assert not revisited(seen), f"status went back to {[k.short() for k in revisited(seen)]}:\n{run.story}"
    assert [k.short() for k in seen if k.phase != "Promoting"] == plan.keys, run.story
    assert not run.witness.step_restarts(run.since), run.witness.step_restarts(run.since)


def _each_routing_once(run: Run, plan: Strategy) -> None:
    """Each routing document once, in the strategy's order; the routing never went back and was never ahead of
    what status allowed (a pass records its decision before it routes: a process killed in between finds the
    decision in status and routes as it says, never deciding again)."""
    witness, since = run.witness, run.since
    documents = [d.short() for d in witness.documents_since(since)]
    # Each once and in the strategy's order. One may be skipped: killed after recording a decision and before
    # routing it, the next process routes what status says in one document (an A/B split's sticky assignment and
    # its weights together, where the pass that died would have written the assignment first).
    once = list(dict.fromkeys(documents))
    assert contains_in_order(plan.documents, once, lambda a, b: a == b), run.story
    assert once[-1] == plan.documents[-1], run.story
    back = witness.routing_back(since)
    assert not back, f"routing went back: {back}\n{run.story}"
    over = witness.overreach("2", since)
    assert not over, f"routing ahead of status: {over}\n{run.story}"


async def _promoted_once(run: Run, plan: Strategy, status: dict[str, Any]) -> list[str]:
    """One Promoted in history; no decision event twice, none out of order. Returns the decision events missing."""
    mine = [h for h in status["history"] if h["version"] == "2"]
    assert [h["outcome"] for h in mine] == ["Promoted"], status["history"]
    serving = status["stable"]["revision"]
    events = [(r, m) for r, m in await run.rollout.events() if serving in m and _event_name(r, m) in plan.events]
    twice = [event for event, count in Counter(events).items() if count > 1]
    assert not twice, f"events posted twice: {twice}"
    names = [_event_name(*event) for event in events]
    assert names == [name for name in plan.events if name in names], f"events out of order: {names}"
    return [name for name in plan.events if name not in names]


@pytest.mark.parametrize("strategy", list(STRATEGIES))
async def test_operator_kill9_at_every_step_boundary(
    world: World, operator: OperatorProcess, kube_api: client.ApiClient, strategy: str
) -> None:
    plan = STRATEGIES[strategy]
    run = await _roll_out_killing(world, operator, kube_api, strategy, plan)
    assert run.witness.md.gaps == run.witness.routing.gaps == 0, "the watches missed versions: nothing to conclude"

    _killed_at_every_boundary(run, operator)
    _resumed_where_it_was(run, plan)
    _each_routing_once(run, plan)
    status = await run.rollout.status()
    missing = await _promoted_once(run, plan, status)

    stack = run.rollout.stack
    uid = (await run.rollout.get())["metadata"]["uid"]
    serving, previous = status["stable"]["revision"], status["history"][-2]["revision"]
    problems = await leftovers(kube_api, stack.namespace, stack.name, uid=uid, serving=serving, previous=previous,
                               preview=strategy == "blueGreen")  # fmt: skip
    assert not problems, problems

    # No client saw a failure, and version 2 answers everyone in the end.
    assert_all_answered_by(run.summary, {"1", "2"})
    assert run.summary.last(20).by_version.keys() == {"2"}, run.summary.describe()

    assert not missing, f"decision events never posted: {missing}"
