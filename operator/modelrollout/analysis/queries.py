"""PromQL for analysis metrics: builtins over the model server's metrics (DESIGN.md section 4) and the
placeholders of custom queries.

Stream consumers (mode stream) are measured by their own series (records by result, end-to-end latency, lag),
selected by `namespace`, `model` and `revision` (every consumer series carries its revision): the same builtin
names mean the same things (errorRate: the share of records dead-lettered; requestRate: records handled a
second; latency: record timestamp to its batch committed; shadowAgreement / shadowMeanAbsDiff: a shadowing
candidate's answers against the stable outputs of the same records, counted by the candidate's consumer), and
lagGrowth is the stream's own.

Online builtin queries select one revision by the `namespace`, `model` and `version` labels: the model server labels
every series with model and version, and Prometheus' Kubernetes discovery (ServiceMonitor, PodMonitor or plain
kubernetes_sd relabelling) adds namespace. Two revisions with the same model version (an image-only change) are
therefore indistinguishable to the builtins; custom queries can use {{revision}} with a pod label instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from modelrollout.api.analysis import Builtin
from modelrollout_contract import metrics as names

NAMESPACE_LABEL = "namespace"
# rate() needs two samples inside its window and loses part of the window at each edge; four scrapes is the
# usual floor below which rates flicker between a value and nothing.
MIN_SCRAPES_PER_WINDOW = 4
PLACEHOLDERS = ("namespace", "name", "version", "revision", "interval")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
SHADOW_BUILTINS: frozenset[Builtin] = frozenset({"shadowAgreement", "shadowMeanAbsDiff"})
Mode = Literal["online", "stream"]


class QueryTemplateError(ValueError):
    """A custom query names a placeholder we do not fill."""


@dataclass(frozen=True, kw_only=True, slots=True)
class QueryContext:
    """Everything a query may refer to, for one revision and one window."""

    namespace: str
    name: str  # the ModelDeployment; also the router's `route` label
    model: str  # spec.model.name: the model server's `model` label
    version: str
    revision: str
    window_seconds: int
    offset_seconds: int = 0  # how far back the window ends (mannWhitney's points); 0: now
    mode: Mode = "online"  # whose series: the model server's and router's, or the stream consumers'

    @property
    def interval(self) -> str:
        return f"{self.window_seconds}s"

    @property
    def range(self) -> str:
        """A range selector's suffix: `[window]`, then ` offset Ns` for a window that ends in the past."""
        return f"[{self.interval}]" + (f" offset {self.offset_seconds}s" if self.offset_seconds else "")


def rate_window(*, requested_seconds: float, scrape_interval_seconds: float) -> int:
    """The window (whole seconds) a rate over `requested_seconds` really uses: never below four scrapes."""
    if scrape_interval_seconds <= 0:
        raise ValueError("the scrape interval must be positive")
    return math.ceil(max(requested_seconds, MIN_SCRAPES_PER_WINDOW * scrape_interval_seconds))


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _server(ctx: QueryContext, extra: str = "") -> str:
    labels = f"{NAMESPACE_LABEL}={_quoted(ctx.namespace)},model={_quoted(ctx.model)},version={_quoted(ctx.version)}"
    return "{" + labels + extra + "}"


def _route(ctx: QueryContext, extra: str = "") -> str:
    return "{" + f"{NAMESPACE_LABEL}={_quoted(ctx.namespace)},route={_quoted(ctx.name)}" + extra + "}"


def _sum(function: str, series: str, ctx: QueryContext) -> str:
    return f"sum({function}({series}{ctx.range}))"


def _share(function: str, part: str, whole: str, ctx: QueryContext) -> str:
    # `or vector(0)`: a window where the whole has series but the part has none (requests, no failures) is a
    # share of 0, not missing data; an empty whole still divides into nothing, which is missing data.
    return f"({_sum(function, part, ctx)} or vector(0)) / {_sum(function, whole, ctx)}"


def _latency(quantile: float) -> Callable[[QueryContext], str]:
    def query(ctx: QueryContext) -> str:
        buckets = f"{names.REQUEST_DURATION}_bucket{_server(ctx)}"
        return f"histogram_quantile({quantile}, sum by (le) (rate({buckets}{ctx.range})))"

    return query


def _error_rate(ctx: QueryContext) -> str:
    # The model server counts a failed inference both as an inference error and as a request with its 4xx/5xx
    # code, so the non-2xx share of requests already includes every inference error; adding the error counter
    # would count each failure twice.
    requests = names.REQUESTS
    return _share("rate", requests + _server(ctx, ',code!~"2.."'), requests + _server(ctx), ctx)


def _request_rate(ctx: QueryContext) -> str:
    return _sum("rate", names.REQUESTS + _server(ctx), ctx)


def _shadow_agreement(ctx: QueryContext) -> str:
    # Errors of the shadow call count against agreement: a candidate that fails cannot be said to agree.
    comparisons = names.SHADOW_COMPARISONS
    return _share("increase", comparisons + _route(ctx, f',result="{names.AGREE}"'), comparisons + _route(ctx), ctx)


def _shadow_mean_abs_diff(ctx: QueryContext) -> str:
    # The router's histogram of |stable - candidate| per mirrored numeric answer: its mean over the window.
    total = _sum("rate", f"{names.SHADOW_ABS_DIFF}_sum" + _route(ctx), ctx)
    count = _sum("rate", f"{names.SHADOW_ABS_DIFF}_count" + _route(ctx), ctx)
    return f"{total} / {count}"


def _consumers(ctx: QueryContext, extra: str = "") -> str:
    labels = f"{NAMESPACE_LABEL}={_quoted(ctx.namespace)},model={_quoted(ctx.model)},revision={_quoted(ctx.revision)}"
    return "{" + labels + extra + "}"


_HANDLED = f',result!="{names.SKIPPED}"'  # a consumer's records, without those of the other revision's share


def _stream_latency(quantile: float) -> Callable[[QueryContext], str]:
    def query(ctx: QueryContext) -> str:
        buckets = f"{names.STREAM_END_TO_END}_bucket{_consumers(ctx)}"
        return f"histogram_quantile({quantile}, sum by (le) (rate({buckets}{ctx.range})))"

    return query


def _stream_error_rate(ctx: QueryContext) -> str:
    records = names.STREAM_RECORDS
    failed = f',result=~"{names.DEAD_LETTERED}|{names.DROPPED}"'
    return _share("rate", records + _consumers(ctx, failed), records + _consumers(ctx, _HANDLED), ctx)


def _stream_record_rate(ctx: QueryContext) -> str:
    return _sum("rate", names.STREAM_RECORDS + _consumers(ctx, _HANDLED), ctx)


def _lag_growth(ctx: QueryContext) -> str:
    # Records a second by which the revision's total lag grew over the window (negative: it caught up).
    offset = f" offset {ctx.offset_seconds}s" if ctx.offset_seconds else ""
    return f"deriv(sum({names.STREAM_CONSUMER_LAG}{_consumers(ctx)})[{ctx.interval}:]{offset})"


def _stream_shadow_agreement(ctx: QueryContext) -> str:
    # The candidate's consumer compares its answers with the stable outputs (modelserver.stream.shadow); as online,
    # an answer the shadow could not give (error) counts against agreement.
    comparisons = names.STREAM_SHADOW_COMPARISONS
    agreed = _consumers(ctx, f',result="{names.AGREE}"')
    return _share("increase", comparisons + agreed, comparisons + _consumers(ctx), ctx)


def _stream_shadow_mean_abs_diff(ctx: QueryContext) -> str:
    total = _sum("rate", f"{names.STREAM_SHADOW_ABS_DIFF}_sum" + _consumers(ctx), ctx)
    count = _sum("rate", f"{names.STREAM_SHADOW_ABS_DIFF}_count" + _consumers(ctx), ctx)
    return f"{total} / {count}"


def _no_online_lag(ctx: QueryContext) -> str:
    raise QueryTemplateError("lagGrowth measures stream consumers: a model served online has no lag")


_STREAM_BUILTINS: dict[Builtin, Callable[[QueryContext], str]] = {
    "latencyP95": _stream_latency(0.95),
    "latencyP99": _stream_latency(0.99),
    "errorRate": _stream_error_rate,
    "requestRate": _stream_record_rate,
    "lagGrowth": _lag_growth,
    "shadowAgreement": _stream_shadow_agreement,
    "shadowMeanAbsDiff": _stream_shadow_mean_abs_diff,
}

_BUILTINS: dict[Builtin, Callable[[QueryContext], str]] = {
    "latencyP95": _latency(0.95),
    "latencyP99": _latency(0.99),
    "errorRate": _error_rate,
    "requestRate": _request_rate,
    "shadowAgreement": _shadow_agreement,
    "shadowMeanAbsDiff": _shadow_mean_abs_diff,
    "lagGrowth": _no_online_lag,
}


def builtin_query(builtin: Builtin, ctx: QueryContext) -> str:
    if ctx.mode == "stream":
        return _STREAM_BUILTINS[builtin](ctx)
    return _BUILTINS[builtin](ctx)


def samples_query(builtin: Builtin | None, ctx: QueryContext) -> str:
    """How many observations back a metric in the window: shadow comparisons for the shadow builtins, the
    revision's requests for everything else (custom queries included)."""
    if ctx.mode == "stream" and builtin in SHADOW_BUILTINS:
        return _sum("increase", names.STREAM_SHADOW_COMPARISONS + _consumers(ctx), ctx)
    if ctx.mode == "stream":
        return _sum("increase", names.STREAM_RECORDS + _consumers(ctx, _HANDLED), ctx)
    if builtin in SHADOW_BUILTINS:
        return _sum("increase", names.SHADOW_COMPARISONS + _route(ctx), ctx)
    return _sum("increase", names.REQUESTS + _server(ctx), ctx)


# The model server's request-duration histogram buckets: an SLO for counting slow requests must be one of these
# edges, or the count would be a guess.
LATENCY_BUCKET_EDGES = names.LATENCY_BUCKETS
LATENCY_BUILTINS: frozenset[Builtin] = frozenset({"latencyP95", "latencyP99"})


@dataclass(frozen=True, slots=True)
class CountQueries:
    """Cumulative counts of one revision: bad events and all requests, summed over its series. Differences of
    two runs' answers are the window's increases (a drop means a counter reset: the new value is the increase)."""

    bad: str
    total: str
    what: str  # the bad event, in words


def _le(edge: float) -> str:
    # Clients write 1 as "1" or "1.0" (and Prometheus 3 normalises to one of them): match either spelling.
    text = repr(float(edge))
    whole = text.removesuffix(".0")
    return f'le=~"{whole}|{text}"' if whole != text else f'le="{text}"'


def _stream_counts(builtin: Builtin | None, summed: Callable[[str], str], ctx: QueryContext) -> CountQueries | str:
    if builtin != "errorRate":
        return f"the sequential judge counts a stream's failed records (errorRate), not {builtin}"
    records = names.STREAM_RECORDS
    failed = f',result=~"{names.DEAD_LETTERED}|{names.DROPPED}"'
    return CountQueries(
        bad=f"{summed(records + _consumers(ctx, failed))} or vector(0)",
        total=summed(records + _consumers(ctx, _HANDLED)),
        what="records dead-lettered or dropped",
    )


def count_queries(
    builtin: Builtin | None, slo_seconds: float | None, ctx: QueryContext, *, window: bool = False
) -> CountQueries | str:
    """What the sequential judge counts for a metric, or why it cannot: errors for errorRate (non-2xx answers),
    requests slower than `slo_seconds` (the metric's max, a bucket edge) for the latency builtins. `window`: the
    increases over the context's window instead of the cumulative sums (the test's first run counts the window
    before it, instead of only noting where the counters stand)."""

    def summed(series: str) -> str:
        return f"sum(increase({series}{ctx.range}))" if window else f"sum({series})"

    if ctx.mode == "stream":
        return _stream_counts(builtin, summed, ctx)
    if builtin == "errorRate":
        requests = names.REQUESTS
        return CountQueries(
            bad=f"{summed(requests + _server(ctx, ',code!~' + _quoted('2..')))} or vector(0)",
            total=summed(requests + _server(ctx)),
            what="non-2xx answers",
        )
    if builtin in LATENCY_BUILTINS:
        if slo_seconds is None:
            return f"the sequential judge counts requests slower than max: set max on {builtin} to a bucket edge"
        if not any(math.isclose(slo_seconds, edge) for edge in LATENCY_BUCKET_EDGES):
            edges = ", ".join(f"{e:g}" for e in LATENCY_BUCKET_EDGES)
            return f"max {slo_seconds:g}s is not a bucket edge of the model server's latency histogram ({edges})"
        edge = min(LATENCY_BUCKET_EDGES, key=lambda e: abs(e - slo_seconds))
        histogram = names.REQUEST_DURATION
        total = summed(f"{histogram}_count{_server(ctx)}")
        fast = summed(f"{histogram}_bucket{_server(ctx, ',' + _le(edge))}")
        return CountQueries(bad=f"{total} - {fast}", total=total, what=f"requests slower than {edge:g}s")
    return f"the sequential judge counts errors (errorRate) and slow requests (latency builtins), not {builtin}"


def custom_query(template: str, ctx: QueryContext) -> str:
    """Fill {{namespace}} {{name}} {{version}} {{revision}} {{interval}}; anything else is an error, because a
    placeholder left in the text would reach Prometheus as a syntax error far from its cause."""
    values = {
        "namespace": ctx.namespace,
        "name": ctx.name,
        "version": ctx.version,
        "revision": ctx.revision,
        "interval": ctx.interval,
    }

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            known = " ".join("{{" + p + "}}" for p in PLACEHOLDERS)
            raise QueryTemplateError(f"unknown placeholder {{{{{key}}}}} in the query; known: {known}")
        return values[key]

    return _PLACEHOLDER.sub(fill, template)
