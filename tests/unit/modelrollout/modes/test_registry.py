"""The mode registry: what each mode owns and accepts, and which mode leads a spec's rollout."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from testkit.manifests import load_example

from modelrollout import handlers, reconciler
from modelrollout.api.rollout import RECORD_STRATEGIES
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.modes import MODES, declared, leading, owned_kinds
from tests.unit.modelrollout.planning.test_reconcile import V1, md, observed, plan, serving, state


def example_spec(name: str) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(load_example(name)["spec"])


@pytest.mark.parametrize(
    ("example", "modes"),
    [
        ("online-direct.yaml", ["online"]),
        ("batch.yaml", ["batch"]),
        ("stream.yaml", ["stream"]),
        ("hybrid.yaml", ["online", "stream", "batch"]),
    ],
)
def test_online_leads_then_stream_then_batch(example: str, modes: list[str]) -> None:
    spec = example_spec(example)
    assert [m.name for m in declared(spec)] == modes
    assert leading(spec).name == modes[0]


def test_record_modes_refuse_the_strategies_that_need_http_users() -> None:
    assert MODES["online"].strategies == {"direct", "canary", "blueGreen", "shadow", "abTest"}
    assert MODES["batch"].strategies == {"direct", "canary", "shadow"}
    # Stream splits records by key (canary), hands every record over at one cutover (direct), or shadows into a
    # topic of the candidate's own; an A/B test or blue-green needs users making requests.
    assert MODES["stream"].strategies == {"direct", "canary", "shadow"}
    assert all(mode.runnable for mode in MODES.values()), "every declared mode is run by this version"


@pytest.mark.parametrize("strategy", RECORD_STRATEGIES)
def test_a_stream_led_spec_is_admitted_with_exactly_the_strategies_stream_carries_out(strategy: str) -> None:
    body = load_example("stream.yaml")["spec"]
    settings: dict[str, dict[str, Any]] = {
        "canary": {"canary": {"steps": [{"setWeight": 10}]}},
        "shadow": {"shadow": {"duration": "5m"}},
    }
    body["rollout"] = {"strategy": strategy, **settings.get(strategy, {})}
    if strategy == "shadow":
        body["stream"]["kafka"]["shadowTopic"] = "scores-shadow"
    if strategy in MODES["stream"].strategies:
        assert leading(ModelDeploymentSpec.model_validate(body)).name == "stream"
    else:
        with pytest.raises(ValidationError, match="stream shadow"):
            ModelDeploymentSpec.model_validate(body)


def test_a_shadow_led_by_online_keeps_stream_beside_it() -> None:
    body = load_example("hybrid.yaml")["spec"]
    body["rollout"] = {"strategy": "shadow", "shadow": {"duration": "5m"}}
    spec = ModelDeploymentSpec.model_validate(body)
    assert leading(spec).name == "online"
    assert not spec.stream_leads


def test_the_reconciler_observes_and_the_handlers_watch_what_the_modes_own() -> None:
    owned = [o.kind.name for o in owned_kinds()]
    assert list(reconciler.OWNED_KINDS) == owned
    assert len(owned) == len(set(owned))
    assert list(handlers.CHILD_KINDS) == [*owned, "ScaledObject"]  # every kind a pass reads is watched
    assert {o.kind.name for o in owned_kinds() if o.watched} == handlers.WATCHED


@pytest.mark.parametrize("autoscaling", [None, {"minReplicas": 2, "maxReplicas": 4}])
def test_every_object_the_online_plan_writes_is_of_a_kind_the_online_mode_owns(autoscaling: object) -> None:
    online = {"replicas": 3, **({"autoscaling": autoscaling} if autoscaling else {})}
    p = plan(md(status=serving(), **online), observed(state(V1, replicas=3)))
    written = {obj["kind"] for obj in p.grow + p.shrink} | {kind for kind, _ in p.delete}
    assert written <= {o.kind.name for o in MODES["online"].owned}
    assert {"Deployment", "Service"} <= written
