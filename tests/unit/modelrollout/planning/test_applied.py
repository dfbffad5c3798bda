"""When a child must be sent again: its digest changed, or the live object lost one of our fields."""

from __future__ import annotations

from typing import Any

import pytest

from modelrollout.planning.applied import ANNOTATION_APPLIED, covers, digest, stamped, unchanged


def wanted() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "1"}},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]}},
        },
    }


def live_of(obj: dict[str, Any]) -> dict[str, Any]:
    """What the API server gives back: our fields plus its own (defaults, uid, status)."""
    live = stamped(obj, digest(obj))
    live["metadata"] = {**live["metadata"], "uid": "u", "resourceVersion": "5"}
    container = live["spec"]["template"]["spec"]["containers"][0]
    live["spec"] = {**live["spec"], "strategy": {"type": "RollingUpdate"}}
    container["imagePullPolicy"] = "IfNotPresent"
    live["status"] = {"readyReplicas": 2}
    return live


def test_digest_is_stable_and_ignores_its_own_annotation() -> None:
    assert digest(wanted()) == digest(wanted())
    assert digest(stamped(wanted(), "zzz")) == digest(wanted())
    other = wanted()
    other["spec"]["replicas"] = 3
    assert digest(other) != digest(wanted())


def test_stamped_is_a_copy() -> None:
    original = wanted()
    stamped(original, "d")
    assert "annotations" not in original["metadata"]


@pytest.mark.parametrize(("live", "want", "expected"), [
    ({"a": 1, "b": 2}, {"a": 1}, True),
    ({"a": 1}, {"a": 1, "b": 2}, False),
    ([{"a": 1, "x": 0}], [{"a": 1}], True),
    ([{"a": 1}, {"a": 2}], [{"a": 1}], False),  # a list is ours whole: an extra item is a difference
    ({"a": 1}, {"a": "1"}, False),
    ({"a": True}, {"a": 1}, False),
    ({"a": None}, {"a": None}, True),
])  # fmt: skip
def test_covers(live: Any, want: Any, expected: bool) -> None:
    assert covers(live, want) is expected


def test_unchanged_when_the_live_object_holds_what_we_send() -> None:
    want = stamped(wanted(), digest(wanted()))
    assert unchanged(want, live_of(wanted()), applied_still=False)


def test_sent_again_when_absent_or_the_digest_differs() -> None:
    want = stamped(wanted(), digest(wanted()))
    assert not unchanged(want, None, applied_still=True)
    older = wanted()
    older["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "B", "value": "2"})
    # We stopped sending env B: the live object still "covers" what we send, but only an apply removes B.
    assert not unchanged(want, live_of(older), applied_still=False)
    unstamped = live_of(wanted())
    del unstamped["metadata"]["annotations"][ANNOTATION_APPLIED]
    assert not unchanged(want, unstamped, applied_still=False)


def test_a_hand_edit_of_our_field_is_sent_again_unless_the_index_says_nothing_changed_since() -> None:
    want = stamped(wanted(), digest(wanted()))
    edited = live_of(wanted())
    edited["spec"]["replicas"] = 5
    assert not unchanged(want, edited, applied_still=False)
    # A value the API server keeps in another form (a quantity) after our apply: the index's mark says it is ours.
    assert unchanged(want, edited, applied_still=True)
