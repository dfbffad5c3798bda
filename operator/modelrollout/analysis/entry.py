"""The one way into analysis for the reconciler: the metric provider the spec names, built by one factory, then
whatever the engine asked for (an A/B evaluation or an analysis run). Nothing gets out as an exception: a provider
that cannot be built, like a query that fails, is an `Error` outcome the rollout decides on like any verdict.

A second metric provider is a module implementing `MetricProvider` and a branch of `provider_for`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx

from modelrollout.analysis import experiment
from modelrollout.analysis.evaluate import error_result
from modelrollout.analysis.prometheus import PrometheusProvider
from modelrollout.analysis.provider import MetricProvider
from modelrollout.analysis.queries import Mode
from modelrollout.analysis.request import AnalysisOutcome, AnalysisRequest
from modelrollout.analysis.run import run_analysis
from modelrollout.api.analysis import AnalysisSettings
from modelrollout.api.base import duration_seconds
from modelrollout.api.status import AnalysisRun

# A Secret's value by (name, key) in the ModelDeployment's namespace; None when there is none.
ReadSecret = Callable[[str, str], Awaitable[str | None]]
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Subject:
    """Whose metrics: the ModelDeployment's namespace and name, and its model's name (the `model` label)."""

    namespace: str
    name: str
    model: str
    mode: Mode = "online"  # whose series the builtins read: the model servers' or the stream consumers'


@dataclass(frozen=True, slots=True)
class Backend:
    """What the operator brings to every analysis: its default Prometheus, that Prometheus' scrape interval (rate
    windows are never shorter than four of them) and one connection pool for every query."""

    default_url: str | None
    scrape_interval_s: float
    client: httpx.AsyncClient


async def provider_for(
    settings: AnalysisSettings, backend: Backend, read_secret: ReadSecret, namespace: str
) -> MetricProvider | str:
    """The spec's metric provider (Prometheus, at its address or the operator's), or why it cannot be built."""
    configured = settings.prometheus
    address = configured.address if configured else backend.default_url
    if address is None:
        return (
            "no Prometheus to ask: set spec.rollout.analysis.prometheus.address, or MODELROLLOUT_PROMETHEUS_URL "
            "on the operator"
        )
    token = None
    if configured and configured.bearer_token_secret:
        ref = configured.bearer_token_secret
        token = await read_secret(ref.name, ref.key)
        if token is None:
            return f"bearerTokenSecret {ref.name}/{ref.key} does not exist in namespace {namespace}"
    return PrometheusProvider(
        address=address,
        timeout_seconds=duration_seconds(configured.timeout) if configured else DEFAULT_TIMEOUT_S,
        bearer_token=token,
        client=backend.client,
    )


async def analyse(
    request: AnalysisRequest,
    *,
    settings: AnalysisSettings,
    subject: Subject,
    backend: Backend,
    read_secret: ReadSecret,
    previous: Sequence[AnalysisRun],
    now: datetime,
) -> AnalysisOutcome:
    """Answer one RequestAnalysis. `previous`: status.analysis.runs of this rollout, where the sequential judge
    keeps its evidence."""
    provider = await provider_for(settings, backend, read_secret, subject.namespace)
    if isinstance(provider, str):
        return error_outcome(request, now, provider)
    where = {"namespace": subject.namespace, "name": subject.name, "model": subject.model}
    if request.kind == "Experiment":
        return await experiment.run_experiment(provider, request, now=now, **where)
    return await run_analysis(provider, request, scrape_interval_seconds=backend.scrape_interval_s, now=now,
                              previous=previous, mode=subject.mode, **where)  # fmt: skip


def error_outcome(request: AnalysisRequest, now: datetime, message: str) -> AnalysisOutcome:
    """An outcome that says why nothing could be measured: an A/B evaluation's own Error, or every metric's."""
    if request.kind == "Experiment":
        return experiment.error_outcome(request, now, message)
    metrics = [error_result(metric, message) for metric in request.metrics]
    run = AnalysisRun(at=now, verdict="Error", kind=request.kind, step=request.step, metrics=metrics)
    return AnalysisOutcome(request=request, run=run)
