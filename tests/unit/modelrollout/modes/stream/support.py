"""Builders shared by the stream mode's unit tests: a stream-led ModelDeployment (examples/stream.yaml) and its
revisions."""

from __future__ import annotations

import copy
from typing import Any

from testkit.manifests import load_example

from modelrollout.api.resource import ModelDeployment
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import ModelDeploymentStatus, RevisionRef
from modelrollout.planning.online import Owner
from modelrollout.planning.reconcile import PlanSettings, target_of

SETTINGS = PlanSettings(default_image="registry.example/model-server:1", progress_deadline_s=600, history_limit=5)
IMAGE = SETTINGS.default_image
STREAM = load_example("stream.yaml")  # tx-scoring: consumerGroup tx-scoring, autoscaling 2..8 on lag 1000
NAME, NAMESPACE, UID = "tx-scoring", "shop", "uid-1"
OWNER = Owner(name=NAME, namespace=NAMESPACE, uid=UID)


def md(version: str = "5", *, status: ModelDeploymentStatus | None = None, **stream: Any) -> ModelDeployment:
    """examples/stream.yaml at model `version`; `stream` replaces keys of spec.stream (None removes one)."""
    body = copy.deepcopy(STREAM)
    body["metadata"] |= {"namespace": NAMESPACE, "uid": UID, "generation": 1}
    body["spec"]["model"]["version"] = version
    body["spec"]["model"]["uri"] = f"s3://models/tx-fraud/{version}/model.onnx"
    for key, value in stream.items():
        if value is None:
            body["spec"]["stream"].pop(key, None)
        else:
            body["spec"]["stream"][key] = value
    if status is not None:
        body["status"] = status.to_wire()
    return ModelDeployment.model_validate(body)


def spec(**stream: Any) -> ModelDeploymentSpec:
    return md(**stream).spec


def ref(version: str) -> RevisionRef:
    return target_of(md(version).spec, SETTINGS)
