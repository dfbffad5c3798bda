"""Observe -> plan -> execute for one ModelDeployment. The decisions are in `planning`; this is only the I/O."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from modelrollout.api.errors import describe_validation_error
from modelrollout.api.resource import ModelDeployment
from modelrollout.kube.client import KubeClient
from modelrollout.planning.names import LABEL_MODE, LABEL_NAME, LABEL_REVISION, selector
from modelrollout.planning.observe import RevisionHealth, revision_health
from modelrollout.planning.reconcile import Event, Observed, Plan, PlanSettings, plan_online
from modelrollout.settings import OperatorSettings

logger = logging.getLogger(__name__)
OWNED_KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget")


class Reconciler:
    """Runs reconcile passes; passes for the same ModelDeployment never overlap (a per-object lock)."""

    def __init__(
        self, kube: KubeClient, settings: OperatorSettings, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._kube = kube
        self._plan_settings = PlanSettings(
            default_image=settings.default_image,
            progress_deadline_s=settings.progress_deadline_s,
            history_limit=settings.history_limit,
        )
        self._clock = clock or (lambda: datetime.now(UTC))
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def reconcile(self, body: Mapping[str, Any]) -> None:
        raw = dict(body)
        meta = raw["metadata"]
        key = (meta["namespace"], meta["name"])
        async with self._locks.setdefault(key, asyncio.Lock()):
            # Re-read under the lock: a pass that waited must act on the latest spec and status, not a stale one.
            fresh = await self._kube.get("ModelDeployment", *key)
            if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                return
            await self._reconcile(fresh)

    async def reconcile_owner_of(self, child: Mapping[str, Any]) -> None:
        """A child changed (deleted, edited): reconcile the ModelDeployment that owns it, now."""
        meta = child.get("metadata", {})
        owner = meta.get("labels", {}).get(LABEL_NAME)
        if owner:
            await self.reconcile({"metadata": {"namespace": meta["namespace"], "name": owner}})

    async def _reconcile(self, raw: dict[str, Any]) -> None:
        try:
            md = ModelDeployment.model_validate(raw)
        except ValidationError as exc:
            await self._report_invalid(raw, describe_validation_error(exc))
            return
        if md.spec.online is None:
            await self._report_unsupported(raw, md)
            return
        observed, seen = await self._observe(md)
        plan = plan_online(md, observed=observed, settings=self._plan_settings, now=self._clock())
        spec_unchanged = (md.status is not None) and md.status.observed_generation == md.metadata.generation
        await self._execute(raw, plan, seen, spec_unchanged=spec_unchanged)

    async def _observe(self, md: ModelDeployment) -> tuple[Observed, dict[tuple[str, str], _Seen]]:
        """What exists now, plus uid and generation of every owned object: what our apply then returns tells
        exactly whether it re-created or reverted something (a race-free drift report)."""
        name, namespace, uid = md.metadata.name or "", md.metadata.namespace or "", md.metadata.uid
        owned: dict[str, list[dict[str, Any]]] = {}
        for kind in OWNED_KINDS:
            found = await self._kube.list_labelled(kind, namespace, labels={LABEL_NAME: name})
            owned[kind] = [obj for obj in found if _owned_by(obj, uid)]
        seen = {(kind, obj["metadata"]["name"]): _Seen.of(obj) for kind, objs in owned.items() for obj in objs}
        revisions: dict[str, RevisionHealth] = {}
        for deployment in owned["Deployment"]:
            labels = deployment["metadata"]["labels"]
            if labels.get(LABEL_MODE) != "online":
                continue
            revision = labels[LABEL_REVISION]
            health = revision_health(revision, deployment, [])
            if not health.available:  # only then do the pods' states matter
                pods = await self._kube.list_labelled("Pod", namespace, labels=selector(name, "online", revision))
                health = revision_health(revision, deployment, pods)
            revisions[revision] = health
        return Observed(revisions=revisions, existing=frozenset(seen)), seen

    async def _execute(
        self, raw: dict[str, Any], plan: Plan, seen: dict[tuple[str, str], _Seen], *, spec_unchanged: bool
    ) -> None:
        meta = raw["metadata"]
        events = list(plan.events)
        for obj in plan.apply:
            key = (obj["kind"], obj["metadata"]["name"])
            after = _Seen.of(await self._kube.apply(obj))
            before = seen.get(key)
            if before is None:
                continue  # created: the plan already said whether that was a restoration
            if after.uid != before.uid:
                # Deleted between our observation and this apply: restored all the same, and said so.
                events.append(Event("Warning", "ChildRestored", f"{key[0]} {key[1]} was missing; recreated"))
            elif spec_unchanged and None not in (before.generation, after.generation) and after != before:
                # Our apply changed the object's spec although our spec did not change: someone had edited it.
                message = f"{key[0]} {key[1]} had been changed by hand; restored to what the spec says"
                events.append(Event("Warning", "DriftCorrected", message))
        for kind, name in plan.delete:
            await self._kube.delete(kind, meta["namespace"], name)
        await self._kube.apply_status(meta["namespace"], meta["name"], plan.status.to_wire())
        for event in events:
            logger.info("%s/%s %s: %s", meta["namespace"], meta["name"], event.reason, event.message)
            await self._kube.emit_event(raw, type_=event.type, reason=event.reason, message=event.message)

    async def _report_invalid(self, raw: dict[str, Any], problem: str) -> None:
        meta = raw["metadata"]
        if (raw.get("status") or {}).get("message") == problem:
            return  # already said; the resync loop must not repeat it every interval
        now = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {"type": "Degraded", "status": "True", "reason": "InvalidSpec", "message": problem}
        status = {"phase": "Failed", "message": problem, "conditions": [{**condition, "lastTransitionTime": now}]}
        await self._kube.apply_status(meta["namespace"], meta["name"], status)
        await self._kube.emit_event(raw, type_="Warning", reason="InvalidSpec", message=problem)

    async def _report_unsupported(self, raw: dict[str, Any], md: ModelDeployment) -> None:
        meta = raw["metadata"]
        message = f"modes {','.join(md.spec.modes)} are not reconciled by this operator version (online only)"
        status = {"phase": "Pending", "modes": ",".join(md.spec.modes), "message": message}
        await self._kube.apply_status(meta["namespace"], meta["name"], status)


@dataclass(frozen=True)
class _Seen:
    uid: str
    generation: int | None  # None for kinds without one (Service)

    @classmethod
    def of(cls, obj: dict[str, Any]) -> _Seen:
        return cls(uid=obj["metadata"]["uid"], generation=obj["metadata"].get("generation"))


def _owned_by(obj: dict[str, Any], uid: str | None) -> bool:
    return any(ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences") or [])
