from __future__ import annotations

from typing import Any

import pytest
from testkit.manifests import load_example

from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.planning.revision import REVISION_LENGTH, revision_of

IMAGE = "registry.example/model-server:1"


def spec(**changes: Any) -> ModelDeploymentSpec:
    body = load_example("online-canary-router.yaml")["spec"]
    for path, value in changes.items():
        node = body
        *parents, last = path.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return ModelDeploymentSpec.model_validate(body)


def test_same_spec_same_revision() -> None:
    assert revision_of(spec(), default_image=IMAGE) == revision_of(spec(), default_image=IMAGE)
    assert len(revision_of(spec(), default_image=IMAGE)) == REVISION_LENGTH


def test_revision_is_stable_across_runs() -> None:
    """Pinned: a restarted operator (another process, hash seed or version) must compute the same revision; a
    changed hash would start a rollout of every ModelDeployment in the cluster on an operator upgrade."""
    assert revision_of(spec(), default_image=IMAGE) == "c57b05b9"


@pytest.mark.parametrize(
    "change",
    [
        {"model__version": "8"},
        {"model__uri": "s3://models/churn/8/model.joblib"},
        {"model__format": "onnx"},
        {"model__image": "registry.example/model-server:2"},
        {"model__sha256": "a" * 64},
        {"model__env": [{"name": "MODELSERVER_LOG_LEVEL", "value": "debug"}]},
        {"model__resources": {"limits": {"memory": "2Gi"}}},
        {"online__batching": {"maxBatchSize": 16}},
    ],
    ids=lambda c: next(iter(c)),
)
def test_any_pod_relevant_change_is_a_new_revision(change: dict[str, Any]) -> None:
    assert revision_of(spec(**change), default_image=IMAGE) != revision_of(spec(), default_image=IMAGE)


@pytest.mark.parametrize(
    "change",
    [
        {"online__replicas": 7},
        {"online__autoscaling": {"minReplicas": 3, "maxReplicas": 9}},
        {"rollout__analysis__interval": "1m"},
        {"rollout__canary__steps": [{"setWeight": 50}]},
    ],
    ids=lambda c: next(iter(c)),
)
def test_scaling_and_rollout_settings_do_not_change_the_revision(change: dict[str, Any]) -> None:
    assert revision_of(spec(**change), default_image=IMAGE) == revision_of(spec(), default_image=IMAGE)


def test_default_image_counts_when_the_spec_names_none() -> None:
    assert revision_of(spec(), default_image=IMAGE) != revision_of(spec(), default_image="other:2")
    pinned = spec(model__image=IMAGE)
    assert revision_of(pinned, default_image="other:2") == revision_of(pinned, default_image=IMAGE)
