"""MetricProvider over the Prometheus HTTP API: instant queries on /api/v1/query.

Every failure (unreachable, timeout, HTTP error, a query Prometheus rejects, an answer we cannot read, a result
that is not one number) becomes `QueryResult.failed` with a message that says which, so the analysis records an
Error verdict instead of the tick raising.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, ValidationError

from modelrollout.analysis.provider import QueryResult
from modelrollout.api.analysis import PrometheusSettings
from modelrollout.api.base import duration_seconds

QUERY_PATH = "/api/v1/query"


class _Sample(BaseModel):
    metric: dict[str, str] = {}
    value: tuple[float, str]


class _Data(BaseModel):
    result_type: Literal["vector", "scalar", "matrix", "string"] = Field(alias="resultType")
    result: Any


class _Answer(BaseModel):
    status: Literal["success", "error"]
    data: _Data | None = None
    error_type: str | None = Field(default=None, alias="errorType")
    error: str | None = None


def _number(text: str) -> float:
    # Prometheus writes NaN and infinities as "NaN", "+Inf", "-Inf", which float() reads as they are.
    return float(text)


def parse_answer(body: Any) -> QueryResult:
    """One number from a /api/v1/query answer: a scalar, or a vector of at most one series."""
    try:
        answer = _Answer.model_validate(body)
    except ValidationError as exc:
        return QueryResult.failed(f"unreadable answer from Prometheus: {exc.errors()[0]['msg']}")
    if answer.status == "error" or answer.data is None:
        return QueryResult.failed(f"Prometheus rejected the query: {answer.error_type}: {answer.error}")
    try:
        return _one_number(answer.data)
    except (ValidationError, ValueError, TypeError, IndexError) as exc:
        return QueryResult.failed(f"unreadable {answer.data.result_type} from Prometheus: {exc}")


def _one_number(data: _Data) -> QueryResult:
    if data.result_type == "scalar":
        return QueryResult.of(_number(data.result[1]))
    if data.result_type != "vector":
        return QueryResult.failed(f"the query returned a {data.result_type}; it must return one number")
    series = [_Sample.model_validate(s) for s in data.result]
    if len(series) > 1:
        labels = ", ".join(str(s.metric) for s in series[:3])
        return QueryResult.failed(
            f"the query returned {len(series)} series ({labels}...); aggregate it to one, e.g. with sum()"
        )
    return QueryResult.of(_number(series[0].value[1])) if series else QueryResult.empty()


class PrometheusProvider:
    """Instant queries against one Prometheus. Pass `client` to share a connection pool (it is then not closed
    here); otherwise the provider owns one: use `async with` or `aclose()`."""

    def __init__(
        self,
        *,
        address: str,
        timeout_seconds: float = 10.0,
        bearer_token: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.address = address.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self._headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else {}
        self._client = client or httpx.AsyncClient()
        self._owns_client = client is None

    @classmethod
    def from_settings(
        cls, settings: PrometheusSettings, *, bearer_token: str | None = None, client: httpx.AsyncClient | None = None
    ) -> PrometheusProvider:
        """From spec.rollout.analysis.prometheus; the token is read from its Secret by the caller."""
        return cls(
            address=settings.address,
            timeout_seconds=duration_seconds(settings.timeout),
            bearer_token=bearer_token,
            client=client,
        )

    async def query(self, promql: str) -> QueryResult:
        url = self.address + QUERY_PATH
        try:
            response = await self._client.post(
                url, data={"query": promql}, headers=self._headers, timeout=self.timeout_seconds
            )
        except httpx.TimeoutException:
            return QueryResult.failed(f"Prometheus at {self.address} did not answer within {self.timeout_seconds:g}s")
        except httpx.HTTPError as exc:
            return QueryResult.failed(f"cannot reach Prometheus at {self.address}: {type(exc).__name__}: {exc}")
        try:
            body = response.json()
        except ValueError:
            return QueryResult.failed(
                f"Prometheus at {self.address} answered HTTP {response.status_code} without JSON: "
                f"{response.text[:200]!r}"
            )
        # 400 and 422 carry Prometheus' own error JSON, which says more than the status code.
        if response.status_code >= 400 and not (isinstance(body, dict) and body.get("status") == "error"):
            return QueryResult.failed(f"Prometheus at {self.address} answered HTTP {response.status_code}")
        return parse_answer(body)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> PrometheusProvider:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
