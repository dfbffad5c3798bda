from __future__ import annotations

from typing import Any

import pytest
from testkit.rollout import make_spec

from modelrollout.rollout.sizing import Sizing, for_mirror, for_weight, full_replicas


@pytest.mark.parametrize(
    ("online", "stream", "full"),
    [
        ({"replicas": 3}, None, 3),
        ({"replicas": 3, "autoscaling": {"minReplicas": 2, "maxReplicas": 9}}, None, 2),
        (None, {"replicas": 5}, 5),
        (None, {"autoscaling": {"minReplicas": 4, "maxReplicas": 8}}, 4),
        (None, None, 0),
    ],
)
def test_full_size(online: dict[str, Any] | None, stream: dict[str, Any] | None, full: int) -> None:
    update: dict[str, Any] = {"online": online, "stream": None, "batch": None}
    if stream is not None:
        kafka = {"bootstrapServers": "k:9092", "inputTopic": "i", "outputTopic": "o", "deadLetterTopic": "d"}
        update["stream"] = {"kafka": kafka, **stream}
    if online is None and stream is None:
        update["batch"] = {"schedule": "@daily", "input": {"uri": "/in"}, "output": {"uri": "/out"}}
    spec = make_spec().model_validate({**make_spec().to_wire(), **update})
    assert full_replicas(spec) == full


@pytest.mark.parametrize(
    ("weight", "sizing"),
    [
        (0, Sizing(canary=1, stable=None, stable_weight=100, canary_weight=0)),  # one warm pod
        (10, Sizing(canary=1, stable=None, stable_weight=90, canary_weight=10)),
        (30, Sizing(canary=2, stable=None, stable_weight=70, canary_weight=30)),
        (100, Sizing(canary=4, stable=None, stable_weight=0, canary_weight=100)),
    ],
)
def test_weighting_routers_get_the_exact_weight(weight: int, sizing: Sizing) -> None:
    assert for_weight(make_spec(replicas=4), weight) == sizing


@pytest.mark.parametrize(
    ("weight", "sizing"),
    [
        (0, Sizing(canary=0, stable=4, stable_weight=100, canary_weight=0)),
        (10, Sizing(canary=1, stable=3, stable_weight=75, canary_weight=25)),
        (50, Sizing(canary=2, stable=2, stable_weight=50, canary_weight=50)),
    ],
)
def test_the_service_provider_gets_what_whole_pods_give(weight: int, sizing: Sizing) -> None:
    spec = make_spec(
        {"strategy": "canary", "canary": {"steps": [{"setWeight": 1}]}, "trafficRouting": {"provider": "service"}}
    )
    assert for_weight(spec, weight) == sizing


def test_mirrored_load_sizes_the_candidate() -> None:
    assert for_mirror(make_spec(replicas=4), 50) == 2
    assert for_mirror(make_spec(replicas=4), 1) == 1
    assert for_mirror(make_spec(replicas=0), 100) == 0
