"""The e2e harness itself, before any rollout: real model servers under load, scraped by a real Prometheus, give
the operator's builtin analysis queries real numbers (the router's part: test_router_harness.py)."""

from __future__ import annotations

import math
import time
import uuid

import pytest
from testkit.load import Load
from testkit.models import Classifiers

from modelrollout_contract.metrics import LATENCY_BUCKETS
from tests.e2e.conftest import LaunchProcesses

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WINDOW_S = 10
FAILURE_SHARE = 0.2
# The slow model's answers land in the (50 ms, 100 ms] latency bucket. The model server calls the model on its
# event loop, so it answers at most 1000/LATENCY_MS requests a second: it gets a rate well below that.
LATENCY_MS = 60
RATES = {"1": 20, "2": 20, "3": 8}  # requests per second to each version


def test_builtin_queries_measure_real_servers(classifiers: Classifiers, launch_processes: LaunchProcesses) -> None:
    # Builtin queries need only the namespace label that the scrape adds, so no API server is involved here.
    stack = launch_processes(
        {"1": classifiers.stable, "2": classifiers.failing(FAILURE_SHARE), "3": classifiers.slow(LATENCY_MS)},
        namespace=f"t-{uuid.uuid4().hex[:10]}",
    )
    loads = [Load(server.infer_url, classifiers.dataset, rate=RATES[v]) for v, server in stack.servers.items()]
    for load in loads:
        load.start()
    try:
        stack.prometheus.wait_for_series(f"sum(modelserver_requests_total{{namespace={stack.namespace!r}}})")
        time.sleep(WINDOW_S)  # a full window of load behind every rate
        window_end = time.time()
        values = {
            (builtin, version): stack.builtin(builtin, version, window_s=WINDOW_S)
            for builtin in ("requestRate", "errorRate", "latencyP99")
            for version in stack.servers
        }
    finally:
        summaries = {version: load.stop() for version, load in zip(stack.servers, loads, strict=True)}

    for version, summary in summaries.items():
        assert not summary.mismatches({version: classifiers.stable.predictions}), summary.describe()
        assert values["requestRate", version] == pytest.approx(RATES[version], rel=0.3), (version, values)
    assert summaries["1"].by_code.keys() == {200}, summaries["1"].describe()
    assert summaries["3"].by_code.keys() == {200}, summaries["3"].describe()
    assert summaries["2"].by_code.keys() == {200, 500}, summaries["2"].describe()
    assert summaries["2"].error_share == pytest.approx(FAILURE_SHARE, abs=0.03), summaries["2"].describe()

    assert values["errorRate", "1"] == 0
    assert values["errorRate", "3"] == 0
    assert values["errorRate", "2"] == pytest.approx(FAILURE_SHARE, abs=0.07), values
    slow, fast = values["latencyP99", "3"], values["latencyP99", "1"]
    assert slow is not None, values
    assert fast is not None, values
    # The server's p99 lies in the bucket of its true p99, which is at most what its clients waited (their time
    # includes the server's). A fixed 100 ms bound failed once when a neighbour's load stalled one request of the
    # window's ~80 past 100 ms (p99 0.142 s): the clients saw that stall too, so the query was right.
    # (2 s more before the window: a request sent just before it can be counted in it; a larger sample can only
    # raise the clients' p99, which for under 100 requests is their slowest.)
    since = window_end - WINDOW_S - 2
    waited = sorted(o.latency_s for o in summaries["3"].outcomes if since <= o.sent_at <= window_end)
    client_p99 = waited[math.ceil(0.99 * len(waited)) - 1]
    edge = min(e for e in LATENCY_BUCKETS if e >= client_p99)
    assert LATENCY_MS / 1000 <= slow <= edge, (values, client_p99)
    assert slow > fast, values

    # A version nobody serves has no data at all (the analysis' no-data policy decides), not a zero.
    assert stack.builtin("requestRate", "9") is None
