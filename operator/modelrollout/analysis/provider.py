"""What an analysis needs from a metrics backend: one instant query, answered with a number, nothing, or an error.

Providers never raise for a failed query: a backend that is down or rejects a query is an `Error` verdict for
the metrics that needed it, decided by the rollout like any other verdict, never a crashed tick.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The answer to one instant query: `value` (None when the result was empty) or `error`."""

    value: float | None = None
    error: str | None = None

    @property
    def has_data(self) -> bool:
        # NaN is what PromQL returns for 0/0 (e.g. a ratio over a window without traffic): no data, not a number.
        return self.error is None and self.value is not None and not math.isnan(self.value)

    @classmethod
    def of(cls, value: float) -> QueryResult:
        return cls(value=value)

    @classmethod
    def empty(cls) -> QueryResult:
        return cls()

    @classmethod
    def failed(cls, error: str) -> QueryResult:
        return cls(error=error)


class MetricProvider(Protocol):
    """A metrics backend (Prometheus today). `query` must not raise for backend failures: it returns
    `QueryResult.failed(...)` instead."""

    async def query(self, promql: str) -> QueryResult: ...


async def ask(provider: MetricProvider, promql: str) -> QueryResult:
    """`provider.query`, with any exception (a provider bug) turned into a failed result: analysis must end in an
    Error verdict, never in a crashed tick."""
    try:
        return await provider.query(promql)
    except Exception as exc:
        logger.warning("metric provider raised for %r", promql, exc_info=True)
        return QueryResult.failed(f"{type(exc).__name__}: {exc}")
