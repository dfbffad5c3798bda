from __future__ import annotations

import dataclasses

import pytest

from modelrollout.analysis.queries import (
    LATENCY_BUCKET_EDGES,
    CountQueries,
    QueryContext,
    QueryTemplateError,
    builtin_query,
    count_queries,
    custom_query,
    rate_window,
    samples_query,
)
from modelserver.metrics import LATENCY_BUCKETS

CTX = QueryContext(
    namespace="prod", name="churn-md", model="churn", version="7", revision="e5f6a7b8", window_seconds=60
)
SEL = 'namespace="prod",model="churn",version="7"'


@pytest.mark.parametrize(
    ("builtin", "expected"),
    [
        (
            "latencyP95",
            f"histogram_quantile(0.95, sum by (le) (rate(modelserver_request_duration_seconds_bucket{{{SEL}}}[60s])))",
        ),
        (
            "latencyP99",
            f"histogram_quantile(0.99, sum by (le) (rate(modelserver_request_duration_seconds_bucket{{{SEL}}}[60s])))",
        ),
        (
            "errorRate",
            f'(sum(rate(modelserver_requests_total{{{SEL},code!~"2.."}}[60s])) or vector(0))'
            f" / sum(rate(modelserver_requests_total{{{SEL}}}[60s]))",
        ),
        ("requestRate", f"sum(rate(modelserver_requests_total{{{SEL}}}[60s]))"),
        (
            "shadowAgreement",
            "(sum(increase(modelrouter_shadow_comparisons_total"
            '{namespace="prod",route="churn-md",result="agree"}[60s])) or vector(0))'
            ' / sum(increase(modelrouter_shadow_comparisons_total{namespace="prod",route="churn-md"}[60s]))',
        ),
        (
            "shadowMeanAbsDiff",
            'sum(rate(modelrouter_shadow_abs_diff_sum{namespace="prod",route="churn-md"}[60s]))'
            ' / sum(rate(modelrouter_shadow_abs_diff_count{namespace="prod",route="churn-md"}[60s]))',
        ),
    ],
)
def test_builtin_queries_select_one_revision_over_the_window(builtin: str, expected: str) -> None:
    assert builtin_query(builtin, CTX) == expected  # type: ignore[arg-type]


def test_samples_are_requests_for_server_metrics_and_comparisons_for_shadow_ones() -> None:
    requests = f"sum(increase(modelserver_requests_total{{{SEL}}}[60s]))"
    assert samples_query("latencyP95", CTX) == requests
    assert samples_query(None, CTX) == requests  # custom queries count the revision's requests too
    assert samples_query("shadowAgreement", CTX) == (
        'sum(increase(modelrouter_shadow_comparisons_total{namespace="prod",route="churn-md"}[60s]))'
    )


def test_label_values_are_escaped_inside_promql_strings() -> None:
    odd = QueryContext(namespace="n", name="x", model='a"b\\c', version="1", revision="r", window_seconds=5)
    assert 'model="a\\"b\\\\c"' in builtin_query("requestRate", odd)


def test_custom_queries_get_every_placeholder_filled() -> None:
    template = 'sum(rate(x{ns="{{namespace}}",md="{{ name }}",v="{{version}}",r="{{revision}}"}[{{interval}}]))'
    assert custom_query(template, CTX) == 'sum(rate(x{ns="prod",md="churn-md",v="7",r="e5f6a7b8"}[60s]))'


def test_an_unknown_placeholder_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(QueryTemplateError, match=r"unknown placeholder \{\{model\}\}.*\{\{namespace\}\}"):
        custom_query('x{m="{{model}}"}', CTX)


def test_promql_braces_that_are_not_placeholders_are_left_alone() -> None:
    assert custom_query('sum by (le) (x{a="b"})', CTX) == 'sum by (le) (x{a="b"})'


@pytest.mark.parametrize(
    ("requested", "scrape", "window"),
    [
        (30, 1, 30),  # long enough already
        (30, 15, 60),  # four scrapes of 15s
        (10, 5, 20),
        (0.5, 0.1, 1),  # rounded up to whole seconds
        (61.2, 1, 62),
    ],
)
def test_rate_windows_never_cover_fewer_than_four_scrapes(requested: float, scrape: float, window: int) -> None:
    assert rate_window(requested_seconds=requested, scrape_interval_seconds=scrape) == window


def test_a_scrape_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        rate_window(requested_seconds=30, scrape_interval_seconds=0)


def test_context_interval_is_a_promql_duration() -> None:
    assert CTX.interval == "60s"


def test_latency_bucket_edges_are_the_model_servers() -> None:
    assert LATENCY_BUCKET_EDGES == LATENCY_BUCKETS


def test_count_queries_for_the_sequential_judge() -> None:
    ctx = QueryContext(namespace="prod", name="churn", model="churn", version="7", revision="r", window_seconds=60)
    sel = 'namespace="prod",model="churn",version="7"'
    errors = count_queries("errorRate", None, ctx)
    assert errors == CountQueries(
        bad=f'sum(modelserver_requests_total{{{sel},code!~"2.."}}) or vector(0)',
        total=f"sum(modelserver_requests_total{{{sel}}})",
        what="non-2xx answers",
    )
    slow = count_queries("latencyP99", 1.0, ctx)
    assert isinstance(slow, CountQueries)
    assert slow.bad == (
        f"sum(modelserver_request_duration_seconds_count{{{sel}}}) - "
        f'sum(modelserver_request_duration_seconds_bucket{{{sel},le=~"1|1.0"}})'
    )
    # The test's first run counts the increases over its window instead of only noting the sums.
    first = count_queries("errorRate", None, ctx, window=True)
    assert isinstance(first, CountQueries)
    assert first.bad == f'sum(increase(modelserver_requests_total{{{sel},code!~"2.."}}[60s])) or vector(0)'
    assert first.total == f"sum(increase(modelserver_requests_total{{{sel}}}[60s]))"
    slow_first = count_queries("latencyP99", 0.25, ctx, window=True)
    assert isinstance(slow_first, CountQueries)
    assert slow_first.bad == (
        f"sum(increase(modelserver_request_duration_seconds_count{{{sel}}}[60s])) - "
        f'sum(increase(modelserver_request_duration_seconds_bucket{{{sel},le="0.25"}}[60s]))'
    )
    assert "not a bucket edge" in str(count_queries("latencyP95", 0.2, ctx))
    assert "set max" in str(count_queries("latencyP95", None, ctx))
    assert "not requestRate" in str(count_queries("requestRate", None, ctx))
    back = builtin_query("requestRate", dataclasses.replace(ctx, offset_seconds=120))
    assert back == f"sum(rate(modelserver_requests_total{{{sel}}}[60s] offset 120s))"


# --- stream consumers (a rollout stream leads) ------------------------------------------------------------------

STREAM_CTX = dataclasses.replace(CTX, mode="stream")
CONSUMERS = 'namespace="prod",model="churn",revision="e5f6a7b8"'
HANDLED = f'{CONSUMERS},result!="skipped"'
FAILED = f'{CONSUMERS},result=~"dead_lettered|dropped"'


@pytest.mark.parametrize(
    ("builtin", "expected"),
    [
        (
            "errorRate",
            f"(sum(rate(modelserver_stream_records_total{{{FAILED}}}[60s])) or vector(0))"
            f" / sum(rate(modelserver_stream_records_total{{{HANDLED}}}[60s]))",
        ),
        ("requestRate", f"sum(rate(modelserver_stream_records_total{{{HANDLED}}}[60s]))"),
        (
            "latencyP99",
            "histogram_quantile(0.99, sum by (le) "
            f"(rate(modelserver_stream_end_to_end_seconds_bucket{{{CONSUMERS}}}[60s])))",
        ),
        (
            "latencyP95",
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(modelserver_stream_end_to_end_seconds_bucket{{{CONSUMERS}}}[60s])))",
        ),
        ("lagGrowth", f"deriv(sum(modelserver_stream_consumer_lag{{{CONSUMERS}}})[60s:])"),
    ],
)
def test_stream_builtins_select_one_revisions_consumers(builtin: str, expected: str) -> None:
    query = builtin_query(builtin, STREAM_CTX)  # type: ignore[arg-type]
    assert query == expected
    assert 'version="7"' not in query, "consumers are told apart by revision, not by model version"


def test_a_consumers_records_leave_out_those_of_the_other_revisions_share() -> None:
    # Both revisions read every record; each counts the other's share as skipped: never part of a rate or a count.
    for builtin in ("errorRate", "requestRate"):
        query = builtin_query(builtin, STREAM_CTX)
        assert 'result!="skipped"' in query
    assert "skipped" not in builtin_query("latencyP99", STREAM_CTX)


def test_stream_samples_are_the_records_a_revision_handled() -> None:
    handled = f"sum(increase(modelserver_stream_records_total{{{HANDLED}}}[60s]))"
    for builtin in ("errorRate", "latencyP95", "lagGrowth", None):
        assert samples_query(builtin, STREAM_CTX) == handled
    assert samples_query("errorRate", dataclasses.replace(STREAM_CTX, offset_seconds=60)) == (
        f"sum(increase(modelserver_stream_records_total{{{HANDLED}}}[60s] offset 60s))"
    )


def test_stream_count_queries_count_failed_records_and_refuse_the_rest() -> None:
    errors = count_queries("errorRate", None, STREAM_CTX)
    assert errors == CountQueries(
        bad=f"sum(modelserver_stream_records_total{{{FAILED}}}) or vector(0)",
        total=f"sum(modelserver_stream_records_total{{{HANDLED}}})",
        what="records dead-lettered or dropped",
    )
    first = count_queries("errorRate", None, STREAM_CTX, window=True)
    assert isinstance(first, CountQueries)
    assert first.total == f"sum(increase(modelserver_stream_records_total{{{HANDLED}}}[60s]))"
    # A bucket edge of the model server's histogram means nothing for the consumers' end-to-end latency.
    refused = count_queries("latencyP99", 1.0, STREAM_CTX)
    assert refused == "the sequential judge counts a stream's failed records (errorRate), not latencyP99"
    assert "not lagGrowth" in str(count_queries("lagGrowth", None, STREAM_CTX))


def test_lag_growth_is_the_streams_own() -> None:
    with pytest.raises(QueryTemplateError, match="lagGrowth measures stream consumers"):
        builtin_query("lagGrowth", CTX)


def test_a_stream_shadow_is_judged_on_the_candidate_consumers_comparisons() -> None:
    comparisons = "modelserver_stream_shadow_comparisons_total"
    assert builtin_query("shadowAgreement", STREAM_CTX) == (
        f'(sum(increase({comparisons}{{{CONSUMERS},result="agree"}}[60s])) or vector(0))'
        f" / sum(increase({comparisons}{{{CONSUMERS}}}[60s]))"
    )
    assert builtin_query("shadowMeanAbsDiff", STREAM_CTX) == (
        f"sum(rate(modelserver_stream_shadow_abs_diff_sum{{{CONSUMERS}}}[60s]))"
        f" / sum(rate(modelserver_stream_shadow_abs_diff_count{{{CONSUMERS}}}[60s]))"
    )
    # Their samples are the comparisons, not the records the candidate scored.
    assert samples_query("shadowAgreement", STREAM_CTX) == f"sum(increase({comparisons}{{{CONSUMERS}}}[60s]))"
    assert samples_query("latencyP95", STREAM_CTX) == (
        f"sum(increase(modelserver_stream_records_total{{{HANDLED}}}[60s]))"
    )


def test_lag_growth_over_a_past_window_is_taken_there() -> None:
    back = builtin_query("lagGrowth", dataclasses.replace(STREAM_CTX, offset_seconds=120))
    assert back == f"deriv(sum(modelserver_stream_consumer_lag{{{CONSUMERS}}})[60s:] offset 120s)"


@pytest.mark.parametrize("builtin", ["latencyP95", "latencyP99", "errorRate", "requestRate"])
def test_the_model_servers_queries_sum_over_every_protocol(builtin: str) -> None:
    """REST's and gRPC's series differ only by `protocol` (the contract's PROTOCOL_LABEL): a query that selected or
    kept it would judge a canary on part of its traffic, and errorRate reads `code` as an HTTP status for both."""
    from modelrollout_contract.metrics import PROTOCOL_LABEL  # noqa: PLC0415

    queries = [builtin_query(builtin, CTX)]  # type: ignore[arg-type]
    slo = 0.1 if builtin.startswith("latency") else None
    counted = count_queries(builtin, slo, CTX)  # type: ignore[arg-type]
    if isinstance(counted, CountQueries):
        queries += [counted.bad, counted.total]
    for query in queries:
        assert PROTOCOL_LABEL not in query, query
