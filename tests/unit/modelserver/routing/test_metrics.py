from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from modelserver.routing.metrics import LATENCY_BUCKETS, RouterMetrics


def test_series_names_and_labels_match_the_operator_queries() -> None:
    metrics = RouterMetrics(CollectorRegistry())
    metrics.backend("churn", "1", "stable").observe(200, 0.002)
    metrics.backend("churn", "2", "shadow").observe(504, 2.5)
    metrics.comparison("churn", "disagree", 25.0)
    metrics.comparison("churn", "error", None)
    metrics.loaded("churn", {"stable": 90, "canary": 10}, mirror=5)
    metrics.assigned("churn", "2", "key")
    metrics.assigned("churn", "2", "key")
    metrics.assigned("churn", "1", "missing")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    assert value("modelrouter_requests_total", route="churn", version="1", role="stable", code="200") == 1
    assert value("modelrouter_requests_total", route="churn", version="2", role="shadow", code="504") == 1
    assert value("modelrouter_upstream_duration_seconds_count", route="churn", version="1", role="stable") == 1
    assert value("modelrouter_upstream_duration_seconds_bucket", route="churn", version="1", role="stable",
                 le="0.0025") == 1  # fmt: skip
    assert value("modelrouter_shadow_comparisons_total", route="churn", result="disagree") == 1
    assert value("modelrouter_shadow_comparisons_total", route="churn", result="error") == 1
    # The operator's shadowMeanAbsDiff builtin: modelrouter_shadow_abs_diff_sum / _count.
    assert value("modelrouter_shadow_abs_diff_sum", route="churn") == 25.0
    assert value("modelrouter_shadow_abs_diff_count", route="churn") == 1
    assert value("modelrouter_weight", route="churn", role="canary") == 10
    assert value("modelrouter_assignments_total", route="churn", version="2", source="key") == 2
    assert value("modelrouter_assignments_total", route="churn", version="1", source="missing") == 1
    assert not any(name.endswith("_created") for name, _ in samples)


def test_comparison_series_exist_at_zero_once_a_route_is_loaded() -> None:
    # As the model server's request series: a shadow's first analysis must see its first comparisons.
    metrics = RouterMetrics(CollectorRegistry())
    metrics.loaded("churn", {"stable": 100}, mirror=0)
    for result in ("agree", "disagree", "error"):
        labels = {"route": "churn", "result": result}
        assert metrics.registry.get_sample_value("modelrouter_shadow_comparisons_total", labels) == 0


def test_latency_buckets_span_half_a_millisecond_to_ten_seconds() -> None:
    assert LATENCY_BUCKETS[0] == 0.0005
    assert LATENCY_BUCKETS[-1] == 10.0
