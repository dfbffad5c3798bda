"""Removing what the operator added to objects it does not own, once their ModelDeployment is gone.

What needs it: only the user's routing objects that provider gatewayAPI and istio edit (HTTPRoute, VirtualService,
DestinationRule). Everything else the operator writes carries an ownerReference to the ModelDeployment
(Deployments, Services, the `<name>-router` ConfigMap, HPAs, PDBs, the router's and stream consumers'
ServiceAccount, Role and RoleBinding, stream's Deployments, share ConfigMap and ScaledObjects, batch CronJobs and
pre-flight Jobs) or to one of those (a batch run's Job is owned by its CronJob), so Kubernetes' garbage collector
deletes it; Events expire with the API server's event TTL.

No finalizer: one would hang the deletion of a ModelDeployment, and of its namespace, whenever the operator is
down. Instead the routers mark what they change (traffic.marks) and two entry points give it back
(traffic.release decides what, this module reads and writes):

- `forget(kube, body)`: on a ModelDeployment's DELETED event, at once;
- `sweep(kube, namespaces)`: whatever marks ModelDeployments that no longer exist, for deletions the operator did
  not see (it was down, or its watch was reconnecting). Run at start-up and every `SWEEP_INTERVAL_S`.

Every write is a merge patch of our parts and marks, conditional on the resourceVersion read; the owner's absence
is checked after that read, so a ModelDeployment created again under the same name meanwhile, whose router then
writes the object, makes our write fail (409) and the next attempt sees it alive.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from modelrollout.api.resource import KIND
from modelrollout.kube.client import KubeClient
from modelrollout.logs import ref
from modelrollout.traffic.marks import marks
from modelrollout.traffic.patching import CONFLICT_RETRIES
from modelrollout.traffic.release import ROUTING_KINDS, RoutingKind, orphans, release_patch

logger = logging.getLogger(__name__)
# Start-up covers an operator that was down; the period covers a deletion missed while Kopf's watch reconnected
# (a re-list reports no DELETED). Each round lists every routing object watched, so not at every resync.
SWEEP_INTERVAL_S = 300.0

Object = dict[str, Any]


async def forget(kube: KubeClient, body: Object) -> None:
    """Remove what the deleted ModelDeployment `body` added to the routing objects of its namespace."""
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    for kind in ROUTING_KINDS:
        for obj in await _listed(kube, kind, [namespace]):
            if name in marks(obj):
                await _release(kube, kind, obj, candidates={name})


async def sweep(kube: KubeClient, namespaces: list[str]) -> int:
    """Remove the additions of ModelDeployments that no longer exist from the routing objects in `namespaces`
    (all when empty). Returns how many objects were written."""
    listed = {kind: await _listed(kube, kind, namespaces) for kind in ROUTING_KINDS}
    if not any(marks(obj) for found in listed.values() for obj in found):
        return 0
    # Listed after the routing objects: a ModelDeployment whose mark they hold existed before they were read, so
    # it is in this list unless it was deleted since. `_release` asks again before it writes.
    live = {
        (md["metadata"].get("namespace"), md["metadata"].get("name")) for md in await kube.list_in(KIND, namespaces)
    }
    written = 0
    for kind, found in listed.items():
        for obj in found:
            namespace = (obj.get("metadata") or {}).get("namespace")
            gone = orphans(obj, {owner for owner in marks(obj) if (namespace, owner) in live})
            if gone and await _release(kube, kind, obj, candidates=set(gone)):
                written += 1
    return written


async def sweep_forever(kube: KubeClient, namespaces: list[str], interval_s: float = SWEEP_INTERVAL_S) -> None:
    """`sweep` now and every `interval_s`; a failed round is logged and tried again at the next."""
    while True:
        try:
            written = await sweep(kube, namespaces)
            if written:
                logger.info("cleanup: gave %d routing object(s) back from deleted ModelDeployments", written)
        except Exception:
            logger.exception("cleanup: the sweep failed; trying again in %.0f s", interval_s)
        await asyncio.sleep(interval_s)


async def _listed(kube: KubeClient, kind: RoutingKind, namespaces: list[str]) -> list[Object]:
    try:
        return await kube.list_in(kind, namespaces)
    except ApiException as exc:
        if exc.status == 404:  # the CRD is not installed: nothing of that kind to give back
            return []
        raise


async def _release(kube: KubeClient, kind: RoutingKind, obj: Object, *, candidates: set[str]) -> bool:
    """Remove from `obj` the additions of those `candidates` that do not exist (asked after `obj` was read), by a
    merge patch conditional on its resourceVersion; on a conflict, read it again. True when written."""
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    for _ in range(CONFLICT_RETRIES):
        marked = marks(obj)
        gone = {owner for owner in candidates if owner in marked and await kube.get(KIND, namespace, owner) is None}
        patch = release_patch(kind, obj, set(marked) - gone)
        if patch is None:
            return False
        patch["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
        try:
            await kube.merge_patch(kind, namespace, name, patch)
        except ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status != 409:
                raise
        else:
            for owner in sorted(gone):
                logger.info(
                    "cleanup: removed what ModelDeployment %s/%s added to %s %s/%s",
                    namespace,
                    owner,
                    kind,
                    namespace,
                    name,
                    extra=ref(namespace, owner),
                )
            return True
        fresh = await kube.get(kind, namespace, name)
        if fresh is None:
            return False
        obj = fresh
    logger.warning("cleanup: %s %s/%s kept changing; left for the next sweep", kind, namespace, name)
    return False
