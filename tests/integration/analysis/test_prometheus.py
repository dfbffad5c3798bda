"""The Prometheus provider and the builtin queries against a real Prometheus scraping a real exporter.

The exporter's traffic (exporter.TRAFFIC) makes every expected value exact: churn v1 answers in 40 ms and v2 in
200 ms, so their p95 is interpolated inside one latency bucket; v2 fails one request in ten; v3 gets one request
a second; the router agrees on 49 of 50 comparisons; model "other" also has a version 2, which must never leak
into churn's numbers.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from testkit.ports import free_port
from testkit.waiting import eventually

from modelrollout.analysis.prometheus import PrometheusProvider
from modelrollout.analysis.queries import QueryContext, builtin_query, rate_window
from modelrollout.analysis.request import AnalysisOutcome, AnalysisRequest
from modelrollout.analysis.run import run_analysis
from modelrollout.api.analysis import AnalysisMetric, NoDataPolicy
from modelrollout.api.status import RevisionRef
from tests.integration.analysis.conftest import NAMESPACE, SCRAPE_INTERVAL_S, Prometheus

pytestmark = pytest.mark.integration

V1 = RevisionRef(revision="aaaa1111", version="1")
V2 = RevisionRef(revision="bbbb2222", version="2")
V3 = RevisionRef(revision="cccc3333", version="3")
V9 = RevisionRef(revision="dddd9999", version="9")  # never served: no series at all
WINDOW_S = 5
# histogram_quantile interpolates linearly inside the bucket holding the quantile: 40 ms lies in (25 ms, 50 ms],
# 200 ms in (100 ms, 250 ms].
P95_V1 = 0.025 + (0.05 - 0.025) * 0.95
P95_V2 = 0.1 + (0.25 - 0.1) * 0.95


def context(ref: RevisionRef) -> QueryContext:
    window = rate_window(requested_seconds=WINDOW_S, scrape_interval_seconds=SCRAPE_INTERVAL_S)
    return QueryContext(
        namespace=NAMESPACE,
        name="churn",
        model="churn",
        version=ref.version,
        revision=ref.revision,
        window_seconds=window,
    )


def metric(**fields: object) -> AnalysisMetric:
    return AnalysisMetric.model_validate(fields)


def request(
    *metrics: AnalysisMetric, canary: RevisionRef = V2, no_data: NoDataPolicy = "inconclusive", min_requests: int = 20
) -> AnalysisRequest:
    return AnalysisRequest(
        kind="Background",
        step=0,
        canary=canary,
        stable=V1,
        metrics=metrics,
        window_seconds=WINDOW_S,
        no_data=no_data,
        min_requests=min_requests,
        min_comparisons=10,
    )


async def analyse(provider: PrometheusProvider, req: AnalysisRequest) -> AnalysisOutcome:
    return await run_analysis(
        provider,
        req,
        namespace=NAMESPACE,
        name="churn",
        model="churn",
        scrape_interval_seconds=SCRAPE_INTERVAL_S,
        now=datetime.now(UTC),
    )


@pytest.fixture
async def provider(prometheus: Prometheus) -> AsyncIterator[PrometheusProvider]:
    async with PrometheusProvider(address=prometheus.url, timeout_seconds=10) as made:
        # Rates need the window filled with scrapes: wait until the slowest-filling series has a full window.
        async def window_filled() -> bool | None:
            result = await made.query(f"count_over_time(up[{WINDOW_S}s]) >= {WINDOW_S}")
            return True if result.has_data else None

        await eventually(window_filled, within=60, what="Prometheus to hold a full window of scrapes")
        yield made


async def test_builtin_values_are_exact_for_known_traffic(provider: PrometheusProvider) -> None:
    p95_v2 = await provider.query(builtin_query("latencyP95", context(V2)))
    p95_v1 = await provider.query(builtin_query("latencyP95", context(V1)))
    errors_v2 = await provider.query(builtin_query("errorRate", context(V2)))
    errors_v1 = await provider.query(builtin_query("errorRate", context(V1)))
    rate_v2 = await provider.query(builtin_query("requestRate", context(V2)))
    agreement = await provider.query(builtin_query("shadowAgreement", context(V2)))
    assert p95_v2.value == pytest.approx(P95_V2)
    assert p95_v1.value == pytest.approx(P95_V1)
    assert errors_v2.value == pytest.approx(0.1)
    assert errors_v1.value == 0.0  # requests but no failure: a rate of 0, not missing data
    assert rate_v2.value == pytest.approx(100, rel=0.15)  # 100 requests/s, up to rate()'s edge extrapolation
    assert agreement.value == pytest.approx(0.98)


async def test_a_run_judges_real_measurements(provider: PrometheusProvider) -> None:
    outcome = await analyse(
        provider,
        request(
            metric(name="p95", builtin="latencyP95", max=0.3),
            metric(name="p95-tight", builtin="latencyP95", max=0.2),
            metric(name="vs-stable", builtin="latencyP95", relativeToStable={"maxIncrease": 0.1}),
            metric(name="errors", builtin="errorRate", max=0.2),
            metric(name="rate", builtin="requestRate", min=50),
            metric(name="agreement", builtin="shadowAgreement", min=0.97),
            metric(
                name="custom",
                query='sum(rate(modelserver_requests_total{namespace="{{namespace}}",model="{{name}}",'
                'version="{{version}}",code="500"}[{{interval}}]))',
                min=5,
                max=15,
            ),
        ),
    )
    verdicts = {m.name: m.verdict for m in outcome.run.metrics}
    assert verdicts == {
        "p95": "Successful",
        "p95-tight": "Failed",
        "vs-stable": "Failed",
        "errors": "Successful",
        "rate": "Successful",
        "agreement": "Successful",
        "custom": "Successful",
    }
    assert outcome.run.verdict == "Failed"
    vs_stable = next(m for m in outcome.run.metrics if m.name == "vs-stable")
    assert vs_stable.value == pytest.approx(P95_V2)
    assert vs_stable.stable_value == pytest.approx(P95_V1)
    assert vs_stable.evidence is not None
    assert vs_stable.evidence["maxAllowed"] == pytest.approx(P95_V1 * 1.1)


async def test_the_stable_revision_passes_what_the_canary_fails(provider: PrometheusProvider) -> None:
    outcome = await analyse(
        provider,
        request(
            metric(name="p95", builtin="latencyP95", max=0.2),
            metric(name="errors", builtin="errorRate", max=0.01),
            canary=V1,
        ),
    )
    assert outcome.run.verdict == "Successful"


@pytest.mark.parametrize(
    ("policy", "verdict"),
    # noData pass cannot pass a builtin metric of a candidate with no traffic at all: no promotion in a gap.
    [("inconclusive", "Inconclusive"), ("fail", "Failed"), ("pass", "Inconclusive")],
)
async def test_a_revision_without_series_follows_the_no_data_policy(
    provider: PrometheusProvider, policy: NoDataPolicy, verdict: str
) -> None:
    outcome = await analyse(
        provider, request(metric(name="p95", builtin="latencyP95", max=1), canary=V9, no_data=policy)
    )
    result = outcome.run.metrics[0]
    assert result.verdict == verdict
    assert result.message is not None
    assert "only 0 requests in the window" in result.message
    assert ("traffic gap" in result.message) == (policy == "pass")


async def test_a_trickle_of_traffic_is_no_data_not_a_verdict(provider: PrometheusProvider) -> None:
    outcome = await analyse(provider, request(metric(name="p95", builtin="latencyP95", max=0.01), canary=V3))
    result = outcome.run.metrics[0]
    assert result.verdict == "Inconclusive"  # p95 of 40 ms would fail max 10 ms, but 5 requests decide nothing
    assert result.evidence is not None
    assert 0 < result.evidence["samples"] < 20


async def test_queries_prometheus_rejects_or_cannot_reduce_to_a_number_are_errors(provider: PrometheusProvider) -> None:
    outcome = await analyse(
        provider,
        request(
            metric(name="syntax", query="sum(rate(", max=1),
            metric(name="many", query="modelserver_requests_total", max=1),
            metric(name="ok", builtin="errorRate", max=0.5),
        ),
    )
    results = {m.name: m for m in outcome.run.metrics}
    assert results["syntax"].verdict == "Error"
    assert "Prometheus rejected the query: bad_data" in (results["syntax"].message or "")
    assert results["many"].verdict == "Error"
    assert "series" in (results["many"].message or "")
    assert results["ok"].verdict == "Successful"
    assert outcome.run.verdict == "Error"


async def test_prometheus_down_is_an_error_verdict() -> None:
    async with PrometheusProvider(address=f"http://127.0.0.1:{free_port()}", timeout_seconds=5) as down:
        outcome = await analyse(down, request(metric(name="p95", builtin="latencyP95", max=1)))
    result = outcome.run.metrics[0]
    assert (outcome.run.verdict, result.verdict) == ("Error", "Error")
    assert "cannot reach Prometheus" in (result.message or "")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers: a hung Prometheus."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


async def test_a_hung_prometheus_times_out_into_an_error_verdict(silent_server: int) -> None:
    async with PrometheusProvider(address=f"http://127.0.0.1:{silent_server}", timeout_seconds=0.5) as hung:
        outcome = await analyse(hung, request(metric(name="p95", builtin="latencyP95", max=1)))
    assert outcome.run.verdict == "Error"
    assert "did not answer within 0.5s" in (outcome.run.metrics[0].message or "")
