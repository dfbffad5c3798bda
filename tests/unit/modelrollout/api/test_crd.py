from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from testkit.manifests import load_example

from modelrollout.api.crd import build_crd, render_crd_yaml
from modelrollout.api.spec import STREAM_AND_BATCH, STREAM_SHADOW
from modelrollout.api.workloads import StreamSpec

CHECKED_IN = Path(__file__).resolve().parents[4] / "crds" / "modelrollout.dev_modeldeployments.yaml"


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_checked_in_crd_is_what_the_models_generate() -> None:
    assert CHECKED_IN.read_text() == render_crd_yaml(), "crds/ is stale: run `make crds` and commit the result"


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    undocumented = [
        path
        for path, node in _walk(_schema())
        # named fields below spec/status; list items and map values are described by their field
        if path.count(".") >= 2 and not path.endswith(("[]", "{}")) and not node.get("description")
    ]
    assert undocumented == []


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        assert "$ref" not in node, path
        assert "title" not in node, path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), f"{path}: unions other than int-or-string"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("default") is not None or "default" not in node, f"{path}: null default"


def test_status_schema_has_no_defaults() -> None:
    status = _schema()["properties"]["status"]
    assert [path for path, node in _walk(status) if "default" in node] == []


def test_names_columns_and_subresource() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["mdep"]
    assert names["categories"] == ["all", "ml"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Modes", "Strategy", "Stable", "Canary", "Weight", "Phase", "Age"]


def test_cel_rules_travel_into_the_crd() -> None:
    rules = [rule["rule"] for _, node in _walk(_schema()) for rule in node.get("x-kubernetes-validations", [])]
    assert "has(self.online) || has(self.batch) || has(self.stream)" in rules
    assert any("isSorted()" in rule for rule in rules)
    assert len(rules) >= 20


def test_enums_and_bounds_are_declared() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    rollout = spec["rollout"]["properties"]
    assert rollout["strategy"]["enum"] == ["canary", "blueGreen", "shadow", "abTest", "direct"]
    assert rollout["strategy"]["default"] == "direct"
    step = rollout["canary"]["properties"]["steps"]["items"]["properties"]
    assert (step["setWeight"]["minimum"], step["setWeight"]["maximum"]) == (0, 100)
    alpha = rollout["abTest"]["properties"]["alpha"]
    assert alpha["exclusiveMinimum"] is True
    assert alpha["minimum"] == 0
    assert yaml.safe_load(render_crd_yaml())["kind"] == "CustomResourceDefinition"


def test_the_streams_rules_say_at_admission_what_pydantic_says() -> None:
    """The CEL rules of a stream spec carry the pydantic validators' words, so `kubectl apply` and the CLI agree."""
    nodes = dict(_walk(_schema()))
    stream_rules = nodes[".spec.stream"]["x-kubernetes-validations"]
    [dead_letters] = [r for r in stream_rules if "deadLetterTopic" in r["rule"]]
    assert dead_letters["fieldPath"] == ".kafka.deadLetterTopic"
    assert dead_letters["reason"] == "FieldValueRequired"
    body = load_example("stream.yaml")["spec"]["stream"]
    del body["kafka"]["deadLetterTopic"]
    with pytest.raises(ValidationError) as refused:
        StreamSpec.model_validate(body)
    [error] = refused.value.errors()
    assert error["msg"] == f"Value error, {dead_letters['message']}"
    assert StreamSpec.model_validate(body | {"delivery": "at-least-once"}).kafka.dead_letter_topic is None
    spec_rules = {r["message"]: r for r in nodes[".spec"]["x-kubernetes-validations"]}
    assert spec_rules[STREAM_SHADOW]["fieldPath"] == ".stream.kafka.shadowTopic"
    assert spec_rules[STREAM_AND_BATCH]["fieldPath"] == ".batch"
