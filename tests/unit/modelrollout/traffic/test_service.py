from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelrollout.traffic.service import ReplicaSplit, selected_roles, split_replicas


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        (10, 10, ReplicaSplit(stable=9, canary=1, effective_weight=10)),
        (10, 25, ReplicaSplit(stable=7, canary=3, effective_weight=30)),  # 2.5 pods rounds half up
        (10, 50, ReplicaSplit(stable=5, canary=5, effective_weight=50)),
        (4, 10, ReplicaSplit(stable=3, canary=1, effective_weight=25)),  # coarse: one pod is 25%
        (2, 10, ReplicaSplit(stable=1, canary=1, effective_weight=50)),
        (1, 10, ReplicaSplit(stable=1, canary=1, effective_weight=50)),  # one pod more than total
        (1, 90, ReplicaSplit(stable=1, canary=1, effective_weight=50)),  # stable keeps a pod below 100
        (3, 99, ReplicaSplit(stable=1, canary=3, effective_weight=75)),
        (3, 100, ReplicaSplit(stable=0, canary=3, effective_weight=100)),
        (3, 0, ReplicaSplit(stable=3, canary=0, effective_weight=0)),
        (0, 50, ReplicaSplit(stable=0, canary=0, effective_weight=0)),
    ],
)
def test_replica_splits(total: int, weight: int, expected: ReplicaSplit) -> None:
    assert split_replicas(total=total, canary_weight=weight) == expected


@given(total=st.integers(1, 200), weight=st.integers(0, 100))
def test_split_invariants(total: int, weight: int) -> None:
    split = split_replicas(total=total, canary_weight=weight)
    assert (split.canary > 0) == (weight > 0)
    assert (split.stable > 0) == (weight < 100)
    assert split.stable + split.canary <= total + 1
    assert split.effective_weight == round(100 * split.canary / (split.stable + split.canary) + 1e-9)
    # Within half a pod's worth of the weight asked for, unless a minimum pod rule moved the split.
    natural = math.floor(total * weight / 100 + 0.5)
    if (split.canary, split.stable) == (natural, total - natural):
        assert abs(split.effective_weight - weight) <= 100 / total / 2 + 1


@pytest.mark.parametrize(("total", "weight"), [(-1, 10), (3, -1), (3, 101)])
def test_out_of_range_inputs_are_rejected(total: int, weight: int) -> None:
    with pytest.raises(ValueError, match="need total"):
        split_replicas(total=total, canary_weight=weight)


@pytest.mark.parametrize(
    ("stable", "canary", "roles"),
    [(100, 0, ("stable",)), (0, 100, ("canary",)), (90, 10, ("stable", "canary"))],
)
def test_the_service_selects_only_the_roles_that_get_traffic(stable: int, canary: int, roles: tuple[str, ...]) -> None:
    assert selected_roles(stable, canary) == roles


def test_weights_must_add_up() -> None:
    with pytest.raises(ValueError, match="add up to 100"):
        selected_roles(50, 40)
