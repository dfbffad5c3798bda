"""Numbers from raw readings (bench/operator/stats.py)."""

from __future__ import annotations

import pytest
from bench.operator import stats
from bench.operator.stats import Counted, RequestKey


def _series(verb: str, group: str, resource: str, scope: str, value: int, *, code: str = "200", sub: str = "") -> str:
    """One line of apiserver_request_total as kube-apiserver 1.33 writes it (labels in its order)."""
    labels = (
        f'code="{code}",component="apiserver",dry_run="",group="{group}",resource="{resource}",scope="{scope}",'
        f'subresource="{sub}",verb="{verb}",version="v1"'
    )
    return f"apiserver_request_total{{{labels}}} {value}\n"


EXPOSITION = (
    "# HELP apiserver_request_total [STABLE] Counter of apiserver requests\n"
    "# TYPE apiserver_request_total counter\n"
    + _series("LIST", "apps", "deployments", "namespace", 21)
    + _series("LIST", "apps", "deployments", "namespace", 4).replace('component="apiserver"', 'component=""')
    + _series("PUT", "apps", "deployments", "resource", 2, code="409", sub="status")
    + _series("APPLY", "", "services", "resource", 63)
    + _series("GET", "", "", "", 2, sub="/healthz")
    + 'apiserver_request_duration_seconds_bucket{verb="GET",le="0.1"} 9\n'
)


def test_percentiles_interpolate_between_ranks() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert stats.percentile(values, 50) == 3.0
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 100) == 5.0
    assert stats.percentile(values, 90) == pytest.approx(4.6)
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile(list(map(float, range(1, 41))), 99) == pytest.approx(39.61)
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 50)
    summary = stats.Summary.of(values)
    assert summary is not None
    assert (summary.count, summary.p50, summary.max) == (5, 3.0, 5.0)
    assert stats.Summary.of([]) is None


def test_request_totals_are_grouped_by_verb_resource_and_scope_without_non_resource_requests() -> None:
    totals = stats.parse_request_totals(EXPOSITION)
    lists = Counted(RequestKey("LIST", "apps/deployments", "namespace"), "200")
    assert totals == {
        lists: 25.0,
        Counted(RequestKey("PUT", "apps/deployments/status", "resource"), "409"): 2.0,
        Counted(RequestKey("APPLY", "services", "resource"), "200"): 63.0,
    }
    assert lists.key.text() == "LIST apps/deployments (namespace)"
    assert stats.request_lines(EXPOSITION).count("\n") == 5


def test_window_counts_are_deltas_per_minute() -> None:
    before = stats.parse_request_totals(EXPOSITION)
    after = {counted: value * 3 for counted, value in before.items()}
    after[Counted(RequestKey("GET", "pods", "resource"), "404")] = 1.0
    window = stats.delta(before, after)
    assert window[Counted(RequestKey("APPLY", "services", "resource"), "200")] == 126.0
    assert stats.failed(window) == {"409": 4.0, "404": 1.0}
    per_key = stats.by_key(window)
    assert stats.by_verb(per_key) == {"LIST": 50.0, "PUT": 4.0, "APPLY": 126.0, "GET": 1.0}
    rates = stats.per_minute(per_key, 30)
    assert rates[RequestKey("APPLY", "services", "resource")] == 252.0
    with pytest.raises(ValueError, match="last"):
        stats.per_minute(per_key, 0)
    reset = stats.delta({Counted(RequestKey("GET", "pods", "resource"), "200"): 50.0}, after)
    assert reset[Counted(RequestKey("GET", "pods", "resource"), "404")] == 1.0


def test_the_operators_share_is_the_difference() -> None:
    a, b, c = (RequestKey(v, "x", "") for v in ("GET", "LIST", "PUT"))
    share = stats.difference({a: 10.0, b: 5.0}, {b: 2.0, c: 1.0})
    assert share == {a: 10.0, b: 3.0, c: -1.0}
    assert stats.top(share, 2) == [(a, 10.0), (b, 3.0)]


def test_proc_readings() -> None:
    stat = "4242 (python3 (x) y) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 4 0 100 0 0"
    assert stats.cpu_ticks(stat) == 175
    status = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert stats.status_kib(status, "VmRSS") == 102400
    assert stats.status_kib(status, "VmHWM") == 204800
    assert stats.status_kib(status, "VmSwap") is None


def test_time_to_fraction_reads_the_convergence_curve() -> None:
    curve = [(0.0, 0), (2.0, 40), (5.0, 90), (9.0, 100)]
    assert stats.time_to_fraction(curve, 100, 0.5) == 5.0
    assert stats.time_to_fraction(curve, 100, 0.9) == 5.0
    assert stats.time_to_fraction(curve, 100, 1.0) == 9.0
    assert stats.time_to_fraction(curve, 100, 0.01) == 2.0
    assert stats.time_to_fraction(curve[:2], 100, 0.5) is None


def test_by_group_summarises_each_group_with_values() -> None:
    groups = stats.by_group({"a": [1.0, 3.0], "b": []})
    assert list(groups) == ["a"]
    assert (groups["a"].p50, groups["a"].max) == (2.0, 3.0)
