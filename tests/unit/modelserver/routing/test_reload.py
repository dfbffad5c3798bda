from __future__ import annotations

import json

from prometheus_client import CollectorRegistry
from testkit.vectors import FULL as SHARED_VECTOR
from testkit.vectors import full_document as vector

from modelserver.routing.metrics import RouterMetrics
from modelserver.routing.reload import APPLIED, INVALID, UNCHANGED, Routing


def sample(metrics: RouterMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def make() -> tuple[Routing, RouterMetrics]:
    metrics = RouterMetrics(CollectorRegistry())
    return Routing(metrics=metrics, upstreams={"2": "http://127.0.0.1:9002"}), metrics


def test_a_valid_document_is_applied_and_its_weights_exported() -> None:
    routing, metrics = make()
    assert routing.snapshot is None
    assert routing.apply(SHARED_VECTOR.read_bytes(), origin="test") == APPLIED
    assert routing.snapshot is not None
    assert routing.snapshot.backends["canary"].url == "http://127.0.0.1:9002"
    assert sample(metrics, "modelrouter_weight", route="churn", role="stable") == 90
    assert sample(metrics, "modelrouter_weight", route="churn", role="canary") == 10
    assert sample(metrics, "modelrouter_weight", route="churn", role="shadow") == 5
    assert sample(metrics, "modelrouter_config_reloads_total", route="churn", result="applied") == 1


def test_an_invalid_document_keeps_the_last_good_one() -> None:
    routing, metrics = make()
    routing.apply(SHARED_VECTOR.read_text(), origin="test")
    good = routing.snapshot
    # A version 1 document calling itself version 2 is an invalid version 2 document.
    versions = [json.dumps(vector() | {"schemaVersion": v}) for v in (2, 3)]
    for bad in ["{", *versions, json.dumps(vector() | {"weights": {"stable": 1}})]:
        assert routing.apply(bad, origin="test") == INVALID
        assert routing.snapshot is good
    assert sample(metrics, "modelrouter_config_reloads_total", route="churn", result="invalid") == 4
    assert sample(metrics, "modelrouter_config_stale", route="churn") == 1
    # The next good document clears the stale flag.
    assert routing.apply(json.dumps(vector() | {"weights": {"stable": 50, "canary": 50}}), origin="test") == APPLIED
    assert routing.snapshot is not good
    assert sample(metrics, "modelrouter_config_stale", route="churn") == 0
    assert sample(metrics, "modelrouter_weight", route="churn", role="canary") == 50


def test_an_invalid_first_document_leaves_the_router_unready() -> None:
    routing, metrics = make()
    assert routing.apply(json.dumps(vector() | {"schemaVersion": 3}), origin="test") == INVALID
    assert routing.snapshot is None
    assert sample(metrics, "modelrouter_config_reloads_total", route="churn", result="invalid") == 1


def test_the_same_routing_reformatted_is_unchanged() -> None:
    routing, metrics = make()
    routing.apply(SHARED_VECTOR.read_text(), origin="test")
    first = routing.snapshot
    assert routing.apply(json.dumps(vector(), indent=4, sort_keys=True), origin="test") == UNCHANGED
    assert routing.snapshot is first
    assert sample(metrics, "modelrouter_config_reloads_total", route="churn", result="unchanged") == 1


def test_a_missing_document_keeps_what_serves() -> None:
    routing, metrics = make()
    routing.missing("deleted", origin="test")
    assert routing.snapshot is None
    routing.apply(SHARED_VECTOR.read_text(), origin="test")
    good = routing.snapshot
    routing.missing("deleted", origin="test")
    assert routing.snapshot is good
    assert sample(metrics, "modelrouter_config_reloads_total", route="churn", result="missing") == 1
    assert sample(metrics, "modelrouter_config_stale", route="churn") == 1


def test_a_new_route_name_moves_the_weight_gauges() -> None:
    routing, metrics = make()
    routing.apply(SHARED_VECTOR.read_text(), origin="test")
    routing.apply(json.dumps(vector() | {"route": "churn-2"}), origin="test")
    assert sample(metrics, "modelrouter_weight", route="churn", role="stable") is None
    assert sample(metrics, "modelrouter_weight", route="churn-2", role="stable") == 90


def test_a_backend_url_that_cannot_be_used_is_refused() -> None:
    routing, metrics = make()
    routing.apply(SHARED_VECTOR.read_text(), origin="test")
    good = routing.snapshot
    unusable = vector() | {"backends": {"stable": "http://", "canary": "http://churn-canary.prod.svc:80"}}
    assert routing.apply(json.dumps(unusable), origin="test") == INVALID
    assert routing.snapshot is good
    assert sample(metrics, "modelrouter_config_stale", route="churn") == 1
