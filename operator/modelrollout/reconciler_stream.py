"""The I/O of a stream pass: the consumer Deployments and their pods, the ScaledObjects (when KEDA's CRDs are
installed), and what the consumers report through Prometheus (per revision the lowest epoch their committed
offsets reached and over how many partitions, their lag; the topic's partition count). Never a Kafka call: the
operator learns of offsets and cutovers only from the consumers' own metrics."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from kubernetes_asyncio.client.exceptions import ApiException

from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import RevisionProgress
from modelrollout.kube.children import ChildSource
from modelrollout.modes.stream.plan import StreamObserved
from modelrollout.planning.names import LABEL_MODE, LABEL_REVISION, selector
from modelrollout.planning.observe import RevisionHealth, revision_health
from modelrollout_contract import metrics as names

logger = logging.getLogger(__name__)
HTTP_NOT_FOUND = 404
QUERY_TIMEOUT_S = 5.0


async def _health(
    children: ChildSource, md: ModelDeployment, revision: str, deployment: dict[str, Any]
) -> RevisionHealth:
    health = revision_health(revision, deployment, [])
    if not health.available:  # only then do the pods' states matter
        pods = await children.pods(md.metadata.namespace or "", selector(md.metadata.name or "", "stream", revision))
        health = revision_health(revision, deployment, pods)
    return health


async def scaled_objects(children: ChildSource, md: ModelDeployment) -> list[dict[str, Any]]:
    """Our ScaledObjects; none when KEDA's CRDs are not installed (nothing of ours can exist then)."""
    try:
        return await children.owned("ScaledObject", md.metadata.namespace or "", md.metadata.name or "",
                                    md.metadata.uid)  # fmt: skip
    except ApiException as exc:
        if exc.status == HTTP_NOT_FOUND:
            return []
        raise


async def _query(http: httpx.AsyncClient, url: str, promql: str) -> list[dict[str, Any]] | None:
    try:
        answer = await http.get(f"{url.rstrip('/')}/api/v1/query", params={"query": promql}, timeout=QUERY_TIMEOUT_S)
        answer.raise_for_status()
        body = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        logger.warning("cannot read the stream consumers' metrics from %s: %s", url, exc)
        return None
    result = body.get("data", {}).get("result", [])
    return result if isinstance(result, list) else None


def _by_revision(result: list[dict[str, Any]] | None) -> dict[str, float]:
    found: dict[str, float] = {}
    for sample in result or ():
        revision = sample.get("metric", {}).get("revision")
        try:
            found[revision] = float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    return found


async def consumer_progress(
    http: httpx.AsyncClient, url: str | None, md: ModelDeployment
) -> tuple[dict[str, RevisionProgress], int | None]:
    """Per revision: the lowest epoch over the partitions it reports, how many it reports, its summed lag; and the
    topic's partitions. Empty while Prometheus cannot be asked (a hand-over then waits)."""
    if url is None:
        return {}, None
    where = f'namespace="{md.metadata.namespace}",model="{md.spec.model.name}"'
    epochs = f"{names.STREAM_CUTOVER_EPOCH}{{{where}}}"
    lowest = _by_revision(await _query(http, url, f"min by (revision) ({epochs})"))
    counted = _by_revision(await _query(http, url, f"count by (revision) ({epochs})"))
    lags = _by_revision(await _query(http, url, f"sum by (revision) ({names.STREAM_CONSUMER_LAG}{{{where}}})"))
    partitions_answer = await _query(http, url, f"max({names.STREAM_PARTITIONS}{{{where}}})")
    partitions = None
    if partitions_answer:
        try:
            partitions = int(float(partitions_answer[0]["value"][1]))
        except (KeyError, IndexError, TypeError, ValueError):
            partitions = None
    progress = {
        revision: RevisionProgress(
            revision=revision,
            epoch=int(lowest[revision]) if revision in lowest else None,
            partitions=int(counted.get(revision, 0)),
            lag=int(lags[revision]) if revision in lags else None,
        )
        for revision in sorted({*lowest, *lags})
        if revision
    }
    return progress, partitions


async def observe_stream(
    children: ChildSource,
    http: httpx.AsyncClient,
    prometheus_url: str | None,
    md: ModelDeployment,
    owned: dict[str, list[dict[str, Any]]],
) -> StreamObserved:
    """`owned`: every object of the ModelDeployment by kind (already read by the pass)."""
    deployments = {
        o["metadata"]["labels"][LABEL_REVISION]: o
        for o in owned.get("Deployment", [])
        if o["metadata"].get("labels", {}).get(LABEL_MODE) == "stream" and LABEL_REVISION in o["metadata"]["labels"]
    }
    health = {revision: await _health(children, md, revision, d) for revision, d in deployments.items()}
    existing = {(kind, o["metadata"]["name"]) for kind, objs in owned.items() for o in objs}
    existing |= {("ScaledObject", o["metadata"]["name"]) for o in await scaled_objects(children, md)}
    progress, partitions = await consumer_progress(http, prometheus_url, md)
    return StreamObserved(existing=frozenset(existing), deployments=deployments, health=health, progress=progress,
                          partitions=partitions)  # fmt: skip
