"""A ModelDeployment's serving graph (`online.graph`) end to end: an ensemble of its own model and two other
ModelDeployments, through our router. A new version of its own model rolls out as a canary inside the ensemble and
is promoted; a bad one is rolled back by its own analysis; a member's own rollout reaches the graph's document and
status; and the graph answers every request throughout."""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from kubernetes_asyncio import client
from testkit.kubelet.handle import NODE_SELECTOR
from testkit.shop import Shop
from testkit.waiting import eventually

from modelrollout.api import GROUP, PLURAL, VERSION
from modelrollout.planning.names import router_configmap_name
from modelrollout_contract.router import CONFIG_KEY
from modelrollout_contract.router_v2 import parse_any
from tests.e2e.rollouts import MERGE_PATCH, RATE, Rollout, World, analysis, routed, serve_through_router

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STEPS = [{"setWeight": 50}, {"pause": {"duration": "8s"}}]
MEMBERS = {"churn-b": "b1", "churn-c": "c1"}  # ModelDeployment -> its first version
USER_HEADER = "x-user-id"
# How long after the operator rewrote the routing document the router may still route by the old one: it follows
# its ConfigMap through a watch (well under a second here).
ROUTER_FOLLOWS_S = 1.0
_ids = random.Random(18)
USERS = [uuid.UUID(int=_ids.getrandbits(128)).hex for _ in range(400)]


def user_of(index: int) -> str:
    return USERS[index % len(USERS)]


GRAPH_MEMBERS = {"members": [{"name": "b", "modelDeployment": "churn-b"}, {"name": "c", "modelDeployment": "churn-c"}]}
GRAPH = {
    **GRAPH_MEMBERS,
    # Two of three answers make an answer: a member failing a call costs the client nothing.
    "ensemble": {"members": ["self", "b", "c"], "quorum": 2, "memberTimeout": "2s"},
}


async def test_an_ensemble_members_canary_is_promoted_and_a_bad_one_rolled_back_while_the_graph_answers(
    world: World, kube_api: client.ApiClient
) -> None:
    classifiers = world.classifiers
    stack = world.launch({"1": classifiers.stable, "2": classifiers.healthy, "3": classifiers.failing(0.3),
                          "b1": classifiers.healthy, "b2": classifiers.stable, "c1": classifiers.stable})  # fmt: skip
    rollout = world.rollout_of(stack)
    async with members_serving(rollout):
        await graph_rollouts(rollout, kube_api, classifiers.dataset)


async def graph_rollouts(rollout: Rollout, kube_api: client.ApiClient, dataset: Any) -> None:
    stack = rollout.stack
    await rollout.create(routed({"strategy": "canary", "canary": {"steps": STEPS}, "analysis": analysis(stack)}),
                         online={"graph": GRAPH})  # fmt: skip
    document = await routing_document(rollout, kube_api)
    assert document.ensembles["ensemble"].members == ["stable", "b", "c"]
    assert (document.backends["b"].version, document.backends["c"].version) == ("b1", "c1")

    load = await serve_through_router(rollout, dataset)
    await rollout.to_version("2")
    during = await rollout.wait(lambda s: graph_member(s, "self").get("canary", {}).get("version") == "2",
                                "version 2 a canary inside the ensemble")  # fmt: skip
    assert graph_member(during, "b")["stable"]["version"] == "b1"
    await rollout.wait(lambda s: s.get("phase") == "Healthy" and s["stable"]["version"] == "2", "version 2 promoted")

    await rollout.to_version("3")  # fails 30% of its calls
    status = await rollout.wait(lambda s: s.get("phase") == "RolledBack", "version 3 rolled back", within=120)
    assert status["stable"]["version"] == "2"
    assert status["history"][-1]["outcome"] == "RolledBack"

    # A member's own rollout (churn-b, direct to b2) reaches the graph's status and its router's document.
    await set_member_version(rollout, "churn-b", "b2")
    await rollout.wait(lambda s: (graph_member(s, "b").get("stable") or {}).get("version") == "b2",
                       "member b's new version in the graph's status", within=60)  # fmt: skip

    async def b2_routed() -> bool | None:
        return (await routing_document(rollout, kube_api)).backends["b"].version == "b2" or None

    await eventually(b2_routed, within=30, what="member b's new version in the router's document")
    load.wait_seconds(1)
    summary = load.stop()

    assert not summary.failures, summary.describe()  # the graph answered every request
    roles = summary.by_role
    assert set(roles) <= {"ensemble", "ensemble-canary"}, summary.describe()
    assert roles["ensemble-canary"] > 0, summary.describe()  # the canaries answered inside the ensemble
    answered = [o for o in summary.outcomes if o.ok]
    assert all(o.ensemble and o.ensemble.count(",") == 2 for o in answered), answered[:3]
    # Version 3 failed some of its calls: the quorum answered, and said which member was left out and why.
    cut = [o.ensemble for o in answered if o.role == "ensemble-canary" and o.ensemble and "canary=" in o.ensemble]
    assert cut, summary.describe()
    assert all(tag.endswith(("canary=error", "canary=unreachable")) for tag in cut), cut[:5]
    members = {m["name"]: m for m in (await rollout.status())["graph"]["members"]}
    assert {n: (m["phase"], m["stable"]["version"]) for n, m in members.items()} == {
        "self": ("RolledBack", "2"),
        "b": ("Healthy", "b2"),
        "c": ("Healthy", "c1"),
    }


async def test_an_ab_n_test_of_the_model_and_two_members_picks_the_member_that_converts_better_and_routes_to_it(
    world: World, kube_api: client.ApiClient
) -> None:
    classifiers = world.classifiers
    shop = Shop({"1": 0.05, "b1": 0.05, "c1": 0.25})  # c's users buy five times as often
    shop.start()
    stack = world.launch({"1": classifiers.stable, "b1": classifiers.healthy, "c1": classifiers.stable},
                         [shop.target(world.namespace)])  # fmt: skip
    rollout = world.rollout_of(stack)
    abn = {
        "variants": [{"name": "self", "weight": 34}, {"name": "b", "weight": 33}, {"name": "c", "weight": 33}],
        "routeBy": {"header": USER_HEADER},
        "successMetric": {"successes": shop.query("conversions", stack.namespace),
                          "trials": shop.query("visits", stack.namespace)},
        "minSamples": 100,
        "interval": "2s",
        # b converts as the control does: a family-wise alpha of 1% bounds the chance of calling it either way (the
        # correction's promise) to 1% of runs; c's p-value at 100 trials each (~6e-5) is far below Holm's 0.5%.
        "alpha": 0.01,
        "onWinner": "route",
    }  # fmt: skip
    try:
        async with members_serving(rollout):
            direct = {"strategy": "direct", "analysis": analysis(stack)}
            await rollout.create(routed(direct, retry_on_stable=False),
                                 online={"graph": {**GRAPH_MEMBERS, "abn": abn}})  # fmt: skip
            document = await routing_document(rollout, kube_api)
            assert weighted(document) == [("stable", 34), ("b", 33), ("c", 33)]
            load = await serve_through_router(
                rollout, classifiers.dataset, headers=lambda i: {USER_HEADER: user_of(i)}, on_outcome=shop.visit
            )
            status = await rollout.wait(lambda s: ((s.get("graph") or {}).get("abn") or {}).get("winner") == "c",
                                        "the A/B/n test to pick c", within=120)  # fmt: skip
            # The pass that decided began before it rewrote the document: until then every user kept one variant.
            decided_at = datetime.fromisoformat(status["graph"]["abn"]["evaluatedAt"]).timestamp()

            async def routed_to_c() -> bool:
                document = await routing_document(rollout, kube_api)
                return weighted(document) == [("c", 100)]

            await eventually(routed_to_c, within=10, what="the router's document to send every user to c")
            switched_at = time.time()
            load.wait_for(len(load.outcomes) + 3 * int(RATE))  # 3 s more: the router follows its document in 1
            summary = load.stop()
    finally:
        shop.stop()
    assert not summary.failures, summary.describe()
    versions_of: dict[str, set[str | None]] = defaultdict(set)
    for outcome in summary.outcomes:
        if outcome.sent_at < decided_at:
            versions_of[user_of(outcome.index)].add(outcome.version)
    assert all(len(seen) == 1 for seen in versions_of.values()), "a user answered by two variants during the test"
    assert set(summary.by_version) == {"1", "b1", "c1"}, summary.describe()
    after = [o for o in summary.outcomes if o.sent_at >= switched_at + ROUTER_FOLLOWS_S]
    assert len(after) >= RATE, f"only {len(after)} requests after the switch"
    assert {o.version for o in after} == {"c1"}, Counter(o.version for o in after)
    verdicts = {v["name"]: v["verdict"] for v in status["graph"]["abn"]["variants"]}
    assert verdicts == {"self": "Control", "b": "Undecided", "c": "Better"}, status["graph"]["abn"]
    assert "winner c (Holm" in status["graph"]["abn"]["message"]
    assert "every user is routed to c" in status["graph"]["abn"]["message"]
    decided = [message for reason, message in await rollout.events() if reason == "AbnDecided"]
    assert len(decided) == 1, decided
    assert "winner c" in decided[0]


@contextlib.asynccontextmanager
async def members_serving(rollout: Rollout) -> AsyncIterator[None]:
    """MEMBERS, each serving its first version, for the block; deleted after it, since the world's clean-up waits
    for the namespace's pods, which the members' own pods are."""
    try:
        for name, version in MEMBERS.items():
            await create_member(rollout, name, version)
        yield
    finally:
        for name in MEMBERS:
            with contextlib.suppress(client.ApiException):
                await rollout.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, rollout.stack.namespace, PLURAL, name
                )


async def create_member(rollout: Rollout, name: str, version: str) -> None:
    """A ModelDeployment of its own serving `version` of the stack's model, rolled out directly."""
    stack = rollout.stack
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": stack.model_spec(version),
            "online": {"replicas": 1},
            "rollout": {"strategy": "direct"},
            "pod": {"nodeSelector": NODE_SELECTOR},
        },
    }
    await rollout.custom.create_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, body)
    await member_serving(rollout, name, version)


async def set_member_version(rollout: Rollout, name: str, version: str) -> None:
    model: dict[str, Any] = {"className": None, "env": None, **rollout.stack.model_spec(version)}
    await rollout.custom.patch_namespaced_custom_object(
        GROUP, VERSION, rollout.stack.namespace, PLURAL, name, {"spec": {"model": model}}, _content_type=MERGE_PATCH
    )
    await member_serving(rollout, name, version)


async def member_serving(rollout: Rollout, name: str, version: str) -> None:
    async def serving() -> bool | None:
        found = await rollout.custom.get_namespaced_custom_object(GROUP, VERSION, rollout.stack.namespace, PLURAL, name)
        status = found.get("status") or {}
        return (status.get("phase") == "Healthy" and (status.get("stable") or {}).get("version") == version) or None

    await eventually(serving, within=90, what=f"ModelDeployment {name} serving version {version}")


def weighted(document: Any) -> list[tuple[str, int]]:
    """The backends the document's split gives users to, with their percent (those at 0% left out)."""
    return [(share.backend, share.weight) for share in document.split if share.weight]


async def routing_document(rollout: Rollout, kube_api: client.ApiClient) -> Any:
    stored = await client.CoreV1Api(kube_api).read_namespaced_config_map(
        router_configmap_name(rollout.stack.name), rollout.stack.namespace
    )
    return parse_any(stored.data[CONFIG_KEY])


def graph_member(status: dict[str, Any], name: str) -> dict[str, Any]:
    members = (status.get("graph") or {}).get("members") or []
    return next((m for m in members if m["name"] == name), {})
