"""A failing, unreachable or slow canary: answered from stable with retryOnStable, passed through without."""

from __future__ import annotations

import pytest
from testkit.ports import free_port

from tests.integration.router.conftest import SLOW_S, Fleet, StartRouter, document, v2_body
from tests.integration.router.faulty_models import SLOW_MARK

pytestmark = pytest.mark.integration

INFER = "/v2/models/clf/infer"
N = 20


def test_a_canary_5xx_is_answered_from_stable_with_retry_on_stable(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(document(canary="8", weights=(0, 100), retry=True), upstreams=fleet.upstreams("clf"))
    for i in range(N):
        response = router.client.post(INFER, json=v2_body(fleet.x[i]))
        assert response.status_code == 200
        assert response.headers["x-modelrollout-version"] == "1"
        assert response.headers["x-modelrollout-role"] == "stable"
        assert response.json()["outputs"][0]["data"] == [fleet.labels["1"][i]]
    # The canary's failures still count as the canary's.
    assert router.sample("modelrouter_requests_total", route="clf", version="8", role="canary", code="500") == N
    assert router.sample("modelrouter_requests_total", route="clf", version="1", role="stable", code="200") == N


def test_a_canary_5xx_passes_through_without_retry(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(document(canary="8", weights=(0, 100), retry=False), upstreams=fleet.upstreams("clf"))
    direct = fleet.servers[("clf", "8")].client.post(INFER, json=v2_body(fleet.x[0]))
    for _ in range(N):
        response = router.client.post(INFER, json=v2_body(fleet.x[0]))
        assert (response.status_code, response.content) == (500, direct.content)
        assert response.headers["x-modelrollout-version"] == "8"
        assert response.headers["x-modelrollout-role"] == "canary"


def test_an_unreachable_canary(fleet: Fleet, start_router: StartRouter) -> None:
    upstreams = fleet.upstreams("clf") | {"2": f"http://127.0.0.1:{free_port()}"}  # nothing listens there
    retrying = start_router(document(weights=(0, 100), retry=True), upstreams=upstreams)
    for i in range(N):
        response = retrying.client.post(INFER, json=v2_body(fleet.x[i]))
        assert response.status_code == 200
        assert response.headers["x-modelrollout-version"] == "1"
    assert retrying.sample("modelrouter_requests_total", route="clf", version="2", role="canary", code="502") == N
    plain = start_router(document(weights=(0, 100), retry=False), upstreams=upstreams)
    response = plain.client.post(INFER, json=v2_body(fleet.x[0]))
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    assert response.json()["role"] == "canary"
    assert "cannot connect" in response.json()["error"]


def test_a_canary_past_the_timeout(fleet: Fleet, start_router: StartRouter) -> None:
    slow_row = fleet.x[0].copy()
    slow_row[0] = SLOW_MARK
    timeout = SLOW_S / 4
    plain = start_router(document(canary="8", weights=(0, 100), timeout=timeout), upstreams=fleet.upstreams("clf"))
    response = plain.client.post(INFER, json=v2_body(slow_row))
    assert response.status_code == 504
    assert "did not answer within" in response.json()["error"]
    retrying = start_router(
        document(canary="8", weights=(0, 100), timeout=timeout, retry=True), upstreams=fleet.upstreams("clf")
    )
    response = retrying.client.post(INFER, json=v2_body(slow_row))
    assert response.status_code == 200
    assert response.headers["x-modelrollout-version"] == "1"
    assert retrying.sample("modelrouter_requests_total", route="clf", version="8", role="canary", code="504") == 1


def test_a_stable_5xx_is_passed_through(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(document(stable="8", canary="1", retry=True), upstreams=fleet.upstreams("clf"))
    response = router.client.post(INFER, json=v2_body(fleet.x[0]))
    assert response.status_code == 500
    assert response.headers["x-modelrollout-role"] == "stable"
