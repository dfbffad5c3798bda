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
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Hashable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

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
    "modelrollout_pass_triggers", "Passes asked for, by what asked (a watched kind, resync, wake)", ["by"],
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


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve /metrics on `port` from a daemon thread (prometheus-client's own server); 0 serves nothing."""
    if port:
        start_http_server(port, registry=registry)
