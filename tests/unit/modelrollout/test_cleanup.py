"""cleanup's I/O against an in-memory API server: which objects a sweep and a forget write, that every write is
conditional on the resourceVersion read, and that an owner is asked for after the object was read. What the
patches say is traffic.release's (tests/unit/modelrollout/traffic/test_release.py)."""

from __future__ import annotations

import copy
from typing import Any, cast

from kubernetes_asyncio.client.exceptions import ApiException

from modelrollout import cleanup
from modelrollout.api.resource import KIND
from modelrollout.kube.client import KubeClient
from modelrollout.traffic.marks import HTTPRouteMark, RuleRecord, mark_key, marks
from modelrollout.traffic.patching import merge_patched

Obj = dict[str, Any]
ORIGINAL = [{"name": "pricing", "port": 80}]


def _route(namespace: str, name: str, *owners: str) -> Obj:
    """An HTTPRoute whose rule `<owner>` each owner routes (to its stable Service), with its mark."""
    annotations = {
        mark_key(owner): HTTPRouteMark(
            stable=f"{owner}-stable", canary=f"{owner}-canary", rules=[RuleRecord(rule=owner, backend_refs=ORIGINAL)]
        ).to_json()
        for owner in owners
    }
    rules = [{"name": owner, "backendRefs": [{"name": f"{owner}-stable", "port": 80}]} for owner in owners]
    return {
        "metadata": {"namespace": namespace, "name": name, "resourceVersion": "1", "annotations": annotations},
        "spec": {"rules": [*rules, {"name": "home"}]},
    }


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.patches: list[tuple[str, str, str, Obj]] = []
        self.missing_kinds = {"VirtualService", "DestinationRule"}  # as without Istio's CRDs
        self.before_patch: list[Any] = []  # callables run just before the next patch lands (a concurrent writer)

    def put(self, kind: str, obj: Obj) -> None:
        meta = obj["metadata"]
        self.objects[(kind, meta["namespace"], meta["name"])] = copy.deepcopy(obj)

    def md(self, namespace: str, name: str) -> None:
        self.put(KIND, {"metadata": {"namespace": namespace, "name": name}})

    async def list_in(self, kind: str, namespaces: list[str]) -> list[Obj]:
        if kind in self.missing_kinds:
            raise ApiException(status=404)
        wanted = [o for (k, ns, _), o in self.objects.items() if k == kind and (not namespaces or ns in namespaces)]
        return copy.deepcopy(wanted)

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    async def merge_patch(self, kind: str, namespace: str, name: str, patch: Obj) -> Obj:
        while self.before_patch:
            self.before_patch.pop(0)()
        stored = self.objects.get((kind, namespace, name))
        if stored is None:
            raise ApiException(status=404)
        if patch["metadata"].get("resourceVersion") != stored["metadata"]["resourceVersion"]:
            raise ApiException(status=409)
        self.patches.append((kind, namespace, name, patch))
        changed = merge_patched(stored, patch)
        changed["metadata"]["resourceVersion"] = str(int(stored["metadata"]["resourceVersion"]) + 1)
        self.objects[(kind, namespace, name)] = changed
        return copy.deepcopy(changed)

    def route(self, namespace: str, name: str) -> Obj:
        return self.objects[("HTTPRoute", namespace, name)]


def _kube(fake: FakeKube) -> KubeClient:
    return cast(KubeClient, fake)


async def test_a_sweep_gives_back_only_what_deleted_modeldeployments_added() -> None:
    fake = FakeKube()
    fake.md("a", "live")
    fake.put("HTTPRoute", _route("a", "both", "live", "gone"))
    fake.put("HTTPRoute", _route("a", "mine", "live"))
    fake.put("HTTPRoute", _route("b", "theirs", "gone"))
    fake.put("HTTPRoute", {"metadata": {"namespace": "a", "name": "plain", "resourceVersion": "1"}, "spec": {}})
    assert await cleanup.sweep(_kube(fake), []) == 2
    assert [(ns, name) for _, ns, name, _ in fake.patches] == [("a", "both"), ("b", "theirs")]
    assert all(p["metadata"]["resourceVersion"] == "1" for *_, p in fake.patches), "conditional writes"
    both = fake.route("a", "both")
    assert marks(both).keys() == {"live"}
    assert both["spec"]["rules"][0]["backendRefs"] == [{"name": "live-stable", "port": 80}]
    assert both["spec"]["rules"][1]["backendRefs"] == ORIGINAL
    assert fake.route("b", "theirs")["spec"]["rules"][0]["backendRefs"] == ORIGINAL
    assert marks(fake.route("a", "mine")).keys() == {"live"}
    assert await cleanup.sweep(_kube(fake), []) == 0, "nothing left"
    assert await cleanup.sweep(_kube(fake), ["c"]) == 0


async def test_a_sweep_keeps_to_its_namespaces() -> None:
    fake = FakeKube()
    fake.put("HTTPRoute", _route("a", "r", "gone"))
    fake.put("HTTPRoute", _route("b", "r", "gone"))
    assert await cleanup.sweep(_kube(fake), ["b"]) == 1
    assert marks(fake.route("a", "r")).keys() == {"gone"}


async def test_an_owner_created_again_after_the_list_keeps_its_additions() -> None:
    fake = FakeKube()
    fake.put("HTTPRoute", _route("a", "r", "back"))
    real_list = fake.list_in

    async def listed_then_created(kind: str, namespaces: list[str]) -> list[Obj]:
        found = await real_list(kind, namespaces)
        if kind == KIND:
            fake.md("a", "back")  # created between the sweep's list and its write
        return found

    fake.list_in = listed_then_created  # type: ignore[method-assign]
    assert await cleanup.sweep(_kube(fake), []) == 0
    assert marks(fake.route("a", "r")).keys() == {"back"}


async def test_a_concurrent_edit_is_kept_and_the_write_retried() -> None:
    fake = FakeKube()
    fake.put("HTTPRoute", _route("a", "r", "gone"))

    def user_edit() -> None:
        stored = fake.route("a", "r")
        stored["spec"]["rules"][1]["timeouts"] = {"request": "9s"}
        stored["metadata"]["resourceVersion"] = "7"

    fake.before_patch.append(user_edit)
    assert await cleanup.sweep(_kube(fake), []) == 1
    stored = fake.route("a", "r")
    assert stored["spec"]["rules"] == [{"name": "gone", "backendRefs": ORIGINAL}, {"name": "home",
                                       "timeouts": {"request": "9s"}}]  # fmt: skip
    assert not marks(stored)


async def test_forget_gives_back_what_one_modeldeployment_added() -> None:
    fake = FakeKube()
    fake.put("HTTPRoute", _route("a", "r", "gone", "other"))
    fake.put("HTTPRoute", _route("b", "r", "gone"))
    await cleanup.forget(_kube(fake), {"metadata": {"namespace": "a", "name": "gone"}})
    assert marks(fake.route("a", "r")).keys() == {"other"}, "only the deleted one, though `other` is gone too"
    assert marks(fake.route("b", "r")).keys() == {"gone"}, "another namespace's namesake"


async def test_forget_leaves_a_modeldeployment_created_again_under_the_name() -> None:
    fake = FakeKube()
    fake.md("a", "gone")
    fake.put("HTTPRoute", _route("a", "r", "gone"))
    await cleanup.forget(_kube(fake), {"metadata": {"namespace": "a", "name": "gone"}})
    assert not fake.patches
