"""The provider's reading of Prometheus answers and its HTTP handling. The HTTP layer is exercised through
httpx's in-process transport here; tests/integration/analysis runs it against a real Prometheus."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from modelrollout.analysis.prometheus import PrometheusProvider, parse_answer
from modelrollout.analysis.provider import QueryResult
from modelrollout.api.analysis import PrometheusSettings


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {"i": str(i)}, "value": [1700000000.0, v]} for i, v in enumerate(values)]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (vector("0.25"), QueryResult.of(0.25)),
        (vector(), QueryResult.empty()),
        (vector("+Inf"), QueryResult.of(math.inf)),
        ({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}}, QueryResult.of(3.0)),
    ],
)
def test_one_number_or_nothing(body: dict[str, Any], expected: QueryResult) -> None:
    assert parse_answer(body) == expected


def test_nan_is_a_value_the_judge_treats_as_no_data() -> None:
    result = parse_answer(vector("NaN"))
    assert result.value is not None
    assert math.isnan(result.value)
    assert not result.has_data


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (vector("1", "2"), "the query returned 2 series"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "returned a matrix"),
        (
            {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"},
            "Prometheus rejected the query: bad_data: parse error at char 5",
        ),
        ({"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "x"]}]}}, "unreadable"),
        ({"status": "success", "data": {"resultType": "scalar", "result": []}}, "unreadable scalar"),
        ({"nonsense": True}, "unreadable answer from Prometheus"),
        ([1, 2], "unreadable answer from Prometheus"),
    ],
)
def test_anything_else_is_an_error_saying_what(body: Any, message: str) -> None:
    result = parse_answer(body)
    assert result.error is not None
    assert message in result.error


def provider(handler: Any, **kwargs: Any) -> PrometheusProvider:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return PrometheusProvider(address="http://prom.example:9090/", client=client, **kwargs)


async def test_queries_are_posted_as_forms_with_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=vector("1.5"))

    result = await provider(handler, bearer_token="s3cret").query('up{job="x"}')
    assert result == QueryResult.of(1.5)
    assert str(seen[0].url) == "http://prom.example:9090/api/v1/query"
    assert seen[0].method == "POST"
    assert seen[0].headers["authorization"] == "Bearer s3cret"
    assert seen[0].content == b"query=up%7Bjob%3D%22x%22%7D"


async def test_no_token_no_authorization_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=vector())

    assert await provider(handler).query("up") == QueryResult.empty()
    assert "authorization" not in seen[0].headers


async def test_a_rejected_query_keeps_prometheus_own_message() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "unknown function"}
    result = await provider(lambda _r: httpx.Response(400, json=body)).query("nope(")
    assert result.error == "Prometheus rejected the query: bad_data: unknown function"


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(503, text="upstream down"), "answered HTTP 503 without JSON: 'upstream down'"),
        (httpx.Response(500, json={"oops": 1}), "answered HTTP 500"),
    ],
)
async def test_http_failures_are_errors(response: httpx.Response, message: str) -> None:
    result = await provider(lambda _r: response).query("up")
    assert result.error is not None
    assert message in result.error


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (httpx.ReadTimeout("slow"), "did not answer within 2.5s"),
        (httpx.ConnectError("refused"), "cannot reach Prometheus at http://prom.example:9090: ConnectError: refused"),
    ],
)
async def test_transport_failures_are_errors_not_exceptions(exc: Exception, message: str) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise exc

    result = await provider(handler, timeout_seconds=2.5).query("up")
    assert result.error is not None
    assert message in result.error


async def test_settings_give_address_timeout_and_token() -> None:
    settings = PrometheusSettings(address="http://prometheus:9090", timeout="1500ms")
    made = PrometheusProvider.from_settings(settings, bearer_token="t")
    async with made:
        assert made.address == "http://prometheus:9090"
        assert made.timeout_seconds == 1.5


async def test_a_shared_client_is_not_closed_by_the_provider() -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda _r: httpx.Response(200, json=vector())))
    async with PrometheusProvider(address="http://p:9090", client=client):
        pass
    assert not client.is_closed
    await client.aclose()
