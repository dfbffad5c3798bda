"""Deleting a ModelDeployment mid-canary gives the user's HTTPRoute, or VirtualService and DestinationRule, back as
the user wrote them (with the platform team's edit made during the rollout), with the real operator (only the
permissions deploy/ grants) on the real API server:

- operator running: at once, on the DELETED event;
- operator stopped: the deletion completes without it (no finalizer), and the start-up sweep gives the objects
  back once it runs again.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from testkit.operator import OperatorProcess
from testkit.waiting import eventually

from modelrollout.api import GROUP, PLURAL, VERSION
from modelrollout.traffic import gateway_api, istio
from modelrollout.traffic.marks import MARK_PREFIX
from modelrollout.traffic.patching import Routing
from tests.integration.traffic.conftest import DESTINATION_RULE, GATEWAY, VIRTUAL_SERVICE, Objects
from tests.integration.traffic.test_operator import MERGE, _healthy_on, _manifest, _model
from tests.integration.traffic.test_routers import (
    DESTINATION,
    GATEWAY_TARGET,
    HTTP_ROUTE,
    _istio_target,
    _virtual_service,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Held at 30% until promoted: mid-canary for as long as the test needs.
MID_CANARY = [{"setWeight": 30}, {"pause": {}}]
# The DELETED event reaches the operator within a watch round trip; start-up is ~3.5 s before the sweep.
FORGET_BOUND_S = 10.0
SWEEP_BOUND_S = 30.0


@dataclass(frozen=True)
class Case:
    id: str
    routing: dict[str, Any]
    resource: tuple[str, str, str]
    parse: Callable[[dict[str, Any]], Routing]
    user_edit_path: str  # a field of a rule/route we do not manage, edited mid-rollout
    # The user's objects as created: (resource, body); the first is the routing object `parse` reads.
    objects: tuple[tuple[tuple[str, str, str], dict[str, Any]], ...]


CASES = [
    Case(
        id="gatewayAPI",
        routing={"provider": "gatewayAPI", "gatewayAPI": {"httpRoute": "pricing", "ruleName": "model"}},
        resource=GATEWAY,
        parse=lambda obj: gateway_api.current_routing(obj["spec"]["rules"], GATEWAY_TARGET),
        user_edit_path="/spec/rules/0/matches/0/path/value",
        objects=((GATEWAY, HTTP_ROUTE),),
    ),
    Case(
        id="istio",
        routing={
            "provider": "istio",
            "istio": {"virtualService": "pricing", "routes": ["primary"], "destinationRule": "pricing"},
        },
        resource=VIRTUAL_SERVICE,
        parse=lambda obj: istio.current_routing(obj["spec"]["http"], _istio_target("pricing-all")),
        user_edit_path="/spec/http/0/match/0/uri/prefix",
        objects=((VIRTUAL_SERVICE, _virtual_service("pricing-all")), (DESTINATION_RULE, DESTINATION)),
    ),
]


def _marked(obj: dict[str, Any]) -> list[str]:
    return [key for key in (obj["metadata"].get("annotations") or {}) if key.startswith(MARK_PREFIX)]


async def _mid_canary(kube_api: client.ApiClient, objects: Objects, case: Case) -> dict[str, dict[str, Any]]:
    """The user's objects, a ModelDeployment routing through them held at 30%, and the platform team's edit made
    meanwhile; returns the specs the user's objects should end with (by plural): as the API server stored them at
    creation (its defaults filled in), with the edit."""
    custom = client.CustomObjectsApi(kube_api)
    ns = objects.ns
    created = {}
    for resource, body in case.objects:
        created[resource[2]] = (await objects.create(resource, copy.deepcopy(body)))["spec"]
    manifest = _manifest(case.routing)
    manifest["spec"]["rollout"]["canary"]["steps"] = MID_CANARY
    await custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest)
    await eventually(lambda: _healthy_on(custom, ns, "1"), within=60, what="version 1 Healthy")
    await custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "pricing", {"spec": {"model": _model("2")}}, **MERGE
    )

    async def at_30() -> Routing | None:
        routed = case.parse(await objects.get(case.resource, "pricing"))
        return routed if routed.canary == 30 else None

    await eventually(at_30, within=60, what="the canary at 30%")
    edit = [{"op": "replace", "path": case.user_edit_path, "value": "/mid-rollout"}]
    await objects.json_patch(case.resource, "pricing", edit)
    for resource, _ in case.objects:
        stored = await objects.get(resource, "pricing")
        assert _marked(stored) == [f"{MARK_PREFIX}pricing"], "the router marked what it changed"
        assert stored["spec"] != created[resource[2]]
    return _with_edit(case, created)


def _with_edit(case: Case, specs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    edited = copy.deepcopy(specs)
    keys = case.user_edit_path.removeprefix("/spec/").split("/")
    node: Any = edited[case.resource[2]]
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[keys[-1]] = "/mid-rollout"
    return edited


async def _given_back(objects: Objects, case: Case, expected: dict[str, dict[str, Any]]) -> bool | None:
    for resource, _ in case.objects:
        stored = await objects.get(resource, "pricing")
        if _marked(stored) or stored["spec"] != expected[resource[2]]:
            return None
    return True


async def _wait_given_back(objects: Objects, case: Case, expected: dict[str, dict[str, Any]], within: float) -> None:
    try:
        await eventually(lambda: _given_back(objects, case, expected), within=within, interval=0.1,
                         what="the user's objects given back")  # fmt: skip
    except AssertionError:
        for resource, _ in case.objects:  # say what differs
            stored = await objects.get(resource, "pricing")
            assert (_marked(stored), stored["spec"]) == ([], expected[resource[2]])
        raise


async def _stays_given_back(objects: Objects, case: Case, expected: dict[str, dict[str, Any]]) -> None:
    """Still given back after more than a resync interval (2 s here): no pass writes our parts again."""
    await asyncio.sleep(3)
    assert await _given_back(objects, case, expected), "our parts came back"


async def _delete(kube_api: client.ApiClient, ns: str) -> None:
    await client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "pricing")


async def _gone(kube_api: client.ApiClient, ns: str) -> Callable[[], Awaitable[bool | None]]:
    custom = client.CustomObjectsApi(kube_api)

    async def probe() -> bool | None:
        try:
            await custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "pricing")
        except ApiException as exc:
            return True if exc.status == 404 else None
        return None

    return probe


def _no_refusals(operator: OperatorProcess) -> None:
    refusals = re.findall(r".*(?:\(403\)|\b403 Forbidden|[Ff]orbidden|APIForbiddenError).*", operator.log())
    assert not refusals, "\n".join(refusals[:20])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_deleted_with_the_operator_running(
    kube_api: client.ApiClient, objects: Objects, operator: OperatorProcess, case: Case
) -> None:
    expected = await _mid_canary(kube_api, objects, case)
    started = time.monotonic()
    await _delete(kube_api, objects.ns)
    await _wait_given_back(objects, case, expected, FORGET_BOUND_S)
    print(f"given back {time.monotonic() - started:.2f} s after the delete")

    async def logged() -> bool | None:  # the operator logs after the write the test has already seen
        return True if "cleanup: removed what ModelDeployment" in operator.log() else None

    await eventually(logged, within=5, what="the operator logging what it gave back")
    await _stays_given_back(objects, case, expected)
    _no_refusals(operator)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_deleted_while_the_operator_is_down(
    kube_api: client.ApiClient, objects: Objects, operator: OperatorProcess, case: Case
) -> None:
    expected = await _mid_canary(kube_api, objects, case)
    operator.stop()
    started = time.monotonic()
    await _delete(kube_api, objects.ns)
    await eventually(await _gone(kube_api, objects.ns), within=5, interval=0.1, what="the deletion, no finalizer")
    print(f"deleted {time.monotonic() - started:.2f} s after the delete, with no operator")
    for resource, _ in case.objects:
        assert _marked(await objects.get(resource, "pricing")), "nobody gave anything back yet"

    operator.start()
    started = time.monotonic()
    await _wait_given_back(objects, case, expected, SWEEP_BOUND_S)
    print(f"given back {time.monotonic() - started:.2f} s after the operator started")
    await _stays_given_back(objects, case, expected)
    _no_refusals(operator)
