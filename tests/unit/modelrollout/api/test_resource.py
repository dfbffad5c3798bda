from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from testkit.manifests import EDGE_VALID, EXAMPLES, INVALID, Invalid, load_example

from modelrollout.api import ModelDeployment
from modelrollout.api.errors import describe_validation_error
from modelrollout.api.rollout import RolloutSpec
from modelrollout.api.spec import ModelDeploymentSpec


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_is_a_valid_model_deployment(path: Path) -> None:
    parsed = ModelDeployment.model_validate(load_example(path.name))
    assert parsed.spec.modes, "an example serves at least one mode"


def test_there_is_an_example_for_every_strategy_and_provider() -> None:
    specs = [ModelDeployment.model_validate(load_example(p.name)).spec for p in EXAMPLES]
    assert {s.rollout.strategy for s in specs} == {"canary", "blueGreen", "shadow", "abTest", "direct"}
    providers = {s.rollout.traffic_routing.provider for s in specs if s.rollout.traffic_routing}
    assert {"router", "gatewayAPI", "istio"} <= providers
    assert any(s.modes == ["online", "batch", "stream"] for s in specs)


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_manifest_is_rejected_naming_the_field_and_fix(case: Invalid) -> None:
    with pytest.raises(ValidationError) as rejected:
        ModelDeployment.model_validate(case.manifest())
    message = describe_validation_error(rejected.value)
    for expected in case.expect:
        assert expected.lower() in message.lower(), f"{expected!r} missing from: {message}"


@pytest.mark.parametrize("case", EDGE_VALID, ids=lambda c: c.id)
def test_values_at_the_edge_of_a_rule_are_accepted(case: Invalid) -> None:
    ModelDeployment.model_validate(case.manifest())


def test_defaults_match_what_the_crd_declares() -> None:
    spec = ModelDeployment.model_validate(load_example("online-direct.yaml")).spec
    assert spec.rollout.strategy == "direct"
    assert spec.online is not None
    assert spec.online.replicas == 1
    canary = ModelDeployment.model_validate(load_example("online-canary-router.yaml")).spec.rollout
    assert canary.analysis is not None
    assert canary.analysis.no_data == "inconclusive"
    assert canary.analysis.judge.type == "threshold"
    assert canary.analysis.min_requests == 20


def test_wire_form_uses_the_crd_field_names() -> None:
    manifest = load_example("online-canary-router.yaml")
    wire = ModelDeployment.model_validate(manifest).to_wire()
    assert wire["spec"]["online"]["autoscaling"]["targetCPUUtilizationPercentage"] == 70
    assert wire["spec"]["rollout"]["canary"]["steps"][0] == {"setWeight": 10}
    assert wire["metadata"] == {"name": "churn"}
    assert ModelDeployment.model_validate(wire) == ModelDeployment.model_validate(manifest)


def test_spec_needs_a_model() -> None:
    with pytest.raises(ValidationError) as rejected:
        ModelDeploymentSpec.model_validate({"online": {}})
    assert "model: Field required" in describe_validation_error(rejected.value)


@pytest.mark.parametrize(
    ("rollout", "provider"),
    [
        ({"strategy": "direct"}, None),
        ({"strategy": "direct", "trafficRouting": {"provider": "router"}}, "router"),
        ({"strategy": "canary", "canary": {"steps": [{"setWeight": 10}]}}, "router"),
        (
            {"strategy": "canary", "canary": {"steps": [{"setWeight": 10}]}, "trafficRouting": {"provider": "service"}},
            "service",
        ),
    ],
)
def test_the_traffic_provider_is_decided_in_one_place(rollout: dict[str, Any], provider: str | None) -> None:
    # Strategy direct never splits traffic: it runs no router unless trafficRouting asks for one.
    assert RolloutSpec.model_validate(rollout).provider == provider
