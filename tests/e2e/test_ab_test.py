"""A/B tests end to end: users split by our router (sticky by header), the shop's business metric scraped by a
real Prometheus, the operator's test deciding: a truly better candidate wins and is promoted; equal variants
run until maxDuration and end undecided with stable serving."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
from testkit.load import LoadSummary
from testkit.shop import Shop

from tests.e2e import dashboards
from tests.e2e.dashboards import check_stack
from tests.e2e.rollouts import RATE, Rollout, World, analysis, assert_all_answered_by, routed, serve_through_router

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USER_HEADER = "x-user-id"
_ids = random.Random(42)
USERS = [uuid.UUID(int=_ids.getrandbits(128)).hex for _ in range(400)]


def user_of(index: int) -> str:
    return USERS[index % len(USERS)]


def ab_rollout(stack: Any, shop: Shop, **ab: Any) -> dict[str, Any]:
    return routed(
        {
            "strategy": "abTest",
            "abTest": {
                "weight": 50,
                "routeBy": {"header": USER_HEADER},
                "successMetric": {
                    "successes": shop.query("conversions", stack.namespace),
                    "trials": shop.query("visits", stack.namespace),
                },
                **ab,
            },
            "analysis": analysis(stack),
        }
    )


async def run_ab_test(world: World, shop: Shop, **ab: Any) -> tuple[Rollout, LoadSummary, dict[str, Any]]:
    """Version 1 serving, then an A/B test of version 2 until it ends; the load stops a second later."""
    shop.start()
    stack = world.launch(
        {"1": world.classifiers.stable, "2": world.classifiers.healthy}, [shop.target(world.namespace)]
    )
    rollout = world.rollout_of(stack)
    await rollout.create(ab_rollout(stack, shop, **ab))
    load = await serve_through_router(
        rollout,
        world.classifiers.dataset,
        headers=lambda i: {USER_HEADER: user_of(i)},
        on_outcome=shop.visit,
    )
    rollout.start_recording()
    await rollout.to_version("2")
    status = await rollout.wait(
        lambda s: s.get("canary") is None and bool(s.get("history")) and s["history"][-1]["version"] == "2",
        "the A/B test of version 2 ended",
        within=120,
    )
    await asyncio.sleep(1.5)  # the router picks up the last document
    summary = load.stop()
    await rollout.stop_recording()
    shop.stop()
    return rollout, summary, status


def split_window(rollout: Rollout) -> tuple[float, float]:
    """The time the router itself said it assigned half of the users by key: what it served, not what the
    ConfigMap or status said (the routing writes come before status at both ends, the router reloads after)."""
    window = rollout.router_split(50)
    assert window is not None, "the router never assigned users 50/50 by key"
    return window


def assert_users_stick(summary: LoadSummary, since: float, until: float) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for outcome in summary.outcomes:
        # Sent after the split was in force and answered before it was seen still in force: the router, which
        # takes its routing snapshot when a request arrives, assigned this one by the split.
        inside = since <= outcome.sent_at and outcome.sent_at + outcome.latency_s <= until
        if inside and outcome.ok and outcome.version is not None:
            seen[user_of(outcome.index)].add(outcome.version)
    # A winner can come ~10 s after the split: about 8 s of the window at 40 requests/s, ~290 of the 400 users.
    assert len(seen) >= 150, f"too few users in the split window: {len(seen)}"
    switched = [user for user, versions in seen.items() if len(versions) > 1]
    assert not switched, f"{len(switched)} users saw both variants, e.g. {_answers(summary, switched[:3], since)}"
    on_b = sum(versions == {"2"} for versions in seen.values()) / len(seen)
    assert 0.38 <= on_b <= 0.62, f"{on_b:.0%} of users on the candidate at weight 50"
    return seen


def _answers(summary: LoadSummary, users: list[str], since: float) -> dict[str, list[tuple[float, str, str]]]:
    """Each user's answers: seconds after the split began, version, role (who answered, after any retry)."""
    return {
        user: [
            (round(o.sent_at - since, 2), o.version or "-", o.role or "-")
            for o in summary.outcomes
            if user_of(o.index) == user
        ]
        for user in users
    }


async def test_a_truly_better_candidate_wins_and_is_promoted(world: World) -> None:
    shop = Shop({"1": 0.20, "2": 0.35})
    started = time.time()
    rollout, summary, status = await run_ab_test(world, shop, minSamples=150, maxDuration="90s")

    result = status["abTest"]
    since, until = split_window(rollout)
    print(f"\n[ab:better] {result} decided {until - since:.1f}s after the split")
    assert status["stable"]["version"] == "2"
    assert status["history"][-1]["outcome"] == "Promoted"
    assert result["winner"] == "canary", result
    assert result["pValue"] < 0.05
    assert result["interval"]["low"] > 0, "the whole interval favours the candidate"
    assert min(result["samplesStable"], result["samplesCanary"]) >= 150
    assert 0.10 <= result["rateStable"] <= 0.30
    assert 0.25 <= result["rateCanary"] <= 0.45
    reasons = [reason for reason, _ in await rollout.events()]
    assert "UsersSplit" in reasons
    assert "AbTestWon" in reasons

    assert_users_stick(summary, since, until)
    assert_all_answered_by(summary, {"1", "2"})
    assert summary.last(RATE).by_version.keys() == {"2"}, "after promotion every user gets version 2"
    config = await rollout.configmap()
    assert config is not None
    assert config.sticky_by is None, "the split ends with the test"
    check_stack(rollout.stack, dashboards.AB_TEST, start=started)  # the variants' rates and trials


async def test_equal_variants_end_undecided_at_the_limit_and_stable_keeps_serving(world: World) -> None:
    # The conversions are seeded per request, so whether this run shows a chance difference depends only on where
    # the split starts in the request sequence. Seed 1 was checked offline at every start in the first 400
    # requests (1,200 requests, a look every 40): the sequential test never names a winner. Seed 7, for one, does
    # at 27 of 200 starts; the rate of false winners over many runs is the unit tests' business.
    shop = Shop({"1": 0.25, "2": 0.25}, seed=1)
    rollout, summary, status = await run_ab_test(world, shop, test="sequential", minSamples=100, maxDuration="24s")

    result = status["abTest"]
    print(f"\n[ab:equal] {result}")
    assert status["stable"]["version"] == "1"
    assert status["history"][-1]["outcome"] == "Undecided"
    assert status["phase"] == "RolledBack"
    assert result["winner"] == "undecided", result
    assert result["eValue"] < 20, "no evidence for a difference at alpha 0.05"
    assert result["interval"]["low"] < 0 < result["interval"]["high"]
    assert min(result["samplesStable"], result["samplesCanary"]) >= 100
    since, until = split_window(rollout)
    assert until - since >= 24 - 2.5, "the test ran until maxDuration"
    reasons = [reason for reason, _ in await rollout.events()]
    assert "AbTestUndecided" in reasons
    assert "AbTestWon" not in reasons

    assert_users_stick(summary, since, until)
    assert_all_answered_by(summary, {"1", "2"})
    assert summary.last(RATE).by_version.keys() == {"1"}, "stable serves everyone again"
    config = await rollout.configmap()
    assert config is not None
    assert (config.weights.stable, config.weights.canary) == (100, 0)
    assert config.sticky_by is None
