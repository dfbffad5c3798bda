"""The real operator process (with nothing but the permissions deploy/ grants) rolls a canary out through the
user's HTTPRoute and through an Istio VirtualService + DestinationRule: timed pauses, no analysis. The weights
it writes are read back while it runs, and end at stable 100 after promotion; the platform team's own rule,
edited mid-rollout, survives; an undo brings the first version back behind the same routing. A/B tests through
both hold the sticky split while they run and end with all traffic on stable."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes_asyncio import client
from testkit.operator import OperatorProcess
from testkit.waiting import eventually

from modelrollout.api import API_VERSION, GROUP, KIND, PLURAL, VERSION
from modelrollout.planning.names import selector
from modelrollout.traffic import gateway_api, istio
from modelrollout.traffic.base import StickyBy
from modelrollout.traffic.patching import Routing
from tests.integration.traffic.conftest import DESTINATION_RULE, GATEWAY, VIRTUAL_SERVICE, Objects
from tests.integration.traffic.test_routers import (
    DESTINATION,
    GATEWAY_TARGET,
    HTTP_ROUTE,
    _istio_target,
    _virtual_service,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEPS = [
    {"setWeight": 20},
    {"pause": {"duration": "3s"}},
    {"setWeight": 50},
    {"pause": {"duration": "3s"}},
    {"setWeight": 80},
    {"pause": {"duration": "3s"}},
]
MERGE = {"_content_type": "application/merge-patch+json"}


def _model(version: str) -> dict[str, Any]:
    return {
        "name": "pricing",
        "version": version,
        "uri": f"s3://models/pricing/{version}/model.joblib",
        "format": "sklearn",
    }


def _manifest(routing: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "pricing"},
        "spec": {
            "model": _model("1"),
            "online": {"replicas": 2},
            "rollout": {"strategy": "canary", "canary": {"steps": STEPS}, "trafficRouting": routing},
        },
    }


async def _status(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    obj: dict[str, Any] = await custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "pricing")
    return obj.get("status") or {}


async def _healthy_on(custom: client.CustomObjectsApi, ns: str, version: str) -> dict[str, Any] | None:
    """Status once `version` serves alone (no rollout in progress), else None."""
    found = await _status(custom, ns)
    ok = found.get("phase") == "Healthy" and (found.get("stable") or {}).get("version") == version
    return found if ok and "canary" not in found else None


async def _roll_out(
    kube_api: client.ApiClient,
    objects: Objects,
    operator: OperatorProcess,
    *,
    routing: dict[str, Any],
    resource: tuple[str, str, str],
    parse: Callable[[dict[str, Any]], Routing],
    user_edit_path: str,
) -> dict[str, Any]:
    custom = client.CustomObjectsApi(kube_api)
    ns = objects.ns
    await custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _manifest(routing))
    await eventually(lambda: _healthy_on(custom, ns, "1"), within=60, what="version 1 Healthy")
    assert parse(await objects.get(resource, "pricing")) == Routing()

    seen: list[int] = []

    async def watch_weights() -> None:
        while True:
            routed = parse(await objects.get(resource, "pricing"))
            assert routed.stable + routed.canary == 100
            if not seen or seen[-1] != routed.canary:
                seen.append(routed.canary)
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch_weights())
    try:
        await custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "pricing", {"spec": {"model": _model("2")}}, **MERGE
        )

        async def at_half() -> bool | None:
            return True if 50 in seen else None

        await eventually(at_half, within=60, what="the canary at 50%")
        await objects.json_patch(
            resource, "pricing", [{"op": "replace", "path": user_edit_path, "value": "/mid-rollout"}]
        )
        done = await eventually(lambda: _healthy_on(custom, ns, "2"), within=90, what="version 2 promoted")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert [w for w in seen if w in (20, 50, 80)] == [20, 50, 80], f"canary weights seen: {seen}"

    # The promotion is recorded in status before the routing follows it (a pass writes its decision ahead of routing,
    # so a process killed in between routes as status says): everything on stable just after the record, not with it.
    async def all_on_stable() -> dict[str, Any] | None:
        found = await objects.get(resource, "pricing")
        return found if parse(found) == Routing() else None

    stored = await eventually(all_on_stable, within=10, what="promoted: everything to stable (now version 2)")
    assert "/mid-rollout" in str(stored["spec"]), "the platform team's edit survived the rollout"
    refusals = re.findall(r".*(?:\(403\)|\b403 Forbidden|[Ff]orbidden|APIForbiddenError).*", operator.log())
    assert not refusals, "\n".join(refusals[:20])
    return done


async def test_canary_through_an_httproute(
    kube_api: client.ApiClient, objects: Objects, operator: OperatorProcess
) -> None:
    await objects.create(GATEWAY, dict(HTTP_ROUTE))
    await _roll_out(
        kube_api,
        objects,
        operator,
        routing={"provider": "gatewayAPI", "gatewayAPI": {"httpRoute": "pricing", "ruleName": "model"}},
        resource=GATEWAY,
        parse=lambda obj: gateway_api.current_routing(obj["spec"]["rules"], GATEWAY_TARGET),
        user_edit_path="/spec/rules/0/matches/0/path/value",
    )
    rules = (await objects.get(GATEWAY, "pricing"))["spec"]["rules"]
    assert [r["name"] for r in rules] == ["home", "model"]
    assert rules[1]["backendRefs"][0] == {
        "group": "",
        "kind": "Service",
        "name": "pricing-stable",
        "port": 80,
        "weight": 100,
    }


async def test_canary_through_a_virtual_service_and_subsets(
    kube_api: client.ApiClient, objects: Objects, operator: OperatorProcess
) -> None:
    await objects.create(DESTINATION_RULE, dict(DESTINATION))
    await objects.create(VIRTUAL_SERVICE, _virtual_service("pricing-all"))
    done = await _roll_out(
        kube_api,
        objects,
        operator,
        routing={
            "provider": "istio",
            "istio": {"virtualService": "pricing", "routes": ["primary"], "destinationRule": "pricing"},
        },
        resource=VIRTUAL_SERVICE,
        parse=lambda obj: istio.current_routing(obj["spec"]["http"], _istio_target("pricing-all")),
        user_edit_path="/spec/http/0/match/0/uri/prefix",
    )
    subsets = {s["name"]: s["labels"] for s in (await objects.get(DESTINATION_RULE, "pricing"))["spec"]["subsets"]}
    assert subsets["stable"] == selector("pricing", "online", done["stable"]["revision"])
    assert subsets["legacy"] == {"version": "old"}

    # undo: version 1 serves again, with no steps (it was proven in production); the stable subset follows it.
    first = done["history"][0]["revision"]
    custom = client.CustomObjectsApi(kube_api)
    verb = {"metadata": {"annotations": {"modelrollout.dev/verb": '{"name": "undo", "id": "undo-1"}'}}}
    await custom.patch_namespaced_custom_object(GROUP, VERSION, objects.ns, PLURAL, "pricing", verb, **MERGE)

    async def undone() -> dict[str, Any] | None:
        status = await _status(custom, objects.ns)
        back = status.get("phase") == "RolledBack" and (status.get("stable") or {}).get("revision") == first
        rule = await objects.get(DESTINATION_RULE, "pricing")
        labels = {s["name"]: s["labels"] for s in rule["spec"]["subsets"]}
        return status if back and labels["stable"] == selector("pricing", "online", first) else None

    await eventually(undone, within=60, what="undo: version 1 stable again, and the stable subset on it")
    routed = istio.current_routing(
        (await objects.get(VIRTUAL_SERVICE, "pricing"))["spec"]["http"], _istio_target("pricing-all")
    )
    assert routed == Routing(), "undo sends everything to stable (version 1 again)"


# --- A/B tests ------------------------------------------------------------------------------------------------------

AB_TEST = {
    "weight": 50,
    "routeBy": {"cookie": "session"},
    "successMetric": {"successes": "sum(shop_conversions_total)", "trials": "sum(shop_visits_total)"},
    "maxDuration": "8s",
}


async def _ab_test(
    kube_api: client.ApiClient,
    objects: Objects,
    *,
    routing: dict[str, Any],
    resource: tuple[str, str, str],
    parse: Callable[[dict[str, Any]], Routing],
) -> dict[str, Any]:
    """Version 2 A/B-tested against version 1 by the real operator without a Prometheus to ask: the routing
    object holds the sticky split while the test runs, and once it has run out (undecided) everything is back on
    stable, with only the platform team's rules left."""
    custom = client.CustomObjectsApi(kube_api)
    ns = objects.ns
    manifest = _manifest(routing)
    manifest["spec"]["rollout"] = {
        "strategy": "abTest",
        "abTest": AB_TEST,
        "analysis": {"interval": "2s"},
        "trafficRouting": routing,
    }

    async def ended() -> dict[str, Any] | None:
        found = await _status(custom, ns)
        return found if found.get("history") and found["history"][-1]["version"] == "2" else None

    await custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest)
    await eventually(lambda: _healthy_on(custom, ns, "1"), within=60, what="version 1 Healthy")
    await custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "pricing", {"spec": {"model": _model("2")}}, **MERGE
    )
    split = Routing(stable=50, canary=50, sticky=StickyBy(cookie="session"))

    async def sticky_split() -> Routing | None:
        routed = parse(await objects.get(resource, "pricing"))
        return routed if routed == split else None

    await eventually(sticky_split, within=60, what="the sticky 50/50 split of users")
    done = await eventually(ended, within=60, what="the A/B test ended")
    assert done["history"][-1]["outcome"] == "Undecided"
    assert done["abTest"]["winner"] == "undecided"
    assert done["stable"]["version"] == "1"
    runs = [r for r in done["analysis"]["runs"] if r["kind"] == "Experiment"]
    assert runs, "no evaluation was made"
    assert all(r["verdict"] == "Error" for r in runs)
    assert "no Prometheus to ask" in runs[-1]["metrics"][0]["message"]

    # The end is recorded in status before the routing follows it (a pass writes its decision ahead of routing, so
    # a process killed in between routes as status says): the split ends just after the record, not with it.
    async def back_on_stable() -> Routing | None:
        routed = parse(await objects.get(resource, "pricing"))
        return routed if routed == Routing() else None

    await eventually(back_on_stable, within=10, what="the split to end once the test ended")
    return done


async def test_ab_test_through_an_httproute(
    kube_api: client.ApiClient, objects: Objects, operator: OperatorProcess
) -> None:
    await objects.create(GATEWAY, dict(HTTP_ROUTE))
    await _ab_test(
        kube_api,
        objects,
        routing={"provider": "gatewayAPI", "gatewayAPI": {"httpRoute": "pricing", "ruleName": "model"}},
        resource=GATEWAY,
        parse=lambda obj: gateway_api.current_routing(obj["spec"]["rules"], GATEWAY_TARGET),
    )
    rules = (await objects.get(GATEWAY, "pricing"))["spec"]["rules"]
    assert [r["name"] for r in rules] == ["home", "model"]


async def test_ab_test_through_a_virtual_service(
    kube_api: client.ApiClient, objects: Objects, operator: OperatorProcess
) -> None:
    await objects.create(DESTINATION_RULE, dict(DESTINATION))
    await objects.create(VIRTUAL_SERVICE, _virtual_service("pricing-all"))
    await _ab_test(
        kube_api,
        objects,
        routing={
            "provider": "istio",
            "istio": {"virtualService": "pricing", "routes": ["primary"], "destinationRule": "pricing"},
        },
        resource=VIRTUAL_SERVICE,
        parse=lambda obj: istio.current_routing(obj["spec"]["http"], _istio_target("pricing-all")),
    )
