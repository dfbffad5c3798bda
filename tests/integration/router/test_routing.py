"""Weighted split, header route and pass-through, through the real router to real model servers."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.router.conftest import Fleet, StartRouter, document, v2_body

pytestmark = pytest.mark.integration

INFER = "/v2/models/clf/infer"


def versions(client: httpx.Client, fleet: Fleet, n: int, headers: dict[str, str] | None = None) -> list[str]:
    answered = []
    for i in range(n):
        response = client.post(INFER, json=v2_body(fleet.x[i % len(fleet.x)]), headers=headers)
        assert response.status_code == 200, response.text
        version = response.headers["x-modelrollout-version"]
        assert response.json()["model_version"] == version  # the header names the server that answered
        assert response.headers["x-modelrollout-role"] == ("stable" if version == "1" else "canary")
        answered.append(version)
    return answered


@pytest.mark.parametrize(("stable", "canary"), [(100, 0), (70, 30), (0, 100)])
def test_weights_are_honoured(fleet: Fleet, start_router: StartRouter, stable: int, canary: int) -> None:
    router = start_router(document(weights=(stable, canary)), upstreams=fleet.upstreams("clf"))
    n = 600
    to_canary = versions(router.client, fleet, n).count("2")
    p = canary / 100
    # Binomial: within 4.5 standard deviations (exact at 0 and 100).
    assert abs(to_canary - n * p) <= 4.5 * (n * p * (1 - p)) ** 0.5, to_canary
    assert router.sample("modelrouter_weight", route="clf", role="canary") == canary
    counted = router.sample("modelrouter_requests_total", route="clf", version="2", role="canary", code="200")
    assert counted == to_canary


def test_a_matching_header_goes_to_the_canary_whatever_the_weights(fleet: Fleet, start_router: StartRouter) -> None:
    header = {"header": "X-Canary", "exact": "always"}
    router = start_router(document(weights=(100, 0), header=header), upstreams=fleet.upstreams("clf"))
    assert set(versions(router.client, fleet, 30, headers={"x-canary": "always"})) == {"2"}
    assert set(versions(router.client, fleet, 30, headers={"x-canary": "sometimes"})) == {"1"}
    assert set(versions(router.client, fleet, 30)) == {"1"}


def test_a_regex_header_route(fleet: Fleet, start_router: StartRouter) -> None:
    header = {"header": "x-user", "regex": "beta-[0-9]+"}
    router = start_router(document(weights=(100, 0), header=header), upstreams=fleet.upstreams("clf"))
    assert set(versions(router.client, fleet, 10, headers={"x-user": "beta-17"})) == {"2"}
    assert set(versions(router.client, fleet, 10, headers={"x-user": "beta-17b"})) == {"1"}


def test_requests_and_answers_pass_through_unchanged(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(document(weights=(100, 0)), upstreams=fleet.upstreams("clf"))
    direct = httpx.Client(base_url=fleet.url("clf", "1"), timeout=30)
    body = v2_body(fleet.x[0]) | {"id": "req-1", "outputs": [{"name": "predict_proba"}]}
    for method, path, kwargs in [
        ("POST", INFER, {"json": body}),
        ("GET", "/v2/models/clf", {}),
        ("HEAD", "/v2/models/clf", {}),
        ("GET", "/v2/models/clf/ready", {}),
        ("GET", "/v2/health/ready", {}),
        ("POST", "/predict?threshold=0.9", {"json": [{f"f{i}": float(v) for i, v in enumerate(fleet.x[0])}]}),
        ("POST", INFER, {"content": b'{"inputs": [', "headers": {"content-type": "application/json"}}),
        ("POST", "/v2/models/other/infer", {"json": body}),
        ("GET", "/v2/nothing-here", {}),
    ]:
        via = router.client.request(method, path, **kwargs)
        expected = direct.request(method, path, **kwargs)
        assert (via.status_code, via.content) == (expected.status_code, expected.content), (method, path)
        assert via.headers["content-type"] == expected.headers["content-type"]
        assert via.headers["content-length"] == expected.headers["content-length"]
        assert via.headers["x-modelrollout-version"] == "1"
    direct.close()


def test_an_invalid_request_gets_the_backends_4xx_not_a_5xx(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(document(weights=(50, 50), retry=True), upstreams=fleet.upstreams("clf"))
    for _ in range(10):
        response = router.client.post(INFER, content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert "error" in response.json()
    # A 4xx is the client's fault: never retried on stable, counted as the role's 400.
    counted = sum(
        router.sample("modelrouter_requests_total", route="clf", version=v, role=r, code="400")
        for v, r in (("1", "stable"), ("2", "canary"))
    )
    assert counted == 10


def test_the_routers_own_endpoints(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(upstreams=fleet.upstreams("clf"), ready=False)  # no document yet
    assert router.client.get("/healthz").status_code == 200
    assert router.client.get("/readyz").status_code == 503
    refused = router.client.post(INFER, json=v2_body(fleet.x[0]))
    assert refused.status_code == 503
    assert "no routing document" in refused.json()["error"]
    router.configure(document())
    router.wait("/readyz")
    assert router.client.post(INFER, json=v2_body(fleet.x[0])).status_code == 200
    metrics = router.client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'modelrouter_config_reloads_total{result="applied",route="clf"} 1.0' in metrics.text
