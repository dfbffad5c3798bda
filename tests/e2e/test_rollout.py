"""The whole loop: the operator drives real traffic through our router by the ConfigMap it writes, real model
servers answer, a real Prometheus scrapes them every second, and the operator's analysis of those metrics
promotes a good candidate or rolls a bad one back (DESIGN.md section 5).

Every test runs a fresh stack: model servers by version, the router (its upstream for each version is the local
server of that version), Prometheus, and the operator with a 1 s scrape interval setting.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from kubernetes_asyncio import client
from testkit.load import Load
from testkit.operator import OperatorProcess
from testkit.receiver import Receiver
from testkit.waiting import eventually

from tests.e2e import dashboards
from tests.e2e.conftest import StartOperator
from tests.e2e.dashboards import check_stack
from tests.e2e.rollouts import (
    INTERVAL_S,
    RATE,
    World,
    analysis,
    assert_all_answered_by,
    first_bad_scrape,
    ready_endpoint,
    routed,
    scrapes_behind,
    serve_through_router,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STEPS = [
    {"setWeight": 20},
    {"pause": {"duration": "6s"}},
    {"setWeight": 50},
    {"pause": {"duration": "6s"}},
    {"setWeight": 80},
    {"pause": {"duration": "6s"}},
]
# The bad candidate must be rolled back inside its first step. Runs need minRequests (5) canary requests in their
# 4 s window; at 2 requests/s to the canary the run 4 s in saw only 4 once (clean-clone run 6), and the 6 s pause
# ended before the next run. A first step of six intervals holds several runs with enough requests.
ROLLBACK_STEPS = [{"setWeight": 20}, {"pause": {"duration": "12s"}}, *STEPS[2:]]
# The operator's default webhook: Slack-formatted, for starts and ends only.
DEFAULT_HOOK = "/operator-default"
DEFAULT_EVENTS = ["started", "promoted", "rolledBack"]


# --- notifications: a local receiver hears of every rollout of these tests ---------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def operator(start_operator: StartOperator, receiver: Receiver) -> OperatorProcess:
    """The e2e operator, with a default webhook (as the chart passes it from a Secret) at the local receiver."""
    hook = {"name": "ops-chat", "url": receiver.url(DEFAULT_HOOK), "format": "slack", "events": DEFAULT_EVENTS}
    return start_operator(MODELROLLOUT_DEFAULT_WEBHOOKS=json.dumps([hook]), MODELROLLOUT_NOTIFY_RETRY_INITIAL_S="0.2")


async def webhook_in_secret(
    world: World, kube_api: client.ApiClient, receiver: Receiver, path: str, **hook: Any
) -> dict[str, Any]:
    """spec.notifications with one webhook whose URL and bearer token are in a Secret of the test's namespace."""
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="rollout-hooks"),
                             string_data={"url": receiver.url(path), "token": "t0ken"})  # fmt: skip
    await client.CoreV1Api(kube_api).create_namespaced_secret(world.namespace, secret)
    target = {"urlSecret": {"name": "rollout-hooks", "key": "url"},
              "bearerTokenSecret": {"name": "rollout-hooks", "key": "token"}}  # fmt: skip
    return {"webhooks": [{"name": "team", **target, **hook}]}


async def heard(receiver: Receiver, path: str, count: int) -> list[Any]:
    """The notifications at `path` once `count` arrived, and a moment later none more (each is sent once)."""

    async def enough() -> list[Any] | None:
        return receiver.received(path) if len(receiver.received(path)) >= count else None

    await eventually(enough, within=20, what=f"{count} notifications at {path}")
    await asyncio.sleep(1.5)  # a duplicate or a late extra would arrive by now (deliveries here take milliseconds)
    return receiver.received(path)


def kinds_and_ids(received: list[Any]) -> tuple[list[list[str]], list[str]]:
    """(kinds of each generic body, ids): ids from the Idempotency-Key, which every format carries."""
    return [r.body.get("kinds") for r in received], [r.headers["Idempotency-Key"] for r in received]


# --- canary --------------------------------------------------------------------------------------------------


async def test_a_healthy_candidate_walks_every_step_and_is_promoted(
    world: World, kube_api: client.ApiClient, receiver: Receiver
) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.healthy})
    rollout = world.rollout_of(stack)
    notifications = await webhook_in_secret(world, kube_api, receiver, "/team")
    # A second webhook whose Secret lacks its key: it fails alone, said once, and never holds the first one up.
    notifications["webhooks"].append({"name": "broken", "urlSecret": {"name": "rollout-hooks", "key": "missing"}})
    canary = routed({"strategy": "canary", "canary": {"steps": STEPS}, "analysis": analysis(stack)})
    created = time.time()
    await rollout.create(canary, notifications=notifications)
    load = await serve_through_router(rollout, world.classifiers.dataset)
    rollout.start_recording()
    started = time.time()

    await rollout.to_version("2")
    status = await rollout.wait(
        lambda s: s.get("phase") == "Healthy" and (s.get("stable") or {}).get("version") == "2", "version 2 promoted"
    )
    await asyncio.sleep(1.5)  # the router picks up the last document
    summary = load.stop()
    await rollout.stop_recording()

    assert rollout.configmap_canary_history()[-5:] == [0, 20, 50, 80, 0]
    # At every step the three agree: what status says, what the ConfigMap says, what the router has loaded.
    for weight in (20, 50, 80):
        agreeing = [
            s
            for s in rollout.samples
            if s.status == (100 - weight, weight, 0) and s.configmap == s.status and s.router == s.status
        ]
        assert agreeing, f"status, ConfigMap and router never agreed on {weight}%: {rollout.samples[-40:]}"
    assert rollout.samples[-1].configmap == rollout.samples[-1].router == (100, 0, 0)
    runs = status["analysis"]["runs"]
    assert runs, "promoted without a single analysis run"
    undecided = [r for r in runs if r["verdict"] != "Successful"]
    assert not undecided, [scrapes_behind(stack, "2", r, 4) for r in undecided] + [runs]
    assert status["history"][-1]["outcome"] == "Promoted"

    assert_all_answered_by(summary, {"1", "2"})
    during = summary.since(started)
    assert during.by_version["2"] > 0, during.describe()
    assert summary.last(RATE).by_version.keys() == {"2"}, "after promotion every answer comes from version 2"
    reasons = [reason for reason, _ in await rollout.events()]
    assert reasons.count("WeightSet") == 3
    assert "Promoted" in reasons
    # The shipped dashboards show this rollout: every panel CHECKED_BY names for this test has data.
    check_stack(stack, dashboards.CANARY, start=created)

    # The ModelDeployment's own webhook (URL and token from its Secret) heard every kind, in order, each once.
    team = await heard(receiver, "/team", 7)
    kinds, ids = kinds_and_ids(team)
    assert kinds == [["started"], ["promoted"], ["started"], *[["stepReached"]] * 3, ["promoted"]]
    assert len(set(ids)) == len(ids)
    assert [r.body["id"] for r in team] == ids
    assert all(r.headers["Authorization"] == "Bearer t0ken" for r in team)
    assert team[-1].body["stable"]["version"] == "2"
    assert [r.body["weights"]["canary"] for r in team[3:6]] == [20, 50, 80]
    # Events are named as the notifications: the same ids, in the same order.
    named = await rollout.event_names()
    assert [name for name in named if name in set(ids)] == ids
    failed = [message for reason, message in await rollout.events() if reason == "NotificationFailed"]
    assert len(failed) == 1, failed
    assert "spec.notifications.webhooks[1].urlSecret: Secret 'rollout-hooks' has no key 'missing'" in failed[0]
    # The operator's default webhook heard the starts and ends, in Slack's format.
    ops = await heard(receiver, DEFAULT_HOOK, 4)
    assert [r.body["text"].split(": ")[1] for r in ops] == ["RolloutStarted", "Promoted", "RolloutStarted", "Promoted"]
    assert [r.headers["Idempotency-Key"] for r in ops] == [ids[0], ids[1], ids[2], ids[6]]


@pytest.mark.timing
@pytest.mark.parametrize("fault", ["errors", "latency"])
async def test_a_bad_candidate_is_rolled_back_within_three_analysis_intervals(
    world: World,
    fault: str,
    record_property: Callable[[str, object], None],
    kube_api: client.ApiClient,
    receiver: Receiver,
) -> None:
    # 250 ms a call, one call at a time: the slow server answers 4 a second, above the 3 it gets at 20%.
    bad = world.classifiers.failing(0.3) if fault == "errors" else world.classifiers.slow(250)
    stack = world.launch({"1": world.classifiers.stable, "2": bad})
    rollout = world.rollout_of(stack)
    steps = {"steps": ROLLBACK_STEPS}
    # The slow server takes at most 4 requests a second, so its canary share stays small: the evidence floor is
    # sized to it (3 requests slower than the limit decide p99 as surely as 5), or the time measured below would
    # be the time to collect requests, not the time to roll back (5.5 s of the 6 s bound once with a floor of 5).
    settings = {} if fault == "errors" else {"minRequests": 3}
    notifications = await webhook_in_secret(world, kube_api, receiver, "/team", format="generic")
    canary = routed({"strategy": "canary", "canary": steps, "analysis": analysis(stack, **settings)})
    await rollout.create(canary, notifications=notifications)
    rate = RATE if fault == "errors" else 15
    load = await serve_through_router(rollout, world.classifiers.dataset, rate=rate)
    rollout.start_recording()

    await rollout.to_version("2")
    status = await rollout.wait(lambda s: s.get("phase") == "RolledBack", "the bad candidate rolled back")
    await asyncio.sleep(1)
    summary = load.stop()
    await rollout.stop_recording()

    selector = f'namespace="{stack.namespace}",model="{stack.model}",version="2"'
    if fault == "errors":
        promql = f'modelserver_requests_total{{{selector},code=~"5.."}}[5m]'
    else:
        promql = f"modelserver_request_duration_seconds_count{{{selector}}}[5m]"
    first_bad = first_bad_scrape(stack, promql)
    weight_zero = rollout.first_time(lambda s: s.configmap is not None and s.configmap[1] == 0 and s.at > first_bad)
    assert weight_zero is not None
    seconds = weight_zero - first_bad
    record_property("seconds_from_first_bad_scrape_to_weight_0", round(seconds, 2))
    print(f"\n[rollback:{fault}] {seconds:.1f} s from the first bad scrape to weight 0 (interval {INTERVAL_S} s)")
    assert seconds <= 3 * INTERVAL_S, f"rollback took {seconds:.1f}s, more than three analysis intervals"

    assert status["stable"]["version"] == "1"
    assert "canary" not in status
    assert status["history"][-1]["outcome"] == "RolledBack"
    assert status["weights"] == {"stable": 100, "canary": 0, "mirror": 0}
    failed_run = status["analysis"]["runs"][-1]
    assert failed_run["verdict"] == "Failed"
    failed_metric = "errors" if fault == "errors" else "p99"
    assert any(m["name"] == failed_metric and m["verdict"] == "Failed" for m in failed_run["metrics"]), failed_run
    # retryOnStable: the canary's failures were answered by stable, so no client saw one.
    assert_all_answered_by(summary, {"1", "2"})
    assert summary.last(rate).by_version.keys() == {"1"}
    assert max(s.configmap[1] for s in rollout.samples if s.configmap) == 20, "never went past the first step"

    # Heard in order, each once: the rollback is both rolledBack and analysisFailed.
    kinds, ids = kinds_and_ids(await heard(receiver, "/team", 5))
    assert kinds == [["started"], ["promoted"], ["started"], ["stepReached"], ["rolledBack", "analysisFailed"]]
    assert len(set(ids)) == len(ids)
    ops = await heard(receiver, DEFAULT_HOOK, 4)
    assert [r.body["text"].split(": ")[1] for r in ops] == [
        "RolloutStarted",
        "Promoted",
        "RolloutStarted",
        "AnalysisFailed",
    ]
    assert [r.headers["Idempotency-Key"] for r in ops] == [ids[0], ids[1], ids[2], ids[4]]


# --- blue-green ------------------------------------------------------------------------------------------------


@pytest.mark.timing
@pytest.mark.parametrize("healthy", [True, False], ids=["passing", "failing"])
async def test_blue_green_switches_at_once_only_after_a_passing_pre_promotion_analysis(
    world: World, healthy: bool
) -> None:
    candidate = world.classifiers.healthy if healthy else world.classifiers.failing(0.3)
    stack = world.launch({"1": world.classifiers.stable, "2": candidate})
    rollout = world.rollout_of(stack)
    blue_green = {"strategy": "blueGreen", "blueGreen": {"postPromotionWindow": "0s"}, "analysis": analysis(stack)}
    await rollout.create(routed(blue_green))
    load = await serve_through_router(rollout, world.classifiers.dataset)
    rollout.start_recording()

    await rollout.to_version("2")
    # Smoke traffic to the preview Service (`<name>-preview`), once it selects the candidate's pods.
    preview_url = await ready_endpoint(stack, f"{stack.name}-preview", unlike=f"{stack.name}-stable")
    preview = Load(preview_url + stack.infer_path(), world.classifiers.dataset, rate=20).start()
    if healthy:
        await rollout.wait(
            lambda s: s.get("phase") == "Healthy" and (s.get("stable") or {}).get("version") == "2", "switched"
        )
    else:
        await rollout.wait(lambda s: s.get("phase") == "RolledBack", "the failing preview rolled back")
    await asyncio.sleep(1.5)
    summary = load.stop()
    preview.stop()
    await rollout.stop_recording()

    status = await rollout.status()
    step_runs = [r for r in status["analysis"]["runs"] if r["kind"] == "Step"]
    assert step_runs, "no pre-promotion analysis ran"
    # Never a gradual shift: the router's canary share is never between nothing and everything.
    assert all(s.configmap[1] in (0, 100) for s in rollout.samples if s.configmap), rollout.samples
    switched = rollout.first_time(lambda s: s.stable_version == "2")
    if healthy:
        assert step_runs[-1]["verdict"] == "Successful"
        passed_at = datetime.fromisoformat(step_runs[-1]["at"]).timestamp()
        assert switched is not None
        # At once: the switch lands with the pass that saw the verdict (the sample clock is 0.1 s).
        assert switched - passed_at <= INTERVAL_S, (passed_at, switched)
        assert summary.last(RATE).by_version.keys() == {"2"}
    else:
        assert switched is None, "a failing preview must never get traffic"
        assert rollout.configmap_canary_history() == [0]
        assert step_runs[-1]["verdict"] == "Failed"
        assert status["stable"]["version"] == "1"
        assert summary.by_version.keys() == {"1"}, summary.describe()
    assert not summary.failures, summary.describe()


# --- shadow ----------------------------------------------------------------------------------------------------


async def test_a_disagreeing_shadow_is_not_promoted_and_clients_never_see_its_answers(world: World) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.disagreeing})
    rollout = world.rollout_of(stack)
    created = time.time()
    shadow = {
        "strategy": "shadow",
        "shadow": {"mirrorPercent": 100, "duration": "6s", "minAgreement": 0.95, "minComparisons": 20},
        "analysis": analysis(stack, metrics=[{"name": "errors", "builtin": "errorRate", "max": 0.02}]),
    }
    await rollout.create(routed(shadow))
    load = await serve_through_router(rollout, world.classifiers.dataset)
    rollout.start_recording()

    await rollout.to_version("2")
    status = await rollout.wait(
        lambda s: any(h["version"] == "2" for h in s.get("history", [])), "the shadow rollout to end"
    )
    summary = load.stop()
    await rollout.stop_recording()

    assert status["stable"]["version"] == "1", "a disagreeing candidate was promoted"
    assert status["history"][-1]["outcome"] == "RolledBack"
    runs = status["analysis"]["runs"]
    agreement = [m for r in runs for m in r["metrics"] if m["name"] == "shadow-agreement" and m["verdict"] == "Failed"]
    assert agreement, runs
    assert agreement[-1]["value"] < 0.95
    assert max(s.configmap[2] for s in rollout.samples if s.configmap) == 100, "the mirror was never set"
    assert all(s.configmap[1] == 0 for s in rollout.samples if s.configmap), "the shadow got client traffic"
    # Clients only ever got stable's answers, and they were stable's predictions.
    assert summary.by_version.keys() == {"1"}, summary.describe()
    assert not summary.mismatches({"1": world.classifiers.stable.predictions}), summary.describe()
    assert not summary.failures, summary.describe()
    check_stack(stack, dashboards.SHADOW, start=created)  # the rollback and the shadow's agreement


# --- the operator and Prometheus going away ---------------------------------------------------------------------


async def test_an_operator_killed_mid_rollout_continues_from_the_same_step_once(
    world: World, operator: OperatorProcess
) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.healthy})
    rollout = world.rollout_of(stack)
    steps = [{"setWeight": 30}, {"pause": {"duration": "12s"}}, {"setWeight": 60}, {"pause": {"duration": "4s"}}]
    await rollout.create(routed({"strategy": "canary", "canary": {"steps": steps}, "analysis": analysis(stack)}))
    load = await serve_through_router(rollout, world.classifiers.dataset)

    await rollout.to_version("2")
    before = await rollout.wait(lambda s: s.get("currentStep") == 1, "the pause step")
    operator.stop(graceful=False)  # SIGKILL: no clean-up, as a crash or a node loss
    await asyncio.sleep(3)
    assert (await rollout.status())["currentStep"] == 1
    operator.start()
    await asyncio.sleep(2)  # the new process resumes
    resumed = await rollout.status()
    assert resumed["currentStep"] == 1
    # The pause is measured from when it began, not restarted by the new process.
    assert resumed["stepStartedAt"] == before["stepStartedAt"]
    status = await rollout.wait(lambda s: (s.get("stable") or {}).get("version") == "2", "promoted after restart")
    summary = load.stop()

    async def promoted_twice() -> list[tuple[str, str]] | None:
        # Events are posted after the status patch that says promoted: wait for them, do not race them.
        found = await rollout.events()
        return found if [reason for reason, _ in found].count("Promoted") >= 2 else None

    events = await eventually(promoted_twice, within=10, what="the Promoted event of version 2")
    weight_events = [message for reason, message in events if reason == "WeightSet"]
    assert len(weight_events) == 2, f"each weight step once: {weight_events}"
    assert [reason for reason, _ in events].count("RolloutStarted") == 2  # version 1, then version 2
    assert [reason for reason, _ in events].count("Promoted") == 2  # version 1, then version 2
    assert status["history"][-1]["outcome"] == "Promoted"
    assert not summary.failures, summary.describe()
    assert operator.log().count("===== operator start") == 2


async def test_no_promotion_while_prometheus_is_down(world: World) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.healthy})
    rollout = world.rollout_of(stack)
    steps = [{"setWeight": 50}, {"pause": {"duration": "8s"}}]
    settings = analysis(stack, inconclusiveLimit=1000)
    await rollout.create(routed({"strategy": "canary", "canary": {"steps": steps}, "analysis": settings}))
    load = await serve_through_router(rollout, world.classifiers.dataset)

    await rollout.to_version("2")
    await rollout.wait(
        lambda s: any(r["verdict"] == "Successful" for r in (s.get("analysis") or {}).get("runs", [])),
        "a first passing analysis run",
    )
    stack.prometheus.stop()
    # Well past the end of the pause: every run since is an Error (no data), so the promotion waits.
    await asyncio.sleep(8 + 3 * INTERVAL_S)
    status = await rollout.status()
    assert status["stable"]["version"] == "1", "promoted while Prometheus was down"
    assert status["canary"]["version"] == "2"
    assert status["analysis"]["runs"][-1]["verdict"] == "Error"
    assert "promotion waits for a passing analysis run" in status["message"]

    stack.prometheus.start()
    status = await rollout.wait(lambda s: (s.get("stable") or {}).get("version") == "2", "promoted once data is back")
    summary = load.stop()
    assert status["analysis"]["runs"][-1]["verdict"] == "Successful"
    assert not summary.failures, summary.describe()


async def test_the_sequential_judge_rolls_a_failing_candidate_back_with_its_evidence(world: World) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.failing(0.3)})
    rollout = world.rollout_of(stack)
    settings = analysis(
        stack, judge={"type": "sequential"}, metrics=[{"name": "errors", "builtin": "errorRate", "max": 0.02}]
    )
    await rollout.create(routed({"strategy": "canary", "canary": {"steps": STEPS}, "analysis": settings}))
    load = await serve_through_router(rollout, world.classifiers.dataset)

    await rollout.to_version("2")
    status = await rollout.wait(lambda s: s.get("phase") == "RolledBack", "rolled back by the sequential test")
    summary = load.stop()

    failed = status["analysis"]["runs"][-1]
    assert failed["verdict"] == "Failed"
    (errors,) = [m for m in failed["metrics"] if m["name"] == "errors"]
    assert errors["verdict"] == "Failed"
    assert errors["evidence"], "the judge says why: its statistic, bound and counts"
    assert status["stable"]["version"] == "1"
    assert not summary.failures, summary.describe()
