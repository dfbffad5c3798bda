"""Every Prometheus metric the router exports, named once (DESIGN.md section 4). Every series has `route`.

- modelrouter_requests_total{route,version,role,code}: one per upstream call (role stable|canary|shadow);
  a call that got no answer counts under the code the router answers for it (502 refused/reset, 504 timeout).
- modelrouter_upstream_duration_seconds{route,version,role}: time of each upstream call, answered or not.
- modelrouter_shadow_comparisons_total{route,result}: agree | disagree | error per mirrored request.
- modelrouter_shadow_abs_diff{route}: mean |stable - shadow| over the rows of a numeric (floating) answer;
  the operator's shadowMeanAbsDiff builtin divides its _sum by its _count.
- modelrouter_shadow_dropped_total{route}: mirrored requests not sent because too many shadows were in flight.
- modelrouter_weight{route,role}: loaded weights in percent, one series per backend (role = its name; shadow =
  the mirror's percent).
- modelrouter_fallbacks_total{route,from,to,reason}: requests a failed backend's fallback chain sent on, by the
  backends and why (error | unreachable | timeout | latency_budget).
- modelrouter_ensemble_answers_total{route,ensemble,outcome}: an ensemble's inference requests by outcome: complete
  (every member combined), quorum (enough of them), failed (too few, or answers that could not be combined).
- modelrouter_ensemble_member_failures_total{route,ensemble,member,reason}: members left out of an ensemble's answer,
  and why (error | unreachable | timeout | rejected | unreadable). Each member's calls are counted under its own
  role in modelrouter_requests_total as any call is, and the ensemble's answers under the ensemble's name.
- modelrouter_api_key_requests_total{route,key,result}: with API keys on, each key's requests (by its name) by
  result: admitted | rate_limited; requests without a valid key count in modelrouter_rejected_total{reason=
  unauthorized}, rate-limited ones there too (reason rate_limited).
- modelrouter_config_reloads_total{route,result}: applied | unchanged | invalid | missing.
- modelrouter_config_stale{route}: 1 while the newest document seen is unusable and an older one serves.
- modelrouter_rejected_total{route,reason}: requests the router answered itself (no_config, too_large, loop, ...).
- modelrouter_assignments_total{route,version,source}: requests assigned to a variant by stickyBy, by the model
  version assigned and how: key (the request carried its key), new (cookie mode: a new id, set on the answer),
  missing (header mode: no key, so stable). Requests the header route sends to the canary are not assignments.

The router runs one process, so a plain registry serves; each RouterMetrics has its own (tests make many).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.process_collector import ProcessCollector

from modelrollout_contract import metrics as names
from modelrollout_contract.metrics import ABS_DIFF_BUCKETS, AGREE, DISAGREE, ERROR, LATENCY_BUCKETS
from modelrollout_contract.router_v2 import SHADOW_ROLE

# `*_created` series double the exposition and no query of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# modelrouter_api_key_requests_total's `result`, and modelrouter_rejected_total's `reason` for requests refused by key.
ADMITTED, RATE_LIMITED = "admitted", "rate_limited"
UNAUTHORIZED_REASON = "unauthorized"
LOOP = "loop"  # modelrouter_rejected_total's `reason` for a request that passed through this route already


@dataclass
class BackendMetrics:
    """The series of one (route, version, role), with per-code children cached: no label lookup per call."""

    requests: Counter
    duration: Histogram
    route: str
    version: str
    role: str
    _codes: dict[int, Counter] = field(default_factory=dict, repr=False)

    def observe(self, code: int, seconds: float) -> None:
        counter = self._codes.get(code)
        if counter is None:
            counter = self._codes[code] = self.requests.labels(self.route, self.version, self.role, str(code))
        counter.inc()
        self.duration.observe(seconds)


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        self.requests = Counter(
            names.ROUTER_REQUESTS,
            "Upstream calls by route, model version, role and response code",
            ["route", "version", "role", "code"],
            registry=r,
        )
        self.duration = Histogram(
            names.ROUTER_UPSTREAM_DURATION,
            "Duration of upstream calls by route, model version and role",
            ["route", "version", "role"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.comparisons = Counter(
            names.SHADOW_COMPARISONS,
            "Comparisons of stable's answer with the shadow's: agree, disagree or error",
            ["route", "result"],
            registry=r,
        )
        self.abs_diff = Histogram(
            names.SHADOW_ABS_DIFF,
            "Mean absolute difference between stable's and the shadow's numeric predictions, per request",
            ["route"],
            buckets=ABS_DIFF_BUCKETS,
            registry=r,
        )
        self.shadow_dropped = Counter(
            "modelrouter_shadow_dropped_total",
            "Mirrored requests not sent because the bound of shadow calls in flight was reached",
            ["route"],
            registry=r,
        )
        self.weight = Gauge(
            names.ROUTER_WEIGHT,
            "Loaded routing weights in percent (role shadow: the mirror percentage)",
            ["route", "role"],
            registry=r,
        )
        self.reloads = Counter(
            "modelrouter_config_reloads_total",
            "Routing documents seen, by result: applied, unchanged, invalid, missing",
            ["route", "result"],
            registry=r,
        )
        self.stale = Gauge(
            "modelrouter_config_stale",
            "1 while the newest routing document seen is unusable and the last good one keeps serving",
            ["route"],
            registry=r,
        )
        self.rejected = Counter(
            "modelrouter_rejected_total",
            "Requests the router answered itself, by reason",
            ["route", "reason"],
            registry=r,
        )
        self.fallbacks = Counter(
            names.ROUTER_FALLBACKS,
            "Requests sent on to the next backend of a fallback chain, by the failed and the next backend and why",
            ["route", "from", "to", "reason"],
            registry=r,
        )
        self.ensemble_answers = Counter(
            names.ROUTER_ENSEMBLE_ANSWERS,
            "Ensemble inference requests by outcome: complete, quorum, failed",
            ["route", "ensemble", "outcome"],
            registry=r,
        )
        self.member_failures = Counter(
            names.ROUTER_ENSEMBLE_MEMBER_FAILURES,
            "Ensemble members left out of an answer, by reason",
            ["route", "ensemble", "member", "reason"],
            registry=r,
        )
        self.assignments = Counter(
            "modelrouter_assignments_total",
            "Requests assigned to a variant by their user's key (stickyBy), by model version and source: key, new, "
            "missing",
            ["route", "version", "source"],
            registry=r,
        )
        self.key_requests = Counter(
            "modelrouter_api_key_requests_total",
            "Requests by API key (its name) and result: admitted, rate_limited",
            ["route", "key", "result"],
            registry=r,
        )
        self._keyed: dict[tuple[str, str, str], Counter] = {}
        self._backends: dict[tuple[str, str, str], BackendMetrics] = {}
        self._assignments: dict[tuple[str, str, str], Counter] = {}
        self._weighted: tuple[str, frozenset[str]] = ("", frozenset())  # the route and roles with a weight series

    def backend(self, route: str, version: str, role: str) -> BackendMetrics:
        key = (route, version, role)
        found = self._backends.get(key)
        if found is None:
            found = self._backends[key] = BackendMetrics(
                self.requests, self.duration.labels(route, version, role), route, version, role
            )
        return found

    def assigned(self, route: str, version: str, source: str) -> None:
        _child(self._assignments, self.assignments, (route, version, source)).inc()

    def keyed(self, route: str, key: str, result: str) -> None:
        _child(self._keyed, self.key_requests, (route, key, result)).inc()

    def comparison(self, route: str, result: str, abs_diff: float | None) -> None:
        self.comparisons.labels(route, result).inc()
        if abs_diff is not None:
            self.abs_diff.labels(route).observe(abs_diff)

    def fell_back(self, route: str, failed: str, to: str, reason: str) -> None:
        self.fallbacks.labels(route, failed, to, reason).inc()

    def ensemble(self, route: str, ensemble: str, outcome: str, missing: Mapping[str, str]) -> None:
        """One ensemble answer: its outcome, and each member left out (member -> reason)."""
        self.ensemble_answers.labels(route, ensemble, outcome).inc()
        for member, reason in missing.items():
            self.member_failures.labels(route, ensemble, member, reason).inc()

    def loaded(self, route: str, weights: Mapping[str, int], *, mirror: int) -> None:
        """The weights of a routing just applied (every backend's, 0 for one outside the split); the series of a
        previous route or of backends gone are removed."""
        roles = frozenset(weights) | {SHADOW_ROLE}
        previous_route, previous_roles = self._weighted
        for role in previous_roles - (roles if previous_route == route else frozenset()):
            _forget(self.weight, previous_route, role)
        if previous_route and previous_route != route:
            _forget(self.stale, previous_route)
        for role, weight in weights.items():
            self.weight.labels(route, role).set(weight)
        self.weight.labels(route, SHADOW_ROLE).set(mirror)
        self._weighted = (route, roles)
        # The comparison series exist at 0 before the first mirrored request, as the model server's request
        # series do: increase() needs two points, and a shadow's first analysis must see its first comparisons.
        for result in (AGREE, DISAGREE, ERROR):
            self.comparisons.labels(route, result)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _child(cache: dict[tuple[str, str, str], Counter], parent: Counter, labels: tuple[str, str, str]) -> Counter:
    """The child of `parent` with `labels`, looked up once and then kept (labels() takes a lock on each call)."""
    child = cache.get(labels)
    if child is None:
        child = cache[labels] = parent.labels(*labels)
    return child


def _forget(metric: MetricWrapperBase, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
