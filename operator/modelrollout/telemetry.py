"""The operator's own Prometheus metrics, named once, on a registry of their own (served on
`MODELROLLOUT_METRICS_PORT`, /metrics).

- modelrollout_reconcile_passes_total{result}: passes by how they ended: ok, refused (a child the API server
  refused), invalid (a spec the models refuse), unserved (no mode this version runs), error (an exception).
- modelrollout_reconcile_duration_seconds: one pass, from the lock taken to its last write.
- modelrollout_api_requests_total{verb,code}: every call to the API server, by verb (get, list, apply, patch,
  create, delete, watch) and HTTP status (0: no answer).
- modelrollout_api_retries_total{verb,code}: requests the API server shed (429, or a 5xx with Retry-After) that
  the client waited for and sent again.
- modelrollout_watch_restarts_total{kind,why}: watches that ended and were resumed (`timeout`: the server ended
  it; `error`: the connection failed or fell silent) or re-listed (`gone`: its version was too old).
- modelrollout_pass_triggers_total{by}: passes asked for, by what asked: the kind whose change a watch delivered
  (ModelDeployment, Deployment, Service, ...), `resync`, or `wake` (the engine's own timer, a retry).
- modelrollout_skipped_applies_total: children a pass did not send because nothing changed since our last apply.
- modelrollout_modeldeployments{phase}: ModelDeployments this operator reconciled, by the phase it last wrote.
- modelrollout_analysis_runs_total{kind,verdict}: analysis runs the operator performed.
- modelrollout_rollout_step_duration_seconds{strategy}: how long each finished step of a rollout took.
- modelrollout_leader: 1 while this replica holds the leader lease (and runs the writers), 0 on a standby.
- modelrollout_leader_transitions_total: changes of the lease's holder this replica saw (the increase of the
  lease's leaseTransitions between two of its reads or writes, its own takeovers included). Every replica
  counts the same changes, so take the max over replicas, not the sum; a standby keeps counting while leaders
  come and go.
- modelrollout_notifications_total{source,format,outcome}: rollout notifications by where the webhook is configured
  (spec: a ModelDeployment's, operator: a default), its body format, and how each ended: sent, failed (given up
  after its attempts or age, or a webhook that cannot be called as configured), dropped (its queue was full),
  duplicate (an id already delivered or queued to that webhook).
- modelrollout_notification_attempts_total{source,format,result}: POSTs, by result (ok, retry: a 5xx, 429 or no
  answer; refused: any other answer).
- modelrollout_notification_queue_depth{source}: notifications waiting for delivery.

Per ModelDeployment (labels `namespace` and `modeldeployment`: one set per object, removed when it is deleted;
scrape with honor_labels, as the chart's monitors do, or Prometheus renames `namespace` to `exported_namespace`),
from the status each pass writes (`Deployments.record`), for the Grafana dashboards (chart/dashboards.py):
- modelrollout_modeldeployment_info{namespace,modeldeployment,model}: 1; joins a ModelDeployment to the `model`
  label of its servers' and consumers' series (spec.model.name need not be the object's name).
- modelrollout_traffic_weight_percent{namespace,modeldeployment,role}: the split status says is applied (stable,
  canary, mirror), whatever the traffic provider.
- modelrollout_rollouts_total{namespace,modeldeployment,outcome}: finished rollouts (history entries) this process
  saw added, by outcome (Promoted, RolledBack, ...).
- modelrollout_abtest_success_rate{namespace,modeldeployment,variant}, modelrollout_abtest_trials{...}: the
  running (or last) A/B test's success rate and trials of stable and canary, while status has one.
- modelrollout_batch_runs_total{namespace,modeldeployment,role,phase}: batch runs that ended (Succeeded, Failed)
  by role (stable, shadow, canary, preflight); modelrollout_batch_records_total{...,role,result}: their records
  (scored, rejected).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Hashable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from modelrollout.api.status import BatchRole, Outcome

REGISTRY = CollectorRegistry(auto_describe=True)
# From a quick pass (a few API calls) to a slow one (an analysis query timing out at 10 s).
PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Steps last from seconds (a canary's setWeight) to hours (a pause, an A/B test).
STEP_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

PASSES = Counter("modelrollout_reconcile_passes", "Reconcile passes by result", ["result"], registry=REGISTRY)
PASS_DURATION = Histogram(
    "modelrollout_reconcile_duration_seconds", "Duration of one reconcile pass", buckets=PASS_BUCKETS, registry=REGISTRY
)
API_REQUESTS = Counter(
    "modelrollout_api_requests", "Calls to the Kubernetes API server by verb and HTTP status", ["verb", "code"],
    registry=REGISTRY,
)  # fmt: skip
API_RETRIES = Counter(
    "modelrollout_api_retries", "Requests the API server shed (429, 5xx with Retry-After) and the client retried",
    ["verb", "code"], registry=REGISTRY,
)  # fmt: skip
PASS_TRIGGERS = Counter(
    "modelrollout_pass_triggers",
    "Passes asked for, by what asked (a watched kind, resync, wake, graph: a member's status changed)",
    ["by"],
    registry=REGISTRY,
)  # fmt: skip
SKIPPED_APPLIES = Counter(
    "modelrollout_skipped_applies", "Children not sent again: unchanged since our last apply", registry=REGISTRY
)
WATCH_RESTARTS = Counter(
    "modelrollout_watch_restarts", "Watches that ended and were resumed or re-listed, by kind and why",
    ["kind", "why"], registry=REGISTRY,
)  # fmt: skip
ANALYSIS_RUNS = Counter(
    "modelrollout_analysis_runs", "Analysis runs performed, by kind and verdict", ["kind", "verdict"], registry=REGISTRY
)
STEP_DURATION = Histogram(
    "modelrollout_rollout_step_duration_seconds",
    "Duration of each finished rollout step, by strategy",
    ["strategy"],
    buckets=STEP_BUCKETS,
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "modelrollout_notifications", "Rollout notifications by webhook source, format and outcome",
    ["source", "format", "outcome"], registry=REGISTRY,
)  # fmt: skip
NOTIFICATION_ATTEMPTS = Counter(
    "modelrollout_notification_attempts", "Webhook POSTs of rollout notifications, by source, format and result",
    ["source", "format", "result"], registry=REGISTRY,
)  # fmt: skip
NOTIFICATION_QUEUE = Gauge(
    "modelrollout_notification_queue_depth", "Rollout notifications waiting for delivery, by webhook source",
    ["source"], registry=REGISTRY,
)  # fmt: skip
LEADER = Gauge("modelrollout_leader", "1 while this replica holds the leader lease", registry=REGISTRY)
LEADER_TRANSITIONS = Counter(
    "modelrollout_leader_transitions", "Changes of the leader lease's holder seen by this replica", registry=REGISTRY
)


class Phases:
    """The phase each ModelDeployment was last written with, exported as counts per phase (a phase with none
    exports 0 once it was seen, so a rate of change never starts from a missing series)."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self._phases: dict[Hashable, str] = {}
        self._gauge = Gauge(
            "modelrollout_modeldeployments",
            "ModelDeployments by the phase the operator last wrote",
            ["phase"],
            registry=registry,
        )

    def record(self, key: Hashable, phase: str) -> None:
        before = self._phases.get(key)
        if before == phase:
            return
        self._phases[key] = phase
        self._refresh({phase} | ({before} if before else set()))

    def forget(self, key: Hashable) -> None:
        before = self._phases.pop(key, None)
        if before is not None:
            self._refresh({before})

    def _refresh(self, phases: set[str]) -> None:
        counts = Tally(self._phases.values())
        for phase in phases:
            self._gauge.labels(phase).set(counts.get(phase, 0))


PHASES = Phases()

ROLES = ("stable", "canary", "mirror")
VARIANTS = ("stable", "canary")
BATCH_ENDED = ("Succeeded", "Failed")
BATCH_RESULTS = ("scored", "rejected")
Key = tuple[str, str]  # namespace, name


@dataclass
class _Seen:
    """What of one ModelDeployment's status was already counted: counters count what a pass added, and a pass
    writes status twice (before routing, then final), so the second write must not count it again."""

    model: str | None = None
    finished: str = ""  # the newest history entry's finishedAt counted (RFC 3339 UTC: ordered as text)
    runs: set[str] = field(default_factory=set)  # batch Jobs whose end was counted
    ab_test: bool = False
    batch: bool = False


class Deployments:
    """Per-ModelDeployment series from the status a pass writes (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self._seen: dict[Key, _Seen] = {}
        md = ["namespace", "modeldeployment"]
        self._info = Gauge("modelrollout_modeldeployment_info", "A ModelDeployment and its spec.model.name",
                           [*md, "model"], registry=registry)  # fmt: skip
        self._weight = Gauge("modelrollout_traffic_weight_percent", "Traffic split in status, percent by role",
                             [*md, "role"], registry=registry)  # fmt: skip
        self._rollouts = Counter("modelrollout_rollouts", "Finished rollouts by outcome", [*md, "outcome"],
                                 registry=registry)  # fmt: skip
        self._ab_rate = Gauge("modelrollout_abtest_success_rate", "A/B test success rate by variant",
                              [*md, "variant"], registry=registry)  # fmt: skip
        self._ab_trials = Gauge("modelrollout_abtest_trials", "A/B test trials by variant", [*md, "variant"],
                                registry=registry)  # fmt: skip
        self._batch_runs = Counter("modelrollout_batch_runs", "Batch runs that ended, by role and phase",
                                   [*md, "role", "phase"], registry=registry)  # fmt: skip
        self._batch_records = Counter("modelrollout_batch_records", "Records of ended batch runs, by role and result",
                                      [*md, "role", "result"], registry=registry)  # fmt: skip

    def record(self, raw: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """`raw`: the object as the pass read it (its status is what was there before); `status`: what it wrote."""
        meta = raw["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        seen = self._seen.get(key)
        if seen is None:
            # First sight (this process just started, or the object is new): what the object already said was
            # counted by whoever wrote it; only what this pass adds counts.
            seen = self._seen[key] = _Seen()
            before = raw.get("status") or {}
            seen.finished = _newest_finished(before)
            seen.runs = {run["job"] for run in _ended_runs(before)}
            for outcome in get_args(Outcome):  # at 0, so that increase() sees the first one
                self._rollouts.labels(*key, outcome)
        model = str(((raw.get("spec") or {}).get("model") or {}).get("name", ""))
        if model != seen.model:
            if seen.model is not None:
                self._info.remove(*key, seen.model)
            self._info.labels(*key, model).set(1)
            seen.model = model
        weights = status.get("weights") or {}
        for role, default in zip(ROLES, (100, 0, 0), strict=True):
            self._weight.labels(*key, role).set(weights.get(role, default))
        self._count_history(key, seen, status)
        self._record_ab_test(key, seen, status.get("abTest"))
        self._count_batch_runs(key, seen, status)

    def _count_history(self, key: Key, seen: _Seen, status: Mapping[str, Any]) -> None:
        newest = seen.finished
        for entry in status.get("history") or []:
            finished = str(entry.get("finishedAt", ""))
            if finished > seen.finished:
                self._rollouts.labels(*key, str(entry.get("outcome"))).inc()
                newest = max(newest, finished)
        seen.finished = newest

    def _record_ab_test(self, key: Key, seen: _Seen, ab_test: Mapping[str, Any] | None) -> None:
        if ab_test is None:
            if seen.ab_test:
                for variant in VARIANTS:
                    self._ab_rate.remove(*key, variant)
                    self._ab_trials.remove(*key, variant)
            seen.ab_test = False
            return
        seen.ab_test = True
        for variant in VARIANTS:
            rate = ab_test.get(f"rate{variant.capitalize()}")
            self._ab_rate.labels(*key, variant).set(float("nan") if rate is None else rate)
            self._ab_trials.labels(*key, variant).set(ab_test.get(f"samples{variant.capitalize()}", 0))

    def _count_batch_runs(self, key: Key, seen: _Seen, status: Mapping[str, Any]) -> None:
        if status.get("batch") is None:
            return
        if not seen.batch:
            seen.batch = True
            for role in get_args(BatchRole):
                for phase in BATCH_ENDED:
                    self._batch_runs.labels(*key, role, phase)
                for result in BATCH_RESULTS:
                    self._batch_records.labels(*key, role, result)
        for run in _ended_runs(status):
            if run["job"] in seen.runs:
                continue
            seen.runs.add(run["job"])
            role = str(run.get("role"))
            self._batch_runs.labels(*key, role, str(run["phase"])).inc()
            counts = run.get("counts") or {}
            for result in BATCH_RESULTS:
                self._batch_records.labels(*key, role, result).inc(counts.get(result, 0))
        # Status keeps the latest runs only: a Job it no longer lists never comes back, so it need not be kept.
        seen.runs &= {str(run.get("job")) for run in (status.get("batch") or {}).get("runs") or []}

    def forget(self, key: Key) -> None:
        """The ModelDeployment is gone: its series go with it."""
        seen = self._seen.pop(key, None)
        if seen is None:
            return
        removals: list[tuple[Gauge | Counter, tuple[str, ...]]] = [(self._weight, (r,)) for r in ROLES]
        removals += [(self._rollouts, (outcome,)) for outcome in get_args(Outcome)]
        if seen.model is not None:
            removals.append((self._info, (seen.model,)))
        if seen.ab_test:
            removals += [(m, (v,)) for m in (self._ab_rate, self._ab_trials) for v in VARIANTS]
        if seen.batch:
            roles = get_args(BatchRole)
            removals += [(self._batch_runs, (r, phase)) for r in roles for phase in BATCH_ENDED]
            removals += [(self._batch_records, (r, result)) for r in roles for result in BATCH_RESULTS]
        for metric, labels in removals:
            with suppress(KeyError):  # a child never created (an outcome no rollout of it had)
                metric.remove(*key, *labels)


def _newest_finished(status: Mapping[str, Any]) -> str:
    return max((str(entry.get("finishedAt", "")) for entry in status.get("history") or []), default="")


def _ended_runs(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    runs = (status.get("batch") or {}).get("runs") or []
    return [run for run in runs if run.get("phase") in BATCH_ENDED and run.get("job")]


DEPLOYMENTS = Deployments()


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve /metrics on `port` from a daemon thread (prometheus-client's own server); 0 serves nothing."""
    if port:
        start_http_server(port, registry=registry)
