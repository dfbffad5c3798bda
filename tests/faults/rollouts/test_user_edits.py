"""Users editing what the operator also writes, in the middle of a rollout step.

- the ModelDeployment: labels, annotations and a spec field that is not part of the revision (the router's
  timeout); and, separately, the duration of the pause the rollout is in;
- the HTTPRoute (provider gatewayAPI) and the VirtualService (provider istio): the user's own parts of them, a
  header match on the rule the operator manages and a path of another rule.

Each time: no lost update (the user's change is in every version written after it, and still there once the
rollout is over), no restarted rollout (same candidate, same step, same step start), and no fight: once the
operator has acted on the change, the object stops changing. Writes are counted by a watch over several resync
intervals (the operator runs a pass every second here), so a pass that rewrote anything would show.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from kubernetes_asyncio import client
from testkit.waiting import eventually

from modelrollout.api import GROUP, PLURAL, VERSION
from modelrollout.traffic import gateway_api, istio
from modelrollout.traffic.patching import Routing
from tests.e2e.rollouts import MERGE_PATCH, Rollout, World, routed, serve_through_router
from tests.faults.rollouts.recording import ObjectHistory, Version
from tests.faults.rollouts.witness import Witness
from tests.integration.traffic.conftest import GATEWAY, JSON_PATCH, VIRTUAL_SERVICE

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.operator_env(MODELROLLOUT_RECONCILE_INTERVAL_S="1")]

SETTLE_S = 1.5  # the operator's answer to an edit (one pass, its writes) is over well within this
QUIET_S = 4.0  # then no write at all for this long: four resync passes
HELD = [{"setWeight": 30}, {"pause": {}}]  # a step that lasts until promoted: nothing moves but the edits


def _quiet(versions: list[Version], since: float) -> list[str]:
    """The writes from `since` on, each with the fields it changed: a fight shows what is fought over."""
    found = []
    for before, after in itertools.pairwise(versions):
        if after.at >= since:
            changed = sorted(_changed(_flat(before.obj), _flat(after.obj)))[:8]
            found.append(f"resourceVersion {after.resource_version} at +{after.at - since:.2f}s changed {changed}")
    return found


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        skip = ("metadata.managedFields", "metadata.resourceVersion")
        items = [(f"{prefix}{k}", v) for k, v in obj.items()]
        return {p: x for key, v in items if key not in skip for p, x in _flat(v, key + ".").items()}
    return {prefix.rstrip("."): obj}


def _changed(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    return {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}


async def _held_at_step_one(rollout: Rollout) -> dict[str, Any]:
    return await rollout.wait(lambda s: s.get("currentStep") == 1 and s.get("paused"), "the canary held at 30%")


def _same_step(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in ("canary", "currentStep", "stepStartedAt", "rolloutStartedAt"):
        assert after.get(key) == before.get(key), f"status.{key}: {before.get(key)} -> {after.get(key)}"


# --- the ModelDeployment ---------------------------------------------------------------------------------------


async def test_user_edits_the_model_deployment_labels_annotations_and_spec_mid_step(
    world: World, kube_api: client.ApiClient
) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.healthy})
    rollout = world.rollout_of(stack)
    await rollout.create(routed({"strategy": "canary", "canary": {"steps": HELD}}))
    load = await serve_through_router(rollout, world.classifiers.dataset)
    witness = await Witness.start(kube_api, stack.namespace, stack.name)
    await rollout.to_version("2")
    before = await _held_at_step_one(rollout)

    edit = {
        "metadata": {"labels": {"team": "fraud"}, "annotations": {"example.com/owner": "alice"}},
        "spec": {"rollout": {"trafficRouting": {"router": {"timeout": "7s"}}}},
    }
    edited = await rollout.custom.patch_namespaced_custom_object(*_md(rollout), edit, _content_type=MERGE_PATCH)
    generation = edited["metadata"]["generation"]
    await rollout.wait(lambda s: s.get("observedGeneration") == generation, "the operator to act on the edit")
    await asyncio.sleep(SETTLE_S)
    quiet_from = time.time()
    await asyncio.sleep(QUIET_S)
    config = await rollout.configmap()
    status = await rollout.status()

    assert not _quiet(witness.md.versions, quiet_from), _quiet(witness.md.versions, quiet_from)
    assert not _quiet(witness.routing.versions, quiet_from), _quiet(witness.routing.versions, quiet_from)
    _same_step(before, status)
    after_edit = [
        v for v in witness.md.versions if int(v.resource_version) >= int(edited["metadata"]["resourceVersion"])
    ]
    for version in after_edit:
        assert _has_edit(version.obj or {}), f"the edit is gone from resourceVersion {version.resource_version}"
    assert config is not None
    assert config.timeout_seconds == 7, "the spec change reached the routing document"
    assert (config.weights.stable, config.weights.canary) == (70, 30)

    await rollout.verb("promote")
    done = await rollout.wait(lambda s: (s.get("stable") or {}).get("version") == "2", "version 2 promoted")
    summary = load.stop()
    await witness.stop()
    assert _has_edit(await rollout.get()), "the edit did not survive the rollout"
    assert [h["outcome"] for h in done["history"] if h["version"] == "2"] == ["Promoted"]
    assert not summary.failures, summary.describe()


def _md(rollout: Rollout) -> tuple[str, str, str, str, str]:
    return GROUP, VERSION, rollout.stack.namespace, PLURAL, rollout.stack.name


def _has_edit(obj: dict[str, Any]) -> bool:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    return (
        (meta.get("labels") or {}).get("team") == "fraud"
        and (meta.get("annotations") or {}).get("example.com/owner") == "alice"
        and spec["rollout"]["trafficRouting"]["router"].get("timeout") == "7s"
    )


async def test_user_shortens_the_pause_the_rollout_is_in(world: World, kube_api: client.ApiClient) -> None:
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.healthy})
    rollout = world.rollout_of(stack)
    steps = [{"setWeight": 30}, {"pause": {"duration": "10m"}}, {"setWeight": 60}, {"pause": {}}]
    await rollout.create(routed({"strategy": "canary", "canary": {"steps": steps}}))
    witness = await Witness.start(kube_api, stack.namespace, stack.name)
    since = time.time()
    await rollout.to_version("2")
    before = await rollout.wait(lambda s: s.get("currentStep") == 1, "the 10-minute pause")

    # The user decides ten minutes is too long: 3 s it is, counted from when the pause began.
    shorten = [{"op": "replace", "path": "/spec/rollout/canary/steps/1/pause/duration", "value": "3s"}]
    await rollout.custom.patch_namespaced_custom_object(*_md(rollout), shorten, **JSON_PATCH)
    status = await rollout.wait(lambda s: s.get("currentStep") == 3, "the pause to end", within=30)
    await asyncio.sleep(SETTLE_S)
    quiet_from = time.time()
    await asyncio.sleep(QUIET_S)
    md = await rollout.get()
    await witness.stop()

    assert md["spec"]["rollout"]["canary"]["steps"][1]["pause"]["duration"] == "3s", "the user's change is gone"
    assert not _quiet(witness.md.versions, quiet_from), _quiet(witness.md.versions, quiet_from)
    assert not _quiet(witness.routing.versions, quiet_from), _quiet(witness.routing.versions, quiet_from)
    assert status["canary"] == before["canary"], "a new rollout"
    assert status["rolloutStartedAt"] == before["rolloutStartedAt"], "the rollout started over"
    started = _seconds(before["stepStartedAt"])
    left = min(at for at, key in witness.keys if key.step == 3)
    assert left - started < 3 + 3, f"the pause ended {left - started:.1f}s after it began, not ~3s"
    assert [doc.weights for at, doc in witness.documents if at >= since] == [(100, 0), (70, 30), (40, 60)]
    events = [reason for reason, message in await rollout.events() if status["canary"]["revision"] in message]
    assert events.count("RolloutStarted") == 1, "the rollout started over"


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


# --- the user's routing objects ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mesh:
    """A user's routing object for the ModelDeployment `churn`, the provider that edits it, and the user's edit."""

    resource: tuple[str, str, str]
    body: dict[str, Any]
    routing: dict[str, Any]
    edit: list[dict[str, Any]]
    edited: Callable[[dict[str, Any]], bool]  # the user's edit is there
    parse: Callable[[dict[str, Any]], Routing]


HTTP_ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "churn"},
    "spec": {
        "parentRefs": [{"name": "public"}],
        "hostnames": ["churn.example.com"],
        "rules": [
            {
                "name": "home",
                "matches": [{"path": {"type": "PathPrefix", "value": "/home"}}],
                "backendRefs": [{"name": "web", "port": 8080}],
            },
            {
                "name": "model",
                "matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
                "backendRefs": [{"name": "churn", "port": 80}],
            },
        ],
    },
}
VIRTUAL_SERVICE_BODY = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "churn"},
    "spec": {
        "hosts": ["churn.example.com"],
        "gateways": ["public"],
        "http": [
            {"name": "docs", "match": [{"uri": {"prefix": "/docs"}}], "route": [{"destination": {"host": "docs"}}]},
            {"name": "primary", "match": [{"uri": {"prefix": "/v2"}}], "route": [{"destination": {"host": "churn"}}]},
        ],
    },
}
_GATEWAY_TARGET = gateway_api.GatewayTarget(
    name="churn", stable_service="churn-stable", canary_service="churn-canary", rule_name="model"
)
_ISTIO_TARGET = istio.IstioTarget(
    name="churn", namespace="unused", stable_service="churn-stable", canary_service="churn-canary", routes=("primary",)
)


def _rule(obj: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    return next(r for r in obj["spec"][key] if r.get("name") == name)


MESHES = {
    "httproute-gatewayAPI": Mesh(
        resource=GATEWAY,
        body=HTTP_ROUTE,
        routing={"provider": "gatewayAPI", "gatewayAPI": {"httpRoute": "churn", "ruleName": "model"}},
        # A header match on the rule we manage (its backendRefs are ours, its matches the user's), another rule's
        # path, a label.
        edit=[
            {"op": "add", "path": "/spec/rules/1/matches/0/headers", "value": [{"name": "x-tenant", "value": "acme"}]},
            {"op": "replace", "path": "/spec/rules/0/matches/0/path/value", "value": "/shop"},
            {"op": "add", "path": "/metadata/labels", "value": {"team": "web"}},
        ],
        edited=lambda obj: (
            _rule(obj, "rules", "model")["matches"][0].get("headers")
            == [{"type": "Exact", "name": "x-tenant", "value": "acme"}]
            and _rule(obj, "rules", "home")["matches"][0]["path"]["value"] == "/shop"
            and obj["metadata"].get("labels", {}).get("team") == "web"
        ),
        parse=lambda obj: gateway_api.current_routing(obj["spec"]["rules"], _GATEWAY_TARGET),
    ),
    "virtualservice-istio": Mesh(
        resource=VIRTUAL_SERVICE,
        body=VIRTUAL_SERVICE_BODY,
        routing={"provider": "istio", "istio": {"virtualService": "churn", "routes": ["primary"]}},
        edit=[
            {"op": "add", "path": "/spec/http/1/match/0/headers", "value": {"x-tenant": {"exact": "acme"}}},
            {"op": "replace", "path": "/spec/http/0/match/0/uri/prefix", "value": "/manual"},
            {"op": "add", "path": "/metadata/labels", "value": {"team": "web"}},
        ],
        edited=lambda obj: (
            _rule(obj, "http", "primary")["match"][0].get("headers") == {"x-tenant": {"exact": "acme"}}
            and _rule(obj, "http", "docs")["match"][0]["uri"]["prefix"] == "/manual"
            and obj["metadata"].get("labels", {}).get("team") == "web"
        ),
        parse=lambda obj: istio.current_routing(obj["spec"]["http"], _ISTIO_TARGET),
    ),
}


@pytest.mark.usefixtures("mesh_crds")
@pytest.mark.parametrize("mesh", list(MESHES))
async def test_user_edits_the_mesh_route_mid_step(world: World, kube_api: client.ApiClient, mesh: str) -> None:
    case = MESHES[mesh]
    custom = client.CustomObjectsApi(kube_api)
    group, version, plural = case.resource
    where = (group, version, world.namespace, plural)
    await custom.create_namespaced_custom_object(*where, copy.deepcopy(case.body), field_manager="platform-team")
    stack = world.launch({"1": world.classifiers.stable, "2": world.classifiers.healthy})
    rollout = world.rollout_of(stack)
    await rollout.create({"strategy": "canary", "canary": {"steps": HELD}, "trafficRouting": case.routing})
    history = await ObjectHistory(custom.list_namespaced_custom_object, where, "churn").start()
    await rollout.to_version("2")
    before = await _held_at_step_one(rollout)

    # Status records the step before the routing follows it (a pass writes its decision ahead of routing).
    async def at_step_one() -> bool | None:
        return case.parse(await custom.get_namespaced_custom_object(*where, "churn")) == Routing(70, 30) or None

    await eventually(at_step_one, within=10, what=f"the {mesh} route at 70/30 once status holds step one")

    edited = await custom.patch_namespaced_custom_object(
        *where, "churn", case.edit, field_manager="platform-team", **JSON_PATCH
    )
    assert case.edited(edited)
    await asyncio.sleep(SETTLE_S)
    quiet_from = time.time()
    await asyncio.sleep(QUIET_S)
    current = await custom.get_namespaced_custom_object(*where, "churn")

    assert not _quiet(history.versions, quiet_from), _quiet(history.versions, quiet_from)
    edited_at = int(edited["metadata"]["resourceVersion"])
    for stored in history.versions:
        if int(stored.resource_version) >= edited_at:
            assert case.edited(stored.obj or {}), f"the edit is gone from resourceVersion {stored.resource_version}"
    assert case.parse(current) == Routing(70, 30), "the operator's weights are as they were"
    _same_step(before, await rollout.status())

    await rollout.verb("promote")
    await rollout.wait(lambda s: (s.get("stable") or {}).get("version") == "2" and not s.get("canary"), "promoted")
    final = await custom.get_namespaced_custom_object(*where, "churn")
    await history.stop()
    assert case.edited(final), "the edit did not survive the promotion"
    assert case.parse(final) == Routing(100, 0)
