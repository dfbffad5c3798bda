"""Metric analysis: PromQL for builtin and custom metrics, the threshold judge (pure), and providers.

The operator's flow: a tick emits `RequestAnalysis(request)`; the handler calls
`await run_analysis(provider, request, namespace=..., name=..., model=..., scrape_interval_seconds=..., now=...)`
and passes the returned `AnalysisOutcome` to the next tick.
"""

from modelrollout.analysis.evaluate import evaluate_metric, run_verdict
from modelrollout.analysis.prometheus import PrometheusProvider
from modelrollout.analysis.provider import MetricProvider, QueryResult
from modelrollout.analysis.queries import QueryContext, builtin_query, custom_query, rate_window, samples_query
from modelrollout.analysis.request import AnalysisOutcome, AnalysisRequest
from modelrollout.analysis.run import run_analysis

__all__ = [
    "AnalysisOutcome",
    "AnalysisRequest",
    "MetricProvider",
    "PrometheusProvider",
    "QueryContext",
    "QueryResult",
    "builtin_query",
    "custom_query",
    "evaluate_metric",
    "rate_window",
    "run_analysis",
    "run_verdict",
    "samples_query",
]
