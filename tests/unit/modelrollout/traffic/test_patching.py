"""The Routing value the Gateway API and Istio routers share: what a sticky assignment renders to."""

from __future__ import annotations

import pytest

from modelrollout.traffic.base import HeaderMatch, StickyBy
from modelrollout.traffic.buckets import sticky_match
from modelrollout.traffic.patching import Routing, all_to_stable, changes, merge_patched

BY = StickyBy(cookie="session")


def test_without_an_assignment_a_routing_renders_as_itself() -> None:
    routing = Routing(stable=70, canary=30, mirror=10, header=HeaderMatch(header="x-c", exact="1"))
    assert routing.rendered() is routing


def test_an_assignment_renders_weights_100_0_and_its_header_route() -> None:
    assert Routing(stable=75, canary=25, mirror=10, sticky=BY).rendered() == Routing(
        stable=100, canary=0, mirror=10, header=sticky_match(BY, 25)
    )


@pytest.mark.parametrize(("stable", "canary"), [(100, 0), (0, 100)])
def test_with_everyone_on_one_variant_weights_say_it(stable: int, canary: int) -> None:
    assert Routing(stable=stable, canary=canary, mirror=3, sticky=BY).rendered() == Routing(stable, canary, 3)


def test_a_header_route_and_an_assignment_are_refused_together() -> None:
    with pytest.raises(ValueError, match="cannot be set together"):
        Routing(stable=50, canary=50, header=HeaderMatch(header="x-c"), sticky=BY)


def test_an_assignment_with_nothing_to_split_routes_all_to_stable() -> None:
    assert all_to_stable(lambda current: Routing(sticky=BY))
    assert not all_to_stable(lambda current: Routing(stable=90, canary=10, sticky=BY))


def test_a_merge_patch_applies_as_the_api_server_applies_it() -> None:
    obj = {"metadata": {"annotations": {"a": "1", "b": "2"}, "name": "x"}, "spec": {"rules": [1, 2], "keep": True}}
    patch = {"metadata": {"annotations": {"a": None, "c": "3"}}, "spec": {"rules": [3]}, "new": {"x": None}}
    assert merge_patched(obj, patch) == {
        "metadata": {"annotations": {"b": "2", "c": "3"}, "name": "x"},
        "spec": {"rules": [3], "keep": True},
        "new": {},
    }
    assert obj["metadata"]["annotations"] == {"a": "1", "b": "2"}, "the object itself is left alone"
    assert changes(obj, patch)
    assert not changes(obj, {"spec": {"rules": [1, 2]}, "metadata": {"annotations": {"zzz": None}}})
