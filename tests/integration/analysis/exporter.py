"""A stand-in model server and router for the analysis tests: serves /metrics with the DESIGN.md section 4
metric names through prometheus-client, with counts that grow at fixed rates from the moment it starts.

Every count is a function of one tick counter read once per scrape, so all series of a scrape are mutually
consistent and each builtin query has an exact expected value (see TRAFFIC and the test module).
Run: python exporter.py PORT
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from modelserver.metrics import LATENCY_BUCKETS

TICKS_PER_SECOND = 10
# (model, version) -> (2xx requests per tick, 5xx requests per tick, latency of every request in seconds)
TRAFFIC: dict[tuple[str, str], tuple[float, float, float]] = {
    ("churn", "1"): (10, 0, 0.04),
    ("churn", "2"): (9, 1, 0.2),
    ("churn", "3"): (0.1, 0, 0.04),  # a trickle: one request a second
    ("other", "2"): (10, 10, 5.0),  # another model with the same version: must never leak into churn's numbers
}
# route -> comparisons per tick by result
SHADOW: dict[str, dict[str, int]] = {"churn": {"agree": 49, "disagree": 1, "error": 0}}


class Traffic(Collector):
    def __init__(self) -> None:
        self.started = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        ticks = math.floor((time.monotonic() - self.started) * TICKS_PER_SECOND)
        requests = CounterMetricFamily(
            "modelserver_requests_total", "Inference requests", labels=["model", "version", "protocol", "code"]
        )
        errors = CounterMetricFamily(
            "modelserver_inference_errors_total", "Failed inferences", labels=["model", "version", "reason"]
        )
        durations = HistogramMetricFamily(
            "modelserver_request_duration_seconds", "Request duration", labels=["model", "version", "protocol"]
        )
        for (model, version), (ok, failed, latency) in TRAFFIC.items():
            good, bad = math.floor(ticks * ok), math.floor(ticks * failed)
            requests.add_metric([model, version, "rest", "200"], good)
            if failed:
                requests.add_metric([model, version, "rest", "500"], bad)
                errors.add_metric([model, version, "internal"], bad)
            total = good + bad
            buckets = [(str(b), total if latency <= b else 0) for b in LATENCY_BUCKETS] + [("+Inf", total)]
            durations.add_metric([model, version, "rest"], buckets, total * latency)
        comparisons = CounterMetricFamily(
            "modelrouter_shadow_comparisons_total", "Shadow comparisons", labels=["route", "result"]
        )
        for route, results in SHADOW.items():
            for result, per_tick in results.items():
                comparisons.add_metric([route, result], ticks * per_tick)
        yield from (requests, errors, durations, comparisons)


def main() -> None:
    registry = CollectorRegistry()
    registry.register(Traffic())
    start_http_server(int(sys.argv[1]), addr="127.0.0.1", registry=registry)
    threading.Event().wait()


if __name__ == "__main__":
    main()
