"""The watch-fed index: what it keeps of an object, which change wins, and what it says changed."""

from __future__ import annotations

from typing import Any

import pytest

from modelrollout.kube.index import ObjectIndex, newer, slim
from modelrollout.planning.names import LABEL_NAME


def obj(name: str, rv: int, *, owner: str | None = "iris", uid: str = "u1", generation: int | None = 1,
        ns: str = "ns", **extra: Any) -> dict[str, Any]:  # fmt: skip
    labels = {LABEL_NAME: owner, "role": "x"} if owner else {}
    meta = {"name": name, "namespace": ns, "uid": uid, "resourceVersion": str(rv), "labels": labels}
    if generation is not None:
        meta["generation"] = generation
    return {"kind": "Deployment", "metadata": meta, "spec": {"replicas": 1}, **extra}


def test_slim_drops_managed_fields_last_applied_and_a_pods_spec() -> None:
    full = obj("a", 1)
    full["metadata"]["managedFields"] = [{"manager": "x"}]
    full["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"}
    kept = slim(full)
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"keep": "me"}
    assert kept["spec"] == {"replicas": 1}
    assert "spec" not in slim(full, keep_spec=False)
    assert "managedFields" in full["metadata"]  # the input is left as it was


@pytest.mark.parametrize(("candidate", "current", "expected"), [
    ("10", "9", True), ("9", "10", False), ("10", "10", False), ("abc", "10", True), ("10", "abc", True),
    ("abc", "abc", False),
])  # fmt: skip
def test_resource_versions_compare_as_the_integers_they_are(candidate: str, current: str, expected: bool) -> None:
    assert newer(candidate, current) is expected


def test_a_stale_event_never_rolls_back_our_writes_answer_and_an_echo_is_no_change() -> None:
    index = ObjectIndex("Deployment")
    assert index.upsert(obj("a", 5)) is not None
    assert index.record_applied(obj("a", 7, generation=2), "d1") is not None  # our apply's answer
    assert index.upsert(obj("a", 6)) is None  # an older event still in flight
    assert index.upsert(obj("a", 7, generation=2)) is None  # the echo of our own write
    assert index.get("ns", "a")["metadata"]["resourceVersion"] == "7"
    change = index.upsert(obj("a", 8, generation=3))  # someone else's later change
    assert change is not None
    assert change.type == "modified"
    assert change.before is not None
    assert change.before["metadata"]["resourceVersion"] == "7"


def test_applied_still_holds_until_the_generation_moves_and_survives_status_changes() -> None:
    index = ObjectIndex("Deployment")
    index.record_applied(obj("a", 3, generation=2), "d1")
    entry = index.entry("ns", "a")
    assert entry is not None
    assert entry.applied_still("d1")
    assert not entry.applied_still("d2")
    index.upsert({**obj("a", 4, generation=2), "status": {"readyReplicas": 1}})  # the controller's report
    assert index.entry("ns", "a").applied_still("d1")  # type: ignore[union-attr]
    index.upsert(obj("a", 5, generation=3))  # a hand edit of the spec
    assert not index.entry("ns", "a").applied_still("d1")  # type: ignore[union-attr]


def test_without_a_generation_any_new_version_ends_applied_still() -> None:
    index = ObjectIndex("ConfigMap")
    index.record_applied(obj("c", 3, generation=None), "d1")
    assert index.entry("ns", "c").applied_still("d1")  # type: ignore[union-attr]
    index.upsert(obj("c", 4, generation=None))
    assert not index.entry("ns", "c").applied_still("d1")  # type: ignore[union-attr]


def test_a_recreated_object_starts_without_our_mark() -> None:
    index = ObjectIndex("Deployment")
    index.record_applied(obj("a", 3), "d1")
    index.upsert(obj("a", 9, uid="u2"))
    assert not index.entry("ns", "a").applied_still("d1")  # type: ignore[union-attr]


def test_lookups_by_owner_and_labels() -> None:
    index = ObjectIndex("Deployment")
    for name, owner, ns in [("b", "iris", "ns"), ("a", "iris", "ns"), ("c", "other", "ns"), ("d", "iris", "ns2")]:
        index.upsert(obj(name, 1, owner=owner, ns=ns))
    index.upsert(obj("e", 1, owner=None))
    assert [o["metadata"]["name"] for o in index.labelled_by("ns", "iris")] == ["a", "b"]
    assert [o["metadata"]["name"] for o in index.matching("ns", {LABEL_NAME: "iris", "role": "x"})] == ["a", "b"]
    assert index.matching("ns", {LABEL_NAME: "iris", "role": "y"}) == []
    with pytest.raises(ValueError, match=LABEL_NAME):
        index.matching("ns", {"role": "x"})
    index.upsert(obj("a", 2, owner="other"))  # relabelled: moves to its new owner
    assert [o["metadata"]["name"] for o in index.labelled_by("ns", "iris")] == ["b"]
    index.delete(obj("b", 3))
    assert index.labelled_by("ns", "iris") == []
    assert len(index) == 4


def test_a_delete_of_an_older_object_of_that_name_keeps_the_new_one() -> None:
    index = ObjectIndex("Deployment")
    index.upsert(obj("a", 5, uid="new"))
    assert index.delete(obj("a", 4, uid="old")) is None
    assert index.get("ns", "a") is not None
    gone = index.delete(obj("a", 6, uid="new"))
    assert gone is not None
    assert gone.type == "deleted"
    assert gone.owner == "iris"


def test_a_relist_reports_what_changed_and_what_went_while_nobody_watched() -> None:
    index = ObjectIndex("Deployment")
    index.replace([obj("a", 1), obj("b", 1), obj("z", 1, ns="other")])
    changes = index.replace([obj("a", 1), obj("c", 2)], namespace="ns")
    assert sorted((c.type, c.name) for c in changes) == [("added", "c"), ("deleted", "b")]
    assert index.get("other", "z") is not None  # another namespace's list owns that one


def test_only_status_tells_a_report_from_an_edit() -> None:
    index = ObjectIndex("Deployment")
    index.upsert(obj("a", 1))
    report = index.upsert({**obj("a", 2), "status": {"ready": 1}})
    assert report is not None
    assert report.only_status()
    edit = index.upsert({**obj("a", 3, generation=2), "spec": {"replicas": 2}})
    assert edit is not None
    assert not edit.only_status()
    added = index.upsert(obj("b", 4))
    assert added is not None
    assert not added.only_status()
