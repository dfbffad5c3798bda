"""Every Prometheus metric the model server exports, named once (DESIGN.md section 4).

With several worker processes, prometheus-client's multiprocess mode keeps one file per process under
PROMETHEUS_MULTIPROC_DIR and `/metrics` sums them; the CLI sets that directory before any worker imports
this module, because prometheus-client picks its storage at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from modelrollout_contract import metrics as names
from modelrollout_contract.metrics import LATENCY_BUCKETS

# `*_created` series double the exposition and no query of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# Regression outputs have no natural scale: fine steps in [0, 1] (scores), then decades. No negative
# bounds: prometheus-client drops `_sum` from histograms that have them, and the mean prediction
# (_sum / _count) is the first thing to watch for drift. Negative predictions land in the le="0" bucket.
VALUE_BUCKETS = (0, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1e3, 1e4, 1e5, 1e6)
# The `protocol` label's values (named in the contract, which the operator's queries read).
PROTOCOL_V2 = names.PROTOCOL_V2
PROTOCOL_PREDICT = names.PROTOCOL_PREDICT
PROTOCOL_GRPC = names.PROTOCOL_GRPC
PROTOCOLS = (PROTOCOL_V2, PROTOCOL_PREDICT, PROTOCOL_GRPC)

REQUESTS = Counter(
    names.REQUESTS,
    "Inference requests by protocol and response code",
    [names.MODEL_LABEL, names.VERSION_LABEL, names.PROTOCOL_LABEL, "code"],
)
REQUEST_DURATION = Histogram(
    names.REQUEST_DURATION,
    "Inference request duration from the whole request body received to the response, by protocol",
    [names.MODEL_LABEL, names.VERSION_LABEL, names.PROTOCOL_LABEL],
    buckets=LATENCY_BUCKETS,
)
INFERENCE_ERRORS = Counter(
    names.INFERENCE_ERRORS,
    "Failed inference requests by reason",
    ["model", "version", "reason"],
)
BATCH_SIZE = Histogram(
    names.BATCH_SIZE,
    "Rows per model call when adaptive batching is on",
    ["model", "version"],
    buckets=BATCH_SIZE_BUCKETS,
)
PREDICTIONS = Counter(
    names.PREDICTIONS,
    "Predicted labels of classifiers",
    ["model", "version", "label"],
)
PREDICTION_VALUE = Histogram(
    names.PREDICTION_VALUE,
    "Predicted values of regressors",
    ["model", "version"],
    buckets=VALUE_BUCKETS,
)


@dataclass
class ModelMetrics:
    """The metrics of one served model, with label children cached (labels() costs a dict lookup + lock)."""

    model: str
    version: str
    _requests: dict[tuple[str, int], Counter] = field(default_factory=dict, repr=False)
    _durations: dict[str, Histogram] = field(default_factory=dict, repr=False)
    _errors: dict[str, Counter] = field(default_factory=dict, repr=False)
    _labels: dict[str, Counter] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Every success series exists at 0 from the start (Prometheus' "avoid missing metrics"): increase() needs
        # two points of a series, so a counter first exported at the first request hides the requests of its
        # first scrapes, and a canary's first analysis after it gets traffic saw "0 requests in the window".
        for protocol in PROTOCOLS:
            self._requests[(protocol, 200)] = REQUESTS.labels(self.model, self.version, protocol, "200")
            self._durations[protocol] = REQUEST_DURATION.labels(self.model, self.version, protocol)

    def request(self, protocol: str, code: int, seconds: float) -> None:
        counter = self._requests.get((protocol, code))
        if counter is None:
            counter = self._requests[(protocol, code)] = REQUESTS.labels(self.model, self.version, protocol, str(code))
        counter.inc()
        duration = self._durations.get(protocol)
        if duration is None:
            duration = self._durations[protocol] = REQUEST_DURATION.labels(self.model, self.version, protocol)
        duration.observe(seconds)

    def error(self, reason: str) -> None:
        counter = self._errors.get(reason)
        if counter is None:
            counter = self._errors[reason] = INFERENCE_ERRORS.labels(self.model, self.version, reason)
        counter.inc()

    def batch(self, rows: int) -> None:
        BATCH_SIZE.labels(self.model, self.version).observe(rows)

    def labels(self, counts: dict[str, int]) -> None:
        for label, count in counts.items():
            counter = self._labels.get(label)
            if counter is None:
                counter = self._labels[label] = PREDICTIONS.labels(self.model, self.version, label)
            counter.inc(count)

    def forget(self) -> None:
        """Remove this model's series (it was unloaded): its counters would otherwise stay, frozen, in /metrics."""
        for metric in (REQUESTS, REQUEST_DURATION, INFERENCE_ERRORS, BATCH_SIZE, PREDICTIONS, PREDICTION_VALUE):
            for labels in list(metric._metrics):
                if labels[:2] == (self.model, self.version):
                    metric.remove(*labels)
        self._requests.clear()
        self._durations.clear()
        self._errors.clear()
        self._labels.clear()

    def values(self, values: list[float]) -> None:
        histogram = PREDICTION_VALUE.labels(self.model, self.version)
        for value in values:
            histogram.observe(value)


def render() -> tuple[bytes, str]:
    """The text for `/metrics`: this process's registry, or every worker's files in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
