"""The operator bench's results page (bench/operator/report.py) from synthetic results."""

from __future__ import annotations

from bench.operator import report
from bench.operator.results import (
    BenchResults,
    Convergence,
    ReactionSample,
    RequestRow,
    RunResult,
    Settings,
    TickRow,
    Ticks,
    Window,
)
from bench.operator.stats import by_group


def _window(seconds: float, lists: float, applies: float, *, operator: bool) -> Window:
    return Window(
        seconds=seconds,
        requests=[
            RequestRow(verb="LIST", resource="apps/deployments", scope="namespace", code="200", count=lists),
            RequestRow(verb="APPLY", resource="services", scope="resource", code="200", count=applies),
            RequestRow(verb="PUT", resource="coordination.k8s.io/leases", scope="resource", code="200", count=30),
            RequestRow(verb="PUT", resource="apps/deployments/status", scope="resource", code="409", count=1),
        ],
        operator_cpu_s=6.0 if operator else None,
        operator_rss_kib=204800 if operator else None,
        apiserver_cpu_s=12.0,
    )


def _run(label: str, *, seconds: float | None, lists: float, reaction: list[float | None]) -> RunResult:
    return RunResult(
        label=label,
        tree=f"{label} tree",
        size=100,
        namespaces=10,
        watch="all namespaces",
        mix={"direct": 80, "hpa": 10, "canary": 10},
        started="2026-12-04 05:00 UTC",
        took_s=300,
        applied_s=1.5,
        convergence=Convergence(
            cap_s=600,
            seconds=seconds,
            converged=100 if seconds is not None else 80,
            first_s=5.0,
            half_s=10.0,
            p90_s=20.0,
            operator_cpu_s=30.0,
            by_flavor=by_group({"direct": [8.0, 10.0, 12.0], "canary": [20.0]}),
        ),
        steady=_window(120, lists, 60, operator=True),
        baseline=_window(60, 0, 0, operator=False),
        reaction=[
            ReactionSample(namespace="ns", name=f"m{i}", flavor="direct", patch_s=0.01, latency_s=value)
            for i, value in enumerate(reaction)
        ],
        ticks=Ticks(pause_s=5, expected=4, samples=[TickRow(subject="m9", step=1, status_s=0.2, routing_s=0.1)]),
        peak_rss_kib=307200,
        exit_code=0,
        notes=["a note"],
    )


def _results() -> BenchResults:
    return BenchResults(
        command="python -m bench.operator.run --sizes 100",
        started="2026-12-04 05:00 UTC",
        finished="2026-12-04 05:30 UTC",
        machine={"nproc": "2", "cpu": "AMD EPYC", "memory": "23.5 GiB", "python": "3.11.7", "kernel": "6.18"},
        load_before="0.50 0.40 0.30",
        load_after="1.00 0.90 0.80",
        settings=Settings(
            trees={"before": "commit 7bed7b4", "after": "the working tree"},
            sizes=[100],
            cluster="mr-bench",
            nodes=10,
            node_pods=1000,
            service_cidr="10.96.0.0/16",
            namespaces=10,
            watch="all namespaces",
            cap_s=600,
            settle_s=30,
            steady_s=120,
            baseline_s=60,
            reaction_samples=3,
            reaction_gap_s=2,
            tick_rollouts=1,
            pause_s=5,
            seed=17,
        ),
        runs=[
            _run("before", seconds=None, lists=1200, reaction=[1.0, 2.0, None]),
            _run("after", seconds=30.0, lists=120, reaction=[0.1, 0.2]),
        ],
    )


def test_the_summary_puts_the_versions_side_by_side_with_their_ratio() -> None:
    page = report.render(_results())
    lines = page.splitlines()
    assert "| size | measure | before | after | after / before |" in lines
    assert "| 100 | time until all converged | not in 600 s: 80/100 | 30.0 s | - |" in lines
    # with the operator (120 s): LIST 1200 or 120, APPLY 60, lease PUT 30, PUT 1; without it (60 s): PUT 30 + 1
    assert "| 100 | steady: API requests/min, all clients | 646 | 106 | 0.16x |" in lines
    assert "| 100 | steady: API requests/min, the operator's (difference) | 614 | 74 | 0.12x |" in lines
    assert "| 100 | steady: operator CPU (% of a core) | 5.0 | 5.0 | 1.00x |" in lines
    assert "| 100 | steady: operator RSS (MiB) | 200 | 200 | 1.00x |" in lines
    assert "| 100 | reaction p50 (ms) | 1,500 | 150 | 0.10x |" in lines
    assert "| 100 | reaction samples (answered/sent) | 2/3 | 2/2 | - |" in lines
    assert "| 100 | tick samples (seen/pauses) | 1/4 | 1/4 | - |" in lines


def test_the_requests_table_shows_the_operators_share_per_request() -> None:
    lines = report.render(_results()).splitlines()
    assert "| LIST apps/deployments (namespace) | 600 | 0 | 600 | 60 | 0 | 60 |" in lines
    assert "| PUT coordination.k8s.io/leases (resource) | 15 | 30 | -15 | 15 | 30 | -15 |" in lines
    assert "| **total** | **646** | **31** | **614** | **106** | **31** | **74** |" in lines
    assert "- before: LIST 600, APPLY 30, PUT -16" in lines
    assert "- after: steady 409: 1; without the operator 409: 1" in lines
    assert "  - note: a note" in lines
    assert any("30.0 s (direct p50 10.0 s, last 12.0 s; canary p50 20.0 s, last 20.0 s)" in line for line in lines)


def test_the_page_renders_again_from_the_raw_results() -> None:
    results = _results()
    again = BenchResults.model_validate_json(results.model_dump_json())
    assert report.render(again) == report.render(results)


def test_ratio_and_number_formatting() -> None:
    assert report.ratio(2.0, 4.0) == "0.50x"
    assert report.ratio(None, 4.0) == "-"
    assert report.ratio(0.0, 0.0) == "-"
    assert report.ratio(1.0, 0.0) == "inf"
    assert report.number(1234.56, 1) == "1,234.6"
    assert report.number(None) == "-"
    assert report.number(-0.4) == "0"
    assert report.number(-0.6) == "-1"
    assert report.number(-0.04, 1) == "0.0"
