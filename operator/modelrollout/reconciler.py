"""Observe -> decide -> execute for one ModelDeployment. Decisions are pure (`rollout.tick` decides the rollout,
`planning` turns it into objects); this module is only the I/O around them: reading the cluster, asking
Prometheus when the engine requests an analysis, writing objects, routing, status and events, and waking up
when the engine says time alone will change something."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from modelrollout.analysis.entry import Backend, Subject, analyse
from modelrollout.analysis.request import AnalysisOutcome, AnalysisRequest
from modelrollout.api.analysis import AnalysisSettings
from modelrollout.api.errors import describe_validation_error
from modelrollout.api.notifications import NotificationsSpec
from modelrollout.api.resource import KIND, ModelDeployment
from modelrollout.api.status import ModelDeploymentStatus, ReplicaCounts
from modelrollout.backoff import Backoff
from modelrollout.keyed_locks import KeyedLocks
from modelrollout.kube.children import ClusterView, ListedChildren
from modelrollout.kube.client import KubeClient
from modelrollout.kube.routers import RouterContext, router_for
from modelrollout.logs import about, ref, tell
from modelrollout.modes import owned_kinds
from modelrollout.modes.base import ModeName
from modelrollout.modes.batch.machine import decide_batch, follow_batch
from modelrollout.modes.batch.plan import BatchPlan, pass_status
from modelrollout.modes.report import Readiness, mode_conditions, readiness_types, unserved_message
from modelrollout.modes.stream.plan import StreamPlan, plan_stream
from modelrollout.notify.bodies import ModelDeploymentRef, Notification
from modelrollout.notify.kinds import ordered
from modelrollout.notify.sender import Notifier
from modelrollout.planning.applied import digest, stamped, unchanged
from modelrollout.planning.decide import decide_pass
from modelrollout.planning.names import (
    ANNOTATION_REPLICAS,
    LABEL_MODE,
    LABEL_REVISION,
    selector,
)
from modelrollout.planning.observe import revision_health
from modelrollout.planning.reconcile import (
    Beside,
    Event,
    Observed,
    Plan,
    PlanSettings,
    RevisionState,
    engine_input,
    plan_objects,
    starting_status,
    target_of,
)
from modelrollout.reconciler_batch import batch_inputs, observe_batch, plan_of, start_jobs
from modelrollout.reconciler_gates import confirm as confirm_gate
from modelrollout.reconciler_gates import observe_hooks
from modelrollout.reconciler_graph import abn_pass
from modelrollout.reconciler_stream import observe_stream
from modelrollout.rollout import Action, Decision, SetMirror, SetSticky, SetWeights
from modelrollout.rollout.ab_test import sticky_for
from modelrollout.rollout.actions import GateAnswer, RecordEvent, RequestConfirmation
from modelrollout.rollout.conditions import mark_apply_failed
from modelrollout.rollout.verbs import VERB_ANNOTATION, InvalidVerbAnnotation, Verb, parse_verb_annotation
from modelrollout.settings import OperatorSettings
from modelrollout.telemetry import (
    ANALYSIS_RUNS,
    DEPLOYMENTS,
    PASS_DURATION,
    PASS_TRIGGERS,
    PASSES,
    PHASES,
    SKIPPED_APPLIES,
    STEP_DURATION,
)
from modelrollout.traffic.patching import RoutingTargetError
from modelrollout.webhook import ReadSecret

logger = logging.getLogger(__name__)
# What a pass observes and may prune: every kind a mode owns (modelrollout.modes).
OWNED_KINDS = tuple(owned.kind.name for owned in owned_kinds())
# How often a pass looks at the consumers' metrics while a stream hand-over waits for their epochs.
HANDOVER_POLL_S = 2.0
# A wake-up "now" still waits this long, so a decision that keeps asking to run again cannot spin.
MIN_WAKE_S = 0.2
# Of the API server's answer, what fits in status.message and an event (a quantity's refusal quotes a long regex).
MAX_REASON = 1000
Key = tuple[str, str]


class Reconciler:
    """Runs reconcile passes; passes for the same ModelDeployment never overlap (a per-object lock)."""

    def __init__(
        self,
        kube: KubeClient,
        settings: OperatorSettings,
        *,
        clock: Callable[[], datetime] | None = None,
        children: ClusterView | None = None,
        notifier: Notifier | None = None,
        status_changed: Callable[[str, str], None] | None = None,
    ) -> None:
        """`notifier`: where decided events that are notifications go (none: webhooks are not called).
        `status_changed(namespace, name)`: told after a pass changed a ModelDeployment's status (the watch drops
        the echo of our own writes, so whoever reads another's status, a serving graph, hears it here)."""
        self._kube = kube
        self._notifier = notifier
        self._status_changed = status_changed
        self._children = children or ListedChildren(kube)
        self._settings = settings
        planning = settings.planning
        self._plan_settings = PlanSettings(
            default_image=planning.default_image,
            progress_deadline_s=planning.progress_deadline_s,
            history_limit=planning.history_limit,
        )
        self._clock = clock or (lambda: datetime.now(UTC))
        self._locks = KeyedLocks()
        self._slots = asyncio.Semaphore(settings.applying.max_concurrent_passes)
        self._scheduled: set[Key] = set()  # keys whose waiting pass must run as our own wake-up
        self._failures: dict[Key, int] = {}  # passes failed in a row, by key (cleared by a pass that ends)
        self._retry = Backoff(settings.applying.apply_retry_initial_s, settings.applying.apply_retry_max_s)
        self._wakeups: dict[Key, asyncio.Task[None]] = {}
        self._http = httpx.AsyncClient()  # one connection pool to Prometheus for every analysis
        self._analysis_backend = Backend(
            default_url=settings.analysis.prometheus_url,
            scrape_interval_s=settings.analysis.prometheus_scrape_interval_s,
            client=self._http,
        )
        self._backoff = Backoff(settings.applying.apply_retry_initial_s, settings.applying.apply_retry_max_s)

    async def close(self) -> None:
        for task in self._wakeups.values():
            task.cancel()
        for task in list(self._wakeups.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._http.aclose()

    async def reconcile(self, body: Mapping[str, Any], *, scheduled: bool = False) -> None:
        """One pass, unless an earlier pass of this generation was refused by the API server and its retry is
        not due yet: events and the resync then wait for that retry (a `scheduled` pass: our own wake-up).

        Passes of one ModelDeployment run one at a time, in order; a pass asked for while another already waits
        for that object is not queued again (the waiting one reads the object when its turn comes, so it sees
        whatever the second request was about). At most `max_concurrent_passes` run at once across objects. A
        pass that fails (the API server unreachable, an answer it did not expect) is retried after a growing
        delay rather than at the next resync."""
        meta = dict(body)["metadata"]
        key = (meta["namespace"], meta["name"])
        if scheduled:
            self._scheduled.add(key)
        if self._locks.waiting(key):
            return  # the pass that already waits will do this one's work
        async with self._locks.hold(key), self._slots:
            scheduled = key in self._scheduled
            self._scheduled.discard(key)
            # Read under the lock: a pass that waited must act on the latest spec and status, not a stale one.
            fresh = await self._children.model_deployment(*key)
            if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                self.forget(key)
                return
            if not scheduled and self._backoff.waiting(key, fresh["metadata"].get("generation"), self._clock()):
                return
            started, result = time.perf_counter(), "error"
            with about(*key, **_position(fresh.get("status"))):
                try:
                    result = await self._reconcile(fresh)
                    self._failures.pop(key, None)
                except Exception:
                    failures = self._failures[key] = self._failures.get(key, 0) + 1
                    delay = self._retry.delay_s(failures)
                    logger.exception("pass of %s/%s failed (%d in a row); retrying in %gs", *key, failures, delay,
                                     extra=ref(*key))  # fmt: skip
                    self._wake(key, self._clock() + timedelta(seconds=delay), self._clock())
                finally:
                    PASSES.labels(result).inc()
                    PASS_DURATION.observe(time.perf_counter() - started)

    async def settle(self, key: Key) -> None:
        """Returns once no pass of `key` runs or waits (those that did have finished)."""
        async with self._locks.hold(key):
            pass

    def forget(self, key: Key) -> None:
        """The ModelDeployment is gone: nothing of it is kept (no wake-up, retry or phase)."""
        self._backoff.clear(key)
        self._failures.pop(key, None)
        self._scheduled.discard(key)
        self._wake(key, None, self._clock())
        PHASES.forget(key)
        DEPLOYMENTS.forget(key)

    # --- one pass -------------------------------------------------------------------------------------------

    async def _reconcile(self, raw: dict[str, Any]) -> str:
        """One pass; how it ended: ok, refused, invalid or unserved (telemetry's result label)."""
        try:
            md = ModelDeployment.model_validate(raw)
        except ValidationError as exc:
            await self._report_invalid(raw, describe_validation_error(exc))
            return "invalid"
        if md.spec.batch_leads:
            return await self._reconcile_batch(raw, md)
        if md.spec.stream_leads:
            return await self._reconcile_stream(raw, md)
        if md.spec.online is None:
            await self._report_unsupported(raw, md)
            return "unserved"
        observed, seen, owned = await self._observe(md)
        now = self._clock()
        raw_verb = (raw["metadata"].get("annotations") or {}).get(VERB_ANNOTATION)
        verb, verb_problem = _verb_of(raw["metadata"].get("annotations"))
        batch_verb = verb if verb is not None and verb.name == "run" and md.spec.batch is not None else None
        decision, actions = await self._decide(md, observed, None if batch_verb else verb, now)
        tell(**_decided_position(decision.status))
        decided, beside, batch_plan = decision.status, None, None
        if md.spec.batch is not None:
            decided, beside, batch_plan = await self._batch_beside(md, decided, batch_verb, now)
        if md.spec.stream is not None:
            decided, beside = await self._stream_beside(md, decided, beside, owned)
        plan = plan_objects(md, decided=decided, actions=actions, observed=observed, settings=self._plan_settings,
                            now=now, beside=beside)  # fmt: skip
        if batch_plan is not None:
            plan.events.extend(Event.of(event) for event in batch_plan.events)
        tested, abn_events, abn_next = await abn_pass(
            md, plan.status, backend=self._analysis_backend, read_secret=self._secret_reader(md), now=now
        )
        plan = dataclasses.replace(plan, status=tested)
        plan.events.extend(abn_events)
        if verb_problem:
            plan.events.append(Event("Warning", "InvalidVerb", verb_problem))
        spec_unchanged = md.status is not None and md.status.observed_generation == md.metadata.generation
        key = (md.metadata.namespace or "", md.metadata.name or "")
        refused = await self._execute(raw, md, plan, actions, seen, spec_unchanged=spec_unchanged, now=now)
        if refused is None and batch_plan is not None:
            await start_jobs(self._kube, batch_plan, key[0])
        if refused is None:
            self._backoff.clear(key)
        elif not refused.status_written:
            # Nothing of this pass took effect: the verb waits in its annotation for the retry.
            self._wake(key, refused.retry_at, now)
            return "refused"
        _observe_step(md, plan.status, now)
        if raw_verb is not None:
            # Applied (its id is in status now) or refused with an event: either way it is consumed.
            await self._kube.remove_annotation(
                KIND, md.metadata.namespace or "", md.metadata.name or "", VERB_ANNOTATION, if_value=raw_verb
            )
        self._wake(key, refused.retry_at if refused else _earliest(decision.wake_at, abn_next), now)
        return "ok" if refused is None else "refused"

    async def _batch_beside(
        self, md: ModelDeployment, decided: ModelDeploymentStatus, verb: Verb | None, now: datetime
    ) -> tuple[ModelDeploymentStatus, Beside, BatchPlan]:
        """Batch following the online rollout: its CronJob at the revision online has promoted, its runs in
        status, and `run`."""
        observed = await observe_batch(self._children, md)
        inputs = batch_inputs(md, observed, target=target_of(md.spec, self._plan_settings),
                              default_image=self._plan_settings.default_image, verb=verb, now=now,
                              history_limit=self._plan_settings.history_limit)  # fmt: skip
        decision = follow_batch(decided, inputs)
        plan = plan_of(md, decision, observed)
        ready: dict[ModeName, Readiness] = {"batch": plan.readiness} if plan.readiness else {}
        return decision.status, Beside(objects=plan.cronjobs, ready=ready), plan

    async def _stream_plan(
        self, md: ModelDeployment, decided: ModelDeploymentStatus, owned: dict[str, list[dict[str, Any]]], *,
        follow: bool,
    ) -> StreamPlan:  # fmt: skip
        """`follow`: stream follows the revision online serves (hybrid): hand-overs only, no share of its own."""
        target = target_of(md.spec, self._plan_settings)
        # The consumers' metrics come from the Prometheus the rollout's analysis reads, else the operator's.
        analysis = md.spec.rollout.analysis
        url = (
            analysis.prometheus.address if analysis and analysis.prometheus else self._settings.analysis.prometheus_url
        )
        observed = await observe_stream(self._children, self._http, url, md, owned)
        stable = decided.stable or decided.canary or target
        candidate = None if follow or decided.stable is None else decided.canary
        # A shadowing candidate holds no share: it scores beside the leader into its own topic until promoted.
        shadow = candidate if md.spec.rollout.strategy == "shadow" else None
        canary = None if shadow is not None else candidate
        return plan_stream(md, stable=stable, canary=canary, percent=decided.weights.canary if canary else 0,
                           target=target, observed=observed, shadow=shadow,
                           image=md.spec.model.image or self._plan_settings.default_image)  # fmt: skip

    async def _stream_beside(
        self,
        md: ModelDeployment,
        decided: ModelDeploymentStatus,
        beside: Beside | None,
        owned: dict[str, list[dict[str, Any]]],
    ) -> tuple[ModelDeploymentStatus, Beside]:
        """Stream following the online rollout: consumers of the revision online serves, handed over exactly.
        `owned`: what the online pass observed (every owned kind, read once per pass)."""
        plan = await self._stream_plan(md, decided, owned, follow=True)
        beside = beside or Beside()
        # Online's prune lists its own kinds and says what it deletes; the stream plan adds what only it lists
        # (ScaledObjects) and its hand-over events.
        listed = set(OWNED_KINDS)
        merged = Beside(
            objects=[*beside.objects, *plan.objects],
            ready={**beside.ready, "stream": plan.readiness},
            delete=[*beside.delete, *(d for d in plan.delete if d[0] not in listed)],
            events=[*beside.events, *(Event(*e) for e in plan.events if e[1] != "ObjectRemoved")],
        )
        return decided.model_copy(update={"stream": plan.status}), merged

    async def _reconcile_stream(self, raw: dict[str, Any], md: ModelDeployment) -> str:
        """A pass of a ModelDeployment whose rollout stream leads: the engine decides roles and the candidate's
        share from the consumers' health and metrics; modes.stream turns that into the share document, with
        exact hand-overs, and the consumers' objects (this is the I/O around it)."""
        now = self._clock()
        key = (md.metadata.namespace or "", md.metadata.name or "")
        raw_verb = (raw["metadata"].get("annotations") or {}).get(VERB_ANNOTATION)
        verb, verb_problem = _verb_of(raw["metadata"].get("annotations"))
        owned = {kind: await self._children.owned(kind, *key, md.metadata.uid) for kind in OWNED_KINDS}
        seen = {(kind, obj["metadata"]["name"]): _Seen.of(obj, kind) for kind, objs in owned.items() for obj in objs}
        revisions = {}
        for deployment in owned["Deployment"]:
            labels = deployment["metadata"]["labels"]
            if labels.get(LABEL_MODE) == "stream":
                revision = labels[LABEL_REVISION]
                pods = await self._children.pods(key[0], selector(key[1], "stream", revision))
                revisions[revision] = RevisionState(health=revision_health(revision, deployment, pods),
                                                    replicas=int(deployment.get("spec", {}).get("replicas", 1)),
                                                    deployment=deployment)  # fmt: skip
        observed = Observed(revisions=revisions, existing=frozenset(seen))
        decision, actions = await self._decide(md, observed, verb, now)
        tell(**_decided_position(decision.status))
        decided = decision.status
        plan = await self._stream_plan(md, decided, owned, follow=False)
        prev = md.status or ModelDeploymentStatus()
        said = mode_conditions(md.spec, ready={"stream": plan.readiness}, prev=prev.conditions,
                               generation=md.metadata.generation, now=now)  # fmt: skip
        status = decided.model_copy(update={
            "stream": plan.status,
            "observed_generation": md.metadata.generation,
            "modes": ",".join(md.spec.modes),
            "replicas": engine_input(decided, observed).replicas,
            "conditions": [*said, *(c for c in decided.conditions if c.type not in readiness_types())],
            "history": decided.history[-self._plan_settings.history_limit :],
        })  # fmt: skip
        events = [Event.of(a) for a in actions if isinstance(a, RecordEvent)]
        events += [Event(type_, reason, message) for type_, reason, message in plan.events]
        if verb_problem:
            events.append(Event("Warning", "InvalidVerb", verb_problem))
        spec_unchanged = md.status is not None and md.status.observed_generation == md.metadata.generation
        doing = ("", "")
        try:
            for body in plan.objects:
                doing = (body["kind"], body["metadata"]["name"])
                events += await self._apply(body, seen, spec_unchanged=spec_unchanged)
            for doing in plan.delete:
                await self._delete(doing[0], key[0], doing[1])
        except ApiException as exc:
            refused = _Refused.of(*doing, exc)
            await self._report_refused(raw, md, prev, refused, now)
            self._wake(key, refused.retry_at, now)
            return "refused"
        _observe_step(md, status, now)
        # A hand-over waits on the consumers' metrics: look again at the next scrape rather than at the resync.
        wake = decision.wake_at
        if plan.waiting:
            soon = now + timedelta(seconds=HANDOVER_POLL_S)
            wake = soon if wake is None else min(wake, soon)
        await self._conclude(raw, status, events, raw_verb=raw_verb, wake=wake, now=now)
        return "ok"

    async def _reconcile_batch(self, raw: dict[str, Any], md: ModelDeployment) -> str:
        """A pass of a ModelDeployment whose rollout batch leads: CronJobs per role, Jobs for a run now or a
        pre-flight, status from how runs ended (modes.batch decides; this is the I/O around it)."""
        now = self._clock()
        key = (md.metadata.namespace or "", md.metadata.name or "")
        raw_verb = (raw["metadata"].get("annotations") or {}).get(VERB_ANNOTATION)
        verb, verb_problem = _verb_of(raw["metadata"].get("annotations"))
        observed = await observe_batch(self._children, md)
        inputs = batch_inputs(md, observed, target=target_of(md.spec, self._plan_settings),
                              default_image=self._plan_settings.default_image, verb=verb, now=now,
                              history_limit=self._plan_settings.history_limit)  # fmt: skip
        decision = decide_batch(starting_status(md.status), inputs)
        tell(**_decided_position(decision.status))
        plan = plan_of(md, decision, observed)
        prev = md.status or ModelDeploymentStatus()
        status = pass_status(md.spec, decision, plan, prev=prev, generation=md.metadata.generation, now=now)
        events = [Event.of(event) for event in plan.events]
        if verb_problem:
            events.append(Event("Warning", "InvalidVerb", verb_problem))
        seen = {("CronJob", n): _Seen.of(o, "CronJob") for n, o in observed.cronjobs.items()}
        spec_unchanged = md.status is not None and md.status.observed_generation == md.metadata.generation
        doing = ("CronJob", "")
        try:
            for body in plan.cronjobs:
                doing = ("CronJob", body["metadata"]["name"])
                events += await self._apply(body, seen, spec_unchanged=spec_unchanged)
            doing = ("Job", "")
            await start_jobs(self._kube, plan, key[0])
            for doing in plan.delete:
                await self._delete(doing[0], key[0], doing[1])
        except ApiException as exc:
            refused = _Refused.of(*doing, exc)
            await self._report_refused(raw, md, prev, refused, now)
            self._wake(key, refused.retry_at, now)
            return "refused"
        await self._conclude(raw, status, events, raw_verb=raw_verb, wake=decision.wake_at, now=now)
        return "ok"

    async def _conclude(
        self,
        raw: dict[str, Any],
        status: ModelDeploymentStatus,
        events: Sequence[Event],
        *,
        raw_verb: str | None,
        wake: datetime | None,
        now: datetime,
    ) -> None:
        """The end of a pass whose children were all applied: status written, events said, the verb consumed, the
        next pass scheduled."""
        key = (raw["metadata"]["namespace"], raw["metadata"]["name"])
        self._backoff.clear(key)
        await self._post_events(raw, events, decided=True, status=status)  # before the record, as in _execute
        await self._write_status(raw, status.to_wire())
        if raw_verb is not None:
            await self._kube.remove_annotation(KIND, *key, VERB_ANNOTATION, if_value=raw_verb)
        self._wake(key, wake, now)

    async def _decide(
        self, md: ModelDeployment, observed: Observed, verb: Verb | None, now: datetime
    ) -> tuple[Decision, list[Action]]:
        target = target_of(md.spec, self._plan_settings)
        status = starting_status(md.status)

        async def analyse(request: AnalysisRequest) -> AnalysisOutcome:
            return await self._analyse(md, request, now)

        async def confirm(request: RequestConfirmation) -> GateAnswer:
            return await confirm_gate(md, request, http=self._http, read_secret=self._secret_reader(md))

        return await decide_pass(
            md.spec, status, observed=observed, target=target, verb=verb, now=now, analyse=analyse, confirm=confirm
        )

    def _secret_reader(self, md: ModelDeployment) -> ReadSecret:
        namespace = md.metadata.namespace or ""

        async def read_secret(name: str, key: str) -> str | None:
            return _secret_value(await self._kube.get("Secret", namespace, name), key)

        return read_secret

    async def _analyse(self, md: ModelDeployment, request: AnalysisRequest, now: datetime) -> AnalysisOutcome:
        namespace = md.metadata.namespace or ""
        outcome = await analyse(
            request,
            settings=md.spec.rollout.analysis or AnalysisSettings(),
            subject=Subject(
                namespace=namespace,
                name=md.metadata.name or "",
                model=md.spec.model.name,
                mode="stream" if md.spec.stream_leads else "online",
            ),
            backend=self._analysis_backend,
            read_secret=self._secret_reader(md),
            previous=md.status.analysis.runs if md.status else [],
            now=now,
        )
        ANALYSIS_RUNS.labels(outcome.run.kind or request.kind, outcome.run.verdict).inc()
        return outcome

    async def _observe(
        self, md: ModelDeployment
    ) -> tuple[Observed, dict[tuple[str, str], _Seen], dict[str, list[dict[str, Any]]]]:
        """What exists now, plus uid and generation of every owned object: what our apply then returns tells
        exactly whether it re-created or reverted something (a race-free drift report); and the objects as read,
        by kind (a hybrid pass's stream part plans from them too)."""
        name, namespace, uid = md.metadata.name or "", md.metadata.namespace or "", md.metadata.uid
        owned = {kind: await self._children.owned(kind, namespace, name, uid) for kind in OWNED_KINDS}
        seen = {(kind, obj["metadata"]["name"]): _Seen.of(obj, kind) for kind, objs in owned.items() for obj in objs}
        revisions: dict[str, RevisionState] = {}
        fallback = None
        for deployment in owned["Deployment"]:
            labels = deployment["metadata"]["labels"]
            if labels.get(LABEL_MODE) == "fallback":
                fallback = ReplicaCounts(
                    desired=int(deployment.get("spec", {}).get("replicas", 1)),
                    ready=int(deployment.get("status", {}).get("readyReplicas", 0)),
                )
            if labels.get(LABEL_MODE) != "online":
                continue
            revision = labels[LABEL_REVISION]
            health = revision_health(revision, deployment, [])
            if not health.available:  # only then do the pods' states matter
                pods = await self._children.pods(namespace, selector(name, "online", revision))
                health = revision_health(revision, deployment, pods)
            revisions[revision] = RevisionState(
                health=health, replicas=_asked_replicas(deployment), deployment=deployment
            )
        hooks = await observe_hooks(self._children, namespace, name, owned.get("Job", []))
        graph = md.spec.online.graph if md.spec.online else None
        members = {m.model_deployment: await self._children.model_deployment(namespace, m.model_deployment)
                   for m in (graph.members if graph else [])}  # fmt: skip
        observed = Observed(revisions=revisions, existing=frozenset(seen), hooks=hooks, fallback=fallback,
                            graph_members=members)  # fmt: skip
        return observed, seen, owned

    async def _execute(
        self,
        raw: dict[str, Any],
        md: ModelDeployment,
        plan: Plan,
        actions: Sequence[Action],
        seen: dict[tuple[str, str], _Seen],
        *,
        spec_unchanged: bool,
        now: datetime,
    ) -> _Refused | None:
        """Pods first; then the decision is told (its events) and recorded (status); then traffic follows it;
        then pods are taken away. A revision never gets traffic it has no pods for, and the routing is never
        ahead of status: a process killed after the record finds the decision in status and routes as it says
        (`converge`), instead of deciding again (a new analysis run might decide otherwise, and the routing would
        go back). Killed before the record, the pass is done again from the same stored object: the same
        decision's events have the same names, so none is posted twice, and none is lost.
        A child the API server refuses stops the pass there and is reported (status, event, log line): refused
        before the record, the status stays what it was; after it, the record stays, with the refusal."""
        meta = raw["metadata"]
        side: list[Event] = []  # what applying found (a child restored, a hand edit undone)
        refused = await self._apply_all(plan.grow, seen, side, spec_unchanged=spec_unchanged)
        if refused is not None:
            await self._report_refused(raw, md, md.status or ModelDeploymentStatus(), refused, now)
            await self._post_events(raw, side)
            return refused
        await self._post_events(raw, plan.events, decided=True, status=plan.status)
        # The record made before the routing keeps the scale-downs still to do as they were: it must not say a
        # scale-down is done before the shrink below has run (killed in between, the next pass does it again).
        ahead = plan.status
        if plan.shrink or plan.delete:
            before = md.status.scale_downs if md.status is not None else []
            ahead = plan.status.model_copy(update={"scale_downs": before})
        await self._write_status(raw, ahead.to_wire())
        try:
            await self._route(md, plan.status, actions)
        except RoutingTargetError as exc:
            # The user's HTTPRoute/VirtualService is missing or has no rule we can manage: say so where users
            # look, and put status back as it was (the rollout holds at its step; stable keeps its traffic).
            message = f"cannot route traffic: {exc}; the rollout holds at its step until this is fixed"
            logger.warning(
                "%s/%s %s", meta["namespace"], meta["name"], message, extra=ref(meta["namespace"], meta["name"])
            )
            if raw.get("status") != plan.status.to_wire():
                back = await self._kube.apply_status(meta["namespace"], meta["name"], raw.get("status") or {})
                self._children.wrote(back)
            await self._post_events(raw, [Event("Warning", "RoutingFailed", message)], logged=True)
            raise
        refused = await self._apply_all(plan.shrink, seen, side, spec_unchanged=spec_unchanged)
        for kind, name in plan.delete if refused is None else ():
            try:
                await self._delete(kind, meta["namespace"], name)
            except ApiException as exc:
                refused = _Refused.of(kind, name, exc)
                break
        if refused is not None:
            refused.status_written = True
            await self._report_refused(raw, md, plan.status, refused, now)
        elif ahead is not plan.status and ahead.to_wire() != plan.status.to_wire():
            self._children.wrote(await self._kube.apply_status(meta["namespace"], meta["name"], plan.status.to_wire()))
        await self._post_events(raw, side)
        return refused

    async def _post_events(
        self,
        raw: dict[str, Any],
        events: Sequence[Event],
        *,
        decided: bool = False,
        logged: bool = False,
        status: ModelDeploymentStatus | None = None,
    ) -> None:
        """Log and post events. `decided`: the events of a pass's decision, named after the object's
        resourceVersion as the pass read it, their place in the pass and their words (`<name>.<version>.<n><hash>`):
        a pass done again from the same stored object posts them under the same names, so at most once. Other events are
        named `<name>.<version>.t<nanoseconds>`. Either way names sort in the order the events were written.
        A decided event that is a notification is then queued for the webhooks (the name is its id; `status` is the
        decision's, told in the body): queued only, so no receiver ever holds a pass up."""
        meta = raw["metadata"]
        version = str(meta.get("resourceVersion", ""))
        prefix = f"{int(version):016x}" if version.isdigit() else None
        for n, event in enumerate(events):
            if not logged:
                logger.info("%s/%s %s: %s", meta["namespace"], meta["name"], event.reason, event.message,
                            extra=ref(meta["namespace"], meta["name"]))  # fmt: skip
            # The event's own words are part of a decided name: two passes that start from the same stored object
            # (one whose status did not change) may decide different things, and neither may silence the other.
            said = hashlib.sha256(f"{event.reason}\n{event.message}".encode()).hexdigest()[:8]
            key = None if prefix is None else f"{prefix}.{n:04x}{said}" if decided else f"{prefix}.t{time.time_ns():x}"
            await self._kube.emit_event(raw, type_=event.type, reason=event.reason, message=event.message, key=key)
            if decided and key is not None and event.notify and self._notifier is not None:
                self._notify(raw, event, f"{meta['name']}.{key}", status)

    def _notify(self, raw: dict[str, Any], event: Event, id_: str, status: ModelDeploymentStatus | None) -> None:
        """Queued after the event is posted (a pass done again posts it under the same name, and the notifier drops
        the id it already has), so a receiver never hears of a decision the cluster has no event of. Also queued when
        the event already existed: the process that posted it may have died before delivering."""
        assert self._notifier is not None
        meta = raw["metadata"]
        written = raw["spec"].get("notifications")  # valid: the pass validated the whole object
        spec = NotificationsSpec.model_validate(written) if written is not None else None
        notification = Notification.of(
            id_=id_,
            kinds=ordered(event.notify),
            event=(event.type, event.reason, event.message),
            subject=ModelDeploymentRef(namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid")),
            status=status,
            time=self._clock(),
        )
        # Where a NotificationFailed goes; emit_event fills apiVersion and kind when the index left them out.
        involved = {k: v for k, v in (("apiVersion", raw.get("apiVersion")), ("kind", raw.get("kind"))) if v}
        involved["metadata"] = dict(meta)
        self._notifier.submit(notification, spec, involved)

    async def _apply_all(
        self,
        objs: Sequence[dict[str, Any]],
        seen: dict[tuple[str, str], _Seen],
        events: list[Event],
        *,
        spec_unchanged: bool,
    ) -> _Refused | None:
        for obj in objs:
            try:
                events += await self._apply(obj, seen, spec_unchanged=spec_unchanged)
            except ApiException as exc:
                meta = obj["metadata"]
                return _Refused.of(obj["kind"], meta["name"], exc)
        return None

    async def _report_refused(
        self,
        raw: dict[str, Any],
        md: ModelDeployment,
        status: ModelDeploymentStatus,
        refused: _Refused,
        now: datetime,
    ) -> None:
        """Status and an event say which object was refused and what the API server answered; the retry waits
        a growing delay (a new generation of the spec retries at once)."""
        key = (md.metadata.namespace or "", md.metadata.name or "")
        refusal = self._backoff.refused(key, md.metadata.generation, now)
        refused.retry_at = refusal.retry_at
        delay = (refusal.retry_at - now).total_seconds()
        attempt = f"retrying in {delay:g}s (attempt {refusal.failures}), or at once on a spec change"
        message = f"{refused.describe()}; {attempt}"
        reported = status.model_copy(deep=True)
        mark_apply_failed(reported, message, now=now, generation=md.metadata.generation)
        logger.warning("%s/%s %s", *key, message, extra=ref(*key))
        await self._write_status(raw, reported.to_wire())
        await self._post_events(raw, [Event("Warning", "ApplyFailed", message)], logged=True)

    async def _apply(
        self, obj: dict[str, Any], seen: dict[tuple[str, str], _Seen], *, spec_unchanged: bool
    ) -> list[Event]:
        key = (obj["kind"], obj["metadata"]["name"])
        before = seen.get(key)
        sent = digest(obj)
        obj = stamped(obj, sent)
        live = before.obj if before is not None else None
        still = self._children.applied_still(obj["kind"], obj["metadata"]["namespace"], key[1], sent)
        if unchanged(obj, live, applied_still=still):
            SKIPPED_APPLIES.inc()
            return []
        answer = await self._kube.apply(obj)
        self._children.wrote(answer, digest=sent)
        after = _Seen.of(answer, obj["kind"])
        if before is None:
            return []  # created: the plan already said whether that was a restoration
        if after.uid != before.uid:
            # Deleted between our observation and this apply: restored all the same, and said so.
            return [Event("Warning", "ChildRestored", f"{key[0]} {key[1]} was missing; recreated")]
        intended = _intent(obj, obj["kind"]) != before.intent  # the rollout itself resized it (a step, a scale-down)
        # Under an HPA the Deployment's replicas are the HPA's to change at any moment: not a hand edit.
        intended = intended or (obj["kind"] == "Deployment" and "replicas" not in obj["spec"])
        if spec_unchanged and not intended and None not in (before.generation, after.generation) and after != before:
            # Our apply changed the object's spec although neither our spec nor the rollout asked for a change:
            # someone had edited it.
            message = f"{key[0]} {key[1]} had been changed by hand; restored to what the spec says"
            return [Event("Warning", "DriftCorrected", message)]
        return []

    async def _route(self, md: ModelDeployment, status: ModelDeploymentStatus, actions: Sequence[Action]) -> None:
        """Execute the engine's routing actions in order through the provider's TrafficRouter, then make sure
        the routing in place is what status says (a deleted or hand-edited routing object is restored).

        Two steps on purpose: the actions carry the order of the changes within a pass (an A/B split's sticky
        assignment before its weights, the weights back on one variant before the assignment goes), which one
        target state cannot express once a router writes several objects (an HTTPRoute or VirtualService, a
        DestinationRule) or several documents; `converge` then only restores what someone else changed, and
        writes nothing when the actions already left the routing as status says."""
        router = router_for(RouterContext(md=md, status=status, kube=self._kube))
        if router is None:
            return  # provider service: the Services of the plan are the routing
        for action in actions:
            if isinstance(action, SetWeights):
                await router.set_weights(action.stable, action.canary)
            elif isinstance(action, SetMirror):
                await router.set_mirror(action.percent)
            elif isinstance(action, SetSticky):
                await router.set_sticky(action.by)
        weights = status.weights
        sticky = sticky_for(md.spec, status)
        if await router.converge(stable=weights.stable, canary=weights.canary, mirror=weights.mirror, sticky=sticky):
            # Also the normal path when the roles changed (a new candidate's version); hence debug.
            logger.debug("%s/%s: routing document rewritten from status", md.metadata.namespace, md.metadata.name)

    async def _write_status(self, raw: dict[str, Any], status: dict[str, Any]) -> None:
        """Status as planned; not sent when it is what the ModelDeployment (as this pass read it) already says: a
        pass that changes nothing writes nothing."""
        namespace, name = raw["metadata"]["namespace"], raw["metadata"]["name"]
        if raw.get("status") != status:
            self._children.wrote(await self._kube.apply_status(namespace, name, status))
            if self._status_changed is not None:
                self._status_changed(namespace, name)
        PHASES.record((namespace, name), str(status.get("phase", "Pending")))
        DEPLOYMENTS.record(raw, status)

    async def _delete(self, kind: str, namespace: str, name: str) -> None:
        await self._kube.delete(kind, namespace, name)
        self._children.deleted(kind, namespace, name)

    def _wake(self, key: Key, at: datetime | None, now: datetime) -> None:
        """Run a pass at `at` (the engine's next time-driven change); replaces any earlier wake-up of `key`."""
        current = self._wakeups.pop(key, None)
        if current is not None and current is not asyncio.current_task():
            current.cancel()
        if at is None:
            return
        delay = max((at - now).total_seconds(), MIN_WAKE_S)
        self._wakeups[key] = asyncio.create_task(self._wake_after(key, delay), name=f"wake-{key[0]}-{key[1]}")

    async def _wake_after(self, key: Key, delay: float) -> None:
        await asyncio.sleep(delay)
        PASS_TRIGGERS.labels("wake").inc()
        try:
            await self.reconcile({"metadata": {"namespace": key[0], "name": key[1]}}, scheduled=True)
        except Exception:
            logger.exception("timed pass of %s/%s failed; the periodic resync retries it", *key, extra=ref(*key))
        finally:
            if self._wakeups.get(key) is asyncio.current_task():
                del self._wakeups[key]  # done, and no pass replaced it: nothing to keep

    # --- what cannot be reconciled --------------------------------------------------------------------------

    async def _report_invalid(self, raw: dict[str, Any], problem: str) -> None:
        if (raw.get("status") or {}).get("message") == problem:
            return  # already said; the resync loop must not repeat it every interval
        now = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {"type": "Degraded", "status": "True", "reason": "InvalidSpec", "message": problem}
        status = {"phase": "Failed", "message": problem, "conditions": [{**condition, "lastTransitionTime": now}]}
        await self._write_status(raw, status)
        await self._post_events(raw, [Event("Warning", "InvalidSpec", problem)])

    async def _report_unsupported(self, raw: dict[str, Any], md: ModelDeployment) -> None:
        """A spec whose modes this version does not run (no online): status and one event say so, per mode."""
        meta = raw["metadata"]
        prev = md.status or ModelDeploymentStatus()
        message = unserved_message(md.spec) or ""
        now = self._clock()
        conditions = mode_conditions(md.spec, ready={}, prev=prev.conditions, generation=md.metadata.generation,
                                     now=now)  # fmt: skip
        status = ModelDeploymentStatus(
            phase="Pending",
            observed_generation=md.metadata.generation,
            modes=",".join(md.spec.modes),
            message=message,
            conditions=conditions,
        )
        await self._write_status(raw, status.to_wire())
        if prev.message != message:
            logger.warning(
                "%s/%s ModeNotServed: %s",
                meta["namespace"],
                meta["name"],
                message,
                extra=ref(meta["namespace"], meta["name"]),
            )
            await self._post_events(raw, [Event("Warning", "ModeNotServed", message)], logged=True)


def _earliest(*times: datetime | None) -> datetime | None:
    return min((t for t in times if t is not None), default=None)


def _observe_step(md: ModelDeployment, written: ModelDeploymentStatus, now: datetime) -> None:
    """A step that ended in this pass (the next one began, or the rollout ended): its duration, for telemetry."""
    before = md.status
    if before is None or before.canary is None or before.step_started_at is None:
        return
    if written.canary == before.canary and written.current_step == before.current_step:
        return
    STEP_DURATION.labels(md.spec.rollout.strategy).observe((now - before.step_started_at).total_seconds())


def _position(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where a rollout stands, for the log lines of its pass: the candidate's revision (else the stable one's), the
    step and the phase."""
    status = status or {}
    role = status.get("canary") or status.get("stable") or {}
    return {"revision": role.get("revision"), "step": status.get("currentStep"), "phase": status.get("phase")}


def _decided_position(status: ModelDeploymentStatus) -> dict[str, Any]:
    """`_position` of the status a pass decided, read from the model (serialising a whole status, history and
    analysis runs included, for three fields would cost every pass)."""
    role = status.canary or status.stable
    return {"revision": role.revision if role else None, "step": status.current_step, "phase": status.phase}


def _verb_of(annotations: Mapping[str, str] | None) -> tuple[Verb | None, str | None]:
    try:
        return parse_verb_annotation(annotations), None
    except InvalidVerbAnnotation as exc:
        return None, str(exc)


def _secret_value(secret: dict[str, Any] | None, key: str) -> str | None:
    encoded = ((secret or {}).get("data") or {}).get(key)
    return base64.b64decode(encoded).decode().strip() if encoded else None


def _asked_replicas(deployment: dict[str, Any]) -> int:
    """The replica count we last asked for (our annotation), else what the Deployment says (an object made by
    an earlier operator version)."""
    annotated = (deployment["metadata"].get("annotations") or {}).get(ANNOTATION_REPLICAS)
    if annotated is not None and annotated.isdigit():
        return int(annotated)
    return int(deployment.get("spec", {}).get("replicas", 1))


@dataclass
class _Refused:
    """A child object the API server would not take, in this pass."""

    kind: str
    name: str
    code: int
    reason: str
    status_written: bool = False  # refused after the routing: the plan's status was written with the report
    retry_at: datetime | None = None

    @classmethod
    def of(cls, kind: str, name: str, exc: ApiException) -> _Refused:
        return cls(kind, name, int(exc.status or 0), _api_message(exc))

    def describe(self) -> str:
        return f"the API server refused {self.kind} {self.name} (HTTP {self.code}): {self.reason}"


def _api_message(exc: ApiException) -> str:
    """The API server's own words: the `message` of the Status it answered, else the HTTP reason."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    said = str(message or exc.reason or "no reason given")
    return said if len(said) <= MAX_REASON else said[: MAX_REASON - 3] + "..."


@dataclass(frozen=True)
class _Seen:
    uid: str
    generation: int | None  # None for kinds without one (Service)
    intent: str | None = field(default=None, compare=False)
    obj: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # as observed

    @classmethod
    def of(cls, obj: dict[str, Any], kind: str) -> _Seen:
        meta = obj["metadata"]
        return cls(uid=meta["uid"], generation=meta.get("generation"), intent=_intent(obj, kind), obj=obj)


def _intent(obj: dict[str, Any], kind: str) -> str | None:
    """What the rollout asks of an object beyond the spec: a Deployment's replica count, an HPA's floor.
    (`kind` is passed: items of a list response carry none.)"""
    if kind == "HorizontalPodAutoscaler":
        return str(obj.get("spec", {}).get("minReplicas"))
    return (obj["metadata"].get("annotations") or {}).get(ANNOTATION_REPLICAS)
