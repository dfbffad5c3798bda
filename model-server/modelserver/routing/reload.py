"""The routing in force: documents from a source replace the snapshot, or are refused and the last good one stays.

Swapping is one attribute assignment on the event loop's thread, so it is atomic for every request: each
request reads `Routing.snapshot` once when it starts and keeps that object to its end. A document that cannot
be used (not JSON, unknown schemaVersion, invalid) is logged and counted and changes nothing; so is a
ConfigMap or file that disappears. The router never drops to having no routing once it had some.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from modelrollout_contract.router import RouterConfigError, route_of
from modelrollout_contract.router_v2 import parse_any
from modelserver.routing.metrics import RouterMetrics
from modelserver.routing.snapshot import Snapshot, build_snapshot

log = logging.getLogger(__name__)

APPLIED = "applied"
UNCHANGED = "unchanged"
INVALID = "invalid"
MISSING = "missing"


class Routing:
    def __init__(self, *, metrics: RouterMetrics, upstreams: Mapping[str, str] | None = None) -> None:
        self.snapshot: Snapshot | None = None
        self._metrics = metrics
        self._upstreams = dict(upstreams or {})

    @property
    def route(self) -> str:
        return "" if self.snapshot is None else self.snapshot.route

    def apply(self, text: str | bytes, *, origin: str) -> str:
        """Use the document in `text` if it is valid; returns applied | unchanged | invalid."""
        current = self.snapshot
        try:
            config = parse_any(text)
            if current is not None and current.config == config:
                self._metrics.reloads.labels(config.route, UNCHANGED).inc()
                self._metrics.stale.labels(config.route).set(0)
                return UNCHANGED
            snapshot = build_snapshot(config, self._upstreams)
        except (RouterConfigError, ValueError) as exc:  # ValueError: a backend URL that cannot be taken apart
            route = self.route or route_of(text) or ""
            self._metrics.reloads.labels(route, INVALID).inc()
            if current is not None:
                self._metrics.stale.labels(route).set(1)
            log.error(
                "refused routing document from %s, %s: %s",
                origin,
                "keeping the last good one" if current else "no routing yet",
                exc,
                extra={"route": route, "origin": origin},
            )
            return INVALID
        self.snapshot = snapshot  # the swap: requests from here on see the new routing
        weights = {name: config.weight_of(name) for name in config.targets()}
        mirror = config.mirror
        self._metrics.loaded(config.route, weights, mirror=0 if mirror is None else mirror.percent)
        self._metrics.reloads.labels(config.route, APPLIED).inc()
        self._metrics.stale.labels(config.route).set(0)
        log.info(
            "routing applied from %s: %s%s",
            origin,
            ", ".join(f"{name} {weights[name]}% (version {b.version})" for name, b in snapshot.targets.items()),
            f", mirror {mirror.percent}% of {mirror.source} to {mirror.to}" if mirror else "",
            extra={
                "route": config.route,
                "origin": origin,
                "backends": {name: b.url for name, b in snapshot.backends.items()},
                "routes": [route.model_dump(exclude_none=True) for route in config.routes],
                "fallbacks": {name: chain.to for name, chain in config.fallbacks.items()},
                "ensembles": {name: e.members for name, e in config.ensembles.items()},
            },
        )
        return APPLIED

    def missing(self, reason: str, *, origin: str) -> None:
        """The source has no document (deleted, no key): keep what serves, say so."""
        route = self.route
        self._metrics.reloads.labels(route, MISSING).inc()
        if self.snapshot is not None:
            self._metrics.stale.labels(route).set(1)
        log.warning(
            "no routing document at %s (%s); %s",
            origin,
            reason,
            "keeping the last good one" if self.snapshot else "not ready until one appears",
            extra={"route": route, "origin": origin},
        )
