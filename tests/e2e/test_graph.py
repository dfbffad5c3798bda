"""A ModelDeployment's serving graph (`online.graph`) end to end: an ensemble of its own model and two other
ModelDeployments, through our router. A new version of its own model rolls out as a canary inside the ensemble and
is promoted; a bad one is rolled back by its own analysis; a member's own rollout reaches the graph's document and
status; and the graph answers every request throughout."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from kubernetes_asyncio import client
from testkit.kubelet.handle import NODE_SELECTOR
from testkit.waiting import eventually

from modelrollout.api import GROUP, PLURAL, VERSION
from modelrollout.planning.names import router_configmap_name
from modelrollout_contract.router import CONFIG_KEY
from modelrollout_contract.router_v2 import parse_any
from tests.e2e.rollouts import MERGE_PATCH, Rollout, World, analysis, routed, serve_through_router

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STEPS = [{"setWeight": 50}, {"pause": {"duration": "8s"}}]
MEMBERS = {"churn-b": "b1", "churn-c": "c1"}  # ModelDeployment -> its first version
GRAPH = {
    "members": [{"name": "b", "modelDeployment": "churn-b"}, {"name": "c", "modelDeployment": "churn-c"}],
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
    try:
        await graph_rollouts(rollout, kube_api, classifiers.dataset)
    finally:  # the world's clean-up waits for the namespace's pods, which the members' own pods are
        for name in MEMBERS:
            with contextlib.suppress(client.ApiException):
                await rollout.custom.delete_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, name)


async def graph_rollouts(rollout: Rollout, kube_api: client.ApiClient, dataset: Any) -> None:
    stack = rollout.stack
    for name, version in MEMBERS.items():
        await create_member(rollout, name, version)
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


async def routing_document(rollout: Rollout, kube_api: client.ApiClient) -> Any:
    stored = await client.CoreV1Api(kube_api).read_namespaced_config_map(
        router_configmap_name(rollout.stack.name), rollout.stack.namespace
    )
    return parse_any(stored.data[CONFIG_KEY])


def graph_member(status: dict[str, Any], name: str) -> dict[str, Any]:
    members = (status.get("graph") or {}).get("members") or []
    return next((m for m in members if m["name"] == name), {})
