"""Mirroring: clients only ever get stable's answers, while the canary's shadow answers are compared."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.integration.router.conftest import SHIFT, Fleet, Router, StartRouter, document, records, v2_body
from tests.integration.router.faulty_models import SLOW_MARK

pytestmark = pytest.mark.integration

INFER = "/v2/models/clf/infer"
# Exact counts need every mirrored request compared: no shadow may be dropped for being over the bound,
# however slowly a loaded machine answers them.
UNBOUNDED = ("--max-shadow-inflight", "100000")


def comparisons(router: Router, expected_total: int, timeout: float = 20.0) -> dict[str, float]:
    """The comparison counts once `expected_total` shadows have been compared (they run in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = {
            result: router.sample("modelrouter_shadow_comparisons_total", route=router_route(router), result=result)
            for result in ("agree", "disagree", "error")
        }
        if sum(counts.values()) >= expected_total or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def router_route(router: Router) -> str:
    route: str = router.client.get("/readyz").json()["route"]
    return route


def send_all(router: Router, fleet: Fleet) -> None:
    for i, row in enumerate(fleet.x):
        response = router.client.post(INFER, json=v2_body(row))
        assert response.status_code == 200, response.text
        assert response.headers["x-modelrollout-version"] == "1"
        assert response.headers["x-modelrollout-role"] == "stable"
        body = response.json()
        assert body["model_version"] == "1"
        assert body["outputs"][0]["data"] == [fleet.labels["1"][i]]


def test_an_identical_canary_agrees(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(document(canary="2", mirror=100), upstreams=fleet.upstreams("clf"), args=UNBOUNDED)
    send_all(router, fleet)
    n = len(fleet.x)
    assert comparisons(router, n) == {"agree": n, "disagree": 0, "error": 0}
    assert router.sample("modelrouter_requests_total", route="clf", version="2", role="shadow", code="200") == n
    assert router.sample("modelrouter_requests_total", route="clf", version="1", role="stable", code="200") == n
    # Labels are integers: no |stable - shadow| is observed for them.
    assert router.sample("modelrouter_shadow_abs_diff_count", route="clf") == 0


def test_a_different_canary_disagrees_on_exactly_the_rows_it_answers_differently(
    fleet: Fleet, start_router: StartRouter
) -> None:
    router = start_router(document(canary="3", mirror=100), upstreams=fleet.upstreams("clf"), args=UNBOUNDED)
    send_all(router, fleet)
    differ = int(np.sum(np.asarray(fleet.labels["1"]) != np.asarray(fleet.labels["3"])))
    assert 0 < differ < len(fleet.x)
    n = len(fleet.x)
    assert comparisons(router, n) == {"agree": n - differ, "disagree": differ, "error": 0}


def test_regression_shadows_report_the_mean_absolute_difference(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(
        document(route="reg", canary="2", mirror=100), upstreams=fleet.upstreams("reg"), args=UNBOUNDED
    )
    direct = fleet.servers[("reg", "1")].client
    n = 50
    for row in fleet.diabetes[:n]:
        response = router.client.post("/predict", json=records(row))
        assert response.status_code == 200
        assert response.headers["x-modelrollout-version"] == "1"
        assert response.content == direct.post("/predict", json=records(row)).content
    assert comparisons(router, n) == {"agree": 0, "disagree": n, "error": 0}
    total = router.sample("modelrouter_shadow_abs_diff_sum", route="reg")
    count = router.sample("modelrouter_shadow_abs_diff_count", route="reg")
    assert count == n
    assert total / count == pytest.approx(SHIFT, rel=1e-6)  # what the shadowMeanAbsDiff builtin computes


def test_a_share_of_requests_is_mirrored(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(document(canary="2", mirror=30), upstreams=fleet.upstreams("clf"), args=UNBOUNDED)
    send_all(router, fleet)
    time.sleep(0.5)
    mirrored = sum(comparisons(router, 0).values())
    n, p = len(fleet.x), 0.3
    assert abs(mirrored - n * p) <= 4.5 * (n * p * (1 - p)) ** 0.5


def test_a_failing_shadow_is_an_error_and_never_the_clients(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(
        document(canary="8", mirror=100, retry=False), upstreams=fleet.upstreams("clf"), args=UNBOUNDED
    )
    send_all(router, fleet)
    n = len(fleet.x)
    assert comparisons(router, n) == {"agree": 0, "disagree": 0, "error": n}
    assert router.sample("modelrouter_requests_total", route="clf", version="8", role="shadow", code="500") == n


def test_slow_shadows_never_delay_clients_and_are_bounded(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(
        document(canary="8", mirror=100, timeout=10),
        upstreams=fleet.upstreams("clf"),
        args=("--max-shadow-inflight", "2"),
    )
    slow_row = fleet.x[0].copy()
    slow_row[0] = SLOW_MARK  # the canary takes a second over it; stable answers at once
    started = time.monotonic()
    for _ in range(10):
        response = router.client.post(INFER, json=v2_body(slow_row))
        assert response.status_code == 200
        assert response.headers["x-modelrollout-version"] == "1"
    assert time.monotonic() - started < 0.9  # less than one shadow call takes
    assert router.sample("modelrouter_shadow_dropped_total", route="clf") == 8
    counts = comparisons(router, 2)
    assert sum(counts.values()) == 2
    assert counts["error"] == 0
