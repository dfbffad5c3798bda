"""The operator bench's ModelDeployments (bench/operator/mix.py): the mix, valid manifests, the patches and which
objects the measurements touch."""

from __future__ import annotations

import pytest
from bench.operator import mix

from modelrollout.api.resource import ModelDeployment


def test_every_namespace_holds_the_same_mix() -> None:
    items = mix.plan_mix(1000, 10)
    assert mix.mix_counts(items) == {"direct": 800, "hpa": 100, "canary": 100}
    for namespace in mix.namespaces(10):
        mine = [item for item in items if item.namespace == namespace]
        assert mix.mix_counts(mine) == {"direct": 80, "hpa": 10, "canary": 10}
    assert len({item.key for item in items}) == 1000
    assert mix.plan_mix(3, 10) == [
        mix.Item(0, "mr-bench-00", "m00000", "direct"),
        mix.Item(1, "mr-bench-00", "m00001", "direct"),
        mix.Item(2, "mr-bench-00", "m00002", "direct"),
    ]
    with pytest.raises(ValueError, match="namespace_count"):
        mix.plan_mix(10, 0)


@pytest.mark.parametrize("flavor", mix.FLAVORS)
def test_manifests_are_valid_model_deployments(flavor: mix.Flavor) -> None:
    item = next(item for item in mix.plan_mix(10, 1) if item.flavor == flavor)
    body = mix.manifest(item, version="1", pause_s=5)
    parsed = ModelDeployment.model_validate(body)
    assert parsed.metadata.name == item.name
    assert (parsed.spec.rollout.strategy if parsed.spec.rollout else "direct") == (
        "canary" if flavor == "canary" else "direct"
    )
    assert (parsed.spec.online is not None and parsed.spec.online.autoscaling is not None) == (flavor == "hpa")
    patched = mix.manifest(item, version="2", pause_s=5)
    patched["spec"]["model"] = mix.version_patch(item, "2")["spec"]["model"]
    assert ModelDeployment.model_validate(patched).spec.model.version == "2"


def test_canary_steps_alternate_weights_and_timed_pauses() -> None:
    steps = mix.canary_steps(2.5)
    assert [s.get("setWeight") for s in steps[::2]] == list(mix.CANARY_WEIGHTS)
    assert all(s == {"pause": {"duration": "2.5s"}} for s in steps[1::2])
    assert mix.pause_indices(2.5) == {1: 2.5, 3: 2.5, 5: 2.5, 7: 2.5}
    assert [mix.weight_during(i) for i in range(len(steps))] == [10, 10, 20, 20, 30, 30, 40, 40, 50]


def test_versions_count_up() -> None:
    assert mix.next_version("1") == "2"
    assert mix.next_version("19") == "20"


def test_tick_subjects_are_canaries_spread_over_the_mix() -> None:
    items = mix.plan_mix(1000, 10)
    subjects = mix.tick_subjects(items, 3)
    assert len(subjects) == 3
    assert all(s.flavor == "canary" for s in subjects)
    assert len({s.namespace for s in subjects}) == 3
    assert mix.tick_subjects(items, 0) == []
    assert mix.tick_subjects(mix.plan_mix(5, 1), 3) == [], "no canary in the mix"


def test_reaction_targets_are_the_same_for_every_version_and_leave_the_tick_subjects_alone() -> None:
    items = mix.plan_mix(100, 10)
    subjects = mix.tick_subjects(items, 3)
    first = mix.reaction_targets(items, 40, exclude=subjects, seed=17)
    assert first == mix.reaction_targets(items, 40, exclude=subjects, seed=17)
    assert len({t.key for t in first}) == 40
    assert not {t.key for t in first} & {s.key for s in subjects}
    assert len(mix.reaction_targets(items[:10], 40, exclude=[], seed=1)) == 10, "at most every object once"


def _meta(namespace: str, owner: str, **labels: str) -> dict[str, object]:
    return {"metadata": {"namespace": namespace, "labels": {"modelrollout.dev/name": owner, **labels}}}


def test_missing_children_counts_model_deployments_short_of_a_kind() -> None:
    items = [mix.Item(0, "ns", "a", "direct"), mix.Item(9, "ns", "c", "canary"), mix.Item(8, "ns", "h", "hpa")]
    listing = {
        "Deployment": [
            _meta("ns", "a", **{"modelrollout.dev/mode": "online"}),
            _meta("ns", "c", **{"modelrollout.dev/mode": "online"}),
            _meta("ns", "c", **{"modelrollout.dev/mode": "router"}),
            _meta("ns", "h", **{"modelrollout.dev/mode": "online"}),
            {"metadata": {"namespace": "ns", "labels": {}}},  # not ours
        ],
        "Service": [_meta("ns", owner) for owner in ("a", "a", "a", "c", "c", "c", "h", "h")],
        "ConfigMap": [],
        "HorizontalPodAutoscaler": [_meta("ns", "h")],
    }
    counts = mix.count_children(listing)  # type: ignore[arg-type]
    assert counts[("ns", "c")] == {"Deployment/online": 1, "Deployment/router": 1, "Service": 3}
    assert mix.missing_children(counts, items) == {"ConfigMap": 1, "Service": 1}
    assert mix.missing_children({}, items[:1]) == {"Deployment/online": 1, "Service": 1}


def test_first_times_are_grouped_by_flavour() -> None:
    items = mix.plan_mix(10, 1)
    first_at = {items[0].key: 105.0, items[1].key: 103.0, items[9].key: 120.0}
    assert mix.first_times(items, first_at, since=100.0) == {"direct": [5.0, 3.0], "hpa": [], "canary": [20.0]}
