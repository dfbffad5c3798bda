"""The serving graph's part of a pass (online.graph.abn): the A/B/n test's successes and trials of each variant,
read from the metric provider when an evaluation is due; what they mean is planning.graph's (pure)."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime

from modelrollout.analysis.entry import Backend, ReadSecret, provider_for
from modelrollout.analysis.experiment import count
from modelrollout.analysis.provider import ask
from modelrollout.analysis.queries import QueryContext, QueryTemplateError, custom_query
from modelrollout.api.analysis import AnalysisSettings
from modelrollout.api.graph import GraphAbn
from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import ModelDeploymentStatus
from modelrollout.logs import ref
from modelrollout.planning.graph import AbnRound, abn_evaluated, abn_round
from modelrollout.planning.reconcile import Event

logger = logging.getLogger(__name__)


async def abn_pass(
    md: ModelDeployment, status: ModelDeploymentStatus, *, backend: Backend, read_secret: ReadSecret, now: datetime
) -> tuple[ModelDeploymentStatus, list[Event], datetime | None]:
    """`status` with the A/B/n test where this pass leaves it, the events it decided, and when it is due next
    (None: no test, or a variant without a stable revision yet, whose status change brings the next pass)."""
    graph = md.spec.online.graph if md.spec.online else None
    if graph is None or graph.abn is None or status.graph is None:
        return status, [], None
    before = md.status.graph.abn if md.status is not None and md.status.graph is not None else None
    round_ = abn_round(graph.abn, status.graph, before, now)
    if round_ is None:
        return status, [], None
    test, events = round_.status, []
    if round_.due:
        counts = await _counts(md, graph.abn, round_, backend=backend, read_secret=read_secret, now=now)
        if isinstance(counts, str):
            namespace, name = md.metadata.namespace or "", md.metadata.name or ""
            logger.warning("%s/%s A/B/n test: %s", namespace, name, counts, extra=ref(namespace, name))
            test = test.model_copy(update={"evaluated_at": now, "message": f"not evaluated: {counts}"[:4096]})
        else:
            test = abn_evaluated(graph.abn, round_, counts, now)
            if test.winner is not None and (before is None or before.winner != test.winner):
                events.append(Event("Normal", "AbnDecided", f"A/B/n test: {test.message}", frozenset({"abDecided"})))
    return status.model_copy(update={"graph": status.graph.model_copy(update={"abn": test})}), events, round_.next_at


async def _counts(
    md: ModelDeployment, abn: GraphAbn, round_: AbnRound, *, backend: Backend, read_secret: ReadSecret, now: datetime
) -> dict[str, tuple[int, int]] | str:
    """Successes and trials per variant since the test started, or why they cannot be had."""
    namespace = md.metadata.namespace or ""
    provider = await provider_for(md.spec.rollout.analysis or AnalysisSettings(), backend, read_secret, namespace)
    if isinstance(provider, str):
        return provider
    window = max(1, math.ceil((now - round_.status.started_at).total_seconds()))
    metric = abn.success_metric
    try:
        queries = {
            (variant.name, what): custom_query(
                template,
                QueryContext(
                    namespace=namespace,
                    name=md.metadata.name or "",
                    model=md.spec.model.name,
                    version=round_.revisions[variant.name].version,
                    revision=round_.revisions[variant.name].revision,
                    window_seconds=window,
                ),
            )
            for variant in abn.variants
            for what, template in (("successes", metric.successes), ("trials", metric.trials))
        }
    except QueryTemplateError as exc:
        return f"abn.successMetric: {exc}"
    answers = await asyncio.gather(*(ask(provider, query) for query in queries.values()))
    found = {key: count(answer, f"{key[0]} {key[1]}") for key, answer in zip(queries, answers, strict=True)}
    problems = [value for value in found.values() if isinstance(value, str)]
    if problems:
        return "; ".join(problems)
    return {v.name: (int(found[(v.name, "successes")]), int(found[(v.name, "trials")])) for v in abn.variants}
