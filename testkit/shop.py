"""The application behind an A/B test in e2e tests: a shop whose visitors are the model's clients.

Every answered request is a visit; a visit converts with the probability of the model version that answered.
The draw is seeded per request index (not per call order), so a run's conversions do not depend on timing.
Visits and conversions are Prometheus counters (`shop_visits_total`, `shop_conversions_total`, labelled with
`model_version`), served on loopback for the test's Prometheus to scrape, as a real app's business metrics are.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, start_http_server

from testkit.load import Outcome
from testkit.ports import free_port
from testkit.prometheus import ScrapeTarget


class Shop:
    def __init__(self, conversion: Mapping[str, float], *, seed: int = 7) -> None:
        self.conversion = dict(conversion)
        self.seed = seed
        self.port = free_port()
        self._registry = CollectorRegistry()
        labels = ["model_version"]
        self.visits = Counter("shop_visits", "Answered requests.", labels, registry=self._registry)
        self.conversions = Counter("shop_conversions", "Visits that converted.", labels, registry=self._registry)
        for counter in (self.visits, self.conversions):
            for version in self.conversion:
                counter.labels(version)  # a series from 0, so increase() sees the first visit
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def target(self, namespace: str) -> ScrapeTarget:
        return ScrapeTarget.local(self.port, namespace=namespace, job="shop")

    def start(self) -> None:
        self._server, self._thread = start_http_server(self.port, addr="127.0.0.1", registry=self._registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def visit(self, outcome: Outcome) -> None:
        """Load's on_outcome hook."""
        rate = self.conversion.get(outcome.version or "")
        if not outcome.ok or rate is None:
            return
        self.visits.labels(outcome.version).inc()
        if random.Random(f"{self.seed}-{outcome.index}").random() < rate:
            self.conversions.labels(outcome.version).inc()

    def query(self, what: str, namespace: str) -> str:
        """The success metric's PromQL for abTest.successMetric (`what`: visits or conversions)."""
        selector = f'namespace="{namespace}",model_version="{{{{version}}}}"'
        return f"sum(increase(shop_{what}_total{{{selector}}}[{{{{interval}}}}]))"
